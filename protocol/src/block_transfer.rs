//! The block-transfer protocol `/warren/blocks/2.0.0` (spec: `spec/block-transfer.md`): the
//! messages peers exchange to fetch a block, push a replica and audit a holder, and the DHT key
//! under which holders announce a block.
//!
//! One [`Request`] and one [`Response`] per libp2p stream, each a canonical CBOR map with one key
//! naming the kind (`{"get": {...}}`). Limits: an encoded message is at most
//! [`MAX_MESSAGE_SIZE`] bytes (checked before decoding), a block at most [`MAX_BLOCK_SIZE`] (a
//! manifest block at most [`MAX_MANIFEST_SIZE`]), a proof at most [`MAX_PROOF_SIZE`].
//!
//! Goals: every block that arrives is checked against its id before anyone can use it —
//! [`Request::decode`] verifies a pushed replica and [`Response::decode`] a fetched block, so a
//! caller cannot forget to — and a response can be matched to the request it answers
//! ([`Response::check_answers`]). Holders announce Kademlia provider records under
//! [`provider_key`], the block's BLAKE3 multihash, so the codec of an id does not split its
//! providers.
//!
//! Non-goals: streaming a block in pieces (a block is at most ~1 MiB: one message), transfer
//! scheduling, timeouts and flow control (the node's swarm; the spec fixes their values), and
//! checking a proof of storage (`warren-storage-mesh`'s `proof` module: this module only carries
//! its bytes).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::content::BLAKE3_CODE;
use crate::ticket::PlacementTicket;
use crate::{CHUNK_SIZE, Codec, ContentId, Error, MAX_MANIFEST_SIZE, codec};

/// The libp2p protocol name.
pub const PROTOCOL_NAME: &str = "/warren/blocks/2.0.0";
/// Highest replication factor a [`StoreRequest`] may carry.
pub const MAX_RF: u8 = 16;

/// Largest block that travels: a raw chunk block, its tag byte and the 1 MiB chunk (the same
/// limit as the block store's, `spec/storage.md`).
pub const MAX_BLOCK_SIZE: usize = CHUNK_SIZE + 1;

/// Largest encoded request or response: a block plus the CBOR around it (about 70 bytes; 1 KiB
/// allowed). Checked before decoding and after encoding.
pub const MAX_MESSAGE_SIZE: usize = MAX_BLOCK_SIZE + 1024;

/// Audited slices start on multiples of this (bao-tree chunk groups of 16 chunks of 1 KiB).
pub const AUDIT_GROUP_SIZE: u64 = 16 * 1024;

/// Longest audited slice: 4 chunk groups.
pub const MAX_AUDIT_SLICE: u32 = 4 * 16 * 1024;

/// Largest encoded proof of storage: a 32-byte tag, the slice (at most [`MAX_AUDIT_SLICE`]) and
/// the BLAKE3 tree hashes that prove it (at most 18 pairs of 64 bytes for a block of
/// [`MAX_BLOCK_SIZE`]; 4 KiB allowed).
pub const MAX_PROOF_SIZE: usize = MAX_AUDIT_SLICE as usize + 4 * 1024;

/// Longest `reason` text, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// Length of a [`provider_key`].
pub const PROVIDER_KEY_LEN: usize = 34;

/// The Kademlia key under which holders of the block with BLAKE3 hash `hash` announce provider
/// records: its multihash, `1e 20 <hash>`, as IPFS keys providers by multihash. The raw and the
/// cbor id of the same bytes share it. Kademlia places the key at `sha256(key)`.
pub fn provider_key(hash: &[u8; 32]) -> [u8; PROVIDER_KEY_LEN] {
    let mut key = [0u8; PROVIDER_KEY_LEN];
    key[0] = BLAKE3_CODE as u8;
    key[1] = 32;
    key[2..].copy_from_slice(hash);
    key
}

const REQUEST: &str = "block transfer request";
const RESPONSE: &str = "block transfer response";

/// Asks for a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// The block wanted.
    pub block: ContentId,
}

/// A block, answering a [`BlockRequest`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockResponse {
    /// Its id (the one requested).
    pub block: ContentId,
    /// Its bytes; they hash to `block` (checked by [`Response::decode`]).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Pushes a replica of a block to a peer (placement and repair). The receiver stores it only if
/// it decodes, which includes checking `data` against `block`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRequest {
    /// The block's id.
    pub block: ContentId,
    /// Its bytes; they hash to `block` (checked by [`Request::decode`]).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The replication factor of the file the block belongs to (copies on peers other than the
    /// origin), at most [`MAX_RF`]. Advisory: a holder keeps what the `ticket` says.
    pub rf: u8,
    /// The origin's placement ticket for this block (absent in pushes from nodes before
    /// tickets; a holder then refuses to keep the block). Its signature is checked on decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<PlacementTicket>,
}

/// Renews the lease on a replica the receiver holds, with a fresh ticket from the origin (no
/// data: the receiver must already hold the block).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// The block.
    pub block: ContentId,
    /// The origin's new ticket for it (its signature is checked on decode).
    pub ticket: PlacementTicket,
}

/// Answers a [`StoreRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreResponse {
    /// The block of the request.
    pub block: ContentId,
    /// Whether the receiver now holds the block (also when it already did).
    pub accepted: bool,
    /// Why not (no room, not offering storage, …), or a note; at most [`MAX_REASON_LEN`] bytes.
    pub reason: Option<String>,
}

/// A proof-of-storage challenge: prove you hold bytes `offset..offset + len` of `block`.
/// `warren-storage-mesh`'s `proof::Challenge` derives these fields and checks the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRequest {
    /// The audited block.
    pub block: ContentId,
    /// Its length in bytes, as the auditor knows it (at most [`MAX_BLOCK_SIZE`]).
    pub block_len: u64,
    /// Makes the challenge unique; bound into the proof's tag.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 16],
    /// Start of the slice: a multiple of [`AUDIT_GROUP_SIZE`].
    pub offset: u64,
    /// Length of the slice (at most [`MAX_AUDIT_SLICE`]).
    pub len: u32,
}

/// Answers an [`AuditRequest`] with a proof of storage.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditResponse {
    /// The audited block.
    pub block: ContentId,
    /// The encoded proof (at most [`MAX_PROOF_SIZE`] bytes), checked by the auditor against the
    /// block id alone.
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

/// What a peer asks on a `/warren/blocks/2.0.0` stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Send me this block: answered by [`Response::Block`], [`Response::NotFound`] or
    /// [`Response::Failed`].
    Get(BlockRequest),
    /// Store this replica: answered by [`Response::Stored`] or [`Response::Failed`].
    Store(StoreRequest),
    /// Prove you hold this block: answered by [`Response::Proof`], [`Response::NotFound`] or
    /// [`Response::Failed`].
    Audit(AuditRequest),
    /// Renew the lease on a replica: answered by [`Response::Stored`] (accepted when the lease
    /// now runs to the ticket's expiry), [`Response::NotFound`] (not held: push it again) or
    /// [`Response::Failed`].
    Renew(RenewRequest),
}

/// What a peer answers on a `/warren/blocks/2.0.0` stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The block asked for.
    Block(BlockResponse),
    /// This peer does not hold the block (or its copy failed its own check and was dropped).
    NotFound {
        /// The block of the request.
        block: ContentId,
    },
    /// The outcome of a [`StoreRequest`].
    Stored(StoreResponse),
    /// A proof of storage.
    Proof(AuditResponse),
    /// The request was not served: it did not decode, the challenge does not fit the block, the
    /// peer is overloaded, …
    Failed {
        /// Why, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
}

/// Everything that can go wrong with a block-transfer message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The bytes are not a canonical message (too large, malformed, trailing bytes, not
    /// canonical), or a block's bytes do not hash to its id ([`Error::HashMismatch`]).
    #[error(transparent)]
    Protocol(#[from] Error),

    /// A field is longer than allowed.
    #[error("{what}{}: `{field}` is {len} bytes, at most {max} allowed", For(.block))]
    TooLong {
        /// The message kind.
        what: &'static str,
        /// The block it is about, if any.
        block: Option<ContentId>,
        /// The field.
        field: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A field's value breaks a rule other than a size limit.
    #[error("{what}{}: `{field}` is invalid: {reason}", For(.block))]
    InvalidField {
        /// The message kind.
        what: &'static str,
        /// The block it is about, if any.
        block: Option<ContentId>,
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// A response that does not answer the request it came back for.
    #[error("a {request} request for block {block} was answered with {response}")]
    Unexpected {
        /// The request's kind.
        request: &'static str,
        /// The request's block.
        block: ContentId,
        /// What came back: its kind and, where it has one, its block.
        response: String,
    },
}

/// Formats " for block <id>" (or nothing) in error messages.
struct For<'a>(&'a Option<ContentId>);

impl fmt::Display for For<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(block) => write!(f, " for block {block}"),
            None => Ok(()),
        }
    }
}

fn too_long(
    what: &'static str,
    block: Option<ContentId>,
    field: &'static str,
    len: usize,
    max: usize,
) -> Result<(), TransferError> {
    if len > max {
        return Err(TransferError::TooLong {
            what,
            block,
            field,
            len: len as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// Checks a block's bytes: size limit of its codec, then its hash.
fn check_block(what: &'static str, block: &ContentId, data: &[u8]) -> Result<(), TransferError> {
    let max = match block.codec() {
        Codec::Raw => MAX_BLOCK_SIZE,
        Codec::Cbor => MAX_MANIFEST_SIZE,
    };
    too_long(what, Some(*block), "data", data.len(), max)?;
    block.verify(data)?;
    Ok(())
}

/// A ticket carried for `block`: about that block, with a valid signature.
fn check_ticket(
    what: &'static str,
    block: &ContentId,
    ticket: &PlacementTicket,
) -> Result<(), TransferError> {
    if ticket.block != *block {
        return Err(TransferError::InvalidField {
            what,
            block: Some(*block),
            field: "ticket",
            reason: "it is for another block",
        });
    }
    ticket.check_signature()
}

fn check_reason(
    what: &'static str,
    block: Option<ContentId>,
    reason: &str,
) -> Result<(), TransferError> {
    too_long(what, block, "reason", reason.len(), MAX_REASON_LEN)
}

fn encode_checked<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, TransferError> {
    let bytes = codec::encode(value, what)?;
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(Error::TooLarge {
            what,
            len: bytes.len(),
            limit: MAX_MESSAGE_SIZE,
        }
        .into());
    }
    Ok(bytes)
}

impl AuditRequest {
    /// Checks the bounds every challenge keeps: `block_len` at most [`MAX_BLOCK_SIZE`], `offset`
    /// a multiple of [`AUDIT_GROUP_SIZE`], `len` at most [`MAX_AUDIT_SLICE`], the slice inside
    /// the block. (The exact slice rule is the proof module's.)
    pub fn validate(&self) -> Result<(), TransferError> {
        const WHAT: &str = "audit request";
        let block = Some(self.block);
        let invalid = |field, reason| TransferError::InvalidField {
            what: WHAT,
            block,
            field,
            reason,
        };
        if self.block_len > MAX_BLOCK_SIZE as u64 {
            return Err(TransferError::TooLong {
                what: WHAT,
                block,
                field: "block_len",
                len: self.block_len,
                max: MAX_BLOCK_SIZE as u64,
            });
        }
        if self.len > MAX_AUDIT_SLICE {
            return Err(TransferError::TooLong {
                what: WHAT,
                block,
                field: "len",
                len: self.len.into(),
                max: MAX_AUDIT_SLICE.into(),
            });
        }
        if !self.offset.is_multiple_of(AUDIT_GROUP_SIZE) {
            return Err(invalid("offset", "not a multiple of 16384"));
        }
        if self.offset.saturating_add(self.len.into()) > self.block_len {
            return Err(invalid("len", "the slice ends after the block"));
        }
        Ok(())
    }
}

impl Request {
    /// The block the request is about.
    pub fn block(&self) -> &ContentId {
        match self {
            Request::Get(r) => &r.block,
            Request::Store(r) => &r.block,
            Request::Audit(r) => &r.block,
            Request::Renew(r) => &r.block,
        }
    }

    /// The request's kind as on the wire: `get`, `store`, `audit` or `renew`.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Get(_) => "get",
            Request::Store(_) => "store",
            Request::Audit(_) => "audit",
            Request::Renew(_) => "renew",
        }
    }

    /// Checks the limits and, for a store, that the data hashes to the block id.
    pub fn validate(&self) -> Result<(), TransferError> {
        match self {
            Request::Get(_) => Ok(()),
            Request::Store(r) => {
                if r.rf > MAX_RF {
                    return Err(TransferError::InvalidField {
                        what: "store request",
                        block: Some(r.block),
                        field: "rf",
                        reason: "above MAX_RF (16)",
                    });
                }
                if let Some(t) = &r.ticket {
                    check_ticket("store request", &r.block, t)?;
                }
                check_block("store request", &r.block, &r.data)
            }
            Request::Audit(r) => r.validate(),
            Request::Renew(r) => check_ticket("renew request", &r.block, &r.ticket),
        }
    }

    /// Encodes the request (after [`Request::validate`]) as canonical CBOR of at most
    /// [`MAX_MESSAGE_SIZE`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, TransferError> {
        self.validate()?;
        encode_checked(self, REQUEST)
    }

    /// Decodes a request: refuses input over [`MAX_MESSAGE_SIZE`] before reading it, then
    /// anything but the canonical encoding, then values that break [`Request::validate`] — so a
    /// decoded store request carries a verified block.
    pub fn decode(bytes: &[u8]) -> Result<Request, TransferError> {
        let request: Request = codec::decode(bytes, MAX_MESSAGE_SIZE, REQUEST)?;
        request.validate()?;
        Ok(request)
    }
}

impl Response {
    /// The response's kind as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Block(_) => "block",
            Response::NotFound { .. } => "not_found",
            Response::Stored(_) => "stored",
            Response::Proof(_) => "proof",
            Response::Failed { .. } => "failed",
        }
    }

    /// The block the response is about (`None` for [`Response::Failed`]).
    pub fn block(&self) -> Option<&ContentId> {
        match self {
            Response::Block(r) => Some(&r.block),
            Response::NotFound { block } => Some(block),
            Response::Stored(r) => Some(&r.block),
            Response::Proof(r) => Some(&r.block),
            Response::Failed { .. } => None,
        }
    }

    /// Checks the limits and, for a block, that the data hashes to the block id.
    pub fn validate(&self) -> Result<(), TransferError> {
        match self {
            Response::Block(r) => check_block("block response", &r.block, &r.data),
            Response::NotFound { .. } => Ok(()),
            Response::Stored(r) => match &r.reason {
                Some(reason) => check_reason("store response", Some(r.block), reason),
                None => Ok(()),
            },
            Response::Proof(r) => too_long(
                "audit response",
                Some(r.block),
                "proof",
                r.proof.len(),
                MAX_PROOF_SIZE,
            ),
            Response::Failed { reason } => check_reason("failed response", None, reason),
        }
    }

    /// Encodes the response (after [`Response::validate`]) as canonical CBOR of at most
    /// [`MAX_MESSAGE_SIZE`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, TransferError> {
        self.validate()?;
        encode_checked(self, RESPONSE)
    }

    /// Decodes a response: refuses input over [`MAX_MESSAGE_SIZE`] before reading it, then
    /// anything but the canonical encoding, then values that break [`Response::validate`] — so a
    /// decoded block response carries a verified block.
    pub fn decode(bytes: &[u8]) -> Result<Response, TransferError> {
        let response: Response = codec::decode(bytes, MAX_MESSAGE_SIZE, RESPONSE)?;
        response.validate()?;
        Ok(response)
    }

    /// Checks that this response is one `request` allows: a kind that answers it, about the same
    /// block. [`Response::Failed`] answers anything.
    pub fn check_answers(&self, request: &Request) -> Result<(), TransferError> {
        let kind_ok = matches!(
            (request, self),
            (_, Response::Failed { .. })
                | (
                    Request::Get(_),
                    Response::Block(_) | Response::NotFound { .. }
                )
                | (Request::Store(_), Response::Stored(_))
                | (
                    Request::Renew(_),
                    Response::Stored(_) | Response::NotFound { .. }
                )
                | (
                    Request::Audit(_),
                    Response::Proof(_) | Response::NotFound { .. }
                )
        );
        let block_ok = self.block().is_none_or(|b| b == request.block());
        if kind_ok && block_ok {
            return Ok(());
        }
        Err(TransferError::Unexpected {
            request: request.kind(),
            block: *request.block(),
            response: match self.block() {
                Some(b) => format!("{} for block {b}", self.kind()),
                None => self.kind().to_owned(),
            },
        })
    }
}

impl fmt::Debug for BlockResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockResponse")
            .field("block", &self.block)
            .field("data", &format_args!("{} bytes", self.data.len()))
            .finish()
    }
}

impl fmt::Debug for StoreRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreRequest")
            .field("block", &self.block)
            .field("data", &format_args!("{} bytes", self.data.len()))
            .field("rf", &self.rf)
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl fmt::Debug for AuditResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditResponse")
            .field("block", &self.block)
            .field("proof", &format_args!("{} bytes", self.proof.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chunk(data: &[u8]) -> ContentId {
        ContentId::of_block(Codec::Raw, data)
    }

    fn audit() -> AuditRequest {
        AuditRequest {
            block: chunk(b"x"),
            block_len: 100_000,
            nonce: [7; 16],
            offset: 32 * 1024,
            len: 49 * 1024,
        }
    }

    #[test]
    fn provider_key_is_the_blake3_multihash() {
        let id = chunk(b"hello");
        let key = provider_key(&id.hash());
        assert_eq!(&key[..], &id.to_bytes()[2..]);
        let manifest = ContentId::from_parts(Codec::Cbor, id.hash());
        assert_eq!(provider_key(&manifest.hash()), key);
    }

    #[test]
    fn get_request_layout() {
        let id = chunk(b"");
        let bytes = Request::Get(BlockRequest { block: id }).encode().unwrap();
        // {"get": {"block": h'<36 bytes>'}}
        let mut expected = vec![0xa1, 0x63, b'g', b'e', b't', 0xa1, 0x65];
        expected.extend_from_slice(b"block");
        expected.extend_from_slice(&[0x58, 36]);
        expected.extend_from_slice(&id.to_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn decode_verifies_pushed_and_fetched_blocks() {
        let id = chunk(b"good");
        let store = Request::Store(StoreRequest {
            block: id,
            data: b"evil".to_vec(),
            rf: 3,
            ticket: None,
        });
        // Encoding refuses it too; build the bytes by hand.
        let bytes = codec::encode(&store, REQUEST).unwrap();
        let err = Request::decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            TransferError::Protocol(Error::HashMismatch { cid: id, len: 4 })
        );
        assert!(err.to_string().contains(&id.to_string()), "{err}");
        assert!(store.encode().is_err());

        let block = Response::Block(BlockResponse {
            block: id,
            data: b"evil".to_vec(),
        });
        let bytes = codec::encode(&block, RESPONSE).unwrap();
        assert!(matches!(
            Response::decode(&bytes).unwrap_err(),
            TransferError::Protocol(Error::HashMismatch { .. })
        ));
    }

    #[test]
    fn size_limit_is_checked_before_decoding() {
        let err = Request::decode(&vec![0xff; MAX_MESSAGE_SIZE + 1]).unwrap_err();
        assert!(
            matches!(err, TransferError::Protocol(Error::TooLarge { .. })),
            "{err}"
        );
        let err = Response::decode(&vec![0xff; MAX_MESSAGE_SIZE + 1]).unwrap_err();
        assert!(
            matches!(err, TransferError::Protocol(Error::TooLarge { .. })),
            "{err}"
        );
    }

    #[test]
    fn largest_block_fits_a_message() {
        let data = vec![0xa5; MAX_BLOCK_SIZE];
        let id = chunk(&data);
        let req = Request::Store(StoreRequest {
            block: id,
            data,
            rf: 3,
            ticket: None,
        });
        let bytes = req.encode().unwrap();
        assert!(bytes.len() <= MAX_MESSAGE_SIZE);
        assert_eq!(Request::decode(&bytes).unwrap(), req);

        let data = vec![0xa5; MAX_BLOCK_SIZE + 1];
        let id = chunk(&data);
        let err = Request::Store(StoreRequest {
            block: id,
            data,
            rf: 3,
            ticket: None,
        })
        .encode()
        .unwrap_err();
        assert!(
            matches!(err, TransferError::TooLong { field: "data", .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }

    #[test]
    fn manifest_blocks_have_the_manifest_limit() {
        let data = vec![0; MAX_MANIFEST_SIZE + 1];
        let id = ContentId::of_block(Codec::Cbor, &data);
        let err = Response::Block(BlockResponse { block: id, data })
            .encode()
            .unwrap_err();
        assert!(
            matches!(err, TransferError::TooLong { max, .. } if max == MAX_MANIFEST_SIZE as u64),
            "{err}"
        );
    }

    #[test]
    fn audit_request_bounds() {
        audit().validate().unwrap();
        let cases = [
            (
                AuditRequest {
                    offset: 1000,
                    ..audit()
                },
                "offset",
            ),
            (
                AuditRequest {
                    len: MAX_AUDIT_SLICE + 1,
                    ..audit()
                },
                "len",
            ),
            (
                AuditRequest {
                    block_len: 40_000,
                    ..audit()
                },
                "len",
            ),
            (
                AuditRequest {
                    block_len: MAX_BLOCK_SIZE as u64 + 1,
                    ..audit()
                },
                "block_len",
            ),
            (
                AuditRequest {
                    offset: u64::MAX - 16383,
                    ..audit()
                },
                "len",
            ),
        ];
        for (req, field) in cases {
            let err = Request::Audit(req.clone()).encode().unwrap_err();
            let got = match &err {
                TransferError::TooLong { field, .. }
                | TransferError::InvalidField { field, .. } => *field,
                other => panic!("{other}"),
            };
            assert_eq!(got, field, "{req:?}: {err}");
        }
    }

    #[test]
    fn reasons_and_proofs_are_bounded() {
        let long = "x".repeat(MAX_REASON_LEN + 1);
        assert!(
            Response::Failed {
                reason: long.clone()
            }
            .encode()
            .is_err()
        );
        let stored = Response::Stored(StoreResponse {
            block: chunk(b"a"),
            accepted: false,
            reason: Some(long),
        });
        assert!(stored.encode().is_err());
        let proof = Response::Proof(AuditResponse {
            block: chunk(b"a"),
            proof: vec![0; MAX_PROOF_SIZE + 1],
        });
        assert!(matches!(
            proof.encode().unwrap_err(),
            TransferError::TooLong { field: "proof", .. }
        ));
    }

    #[test]
    fn responses_are_matched_to_requests() {
        let a = chunk(b"a");
        let b = chunk(b"b");
        let get = Request::Get(BlockRequest { block: a });
        let store = Request::Store(StoreRequest {
            block: a,
            data: b"a".to_vec(),
            rf: 3,
            ticket: None,
        });
        let audit = Request::Audit(AuditRequest {
            block: a,
            block_len: 1,
            nonce: [0; 16],
            offset: 0,
            len: 1,
        });
        let found = Response::Block(BlockResponse {
            block: a,
            data: b"a".to_vec(),
        });
        let not_found = Response::NotFound { block: a };
        let stored = Response::Stored(StoreResponse {
            block: a,
            accepted: true,
            reason: None,
        });
        let proof = Response::Proof(AuditResponse {
            block: a,
            proof: vec![],
        });
        let failed = Response::Failed {
            reason: "busy".into(),
        };
        for (req, ok) in [
            (&get, [true, true, false, false, true]),
            (&store, [false, false, true, false, true]),
            (&audit, [false, true, false, true, true]),
        ] {
            for (resp, ok) in [&found, &not_found, &stored, &proof, &failed]
                .into_iter()
                .zip(ok)
            {
                assert_eq!(
                    resp.check_answers(req).is_ok(),
                    ok,
                    "{} / {}",
                    req.kind(),
                    resp.kind()
                );
            }
        }
        let other = Response::NotFound { block: b };
        let err = other.check_answers(&get).unwrap_err();
        assert!(err.to_string().contains(&b.to_string()), "{err}");
        assert!(err.to_string().contains(&a.to_string()), "{err}");
    }

    #[test]
    fn debug_does_not_dump_block_bytes() {
        let r = BlockResponse {
            block: chunk(b"abc"),
            data: b"abc".to_vec(),
        };
        assert!(format!("{r:?}").contains("3 bytes"));
    }

    fn arb_id() -> impl Strategy<Value = ContentId> {
        (any::<bool>(), any::<[u8; 32]>()).prop_map(|(raw, hash)| {
            ContentId::from_parts(if raw { Codec::Raw } else { Codec::Cbor }, hash)
        })
    }

    fn arb_block() -> impl Strategy<Value = (ContentId, Vec<u8>)> {
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..2048),
        )
            .prop_map(|(raw, data)| {
                let codec = if raw { Codec::Raw } else { Codec::Cbor };
                (ContentId::of_block(codec, &data), data)
            })
    }

    fn arb_ticket_parts() -> impl Strategy<Value = (u8, u8, u64)> {
        (any::<u8>(), 0..=MAX_RF, any::<u64>())
    }

    fn ticket(key: u8, block: ContentId, rf: u8, expires: u64) -> PlacementTicket {
        let key = crate::keypair_from_secret([key; 32]);
        PlacementTicket::sign(&key, block, rf, expires).unwrap()
    }

    #[test]
    fn a_ticket_must_name_the_block_and_verify() {
        let id = chunk(b"good");
        let mut t = ticket(1, id, 3, 100);
        let ok = Request::Store(StoreRequest {
            block: id,
            data: b"good".to_vec(),
            rf: 3,
            ticket: Some(t.clone()),
        });
        assert_eq!(Request::decode(&ok.encode().unwrap()).unwrap(), ok);
        let other = Request::Renew(RenewRequest {
            block: chunk(b"other"),
            ticket: t.clone(),
        });
        assert!(
            other
                .encode()
                .unwrap_err()
                .to_string()
                .contains("another block")
        );
        t.rf = 0;
        let forged = Request::Renew(RenewRequest {
            block: id,
            ticket: t,
        });
        assert!(
            forged
                .encode()
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            arb_id().prop_map(|block| Request::Get(BlockRequest { block })),
            (
                arb_block(),
                0..=MAX_RF,
                proptest::option::of(arb_ticket_parts())
            )
                .prop_map(|((block, data), rf, t)| Request::Store(StoreRequest {
                    block,
                    data,
                    rf,
                    ticket: t.map(|(k, trf, exp)| ticket(k, block, trf, exp)),
                })),
            (arb_id(), arb_ticket_parts()).prop_map(|(block, (k, rf, exp))| Request::Renew(
                RenewRequest {
                    block,
                    ticket: ticket(k, block, rf, exp),
                }
            )),
            (
                arb_id(),
                0..=MAX_BLOCK_SIZE as u64,
                any::<[u8; 16]>(),
                any::<u64>(),
                0..=MAX_AUDIT_SLICE
            )
                .prop_map(|(block, block_len, nonce, o, len)| {
                    let groups = block_len / AUDIT_GROUP_SIZE + 1;
                    let offset = (o % groups) * AUDIT_GROUP_SIZE;
                    let len = len.min(block_len.saturating_sub(offset) as u32);
                    Request::Audit(AuditRequest {
                        block,
                        block_len: block_len.max(offset),
                        nonce,
                        offset,
                        len,
                    })
                }),
        ]
    }

    fn arb_response() -> impl Strategy<Value = Response> {
        let reason = "\\PC{0,40}";
        prop_oneof![
            arb_block().prop_map(|(block, data)| Response::Block(BlockResponse { block, data })),
            arb_id().prop_map(|block| Response::NotFound { block }),
            (arb_id(), any::<bool>(), proptest::option::of(reason)).prop_map(
                |(block, accepted, reason)| Response::Stored(StoreResponse {
                    block,
                    accepted,
                    reason
                })
            ),
            (arb_id(), proptest::collection::vec(any::<u8>(), 0..4096))
                .prop_map(|(block, proof)| Response::Proof(AuditResponse { block, proof })),
            reason.prop_map(|reason| Response::Failed { reason }),
        ]
    }

    proptest! {
        #[test]
        fn request_round_trip(r in arb_request()) {
            let bytes = r.encode().unwrap();
            prop_assert_eq!(Request::decode(&bytes).unwrap(), r);
        }

        #[test]
        fn response_round_trip(r in arb_response()) {
            let bytes = r.encode().unwrap();
            prop_assert_eq!(Response::decode(&bytes).unwrap(), r);
        }

        #[test]
        fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn truncated_requests_are_refused(r in arb_request(), cut in any::<prop::sample::Index>()) {
            let bytes = r.encode().unwrap();
            let n = cut.index(bytes.len());
            prop_assert!(Request::decode(&bytes[..n]).is_err());
        }
    }
}
