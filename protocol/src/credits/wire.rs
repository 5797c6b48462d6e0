//! `/warren/credits/1.0.0` (spec: `spec/credits.md`, "Exchange"): the payer opens a stream, writes
//! one encoded [`Receipt`](super::Receipt) and closes its write half; the payee answers one
//! [`Reply`] and closes. Both messages are at most [`MAX_REPLY_SIZE`] bytes, checked before
//! decoding.

use serde::{Deserialize, Serialize};

use super::CreditError;
use super::receipt::{MAX_RECEIPT_SIZE, Receipt};

/// The libp2p protocol name.
pub const PROTOCOL_NAME: &str = "/warren/credits/1.0.0";
/// Largest encoded reply.
pub const MAX_REPLY_SIZE: usize = MAX_RECEIPT_SIZE + 512;
/// Longest refusal reason, bytes.
pub const MAX_REASON_LEN: usize = 256;

const WHAT: &str = "credit reply";

/// The payee's answer to a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Accepted: the receipt, countersigned.
    Accepted(Box<Receipt>),
    /// Refused, and why.
    Refused {
        /// At most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
}

impl Reply {
    /// A refusal, its reason cut to [`MAX_REASON_LEN`] bytes.
    pub fn refused(reason: &str) -> Self {
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Reply::Refused {
            reason: reason[..end].to_owned(),
        }
    }

    /// Canonical CBOR.
    pub fn encode(&self) -> Result<Vec<u8>, CreditError> {
        Ok(crate::codec::encode(self, WHAT)?)
    }

    /// Decodes (size first) and checks an accepted receipt's two signatures.
    pub fn decode(bytes: &[u8]) -> Result<Self, CreditError> {
        let reply: Self = crate::codec::decode(bytes, MAX_REPLY_SIZE, WHAT)?;
        match &reply {
            Reply::Accepted(r) => {
                r.verify()?;
                if r.payee_sig.is_none() {
                    return Err(CreditError::Invalid {
                        seq: r.seq,
                        reason: "an accepted receipt must be countersigned",
                    });
                }
            }
            Reply::Refused { reason } if reason.len() > MAX_REASON_LEN => {
                return Err(CreditError::Invalid {
                    seq: 0,
                    reason: "refusal reason longer than 256 bytes",
                });
            }
            Reply::Refused { .. } => {}
        }
        Ok(reply)
    }
}
