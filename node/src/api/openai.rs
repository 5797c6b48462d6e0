//! The OpenAI-compatible API, under its own base `/openai/v1` (warren's own `/v1/models` keeps
//! its shape), behind the same bearer token: point any OpenAI client at
//! `http://API_ADDR/openai/v1` with the node's `api.token` as its key.
//!
//! | method | path                            | what |
//! |--------|---------------------------------|------|
//! | GET    | `/openai/v1/models`             | models served or added here (by name), then those the mesh's operators serve (by id) (`{"object":"list","data":[…]}`) |
//! | POST   | `/openai/v1/chat/completions`   | a chat, rendered with the model's own chat template by its operator |
//! | POST   | `/openai/v1/completions`        | a raw prompt, no template |
//! | POST   | `/openai/v1/embeddings`         | vectors, `encoding_format` `float` or `base64` (little-endian f32) |
//!
//! Generation goes through the same requester as `/v1/infer`: the operator picked by
//! `warren_strategy` (default `speed`), a `warren_sample` share re-run on a second operator
//! (default 0.1), or this node's own executor with `warren_local: true`. The header
//! `X-Warren-Anon: 1` sends a generation through an onion circuit like `/v1/anon/infer`, and
//! embeddings like `/v1/anon/embed` (the relay picks the operator; the extension fields are not
//! used; an anonymous job must fit one onion cell, about 1000 bytes, or it is a 400). `temperature` defaults to 1 and
//! `seed` to a random one, as OpenAI's; `max_tokens` to 512. `stream: true` answers with
//! server-sent events: a first chunk with `delta.role`, `delta.content` pieces as the operator
//! sends them, a last chunk with `finish_reason` (then one with `usage` when
//! `stream_options.include_usage` is set) and `data: [DONE]`, with `: keep-alive` comments every
//! [`KEEPALIVE`] while nothing else is sent (a long prefill). A job that fails after the stream
//! began ends it with an `{"error": …}` event. Errors are OpenAI's
//! `{"error":{"message","type","param","code"}}`: 400 for a malformed body or field, 401 for a
//! missing or wrong token, 404 for an unknown model, 502/503 when no operator could answer.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use warren_inference::plan::{DEFAULT_SAMPLE_FRACTION, Strategy};
use warren_protocol::ContentId;
use warren_protocol::inference::{GenerateRequest, MAX_NEW_TOKENS, MAX_TEXTS};

use super::AppState;
use crate::error::NodeError;
use crate::onion::Answer as CircuitAnswer;

pub(super) mod wire;

use wire::{Answer, Kind, OpenAiError, Routing, Sampling};

/// The longest quiet time on a stream before a keep-alive comment.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(5);
/// `max_tokens` when the request gives none.
const DEFAULT_MAX_TOKENS: u32 = 512;
/// The header that routes a generation through an onion circuit.
pub(super) const ANON_HEADER: &str = "x-warren-anon";

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

/// The status and shape of a job's failure.
fn job_error(model: &str, e: &NodeError) -> OpenAiError {
    match e {
        NodeError::Model { detail, .. } if detail.contains("no operator") => {
            OpenAiError::server(503, format!("{model}: {e}"))
        }
        NodeError::Model { detail, .. } => OpenAiError::unknown_model(model, detail),
        NodeError::ShuttingDown => OpenAiError::server(503, e.to_string()),
        NodeError::Job { .. }
        | NodeError::Protocol(_)
        | NodeError::Onion(_)
        | NodeError::Dial { .. } => OpenAiError::server(502, e.to_string()),
        _ => OpenAiError::server(500, e.to_string()),
    }
}

/// A control-API error in OpenAI's shape.
fn api_error(status: StatusCode, message: String) -> OpenAiError {
    if status.is_client_error() {
        OpenAiError {
            status: status.as_u16(),
            ..OpenAiError::invalid(message, None)
        }
    } else {
        OpenAiError::server(status.as_u16(), message)
    }
}

fn unix_now() -> u64 {
    crate::clock::unix_now()
}

/// `GET /openai/v1/models`: the models served or added here (by name), then those the mesh's
/// operators serve (by id; `warren_protocol::mesh_models`, bounded and validated).
pub(super) async fn models(State(s): State<AppState>) -> Response {
    let here = s.inference.catalog();
    let mut data: Vec<Value> = here
        .iter()
        .map(|m| {
            let mut e = wire::model_entry(&m.name, "warren");
            e["warren"] = json!({ "model": m.model, "here": true, "kind": m.kind });
            e
        })
        .collect();
    // An unreachable network loop lists what is here only.
    let mesh = s.client.mesh_models().await.unwrap_or_default();
    data.extend(
        mesh.iter()
            .filter(|m| !here.iter().any(|h| h.model == m.id.to_string()))
            .map(wire::mesh_model_entry),
    );
    axum::Json(json!({ "object": "list", "data": data })).into_response()
}

/// The model's id as [`resolve`] finds it, or else the id of the one model the mesh's operators
/// serve under that name.
async fn resolve_mesh(s: &AppState, model: &str, kind: &str) -> Result<ContentId, OpenAiError> {
    match resolve(s, model, kind) {
        Err(e) if e.status == 404 => {
            let mesh = s.client.mesh_models().await.unwrap_or_default();
            let mut named = mesh.iter().filter(|m| m.name == model);
            match (named.next(), named.next()) {
                (Some(m), None) => Ok(m.id),
                (Some(_), Some(_)) => Err(OpenAiError::invalid(
                    format!("several models on the mesh are named {model}: give its id"),
                    Some("model"),
                )),
                _ => Err(e),
            }
        }
        r => r,
    }
}

/// The model's id; a model known here of the other kind (`embed` for a generation, `generate`
/// for embeddings) is a 400.
fn resolve(s: &AppState, model: &str, kind: &str) -> Result<ContentId, OpenAiError> {
    let id = s
        .inference
        .resolve(model)
        .map_err(|e| OpenAiError::unknown_model(model, e))?;
    let known = s.inference.catalog();
    if let Some(m) = known.iter().find(|m| m.model == id.to_string())
        && m.kind != kind
    {
        return Err(OpenAiError::invalid(
            format!("{model} is a model of kind {}, not {kind}", m.kind),
            Some("model"),
        ));
    }
    Ok(id)
}

fn strategy(r: &Routing) -> Result<Strategy, OpenAiError> {
    match r.warren_strategy.as_deref() {
        None => Ok(Strategy::Speed),
        Some(v) => Strategy::parse(v).ok_or_else(|| {
            OpenAiError::invalid(
                format!("unknown warren_strategy {v:?}: cost, speed, quality or private"),
                Some("warren_strategy"),
            )
        }),
    }
}

fn sample(r: &Routing) -> Result<f64, OpenAiError> {
    let v = r.warren_sample.unwrap_or(DEFAULT_SAMPLE_FRACTION);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(OpenAiError::invalid(
            "warren_sample must be between 0 and 1",
            Some("warren_sample"),
        ))
    }
}

fn anon(headers: &HeaderMap) -> bool {
    headers
        .get(ANON_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// The job for `sampling` with its prompt fields filled in by the caller.
fn job(model: ContentId, p: &Sampling) -> Result<GenerateRequest, OpenAiError> {
    if p.n.is_some_and(|n| n != 1) {
        return Err(OpenAiError::invalid("only n = 1 is supported", Some("n")));
    }
    let max_tokens = p
        .max_completion_tokens
        .or(p.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 || max_tokens > MAX_NEW_TOKENS {
        return Err(OpenAiError::invalid(
            format!("max_tokens must be 1 to {MAX_NEW_TOKENS}"),
            Some("max_tokens"),
        ));
    }
    let mut temperature = p.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(OpenAiError::invalid(
            "temperature must be 0 to 2",
            Some("temperature"),
        ));
    }
    let mut top_p = None;
    if let Some(v) = p.top_p {
        if !(0.0..=1.0).contains(&v) {
            return Err(OpenAiError::invalid("top_p must be 0 to 1", Some("top_p")));
        }
        if v == 0.0 {
            temperature = 0.0; // only the likeliest token
        } else if v < 1.0 {
            top_p = Some(v);
        }
    }
    let mut r = GenerateRequest::plain(
        model,
        String::new(),
        max_tokens,
        temperature,
        p.seed.unwrap_or_else(rand::random),
    );
    r.top_p = top_p;
    r.stop = stops(p.stop.as_ref());
    r.usage = true;
    Ok(r)
}

fn stops(stop: Option<&wire::Stop>) -> Vec<String> {
    let all = match stop {
        None => Vec::new(),
        Some(wire::Stop::One(s)) => vec![s.clone()],
        Some(wire::Stop::Many(v)) => v.clone(),
    };
    all.into_iter().filter(|s| !s.is_empty()).collect()
}

/// What a generation reports while it runs.
enum Event {
    Text(String),
    Done(Done),
    Error(OpenAiError),
}

/// How a generation ended.
struct Done {
    text: String,
    completion_tokens: u32,
    prompt_tokens: u32,
    finish: String,
    warren: Value,
}

/// Starts a generation on the mesh (or this node) and reports it as events.
fn run_mesh(
    s: &AppState,
    request: GenerateRequest,
    r: &Routing,
    name: String,
) -> Result<mpsc::Receiver<Event>, OpenAiError> {
    let strategy = strategy(r)?;
    let sample = sample(r)?;
    let local = r.warren_local.unwrap_or(false);
    let inference = s.inference.clone();
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<String>(64);
        let max = request.max_tokens;
        let job = inference.generate(request, strategy, local, sample, chunk_tx);
        tokio::pin!(job);
        let result = loop {
            tokio::select! {
                Some(text) = chunk_rx.recv() => {
                    if tx.send(Event::Text(text)).await.is_err() {
                        return; // the client went away: dropping the job cancels it
                    }
                }
                r = &mut job => break r,
            }
        };
        while let Ok(text) = chunk_rx.try_recv() {
            let _ = tx.send(Event::Text(text)).await;
        }
        let last = match result {
            Ok((peer, r, check)) => Event::Done(Done {
                completion_tokens: r.tokens.len() as u32,
                prompt_tokens: r.prompt_tokens.unwrap_or(0),
                finish: r.finish.clone().unwrap_or_else(|| {
                    if r.tokens.len() as u32 >= max {
                        "length"
                    } else {
                        "stop"
                    }
                    .to_string()
                }),
                warren: json!({
                    "operator": peer.map(|p| p.to_string()),
                    "verified": check.as_ref().is_some_and(|c| c.verified),
                    "check": check,
                    "backend": r.backend,
                    "digest": hex::encode(&r.digest),
                    "compute_ms": r.compute_ms,
                }),
                text: r.text,
            }),
            Err(e) => Event::Error(job_error(&name, &e)),
        };
        let _ = tx.send(last).await;
    });
    Ok(rx)
}

/// Starts a generation through an onion circuit: the relay runs it as `/v1/anon/infer` does and
/// answers in its NDJSON lines, read back here as events.
async fn run_anon(
    s: &AppState,
    request: GenerateRequest,
) -> Result<mpsc::Receiver<Event>, OpenAiError> {
    let onion = s
        .onion
        .clone()
        .ok_or_else(|| OpenAiError::server(503, "onion circuits are not running on this node"))?;
    let max = request.max_tokens;
    let job = request
        .encode()
        .map_err(|e| OpenAiError::invalid(e.to_string(), None))?;
    let request = warren_protocol::onion::request::Request::Infer(job);
    if let Err(e) = request.encode() {
        return Err(OpenAiError::invalid(
            format!("too long for an anonymous request (one onion cell): {e}"),
            Some("messages"),
        ));
    }
    let mut answers = onion
        .request(request, None)
        .await
        .map_err(|e| OpenAiError::server(502, e.to_string()))?;
    match answers.recv().await {
        Some(CircuitAnswer::Built { .. }) => {}
        Some(CircuitAnswer::End(Err(e))) => {
            return Err(OpenAiError::server(502, format!("circuit failed: {e}")));
        }
        _ => {
            return Err(OpenAiError::server(
                502,
                "the circuit closed before it was built",
            ));
        }
    }
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(a) = answers.recv().await {
            let data = match a {
                CircuitAnswer::Data(d) => d,
                CircuitAnswer::Built { .. } => continue,
                CircuitAnswer::End(Ok(_)) => break,
                CircuitAnswer::End(Err(e)) => {
                    let _ = tx.send(Event::Error(OpenAiError::server(502, e))).await;
                    return;
                }
            };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let event = if let Some(t) = v.get("text").and_then(Value::as_str) {
                    Event::Text(t.to_string())
                } else if let Some(d) = v.get("done") {
                    let tokens = d["tokens"].as_array().map_or(0, |t| t.len()) as u32;
                    Event::Done(Done {
                        text: d["text"].as_str().unwrap_or_default().to_string(),
                        completion_tokens: tokens,
                        prompt_tokens: d["prompt_tokens"].as_u64().unwrap_or(0) as u32,
                        finish: d["finish"].as_str().map(str::to_string).unwrap_or_else(|| {
                            if tokens >= max { "length" } else { "stop" }.to_string()
                        }),
                        warren: json!({ "anonymous": true, "verified": d["verified"], "backend": d["backend"], "digest": d["digest"] }),
                    })
                } else {
                    let e = v
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("the relay failed");
                    Event::Error(OpenAiError::server(502, e.to_string()))
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Answers from `events`: one JSON object, or a server-sent event stream.
async fn respond(
    answer: Answer,
    stream: bool,
    include_usage: bool,
    mut events: mpsc::Receiver<Event>,
    keepalive: Duration,
) -> Response {
    if !stream {
        loop {
            match events.recv().await {
                Some(Event::Text(_)) => {}
                Some(Event::Done(d)) => {
                    let usage = wire::usage(d.prompt_tokens, d.completion_tokens);
                    return axum::Json(answer.complete(&d.text, &d.finish, usage, d.warren))
                        .into_response();
                }
                Some(Event::Error(e)) => return e.into_response(),
                None => {
                    return OpenAiError::server(500, "the job ended without a result")
                        .into_response();
                }
            }
        }
    }
    let (body_tx, mut body_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let send = |b: Bytes| body_tx.send(b);
        if answer.kind == Kind::Chat
            && send(wire::sse_data(&answer.chunk(true, Some(""), None)))
                .await
                .is_err()
        {
            return;
        }
        loop {
            let event = match tokio::time::timeout(keepalive, events.recv()).await {
                Err(_) => {
                    if send(Bytes::from_static(wire::SSE_KEEPALIVE.as_bytes()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Ok(e) => e,
            };
            let out = match event {
                Some(Event::Text(t)) => wire::sse_data(&answer.chunk(false, Some(&t), None)),
                Some(Event::Done(d)) => {
                    // The last chunk says whether the text was verified (`warren.verified`).
                    let mut last = answer.chunk(false, None, Some(&d.finish));
                    if let Some(o) = last.as_object_mut() {
                        o.insert("warren".into(), d.warren);
                    }
                    let _ = send(wire::sse_data(&last)).await;
                    if include_usage {
                        let usage = wire::usage(d.prompt_tokens, d.completion_tokens);
                        let _ = send(wire::sse_data(&answer.usage_chunk(usage))).await;
                    }
                    break;
                }
                Some(Event::Error(e)) => {
                    let _ = send(wire::sse_data(&e.body())).await;
                    break;
                }
                None => break,
            };
            if send(out).await.is_err() {
                return;
            }
        }
        let _ = send(Bytes::from_static(wire::SSE_DONE.as_bytes())).await;
    });
    let body = futures::stream::poll_fn(move |cx| {
        body_rx
            .poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::io::Error>))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| OpenAiError::server(500, e.to_string()).into_response())
}

/// Runs `request` for `answer` on the mesh or through a circuit, and answers.
async fn generate(
    s: &AppState,
    headers: &HeaderMap,
    request: GenerateRequest,
    sampling: &Sampling,
    routing: &Routing,
    answer: Answer,
) -> Result<Response, OpenAiError> {
    request
        .encode()
        .map_err(|e| OpenAiError::invalid(e.to_string(), None))?;
    let events = if anon(headers) {
        if routing.warren_local == Some(true) {
            return Err(OpenAiError::invalid(
                "warren_local and X-Warren-Anon exclude each other",
                Some("warren_local"),
            ));
        }
        run_anon(s, request).await?
    } else {
        run_mesh(s, request, routing, answer.model.clone())?
    };
    let include_usage = sampling
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    Ok(respond(
        answer,
        sampling.stream.unwrap_or(false),
        include_usage,
        events,
        KEEPALIVE,
    )
    .await)
}

fn answer(kind: Kind, model: &str) -> Answer {
    Answer::new(kind, model, unix_now(), rand::random())
}

/// `POST /openai/v1/chat/completions`.
pub(super) async fn chat(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let r: wire::ChatRequest = wire::parse(&body)?;
    let model = resolve_mesh(&s, &r.model, "generate").await?;
    let mut request = job(model, &r.sampling)?;
    request.messages = Some(wire::chat_messages(r.messages)?);
    generate(
        &s,
        &headers,
        request,
        &r.sampling,
        &r.routing,
        answer(Kind::Chat, &r.model),
    )
    .await
}

/// `POST /openai/v1/completions`.
pub(super) async fn completions(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let r: wire::CompletionRequest = wire::parse(&body)?;
    let model = resolve_mesh(&s, &r.model, "generate").await?;
    let prompt = match r.prompt {
        wire::Texts::One(p) => p,
        wire::Texts::Many(mut v) if v.len() == 1 => v.remove(0),
        wire::Texts::Many(_) => {
            return Err(OpenAiError::invalid(
                "send one prompt per call",
                Some("prompt"),
            ));
        }
    };
    if prompt.is_empty() {
        return Err(OpenAiError::invalid("the prompt is empty", Some("prompt")));
    }
    let mut request = job(model, &r.sampling)?;
    request.prompt = prompt;
    request.raw = true;
    generate(
        &s,
        &headers,
        request,
        &r.sampling,
        &r.routing,
        answer(Kind::Text, &r.model),
    )
    .await
}

/// `POST /openai/v1/embeddings`.
pub(super) async fn embeddings(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let r: wire::EmbeddingsRequest = wire::parse(&body)?;
    let model = resolve_mesh(&s, &r.model, "embed").await?;
    let base64 = match r.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                format!("encoding_format {other:?}: float or base64"),
                Some("encoding_format"),
            ));
        }
    };
    let texts = match r.input {
        wire::Texts::One(t) => vec![t],
        wire::Texts::Many(v) => v,
    };
    if texts.is_empty() || texts.len() > MAX_TEXTS {
        return Err(OpenAiError::invalid(
            format!("input must hold 1 to {MAX_TEXTS} texts"),
            Some("input"),
        ));
    }
    if anon(&headers) {
        let (vectors, backend) = super::onion::anon_embed(&s, model, texts)
            .await
            .map_err(|e| api_error(e.0, e.1))?;
        let warren = json!({ "backend": backend, "anonymous": true });
        return Ok(
            axum::Json(wire::embeddings(&r.model, &vectors, base64, warren)).into_response(),
        );
    }
    let strategy = strategy(&r.routing)?;
    let sample = sample(&r.routing)?;
    let fail = |e: NodeError| job_error(&r.model, &e);
    let (vectors, warren) = if r.routing.warren_local.unwrap_or(false) {
        let (vectors, backend) = s.inference.embed_local(model, texts).await.map_err(fail)?;
        (
            vectors,
            json!({ "backend": backend.as_str(), "local": true }),
        )
    } else {
        let operators = r.routing.warren_operators.unwrap_or(2).clamp(1, 16);
        let out = s
            .inference
            .embed(model, texts, strategy, operators, sample)
            .await
            .map_err(fail)?;
        let warren = json!({
            "backend": out.backend,
            "parts": out.parts,
            "checks": out.checks,
            "faulty": out.faulty,
        });
        (out.vectors, warren)
    };
    Ok(axum::Json(wire::embeddings(&r.model, &vectors, base64, warren)).into_response())
}

#[cfg(test)]
mod tests;
