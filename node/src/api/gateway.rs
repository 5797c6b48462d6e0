//! The read-only HTTP gateway: stored files and directories for a browser, on a loopback
//! address of its own (`warren start --gateway 127.0.0.1:8080`, off by default).
//!
//! | method | path | answer |
//! |--------|------|--------|
//! | GET/HEAD | `/warren/{cid}` | a file; a directory redirects to `/warren/{cid}/` |
//! | GET/HEAD | `/warren/{cid}/a/b` | the entry `a/b` of the directory `cid` |
//!
//! A directory (URL ending in `/`) is answered with its `index.html` when it has one, else with
//! an HTML listing. Files carry their stored media type, or one guessed from their name; a
//! single `Range` is answered 206 with `Content-Range` (416 when nothing satisfies it), so
//! video and audio seek. `ETag` is the served id and `Cache-Control` says immutable: an id
//! names its bytes forever. Every block is fetched (from peers where not stored here) and
//! verified against its id before its bytes are written out, by the read path `GET /v1/get`
//! uses. Errors are a 4xx with a sentence in plain text. A private or shared file opens only with
//! its key in the `X-Warren-Key` header (the `KEY` of its capability `warren:CID#KEY`; never
//! logged): it is decrypted and authenticated here and served whole, `no-store`; without a key
//! it is a 403 with a sentence, and a key that does not open it a 403 before any byte.
//!
//! No token: everything served here is public content addressed by id. The gateway is another
//! origin than the control API (another port), so a stored page cannot read the API.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use tokio::sync::mpsc;
use warren_protocol::{Capability, Class, ContentId, EntryKind};
use warren_storage_mesh::Store;

use super::gateway_http::{RangeAsk, listing_html, media_type_of, parse_range, percent_decode};
use super::{ApiError, dirs, files};
use crate::names::Names;
use crate::storage::{Arrivals, FetchSession, Mesh};

/// Most path components followed below an id.
const MAX_PATH_DEPTH: usize = 256;
/// Chunks in flight between the store and the response.
const QUEUE: usize = 4;
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For `/name/…`: what a name points to may change at any time.
const NAMED: &str = "public, max-age=10";

/// An error of the gateway: a status and a sentence, sent as plain text.
struct GwError(StatusCode, String);

impl From<ApiError> for GwError {
    fn from(e: ApiError) -> Self {
        // A failure to find or fetch what a URL names is the URL's "not found"; a listing that
        // breaks the rules is the peer's fault (502); nothing here is the gateway's own error.
        let code = match e.0 {
            c if c.is_client_error() => c,
            StatusCode::BAD_GATEWAY => StatusCode::BAD_GATEWAY,
            _ => StatusCode::NOT_FOUND,
        };
        GwError(code, e.1)
    }
}

impl IntoResponse for GwError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

/// The gateway's routes.
pub fn router(store: Arc<Store>, mesh: Arc<Mesh>, names: Arc<Names>) -> Router {
    Router::new()
        .route("/warren/{*rest}", get(serve))
        .route("/name/{*rest}", get(serve))
        .fallback(|| async {
            GwError(
                StatusCode::NOT_FOUND,
                "this gateway serves /warren/CID/path and /name/NAME/path only".into(),
            )
        })
        .layer(middleware::from_fn(super::host::check))
        .with_state(GwState { store, mesh, names })
}

#[derive(Clone)]
struct GwState {
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    names: Arc<Names>,
}

/// Makes the manifests of `cid` local (fetched and verified), or says it is not to be found.
async fn find(
    s: &GwState,
    cid: ContentId,
    session: &FetchSession,
    shown: &str,
) -> Result<Vec<ContentId>, GwError> {
    s.mesh.fetch_manifests(cid, session).await.map_err(|e| {
        GwError(
            StatusCode::NOT_FOUND,
            format!("{shown} was not found here or on any peer: {e}"),
        )
    })
}

/// Binds the gateway on `addr`, which must be loopback.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, crate::error::NodeError> {
    super::bind(addr).await
}

async fn serve(
    State(s): State<GwState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, GwError> {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/name/") {
        // What a name points to changes: a short cache, revalidated by the id (the ETag).
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let resolved = s.names.resolve(name).await.map_err(ApiError::from)?;
        let root = files::parse_cid(&resolved.cid)?;
        let trailing = rest.contains('/') && tail.is_empty() || tail.ends_with('/');
        let mut response = serve_root(&s, root, tail, trailing, path, &headers).await?;
        if let Some(h) = response.headers_mut().get_mut(header::CACHE_CONTROL)
            && h == IMMUTABLE
        {
            *h = header::HeaderValue::from_static(NAMED);
        }
        return Ok(response);
    }
    let rest = path.strip_prefix("/warren/").unwrap_or_default();
    let (cid_text, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let root = files::parse_cid(cid_text)?;
    let trailing = rest.contains('/') && tail.is_empty() || tail.ends_with('/');
    serve_root(&s, root, tail, trailing, path, &headers).await
}

/// Serves the entry `tail` of `root` (the id itself when empty); `path` is the URL's.
async fn serve_root(
    s: &GwState,
    root: ContentId,
    tail: &str,
    trailing: bool,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response, GwError> {
    let mut parts = Vec::new();
    for raw in tail.split('/').filter(|p| !p.is_empty()) {
        let Some(part) = percent_decode(raw) else {
            return Err(GwError(
                StatusCode::BAD_REQUEST,
                format!("the path component {raw:?} is not percent-encoded UTF-8"),
            ));
        };
        parts.push(part);
    }
    if parts.len() > MAX_PATH_DEPTH {
        return Err(GwError(
            StatusCode::BAD_REQUEST,
            format!(
                "the path has {} components, at most {MAX_PATH_DEPTH}",
                parts.len()
            ),
        ));
    }
    let (mut cid, mut name) = (root, None::<String>);
    let mut walked = String::new();
    for part in &parts {
        find(s, cid, &FetchSession::default(), &format!("{root}{walked}")).await?;
        let dir = dirs::listing(&s.store, &s.mesh, cid).await.map_err(|e| {
            if e.0 == StatusCode::BAD_REQUEST {
                GwError(
                    StatusCode::NOT_FOUND,
                    format!("{root}{walked} is a file, so it has no entry {part:?}"),
                )
            } else {
                GwError::from(e)
            }
        })?;
        let Some(entry) = dir.find(part) else {
            return Err(GwError(
                StatusCode::NOT_FOUND,
                format!("{root}{walked} has no entry {part:?}"),
            ));
        };
        walked.push('/');
        walked.push_str(part);
        (cid, name) = (entry.cid, Some(entry.name.clone()));
    }
    let session = FetchSession::default();
    let missing = find(s, cid, &session, &format!("{root}{walked}")).await?;
    let manifest = files::blocking(&s.store, move |st| st.stat(&cid)).await?;
    if manifest.is_directory() {
        if !trailing {
            return Ok((
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, format!("{path}/"))],
            )
                .into_response());
        }
        let dir = dirs::listing(&s.store, &s.mesh, cid).await?;
        if let Some(index) = dir.find("index.html")
            && index.kind == EntryKind::File
        {
            let index = index.cid;
            let missing = find(s, index, &session, &format!("{root}{walked}/index.html")).await?;
            let m = files::blocking(&s.store, move |st| st.stat(&index)).await?;
            return file(
                s,
                index,
                m.size,
                "text/html; charset=utf-8",
                missing,
                headers,
                session,
            )
            .await;
        }
        let html = listing_html(path, &dir);
        return Ok((
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                (header::ETAG, format!("\"{cid}\"")),
                (header::CACHE_CONTROL, IMMUTABLE.to_owned()),
            ],
            html,
        )
            .into_response());
    }
    let class = files::blocking(&s.store, move |st| st.class_of(&cid)).await?;
    let key = files::key_header(headers)?;
    if class != Class::Public || key.is_some() {
        let Some(key) = key else {
            return Err(GwError(
                StatusCode::FORBIDDEN,
                format!(
                    "{root}{walked} is a {class} file: it opens only with its key; send the key \
                     of its capability (warren:CID#KEY) in the X-Warren-Key header"
                ),
            ));
        };
        let media = name
            .as_deref()
            .map_or("application/octet-stream", media_type_of);
        return sealed(s, Capability { cid, key }, media, missing, session).await;
    }
    let media = match (&manifest.media_type, &name) {
        (Some(m), _) => m.clone(),
        (None, Some(n)) => media_type_of(n).to_owned(),
        (None, None) => manifest
            .name
            .as_deref()
            .map_or("application/octet-stream", media_type_of)
            .to_owned(),
    };
    file(s, cid, manifest.size, &media, missing, headers, session).await
}

/// Answers with the file `cid` of `size` bytes, or the part of it `Range` asks for.
async fn file(
    s: &GwState,
    cid: ContentId,
    size: u64,
    media: &str,
    missing: Vec<ContentId>,
    headers: &HeaderMap,
    session: FetchSession,
) -> Result<Response, GwError> {
    let etag = format!("\"{cid}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, IMMUTABLE.into()),
            ],
        )
            .into_response());
    }
    let ask = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, len) = match ask {
        RangeAsk::Whole => (StatusCode::OK, 0, size),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeAsk::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (header::CONTENT_RANGE, format!("bytes */{size}")),
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8".into()),
                ],
                format!("the range asked for is outside {cid}, which has {size} bytes\n"),
            )
                .into_response());
        }
    };
    let arrivals = start_fetch(s, cid, missing, session).await?;
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = RangeWriter { tx, left: len };
        let ready = |c: &ContentId| arrivals.wait(c);
        // Chunks wholly before `start` are not read: a seek near the end of a long video
        // costs one chunk, not the file up to it.
        let result = store.get_from_when_ready(&cid, start, &mut w, &ready);
        arrivals.finished();
        if w.left > 0 {
            // Cut short: the body ends with an error, so the client sees it incomplete.
            let why = match result {
                Err(e) => e.to_string(),
                Ok(_) => "the file ended early".into(),
            };
            tracing::warn!(%cid, "gateway read failed: {why}");
            let _ = w.tx.blocking_send(Err(io::Error::other(why)));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, media)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, IMMUTABLE)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    response
        .body(Body::from_stream(stream))
        .map_err(|e| GwError(StatusCode::BAD_REQUEST, e.to_string()))
}

/// Answers with the plaintext of the sealed file `cap` names: opened here (every block verified,
/// every segment authenticated before its bytes go out), whole (no ranges: the plaintext's
/// offsets are known only as it is opened). A key that does not open the file is a 403 before
/// any byte is sent. The key is neither logged nor echoed.
async fn sealed(
    s: &GwState,
    cap: Capability,
    media: &str,
    missing: Vec<ContentId>,
    session: FetchSession,
) -> Result<Response, GwError> {
    let cid = cap.cid;
    let arrivals = start_fetch(s, cid, missing, session).await?;
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = RangeWriter { tx, left: u64::MAX };
        let ready = |c: &ContentId| arrivals.wait(c);
        let result = store.get_sealed_when_ready(&cap, &mut w, &|_| {}, &ready);
        arrivals.finished();
        if let Err(e) = result {
            let _ = w.tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    let first = match rx.recv().await {
        Some(Err(e)) => {
            return Err(GwError(
                StatusCode::FORBIDDEN,
                format!("the key given does not open {cid}: {e}"),
            ));
        }
        other => other,
    };
    let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let stream = futures::stream::iter(first).chain(rest);
    Response::builder()
        .header(header::CONTENT_TYPE, media)
        .header(header::ETAG, format!("\"{cid}\""))
        .header(header::CACHE_CONTROL, "private, no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from_stream(stream))
        .map_err(|e| GwError(StatusCode::BAD_REQUEST, e.to_string()))
}

/// A blocking `Write` that passes on the first `left` bytes it is given, and stops the read
/// (an error) once they are out.
struct RangeWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    left: u64,
}

impl Write for RangeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "range served"));
        }
        let take = (self.left.min(data.len() as u64)) as usize;
        if take > 0 {
            self.tx
                .blocking_send(Ok(Bytes::copy_from_slice(&data[..take])))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
            self.left -= take as u64;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts fetching the `missing` blocks of `cid` from the mesh in the background and returns
/// what a reader waits on for each of them.
async fn start_fetch(
    s: &GwState,
    cid: ContentId,
    missing: Vec<ContentId>,
    session: FetchSession,
) -> Result<std::sync::Arc<Arrivals>, GwError> {
    let uses = files::blocking(&s.store, move |st| st.chunk_uses(&cid)).await?;
    let arrivals = Arrivals::new(
        missing
            .iter()
            .map(|c| (*c, uses.get(c).copied().unwrap_or(1))),
    );
    let (mesh, closer) = (s.mesh.clone(), arrivals.closer());
    tokio::spawn(async move {
        mesh.fetch_blocks(missing, &session, Some(closer.0.clone()))
            .for_each(|_| async {})
            .await;
        drop(closer);
    });
    Ok(arrivals)
}
