//! Names that can change (spec: `spec/names.md`): a record "name N points to CID, sequence n,
//! valid until t", signed by N's key and published in the DHT under [`name_key`].
//!
//! A name is the peer id of an Ed25519 key (its identity multihash, written in base58 as peer ids
//! are): whoever holds the key, and only they, can point the name somewhere. Of the records of a
//! name, the one with the highest sequence wins ([`supersedes`], [`newest`]); a DHT node keeps
//! only a record that supersedes the one it holds ([`accept_for_store`]), so replaying an older
//! signed record changes nothing. Everything here is pure: `now` is passed in.

use serde::{Deserialize, Serialize};

use crate::{
    ContentId, Error, Keypair, PeerId, codec, error::Subject, identity::decode_ed25519_public_key,
    record::MAX_CLOCK_SKEW_SECS, wire,
};

/// The name record format this implementation writes and reads.
pub const NAME_RECORD_VERSION: u16 = 1;
/// Largest encoded signed name record, checked before decoding.
pub const MAX_NAME_RECORD_SIZE: usize = 1024;
/// Longest a name record may be valid (`expires_at - issued_at`): one week.
pub const MAX_NAME_LIFETIME_SECS: u64 = 7 * 24 * 3600;
/// Prefix of the signed message: `warren/name-record/v1` and a NUL byte.
pub const NAME_SIGNATURE_DOMAIN: &[u8] = b"warren/name-record/v1\0";
/// Prefix of every name record's DHT key.
pub const NAME_KEY_PREFIX: &[u8] = b"/warren/name/";

const WHAT_SIGNED: &str = "signed name record";
const WHAT_RECORD: &str = "name record";
const WHAT_KEY: &str = "name record public key";

/// The DHT key the records of `name` are stored under: `/warren/name/` ++ the name's bytes.
pub fn name_key(name: &PeerId) -> Vec<u8> {
    let mut key = NAME_KEY_PREFIX.to_vec();
    key.extend_from_slice(&name.to_bytes());
    key
}

/// The name a DHT key made by [`name_key`] names; `None` for any other key.
pub fn name_from_key(key: &[u8]) -> Option<PeerId> {
    let bytes = key.strip_prefix(NAME_KEY_PREFIX)?;
    let name = PeerId::from_bytes(bytes).ok()?;
    (name.to_bytes() == bytes).then_some(name)
}

/// What a name points to, from when to when, and how new that is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRecord {
    /// [`NAME_RECORD_VERSION`].
    pub version: u16,
    /// The name: the peer id of the key that signs.
    #[serde(with = "wire::peer_id", rename = "peer_id")]
    pub name: PeerId,
    /// What the name points to.
    pub value: ContentId,
    /// Higher wins; each new record of a name carries a higher one.
    pub sequence: u64,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; the record is void from then on.
    pub expires_at: u64,
}

/// A name record as published: `{record, public_key, signature}`, the signature over
/// [`NAME_SIGNATURE_DOMAIN`] ++ `record` (the exact CBOR bytes of a [`NameRecord`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedNameRecord {
    #[serde(with = "serde_bytes")]
    record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    public_key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    signature: [u8; 64],
}

fn signed_message(record: &[u8]) -> Vec<u8> {
    [NAME_SIGNATURE_DOMAIN, record].concat()
}

fn invalid(name: &PeerId, field: &str, reason: String) -> Error {
    Error::InvalidField {
        subject: Subject::NameRecord(Box::new(*name)),
        field: field.into(),
        reason,
    }
}

impl NameRecord {
    /// The rules that do not depend on the clock: the version and a non-empty lifetime of at
    /// most [`MAX_NAME_LIFETIME_SECS`].
    pub fn validate_content(&self) -> Result<(), Error> {
        if self.version != NAME_RECORD_VERSION {
            return Err(Error::UnsupportedVersion {
                subject: Subject::NameRecord(Box::new(self.name)),
                found: self.version,
                supported: NAME_RECORD_VERSION,
            });
        }
        let lifetime = self.expires_at.checked_sub(self.issued_at);
        if !lifetime.is_some_and(|l| l > 0 && l <= MAX_NAME_LIFETIME_SECS) {
            return Err(invalid(
                &self.name,
                "expires_at",
                format!(
                    "lifetime {}..{} must be non-empty and at most {MAX_NAME_LIFETIME_SECS} s",
                    self.issued_at, self.expires_at
                ),
            ));
        }
        Ok(())
    }

    /// [`NameRecord::validate_content`], and at `now`: issued no later than `now` plus
    /// [`MAX_CLOCK_SKEW_SECS`], not yet expired.
    pub fn validate(&self, now: u64) -> Result<(), Error> {
        self.validate_content()?;
        if self.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(invalid(
                &self.name,
                "issued_at",
                format!(
                    "{} is more than {MAX_CLOCK_SKEW_SECS} s after now ({now})",
                    self.issued_at
                ),
            ));
        }
        if self.expires_at <= now {
            return Err(Error::NameExpired {
                name: Box::new(self.name),
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// Signs the record with `key`, whose peer id must be `self.name`; returns the bytes to
    /// publish (at most [`MAX_NAME_RECORD_SIZE`]).
    pub fn sign(&self, key: &Keypair) -> Result<Vec<u8>, Error> {
        let public = key.public();
        let public_key = public.encode_protobuf();
        decode_ed25519_public_key("name signing key", &public_key)?;
        if public.to_peer_id() != self.name {
            return Err(invalid(
                &self.name,
                "peer_id",
                format!("the signing key is the key of {}", public.to_peer_id()),
            ));
        }
        self.validate_content()?;
        let record = codec::encode(self, WHAT_RECORD)?;
        let signature = key
            .sign(&signed_message(&record))
            .map_err(|e| Error::InvalidKey {
                what: "name signing key",
                detail: e.to_string(),
            })?;
        let signature: [u8; 64] =
            signature
                .as_slice()
                .try_into()
                .map_err(|_| Error::InvalidKey {
                    what: "name signing key",
                    detail: format!("signature is {} bytes, not 64", signature.len()),
                })?;
        let bytes = codec::encode(
            &SignedNameRecord {
                record,
                public_key,
                signature,
            },
            WHAT_SIGNED,
        )?;
        if bytes.len() > MAX_NAME_RECORD_SIZE {
            return Err(Error::TooLarge {
                what: WHAT_SIGNED,
                len: bytes.len(),
                limit: MAX_NAME_RECORD_SIZE,
            });
        }
        Ok(bytes)
    }
}

/// Decodes and checks a published record of `name` at `now`: at most [`MAX_NAME_RECORD_SIZE`]
/// bytes (checked before parsing), canonical CBOR, an Ed25519 key whose peer id is `name`, a
/// signature that verifies over [`NAME_SIGNATURE_DOMAIN`] ++ the record bytes, a record that
/// decodes strictly, names `name`, and passes [`NameRecord::validate`].
pub fn decode_verified(bytes: &[u8], name: &PeerId, now: u64) -> Result<NameRecord, Error> {
    let signed: SignedNameRecord = codec::decode(bytes, MAX_NAME_RECORD_SIZE, WHAT_SIGNED)?;
    let public = decode_ed25519_public_key(WHAT_KEY, &signed.public_key)?;
    let signer = public.to_peer_id();
    if signer != *name {
        return Err(invalid(
            name,
            "public_key",
            format!("is the key of {signer}, not of the name"),
        ));
    }
    if !public.verify(&signed_message(&signed.record), &signed.signature) {
        return Err(invalid(
            name,
            "signature",
            "does not verify with the name's key".into(),
        ));
    }
    let record: NameRecord = codec::decode(&signed.record, MAX_NAME_RECORD_SIZE, WHAT_RECORD)?;
    if record.name != *name {
        return Err(invalid(
            name,
            "peer_id",
            format!(
                "names {} inside a record signed by the name's key",
                record.name
            ),
        ));
    }
    record.validate(now)?;
    Ok(record)
}

/// Whether `new` replaces `old` (two valid records of one name): a higher sequence wins; at
/// equal sequences, the later expiry (the same record re-signed for longer); otherwise the
/// record held stays.
pub fn supersedes(new: &NameRecord, old: &NameRecord) -> bool {
    (new.sequence, new.expires_at) > (old.sequence, old.expires_at)
}

/// The winner among valid records: the one no other supersedes (the first of equals).
pub fn newest<'a>(records: impl IntoIterator<Item = &'a NameRecord>) -> Option<&'a NameRecord> {
    records.into_iter().fold(None, |best, r| match best {
        Some(b) if !supersedes(r, b) => Some(b),
        _ => Some(r),
    })
}

/// What a DHT node does with a record of `name` offered for storage while it holds `held` (the
/// bytes it stores, if any): the offered record must verify at `now` and supersede a held record
/// that still verifies. Returns the offered record to store.
pub fn accept_for_store(
    offered: &[u8],
    held: Option<&[u8]>,
    name: &PeerId,
    now: u64,
) -> Result<NameRecord, Error> {
    let record = decode_verified(offered, name, now)?;
    if let Some(held) = held.and_then(|h| decode_verified(h, name, now).ok())
        && !supersedes(&record, &held)
    {
        return Err(Error::NameNotNewer {
            name: Box::new(*name),
            sequence: record.sequence,
            held: held.sequence,
        });
    }
    Ok(record)
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::keypair_from_secret;

    pub(crate) const T0: u64 = 1_700_000_000;

    pub(crate) fn cid(n: u8) -> ContentId {
        ContentId::of_block(crate::Codec::Raw, &[n])
    }

    pub(crate) fn record(key: &Keypair, sequence: u64) -> NameRecord {
        NameRecord {
            version: NAME_RECORD_VERSION,
            name: key.public().to_peer_id(),
            value: cid(sequence as u8),
            sequence,
            issued_at: T0,
            expires_at: T0 + 3600,
        }
    }

    fn key(n: u8) -> Keypair {
        keypair_from_secret([n; 32])
    }

    #[test]
    fn a_signed_record_verifies_for_its_name_only() {
        let k = key(1);
        let name = k.public().to_peer_id();
        let bytes = record(&k, 3).sign(&k).unwrap();
        assert_eq!(
            decode_verified(&bytes, &name, T0 + 1).unwrap(),
            record(&k, 3)
        );
        let other = key(2).public().to_peer_id();
        let err = decode_verified(&bytes, &other, T0 + 1).unwrap_err();
        assert!(err.to_string().contains("not of the name"), "{err}");
    }

    #[test]
    fn a_forged_record_is_refused() {
        // Signed by another key but carrying the victim's public key: the signature fails.
        let (victim, forger) = (key(1), key(2));
        let name = victim.public().to_peer_id();
        let mut signed: SignedNameRecord =
            codec::decode(&record(&victim, 1).sign(&victim).unwrap(), 4096, "t").unwrap();
        let mut forged = record(&victim, 9);
        forged.value = cid(66);
        signed.record = codec::encode(&forged, "t").unwrap();
        let sig = forger.sign(&signed_message(&signed.record)).unwrap();
        signed.signature = sig.as_slice().try_into().unwrap();
        let bytes = codec::encode(&signed, "t").unwrap();
        let err = decode_verified(&bytes, &name, T0).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        // Signing another name's record with one's own key is refused before signing.
        assert!(record(&victim, 1).sign(&forger).is_err());
    }

    #[test]
    fn expiry_and_future_issue_are_refused_at_now() {
        let k = key(1);
        let name = k.public().to_peer_id();
        let bytes = record(&k, 1).sign(&k).unwrap();
        let err = decode_verified(&bytes, &name, T0 + 3600).unwrap_err();
        assert!(matches!(err, Error::NameExpired { expires_at, .. } if expires_at == T0 + 3600));
        assert!(err.to_string().contains("expired"), "{err}");
        let err = decode_verified(&bytes, &name, T0 - MAX_CLOCK_SKEW_SECS - 1).unwrap_err();
        assert!(err.to_string().contains("issued_at"), "{err}");
    }

    #[test]
    fn lifetime_and_version_are_checked_before_signing() {
        let k = key(1);
        let mut r = record(&k, 1);
        r.expires_at = r.issued_at;
        assert!(r.sign(&k).is_err());
        r.expires_at = r.issued_at + MAX_NAME_LIFETIME_SECS + 1;
        assert!(r.sign(&k).is_err());
        let mut r = record(&k, 1);
        r.version = 2;
        assert!(matches!(
            r.sign(&k),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let name = key(1).public().to_peer_id();
        let err = decode_verified(&vec![0u8; MAX_NAME_RECORD_SIZE + 1], &name, T0).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }

    #[test]
    fn a_store_keeps_only_newer_records() {
        let k = key(1);
        let name = k.public().to_peer_id();
        let old = record(&k, 1).sign(&k).unwrap();
        let new = record(&k, 2).sign(&k).unwrap();
        assert_eq!(
            accept_for_store(&new, Some(&old), &name, T0)
                .unwrap()
                .sequence,
            2
        );
        let err = accept_for_store(&old, Some(&new), &name, T0).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NameNotNewer {
                    sequence: 1,
                    held: 2,
                    ..
                }
            ),
            "{err}"
        );
        // The same record again is not newer either.
        assert!(accept_for_store(&new, Some(&new), &name, T0).is_err());
        // A held record that no longer verifies (expired) does not block a valid one.
        let mut short = record(&k, 5);
        short.expires_at = T0 + 10;
        let short = short.sign(&k).unwrap();
        assert_eq!(
            accept_for_store(&old, Some(&short), &name, T0 + 20)
                .unwrap()
                .sequence,
            1
        );
    }

    #[test]
    fn name_keys_round_trip_and_refuse_other_namespaces() {
        let name = key(1).public().to_peer_id();
        assert_eq!(name_from_key(&name_key(&name)), Some(name));
        assert_eq!(name_from_key(&crate::record_key(&name)), None);
        assert_eq!(name_from_key(b"/warren/name/xx"), None);
    }

    proptest! {
        #[test]
        fn newest_is_the_highest_sequence(seqs in prop::collection::vec(0u64..1000, 1..20)) {
            let k = key(3);
            let records: Vec<_> = seqs.iter().map(|s| record(&k, *s)).collect();
            let best = newest(&records).unwrap();
            prop_assert_eq!(best.sequence, *seqs.iter().max().unwrap());
            prop_assert!(records.iter().all(|r| !supersedes(r, best)));
        }

        #[test]
        fn signed_records_round_trip(seq in any::<u64>(), life in 1u64..=MAX_NAME_LIFETIME_SECS, n in any::<u8>()) {
            let k = key(4);
            let mut r = record(&k, seq);
            r.value = cid(n);
            r.expires_at = T0 + life;
            let bytes = r.sign(&k).unwrap();
            prop_assert!(bytes.len() <= MAX_NAME_RECORD_SIZE);
            prop_assert_eq!(decode_verified(&bytes, &r.name, T0).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
            let name = key(5).public().to_peer_id();
            let _ = decode_verified(&bytes, &name, T0);
        }

        #[test]
        fn any_flipped_bit_is_refused(i in any::<prop::sample::Index>(), bit in 0u8..8) {
            let k = key(6);
            let mut bytes = record(&k, 7).sign(&k).unwrap();
            let at = i.index(bytes.len());
            bytes[at] ^= 1 << bit;
            prop_assert!(decode_verified(&bytes, &k.public().to_peer_id(), T0).is_err());
        }
    }
}
