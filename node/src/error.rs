//! The node library's error type.

use std::path::PathBuf;

use libp2p::PeerId;

/// Everything that can go wrong inside the node library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A secret file can be read by other users.
    #[error(
        "{path} has mode {mode:o}: a secret file must be readable by its owner only; run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The data directory is not this user's own, or others may write into it.
    #[error("{path}: unsafe data directory: {reason}")]
    InsecureDataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A key file could not be decoded.
    #[error("{path}: not a valid key file: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Building or driving the libp2p swarm failed.
    #[error("network: {0}")]
    Network(String),
    /// A protocol format was rejected.
    #[error(transparent)]
    Protocol(#[from] warren_protocol::Error),
    /// A peer's record was not found in the DHT.
    #[error("no valid node record for {peer} found in the DHT")]
    RecordNotFound {
        /// The peer looked up.
        peer: PeerId,
    },
    /// A blocking or background task panicked or was cancelled.
    #[error("{what} task: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why it ended.
        #[source]
        source: tokio::task::JoinError,
    },
    /// `warren audit` named this node itself.
    #[error("a node does not audit itself: name another peer")]
    SelfAudit,
    /// A block named for an audit is not in this node's store, so its length is unknown.
    #[error(
        "block {block} is not in this node's store, so its length is unknown: name the file it belongs to instead"
    )]
    UnknownBlock {
        /// The block.
        block: warren_protocol::ContentId,
    },
    /// The audited peer's provider records claim none of the blocks looked up.
    #[error("{peer} claims none of the {probed} blocks {what} looked up (provider records)")]
    NotClaimed {
        /// The peer to audit.
        peer: PeerId,
        /// Blocks looked up.
        probed: usize,
        /// Of which file, or "this node holds".
        what: String,
    },
    /// No holder delivered a block (none found, none reachable, or every answer was bad).
    #[error("cannot fetch block {block} after {attempts} attempts: {reasons}")]
    BlockUnavailable {
        /// The block.
        block: warren_protocol::ContentId,
        /// Rounds over its holders.
        attempts: usize,
        /// What each holder answered, last round.
        reasons: String,
    },
    /// Dialling a peer failed.
    #[error("dial {target}: {reason}")]
    Dial {
        /// The address or peer dialled.
        target: String,
        /// libp2p's reason.
        reason: String,
    },
    /// No valid record of a name was found.
    #[error("no valid record of name {name}: {detail}")]
    NameNotFound {
        /// The name looked up.
        name: PeerId,
        /// What the lookup found instead.
        detail: String,
    },
    /// A name, key label or publication the user gave breaks a rule (the sentence says which).
    #[error("{0}")]
    NameInput(String),
    /// The node is shutting down and cannot answer.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The block store failed.
    #[error(transparent)]
    Storage(#[from] warren_storage_mesh::Error),
    /// A node database (redb) failed.
    #[error("{path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<redb::Error>,
    },
    /// An onion circuit failed.
    #[error(transparent)]
    Onion(#[from] warren_protocol::onion::OnionError),
    /// The local control API could not be reached or refused the call.
    #[error("control API: {0}")]
    Api(String),
    /// The executor refused or failed a job, or could not load a model.
    #[error(transparent)]
    Inference(#[from] warren_inference::Error),
    /// A remote inference job failed.
    #[error("inference job on {peer}: {detail}")]
    Job {
        /// The operator.
        peer: PeerId,
        /// What went wrong (the operator's failure code and reason, or the stream error).
        detail: String,
    },
    /// The sandboxed worker process: its pipe carried a malformed or oversized frame, it could not
    /// be started or confined, or it died.
    #[error("worker: {0}")]
    Worker(String),
    /// A credit receipt exchange with a peer failed (spec/credits.md).
    #[error("credits with {peer}: {detail}")]
    Credits {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        detail: String,
    },
    /// A model could not be served or used.
    #[error("model {model}: {detail}")]
    Model {
        /// The model id or name.
        model: String,
        /// What is wrong.
        detail: String,
    },
}
