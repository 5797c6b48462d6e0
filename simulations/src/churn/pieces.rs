//! Files as erasure-coded stripes in the same churn as [`super::run`]: `data + parity` pieces per
//! file on distinct peers, repaired lazily by warren's own policy
//! ([`warren_storage_mesh::stripe::assess`]).
//!
//! Model, on top of the `churn` scenario's population (same seed, same sessions, same
//! departures):
//! - After the warm-up each file (1 MiB) becomes one stripe: its pieces go to the `data + parity`
//!   online peers closest to the file's key, one each.
//! - A holder that goes offline is looked at again after `lazy_ms` (a departure looks the same to
//!   the others: they cannot tell the two apart). Then every stripe it holds is assessed: if the
//!   pieces that count fall below `repair_at`, one repairer fetches `data` online pieces (the
//!   whole file's size in traffic) and uploads only the pieces that no longer count, each to the
//!   closest online peer without a piece of the stripe; an upload is lost with the scenario's
//!   `copy_loss` (the stripe is assessed again a minute later). With fewer than `data` pieces
//!   online it tries again an hour later; with `gather`
//!   ([`warren_storage_mesh::stripe::assess_gathering`]) it fetches the pieces online now, keeps
//!   them, and rebuilds once those it holds and those online reach `data`. A replaced holder's piece is dropped (garbage when it
//!   comes back).
//! - A file is lost when fewer than `data` of its pieces remain on peers that have not departed.
//! - Uploads land at once (the whole-copy scenario models transfer time; here it is small
//!   against the hours the policy waits).

use warren_storage_mesh::placement::{Key, block_key};
use warren_storage_mesh::stripe::{
    PieceState, StripePolicy, StripeVerdict, assess, assess_gathering,
};

use super::{HOUR, Params, Population, START_MS, Sessions};
use crate::events::{EventQueue, Micros};
use crate::rng::Rng;

/// No holder for this piece (lost in an upload).
const NONE: u32 = u32::MAX;

/// Pieces a stripe can have with fresh indices (a Reed-Solomon code over GF(2^8)).
const MAX_PIECES: usize = 255;

/// One line of the results: the state at a sampling time.
#[derive(Clone, Debug, PartialEq)]
pub struct PieceRow {
    /// The stripe shape and repair rule.
    pub policy: StripePolicy,
    /// Permanent departures per peer per day.
    pub churn: f64,
    /// Hours since the files were stored.
    pub hours: u32,
    /// Files with fewer than `data` pieces left anywhere.
    pub lost: usize,
    /// Files in all.
    pub files: usize,
    /// Stored bytes per file byte (pieces on peers not departed ÷ `data`), mean over files not
    /// lost.
    pub stored_per_byte: f64,
    /// Repair traffic so far per file byte: pieces fetched and uploaded ÷ `data` ÷ files.
    pub repair_per_byte: f64,
    /// Stripes repaired so far.
    pub repairs: u64,
}

#[derive(Debug)]
enum Event {
    SessionEnd(u32),
    SessionStart(u32),
    Depart(u32),
    Suspect(u32, u32),
    PlaceFiles,
    Check(u32),
    Sample,
}

struct Stripe {
    key: Key,
    /// The slot holding each piece, or [`NONE`].
    holders: Vec<u32>,
    /// Pieces on peers not departed.
    data: usize,
    lost: bool,
    /// Pieces (indices into `holders`) the repairer fetched on earlier tries of this repair.
    held: Vec<usize>,
}

struct Sim<'a> {
    params: &'a Params,
    policy: StripePolicy,
    fresh: bool,
    gather: bool,
    churn: f64,
    sessions: Sessions,
    q: EventQueue<Event>,
    pop: Population,
    stripes: Vec<Stripe>,
    net: Rng,
    t0: Micros,
    lost: usize,
    moved: u64,
    repairs: u64,
    rows: Vec<PieceRow>,
}

/// Runs the stripes through `churn` departures per peer per day and returns one row per
/// sampling time. The population and its churn are those of [`super::run`] with the same
/// parameters and churn rate.
///
/// With `fresh`, a rebuilt piece takes a fresh index instead of replacing the one that stopped
/// counting, so the old holder's piece counts again when it comes back (as a whole copy does
/// with RF); otherwise the old piece is dropped. With `gather`, a repair that finds fewer than
/// `data` pieces online fetches and keeps those it can and finishes on a later try.
pub fn run(
    params: &Params,
    policy: StripePolicy,
    churn: f64,
    fresh: bool,
    gather: bool,
) -> Vec<PieceRow> {
    let root = Rng::new(params.seed);
    let churn_root = root.fork(0xc4u64 ^ (churn * 1e6).round() as u64);
    let sessions = Sessions {
        departures_per_day: churn,
        ..params.sessions
    };
    let mut sim = Sim {
        params,
        policy,
        fresh,
        gather,
        churn,
        sessions,
        q: EventQueue::new(),
        pop: Population::new(churn_root.fork(1)),
        stripes: Vec::new(),
        net: root.fork(0x91ece5),
        t0: u64::from(params.warmup_days) * 24 * HOUR,
        lost: 0,
        moved: 0,
        repairs: 0,
        rows: Vec::new(),
    };
    let mut start = churn_root.fork(2);
    let availability = sessions.availability();
    for _ in 0..params.peers {
        let online = start.chance(availability);
        sim.join(online);
    }
    sim.q.schedule(sim.t0, Event::PlaceFiles);
    let horizon = sim.t0 + u64::from(params.days) * 24 * HOUR;
    while let Some((now, event)) = sim.q.pop_until(horizon) {
        sim.handle(now, event);
    }
    sim.rows
}

impl Sim<'_> {
    fn join(&mut self, online: bool) {
        let now = self.q.now();
        let slot = self.pop.join(online, now);
        let sessions = self.sessions;
        let p = &mut self.pop.peers[slot as usize];
        let (next, event) = if online {
            (sessions.online(&mut p.rng), Event::SessionEnd(slot))
        } else {
            (sessions.offline(&mut p.rng), Event::SessionStart(slot))
        };
        let life = sessions.lifetime(&mut p.rng);
        self.q.schedule(next, event);
        self.q.schedule(life, Event::Depart(slot));
    }

    fn lazy(&self) -> Micros {
        self.policy.lazy_ms * 1_000
    }

    fn handle(&mut self, now: Micros, event: Event) {
        match event {
            Event::SessionEnd(slot) => {
                let sessions = self.sessions;
                let lazy = self.lazy();
                let placed = !self.stripes.is_empty();
                let p = &mut self.pop.peers[slot as usize];
                if p.departed {
                    return;
                }
                p.online = false;
                p.offline_since = now;
                p.offline_epoch += 1;
                let epoch = p.offline_epoch;
                let back = sessions.offline(&mut p.rng);
                self.q.schedule(back, Event::SessionStart(slot));
                if placed {
                    self.q.schedule(lazy, Event::Suspect(slot, epoch));
                }
            }
            Event::SessionStart(slot) => {
                let sessions = self.sessions;
                let p = &mut self.pop.peers[slot as usize];
                if p.departed {
                    return;
                }
                p.online = true;
                let end = sessions.online(&mut p.rng);
                self.q.schedule(end, Event::SessionEnd(slot));
            }
            Event::Depart(slot) => {
                self.pop.depart(slot, now);
                let stored = self.pop.peers[slot as usize].stored.clone();
                for b in stored {
                    let s = &mut self.stripes[b as usize];
                    s.data = s.data.saturating_sub(1);
                    if s.data < self.policy.data && !s.lost {
                        s.lost = true;
                        self.lost += 1;
                    }
                }
                if !self.stripes.is_empty() {
                    let epoch = self.pop.peers[slot as usize].offline_epoch;
                    self.q.schedule(self.lazy(), Event::Suspect(slot, epoch));
                }
                self.join(true);
            }
            Event::Suspect(slot, epoch) => {
                let p = &self.pop.peers[slot as usize];
                if p.online || p.offline_epoch != epoch {
                    return;
                }
                for b in p.stored.clone() {
                    self.check(b, now);
                }
            }
            Event::PlaceFiles => self.place_files(),
            Event::Check(b) => self.check(b, now),
            Event::Sample => {
                self.sample(now);
                self.q.schedule(
                    u64::from(self.params.sample_hours.max(1)) * HOUR,
                    Event::Sample,
                );
            }
        }
    }

    /// Online peers closest to `key` without a piece of stripe `b`, closest first.
    fn free_candidates(&self, b: usize, want: usize) -> Vec<u32> {
        let stripe = &self.stripes[b];
        let lookup = self.params.k.max(2 * self.policy.pieces());
        self.pop
            .closest_online(&stripe.key, lookup)
            .into_iter()
            .filter(|s| !stripe.holders.contains(s))
            .take(want)
            .collect()
    }

    fn place_files(&mut self) {
        let mut files = Rng::new(self.params.seed).fork(0xf11e5);
        let n = self.policy.pieces();
        for b in 0..self.params.files {
            let key = block_key(&files.bytes32());
            self.stripes.push(Stripe {
                key,
                holders: Vec::new(),
                data: 0,
                lost: false,
                held: Vec::new(),
            });
            let holders = self.free_candidates(b, n);
            for &h in &holders {
                self.pop.peers[h as usize].stored.push(b as u32);
            }
            let s = &mut self.stripes[b];
            s.data = holders.len();
            s.holders = holders;
            s.holders.resize(n, NONE);
            if s.data < self.policy.data {
                s.lost = true;
                self.lost += 1;
            }
        }
        self.q.schedule(0, Event::Sample);
    }

    fn state(&self, slot: u32) -> PieceState {
        if slot == NONE {
            return PieceState::Gone;
        }
        let p = &self.pop.peers[slot as usize];
        if p.online {
            PieceState::Online
        } else {
            PieceState::Offline {
                since_ms: START_MS + p.offline_since / 1_000,
            }
        }
    }

    fn check(&mut self, b: u32, now: Micros) {
        let bi = b as usize;
        if self.stripes[bi].lost {
            return;
        }
        let states: Vec<PieceState> = self.stripes[bi]
            .holders
            .iter()
            .map(|&h| self.state(h))
            .collect();
        let now_ms = START_MS + now / 1_000;
        let verdict = if self.gather {
            assess_gathering(&self.policy, &states, &self.stripes[bi].held, now_ms)
        } else {
            assess(&self.policy, &states, now_ms)
        };
        match verdict {
            StripeVerdict::Healthy { .. } => {}
            StripeVerdict::Wait { .. } => self.q.schedule(HOUR, Event::Check(b)),
            StripeVerdict::Gather { fetch } => {
                self.moved += fetch.len() as u64;
                self.stripes[bi].held.extend(fetch);
                self.q.schedule(HOUR, Event::Check(b));
            }
            StripeVerdict::Repair { rebuild, sources } => {
                self.repairs += 1;
                if self.gather {
                    self.moved += sources.len() as u64;
                    self.stripes[bi].held.clear();
                } else {
                    self.moved += self.policy.data as u64;
                }
                // With fresh indices the stripe is brought back to `pieces()` counted pieces;
                // otherwise each piece that stopped counting is replaced.
                let rebuild = if self.fresh {
                    let stale = rebuild.iter().filter(|&&i| i < states.len()).count();
                    let counted = states.len() - stale;
                    (0..self.policy.pieces().saturating_sub(counted)).collect()
                } else {
                    rebuild
                };
                let targets = self.free_candidates(bi, rebuild.len());
                let mut short = rebuild.len() > targets.len();
                for (i, to) in rebuild.into_iter().zip(targets) {
                    self.moved += 1;
                    if self.fresh {
                        // A fresh index: the old holder keeps its piece, which counts again
                        // when it comes back (a Reed-Solomon code over GF(2^8) has 255).
                        if self.stripes[bi].holders.len() >= MAX_PIECES {
                            short = true;
                            break;
                        }
                        if self.net.chance(self.params.copy_loss) {
                            short = true;
                            continue;
                        }
                        self.stripes[bi].holders.push(to);
                        self.stripes[bi].data += 1;
                        self.pop.peers[to as usize].stored.push(b);
                        continue;
                    }
                    let old = self.stripes[bi].holders[i];
                    if old != NONE {
                        let p = &mut self.pop.peers[old as usize];
                        p.stored.retain(|&x| x != b);
                        if !p.departed {
                            self.stripes[bi].data -= 1;
                        }
                        self.stripes[bi].holders[i] = NONE;
                    }
                    if self.net.chance(self.params.copy_loss) {
                        short = true;
                        continue;
                    }
                    self.stripes[bi].holders[i] = to;
                    self.stripes[bi].data += 1;
                    self.pop.peers[to as usize].stored.push(b);
                }
                if short {
                    self.q.schedule(60_000_000, Event::Check(b));
                }
            }
        }
    }

    fn sample(&mut self, now: Micros) {
        let k = self.policy.data as f64;
        let (mut pieces, mut alive) = (0usize, 0usize);
        for s in self.stripes.iter().filter(|s| !s.lost) {
            alive += 1;
            pieces += s.data;
        }
        let files = self.stripes.len().max(1) as f64;
        self.rows.push(PieceRow {
            policy: self.policy,
            churn: self.churn,
            hours: ((now - self.t0) / HOUR) as u32,
            lost: self.lost,
            files: self.stripes.len(),
            stored_per_byte: pieces as f64 / k / alive.max(1) as f64,
            repair_per_byte: self.moved as f64 / k / files,
            repairs: self.repairs,
        });
    }
}

/// The rows as CSV, one line per sampling time.
pub fn csv(rows: &[PieceRow]) -> String {
    let mut out = String::from(
        "data,parity,repair_at,lazy_h,churn,hours,lost,files,stored_per_byte,repair_per_byte,repairs\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{:.4},{:.4},{}\n",
            r.policy.data,
            r.policy.parity,
            r.policy.repair_at,
            r.policy.lazy_ms as f64 / 3_600_000.0,
            r.churn,
            r.hours,
            r.lost,
            r.files,
            r.stored_per_byte,
            r.repair_per_byte,
            r.repairs
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Params {
        Params {
            peers: 400,
            files: 1_000,
            days: 6,
            ..Params::default()
        }
    }

    fn policy() -> StripePolicy {
        StripePolicy {
            data: 4,
            parity: 4,
            repair_at: 6,
            lazy_ms: 12 * 3_600_000,
        }
    }

    #[test]
    fn same_seed_same_rows_and_stripes_start_whole() {
        let a = run(&small(), policy(), 0.05, false, false);
        let b = run(&small(), policy(), 0.05, false, false);
        assert_eq!(a, b);
        assert_eq!(a[0].hours, 0);
        assert!((a[0].stored_per_byte - 2.0).abs() < 1e-9, "{:?}", a[0]);
    }

    #[test]
    fn lazy_repair_keeps_files_and_moves_less_than_whole_copies() {
        let p = small();
        let rows = run(&p, policy(), 0.05, false, false);
        let last = rows.last().expect("rows");
        assert_eq!(last.lost, 0, "{last:?}");
        assert!(last.repairs > 0, "{last:?}");
        let rf3 = super::super::run(
            &p,
            super::super::Spec {
                rf: 3,
                churn: 0.05,
                repair: true,
                pace: super::super::Pace::EveryPass,
            },
        );
        let rf3 = rf3.last().expect("rows");
        let rf3_traffic = rf3.attempted as f64 / rf3.files as f64;
        assert!(
            last.repair_per_byte < rf3_traffic,
            "{} vs {rf3_traffic}",
            last.repair_per_byte
        );
        // Without repair the same churn loses files.
        let never = StripePolicy {
            lazy_ms: u64::MAX / 2_000,
            ..policy()
        };
        let idle = run(&p, never, 0.3, false, false);
        let fresh = run(&p, policy(), 0.05, true, false);
        assert_eq!(fresh.last().expect("rows").lost, 0);
        let gathered = run(&p, policy(), 0.05, true, true);
        assert_eq!(gathered.last().expect("rows").lost, 0);
        assert!(idle.last().expect("rows").lost > 0);
    }
}
