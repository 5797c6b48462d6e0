//! The relay's GET, before the fetch: the root manifest alone, so its declared size is checked
//! against the runner's limit before any other block of the file is fetched.

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
