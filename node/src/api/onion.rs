//! Anonymous requests through onion circuits, and the circuit list.
//!
//! | method | path                    | answer |
//! |--------|-------------------------|--------|
//! | GET    | `/v1/anon/get/{cid}`    | framed body (like `/v1/get`); with `x-warren-key` the node opens the sealed file itself |
//! | POST   | `/v1/anon/put`          | [`PutView`]; `class` = `private` (default) or `public`; a private file is sealed here, so the relay only stores ciphertext |
//! | POST   | `/v1/anon/infer`        | NDJSON like `/v1/infer`; the relay runs the job on the mesh's operators as itself |
//! | POST   | `/v1/anon/embed`        | `{model, texts}` → `{vectors, backend}`: each cell-sized share of the texts through its own circuit |
//! | GET    | `/v1/circuits`          | `[`[`CircuitView`]`]` |

use std::io::{self, Write};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use rand::RngCore;
use serde::Deserialize;
use tokio::sync::mpsc;
use warren_protocol::onion::request::Request;
use warren_protocol::{Capability, Class, ContentId, FileKey};
use warren_storage_mesh::SealOptions;
use warren_storage_mesh::seal::{Opener, seal};
use warren_storage_mesh::stream;

use super::files::{
    ChannelReader, DOWNLOAD_QUEUE, FRAME_BYTES, FrameWriter, UPLOAD_QUEUE, key_header, parse_cid,
};
use super::{ApiError, AppState};
use crate::framed;
use crate::onion::{Answer, CircuitView, Onion};
use crate::view::PutView;

fn bad_gateway(e: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_GATEWAY, e.into())
}

fn onion(s: &AppState) -> Result<std::sync::Arc<Onion>, ApiError> {
    s.onion.clone().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "onion circuits are not running on this node".into(),
        )
    })
}

/// Waits for the circuit to be built; returns the build time in milliseconds.
async fn built(answers: &mut mpsc::Receiver<Answer>) -> Result<u64, ApiError> {
    match answers.recv().await {
        Some(Answer::Built { took, .. }) => Ok(took.as_millis() as u64),
        Some(Answer::End(Err(e))) => Err(bad_gateway(format!("circuit failed: {e}"))),
        _ => Err(bad_gateway("the circuit closed before it was built")),
    }
}

/// The answer of a GET as a byte stream: its `DATA` in order, its end as the end (or the error).
struct AnswerReader<'a> {
    answers: &'a mut mpsc::Receiver<Answer>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl io::Read for AnswerReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.answers.blocking_recv() {
                Some(Answer::Data(d)) => {
                    self.current = d;
                    self.pos = 0;
                }
                Some(Answer::Built { .. }) => {}
                Some(Answer::End(Ok(_))) => self.done = true,
                Some(Answer::End(Err(e))) => return Err(io::Error::other(e)),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the circuit closed",
                    ));
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads the relay's answer for the file `cid` as a block stream and writes the file to `w`
/// with the verified read (`warren_storage_mesh::stream`): every block is checked against the
/// id its parent manifest names before a byte of it is written; a sealed file is then opened
/// with `key`. Returns the file's bytes written.
fn receive(
    answers: &mut mpsc::Receiver<Answer>,
    cid: ContentId,
    key: Option<FileKey>,
    w: &mut FrameWriter,
) -> Result<u64, String> {
    let mut input = AnswerReader {
        answers,
        current: Vec::new(),
        pos: 0,
        done: false,
    };
    let size = stream::read_size(&mut input).map_err(|e| format!("the relay's answer: {e}"))?;
    match key {
        None => stream::receive(&cid, size, input, &mut *w, &|_| {}).map_err(|e| e.to_string()),
        Some(key) => {
            let mut opener = Opener::new(cid, &key, size, &mut *w).map_err(|e| e.to_string())?;
            match stream::receive(&cid, size, input, &mut opener, &|_| {}) {
                Ok(_) => opener.finish().map(|o| o.size).map_err(|e| e.to_string()),
                Err(e) => Err(opener.take_error().map_or(e.to_string(), |o| o.to_string())),
            }
        }
    }
}

pub(super) async fn get(
    State(s): State<AppState>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let onion = onion(&s)?;
    let cid = parse_cid(&cid)?;
    let key = key_header(&headers)?;
    let mut answers = onion.request(Request::Get(cid), None).await?;
    let build_ms = built(&mut answers).await?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(DOWNLOAD_QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut w = FrameWriter {
            tx,
            buf: Vec::with_capacity(FRAME_BYTES),
        };
        let _ = match receive(&mut answers, cid, key, &mut w) {
            Ok(n) => w
                .flush()
                .and_then(|()| w.send(framed::END, &n.to_be_bytes())),
            Err(e) => {
                tracing::warn!(%cid, "anonymous get failed: {e}");
                w.buf.clear();
                w.send(framed::ERROR, e.as_bytes())
            }
        };
    });
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok::<_, io::Error>)));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.warren.framed")
        .header("x-warren-build-ms", build_ms)
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `POST /v1/anon/infer`: the body of `/v1/infer` (its `strategy`, `sample` and `local` are not
/// used: the relay picks the fastest operator). The model is resolved here; the prompt and the
/// answer travel through the circuit, so the operator sees only the relay.
pub(super) async fn infer(
    State(s): State<AppState>,
    Json(b): Json<super::jobs::InferBody>,
) -> Result<Response, ApiError> {
    let onion = onion(&s)?;
    let job = b
        .generate_request(&s)?
        .encode()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut answers = onion.request(Request::Infer(job), None).await?;
    let build_ms = built(&mut answers).await?;
    let stream = futures::stream::unfold(Some(answers), |state| async move {
        let mut answers = state?;
        loop {
            match answers.recv().await {
                Some(Answer::Data(d)) => return Some((Ok(Bytes::from(d)), Some(answers))),
                Some(Answer::Built { .. }) => {}
                Some(Answer::End(Ok(_))) | None => return None,
                Some(Answer::End(Err(e))) => {
                    tracing::warn!("anonymous inference failed: {e}");
                    let mut line =
                        serde_json::to_vec(&serde_json::json!({ "error": e })).unwrap_or_default();
                    line.push(b'\n');
                    return Some((Ok::<_, io::Error>(Bytes::from(line)), None));
                }
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header("x-warren-build-ms", build_ms)
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Embeds `texts` through circuits: the texts go in shares whose job fits one `BEGIN` cell, each
/// through a fresh circuit whose relay runs it on one operator as itself; the vectors come back in
/// order, with the backend of the last share.
pub(super) async fn anon_embed(
    s: &AppState,
    model: ContentId,
    texts: Vec<String>,
) -> Result<(Vec<Vec<f32>>, String), ApiError> {
    use warren_protocol::inference::EmbedRequest;
    let onion = onion(s)?;
    let encode = |texts: Vec<String>| -> Result<Vec<u8>, ApiError> {
        let job = EmbedRequest { model, texts }
            .encode()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        Request::Infer(job).encode().map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("a text too long for an anonymous request: {e}"),
            )
        })
    };
    // Greedy shares: as many texts as fit one cell.
    let mut shares: Vec<Vec<String>> = Vec::new();
    for t in texts {
        if let Some(last) = shares.last_mut() {
            let mut more = last.clone();
            more.push(t.clone());
            if encode(more).is_ok() {
                last.push(t);
                continue;
            }
        }
        encode(vec![t.clone()])?;
        shares.push(vec![t]);
    }
    let mut vectors = Vec::new();
    let mut backend = String::new();
    for share in shares {
        let n = share.len();
        let job = match Request::decode(&encode(share)?) {
            Ok(Request::Infer(job)) => job,
            _ => return Err(bad_gateway("cannot re-read the request")),
        };
        let mut answers = onion.request(Request::Infer(job), None).await?;
        built(&mut answers).await?;
        let mut body = Vec::new();
        loop {
            match answers.recv().await {
                Some(Answer::Data(d)) => body.extend_from_slice(&d),
                Some(Answer::Built { .. }) => {}
                Some(Answer::End(Ok(_))) | None => break,
                Some(Answer::End(Err(e))) => return Err(bad_gateway(e)),
            }
        }
        let line: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| bad_gateway(format!("the relay's answer: {e}")))?;
        let done = &line["done"];
        let share_vectors: Vec<Vec<f32>> = serde_json::from_value(done["vectors"].clone())
            .map_err(|e| bad_gateway(format!("the relay's vectors: {e}")))?;
        if share_vectors.len() != n {
            return Err(bad_gateway(format!(
                "the relay sent {} vectors for {n} texts",
                share_vectors.len()
            )));
        }
        vectors.extend(share_vectors);
        backend = done["backend"].as_str().unwrap_or_default().to_string();
    }
    Ok((vectors, backend))
}

#[derive(Debug, Deserialize)]
pub(super) struct AnonEmbedBody {
    model: String,
    texts: Vec<String>,
}

/// `POST /v1/anon/embed`: `{model, texts}` → `{vectors, backend}` (see [`anon_embed`]).
pub(super) async fn embed(
    State(s): State<AppState>,
    Json(b): Json<AnonEmbedBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let model = s.inference.resolve(&b.model)?;
    if b.texts.is_empty() || b.texts.len() > warren_protocol::inference::MAX_TEXTS {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "send 1 to 256 texts per call".into(),
        ));
    }
    let (vectors, backend) = anon_embed(&s, model, b.texts).await?;
    Ok(Json(
        serde_json::json!({ "vectors": vectors, "backend": backend }),
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct PutQuery {
    /// `private` (default) or `public`.
    class: Option<String>,
    /// Manifest name (kept inside the sealed stream for a private file).
    name: Option<String>,
    /// Media type (private files only keep it, inside the sealed stream).
    media_type: Option<String>,
}

/// Sends written bytes as upload chunks.
struct UploadWriter {
    tx: mpsc::Sender<Vec<u8>>,
    written: u64,
}

impl Write for UploadWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(data.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the circuit closed"))?;
        self.written += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) async fn put(
    State(s): State<AppState>,
    Query(q): Query<PutQuery>,
    body: Body,
) -> Result<Json<PutView>, ApiError> {
    let onion = onion(&s)?;
    let class = match q.class.as_deref() {
        None => Class::Private,
        Some(t) => t
            .parse::<Class>()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?,
    };
    if class == Class::Shared {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "class shared is not offered through circuits: use private (default) or public".into(),
        ));
    }
    let (up_tx, up_rx) = mpsc::channel::<Vec<u8>>(UPLOAD_QUEUE);
    let name = if class == Class::Public {
        q.name.clone()
    } else {
        None
    };
    let mut answers = onion.request(Request::Put { name }, Some(up_rx)).await?;
    built(&mut answers).await?;
    // The body goes to a blocking reader; public bytes go out as they are, private ones sealed.
    let (body_tx, body_rx) = mpsc::channel::<io::Result<Bytes>>(UPLOAD_QUEUE);
    let key = (class == Class::Private).then(|| {
        let mut bytes = [0u8; warren_protocol::capability::FILE_KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        FileKey::from_bytes(bytes)
    });
    let seal_key = key.clone();
    let opts = SealOptions {
        class,
        name: q.name,
        media_type: q.media_type,
    };
    let feeder = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let mut reader = ChannelReader {
            rx: body_rx,
            current: Bytes::new(),
        };
        let mut w = UploadWriter {
            tx: up_tx,
            written: 0,
        };
        match seal_key {
            Some(k) => seal(&k, &opts, reader, &mut w)
                .map(|o| o.plain_size)
                .map_err(|e| e.to_string()),
            None => io::copy(&mut reader, &mut w).map_err(|e| e.to_string()),
        }
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let item = chunk.map_err(|e| {
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("upload cut off: {e}"))
        });
        let failed = item.is_err();
        if body_tx.send(item).await.is_err() || failed {
            break;
        }
    }
    drop(body_tx);
    let size = feeder
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let cid = loop {
        match answers.recv().await {
            Some(Answer::End(Ok(text))) => break text,
            Some(Answer::End(Err(e))) => {
                return Err(bad_gateway(format!("the relay refused: {e}")));
            }
            Some(_) => {}
            None => return Err(bad_gateway("the circuit closed before the relay answered")),
        }
    };
    let cid: ContentId = cid
        .parse()
        .map_err(|e| bad_gateway(format!("the relay answered {cid:?}: {e}")))?;
    Ok(Json(PutView {
        cid: cid.to_string(),
        size,
        blocks: 0,
        stored_bytes: 0,
        new_bytes: 0,
        pinned: false,
        replication: None,
        class: class.to_string(),
        capability: key.map(|key| Capability { cid, key }.to_string()),
        pieces: None,
    }))
}

pub(super) async fn circuits(
    State(s): State<AppState>,
) -> Result<Json<Vec<CircuitView>>, ApiError> {
    Ok(Json(onion(&s)?.circuits()))
}
