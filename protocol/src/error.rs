//! The crate's one error type.
//!
//! Every message names what was being decoded or checked (the peer id of a node record, the id of an
//! envelope), the offending field, and the sizes involved, so a log line is enough to find the culprit.

use std::fmt;

use crate::{ContentId, PeerId};

/// What an [`Error`] is about: the object whose field broke a rule.
///
/// Peer ids in errors are boxed: a [`PeerId`] is 80 bytes and would make every `Result` of this
/// crate (and of its callers' error types) large.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subject {
    /// The node record of this peer.
    NodeRecord(Box<PeerId>),
    /// The envelope with this id.
    Envelope([u8; 16]),
    /// A manifest: the one with this id, or `None` for one not yet encoded (being built).
    Manifest(Option<Box<ContentId>>),
    /// An inference job message or model manifest of this kind (`spec/inference-jobs.md`).
    Inference(&'static str),
    /// A directory listing: the one of the directory with this id, or `None` for one being built.
    Directory(Option<Box<ContentId>>),
    /// A name record (`spec/names.md`) of this name.
    NameRecord(Box<PeerId>),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::NodeRecord(peer) => write!(f, "node record of {peer}"),
            Subject::Envelope(id) => write!(f, "envelope {}", hex::encode(id)),
            Subject::Manifest(Some(id)) => write!(f, "manifest {id}"),
            Subject::Manifest(None) => write!(f, "manifest (not yet encoded)"),
            Subject::Inference(what) => f.write_str(what),
            Subject::Directory(Some(id)) => write!(f, "directory {id}"),
            Subject::Directory(None) => write!(f, "directory (not yet encoded)"),
            Subject::NameRecord(name) => write!(f, "name record of {name}"),
        }
    }
}

/// Everything that can go wrong in `warren-protocol`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input (or an output about to be produced) is larger than the format allows. Checked
    /// before any decoding happens.
    #[error("{what}: {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was being decoded or encoded.
        what: &'static str,
        /// Its size in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The bytes are not CBOR of the expected shape (truncated, wrong types, missing or unknown
    /// fields, a field value that does not parse).
    #[error("{what}: malformed: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's description of the problem (names the field where it can).
        detail: String,
    },

    /// A complete value was decoded but more bytes follow it.
    #[error("{what}: {extra} trailing bytes after a {consumed}-byte value")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// Bytes the value used.
        consumed: usize,
        /// Bytes left over.
        extra: usize,
    },

    /// The bytes decode, but are not the one canonical encoding of the value (indefinite lengths,
    /// non-minimal integers, keys out of order, a missing `null`, …).
    #[error(
        "{what}: not in canonical encoding ({len} bytes; the canonical form has {canonical_len})"
    )]
    NonCanonical {
        /// What was being decoded.
        what: &'static str,
        /// Length of the input.
        len: usize,
        /// Length of the canonical encoding of the decoded value.
        canonical_len: usize,
    },

    /// Serializing a value failed.
    #[error("{what}: encoding failed: {detail}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's description of the problem.
        detail: String,
    },

    /// A key of a type other than Ed25519 (the only one warren accepts).
    #[error("{what}: key type {key_type} is not supported, only Ed25519")]
    UnsupportedKeyType {
        /// Which key: `"identity key"`, `"record public key"`, …
        what: &'static str,
        /// The libp2p key type found.
        key_type: String,
    },

    /// Key bytes that do not parse.
    #[error("{what}: invalid key: {detail}")]
    InvalidKey {
        /// Which key.
        what: &'static str,
        /// Why it was refused.
        detail: String,
    },

    /// A format version this implementation does not speak.
    #[error("{subject}: version {found} is not supported (this implementation speaks {supported})")]
    UnsupportedVersion {
        /// The record or envelope.
        subject: Subject,
        /// The version found.
        found: u16,
        /// The version supported.
        supported: u16,
    },

    /// A list holds more entries than allowed.
    #[error("{subject}: `{field}` has {count} entries, at most {max} allowed")]
    TooMany {
        /// The record or envelope.
        subject: Subject,
        /// The field.
        field: &'static str,
        /// Entries found.
        count: usize,
        /// Entries allowed.
        max: usize,
    },

    /// A string or byte field is longer than allowed.
    #[error("{subject}: `{field}` is {len} bytes, at most {max} allowed")]
    TooLong {
        /// The record or envelope.
        subject: Subject,
        /// The field (with an index or key where it is inside a list or map).
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },

    /// A field's value breaks a rule other than a size limit.
    #[error("{subject}: `{field}` is invalid: {reason}")]
    InvalidField {
        /// The record or envelope.
        subject: Subject,
        /// The field (with an index where it is inside a list).
        field: String,
        /// The rule it breaks.
        reason: String,
    },

    /// The record's lifetime ended at or before `now`.
    #[error("node record of {peer} expired at {expires_at} (now {now})")]
    Expired {
        /// Whose record.
        peer: Box<PeerId>,
        /// Its `expires_at`, Unix seconds.
        expires_at: u64,
        /// The caller's clock, Unix seconds.
        now: u64,
    },

    /// The record claims to be issued later than `now` plus the allowed clock skew.
    #[error(
        "node record of {peer} issued at {issued_at}, more than {max_skew} s after now ({now})"
    )]
    IssuedInFuture {
        /// Whose record.
        peer: Box<PeerId>,
        /// Its `issued_at`, Unix seconds.
        issued_at: u64,
        /// The caller's clock, Unix seconds.
        now: u64,
        /// The skew allowed, seconds.
        max_skew: u64,
    },

    /// `issued_at`/`expires_at` do not describe an allowed lifetime.
    #[error(
        "node record of {peer}: lifetime {issued_at}..{expires_at} is invalid (must be non-empty and at most {max} s)"
    )]
    BadLifetime {
        /// Whose record.
        peer: Box<PeerId>,
        /// Its `issued_at`, Unix seconds.
        issued_at: u64,
        /// Its `expires_at`, Unix seconds.
        expires_at: u64,
        /// The longest lifetime allowed, seconds.
        max: u64,
    },

    /// The key that signs (or signed) a record belongs to a different peer than the record names.
    #[error("node record names {record} but is signed by {signer}")]
    SignerMismatch {
        /// The peer id inside the record.
        record: Box<PeerId>,
        /// The peer id of the signing key.
        signer: Box<PeerId>,
    },

    /// The record is validly signed, but by a different peer than the caller expected (for a DHT
    /// record: the peer named by its key).
    #[error("expected a node record of {expected}, got one signed by {found}")]
    UnexpectedPeer {
        /// The peer the caller expected.
        expected: Box<PeerId>,
        /// The peer that signed.
        found: Box<PeerId>,
    },

    /// The signature does not verify.
    #[error("bad signature on node record signed by {signer}")]
    BadSignature {
        /// The peer id of the key the signature was checked against.
        signer: Box<PeerId>,
    },

    /// Text that is not a read capability (`warren:<cid>#<key>`) or a data class. The key is
    /// never echoed.
    #[error("not a capability: {input}: {reason}")]
    InvalidCapability {
        /// The offending text, its key cut off.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// Text or bytes that are not a CIDv1 (or not one warren uses: see
    /// [`UnsupportedCodec`](Error::UnsupportedCodec) and [`UnsupportedHash`](Error::UnsupportedHash)).
    #[error("not a content id: {input}: {reason}")]
    InvalidCid {
        /// The offending text, or the bytes in hex (cut to 100 characters).
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A well-formed CID whose multicodec is neither raw (0x55, chunks) nor cbor (0x51,
    /// manifests).
    #[error(
        "content id {cid}: codec {codec:#x} is not supported (warren uses raw 0x55 for chunks and cbor 0x51 for manifests)"
    )]
    UnsupportedCodec {
        /// The CID as text.
        cid: String,
        /// Its multicodec.
        codec: u64,
    },

    /// A well-formed CID whose multihash is not BLAKE3-256.
    #[error(
        "content id {cid}: multihash {code:#x} with a {len}-byte digest is not supported (warren uses BLAKE3-256: 0x1e, 32 bytes)"
    )]
    UnsupportedHash {
        /// The CID as text.
        cid: String,
        /// Its multihash code.
        code: u64,
        /// Its digest length.
        len: u8,
    },

    /// A block's bytes do not hash to the id they were fetched or stored under.
    #[error("block {cid} is corrupt: its {len} bytes do not hash to its id")]
    HashMismatch {
        /// The id the bytes should have.
        cid: ContentId,
        /// Their length.
        len: usize,
    },

    /// A name record whose lifetime ended at or before `now`.
    #[error(
        "the record of name {name} expired at {expires_at} ({} s ago); its publisher must publish it again",
        now.saturating_sub(*expires_at)
    )]
    NameExpired {
        /// The name.
        name: Box<PeerId>,
        /// Its `expires_at`, Unix seconds.
        expires_at: u64,
        /// The caller's clock, Unix seconds.
        now: u64,
    },

    /// A valid name record that does not supersede the one already held (a replay of an older
    /// record, or the same sequence again).
    #[error(
        "name record of {name}: sequence {sequence} is not newer than the sequence {held} held"
    )]
    NameNotNewer {
        /// The name.
        name: Box<PeerId>,
        /// The offered record's sequence.
        sequence: u64,
        /// The held record's sequence.
        held: u64,
    },

    /// An event type string that does not follow `{service}:{action}:v{version}:{state}`.
    #[error("invalid event type {input:?}: {reason}")]
    InvalidEventType {
        /// The offending text (cut to 80 bytes).
        input: String,
        /// The grammar rule it breaks.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Callers embed `Error` in their own error types; keep `Result<_, Error>` cheap to move.
        assert!(
            std::mem::size_of::<Error>() <= 80,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn subject_names_the_object() {
        assert_eq!(
            Subject::Envelope([0xab; 16]).to_string(),
            format!("envelope {}", "ab".repeat(16))
        );
    }
}
