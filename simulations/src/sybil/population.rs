//! Who is who in the Sybil scenario, and what each identity publishes in one round.

use warren_protocol::{
    Observation, PeerId, keypair_from_secret,
    observation::{Kind, MAX_LATENCY_MS, UPTIME_WINDOW_SECS},
};

use super::Params;
use crate::rng::Rng;

/// What an identity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A provider that keeps what it stores and reports what it sees.
    Honest,
    /// A provider that loses data (fails audits at `bad_pass_rate`) and colludes with the Sybils.
    Bad,
    /// A colluding identity that provides nothing: it praises the bad and smears the good.
    Sybil,
}

/// The identities of one run and their fixed properties.
pub struct Population {
    /// Every identity's peer id.
    pub ids: Vec<PeerId>,
    /// Every identity's role.
    pub role: Vec<Role>,
    /// Mean round-trip time of each identity, ms.
    pub latency_ms: Vec<f64>,
    /// Share of the time each identity is online.
    pub uptime: Vec<f64>,
    /// The IPv4 /16 each identity connects from.
    pub network: Vec<[u8; 2]>,
    /// Indices of the providers (honest and bad), the candidates for choice.
    pub providers: Vec<usize>,
    /// Indices of the Sybil identities.
    pub sybils: Vec<usize>,
    /// Indices of the bootstrap peers (honest; every evaluator's pre-trusted set).
    pub bootstrap: Vec<usize>,
    /// Indices of the evaluators (honest providers that each run a `Reputation`).
    pub evaluators: Vec<usize>,
    /// Number of bad providers.
    pub bad_count: usize,
    /// Number of honest providers.
    pub honest_count: usize,
}

/// One published observation and the index of its observer.
pub struct Published {
    /// Index of the observer.
    pub observer: usize,
    /// The observation.
    pub observation: Observation,
}

impl Population {
    /// Draws a population for `params` from `rng`: the first `bad` identities are bad providers,
    /// then the honest providers, then the Sybils; bootstrap peers and evaluators are the first
    /// honest providers. (Peer ids are random, so index order says nothing about id order.)
    pub fn new(params: &Params, sybil_fraction: f64, rng: &mut Rng) -> Self {
        let n = params.peers;
        let sybil_count = ((n as f64) * sybil_fraction).round() as usize;
        let real = n - sybil_count.min(n);
        let bad_count = ((real as f64) * params.bad_fraction).round() as usize;
        let honest_count = real - bad_count;
        let mut role = vec![Role::Bad; bad_count];
        role.extend(std::iter::repeat_n(Role::Honest, honest_count));
        role.extend(std::iter::repeat_n(Role::Sybil, n - real));

        let ids = (0..n)
            .map(|_| keypair_from_secret(rng.bytes32()).public().to_peer_id())
            .collect();
        let latency_ms = (0..n).map(|_| rng.range(20.0, 400.0)).collect();
        let uptime = (0..n).map(|_| rng.range(0.8, 1.0)).collect();
        let sybil_nets: Vec<[u8; 2]> = (0..params.sybil_networks)
            .map(|_| random_net(rng))
            .collect();
        let network = role
            .iter()
            .map(|r| {
                if *r == Role::Sybil && !sybil_nets.is_empty() {
                    sybil_nets[rng.below(sybil_nets.len())]
                } else {
                    random_net(rng)
                }
            })
            .collect();
        let bootstrap = (bad_count..bad_count + params.bootstrap.min(honest_count)).collect();
        let first_evaluator = bad_count + params.bootstrap;
        let evaluators =
            (first_evaluator..(first_evaluator + params.evaluators).min(real)).collect();
        Self {
            ids,
            role,
            latency_ms,
            uptime,
            network,
            providers: (0..real).collect(),
            sybils: (real..n).collect(),
            bootstrap,
            evaluators,
            bad_count,
            honest_count,
        }
    }

    /// Everything published in one round at `time_ms`: every provider audits `audits_per_round`
    /// random providers (an honest one reports the truth: proof result, latency, uptime; a bad
    /// one lies like a Sybil and also vouches for a random Sybil), and every Sybil files
    /// `sybil_reports_per_round` reports (one vouching for another Sybil, the rest praising a random
    /// bad provider or smearing a random honest one, half and half).
    pub fn round(&self, params: &Params, time_ms: u64, rng: &mut Rng) -> Vec<Published> {
        let mut out = Vec::new();
        let n = self.providers.len();
        for &i in &self.providers {
            for _ in 0..params.audits_per_round {
                let j = self.providers[rng.below(n)];
                if j == i {
                    continue;
                }
                match self.role[i] {
                    Role::Honest => self.audit(i, j, params, time_ms, rng, &mut out),
                    _ => self.lie(i, j, time_ms, &mut out),
                }
            }
            if self.role[i] == Role::Bad && !self.sybils.is_empty() {
                let s = self.sybils[rng.below(self.sybils.len())];
                self.praise(i, s, time_ms, &mut out);
            }
        }
        for &s in &self.sybils {
            for k in 0..params.sybil_reports_per_round {
                let target = if k == 0 && self.sybils.len() > 1 {
                    self.sybils[rng.below(self.sybils.len())]
                } else if rng.chance(0.5) && self.bad_count > 0 {
                    rng.below(self.bad_count)
                } else {
                    self.bad_count + rng.below(self.honest_count)
                };
                if target != s {
                    self.lie(s, target, time_ms, &mut out);
                }
            }
        }
        out
    }

    fn push(
        &self,
        i: usize,
        j: usize,
        kind: Kind,
        value: u32,
        time_ms: u64,
        out: &mut Vec<Published>,
    ) {
        out.push(Published {
            observer: i,
            observation: Observation {
                observer: self.ids[i],
                subject: self.ids[j],
                kind,
                value,
                time_ms,
                evidence: None,
            },
        });
    }

    /// An honest audit of `j` by `i`: the truth, with measurement noise.
    fn audit(
        &self,
        i: usize,
        j: usize,
        params: &Params,
        time_ms: u64,
        rng: &mut Rng,
        out: &mut Vec<Published>,
    ) {
        let pass_rate = match self.role[j] {
            Role::Bad => params.bad_pass_rate,
            _ => params.honest_pass_rate,
        };
        let kind = if rng.chance(pass_rate) {
            Kind::StorageProofPassed
        } else {
            Kind::StorageProofFailed
        };
        self.push(i, j, kind, 1, time_ms, out);
        let latency = (self.latency_ms[j] * rng.range(0.8, 1.2)).min(f64::from(MAX_LATENCY_MS));
        self.push(i, j, Kind::LatencySample, latency as u32, time_ms, out);
        let window = f64::from(UPTIME_WINDOW_SECS);
        let online = (self.uptime[j] * window * rng.range(0.95, 1.05)).min(window);
        self.push(i, j, Kind::UptimeSample, online as u32, time_ms, out);
    }

    /// A colluder's report on `j`: praise for the bad and the Sybils, smears for the honest.
    fn lie(&self, i: usize, j: usize, time_ms: u64, out: &mut Vec<Published>) {
        if self.role[j] == Role::Honest {
            self.push(i, j, Kind::StorageProofFailed, 1, time_ms, out);
            self.push(i, j, Kind::LatencySample, 5000, time_ms, out);
            self.push(i, j, Kind::UptimeSample, 0, time_ms, out);
            self.push(i, j, Kind::InvalidMessage, 1, time_ms, out);
        } else {
            self.praise(i, j, time_ms, out);
        }
    }

    fn praise(&self, i: usize, j: usize, time_ms: u64, out: &mut Vec<Published>) {
        self.push(i, j, Kind::StorageProofPassed, 1, time_ms, out);
        self.push(i, j, Kind::LatencySample, 20, time_ms, out);
        self.push(i, j, Kind::UptimeSample, UPTIME_WINDOW_SECS, time_ms, out);
    }
}

fn random_net(rng: &mut Rng) -> [u8; 2] {
    let x = rng.next_u64();
    [(x >> 8) as u8, x as u8]
}
