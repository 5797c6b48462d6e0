//! Jobs run on this node's own executor: `warren infer --local` and the requester's checks.

use std::time::Instant;

use tokio::sync::mpsc;
use warren_inference::{Backend, GenerateOutput, GenerateParams, Prompt};
use warren_protocol::ContentId;
use warren_protocol::inference::{GenerateRequest, GenerateResult};

use super::{Inference, JobView, job_id, now_ms};
use crate::error::NodeError;

/// What the executor runs for a generation job: its prompt and decoding parameters.
pub(super) fn job_input(request: &GenerateRequest) -> (Prompt, GenerateParams) {
    let prompt = match &request.messages {
        Some(messages) => Prompt::Chat(messages.clone()),
        None if request.raw => Prompt::Raw(request.prompt.clone()),
        None => Prompt::User(request.prompt.clone()),
    };
    let params = GenerateParams {
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        seed: request.seed,
        top_p: request.top_p,
        stop: request.stop.clone(),
    };
    (prompt, params)
}

/// The job result for `request` from the executor's output (usage only when asked: requesters
/// that predate it refuse unknown fields).
pub(super) fn job_result(
    request: &GenerateRequest,
    out: GenerateOutput,
    compute_ms: u32,
) -> GenerateResult {
    GenerateResult {
        prompt_tokens: request.usage.then_some(out.generation.prompt_tokens),
        finish: request
            .usage
            .then(|| out.generation.finish.as_str().to_string()),
        tokens: out.generation.tokens,
        text: out.generation.text,
        backend: out.backend.as_str().to_string(),
        digest: out.digest.to_vec(),
        compute_ms,
    }
}

impl Inference {
    /// Runs a generation job on this node's own executor.
    pub async fn generate_local(
        &self,
        request: GenerateRequest,
        chunks: mpsc::Sender<String>,
    ) -> Result<GenerateResult, NodeError> {
        let executor = self.executor.clone();
        let started = Instant::now();
        let id = job_id();
        let model = request.model;
        let (prompt, params) = job_input(&request);
        let out = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.generate(
                &slot,
                &hex::encode(id),
                &model.to_string(),
                &model.to_bytes(),
                &prompt,
                &params,
                |piece| chunks.blocking_send(piece.to_string()).is_ok(),
            )
        })
        .await
        .map_err(|source| NodeError::Task {
            what: "job",
            source,
        })??;
        self.log(JobView {
            id: hex::encode(id),
            kind: "generate".into(),
            role: "local".into(),
            model: model.to_string(),
            peer: None,
            items: out.generation.tokens.len(),
            outcome: "completed".into(),
            ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
        });
        Ok(job_result(
            &request,
            out,
            started.elapsed().as_millis() as u32,
        ))
    }

    /// Runs an embedding job on this node's own executor.
    pub async fn embed_local(
        &self,
        model: ContentId,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, Backend), NodeError> {
        let executor = self.executor.clone();
        let started = Instant::now();
        let id = job_id();
        let n = texts.len();
        let out = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.embed(&slot, &hex::encode(id), &model.to_string(), &texts)
        })
        .await
        .map_err(|source| NodeError::Task {
            what: "job",
            source,
        })??;
        self.log(JobView {
            id: hex::encode(id),
            kind: "embed".into(),
            role: "local".into(),
            model: model.to_string(),
            peer: None,
            items: n,
            outcome: "completed".into(),
            ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
        });
        Ok((out.vectors, out.backend))
    }
}
