//! Builds and signs this node's record from its config, keys and detected hardware.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use warren_inference::hardware::Hardware;
use warren_protocol::mesh_models::served_entry;
use warren_protocol::{ComputeOffer, ContentId, Gpu, NodeRecord, Price, Role, StorageOffer};
use warren_storage_mesh::Store;

use crate::config::Config;
use crate::error::NodeError;

/// Everything needed to issue a fresh node record whenever the addresses change or it nears expiry.
pub struct RecordBuilder {
    key: Keypair,
    onion_public: [u8; 32],
    network: String,
    roles: Vec<Role>,
    storage: Option<StorageOffer>,
    compute: Option<ComputeOffer>,
    price: Price,
    ttl_secs: u64,
    store: Option<Arc<Store>>,
    /// The executor's load, per mille, set by the operator side as jobs come and go.
    load: Arc<AtomicU16>,
    /// The models served here, set by the operator side as it loads them.
    served: ServedModels,
}

/// The models this node serves, as the `NAME@ID` entries its record's `compute.models` carries
/// (`warren_protocol::mesh_models`); shared between the operator side, which sets them, and the
/// record builder.
#[derive(Clone, Debug, Default)]
pub struct ServedModels(Arc<Mutex<Vec<String>>>);

impl ServedModels {
    /// Sets the models served: (name, id) each.
    pub fn set<'a>(&self, models: impl IntoIterator<Item = (&'a str, &'a ContentId)>) {
        let entries = models
            .into_iter()
            .map(|(name, id)| served_entry(name, id))
            .collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = entries;
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl RecordBuilder {
    /// Takes what the record says from `config`, and the compute offer from `hardware`.
    pub fn new(config: &Config, key: Keypair, onion_public: [u8; 32], hardware: &Hardware) -> Self {
        let mut roles = config.roles.clone();
        roles.dedup();
        let storage = roles.contains(&Role::Station).then_some(StorageOffer {
            tier: config.storage.tier,
            bytes_offered: config.storage.offer_bytes,
            // Nothing is stored yet at start; the store reports real usage once it exists.
            bytes_free: config.storage.offer_bytes,
        });
        let compute = roles.contains(&Role::Operator).then(|| ComputeOffer {
            cpu_cores: match config.compute.cpu_cores {
                0 => hardware.cpu_cores,
                n => n.min(hardware.cpu_cores),
            },
            ram_bytes: hardware.ram_bytes,
            gpus: hardware
                .gpus
                .iter()
                .map(|g| Gpu {
                    name: g.name.clone(),
                    memory_bytes: g.memory_bytes,
                })
                .collect(),
            models: config.compute.models.clone(),
        });
        let (storage_price, compute_price) = config.price.published(&config.credits.policy.rates);
        Self {
            key,
            onion_public,
            network: config.network.clone(),
            roles,
            storage,
            compute,
            price: Price {
                storage_per_gib_month: storage_price,
                compute_per_1k_tokens: compute_price,
            },
            ttl_secs: config.record_ttl_secs,
            store: None,
            load: Arc::new(AtomicU16::new(0)),
            served: ServedModels::default(),
        }
    }

    /// The list the operator side writes the models it serves into; each record built names
    /// them in `compute.models` before the configured names.
    pub fn served_models(&self) -> ServedModels {
        self.served.clone()
    }

    /// The compute offer the next record will carry: the served models' entries, then the
    /// configured names, at most `MAX_MODELS` in all.
    pub fn compute(&self) -> Option<ComputeOffer> {
        let mut compute = self.compute.clone()?;
        let mut models = self.served.entries();
        for name in compute.models {
            if !models.contains(&name) {
                models.push(name);
            }
        }
        models.truncate(warren_protocol::record::MAX_MODELS);
        compute.models = models;
        Some(compute)
    }

    /// Reports the store's real free space in the storage offer.
    pub fn with_store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The gauge the operator side writes its load into (per mille; see
    /// `warren_inference::signals::load_permille`); each record built carries its value.
    pub fn load_gauge(&self) -> Arc<AtomicU16> {
        self.load.clone()
    }

    /// The load the next record will carry.
    pub fn load(&self) -> u16 {
        self.load
            .load(Ordering::Relaxed)
            .min(warren_protocol::record::MAX_LOAD_PERMILLE)
    }

    /// The network id records are issued for.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The peer id records are issued for.
    pub fn peer_id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// Issues a record valid from `now` for the configured lifetime, signed; returns its encoding.
    pub fn build(
        &self,
        addrs: Vec<Multiaddr>,
        now: u64,
    ) -> Result<(Vec<u8>, NodeRecord), NodeError> {
        let mut storage = self.storage.clone();
        if let (Some(offer), Some(store)) = (storage.as_mut(), &self.store) {
            // A small read transaction; a failure leaves the last known figure.
            if let Ok(usage) = store.usage() {
                offer.bytes_free = offer.bytes_offered.saturating_sub(usage.stored_bytes);
            }
        }
        let record = NodeRecord {
            version: warren_protocol::RECORD_VERSION,
            network: self.network.clone(),
            peer_id: self.peer_id(),
            roles: self.roles.clone(),
            onion_key: self.onion_public,
            storage,
            compute: self.compute(),
            price: self.price.clone(),
            load_permille: self.load(),
            addrs,
            issued_at: now,
            expires_at: now + self.ttl_secs,
        };
        record.validate(now)?;
        let signed = record.sign(&self.key)?;
        Ok((signed.encode()?, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_inference::hardware::GpuInfo;
    use warren_protocol::SignedNodeRecord;

    #[test]
    fn built_record_verifies_and_carries_the_offers() {
        let key = warren_protocol::keypair_from_secret([7; 32]);
        let hw = Hardware {
            cpu_cores: 8,
            ram_bytes: 16 << 30,
            gpus: vec![GpuInfo {
                name: "Test GPU".into(),
                memory_bytes: 8 << 30,
            }],
        };
        let mut config = Config::default();
        config.compute.cpu_cores = 4;
        let b = RecordBuilder::new(&config, key.clone(), [9; 32], &hw);
        let addrs = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
        let (signed, record) = b.build(addrs.clone(), 1_800_000_000).unwrap();
        let back = SignedNodeRecord::decode_verified(
            &signed,
            Some(&key.public().to_peer_id()),
            1_800_000_001,
        )
        .unwrap();
        assert_eq!(back, record);
        assert_eq!(back.addrs, addrs);
        let compute = back.compute.unwrap();
        assert_eq!(compute.cpu_cores, 4);
        assert_eq!(compute.gpus[0].name, "Test GPU");
        assert_eq!(back.storage.unwrap().bytes_offered, 1 << 30);
        assert_eq!(back.expires_at, 1_800_000_000 + 3600);
        assert_eq!(back.load_permille, 0);
    }

    #[test]
    fn the_record_carries_the_load_gauge_capped() {
        let key = warren_protocol::keypair_from_secret([8; 32]);
        let hw = Hardware {
            cpu_cores: 2,
            ram_bytes: 1 << 30,
            gpus: vec![],
        };
        let b = RecordBuilder::new(&Config::default(), key, [1; 32], &hw);
        let gauge = b.load_gauge();
        gauge.store(500, Ordering::Relaxed);
        assert_eq!(b.build(vec![], 1_800_000_000).unwrap().1.load_permille, 500);
        gauge.store(u16::MAX, Ordering::Relaxed);
        assert_eq!(
            b.build(vec![], 1_800_000_000).unwrap().1.load_permille,
            1000
        );
    }

    #[test]
    fn the_record_names_the_served_models_then_the_configured_ones() {
        let key = warren_protocol::keypair_from_secret([9; 32]);
        let hw = Hardware {
            cpu_cores: 2,
            ram_bytes: 1 << 30,
            gpus: vec![],
        };
        let mut config = Config::default();
        config.compute.models = vec!["configured".into()];
        let b = RecordBuilder::new(&config, key, [1; 32], &hw);
        let id = ContentId::of_block(warren_protocol::Codec::Raw, b"m");
        b.served_models().set([("smollm2", &id)]);
        let (_, record) = b.build(vec![], 1_800_000_000).unwrap();
        let models = record.compute.clone().unwrap().models;
        assert_eq!(
            models,
            vec![served_entry("smollm2", &id), "configured".into()]
        );
        let list = warren_protocol::mesh_models::merge([&record], |_| true, 1_800_000_001, 8);
        assert_eq!((list[0].id, list[0].name.as_str()), (id, "smollm2"));
    }
}
