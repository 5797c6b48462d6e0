//! Proof-of-storage audits: challenging holders, recording the outcome, publishing it.

use std::collections::BTreeSet;

use libp2p::PeerId;
use rand::RngCore;
use std::time::Duration;

use tracing::{debug, info, warn};
use warren_protocol::block_transfer::{Request, Response};
use warren_protocol::observation::Kind;
use warren_protocol::reputation::Rate;
use warren_protocol::{ContentId, Observation, REPUTATION_TOPIC};
use warren_storage_mesh::proof::{self, Challenge, Proof};

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::net::BlockError;
use crate::storage::FetchSession;
use crate::storage::{AUDIT_PROBES, Mesh};
use crate::view::AuditRecord;
use warren_storage_mesh::audit::{Audit, Outcome};
use warren_storage_mesh::audit_pace::AUDIT_BATCH;

impl Mesh {
    /// Runs one proof-of-storage audit of `peer` now and records it like the scheduled ones.
    /// The block: for a piece manifest stored here, up to [`AUDIT_BATCH`] of its pieces that
    /// `peer`'s provider records claim; `cid` itself if it is another raw block this node knows
    /// the length of; for a file, up to
    /// [`AUDIT_BATCH`] random blocks of it that `peer`'s provider records claim, challenged at
    /// once under one deadline; without `cid`, likewise among the blocks this node is responsible
    /// for. Returns the record that says the most: the first failed audit, else the first
    /// without an answer, else a passed one.
    pub async fn audit_peer(
        &self,
        peer: PeerId,
        cid: Option<ContentId>,
    ) -> Result<AuditRecord, NodeError> {
        let (me, _) = self.client.candidates().await?;
        if peer == me {
            return Err(NodeError::SelfAudit);
        }
        let mut pool: Vec<(ContentId, u64)> = match cid {
            // A piece manifest: the pieces of the file that `peer` claims, each against its
            // own id (spec/proof-of-storage.md, "Pieces").
            Some(c) if c.codec() == warren_protocol::Codec::Raw => {
                match self.piece_pool(c).await? {
                    Some(pieces) => pieces,
                    None => {
                        let len = self.store_call(move |s| s.block_len(&c)).await?;
                        let len = len.ok_or(NodeError::UnknownBlock { block: c })?;
                        let mut seed = [0u8; 32];
                        rand::rngs::OsRng.fill_bytes(&mut seed);
                        return Ok(self.audit(c, len, peer, seed).await);
                    }
                }
            }
            Some(root) => {
                self.dag_fetching_manifests(root, &FetchSession::default())
                    .await?
            }
            None => self.responsibilities().await?,
        };
        // Random order; look for blocks the peer claims among the first AUDIT_PROBES, and
        // challenge up to AUDIT_BATCH of them at once.
        let mut rng = rand::rngs::OsRng;
        rand::seq::SliceRandom::shuffle(pool.as_mut_slice(), &mut rng);
        let probed = pool.len().min(AUDIT_PROBES);
        let mut batch = Vec::new();
        for (block, len) in pool.into_iter().take(AUDIT_PROBES) {
            if self.client.providers(block).await?.contains(&peer) {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                batch.push((block, len, seed));
                if batch.len() == AUDIT_BATCH {
                    break;
                }
            }
        }
        if let Some(worst) = worst(self.audit_batch(peer, batch).await) {
            return Ok(worst);
        }
        Err(NodeError::NotClaimed {
            peer,
            probed,
            what: match cid {
                Some(root) => format!("of {root}"),
                None => "this node holds that were".into(),
            },
        })
    }

    /// Challenges `subject` on a random slice of `cid` and records the result.
    pub(crate) async fn audit(
        &self,
        cid: ContentId,
        len: u64,
        subject: PeerId,
        seed: [u8; 32],
    ) -> AuditRecord {
        let mut records = self.audit_batch(subject, vec![(cid, len, seed)]).await;
        records.pop().unwrap_or_else(|| AuditRecord {
            subject: subject.to_string(),
            block: cid.to_string(),
            passed: false,
            answered: false,
            reason: Some("not run: too many audits in flight".into()),
            time_ms: now_ms(),
        })
    }

    /// Challenges `subject` on a random slice of each of `blocks` at once, under one deadline
    /// ([`MeshConfig::audit_deadline_ms`](crate::config::MeshConfig) from now), and records each
    /// result. While the audits run, this node does not serve those blocks to `subject` (see
    /// [`InFlight`](warren_storage_mesh::audit_pace::InFlight)). A wrong proof (or `not_found`,
    /// another answer) is a failed audit, published as `storage_proof_failed`; no answer within
    /// the deadline (unreachable, timed out, declined with `failed`) is recorded as such and not
    /// published.
    /// Blocks that find the in-flight set full are skipped (no record).
    pub(crate) async fn audit_batch(
        &self,
        subject: PeerId,
        blocks: Vec<(ContentId, u64, [u8; 32])>,
    ) -> Vec<AuditRecord> {
        let deadline_ms = self.config.audit_deadline_ms;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(deadline_ms);
        let started = now_ms();
        let blocks: Vec<_> = match self.in_flight.lock() {
            Ok(mut f) => blocks
                .into_iter()
                .filter(|(cid, _, _)| f.begin(subject, cid.hash(), started, started + deadline_ms))
                .collect(),
            Err(_) => Vec::new(),
        };
        let challenges = blocks.iter().map(|&(cid, len, seed)| async move {
            let challenge = Challenge::new(cid.hash(), len, seed);
            let request = Request::Audit(challenge.to_request(cid.codec()));
            let outcome =
                match tokio::time::timeout_at(deadline, self.client.blocks(subject, request)).await
                {
                    Err(_) => Outcome::NoAnswer(format!(
                        "no proof within the audit deadline ({deadline_ms} ms)"
                    )),
                    Ok(Ok(Response::Proof(p))) => match Proof::from_bytes(&cid.hash(), &p.proof)
                        .and_then(|proof| proof::verify(&challenge, &proof))
                    {
                        Ok(_) => Outcome::Passed,
                        Err(e) => Outcome::Failed(e.to_string()),
                    },
                    // Declining (`busy`, a queue full) proves nothing and accuses nothing: a
                    // holder gains no more by it than by staying silent.
                    Ok(Ok(Response::Failed { reason })) => {
                        Outcome::NoAnswer(format!("declined the audit: {reason}"))
                    }
                    Ok(Ok(other)) => {
                        Outcome::Failed(format!("answered {} instead of a proof", other.kind()))
                    }
                    Ok(Err(e @ (BlockError::Malformed { .. } | BlockError::Mismatched { .. }))) => {
                        Outcome::Failed(e.to_string())
                    }
                    Ok(Err(e)) => Outcome::NoAnswer(e.to_string()),
                };
            (cid, outcome)
        });
        let outcomes = futures::future::join_all(challenges).await;
        if let Ok(mut f) = self.in_flight.lock() {
            for (cid, _, _) in &blocks {
                f.end(&subject, &cid.hash());
            }
        }
        let mut records = Vec::with_capacity(outcomes.len());
        if let Some(credits) = self.credits() {
            for ((cid, outcome), (_, len, _)) in outcomes.iter().zip(&blocks) {
                match outcome {
                    Outcome::Passed => credits.audit_passed(subject, cid.hash(), *len),
                    Outcome::Failed(_) => credits.audit_failed(subject, cid.hash()),
                    Outcome::NoAnswer(_) => {}
                }
            }
        }
        for (cid, outcome) in outcomes {
            let audit = Audit {
                subject,
                block: cid,
                outcome,
                time_ms: now_ms(),
            };
            match &audit.outcome {
                Outcome::Passed => debug!(%subject, block = %cid, "audit passed"),
                Outcome::Failed(why) => {
                    warn!(%subject, block = %cid, reason = %why, "audit failed")
                }
                Outcome::NoAnswer(why) => {
                    info!(%subject, block = %cid, reason = %why, "audit not answered (not a failed proof)")
                }
            }
            let record = AuditRecord::from(&audit);
            let (passed, answered, time_ms) = (audit.passed(), audit.answered(), audit.time_ms);
            if let Ok(mut ledger) = self.ledger.lock() {
                ledger.record(audit);
            }
            // A proof counts for the recheck period; a failure or silence is evidence that a
            // copy is gone: the block is checked (and repaired) now, not in a period.
            if let Ok(mut sweep) = self.sweep.lock() {
                if passed {
                    sweep.verified(&cid.hash(), &subject, time_ms);
                } else {
                    sweep.urgent(&cid.hash());
                }
            }
            if answered {
                self.observe(subject, &cid, passed, time_ms).await;
            }
            records.push(record);
        }
        records
    }

    /// Turns an audit result into a signed observation: scored first-hand here, and published on
    /// `warren/reputation/1` for the others.
    pub(crate) async fn observe(
        &self,
        subject: PeerId,
        block: &ContentId,
        passed: bool,
        time_ms: u64,
    ) {
        let kind = if passed {
            Kind::StorageProofPassed
        } else {
            Kind::StorageProofFailed
        };
        self.observe_kind(subject, kind, block.to_bytes(), time_ms)
            .await;
    }

    /// Records a first-hand observation of `subject` (scored here) and publishes it signed on
    /// `warren/reputation/1`, within the publishing rate limit. `evidence` names what it is about
    /// (a block id, a model id).
    /// A credit receipt from `subject` was refused (forged, replayed, rolled back, conflicting):
    /// an `invalid_message` observation, the BLAKE3 hash of the receipt's bytes as evidence.
    pub async fn refused_receipt(&self, subject: PeerId, receipt: Vec<u8>) {
        let evidence = blake3::hash(&receipt).as_bytes().to_vec();
        self.observe_kind(subject, Kind::InvalidMessage, evidence, now_ms())
            .await;
    }

    pub(crate) async fn observe_kind(
        &self,
        subject: PeerId,
        kind: Kind,
        evidence: Vec<u8>,
        time_ms: u64,
    ) {
        self.observe_value(subject, kind, 1, Some(evidence), time_ms)
            .await;
    }

    /// As [`Mesh::observe_kind`], with a value (a latency in ms, seconds online) and optional
    /// evidence.
    pub(crate) async fn observe_value(
        &self,
        subject: PeerId,
        kind: Kind,
        value: u32,
        evidence: Option<Vec<u8>>,
        time_ms: u64,
    ) {
        let obs = Observation {
            observer: self.key.public().to_peer_id(),
            subject,
            kind,
            value,
            time_ms,
            evidence,
        };
        self.reputation.observe_first_hand(obs.clone());
        let me = obs.observer;
        let allowed = self
            .publish_rate
            .lock()
            .is_ok_and(|mut r| r.check(&me, time_ms) == Rate::Allowed);
        if !allowed {
            debug!(%subject, "observation counted here but not published: over the rate limit");
            return;
        }
        match obs.sign(&self.key).and_then(|signed| signed.encode()) {
            Ok(bytes) => {
                let _ = self.client.publish(REPUTATION_TOPIC, bytes).await;
            }
            Err(e) => warn!(%subject, "cannot sign an observation: {e}"),
        }
    }

    /// Audits one random other holder of one random block of the sweep (the blocks this node is
    /// responsible for), together with up to [`AUDIT_BATCH`] − 1 other of those blocks the sweep
    /// knows it holds (one deadline for all), within the background budget; returns the record
    /// that says the most ([`worst`]).
    pub async fn audit_once(&self) -> Result<Option<AuditRecord>, NodeError> {
        let mut rng = rand::rngs::OsRng;
        let Some((cid, len)) = self
            .sweep
            .lock()
            .ok()
            .and_then(|mut s| s.sample(|| rng.next_u64()))
        else {
            return Ok(None);
        };
        let (me, candidates) = self.client.candidates().await?;
        let live: BTreeSet<PeerId> = candidates.iter().map(|c| c.peer).collect();
        let usable = |peers: Vec<PeerId>| -> Vec<PeerId> {
            peers
                .into_iter()
                .filter(|p| *p != me && live.contains(p))
                .collect()
        };
        // The holders the sweep's last check of the block found; before its first check, the
        // provider records (one DHT query from the budget).
        let mut others = usable(
            self.sweep
                .lock()
                .map(|s| s.holders(&cid.hash()))
                .unwrap_or_default(),
        );
        if others.is_empty() {
            if !self
                .budget
                .lock()
                .is_ok_and(|mut b| b.try_spare_dht(now_ms()))
            {
                return Ok(None);
            }
            others = usable(self.client.providers(cid).await?);
        }
        if others.is_empty() {
            return Ok(None);
        }
        let subject = others[rng.next_u64() as usize % others.len()];
        // Up to AUDIT_BATCH - 1 more blocks the sweep knows the subject holds, challenged with
        // this one (no DHT query: a few random draws from the sweep).
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut batch = vec![(cid, len, seed)];
        for _ in 0..4 * AUDIT_BATCH {
            if batch.len() == AUDIT_BATCH {
                break;
            }
            let Some((block, len)) = self
                .sweep
                .lock()
                .ok()
                .and_then(|mut s| s.sample(|| rng.next_u64()))
            else {
                break;
            };
            let held = self
                .sweep
                .lock()
                .is_ok_and(|s| s.holders(&block.hash()).contains(&subject));
            if held && batch.iter().all(|(b, _, _)| *b != block) {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                batch.push((block, len, seed));
            }
        }
        // Each challenge is an audit of the background budget, from the half the sweep's checks
        // (which repair depends on) do not need.
        let now = now_ms();
        let allowed = self.budget.lock().map_or(0, |mut b| {
            (0..batch.len())
                .take_while(|_| b.try_spare_audit(now))
                .count()
        });
        batch.truncate(allowed);
        if batch.is_empty() {
            return Ok(None);
        }
        Ok(worst(self.audit_batch(subject, batch).await))
    }
}

/// The record that says the most about a batch: the first failed audit, else the first without
/// an answer, else the first (all passed).
fn worst(records: Vec<AuditRecord>) -> Option<AuditRecord> {
    let rank = |r: &AuditRecord| match (r.passed, r.answered) {
        (false, true) => 0,
        (false, false) => 1,
        (true, _) => 2,
    };
    records.into_iter().min_by_key(rank)
}

impl From<&Audit> for AuditRecord {
    fn from(a: &Audit) -> Self {
        AuditRecord {
            subject: a.subject.to_string(),
            block: a.block.to_string(),
            passed: a.passed(),
            answered: a.answered(),
            reason: a.failure().map(str::to_owned),
            time_ms: a.time_ms,
        }
    }
}
