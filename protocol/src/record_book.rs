//! Which of two signed node records of a peer wins, and the bounded book of verified records a
//! node keeps (spec: `spec/node-record.md`, "Between two valid records of the same peer";
//! `spec/network.md`, "Kademlia records").
//!
//! Rule: between two valid records of the same peer, the one with the later `issued_at` wins; a
//! stored record is never replaced by one with an older `issued_at`. A record issued at the same
//! second replaces the stored one (the peer re-signed within a second: the newer bytes are as good
//! as the older, and a node republishing must be able to overwrite its own record).
//!
//! [`RecordBook`] holds one verified [`NodeRecord`] per peer — learned from gossip, DHT lookups and
//! DHT PUTs — and applies the rule to every record offered to it. It is keyed by remote input, so
//! it is bounded ([`RecordBook::capacity`]): expired records go first, then the record that expires
//! soonest. Callers verify records before offering them
//! ([`SignedNodeRecord::decode_verified`](crate::SignedNodeRecord::decode_verified)).
//!
//! Sans-I/O: the caller passes its clock, Unix seconds.

use std::collections::BTreeMap;

use crate::{NodeRecord, PeerId, SignedNodeRecord};

/// Records a [`RecordBook`] keeps by default (a record is a few hundred bytes, at most
/// [`MAX_RECORD_SIZE`](crate::MAX_RECORD_SIZE)).
pub const MAX_KNOWN_RECORDS: usize = 4096;

/// Whether `new` may replace `old`: both are of the same peer and `new` is not older
/// (`issued_at`). Both are assumed verified.
pub fn supersedes(new: &NodeRecord, old: &NodeRecord) -> bool {
    new.peer_id == old.peer_id && new.issued_at >= old.issued_at
}

/// Whether the verified record `new` may replace the encoded signed record `stored` (say, the
/// value a DHT store holds under `new`'s key): yes unless `stored` verifies at `now_secs` as a
/// record of the same peer that `new` does not [supersede](supersedes). A stored record that no
/// longer verifies (expired, altered) is always replaced.
pub fn supersedes_stored(new: &NodeRecord, stored: &[u8], now_secs: u64) -> bool {
    match SignedNodeRecord::decode_verified(stored, Some(&new.peer_id), now_secs) {
        Ok(old) => supersedes(new, &old),
        Err(_) => true,
    }
}

/// What [`RecordBook::offer`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offered {
    /// The first record of its peer in the book.
    Added,
    /// It replaced an older (or same-second) record of its peer.
    Replaced,
    /// The book holds a newer record of its peer: kept that one.
    Stale,
    /// It has expired (`expires_at <= now`): not kept.
    Expired,
    /// The book is full of records that expire later than this one: not kept.
    NoRoom,
}

impl Offered {
    /// True if the book now holds the offered record.
    pub fn kept(self) -> bool {
        matches!(self, Offered::Added | Offered::Replaced)
    }
}

/// One verified record per peer, newest wins, bounded. See the module documentation.
#[derive(Clone, Debug)]
pub struct RecordBook {
    records: BTreeMap<PeerId, NodeRecord>,
    capacity: usize,
}

impl Default for RecordBook {
    /// A book of [`MAX_KNOWN_RECORDS`].
    fn default() -> Self {
        Self::new(MAX_KNOWN_RECORDS)
    }
}

impl RecordBook {
    /// An empty book holding at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            records: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The most records held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record of `peer`, if held (it may have expired since: see [`RecordBook::prune`]).
    pub fn get(&self, peer: &PeerId) -> Option<&NodeRecord> {
        self.records.get(peer)
    }

    /// True if a record of `peer` is held.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.records.contains_key(peer)
    }

    /// Every record held, by peer id.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &NodeRecord)> {
        self.records.iter()
    }

    /// Forgets the record of `peer`; returns it.
    pub fn remove(&mut self, peer: &PeerId) -> Option<NodeRecord> {
        self.records.remove(peer)
    }

    /// Drops every record expired at `now_secs`; returns how many.
    pub fn prune(&mut self, now_secs: u64) -> usize {
        let before = self.records.len();
        self.records.retain(|_, r| r.expires_at > now_secs);
        before - self.records.len()
    }

    /// Offers a verified record: kept if it is the first of its peer or
    /// [`supersedes`] the one held. When the book is full, expired records are dropped
    /// first, then the record expiring soonest (ties: the smallest peer id) if it expires no later
    /// than this one.
    pub fn offer(&mut self, record: NodeRecord, now_secs: u64) -> Offered {
        if record.expires_at <= now_secs {
            return Offered::Expired;
        }
        if let Some(held) = self.records.get_mut(&record.peer_id) {
            if !supersedes(&record, held) {
                return Offered::Stale;
            }
            *held = record;
            return Offered::Replaced;
        }
        if self.records.len() >= self.capacity {
            self.prune(now_secs);
        }
        if self.records.len() >= self.capacity {
            let soonest = self
                .records
                .iter()
                .min_by_key(|(p, r)| (r.expires_at, **p))
                .map(|(p, r)| (*p, r.expires_at));
            match soonest {
                Some((peer, expires_at)) if expires_at <= record.expires_at => {
                    self.records.remove(&peer);
                }
                _ => return Offered::NoRoom,
            }
        }
        self.records.insert(record.peer_id, record);
        Offered::Added
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Keypair, Price, RECORD_VERSION, Role, keypair_from_secret};

    const T0: u64 = 1_700_000_000;

    fn key(i: u8) -> Keypair {
        keypair_from_secret([i.wrapping_add(1); 32])
    }

    fn record(i: u8, issued_at: u64, lifetime: u64) -> NodeRecord {
        NodeRecord {
            version: RECORD_VERSION,
            network: "local".into(),
            peer_id: key(i).public().to_peer_id(),
            roles: vec![Role::Station],
            onion_key: [i; 32],
            storage: None,
            compute: None,
            price: Price {
                storage_per_gib_month: 0,
                compute_per_1k_tokens: 0,
            },
            load_permille: 0,
            addrs: vec![],
            issued_at,
            expires_at: issued_at + lifetime,
        }
    }

    #[test]
    fn the_later_issued_record_of_the_same_peer_wins() {
        let old = record(1, T0, 3600);
        let new = record(1, T0 + 10, 3600);
        assert!(supersedes(&new, &old));
        assert!(!supersedes(&old, &new));
        // The same second: the one offered last wins.
        let mut again = old.clone();
        again.load_permille = 500;
        assert!(supersedes(&again, &old));
        // Records of two peers never supersede each other.
        assert!(!supersedes(&record(2, T0 + 100, 3600), &old));
    }

    #[test]
    fn a_stored_record_is_replaced_unless_it_verifies_and_is_newer() {
        let k = key(1);
        let signed = |r: &NodeRecord| r.sign(&k).unwrap().encode().unwrap();
        let stored = signed(&record(1, T0 + 10, 3600));
        assert!(!supersedes_stored(&record(1, T0, 3600), &stored, T0 + 20));
        assert!(supersedes_stored(
            &record(1, T0 + 10, 3600),
            &stored,
            T0 + 20
        ));
        assert!(supersedes_stored(
            &record(1, T0 + 20, 3600),
            &stored,
            T0 + 20
        ));
        // Expired by now, or garbage, or another peer's: replaced.
        assert!(supersedes_stored(&record(1, T0, 7200), &stored, T0 + 3611));
        assert!(supersedes_stored(&record(1, T0, 3600), b"junk", T0 + 20));
        let other = record(2, T0 + 10, 3600)
            .sign(&key(2))
            .unwrap()
            .encode()
            .unwrap();
        assert!(supersedes_stored(&record(1, T0, 3600), &other, T0 + 20));
    }

    #[test]
    fn the_book_keeps_the_newest_record_of_each_peer() {
        let mut book = RecordBook::default();
        assert_eq!(
            book.offer(record(1, T0 + 10, 3600), T0 + 10),
            Offered::Added
        );
        // A replayed older record (still valid) does not roll the peer back.
        assert_eq!(book.offer(record(1, T0, 3600), T0 + 10), Offered::Stale);
        assert_eq!(
            book.get(&record(1, 0, 1).peer_id).unwrap().issued_at,
            T0 + 10
        );
        assert_eq!(
            book.offer(record(1, T0 + 20, 3600), T0 + 20),
            Offered::Replaced
        );
        assert!(Offered::Replaced.kept() && !Offered::Stale.kept());
        assert_eq!(book.offer(record(2, T0, 10), T0 + 10), Offered::Expired);
        assert_eq!(book.len(), 1);
        assert!(book.contains(&record(1, 0, 1).peer_id));
    }

    #[test]
    fn the_book_is_bounded_dropping_expired_then_soonest_expiring_records() {
        let mut book = RecordBook::new(3);
        assert_eq!(book.offer(record(1, T0, 100), T0), Offered::Added);
        assert_eq!(book.offer(record(2, T0, 200), T0), Offered::Added);
        assert_eq!(book.offer(record(3, T0, 300), T0), Offered::Added);
        // Full: peer 1's record expires first and makes room.
        assert_eq!(book.offer(record(4, T0, 400), T0), Offered::Added);
        assert_eq!(book.len(), 3);
        assert!(!book.contains(&record(1, 0, 1).peer_id));
        // A record expiring sooner than all held ones finds no room.
        assert_eq!(book.offer(record(5, T0, 50), T0), Offered::NoRoom);
        // Once records have expired they go first, whatever the newcomer's lifetime.
        assert_eq!(
            book.offer(record(6, T0 + 250, 10), T0 + 250),
            Offered::Added
        );
        assert!(!book.contains(&record(2, 0, 1).peer_id));
        assert_eq!(book.len(), 3);
        // An explicit prune drops what has expired.
        assert_eq!(book.prune(T0 + 300), 2);
        assert_eq!(
            book.iter().map(|(_, r)| r.expires_at).collect::<Vec<_>>(),
            [T0 + 400]
        );
        assert!(book.remove(&record(4, 0, 1).peer_id).is_some());
        assert!(book.is_empty());
        assert_eq!(RecordBook::new(0).capacity(), 1);
    }
}
