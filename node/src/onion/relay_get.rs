//! The relay's GET: before the fetch, the root manifest alone, so its declared size is checked
//! against the runner's limit before any other block of the file is fetched; after the answer,
//! the cache of fetched blocks trimmed back within its share of the offer.

use warren_protocol::ContentId;

use crate::error::NodeError;
use crate::storage::{FetchSession, Mesh};

/// The size the file `root` declares: its root manifest is fetched (and cached) when this node
/// lacks it, verified, and read; nothing else of the file is fetched.
pub(crate) async fn root_size(mesh: &Mesh, root: ContentId) -> Result<u64, NodeError> {
    if !mesh.store_call(move |s| s.has_block(&root)).await? {
        let session = FetchSession::default();
        let bytes = mesh.fetch_block(root, &session).await?;
        mesh.store_call(move |s| s.put_block_cached(&root, &bytes))
            .await?;
    }
    mesh.store_call(move |s| warren_storage_mesh::stream::declared_size(s, &root, u64::MAX))
        .await
}

/// Keeps the blocks this node cached for reads within their share of the offer
/// ([`warren_storage_mesh::Store::trim_cache`], least recently used first). On a blocking thread.
pub(crate) fn trim(store: &warren_storage_mesh::Store) {
    match store.trim_cache() {
        Ok(r) if r.blocks_removed > 0 => tracing::debug!(
            blocks = r.blocks_removed,
            bytes = r.bytes_freed,
            "cache trimmed after a relay get"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot trim the block cache: {e}"),
    }
}
