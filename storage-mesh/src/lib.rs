//! warren-storage-mesh: the content-addressed storage mesh.
//!
//! This crate owns how a node stores files: cutting a file into 1 MiB chunks, compressing each
//! into a block ([`chunk`]), building the manifest tree that names the file, and the block store
//! on disk ([`Store`]): blocks by id, pins, garbage collection, and the space used and offered.
//! Every read is verified against the block's id; corrupt data is never returned. The formats
//! (ids, chunk blocks, manifests) are specified in `spec/storage.md`; the ids and manifests
//! themselves live in `warren-protocol` ([`ContentId`], [`Manifest`]).
//!
//! It must not open sockets or run an async runtime: `warren-node` moves blocks between peers and
//! calls [`Store`] from blocking threads. Placement at RF, repair and proofs of storage ("Storage
//! mesh II") are pure functions and state machines where possible, so that `simulations/` can run
//! them at 10⁵ peers: how a block request is answered ([`serve`]), the race between the holders
//! of a block and its hedging ([`fetch`]), and what audits taught this node ([`audit`]).
//!
//! # Using it
//!
//! ```no_run
//! # fn main() -> Result<(), warren_storage_mesh::Error> {
//! use warren_storage_mesh::{PutOptions, Store};
//!
//! let store = Store::open("/var/lib/warren/store".as_ref(), 100 << 30)?;
//! let file = std::fs::File::open("notes.txt").map_err(warren_storage_mesh::Error::Read)?;
//! let opts = PutOptions { name: Some("notes.txt".into()), ..PutOptions::default() };
//! let put = store.put(file, &opts, &|bytes| eprintln!("{bytes} bytes stored"))?;
//! println!("{}", put.cid); // bafir4i…
//! store.get(&put.cid, std::io::stdout().lock(), &|_| {})?;
//! # Ok(())
//! # }
//! ```
//!
//! `Store` is `Send + Sync`: share one `Arc<Store>` and call it from blocking threads
//! (`tokio::task::spawn_blocking`). Reads run concurrently; writes (put, put_block, pin, unpin,
//! gc) take turns.

pub mod audit;
pub mod audit_pace;
pub mod background;
pub mod cache;
pub mod chunk;
mod directory;
mod error;
pub mod fetch;
mod gc;
pub mod hot;
mod ingest;
pub mod lease;
mod lease_store;
mod open;
pub mod pieces;
pub mod pieces_watch;
pub mod placement;
pub mod proof;
mod read;
pub mod repair;
pub mod seal;
pub mod serve;
mod store;
pub mod stream;
pub mod stripe;
pub mod sweep;
mod sweep_store;
#[cfg(test)]
mod test_util;
#[cfg(any(test, feature = "test-data"))]
pub mod testdata;
mod tree;

pub use directory::MAX_TREE_ROOTS;
pub use error::Error;
pub use gc::GcReport;
pub use ingest::{EncodedChunk, PutOptions, PutOutcome};
pub use lease_store::{Held, LeaseInfo};
pub use read::{MAX_FILE_CHUNKS, MAX_FILE_SIZE};
pub use seal::{Opened, SealOptions, SealOutcome};
pub use store::{DISK_RESERVE, INLINE_MAX, PinInfo, Ready, Responsibilities, Store, Usage};
pub use warren_protocol::{
    CHUNK_SIZE, Capability, Class, Codec, ContentId, DirEntry, Directory, EntryKind, FileKey,
    MANIFEST_FANOUT, Manifest, ManifestEntry,
};
