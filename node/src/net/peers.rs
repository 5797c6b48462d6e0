//! What the event loop tells the reputation service about peers, and the scores it gets back.
//!
//! The loop holds no reputation state: accepted observations and the network prefix of each new
//! connection leave it on a bounded channel ([`PeerEvent`]); the service that owns the scores
//! sends a fresh [`PeerScores`] snapshot through a watch channel whenever they change, and the loop
//! reads gossipsub's application scores and the placement and onion weights from it.

use std::collections::HashMap;

use libp2p::PeerId;
use warren_protocol::Observation;

/// A fact about a peer, for the reputation service.
#[derive(Clone, Debug)]
pub enum PeerEvent {
    /// A signed observation accepted from gossip (verified, within its observer's rate limit).
    Observation(Observation),
    /// A connection to `peer` from an IPv4 `/16` prefix (Sybil grouping).
    Network {
        /// The peer.
        peer: PeerId,
        /// The first two bytes of its address.
        prefix: [u8; 2],
    },
}

/// One peer's scores in a [`PeerScores`] snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeerScore {
    /// The score's total, 0–1.
    pub total: f64,
    /// The weight when choosing among peers (the total, 0 below the floor).
    pub weight: f64,
    /// The application score for gossipsub.
    pub application: f64,
    /// Its standing in the trust walk (0–1): gossiped observations by a peer without standing
    /// are neither used nor forwarded.
    pub standing: f64,
}

/// Every scored peer's [`PeerScore`] at one moment; a peer not in it has no evidence yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerScores {
    /// Per peer.
    pub peers: HashMap<PeerId, PeerScore>,
}

impl PeerScores {
    /// `peer`'s weight, if it is scored.
    pub fn weight(&self, peer: &PeerId) -> Option<f64> {
        self.peers.get(peer).map(|s| s.weight)
    }

    /// `peer`'s total, if it is scored.
    pub fn total(&self, peer: &PeerId) -> Option<f64> {
        self.peers.get(peer).map(|s| s.total)
    }

    /// Whether `peer`'s gossiped observations are used and forwarded: it has standing in the
    /// trust walk.
    pub fn has_standing(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|s| s.standing > 0.0)
    }

    /// `peer`'s gossipsub application score (0 while it is not scored).
    pub fn application(&self, peer: &PeerId) -> f64 {
        self.peers.get(peer).map_or(0.0, |s| s.application)
    }
}
