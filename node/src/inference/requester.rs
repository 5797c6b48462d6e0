//! The requester side: finding and ranking operators, sending jobs, splitting batches,
//! checking samples and arbitrating disagreements.

use std::time::Instant;

use futures::AsyncWriteExt;
use libp2p::{PeerId, Stream};
use tokio::sync::mpsc;
use tracing::warn;
use warren_inference::Backend;
use warren_inference::digest::{Verdict, compare_embeddings, compare_generations};
use warren_inference::plan::{self, Candidate, Fault, Strategy};
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
            let mut m = lock(&self.measured);
            let e = m.entry(peer).or_default();
            let tput = n as f64 / (ms.max(1) as f64 / 1000.0);
            e.throughput = Some(match e.throughput {
                Some(old) => 0.7 * old + 0.3 * tput,
                None => tput,
            });
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

    /// Runs one generation job on `peer`, sending each text chunk to `chunks` as it arrives.
    pub async fn generate_remote(
        &self,
        peer: PeerId,
        request: GenerateRequest,
        chunks: mpsc::Sender<String>,
    ) -> Result<GenerateResult, NodeError> {
        let job = |detail: String| NodeError::Job { peer, detail };
        let id = job_id();
        let started = Instant::now();
        let model = request.model;
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
                match env.event.state {
                    State::Processing => {
                        let c = TokenChunk::decode(&env.payload)?;
                        if chunks.send(c.text).await.is_err() {
                            // The user went away: closing the stream cancels the job.
                            let _ = stream.close().await;
                            return Err(job("cancelled".into()));
                        }
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
            let mut m = lock(&self.measured);
            let e = m.entry(peer).or_default();
            e.throughput = Some(r.tokens.len() as f64 / (ms.max(1) as f64 / 1000.0));
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
        let measured = lock(&self.measured);
        Ok(peers
            .into_iter()
            .map(|peer| {
                let m = measured.get(&peer).copied().unwrap_or_default();
                Candidate {
                    peer,
                    price: 0,
                    latency_ms: m.latency_ms,
                    throughput: m.throughput,
                    reputation: scores.total(&peer),
                    busy: false,
                }
            })
            .collect())
    }

    /// Routes a generation job: the best operator by `strategy`, or this node when it serves the
    /// model and `local` is asked for.
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
        let ranked = plan::rank(&self.candidates(request.model).await?, strategy);
        let mut last = None;
        for c in &ranked {
            match self
                .generate_remote(c.peer, request.clone(), chunks.clone())
                .await
            {
                Ok(r) => {
                    // Decoding is deterministic (greedy or seeded): a sampled share of jobs is
                    // re-run on another operator and must give the same tokens.
                    let draw = (plan::SplitMix64(rand::random()).next_u64() >> 11) as f64
                        / (1u64 << 53) as f64;
                    if draw < sample {
                        let (peer, r, check) =
                            self.verify_generation(&request, &ranked, c.peer, r).await;
                        return Ok((peer, r, Some(check)));
                    }
                    return Ok((Some(c.peer), r, None));
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

    /// Re-runs a generation on a second operator and, if the tokens differ, on a third (or this
    /// node) to decide; returns the result of an operator found honest, and publishes
    /// observations of the checked ones.
    async fn verify_generation(
        &self,
        request: &GenerateRequest,
        ranked: &[Candidate<PeerId>],
        original: PeerId,
        first: GenerateResult,
    ) -> (Option<PeerId>, GenerateResult, CheckView) {
        let backend = |r: &GenerateResult| Backend::parse(&r.backend).unwrap_or(Backend::Cpu);
        let rerun = |peer: PeerId| {
            let (tx, mut rx) = mpsc::channel::<String>(64);
            let request = request.clone();
            async move {
                let drain = async { while rx.recv().await.is_some() {} };
                let (r, ()) = tokio::join!(self.generate_remote(peer, request, tx), drain);
                r
            }
        };
        let mut checked = None;
        for c in ranked.iter().filter(|c| c.peer != original) {
            match rerun(c.peer).await {
                Ok(r) => {
                    checked = Some((c.peer, r));
                    break;
                }
                Err(e) => warn!(peer = %c.peer, "verification re-run failed: {e}"),
            }
        }
        let mut view = CheckView {
            original: original.to_string(),
            verifier: String::new(),
            items: Vec::new(),
            verdict: "no other operator could re-run it".into(),
            fault: None,
        };
        let Some((verifier, second)) = checked else {
            return (Some(original), first, view);
        };
        view.verifier = verifier.to_string();
        match compare_generations(
            backend(&first),
            &first.tokens,
            backend(&second),
            &second.tokens,
        ) {
            Verdict::Match => {
                self.observe(original, Kind::InferenceMatched, &request.model)
                    .await;
                view.verdict = "match".into();
                return (Some(original), first, view);
            }
            Verdict::Incomparable => {
                view.verdict = "incomparable".into();
                return (Some(original), first, view);
            }
            Verdict::Mismatch { .. } => view.verdict = "mismatch".into(),
        }
        let mut third = None;
        for c in ranked
            .iter()
            .filter(|c| c.peer != original && c.peer != verifier)
        {
            if let Ok(r) = rerun(c.peer).await {
                third = Some(r);
                break;
            }
        }
        if third.is_none() && lock(&self.served).contains_key(&request.model) {
            let (tx, mut rx) = mpsc::channel::<String>(64);
            let drain = async { while rx.recv().await.is_some() {} };
            let (r, ()) = tokio::join!(self.generate_local(request.clone(), tx), drain);
            third = r.ok();
        }
        let Some(third) = third else {
            warn!(%original, %verifier, "generation results disagree and no third party could decide");
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
                view.fault = Some(original.to_string());
                (Some(verifier), second, view)
            }
            Fault::Verifier => {
                self.observe(verifier, Kind::InferenceMismatched, &request.model)
                    .await;
                view.fault = Some(verifier.to_string());
                (Some(original), first, view)
            }
            Fault::Undecided => (Some(original), first, view),
        }
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
                    self.observe(original, Kind::InferenceMatched, &model).await;
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
                        Fault::Original => Some(original),
                        Fault::Verifier => Some(verifier),
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

    async fn observe(&self, subject: PeerId, kind: Kind, model: &ContentId) {
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
