//! The `sybil` scenario: warren's own reputation machine ([`warren_protocol::Reputation`]) under
//! colluding identities, at 10⁴ identities.
//!
//! Model (one run per Sybil fraction; `simulations/README.md` has the reasoning):
//! - `peers` identities. A `sybil_fraction` of them are Sybils: colluding identities that provide
//!   nothing and every round file reports praising bad providers and smearing honest ones (failed
//!   proofs, 5 s latency, zero uptime, invalid messages), plus one vouching for another Sybil. The
//!   rest are providers; `bad_fraction` of those are *bad* — they pass only `bad_pass_rate` of
//!   storage audits, and collude: their own audit reports are lies like the Sybils', and each round
//!   they vouch for a random Sybil. Honest providers pass `honest_pass_rate` of audits and report
//!   the truth.
//! - Every round (one virtual hour) every provider audits `audits_per_round` random providers and
//!   publishes the proof result, a latency sample and an uptime sample. Gossipsub delivers every
//!   observation to everyone.
//! - Running a `Reputation` for each of 10⁴ nodes is too costly, so `evaluators` honest providers
//!   are simulated in full: each has its own machine with the `bootstrap` honest peers as its
//!   pre-trusted set, takes its own audits first-hand and everyone else's observations second-hand,
//!   and at the end of the round ranks all providers by total score, drops those below the floor and
//!   keeps the top quartile — the providers it would choose. The metric is the fraction of bad
//!   providers among those choices, averaged over the evaluators.
//! - Baseline (`Scenario::NoDefence`): the same machine, but every identity is in the pre-trusted
//!   set, so every report counts like a bootstrap peer's — what scoring without Sybil weighting
//!   would do.
//!
//! Everything is seeded: the same parameters and seed give byte-identical CSV, whatever the
//! thread count (evaluators are independent; results are gathered in evaluator order).

mod population;
pub mod report;

use std::{fmt, thread};

use warren_protocol::{
    PeerId, Reputation,
    reputation::{Config, HOUR_MS},
};

pub use population::{Population, Published, Role};

use crate::rng::Rng;

/// The total score of a peer with no evidence (`spec/reputation.md`): how an evaluator ranks a
/// provider it has not heard of.
pub const NO_EVIDENCE_TOTAL: f64 = 0.55;

/// The clock at round 0, Unix ms.
pub const START_MS: u64 = 1_700_000_000_000;

/// Parameters of a run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Identities in total (providers and Sybils).
    pub peers: usize,
    /// Share of the providers that are bad.
    pub bad_fraction: f64,
    /// Honest providers that run a full `Reputation` each.
    pub evaluators: usize,
    /// Evaluators in the no-defence baseline (it stores every report, so it costs more).
    pub baseline_evaluators: usize,
    /// Bootstrap peers: honest, pre-trusted by every evaluator.
    pub bootstrap: usize,
    /// Rounds (virtual hours).
    pub rounds: u32,
    /// Audits each provider runs per round.
    pub audits_per_round: usize,
    /// Reports each Sybil files per round.
    pub sybil_reports_per_round: usize,
    /// Share of audits a bad provider passes.
    pub bad_pass_rate: f64,
    /// Share of audits an honest provider passes.
    pub honest_pass_rate: f64,
    /// /16 networks the Sybils live in; 0 spreads them over random /16s like everyone else (a
    /// botnet; the harder case for warren, since the /16 cap does not help).
    pub sybil_networks: usize,
    /// The reputation machine's vetting threshold (its default unless studying it).
    pub vetting_threshold: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Worker threads (does not change the results).
    pub threads: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            peers: 10_000,
            bad_fraction: 0.2,
            evaluators: 50,
            baseline_evaluators: 5,
            bootstrap: 8,
            rounds: 48,
            audits_per_round: 2,
            sybil_reports_per_round: 4,
            bad_pass_rate: 0.5,
            honest_pass_rate: 0.99,
            sybil_networks: 0,
            vetting_threshold: Config::default().vetting_threshold,
            seed: 1,
            threads: 1,
        }
    }
}

/// Which scoring the evaluators use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// warren's scoring: pre-trusted set = the bootstrap peers.
    Warren,
    /// Baseline: every identity pre-trusted, so every report counts.
    NoDefence,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Warren => "warren",
            Scenario::NoDefence => "no-defence",
        })
    }
}

/// One line of the results: the evaluators' mean view after a round.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Which scoring.
    pub scenario: Scenario,
    /// Share of identities that are Sybils.
    pub sybil_fraction: f64,
    /// Round number, from 1.
    pub round: u32,
    /// Share of bad providers among each evaluator's top-quartile choices.
    pub bad_in_top_quartile: f64,
    /// Share of the bad providers an evaluator holds below the floor.
    pub bad_below_floor: f64,
    /// Share of the honest providers an evaluator holds below the floor (false positives).
    pub honest_below_floor: f64,
    /// Share of the Sybils whose reports an evaluator counts (standing above 0).
    pub sybils_with_standing: f64,
}

/// What one evaluator saw after a round.
#[derive(Clone, Copy, Default)]
struct View {
    bad_in_top_quartile: f64,
    bad_below_floor: f64,
    honest_below_floor: f64,
    sybils_with_standing: f64,
}

/// Runs `scenario` at `sybil_fraction` and returns one row per round.
pub fn run(params: &Params, scenario: Scenario, sybil_fraction: f64) -> Vec<Row> {
    let root = Rng::new(params.seed);
    // The population and the gossip depend on the seed and the fraction only, so both scenarios
    // see exactly the same world.
    let mut world = root.fork(0x5eed ^ (sybil_fraction * 1000.0).round() as u64);
    let pop = Population::new(params, sybil_fraction, &mut world);
    let evaluator_count = match scenario {
        Scenario::Warren => params.evaluators,
        Scenario::NoDefence => params.baseline_evaluators,
    }
    .min(pop.evaluators.len());
    let evaluators = &pop.evaluators[..evaluator_count];

    let pre_trusted: Vec<PeerId> = match scenario {
        Scenario::Warren => pop.bootstrap.iter().map(|&i| pop.ids[i]).collect(),
        Scenario::NoDefence => pop.ids.clone(),
    };
    let config = Config {
        // Stored observations only explain scores; the simulation does not display them.
        evidence_per_peer: 0,
        // Room for every identity of the run.
        max_peers: params.peers.max(Config::default().max_peers),
        vetting_threshold: params.vetting_threshold,
        ..Config::default()
    };
    let mut machines: Vec<(usize, Reputation)> = evaluators
        .iter()
        .map(|&e| {
            let mut r = Reputation::new(pop.ids[e], &pre_trusted, config.clone())
                .unwrap_or_else(|err| unreachable!("the simulation's config is valid: {err}"));
            for (i, net) in pop.network.iter().enumerate() {
                r.set_network(pop.ids[i], *net);
            }
            (e, r)
        })
        .collect();

    let threads = params.threads.max(1);
    let mut rows = Vec::new();
    for round in 1..=params.rounds {
        let now = START_MS + u64::from(round) * HOUR_MS;
        let mut round_rng = world.fork(u64::from(round));
        let gossip = pop.round(params, now, &mut round_rng);
        let chunk = machines.len().div_ceil(threads).max(1);
        let views: Vec<View> = thread::scope(|s| {
            let handles: Vec<_> = machines
                .chunks_mut(chunk)
                .map(|part| {
                    let (pop, gossip) = (&pop, &gossip);
                    s.spawn(move || {
                        part.iter_mut()
                            .map(|(e, r)| evaluate(pop, *e, r, gossip, now, params.seed))
                            .collect::<Vec<View>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let n = views.len().max(1) as f64;
        let mean = |f: fn(&View) -> f64| views.iter().map(f).sum::<f64>() / n;
        rows.push(Row {
            scenario,
            sybil_fraction,
            round,
            bad_in_top_quartile: mean(|v| v.bad_in_top_quartile),
            bad_below_floor: mean(|v| v.bad_below_floor),
            honest_below_floor: mean(|v| v.honest_below_floor),
            sybils_with_standing: mean(|v| v.sybils_with_standing),
        });
    }
    rows
}

/// Feeds one round of gossip to evaluator `e` and measures its choices.
fn evaluate(
    pop: &Population,
    e: usize,
    rep: &mut Reputation,
    gossip: &[Published],
    now: u64,
    seed: u64,
) -> View {
    // The machine recomputes trust itself at the first observation of the round (a round is
    // longer than `trust_refresh_ms`), as a node's would.
    for p in gossip {
        if p.observer == e {
            rep.observe_first_hand(&p.observation, now);
        } else {
            rep.observe_second_hand(&p.observation, now);
        }
    }

    // Rank every provider but itself; unknown ones get the no-evidence score.
    let mut eligible: Vec<(f64, u64, usize)> = Vec::new();
    let (mut bad_below, mut honest_below) = (0usize, 0usize);
    for &j in pop.providers.iter().filter(|&&j| j != e) {
        let (total, below) = rep
            .score(&pop.ids[j], now)
            .map_or((NO_EVIDENCE_TOTAL, false), |s| {
                (s.total, s.is_below_floor())
            });
        if below {
            match pop.role[j] {
                Role::Bad => bad_below += 1,
                _ => honest_below += 1,
            }
        } else {
            eligible.push((total, tie_break(seed, e, j), j));
        }
    }
    eligible.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let quartile = (pop.providers.len() - 1).div_ceil(4).min(eligible.len());
    let bad_top = eligible[..quartile]
        .iter()
        .filter(|(_, _, j)| pop.role[*j] == Role::Bad)
        .count();
    let trusted_sybils = pop
        .sybils
        .iter()
        .filter(|&&s| rep.standing(&pop.ids[s]) > 0.0)
        .count();
    let share = |k: usize, n: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    View {
        bad_in_top_quartile: share(bad_top, quartile),
        bad_below_floor: share(bad_below, pop.bad_count),
        honest_below_floor: share(honest_below, pop.honest_count - 1),
        sybils_with_standing: share(trusted_sybils, pop.sybils.len()),
    }
}

/// A per-evaluator order among equal scores (so unknown providers are not chosen by index).
fn tie_break(seed: u64, e: usize, j: usize) -> u64 {
    Rng::new(seed ^ ((e as u64) << 32) ^ j as u64).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Params {
        Params {
            peers: 600,
            evaluators: 4,
            baseline_evaluators: 2,
            bootstrap: 4,
            rounds: 24,
            threads: 2,
            ..Params::default()
        }
    }

    #[test]
    fn same_seed_same_rows_any_thread_count() {
        let a = run(&small(), Scenario::Warren, 0.5);
        let b = run(
            &Params {
                threads: 1,
                ..small()
            },
            Scenario::Warren,
            0.5,
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn sybils_do_not_win_at_half_the_identities() {
        let rows = run(&small(), Scenario::Warren, 0.5);
        let last = rows.last().map_or(1.0, |r| r.bad_in_top_quartile);
        assert!(last < 0.05, "bad share in top quartile {last}");
        let base = run(&small(), Scenario::NoDefence, 0.5);
        let base_last = base.last().map_or(0.0, |r| r.bad_in_top_quartile);
        assert!(base_last > last, "baseline {base_last} vs warren {last}");
    }
}
