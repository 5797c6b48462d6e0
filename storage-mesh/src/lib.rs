//! warren-storage-mesh: the content-addressed storage mesh.
//!
//! Will own chunking (1 MiB, brotli, BLAKE3 ids as CIDv1), manifests and their DAG, the redb block
//! store, placement at RF, repair planning and proof-of-storage — as pure functions and state
//! machines wherever possible, so `simulations/` can run them at 10⁵ peers. It must not open
//! sockets: `warren-node` moves its messages.
//!
//! The foundation issue only reserves this crate; its contents land with "Storage mesh I and II".
