//! A generation job on the mesh as the requester sees it: the operator's backend claim checked
//! against its record, a sampled share re-run on an operator whose result can be compared, and
//! the text decoded here from the tokens, never taken from the operator.
//!
//! What the user receives (streamed pieces, the final text) is decoded from the returned tokens
//! with the model's own tokenizer, after the check: an operator cannot send text that differs
//! from its tokens, and nothing reaches the user before the result is in. A result is
//! *verified* only when an independent run on the same backend gave the same tokens; a re-run on
//! another backend is incomparable, proves nothing, and the next operator is asked instead.

use std::sync::Arc;

use libp2p::PeerId;
use tokio::sync::mpsc;
use tracing::warn;
use warren_inference::digest::{Verdict, backend_claim_backed, compare_generations};
use warren_inference::plan::{self, Candidate, Fault, Strategy};
use warren_inference::{Backend, Detokenizer};
use warren_protocol::ContentId;
use warren_protocol::inference::{self as wire, GenerateRequest, GenerateResult, ModelManifest};
use warren_protocol::observation::Kind;

use super::requester::route_through_circuit;
use super::{CheckView, Inference, lock};
use crate::error::NodeError;

/// Tokenizers kept in memory (models asked for on this node).
const MAX_DETOKENIZERS: usize = 8;
/// Operators asked to re-run a sampled job before it is left unverified.
const MAX_VERIFIERS: usize = 4;
/// Largest GGUF file a requester that does not serve the model fetches for its tokenizer (the
/// tokenizer sits in the file's metadata; the mesh has no range reads yet).
const MAX_TOKENIZER_SOURCE: u64 = 4 << 30;

/// What a verified generation job is priced by.
#[derive(Clone, Copy, Debug)]
struct JobSize {
    /// The model's parameter count.
    params: u64,
    /// The prompt's tokens, counted by this node.
    prefill: u64,
}

fn backend(r: &GenerateResult) -> Backend {
    Backend::parse(&r.backend).unwrap_or(Backend::Cpu)
}

impl Inference {
    /// The tokenizer of generation model `model`, read from its GGUF file: the copy this node
    /// serves, else fetched from the mesh once (checked against the manifest) into the models
    /// directory.
    pub(super) async fn detokenizer(
        &self,
        model: ContentId,
    ) -> Result<Arc<Detokenizer>, NodeError> {
        if let Some(d) = lock(&self.detokenizers).get(&model) {
            return Ok(d.clone());
        }
        let bad = |detail: String| NodeError::Model {
            model: model.to_string(),
            detail,
        };
        let dir = self.models_dir.join(model.to_string());
        std::fs::create_dir_all(&dir).map_err(|source| NodeError::Io {
            path: dir.clone(),
            source,
        })?;
        let manifest_path = dir.join("manifest.cbor");
        if !manifest_path.exists() {
            self.fetch_to(model, manifest_path.clone()).await?;
        }
        let bytes = std::fs::read(&manifest_path).map_err(|source| NodeError::Io {
            path: manifest_path,
            source,
        })?;
        let manifest = ModelManifest::decode(&bytes)?;
        let f = manifest
            .file(wire::role::GGUF)
            .ok_or_else(|| bad("not a generation model (no gguf file)".into()))?
            .clone();
        let path = dir.join(&f.name);
        let blake3: [u8; 32] = f.blake3.as_slice().try_into().unwrap_or([0; 32]);
        // A model served here was checked against the manifest when it was loaded.
        let served = lock(&self.served).contains_key(&model);
        let fresh = path.exists()
            && (served
                || tokio::task::spawn_blocking({
                    let p = path.clone();
                    move || warren_inference::files::hash_file(&p).ok() == Some(blake3)
                })
                .await
                .unwrap_or(false));
        if !fresh {
            if f.size > MAX_TOKENIZER_SOURCE {
                return Err(bad(format!(
                    "its gguf file ({} bytes) is too large to fetch for its tokenizer alone: serve \
                     the model on this node to run it",
                    f.size
                )));
            }
            self.fetch_to(f.content, path.clone()).await?;
        }
        let name = model.to_string();
        let d = tokio::task::spawn_blocking(move || Detokenizer::load(&name, &path))
            .await
            .map_err(|source| NodeError::Task {
                what: "tokenizer",
                source,
            })??;
        let d = Arc::new(d);
        let mut cache = lock(&self.detokenizers);
        if cache.len() >= MAX_DETOKENIZERS {
            cache.clear();
        }
        cache.insert(model, d.clone());
        Ok(d)
    }

    /// Whether `peer`'s signed record backs the backend it claims for a result: CPU always, CUDA
    /// only when the record offers a GPU (looked up then only).
    pub(super) async fn backend_backed(&self, peer: PeerId, claimed: Backend) -> bool {
        if backend_claim_backed(claimed, 0) {
            return true;
        }
        let gpus = match self.client.find_record(peer).await {
            Ok(r) => r.compute.map(|c| c.gpus.len()).unwrap_or(0),
            Err(e) => {
                warn!(%peer, "no record to back a {} result: {e}", claimed.as_str());
                0
            }
        };
        backend_claim_backed(claimed, gpus)
    }

    /// Runs `request` on `peer` and checks its backend claim; a claim the record does not back
    /// is published as a mismatch and the result dropped.
    async fn run_checked(
        &self,
        peer: PeerId,
        request: &GenerateRequest,
    ) -> Result<GenerateResult, NodeError> {
        let r = self.generate_remote(peer, request.clone()).await?;
        if !self.backend_backed(peer, backend(&r)).await {
            // Its speed, measured on a result that does not count, does not count either.
            lock(&self.measured).forget_throughput(&peer);
            self.observe(peer, Kind::InferenceMismatched, &request.model)
                .await;
            return Err(NodeError::Job {
                peer,
                detail: format!(
                    "result claims backend {}, which the operator's record does not show",
                    r.backend
                ),
            });
        }
        Ok(r)
    }

    /// Routes a generation job: the best operator by `strategy`, or this node when it serves the
    /// model and `local` is asked for. The pieces of text sent to `chunks` and the result's text
    /// are decoded here from the result's tokens once the job (and its check, if sampled) is
    /// done.
    pub async fn generate(
        &self,
        request: GenerateRequest,
        strategy: Strategy,
        local: bool,
        sample: f64,
        chunks: mpsc::Sender<String>,
    ) -> Result<(Option<PeerId>, GenerateResult, Option<CheckView>), NodeError> {
        if local {
            return Ok((None, self.generate_local(request, chunks).await?, None));
        }
        if strategy == Strategy::Private {
            route_through_circuit()?;
        }
        let detokenizer = self.detokenizer(request.model).await?;
        let ranked = plan::rank(&self.candidates(request.model).await?, strategy);
        let mut last = None;
        for c in &ranked {
            match self.run_checked(c.peer, &request).await {
                Ok(r) => {
                    // Decoding is deterministic (greedy or seeded): a sampled share of jobs is
                    // re-run on another operator and must give the same tokens.
                    let draw = (plan::SplitMix64(rand::random()).next_u64() >> 11) as f64
                        / (1u64 << 53) as f64;
                    let (peer, r, check) = if draw < sample {
                        let texts = request
                            .messages
                            .iter()
                            .flatten()
                            .map(|m| m.content.as_str());
                        let size = JobSize {
                            params: detokenizer.parameters(),
                            prefill: detokenizer.count_tokens(
                                std::iter::once(request.prompt.as_str()).chain(texts),
                            ),
                        };
                        let (peer, r, check) = self
                            .verify_generation(&request, &ranked, c.peer, r, size)
                            .await;
                        (peer, r, Some(check))
                    } else {
                        (Some(c.peer), r, None)
                    };
                    let r = decode(&detokenizer, &request, r, &chunks).await?;
                    return Ok((peer, r, check));
                }
                Err(e) => {
                    warn!(peer = %c.peer, "generation job failed, trying the next operator: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| NodeError::Model {
            model: request.model.to_string(),
            detail: "no operator serves it".into(),
        }))
    }

    /// Re-runs a generation on other operators until one gives a comparable result (same
    /// backend; a re-run on another backend proves nothing and the next one is asked, then this
    /// node when it serves the model on that backend), and if the tokens differ, on a third to
    /// decide; returns the result of an operator found honest, and publishes observations of the
    /// checked ones. The check is `verified` only when a comparable run agreed; each operator
    /// whose run a comparable one confirmed earns its work in this node's next receipt to it
    /// (`size`: the model's parameter count and the prompt's tokens).
    async fn verify_generation(
        &self,
        request: &GenerateRequest,
        ranked: &[Candidate<PeerId>],
        original: PeerId,
        first: GenerateResult,
        size: JobSize,
    ) -> (Option<PeerId>, GenerateResult, CheckView) {
        let mut view = CheckView {
            original: original.to_string(),
            verifier: String::new(),
            items: Vec::new(),
            verdict: "unverified: no other operator could re-run it".into(),
            fault: None,
            verified: false,
        };
        let mut tried = vec![original];
        let mut checked = None;
        for c in ranked
            .iter()
            .filter(|c| c.peer != original)
            .take(MAX_VERIFIERS)
        {
            tried.push(c.peer);
            match self.run_checked(c.peer, request).await {
                Ok(r) if backend(&r) == backend(&first) => {
                    checked = Some((Some(c.peer), r));
                    break;
                }
                Ok(r) => {
                    view.verdict =
                        format!("unverified: incomparable (re-runs on {} only)", r.backend);
                }
                Err(e) => warn!(peer = %c.peer, "verification re-run failed: {e}"),
            }
        }
        if checked.is_none() && self.executor.backend() == backend(&first) {
            checked = self.local_rerun(request).await.map(|r| (None, r));
        }
        let Some((verifier, second)) = checked else {
            warn!(%original, "generation result unverified: {}", view.verdict);
            return (Some(original), first, view);
        };
        view.verifier = verifier.map_or_else(|| "local".into(), |p| p.to_string());
        match compare_generations(
            backend(&first),
            &first.tokens,
            backend(&second),
            &second.tokens,
        ) {
            Verdict::Match => {
                self.observe(original, Kind::InferenceMatched, &request.model)
                    .await;
                self.credit(original, request, size, &first);
                if let Some(v) = verifier {
                    self.credit(v, request, size, &second);
                }
                view.verdict = "match".into();
                view.verified = true;
                return (Some(original), first, view);
            }
            Verdict::Incomparable => {
                view.verdict = "unverified: incomparable".into();
                return (Some(original), first, view);
            }
            Verdict::Mismatch { .. } => view.verdict = "mismatch".into(),
        }
        let Some(verifier) = verifier else {
            // This node's own run disagrees: the operator is wrong, and the local result stands.
            self.observe(original, Kind::InferenceMismatched, &request.model)
                .await;
            view.fault = Some(original.to_string());
            view.verified = true;
            return (None, second, view);
        };
        let mut third = None;
        for c in ranked.iter().filter(|c| !tried.contains(&c.peer)) {
            if let Ok(r) = self.run_checked(c.peer, request).await {
                third = Some(r);
                break;
            }
        }
        if third.is_none() {
            third = self.local_rerun(request).await;
        }
        let Some(third) = third else {
            warn!(%original, %verifier, "generation results disagree and no third party could decide");
            view.verdict = "unverified: mismatch, no third party could decide".into();
            return (Some(original), first, view);
        };
        let agrees = |r: &GenerateResult| {
            compare_generations(backend(&third), &third.tokens, backend(r), &r.tokens)
                == Verdict::Match
        };
        match plan::arbitrate(agrees(&first), agrees(&second)) {
            Fault::Original => {
                self.observe(original, Kind::InferenceMismatched, &request.model)
                    .await;
                self.credit(verifier, request, size, &second);
                view.fault = Some(original.to_string());
                view.verified = true;
                (Some(verifier), second, view)
            }
            Fault::Verifier => {
                self.observe(verifier, Kind::InferenceMismatched, &request.model)
                    .await;
                self.credit(original, request, size, &first);
                view.fault = Some(verifier.to_string());
                view.verified = true;
                (Some(original), first, view)
            }
            Fault::Undecided => {
                view.verdict = "unverified: mismatch, undecided".into();
                (Some(original), first, view)
            }
        }
    }

    /// `peer`'s run `r` of `request` was confirmed by a comparable run: its work is owed to it
    /// (spec/credits.md, "Verified inference work"): the tokens it generated, and the prompt's
    /// tokens as this node counts them (never the operator's count).
    fn credit(&self, peer: PeerId, request: &GenerateRequest, size: JobSize, r: &GenerateResult) {
        if let Some(credits) = self.mesh.credits() {
            credits.inference_verified(
                peer,
                &request.model.to_string(),
                size.params,
                size.prefill,
                r.tokens.len() as u64,
            );
        }
    }

    /// This node's own run of `request`, when it serves the model.
    async fn local_rerun(&self, request: &GenerateRequest) -> Option<GenerateResult> {
        if !lock(&self.served).contains_key(&request.model) {
            return None;
        }
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let drain = async { while rx.recv().await.is_some() {} };
        let (r, ()) = tokio::join!(self.generate_local(request.clone(), tx), drain);
        r.ok()
    }
}

/// Replaces the operator's text with the text of its tokens decoded here, and sends it to
/// `chunks` in the pieces the model would have streamed.
async fn decode(
    detokenizer: &Arc<Detokenizer>,
    request: &GenerateRequest,
    mut r: GenerateResult,
    chunks: &mpsc::Sender<String>,
) -> Result<GenerateResult, NodeError> {
    let d = detokenizer.clone();
    let tokens = r.tokens.clone();
    let stop = request.stop.clone();
    let pieces = tokio::task::spawn_blocking(move || d.pieces(&tokens, &stop))
        .await
        .map_err(|source| NodeError::Task {
            what: "decode",
            source,
        })??;
    r.text = pieces.concat();
    for p in pieces {
        if chunks.send(p).await.is_err() {
            break;
        }
    }
    Ok(r)
}
