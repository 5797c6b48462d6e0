//! L2, the reputation service: the only holder of this node's [`Reputation`].
//!
//! ```text
//! net::EventLoop ── PeerEvent (bounded) ──┐            ┌── watch: PeerScores ──► EventLoop,
//! storage, inference ── Input (bounded) ──┴─► Service ─┤                        Reputations::weight
//! api ── table / peer (oneshot reply) ────────────────►┘── ReputationStore (every minute, at stop)
//! ```
//!
//! Everything else holds a [`Reputations`] handle: first-hand observations and queries go in on a
//! bounded channel, scores come back as [`PeerScores`] snapshots on a watch channel, refreshed
//! after every batch of inputs and every 10 s (scores decay with time). The scoring itself is
//! the pure [`warren_protocol::reputation`] state machine, driven with `now` from [`crate::clock`].

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};
use warren_protocol::reputation::{Config as ReputationConfig, Score};
use warren_protocol::{Observation, Reputation};

use crate::clock::unix_now_ms;
use crate::error::NodeError;
use crate::net::{PeerEvent, PeerScore, PeerScores};
use crate::reputation_store::ReputationStore;

/// Inputs waiting for the service; first-hand observations past it are dropped (and logged).
const INPUTS: usize = 1024;
/// How often trust is refreshed and the snapshot recomputed.
const TICK: Duration = Duration::from_secs(10);
/// Saved every this many ticks (and when the node stops).
const SAVE_EVERY: u64 = 6;

/// A request to the service.
enum Input {
    FirstHand(Box<Observation>),
    Table(oneshot::Sender<Vec<(PeerId, Score)>>),
    Peer {
        peer: PeerId,
        reply: oneshot::Sender<Option<(Score, Vec<Observation>)>>,
    },
}

/// A cloneable handle to the reputation service.
#[derive(Clone)]
pub struct Reputations {
    tx: mpsc::Sender<Input>,
    scores: watch::Receiver<Arc<PeerScores>>,
}

impl std::fmt::Debug for Reputations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reputations").finish_non_exhaustive()
    }
}

impl Reputations {
    /// The latest scores (a snapshot; cheap to clone).
    pub fn snapshot(&self) -> Arc<PeerScores> {
        self.scores.borrow().clone()
    }

    /// A receiver of every new snapshot (for the event loop).
    pub fn scores(&self) -> watch::Receiver<Arc<PeerScores>> {
        self.scores.clone()
    }

    /// `peer`'s weight when choosing among peers, if it is scored.
    pub fn weight(&self, peer: &PeerId) -> Option<f64> {
        self.scores.borrow().weight(peer)
    }

    /// `peer`'s total score, if it is scored.
    pub fn total(&self, peer: &PeerId) -> Option<f64> {
        self.scores.borrow().total(peer)
    }

    /// Counts a first-hand observation (this node saw it happen). Never waits: when the service is
    /// this far behind the observation is dropped, and logged.
    pub fn observe_first_hand(&self, obs: Observation) {
        if let Err(e) = self.tx.try_send(Input::FirstHand(Box::new(obs))) {
            warn!("first-hand observation dropped: {e}");
        }
    }

    /// Every scored peer, best first.
    pub async fn table(&self) -> Result<Vec<(PeerId, Score)>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Table(reply))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// `peer`'s score and the recent observations behind it, if there is evidence about it.
    pub async fn peer(&self, peer: PeerId) -> Result<Option<(Score, Vec<Observation>)>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Peer { peer, reply })
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }
}

/// The service task; see the module doc.
pub struct Service {
    rep: Reputation,
    inputs: mpsc::Receiver<Input>,
    events: Option<mpsc::Receiver<PeerEvent>>,
    scores: watch::Sender<Arc<PeerScores>>,
    store: Option<Arc<ReputationStore>>,
}

/// The service over `rep`, saved to `store` when given, and its handle.
pub fn service(rep: Reputation, store: Option<Arc<ReputationStore>>) -> (Reputations, Service) {
    let (tx, inputs) = mpsc::channel(INPUTS);
    let (scores, rx) = watch::channel(Arc::new(snapshot(&rep, unix_now_ms())));
    (
        Reputations { tx, scores: rx },
        Service {
            rep,
            inputs,
            events: None,
            scores,
            store,
        },
    )
}

/// The scores of every tracked peer at `now_ms`.
fn snapshot(rep: &Reputation, now_ms: u64) -> PeerScores {
    PeerScores {
        peers: rep
            .table(now_ms)
            .into_iter()
            .map(|(peer, s)| {
                let score = PeerScore {
                    total: s.total,
                    weight: s.weight(),
                    application: s.application_score(),
                    standing: rep.standing(&peer),
                };
                (peer, score)
            })
            .collect(),
    }
}

impl Service {
    /// Also takes the event loop's [`PeerEvent`]s (second-hand observations, prefixes).
    pub fn with_peer_events(mut self, events: mpsc::Receiver<PeerEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// Runs until `shutdown` turns true (saving the state on the way out) or every handle is gone.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(i) => {
                        self.on_input(i);
                        while let Ok(i) = self.inputs.try_recv() {
                            self.on_input(i);
                        }
                        self.publish();
                    }
                    None => break,
                },
                Some(event) = async {
                    match &mut self.events {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.on_event(event);
                    while let Some(e) = self.events.as_mut().and_then(|rx| rx.try_recv().ok()) {
                        self.on_event(e);
                    }
                    self.publish();
                }
                _ = tick.tick() => {
                    self.rep.refresh_trust(unix_now_ms());
                    self.publish();
                    ticks += 1;
                    if ticks.is_multiple_of(SAVE_EVERY) {
                        self.save().await;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        self.save().await;
    }

    fn on_input(&mut self, input: Input) {
        let now = unix_now_ms();
        match input {
            Input::FirstHand(obs) => {
                self.rep.observe_first_hand(&obs, now);
            }
            Input::Table(reply) => {
                let _ = reply.send(self.rep.table(now));
            }
            Input::Peer { peer, reply } => {
                let found = self
                    .rep
                    .score(&peer, now)
                    .map(|s| (s, self.rep.evidence(&peer)));
                let _ = reply.send(found);
            }
        }
    }

    fn on_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Observation(obs) => {
                self.rep.observe_second_hand(&obs, unix_now_ms());
            }
            PeerEvent::Network { peer, prefix } => self.rep.set_network(peer, prefix),
        }
    }

    /// Sends a new snapshot if the scores changed.
    fn publish(&self) {
        let fresh = snapshot(&self.rep, unix_now_ms());
        self.scores.send_if_modified(|current| {
            if **current == fresh {
                return false;
            }
            *current = Arc::new(fresh);
            true
        });
    }

    async fn save(&self) {
        let Some(db) = self.store.clone() else {
            return;
        };
        let bytes = match self.rep.to_bytes() {
            Ok(b) => b,
            Err(e) => return warn!("cannot encode the reputation state: {e}"),
        };
        match tokio::task::spawn_blocking(move || db.save(&bytes)).await {
            Ok(Ok(())) => debug!("reputation state saved"),
            Ok(Err(e)) => warn!("cannot save the reputation state: {e}"),
            Err(e) => warn!("reputation save task: {e}"),
        }
    }
}

/// This node's reputation state from `db` (a fresh one, seeded with `seeds`, when there is none or
/// it does not decode).
pub fn load(db: &ReputationStore, me: PeerId, seeds: &[PeerId]) -> Reputation {
    let now = unix_now_ms();
    match db.load() {
        Ok(Some(bytes)) => {
            match Reputation::from_bytes(&bytes, me, seeds, ReputationConfig::default(), now) {
                Ok(r) => return r,
                Err(e) => warn!(path = %db.path().display(), "starting reputation afresh: {e}"),
            }
        }
        Ok(None) => {}
        Err(e) => warn!("starting reputation afresh: {e}"),
    }
    fresh(me, seeds)
}

/// A new reputation state for `me`, trusting `seeds` (none if the config refuses them).
pub fn fresh(me: PeerId, seeds: &[PeerId]) -> Reputation {
    match Reputation::new(me, seeds, ReputationConfig::default()) {
        Ok(r) => r,
        Err(e) => {
            warn!("reputation config refused ({e}); starting without seeds");
            Reputation::new(me, &[], ReputationConfig::default())
                .unwrap_or_else(|_| unreachable!("the default config with no seeds is valid"))
        }
    }
}
