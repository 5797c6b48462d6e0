//! The `churn` scenario: warren's own placement ([`warren_storage_mesh::placement::place`]) and
//! repair planner ([`warren_storage_mesh::repair::Repairer`]) keeping files alive while peers
//! come and go, at 10⁴–10⁵ peers over 30 simulated days.
//!
//! Model (`simulations/README.md` has the reasoning and the sources):
//! - Peers have real warren identities and Kademlia keys. Each alternates online sessions and
//!   offline periods drawn from heavy-tailed Weibull distributions ([`Sessions`]); offline peers
//!   keep their blocks. Each also has an exponential lifetime after which it departs for good,
//!   its blocks with it, and a fresh identity joins in its place (the population stays stable
//!   while identities turn over).
//! - After a one-day warm-up, `files` files of one 1 MiB block each are stored: [`place`] over
//!   the `k` online peers closest to the block (what a DHT lookup returns), at `rf` copies.
//! - Repair: a holder that has been unreachable for `detect` is no longer counted as live; then
//!   every block it held is checked. If its live holders are fewer than `rf`, the closest live
//!   holder runs its own `Repairer::plan` with the live holders and the `k` online peers closest
//!   to the block as candidates, and pushes the planned copies; a copy lands after a transfer
//!   time unless the target has gone offline or the transfer is lost, in which case the holder
//!   reports `target_failed` and the block is checked again. Holders that come back count again
//!   (copies are never deleted), so replication settles above `rf`.
//! - Metrics every `sample_hours`: files lost for good (no copy left anywhere), blocks copied,
//!   copies per file, and the share of files with fewer than `rf` copies online (time under RF)
//!   or none (unavailable).
//!
//! - Silent loss (`silent_loss_per_day`, 0 by default): copies vanish from holders that stay
//!   online and keep claiming them (a disk that rots, a holder that deletes), found only when a
//!   holder of the block checks it: within seconds at the old pace ([`Pace::EveryPass`], every
//!   holder re-checks every block every 5 s), at the next check of any of its holders at the
//!   sweep's pace ([`Pace::Sweep`], each holder once per period, at its own random phase). Audits
//!   per file and day follow from the pace (each holder audits each other holder once per 30 s
//!   verification window, resp. once per period) and are reported, not simulated one by one.
//!
//! Deterministic: the same parameters and seed give the same rows; each peer draws its sessions
//! from its own stream, so runs with and without repair see the same churn.

pub mod pieces;
mod population;
pub mod report;

use warren_protocol::Tier;
use warren_storage_mesh::placement::{Candidate, Key, PlacementPolicy, block_key, distance, place};
use warren_storage_mesh::repair::{PlanStatus, RepairConfig, RepairInput, Repairer};

pub use population::{HOUR, Population, Sessions};

use crate::events::{EventQueue, Micros};
use crate::rng::Rng;

/// The clock at the start, Unix ms (the Repairer takes Unix milliseconds).
pub const START_MS: u64 = 1_700_000_000_000;

/// One block: the scenario's file (see the README for why one block per file).
pub const BLOCK_LEN: u64 = 1 << 20;

/// Parameters shared by every run of a sweep.
#[derive(Clone, Debug)]
pub struct Params {
    /// Peers online or offline at any time (departed ones are replaced).
    pub peers: usize,
    /// Files (one block each).
    pub files: usize,
    /// The session model; its `departures_per_day` is overridden per run by [`Spec::churn`].
    pub sessions: Sessions,
    /// Simulated days after the files are stored.
    pub days: u32,
    /// Days of churn before the files are stored (so sessions are mixed).
    pub warmup_days: u32,
    /// Sampling interval of the rows, hours.
    pub sample_hours: u32,
    /// How long a holder must be unreachable before the others stop counting it, minutes.
    pub detect_minutes: u64,
    /// Peers a DHT lookup returns (the candidates for placement and repair).
    pub k: usize,
    /// Share of copies lost in transfer.
    pub copy_loss: f64,
    /// Copies lost silently per copy per day (found only by a check of the block).
    pub silent_loss_per_day: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            peers: 10_000,
            files: 100_000,
            sessions: Sessions {
                online_median_h: 3.0,
                online_shape: 0.5,
                offline_median_h: 3.0,
                offline_shape: 0.5,
                departures_per_day: 0.05,
            },
            days: 30,
            warmup_days: 1,
            sample_hours: 6,
            detect_minutes: 30,
            k: 20,
            copy_loss: 0.01,
            silent_loss_per_day: 0.0,
            seed: 1,
        }
    }
}

/// What varies between runs of a sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    /// Replication factor.
    pub rf: usize,
    /// Permanent departures per peer per day.
    pub churn: f64,
    /// Whether repair runs.
    pub repair: bool,
    /// How often holders re-check their blocks (finds silent losses).
    pub pace: Pace,
}

/// How often the holders of a block re-check it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// warren before the idle-at-scale work: every holder re-checks every block every 5 s and
    /// re-audits each other holder every 30 s.
    EveryPass,
    /// The sweep: each holder re-checks each block once per `period_h` hours.
    Sweep {
        /// The recheck period, hours.
        period_h: f64,
    },
    /// The sweep as warren runs it now: each holder checks each block once per `period_h` hours
    /// and each check audits one other holder, the one proven longest ago, so a given holder is
    /// audited by a given checker at every `others`-th check (the others trusted meanwhile).
    Rotating {
        /// The recheck period, hours.
        period_h: f64,
    },
}

impl Pace {
    /// When a silent loss is found, µs after it happens, by holders `others` (besides the
    /// holder that lost it).
    fn detection(self, others: usize, rng: &mut Rng) -> Micros {
        match self {
            Pace::EveryPass => 5_000_000,
            Pace::Sweep { period_h } => {
                let period = period_h * 3600.0 * 1e6;
                (0..others.max(1))
                    .map(|_| rng.range(0.0, period))
                    .fold(period, f64::min) as Micros
            }
            Pace::Rotating { period_h } => {
                let period = period_h * 3600.0 * 1e6;
                let turns = others.max(1);
                // Each checker's next check is at a random phase of the period; the lost copy's
                // holder is its stalest at one of its next `turns` checks, at random.
                (0..turns)
                    .map(|_| {
                        let phase = rng.range(0.0, period);
                        let turn = rng.range(0.0, turns as f64).floor();
                        phase + turn * period
                    })
                    .fold(f64::MAX, f64::min) as Micros
            }
        }
    }

    /// Audits per file per day at replication `rf` (each holder audits each other holder).
    pub fn audits_per_file_day(self, rf: usize) -> f64 {
        let pairs = (rf * rf.saturating_sub(1)) as f64;
        match self {
            Pace::EveryPass => pairs * 86_400.0 / 30.0,
            Pace::Sweep { period_h } => pairs * 24.0 / period_h,
            Pace::Rotating { period_h } => rf as f64 * 24.0 / period_h,
        }
    }

    /// A short name for tables and CSV.
    pub fn label(self) -> String {
        match self {
            Pace::EveryPass => "every 5 s".into(),
            Pace::Sweep { period_h } => format!("sweep {period_h} h"),
            Pace::Rotating { period_h } => format!("rotating {period_h} h"),
        }
    }
}

/// One line of the results: the state at a sampling time.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The run.
    pub spec: Spec,
    /// Hours since the files were stored.
    pub hours: u32,
    /// Files with no copy left anywhere.
    pub lost: usize,
    /// Files in all.
    pub files: usize,
    /// Copies made by repair so far (landed).
    pub copied: u64,
    /// Copies repair attempted so far (landed, lost or refused): the repair traffic in blocks.
    pub attempted: u64,
    /// Mean copies (on peers not departed) per file not lost.
    pub copies_mean: f64,
    /// Share of files with fewer than `rf` copies online now.
    pub under_rf: f64,
    /// Share of files with no copy online now.
    pub unavailable: f64,
    /// Share of peers online now.
    pub online: f64,
    /// Copies lost silently so far.
    pub silent: u64,
    /// Audits so far per file (from the pace: see [`Pace::audits_per_file_day`]).
    pub audits_per_file: f64,
}

#[derive(Debug)]
enum Event {
    SessionEnd(u32),
    SessionStart(u32),
    Depart(u32),
    Suspect(u32, u32),
    PlaceFiles,
    Check(u32),
    CopyDone { block: u32, from: u32, to: u32 },
    Sample,
    SilentLoss,
    Found { block: u32, holder: u32 },
}

#[derive(Debug)]
struct Block {
    hash: [u8; 32],
    key: Key,
    /// Slots that hold (or held, until detected gone) a copy.
    holders: Vec<u32>,
    /// Copies on peers not departed.
    data: u32,
    lost: bool,
}

struct Sim<'a> {
    params: &'a Params,
    spec: Spec,
    sessions: Sessions,
    q: EventQueue<Event>,
    pop: Population,
    blocks: Vec<Block>,
    repairers: Vec<Option<Repairer>>,
    net: Rng,
    t0: Micros,
    lost: usize,
    copied: u64,
    attempted: u64,
    silent: u64,
    decay: Rng,
    rows: Vec<Row>,
}

/// Runs one setting of the sweep and returns one row per sampling time (the first at hour 0).
pub fn run(params: &Params, spec: Spec) -> Vec<Row> {
    let root = Rng::new(params.seed);
    // The churn stream depends on the seed and the churn rate only.
    let churn_root = root.fork(0xc4u64 ^ (spec.churn * 1e6).round() as u64);
    let sessions = Sessions {
        departures_per_day: spec.churn,
        ..params.sessions
    };
    let mut sim = Sim {
        params,
        spec,
        sessions,
        q: EventQueue::new(),
        pop: Population::new(churn_root.fork(1)),
        blocks: Vec::new(),
        repairers: Vec::new(),
        net: root.fork(0x4e7 ^ (spec.rf as u64) << 8),
        t0: u64::from(params.warmup_days) * 24 * HOUR,
        lost: 0,
        copied: 0,
        attempted: 0,
        silent: 0,
        decay: root.fork(0x5113),
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
    fn join(&mut self, online: bool) -> u32 {
        let now = self.q.now();
        let slot = self.pop.join(online, now);
        self.repairers.push(None);
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
        slot
    }

    fn placed(&self) -> bool {
        !self.blocks.is_empty()
    }

    fn handle(&mut self, now: Micros, event: Event) {
        match event {
            Event::SessionEnd(slot) => {
                let sessions = self.sessions;
                let detect = self.detect();
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
                if self.spec.repair && self.placed() {
                    self.q.schedule(detect, Event::Suspect(slot, epoch));
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
                let stored = std::mem::take(&mut self.pop.peers[slot as usize].stored);
                for &b in &stored {
                    let block = &mut self.blocks[b as usize];
                    block.data = block.data.saturating_sub(1);
                    if block.data == 0 && !block.lost {
                        block.lost = true;
                        self.lost += 1;
                    }
                }
                if self.spec.repair && self.placed() {
                    // The others notice as they would for any unreachable holder.
                    self.pop.peers[slot as usize].stored = stored;
                    let epoch = self.pop.peers[slot as usize].offline_epoch;
                    self.q.schedule(self.detect(), Event::Suspect(slot, epoch));
                }
                // A fresh identity takes its place.
                self.join(true);
            }
            Event::Suspect(slot, epoch) => {
                let p = &self.pop.peers[slot as usize];
                if p.online || p.offline_epoch != epoch {
                    return;
                }
                let stored = if p.departed {
                    std::mem::take(&mut self.pop.peers[slot as usize].stored)
                } else {
                    p.stored.clone()
                };
                for b in stored {
                    self.check(b, now);
                }
            }
            Event::PlaceFiles => self.place_files(now),
            Event::Check(b) => self.check(b, now),
            Event::CopyDone { block, from, to } => self.copy_done(block, from, to, now),
            Event::SilentLoss => self.silent_loss(),
            Event::Found { block, holder } => {
                // A holder's audit of it failed: it no longer counts as a holder.
                self.blocks[block as usize].holders.retain(|&h| h != holder);
                if self.spec.repair {
                    self.check(block, now);
                }
            }
            Event::Sample => {
                self.sample(now);
                self.q.schedule(
                    u64::from(self.params.sample_hours.max(1)) * HOUR,
                    Event::Sample,
                );
            }
        }
    }

    fn detect(&self) -> Micros {
        self.params.detect_minutes.max(1) * 60_000_000
    }

    fn now_ms(now: Micros) -> u64 {
        START_MS + now / 1_000
    }

    /// The `k` online peers closest to `key`, as placement candidates.
    fn candidates(&self, key: &Key) -> Vec<Candidate> {
        self.pop
            .closest_online(key, self.params.k)
            .into_iter()
            .map(|s| Candidate {
                peer: self.pop.peers[s as usize].id,
                tier: Tier::Cold,
                // Capacity is not the question here: every peer offers far more than it gets.
                bytes_free: 1 << 40,
                score: None,
                // One network group for all: the scenario is about churn, not Sybils.
                group: None,
            })
            .collect()
    }

    fn place_files(&mut self, now: Micros) {
        let mut files = Rng::new(self.params.seed).fork(0xf11e5);
        let policy = PlacementPolicy::with_rf(self.spec.rf);
        for b in 0..self.params.files {
            let hash = files.bytes32();
            let key = block_key(&hash);
            let cands = self.candidates(&key);
            let placed = place(&hash, &cands, &policy, BLOCK_LEN, &[]);
            let holders: Vec<u32> = placed.peers().filter_map(|id| self.pop.slot(id)).collect();
            for &h in &holders {
                self.pop.peers[h as usize].stored.push(b as u32);
            }
            let data = holders.len() as u32;
            self.blocks.push(Block {
                hash,
                key,
                holders,
                data,
                lost: data == 0,
            });
            if data == 0 {
                self.lost += 1;
            }
        }
        self.q.schedule(0, Event::Sample);
        self.schedule_silent_loss();
        let _ = now;
    }

    /// The next silent loss among all copies (a Poisson process at the total rate).
    fn schedule_silent_loss(&mut self) {
        let copies: u64 = self.blocks.iter().map(|b| u64::from(b.data)).sum();
        let per_day = self.params.silent_loss_per_day * copies as f64;
        if per_day > 0.0 {
            let mean = 24.0 * HOUR as f64 / per_day;
            let wait = self.decay.exponential(mean).max(1.0) as Micros;
            self.q.schedule(wait, Event::SilentLoss);
        }
    }

    /// One copy vanishes from a holder that stays and keeps claiming it.
    fn silent_loss(&mut self) {
        let b = self.decay.below(self.blocks.len().max(1)) as u32;
        let block = &self.blocks[b as usize];
        let with_data: Vec<u32> = block
            .holders
            .iter()
            .copied()
            .filter(|&h| self.pop.peers[h as usize].stored.contains(&b))
            .collect();
        if !block.lost && !with_data.is_empty() {
            let h = with_data[self.decay.below(with_data.len())];
            self.pop.peers[h as usize].stored.retain(|&x| x != b);
            let block = &mut self.blocks[b as usize];
            block.data = block.data.saturating_sub(1);
            self.silent += 1;
            if block.data == 0 {
                block.lost = true;
                self.lost += 1;
            }
            let others = block.holders.len().saturating_sub(1);
            let found = self.spec.pace.detection(others, &mut self.decay);
            self.q.schedule(
                found,
                Event::Found {
                    block: b,
                    holder: h,
                },
            );
        }
        self.schedule_silent_loss();
    }

    fn is_live(&self, slot: u32, now: Micros) -> bool {
        let p = &self.pop.peers[slot as usize];
        p.online || now.saturating_sub(p.offline_since) < self.detect()
    }

    /// What the block's holders would do now: the closest live holder plans its repair.
    fn check(&mut self, b: u32, now: Micros) {
        let detect = self.detect();
        let peers = &self.pop.peers;
        let block = &mut self.blocks[b as usize];
        if block.lost {
            return;
        }
        // Departed holders the others have noticed are forgotten.
        block.holders.retain(|&h| {
            let p = &peers[h as usize];
            !(p.departed && now.saturating_sub(p.offline_since) >= detect)
        });
        let block = &self.blocks[b as usize];
        let live: Vec<u32> = block
            .holders
            .iter()
            .copied()
            .filter(|&h| self.is_live(h, now))
            .collect();
        if live.len() >= self.spec.rf {
            return;
        }
        let Some(&me) = live
            .iter()
            .min_by_key(|&&h| distance(&block.key, &self.pop.peers[h as usize].key))
        else {
            return;
        };
        if !self.pop.peers[me as usize].online {
            // The closest live holder is itself unreachable: nobody else acts until it is
            // noticed gone (its own Suspect event checks this block again).
            return;
        }
        let (hash, key) = (block.hash, block.key);
        let holders: Vec<_> = live
            .iter()
            .map(|&h| self.pop.peers[h as usize].id)
            .collect();
        let candidates = self.candidates(&key);
        let me_id = self.pop.peers[me as usize].id;
        let now_ms = Self::now_ms(now);
        let repairer = self.repairers[me as usize].get_or_insert_with(|| {
            Repairer::new(
                RepairConfig {
                    // As the node configures it: three repair passes.
                    cooldown_ms: 15_000,
                    ..RepairConfig::default()
                },
                now_ms,
            )
        });
        let plan = repairer.plan(
            &RepairInput {
                block: &hash,
                block_len: BLOCK_LEN,
                me: &me_id,
                holders: &holders,
                candidates: &candidates,
                policy: PlacementPolicy::with_rf(self.spec.rf),
            },
            now_ms,
        );
        match plan.status {
            PlanStatus::Planned { .. } => {
                for action in plan.actions {
                    let Some(to) = self.pop.slot(&action.to) else {
                        continue;
                    };
                    self.attempted += 1;
                    // RTT 50–200 ms, then 1 MiB at 10–100 Mbit/s.
                    let rtt = self.net.range(0.05, 0.2);
                    let mbit = self.net.range(10.0, 100.0);
                    let secs = rtt + 8.0 * BLOCK_LEN as f64 / (mbit * 1e6);
                    self.q.schedule(
                        (secs * 1e6) as Micros,
                        Event::CopyDone {
                            block: b,
                            from: me,
                            to,
                        },
                    );
                }
            }
            PlanStatus::CoolingDown { until_ms } => {
                let wait = until_ms.saturating_sub(now_ms).max(1) * 1_000;
                self.q.schedule(wait, Event::Check(b));
            }
            PlanStatus::RateLimited { .. } => self.q.schedule(1_000_000, Event::Check(b)),
            PlanStatus::NoCandidates { .. } => self.q.schedule(HOUR, Event::Check(b)),
            PlanStatus::Healthy { .. } | PlanStatus::NotClosest { .. } => {}
        }
    }

    fn copy_done(&mut self, b: u32, from: u32, to: u32, now: Micros) {
        let lost = self.net.chance(self.params.copy_loss);
        let (src, dst) = (&self.pop.peers[from as usize], &self.pop.peers[to as usize]);
        let ok = !src.departed && dst.online && !lost;
        let block = &mut self.blocks[b as usize];
        if ok && !block.lost {
            if !block.holders.contains(&to) {
                block.holders.push(to);
                block.data += 1;
                self.pop.peers[to as usize].stored.push(b);
                self.copied += 1;
            }
            return;
        }
        if !src.departed {
            let to_id = dst.id;
            if let Some(r) = self.repairers[from as usize].as_mut() {
                r.target_failed(&block.hash, &to_id, Self::now_ms(now));
            }
            self.q.schedule(1, Event::Check(b));
        }
    }

    fn sample(&mut self, now: Micros) {
        let rf = self.spec.rf;
        let (mut under, mut none, mut copies, mut alive) = (0usize, 0usize, 0u64, 0usize);
        for block in &self.blocks {
            let online = block
                .holders
                .iter()
                .filter(|&&h| self.pop.peers[h as usize].online)
                .count();
            if online < rf {
                under += 1;
            }
            if online == 0 {
                none += 1;
            }
            if !block.lost {
                alive += 1;
                copies += u64::from(block.data);
            }
        }
        let files = self.blocks.len().max(1) as f64;
        let online = self.pop.peers.iter().filter(|p| p.online).count();
        self.rows.push(Row {
            spec: self.spec,
            hours: ((now - self.t0) / HOUR) as u32,
            lost: self.lost,
            files: self.blocks.len(),
            copied: self.copied,
            attempted: self.attempted,
            copies_mean: copies as f64 / alive.max(1) as f64,
            under_rf: under as f64 / files,
            unavailable: none as f64 / files,
            online: online as f64 / self.pop.len().max(1) as f64,
            silent: self.silent,
            audits_per_file: self.spec.pace.audits_per_file_day(rf) * (now - self.t0) as f64
                / (24.0 * HOUR as f64),
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rotating_audits_find_a_silent_loss_within_others_periods() {
        let mut rng = Rng::new(3);
        let period = 16.0 * 3600.0 * 1e6;
        let (mut sweep, mut rot) = (0.0, 0.0);
        for _ in 0..10_000 {
            let s = Pace::Sweep { period_h: 16.0 }.detection(3, &mut rng) as f64;
            let r = Pace::Rotating { period_h: 16.0 }.detection(3, &mut rng) as f64;
            assert!(s <= period && r <= 3.0 * period);
            sweep += s;
            rot += r;
        }
        // Three checkers each auditing every holder every period find it in P/4 on average;
        // three auditing one holder in three, later, but within a period or so.
        let (sweep, rot) = (sweep / 10_000.0 / period, rot / 10_000.0 / period);
        assert!((0.2..0.3).contains(&sweep), "{sweep}");
        assert!(rot > sweep && rot < 1.0, "{rot}");
        assert_eq!(
            Pace::Rotating { period_h: 16.0 }.audits_per_file_day(3),
            4.5
        );
    }

    use super::*;

    fn small() -> Params {
        Params {
            peers: 300,
            files: 2_000,
            days: 10,
            ..Params::default()
        }
    }

    #[test]
    fn same_seed_same_rows() {
        let spec = Spec {
            rf: 3,
            churn: 0.05,
            repair: true,
            pace: Pace::EveryPass,
        };
        let a = run(&small(), spec);
        let b = run(&small(), spec);
        assert_eq!(a, b);
        assert_eq!(a.len(), 10 * 4 + 1);
        assert_eq!(report::csv(&a), report::csv(&b));
    }

    #[test]
    fn repair_keeps_files_that_no_repair_loses() {
        let params = small();
        let with = run(
            &params,
            Spec {
                rf: 3,
                churn: 0.1,
                repair: true,
                pace: Pace::EveryPass,
            },
        );
        let without = run(
            &params,
            Spec {
                rf: 3,
                churn: 0.1,
                repair: false,
                pace: Pace::EveryPass,
            },
        );
        let (w, wo) = (&with[with.len() - 1], &without[without.len() - 1]);
        assert_eq!(w.lost, 0, "{w:?}");
        assert!(wo.lost > 100, "{wo:?}");
        assert!(w.copied > 0 && wo.copied == 0);
        assert!(w.copies_mean >= 3.0, "{w:?}");
    }

    #[test]
    fn silent_losses_are_found_and_repaired_at_the_sweeps_pace() {
        let params = Params {
            silent_loss_per_day: 0.05,
            days: 3,
            ..small()
        };
        let spec = |pace, repair| Spec {
            rf: 3,
            churn: 0.05,
            repair,
            pace,
        };
        let sweep = run(&params, spec(Pace::Sweep { period_h: 16.0 }, true));
        let old = run(&params, spec(Pace::EveryPass, true));
        let none = run(&params, spec(Pace::Sweep { period_h: 16.0 }, false));
        let (s, o, n) = (
            &sweep[sweep.len() - 1],
            &old[old.len() - 1],
            &none[none.len() - 1],
        );
        assert!(s.silent > 100 && o.silent > 100, "{s:?} {o:?}");
        assert!(s.lost <= n.lost && n.lost > 0, "{s:?} {n:?}");
        assert!(s.copies_mean >= 3.0, "{s:?}");
        assert!(s.audits_per_file < o.audits_per_file / 1000.0);
    }
}
