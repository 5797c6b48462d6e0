//! The bilateral ledger (spec: `spec/credits.md`, "Ledger"): what one node knows of its credit
//! with each peer, as a state machine with the time passed in.
//!
//! Per peer it keeps the two latest receipts (the peer's to this node, this node's to the peer),
//! the service not yet covered by a receipt on either side, the free allowance forgiven, strikes
//! for refused receipts, and a refusal deadline. The balance is what this node's rate card makes
//! of the two directions: positive when the peer delivered more than it took.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::CreditError;
use super::rates::RateCard;
use super::receipt::{FraudProof, Quantities, Receipt};
use crate::PeerId;

/// Clock skew tolerated on a receipt's time, seconds.
pub const RECEIPT_CLOCK_SKEW_SECS: u64 = 300;
/// Longest interval one passed audit closes, seconds (a day).
pub const MAX_AUDIT_INTERVAL_SECS: u64 = 24 * 3600;
/// Longest refusal a debt or a strike sets, milliseconds (an hour).
pub const MAX_REFUSAL_MS: u64 = 3_600_000;
/// Refusal per strike, milliseconds.
pub const STRIKE_REFUSAL_MS: u64 = 60_000;
/// Strikes a fraud (two receipts with one sequence number) counts.
pub const FRAUD_STRIKES: u32 = 5;
/// (peer, block) pairs whose last passed audit is remembered.
pub const MAX_AUDIT_MARKS: usize = 65_536;

/// Local credit policy (defaults in `spec/credits.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreditPolicy {
    /// The prices.
    pub rates: RateCard,
    /// Free allowance per peer, nc per second.
    pub allowance_per_sec: u64,
    /// Free allowance for all peers without history together, nc per second.
    pub newcomer_cap_per_sec: u64,
    /// Payment threshold of a peer that has delivered nothing, nc.
    pub base_threshold: u64,
    /// Highest threshold, however much a peer delivered, nc.
    pub max_threshold: u64,
    /// Bytes served to a peer before a receipt for them is due; past it, nothing more.
    pub window_bytes: u64,
    /// Bytes of onion cells delivered back to a previous hop before its receipt for them is
    /// due; past it, a busy hop takes no circuit of that peer (apart from the block window, so
    /// that relay work never cuts a peer's block downloads).
    pub relay_window_bytes: u64,
    /// Peers with an account in memory.
    pub max_peers: usize,
}

impl Default for CreditPolicy {
    fn default() -> Self {
        CreditPolicy {
            rates: RateCard::default(),
            allowance_per_sec: 1_000_000,
            newcomer_cap_per_sec: 10_000_000,
            base_threshold: 64_000_000,
            max_threshold: 8_000_000_000,
            window_bytes: 32 << 20,
            relay_window_bytes: 32 << 20,
            max_peers: 4096,
        }
    }
}

/// What one node knows of one peer.
#[derive(Clone, Debug, Default)]
pub struct Account {
    /// The latest receipt the peer (payer) signed to this node: what this node delivered.
    pub theirs: Option<Receipt>,
    /// The latest receipt this node signed to the peer: what the peer delivered.
    pub mine: Option<Receipt>,
    /// Bytes served to the peer not yet covered by a receipt of theirs.
    pub unreceipted_bytes: u64,
    /// Bytes of onion cells delivered back to the peer (its circuits' previous hop) not yet
    /// covered by a receipt of theirs: the open relay window.
    pub unreceipted_relay: u64,
    /// Service received from the peer not yet in a receipt of this node's.
    pub owed: Quantities,
    /// Debt forgiven by the free allowance, nc.
    pub forgiven: u64,
    /// When the allowance was last counted, ms.
    pub refreshed_ms: u64,
    /// Refused receipts.
    pub strikes: u32,
    /// Not served before this, ms.
    pub refused_until_ms: u64,
    /// Proof that the peer signed two receipts with one sequence number.
    pub fraud: Option<FraudProof>,
    /// Last activity, ms.
    pub seen_ms: u64,
}

impl Account {
    fn delivered_by_peer(&self) -> Quantities {
        let mut q = self
            .mine
            .as_ref()
            .map(|r| r.work.clone())
            .unwrap_or_default();
        q.bytes = q.bytes.saturating_add(self.owed.bytes);
        q.storage_kib_secs = q
            .storage_kib_secs
            .saturating_add(self.owed.storage_kib_secs);
        q.relay_bytes = q.relay_bytes.saturating_add(self.owed.relay_bytes);
        for w in &self.owed.inference {
            q.add_work(w);
        }
        q
    }

    fn has_history(&self) -> bool {
        self.mine.is_some() || self.owed != Quantities::default()
    }
}

/// How a request of a peer is to be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Served, in order of `priority` (higher first) when the node is busy.
    Serve {
        /// The peer's standing: its balance plus the allowance, less strikes.
        priority: i64,
    },
    /// Past its threshold: served after everyone else.
    Last,
    /// Not served until `until_ms`.
    Refuse {
        /// When it may ask again, ms.
        until_ms: u64,
        /// Why.
        reason: &'static str,
    },
}

/// Priority of [`Decision::Last`].
pub const LAST: i64 = i64::MIN / 2;

/// A peer's credit as numbers (nc), for display.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Value of what the peer delivered to this node.
    pub earned_by_peer: u64,
    /// Value of what this node delivered to the peer.
    pub spent_by_peer: u64,
    /// `earned_by_peer - spent_by_peer`.
    pub balance: i64,
    /// Debt forgiven by the free allowance.
    pub forgiven: u64,
    /// The peer's payment threshold now.
    pub threshold: u64,
    /// Refused receipts.
    pub strikes: u32,
    /// Whether this node holds a fraud proof against the peer.
    pub fraud: bool,
    /// Whether the peer is refused now.
    pub refused: bool,
    /// Cumulative quantities the peer delivered (receipted or not).
    pub delivered_by_peer: Quantities,
    /// Cumulative quantities this node delivered (acknowledged by the peer's receipt), plus
    /// bytes not yet acknowledged.
    pub delivered_to_peer: Quantities,
}

/// The ledger of one node.
#[derive(Clone, Debug)]
pub struct Ledger {
    me: [u8; 32],
    policy: CreditPolicy,
    accounts: HashMap<PeerId, Account>,
    newcomer_tokens: u64,
    newcomer_ms: u64,
    audits: BTreeMap<(PeerId, [u8; 32]), u64>,
}

fn value_diff(a: u64, b: u64) -> i64 {
    let d = i128::from(a) - i128::from(b);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

impl Ledger {
    /// An empty ledger of the node whose Ed25519 key is `me`.
    pub fn new(me: [u8; 32], policy: CreditPolicy) -> Self {
        Ledger {
            me,
            policy,
            accounts: HashMap::new(),
            newcomer_tokens: policy.newcomer_cap_per_sec,
            newcomer_ms: 0,
            audits: BTreeMap::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &CreditPolicy {
        &self.policy
    }

    /// The peers with an account.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.accounts.keys()
    }

    /// The account of `peer`, if any.
    pub fn account(&self, peer: &PeerId) -> Option<&Account> {
        self.accounts.get(peer)
    }

    fn account_mut(&mut self, peer: PeerId, now_ms: u64) -> &mut Account {
        if !self.accounts.contains_key(&peer) && self.accounts.len() >= self.policy.max_peers {
            self.evict();
        }
        let a = self.accounts.entry(peer).or_insert_with(|| Account {
            refreshed_ms: now_ms,
            ..Account::default()
        });
        a.seen_ms = a.seen_ms.max(now_ms);
        a
    }

    /// Drops the least recently seen account without receipts, strikes or a fraud proof (or,
    /// failing that, any): a flood of fresh accounts does not wash away what is held against a
    /// peer.
    fn evict(&mut self) {
        let victim = self
            .accounts
            .iter()
            .min_by_key(|(_, a)| {
                let kept = a.theirs.is_some() || a.mine.is_some() || a.strikes > 0;
                (kept || a.fraud.is_some(), a.seen_ms)
            })
            .map(|(p, _)| *p);
        if let Some(p) = victim {
            self.accounts.remove(&p);
        }
    }

    /// Puts back a receipt read from disk (no checks of order: the store holds the latest).
    pub fn restore(&mut self, peer: PeerId, receipt: Receipt, now_ms: u64) {
        let mine = receipt.payer == self.me;
        let a = self.account_mut(peer, now_ms);
        if mine {
            a.mine = Some(receipt);
        } else {
            a.theirs = Some(receipt);
        }
    }

    fn threshold_of(&self, a: &Account) -> u64 {
        let repaid = self.policy.rates.value(&a.delivered_by_peer());
        self.policy
            .base_threshold
            .saturating_add(repaid / 2)
            .min(self.policy.max_threshold)
    }

    fn balance_of(&self, a: &Account) -> (u64, u64, i64) {
        let rates = &self.policy.rates;
        let earned = rates.value(&a.delivered_by_peer());
        let acknowledged = a.theirs.as_ref().map(|r| rates.value(&r.work)).unwrap_or(0);
        let spent = acknowledged
            .saturating_add(rates.bytes(a.unreceipted_bytes))
            .saturating_add(rates.relay(a.unreceipted_relay));
        (earned, spent, value_diff(earned, spent))
    }

    /// Counts the free allowance since the last refresh, forgiving at most the current debt; a
    /// peer without history draws it from the newcomers' shared bucket too.
    fn refresh(&mut self, peer: &PeerId, now_ms: u64) {
        let Some(a) = self.accounts.get(peer) else {
            return;
        };
        let (_, _, balance) = self.balance_of(a);
        let debt = u64::try_from(-balance.min(0)).unwrap_or(u64::MAX);
        let elapsed = now_ms.saturating_sub(a.refreshed_ms);
        let mut grant = self.policy.allowance_per_sec.saturating_mul(elapsed) / 1000;
        grant = grant.min(debt.saturating_sub(a.forgiven));
        if !a.has_history() {
            let refill = self
                .policy
                .newcomer_cap_per_sec
                .saturating_mul(now_ms.saturating_sub(self.newcomer_ms))
                / 1000;
            self.newcomer_tokens = self
                .newcomer_tokens
                .saturating_add(refill)
                .min(self.policy.newcomer_cap_per_sec);
            self.newcomer_ms = self.newcomer_ms.max(now_ms);
            grant = grant.min(self.newcomer_tokens);
            self.newcomer_tokens -= grant;
        }
        if let Some(a) = self.accounts.get_mut(peer) {
            a.forgiven = a.forgiven.saturating_add(grant).min(debt);
            a.refreshed_ms = a.refreshed_ms.max(now_ms);
        }
    }

    /// How to serve a request of `peer` at `now_ms`.
    pub fn admit(&mut self, peer: PeerId, now_ms: u64) -> Decision {
        self.decide(peer, now_ms, true)
    }

    /// How a busy onion hop takes a circuit of `peer` (its previous hop): as [`Ledger::admit`],
    /// but a debt past 125 % does not set the peer's refusal deadline (a check that serves
    /// nothing itself does not lengthen the time the peer's other requests are refused), and a
    /// full relay window (cells delivered back to it that it has not receipted) refuses it too.
    pub fn judge(&mut self, peer: PeerId, now_ms: u64) -> Decision {
        if self
            .accounts
            .get(&peer)
            .is_some_and(|a| a.unreceipted_relay >= self.policy.relay_window_bytes)
        {
            return Decision::Refuse {
                until_ms: now_ms,
                reason: "a receipt for the last relay window is due",
            };
        }
        self.decide(peer, now_ms, false)
    }

    fn decide(&mut self, peer: PeerId, now_ms: u64, record: bool) -> Decision {
        self.account_mut(peer, now_ms);
        self.refresh(&peer, now_ms);
        let Some(a) = self.accounts.get(&peer) else {
            return Decision::Serve { priority: 0 };
        };
        if a.refused_until_ms > now_ms {
            return Decision::Refuse {
                until_ms: a.refused_until_ms,
                reason: "refused for its debt or for refused receipts",
            };
        }
        if a.unreceipted_bytes >= self.policy.window_bytes {
            return Decision::Refuse {
                until_ms: now_ms,
                reason: "a receipt for the last window is due",
            };
        }
        let (_, _, balance) = self.balance_of(a);
        let threshold = self.threshold_of(a);
        let debt = u64::try_from(-balance.min(0))
            .unwrap_or(u64::MAX)
            .saturating_sub(a.forgiven);
        if debt > threshold.saturating_add(threshold / 4) {
            let per_ms = self.policy.allowance_per_sec.max(1);
            let wait = (debt - threshold).saturating_mul(1000) / per_ms;
            let until_ms = now_ms.saturating_add(wait.clamp(1000, MAX_REFUSAL_MS));
            if record && let Some(a) = self.accounts.get_mut(&peer) {
                a.refused_until_ms = until_ms;
            }
            return Decision::Refuse {
                until_ms,
                reason: "its debt is past 125 % of its threshold",
            };
        }
        if debt > threshold {
            return Decision::Last;
        }
        let penalty = i64::from(a.strikes).saturating_mul(i64::try_from(threshold).unwrap_or(0));
        let forgiven = i64::try_from(a.forgiven).unwrap_or(i64::MAX);
        Decision::Serve {
            priority: balance.saturating_add(forgiven).saturating_sub(penalty),
        }
    }

    /// This node delivered `bytes` to `peer` (not yet acknowledged).
    pub fn served(&mut self, peer: PeerId, bytes: u64, now_ms: u64) {
        let a = self.account_mut(peer, now_ms);
        a.unreceipted_bytes = a.unreceipted_bytes.saturating_add(bytes);
    }

    /// This node, a hop of a circuit whose previous hop is `peer`, delivered `bytes` of cells
    /// back to it (not yet acknowledged).
    pub fn relay_served(&mut self, peer: PeerId, bytes: u64, now_ms: u64) {
        let a = self.account_mut(peer, now_ms);
        a.unreceipted_relay = a.unreceipted_relay.saturating_add(bytes);
    }

    /// This node received `bytes` of cells from `peer`, the next hop of a circuit of its own or
    /// one it carries: owed to `peer` as relay work.
    pub fn relay_received(&mut self, peer: PeerId, bytes: u64, now_ms: u64) {
        let a = self.account_mut(peer, now_ms);
        a.owed.relay_bytes = a.owed.relay_bytes.saturating_add(bytes);
    }

    /// This node received and verified `bytes` from `peer`.
    pub fn received(&mut self, peer: PeerId, bytes: u64, now_ms: u64) {
        let a = self.account_mut(peer, now_ms);
        a.owed.bytes = a.owed.bytes.saturating_add(bytes);
    }

    /// An inference job `peer` ran for this node passed its sample re-run: its tokens are owed.
    pub fn inference_verified(
        &mut self,
        peer: PeerId,
        model: &str,
        params_m: u64,
        prefill: u64,
        generated: u64,
        now_ms: u64,
    ) {
        let a = self.account_mut(peer, now_ms);
        a.owed.add_inference(model, params_m, prefill, generated);
    }

    /// An embedding job `peer` ran for this node was confirmed by a comparable run: its
    /// `embedded` tokens are owed.
    pub fn embedding_verified(
        &mut self,
        peer: PeerId,
        model: &str,
        params_m: u64,
        embedded: u64,
        now_ms: u64,
    ) {
        let a = self.account_mut(peer, now_ms);
        a.owed.add_embedding(model, params_m, embedded);
    }

    /// An audit of `peer` on `block` (of `size` bytes) passed at `now_ms`: closes the interval
    /// since the previous passed audit of that pair (the first opens it, and earns nothing).
    /// Returns the KiB-seconds earned.
    pub fn audit_passed(&mut self, peer: PeerId, block: [u8; 32], size: u64, now_ms: u64) -> u64 {
        let key = (peer, block);
        let earned = match self.audits.get(&key) {
            Some(&last) => {
                let secs = now_ms.saturating_sub(last) / 1000;
                (size / 1024).saturating_mul(secs.min(MAX_AUDIT_INTERVAL_SECS))
            }
            None => 0,
        };
        if !self.audits.contains_key(&key) && self.audits.len() >= MAX_AUDIT_MARKS {
            let oldest = self.audits.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.audits.remove(&k);
            }
        }
        self.audits.insert(key, now_ms);
        let a = self.account_mut(peer, now_ms);
        a.owed.storage_kib_secs = a.owed.storage_kib_secs.saturating_add(earned);
        earned
    }

    /// An audit of `peer` on `block` failed: the open interval earns nothing.
    pub fn audit_failed(&mut self, peer: PeerId, block: [u8; 32]) {
        self.audits.remove(&(peer, block));
    }

    /// Whether a receipt to `peer` is due: service is owed and it reaches half the payee's
    /// window or half its relay window (settle early, at half), or `force` (a periodic flush).
    pub fn receipt_due(&self, peer: &PeerId, force: bool) -> bool {
        self.accounts.get(peer).is_some_and(|a| {
            a.owed != Quantities::default()
                && (force
                    || a.owed.bytes >= self.policy.window_bytes / 2
                    || a.owed.relay_bytes >= self.policy.relay_window_bytes / 2)
        })
    }

    /// Peers this node owes a receipt to.
    pub fn owing(&self) -> Vec<PeerId> {
        self.accounts
            .iter()
            .filter(|(_, a)| a.owed != Quantities::default())
            .map(|(p, _)| *p)
            .collect()
    }

    /// Issues the next receipt to `peer` (Ed25519 key `payee`), covering everything owed, and
    /// keeps it as the latest of this node's. The caller persists it before sending it.
    pub fn issue(
        &mut self,
        key: &crate::Keypair,
        peer: PeerId,
        payee: [u8; 32],
        now_ms: u64,
    ) -> Result<Receipt, CreditError> {
        let a = self.account_mut(peer, now_ms);
        let seq = a.mine.as_ref().map(|r| r.seq).unwrap_or(0) + 1;
        let work = a.delivered_by_peer();
        let r = Receipt::issue(key, payee, seq, now_ms / 1000, work)?;
        a.mine = Some(r.clone());
        a.owed = Quantities::default();
        Ok(r)
    }

    /// The payee countersigned this node's receipt: keeps the double-signed copy.
    pub fn countersigned(&mut self, peer: PeerId, r: Receipt) -> Result<(), CreditError> {
        r.verify()?;
        if r.payee_sig.is_none() || r.payer != self.me {
            return Err(CreditError::Invalid {
                seq: r.seq,
                reason: "not a countersigned receipt of this node",
            });
        }
        if let Some(a) = self.accounts.get_mut(&peer)
            && a.mine.as_ref().is_some_and(|m| m.same_statement(&r))
        {
            a.mine = Some(r);
        }
        Ok(())
    }

    /// A receipt from `peer` was refused for `err`: a strike (five for a conflicting one, a
    /// fraud), and a refusal that grows with the strikes.
    pub fn receipt_refused(&mut self, peer: PeerId, err: &CreditError, now_ms: u64) {
        let weight = if matches!(err, CreditError::Conflicting { .. }) {
            FRAUD_STRIKES
        } else {
            1
        };
        self.strike(peer, now_ms, weight);
    }

    /// A fraud proof arrived (gossiped by another node): if it checks and its culprit is not this
    /// node, the culprit's standing here drops as if it had sent this node the conflicting
    /// receipt (a fraud mark and five strikes). The first proof against a peer counts, later
    /// ones do not. Returns the culprit when it counted.
    pub fn fraud_proven(&mut self, proof: &FraudProof, now_ms: u64) -> Option<PeerId> {
        if !proof.check() || proof.first.payer == self.me {
            return None;
        }
        let culprit = proof.culprit()?;
        if self
            .accounts
            .get(&culprit)
            .is_some_and(|a| a.fraud.is_some())
        {
            return None;
        }
        self.account_mut(culprit, now_ms).fraud = Some(proof.clone());
        self.strike(culprit, now_ms, FRAUD_STRIKES);
        Some(culprit)
    }

    fn strike(&mut self, peer: PeerId, now_ms: u64, weight: u32) {
        let a = self.account_mut(peer, now_ms);
        a.strikes = a.strikes.saturating_add(weight);
        let wait = STRIKE_REFUSAL_MS
            .saturating_mul(u64::from(a.strikes))
            .min(MAX_REFUSAL_MS);
        a.refused_until_ms = a.refused_until_ms.max(now_ms.saturating_add(wait));
    }

    /// A receipt `peer` sent this node (as payer): accepted and countersigned with `key` (this
    /// node's), or refused with a strike against the peer.
    pub fn accept(
        &mut self,
        key: &crate::Keypair,
        peer: PeerId,
        mut r: Receipt,
        now_ms: u64,
    ) -> Result<Receipt, CreditError> {
        let checked = self.check_incoming(peer, &r, now_ms);
        if let Err(e) = checked {
            self.receipt_refused(peer, &e, now_ms);
            return Err(e);
        }
        r.countersign(key)?;
        let a = self.account_mut(peer, now_ms);
        let (before, relay_before) = a
            .theirs
            .as_ref()
            .map_or((0, 0), |t| (t.work.bytes, t.work.relay_bytes));
        let acknowledged = r.work.bytes.saturating_sub(before);
        a.unreceipted_bytes = a.unreceipted_bytes.saturating_sub(acknowledged);
        let relayed = r.work.relay_bytes.saturating_sub(relay_before);
        a.unreceipted_relay = a.unreceipted_relay.saturating_sub(relayed);
        a.theirs = Some(r.clone());
        Ok(r)
    }

    fn check_incoming(
        &mut self,
        peer: PeerId,
        r: &Receipt,
        now_ms: u64,
    ) -> Result<(), CreditError> {
        let seq = r.seq;
        r.verify()?;
        if r.payer_peer() != Some(peer) {
            return Err(CreditError::Forged { seq, who: "sender" });
        }
        if r.payee != self.me {
            return Err(CreditError::Invalid {
                seq,
                reason: "the receipt is addressed to another payee",
            });
        }
        if r.time > now_ms / 1000 + RECEIPT_CLOCK_SKEW_SECS {
            return Err(CreditError::Invalid {
                seq,
                reason: "its time is in the future",
            });
        }
        let Some(last) = self.accounts.get(&peer).and_then(|a| a.theirs.clone()) else {
            return Ok(());
        };
        if seq == last.seq && !last.same_statement(r) {
            let proof = FraudProof::new(last.clone(), r.clone());
            self.account_mut(peer, now_ms).fraud = proof;
            return Err(CreditError::Conflicting { seq });
        }
        if seq <= last.seq {
            return Err(CreditError::Replayed {
                seq,
                latest: last.seq,
            });
        }
        if !r.work.covers(&last.work) || r.time < last.time {
            return Err(CreditError::RolledBack { seq });
        }
        Ok(())
    }

    /// The balance of `peer` (nc; 0 without an account), as [`Standing::balance`], without
    /// counting its allowance.
    pub fn balance(&self, peer: &PeerId) -> i64 {
        self.accounts.get(peer).map_or(0, |a| self.balance_of(a).2)
    }

    /// The standing of `peer` now (refreshing its allowance).
    pub fn standing(&mut self, peer: &PeerId, now_ms: u64) -> Option<Standing> {
        self.refresh(peer, now_ms);
        let a = self.accounts.get(peer)?;
        let (earned, spent, balance) = self.balance_of(a);
        let mut to_peer = a
            .theirs
            .as_ref()
            .map(|r| r.work.clone())
            .unwrap_or_default();
        to_peer.bytes = to_peer.bytes.saturating_add(a.unreceipted_bytes);
        to_peer.relay_bytes = to_peer.relay_bytes.saturating_add(a.unreceipted_relay);
        Some(Standing {
            earned_by_peer: earned,
            spent_by_peer: spent,
            balance,
            forgiven: a.forgiven,
            threshold: self.threshold_of(a),
            strikes: a.strikes,
            fraud: a.fraud.is_some(),
            refused: a.refused_until_ms > now_ms,
            delivered_by_peer: a.delivered_by_peer(),
            delivered_to_peer: to_peer,
        })
    }
}
