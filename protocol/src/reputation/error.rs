//! Errors of the reputation machine: configuration and persisted state.

use crate::{Error, PeerId};

/// Why a [`Reputation`](super::Reputation) could not be made or restored.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReputationError {
    /// The state bytes did not decode (size limit, malformed, trailing bytes, non-canonical).
    #[error(transparent)]
    Codec(#[from] Error),
    /// A [`Config`](super::Config) value out of its range.
    #[error("reputation config: `{field}` {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Persisted state of a format version this implementation does not read.
    #[error(
        "reputation state: version {found} is not supported (this implementation reads {supported})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u16,
        /// The version supported.
        supported: u16,
    },
    /// Persisted state that belongs to another node.
    #[error("reputation state belongs to {found}, not to {expected}")]
    WrongPeer {
        /// This node.
        expected: Box<PeerId>,
        /// The node named in the state.
        found: Box<PeerId>,
    },
    /// Persisted state that decodes but breaks a rule (order, duplicates, a negative count, …).
    #[error("reputation state is invalid: {reason}")]
    InvalidState {
        /// The rule it breaks, naming the peer where there is one.
        reason: String,
    },
}
