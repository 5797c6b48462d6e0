//! The DHT's store (glue): kad's `RecordStore` over libp2p's `MemoryStore` for records and
//! warren's bounded provider table ([`warren_protocol::provider_table`]) for provider records.
//!
//! The policy is the table's; this file converts kad's types (`Instant` expiries, `RecordKey`s)
//! to the table's (milliseconds since the store was made, bytes). Remote provider records come in
//! through [`DhtStore::add_remote_provider`] (the event loop knows the announcing peer's /16 and
//! standing); kad itself calls `add_provider` only for this node's own records.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use libp2p::kad::store::{self, MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::{Multiaddr, PeerId};
use warren_protocol::provider_table::{Entry, ProviderLimits, ProviderTable, Refused, Standing};

/// Most records (signed node records, a few hundred bytes each) the store keeps.
const MAX_RECORDS: usize = 65_536;

/// kad's record and provider store for a warren node.
pub(crate) struct DhtStore {
    local: PeerId,
    records: MemoryStore,
    providers: ProviderTable<Multiaddr>,
    epoch: Instant,
}

impl DhtStore {
    /// A store for the node `local` keeping provider records for at most `provider_keys` keys.
    pub(crate) fn new(local: PeerId, provider_keys: usize) -> Self {
        Self::with_max_records(local, provider_keys, MAX_RECORDS)
    }

    fn with_max_records(local: PeerId, provider_keys: usize, max_records: usize) -> Self {
        let records = MemoryStore::with_config(
            local,
            MemoryStoreConfig {
                max_records,
                max_value_bytes: warren_protocol::MAX_RECORD_SIZE,
                ..MemoryStoreConfig::default()
            },
        );
        Self {
            local,
            records,
            providers: ProviderTable::new(ProviderLimits::for_keys(provider_keys)),
            epoch: Instant::now(),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn now_ms(&self) -> u64 {
        self.ms(Instant::now())
    }

    /// Offers a provider record announced by a remote peer from the IPv4 /16 `prefix`, of
    /// `standing` here.
    pub(crate) fn add_remote_provider(
        &mut self,
        record: ProviderRecord,
        prefix: Option<[u8; 2]>,
        standing: Standing,
    ) -> Result<(), Refused> {
        let now = self.now_ms();
        let entry = Entry {
            provider: record.provider,
            addrs: record.addresses,
            expires_ms: record.expires.map(|t| self.ms(t)),
            local: false,
            prefix,
            standing,
        };
        self.providers.add_remote(record.key.as_ref(), entry, now)
    }

    /// Drops expired provider records and records; returns how many providers went.
    pub(crate) fn prune(&mut self) -> usize {
        let now = Instant::now();
        self.records.retain(|_, r| !r.is_expired(now));
        let now = self.ms(now);
        self.providers.prune(now)
    }

    /// Keys held in the provider table, and of them those `peer` holds entries in.
    #[cfg(test)]
    pub(crate) fn provider_counts(&self, peer: &PeerId) -> (usize, usize) {
        (self.providers.len(), self.providers.keys_of(peer))
    }

    fn to_record(&self, key: &[u8], e: &Entry<Multiaddr>) -> ProviderRecord {
        ProviderRecord {
            key: RecordKey::new(&key),
            provider: e.provider,
            expires: e
                .expires_ms
                .map(|ms| self.epoch + Duration::from_millis(ms)),
            addresses: e.addrs.clone(),
        }
    }
}

impl RecordStore for DhtStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = std::vec::IntoIter<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records.get(k)
    }

    /// Stores `r`; when the store is full, expired records make room first.
    fn put(&mut self, r: Record) -> store::Result<()> {
        match self.records.put(r.clone()) {
            Err(store::Error::MaxRecords) => {
                let now = Instant::now();
                self.records.retain(|_, r| !r.is_expired(now));
                self.records.put(r)
            }
            other => other,
        }
    }

    fn remove(&mut self, k: &RecordKey) {
        self.records.remove(k);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.records.records()
    }

    /// This node's own records (kad's `start_providing`); a remote one that gets here (kad does
    /// not pass them on with `StoreInserts::FilterBoth`) is offered with no /16 and no standing.
    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        if record.provider != self.local {
            return self
                .add_remote_provider(record, None, Standing::Unknown)
                .map_err(|_| store::Error::MaxProvidedKeys);
        }
        let now = self.now_ms();
        let entry = Entry {
            provider: record.provider,
            addrs: record.addresses,
            expires_ms: record.expires.map(|t| self.ms(t)),
            local: true,
            prefix: None,
            standing: Standing::Trusted,
        };
        self.providers
            .add_local(record.key.as_ref(), entry, now)
            .map_err(|_| store::Error::MaxProvidedKeys)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers
            .providers(key.as_ref())
            .iter()
            .map(|e| self.to_record(key.as_ref(), e))
            .collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.providers
            .local()
            .map(|(k, e)| Cow::Owned(self.to_record(k, e)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.providers.remove(k.as_ref(), p);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    fn record(i: u8, expires: Instant) -> Record {
        Record {
            key: RecordKey::new(&[i]),
            value: vec![i],
            publisher: None,
            expires: Some(expires),
        }
    }

    #[test]
    fn a_full_record_store_drops_expired_records_before_refusing() {
        let mut store = DhtStore::with_max_records(PeerId::random(), 16, 3);
        let now = Instant::now();
        store.put(record(1, now)).unwrap(); // expired at once
        store.put(record(2, now + Duration::from_secs(60))).unwrap();
        store.put(record(3, now + Duration::from_secs(60))).unwrap();
        store.put(record(4, now + Duration::from_secs(60))).unwrap();
        assert!(store.get(&RecordKey::new(&[1u8])).is_none());
        assert!(store.get(&RecordKey::new(&[4u8])).is_some());
        // Full of live records: refused.
        assert!(matches!(
            store.put(record(5, now + Duration::from_secs(60))),
            Err(store::Error::MaxRecords)
        ));
        // A live record is still replaced in place.
        store.put(record(2, now + Duration::from_secs(90))).unwrap();
        assert_eq!(store.records().count(), 3);
    }
}
