//! Planning a distributed job, sans-I/O: rank operators by strategy, split a batch across them,
//! choose the sample to re-run on a different operator, and decide who was wrong when results
//! disagree.
//!
//! The requesting peer is its own aggregator. Its node finds the operators of a model, measures
//! them, and asks this module what to do; everything here is a pure function of its inputs (the
//! random seed included), so the same inputs give the same plan and the tests need no network.
//!
//! Privacy is a hook only: [`Strategy::Private`] ranks like [`Strategy::Quality`] and marks the
//! plan [`Plan::needs_circuit`]; sending jobs through onion circuits belongs to the onion work,
//! which the node calls at the point named `route_through_circuit`.

use std::ops::Range;

/// How to choose operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Cheapest first (advertised price per item), then fastest.
    Cost,
    /// Fastest first: highest measured throughput, then lowest latency.
    Speed,
    /// Best reputation first (in steps of [`REPUTATION_STEP`]), then fastest.
    Quality,
    /// As [`Strategy::Quality`], but jobs must travel through an onion circuit.
    Private,
}

impl Strategy {
    /// Parses `cost`, `speed`, `quality` or `private`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cost" => Some(Self::Cost),
            "speed" => Some(Self::Speed),
            "quality" => Some(Self::Quality),
            "private" => Some(Self::Private),
            _ => None,
        }
    }

    /// The name [`Strategy::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cost => "cost",
            Self::Speed => "speed",
            Self::Quality => "quality",
            Self::Private => "private",
        }
    }
}

/// What the requester knows about one operator of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<P> {
    /// The operator.
    pub peer: P,
    /// Advertised price per item (arbitrary units; 0 = free).
    pub price: u64,
    /// Measured round-trip latency in milliseconds, if measured.
    pub latency_ms: Option<u32>,
    /// Measured throughput in items per second, if measured.
    pub throughput: Option<f64>,
    /// Reputation score in `[0, 1]` from the reputation store, if any observations exist.
    pub reputation: Option<f64>,
    /// Whether the operator said it is at capacity.
    pub busy: bool,
}

/// Reputation assumed for an operator nobody has observed yet.
pub const UNKNOWN_REPUTATION: f64 = 0.5;
/// Reputations are compared in steps of this size: two operators within a step of each other
/// (the noise of a few latency samples) rank as equals, and then the faster goes first.
pub const REPUTATION_STEP: f64 = 0.05;
/// Operators below this reputation are not used while better ones exist.
pub const MIN_REPUTATION: f64 = 0.2;

fn speed_key<P>(c: &Candidate<P>) -> (f64, u32) {
    (
        -c.throughput.unwrap_or(0.0),
        c.latency_ms.unwrap_or(u32::MAX),
    )
}

/// Orders candidates best first for `strategy`. Busy operators and, while others remain, those
/// under [`MIN_REPUTATION`] go last. Ties keep the input order.
pub fn rank<P: Clone>(candidates: &[Candidate<P>], strategy: Strategy) -> Vec<Candidate<P>> {
    let mut v: Vec<(usize, &Candidate<P>)> = candidates.iter().enumerate().collect();
    let rep = |c: &Candidate<P>| c.reputation.unwrap_or(UNKNOWN_REPUTATION);
    v.sort_by(|(ia, a), (ib, b)| {
        let demoted = |c: &Candidate<P>| c.busy || rep(c) < MIN_REPUTATION;
        let primary = demoted(a).cmp(&demoted(b));
        let (sa, sb) = (speed_key(a), speed_key(b));
        let by_speed = sa.0.total_cmp(&sb.0).then(sa.1.cmp(&sb.1));
        let secondary = match strategy {
            Strategy::Cost => a.price.cmp(&b.price).then(by_speed),
            Strategy::Speed => by_speed,
            Strategy::Quality | Strategy::Private => {
                let step = |c: &Candidate<P>| (rep(c) / REPUTATION_STEP).floor();
                step(b).total_cmp(&step(a)).then(by_speed)
            }
        };
        primary.then(secondary).then(ia.cmp(ib))
    });
    v.into_iter().map(|(_, c)| c.clone()).collect()
}

/// One operator's share of a batch: items `range` of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part<P> {
    /// The operator.
    pub peer: P,
    /// Indices of the items it computes.
    pub range: Range<usize>,
}

/// Splits `items` across the first `max_operators` of `ranked`, in contiguous parts proportional
/// to measured throughput (equal when unmeasured); every chosen operator gets at least one item.
pub fn split<P: Clone>(
    items: usize,
    ranked: &[Candidate<P>],
    max_operators: usize,
) -> Vec<Part<P>> {
    let chosen: Vec<&Candidate<P>> = ranked.iter().take(max_operators.min(items)).collect();
    if chosen.is_empty() {
        return Vec::new();
    }
    let weights: Vec<f64> = if chosen.iter().all(|c| c.throughput.is_some_and(|t| t > 0.0)) {
        chosen.iter().map(|c| c.throughput.unwrap_or(1.0)).collect()
    } else {
        vec![1.0; chosen.len()]
    };
    let total: f64 = weights.iter().sum();
    let n = chosen.len();
    let mut parts = Vec::with_capacity(n);
    let mut start = 0usize;
    let mut acc = 0.0;
    for (i, (c, w)) in chosen.iter().zip(&weights).enumerate() {
        acc += w;
        let remaining_ops = n - i - 1;
        let end = if remaining_ops == 0 {
            items
        } else {
            ((items as f64 * acc / total).round() as usize).clamp(start + 1, items - remaining_ops)
        };
        parts.push(Part {
            peer: c.peer.clone(),
            range: start..end,
        });
        start = end;
    }
    parts
}

/// Default share of items re-run on a second operator.
pub const DEFAULT_SAMPLE_FRACTION: f64 = 0.10;

/// A re-run of some of one part's items on a different operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check<P> {
    /// The part's operator, whose results are being checked.
    pub original: P,
    /// The operator re-running them.
    pub verifier: P,
    /// Item indices (into the whole batch) re-run, ascending.
    pub items: Vec<usize>,
}

/// SplitMix64: the deterministic generator sampling is drawn from (seed passed in).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Chooses, for every part, `ceil(fraction × len)` random items (at least one when `fraction > 0`)
/// to re-run on another operator: the next one in `ranked` order that is not the part's own. With
/// only one operator there is nobody to check against and no checks are made.
pub fn sample_checks<P: Clone + PartialEq>(
    parts: &[Part<P>],
    ranked: &[Candidate<P>],
    fraction: f64,
    seed: u64,
) -> Vec<Check<P>> {
    let mut rng = SplitMix64(seed);
    let mut checks = Vec::new();
    if fraction <= 0.0 {
        return checks;
    }
    for part in parts {
        let Some(verifier) = ranked.iter().find(|c| c.peer != part.peer) else {
            continue;
        };
        let len = part.range.len();
        let want = ((len as f64 * fraction.min(1.0)).ceil() as usize).clamp(1, len.max(1));
        let mut pool: Vec<usize> = part.range.clone().collect();
        let mut items = Vec::with_capacity(want);
        for _ in 0..want.min(pool.len()) {
            let i = rng.below(pool.len());
            items.push(pool.swap_remove(i));
        }
        items.sort_unstable();
        if !items.is_empty() {
            checks.push(Check {
                original: part.peer.clone(),
                verifier: verifier.peer.clone(),
                items,
            });
        }
    }
    checks
}

/// Who is at fault when a check's two results disagree, decided by a third result (from another
/// operator or the requester's own executor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The third agrees with the verifier: the original operator's results are wrong.
    Original,
    /// The third agrees with the original: the verifier is wrong.
    Verifier,
    /// The third agrees with neither: nobody can be blamed; redo elsewhere.
    Undecided,
}

/// Decides a disagreement from whether the arbiter's result agrees with each side.
pub fn arbitrate(arbiter_agrees_with_original: bool, arbiter_agrees_with_verifier: bool) -> Fault {
    match (arbiter_agrees_with_original, arbiter_agrees_with_verifier) {
        (false, true) => Fault::Original,
        (true, false) => Fault::Verifier,
        _ => Fault::Undecided,
    }
}

/// A plan for one distributed job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<P> {
    /// Who computes what.
    pub parts: Vec<Part<P>>,
    /// What is re-run where.
    pub checks: Vec<Check<P>>,
    /// The strategy asks for onion circuits (see the module doc).
    pub needs_circuit: bool,
}

/// Ranks, splits and samples in one call.
pub fn plan<P: Clone + PartialEq>(
    items: usize,
    candidates: &[Candidate<P>],
    strategy: Strategy,
    max_operators: usize,
    sample_fraction: f64,
    seed: u64,
) -> Plan<P> {
    let ranked = rank(candidates, strategy);
    let parts = split(items, &ranked, max_operators);
    let checks = sample_checks(&parts, &ranked, sample_fraction, seed);
    Plan {
        parts,
        checks,
        needs_circuit: strategy == Strategy::Private,
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::*;

    fn cand(peer: &str, price: u64, tput: Option<f64>, rep: Option<f64>) -> Candidate<String> {
        Candidate {
            peer: peer.to_string(),
            price,
            latency_ms: Some(10),
            throughput: tput,
            reputation: rep,
            busy: false,
        }
    }

    fn peers(v: &[Candidate<String>]) -> Vec<&str> {
        v.iter().map(|c| c.peer.as_str()).collect()
    }

    #[test]
    fn strategies_rank_by_their_criterion() {
        let cs = vec![
            cand("cheap-slow", 1, Some(10.0), Some(0.6)),
            cand("fast", 5, Some(100.0), Some(0.5)),
            cand("trusted", 9, Some(50.0), Some(0.95)),
            cand("bad", 0, Some(1000.0), Some(0.05)),
        ];
        assert_eq!(
            peers(&rank(&cs, Strategy::Cost)),
            ["cheap-slow", "fast", "trusted", "bad"]
        );
        assert_eq!(
            peers(&rank(&cs, Strategy::Speed)),
            ["fast", "trusted", "cheap-slow", "bad"]
        );
        assert_eq!(
            peers(&rank(&cs, Strategy::Quality)),
            ["trusted", "cheap-slow", "fast", "bad"]
        );
        // Within a step, the faster first.
        let close = vec![
            cand("slow", 0, Some(1.0), Some(0.62)),
            cand("fast", 0, Some(90.0), Some(0.61)),
        ];
        assert_eq!(peers(&rank(&close, Strategy::Quality)), ["fast", "slow"]);
        let mut busy = cs.clone();
        busy[2].busy = true;
        assert_eq!(
            peers(&rank(&busy, Strategy::Quality))[..2],
            ["cheap-slow", "fast"]
        );
    }

    #[test]
    fn unmeasured_operators_split_evenly_and_measured_by_throughput() {
        let cs = vec![cand("b", 0, None, None), cand("c", 0, None, None)];
        let parts = split(64, &cs, 8);
        assert_eq!(parts[0].range, 0..32);
        assert_eq!(parts[1].range, 32..64);
        let cs = vec![
            cand("b", 0, Some(300.0), None),
            cand("c", 0, Some(100.0), None),
        ];
        let parts = split(64, &cs, 8);
        assert_eq!(parts[0].range, 0..48);
        assert_eq!(parts[1].range, 48..64);
        assert_eq!(split(1, &cs, 8).len(), 1, "never more parts than items");
        assert!(split(5, &cs[..0], 8).is_empty());
    }

    #[test]
    fn checks_go_to_another_operator() {
        let cs = vec![cand("b", 0, None, None), cand("c", 0, None, None)];
        let p = plan(64, &cs, Strategy::Speed, 2, DEFAULT_SAMPLE_FRACTION, 7);
        assert_eq!(p.checks.len(), 2);
        for check in &p.checks {
            assert_ne!(check.original, check.verifier);
            assert_eq!(check.items.len(), 4, "ceil(10% of 32)");
            let part = p.parts.iter().find(|x| x.peer == check.original).unwrap();
            assert!(check.items.iter().all(|i| part.range.contains(i)));
        }
        assert!(!p.needs_circuit);
        assert!(plan(4, &cs, Strategy::Private, 2, 0.1, 7).needs_circuit);
        assert!(sample_checks(&p.parts, &cs[..1], 0.1, 1).len() <= 1);
        assert!(
            plan(64, &cs[..1], Strategy::Speed, 2, 0.1, 7)
                .checks
                .is_empty()
        );
    }

    #[test]
    fn arbitration_blames_the_odd_one_out() {
        assert_eq!(arbitrate(false, true), Fault::Original);
        assert_eq!(arbitrate(true, false), Fault::Verifier);
        assert_eq!(arbitrate(false, false), Fault::Undecided);
        assert_eq!(arbitrate(true, true), Fault::Undecided);
    }

    proptest! {
        #[test]
        fn split_covers_every_item_once(items in 1usize..500, tputs in proptest::collection::vec(proptest::option::of(1.0f64..1000.0), 1..6), max in 1usize..8) {
            let cs: Vec<_> = tputs.iter().enumerate().map(|(i, t)| cand(&i.to_string(), 0, *t, None)).collect();
            let parts = split(items, &cs, max);
            prop_assert_eq!(parts.len(), max.min(items).min(cs.len()));
            let mut next = 0;
            for p in &parts {
                prop_assert_eq!(p.range.start, next);
                prop_assert!(p.range.end > p.range.start);
                next = p.range.end;
            }
            prop_assert_eq!(next, items);
        }

        #[test]
        fn samples_are_within_parts_and_distinct(items in 2usize..300, seed: u64, frac in 0.01f64..1.0) {
            let cs = vec![cand("a", 0, None, None), cand("b", 0, None, None), cand("c", 0, None, None)];
            let p = plan(items, &cs, Strategy::Speed, 3, frac, seed);
            for check in &p.checks {
                let part = p.parts.iter().find(|x| x.peer == check.original).unwrap();
                let mut sorted = check.items.clone();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), check.items.len());
                prop_assert!(check.items.iter().all(|i| part.range.contains(i)));
                prop_assert!(!check.items.is_empty());
            }
        }
    }
}
