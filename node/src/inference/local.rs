//! Jobs run on this node's own executor: `warren infer --local` and the requester's checks.

use std::time::Instant;

use tokio::sync::mpsc;
use warren_inference::{Backend, GenerateParams};
use warren_protocol::ContentId;
use warren_protocol::inference::{GenerateRequest, GenerateResult};

use super::{Inference, JobView, job_id, now_ms};
use crate::error::NodeError;

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
        let out = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.generate(
                &slot,
                &hex::encode(id),
                &request.model.to_string(),
                &request.model.to_bytes(),
                &request.prompt,
                &GenerateParams {
                    max_tokens: request.max_tokens,
                    temperature: request.temperature,
                    seed: request.seed,
                },
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
        Ok(GenerateResult {
            tokens: out.generation.tokens,
            text: out.generation.text,
            backend: out.backend.as_str().to_string(),
            digest: out.digest.to_vec(),
            compute_ms: started.elapsed().as_millis() as u32,
        })
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
