//! Credits without a chain (spec: `spec/credits.md`): a signed bilateral ledger that pays for
//! storage, bandwidth and inference with receipts of physical quantities, and serves a busy
//! node's peers in order of their credit.
//!
//! - [`receipt`]: the cumulative, monotone, double-signed receipt of one ordered pair, and the
//!   fraud proof two conflicting receipts make.
//! - [`rates`]: the rate card that prices the quantities.
//! - [`ledger`]: the per-peer accounts, as a state machine with the time passed in: accepting or
//!   refusing receipts, balances, the free allowance, thresholds and refusals.
//! - [`policy`]: the order of service under contention.
//! - [`wire`]: the `/warren/credits/1.0.0` exchange.
//!
//! Credit is redeemable only with the peer that signed it: a balance is what this node's rate card
//! makes of the two latest receipts between it and one peer, so identities that sign each other
//! receipts gain credit only with each other.

pub mod ledger;
pub mod policy;
pub mod rates;
pub mod receipt;
pub mod wire;

pub use ledger::{CreditPolicy, Decision, Ledger, Standing};
pub use rates::RateCard;
pub use receipt::{FraudProof, Quantities, Receipt};

/// The gossipsub topic on which a node publishes the fraud proofs it holds (two receipts of one
/// payer with one sequence number), so that the payer's standing drops on every node.
pub const FRAUD_TOPIC: &str = "warren/credits-fraud/1";

/// Everything that can go wrong with a receipt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreditError {
    /// The bytes are not a canonical receipt (too large, malformed, trailing bytes).
    #[error(transparent)]
    Protocol(#[from] crate::Error),
    /// A field breaks a rule.
    #[error("credit receipt #{seq}: {reason}")]
    Invalid {
        /// Its sequence number.
        seq: u64,
        /// Which rule.
        reason: &'static str,
    },
    /// A signature does not verify, or the receipt is not the sender's.
    #[error("credit receipt #{seq}: forged ({who} signature or key does not match)")]
    Forged {
        /// Its sequence number.
        seq: u64,
        /// Whose signature: `payer`, `payee` or `sender`.
        who: &'static str,
    },
    /// A receipt at or below the latest sequence number of the pair.
    #[error("credit receipt #{seq}: replayed (the latest of this pair is #{latest})")]
    Replayed {
        /// Its sequence number.
        seq: u64,
        /// The latest accepted.
        latest: u64,
    },
    /// A newer receipt whose counters or time go down.
    #[error("credit receipt #{seq}: rolled back (a counter or its time is below the latest's)")]
    RolledBack {
        /// Its sequence number.
        seq: u64,
    },
    /// A different receipt with the sequence number of the latest: a fraud proof.
    #[error("credit receipt #{seq}: conflicts with the accepted receipt of that number (fraud)")]
    Conflicting {
        /// Its sequence number.
        seq: u64,
    },
}

impl CreditError {
    /// The error's kind name, as in the spec's vector markers.
    pub fn kind(&self) -> &'static str {
        match self {
            CreditError::Protocol(crate::Error::TooLarge { .. }) => "TooLarge",
            CreditError::Protocol(crate::Error::NonCanonical { .. }) => "NonCanonical",
            CreditError::Protocol(crate::Error::TrailingBytes { .. }) => "TrailingBytes",
            CreditError::Protocol(_) => "Malformed",
            CreditError::Invalid { .. } => "Invalid",
            CreditError::Forged { .. } => "Forged",
            CreditError::Replayed { .. } => "Replayed",
            CreditError::RolledBack { .. } => "RolledBack",
            CreditError::Conflicting { .. } => "Conflicting",
        }
    }
}

#[cfg(test)]
mod tests;
