//! When a node checks the blocks it answers for: background work proportional to change, not to
//! the data held (spec: `spec/proof-of-storage.md`, "Pace of the background work").
//!
//! A check of a block (done by the node: one provider lookup, an audit of each holder not
//! verified within the period, a repair plan, the node's own provider record renewed) costs DHT
//! queries and audits. Checking every block every few seconds makes an idle node's CPU grow with
//! the blocks it holds; a [`Sweep`] instead checks each block **once per period**, spread over the
//! period in a random order, and **at once** when there is evidence that copies are gone:
//!
//! - a holder the last check found is no longer among the live peers ([`Sweep::peer_lost`]);
//! - an audit of the block failed or went unanswered ([`Sweep::urgent`]);
//! - the last check could not finish (a holder left unaudited for want of budget, copies missing
//!   while the repair plan was rate-limited): it is retried soon ([`Sweep::retry`]).
//!
//! The sweep also remembers, per block, the holders its last check found and when each last
//! proved it holds the block, so a holder verified within the period is not audited again by the
//! next check (the audit ledger's own window is short). It hands out at most what the caller's
//! budget allows ([`Sweep::next_due`] takes a maximum); blocks not handed out stay due.
//!
//! Memory: one entry per block (≈ 150 bytes: the id, length, due time and up to
//! [`MAX_HOLDERS`] holders as indices into a shared peer table), bounded by the blocks the store
//! holds; the peer table holds only peers some entry refers to.
//!
//! Sans-I/O: the caller passes its clock (Unix ms) and its randomness.

pub mod snapshot;

use std::collections::{BTreeSet, HashMap, VecDeque};

use warren_protocol::{ContentId, PeerId};

/// Holders remembered per block (the base RF plus the origin and a hot copy or two).
pub const MAX_HOLDERS: usize = 6;

/// Tunables of a [`Sweep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepConfig {
    /// Every block is checked at least once per period, milliseconds (at least 1).
    pub period_ms: u64,
    /// A check that could not finish is retried after this long, milliseconds.
    pub retry_ms: u64,
    /// How long a provider record lives at the peers that store it, milliseconds (kad's 48 h):
    /// when two periods and a half fit in it, this node's record is renewed at every other
    /// check, else at every check ([`Sweep::renewal_due`]).
    pub record_ttl_ms: u64,
    /// A holder's proof counts for this many periods ([`Sweep::verified_recently`]); each check
    /// still audits the holder proven longest ago ([`Sweep::stalest`]), so every block is
    /// audited at every check and each of its holders in turn.
    pub trust_periods: u64,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            period_ms: 24 * 3600 * 1000,
            retry_ms: 60_000,
            record_ttl_ms: 48 * 3600 * 1000,
            trust_periods: 4,
        }
    }
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Entry {
    cid: ContentId,
    len: u64,
    due_ms: u64,
    urgent: bool,
    /// When this node last announced itself as the block's provider (0: not since it started).
    renewed_ms: u64,
    /// Indices into the peer table ([`NONE`] for an empty slot) and when each last proved it
    /// holds the block (0: never).
    holders: [u32; MAX_HOLDERS],
    verified_ms: [u64; MAX_HOLDERS],
}

/// Peers referred to by entries, interned (a `PeerId` is ~80 bytes, an index 4), with reference
/// counts so that a peer no entry refers to any more is forgotten.
#[derive(Clone, Debug, Default)]
struct Peers {
    ids: Vec<Option<(PeerId, u32)>>,
    index: HashMap<PeerId, u32>,
    free: Vec<u32>,
}

impl Peers {
    fn intern(&mut self, peer: PeerId) -> u32 {
        if let Some(&i) = self.index.get(&peer) {
            if let Some(Some((_, refs))) = self.ids.get_mut(i as usize) {
                *refs += 1;
            }
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.ids[i as usize] = Some((peer, 1));
                i
            }
            None => {
                self.ids.push(Some((peer, 1)));
                u32::try_from(self.ids.len() - 1).unwrap_or(NONE)
            }
        };
        self.index.insert(peer, i);
        i
    }

    fn release(&mut self, i: u32) {
        if let Some(slot) = self.ids.get_mut(i as usize)
            && let Some((peer, refs)) = slot
        {
            *refs -= 1;
            if *refs == 0 {
                self.index.remove(peer);
                *slot = None;
                self.free.push(i);
            }
        }
    }

    fn get(&self, i: u32) -> Option<&PeerId> {
        self.ids.get(i as usize)?.as_ref().map(|(p, _)| p)
    }

    fn find(&self, peer: &PeerId) -> Option<u32> {
        self.index.get(peer).copied()
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// The blocks a node answers for and when each is checked next. See the module documentation.
#[derive(Clone, Debug)]
pub struct Sweep {
    config: SweepConfig,
    entries: HashMap<[u8; 32], Entry>,
    /// (due, block) of every entry that is not urgent.
    queue: BTreeSet<(u64, [u8; 32])>,
    /// Urgent blocks, oldest first (each once: the entry's flag says whether it is queued).
    urgent: VecDeque<[u8; 32]>,
    /// Every block's hash, for sampling (removed entries are dropped lazily).
    keys: Vec<[u8; 32]>,
    peers: Peers,
}

/// What [`Sweep::sync`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Blocks new to the sweep.
    pub added: usize,
    /// Blocks no longer answered for.
    pub removed: usize,
}

impl Sweep {
    /// An empty sweep (a `period_ms` of 0 counts as 1).
    pub fn new(mut config: SweepConfig) -> Self {
        config.period_ms = config.period_ms.max(1);
        Self {
            config,
            entries: HashMap::new(),
            queue: BTreeSet::new(),
            urgent: VecDeque::new(),
            keys: Vec::new(),
            peers: Peers::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SweepConfig {
        &self.config
    }

    /// Blocks in the sweep.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the sweep has no block.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Peers remembered as holders of some block.
    pub fn peers_known(&self) -> usize {
        self.peers.len()
    }

    /// Blocks waiting for an urgent check.
    pub fn urgent_len(&self) -> usize {
        self.urgent.len()
    }

    /// Makes the sweep's blocks those of `blocks` (the blocks the node answers for now, with
    /// their lengths). A new block's first check is due at a random time within the period
    /// (`rand` gives uniform 64-bit numbers), so a large batch of arrivals spreads out; a block no
    /// longer listed is forgotten with what the sweep knew of it.
    pub fn sync(
        &mut self,
        blocks: &[(ContentId, u64)],
        now_ms: u64,
        mut rand: impl FnMut() -> u64,
    ) -> SyncReport {
        let listed: std::collections::HashSet<[u8; 32]> =
            blocks.iter().map(|(c, _)| c.hash()).collect();
        let gone: Vec<[u8; 32]> = self
            .entries
            .keys()
            .filter(|h| !listed.contains(*h))
            .copied()
            .collect();
        let mut report = SyncReport {
            removed: gone.len(),
            ..SyncReport::default()
        };
        for h in gone {
            self.remove(&h);
        }
        // The first sync is a start: the provider records of the blocks found may have lapsed
        // while the node was off. Later ones find blocks just stored (and just announced).
        let renewed = if self.entries.is_empty() { 0 } else { now_ms };
        for &(cid, len) in blocks {
            if !self.entries.contains_key(&cid.hash()) {
                let due = now_ms.saturating_add(rand() % self.config.period_ms);
                self.insert(cid, len, due, renewed);
                report.added += 1;
            }
        }
        self.keys = self.entries.keys().copied().collect();
        report
    }

    /// Adds `cid` (checked first at `due_ms`; announced by this node just now), if it is not in
    /// the sweep yet.
    pub fn add(&mut self, cid: ContentId, len: u64, due_ms: u64, now_ms: u64) {
        if !self.entries.contains_key(&cid.hash()) {
            self.insert(cid, len, due_ms, now_ms);
            self.keys.push(cid.hash());
        }
    }

    /// Whether this node's provider record for `block` is due for renewal at `now_ms`. Checks
    /// come once per period; when the record outlives two and a half periods (16 h against kad's
    /// 48 h by default), every other check renews it (not announced within a period and a half:
    /// the oldest record is two periods old, half a period from expiry at the worst), else every
    /// check does (not announced within half a period).
    pub fn renewal_due(&self, block: &[u8; 32], now_ms: u64) -> bool {
        let p = self.config.period_ms;
        let after = if p.saturating_mul(5) / 2 <= self.config.record_ttl_ms {
            p.saturating_mul(3) / 2
        } else {
            p / 2
        };
        self.entries
            .get(block)
            .is_some_and(|e| now_ms.saturating_sub(e.renewed_ms) >= after)
    }

    /// This node announced itself as `block`'s provider at `now_ms`.
    pub fn renewed(&mut self, block: &[u8; 32], now_ms: u64) {
        if let Some(e) = self.entries.get_mut(block) {
            e.renewed_ms = now_ms;
        }
    }

    fn insert(&mut self, cid: ContentId, len: u64, due_ms: u64, renewed_ms: u64) {
        let h = cid.hash();
        self.entries.insert(
            h,
            Entry {
                cid,
                len,
                due_ms,
                urgent: false,
                renewed_ms,
                holders: [NONE; MAX_HOLDERS],
                verified_ms: [0; MAX_HOLDERS],
            },
        );
        self.queue.insert((due_ms, h));
    }

    /// Forgets `block`.
    pub fn remove(&mut self, block: &[u8; 32]) {
        if let Some(e) = self.entries.remove(block) {
            self.queue.remove(&(e.due_ms, *block));
            for i in e.holders.into_iter().filter(|&i| i != NONE) {
                self.peers.release(i);
            }
            // An urgent entry stays in `urgent` and is skipped when popped.
        }
    }

    /// Up to `max` blocks to check now: the urgent ones first (oldest evidence first), then those
    /// whose time has come (longest overdue first). Each is due again a period from now.
    pub fn next_due(&mut self, now_ms: u64, max: usize) -> Vec<(ContentId, u64)> {
        let mut out = self.next_urgent(now_ms, max);
        while out.len() < max {
            let Some(&(due, h)) = self.queue.first() else {
                break;
            };
            if due > now_ms {
                break;
            }
            self.queue.pop_first();
            if let Some(e) = self.entries.get_mut(&h) {
                out.push((e.cid, e.len));
                e.due_ms = now_ms.saturating_add(self.config.period_ms);
                self.queue.insert((e.due_ms, h));
            }
        }
        out
    }

    /// Up to `max` urgent blocks (checks on evidence), oldest first; [`Sweep::next_due`] hands
    /// out the rest. The caller may allow more urgent checks than routine ones.
    pub fn next_urgent(&mut self, now_ms: u64, max: usize) -> Vec<(ContentId, u64)> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(h) = self.urgent.pop_front() else {
                break;
            };
            if let Some(e) = self.entries.get_mut(&h)
                && e.urgent
            {
                e.urgent = false;
                out.push((e.cid, e.len));
                e.due_ms = now_ms.saturating_add(self.config.period_ms);
                self.queue.insert((e.due_ms, h));
            }
        }
        out
    }

    /// Blocks whose periodic check is due at `now_ms` (not counting the urgent ones).
    pub fn overdue(&self, now_ms: u64) -> usize {
        self.queue
            .range(..(now_ms.saturating_add(1), [0; 32]))
            .count()
    }

    /// Marks `block` for a check as soon as the budget allows. False when it is not in the sweep.
    pub fn urgent(&mut self, block: &[u8; 32]) -> bool {
        let Some(e) = self.entries.get_mut(block) else {
            return false;
        };
        if !e.urgent {
            e.urgent = true;
            self.queue.remove(&(e.due_ms, *block));
            self.urgent.push_back(*block);
        }
        true
    }

    /// Checks `block` again at `at_ms` at the latest (a check that could not finish).
    pub fn retry(&mut self, block: &[u8; 32], at_ms: u64) {
        if let Some(e) = self.entries.get_mut(block)
            && !e.urgent
            && at_ms < e.due_ms
        {
            self.queue.remove(&(e.due_ms, *block));
            e.due_ms = at_ms;
            self.queue.insert((at_ms, *block));
        }
    }

    /// The retry time of a check that could not finish at `now_ms`.
    pub fn retry_at(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.config.retry_ms)
    }

    /// `peer` is gone: every block whose last check found it a holder is marked urgent. Returns
    /// how many. One pass over the entries (call it once per batch of lost peers, with
    /// [`Sweep::peers_lost`]).
    pub fn peer_lost(&mut self, peer: &PeerId) -> usize {
        self.peers_lost(std::slice::from_ref(peer))
    }

    /// [`Sweep::peer_lost`] for several peers in one pass.
    pub fn peers_lost(&mut self, peers: &[PeerId]) -> usize {
        let lost: Vec<u32> = peers.iter().filter_map(|p| self.peers.find(p)).collect();
        if lost.is_empty() {
            return 0;
        }
        let hit: Vec<[u8; 32]> = self
            .entries
            .iter()
            .filter(|(_, e)| e.holders.iter().any(|i| lost.contains(i)))
            .map(|(h, _)| *h)
            .collect();
        for h in &hit {
            self.urgent(h);
        }
        hit.len()
    }

    /// The last check of `block` found `holders` (this node not included): they replace the
    /// remembered ones (at most [`MAX_HOLDERS`]; when a peer stays, so does its verification
    /// time).
    pub fn holders_found(&mut self, block: &[u8; 32], holders: &[PeerId]) {
        let Some(e) = self.entries.get_mut(block) else {
            return;
        };
        let mut next = [NONE; MAX_HOLDERS];
        let mut times = [0u64; MAX_HOLDERS];
        for (slot, peer) in holders.iter().take(MAX_HOLDERS).enumerate() {
            let i = self.peers.intern(*peer);
            next[slot] = i;
            if let Some(k) = e.holders.iter().position(|&o| o == i) {
                times[slot] = e.verified_ms[k];
            }
        }
        for i in e.holders.into_iter().filter(|&i| i != NONE) {
            self.peers.release(i);
        }
        e.holders = next;
        e.verified_ms = times;
    }

    /// `peer` proved at `at_ms` that it holds `block` (a passed audit, or it just checked and
    /// stored a copy this node pushed). Remembered only for a holder the last check found, or
    /// in a free slot.
    pub fn verified(&mut self, block: &[u8; 32], peer: &PeerId, at_ms: u64) {
        let Some(e) = self.entries.get_mut(block) else {
            return;
        };
        let known = self.peers.find(peer);
        if let Some(k) = known.and_then(|i| e.holders.iter().position(|&o| o == i)) {
            e.verified_ms[k] = e.verified_ms[k].max(at_ms);
        } else if let Some(k) = e.holders.iter().position(|&o| o == NONE) {
            e.holders[k] = self.peers.intern(*peer);
            e.verified_ms[k] = at_ms;
        }
    }

    /// Whether `peer` proved it holds `block` less than [`SweepConfig::trust_periods`] periods
    /// before `now_ms`.
    pub fn verified_recently(&self, block: &[u8; 32], peer: &PeerId, now_ms: u64) -> bool {
        let (Some(e), Some(i)) = (self.entries.get(block), self.peers.find(peer)) else {
            return false;
        };
        let trust = self
            .config
            .period_ms
            .saturating_mul(self.config.trust_periods.max(1));
        e.holders
            .iter()
            .zip(e.verified_ms)
            .any(|(&o, t)| o == i && t > 0 && now_ms.saturating_sub(t) < trust)
    }

    /// The remembered holder of `block` that `keep` accepts (a live one) whose last proof is the
    /// oldest (never proved first): the one a check audits even when all are within their trust.
    pub fn stalest(&self, block: &[u8; 32], keep: impl Fn(&PeerId) -> bool) -> Option<PeerId> {
        let e = self.entries.get(block)?;
        e.holders
            .iter()
            .zip(e.verified_ms)
            .filter_map(|(i, t)| Some((self.peers.get(*i)?, t)))
            .filter(|(p, _)| keep(p))
            .min_by_key(|(_, t)| *t)
            .map(|(p, _)| *p)
    }

    /// The holders the last check of `block` found.
    pub fn holders(&self, block: &[u8; 32]) -> Vec<PeerId> {
        self.entries.get(block).map_or_else(Vec::new, |e| {
            e.holders
                .iter()
                .filter_map(|&i| self.peers.get(i).copied())
                .collect()
        })
    }

    /// A block chosen by `r` (uniform 64-bit), with its length, or `None` when empty.
    pub fn sample(&mut self, mut r: impl FnMut() -> u64) -> Option<(ContentId, u64)> {
        while !self.keys.is_empty() {
            let k = (r() % self.keys.len() as u64) as usize;
            match self.entries.get(&self.keys[k]) {
                Some(e) => return Some((e.cid, e.len)),
                None => {
                    self.keys.swap_remove(k);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{Codec, keypair_from_secret};

    const T0: u64 = 1_700_000_000_000;
    const DAY: u64 = 24 * 3600 * 1000;

    fn cid(i: u32) -> ContentId {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_le_bytes());
        ContentId::from_parts(Codec::Raw, h)
    }

    fn blocks(n: u32) -> Vec<(ContentId, u64)> {
        (0..n).map(|i| (cid(i), 1024)).collect()
    }

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// A new peer each call.
    fn peer() -> PeerId {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut secret = [7u8; 32];
        secret[..4].copy_from_slice(&i.to_le_bytes());
        keypair_from_secret(secret).public().to_peer_id()
    }

    #[test]
    fn every_block_is_checked_once_per_period_spread_over_it() {
        let mut s = Sweep::new(SweepConfig::default());
        let n = 10_000;
        assert_eq!(s.sync(&blocks(n), T0, rng(1)).added, n as usize);
        let mut seen = HashMap::new();
        let step = DAY / 24;
        let mut per_hour = Vec::new();
        for k in 1..=24 {
            let got = s.next_due(T0 + k * step, usize::MAX);
            per_hour.push(got.len());
            for (c, _) in got {
                *seen.entry(c).or_insert(0) += 1;
            }
        }
        assert_eq!(
            seen.len(),
            n as usize,
            "every block checked within a period"
        );
        assert!(seen.values().all(|&v| v == 1), "and only once");
        // Spread: no hour takes more than twice its share.
        let share = n as usize / 24;
        assert!(per_hour.iter().all(|&h| h < 2 * share), "{per_hour:?}");
        // The next period checks them all again.
        let again = s.next_due(T0 + 2 * DAY + 1, usize::MAX);
        assert_eq!(again.len(), n as usize);
    }

    #[test]
    fn the_budget_caps_a_call_and_the_rest_stays_due() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(100), T0, rng(2));
        let late = T0 + DAY;
        assert_eq!(s.overdue(late), 100);
        assert_eq!(s.next_due(late, 30).len(), 30);
        assert_eq!(s.overdue(late), 70);
        assert_eq!(s.next_due(late, 1000).len(), 70);
        assert!(s.next_due(late, 1000).is_empty());
    }

    #[test]
    fn a_lost_holder_makes_its_blocks_urgent_and_only_those() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(1000), T0, rng(3));
        let (a, b) = (peer(), peer());
        for i in 0..1000 {
            let holders = if i % 10 == 0 { vec![a, b] } else { vec![b] };
            s.holders_found(&cid(i).hash(), &holders);
        }
        assert_eq!(s.next_due(T0, usize::MAX).len(), 0, "nothing due yet");
        assert_eq!(s.peer_lost(&a), 100);
        let urgent = s.next_due(T0 + 1, usize::MAX);
        assert_eq!(urgent.len(), 100);
        assert!(
            urgent
                .iter()
                .all(|(c, _)| u32::from_le_bytes(c.hash()[..4].try_into().unwrap()) % 10 == 0)
        );
        // Urgent blocks go back to the periodic schedule after their check.
        assert!(s.next_due(T0 + 2, usize::MAX).is_empty());
        assert_eq!(s.peer_lost(&peer()), 0, "an unknown peer changes nothing");
    }

    #[test]
    fn urgent_comes_before_overdue_and_is_queued_once() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(10), T0, rng(4));
        let h = cid(7).hash();
        assert!(s.urgent(&h));
        assert!(s.urgent(&h));
        assert_eq!(s.urgent_len(), 1);
        let got = s.next_due(T0 + 2 * DAY, 1);
        assert_eq!(got, vec![(cid(7), 1024)]);
        assert!(s.urgent(&cid(3).hash()));
        assert_eq!(
            s.next_urgent(T0 + 1, 5),
            vec![(cid(3), 1024)],
            "only the urgent ones"
        );
        assert!(s.next_urgent(T0 + 1, 5).is_empty());
        assert!(!s.urgent(&cid(99).hash()), "not in the sweep");
    }

    #[test]
    fn retry_brings_a_check_forward_never_back() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(1), T0, rng(5));
        let h = cid(0).hash();
        s.next_due(T0 + DAY, 1);
        s.retry(&h, s.retry_at(T0 + DAY));
        assert_eq!(s.next_due(T0 + DAY + 59_999, 1).len(), 0);
        assert_eq!(s.next_due(T0 + DAY + 60_000, 1).len(), 1);
        s.retry(&h, T0 + 10 * DAY);
        assert_eq!(
            s.next_due(T0 + 2 * DAY + 60_000, 1).len(),
            1,
            "not pushed back"
        );
    }

    #[test]
    fn verification_is_trusted_for_four_periods_and_the_stalest_is_audited_first() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(1), T0, rng(6));
        let h = cid(0).hash();
        let (a, b, c) = (peer(), peer(), peer());
        s.holders_found(&h, &[a, b]);
        s.verified(&h, &a, T0);
        // Trusted for four periods (of a day by default).
        assert!(s.verified_recently(&h, &a, T0 + 4 * DAY - 1));
        assert!(!s.verified_recently(&h, &a, T0 + 4 * DAY));
        assert!(!s.verified_recently(&h, &b, T0));
        assert_eq!(
            s.stalest(&h, |_| true),
            Some(b),
            "never proved: audited first"
        );
        assert_eq!(s.stalest(&h, |p| *p != b), Some(a), "of the live ones");
        s.verified(&h, &b, T0 + 5);
        assert_eq!(s.stalest(&h, |_| true), Some(a));
        // A new holder list keeps the times of the holders that stay.
        s.holders_found(&h, &[c, a]);
        assert!(s.verified_recently(&h, &a, T0 + 1));
        assert!(!s.verified_recently(&h, &c, T0 + 1));
        assert_eq!(s.holders(&h), vec![c, a]);
        assert_eq!(s.peers_known(), 2, "b is forgotten");
    }

    #[test]
    fn sync_forgets_gone_blocks_and_their_peers() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(10), T0, rng(7));
        let p = peer();
        s.holders_found(&cid(3).hash(), &[p]);
        s.urgent(&cid(3).hash());
        let r = s.sync(&blocks(3), T0, rng(8));
        assert_eq!(
            r,
            SyncReport {
                added: 0,
                removed: 7
            }
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s.peers_known(), 0);
        assert!(
            s.next_due(T0, 10).is_empty(),
            "the urgent entry went with its block"
        );
        let mut r = rng(9);
        for _ in 0..20 {
            let (c, _) = s.sample(&mut r).unwrap();
            assert!(blocks(3).iter().any(|(b, _)| *b == c));
        }
    }

    #[test]
    fn provider_records_are_renewed_once_per_half_period_and_at_start() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(2), T0, rng(11));
        let (a, b) = (cid(0).hash(), cid(1).hash());
        assert!(
            s.renewal_due(&a, T0),
            "found at start: renewed at the first check"
        );
        s.renewed(&a, T0);
        assert!(!s.renewal_due(&a, T0 + DAY / 2 - 1));
        assert!(s.renewal_due(&a, T0 + DAY / 2));
        // Blocks found by a later sync, or added by a push, were announced when stored.
        let mut more = blocks(2);
        more.push((cid(5), 10));
        s.sync(&more, T0 + 1, rng(12));
        assert!(!s.renewal_due(&cid(5).hash(), T0 + 2));
        s.add(cid(6), 10, T0 + DAY, T0);
        assert!(!s.renewal_due(&cid(6).hash(), T0 + 1));
        assert!(s.renewal_due(&b, T0 + 1));
    }

    #[test]
    fn with_a_period_short_of_the_record_ttl_every_other_check_renews() {
        const H: u64 = 3600 * 1000;
        let mut s = Sweep::new(SweepConfig {
            period_ms: 16 * H,
            ..SweepConfig::default()
        });
        s.sync(&blocks(1), T0, rng(13));
        let a = cid(0).hash();
        let mut renewals = Vec::new();
        // Ten periods of checks, each exactly when due: a renewal at every other one, so the
        // record (48 h) is never older than two periods (32 h) when it is renewed.
        for k in 0..10u64 {
            let now = T0 + k * 16 * H;
            if s.renewal_due(&a, now) {
                s.renewed(&a, now);
                renewals.push(k);
            }
        }
        assert_eq!(renewals, vec![0, 2, 4, 6, 8]);
        // A period that does not fit two and a half times in the TTL: every check renews.
        let mut s = Sweep::new(SweepConfig {
            period_ms: 20 * H,
            ..SweepConfig::default()
        });
        s.sync(&blocks(1), T0, rng(14));
        s.renewed(&a, T0);
        assert!(s.renewal_due(&a, T0 + 20 * H));
    }

    #[test]
    fn memory_stays_bounded_by_the_blocks_and_their_holders() {
        let mut s = Sweep::new(SweepConfig::default());
        s.sync(&blocks(100), T0, rng(10));
        for round in 0..50 {
            for i in 0..100 {
                let holders: Vec<PeerId> = (0..MAX_HOLDERS + 2).map(|_| peer()).collect();
                s.holders_found(&cid(i).hash(), &holders);
            }
            assert!(s.peers_known() <= 100 * MAX_HOLDERS, "round {round}");
        }
        assert!(s.peers.ids.len() <= 2 * 100 * MAX_HOLDERS);
    }
}
