//! Who checks a file kept as pieces, and when: the schedule of the background repairer
//! (spec/storage.md, "Pieces: repair"), as a pure state machine.
//!
//! Every node that holds a piece manifest (the origin and its `m + 1` whole copies) watches it,
//! so that the origin's death does not end repair; but only ONE of them checks and repairs at a
//! time: the live holder XOR-closest to the manifest id ([`is_repairer`]). The others look again
//! each period, and take over as soon as the closer ones are gone. Each watched file is checked
//! once per period; a tick takes at most [`WatchConfig::per_tick`] files (bounded work), the ones
//! overdue longest first.
//!
//! No clock and no I/O: the caller passes `now` (Unix ms) and the live holders it sees.

use std::collections::BTreeMap;

use warren_protocol::{ContentId, PeerId};

use crate::placement::rank;

/// Most piece manifests one node watches (a bound on remote-driven state: a peer that pushes
/// manifests here makes it watch them).
pub const WATCH_MAX: usize = 1 << 14;

/// How often and how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// Each watched file is checked once per this many milliseconds; 0: never (off).
    pub period_ms: u64,
    /// Files checked per tick, at most.
    pub per_tick: usize,
}

/// The piece manifests this node watches and when each is next due.
#[derive(Clone, Debug)]
pub struct PiecesWatch {
    config: WatchConfig,
    /// Manifest id → next check (Unix ms).
    due: BTreeMap<ContentId, u64>,
}

impl PiecesWatch {
    /// An empty watch list.
    pub fn new(config: WatchConfig) -> Self {
        Self {
            config,
            due: BTreeMap::new(),
        }
    }

    /// Whether the background repairer runs at all.
    pub fn enabled(&self) -> bool {
        self.config.period_ms > 0
    }

    /// Files watched.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether none is watched.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// Watches the piece manifest `id` (put here, or a copy of it stored here): first checked
    /// one period from `now`. Already watched: unchanged. Full: refused (`false`).
    pub fn watch(&mut self, id: ContentId, now: u64) -> bool {
        if self.due.contains_key(&id) {
            return true;
        }
        if self.due.len() >= WATCH_MAX {
            return false;
        }
        self.due
            .insert(id, now.saturating_add(self.config.period_ms));
        true
    }

    /// Stops watching `id` (its manifest is no longer stored here).
    pub fn forget(&mut self, id: &ContentId) {
        self.due.remove(id);
    }

    /// The files due at `now`, overdue longest first, at most `per_tick`; each is due again one
    /// period from `now` (a failed check waits a period too: the next repairer may do it).
    pub fn next_due(&mut self, now: u64) -> Vec<ContentId> {
        if !self.enabled() {
            return Vec::new();
        }
        let mut due: Vec<(u64, ContentId)> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, at)| (*at, *id))
            .collect();
        due.sort_unstable();
        due.truncate(self.config.per_tick);
        let next = now.saturating_add(self.config.period_ms);
        for (_, id) in &due {
            self.due.insert(*id, next);
        }
        due.into_iter().map(|(_, id)| id).collect()
    }
}

/// Whether `me` is the one repairer of the piece manifest `id`: of `me` and the `live` holders
/// of the manifest (its providers that this node is connected to), the XOR-closest to `id`.
pub fn is_repairer(id: &ContentId, me: PeerId, live: &[PeerId]) -> bool {
    rank(&id.hash(), live.iter().chain(std::iter::once(&me)))
        .first()
        .is_some_and(|p| *p == me)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::Codec;

    fn id(n: u8) -> ContentId {
        ContentId::of_block(Codec::Raw, &[n])
    }

    fn config() -> WatchConfig {
        WatchConfig {
            period_ms: 1_000,
            per_tick: 2,
        }
    }

    #[test]
    fn each_file_is_due_once_per_period_and_a_tick_is_bounded() {
        let mut w = PiecesWatch::new(config());
        assert!(w.watch(id(1), 0));
        assert!(w.watch(id(2), 100));
        assert!(w.watch(id(3), 200));
        assert!(w.watch(id(1), 500), "already watched: unchanged");
        assert_eq!(w.len(), 3);
        assert!(w.next_due(999).is_empty(), "not before a period");
        // Overdue longest first, two per tick.
        assert_eq!(w.next_due(1_200), vec![id(1), id(2)]);
        assert_eq!(w.next_due(1_200), vec![id(3)]);
        assert!(w.next_due(1_300).is_empty());
        // Due again one period after they were taken.
        let mut again = w.next_due(2_200);
        again.sort();
        let mut want = vec![id(1), id(2)];
        want.sort();
        assert_eq!(again, want);
        w.forget(&id(3));
        assert!(w.next_due(10_000).len() == 2);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn off_checks_nothing_and_the_list_is_bounded() {
        let mut w = PiecesWatch::new(WatchConfig {
            period_ms: 0,
            per_tick: 4,
        });
        assert!(!w.enabled());
        w.watch(id(1), 0);
        assert!(w.next_due(u64::MAX).is_empty());
        let mut w = PiecesWatch::new(config());
        for i in 0..WATCH_MAX as u32 {
            assert!(w.watch(ContentId::of_block(Codec::Raw, &i.to_le_bytes()), 0));
        }
        assert!(!w.watch(id(1), 0), "full");
        assert_eq!(w.len(), WATCH_MAX);
    }

    #[test]
    fn one_repairer_the_closest_live_holder_and_the_next_one_when_it_dies() {
        let f = id(7);
        let peers: Vec<PeerId> = (0..6).map(crate::placement::tests::peer).collect();
        let order = rank(&f.hash(), peers.iter());
        // Every holder sees all live: exactly one says it is the repairer, the closest.
        let chosen: Vec<PeerId> = peers
            .iter()
            .filter(|me| {
                let live: Vec<PeerId> = peers.iter().filter(|p| p != me).copied().collect();
                is_repairer(&f, **me, &live)
            })
            .copied()
            .collect();
        assert_eq!(chosen, vec![order[0]]);
        // The closest is gone (no longer live to anyone): the second takes over.
        let live: Vec<PeerId> = order[2..].to_vec();
        assert!(is_repairer(&f, order[1], &live));
        assert!(!is_repairer(&f, order[2], &order[1..]));
        // Alone, a holder repairs.
        assert!(is_repairer(&f, order[5], &[]));
    }
}
