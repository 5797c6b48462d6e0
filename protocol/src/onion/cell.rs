//! The cell codec: every cell on a link is exactly [`CELL_LEN`] bytes.
//!
//! ```text
//! link cell  = command u8 | body [BODY_LEN]
//!   1 CREATE   body = origin u8 | len u16 BE | Noise NK message 1 | zeros
//!   2 CREATED  body = len u16 BE | Noise NK message 2 | zeros
//!   3 RELAY    body = layered ciphertext (opaque to every hop but its end)
//!   4 DESTROY  body = reason u8 | zeros
//!   5 RELAY_EARLY  as RELAY; the only cell that may carry an EXTEND, at most
//!                  MAX_RELAY_EARLY per circuit (Tor's RELAY_EARLY)
//! relay plaintext (BODY_LEN bytes)
//!   = tag [16] | command u8 | stream u16 BE | len u16 BE | data [len] | zeros
//! ```
//!
//! Padding must be zero, lengths must fit, and unknown commands are refused: each cell has one
//! encoding.

use std::fmt;

use super::{OnionError, protocol};

/// Size of every cell on a link, in bytes (see `spec/onion.md` for why 1024).
pub const CELL_LEN: usize = 1024;
/// Bytes of a cell after its command byte.
pub const BODY_LEN: usize = CELL_LEN - 1;
/// Size of the end-to-end tag at the start of a relay plaintext.
pub const TAG_LEN: usize = 16;
/// Bytes of a relay plaintext before its data.
pub const RELAY_HEADER_LEN: usize = TAG_LEN + 1 + 2 + 2;
/// Most data bytes in one relay cell.
pub const MAX_DATA: usize = BODY_LEN - RELAY_HEADER_LEN;
/// Longest handshake message a `CREATE` or `CREATED` cell carries.
pub const MAX_HANDSHAKE: usize = 256;

const CREATE: u8 = 1;
const CREATED: u8 = 2;
const RELAY: u8 = 3;
const DESTROY: u8 = 4;
const RELAY_EARLY: u8 = 5;

/// Who sent a `CREATE`: the client itself (the hop is the gate) or an extending hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOrigin {
    /// Sent by the circuit's client: the receiver is the gate.
    Client = 0,
    /// Sent by a hop on an `EXTEND`: the receiver is a middle hop or the relay.
    Extend = 1,
}

/// Why a circuit was torn down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestroyReason {
    /// The client (or a hop's operator) closed it.
    Requested = 1,
    /// A peer broke the protocol.
    Protocol = 2,
    /// A relay cell failed the end-to-end integrity check.
    Integrity = 3,
    /// The next hop could not be reached.
    Unreachable = 4,
    /// A limit (cells, streams, time) was reached.
    Limit = 5,
    /// The hop failed internally.
    Internal = 6,
    /// A handshake failed or was replayed.
    Handshake = 7,
    /// The hop is busy: every circuit slot it has (or has for that neighbour) is taken. Sent by
    /// a hop instead of reading a `CREATE` it will not take; says nothing of the circuit.
    Busy = 8,
    /// The hop is busy and refused the circuit for credit: the standing of its previous hop
    /// (the client, for the gate) with it is past its threshold (spec/credits.md, "Relay
    /// work"). Sent as `Busy` is.
    Credit = 9,
}

impl DestroyReason {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Requested,
            2 => Self::Protocol,
            3 => Self::Integrity,
            4 => Self::Unreachable,
            5 => Self::Limit,
            6 => Self::Internal,
            7 => Self::Handshake,
            8 => Self::Busy,
            9 => Self::Credit,
            _ => return None,
        })
    }

    /// The reason a local error gives to the circuit's other hops.
    pub fn for_error(e: &OnionError) -> Self {
        match e {
            OnionError::Integrity { .. } => Self::Integrity,
            OnionError::Handshake { .. } | OnionError::Replay { .. } => Self::Handshake,
            OnionError::Limit { .. } => Self::Limit,
            OnionError::Destroyed { reason } => *reason,
            OnionError::Closed => Self::Requested,
            _ => Self::Protocol,
        }
    }
}

impl fmt::Display for DestroyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Requested => "requested",
            Self::Protocol => "protocol violation",
            Self::Integrity => "integrity check failed",
            Self::Unreachable => "next hop unreachable",
            Self::Limit => "limit reached",
            Self::Internal => "internal error",
            Self::Handshake => "handshake failed",
            Self::Busy => "busy",
            Self::Credit => "refused for credit",
        })
    }
}

/// One link cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Opens a circuit hop: Noise NK message 1.
    Create {
        /// Who sent it.
        origin: CreateOrigin,
        /// The handshake message.
        handshake: Vec<u8>,
    },
    /// Answers a `CREATE`: Noise NK message 2.
    Created {
        /// The handshake message.
        handshake: Vec<u8>,
    },
    /// A layered relay cell.
    Relay {
        /// The (encrypted) body.
        body: Box<[u8; BODY_LEN]>,
    },
    /// A relay cell every hop counts on its way to the relay: the only cell that may carry an
    /// `EXTEND`, at most [`super::MAX_RELAY_EARLY`] per circuit (Tor's `RELAY_EARLY`), so a
    /// circuit cannot grow past [`super::MAX_HOPS`] whatever its client wants.
    RelayEarly {
        /// The (encrypted) body.
        body: Box<[u8; BODY_LEN]>,
    },
    /// Tears the circuit down.
    Destroy {
        /// Why.
        reason: DestroyReason,
    },
}

fn malformed(what: &'static str, detail: impl Into<String>) -> OnionError {
    OnionError::Malformed {
        what,
        detail: detail.into(),
    }
}

fn check_zeros(what: &'static str, rest: &[u8]) -> Result<(), OnionError> {
    match rest.iter().position(|b| *b != 0) {
        None => Ok(()),
        Some(i) => Err(malformed(what, format!("non-zero padding at offset {i}"))),
    }
}

impl Cell {
    /// The cell's [`CELL_LEN`] bytes. Fails only for a handshake longer than [`MAX_HANDSHAKE`].
    pub fn encode(&self) -> Result<Vec<u8>, OnionError> {
        let mut out = vec![0u8; CELL_LEN];
        match self {
            Cell::Create { origin, handshake } => {
                out[0] = CREATE;
                out[1] = *origin as u8;
                put_handshake(&mut out[2..], handshake)?;
            }
            Cell::Created { handshake } => {
                out[0] = CREATED;
                put_handshake(&mut out[1..], handshake)?;
            }
            Cell::Relay { body } => {
                out[0] = RELAY;
                out[1..].copy_from_slice(&body[..]);
            }
            Cell::RelayEarly { body } => {
                out[0] = RELAY_EARLY;
                out[1..].copy_from_slice(&body[..]);
            }
            Cell::Destroy { reason } => {
                out[0] = DESTROY;
                out[1] = *reason as u8;
            }
        }
        Ok(out)
    }

    /// Decodes exactly one cell of [`CELL_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, OnionError> {
        if bytes.len() != CELL_LEN {
            return Err(malformed(
                "cell",
                format!("{} bytes, a cell is {CELL_LEN}", bytes.len()),
            ));
        }
        let body = &bytes[1..];
        match bytes[0] {
            CREATE => {
                let origin = match body[0] {
                    0 => CreateOrigin::Client,
                    1 => CreateOrigin::Extend,
                    o => return Err(malformed("CREATE", format!("unknown origin {o}"))),
                };
                let handshake = get_handshake("CREATE", &body[1..])?;
                Ok(Cell::Create { origin, handshake })
            }
            CREATED => Ok(Cell::Created {
                handshake: get_handshake("CREATED", body)?,
            }),
            RELAY | RELAY_EARLY => {
                let mut b = Box::new([0u8; BODY_LEN]);
                b.copy_from_slice(body);
                Ok(if bytes[0] == RELAY {
                    Cell::Relay { body: b }
                } else {
                    Cell::RelayEarly { body: b }
                })
            }
            DESTROY => {
                let reason = DestroyReason::from_u8(body[0])
                    .ok_or_else(|| malformed("DESTROY", format!("unknown reason {}", body[0])))?;
                check_zeros("DESTROY", &body[1..])?;
                Ok(Cell::Destroy { reason })
            }
            c => Err(malformed("cell", format!("unknown command {c}"))),
        }
    }
}

fn put_handshake(out: &mut [u8], handshake: &[u8]) -> Result<(), OnionError> {
    if handshake.len() > MAX_HANDSHAKE {
        return Err(OnionError::Limit {
            detail: format!(
                "handshake of {} bytes, at most {MAX_HANDSHAKE}",
                handshake.len()
            ),
        });
    }
    out[..2].copy_from_slice(&(handshake.len() as u16).to_be_bytes());
    out[2..2 + handshake.len()].copy_from_slice(handshake);
    Ok(())
}

fn get_handshake(what: &'static str, body: &[u8]) -> Result<Vec<u8>, OnionError> {
    let len = u16::from_be_bytes([body[0], body[1]]) as usize;
    if len > MAX_HANDSHAKE {
        return Err(malformed(
            what,
            format!("handshake of {len} bytes, at most {MAX_HANDSHAKE}"),
        ));
    }
    check_zeros(what, &body[2 + len..])?;
    Ok(body[2..2 + len].to_vec())
}

/// Commands inside a relay cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayCommand {
    /// Client → last hop: extend the circuit to a peer (data: [`encode_extend`]).
    Extend = 1,
    /// New last hop → client, via the extending hop: Noise NK message 2.
    Extended = 2,
    /// Client → relay: open a stream with a request (data: [`super::request`]).
    Begin = 3,
    /// Stream bytes, either way.
    Data = 4,
    /// Stream end, either way (data: status u8, 0 = ok, then a UTF-8 message).
    End = 5,
    /// Stream flow control, either way: the sender may send [`super::SENDME_INCREMENT`] more
    /// `DATA` cells on the stream.
    Sendme = 6,
}

impl RelayCommand {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Extend,
            2 => Self::Extended,
            3 => Self::Begin,
            4 => Self::Data,
            5 => Self::End,
            6 => Self::Sendme,
            _ => return None,
        })
    }
}

/// The plaintext of a relay cell, without its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayPayload {
    /// What the cell asks for.
    pub command: RelayCommand,
    /// The stream it belongs to; 0 for circuit commands (`EXTEND`, `EXTENDED`).
    pub stream: u16,
    /// At most [`MAX_DATA`] bytes.
    pub data: Vec<u8>,
}

impl RelayPayload {
    /// The [`BODY_LEN`]-byte plaintext with a zero tag.
    pub fn encode(&self) -> Result<Box<[u8; BODY_LEN]>, OnionError> {
        if self.data.len() > MAX_DATA {
            return Err(OnionError::Limit {
                detail: format!(
                    "relay data of {} bytes, at most {MAX_DATA}",
                    self.data.len()
                ),
            });
        }
        let mut b = Box::new([0u8; BODY_LEN]);
        b[TAG_LEN] = self.command as u8;
        b[TAG_LEN + 1..TAG_LEN + 3].copy_from_slice(&self.stream.to_be_bytes());
        b[TAG_LEN + 3..TAG_LEN + 5].copy_from_slice(&(self.data.len() as u16).to_be_bytes());
        b[RELAY_HEADER_LEN..RELAY_HEADER_LEN + self.data.len()].copy_from_slice(&self.data);
        Ok(b)
    }

    /// Parses a plaintext whose tag was already checked.
    pub fn decode(body: &[u8; BODY_LEN]) -> Result<Self, OnionError> {
        let command = RelayCommand::from_u8(body[TAG_LEN])
            .ok_or_else(|| malformed("relay cell", format!("unknown command {}", body[TAG_LEN])))?;
        let stream = u16::from_be_bytes([body[TAG_LEN + 1], body[TAG_LEN + 2]]);
        let len = u16::from_be_bytes([body[TAG_LEN + 3], body[TAG_LEN + 4]]) as usize;
        if len > MAX_DATA {
            return Err(malformed(
                "relay cell",
                format!("data length {len}, at most {MAX_DATA}"),
            ));
        }
        check_zeros("relay cell", &body[RELAY_HEADER_LEN + len..])?;
        Ok(Self {
            command,
            stream,
            data: body[RELAY_HEADER_LEN..RELAY_HEADER_LEN + len].to_vec(),
        })
    }
}

/// Data of an `EXTEND`: `peer_len u8 | peer id bytes | handshake_len u16 BE | Noise NK message 1`.
pub fn encode_extend(peer: &[u8], handshake: &[u8]) -> Result<Vec<u8>, OnionError> {
    if peer.is_empty() || peer.len() > 64 || handshake.len() > MAX_HANDSHAKE {
        return Err(OnionError::Limit {
            detail: format!(
                "EXTEND with a {}-byte peer id and a {}-byte handshake",
                peer.len(),
                handshake.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(3 + peer.len() + handshake.len());
    out.push(peer.len() as u8);
    out.extend_from_slice(peer);
    out.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    out.extend_from_slice(handshake);
    Ok(out)
}

/// Parses the data of an `EXTEND` into (peer id bytes, handshake).
pub fn decode_extend(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), OnionError> {
    let bad = |d: &str| malformed("EXTEND", d.to_owned());
    let (&plen, rest) = data.split_first().ok_or_else(|| bad("empty"))?;
    let plen = plen as usize;
    if plen == 0 || plen > 64 || rest.len() < plen + 2 {
        return Err(bad("bad peer id length"));
    }
    let (peer, rest) = rest.split_at(plen);
    let hlen = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    if hlen > MAX_HANDSHAKE || rest.len() != 2 + hlen {
        return Err(bad("bad handshake length"));
    }
    Ok((peer.to_vec(), rest[2..].to_vec()))
}

/// Data of an `END`: status (0 = ok) and a message.
pub fn encode_end(result: &Result<String, String>) -> Vec<u8> {
    let (status, msg) = match result {
        Ok(m) => (0u8, m.as_bytes()),
        Err(m) => (1u8, m.as_bytes()),
    };
    let mut out = vec![status];
    // Truncate on a char boundary so the message stays UTF-8.
    let mut end = msg.len().min(MAX_DATA - 1);
    while end > 0 && std::str::from_utf8(&msg[..end]).is_err() {
        end -= 1;
    }
    out.extend_from_slice(&msg[..end]);
    out
}

/// Parses the data of an `END`.
pub fn decode_end(data: &[u8]) -> Result<Result<String, String>, OnionError> {
    let (&status, msg) = data
        .split_first()
        .ok_or_else(|| protocol("END without a status"))?;
    let msg = String::from_utf8(msg.to_vec()).map_err(|_| malformed("END", "message not UTF-8"))?;
    match status {
        0 => Ok(Ok(msg)),
        1 => Ok(Err(msg)),
        s => Err(malformed("END", format!("unknown status {s}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origin() -> impl Strategy<Value = CreateOrigin> {
        prop_oneof![Just(CreateOrigin::Client), Just(CreateOrigin::Extend)]
    }

    fn cell() -> impl Strategy<Value = Cell> {
        prop_oneof![
            (
                origin(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_HANDSHAKE)
            )
                .prop_map(|(origin, handshake)| Cell::Create { origin, handshake }),
            proptest::collection::vec(any::<u8>(), 0..=MAX_HANDSHAKE)
                .prop_map(|handshake| Cell::Created { handshake }),
            proptest::collection::vec(any::<u8>(), BODY_LEN).prop_map(|v| {
                let mut body = Box::new([0u8; BODY_LEN]);
                body.copy_from_slice(&v);
                Cell::Relay { body }
            }),
            proptest::collection::vec(any::<u8>(), BODY_LEN).prop_map(|v| {
                let mut body = Box::new([0u8; BODY_LEN]);
                body.copy_from_slice(&v);
                Cell::RelayEarly { body }
            }),
            (1u8..=7).prop_map(|r| Cell::Destroy {
                reason: DestroyReason::from_u8(r).unwrap()
            }),
        ]
    }

    fn command() -> impl Strategy<Value = RelayCommand> {
        (1u8..=6).prop_map(|c| RelayCommand::from_u8(c).unwrap())
    }

    proptest! {
        #[test]
        fn cells_round_trip(c in cell()) {
            let bytes = c.encode().unwrap();
            prop_assert_eq!(bytes.len(), CELL_LEN);
            prop_assert_eq!(Cell::decode(&bytes).unwrap(), c);
        }

        #[test]
        fn relay_payloads_round_trip(
            command in command(),
            stream in any::<u16>(),
            data in proptest::collection::vec(any::<u8>(), 0..=MAX_DATA),
        ) {
            let p = RelayPayload { command, stream, data };
            let body = p.encode().unwrap();
            prop_assert_eq!(RelayPayload::decode(&body).unwrap(), p);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2 * CELL_LEN)) {
            let _ = Cell::decode(&bytes);
            if bytes.len() >= BODY_LEN {
                let mut b = [0u8; BODY_LEN];
                b.copy_from_slice(&bytes[..BODY_LEN]);
                let _ = RelayPayload::decode(&b);
            }
            let _ = decode_extend(&bytes);
            let _ = decode_end(&bytes);
        }

        #[test]
        fn extend_round_trips(
            peer in proptest::collection::vec(any::<u8>(), 1..=64),
            hs in proptest::collection::vec(any::<u8>(), 0..=MAX_HANDSHAKE),
        ) {
            let d = encode_extend(&peer, &hs).unwrap();
            prop_assert_eq!(decode_extend(&d).unwrap(), (peer, hs));
        }
    }

    #[test]
    fn refuses_wrong_sizes_padding_and_commands() {
        assert!(Cell::decode(&[0u8; CELL_LEN - 1]).is_err());
        let mut c = Cell::Destroy {
            reason: DestroyReason::Integrity,
        }
        .encode()
        .unwrap();
        c[CELL_LEN - 1] = 1;
        assert!(matches!(
            Cell::decode(&c),
            Err(OnionError::Malformed { .. })
        ));
        let mut c = vec![0u8; CELL_LEN];
        c[0] = 9;
        assert!(Cell::decode(&c).is_err());
        let mut body = RelayPayload {
            command: RelayCommand::Data,
            stream: 1,
            data: vec![1, 2],
        }
        .encode()
        .unwrap();
        body[BODY_LEN - 1] = 7;
        assert!(RelayPayload::decode(&body).is_err());
    }
}
