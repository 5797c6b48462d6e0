//! Client side of `warren put` and `warren get`: streams a file to or from the node's control API
//! with a progress bar, in bounded memory.
//!
//! `get -o FILE` writes a temporary file beside FILE and renames it only once the node has sent
//! `END` (every block verified), so FILE is either the whole verified file or untouched.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use warren_protocol::{Capability, Class};
use warren_storage_mesh::seal::convergent_key;

use crate::api::{KEY_HEADER, PutView};
use crate::cli::client::ApiClient;
use crate::framed::{Deframer, Frame};

/// Read size of uploads.
const UPLOAD_CHUNK: usize = 256 * 1024;

fn progress_bar(len: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // indicatif draws on stderr only when it is a terminal.
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} {bytes_per_sec} [{wide_bar}] {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// What `warren put` asks for besides the file.
#[derive(Clone, Debug)]
pub struct PutRequest {
    /// Name for the manifest (default: the file's name).
    pub name: Option<String>,
    /// Media type for the manifest.
    pub media_type: Option<String>,
    /// Pin the file.
    pub pin: bool,
    /// Copies to place on other peers.
    pub rf: usize,
    /// Public, shared or private.
    pub class: Class,
    /// Through an onion circuit (`/v1/anon/put`: public or private only).
    pub anon: bool,
    /// A private file's key, given rather than drawn by the node (an entry of a private
    /// directory: `FileKey::entry_key`).
    pub key: Option<warren_protocol::FileKey>,
    /// Keep it as erasure-coded pieces: `K+M`, or empty for the default code.
    pub pieces: Option<String>,
}

/// Uploads `file` (`-` = stdin) to the node; returns what the node stored (with the
/// capability, for a shared or private file).
pub async fn put(
    api: &ApiClient,
    file: &Path,
    req: PutRequest,
    quiet: bool,
) -> anyhow::Result<PutView> {
    let stdin = file == Path::new("-");
    let (reader, size): (Box<dyn AsyncRead + Send + Unpin>, Option<u64>) = if stdin {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let meta = f
            .metadata()
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", file.display());
        }
        (Box::new(f), Some(meta.len()))
    };
    let name = req.name.or_else(|| {
        if stdin {
            None
        } else {
            file.file_name().map(|n| n.to_string_lossy().into_owned())
        }
    });
    let mut headers = Vec::new();
    if req.class == Class::Shared {
        if stdin {
            bail!(
                "--class shared needs a file, not standard input: its key is a hash of the whole \
                 file (use --class private for a stream)"
            );
        }
        let (path, n, m) = (file.to_owned(), name.clone(), req.media_type.clone());
        let key = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            convergent_key(
                &[0; 32],
                n.as_deref(),
                m.as_deref(),
                std::io::BufReader::new(f),
            )
            .with_context(|| format!("hashing {}", path.display()))
        })
        .await??;
        headers.push((KEY_HEADER, key.to_text()));
    }
    if let (Class::Private, Some(key)) = (req.class, &req.key) {
        headers.push((KEY_HEADER, key.to_text()));
    }
    let mut query = vec![
        ("pin", req.pin.to_string()),
        ("rf", req.rf.to_string()),
        ("class", req.class.to_string()),
    ];
    if let Some(n) = name {
        query.push(("name", n));
    }
    if let Some(m) = req.media_type {
        query.push(("media_type", m));
    }
    if let Some(p) = req.pieces {
        query.push(("pieces", p));
    }
    if req.anon {
        if req.class == Class::Shared {
            bail!("--anon offers public and private files, not shared");
        }
        query.retain(|(k, _)| *k == "class" || *k == "name" || *k == "media_type");
        headers.clear();
    }
    let path = if req.anon { "/v1/anon/put" } else { "/v1/put" };
    let bar = progress_bar(size, quiet);
    let counter = bar.clone();
    let stream = ReaderStream::with_capacity(reader, UPLOAD_CHUNK).inspect(move |chunk| {
        if let Ok(b) = chunk {
            counter.inc(b.len() as u64);
        }
    });
    let result = api
        .post_body::<PutView>(path, &query, &headers, reqwest::Body::wrap_stream(stream))
        .await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Writes a download on its own thread, so the runtime keeps reading the network while the disk
/// takes the previous frames; a few frames may wait in between (bounded memory).
struct Writer {
    frames: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Frames waiting for the writer thread (each at most one block).
const WRITE_QUEUE: usize = 8;

impl Writer {
    fn spawn(mut sink: Box<dyn std::io::Write + Send>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let thread = std::thread::spawn(move || {
            while let Some(frame) = rx.blocking_recv() {
                sink.write_all(&frame)?;
            }
            sink.flush()
        });
        Writer {
            frames: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queues one frame; fails with the writer's error once it has stopped.
    async fn write(&mut self, frame: Vec<u8>) -> std::io::Result<()> {
        let sent = match &self.frames {
            Some(tx) => tx.send(frame).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            self.finish().await?;
            Err(std::io::Error::other("the output writer stopped"))
        }
    }

    /// Waits until every queued frame is written and flushed.
    async fn finish(&mut self) -> std::io::Result<()> {
        self.frames = None;
        match self.thread.take() {
            Some(t) => tokio::task::spawn_blocking(move || t.join())
                .await
                .map_err(std::io::Error::other)?
                .map_err(|_| std::io::Error::other("the output writer panicked"))?,
            None => Ok(()),
        }
    }
}

/// Creates a partial download file: a new file (never an existing one, nor through a symbolic
/// link planted at its name), readable only by this user until it is renamed into place.
fn create_partial(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Removes a partial download unless it was completed.
struct Partial {
    path: Option<PathBuf>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Downloads `target` (a CID, or a capability `warren:CID#KEY` for a sealed file, which the node
/// opens) to `output` (or stdout); returns the byte count.
pub async fn get(
    api: &ApiClient,
    target: &str,
    output: Option<&Path>,
    quiet: bool,
    anon: bool,
) -> anyhow::Result<u64> {
    get_with(api, target, output, quiet, anon, true).await
}

/// [`get`]; with `cache` false (`get --no-cache`, direct gets only) the node keeps no copy of
/// the blocks it fetches.
pub async fn get_with(
    api: &ApiClient,
    target: &str,
    output: Option<&Path>,
    quiet: bool,
    anon: bool,
    cache: bool,
) -> anyhow::Result<u64> {
    let (cid, headers) = if Capability::looks_like(target) {
        let cap: Capability = target.parse()?;
        (cap.cid.to_string(), vec![(KEY_HEADER, cap.key.to_text())])
    } else {
        (target.to_owned(), Vec::new())
    };
    let route = if anon { "/v1/anon/get" } else { "/v1/get" };
    let query = if cache || anon { "" } else { "?cache=false" };
    let resp = api
        .get_stream(&format!("{route}/{cid}{query}"), &headers)
        .await?;
    let size = resp
        .headers()
        .get("x-warren-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (sink, mut partial, target): (Box<dyn std::io::Write + Send>, Partial, Option<PathBuf>) =
        match output {
            Some(path) => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                // At most 64 characters of the name: a 255-byte name plus the suffix would pass
                // the file system's limit.
                let base: String = path
                    .file_name()
                    .map(|n| n.to_string_lossy().chars().take(64).collect())
                    .unwrap_or_default();
                let tmp = dir.join(format!(
                    ".{base}.warren-partial-{}-{:016x}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                let f =
                    create_partial(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                (
                    Box::new(f),
                    Partial { path: Some(tmp) },
                    Some(path.to_owned()),
                )
            }
            None => (Box::new(std::io::stdout()), Partial { path: None }, None),
        };
    let mut writer = Writer::spawn(sink);
    let bar = progress_bar(size, quiet);
    let mut deframer = Deframer::default();
    let mut body = resp.bytes_stream();
    let mut written = 0u64;
    let mut done = None;
    'recv: while let Some(chunk) = body.next().await {
        let chunk = chunk.context("download cut off")?;
        deframer.push(&chunk);
        while let Some(frame) = deframer.next_frame()? {
            match frame {
                Frame::Data(bytes) => {
                    let n = bytes.len() as u64;
                    writer.write(bytes).await.context("writing the output")?;
                    written += n;
                    bar.inc(n);
                }
                Frame::End(n) => {
                    done = Some(n);
                    break 'recv;
                }
                Frame::Error(reason) => {
                    bar.finish_and_clear();
                    bail!("get {cid} failed: {reason}");
                }
            }
        }
    }
    bar.finish_and_clear();
    match done {
        Some(n) if n == written => {}
        Some(n) => bail!("get {cid}: node reported {n} bytes but sent {written}"),
        None => bail!("get {cid}: download cut off after {written} bytes"),
    }
    writer.finish().await.context("writing the output")?;
    if let (Some(tmp), Some(target)) = (partial.path.as_ref(), target) {
        std::fs::File::open(tmp)?.sync_all()?;
        std::fs::rename(tmp, &target)
            .with_context(|| format!("renaming into {}", target.display()))?;
        // Renamed: nothing left for the guard to remove.
        partial.path = None;
    }
    Ok(written)
}

#[cfg(test)]
mod partial_tests {
    use super::*;

    #[test]
    fn a_partial_file_is_new_private_and_never_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".x.warren-partial");
        let f = create_partial(&p).unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        // An existing file, or a link planted at the name, is refused.
        assert!(create_partial(&p).is_err());
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join(".y.warren-partial");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create_partial(&link).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }
}
