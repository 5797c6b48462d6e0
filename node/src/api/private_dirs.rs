//! Private directories (`spec/storage.md`, "Private directories"): a listing sealed as a private
//! file whose inner media type says "directory", its entries' keys derived from its key
//! (`FileKey::entry_key`), so names and sizes are inside the encryption.
//!
//! `POST /v1/put-dir?class=private` with the directory's key in `x-warren-key` seals the entries
//! given (names checked, sorted; `kind` and `size` are the client's: the node cannot open the
//! entries); `GET /v1/ls/{cid}?path=` with the key opens the listing, follows the path deriving
//! each key, and answers each entry with its capability.

use axum::http::StatusCode;
use futures::StreamExt;
use warren_protocol::directory::{DIRECTORY_MEDIA_TYPE, MAX_LISTING_SIZE};
use warren_protocol::{Capability, Class, DirEntry, Directory, EntryKind, FileKey};
use warren_storage_mesh::seal::{SealOptions, sealed_len};

use super::files::blocking;
use super::{ApiError, AppState};
use crate::storage::FetchSession;
use crate::view::{DirEntryView, LsView, PutDirRequest};

fn bad(text: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, text)
}

/// Seals the listing of `req`'s entries with `key`; returns the put and the capability.
pub(super) async fn put(
    s: &AppState,
    req: PutDirRequest,
    key: FileKey,
    pin: bool,
) -> Result<(warren_storage_mesh::PutOutcome, String), ApiError> {
    let mut entries = Vec::with_capacity(req.entries.len());
    for e in req.entries {
        let kind = match e.kind.as_str() {
            "file" => EntryKind::File,
            "dir" => EntryKind::Dir,
            other => {
                return Err(bad(format!(
                    "entry {:?}: kind {other:?} is not file or dir",
                    e.name
                )));
            }
        };
        entries.push(DirEntry {
            name: e.name,
            kind,
            cid: super::files::parse_cid(&e.cid)?,
            size: e.size,
        });
    }
    let mut dir = Directory { entries };
    dir.sort();
    let bytes = dir.encode().map_err(|e| bad(e.to_string()))?;
    let opts = SealOptions {
        class: Class::Private,
        name: None,
        media_type: Some(DIRECTORY_MEDIA_TYPE.into()),
    };
    let k = key.clone();
    let (out, _) = blocking(&s.store, move |st| {
        st.put_sealed(std::io::Cursor::new(bytes), &k, &opts, pin, &|_| {})
    })
    .await?;
    let cap = Capability { cid: out.cid, key }.to_string();
    Ok((out, cap))
}

/// Opens the private directory `cap` (fetching and verifying its blocks where not stored here).
async fn listing(s: &AppState, cap: &Capability) -> Result<Option<(Directory, u64)>, ApiError> {
    let cid = cap.cid;
    let session = FetchSession::default();
    let missing = s.mesh.fetch_manifests(cid, &session).await?;
    let root = blocking(&s.store, move |st| st.stat(&cid)).await?;
    if root.size > sealed_len(MAX_LISTING_SIZE as u64) * 2 {
        // A file this large is no listing; its plaintext size is answered without opening it.
        return Ok(None);
    }
    let fetched: Vec<_> = s.mesh.fetch_blocks(missing, &session, None).collect().await;
    for r in fetched {
        r?;
    }
    let c = cap.clone();
    let (opened, plain) = blocking(&s.store, move |st| {
        let mut plain = Vec::new();
        let opened = st.get_sealed(&c, &mut plain, &|_| {})?;
        Ok((opened, plain))
    })
    .await?;
    if opened.media_type.as_deref() != Some(DIRECTORY_MEDIA_TYPE) {
        return Ok(None);
    }
    let dir = Directory::decode(&cid, &plain).map_err(|e| {
        ApiError(
            StatusCode::BAD_GATEWAY,
            format!("private directory {cid}: {e}"),
        )
    })?;
    let total = dir.total_size().unwrap_or(u64::MAX);
    Ok(Some((dir, total)))
}

/// `ls` in a private tree: `parts` followed from `root`, each key derived from its parent's.
pub(super) async fn ls(s: &AppState, root: Capability, parts: &[&str]) -> Result<LsView, ApiError> {
    let shown = root.cid;
    let (mut cap, mut kind, mut size) = (root, EntryKind::Dir, None);
    let mut walked = String::new();
    for part in parts {
        let Some((dir, _)) = listing(s, &cap).await? else {
            return Err(bad(format!(
                "{shown}{walked} is a file, so it has no entry {part:?}"
            )));
        };
        let Some(entry) = dir.find(part) else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("{shown}{walked} has no entry {part:?}"),
            ));
        };
        walked.push('/');
        walked.push_str(part);
        cap = Capability {
            cid: entry.cid,
            key: cap.key.entry_key(part),
        };
        (kind, size) = (entry.kind, Some(entry.size));
    }
    if kind == EntryKind::File {
        return Ok(LsView {
            cid: cap.cid.to_string(),
            kind: EntryKind::File.to_string(),
            size: size.unwrap_or(0),
            entries: None,
            capability: Some(cap.to_string()),
        });
    }
    let Some((dir, total)) = listing(s, &cap).await? else {
        return Err(bad(format!(
            "{shown}{walked} is not a private directory (the key opens no listing there)"
        )));
    };
    let entries = dir
        .entries
        .into_iter()
        .map(|e| DirEntryView {
            capability: Some(
                Capability {
                    cid: e.cid,
                    key: cap.key.entry_key(&e.name),
                }
                .to_string(),
            ),
            name: e.name,
            kind: e.kind.to_string(),
            cid: e.cid.to_string(),
            size: e.size,
        })
        .collect();
    Ok(LsView {
        cid: cap.cid.to_string(),
        kind: EntryKind::Dir.to_string(),
        size: total,
        entries: Some(entries),
        capability: Some(cap.to_string()),
    })
}
