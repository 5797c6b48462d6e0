//! What a relay's runner grants one circuit, and all the circuits that reach it from one
//! previous hop (its gate side: the only neighbour a relay sees), in requests and answer bytes.
//!
//! A circuit may open [`QuotaLimits::circuit_requests`] runner requests and receive
//! [`QuotaLimits::circuit_bytes`] answer bytes over its whole life. All circuits from one
//! previous hop share two token buckets: requests (a burst of
//! [`QuotaLimits::peer_requests_burst`], refilled at [`QuotaLimits::peer_requests_per_sec`])
//! and answer bytes (a burst of [`QuotaLimits::peer_bytes_burst`], refilled at
//! [`QuotaLimits::peer_bytes_per_sec`]). A request or bytes over a limit are refused
//! ([`OnionError::Limit`]); the caller ends the stream with that error. At most
//! [`QuotaLimits::max_peers`] previous hops are tracked: buckets that have refilled are dropped
//! first (a full bucket is the same as a new one), and a new hop is refused while the table is
//! full of busy ones. Pure: the caller passes the time.

use std::collections::HashMap;

use super::OnionError;

/// The limits (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Runner requests one circuit may open over its life.
    pub circuit_requests: u32,
    /// Answer bytes one circuit may receive over its life.
    pub circuit_bytes: u64,
    /// Requests one previous hop may open at once (the bucket's size).
    pub peer_requests_burst: u32,
    /// Requests per second one previous hop gets back.
    pub peer_requests_per_sec: u32,
    /// Answer bytes one previous hop may receive at once (the bucket's size).
    pub peer_bytes_burst: u64,
    /// Answer bytes per second one previous hop gets back.
    pub peer_bytes_per_sec: u64,
    /// Previous hops tracked at once.
    pub max_peers: usize,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        Self {
            // A client's node opens one request per circuit; 16 leaves room for reuse.
            circuit_requests: 16,
            // Two of the largest GETs a runner serves by default (1 GiB each).
            circuit_bytes: 2 << 30,
            peer_requests_burst: 64,
            peer_requests_per_sec: 4,
            peer_bytes_burst: 4 << 30,
            peer_bytes_per_sec: 64 << 20,
            max_peers: 4096,
        }
    }
}

/// What one circuit has used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CircuitUse {
    /// Requests opened.
    pub requests: u32,
    /// Answer bytes sent.
    pub bytes: u64,
}

/// One previous hop's buckets, in thousandths of a request and in bytes.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    requests_milli: u64,
    bytes: u64,
    at_ms: u64,
}

/// The relay's table of previous hops (see the module doc).
#[derive(Debug)]
pub struct Quota {
    limits: QuotaLimits,
    peers: HashMap<Vec<u8>, Bucket>,
}

fn limit(detail: String) -> OnionError {
    OnionError::Limit { detail }
}

impl Quota {
    /// An empty table.
    pub fn new(limits: QuotaLimits) -> Self {
        Self {
            limits,
            peers: HashMap::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &QuotaLimits {
        &self.limits
    }

    /// Previous hops tracked now.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    fn full(&self, now_ms: u64) -> Bucket {
        Bucket {
            requests_milli: u64::from(self.limits.peer_requests_burst) * 1000,
            bytes: self.limits.peer_bytes_burst,
            at_ms: now_ms,
        }
    }

    /// `peer`'s bucket, refilled to `now_ms`; a new one when there is room.
    fn bucket(&mut self, peer: &[u8], now_ms: u64) -> Result<&mut Bucket, OnionError> {
        if !self.peers.contains_key(peer) {
            if self.peers.len() >= self.limits.max_peers {
                let limits = self.limits;
                self.peers.retain(|_, b| {
                    let mut b = *b;
                    refill(&limits, &mut b, now_ms);
                    b.requests_milli < u64::from(limits.peer_requests_burst) * 1000
                        || b.bytes < limits.peer_bytes_burst
                });
            }
            if self.peers.len() >= self.limits.max_peers {
                return Err(limit(format!(
                    "{} previous hops already busy at this relay",
                    self.limits.max_peers
                )));
            }
            let full = self.full(now_ms);
            self.peers.insert(peer.to_vec(), full);
        }
        let limits = self.limits;
        let b = self
            .peers
            .get_mut(peer)
            .ok_or_else(|| limit("no bucket".into()))?;
        refill(&limits, b, now_ms);
        Ok(b)
    }

    /// A new request on `circuit`, which reached this relay from `peer`: counted, or refused.
    pub fn begin(
        &mut self,
        peer: &[u8],
        circuit: &mut CircuitUse,
        now_ms: u64,
    ) -> Result<(), OnionError> {
        if circuit.requests >= self.limits.circuit_requests {
            return Err(limit(format!(
                "request limit of {} per circuit reached",
                self.limits.circuit_requests
            )));
        }
        let per_sec = self.limits.peer_requests_per_sec;
        let b = self.bucket(peer, now_ms)?;
        if b.requests_milli < 1000 {
            return Err(limit(format!(
                "request limit of the previous hop reached ({per_sec} per second)"
            )));
        }
        b.requests_milli -= 1000;
        circuit.requests += 1;
        Ok(())
    }

    /// `n` answer bytes on `circuit` from `peer`: counted, or refused (nothing is counted then).
    pub fn bytes(
        &mut self,
        peer: &[u8],
        circuit: &mut CircuitUse,
        n: u64,
        now_ms: u64,
    ) -> Result<(), OnionError> {
        let total = circuit.bytes.saturating_add(n);
        if total > self.limits.circuit_bytes {
            return Err(limit(format!(
                "byte limit of {} per circuit reached",
                self.limits.circuit_bytes
            )));
        }
        let per_sec = self.limits.peer_bytes_per_sec;
        let b = self.bucket(peer, now_ms)?;
        if b.bytes < n {
            return Err(limit(format!(
                "byte limit of the previous hop reached ({per_sec} bytes per second)"
            )));
        }
        b.bytes -= n;
        circuit.bytes = total;
        Ok(())
    }
}

/// Adds what `b` earned since its last update, up to the bursts.
fn refill(limits: &QuotaLimits, b: &mut Bucket, now_ms: u64) {
    let elapsed = u128::from(now_ms.saturating_sub(b.at_ms));
    let requests = elapsed * u128::from(limits.peer_requests_per_sec);
    let bytes = elapsed * u128::from(limits.peer_bytes_per_sec) / 1000;
    let cap_requests = u64::from(limits.peer_requests_burst) * 1000;
    b.requests_milli = u64::try_from(u128::from(b.requests_milli) + requests)
        .unwrap_or(u64::MAX)
        .min(cap_requests);
    b.bytes = u64::try_from(u128::from(b.bytes) + bytes)
        .unwrap_or(u64::MAX)
        .min(limits.peer_bytes_burst);
    b.at_ms = b.at_ms.max(now_ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> QuotaLimits {
        QuotaLimits {
            circuit_requests: 3,
            circuit_bytes: 1000,
            peer_requests_burst: 5,
            peer_requests_per_sec: 2,
            peer_bytes_burst: 1500,
            peer_bytes_per_sec: 100,
            max_peers: 2,
        }
    }

    #[test]
    fn a_circuit_gets_its_requests_and_bytes_then_is_refused() {
        let mut q = Quota::new(small());
        let mut c = CircuitUse::default();
        for _ in 0..3 {
            q.begin(b"g", &mut c, 0).unwrap();
        }
        let e = q.begin(b"g", &mut c, 0).unwrap_err();
        assert!(e.to_string().contains("per circuit"), "{e}");
        q.bytes(b"g", &mut c, 600, 0).unwrap();
        let e = q.bytes(b"g", &mut c, 401, 0).unwrap_err();
        assert!(e.to_string().contains("per circuit"), "{e}");
        assert_eq!(c.bytes, 600);
        q.bytes(b"g", &mut c, 400, 0).unwrap();
    }

    #[test]
    fn circuits_from_one_peer_share_its_buckets_which_refill_with_time() {
        let mut q = Quota::new(small());
        let mut circuits = [CircuitUse::default(); 4];
        // A burst of 5 requests over new circuits, then refusals.
        for c in circuits.iter_mut().take(2) {
            q.begin(b"g", c, 0).unwrap();
            q.begin(b"g", c, 0).unwrap();
        }
        q.begin(b"g", &mut circuits[2], 0).unwrap();
        let e = q.begin(b"g", &mut circuits[3], 0).unwrap_err();
        assert!(e.to_string().contains("previous hop"), "{e}");
        // Another previous hop is not affected.
        q.begin(b"h", &mut CircuitUse::default(), 0).unwrap();
        // Two per second: one more after 500 ms.
        q.begin(b"g", &mut circuits[3], 500).unwrap();
        assert!(q.begin(b"g", &mut circuits[3], 500).is_err());
        // Bytes: a burst of 1500, 100 per second.
        q.bytes(b"g", &mut circuits[0], 1000, 500).unwrap();
        let e = q.bytes(b"g", &mut circuits[1], 501, 500).unwrap_err();
        assert!(e.to_string().contains("previous hop"), "{e}");
        q.bytes(b"g", &mut circuits[1], 500, 500).unwrap();
        assert!(q.bytes(b"g", &mut circuits[1], 100, 500).is_err());
        q.bytes(b"g", &mut circuits[1], 100, 1500).unwrap();
    }

    #[test]
    fn the_peer_table_is_bounded_and_drops_refilled_peers_first() {
        let mut q = Quota::new(small());
        q.begin(b"a", &mut CircuitUse::default(), 0).unwrap();
        q.begin(b"b", &mut CircuitUse::default(), 0).unwrap();
        // Both busy: a third previous hop is refused.
        let e = q.begin(b"c", &mut CircuitUse::default(), 0).unwrap_err();
        assert!(e.to_string().contains("busy"), "{e}");
        assert_eq!(q.peers(), 2);
        // Once refilled (a request back after 500 ms), they make room.
        q.begin(b"c", &mut CircuitUse::default(), 600).unwrap();
        assert!(q.peers() <= 2);
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let mut q = Quota::new(small());
        let mut c = CircuitUse::default();
        for _ in 0..5 {
            q.begin(b"g", &mut CircuitUse::default(), 10_000).unwrap();
        }
        assert!(q.begin(b"g", &mut c, 0).is_err());
        assert!(q.begin(b"g", &mut c, 10_000).is_err());
    }
}
