//! An iterative Kademlia lookup over `d` disjoint paths (S/Kademlia, Baumgart & Mies 2007),
//! sans-I/O.
//!
//! The initiator's `k` closest contacts to the target are dealt round-robin, closest first, to
//! `d` paths. Each path runs an ordinary α-parallel iterative lookup on its own shortlist: it
//! queries the closest contacts it has not queried yet among its `k` closest that have not
//! failed, at most `α` at a time, and merges the contacts each answer names. A node queried by
//! one path is never queried by another, so an adversary can capture a path only by being on it:
//! with a fraction `f` of adversaries a path survives when none of its hops lands on one, and the
//! lookup succeeds when any path does. The lookup ends at the first answer carrying the value, or
//! when every path has queried its `k` closest live contacts.
//!
//! Hops: a seed contact is at hop 1, and a contact first learned from an answer at hop `h` is at
//! hop `h + 1`; a lookup's hop count is that of the node that answered with the value.
//!
//! Call order: [`Lookup::new`], then repeatedly [`Lookup::poll_query`] until it returns `None`,
//! deliver each query's answer ([`Lookup::on_response`]) or failure ([`Lookup::on_failure`]) in
//! any order, and poll again, until [`Lookup::is_done`]. Nothing here reads a clock or does I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::routing::{NodeId, distance};

/// The lookup's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bucket size and shortlist width (Kademlia's k).
    pub k: usize,
    /// Queries in flight per path (Kademlia's α).
    pub alpha: usize,
    /// Disjoint paths (S/Kademlia's d; 1 is plain Kademlia).
    pub paths: usize,
    /// Most queries one lookup may send (a bound against livelock).
    pub max_queries: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            paths: 8,
            max_queries: 1_000,
        }
    }
}

/// A query to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// The path it belongs to.
    pub path: usize,
    /// The node to ask.
    pub peer: NodeId,
    /// Its hop count.
    pub hop: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight,
    Answered,
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: NodeId,
    hop: u32,
    state: State,
}

#[derive(Clone, Debug, Default)]
struct Path {
    /// Contacts by distance to the target (the XOR with a fixed target is one-to-one).
    entries: BTreeMap<u64, Entry>,
    in_flight: usize,
}

/// How a lookup ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The hop count of the answer with the value, if one came.
    pub found_at_hop: Option<u32>,
    /// Queries sent.
    pub queries: usize,
    /// Queries that failed (timeouts).
    pub failures: usize,
}

/// One lookup in progress.
#[derive(Clone, Debug)]
pub struct Lookup {
    target: NodeId,
    config: Config,
    paths: Vec<Path>,
    /// Nodes queried by some path.
    visited: BTreeSet<NodeId>,
    next_path: usize,
    outcome: Outcome,
}

impl Lookup {
    /// A lookup for `target` starting from `seeds` (the initiator's closest contacts).
    pub fn new(target: NodeId, seeds: &[NodeId], config: Config) -> Self {
        let config = Config {
            k: config.k.max(1),
            alpha: config.alpha.max(1),
            paths: config.paths.max(1),
            ..config
        };
        let mut sorted: Vec<NodeId> = seeds.to_vec();
        sorted.sort_unstable_by_key(|&id| distance(id, target));
        sorted.dedup();
        sorted.truncate(config.k);
        let mut paths = vec![Path::default(); config.paths];
        for (i, id) in sorted.into_iter().enumerate() {
            paths[i % config.paths].entries.insert(
                distance(id, target),
                Entry {
                    id,
                    hop: 1,
                    state: State::Fresh,
                },
            );
        }
        Self {
            target,
            config,
            paths,
            visited: BTreeSet::new(),
            next_path: 0,
            outcome: Outcome::default(),
        }
    }

    /// The key looked up.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The next query to send, if any path may send one now.
    pub fn poll_query(&mut self) -> Option<Query> {
        if self.is_done() || self.outcome.queries >= self.config.max_queries {
            return None;
        }
        for step in 0..self.paths.len() {
            let p = (self.next_path + step) % self.paths.len();
            if let Some(q) = self.next_in(p) {
                self.next_path = (p + 1) % self.paths.len();
                self.outcome.queries += 1;
                return Some(q);
            }
        }
        None
    }

    /// The next query of path `p`: its closest fresh contact among its `k` closest not failed.
    fn next_in(&mut self, p: usize) -> Option<Query> {
        let (k, alpha) = (self.config.k, self.config.alpha);
        let path = &mut self.paths[p];
        if path.in_flight >= alpha {
            return None;
        }
        let mut alive = 0;
        for entry in path.entries.values_mut() {
            if alive >= k {
                break;
            }
            match entry.state {
                State::Failed => continue,
                State::Fresh if self.visited.contains(&entry.id) => {
                    // Another path has it: disjointness means this path may not use it.
                    entry.state = State::Failed;
                    continue;
                }
                State::Fresh => {
                    entry.state = State::InFlight;
                    path.in_flight += 1;
                    self.visited.insert(entry.id);
                    return Some(Query {
                        path: p,
                        peer: entry.id,
                        hop: entry.hop,
                    });
                }
                State::InFlight | State::Answered => alive += 1,
            }
        }
        None
    }

    fn settle(&mut self, q: &Query, state: State) -> bool {
        let Some(path) = self.paths.get_mut(q.path) else {
            return false;
        };
        match path.entries.get_mut(&distance(q.peer, self.target)) {
            Some(e) if e.state == State::InFlight => {
                e.state = state;
                path.in_flight -= 1;
                true
            }
            _ => false,
        }
    }

    /// The answer to `q`: the contacts it named, and whether it carried the value.
    pub fn on_response(&mut self, q: &Query, contacts: &[NodeId], found: bool) {
        if !self.settle(q, State::Answered) {
            return;
        }
        if found && self.outcome.found_at_hop.is_none() {
            self.outcome.found_at_hop = Some(q.hop);
            return;
        }
        let target = self.target;
        let path = &mut self.paths[q.path];
        for &id in contacts {
            let entry = path.entries.entry(distance(id, target)).or_insert(Entry {
                id,
                hop: q.hop + 1,
                state: State::Fresh,
            });
            if entry.state == State::Fresh {
                entry.hop = entry.hop.min(q.hop + 1);
            }
        }
    }

    /// `q` failed (no answer in time).
    pub fn on_failure(&mut self, q: &Query) {
        if self.settle(q, State::Failed) {
            self.outcome.failures += 1;
        }
    }

    /// Whether the lookup is over: the value came, or no path has anything left to ask or
    /// wait for.
    pub fn is_done(&self) -> bool {
        if self.outcome.found_at_hop.is_some() {
            return true;
        }
        let k = self.config.k;
        let budget_left = self.outcome.queries < self.config.max_queries;
        self.paths.iter().all(|path| {
            path.in_flight == 0
                && !(budget_left
                    && path
                        .entries
                        .values()
                        .filter(|e| e.state != State::Failed)
                        .take(k)
                        .any(|e| e.state == State::Fresh && !self.visited.contains(&e.id)))
        })
    }

    /// How it went so far.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(paths: usize) -> Config {
        Config {
            k: 4,
            alpha: 2,
            paths,
            max_queries: 100,
        }
    }

    #[test]
    fn walks_towards_the_target_and_counts_hops() {
        // Target 0; node x answers with x / 4 and x / 8 until 1, which has the value.
        let mut l = Lookup::new(0, &[1 << 20, 1 << 21], config(1));
        let mut hops = 0;
        while !l.is_done() {
            let queries: Vec<Query> = std::iter::from_fn(|| l.poll_query()).collect();
            assert!(!queries.is_empty() && queries.len() <= 2);
            for q in queries {
                hops = hops.max(q.hop);
                let found = q.peer == 1;
                l.on_response(&q, &[q.peer / 4, q.peer / 8], found);
            }
        }
        let out = l.outcome();
        assert!(out.found_at_hop.is_some(), "{out:?}");
        assert!(out.found_at_hop <= Some(hops));
        assert_eq!(out.failures, 0);
    }

    #[test]
    fn paths_are_disjoint_and_failures_end_the_lookup() {
        let seeds = [1u64, 2, 3, 4];
        let mut l = Lookup::new(0, &seeds, config(2));
        let mut asked = Vec::new();
        while let Some(q) = l.poll_query() {
            asked.push((q.path, q.peer));
            // Every node names every seed; nobody has the value.
            l.on_response(&q, &seeds, false);
        }
        assert!(l.is_done());
        let mut peers: Vec<u64> = asked.iter().map(|a| a.1).collect();
        peers.sort_unstable();
        assert_eq!(peers, vec![1, 2, 3, 4], "each node asked once: {asked:?}");
        // Seeds dealt round-robin: path 0 gets 1 and 3, path 1 gets 2 and 4.
        assert!(asked.contains(&(0, 1)) && asked.contains(&(1, 2)));

        let mut l = Lookup::new(0, &seeds, config(1));
        while let Some(q) = l.poll_query() {
            l.on_failure(&q);
        }
        assert!(l.is_done());
        assert_eq!(l.outcome().failures, 4);
        assert_eq!(l.outcome().found_at_hop, None);
    }

    #[test]
    fn alpha_bounds_queries_in_flight() {
        let mut l = Lookup::new(0, &[1, 2, 3, 4], config(1));
        assert!(l.poll_query().is_some());
        assert!(l.poll_query().is_some());
        assert_eq!(l.poll_query(), None);
        assert!(!l.is_done());
    }
}
