//! Client side of directories: `warren put DIR`, `warren get CID[/PATH] -o DIR`, `warren ls`.
//!
//! `put` walks the directory without following symbolic links (each one is skipped and said, as
//! are devices, sockets, pipes and names that cannot be entry names), puts every file, then every
//! directory bottom up (`POST /v1/put-dir`); empty directories are kept. `get` recreates a tree
//! under a new or empty directory: every name is checked again here (one path component, never
//! `..`), every directory is created new (never an existing one, so never through a link), and
//! every file is written to a new temporary file opened without following links and renamed
//! into place once verified. Sizes are checked against the listing as they arrive, and the tree
//! may not name more entries than [`MAX_TREE_ROOTS`], so a listing that repeats a subdirectory
//! cannot make a small tree write without end.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use warren_protocol::{Capability, Class, FileKey, directory::name_problem};
use warren_storage_mesh::MAX_TREE_ROOTS;

use crate::api::KEY_HEADER;
use crate::cli::client::ApiClient;
use crate::cli::transfer::{self, PutRequest};
use crate::view::{DirEntryView, LsView, PinView, PutDirRequest, PutView};

/// Files of one directory uploaded at once.
const PARALLEL_PUTS: usize = 4;
/// Files of one directory downloaded at once (each fetched from its holders in turn).
const PARALLEL_GETS: usize = 8;

/// A scanned tree.
enum Node {
    File { path: PathBuf, size: u64 },
    Dir { entries: Vec<(String, Node)> },
}

/// What a scan found: the tree, its bytes and files, and what it skipped (said to the user).
struct Scan {
    root: Node,
    bytes: u64,
    files: u64,
    skipped: Vec<String>,
}

fn scan(path: &Path) -> anyhow::Result<Scan> {
    let mut scan = Scan {
        root: Node::Dir {
            entries: Vec::new(),
        },
        bytes: 0,
        files: 0,
        skipped: Vec::new(),
    };
    scan.root = scan_dir(path, &mut scan)?;
    Ok(scan)
}

fn scan_dir(path: &Path, scan: &mut Scan) -> anyhow::Result<Node> {
    let mut entries = Vec::new();
    let mut listing: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    listing.sort_by_key(|e| e.file_name());
    for entry in listing {
        let child = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            scan.skipped.push(format!(
                "skipped {}: its name is not UTF-8",
                child.display()
            ));
            continue;
        };
        if let Some(problem) = name_problem(&name) {
            scan.skipped
                .push(format!("skipped {}: the name {problem}", child.display()));
            continue;
        }
        // The entry's own type: a symbolic link is a link, never what it points to.
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", child.display()))?;
        if kind.is_symlink() {
            scan.skipped.push(format!(
                "skipped {}: a symbolic link (links are not followed)",
                child.display()
            ));
        } else if kind.is_dir() {
            let node = scan_dir(&child, scan)?;
            entries.push((name, node));
        } else if kind.is_file() {
            let size = entry
                .metadata()
                .with_context(|| format!("reading {}", child.display()))?
                .len();
            scan.bytes += size;
            scan.files += 1;
            entries.push((name, Node::File { path: child, size }));
        } else {
            scan.skipped.push(format!(
                "skipped {}: not a regular file or directory (a device, socket or pipe)",
                child.display()
            ));
        }
    }
    Ok(Node::Dir { entries })
}

fn bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {msg} [{wide_bar}] {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// How a tree is put.
struct Putter<'a> {
    api: &'a ApiClient,
    pin: bool,
    rf: usize,
    bar: ProgressBar,
    files: u64,
    done: std::sync::atomic::AtomicU64,
    /// Ids this put pinned that were not pinned before: released once the top directory,
    /// which keeps them all, is pinned.
    pinned: std::sync::Mutex<HashSet<String>>,
    before: HashSet<String>,
}

/// Bytes of the files under `entries`.
fn tree_size(entries: &[(String, Node)]) -> u64 {
    entries
        .iter()
        .map(|(_, n)| match n {
            Node::File { size, .. } => *size,
            Node::Dir { entries } => tree_size(entries),
        })
        .sum()
}

impl Putter<'_> {
    fn pinned(&self, cid: &str) {
        if self.pin
            && !self.before.contains(cid)
            && let Ok(mut set) = self.pinned.lock()
        {
            set.insert(cid.to_owned());
        }
    }

    async fn put_file(
        &self,
        name: &str,
        path: &Path,
        size: u64,
        key: Option<FileKey>,
    ) -> anyhow::Result<String> {
        let req = PutRequest {
            name: Some(name.to_owned()),
            media_type: None,
            pin: self.pin,
            rf: self.rf,
            class: if key.is_some() {
                Class::Private
            } else {
                Class::Public
            },
            anon: false,
            key,
            pieces: None,
        };
        let view = transfer::put(self.api, path, req, true).await?;
        self.pinned(&view.cid);
        self.bar.inc(size);
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.bar.set_message(format!("files {done}/{}", self.files));
        Ok(view.cid)
    }

    /// Puts a directory: public, or (with `key`) private, each entry sealed with its key
    /// derived from `key` and the listing sealed with `key`.
    fn put_dir<'s>(
        &'s self,
        entries: &'s [(String, Node)],
        release: bool,
        key: Option<FileKey>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<PutView>> + 's>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(entries.len());
            let files: Vec<_> = entries
                .iter()
                .filter_map(|(name, node)| match node {
                    Node::File { path, size } => Some((name, path, *size)),
                    Node::Dir { .. } => None,
                })
                .collect();
            let key = &key;
            let mut puts = futures::stream::iter(files)
                .map(|(name, path, size)| async move {
                    let k = key.as_ref().map(|k| k.entry_key(name));
                    self.put_file(name, path, size, k)
                        .await
                        .map(|cid| (name.clone(), cid, "file", size))
                })
                .buffer_unordered(PARALLEL_PUTS);
            while let Some(put) = puts.next().await {
                out.push(put?);
            }
            drop(puts);
            for (name, node) in entries {
                if let Node::Dir { entries } = node {
                    let k = key.as_ref().map(|k| k.entry_key(name));
                    let view = self.put_dir(entries, false, k).await?;
                    if key.is_none() {
                        self.pinned(&view.cid);
                    }
                    out.push((name.clone(), view.cid, "dir", tree_size(entries)));
                }
            }
            if let Some(key) = key {
                // Each entry stays pinned on its own: the node cannot see into the listing.
                let req = PutDirRequest {
                    entries: out
                        .into_iter()
                        .map(|(name, cid, kind, size)| DirEntryView {
                            name,
                            kind: kind.into(),
                            cid,
                            size,
                            capability: None,
                        })
                        .collect(),
                    release: Vec::new(),
                };
                let query = [
                    ("pin", self.pin.to_string()),
                    ("rf", self.rf.to_string()),
                    ("class", "private".to_owned()),
                ];
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    (KEY_HEADER, key.to_text()),
                ];
                let body = serde_json::to_vec(&req)?;
                return Ok(self
                    .api
                    .post_body::<PutView>("/v1/put-dir", &query, &headers, body.into())
                    .await?);
            }
            let release = if release {
                let mut set = self.pinned.lock().map(|s| s.clone()).unwrap_or_default();
                set.retain(|c| !self.before.contains(c));
                set.into_iter().collect()
            } else {
                Vec::new()
            };
            let req = PutDirRequest {
                entries: out
                    .into_iter()
                    .map(|(name, cid, _, _)| DirEntryView {
                        name,
                        kind: String::new(),
                        cid,
                        size: 0,
                        capability: None,
                    })
                    .collect(),
                release,
            };
            let path = format!("/v1/put-dir?pin={}&rf={}", self.pin, self.rf);
            Ok(self.api.post_json::<_, PutView>(&path, &req).await?)
        })
    }
}

/// `warren put DIR`: puts the tree; returns the top directory's put and the lines it skipped.
pub(super) async fn put_dir(
    api: &ApiClient,
    dir: &Path,
    pin: bool,
    rf: usize,
    private: bool,
    quiet: bool,
) -> anyhow::Result<PutView> {
    let path = dir.to_owned();
    let scan = tokio::task::spawn_blocking(move || scan(&path)).await??;
    for line in &scan.skipped {
        eprintln!("warren: {line}");
    }
    let before = if pin {
        api.get::<Vec<PinView>>("/v1/pins")
            .await?
            .into_iter()
            .map(|p| p.cid)
            .collect()
    } else {
        HashSet::new()
    };
    let putter = Putter {
        api,
        pin,
        rf,
        bar: bar(scan.bytes, quiet),
        files: scan.files,
        done: 0.into(),
        pinned: Default::default(),
        before,
    };
    let Node::Dir { entries } = &scan.root else {
        bail!("{} is not a directory", dir.display());
    };
    let key = private.then(|| {
        let mut bytes = [0u8; warren_protocol::capability::FILE_KEY_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        FileKey::from_bytes(bytes)
    });
    let view = putter.put_dir(entries, true, key).await;
    putter.bar.finish_and_clear();
    view
}

/// `GET /v1/ls/{cid}?path=`; `cid` may be a capability `warren:CID#KEY` (a private tree).
pub(super) async fn ls(api: &ApiClient, cid: &str, path: &str) -> anyhow::Result<LsView> {
    let (cid, headers) = if Capability::looks_like(cid) {
        let cap: Capability = cid.parse()?;
        (cap.cid.to_string(), vec![(KEY_HEADER, cap.key.to_text())])
    } else {
        (cid.to_owned(), Vec::new())
    };
    let mut url = format!("/v1/ls/{cid}");
    if !path.is_empty() {
        url = format!("{url}?path={}", percent_encode(path));
    }
    if headers.is_empty() {
        return Ok(api.get::<LsView>(&url).await?);
    }
    let resp = api.get_stream(&url, &headers).await?;
    Ok(serde_json::from_slice(&resp.bytes().await?)?)
}

/// `CAPABILITY/path/in/tree` as the capability and the path (empty when none).
pub(super) fn split_capability(text: &str) -> (&str, &str) {
    match text
        .find('#')
        .and_then(|h| text[h..].find('/').map(|s| h + s))
    {
        Some(slash) => (&text[..slash], &text[slash + 1..]),
        None => (text, ""),
    }
}

/// `warren get CID -o DIR` for a directory: recreates the tree `view` (of `cid`) under `out`,
/// which must not exist or be an empty directory. Returns the files and bytes written.
pub(super) async fn get_dir(
    api: &ApiClient,
    view: LsView,
    out: &Path,
    quiet: bool,
) -> anyhow::Result<(u64, u64)> {
    match std::fs::symlink_metadata(out) {
        Ok(meta) if meta.is_dir() => {
            if std::fs::read_dir(out)?.next().is_some() {
                bail!(
                    "{} exists and is not empty: give a new or empty directory",
                    out.display()
                );
            }
        }
        Ok(_) => bail!(
            "{} exists and is not a directory (links are not followed)",
            out.display()
        ),
        Err(_) => {
            std::fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?
        }
    }
    let bar = bar(view.size, quiet);
    let mut stack = vec![(view, out.to_owned())];
    let (mut files, mut bytes, mut entries_seen) = (0u64, 0u64, 0usize);
    while let Some((dir, local)) = stack.pop() {
        let Some(entries) = dir.entries else {
            bail!("{} is not a directory", dir.cid);
        };
        // Every name of this directory is checked before anything of it is written.
        for e in &entries {
            if let Some(problem) = name_problem(&e.name) {
                bail!(
                    "directory {} is refused: the entry name {problem}; nothing is written for it",
                    dir.cid
                );
            }
        }
        entries_seen += entries.len();
        if entries_seen > MAX_TREE_ROOTS {
            bail!("the tree names more than {MAX_TREE_ROOTS} entries: refused");
        }
        let mut file_entries = Vec::new();
        for e in entries {
            let target = local.join(&e.name);
            if std::fs::symlink_metadata(&target).is_ok() {
                bail!(
                    "{} already exists (a name listed twice?): refused",
                    target.display()
                );
            }
            if e.kind == "dir" {
                let child = ls(api, e.capability.as_deref().unwrap_or(&e.cid), "").await?;
                if child.size != e.size {
                    bail!(
                        "directory {} lists {:?} with {} bytes but it holds {}",
                        dir.cid,
                        e.name,
                        e.size,
                        child.size
                    );
                }
                std::fs::create_dir(&target)
                    .with_context(|| format!("creating {}", target.display()))?;
                stack.push((child, target));
            } else {
                file_entries.push((e, target));
            }
        }
        let mut gets = futures::stream::iter(file_entries)
            .map(|(e, target)| async move {
                let what = e.capability.as_deref().unwrap_or(&e.cid);
                let n = transfer::get(api, what, Some(&target), true, false).await?;
                if n != e.size {
                    let _ = std::fs::remove_file(&target);
                    bail!(
                        "a directory lists {:?} with {} bytes but the file {} has {n}",
                        e.name,
                        e.size,
                        e.cid
                    );
                }
                Ok(n)
            })
            .buffer_unordered(PARALLEL_GETS);
        while let Some(got) = gets.next().await {
            let n = got?;
            files += 1;
            bytes += n;
            bar.inc(n);
            bar.set_message(format!("files {files}"));
        }
    }
    bar.finish_and_clear();
    Ok((files, bytes))
}

/// `text` for a URL query: unreserved bytes and `/` as they are, every other byte `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text `warren ls` prints: one line per entry, directories with a trailing `/`.
pub(super) fn ls_text(view: &LsView) -> String {
    match &view.entries {
        None => format!("{}  {:>12}  (file)\n", view.cid, view.size),
        Some(entries) => entries
            .iter()
            .map(|e| {
                let slash = if e.kind == "dir" { "/" } else { "" };
                format!("{}  {:>12}  {}{slash}\n", e.cid, e.size, e.name)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_skips_links_and_keeps_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/empty")).unwrap();
        std::fs::write(root.join("a/f.txt"), b"hello").unwrap();
        std::fs::write(root.join("ファイル"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("dirlink")).unwrap();
        let scan = scan(root).unwrap();
        assert_eq!((scan.files, scan.bytes), (2, 6));
        assert_eq!(scan.skipped.len(), 2, "{:?}", scan.skipped);
        assert!(scan.skipped.iter().all(|s| s.contains("not followed")));
        let Node::Dir { entries } = &scan.root else {
            panic!()
        };
        let names: Vec<_> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "ファイル"]);
        let Node::Dir { entries } = &entries[0].1 else {
            panic!()
        };
        assert!(
            matches!(&entries[0], (n, Node::Dir { entries }) if n == "empty" && entries.is_empty())
        );
    }

    #[test]
    fn a_capability_path_splits_after_the_key() {
        let cap = "warren:bafir4iabc#bkey";
        assert_eq!(split_capability(cap), (cap, ""));
        assert_eq!(
            split_capability("warren:bafir4iabc#bkey/sub/deep.bin"),
            (cap, "sub/deep.bin")
        );
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(percent_encode("a b/é?&"), "a%20b/%C3%A9%3F%26");
    }
}
