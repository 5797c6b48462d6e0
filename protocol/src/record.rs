//! The node record (spec: `spec/node-record.md`): what a peer offers, published in the DHT under
//! [`record_key`] and signed by the peer's identity key ([`SignedNodeRecord`](crate::SignedNodeRecord)).
//!
//! [`NodeRecord::validate`] holds every rule a record must satisfy besides its signature: the
//! version, the limits that keep a record small and cheap to check, and its lifetime against the
//! caller's clock.

use serde::{Deserialize, Serialize};

use crate::{Error, Multiaddr, PeerId, error::Subject, wire};

/// The node record format this implementation writes and reads.
pub const RECORD_VERSION: u16 = 1;
/// Largest encoded signed record, checked before decoding.
pub const MAX_RECORD_SIZE: usize = 8 * 1024;
/// Longest a record may be valid (`expires_at - issued_at`).
pub const MAX_RECORD_LIFETIME_SECS: u64 = 24 * 3600;
/// How far in the future `issued_at` may lie, for clocks that disagree.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Longest network id, in bytes (`[a-z0-9-]` only).
pub const MAX_NETWORK_LEN: usize = 64;
/// Most listen addresses in a record.
pub const MAX_ADDRS: usize = 16;
/// Longest listen address, in bytes of its binary form.
pub const MAX_ADDR_LEN: usize = 256;
/// Most roles in a record (each role at most once).
pub const MAX_ROLES: usize = 5;
/// Most GPUs in a compute offer.
pub const MAX_GPUS: usize = 16;
/// Most model names in a compute offer.
pub const MAX_MODELS: usize = 64;
/// Longest GPU or model name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Largest `load_permille`.
pub const MAX_LOAD_PERMILLE: u16 = 1000;

/// Prefix of every node record's DHT key.
pub const RECORD_KEY_PREFIX: &[u8] = b"/warren/node/";

/// The DHT key `peer`'s record is stored under: `/warren/node/` ++ the peer id's bytes.
pub fn record_key(peer: &PeerId) -> Vec<u8> {
    let mut key = RECORD_KEY_PREFIX.to_vec();
    key.extend_from_slice(&peer.to_bytes());
    key
}

/// The peer a DHT key made by [`record_key`] names; `None` for any other key.
pub fn peer_from_record_key(key: &[u8]) -> Option<PeerId> {
    let bytes = key.strip_prefix(RECORD_KEY_PREFIX)?;
    let peer = PeerId::from_bytes(bytes).ok()?;
    (peer.to_bytes() == bytes).then_some(peer)
}

/// A service a peer offers. Encoded as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Stores chunks for the mesh.
    Station,
    /// Runs inference jobs.
    Operator,
    /// First onion hop: the only one that sees the client.
    Gate,
    /// Inner onion hop.
    Middle,
    /// Last onion hop: acts on the client's behalf outside the circuit.
    Relay,
}

/// Storage tier. Encoded as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Fast, always-online storage for data read often.
    Hot,
    /// Bulk storage for data read rarely.
    Cold,
}

/// Disk space a station offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageOffer {
    /// The tier.
    pub tier: Tier,
    /// Bytes offered in total.
    pub bytes_offered: u64,
    /// Bytes of the offer still free (at most `bytes_offered`).
    pub bytes_free: u64,
}

/// One GPU of a compute offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// Model name as the driver reports it (at most [`MAX_NAME_LEN`] bytes).
    pub name: String,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// Hardware an operator offers and the models it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeOffer {
    /// CPU cores available to jobs.
    pub cpu_cores: u32,
    /// RAM available to jobs, bytes.
    pub ram_bytes: u64,
    /// GPUs (at most [`MAX_GPUS`]).
    pub gpus: Vec<Gpu>,
    /// Names of the models served (at most [`MAX_MODELS`], each at most [`MAX_NAME_LEN`] bytes).
    pub models: Vec<String>,
}

/// Prices, in micro-credits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per GiB stored for a month.
    pub storage_per_gib_month: u64,
    /// Per 1,000 tokens of inference.
    pub compute_per_1k_tokens: u64,
}

/// What a peer offers, as published in the DHT. Encoded as a CBOR map with the fields in this
/// order; see `spec/node-record.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// Format version, [`RECORD_VERSION`].
    pub version: u16,
    /// The network (testnet) this peer belongs to: 1 to 64 of `[a-z0-9-]`.
    pub network: String,
    /// The peer; must be the peer id of the signing key.
    #[serde(with = "wire::peer_id")]
    pub peer_id: PeerId,
    /// Roles offered, each at most once.
    pub roles: Vec<Role>,
    /// X25519 public key of the peer's onion hops ([`OnionSecret::public`](crate::OnionSecret::public)).
    #[serde(with = "serde_bytes")]
    pub onion_key: [u8; 32],
    /// Storage offer, if a station.
    pub storage: Option<StorageOffer>,
    /// Compute offer, if an operator.
    pub compute: Option<ComputeOffer>,
    /// Prices.
    pub price: Price,
    /// Current load, 0 (idle) to 1000 (saturated).
    pub load_permille: u16,
    /// Addresses the peer listens on (at most [`MAX_ADDRS`]).
    #[serde(with = "wire::multiaddrs")]
    pub addrs: Vec<Multiaddr>,
    /// When the record was made, Unix seconds.
    pub issued_at: u64,
    /// When the record stops being valid, Unix seconds.
    pub expires_at: u64,
}

impl NodeRecord {
    /// Checks every rule of `spec/node-record.md` except the signature, against the caller's
    /// clock `now_secs` (Unix seconds).
    pub fn validate(&self, now_secs: u64) -> Result<(), Error> {
        self.validate_content()?;
        let peer = Box::new(self.peer_id);
        if self.expires_at <= now_secs {
            return Err(Error::Expired {
                peer,
                expires_at: self.expires_at,
                now: now_secs,
            });
        }
        if self.issued_at > now_secs.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(Error::IssuedInFuture {
                peer,
                issued_at: self.issued_at,
                now: now_secs,
                max_skew: MAX_CLOCK_SKEW_SECS,
            });
        }
        Ok(())
    }

    /// The rules that do not depend on the clock (what [`NodeRecord::sign`] checks).
    pub(crate) fn validate_content(&self) -> Result<(), Error> {
        let subject = || Subject::NodeRecord(Box::new(self.peer_id));
        if self.version != RECORD_VERSION {
            return Err(Error::UnsupportedVersion {
                subject: subject(),
                found: self.version,
                supported: RECORD_VERSION,
            });
        }
        let invalid = |field: &str, reason: String| Error::InvalidField {
            subject: subject(),
            field: field.to_owned(),
            reason,
        };
        let too_long = |field: String, len: usize, max: usize| Error::TooLong {
            subject: subject(),
            field,
            len,
            max,
        };
        let too_many = |field: &'static str, count: usize, max: usize| Error::TooMany {
            subject: subject(),
            field,
            count,
            max,
        };

        // network
        if self.network.len() > MAX_NETWORK_LEN {
            return Err(too_long(
                "network".into(),
                self.network.len(),
                MAX_NETWORK_LEN,
            ));
        }
        if self.network.is_empty() {
            return Err(invalid("network", "must not be empty".into()));
        }
        if let Some(c) = self
            .network
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
        {
            return Err(invalid(
                "network",
                format!("character {c:?} is not one of [a-z0-9-]"),
            ));
        }

        // roles
        if self.roles.len() > MAX_ROLES {
            return Err(too_many("roles", self.roles.len(), MAX_ROLES));
        }
        for (i, role) in self.roles.iter().enumerate() {
            if self.roles[..i].contains(role) {
                return Err(invalid(
                    &format!("roles[{i}]"),
                    format!("{role:?} is listed twice"),
                ));
            }
        }

        if self.onion_key == [0; 32] {
            return Err(invalid("onion_key", "all-zero key".into()));
        }

        if let Some(storage) = &self.storage
            && storage.bytes_free > storage.bytes_offered
        {
            return Err(invalid(
                "storage.bytes_free",
                format!(
                    "{} exceeds bytes_offered {}",
                    storage.bytes_free, storage.bytes_offered
                ),
            ));
        }

        if let Some(compute) = &self.compute {
            if compute.gpus.len() > MAX_GPUS {
                return Err(too_many("compute.gpus", compute.gpus.len(), MAX_GPUS));
            }
            for (i, gpu) in compute.gpus.iter().enumerate() {
                if gpu.name.len() > MAX_NAME_LEN {
                    return Err(too_long(
                        format!("compute.gpus[{i}].name"),
                        gpu.name.len(),
                        MAX_NAME_LEN,
                    ));
                }
            }
            if compute.models.len() > MAX_MODELS {
                return Err(too_many("compute.models", compute.models.len(), MAX_MODELS));
            }
            for (i, model) in compute.models.iter().enumerate() {
                if model.len() > MAX_NAME_LEN {
                    return Err(too_long(
                        format!("compute.models[{i}]"),
                        model.len(),
                        MAX_NAME_LEN,
                    ));
                }
            }
        }

        if self.load_permille > MAX_LOAD_PERMILLE {
            return Err(invalid(
                "load_permille",
                format!("{} exceeds {MAX_LOAD_PERMILLE}", self.load_permille),
            ));
        }

        // addrs
        if self.addrs.len() > MAX_ADDRS {
            return Err(too_many("addrs", self.addrs.len(), MAX_ADDRS));
        }
        for (i, addr) in self.addrs.iter().enumerate() {
            if addr.is_empty() {
                return Err(invalid(&format!("addrs[{i}]"), "empty address".into()));
            }
            if addr.len() > MAX_ADDR_LEN {
                return Err(too_long(format!("addrs[{i}]"), addr.len(), MAX_ADDR_LEN));
            }
            if let Some(multiaddr::Protocol::P2p(last)) = addr.iter().last()
                && last != self.peer_id
            {
                return Err(invalid(
                    &format!("addrs[{i}]"),
                    format!("ends in /p2p/{last}, not the record's own peer"),
                ));
            }
        }

        // lifetime
        if self.issued_at >= self.expires_at
            || self.expires_at - self.issued_at > MAX_RECORD_LIFETIME_SECS
        {
            return Err(Error::BadLifetime {
                peer: Box::new(self.peer_id),
                issued_at: self.issued_at,
                expires_at: self.expires_at,
                max: MAX_RECORD_LIFETIME_SECS,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Keypair, identity::keypair_from_secret};

    pub(crate) const T0: u64 = 1_700_000_000;

    pub(crate) fn key() -> Keypair {
        keypair_from_secret(std::array::from_fn(|i| i as u8 + 1))
    }

    /// A valid record of [`key`], issued at [`T0`] for an hour.
    pub(crate) fn record() -> NodeRecord {
        let peer_id = key().public().to_peer_id();
        NodeRecord {
            version: RECORD_VERSION,
            network: "devnet-1".into(),
            peer_id,
            roles: vec![Role::Station, Role::Operator],
            onion_key: [9; 32],
            storage: Some(StorageOffer {
                tier: Tier::Hot,
                bytes_offered: 1 << 30,
                bytes_free: 1 << 29,
            }),
            compute: Some(ComputeOffer {
                cpu_cores: 8,
                ram_bytes: 16 << 30,
                gpus: vec![Gpu {
                    name: "NVIDIA H100".into(),
                    memory_bytes: 80 << 30,
                }],
                models: vec!["llama-3-8b".into()],
            }),
            price: Price {
                storage_per_gib_month: 100,
                compute_per_1k_tokens: 20,
            },
            load_permille: 250,
            addrs: vec![
                "/ip4/192.0.2.1/tcp/4001".parse().unwrap(),
                "/ip4/192.0.2.1/udp/4001/quic-v1".parse().unwrap(),
            ],
            issued_at: T0,
            expires_at: T0 + 3600,
        }
    }

    fn field_of(err: &Error) -> &str {
        match err {
            Error::InvalidField { field, .. } | Error::TooLong { field, .. } => field,
            Error::TooMany { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn valid_record_passes() {
        record().validate(T0).unwrap();
        record().validate(T0 + 3599).unwrap();
        // issued up to MAX_CLOCK_SKEW_SECS in the future is fine
        record().validate(T0 - MAX_CLOCK_SKEW_SECS).unwrap();
    }

    #[test]
    fn expiry_and_skew() {
        let err = record().validate(T0 + 3600).unwrap_err();
        assert!(
            matches!(err, Error::Expired { expires_at, now, .. } if expires_at == T0 + 3600 && now == T0 + 3600)
        );
        let err = record().validate(T0 - MAX_CLOCK_SKEW_SECS - 1).unwrap_err();
        assert!(matches!(err, Error::IssuedInFuture { .. }), "{err}");
    }

    #[test]
    fn lifetime_rules() {
        let mut r = record();
        r.expires_at = r.issued_at;
        assert!(matches!(
            r.validate(T0).unwrap_err(),
            Error::BadLifetime { .. }
        ));
        r.expires_at = r.issued_at + MAX_RECORD_LIFETIME_SECS + 1;
        assert!(matches!(
            r.validate(T0).unwrap_err(),
            Error::BadLifetime { .. }
        ));
        r.expires_at = r.issued_at + MAX_RECORD_LIFETIME_SECS;
        r.validate(T0).unwrap();
    }

    #[test]
    fn version_must_match() {
        let mut r = record();
        r.version = 2;
        let err = r.validate(T0).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn limits_name_the_field() {
        type Case = (&'static str, fn(&mut NodeRecord));
        let cases: &[Case] = &[
            ("network", |r| r.network = String::new()),
            ("network", |r| r.network = "a".repeat(MAX_NETWORK_LEN + 1)),
            ("network", |r| r.network = "Devnet".into()),
            ("network", |r| r.network = "dev_net".into()),
            ("roles", |r| r.roles = vec![Role::Gate; MAX_ROLES + 1]),
            ("roles[1]", |r| r.roles = vec![Role::Gate, Role::Gate]),
            ("onion_key", |r| r.onion_key = [0; 32]),
            ("storage.bytes_free", |r| {
                r.storage.as_mut().unwrap().bytes_free = (1 << 30) + 1
            }),
            ("compute.gpus", |r| {
                let gpu = r.compute.as_ref().unwrap().gpus[0].clone();
                r.compute.as_mut().unwrap().gpus = vec![gpu; MAX_GPUS + 1];
            }),
            ("compute.gpus[0].name", |r| {
                r.compute.as_mut().unwrap().gpus[0].name = "x".repeat(MAX_NAME_LEN + 1)
            }),
            ("compute.models", |r| {
                r.compute.as_mut().unwrap().models = vec!["m".into(); MAX_MODELS + 1]
            }),
            ("compute.models[0]", |r| {
                r.compute.as_mut().unwrap().models[0] = "x".repeat(MAX_NAME_LEN + 1)
            }),
            ("load_permille", |r| r.load_permille = 1001),
            ("addrs", |r| {
                r.addrs = vec![r.addrs[0].clone(); MAX_ADDRS + 1]
            }),
            ("addrs[0]", |r| r.addrs[0] = Multiaddr::empty()),
            ("addrs[1]", |r| {
                let other = PeerId::from_public_key(&keypair_from_secret([7; 32]).public());
                r.addrs[1] = r.addrs[0].clone().with(multiaddr::Protocol::P2p(other));
            }),
            ("addrs[0]", |r| {
                let long = format!("/dns/{}.example/tcp/1", "a".repeat(MAX_ADDR_LEN));
                r.addrs[0] = long.parse().unwrap();
            }),
        ];
        for (field, mutate) in cases {
            let mut r = record();
            mutate(&mut r);
            let err = r.validate(T0).unwrap_err();
            assert_eq!(field_of(&err), *field, "{err}");
            assert!(err.to_string().contains(&r.peer_id.to_string()), "{err}");
        }
    }

    #[test]
    fn limits_at_the_boundary_pass() {
        let mut r = record();
        r.network = "a".repeat(MAX_NETWORK_LEN);
        r.roles = vec![
            Role::Station,
            Role::Operator,
            Role::Gate,
            Role::Middle,
            Role::Relay,
        ];
        r.load_permille = MAX_LOAD_PERMILLE;
        r.addrs = vec![r.addrs[0].clone().with(multiaddr::Protocol::P2p(r.peer_id)); MAX_ADDRS];
        r.storage = None;
        r.compute = Some(ComputeOffer {
            cpu_cores: u32::MAX,
            ram_bytes: u64::MAX,
            gpus: vec![
                Gpu {
                    name: "g".repeat(MAX_NAME_LEN),
                    memory_bytes: u64::MAX
                };
                MAX_GPUS
            ],
            models: vec!["m".repeat(MAX_NAME_LEN); 8],
        });
        r.validate(T0).unwrap();
    }

    #[test]
    fn record_key_round_trips() {
        let peer = record().peer_id;
        let key = record_key(&peer);
        assert!(key.starts_with(b"/warren/node/"));
        assert_eq!(peer_from_record_key(&key), Some(peer));
        assert_eq!(peer_from_record_key(b"/warren/node/"), None);
        assert_eq!(peer_from_record_key(&key[1..]), None);
        let mut long = key.clone();
        long.push(0);
        assert_eq!(peer_from_record_key(&long), None);
        assert_eq!(peer_from_record_key(&key[..key.len() - 1]), None);
    }

    #[test]
    fn roles_and_tiers_encode_as_lowercase_names() {
        assert_eq!(
            crate::codec::encode(&Role::Station, "role").unwrap(),
            b"\x67station"
        );
        assert_eq!(
            crate::codec::encode(&Tier::Cold, "tier").unwrap(),
            b"\x64cold"
        );
    }

    /// Strategy for records that pass [`NodeRecord::validate_content`].
    pub(crate) fn arb_record() -> impl Strategy<Value = NodeRecord> {
        let roles = proptest::sample::subsequence(
            vec![
                Role::Station,
                Role::Operator,
                Role::Gate,
                Role::Middle,
                Role::Relay,
            ],
            0..=MAX_ROLES,
        )
        .prop_shuffle();
        let storage = proptest::option::of((any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
            |(hot, a, b)| StorageOffer {
                tier: if hot { Tier::Hot } else { Tier::Cold },
                bytes_offered: a.max(b),
                bytes_free: a.min(b),
            },
        ));
        let gpu = ("[ -~]{0,40}", any::<u64>())
            .prop_map(|(name, memory_bytes)| Gpu { name, memory_bytes });
        let compute = proptest::option::of(
            (
                any::<u32>(),
                any::<u64>(),
                proptest::collection::vec(gpu, 0..4),
                proptest::collection::vec("\\PC{0,20}", 0..6),
            )
                .prop_map(|(cpu_cores, ram_bytes, gpus, models)| ComputeOffer {
                    cpu_cores,
                    ram_bytes,
                    gpus,
                    models,
                }),
        );
        let addr = (any::<[u8; 4]>(), any::<u16>(), any::<bool>()).prop_map(|(ip, port, quic)| {
            let a = Multiaddr::empty().with(multiaddr::Protocol::Ip4(ip.into()));
            if quic {
                a.with(multiaddr::Protocol::Udp(port))
                    .with(multiaddr::Protocol::QuicV1)
            } else {
                a.with(multiaddr::Protocol::Tcp(port))
            }
        });
        (
            (
                any::<[u8; 32]>(),
                "[a-z0-9-]{1,64}",
                roles,
                any::<[u8; 32]>().prop_filter("non-zero", |k| *k != [0; 32]),
            ),
            (storage, compute, any::<(u64, u64)>(), 0..=MAX_LOAD_PERMILLE),
            (
                proptest::collection::vec(addr, 0..=MAX_ADDRS),
                0..u64::MAX / 2,
                1..=MAX_RECORD_LIFETIME_SECS,
            ),
        )
            .prop_map(
                |(
                    (secret, network, roles, onion_key),
                    (storage, compute, price, load),
                    (addrs, issued, life),
                )| {
                    NodeRecord {
                        version: RECORD_VERSION,
                        network,
                        peer_id: keypair_from_secret(secret).public().to_peer_id(),
                        roles,
                        onion_key,
                        storage,
                        compute,
                        price: Price {
                            storage_per_gib_month: price.0,
                            compute_per_1k_tokens: price.1,
                        },
                        load_permille: load,
                        addrs,
                        issued_at: issued,
                        expires_at: issued + life,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn record_encoding_round_trips(r in arb_record()) {
            r.validate_content().unwrap();
            let bytes = crate::codec::encode(&r, "node record").unwrap();
            let back: NodeRecord = crate::codec::decode(&bytes, usize::MAX, "node record").unwrap();
            prop_assert_eq!(back, r);
        }
    }
}
