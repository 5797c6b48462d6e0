//! The simulations crate's error type (scenarios that run real nodes can fail; the model-level
//! ones cannot).

use std::path::PathBuf;

/// What can go wrong running a scenario.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A node could not be built or answered with an error.
    #[error("node {node}: {source}")]
    Node {
        /// Index of the node in the scenario.
        node: usize,
        /// What it said.
        source: warren_node::NodeError,
    },
    /// A node's chunk store failed.
    #[error("node {node}: store: {source}")]
    Store {
        /// Index of the node in the scenario.
        node: usize,
        /// What the store said.
        source: warren_storage_mesh::Error,
    },
    /// A file or folder could not be made.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An honest peer's receipt was refused or could not be signed (a ledger bug).
    #[error("peer {peer}: credit receipt: {source}")]
    Credit {
        /// Index of the payer in the scenario.
        peer: usize,
        /// What the ledger said.
        source: warren_protocol::credits::CreditError,
    },
    /// The parameters make no sense.
    #[error("invalid parameters: {0}")]
    Params(&'static str),
}
