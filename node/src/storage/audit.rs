//! Proof-of-storage audits: challenging holders, recording the outcome, publishing it.

use std::collections::BTreeSet;

use libp2p::PeerId;
use rand::RngCore;
use tracing::{debug, warn};
use warren_protocol::block_transfer::{Request, Response};
use warren_protocol::observation::Kind;
use warren_protocol::reputation::Rate;
use warren_protocol::{ContentId, Observation, REPUTATION_TOPIC};
use warren_storage_mesh::proof::{self, Challenge, Proof};

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::FetchSession;
use crate::storage::{AUDIT_PROBES, Mesh};
use crate::view::AuditRecord;
use warren_storage_mesh::audit::Audit;

impl Mesh {
    /// Runs one proof-of-storage audit of `peer` now and records it like the scheduled ones.
    /// The block: `cid` itself if it is a chunk this node knows the length of; for a file, a
    /// random block of it that `peer`'s provider records claim; without `cid`, a random block
    /// this node is responsible for that `peer` claims.
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
            Some(c) if c.codec() == warren_protocol::Codec::Raw => {
                let len = self.store_call(move |s| s.block_len(&c)).await?;
                let len = len.ok_or(NodeError::UnknownBlock { block: c })?;
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                return Ok(self.audit(c, len, peer, seed).await);
            }
            Some(root) => {
                self.dag_fetching_manifests(root, &FetchSession::default())
                    .await?
            }
            None => self.responsibilities().await?,
        };
        // Random order; look for a block the peer claims among the first AUDIT_PROBES.
        let mut rng = rand::rngs::OsRng;
        rand::seq::SliceRandom::shuffle(pool.as_mut_slice(), &mut rng);
        let probed = pool.len().min(AUDIT_PROBES);
        for (block, len) in pool.into_iter().take(AUDIT_PROBES) {
            if self.client.providers(block).await?.contains(&peer) {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                return Ok(self.audit(block, len, peer, seed).await);
            }
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
        let challenge = Challenge::new(cid.hash(), len, seed);
        let request = Request::Audit(challenge.to_request(cid.codec()));
        let verdict = match self.client.blocks(subject, request).await {
            Ok(Response::Proof(p)) => Proof::from_bytes(&cid.hash(), &p.proof)
                .and_then(|proof| proof::verify(&challenge, &proof))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Ok(other) => Err(format!("answered {} instead of a proof", other.kind())),
            Err(e) => Err(e.to_string()),
        };
        let audit = Audit {
            subject,
            block: cid,
            failure: verdict.err(),
            time_ms: now_ms(),
        };
        if audit.passed() {
            debug!(%subject, block = %cid, "audit passed");
        } else {
            warn!(%subject, block = %cid, reason = ?audit.failure, "audit failed");
        }
        let record = AuditRecord::from(&audit);
        let (passed, time_ms) = (audit.passed(), audit.time_ms);
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.record(audit);
        }
        self.observe(subject, &cid, passed, time_ms).await;
        record
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
    pub(crate) async fn observe_kind(
        &self,
        subject: PeerId,
        kind: Kind,
        evidence: Vec<u8>,
        time_ms: u64,
    ) {
        let obs = Observation {
            observer: self.key.public().to_peer_id(),
            subject,
            kind,
            value: 1,
            time_ms,
            evidence: Some(evidence),
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

    /// Audits one random other holder of one random block this node is responsible for.
    pub async fn audit_once(&self) -> Result<Option<AuditRecord>, NodeError> {
        let blocks = self.responsibilities().await?;
        if blocks.is_empty() {
            return Ok(None);
        }
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let (cid, len) = blocks[(u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]) as usize)
            % blocks.len()];
        let (me, candidates) = self.client.candidates().await?;
        let live: BTreeSet<PeerId> = candidates.iter().map(|c| c.peer).collect();
        let others: Vec<PeerId> = self
            .client
            .providers(cid)
            .await?
            .into_iter()
            .filter(|p| *p != me && live.contains(p))
            .collect();
        if others.is_empty() {
            return Ok(None);
        }
        let subject = others[seed[8] as usize % others.len()];
        let record = self.audit(cid, len, subject, seed).await;
        Ok(Some(record))
    }
}

impl From<&Audit> for AuditRecord {
    fn from(a: &Audit) -> Self {
        AuditRecord {
            subject: a.subject.to_string(),
            block: a.block.to_string(),
            passed: a.passed(),
            reason: a.failure.clone(),
            time_ms: a.time_ms,
        }
    }
}
