//! The file and storage views: put, pins, gc, stat, where, audits and replication.

use serde::{Deserialize, Serialize};

/// What the local block store holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StorageUsage {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored (compressed blocks and manifests).
    pub stored_bytes: u64,
    /// Bytes offered to the mesh.
    pub offered_bytes: u64,
}

/// `POST /v1/put`: what was stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutView {
    /// The file's id (root manifest CID).
    pub cid: String,
    /// File size in bytes.
    pub size: u64,
    /// Blocks in its DAG (chunks and manifests).
    pub blocks: u64,
    /// Bytes its blocks take in the store.
    pub stored_bytes: u64,
    /// Bytes newly written (0 when the same file was already stored).
    pub new_bytes: u64,
    /// Whether the root is pinned.
    pub pinned: bool,
    /// Copies placed on other peers (absent with `rf=0`).
    pub replication: Option<ReplicationReport>,
    /// `public`, `shared` or `private`.
    pub class: String,
    /// For a sealed file, the read capability (`warren:CID#KEY`): the only way to read it.
    pub capability: Option<String>,
    /// With `pieces`: the erasure-coded pieces placed instead of whole copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pieces: Option<PiecesReport>,
}

/// `POST /v1/pieces/{id}`: the stripes of a file kept as pieces, and what a repair restored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiecesHealth {
    /// The piece manifest's id.
    pub manifest: String,
    /// Data pieces per stripe.
    pub data: u8,
    /// Parity pieces per stripe.
    pub parity: u8,
    /// A stripe is rebuilt when fewer pieces than this count.
    pub repair_at: usize,
    /// Each stripe.
    pub stripes: Vec<StripeHealth>,
    /// Pieces rebuilt and placed by this check.
    pub restored: usize,
}

/// One stripe in a [`PiecesHealth`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeHealth {
    /// Its index.
    pub stripe: usize,
    /// Pieces whose holder passed an audit of it now.
    pub online: usize,
    /// Pieces that count (online, or offline for less than the lazy time).
    pub counted: usize,
    /// `healthy`, `repair N pieces`, or wait.
    pub verdict: String,
    /// Pieces rebuilt and placed.
    pub restored: usize,
}

/// `POST /v1/put?pieces=K+M`: the file's pieces (spec/storage.md, "Pieces").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiecesReport {
    /// The piece manifest's id: what `warren get` takes to read the file from its pieces.
    pub manifest: String,
    /// Data pieces per stripe (any this many rebuild it).
    pub data: u8,
    /// Parity pieces per stripe.
    pub parity: u8,
    /// Stripes of the file.
    pub stripes: usize,
    /// Pieces stored on other peers.
    pub placed: usize,
    /// Pieces that could not be placed.
    pub failed: usize,
    /// Distinct peers holding at least one piece.
    pub holders: Vec<String>,
    /// Whole copies of the piece manifest placed on other peers.
    pub manifest_copies: usize,
}

/// One entry of `GET /v1/pins`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PinView {
    /// Root CID.
    pub cid: String,
    /// Name from the manifest.
    pub name: Option<String>,
    /// File size.
    pub size: u64,
    /// Blocks in its DAG.
    pub blocks: u64,
    /// Bytes its blocks take.
    pub stored_bytes: u64,
    /// `public`, `shared` or `private` (for a sealed file, `size` is the sealed size and `name`
    /// is absent: both are inside the encryption).
    pub class: String,
}

/// `POST /v1/gc`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcView {
    /// Unpinned blocks removed.
    pub blocks_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
}

/// `GET /v1/leases`: one replica held for the mesh and the lease it is held under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseView {
    /// The block.
    pub block: String,
    /// The RF its origin placed it with (what this node keeps when it repairs).
    pub rf: u8,
    /// The origin's peer id (who signed the ticket and pays for the copy).
    pub origin: String,
    /// When the lease ends, Unix seconds.
    pub expires: u64,
}

/// `GET /v1/stat/{cid}`: a file's root manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatView {
    /// Root CID.
    pub cid: String,
    /// File size.
    pub size: u64,
    /// Manifest tree depth (0: the root lists chunks).
    pub depth: u8,
    /// Entries in the root manifest.
    pub entries: usize,
    /// File name.
    pub name: Option<String>,
    /// Media type.
    pub media_type: Option<String>,
}
fn answered_default() -> bool {
    true
}

/// One audit this node ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The holder audited.
    pub subject: String,
    /// The block challenged.
    pub block: String,
    /// Whether the proof verified against the block id.
    pub passed: bool,
    /// Whether the holder answered within the audit deadline. `passed: false, answered: false`
    /// is no answer (unreachable, timed out): not a failed proof, not published.
    #[serde(default = "answered_default")]
    pub answered: bool,
    /// Why it failed.
    pub reason: Option<String>,
    /// When (unix ms).
    pub time_ms: u64,
}

/// One holder in a [`WhereReport`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HolderView {
    /// Its peer id.
    pub peer: String,
    /// Connected now and offering storage (this node counts as live).
    pub live: bool,
    /// This node (it stores the block).
    pub this_node: bool,
    /// The storage tier its record offers (connected peers only).
    pub tier: Option<warren_protocol::Tier>,
}

/// The holders of one block of a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockHolders {
    /// The block.
    pub block: String,
    /// Its length in bytes.
    pub len: u64,
    /// This node if it stores the block, then the peers whose provider records claim it.
    pub holders: Vec<HolderView>,
    /// Live holders: the copies actually held now.
    pub rf_held: usize,
    /// Extra copies this node wants for the block because it served it often lately (hot
    /// content, 0 when it is cold); its repair pass places them on hot-tier peers.
    pub hot_extra: usize,
}

/// `warren where`: the holders of every block of a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WhereReport {
    /// The file.
    pub cid: String,
    /// The RF this node placed it with, if it put it.
    pub wanted_rf: Option<usize>,
    /// The fewest live holders of any block.
    pub min_rf_held: usize,
    /// Every block, root first, in the order of the tree walk.
    pub blocks: Vec<BlockHolders>,
}

/// What `replicate` did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplicationReport {
    /// Replication factor asked for.
    pub rf: usize,
    /// Blocks of the file.
    pub blocks: usize,
    /// Copies stored on other peers.
    pub copies: usize,
    /// Copies that failed (the repair task retries them).
    pub failed: usize,
    /// Distinct peers holding at least one block.
    pub holders: Vec<String>,
}

/// One entry of a directory, as `GET /v1/ls` answers it and `POST /v1/put-dir` is asked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntryView {
    /// The entry's name (one path component).
    pub name: String,
    /// `file` or `dir` (set by the node from what `cid` names; ignored in a put).
    #[serde(default)]
    pub kind: String,
    /// The id of the file or directory.
    pub cid: String,
    /// A file's size, a directory's total (set by the node; ignored in a put).
    #[serde(default)]
    pub size: u64,
    /// In a private directory's listing: the entry's capability (derived from the directory's
    /// key, which the caller holds). In a put of a private directory, `kind` and `size` are
    /// the client's (the node cannot open the entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
}

/// `POST /v1/put-dir`: the entries of one directory, each already stored on the node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutDirRequest {
    /// The entries (any order; the node sorts them).
    pub entries: Vec<DirEntryView>,
    /// Ids the client pinned while putting this tree, unpinned once this directory (pinned,
    /// and keeping them all) is stored: a tree put is then one pin.
    #[serde(default)]
    pub release: Vec<String>,
}

/// `GET /v1/ls/{cid}?path=`: what a path in a tree names.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LsView {
    /// The id of what the path names.
    pub cid: String,
    /// `file` or `dir`.
    pub kind: String,
    /// A file's size, a directory's total.
    pub size: u64,
    /// A directory's entries, sorted by name (absent for a file).
    pub entries: Option<Vec<DirEntryView>>,
    /// What the path names, as a capability, when it lies in a private directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
}
