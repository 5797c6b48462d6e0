//! The `dht` scenario: Kademlia lookups (k = 20, α = 3, `d` disjoint paths) at 10³–10⁵ nodes,
//! with stale routing entries from churn and a fraction of adversarial nodes that answer wrongly.
//!
//! There is no pure Kademlia model in `warren-protocol` yet (the node uses libp2p-kad), so this
//! module holds one, sans-I/O: [`routing`] (k-buckets) and [`lookup`] (the iterative lookup over
//! disjoint paths). The scenario builds a world and drives lookups through it on the event queue:
//!
//! - `n` nodes with random ids; each honest node's table holds, per bucket, up to `k` nodes drawn
//!   at random from that bucket's range (a table filled by traffic over time).
//! - Churn: at any moment a share `offline` of the nodes is offline; table entries still name
//!   them (stale), and a query to one times out. The offline set is redrawn every 100 lookups.
//! - A value is stored at the `k` nodes closest to its key. A lookup starts at a random online
//!   honest node and succeeds if it reaches an online honest holder.
//! - Adversaries (`adversarial` of the nodes, spread uniformly over the key space) never return
//!   the value and answer with contacts meant to derail the lookup ([`Attack`]).
//! - Latency: each answer takes a round trip drawn from 20–200 ms; a query to an offline or
//!   made-up node fails after a 1 s timeout.
//!
//! Deterministic: the same parameters and seed give the same rows.

pub mod lookup;
pub mod report;
pub mod routing;

use std::fmt;

use lookup::{Config, Lookup, Query};
use routing::{NodeId, RoutingTable, closest_sorted};

use crate::events::{EventQueue, Micros};
use crate::rng::Rng;

/// What adversaries answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attack {
    /// The `k` adversaries closest to the target: real nodes that look closer than the honest
    /// ones and lie in turn (colluding eclipse).
    Collude,
    /// `k` made-up ids closer to the target than any real node: each costs a timeout.
    Fake,
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attack::Collude => "collude",
            Attack::Fake => "fake",
        })
    }
}

/// Parameters of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Nodes.
    pub n: usize,
    /// Share of nodes that are adversarial.
    pub adversarial: f64,
    /// What they answer.
    pub attack: Attack,
    /// Share of nodes offline at a time.
    pub offline: f64,
    /// The lookup's k, α and d.
    pub lookup: Config,
    /// Lookups to run.
    pub lookups: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            n: 10_000,
            adversarial: 0.2,
            attack: Attack::Collude,
            offline: 0.3,
            lookup: Config::default(),
            lookups: 2_000,
            seed: 1,
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Its parameters.
    pub params: Params,
    /// Lookups that reached an online honest holder.
    pub succeeded: usize,
    /// Hop counts of the successful lookups, sorted.
    pub hops: Vec<u32>,
    /// Mean queries per lookup.
    pub queries_mean: f64,
    /// Mean failed queries per lookup.
    pub failures_mean: f64,
    /// Lookup durations of the successful lookups, ms, sorted.
    pub millis: Vec<u64>,
}

impl Row {
    /// Share of lookups that succeeded.
    pub fn success(&self) -> f64 {
        self.succeeded as f64 / self.params.lookups.max(1) as f64
    }

    /// The `q`-quantile of the hop counts of successful lookups (0 if none).
    pub fn hops_quantile(&self, q: f64) -> u32 {
        quantile(&self.hops, q)
    }

    /// The `q`-quantile of the successful lookups' durations, ms (0 if none).
    pub fn millis_quantile(&self, q: f64) -> u64 {
        quantile(&self.millis, q)
    }
}

fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The nodes, their roles and tables.
struct World {
    /// Ids, ascending.
    ids: Vec<NodeId>,
    adversary: Vec<bool>,
    /// Adversaries' ids, ascending.
    adversaries: Vec<NodeId>,
    /// Honest nodes' tables (adversaries have none: they answer from `adversaries`).
    tables: Vec<Option<RoutingTable>>,
    online: Vec<bool>,
}

impl World {
    fn new(params: &Params, rng: &Rng) -> Self {
        let mut ids_rng = rng.fork(1);
        let mut ids: Vec<NodeId> = (0..params.n).map(|_| ids_rng.next_u64()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut roles = rng.fork(2);
        let adversary: Vec<bool> = ids
            .iter()
            .map(|_| roles.chance(params.adversarial))
            .collect();
        let adversaries: Vec<NodeId> = ids
            .iter()
            .zip(&adversary)
            .filter(|(_, a)| **a)
            .map(|(id, _)| *id)
            .collect();
        let k = params.lookup.k;
        let tables = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                if adversary[i] {
                    return None;
                }
                let mut r = rng.fork(0x7ab1e ^ (i as u64) << 8);
                let mut table = RoutingTable::new(id, k);
                for b in 0..64 {
                    let lo = (id ^ (1u64 << b)) & !((1u64 << b) - 1);
                    let hi = lo | ((1u64 << b) - 1);
                    let start = ids.partition_point(|&x| x < lo);
                    let end = ids.partition_point(|&x| x <= hi);
                    let range = &ids[start..end];
                    if range.len() <= k {
                        for &x in range {
                            table.insert(x);
                        }
                    } else {
                        // k distinct members at random (the bucket is full).
                        while table.bucket(b).len() < k {
                            table.insert(range[r.below(range.len())]);
                        }
                    }
                }
                Some(table)
            })
            .collect();
        Self {
            online: vec![true; ids.len()],
            ids,
            adversary,
            adversaries,
            tables,
        }
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    fn churn(&mut self, offline: f64, rng: &mut Rng) {
        for o in &mut self.online {
            *o = !rng.chance(offline);
        }
    }
}

/// What a queried node does.
enum Answer {
    Contacts(Vec<NodeId>, bool),
    Timeout,
}

/// Runs `params.lookups` lookups and gathers their outcome.
pub fn run(params: &Params) -> Row {
    let root = Rng::new(params.seed).fork(params.n as u64);
    let mut world = World::new(params, &root);
    let mut rng = root.fork(3);
    let config = params.lookup;
    let n = world.ids.len();
    let (mut succeeded, mut queries, mut failures) = (0usize, 0usize, 0usize);
    let mut hops = Vec::new();
    let mut millis = Vec::new();
    // A made-up id closer than any real node: it differs from the target only below the bits
    // that separate real nodes.
    let fake_bits = 64 - (n.max(2).ilog2() + 8).min(63);
    for l in 0..params.lookups {
        if l % 100 == 0 {
            world.churn(params.offline, &mut rng);
        }
        let initiator = loop {
            let i = rng.below(n);
            if world.online[i] && !world.adversary[i] {
                break i;
            }
        };
        let key = rng.next_u64();
        let holders = closest_sorted(&world.ids, key, config.k);
        let seeds = world.tables[initiator]
            .as_ref()
            .map_or_else(Vec::new, |t| t.closest(key, config.k));
        let mut lookup = Lookup::new(key, &seeds, config);
        let mut q: EventQueue<(Query, Answer)> = EventQueue::new();
        loop {
            while let Some(query) = lookup.poll_query() {
                let (delay, answer) = match world.index(query.peer) {
                    Some(j) if world.online[j] => {
                        let rtt = (rng.range(20.0, 200.0) * 1_000.0) as Micros;
                        let answer = if world.adversary[j] {
                            let contacts = match params.attack {
                                Attack::Collude => {
                                    closest_sorted(&world.adversaries, key, config.k + 1)
                                        .into_iter()
                                        .filter(|&x| x != query.peer)
                                        .take(config.k)
                                        .collect()
                                }
                                Attack::Fake => (0..config.k)
                                    .map(|_| key ^ (rng.next_u64() >> (64 - fake_bits)).max(1))
                                    .collect(),
                            };
                            Answer::Contacts(contacts, false)
                        } else {
                            let contacts = world.tables[j]
                                .as_ref()
                                .map_or_else(Vec::new, |t| t.closest(key, config.k));
                            Answer::Contacts(contacts, holders.contains(&query.peer))
                        };
                        (rtt, answer)
                    }
                    _ => (1_000_000, Answer::Timeout),
                };
                q.schedule(delay, (query, answer));
            }
            if lookup.is_done() {
                break;
            }
            let Some((_, (query, answer))) = q.pop_until(Micros::MAX) else {
                break;
            };
            match answer {
                Answer::Contacts(contacts, found) => lookup.on_response(&query, &contacts, found),
                Answer::Timeout => lookup.on_failure(&query),
            }
        }
        let out = lookup.outcome();
        queries += out.queries;
        failures += out.failures;
        if let Some(h) = out.found_at_hop {
            succeeded += 1;
            hops.push(h);
            millis.push(q.now() / 1_000);
        }
    }
    hops.sort_unstable();
    millis.sort_unstable();
    let lookups = params.lookups.max(1) as f64;
    Row {
        params: params.clone(),
        succeeded,
        hops,
        queries_mean: queries as f64 / lookups,
        failures_mean: failures as f64 / lookups,
        millis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(adversarial: f64, paths: usize) -> Params {
        Params {
            n: 1_000,
            adversarial,
            lookups: 200,
            lookup: Config {
                paths,
                ..Config::default()
            },
            ..Params::default()
        }
    }

    #[test]
    fn same_seed_same_row() {
        let a = run(&small(0.2, 8));
        let b = run(&small(0.2, 8));
        assert_eq!(a, b);
        assert_eq!(report::csv(std::slice::from_ref(&a)), report::csv(&[b]));
    }

    #[test]
    fn honest_network_finds_everything_in_few_hops() {
        let row = run(&small(0.0, 1));
        assert_eq!(row.success(), 1.0, "{row:?}");
        assert!(row.hops_quantile(0.5) <= 3, "{}", row.hops_quantile(0.5));
    }

    #[test]
    fn disjoint_paths_beat_one_path_under_attack() {
        for attack in [Attack::Collude, Attack::Fake] {
            let one = run(&Params {
                attack,
                ..small(0.2, 1)
            });
            let eight = run(&Params {
                attack,
                ..small(0.2, 8)
            });
            assert!(eight.success() >= 0.95, "{attack}: {}", eight.success());
            assert!(
                eight.success() >= one.success(),
                "{attack}: {} < {}",
                eight.success(),
                one.success()
            );
        }
    }
}
