//! The operator side: accepting job streams and running them on the executor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use tokio::sync::{mpsc, watch};
use tracing::debug;
use warren_inference::admission::Refusal;
use warren_protocol::inference::{
    self as wire, EmbedRequest, EmbedResult, GenerateRequest, TokenChunk,
};
use warren_protocol::{Envelope, State};

use super::local::{job_input, job_result};
use super::{
    Inference, JobView, REQUEST_TIMEOUT, WRITE_TIMEOUT, failure, failure_code, lock, now_ms,
    read_frame, write_frame,
};
use crate::config::FaultInject;

/// Writes one frame, or gives up after [`WRITE_TIMEOUT`]: a requester that stops reading cannot
/// hold a stream (and the job's slot) forever.
async fn write_within(io: &mut Stream, envelope: &Envelope) -> Result<(), String> {
    tokio::time::timeout(WRITE_TIMEOUT, write_frame(io, envelope))
        .await
        .unwrap_or_else(|_| Err("the requester did not read its answer in time".into()))
}

/// A job of `peer` admitted to ask for an executor slot; dropping it gives the share back.
struct Running<'a> {
    inference: &'a Inference,
    peer: PeerId,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.inference.admission).finish(&self.peer);
    }
}

impl Inference {
    /// Accepts job streams until shutdown.
    pub async fn run_inbound(
        self: Arc<Self>,
        mut incoming: libp2p_stream::IncomingStreams,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { return };
                    // Per peer: one peer cannot hold every stream (see warren_inference::admission).
                    if let Err(why) = lock(&self.admission).open(&peer) {
                        debug!(%peer, "job stream dropped: {}", why.as_str());
                        continue;
                    }
                    self.note_load();
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.handle_stream(peer, stream).await;
                        lock(&this.admission).close(&peer);
                        this.note_load();
                    });
                }
            }
        }
    }

    async fn handle_stream(&self, peer: PeerId, mut stream: Stream) {
        let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(Some(e))) => e,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                debug!(%peer, "bad job request: {e}");
                return;
            }
            Err(_) => {
                debug!(%peer, "job request timed out");
                return;
            }
        };
        let started = Instant::now();
        let e = &request.event;
        let reply = |state: State, payload: Vec<u8>| request.reply(state, now_ms(), payload);
        if e.service != "inference" || e.version != 1 || e.state != State::Requested {
            let _ = write_within(
                &mut stream,
                &reply(
                    State::Failed,
                    failure("bad-request", format!("{e}: not an inference request")),
                ),
            )
            .await;
            return;
        }
        if self.fault == FaultInject::SlowInference {
            tokio::time::sleep(crate::config::SLOW_INFERENCE_DELAY).await;
        }
        let (kind, model, items, outcome) = match e.action.as_str() {
            "embed" => self.serve_embed(peer, &request, &mut stream).await,
            "generate" => self.serve_generate(peer, &request, &mut stream).await,
            other => {
                let _ = write_within(
                    &mut stream,
                    &reply(
                        State::Failed,
                        failure("bad-request", format!("no job kind {other}")),
                    ),
                )
                .await;
                return;
            }
        };
        let _ = stream.close().await;
        self.log(JobView {
            id: hex::encode(request.id),
            kind: kind.to_string(),
            role: "served".into(),
            model,
            peer: Some(peer.to_string()),
            items,
            outcome,
            ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
        });
    }

    /// Writes the load (job streams open over job slots) into the gauge the node record reads.
    fn note_load(&self) {
        let open = lock(&self.admission).open_streams();
        let slots = self.executor.limits().max_concurrent_jobs;
        self.load.store(
            warren_inference::signals::load_permille(open, slots),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Lets a job of `peer` ask for an executor slot, or refuses it as `busy` when the peer's
    /// jobs already hold their share of the slots.
    fn admit(&self, peer: PeerId) -> Result<Running<'_>, Refusal> {
        lock(&self.admission).start(&peer)?;
        Ok(Running {
            inference: self,
            peer,
        })
    }

    async fn serve_embed(
        &self,
        peer: PeerId,
        request: &Envelope,
        stream: &mut Stream,
    ) -> (&'static str, String, usize, String) {
        let fail = |code: &str, reason: String| {
            request.reply(State::Failed, now_ms(), failure(code, reason))
        };
        let req = match EmbedRequest::decode(&request.payload) {
            Ok(r) => r,
            Err(e) => {
                let _ = write_within(stream, &fail("bad-request", e.to_string())).await;
                return ("embed", String::new(), 0, format!("bad request: {e}"));
            }
        };
        let model = req.model.to_string();
        let n = req.texts.len();
        let _running = match self.admit(peer) {
            Ok(r) => r,
            Err(why) => {
                let _ = write_within(stream, &fail("busy", why.as_str().into())).await;
                return ("embed", model, n, format!("refused: {}", why.as_str()));
            }
        };
        let _slot = match self.slots.acquire(peer, self.mesh.credits()).await {
            Ok(s) => s,
            Err((code, why)) => {
                let _ = write_within(stream, &fail(code, why.clone())).await;
                return ("embed", model, n, format!("refused: {why}"));
            }
        };
        if self.fault == FaultInject::BusyInference {
            tokio::time::sleep(crate::config::BUSY_INFERENCE_DELAY).await;
        }
        let executor = self.executor.clone();
        let job = hex::encode(request.id);
        let key = model.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.embed(&slot, &job, &key, &req.texts)
        })
        .await;
        let out = match result {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                let _ = write_within(stream, &fail(failure_code(&e), e.to_string())).await;
                return ("embed", model, n, format!("failed: {e}"));
            }
            Err(e) => {
                let _ = write_within(stream, &fail("error", e.to_string())).await;
                return ("embed", model, n, format!("failed: {e}"));
            }
        };
        let mut vectors = out.vectors;
        if self.fault == FaultInject::PerturbInference {
            for v in &mut vectors {
                if let Some(x) = v.first_mut() {
                    *x += 0.05;
                }
            }
        }
        let dim = vectors.first().map(|v| v.len()).unwrap_or(1) as u32;
        let result = EmbedResult {
            dim,
            vectors: EmbedResult::pack(&vectors),
            backend: out.backend.as_str().to_string(),
            compute_ms: started.elapsed().as_millis() as u32,
        };
        let reply = match result.encode() {
            Ok(bytes) => request.reply(State::Completed, now_ms(), bytes),
            Err(e) => fail("limit", e.to_string()),
        };
        match write_within(stream, &reply).await {
            Ok(()) => ("embed", model, n, "completed".into()),
            Err(e) => ("embed", model, n, format!("failed: {e}")),
        }
    }

    async fn serve_generate(
        &self,
        peer: PeerId,
        request: &Envelope,
        stream: &mut Stream,
    ) -> (&'static str, String, usize, String) {
        let fail = |code: &str, reason: String| {
            request.reply(State::Failed, now_ms(), failure(code, reason))
        };
        let req = match GenerateRequest::decode(&request.payload) {
            Ok(r) => r,
            Err(e) => {
                let _ = write_within(stream, &fail("bad-request", e.to_string())).await;
                return ("generate", String::new(), 0, format!("bad request: {e}"));
            }
        };
        let model = req.model.to_string();
        let _running = match self.admit(peer) {
            Ok(r) => r,
            Err(why) => {
                let _ = write_within(stream, &fail("busy", why.as_str().into())).await;
                return ("generate", model, 0, format!("refused: {}", why.as_str()));
            }
        };
        let _slot = match self.slots.acquire(peer, self.mesh.credits()).await {
            Ok(s) => s,
            Err((code, why)) => {
                let _ = write_within(stream, &fail(code, why.clone())).await;
                return ("generate", model, 0, format!("refused: {why}"));
            }
        };
        if self.fault == FaultInject::BusyInference {
            tokio::time::sleep(crate::config::BUSY_INFERENCE_DELAY).await;
        }
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let cancelled = Arc::new(AtomicBool::new(false));
        let executor = self.executor.clone();
        let job = hex::encode(request.id);
        let key = model.clone();
        let model_bytes = req.model.to_bytes();
        let (prompt, params) = job_input(&req);
        let flag = cancelled.clone();
        let started = Instant::now();
        let task = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.generate(&slot, &job, &key, &model_bytes, &prompt, &params, |piece| {
                !flag.load(Ordering::Acquire) && tx.blocking_send(piece.to_string()).is_ok()
            })
        });
        let processing = match wire::event("generate", State::Processing) {
            Ok(e) => e,
            Err(_) => return ("generate", model, 0, "failed: event type".into()),
        };
        let mut index = 0u32;
        while let Some(text) = rx.recv().await {
            let chunk = TokenChunk { index, text };
            index += 1;
            let Ok(payload) = chunk.encode() else {
                continue;
            };
            let mut env = request.reply(State::Processing, now_ms(), payload);
            env.event = processing.clone();
            if write_within(stream, &env).await.is_err() {
                cancelled.store(true, Ordering::Release);
                break;
            }
        }
        // Dropped so that a generation blocked on a full channel after a cancel ends.
        drop(rx);
        let out = match task.await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                let _ = write_within(stream, &fail(failure_code(&e), e.to_string())).await;
                return ("generate", model, 0, format!("failed: {e}"));
            }
            Err(e) => return ("generate", model, 0, format!("failed: {e}")),
        };
        if cancelled.load(Ordering::Acquire) {
            return (
                "generate",
                model,
                out.generation.tokens.len(),
                "cancelled".into(),
            );
        }
        let mut result = job_result(&req, out, started.elapsed().as_millis() as u32);
        if self.fault == FaultInject::PerturbInference
            && let Some(last) = result.tokens.last_mut()
        {
            *last = last.wrapping_add(1);
            result.digest[0] ^= 1;
        }
        let n = result.tokens.len();
        let reply = match result.encode() {
            Ok(bytes) => request.reply(State::Completed, now_ms(), bytes),
            Err(e) => fail("limit", e.to_string()),
        };
        match write_within(stream, &reply).await {
            Ok(()) => ("generate", model, n, "completed".into()),
            Err(e) => ("generate", model, n, format!("failed: {e}")),
        }
    }
}
