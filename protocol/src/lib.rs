//! warren's wire and disk formats, as pure functions.
//!
//! This crate owns every byte format warren peers agree on: identities and key files
//! ([`identity`]), the signed node record published in the DHT ([`record`], [`signed_record`]), and
//! the INOS event envelope every application message travels in ([`envelope`], [`event`]), and the
//! names and manifests of stored content ([`content`], [`manifest`]); and the pure policies over
//! them: which gossiped message is accepted ([`gossip`]), which of two records of a peer wins
//! ([`record_book`]), and how a reputation score weighs a peer ([`Score::weight`]). Each format is
//! specified byte for byte in `spec/` (`identity.md`, `node-record.md`, `envelope.md`,
//! `storage.md`), whose test vectors `tests/spec_vectors.rs` (and, for `storage.md`,
//! `warren-storage-mesh`'s) checks.
//!
//! It must not do I/O: no sockets, no tokio, no files, no clock and no hidden randomness. Callers
//! pass the time (`now`) and random bytes (key secrets, envelope ids) in, and move the bytes out.
//! Every decoder checks its size limit before parsing, accepts exactly one encoding per value and
//! rejects trailing bytes; all CBOR goes through one private module, so the CBOR library can be
//! swapped without touching the formats.

pub mod block_transfer;
pub mod capability;
mod codec;
pub mod content;
pub mod credits;
pub mod directory;
pub mod envelope;
mod error;
pub mod event;
pub mod gossip;
pub mod identity;
pub mod inference;
pub mod manifest;
pub mod mesh_models;
pub mod name;
pub mod netgroup;
pub mod onion;
pub mod provider_table;
pub mod record;
pub mod record_book;
pub mod signed_record;
pub mod spec_text;
pub mod ticket;
mod wire;

pub use libp2p_identity::{Keypair, PeerId, PublicKey};
pub use multiaddr::{self, Multiaddr};

pub use capability::{Capability, Class, FileKey};
pub use content::{Codec, ContentId};
pub use directory::{DIRECTORY_VERSION, DirEntry, Directory, EntryKind};
pub use envelope::{Envelope, MAX_ENVELOPE_SIZE, Metadata};
pub use error::{Error, Subject};
pub use event::{EventType, State};
pub use identity::{OnionSecret, decode_keypair, encode_keypair, keypair_from_secret};
pub use manifest::{
    CHUNK_SIZE, MANIFEST_FANOUT, MANIFEST_VERSION, MAX_MANIFEST_SIZE, Manifest, ManifestEntry,
};
pub use record::{
    ComputeOffer, Gpu, MAX_CLOCK_SKEW_SECS, MAX_RECORD_LIFETIME_SECS, MAX_RECORD_SIZE, NodeRecord,
    Price, RECORD_VERSION, Role, StorageOffer, Tier, peer_from_record_key, record_key,
};
pub use signed_record::{RECORD_SIGNATURE_DOMAIN, SignedNodeRecord};

pub mod observation;
pub mod reputation;
pub use observation::{
    MAX_OBSERVATION_SIZE, OBSERVATION_SIGNATURE_DOMAIN, Observation, ObservationError,
    REPUTATION_TOPIC, SignedObservation,
};
pub use reputation::{Reputation, ReputationError, Score};
