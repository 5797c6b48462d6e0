//! What a client asks a relay's runner in a `BEGIN` cell.
//!
//! ```text
//! GET   = 0x01 | content id (binary CID)      answer: DATA = the file's stored bytes, END ok = byte count
//! PUT   = 0x02 | name (UTF-8, may be empty)   client then sends DATA = the bytes and END;
//!                                             answer: END ok = the content id
//! INFER = 0x03 | opaque job                   (refused by runners without inference)
//! ```
//!
//! Private data is sealed and opened by the client's node, so a runner only ever moves
//! ciphertext and never sees a capability's key.

use super::{OnionError, cell::MAX_DATA};
use crate::ContentId;

/// Longest name a `PUT` carries.
pub const MAX_NAME: usize = 255;

/// A runner request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Fetch a file from the mesh and stream it back.
    Get(ContentId),
    /// Store the bytes that follow on the mesh; answer with the id.
    Put {
        /// The manifest name, if any.
        name: Option<String>,
    },
    /// Run an inference job (the hook for the inference service).
    Infer(Vec<u8>),
}

fn malformed(detail: impl Into<String>) -> OnionError {
    OnionError::Malformed {
        what: "runner request",
        detail: detail.into(),
    }
}

impl Request {
    /// The request's bytes (fits one `BEGIN`).
    pub fn encode(&self) -> Result<Vec<u8>, OnionError> {
        let out = match self {
            Request::Get(cid) => [&[1u8][..], &cid.to_bytes()].concat(),
            Request::Put { name } => {
                let n = name.as_deref().unwrap_or("");
                if n.len() > MAX_NAME {
                    return Err(OnionError::Limit {
                        detail: format!("a name of {} bytes, at most {MAX_NAME}", n.len()),
                    });
                }
                [&[2u8][..], n.as_bytes()].concat()
            }
            Request::Infer(job) => [&[3u8][..], job].concat(),
        };
        if out.len() > MAX_DATA {
            return Err(OnionError::Limit {
                detail: format!("a request of {} bytes, at most {MAX_DATA}", out.len()),
            });
        }
        Ok(out)
    }

    /// Parses a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, OnionError> {
        let (&kind, rest) = bytes.split_first().ok_or_else(|| malformed("empty"))?;
        match kind {
            1 => ContentId::from_bytes(rest)
                .map(Request::Get)
                .map_err(|e| malformed(e.to_string())),
            2 => {
                if rest.len() > MAX_NAME {
                    return Err(malformed(format!("name of {} bytes", rest.len())));
                }
                let n = std::str::from_utf8(rest).map_err(|_| malformed("name not UTF-8"))?;
                Ok(Request::Put {
                    name: (!n.is_empty()).then(|| n.to_owned()),
                })
            }
            3 => Ok(Request::Infer(rest.to_vec())),
            k => Err(malformed(format!("unknown kind {k}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn requests_round_trip(hash in any::<[u8; 32]>(), name in "[a-z.]{0,40}", job in proptest::collection::vec(any::<u8>(), 0..100)) {
            for r in [
                Request::Get(ContentId::from_parts(Codec::Raw, hash)),
                Request::Put { name: (!name.is_empty()).then(|| name.clone()) },
                Request::Infer(job.clone()),
            ] {
                prop_assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&bytes);
        }
    }
}
