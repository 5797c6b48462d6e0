//! Files in the local block store: put, get, stat, pins, gc.
//!
//! | method | path                 | body / answer                                         |
//! |--------|----------------------|-------------------------------------------------------|
//! | POST   | `/v1/put?name=&media_type=&pin=&rf=&class=` | request body = the file, streamed; answer [`PutView`] |
//! | GET    | `/v1/get/{cid}`      | the file as [`crate::framed`] frames, verified block by block (`?cache=false`: fetched blocks are not kept in the store) |
//!
//! `class=private` seals the file with a key this node draws at random (or the one the client
//! sends in `x-warren-key`: an entry of a private directory), `class=shared` with the
//! key the client sends in `x-warren-key` (its convergent key: the client has the whole file);
//! the answer's `capability` is then the only way to read it. `GET /v1/get/{cid}` with the key in
//! `x-warren-key` opens a sealed file; without it, a sealed file comes back as the ciphertext it
//! is stored as. Keys travel in headers, never in URLs, so they stay out of access logs.
//! | GET    | `/v1/stat/{cid}`     | [`StatView`]                                           |
//! | GET    | `/v1/pins`           | `[`[`PinView`]`]`                                     |
//! | POST   | `/v1/pin/{cid}`      | pins a file whose whole DAG is stored                  |
//! | DELETE | `/v1/pin/{cid}`      | unpins (blocks stay until `gc`)                        |
//! | POST   | `/v1/gc`             | [`GcView`]                                             |
//! | GET    | `/v1/leases`         | the replicas held for the mesh and their leases        |
//!
//! The store is synchronous (redb, threads); every call runs on tokio's blocking pool, and bodies
//! cross between async and blocking code through bounded channels, so memory stays bounded however
//! large the file.

use std::io::{self, Read, Write};
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use rand::RngCore;
use serde::Deserialize;
use tokio::sync::mpsc;
use warren_protocol::{Capability, Class, ContentId, FileKey};
use warren_storage_mesh::pieces::{DEFAULT_PIECE_SIZE, PieceCode};
use warren_storage_mesh::{PutOptions, SealOptions, Store};

use super::{ApiError, AppState};
use crate::framed;
use crate::storage::{Arrivals, FetchSession};
use crate::view::{GcView, PinView, PutView, StatView};

/// Chunks of the request body in flight between the HTTP task and the store.
pub(super) const UPLOAD_QUEUE: usize = 16;
/// Frames in flight between the store and the HTTP response.
pub(super) const DOWNLOAD_QUEUE: usize = 4;
/// Bytes gathered into one DATA frame.
pub(super) const FRAME_BYTES: usize = 1 << 20;
/// Header carrying a sealed file's key (multibase base32, as in a capability).
pub const KEY_HEADER: &str = "x-warren-key";

/// The key in [`KEY_HEADER`], if any.
pub(super) fn key_header(headers: &HeaderMap) -> Result<Option<FileKey>, ApiError> {
    let Some(value) = headers.get(KEY_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{KEY_HEADER} is not ASCII"),
        )
    })?;
    FileKey::from_text(text)
        .map(Some)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{KEY_HEADER}: {e}")))
}

pub(super) fn parse_cid(text: &str) -> Result<ContentId, ApiError> {
    text.parse().map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a warren CID: {e}"),
        )
    })
}

pub(super) async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, warren_storage_mesh::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// A blocking `Read` over body chunks sent from an async task.
pub(super) struct ChannelReader {
    pub(super) rx: mpsc::Receiver<io::Result<Bytes>>,
    pub(super) current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A blocking `Write` that packs bytes into DATA frames for the response body.
pub(super) struct FrameWriter {
    pub(super) tx: mpsc::Sender<Bytes>,
    pub(super) buf: Vec<u8>,
}

impl FrameWriter {
    pub(super) fn send(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        self.tx
            .blocking_send(Bytes::from(framed::encode(kind, payload)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for FrameWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= FRAME_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.send(framed::DATA, &buf)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PutQuery {
    name: Option<String>,
    media_type: Option<String>,
    pin: Option<bool>,
    /// Copies to place on other peers; 0 keeps the file local.
    rf: Option<usize>,
    /// `public` (default), `shared` or `private`.
    class: Option<String>,
    /// Keep the file as erasure-coded pieces: `K+M`, or empty for the default code.
    pieces: Option<String>,
}

pub(super) async fn put(
    State(s): State<AppState>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PutView>, ApiError> {
    let started = std::time::Instant::now();
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
    let class = match q.class.as_deref() {
        None => Class::Public,
        Some(text) => text
            .parse::<Class>()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?,
    };
    let key = match (class, key_header(&headers)?) {
        (Class::Public, None) => None,
        // Private with a key: an entry of a private directory, its key derived by the client
        // from the directory's (`FileKey::entry_key`).
        (Class::Shared | Class::Private, Some(key)) => Some(key),
        (Class::Private, None) => {
            let mut bytes = [0u8; warren_protocol::capability::FILE_KEY_LEN];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            Some(FileKey::from_bytes(bytes))
        }
        (Class::Shared, None) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "class shared needs the file's convergent key in {KEY_HEADER} \
                     (the client computes it from the whole file)"
                ),
            ));
        }
        (Class::Public, Some(_)) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "{KEY_HEADER} is only for shared and private files: a public file has no key"
                ),
            ));
        }
    };
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(UPLOAD_QUEUE);
    let pin = q.pin.unwrap_or(true);
    let store = s.store.clone();
    let (name, media_type) = (q.name, q.media_type);
    let sealed_key = key.clone();
    let task = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        match sealed_key {
            None => {
                let opts = PutOptions {
                    name,
                    media_type,
                    pin,
                };
                store.put(reader, &opts, &|_| {}).map(|out| (out.size, out))
            }
            Some(key) => {
                let opts = SealOptions {
                    class,
                    name,
                    media_type,
                };
                store
                    .put_sealed(reader, &key, &opts, pin, &|_| {})
                    .map(|(out, sealed)| (sealed.plain_size, out))
            }
        }
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let item = chunk.map_err(|e| {
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("upload cut off: {e}"))
        });
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    let (size, out) = task
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store task failed: {e}"),
            )
        })?
        .map_err(|e| {
            if matches!(
                e,
                warren_storage_mesh::Error::OfferExceeded { .. }
                    | warren_storage_mesh::Error::DiskFull { .. }
            ) {
                tracing::warn!("refused a put: {e}");
                s.mesh
                    .metrics()
                    .activity
                    .storage_refused(format!("put: {e}"));
            }
            ApiError::from(e)
        })?;
    let code = q
        .pieces
        .as_deref()
        .map(PieceCode::parse)
        .transpose()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    // A file under one piece keeps whole copies: its pieces would be smaller than their list.
    let code = code.filter(|_| out.stored_bytes >= u64::from(DEFAULT_PIECE_SIZE));
    let pieces = match code {
        Some(code) => Some(s.mesh.put_pieces(out.cid, code).await?),
        None => None,
    };
    let replication = if pieces.is_some() {
        None
    } else if rf > 0 {
        Some(s.mesh.replicate(out.cid, rf).await?)
    } else {
        // Kept here only, but still findable: others can fetch it from this node.
        s.mesh.keep_here(out.cid).await?;
        None
    };
    let counters = &s.mesh.metrics().counters;
    counters.puts.inc();
    counters.put_bytes.inc_by(size);
    counters
        .put_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(PutView {
        replication,
        cid: out.cid.to_string(),
        size,
        blocks: out.blocks,
        stored_bytes: out.stored_bytes,
        new_bytes: out.new_bytes,
        pinned: pin,
        class: class.to_string(),
        capability: key.map(|key| Capability { cid: out.cid, key }.to_string()),
        pieces,
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct GetQuery {
    /// Keep the fetched blocks in the store as a cached copy (default true).
    cache: Option<bool>,
}

pub(super) async fn get(
    State(s): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let cid = parse_cid(&cid)?;
    // A raw id names a piece manifest (a chunk id is refused there): the file is rebuilt here
    // from its pieces first, then read like any stored file.
    let cid = if cid.codec() == warren_protocol::Codec::Raw {
        s.mesh.fetch_pieces(cid).await?
    } else {
        cid
    };
    let key = key_header(&headers)?;
    // Manifests first; the chunks not stored here are then fetched from their holders (verified
    // block by block) while the reader below streams the file, waiting for each in turn.
    let session = FetchSession::default();
    let missing = s.mesh.fetch_manifests(cid, &session).await?;
    let (manifest, uses) = blocking(&s.store, move |st| {
        Ok((st.stat(&cid)?, st.chunk_uses(&cid)?))
    })
    .await?;
    let arrivals = Arrivals::with_cache(
        missing
            .iter()
            .map(|c| (*c, uses.get(c).copied().unwrap_or(1))),
        q.cache.unwrap_or(true),
    );
    {
        let (mesh, closer) = (s.mesh.clone(), arrivals.closer());
        tokio::spawn(async move {
            mesh.fetch_blocks(missing, &session, Some(closer.0.clone()))
                .for_each(|_| async {})
                .await;
            drop(closer);
        });
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(DOWNLOAD_QUEUE);
    let store = s.store.clone();
    let sealed = key.is_some();
    let counters = s.mesh.metrics().counters.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = FrameWriter {
            tx,
            buf: Vec::with_capacity(FRAME_BYTES),
        };
        let ready = |c: &ContentId| arrivals.wait(c);
        let result = match key {
            None => store.get_when_ready(&cid, &mut w, &|_| {}, &ready),
            Some(key) => store
                .get_sealed_when_ready(&Capability { cid, key }, &mut w, &|_| {}, &ready)
                .map(|opened| opened.size),
        };
        arrivals.finished();
        // Bytes already written were verified; what follows says whether the file is complete.
        let _ = match result {
            Ok(n) => {
                counters.gets.inc();
                counters.get_bytes.inc_by(n);
                counters
                    .get_seconds
                    .observe(started.elapsed().as_secs_f64());
                w.flush()
                    .and_then(|()| w.send(framed::END, &n.to_be_bytes()))
            }
            Err(e) => {
                tracing::warn!(%cid, "get failed: {e}");
                w.buf.clear();
                w.send(framed::ERROR, e.to_string().as_bytes())
            }
        };
    });
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok::<_, io::Error>)));
    let mut response =
        Response::builder().header(header::CONTENT_TYPE, "application/vnd.warren.framed");
    if !sealed {
        // A sealed file's plaintext size is known only once it is open.
        response = response.header("x-warren-size", manifest.size);
    }
    response
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub(super) async fn stat(
    State(s): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<StatView>, ApiError> {
    let cid = parse_cid(&cid)?;
    let m = blocking(&s.store, move |st| st.stat(&cid)).await?;
    Ok(Json(StatView {
        cid: cid.to_string(),
        size: m.size,
        depth: m.depth,
        entries: m.entries.len(),
        name: m.name,
        media_type: m.media_type,
    }))
}

pub(super) async fn pins(State(s): State<AppState>) -> Result<Json<Vec<PinView>>, ApiError> {
    let pins = blocking(&s.store, |st| st.pins()).await?;
    Ok(Json(
        pins.into_iter()
            .map(|p| PinView {
                cid: p.cid.to_string(),
                name: p.name,
                size: p.size,
                blocks: p.blocks,
                stored_bytes: p.stored_bytes,
                class: p.class.to_string(),
            })
            .collect(),
    ))
}

pub(super) async fn pin(
    State(s): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cid = parse_cid(&cid)?;
    blocking(&s.store, move |st| st.pin(&cid)).await?;
    Ok(Json(
        serde_json::json!({ "cid": cid.to_string(), "pinned": true }),
    ))
}

pub(super) async fn unpin(
    State(s): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cid = parse_cid(&cid)?;
    let was = blocking(&s.store, move |st| st.unpin(&cid)).await?;
    if !was {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{cid} is not pinned"),
        ));
    }
    Ok(Json(
        serde_json::json!({ "cid": cid.to_string(), "pinned": false }),
    ))
}

pub(super) async fn gc(State(s): State<AppState>) -> Result<Json<GcView>, ApiError> {
    let r = blocking(&s.store, |st| st.gc()).await?;
    Ok(Json(GcView {
        blocks_removed: r.blocks_removed,
        bytes_freed: r.bytes_freed,
    }))
}

pub(super) async fn held(State(s): State<AppState>) -> Result<Json<Vec<String>>, ApiError> {
    let held = blocking(&s.store, |st| st.held()).await?;
    Ok(Json(held.iter().map(ToString::to_string).collect()))
}

pub(super) async fn leases(
    State(s): State<AppState>,
) -> Result<Json<Vec<crate::view::LeaseView>>, ApiError> {
    let leases = blocking(&s.store, |st| st.leases()).await?;
    Ok(Json(
        leases
            .into_iter()
            .map(|l| crate::view::LeaseView {
                block: l.block.to_string(),
                rf: l.lease.rf,
                origin: libp2p::identity::ed25519::PublicKey::try_from_bytes(&l.lease.origin)
                    .map(|k| {
                        libp2p::identity::PublicKey::from(k)
                            .to_peer_id()
                            .to_string()
                    })
                    .unwrap_or_default(),
                expires: l.lease.expires,
            })
            .collect(),
    ))
}

pub(super) async fn audits(State(s): State<AppState>) -> Json<Vec<crate::view::AuditRecord>> {
    Json(s.mesh.audits())
}

/// `GET /v1/where/{cid}`: the holders of every block of a file.
pub(super) async fn where_is(
    State(s): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<crate::view::WhereReport>, ApiError> {
    let cid = parse_cid(&cid)?;
    Ok(Json(s.mesh.where_is(cid).await?))
}

/// `POST /v1/pieces/{id}?repair=true`.
#[derive(Debug, Deserialize)]
pub(super) struct PiecesQuery {
    /// Rebuild the stripes below their threshold (default: only report).
    repair: Option<bool>,
}

/// `POST /v1/pieces/{id}`: audits a holder of every piece of the file kept as pieces under
/// the piece manifest `id`, and with `repair=true` rebuilds the stripes below the threshold.
pub(super) async fn pieces(
    State(s): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<PiecesQuery>,
) -> Result<Json<crate::view::PiecesHealth>, ApiError> {
    let cid = parse_cid(&cid)?;
    let repair = q.repair.unwrap_or(false);
    Ok(Json(s.mesh.check_pieces(cid, repair).await?))
}

/// The body of `POST /v1/audit`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditAsk {
    peer: String,
    cid: Option<String>,
}

/// `POST /v1/audit`: one audit of a peer, now.
pub(super) async fn audit(
    State(s): State<AppState>,
    Json(ask): Json<AuditAsk>,
) -> Result<Json<crate::view::AuditRecord>, ApiError> {
    let peer: libp2p::PeerId = ask.peer.parse().map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a peer id: {e}", ask.peer),
        )
    })?;
    let cid = ask.cid.as_deref().map(parse_cid).transpose()?;
    Ok(Json(s.mesh.audit_peer(peer, cid).await?))
}
