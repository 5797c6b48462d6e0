//! Fetching one block from its holders: the race between them and the hedging policy, as a
//! sans-I/O state machine ([`Race`]), and what a fetch remembers across blocks ([`Session`]).
//!
//! A [`Race`] asks the holders of one block in the order given (the caller orders them:
//! [`crate::placement::fetch_order`], then [`Session::slow_last`]):
//!
//! 1. it asks the first holder;
//! 2. when a holder fails (refuses, answers something else, cannot be reached), it asks the next
//!    one at once;
//! 3. when the requests under way have run for the *hedge delay* since the last holder was asked,
//!    it asks the next one as well (a slow holder is outrun, not waited for);
//! 4. the first good answer wins: the race is over, and every holder still busy then was
//!    *outrun* (the session asks it last from then on);
//! 5. when every holder has failed, the race fails with an error naming the block.
//!
//! The hedge delay is the session's ([`Session::hedge_after`]): four times the median of its last
//! [`SESSION_TIMES`] block times, within [`HEDGE_MIN`]..=[`HEDGE_MAX`], and [`HEDGE_FIRST`] before
//! it has timed any block.
//!
//! # Driving a race
//!
//! Call order, in the manner of quinn-proto: [`Race::new`], [`Race::start`], then loop: drain
//! [`Race::poll_event`] (send a request for each [`Event::Ask`]; stop at [`Event::Done`] or
//! [`Event::Failed`]), wait for the next answer or until [`Race::poll_timeout`], and feed what
//! happened to [`Race::on_answer`] or [`Race::handle_timeout`]. Every input takes the caller's
//! clock (`now_ms`, any monotonic milliseconds). The caller keeps the bytes of the answers; the
//! race only learns whether each was good (verified against the block id).
//!
//! Non-goals: finding holders (provider records), ordering them by reputation, verifying bytes,
//! retrying a failed race later (the node waits and runs another), timeouts of single requests
//! (the transport's).

use std::collections::VecDeque;
use std::time::Duration;

use warren_protocol::{ContentId, PeerId};

use crate::Error;

/// Block times a session remembers.
pub const SESSION_TIMES: usize = 32;
/// Hedge delay before a session has timed any block.
pub const HEDGE_FIRST: Duration = Duration::from_secs(3);
/// Shortest hedge delay.
pub const HEDGE_MIN: Duration = Duration::from_secs(1);
/// Longest hedge delay.
pub const HEDGE_MAX: Duration = Duration::from_secs(10);
/// Holders a session remembers as having served it.
pub const SESSION_HOLDERS: usize = 16;
/// Holders a session remembers as slow (the oldest is forgotten first).
pub const SESSION_SLOW: usize = 64;

/// One fetch's memory across its blocks: the holders that served it (asked first for the next
/// blocks, like a Bitswap session), the holders another one outran (asked last), and the last
/// block times (for the hedge delay). Bounded.
#[derive(Clone, Debug, Default)]
pub struct Session {
    holders: Vec<PeerId>,
    slow: VecDeque<PeerId>,
    times: VecDeque<u64>,
}

impl Session {
    /// How long requests may run before another holder is asked as well: four times the median
    /// of the last block times, within [`HEDGE_MIN`]..=[`HEDGE_MAX`]; [`HEDGE_FIRST`] before any.
    pub fn hedge_after(&self) -> Duration {
        if self.times.is_empty() {
            return HEDGE_FIRST;
        }
        let mut sorted: Vec<u64> = self.times.iter().copied().collect();
        sorted.sort_unstable();
        let median = Duration::from_millis(sorted[sorted.len() / 2]);
        (median * 4).clamp(HEDGE_MIN, HEDGE_MAX)
    }

    /// Remembers how long one block took (the last [`SESSION_TIMES`] count).
    pub fn record_time(&mut self, took: Duration) {
        if self.times.len() == SESSION_TIMES {
            self.times.pop_front();
        }
        self.times
            .push_back(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
    }

    /// Marks `peer` as slow: asked last for the rest of the session.
    pub fn mark_slow(&mut self, peer: PeerId) {
        if self.slow.contains(&peer) {
            return;
        }
        if self.slow.len() == SESSION_SLOW {
            self.slow.pop_front();
        }
        self.slow.push_back(peer);
    }

    /// `order` with the holders marked slow moved to the end (otherwise unchanged).
    pub fn slow_last(&self, order: Vec<PeerId>) -> Vec<PeerId> {
        let (mut fast, late): (Vec<PeerId>, Vec<PeerId>) =
            order.into_iter().partition(|p| !self.slow.contains(p));
        fast.extend(late);
        fast
    }

    /// The holders that served this session, first served first.
    pub fn holders(&self) -> &[PeerId] {
        &self.holders
    }

    /// Remembers that `peer` served a block (up to [`SESSION_HOLDERS`]).
    pub fn add_holder(&mut self, peer: PeerId) {
        if !self.holders.contains(&peer) && self.holders.len() < SESSION_HOLDERS {
            self.holders.push(peer);
        }
    }

    /// Learns from a race won by `won`: its time, and the holders it outran are slow.
    pub fn learn(&mut self, won: &Won) {
        self.record_time(won.took);
        for peer in &won.outrun {
            self.mark_slow(*peer);
        }
    }
}

/// The end of a race that a holder won.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Won {
    /// The holder whose answer was good.
    pub peer: PeerId,
    /// How long it took to answer, from when it was asked.
    pub took: Duration,
    /// The holders still busy when it answered, in the order they were asked.
    pub outrun: Vec<PeerId>,
}

/// What a [`Race`] asks of its driver.
#[derive(Debug)]
pub enum Event {
    /// Ask this holder for the block.
    Ask(PeerId),
    /// A holder answered well: the race is over.
    Done(Won),
    /// Every holder failed (or there was none): the race is over.
    Failed(Error),
}

/// A holder that failed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The holder.
    pub peer: PeerId,
    /// Why, as the driver saw it.
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    New,
    Running,
    Over,
}

/// The race for one block between its holders. See the module documentation.
#[derive(Debug)]
pub struct Race {
    block: ContentId,
    hedge_ms: u64,
    queue: VecDeque<PeerId>,
    /// Holders asked and not answered yet, with when they were asked, in asking order.
    busy: Vec<(PeerId, u64)>,
    /// When the next holder is asked if nothing happens before.
    hedge_at: Option<u64>,
    failures: Vec<Failure>,
    events: VecDeque<Event>,
    phase: Phase,
}

impl Race {
    /// A race for `block` between `holders`, asked in this order (a holder listed twice is asked
    /// once), hedging after `hedge` (a session's [`Session::hedge_after`]).
    pub fn new(block: ContentId, holders: Vec<PeerId>, hedge: Duration) -> Self {
        let mut queue = VecDeque::with_capacity(holders.len());
        for h in holders {
            if !queue.contains(&h) {
                queue.push_back(h);
            }
        }
        Self {
            block,
            hedge_ms: u64::try_from(hedge.as_millis()).unwrap_or(u64::MAX),
            queue,
            busy: Vec::new(),
            hedge_at: None,
            failures: Vec::new(),
            events: VecDeque::new(),
            phase: Phase::New,
        }
    }

    /// The block raced for.
    pub fn block(&self) -> &ContentId {
        &self.block
    }

    /// Starts the race at `now_ms`: asks the first holder (with none, the race fails at once).
    /// Only the first call does anything.
    pub fn start(&mut self, now_ms: u64) {
        if self.phase != Phase::New {
            return;
        }
        self.phase = Phase::Running;
        if !self.ask_next(now_ms) {
            self.fail();
        }
    }

    /// The answer of `peer` at `now_ms`: `Ok` when it delivered the block and the bytes matched
    /// its id, `Err` with why not. An answer from a holder not asked, already answered, or after
    /// the race is over is ignored.
    pub fn on_answer(&mut self, peer: &PeerId, answer: Result<(), String>, now_ms: u64) {
        if self.phase != Phase::Running {
            return;
        }
        let Some(i) = self.busy.iter().position(|(p, _)| p == peer) else {
            return;
        };
        let (peer, asked_at) = self.busy.remove(i);
        match answer {
            Ok(()) => {
                let outrun = self.busy.drain(..).map(|(p, _)| p).collect();
                self.finish(Event::Done(Won {
                    peer,
                    took: Duration::from_millis(now_ms.saturating_sub(asked_at)),
                    outrun,
                }));
            }
            Err(reason) => {
                self.failures.push(Failure { peer, reason });
                if !self.ask_next(now_ms) && self.busy.is_empty() {
                    self.fail();
                }
            }
        }
    }

    /// When [`Race::handle_timeout`] is to be called next (the caller's clock), if ever: the
    /// hedge deadline while holders remain to be asked.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.phase == Phase::Running {
            self.hedge_at
        } else {
            None
        }
    }

    /// The clock reached `now_ms`: past the hedge deadline, asks the next holder as well.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.phase != Phase::Running {
            return;
        }
        if self.hedge_at.is_some_and(|at| now_ms >= at) {
            self.ask_next(now_ms);
        }
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once the race is won or lost.
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Over
    }

    /// The holders that failed so far, in order.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The holders asked and not answered yet.
    pub fn busy(&self) -> impl Iterator<Item = &PeerId> {
        self.busy.iter().map(|(p, _)| p)
    }

    /// Asks the next holder, if any; the hedge deadline restarts from now while others remain.
    fn ask_next(&mut self, now_ms: u64) -> bool {
        let Some(next) = self.queue.pop_front() else {
            self.hedge_at = None;
            return false;
        };
        self.busy.push((next, now_ms));
        self.events.push_back(Event::Ask(next));
        self.hedge_at = (!self.queue.is_empty()).then(|| now_ms.saturating_add(self.hedge_ms));
        true
    }

    fn fail(&mut self) {
        let reason = if self.failures.is_empty() {
            "no holder to ask".to_owned()
        } else {
            self.failures
                .iter()
                .map(|f| format!("{}: {}", f.peer, f.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        self.finish(Event::Failed(Error::Unavailable {
            cid: self.block,
            reason,
        }));
    }

    fn finish(&mut self, event: Event) {
        self.phase = Phase::Over;
        self.hedge_at = None;
        self.queue.clear();
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use warren_protocol::Codec;

    use super::*;
    use crate::placement::tests::peer;

    /// How a simulated holder answers: after `latency_ms`, well or not.
    #[derive(Clone, Copy, Debug)]
    struct Holder {
        latency_ms: u64,
        good: bool,
    }

    const fn good(latency_ms: u64) -> Holder {
        Holder {
            latency_ms,
            good: true,
        }
    }

    const fn bad(latency_ms: u64) -> Holder {
        Holder {
            latency_ms,
            good: false,
        }
    }

    /// What a driven race did: who was asked when, and how it ended when.
    #[derive(Debug)]
    struct Trace {
        asked: Vec<(u64, PeerId)>,
        end: Result<Won, Error>,
        at_ms: u64,
    }

    /// A virtual clock and simulated holders (in the manner of quinn-proto's `Pair`): delivers
    /// each answer at `asked + latency`, calls `handle_timeout` at each deadline, and fails the
    /// test if the race neither ends nor has anything left to wait for (livelock or deadlock),
    /// or takes more than `max_steps`.
    fn drive(race: &mut Race, holders: &HashMap<PeerId, Holder>, start_ms: u64) -> Trace {
        let max_steps = 4 * holders.len() + 16;
        let mut now = start_ms;
        let mut asked = Vec::new();
        // (time, sequence) → answer, so answers at the same time arrive in asking order.
        let mut pending: BTreeMap<(u64, usize), (PeerId, bool)> = BTreeMap::new();
        race.start(now);
        for _ in 0..max_steps {
            while let Some(event) = race.poll_event() {
                match event {
                    Event::Ask(p) => {
                        let h = holders[&p];
                        asked.push((now, p));
                        pending.insert((now + h.latency_ms, asked.len()), (p, h.good));
                    }
                    Event::Done(won) => {
                        return Trace {
                            asked,
                            end: Ok(won),
                            at_ms: now,
                        };
                    }
                    Event::Failed(e) => {
                        return Trace {
                            asked,
                            end: Err(e),
                            at_ms: now,
                        };
                    }
                }
            }
            let answer_at = pending.keys().next().map(|(t, _)| *t);
            match (answer_at, race.poll_timeout()) {
                (Some(a), Some(t)) if t < a => {
                    now = t;
                    race.handle_timeout(now);
                }
                (Some(a), _) => {
                    now = a;
                    let (_, (p, ok)) = pending.pop_first().expect("an answer is pending");
                    let answer = if ok {
                        Ok(())
                    } else {
                        Err(format!("{p} refused"))
                    };
                    race.on_answer(&p, answer, now);
                }
                (None, Some(t)) => {
                    now = t;
                    race.handle_timeout(now);
                }
                (None, None) => panic!("the race waits for nothing and is not over"),
            }
        }
        panic!("the race did not end within {max_steps} steps");
    }

    fn cid() -> ContentId {
        ContentId::of_block(Codec::Raw, b"the block")
    }

    fn setup(holders: &[Holder]) -> (Vec<PeerId>, HashMap<PeerId, Holder>) {
        let peers: Vec<PeerId> = (0..holders.len()).map(|i| peer(i as u8)).collect();
        let map = peers.iter().copied().zip(holders.iter().copied()).collect();
        (peers, map)
    }

    const T0: u64 = 1_000_000;

    #[test]
    fn a_fast_first_holder_is_the_only_one_asked() {
        let (peers, holders) = setup(&[good(100), good(50)]);
        let mut race = Race::new(cid(), peers.clone(), HEDGE_FIRST);
        let t = drive(&mut race, &holders, T0);
        assert_eq!(t.asked, [(T0, peers[0])]);
        let won = t.end.expect("won");
        assert_eq!(won.peer, peers[0]);
        assert_eq!(won.took, Duration::from_millis(100));
        assert!(won.outrun.is_empty());
        assert!(race.is_over());
        assert_eq!(race.poll_timeout(), None);
    }

    #[test]
    fn a_slow_first_holder_is_outrun_at_the_hedge_and_asked_last_next_time() {
        let (peers, holders) = setup(&[good(20_000), good(200), good(100)]);
        let mut session = Session::default();
        let mut race = Race::new(cid(), peers.clone(), session.hedge_after());
        let t = drive(&mut race, &holders, T0);
        // The second holder is asked at the hedge delay (3 s), answers 200 ms later.
        assert_eq!(t.asked, [(T0, peers[0]), (T0 + 3000, peers[1])]);
        assert_eq!(t.at_ms, T0 + 3200);
        let won = t.end.expect("won");
        assert_eq!(won.peer, peers[1]);
        assert_eq!(won.took, Duration::from_millis(200));
        assert_eq!(won.outrun, [peers[0]]);
        session.learn(&won);
        session.add_holder(won.peer);
        // 4 × 200 ms is below the floor: the next hedge is 1 s; the slow holder goes last.
        assert_eq!(session.hedge_after(), HEDGE_MIN);
        assert_eq!(
            session.slow_last(peers.clone()),
            [peers[1], peers[2], peers[0]]
        );
        assert_eq!(session.holders(), [peers[1]]);
    }

    #[test]
    fn the_hedge_delay_restarts_with_each_holder_asked() {
        let (peers, holders) = setup(&[good(10_000), good(10_000), good(10_000), good(10)]);
        let mut race = Race::new(cid(), peers.clone(), Duration::from_secs(1));
        let t = drive(&mut race, &holders, T0);
        let times: Vec<u64> = t.asked.iter().map(|(at, _)| at - T0).collect();
        assert_eq!(times, [0, 1000, 2000, 3000]);
        let won = t.end.expect("won");
        assert_eq!(won.peer, peers[3]);
        assert_eq!(won.outrun, [peers[0], peers[1], peers[2]]);
    }

    #[test]
    fn a_bad_answer_moves_on_at_once() {
        let (peers, holders) = setup(&[bad(100), good(300)]);
        let mut race = Race::new(cid(), peers.clone(), HEDGE_FIRST);
        let t = drive(&mut race, &holders, T0);
        assert_eq!(t.asked, [(T0, peers[0]), (T0 + 100, peers[1])]);
        let won = t.end.expect("won");
        assert_eq!(won.peer, peers[1]);
        assert!(won.outrun.is_empty(), "a holder that failed was not outrun");
        assert_eq!(race.failures().len(), 1);
        assert_eq!(race.failures()[0].peer, peers[0]);
    }

    #[test]
    fn when_every_holder_fails_the_error_names_the_block_and_each_failure() {
        let (peers, holders) = setup(&[bad(100), bad(5000), bad(50)]);
        let mut race = Race::new(cid(), peers.clone(), Duration::from_secs(1));
        let t = drive(&mut race, &holders, T0);
        // 0: first asked, fails at 100 → second asked; its hedge at 1100 → third, fails at 1150;
        // the second fails at 5100.
        let times: Vec<u64> = t.asked.iter().map(|(at, _)| at - T0).collect();
        assert_eq!(times, [0, 100, 1100]);
        assert_eq!(t.at_ms, T0 + 5100);
        let err = t.end.expect_err("lost").to_string();
        assert!(err.contains(&cid().to_string()), "{err}");
        for p in &peers {
            assert!(err.contains(&format!("{p} refused")), "{err}");
        }
    }

    #[test]
    fn a_race_without_holders_fails_at_once() {
        let mut race = Race::new(cid(), vec![], HEDGE_FIRST);
        race.start(T0);
        let Some(Event::Failed(e)) = race.poll_event() else {
            panic!("not failed");
        };
        assert!(e.to_string().contains("no holder to ask"), "{e}");
        assert!(e.to_string().contains(&cid().to_string()), "{e}");
        assert!(race.is_over() && race.poll_event().is_none());
    }

    #[test]
    fn stray_and_late_answers_are_ignored() {
        let (a, b, stranger) = (peer(1), peer(2), peer(3));
        let mut race = Race::new(cid(), vec![a, a, b], Duration::from_secs(1));
        race.start(T0);
        assert!(matches!(race.poll_event(), Some(Event::Ask(p)) if p == a));
        // Not asked: ignored.
        race.on_answer(&stranger, Ok(()), T0 + 10);
        race.on_answer(&b, Ok(()), T0 + 10);
        assert!(race.poll_event().is_none());
        // Early timeout: nothing.
        race.handle_timeout(T0 + 999);
        assert!(race.poll_event().is_none());
        race.handle_timeout(T0 + 1000);
        assert!(matches!(race.poll_event(), Some(Event::Ask(p)) if p == b));
        // Listed twice, asked once: nothing left to hedge to.
        assert_eq!(race.poll_timeout(), None);
        race.on_answer(&b, Ok(()), T0 + 1200);
        assert!(
            matches!(race.poll_event(), Some(Event::Done(w)) if w.peer == b && w.outrun == [a])
        );
        // After the end: ignored.
        race.on_answer(&a, Ok(()), T0 + 1300);
        race.start(T0 + 1300);
        assert!(race.poll_event().is_none());
    }

    #[test]
    fn a_session_hedges_at_four_times_its_median_block_time_within_bounds() {
        let mut s = Session::default();
        assert_eq!(s.hedge_after(), HEDGE_FIRST);
        for ms in [100, 120, 400, 90, 110] {
            s.record_time(Duration::from_millis(ms));
        }
        // Median 110 ms → 440 ms, raised to the floor.
        assert_eq!(s.hedge_after(), HEDGE_MIN);
        for _ in 0..SESSION_TIMES {
            s.record_time(Duration::from_millis(700));
        }
        assert_eq!(s.hedge_after(), Duration::from_millis(2800));
        for _ in 0..SESSION_TIMES {
            s.record_time(Duration::from_secs(30));
        }
        assert_eq!(s.hedge_after(), HEDGE_MAX);
        assert_eq!(s.times.len(), SESSION_TIMES);
    }

    #[test]
    fn a_session_is_bounded() {
        let mut s = Session::default();
        for i in 0..=255u8 {
            s.mark_slow(peer(i));
            s.add_holder(peer(i));
        }
        assert_eq!(s.slow.len(), SESSION_SLOW);
        assert_eq!(s.holders().len(), SESSION_HOLDERS);
        // The oldest slow marks were forgotten.
        assert_eq!(s.slow_last(vec![peer(0), peer(255)]), [peer(0), peer(255)]);
    }

    #[test]
    fn slow_holders_are_asked_last_in_their_given_order() {
        let mut s = Session::default();
        let peers: Vec<PeerId> = (0..4).map(peer).collect();
        assert_eq!(s.slow_last(peers.clone()), peers);
        s.mark_slow(peers[0]);
        s.mark_slow(peers[2]);
        s.mark_slow(peers[2]);
        assert_eq!(
            s.slow_last(peers.clone()),
            vec![peers[1], peers[3], peers[0], peers[2]]
        );
    }

    proptest! {
        /// Whatever the latencies and failures: the race ends, asks each holder at most once
        /// and in the given order, is won by the good answer that arrives first (if any), and
        /// names every failure otherwise.
        #[test]
        fn a_race_ends_with_the_first_good_answer(
            spec in prop::collection::vec((0u64..20_000, any::<bool>()), 0..8),
            hedge_ms in 1u64..5_000,
        ) {
            let holders: Vec<Holder> =
                spec.iter().map(|&(latency_ms, good)| Holder { latency_ms, good }).collect();
            let (peers, map) = setup(&holders);
            let mut race = Race::new(cid(), peers.clone(), Duration::from_millis(hedge_ms));
            let t = drive(&mut race, &map, T0);
            let order: Vec<PeerId> = t.asked.iter().map(|(_, p)| *p).collect();
            prop_assert_eq!(&order[..], &peers[..order.len()]);
            // The answers that had arrived by the end: the winner's is the first good one.
            let arrivals: Vec<(u64, bool, PeerId)> = t
                .asked
                .iter()
                .map(|(at, p)| (at + map[p].latency_ms, map[p].good, *p))
                .filter(|(arrives, _, _)| *arrives <= t.at_ms)
                .collect();
            match &t.end {
                Ok(won) => {
                    prop_assert!(map[&won.peer].good);
                    prop_assert_eq!(
                        arrivals.iter().filter(|(_, good, _)| *good).map(|(at, _, _)| *at).min(),
                        Some(t.at_ms)
                    );
                    prop_assert!(!won.outrun.contains(&won.peer));
                }
                Err(e) => {
                    prop_assert!(holders.iter().all(|h| !h.good));
                    prop_assert_eq!(order.len(), peers.len());
                    prop_assert!(arrivals.iter().all(|(_, good, _)| !good));
                    prop_assert!(e.to_string().contains(&cid().to_string()));
                }
            }
        }
    }
}
