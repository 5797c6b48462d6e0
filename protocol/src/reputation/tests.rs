//! Unit tests of the reputation machine with fixed inputs and hand-computed scores.
//!
//! Every expected number is written out as the arithmetic of `spec/reputation.md`'s formulas, so a
//! failing test shows which term moved.

use super::*;
use crate::observation::{
    Kind::{self, *},
    tests::{T0, peer},
};

const H: u64 = DAY_MS; // the default half-life

fn obs(observer: &PeerId, subject: &PeerId, kind: Kind, value: u32, time_ms: u64) -> Observation {
    Observation {
        observer: *observer,
        subject: *subject,
        kind,
        value,
        time_ms,
        evidence: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[track_caller]
fn assert_close(got: f64, want: f64) {
    assert!(close(got, want), "got {got}, want {want}");
}

/// The weighted sum of `spec/reputation.md` written out.
fn total(perf: f64, speed: f64, uptime: f64, security: f64, review: f64, longevity: f64) -> f64 {
    0.35 * perf + 0.20 * speed + 0.15 * uptime + 0.15 * security + 0.10 * review + 0.05 * longevity
}

fn me() -> PeerId {
    peer(100)
}

fn machine(seeds: &[PeerId]) -> Reputation {
    Reputation::new(me(), seeds, Config::default()).unwrap()
}

fn first_hand(r: &mut Reputation, subject: &PeerId, kind: Kind, value: u32, n: usize, t: u64) {
    for _ in 0..n {
        assert_eq!(
            r.observe_first_hand(&obs(&me(), subject, kind, value, t), t),
            Ingest::Counted
        );
    }
}

fn report(
    r: &mut Reputation,
    from: &PeerId,
    subject: &PeerId,
    kind: Kind,
    n: usize,
    t: u64,
) -> Ingest {
    let mut last = Ingest::Counted;
    for _ in 0..n {
        last = r.observe_second_hand(&obs(from, subject, kind, 1, t), t);
    }
    last
}

#[test]
fn first_hand_scores_and_decay_over_two_half_lives() {
    let x = peer(1);
    let mut r = machine(&[]);
    first_hand(&mut r, &x, StorageProofPassed, 1, 3, T0);
    first_hand(&mut r, &x, StorageProofFailed, 1, 1, T0);
    first_hand(&mut r, &x, LatencySample, 100, 1, T0);
    first_hand(&mut r, &x, LatencySample, 300, 1, T0);
    first_hand(&mut r, &x, UptimeSample, 3600, 1, T0);
    first_hand(&mut r, &x, UptimeSample, 1800, 1, T0);

    // At T0: 3 passed, 1 failed; latencies 100 and 300 ms (mean 200); 1.5 of 2 hours online.
    let s = r.score(&x, T0).unwrap();
    let perf = (1.0 + 3.0) / (2.0 + 4.0); // 0.6667
    let speed = (1.0 + 2.0 * (250.0 / 450.0)) / (2.0 + 2.0); // 0.5278
    let uptime = (1.0 + 1.5) / (2.0 + 2.0); // 0.625
    let c = s.components;
    assert_close(c.performance, perf);
    assert_close(c.speed, speed);
    assert_close(c.uptime, uptime);
    assert_close(c.security, 1.0);
    assert_close(c.peer_review, 0.5);
    assert_close(c.longevity, 0.0);
    assert_close(s.total, total(perf, speed, uptime, 1.0, 0.5, 0.0));
    assert_close(s.total, 0.632_638_888_9);
    assert_close(s.evidence.first_hand, 8.0);
    assert_eq!(s.evidence.reporters, 0);

    // One half-life later every count has halved; means are unchanged; known for one day.
    let s = r.score(&x, T0 + H).unwrap();
    let perf = (1.0 + 1.5) / (2.0 + 2.0); // 0.625
    let speed = (1.0 + 1.0 * (250.0 / 450.0)) / (2.0 + 1.0); // 0.5185
    let uptime = (1.0 + 0.75) / (2.0 + 1.0); // 0.5833
    let longevity = 1.0 / (1.0 + 30.0);
    assert_close(s.components.performance, perf);
    assert_close(s.components.speed, speed);
    assert_close(s.components.uptime, uptime);
    assert_close(s.components.longevity, longevity);
    assert_close(s.total, total(perf, speed, uptime, 1.0, 0.5, longevity));
    assert_close(s.total, 0.611_566_606_6);
    assert_close(s.evidence.first_hand, 4.0);

    // Two half-lives: a quarter of every count.
    let s = r.score(&x, T0 + 2 * H).unwrap();
    let perf = (1.0 + 0.75) / (2.0 + 1.0); // 0.5833
    let speed = (1.0 + 0.5 * (250.0 / 450.0)) / (2.0 + 0.5); // 0.5111
    let uptime = (1.0 + 0.375) / (2.0 + 0.5); // 0.55
    let longevity = 2.0 / (2.0 + 30.0);
    assert_close(s.components.performance, perf);
    assert_close(s.components.speed, speed);
    assert_close(s.components.uptime, uptime);
    assert_close(s.total, total(perf, speed, uptime, 1.0, 0.5, longevity));
    assert_close(s.total, 0.592_013_888_9);
}

#[test]
fn evidence_added_later_decays_from_its_own_time() {
    let x = peer(1);
    let mut r = machine(&[]);
    first_hand(&mut r, &x, StorageProofPassed, 1, 2, T0);
    // One failure a half-life later: the two passes now weigh 1.
    first_hand(&mut r, &x, StorageProofFailed, 1, 1, T0 + H);
    let t = r.first_hand(&x, T0 + H).unwrap();
    assert_close(t.passed, 1.0);
    assert_close(t.failed, 1.0);
    // An observation dated before the tally's time is added with its age's weight: one pass
    // observed a half-life before now adds 0.5.
    let late = obs(&me(), &x, StorageProofPassed, 1, T0);
    r.observe_first_hand(&late, T0 + H);
    assert_close(r.first_hand(&x, T0 + H).unwrap().passed, 1.5);
    // A time in the future counts as now.
    let future = obs(&me(), &x, StorageProofPassed, 1, T0 + H + 60_000);
    r.observe_first_hand(&future, T0 + H);
    assert_close(r.first_hand(&x, T0 + H).unwrap().passed, 2.5);
    assert_eq!(r.first_hand(&x, T0 + H).unwrap().as_of_ms, T0 + H);
}

#[test]
fn security_counts_invalid_messages_and_mismatches() {
    let x = peer(1);
    let mut r = machine(&[]);
    first_hand(&mut r, &x, InvalidMessage, 1, 1, T0);
    first_hand(&mut r, &x, InferenceMismatched, 1, 1, T0);
    first_hand(&mut r, &x, InferenceMatched, 1, 2, T0);
    let s = r.score(&x, T0).unwrap();
    assert_close(s.components.security, 1.0 / (1.0 + 2.0));
    // matched 2, mismatched 1: the invalid message is not a performance failure.
    assert_close(s.components.performance, 3.0 / 5.0);
    let s = r.score(&x, T0 + H).unwrap();
    assert_close(s.components.security, 1.0 / (1.0 + 1.0));
}

#[test]
fn a_failing_peer_drops_below_the_floor() {
    let x = peer(1);
    let mut r = machine(&[]);
    // Fast and always online, but fails every audit.
    first_hand(&mut r, &x, LatencySample, 20, 5, T0);
    first_hand(&mut r, &x, UptimeSample, 3600, 5, T0);
    first_hand(&mut r, &x, StorageProofFailed, 1, 2, T0);
    assert!(!r.is_below_floor(&x, T0), "performance 1/4 is at the floor");
    first_hand(&mut r, &x, StorageProofFailed, 1, 1, T0);
    let s = r.score(&x, T0).unwrap();
    assert_close(s.components.performance, 1.0 / 5.0);
    assert!(s.total > FLOOR);
    assert!(r.is_below_floor(&x, T0));
    assert!(
        !r.is_below_floor(&peer(2), T0),
        "an unknown peer is not below the floor"
    );
    assert_eq!(Reputation::floor(), 0.25);
}

#[test]
fn weight_and_application_score_of_tracked_and_untracked_peers() {
    let (good, bad, stranger) = (peer(1), peer(2), peer(3));
    let mut r = machine(&[]);
    first_hand(&mut r, &good, StorageProofPassed, 1, 3, T0);
    first_hand(&mut r, &bad, LatencySample, 20, 5, T0);
    first_hand(&mut r, &bad, StorageProofFailed, 1, 3, T0);
    let g = r.score(&good, T0).unwrap();
    assert_eq!(r.weight(&good, T0), Some(g.total));
    assert_close(r.application_score(&good, T0), g.total - FLOOR);
    // Below the floor: weight 0 (whatever its total), application score under 0.
    let b = r.score(&bad, T0).unwrap();
    assert!(b.total > FLOOR && b.is_below_floor());
    assert_eq!(r.weight(&bad, T0), Some(0.0));
    assert_close(r.application_score(&bad, T0), b.total - 1.0);
    // Untracked: no weight (the caller counts it as neutral), application score 0.
    assert_eq!(r.weight(&stranger, T0), None);
    assert_eq!(r.application_score(&stranger, T0), 0.0);
}

#[test]
fn a_seed_report_counts_at_half_weight() {
    let (seed, x) = (peer(50), peer(1));
    let mut r = machine(&[seed]);
    assert_eq!(
        report(&mut r, &seed, &x, StorageProofPassed, 4, T0),
        Ingest::Counted
    );
    let s = r.score(&x, T0).unwrap();
    // pooled passes: 0.5 (second-hand weight) × 1 (standing) × 4 = 2.
    let perf = (1.0 + 2.0) / (2.0 + 2.0);
    // the seed's opinion (1 + 4) / (2 + 4), one reporter of weight 1.
    let review = (1.0 + 5.0 / 6.0) / (2.0 + 1.0);
    assert_close(s.components.performance, perf);
    assert_close(s.components.peer_review, review);
    assert_close(s.total, total(perf, 0.5, 0.5, 1.0, review, 0.0));
    assert_close(s.total, 0.648_611_111_1);
    assert_close(s.evidence.second_hand, 2.0);
    assert_eq!(s.evidence.reporters, 1);
    assert_eq!(r.evidence(&x).len(), 4);
}

#[test]
fn one_reporter_counts_at_most_report_cap_observations() {
    let (seed, x) = (peer(50), peer(1));
    let mut r = machine(&[seed]);
    report(&mut r, &seed, &x, StorageProofFailed, 100, T0);
    // 100 failures scaled to the cap of 8, then halved: 4.
    let s = r.score(&x, T0).unwrap();
    assert_close(s.components.performance, 1.0 / (2.0 + 4.0));
    assert_close(s.evidence.second_hand, 4.0);
}

#[test]
fn a_reporters_samples_do_not_dilute_the_audits_it_saw_fail() {
    let (seed, x) = (peer(50), peer(1));
    let mut r = machine(&[seed]);
    // Two failed audits, and the latency samples one peer sends a minute for an hour.
    report(&mut r, &seed, &x, StorageProofFailed, 2, T0);
    report(&mut r, &seed, &x, LatencySample, 20, T0);
    // The two failures count in full (halved: 1), as without the samples; the samples are
    // capped on their own (20 → 8, halved: 4).
    let s = r.score(&x, T0).unwrap();
    assert_close(s.components.performance, 1.0 / (2.0 + 1.0));
    assert_close(s.evidence.second_hand, 1.0 + 4.0);
}

#[test]
fn sybils_praising_a_bad_peer_do_not_lift_it() {
    let (seed, bad) = (peer(50), peer(1));
    let mut r = machine(&[seed]);
    first_hand(&mut r, &bad, StorageProofFailed, 1, 3, T0);
    let before = r.score(&bad, T0).unwrap();
    assert_close(before.components.performance, 1.0 / 5.0);
    assert_close(before.total, total(0.2, 0.5, 0.5, 1.0, 0.5, 0.0)); // 0.445
    assert!(before.is_below_floor());

    // 100 fresh identities, each claiming 5 passed audits, fast answers and full uptime.
    for n in 0..100u8 {
        let sybil = peer(150 + n);
        for kind in [StorageProofPassed, LatencySample, UptimeSample] {
            let value = if kind == UptimeSample { 3600 } else { 1 };
            for _ in 0..5 {
                let o = obs(&sybil, &bad, kind, value, T0);
                assert_eq!(r.observe_second_hand(&o, T0), Ingest::Untrusted);
            }
        }
        // They also vouch for each other; nobody trusted vouches for them.
        let o = obs(
            &sybil,
            &peer(150 + (n + 1) % 100),
            StorageProofPassed,
            1,
            T0,
        );
        assert_eq!(r.observe_second_hand(&o, T0), Ingest::Untrusted);
    }
    r.refresh_trust(T0);
    assert_eq!(r.score(&bad, T0).unwrap(), before);
    assert_eq!(r.len(), 1, "nothing of the Sybils is stored");
    assert_eq!(r.standing(&peer(150)), 0.0);

    // A bootstrap peer's report does count: 4 passes.
    assert_eq!(
        report(&mut r, &seed, &bad, StorageProofPassed, 4, T0),
        Ingest::Counted
    );
    let after = r.score(&bad, T0).unwrap();
    let perf = (1.0 + 2.0) / (2.0 + 2.0 + 3.0);
    let review = (1.0 + 5.0 / 6.0) / (2.0 + 1.0);
    assert_close(after.components.performance, perf);
    assert_close(after.total, total(perf, 0.5, 0.5, 1.0, review, 0.0)); // 0.5361
}

#[test]
fn a_new_identity_counts_once_it_passes_an_audit() {
    let (fresh, x) = (peer(60), peer(1));
    let mut r = machine(&[peer(50)]);
    assert_eq!(
        report(&mut r, &fresh, &x, StorageProofFailed, 1, T0),
        Ingest::Untrusted
    );
    assert!(r.score(&x, T0).is_none());

    // This node audits it: passed once (local trust 1 ≥ the vetting threshold 0.5). Its trust
    // shows after the next refresh.
    first_hand(&mut r, &fresh, StorageProofPassed, 1, 1, T0);
    assert_eq!(r.standing(&fresh), 0.0);
    r.refresh_trust(T0);
    assert!(r.trust(&fresh) > 0.0);
    assert_close(r.standing(&fresh), 1.0);
    assert_eq!(
        report(&mut r, &fresh, &x, StorageProofFailed, 1, T0),
        Ingest::Counted
    );
    let s = r.score(&x, T0).unwrap();
    assert_close(s.components.performance, 1.0 / (2.0 + 0.5));

    // A peer that failed this node's audit has no standing, even after passing others.
    let liar = peer(61);
    first_hand(&mut r, &liar, StorageProofPassed, 1, 2, T0);
    first_hand(&mut r, &liar, StorageProofFailed, 1, 1, T0);
    r.refresh_trust(T0);
    assert_eq!(r.standing(&liar), 0.0); // 2 − 2·1 = 0 < 0.5
}

#[test]
fn a_peer_vouched_for_by_a_seed_counts() {
    let (seed, vouched, x) = (peer(50), peer(60), peer(1));
    let mut r = machine(&[seed]);
    assert_eq!(
        report(&mut r, &vouched, &x, StorageProofPassed, 1, T0),
        Ingest::Untrusted
    );
    // A seed saw it pass one audit: pooled 0.5 × 1, at the vetting threshold.
    report(&mut r, &seed, &vouched, StorageProofPassed, 1, T0);
    r.refresh_trust(T0);
    assert!(r.standing(&vouched) > 0.0);
    assert_eq!(
        report(&mut r, &vouched, &x, StorageProofPassed, 1, T0),
        Ingest::Counted
    );

    // One pass and one failure: 0.5 − 2 × 0.5 < 0.5, not vetted.
    let mixed = peer(61);
    report(&mut r, &seed, &mixed, StorageProofPassed, 1, T0);
    report(&mut r, &seed, &mixed, StorageProofFailed, 1, T0);
    r.refresh_trust(T0);
    assert_eq!(r.standing(&mixed), 0.0);
    assert_eq!(
        report(&mut r, &mixed, &x, StorageProofPassed, 1, T0),
        Ingest::Untrusted
    );
}

#[test]
fn trust_is_the_hand_computed_walk_and_sums_to_one() {
    // me, seed S, subject X; S reports 6 passes on X (pooled 3: vetted). p = (½, ½, 0), a = 0.15.
    let (seed, x) = (peer(50), peer(1));
    let mut r = Reputation::new(
        me(),
        &[seed],
        Config {
            max_depth: 1,
            ..Config::default()
        },
    )
    .unwrap();
    report(&mut r, &seed, &x, StorageProofPassed, 6, T0);
    r.refresh_trust(T0);
    // x_0 = p = (½, ½, 0); me has no opinion, S passes its ½ to X: x_1 = (0, 0, ½).
    // t ∝ x_0 + 0.85·x_1 = (0.5, 0.5, 0.425), normalised by 1.425.
    assert_close(r.trust(&me()), 0.5 / 1.425);
    assert_close(r.trust(&seed), 0.5 / 1.425);
    assert_close(r.trust(&x), 0.425 / 1.425);
    // X has no opinion either, so more steps change nothing.
    let mut r2 = machine(&[seed]);
    report(&mut r2, &seed, &x, StorageProofPassed, 6, T0);
    r2.refresh_trust(T0);
    let sum = r2.trust(&me()) + r2.trust(&seed) + r2.trust(&x);
    assert_close(sum, 1.0);
    assert_close(r2.trust(&x), 0.425 / 1.425);
}

#[test]
fn propagation_stops_at_max_depth() {
    // me → P1 → P2 → … : each vouches for the next with eight passed audits. Trust (and so
    // standing) shrinks along the chain; a tiny vetting threshold keeps every link vetted so that
    // only the depth bound is tested.
    let chain: Vec<PeerId> = (1..=7).map(peer).collect();
    let config = Config {
        vetting_threshold: 1e-9,
        ..Config::default()
    };
    let mut r = Reputation::new(me(), &[], config).unwrap();
    assert_eq!(r.config().max_depth, 5);
    first_hand(&mut r, &chain[0], StorageProofPassed, 1, 3, T0);
    r.refresh_trust(T0);
    for k in 0..5 {
        assert_eq!(
            report(&mut r, &chain[k], &chain[k + 1], StorageProofPassed, 8, T0),
            Ingest::Counted,
            "P{} is {} hops away",
            k + 1,
            k + 1
        );
        r.refresh_trust(T0);
    }
    for (k, p) in chain.iter().enumerate().take(5) {
        assert!(r.trust(p) > 0.0, "P{} within 5 hops", k + 1);
    }
    // P6 is 6 hops away: no trust, so its reports are not counted.
    assert_eq!(r.trust(&chain[5]), 0.0);
    assert_eq!(r.standing(&chain[5]), 0.0);
    assert_eq!(
        report(&mut r, &chain[5], &chain[6], StorageProofPassed, 2, T0),
        Ingest::Untrusted
    );
    assert!(r.score(&chain[6], T0).is_none());
}

/// me audits A1..A4 (3 passes each: vetted); the `reporting` ones report 4 passes on Y. `nets`
/// gives each Ai's /16. Returns Y's score and A1's standing (all Ai are alike).
fn slash16_case(nets: [[u8; 2]; 4], reporting: usize) -> (Score, f64) {
    let y = peer(1);
    let a: Vec<PeerId> = (11..15).map(peer).collect();
    let mut r = machine(&[]);
    for (p, net) in a.iter().zip(nets) {
        r.set_network(*p, net);
        first_hand(&mut r, p, StorageProofPassed, 1, 3, T0);
    }
    r.refresh_trust(T0);
    for p in a.iter().take(reporting) {
        assert!(r.standing(p) > 0.0);
        assert_eq!(
            report(&mut r, p, &y, StorageProofPassed, 4, T0),
            Ingest::Counted
        );
    }
    r.refresh_trust(T0);
    (r.score(&y, T0).unwrap(), r.standing(&a[0]))
}

#[test]
fn identities_in_one_slash16_count_as_one() {
    let same = [[10, 1]; 4];
    let (four_in_one, _) = slash16_case(same, 4);
    let (one, standing) = slash16_case(same, 1);
    assert_close(standing, 1.0);
    assert_close(
        four_in_one.components.performance,
        one.components.performance,
    );
    assert_close(
        four_in_one.components.peer_review,
        one.components.peer_review,
    );
    assert_close(four_in_one.total, one.total);
    // one reporter of standing 1: 0.5 × 4 passes.
    assert_close(one.components.performance, (1.0 + 2.0) / (2.0 + 2.0));

    // The same four in four different /16s count four times (each with its standing s).
    let (spread, s) = slash16_case([[10, 1], [10, 2], [10, 3], [10, 4]], 4);
    assert!(s > 0.5, "{s}");
    let passes = 4.0 * 0.5 * s * 4.0;
    assert_close(
        spread.components.performance,
        (1.0 + passes) / (2.0 + passes),
    );
    assert!(spread.total > four_in_one.total);
}

#[test]
fn mass_median_ignores_a_crowd_of_slivers() {
    use super::trust::mass_median;
    assert_eq!(mass_median(vec![]), 0.0);
    assert_eq!(mass_median(vec![0.5]), 0.5);
    // 0.4 + 0.3 ≥ half of 1.0.
    assert_eq!(mass_median(vec![0.1, 0.4, 0.2, 0.3]), 0.3);
    // A thousand identities holding 0.0001 each do not move it.
    let mut v = vec![0.1, 0.4, 0.2, 0.3];
    v.extend(std::iter::repeat_n(0.0001, 1000));
    assert_eq!(mass_median(v), 0.3);
}

#[test]
fn ingest_outcomes() {
    let (seed, x) = (peer(50), peer(1));
    let mut r = machine(&[seed]);
    let mine = obs(&me(), &x, StorageProofPassed, 1, T0);
    assert_eq!(r.observe_second_hand(&mine, T0), Ingest::FromMe);
    let theirs = obs(&seed, &x, StorageProofPassed, 1, T0);
    assert_eq!(r.observe_first_hand(&theirs, T0), Ingest::NotMine);
    let about_me = obs(&seed, &me(), StorageProofPassed, 1, T0);
    assert_eq!(r.observe_second_hand(&about_me, T0), Ingest::AboutMe);
    let bad_value = obs(&seed, &x, StorageProofPassed, 2, T0);
    assert_eq!(r.observe_second_hand(&bad_value, T0), Ingest::Invalid);
    assert!(r.is_empty());
}

#[test]
fn memory_is_bounded() {
    let seeds: Vec<PeerId> = (200..230).map(peer).collect();
    let config = Config {
        max_peers: 32,
        max_reporters_per_peer: 4,
        evidence_per_peer: 3,
        ..Config::default()
    };
    let mut r = Reputation::new(me(), &seeds, config).unwrap();
    let x = peer(1);
    for s in &seeds {
        report(&mut r, s, &x, StorageProofPassed, 1, T0);
    }
    assert_eq!(r.ledgers[&x].reports.len(), 4);
    assert_eq!(r.evidence(&x).len(), 3);
    // The reporters heard from most recently are kept (ties: the largest peer ids stay).
    let later = seeds[0];
    report(&mut r, &later, &x, StorageProofPassed, 1, T0 + 1);
    assert!(
        r.ledgers[&x]
            .reports
            .iter()
            .any(|rep| rep.observer == later)
    );

    // Many subjects: never more than max_peers tracked; the one with most evidence stays.
    first_hand(&mut r, &x, StorageProofPassed, 1, 10, T0);
    for n in (2..102u8).filter(|n| peer(*n) != me()) {
        first_hand(&mut r, &peer(n), LatencySample, 10, 1, T0);
        assert!(r.len() <= 32);
    }
    assert!(r.score(&x, T0).is_some());

    // set_network remembers at most 2 × max_peers networks.
    for n in 0..=255u8 {
        r.set_network(peer(n), [n, n]);
    }
    assert!(r.networks.len() <= 64);
}

#[test]
fn table_is_sorted_best_first() {
    let mut r = machine(&[]);
    let (good, bad, unknown) = (peer(1), peer(2), peer(3));
    first_hand(&mut r, &good, StorageProofPassed, 1, 5, T0);
    first_hand(&mut r, &bad, StorageProofFailed, 1, 5, T0);
    r.set_network(unknown, [1, 2]);
    first_hand(&mut r, &unknown, LatencySample, 250, 2, T0);
    let table = r.table(T0);
    let order: Vec<PeerId> = table.iter().map(|(p, _)| *p).collect();
    assert_eq!(order, vec![good, unknown, bad]);
    assert!(table.windows(2).all(|w| w[0].1.total >= w[1].1.total));
}

fn sample_machine() -> Reputation {
    let (seed, x, y) = (peer(50), peer(1), peer(2));
    let mut r = machine(&[seed]);
    r.set_network(x, [192, 168]);
    first_hand(&mut r, &x, StorageProofPassed, 1, 3, T0);
    first_hand(&mut r, &x, LatencySample, 120, 1, T0);
    assert_eq!(r.first_hand(&x, T0).unwrap().passed, 3.0);
    first_hand(&mut r, &y, InvalidMessage, 1, 1, T0 + 5);
    report(&mut r, &seed, &y, StorageProofFailed, 2, T0 + 7);
    r.refresh_trust(T0 + 10);
    report(&mut r, &x, &y, UptimeSample, 1, T0 + 9);
    r
}

#[test]
fn state_round_trips() {
    let r = sample_machine();
    let bytes = r.to_bytes().unwrap();
    let now = T0 + 3 * HOUR_MS;
    let back = Reputation::from_bytes(&bytes, me(), &[peer(50)], Config::default(), now).unwrap();
    assert_eq!(back.to_bytes().unwrap(), bytes);
    let mut r = r;
    r.refresh_trust(now);
    assert_eq!(back.table(now), r.table(now));
    assert_eq!(back.evidence(&peer(2)), r.evidence(&peer(2)));
}

#[test]
fn state_is_checked_on_load() {
    let bytes = sample_machine().to_bytes().unwrap();
    let err = Reputation::from_bytes(&bytes, peer(99), &[], Config::default(), T0).unwrap_err();
    assert!(matches!(err, ReputationError::WrongPeer { .. }), "{err}");

    let mut long = bytes.clone();
    long.push(0);
    let err = Reputation::from_bytes(&long, me(), &[], Config::default(), T0).unwrap_err();
    assert!(
        matches!(
            err,
            ReputationError::Codec(crate::Error::TrailingBytes { .. })
        ),
        "{err}"
    );

    // {"version": 1, ...} → 2: the map starts a4 67 "version" 01.
    let mut v2 = bytes.clone();
    assert_eq!(&v2[..10], b"\xa4\x67version\x01");
    v2[9] = 0x02;
    let err = Reputation::from_bytes(&v2, me(), &[], Config::default(), T0).unwrap_err();
    assert_eq!(
        err,
        ReputationError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );

    // Loading into smaller limits trims instead of failing.
    let small = Config {
        max_reporters_per_peer: 1,
        evidence_per_peer: 1,
        ..Config::default()
    };
    let r = Reputation::from_bytes(&bytes, me(), &[peer(50)], small, T0).unwrap();
    assert_eq!(r.ledgers[&peer(2)].reports.len(), 1);
    assert_eq!(r.evidence(&peer(2)).len(), 1);
}

#[test]
fn config_is_validated() {
    for bad in [
        Config {
            half_life_ms: 0,
            ..Config::default()
        },
        Config {
            damping: 0.0,
            ..Config::default()
        },
        Config {
            max_peers: 0,
            ..Config::default()
        },
        Config {
            second_hand_weight: 1.5,
            ..Config::default()
        },
    ] {
        assert!(matches!(
            Reputation::new(me(), &[], bad).unwrap_err(),
            ReputationError::InvalidConfig { .. }
        ));
    }
}

#[test]
fn ipv4_prefix_reads_the_first_two_octets() {
    let a: Multiaddr = "/ip4/198.51.100.7/tcp/4001".parse().unwrap();
    assert_eq!(ipv4_prefix(&a), Some([198, 51]));
    let b: Multiaddr = "/ip6/::1/tcp/4001".parse().unwrap();
    assert_eq!(ipv4_prefix(&b), None);
}
