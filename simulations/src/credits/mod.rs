//! `warren-sim credits`: the bilateral credit ledger of `warren_protocol::credits` at 10⁴ peers.
//!
//! Every peer holds a real [`Ledger`] and a real Ed25519 key. Contributors serve blocks and store
//! replicas for their contributor neighbours (audited every round, `audit_passed`); the others
//! only download. Each round every peer asks its holders for blocks; a holder admits each request
//! with [`Ledger::admit`], queues it in a [`ServiceQueue`] at the priority the ledger gave, and
//! serves as many as its capacity allows (the load: more asked than served). Payers sign real
//! receipts when [`Ledger::receipt_due`] says so, and payees accept them with [`Ledger::accept`].
//!
//! Attackers: a Sybil group whose members sign each other receipts for service never given (and
//! show them to honest holders), and whitewashers that take a fresh identity every round.

mod report;

use std::collections::HashMap;

use warren_protocol::credits::ledger::LAST;
use warren_protocol::credits::policy::ServiceQueue;
use warren_protocol::credits::receipt::ed25519_key;
use warren_protocol::credits::{CreditPolicy, Decision, Ledger};
use warren_protocol::{Keypair, PeerId};

pub use report::{Row, csv, summary};

use crate::SimError;
use crate::rng::Rng;

/// What a peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Serves blocks and stores replicas for its neighbours, and downloads.
    Contributor,
    /// Only downloads (honest software: it signs its receipts).
    FreeRider,
    /// Only downloads from honest peers; signs the group's members receipts for nothing.
    Sybil,
    /// Only downloads, under a fresh identity every round.
    Whitewasher,
}

impl Class {
    /// All classes, in table order.
    pub const ALL: [Class; 4] = [
        Class::Contributor,
        Class::FreeRider,
        Class::Sybil,
        Class::Whitewasher,
    ];

    /// Its name in tables and CSV.
    pub fn name(self) -> &'static str {
        match self {
            Class::Contributor => "contributor",
            Class::FreeRider => "free-rider",
            Class::Sybil => "sybil",
            Class::Whitewasher => "whitewasher",
        }
    }
}

/// The scenario's parameters.
#[derive(Clone, Debug)]
pub struct Params {
    /// Peers.
    pub peers: usize,
    /// Fraction that contributes (the holders).
    pub contributors: f64,
    /// Fraction of free-riders.
    pub free_riders: f64,
    /// Fraction in the Sybil group (the rest are whitewashers).
    pub sybils: f64,
    /// Rounds.
    pub rounds: u32,
    /// Seconds a round lasts.
    pub round_secs: u64,
    /// Holders each peer downloads from (contributors: about this many neighbours).
    pub holders: usize,
    /// Blocks (1 MiB) each peer asks for per round.
    pub demand: usize,
    /// Blocks a holder serves per round.
    pub capacity: usize,
    /// GiB a contributor stores for each neighbour (audited every round).
    pub stored_gib: u64,
    /// Receipts for everything owed every this many rounds (besides the half-window rule).
    pub flush_rounds: u32,
    /// The ledger's policy (the protocol's defaults unless changed).
    pub policy: CreditPolicy,
    /// Seed.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            peers: 10_000,
            contributors: 0.5,
            free_riders: 0.2,
            sybils: 0.2,
            rounds: 30,
            round_secs: 60,
            holders: 8,
            demand: 16,
            capacity: 24,
            stored_gib: 64,
            flush_rounds: 5,
            policy: CreditPolicy::default(),
            seed: 1,
        }
    }
}

const BLOCK: u64 = 1 << 20;

/// An honest receipt refused: (payer or payee index, why).
type Fail = (usize, warren_protocol::credits::CreditError);

struct Peer {
    class: Class,
    key: Keypair,
    ed: [u8; 32],
    id: PeerId,
    ledger: Ledger,
    holders: Vec<usize>,
}

fn identity(rng: &mut Rng, policy: CreditPolicy) -> (Keypair, [u8; 32], PeerId, Ledger) {
    let mut seed = rng.bytes32();
    let key =
        Keypair::ed25519_from_bytes(&mut seed).unwrap_or_else(|_| Keypair::generate_ed25519());
    let ed = ed25519_key(&key).unwrap_or([0; 32]);
    let id = key.public().to_peer_id();
    (key.clone(), ed, id, Ledger::new(ed, policy))
}

struct World {
    peers: Vec<Peer>,
    index: HashMap<PeerId, usize>,
    sybil_seq: u64,
}

impl World {
    fn new(p: &Params, rng: &mut Rng) -> Result<World, &'static str> {
        let n = p.peers;
        let n_contrib = ((n as f64 * p.contributors).round() as usize).clamp(1, n);
        let n_free = ((n as f64 * p.free_riders).round() as usize).min(n - n_contrib);
        let n_sybil = ((n as f64 * p.sybils).round() as usize).min(n - n_contrib - n_free);
        if p.holders == 0 || p.holders >= n_contrib {
            return Err("holders must be at least 1 and below the contributors");
        }
        let mut peers = Vec::with_capacity(n);
        for i in 0..n {
            let class = if i < n_contrib {
                Class::Contributor
            } else if i < n_contrib + n_free {
                Class::FreeRider
            } else if i < n_contrib + n_free + n_sybil {
                Class::Sybil
            } else {
                Class::Whitewasher
            };
            let (key, ed, id, ledger) = identity(rng, p.policy);
            peers.push(Peer {
                class,
                key,
                ed,
                id,
                ledger,
                holders: Vec::new(),
            });
        }
        // Contributors: a symmetric neighbourhood of `holders` each (a ring over a random
        // order, each linked to the nearest on both sides): each serves and stores for the other.
        let mut order: Vec<usize> = (0..n_contrib).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for (k, &i) in order.iter().enumerate() {
            for step in 1..=p.holders / 2 {
                let j = order[(k + step) % n_contrib];
                if j != i && !peers[i].holders.contains(&j) {
                    peers[i].holders.push(j);
                    peers[j].holders.push(i);
                }
            }
        }
        for peer in peers.iter_mut().skip(n_contrib) {
            while peer.holders.len() < p.holders {
                let j = rng.below(n_contrib);
                if !peer.holders.contains(&j) {
                    peer.holders.push(j);
                }
            }
        }
        let index = peers.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        Ok(World {
            peers,
            index,
            sybil_seq: 0,
        })
    }

    fn rekey(&mut self, i: usize, rng: &mut Rng, policy: CreditPolicy) {
        let (key, ed, id, ledger) = identity(rng, policy);
        let peer = &mut self.peers[i];
        self.index.remove(&peer.id);
        self.index.insert(id, i);
        peer.key = key;
        peer.ed = ed;
        peer.id = id;
        peer.ledger = ledger;
    }

    /// Contributors audit the replicas their neighbours hold for them.
    fn audits(&mut self, stored: u64, now_ms: u64) {
        for i in 0..self.peers.len() {
            if self.peers[i].class != Class::Contributor {
                continue;
            }
            for h in self.peers[i].holders.clone() {
                let holder = self.peers[h].id;
                let mut block = [0u8; 32];
                block[..8].copy_from_slice(&(i as u64).to_le_bytes());
                block[8..16].copy_from_slice(&(h as u64).to_le_bytes());
                self.peers[i]
                    .ledger
                    .audit_passed(holder, block, stored, now_ms);
            }
        }
    }

    /// Every request of the round, admitted and served by the policy's order. Returns per peer
    /// (asked, served, refused).
    fn serve(&mut self, p: &Params, rng: &mut Rng, now_ms: u64) -> Vec<(u64, u64, u64)> {
        let n = self.peers.len();
        let mut arrivals = Vec::with_capacity(n * p.demand);
        for (d, peer) in self.peers.iter().enumerate() {
            for k in 0..p.demand {
                arrivals.push((peer.holders[k % peer.holders.len()], d));
            }
        }
        // Arrival order at random (seeded): nobody is first by construction.
        for i in (1..arrivals.len()).rev() {
            arrivals.swap(i, rng.below(i + 1));
        }
        let mut queues: HashMap<usize, ServiceQueue<usize>> = HashMap::new();
        let mut tally = vec![(0u64, 0u64, 0u64); n];
        for (h, d) in arrivals {
            tally[d].0 += 1;
            let requester = self.peers[d].id;
            let priority = match self.peers[h].ledger.admit(requester, now_ms) {
                Decision::Serve { priority } => priority,
                Decision::Last => LAST,
                Decision::Refuse { .. } => {
                    tally[d].2 += 1;
                    continue;
                }
            };
            queues
                .entry(h)
                .or_insert_with(|| ServiceQueue::new(n * p.demand))
                .push(priority, d);
        }
        let mut holders: Vec<usize> = queues.keys().copied().collect();
        holders.sort_unstable();
        for h in holders {
            let Some(mut q) = queues.remove(&h) else {
                continue;
            };
            for _ in 0..p.capacity {
                let Some(d) = q.pop() else { break };
                let (hid, did) = (self.peers[h].id, self.peers[d].id);
                self.peers[h].ledger.served(did, BLOCK, now_ms);
                self.peers[d].ledger.received(hid, BLOCK, now_ms);
                tally[d].1 += 1;
            }
        }
        tally
    }

    /// Payers sign receipts that are due; payees accept and countersign them.
    fn settle(&mut self, force: bool, now_ms: u64) -> Result<u64, Fail> {
        let mut signed = 0;
        for i in 0..self.peers.len() {
            let mut due: Vec<usize> = self.peers[i]
                .ledger
                .owing()
                .into_iter()
                .filter(|q| self.peers[i].ledger.receipt_due(q, force))
                .filter_map(|q| self.index.get(&q).copied())
                .collect();
            due.sort_unstable();
            for j in due {
                signed += 1;
                self.receipt(i, j, now_ms)?;
            }
        }
        Ok(signed)
    }

    fn receipt(&mut self, i: usize, j: usize, now_ms: u64) -> Result<(), Fail> {
        let (payee, payee_ed, payer) = (self.peers[j].id, self.peers[j].ed, self.peers[i].id);
        let err = |source| (i, source);
        let payer_key = self.peers[i].key.clone();
        let r = self.peers[i]
            .ledger
            .issue(&payer_key, payee, payee_ed, now_ms)
            .map_err(err)?;
        let key = self.peers[j].key.clone();
        let signed = self.peers[j]
            .ledger
            .accept(&key, payer, r, now_ms)
            .map_err(err)?;
        self.peers[i]
            .ledger
            .countersigned(payee, signed)
            .map_err(err)
    }

    /// Each Sybil signs the next one in its ring a receipt for a GiB never delivered; the payee
    /// then shows it to one of its honest holders as credit. Returns the receipts the honest
    /// holders refused.
    fn collude(&mut self, now_ms: u64) -> Result<u64, Fail> {
        let ring: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].class == Class::Sybil)
            .collect();
        let mut refused = 0;
        for (k, &s) in ring.iter().enumerate() {
            let t = ring[(k + 1) % ring.len()];
            if s == t {
                break;
            }
            let friend = self.peers[t].id;
            self.peers[s].ledger.received(friend, 1 << 30, now_ms);
            let (skey, ted) = (self.peers[s].key.clone(), self.peers[t].ed);
            let r = self.peers[s]
                .ledger
                .issue(&skey, friend, ted, now_ms)
                .map_err(|source| (s, source))?;
            let key = self.peers[t].key.clone();
            let payer = self.peers[s].id;
            let signed = self.peers[t]
                .ledger
                .accept(&key, payer, r, now_ms)
                .map_err(|source| (t, source))?;
            self.peers[s]
                .ledger
                .countersigned(friend, signed.clone())
                .map_err(|source| (s, source))?;
            let h = self.peers[t].holders[(self.sybil_seq as usize) % self.peers[t].holders.len()];
            let hkey = self.peers[h].key.clone();
            if self.peers[h]
                .ledger
                .accept(&hkey, friend, signed, now_ms)
                .is_err()
            {
                refused += 1;
            }
        }
        self.sybil_seq += 1;
        Ok(refused)
    }

    /// Mean balance of each class's peers with their honest holders, and the Sybils' best.
    fn balances(&mut self, now_ms: u64) -> (HashMap<Class, f64>, i64, f64) {
        let mut sums: HashMap<Class, (f64, u64)> = HashMap::new();
        let mut sybil_best = i64::MIN;
        for d in 0..self.peers.len() {
            let (class, id) = (self.peers[d].class, self.peers[d].id);
            for h in self.peers[d].holders.clone() {
                let b = self.peers[h]
                    .ledger
                    .standing(&id, now_ms)
                    .map_or(0, |s| s.balance);
                let e = sums.entry(class).or_default();
                e.0 += b as f64;
                e.1 += 1;
                if class == Class::Sybil {
                    sybil_best = sybil_best.max(b);
                }
            }
        }
        let ring: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].class == Class::Sybil)
            .collect();
        let mut in_group = 0.0;
        for (k, &s) in ring.iter().enumerate() {
            let friend = self.peers[ring[(k + 1) % ring.len()]].id;
            in_group += self.peers[s]
                .ledger
                .standing(&friend, now_ms)
                .map_or(0, |st| st.balance) as f64;
        }
        let means = sums
            .into_iter()
            .map(|(c, (s, n))| (c, s / n.max(1) as f64))
            .collect();
        (means, sybil_best, in_group / ring.len().max(1) as f64)
    }
}

/// Runs the scenario: one row per class per round.
/// The error is boxed: [`SimError`] is large (it carries node errors).
pub fn run(p: &Params) -> Result<Vec<Row>, Box<SimError>> {
    let mut rng = Rng::new(p.seed);
    let mut world = World::new(p, &mut rng).map_err(|e| Box::new(SimError::Params(e)))?;
    let fail = |(peer, source)| Box::new(SimError::Credit { peer, source });
    let mut rows = Vec::new();
    for round in 1..=p.rounds {
        let now_ms = u64::from(round) * p.round_secs * 1000;
        for i in 0..world.peers.len() {
            if world.peers[i].class == Class::Whitewasher {
                world.rekey(i, &mut rng, p.policy);
            }
        }
        world.audits(p.stored_gib << 30, now_ms);
        let tally = world.serve(p, &mut rng, now_ms);
        let sybil_refused = world.collude(now_ms).map_err(fail)?;
        let receipts = world
            .settle(round % p.flush_rounds.max(1) == 0, now_ms)
            .map_err(fail)?;
        let (means, sybil_best, sybil_in_group) = world.balances(now_ms);
        for class in Class::ALL {
            let mut row = Row {
                round,
                class,
                peers: 0,
                asked: 0,
                served: 0,
                refused: 0,
                mean_balance_nc: means.get(&class).copied().unwrap_or(0.0),
                receipts,
                sybil_best_nc: sybil_best,
                sybil_in_group_nc: sybil_in_group,
                sybil_refused,
            };
            for (peer, t) in world.peers.iter().zip(&tally) {
                if peer.class == class {
                    row.peers += 1;
                    row.asked += t.0;
                    row.served += t.1;
                    row.refused += t.2;
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
