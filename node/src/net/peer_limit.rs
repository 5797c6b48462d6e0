//! Which connections a node over its peer limit closes, and when (a pure policy, no swarm).
//!
//! Modelled on the connection managers of go-libp2p and Kubo (low/high water marks with a grace
//! period): a new connection is never closed at once just because the node is full, so a
//! newcomer's Kademlia requests and a walker's `FIND_NODE` are answered first. Only when the node
//! holds more than its high-water mark does it trim, down to `max_peers`, and only connections
//! older than the grace period, the least useful first. A hard cap far above the limit still
//! closes new inbound connections at once, so a flood cannot exhaust the node.
//!
//! The node itself dials only up to the low-water mark (half the limit) and not back to a peer it
//! lost within [`REDIAL_BACKOFF`]: the rest of its connections come from peers dialing in. Filling
//! every node up to its limit by dialing would make full nodes trim and trimmed nodes redial, a
//! churn of handshakes that swamps a large network (seen in the `swarm` simulation).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a new connection is safe from trimming (Kubo's default grace period).
pub const GRACE: Duration = Duration::from_secs(20);

/// How long a node does not dial a peer again after its connection to it closed.
pub const REDIAL_BACKOFF: Duration = Duration::from_secs(60);

/// Most connections one peer may hold to this node at once (both directions; a direct and a
/// relayed one, and one dial crossing another), enforced by libp2p's `connection_limits`.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 3;

/// Most inbound connections still in their handshake at once.
pub const MAX_PENDING_INBOUND: u32 = 64;

/// Most peers connected from one IP address. Loopback is exempt: every node of a devnet is
/// 127.0.0.1.
pub const MAX_PEERS_PER_IP: usize = 8;

/// Whether a new inbound connection from `ip` is closed at once, when `peers_from_ip` peers
/// (itself included) are connected from that address.
pub fn refuse_ip(ip: IpAddr, peers_from_ip: usize) -> bool {
    !ip.is_loopback() && peers_from_ip > MAX_PEERS_PER_IP
}

/// How often at most the node looks up the record of one peer that identifies itself while its
/// record is unknown (identify repeats on every push of a listen address).
pub const RECORD_LOOKUP_INTERVAL: Duration = Duration::from_secs(60);

/// Most peers whose last record lookup is remembered.
pub const MAX_LOOKUPS_TRACKED: usize = 4096;

/// At most one record lookup per peer per [`RECORD_LOOKUP_INTERVAL`], in a bounded table.
#[derive(Debug, Default)]
pub struct LookupLimiter {
    last: HashMap<PeerId, Instant>,
}

impl LookupLimiter {
    /// Whether a lookup of `peer`'s record may start at `now` (noted if so). When the table is
    /// full of lookups within the interval, none may (fail closed) until they age out.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        let recent = |t: &Instant| now.saturating_duration_since(*t) < RECORD_LOOKUP_INTERVAL;
        if self.last.get(&peer).is_some_and(recent) {
            return false;
        }
        if !self.last.contains_key(&peer) && self.last.len() >= MAX_LOOKUPS_TRACKED {
            self.last.retain(|_, t| recent(t));
            if self.last.len() >= MAX_LOOKUPS_TRACKED {
                return false;
            }
        }
        self.last.insert(peer, now);
        true
    }

    /// Peers remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True if none is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The limits derived from a node's `max_peers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The node dials peers from its routing table while it has fewer connections than this.
    pub low_water: usize,
    /// Trimming brings the connection count back down to this.
    pub max_peers: usize,
    /// Trimming starts above this (a quarter of headroom over `max_peers`).
    pub high_water: usize,
    /// New inbound connections above this are closed at once.
    pub hard_cap: usize,
    /// A connection younger than this is never trimmed.
    pub grace: Duration,
}

impl Limits {
    /// The limits for `max_peers`.
    pub fn new(max_peers: usize) -> Self {
        Limits {
            low_water: max_peers.div_ceil(2),
            max_peers,
            high_water: max_peers + max_peers / 4 + 1,
            hard_cap: 2 * max_peers + 16,
            grace: GRACE,
        }
    }

    /// How many more peers the node should dial with `connected` connections.
    pub fn to_dial(&self, connected: usize) -> usize {
        self.low_water.saturating_sub(connected)
    }

    /// Whether a connection just established as the `connected`-th is closed at once.
    pub fn refuse_inbound(&self, connected: usize) -> bool {
        connected > self.hard_cap
    }
}

/// What the node knows about one connected peer when it trims.
#[derive(Clone, Copy, Debug)]
pub struct Connected {
    /// The peer.
    pub peer: PeerId,
    /// How long it has been connected.
    pub age: Duration,
    /// Whether the peer is in the Kademlia routing table (kept over those that are not).
    pub in_routing_table: bool,
    /// Its warren score as gossipsub's application score (higher is better; 0 when unknown).
    pub score: f64,
    /// Never trimmed (a relay this node listens through).
    pub protected: bool,
}

/// The peers to disconnect now: none unless more than `high_water` are connected; then the
/// least useful of those past the grace period and not protected — outside the routing table
/// first, then lowest score, then youngest (an older connection has proven itself longer) —
/// until `max_peers` remain or no trimmable connection is left. Ties break by peer id, so the choice is deterministic.
pub fn to_trim(connected: &[Connected], limits: &Limits) -> Vec<PeerId> {
    if connected.len() <= limits.high_water {
        return Vec::new();
    }
    let excess = connected.len() - limits.max_peers;
    let mut trimmable: Vec<&Connected> = connected
        .iter()
        .filter(|c| c.age >= limits.grace && !c.protected)
        .collect();
    trimmable.sort_by(|a, b| {
        a.in_routing_table
            .cmp(&b.in_routing_table)
            .then(a.score.total_cmp(&b.score))
            .then(a.age.cmp(&b.age))
            .then(a.peer.cmp(&b.peer))
    });
    trimmable.into_iter().take(excess).map(|c| c.peer).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize, age_s: u64) -> Vec<Connected> {
        (0..n)
            .map(|_| Connected {
                peer: PeerId::random(),
                age: Duration::from_secs(age_s),
                in_routing_table: true,
                score: 0.0,
                protected: false,
            })
            .collect()
    }

    #[test]
    fn nothing_closed_up_to_the_high_water_mark() {
        let limits = Limits::new(64);
        assert_eq!(limits.high_water, 81);
        assert_eq!(limits.to_dial(10), 22);
        assert_eq!(limits.to_dial(40), 0);
        assert_eq!(Limits::new(1).to_dial(0), 1);
        assert!(to_trim(&peers(81, 3600), &limits).is_empty());
        assert_eq!(to_trim(&peers(82, 3600), &limits).len(), 82 - 64);
    }

    #[test]
    fn new_connections_are_never_trimmed() {
        let limits = Limits::new(8);
        let mut all = peers(8, 3600);
        let young = peers(20, 5);
        all.extend(young.iter().copied());
        let closed = to_trim(&all, &limits);
        // 28 connected, 20 over the limit, but only the 8 old ones may go.
        assert_eq!(closed.len(), 8);
        assert!(closed.iter().all(|p| !young.iter().any(|y| y.peer == *p)));
        // Once they pass the grace period they are trimmed like any other.
        let aged: Vec<Connected> = all
            .iter()
            .map(|c| Connected {
                age: c.age.max(GRACE),
                ..*c
            })
            .collect();
        assert_eq!(to_trim(&aged, &limits).len(), 20);
    }

    #[test]
    fn least_useful_go_first() {
        let limits = Limits::new(4);
        let mut all = peers(4, 3600);
        let outside = Connected {
            in_routing_table: false,
            ..peers(1, 3600)[0]
        };
        let low = Connected {
            score: -5.0,
            ..peers(1, 3600)[0]
        };
        let young_ok = Connected {
            age: Duration::from_secs(30),
            ..peers(1, 3600)[0]
        };
        let relay = Connected {
            protected: true,
            score: -100.0,
            ..peers(1, 3600)[0]
        };
        all.extend([young_ok, low, outside, relay]);
        // 8 connected, high water 6: trim 4 — outside the table, low score, youngest, then one
        // of the others; never the protected relay, however low its score.
        let closed = to_trim(&all, &limits);
        assert_eq!(closed[..3], [outside.peer, low.peer, young_ok.peer]);
        assert_eq!(closed.len(), 4);
        assert!(!closed.contains(&relay.peer));
    }

    #[test]
    fn one_address_holds_a_bounded_number_of_peers_except_loopback() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(!refuse_ip(ip, MAX_PEERS_PER_IP));
        assert!(refuse_ip(ip, MAX_PEERS_PER_IP + 1));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(refuse_ip(v6, 100));
        assert!(!refuse_ip(IpAddr::from([127, 0, 0, 1]), 1000));
    }

    #[test]
    fn one_record_lookup_per_peer_per_interval_in_a_bounded_table() {
        let mut l = LookupLimiter::default();
        let t0 = Instant::now();
        let p = PeerId::random();
        assert!(l.allow(p, t0));
        for s in [1, 10, 59] {
            assert!(!l.allow(p, t0 + Duration::from_secs(s)), "{s}");
        }
        assert!(l.allow(p, t0 + RECORD_LOOKUP_INTERVAL));
        for _ in 1..MAX_LOOKUPS_TRACKED {
            assert!(l.allow(PeerId::random(), t0 + RECORD_LOOKUP_INTERVAL));
        }
        assert_eq!(l.len(), MAX_LOOKUPS_TRACKED);
        // Full of recent lookups: a new peer waits (never an unbounded table).
        assert!(!l.allow(PeerId::random(), t0 + RECORD_LOOKUP_INTERVAL));
        assert_eq!(l.len(), MAX_LOOKUPS_TRACKED);
        // Once they age out there is room again.
        assert!(l.allow(PeerId::random(), t0 + 2 * RECORD_LOOKUP_INTERVAL));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn the_hard_cap_refuses_floods_only() {
        let limits = Limits::new(64);
        assert!(!limits.refuse_inbound(100));
        assert!(!limits.refuse_inbound(144));
        assert!(limits.refuse_inbound(145));
    }
}
