//! Directories: put one level of a tree, list a path in a tree.
//!
//! | method | path | body / answer |
//! |--------|------|---------------|
//! | POST   | `/v1/put-dir?pin=&rf=` | [`PutDirRequest`]: names → ids stored here; answer [`PutView`] |
//! | GET    | `/v1/ls/{cid}?path=a/b` | [`LsView`]: what the path names, with a directory's entries |
//!
//! `warren put DIR` puts the files, then each directory bottom up. The node sets each entry's
//! kind and size from the root it names (which must be stored here), so a directory's id depends
//! only on the tree. Listings fetched from peers are verified block by block and decoded with
//! every rule of `spec/storage.md` ("Directories") before a name is shown: a hostile listing
//! (`..`, `/`, duplicates, unsorted) is refused with the rule it breaks.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use serde::Deserialize;
use warren_protocol::{ContentId, Directory, EntryKind, directory::MAX_LISTING_SIZE};

use super::files::{blocking, parse_cid};
use super::{ApiError, AppState, private_dirs};
use std::sync::Arc;

use warren_storage_mesh::Store;

use crate::storage::{FetchSession, Mesh};
use crate::view::{DirEntryView, LsView, PutDirRequest, PutView};

/// Most path components `ls` follows.
const MAX_PATH_DEPTH: usize = 256;

#[derive(Debug, Deserialize)]
pub(super) struct PutDirQuery {
    pin: Option<bool>,
    rf: Option<usize>,
    class: Option<String>,
}

pub(super) async fn put_dir(
    State(s): State<AppState>,
    Query(q): Query<PutDirQuery>,
    headers: HeaderMap,
    Json(req): Json<PutDirRequest>,
) -> Result<Json<PutView>, ApiError> {
    let rf = q.rf.unwrap_or(s.mesh.default_rf());
    if rf > warren_storage_mesh::placement::MAX_RF {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "rf {rf} is above the limit of {}",
                warren_storage_mesh::placement::MAX_RF
            ),
        ));
    }
    let pin = q.pin.unwrap_or(true);
    match (q.class.as_deref(), super::files::key_header(&headers)?) {
        (None | Some("public"), None) => {}
        (Some("private"), Some(key)) => {
            let (out, cap) = private_dirs::put(&s, req, key, pin).await?;
            let replication = if rf > 0 {
                Some(s.mesh.replicate(out.cid, rf).await?)
            } else {
                s.mesh.keep_here(out.cid).await?;
                None
            };
            return Ok(Json(PutView {
                replication,
                cid: out.cid.to_string(),
                size: out.size,
                blocks: out.blocks,
                stored_bytes: out.stored_bytes,
                new_bytes: out.new_bytes,
                pinned: pin,
                class: "private".into(),
                capability: Some(cap),
                pieces: None,
            }));
        }
        (class, _) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "a directory is public, or private with its key in x-warren-key \
                     (class {class:?} given)"
                ),
            ));
        }
    }
    let mut names = Vec::with_capacity(req.entries.len());
    for e in req.entries {
        names.push((e.name, parse_cid(&e.cid)?));
    }
    let mut release = Vec::with_capacity(req.release.len());
    for cid in &req.release {
        release.push(parse_cid(cid)?);
    }
    let out = blocking(&s.store, move |st| {
        let out = st.put_directory(names, pin)?;
        if pin {
            // Kept by the directory now: the pins the client took while putting it go.
            for cid in release.iter().filter(|c| **c != out.cid) {
                st.unpin(cid)?;
            }
        }
        Ok(out)
    })
    .await?;
    let replication = if rf > 0 {
        Some(s.mesh.replicate(out.cid, rf).await?)
    } else {
        s.mesh.keep_here(out.cid).await?;
        None
    };
    Ok(Json(PutView {
        replication,
        cid: out.cid.to_string(),
        size: out.size,
        blocks: out.blocks,
        stored_bytes: out.stored_bytes,
        new_bytes: out.new_bytes,
        pinned: pin,
        class: "public".into(),
        capability: None,
        pieces: None,
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct LsQuery {
    path: Option<String>,
}

pub(super) async fn ls(
    State(s): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<LsQuery>,
    headers: HeaderMap,
) -> Result<Json<LsView>, ApiError> {
    let root = parse_cid(&cid)?;
    let parts: Vec<&str> = q
        .path
        .as_deref()
        .unwrap_or("")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > MAX_PATH_DEPTH {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "the path has {} components, at most {MAX_PATH_DEPTH}",
                parts.len()
            ),
        ));
    }
    if let Some(key) = super::files::key_header(&headers)? {
        let cap = warren_protocol::Capability { cid: root, key };
        return Ok(Json(private_dirs::ls(&s, cap, &parts).await?));
    }
    let (mut cid, mut kind, mut size) = (root, None, None);
    let mut walked = String::new();
    for part in parts {
        let dir = listing(&s.store, &s.mesh, cid).await?;
        let Some(entry) = dir.find(part) else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("{root}{walked} has no entry {part:?}"),
            ));
        };
        walked.push('/');
        walked.push_str(part);
        (cid, kind, size) = (entry.cid, Some(entry.kind), Some(entry.size));
    }
    let session = FetchSession::default();
    s.mesh.fetch_manifests(cid, &session).await?;
    let root_manifest = blocking(&s.store, move |st| st.stat(&cid)).await?;
    let is_dir = root_manifest.is_directory();
    if let Some(kind) = kind
        && (kind == EntryKind::Dir) != is_dir
    {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            format!(
                "{root}{walked} is listed as a {kind} but {cid} is a {}",
                if is_dir { "directory" } else { "file" }
            ),
        ));
    }
    if !is_dir {
        if let Some(size) = size
            && size != root_manifest.size
        {
            return Err(ApiError(
                StatusCode::BAD_GATEWAY,
                format!(
                    "{root}{walked} is listed with {size} bytes but the file {cid} has {}",
                    root_manifest.size
                ),
            ));
        }
        return Ok(Json(LsView {
            cid: cid.to_string(),
            kind: EntryKind::File.to_string(),
            size: root_manifest.size,
            entries: None,
            capability: None,
        }));
    }
    let dir = listing(&s.store, &s.mesh, cid).await?;
    let total = dir.total_size().unwrap_or(u64::MAX);
    Ok(Json(LsView {
        cid: cid.to_string(),
        kind: EntryKind::Dir.to_string(),
        size: total,
        entries: Some(
            dir.entries
                .into_iter()
                .map(|e| DirEntryView {
                    name: e.name,
                    kind: e.kind.to_string(),
                    cid: e.cid.to_string(),
                    size: e.size,
                    capability: None,
                })
                .collect(),
        ),
        capability: None,
    }))
}

/// The listing of the directory `cid`: its blocks fetched from peers where not stored here
/// (each verified against its id), then decoded and checked.
pub(super) async fn listing(
    store: &Arc<Store>,
    mesh: &Mesh,
    cid: ContentId,
) -> Result<Directory, ApiError> {
    let session = FetchSession::default();
    let missing = mesh.fetch_manifests(cid, &session).await?;
    let root = blocking(store, move |st| st.stat(&cid)).await?;
    if !root.is_directory() {
        return Err(ApiError::from(warren_storage_mesh::Error::NotADirectory {
            cid,
        }));
    }
    if root.size > MAX_LISTING_SIZE as u64 {
        return Err(ApiError::from(warren_storage_mesh::Error::BadDirectory {
            cid,
            reason: format!(
                "its listing declares {} bytes, over the limit of {MAX_LISTING_SIZE}",
                root.size
            ),
        }));
    }
    let fetched: Vec<_> = mesh.fetch_blocks(missing, &session, None).collect().await;
    for r in fetched {
        r?;
    }
    blocking(store, move |st| st.read_directory(&cid)).await
}
