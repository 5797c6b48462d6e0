//! Models and inference jobs.
//!
//! | method | path               | body → answer                                                   |
//! |--------|--------------------|-----------------------------------------------------------------|
//! | GET    | `/v1/models`       | models this node serves                                         |
//! | POST   | `/v1/models/add`   | `{name, paths, rf?}` → the model put and placed at RF (its id)  |
//! | POST   | `/v1/models/serve` | `{model}` (name or id) → fetched, verified, loaded, announced    |
//! | POST   | `/v1/infer`        | `{model, prompt, max_tokens, temperature, seed, strategy, sample, local}` → NDJSON stream: `{"text":…}` lines, then `{"done":{…}}` or `{"error":…}` |
//! | POST   | `/v1/embed`        | `{model, texts, strategy, operators, sample, local}` → vectors, parts, checks, faulty operators |
//! | GET    | `/v1/jobs`         | recent jobs                                                     |

use std::path::PathBuf;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;
use warren_inference::plan::{DEFAULT_SAMPLE_FRACTION, Strategy};
use warren_protocol::inference::{GenerateRequest, MAX_NEW_TOKENS, MAX_TEXTS};

use super::{ApiError, AppState};
use crate::inference::{EmbedOutcome, JobView, ModelView};

fn strategy(s: Option<&str>) -> Result<Strategy, ApiError> {
    match s {
        None => Ok(Strategy::Speed),
        Some(s) => Strategy::parse(s).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("unknown strategy {s:?}: cost, speed, quality or private"),
            )
        }),
    }
}

pub(super) async fn models(State(s): State<AppState>) -> Json<Vec<ModelView>> {
    Json(s.inference.models())
}

pub(super) async fn list(State(s): State<AppState>) -> Json<Vec<JobView>> {
    Json(s.inference.jobs())
}

#[derive(Deserialize)]
pub(super) struct AddBody {
    name: String,
    paths: Vec<PathBuf>,
    /// Copies of each block to place on other peers (default: the node's RF); 0 keeps it here.
    #[serde(default)]
    rf: Option<usize>,
}

pub(super) async fn add(
    State(s): State<AppState>,
    Json(b): Json<AddBody>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(s.inference.add(&b.name, &b.paths, b.rf).await?))
}

#[derive(Deserialize)]
pub(super) struct ServeBody {
    model: String,
}

pub(super) async fn serve(
    State(s): State<AppState>,
    Json(b): Json<ServeBody>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(s.inference.serve(&b.model).await?))
}

#[derive(Deserialize)]
pub(super) struct InferBody {
    model: String,
    prompt: String,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    seed: Option<u64>,
    strategy: Option<String>,
    /// Chance that the job is re-run on a second operator to verify it (default 0.1).
    sample: Option<f64>,
    #[serde(default)]
    local: bool,
}

impl InferBody {
    /// The job this body asks for (the model resolved on this node), checked by encoding it.
    pub(super) fn generate_request(&self, s: &AppState) -> Result<GenerateRequest, ApiError> {
        let request = GenerateRequest::plain(
            s.inference.resolve(&self.model)?,
            self.prompt.clone(),
            self.max_tokens.unwrap_or(128).clamp(1, MAX_NEW_TOKENS),
            self.temperature.unwrap_or(0.0),
            self.seed.unwrap_or(0),
        );
        request
            .encode()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(request)
    }
}

pub(super) async fn infer(
    State(s): State<AppState>,
    Json(b): Json<InferBody>,
) -> Result<Response, ApiError> {
    let strategy = strategy(b.strategy.as_deref())?;
    let request = b.generate_request(&s)?;
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<String>(64);
    let (body_tx, mut body_rx) = mpsc::channel::<Bytes>(64);
    let inference = s.inference.clone();
    tokio::spawn(async move {
        let sample = b.sample.unwrap_or(DEFAULT_SAMPLE_FRACTION).clamp(0.0, 1.0);
        let job = inference.generate(request, strategy, b.local, sample, chunk_tx);
        tokio::pin!(job);
        let line = |v: serde_json::Value| {
            let mut l = serde_json::to_vec(&v).unwrap_or_default();
            l.push(b'\n');
            Bytes::from(l)
        };
        let result = loop {
            tokio::select! {
                Some(text) = chunk_rx.recv() => {
                    if body_tx.send(line(serde_json::json!({ "text": text }))).await.is_err() {
                        // The client went away; dropping the job cancels it.
                        return;
                    }
                }
                r = &mut job => break r,
            }
        };
        while let Ok(text) = chunk_rx.try_recv() {
            let _ = body_tx
                .send(line(serde_json::json!({ "text": text })))
                .await;
        }
        let last = match result {
            Ok((peer, r, check)) => serde_json::json!({ "done": {
                "operator": peer.map(|p| p.to_string()),
                "verified": check.as_ref().is_some_and(|c| c.verified),
                "check": check,
                "text": r.text,
                "tokens": r.tokens,
                "backend": r.backend,
                "digest": hex::encode(&r.digest),
                "compute_ms": r.compute_ms,
            }}),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let _ = body_tx.send(line(last)).await;
    });
    let stream = futures::stream::poll_fn(move |cx| {
        body_rx
            .poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::io::Error>))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Deserialize)]
pub(super) struct EmbedBody {
    model: String,
    texts: Vec<String>,
    strategy: Option<String>,
    operators: Option<usize>,
    sample: Option<f64>,
    #[serde(default)]
    local: bool,
}

pub(super) async fn embed(
    State(s): State<AppState>,
    Json(b): Json<EmbedBody>,
) -> Result<Json<EmbedOutcome>, ApiError> {
    let strategy = strategy(b.strategy.as_deref())?;
    let model = s.inference.resolve(&b.model)?;
    if b.texts.is_empty() || b.texts.len() > MAX_TEXTS {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("send 1 to {MAX_TEXTS} texts per call (the CLI batches larger inputs)"),
        ));
    }
    if b.local {
        let (vectors, backend) = s.inference.embed_local(model, b.texts).await?;
        return Ok(Json(EmbedOutcome {
            vectors,
            parts: Vec::new(),
            checks: Vec::new(),
            faulty: Vec::new(),
            backend: backend.as_str().to_string(),
        }));
    }
    let sample = b.sample.unwrap_or(DEFAULT_SAMPLE_FRACTION);
    if !(0.0..=1.0).contains(&sample) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "sample must be between 0 and 1".into(),
        ));
    }
    Ok(Json(
        s.inference
            .embed(model, b.texts, strategy, b.operators.unwrap_or(2), sample)
            .await?,
    ))
}
