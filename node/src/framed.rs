//! The framing of `GET /v1/get/{cid}` bodies, so that a download can end with an error the client
//! can read (HTTP has no portable way to fail a response after its status line).
//!
//! A body is a sequence of frames: `kind: u8`, `len: u32 big-endian`, `len` bytes.
//!
//! | kind | payload |
//! |------|---------|
//! | 0 `DATA`  | file bytes, at most [`MAX_FRAME`] |
//! | 1 `END`   | the total byte count, u64 big-endian: the download is complete and verified |
//! | 2 `ERROR` | UTF-8 reason (naming the corrupt or missing block): discard everything received |
//!
//! A body that stops before `END` or `ERROR` was cut off and must be discarded too.

use crate::error::NodeError;

/// File bytes.
pub const DATA: u8 = 0;
/// Completed, verified.
pub const END: u8 = 1;
/// Failed.
pub const ERROR: u8 = 2;
/// Largest frame payload.
pub const MAX_FRAME: usize = 4 << 20;

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// File bytes.
    Data(Vec<u8>),
    /// Completed; total bytes.
    End(u64),
    /// Failed; the reason.
    Error(String),
}

/// Encodes one frame.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Incremental decoder: push bytes as they arrive, pop frames.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, NodeError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(NodeError::Api(format!(
                "download frame of {len} bytes exceeds {MAX_FRAME}"
            )));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        match kind {
            DATA => Ok(Some(Frame::Data(payload))),
            END => {
                let arr: [u8; 8] = payload
                    .as_slice()
                    .try_into()
                    .map_err(|_| NodeError::Api("END frame is not 8 bytes".into()))?;
                Ok(Some(Frame::End(u64::from_be_bytes(arr))))
            }
            ERROR => Ok(Some(Frame::Error(
                String::from_utf8_lossy(&payload).into_owned(),
            ))),
            other => Err(NodeError::Api(format!(
                "unknown download frame kind {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_arbitrary_splits() {
        let mut wire = encode(DATA, b"hello");
        wire.extend(encode(DATA, b""));
        wire.extend(encode(END, &5u64.to_be_bytes()));
        for split in 0..wire.len() {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                d.push(part);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(
                got,
                vec![
                    Frame::Data(b"hello".to_vec()),
                    Frame::Data(vec![]),
                    Frame::End(5)
                ]
            );
        }
    }

    #[test]
    fn rejects_bad_frames() {
        let mut d = Deframer::default();
        d.push(&encode(9, b"x"));
        assert!(d.next_frame().is_err());
        let mut d = Deframer::default();
        d.push(&[DATA, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
        let mut d = Deframer::default();
        d.push(&encode(END, b"short"));
        assert!(d.next_frame().is_err());
        let mut d = Deframer::default();
        d.push(&encode(ERROR, b"block bafk... is corrupt"));
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Frame::Error("block bafk... is corrupt".into()))
        );
    }
}
