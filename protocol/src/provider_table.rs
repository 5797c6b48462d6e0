//! The DHT's provider table: which provider records a node keeps for whom (spec:
//! `spec/threat-model.md`, "provider table filled" and "provider squatting").
//!
//! A Kademlia node stores the provider records other peers announce to it (`ADD_PROVIDER`) beside
//! its own. Kept as they come, one peer could fill the table with junk keys, after which the
//! node's own announcements fail; or take all the provider slots of a key first. This table
//! bounds both:
//!
//! - **Own keys are never crowded out**: [`ProviderLimits::local_reserve`] keys are left to this
//!   node's own records, which may also take the rest of the table (when it is full, expired
//!   entries are dropped for them, then a batch of keys only others announced).
//! - **Per peer and per /16**: the keys one remote peer, and all the peers of one IPv4 /16, hold
//!   entries in are bounded ([`ProviderLimits::keys_per_peer`], [`ProviderLimits::keys_per_prefix`]).
//! - **Bounded address lists**: at most [`ProviderLimits::max_addrs`] addresses per record.
//! - **Expiry**: remote records carry their expiry; [`ProviderTable::prune`] drops the expired,
//!   and a full table or a full key drops expired entries before refusing anyone.
//! - **Squatting**: a key holds at most [`ProviderLimits::providers_per_key`] providers; when full,
//!   a newcomer replaces an expired entry, else the entry of lowest [`Standing`] if the newcomer's
//!   standing is higher (a verified, well-regarded provider over an unknown one); among equals the
//!   first come stays.
//!
//! Sans-I/O: the caller passes its clock (`now_ms`, any monotonic milliseconds) and what it knows
//! of the announcing peer (its /16, its standing). `A` is an address (a `Multiaddr` in the node).

use std::collections::HashMap;

use crate::PeerId;

/// The bounds of a [`ProviderTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Distinct keys held, own and remote.
    pub max_keys: usize,
    /// Keys kept free for this node's own records (remote-only keys use at most
    /// `max_keys - local_reserve`).
    pub local_reserve: usize,
    /// Keys one remote peer may hold entries in.
    pub keys_per_peer: usize,
    /// Keys the remote peers of one IPv4 /16 may hold entries in, together.
    pub keys_per_prefix: usize,
    /// Providers kept per key (Kademlia's replication factor, 20).
    pub providers_per_key: usize,
    /// Addresses kept per remote record.
    pub max_addrs: usize,
}

impl ProviderLimits {
    /// The limits for a table of `max_keys` keys: half reserved for own records; one peer may
    /// hold an eighth of the remote half, one /16 half of it (all nodes of a loopback devnet share
    /// `127.0/16`); 20 providers per key, 8 addresses per record.
    pub fn for_keys(max_keys: usize) -> Self {
        let max_keys = max_keys.max(2);
        let local_reserve = max_keys / 2;
        let remote = max_keys - local_reserve;
        Self {
            max_keys,
            local_reserve,
            keys_per_peer: (remote / 8).max(1),
            keys_per_prefix: (remote / 2).max(1),
            providers_per_key: 20,
            max_addrs: 8,
        }
    }
}

/// What a node knows of a remote provider when its record arrives; higher is preferred.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// Nothing known.
    #[default]
    Unknown,
    /// Its signed node record is known (it announced itself, it is who it says).
    Verified,
    /// Verified and well regarded (a positive reputation score here).
    Trusted,
}

/// One provider of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<A> {
    /// The provider.
    pub provider: PeerId,
    /// Its addresses (at most [`ProviderLimits::max_addrs`] for a remote record).
    pub addrs: Vec<A>,
    /// When it expires (caller's clock, ms); `None`: never (this node's own records).
    pub expires_ms: Option<u64>,
    /// This node's own record.
    pub local: bool,
    /// The IPv4 /16 it came from (remote records).
    pub prefix: Option<[u8; 2]>,
    /// Its standing when it was stored.
    pub standing: Standing,
}

impl<A> Entry<A> {
    fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }
}

/// Why a remote record was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The table has no room for another remote key.
    #[error("provider table full")]
    Full,
    /// The announcing peer holds its share of keys already.
    #[error("the peer holds its share of provider keys")]
    PeerLimit,
    /// The peers of its /16 hold their share of keys already.
    #[error("its /16 holds its share of provider keys")]
    PrefixLimit,
    /// The key has its providers, none of them expired or of lower standing.
    #[error("the key has all its providers")]
    KeyFull,
    /// The record has expired already.
    #[error("the record has expired")]
    Expired,
}

/// Provider records by key, bounded: see the module documentation.
#[derive(Clone, Debug)]
pub struct ProviderTable<A> {
    limits: ProviderLimits,
    keys: HashMap<Vec<u8>, Vec<Entry<A>>>,
    /// Keys each remote peer holds an entry in.
    per_peer: HashMap<PeerId, usize>,
    /// Remote entries from each /16.
    per_prefix: HashMap<[u8; 2], usize>,
    /// Keys with an own entry.
    local_keys: usize,
    /// When expired entries were last dropped.
    pruned_at_ms: Option<u64>,
}

/// How often at most a remote record's arrival at a full table scans it for expired entries.
const PRUNE_EVERY_MS: u64 = 1000;

impl<A: Clone> ProviderTable<A> {
    /// An empty table with `limits`.
    pub fn new(limits: ProviderLimits) -> Self {
        Self {
            limits,
            keys: HashMap::new(),
            per_peer: HashMap::new(),
            per_prefix: HashMap::new(),
            local_keys: 0,
            pruned_at_ms: None,
        }
    }

    /// Its limits.
    pub fn limits(&self) -> &ProviderLimits {
        &self.limits
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys `peer` holds entries in (remote peers).
    pub fn keys_of(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    /// Remote entries from the /16 `prefix`.
    pub fn keys_of_prefix(&self, prefix: [u8; 2]) -> usize {
        self.per_prefix.get(&prefix).copied().unwrap_or(0)
    }

    /// The providers of `key`.
    pub fn providers(&self, key: &[u8]) -> &[Entry<A>] {
        self.keys.get(key).map_or(&[], Vec::as_slice)
    }

    /// This node's own entries, with their keys.
    pub fn local(&self) -> impl Iterator<Item = (&[u8], &Entry<A>)> {
        self.keys.iter().flat_map(|(k, es)| {
            es.iter()
                .filter(|e| e.local)
                .map(move |e| (k.as_slice(), e))
        })
    }

    fn remote_only_keys(&self) -> usize {
        self.keys.len() - self.local_keys
    }

    fn count_in(&mut self, provider: PeerId, prefix: Option<[u8; 2]>) {
        *self.per_peer.entry(provider).or_default() += 1;
        if let Some(p) = prefix {
            *self.per_prefix.entry(p).or_default() += 1;
        }
    }

    fn count_out(&mut self, provider: &PeerId, prefix: Option<[u8; 2]>, local: bool) {
        if local {
            return;
        }
        if let Some(n) = self.per_peer.get_mut(provider) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(provider);
            }
        }
        if let Some(p) = prefix
            && let Some(n) = self.per_prefix.get_mut(&p)
        {
            *n -= 1;
            if *n == 0 {
                self.per_prefix.remove(&p);
            }
        }
    }

    /// Adds or refreshes this node's own record of `key`: always kept (when the table is full,
    /// expired entries are dropped for it, then a batch of keys only others announced). `Err(Refused::Full)` only
    /// when every key already carries an own record.
    pub fn add_local(&mut self, key: &[u8], entry: Entry<A>, now_ms: u64) -> Result<(), Refused> {
        let entry = Entry {
            local: true,
            prefix: None,
            ..entry
        };
        if let Some(es) = self.keys.get_mut(key) {
            if let Some(e) = es.iter_mut().find(|e| e.local) {
                *e = entry;
                return Ok(());
            }
            // An own record takes a slot before any remote one: evict the lowest if full.
            let gone = if es.len() >= self.limits.providers_per_key {
                lowest(es, now_ms).map(|i| es.remove(i))
            } else {
                None
            };
            es.push(entry);
            self.local_keys += 1;
            if let Some(g) = gone {
                self.count_out(&g.provider, g.prefix, g.local);
            }
            return Ok(());
        }
        // Full: expired entries go first, then a batch of keys only others announced.
        if self.keys.len() >= self.limits.max_keys {
            self.prune(now_ms);
        }
        if self.keys.len() >= self.limits.max_keys && !self.drop_remote_keys() {
            return Err(Refused::Full);
        }
        self.keys.insert(key.to_vec(), vec![entry]);
        self.local_keys += 1;
        Ok(())
    }

    /// Drops a batch of keys that have no own record (1/64 of the table, at least one), so that
    /// the scan is paid once per batch of own keys added; false if there is none.
    fn drop_remote_keys(&mut self) -> bool {
        let want = (self.limits.max_keys / 64).max(1);
        let victims: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter(|(_, es)| !es.iter().any(|e| e.local))
            .map(|(k, _)| k.clone())
            .take(want)
            .collect();
        for k in &victims {
            if let Some(es) = self.keys.remove(k) {
                for e in &es {
                    self.count_out(&e.provider, e.prefix, e.local);
                }
            }
        }
        !victims.is_empty()
    }

    /// Offers a record of `key` that the remote peer `entry.provider` announced, at `now_ms`:
    /// kept or refreshed within the limits (addresses truncated), else refused.
    pub fn add_remote(
        &mut self,
        key: &[u8],
        mut entry: Entry<A>,
        now_ms: u64,
    ) -> Result<(), Refused> {
        entry.local = false;
        entry.addrs.truncate(self.limits.max_addrs);
        if entry.expired(now_ms) {
            return Err(Refused::Expired);
        }
        if let Some(es) = self.keys.get_mut(key)
            && let Some(e) = es
                .iter_mut()
                .find(|e| !e.local && e.provider == entry.provider)
        {
            // A refresh; its /16 stays the one it was counted under.
            e.addrs = entry.addrs;
            e.expires_ms = entry.expires_ms;
            e.standing = e.standing.max(entry.standing);
            return Ok(());
        }
        if self.keys_of(&entry.provider) >= self.limits.keys_per_peer {
            return Err(Refused::PeerLimit);
        }
        if let Some(p) = entry.prefix
            && self.keys_of_prefix(p) >= self.limits.keys_per_prefix
        {
            return Err(Refused::PrefixLimit);
        }
        let limit = self.limits.providers_per_key;
        let (provider, prefix) = (entry.provider, entry.prefix);
        if let Some(es) = self.keys.get_mut(key) {
            let mut gone = None;
            if es.len() >= limit {
                let Some(i) = lowest(es, now_ms) else {
                    return Err(Refused::KeyFull);
                };
                let replace = es[i].expired(now_ms) || es[i].standing < entry.standing;
                if !replace {
                    return Err(Refused::KeyFull);
                }
                gone = Some(es.remove(i));
            }
            es.push(entry);
            if let Some(g) = gone {
                self.count_out(&g.provider, g.prefix, g.local);
            }
            self.count_in(provider, prefix);
            return Ok(());
        }
        let remote_room = self.limits.max_keys - self.limits.local_reserve;
        // Full: expired entries may make room, looked for at most once a second (a flood of
        // refused records must not cost a scan of the table each).
        if (self.keys.len() >= self.limits.max_keys || self.remote_only_keys() >= remote_room)
            && self
                .pruned_at_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= PRUNE_EVERY_MS)
        {
            self.prune(now_ms);
        }
        if self.keys.len() >= self.limits.max_keys || self.remote_only_keys() >= remote_room {
            return Err(Refused::Full);
        }
        self.keys.insert(key.to_vec(), vec![entry]);
        self.count_in(provider, prefix);
        Ok(())
    }

    /// Removes `provider`'s record of `key`.
    pub fn remove(&mut self, key: &[u8], provider: &PeerId) {
        let Some(es) = self.keys.get_mut(key) else {
            return;
        };
        let Some(i) = es.iter().position(|e| e.provider == *provider) else {
            return;
        };
        let gone = es.remove(i);
        let empty = es.is_empty();
        if empty {
            self.keys.remove(key);
        }
        if gone.local {
            self.local_keys -= 1;
        }
        self.count_out(&gone.provider, gone.prefix, gone.local);
    }

    /// Drops every expired entry; returns how many.
    pub fn prune(&mut self, now_ms: u64) -> usize {
        self.pruned_at_ms = Some(now_ms);
        let mut gone = Vec::new();
        let mut locals = 0;
        self.keys.retain(|_, es| {
            es.retain(|e| {
                if e.expired(now_ms) {
                    locals += usize::from(e.local);
                    gone.push((e.provider, e.prefix, e.local));
                    false
                } else {
                    true
                }
            });
            !es.is_empty()
        });
        self.local_keys -= locals;
        for (provider, prefix, local) in &gone {
            self.count_out(provider, *prefix, *local);
        }
        gone.len()
    }
}

/// The remote entry of `es` to go first: an expired one, else the lowest standing (ties: the
/// last come). None if all are own records.
fn lowest<A>(es: &[Entry<A>], now_ms: u64) -> Option<usize> {
    es.iter()
        .enumerate()
        .filter(|(_, e)| !e.local)
        .min_by_key(|(i, e)| (!e.expired(now_ms), e.standing, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> PeerId {
        crate::keypair_from_secret([i.wrapping_add(1); 32])
            .public()
            .to_peer_id()
    }

    fn remote(p: &PeerId, prefix: [u8; 2], expires_ms: u64, standing: Standing) -> Entry<u32> {
        Entry {
            provider: *p,
            addrs: (0..100).collect(),
            expires_ms: Some(expires_ms),
            local: false,
            prefix: Some(prefix),
            standing,
        }
    }

    fn own(p: &PeerId) -> Entry<u32> {
        Entry {
            provider: *p,
            addrs: vec![],
            expires_ms: None,
            local: true,
            prefix: None,
            standing: Standing::Trusted,
        }
    }

    fn limits(max_keys: usize) -> ProviderLimits {
        ProviderLimits::for_keys(max_keys)
    }

    #[test]
    fn a_junk_flood_from_one_peer_stops_at_its_share_and_own_keys_still_fit() {
        let mut t = ProviderTable::new(limits(1024));
        let (me, junk) = (peer(0), peer(1));
        let mut kept = 0;
        for i in 0..10_000u32 {
            if t.add_remote(
                &i.to_be_bytes(),
                remote(&junk, [10, 0], 1000, Standing::Unknown),
                0,
            )
            .is_ok()
            {
                kept += 1;
            }
        }
        assert_eq!(kept, 512 / 8);
        assert_eq!(t.keys_of(&junk), 64);
        assert_eq!(
            t.add_remote(b"x", remote(&junk, [10, 0], 1000, Standing::Unknown), 0),
            Err(Refused::PeerLimit)
        );
        // Addresses are truncated.
        assert_eq!(t.providers(&0u32.to_be_bytes())[0].addrs.len(), 8);
        for i in 0..1024u32 {
            t.add_local(&((i + 1) << 20).to_be_bytes(), own(&me), 0)
                .unwrap_or_else(|e| panic!("own key {i}: {e}"));
        }
        assert_eq!(t.local().count(), 1024);
        assert_eq!(t.len(), 1024);
        assert_eq!(t.keys_of(&junk), 0, "remote keys made way for own ones");
    }

    #[test]
    fn many_peers_fill_only_the_remote_half_then_own_keys_take_the_rest() {
        let mut t = ProviderTable::new(limits(64));
        let mut kept = 0;
        for i in 0..200u32 {
            let p = peer((i % 250) as u8);
            let prefix = [(i % 200) as u8, 1];
            if t.add_remote(
                &i.to_be_bytes(),
                remote(&p, prefix, 1000, Standing::Unknown),
                0,
            )
            .is_ok()
            {
                kept += 1;
            }
        }
        assert_eq!(kept, 32);
        let me = peer(255);
        for i in 0..64u32 {
            t.add_local(&(i + 1000).to_be_bytes(), own(&me), 0).unwrap();
        }
        assert_eq!(t.len(), 64);
        assert_eq!(t.add_local(b"one more", own(&me), 0), Err(Refused::Full));
    }

    #[test]
    fn the_per_16_limit_holds_for_many_peers_on_one_host() {
        // Loopback: every node is 127.0.0.1, so all share 127.0/16.
        let mut t = ProviderTable::new(limits(1 << 12));
        let per_prefix = t.limits().keys_per_prefix;
        let mut kept = 0;
        for i in 0..(4 * per_prefix) as u32 {
            let p = peer((i % 64) as u8);
            if t.add_remote(
                &i.to_be_bytes(),
                remote(&p, [127, 0], 1000, Standing::Unknown),
                0,
            )
            .is_ok()
            {
                kept += 1;
            }
        }
        assert_eq!(kept, per_prefix);
        assert_eq!(t.keys_of_prefix([127, 0]), per_prefix);
        let over = t.add_remote(
            b"k",
            remote(&peer(99), [127, 0], 1000, Standing::Unknown),
            0,
        );
        assert_eq!(over, Err(Refused::PrefixLimit));
        // Another /16 is not affected.
        t.add_remote(b"k", remote(&peer(99), [10, 1], 1000, Standing::Unknown), 0)
            .unwrap();
        // Entries that go free their /16's share.
        t.remove(&0u32.to_be_bytes(), &peer(0));
        assert_eq!(t.keys_of_prefix([127, 0]), per_prefix - 1);
    }

    #[test]
    fn a_full_key_prefers_expired_then_higher_standing_and_else_first_come() {
        let mut t = ProviderTable::new(limits(1 << 16));
        let key = b"block";
        for i in 0..20u8 {
            let standing = if i == 5 {
                Standing::Unknown
            } else {
                Standing::Verified
            };
            let expires = if i == 7 { 100 } else { 10_000 };
            t.add_remote(key, remote(&peer(i), [i, 0], expires, standing), 0)
                .unwrap();
        }
        // An unknown newcomer: no room (first come among equals).
        assert_eq!(
            t.add_remote(
                key,
                remote(&peer(50), [50, 0], 10_000, Standing::Unknown),
                0
            ),
            Err(Refused::KeyFull)
        );
        // Expired entries go first, even for an unknown newcomer.
        t.add_remote(
            key,
            remote(&peer(51), [51, 0], 10_000, Standing::Unknown),
            200,
        )
        .unwrap();
        let providers: Vec<PeerId> = t.providers(key).iter().map(|e| e.provider).collect();
        assert!(!providers.contains(&peer(7)));
        // A verified newcomer replaces an unknown one (the last come of them).
        t.add_remote(
            key,
            remote(&peer(52), [52, 0], 10_000, Standing::Verified),
            200,
        )
        .unwrap();
        let providers: Vec<PeerId> = t.providers(key).iter().map(|e| e.provider).collect();
        assert!(!providers.contains(&peer(51)));
        assert!(providers.contains(&peer(5)));
        assert_eq!(providers.len(), 20);
        // Own records always get a slot.
        t.add_local(key, own(&peer(200)), 200).unwrap();
        assert_eq!(t.providers(key).len(), 20);
        assert!(t.providers(key).iter().any(|e| e.local));
    }

    #[test]
    fn expired_records_are_pruned_and_free_their_shares() {
        let mut t = ProviderTable::new(limits(64));
        let p = peer(1);
        for i in 0..4u32 {
            t.add_remote(
                &i.to_be_bytes(),
                remote(&p, [10, 0], 100, Standing::Unknown),
                0,
            )
            .unwrap();
        }
        assert_eq!(t.keys_of(&p), 4);
        assert_eq!(
            t.add_remote(b"late", remote(&p, [10, 0], 50, Standing::Unknown), 60),
            Err(Refused::Expired)
        );
        // A refresh does not count twice.
        t.add_remote(
            &0u32.to_be_bytes(),
            remote(&p, [10, 0], 1000, Standing::Unknown),
            10,
        )
        .unwrap();
        assert_eq!(t.keys_of(&p), 4);
        assert_eq!(t.prune(200), 3);
        assert_eq!(t.keys_of(&p), 1);
        assert_eq!(t.keys_of_prefix([10, 0]), 1);
        assert_eq!(t.len(), 1);
        // A peer at its share gets room again once its records expire.
        let mut t = ProviderTable::new(limits(16));
        for i in 0..t.limits().keys_per_peer as u32 {
            t.add_remote(
                &i.to_be_bytes(),
                remote(&p, [10, 0], 100, Standing::Unknown),
                0,
            )
            .unwrap();
        }
        assert_eq!(
            t.add_remote(b"n", remote(&p, [10, 0], 1000, Standing::Unknown), 0),
            Err(Refused::PeerLimit)
        );
        t.prune(100);
        t.add_remote(b"n", remote(&p, [10, 0], 1000, Standing::Unknown), 100)
            .unwrap();
    }
}
