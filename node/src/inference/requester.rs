//! The requester side: finding and ranking operators, sending jobs, splitting batches,
//! checking samples and arbitrating disagreements.

use std::time::Instant;

use libp2p::{PeerId, Stream};
use tracing::warn;
use warren_inference::Backend;
use warren_inference::digest::{Verdict, compare_embeddings};
use warren_inference::plan::{self, Candidate, Fault, Strategy};
use warren_inference::signals;
use warren_protocol::inference::{
    self as wire, EmbedRequest, EmbedResult, GenerateRequest, GenerateResult, JobFailure,
    TokenChunk,
};
use warren_protocol::observation::Kind;
use warren_protocol::{ContentId, Envelope, State};

use super::{
    CheckView, EmbedOutcome, Inference, JOB_TIMEOUT, JobView, MAX_PART, PROTOCOL, PartResult,
    PartView, job_id, lock, now_ms, read_frame, write_frame,
};
use crate::error::NodeError;

impl Inference {
    async fn open(&self, peer: PeerId) -> Result<Stream, NodeError> {
        let mut control = lock(&self.control).clone();
        control
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(|e| NodeError::Job {
                peer,
                detail: format!("cannot open a job stream: {e}"),
            })
    }

    /// Runs one embedding job on `peer`.
    pub async fn embed_remote(
        &self,
        peer: PeerId,
        model: ContentId,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, Backend), NodeError> {
        let job = |detail: String| NodeError::Job { peer, detail };
        let started = Instant::now();
        let n = texts.len();
        let id = job_id();
        let run = async {
            let mut stream = self.open(peer).await?;
            let payload = EmbedRequest { model, texts }.encode()?;
            let request = Envelope::new(
                id,
                wire::event("embed", State::Requested)?,
                now_ms(),
                payload,
            );
            write_frame(&mut stream, &request).await.map_err(job)?;
            loop {
                let Some(env) = read_frame(&mut stream).await.map_err(job)? else {
                    return Err(job("stream ended before a result".into()));
                };
                if env.id != id {
                    return Err(job("reply with another job id".into()));
                }
                match env.event.state {
                    State::Completed => {
                        let r = EmbedResult::decode(&env.payload)?;
                        let backend = Backend::parse(&r.backend).unwrap_or(Backend::Cpu);
                        if !self.backend_backed(peer, backend).await {
                            self.observe(peer, Kind::InferenceMismatched, &model).await;
                            return Err(job(format!(
                                "result claims backend {}, which the operator's record does not show",
                                r.backend
                            )));
                        }
                        let vectors = r.unpack();
                        if vectors.len() != n {
                            return Err(job(format!("{} vectors for {n} texts", vectors.len())));
                        }
                        return Ok((vectors, backend));
                    }
                    State::Failed => {
                        let f = JobFailure::decode(&env.payload)?;
                        return Err(job(format!("{}: {}", f.code, f.reason)));
                    }
                    _ => continue,
                }
            }
        };
        let out = tokio::time::timeout(JOB_TIMEOUT, run)
            .await
            .map_err(|_| job("timed out".into()))?;
        let ms = started.elapsed().as_millis() as u64;
        if out.is_ok() {
            // One answer: its round trip is the whole job.
            lock(&self.measured).observe_job(&peer, now_ms(), ms, ms, n);
        }
        self.log(JobView {
            id: hex::encode(id),
            kind: "embed".into(),
            role: "remote".into(),
            model: model.to_string(),
            peer: Some(peer.to_string()),
            items: n,
            outcome: match &out {
                Ok(_) => "completed".into(),
                Err(e) => format!("failed: {e}"),
            },
            ms,
            at_ms: now_ms(),
        });
        out
    }

    /// Runs one generation job on `peer`. The text the operator streams and sends with its result
    /// is not passed on: the requester decodes the tokens itself (`generation.rs`).
    pub async fn generate_remote(
        &self,
        peer: PeerId,
        request: GenerateRequest,
    ) -> Result<GenerateResult, NodeError> {
        let job = |detail: String| NodeError::Job { peer, detail };
        let id = job_id();
        let started = Instant::now();
        let model = request.model;
        // Milliseconds to the operator's first answer (its round trip).
        let first = std::sync::atomic::AtomicU64::new(u64::MAX);
        let run = async {
            let mut stream = self.open(peer).await?;
            let envelope = Envelope::new(
                id,
                wire::event("generate", State::Requested)?,
                now_ms(),
                request.encode()?,
            );
            write_frame(&mut stream, &envelope).await.map_err(job)?;
            loop {
                let Some(env) = read_frame(&mut stream).await.map_err(job)? else {
                    return Err(job("stream ended before a result".into()));
                };
                if env.id != id {
                    return Err(job("reply with another job id".into()));
                }
                let _ = first.compare_exchange(
                    u64::MAX,
                    started.elapsed().as_millis() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                );
                match env.event.state {
                    State::Processing => {
                        // Checked for form only: the user gets text decoded here from tokens.
                        TokenChunk::decode(&env.payload)?;
                    }
                    State::Completed => return Ok(GenerateResult::decode(&env.payload)?),
                    State::Failed => {
                        let f = JobFailure::decode(&env.payload)?;
                        return Err(job(format!("{}: {}", f.code, f.reason)));
                    }
                    State::Requested => return Err(job("operator sent a request".into())),
                }
            }
        };
        let out = tokio::time::timeout(JOB_TIMEOUT, run)
            .await
            .map_err(|_| job("timed out".into()))?;
        let ms = started.elapsed().as_millis() as u64;
        if let Ok(r) = &out {
            let first = match first.load(std::sync::atomic::Ordering::Relaxed) {
                u64::MAX => ms,
                at => at,
            };
            lock(&self.measured).observe_job(&peer, now_ms(), first, ms, r.tokens.len());
        }
        self.log(JobView {
            id: hex::encode(id),
            kind: "generate".into(),
            role: "remote".into(),
            model: model.to_string(),
            peer: Some(peer.to_string()),
            items: out.as_ref().map(|r| r.tokens.len()).unwrap_or(0),
            outcome: match &out {
                Ok(_) => "completed".into(),
                Err(e) => format!("failed: {e}"),
            },
            ms,
            at_ms: now_ms(),
        });
        out
    }

    /// The operators of `model` found in the DHT (this node excluded), as ranking candidates.
    pub async fn candidates(&self, model: ContentId) -> Result<Vec<Candidate<PeerId>>, NodeError> {
        let mut peers = self.client.providers(super::operator_key(&model)).await?;
        peers.retain(|p| *p != self.me);
        peers.sort();
        peers.dedup();
        let scores = self.mesh.reputation().snapshot();
        // Pings: the transport's round trip to each connected operator.
        let pings = self.client.peers().await.unwrap_or_default();
        // Price and load: from each operator's signed node record.
        let records = self.client.known_records(peers.clone()).await?;
        let mut measured = lock(&self.measured);
        let now = now_ms();
        for p in &pings {
            if let (Some(rtt), Ok(peer)) = (p.rtt_ms, p.peer_id.parse::<PeerId>())
                && peers.contains(&peer)
            {
                measured.observe_ping(&peer, now, rtt.max(0.0) as u64);
            }
        }
        Ok(peers
            .into_iter()
            .map(|peer| {
                let m = measured.get(&peer);
                let record = records.iter().find(|r| r.peer_id == peer);
                Candidate {
                    peer,
                    price: record.map_or(0, |r| r.price.compute_per_1k_tokens),
                    latency_ms: m.latency_ms,
                    throughput: m.throughput,
                    reputation: scores.total(&peer),
                    busy: record.is_some_and(|r| signals::is_busy(r.load_permille)),
                }
            })
            .collect())
    }

    /// A distributed embedding job: splits `texts` across up to `max_operators` operators ranked
    /// by `strategy`, re-runs a `sample` fraction of each part on a different operator, and on a
    /// mismatch asks a third party (another operator, or this node when it serves the model) who
    /// is right; the wrong operator's part is redone elsewhere and a signed observation names it.
    pub async fn embed(
        &self,
        model: ContentId,
        texts: Vec<String>,
        strategy: Strategy,
        max_operators: usize,
        sample: f64,
    ) -> Result<EmbedOutcome, NodeError> {
        if strategy == Strategy::Private {
            route_through_circuit()?;
        }
        let candidates = self.candidates(model).await?;
        if candidates.is_empty() {
            return Err(NodeError::Model {
                model: model.to_string(),
                detail: "no operator serves it".into(),
            });
        }
        let ranked = plan::rank(&candidates, strategy);
        let max_ops = max_operators.max(texts.len().div_ceil(MAX_PART)).max(1);
        let plan = plan::plan(
            texts.len(),
            &candidates,
            strategy,
            max_ops,
            sample,
            rand::random(),
        );
        // Run every part; a part whose operator fails goes to the next operator in rank order.
        let mut results: Vec<PartResult> = Vec::new();
        let runs = plan.parts.iter().map(|part| {
            let texts = texts[part.range.clone()].to_vec();
            let ranked = &ranked;
            async move {
                let mut order = vec![part.peer];
                order.extend(ranked.iter().map(|c| c.peer).filter(|p| *p != part.peer));
                for peer in order {
                    match self.embed_remote(peer, model, texts.clone()).await {
                        Ok((v, b)) => return Some((peer, v, b)),
                        Err(e) => warn!(%peer, "embedding part failed: {e}"),
                    }
                }
                None
            }
        });
        results.extend(futures::future::join_all(runs).await);
        let mut parts: Vec<PartView> = Vec::new();
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut backend = Backend::Cpu;
        for (part, r) in plan.parts.iter().zip(&results) {
            let Some((peer, v, b)) = r else {
                return Err(NodeError::Model {
                    model: model.to_string(),
                    detail: format!(
                        "items {}..{}: every operator failed",
                        part.range.start, part.range.end
                    ),
                });
            };
            backend = *b;
            for (i, x) in part.range.clone().zip(v) {
                vectors[i] = x.clone();
            }
            parts.push(PartView {
                peer: peer.to_string(),
                start: part.range.start,
                end: part.range.end,
                discarded: Vec::new(),
            });
        }
        // Sample checks, against whoever actually computed each part.
        let mut checks = Vec::new();
        let mut faulty: Vec<PeerId> = Vec::new();
        // Work a comparable run confirmed (operator, its texts): what earns credit.
        let mut confirmed: Vec<(PeerId, Vec<String>)> = Vec::new();
        for check in &plan.checks {
            let Some(pi) = plan.parts.iter().position(|p| p.peer == check.original) else {
                continue;
            };
            let Some((original, _, obackend)) = results[pi].clone() else {
                continue;
            };
            let verifier = if check.verifier == original {
                match ranked.iter().find(|c| c.peer != original) {
                    Some(c) => c.peer,
                    None => continue,
                }
            } else {
                check.verifier
            };
            let sample_texts: Vec<String> = check.items.iter().map(|&i| texts[i].clone()).collect();
            let theirs: Vec<Vec<f32>> = check.items.iter().map(|&i| vectors[i].clone()).collect();
            let mut view = CheckView {
                original: original.to_string(),
                verifier: verifier.to_string(),
                items: check.items.clone(),
                verdict: String::new(),
                fault: None,
                verified: false,
            };
            let (again, vbackend) = match self
                .embed_remote(verifier, model, sample_texts.clone())
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    view.verdict = format!("failed: {e}");
                    checks.push(view);
                    continue;
                }
            };
            match compare_embeddings(obackend, &theirs, vbackend, &again) {
                Verdict::Match => {
                    view.verdict = "match".into();
                    view.verified = true;
                    self.observe(original, Kind::InferenceMatched, &model).await;
                    let part = texts[plan.parts[pi].range.clone()].to_vec();
                    confirmed.push((original, part));
                    confirmed.push((verifier, sample_texts.clone()));
                }
                Verdict::Incomparable => view.verdict = "incomparable".into(),
                Verdict::Mismatch { .. } => {
                    view.verdict = "mismatch".into();
                    let fault = self
                        .arbitrate(
                            model,
                            &sample_texts,
                            &ranked,
                            original,
                            verifier,
                            (&theirs, obackend),
                            (&again, vbackend),
                        )
                        .await;
                    let culprit = match fault {
                        Fault::Original => {
                            confirmed.push((verifier, sample_texts.clone()));
                            Some(original)
                        }
                        Fault::Verifier => {
                            let part = texts[plan.parts[pi].range.clone()].to_vec();
                            confirmed.push((original, part));
                            Some(verifier)
                        }
                        Fault::Undecided => None,
                    };
                    if let Some(bad) = culprit {
                        view.fault = Some(bad.to_string());
                        self.observe(bad, Kind::InferenceMismatched, &model).await;
                        if !faulty.contains(&bad) {
                            faulty.push(bad);
                        }
                    }
                }
            }
            checks.push(view);
        }
        // Every part computed by a faulty operator is discarded and redone by an honest one.
        if !faulty.is_empty() {
            let honest: Vec<PeerId> = ranked
                .iter()
                .map(|c| c.peer)
                .filter(|p| !faulty.contains(p))
                .collect();
            for part in &mut parts {
                let computed_by: PeerId = match part.peer.parse() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                if !faulty.contains(&computed_by) {
                    continue;
                }
                let range = part.start..part.end;
                let mut redone = None;
                for peer in &honest {
                    if let Ok((v, _)) = self
                        .embed_remote(*peer, model, texts[range.clone()].to_vec())
                        .await
                    {
                        redone = Some((*peer, v));
                        break;
                    }
                }
                let Some((peer, v)) = redone else {
                    return Err(NodeError::Model {
                        model: model.to_string(),
                        detail: format!(
                            "items {}..{}: computed by a faulty operator and no honest one could redo them",
                            range.start, range.end
                        ),
                    });
                };
                for (i, x) in range.zip(v) {
                    vectors[i] = x;
                }
                part.discarded.push(part.peer.clone());
                part.peer = peer.to_string();
            }
        }
        confirmed.retain(|(p, _)| !faulty.contains(p));
        self.credit_embeddings(model, confirmed).await;
        Ok(EmbedOutcome {
            vectors,
            parts,
            checks,
            faulty: faulty.iter().map(|p| p.to_string()).collect(),
            backend: backend.as_str().to_string(),
        })
    }

    /// Asks a third party to re-run a disputed sample: another operator, else this node's own
    /// executor when it serves the model.
    #[allow(clippy::too_many_arguments)]
    async fn arbitrate(
        &self,
        model: ContentId,
        texts: &[String],
        ranked: &[Candidate<PeerId>],
        original: PeerId,
        verifier: PeerId,
        a: (&[Vec<f32>], Backend),
        b: (&[Vec<f32>], Backend),
    ) -> Fault {
        let mut third = None;
        for c in ranked
            .iter()
            .filter(|c| c.peer != original && c.peer != verifier)
        {
            if let Ok(r) = self.embed_remote(c.peer, model, texts.to_vec()).await {
                third = Some(r);
                break;
            }
        }
        if third.is_none() && lock(&self.served).contains_key(&model) {
            third = self.embed_local(model, texts.to_vec()).await.ok();
        }
        let Some((v, backend)) = third else {
            return Fault::Undecided;
        };
        plan::arbitrate(
            compare_embeddings(backend, &v, a.1, a.0) == Verdict::Match,
            compare_embeddings(backend, &v, b.1, b.0) == Verdict::Match,
        )
    }

    pub(super) async fn observe(&self, subject: PeerId, kind: Kind, model: &ContentId) {
        if subject == self.me {
            return;
        }
        let evidence = model.to_bytes();
        let evidence = evidence[..evidence
            .len()
            .min(warren_protocol::observation::MAX_EVIDENCE_LEN)]
            .to_vec();
        self.mesh
            .observe_kind(subject, kind, evidence, now_ms())
            .await;
        if kind == Kind::InferenceMismatched {
            warn!(%subject, %model, "operator returned wrong results: observation published");
        }
    }
}

/// The privacy hook: jobs under [`Strategy::Private`] must travel through an onion circuit.
/// Circuits are being built separately; until they land this refuses rather than silently
/// sending the job in the clear.
pub fn route_through_circuit() -> Result<(), NodeError> {
    Err(NodeError::Model {
        model: "-".into(),
        detail: "strategy private goes through an onion circuit: use `warren infer --anon` \
                 (POST /v1/anon/infer)"
            .into(),
    })
}
