//! Persisted reputation state (spec: `spec/reputation.md` "Persisted state"): what survives a
//! restart, as one canonical CBOR value the node keeps in its database.
//!
//! Kept: every tracked peer's first-seen time, first-hand tally, reports (observer and tally) and
//! recent observations, and the known /16 networks. Not kept: the configuration and bootstrap
//! peers (passed in again), the trust vector and the cached standings (recomputed on load).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{
    Config, Reputation, ReputationError,
    ledger::{Ledger, Report},
    tally::Tally,
};
use crate::{PeerId, codec, observation::Observation, observation::peer_bytes};

/// The state format this implementation writes and reads.
pub const STATE_VERSION: u16 = 1;
/// Largest encoded state, checked before decoding (64 MiB).
pub const MAX_STATE_SIZE: usize = 64 << 20;

const WHAT: &str = "reputation state";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    version: u16,
    #[serde(with = "peer_bytes")]
    me: PeerId,
    peers: Vec<PeerState>,
    networks: Vec<NetworkState>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerState {
    #[serde(with = "peer_bytes")]
    peer: PeerId,
    first_seen_ms: u64,
    first_hand: Tally,
    reports: Vec<ReportState>,
    recent: Vec<Observation>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportState {
    #[serde(with = "peer_bytes")]
    observer: PeerId,
    tally: Tally,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkState {
    #[serde(with = "peer_bytes")]
    peer: PeerId,
    #[serde(with = "serde_bytes")]
    prefix: [u8; 2],
}

fn invalid(reason: String) -> ReputationError {
    ReputationError::InvalidState { reason }
}

fn strictly_increasing<'a>(mut peers: impl Iterator<Item = &'a PeerId>) -> bool {
    let Some(mut prev) = peers.next() else {
        return true;
    };
    for p in peers {
        if p <= prev {
            return false;
        }
        prev = p;
    }
    true
}

impl Reputation {
    /// The state to persist: canonical CBOR, at most [`MAX_STATE_SIZE`] bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ReputationError> {
        let state = State {
            version: STATE_VERSION,
            me: self.me,
            peers: self
                .ledgers
                .iter()
                .map(|(peer, l)| PeerState {
                    peer: *peer,
                    first_seen_ms: l.first_seen_ms,
                    first_hand: l.first_hand.clone(),
                    reports: l
                        .reports
                        .iter()
                        .map(|r| ReportState {
                            observer: r.observer,
                            tally: r.tally.clone(),
                        })
                        .collect(),
                    recent: l.recent.iter().cloned().collect(),
                })
                .collect(),
            networks: self
                .networks
                .iter()
                .map(|(peer, prefix)| NetworkState {
                    peer: *peer,
                    prefix: *prefix,
                })
                .collect(),
        };
        let bytes = codec::encode(&state, WHAT)?;
        if bytes.len() > MAX_STATE_SIZE {
            return Err(crate::Error::TooLarge {
                what: WHAT,
                len: bytes.len(),
                limit: MAX_STATE_SIZE,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Restores a machine from [`Reputation::to_bytes`] output: decodes strictly, checks that the
    /// state is `me`'s and well-formed (peers and reporters in increasing order without
    /// duplicates, finite non-negative tallies, observations about the peer they are filed under),
    /// trims it to `config`'s limits (which may be lower than when it was saved) and recomputes
    /// trust at `now_ms`.
    pub fn from_bytes(
        bytes: &[u8],
        me: PeerId,
        seeds: &[PeerId],
        config: Config,
        now_ms: u64,
    ) -> Result<Self, ReputationError> {
        let state: State = codec::decode(bytes, MAX_STATE_SIZE, WHAT)?;
        if state.version != STATE_VERSION {
            return Err(ReputationError::UnsupportedVersion {
                found: state.version,
                supported: STATE_VERSION,
            });
        }
        if state.me != me {
            return Err(ReputationError::WrongPeer {
                expected: Box::new(me),
                found: Box::new(state.me),
            });
        }
        if !strictly_increasing(state.peers.iter().map(|p| &p.peer)) {
            return Err(invalid("peers are not in increasing order".into()));
        }
        if !strictly_increasing(state.networks.iter().map(|n| &n.peer)) {
            return Err(invalid("networks are not in increasing order".into()));
        }
        let mut r = Reputation::new(me, seeds, config)?;
        for n in state.networks {
            if n.peer != me {
                r.networks.insert(n.peer, n.prefix);
            }
        }
        for p in state.peers {
            let peer = p.peer;
            if peer == me {
                return Err(invalid("this node is listed as a tracked peer".into()));
            }
            if !p.first_hand.is_valid() {
                return Err(invalid(format!("first-hand tally of {peer} is invalid")));
            }
            if !strictly_increasing(p.reports.iter().map(|r| &r.observer)) {
                return Err(invalid(format!(
                    "reports on {peer} are not in increasing order"
                )));
            }
            let mut reports = Vec::with_capacity(p.reports.len());
            for rep in p.reports {
                if rep.observer == peer || rep.observer == me || !rep.tally.is_valid() {
                    return Err(invalid(format!(
                        "report by {} on {peer} is invalid",
                        rep.observer
                    )));
                }
                reports.push(Report {
                    observer: rep.observer,
                    tally: rep.tally,
                    standing: 0.0,
                    group: None,
                });
            }
            // Over the reporter limit: keep the most recently heard from.
            let max = r.config.max_reporters_per_peer;
            if reports.len() > max {
                let mut order: Vec<usize> = (0..reports.len()).collect();
                order.sort_by(|&a, &b| {
                    reports[b]
                        .tally
                        .as_of_ms
                        .cmp(&reports[a].tally.as_of_ms)
                        .then(reports[a].observer.cmp(&reports[b].observer))
                });
                let mut keep = vec![false; reports.len()];
                for &i in order.iter().take(max) {
                    keep[i] = true;
                }
                let mut i = 0;
                reports.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
            }
            for obs in &p.recent {
                if obs.subject != peer || obs.validate_content().is_err() {
                    return Err(invalid(format!("stored observation of {peer} is invalid")));
                }
            }
            let skip = p.recent.len().saturating_sub(r.config.evidence_per_peer);
            let recent: VecDeque<Observation> = p.recent.into_iter().skip(skip).collect();
            r.ledgers.insert(
                peer,
                Ledger {
                    first_seen_ms: p.first_seen_ms,
                    first_hand: p.first_hand,
                    reports,
                    recent,
                },
            );
        }
        // Over the peer limit: forget the peers with the least evidence, as at run time.
        if r.ledgers.len() > r.config.max_peers {
            r.make_room(now_ms);
        }
        r.recompute_trust(now_ms);
        Ok(r)
    }
}
