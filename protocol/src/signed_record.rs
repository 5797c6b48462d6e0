//! The signed node record (spec: `spec/node-record.md`): the exact CBOR bytes of a
//! [`NodeRecord`], the signer's public key, and an Ed25519 signature over
//! [`RECORD_SIGNATURE_DOMAIN`] ++ those bytes.
//!
//! The signature covers the bytes carried, never a re-encoding. [`SignedNodeRecord::verify`]
//! checks the key and the signature before it parses the record.

use serde::{Deserialize, Serialize};

use crate::{
    Error, Keypair, NodeRecord, PeerId, codec,
    error::Subject,
    identity::decode_ed25519_public_key,
    record::{MAX_RECORD_SIZE, RECORD_VERSION},
};

/// Prefix of the signed message: `warren/node-record/v1` and a NUL byte.
pub const RECORD_SIGNATURE_DOMAIN: &[u8] = b"warren/node-record/v1\0";

const WHAT_SIGNED: &str = "signed node record";
const WHAT_RECORD: &str = "node record";
const WHAT_KEY: &str = "node record public key";

/// A node record as published: a CBOR map `{record, public_key, signature}`.
///
/// Made by [`NodeRecord::sign`] or [`SignedNodeRecord::decode`]; either way at most
/// [`MAX_RECORD_SIZE`] bytes encoded. Nothing in it is trusted until [`SignedNodeRecord::verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedNodeRecord {
    /// The canonical CBOR encoding of a [`NodeRecord`], exactly as signed.
    #[serde(with = "serde_bytes")]
    record: Vec<u8>,
    /// The signer's libp2p protobuf-encoded public key (Ed25519, 36 bytes).
    #[serde(with = "serde_bytes")]
    public_key: Vec<u8>,
    /// Ed25519 signature over [`RECORD_SIGNATURE_DOMAIN`] ++ `record`.
    #[serde(with = "serde_bytes")]
    signature: [u8; 64],
}

fn signed_message(record: &[u8]) -> Vec<u8> {
    [RECORD_SIGNATURE_DOMAIN, record].concat()
}

impl NodeRecord {
    /// Encodes and signs the record with `key`, which must be the Ed25519 key of `self.peer_id`.
    ///
    /// Checks every rule of [`NodeRecord::validate`] that does not depend on the clock, and that
    /// the result fits in [`MAX_RECORD_SIZE`].
    pub fn sign(&self, key: &Keypair) -> Result<SignedNodeRecord, Error> {
        let public = key.public();
        let signer = public.to_peer_id();
        // Also refuses non-Ed25519 keys.
        let public_key = public.encode_protobuf();
        decode_ed25519_public_key("signing key", &public_key)?;
        if signer != self.peer_id {
            return Err(Error::SignerMismatch {
                record: Box::new(self.peer_id),
                signer: Box::new(signer),
            });
        }
        self.validate_content()?;
        let record = codec::encode(self, WHAT_RECORD)?;
        let signature = key
            .sign(&signed_message(&record))
            .map_err(|e| Error::InvalidKey {
                what: "signing key",
                detail: e.to_string(),
            })?;
        let signature: [u8; 64] =
            signature
                .as_slice()
                .try_into()
                .map_err(|_| Error::InvalidKey {
                    what: "signing key",
                    detail: format!("signature is {} bytes, not 64", signature.len()),
                })?;
        let signed = SignedNodeRecord {
            record,
            public_key,
            signature,
        };
        let len = signed.encode()?.len();
        if len > MAX_RECORD_SIZE {
            return Err(Error::TooLarge {
                what: WHAT_SIGNED,
                len,
                limit: MAX_RECORD_SIZE,
            });
        }
        Ok(signed)
    }
}

impl SignedNodeRecord {
    /// The bytes to publish (the DHT record value).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        codec::encode(self, WHAT_SIGNED)
    }

    /// Parses the outer structure only: refuses input over [`MAX_RECORD_SIZE`] before reading it,
    /// then anything but the canonical `{record, public_key, signature}` map. Checks no signature.
    pub fn decode(bytes: &[u8]) -> Result<SignedNodeRecord, Error> {
        codec::decode(bytes, MAX_RECORD_SIZE, WHAT_SIGNED)
    }

    /// Checks the record and returns it: the key is Ed25519; its peer id is `expected_peer` (when
    /// given, e.g. the peer named by the DHT key); the signature verifies; the record decodes
    /// strictly, names the signer as `peer_id`, and passes [`NodeRecord::validate`] at `now_secs`.
    pub fn verify(
        &self,
        expected_peer: Option<&PeerId>,
        now_secs: u64,
    ) -> Result<NodeRecord, Error> {
        let public = decode_ed25519_public_key(WHAT_KEY, &self.public_key)?;
        let signer = public.to_peer_id();
        if let Some(expected) = expected_peer
            && *expected != signer
        {
            return Err(Error::UnexpectedPeer {
                expected: Box::new(*expected),
                found: Box::new(signer),
            });
        }
        if !public.verify(&signed_message(&self.record), &self.signature) {
            return Err(Error::BadSignature {
                signer: Box::new(signer),
            });
        }
        let record = decode_record(&self.record, signer)?;
        if record.peer_id != signer {
            return Err(Error::SignerMismatch {
                record: Box::new(record.peer_id),
                signer: Box::new(signer),
            });
        }
        record.validate(now_secs)?;
        Ok(record)
    }

    /// [`SignedNodeRecord::decode`] then [`SignedNodeRecord::verify`]: what to call on a record
    /// that arrived from the network.
    pub fn decode_verified(
        bytes: &[u8],
        expected_peer: Option<&PeerId>,
        now_secs: u64,
    ) -> Result<NodeRecord, Error> {
        Self::decode(bytes)?.verify(expected_peer, now_secs)
    }

    /// The signed record bytes (canonical CBOR of a [`NodeRecord`]).
    pub fn record_bytes(&self) -> &[u8] {
        &self.record
    }

    /// The signer's protobuf-encoded public key, as carried (not yet checked).
    pub fn public_key_bytes(&self) -> &[u8] {
        &self.public_key
    }

    /// The signature, as carried (not yet checked).
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// Decodes the signed record bytes. When they do not decode, says whether the reason is a newer
/// version (which has other fields) rather than plain garbage.
fn decode_record(bytes: &[u8], signer: PeerId) -> Result<NodeRecord, Error> {
    #[derive(Deserialize)]
    struct VersionProbe {
        version: u16,
    }
    codec::decode(bytes, MAX_RECORD_SIZE, WHAT_RECORD).map_err(|err| {
        match codec::probe::<VersionProbe>(bytes, MAX_RECORD_SIZE) {
            Some(VersionProbe { version }) if version != RECORD_VERSION => {
                Error::UnsupportedVersion {
                    subject: Subject::NodeRecord(Box::new(signer)),
                    found: version,
                    supported: RECORD_VERSION,
                }
            }
            _ => err,
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        MAX_CLOCK_SKEW_SECS,
        identity::keypair_from_secret,
        record::tests::{T0, arb_record, key, record},
    };

    fn signed() -> SignedNodeRecord {
        record().sign(&key()).unwrap()
    }

    /// Signs arbitrary bytes as if they were a record of [`key`].
    fn sign_bytes(record: Vec<u8>) -> SignedNodeRecord {
        let signature = key()
            .sign(&signed_message(&record))
            .unwrap()
            .try_into()
            .unwrap();
        SignedNodeRecord {
            record,
            public_key: key().public().encode_protobuf(),
            signature,
        }
    }

    #[test]
    fn sign_verify_round_trip() {
        let bytes = signed().encode().unwrap();
        assert!(bytes.len() <= MAX_RECORD_SIZE);
        let peer = record().peer_id;
        assert_eq!(
            SignedNodeRecord::decode_verified(&bytes, Some(&peer), T0).unwrap(),
            record()
        );
        assert_eq!(
            SignedNodeRecord::decode_verified(&bytes, None, T0 + 10).unwrap(),
            record()
        );
        assert_eq!(SignedNodeRecord::decode(&bytes).unwrap(), signed());
    }

    #[test]
    fn signature_covers_the_domain() {
        let s = signed();
        assert!(
            key()
                .public()
                .verify(&[RECORD_SIGNATURE_DOMAIN, &s.record].concat(), &s.signature)
        );
        assert!(!key().public().verify(&s.record, &s.signature));
    }

    #[test]
    fn rejects_any_flipped_bit_in_signature_or_record() {
        let s = signed();
        for i in 0..64 * 8 {
            let mut bad = s.clone();
            bad.signature[i / 8] ^= 1 << (i % 8);
            assert_eq!(
                bad.verify(None, T0).unwrap_err(),
                Error::BadSignature {
                    signer: Box::new(record().peer_id)
                }
            );
        }
        for i in 0..s.record.len() {
            let mut bad = s.clone();
            bad.record[i] ^= 0x01;
            assert!(
                matches!(
                    bad.verify(None, T0).unwrap_err(),
                    Error::BadSignature { .. }
                ),
                "byte {i}"
            );
        }
    }

    #[test]
    fn rejects_expired_and_future_records() {
        let s = signed();
        assert!(matches!(
            s.verify(None, T0 + 3600).unwrap_err(),
            Error::Expired { .. }
        ));
        assert!(matches!(
            s.verify(None, T0 - MAX_CLOCK_SKEW_SECS - 1).unwrap_err(),
            Error::IssuedInFuture { .. }
        ));
    }

    #[test]
    fn rejects_wrong_expected_peer() {
        let other = keypair_from_secret([7; 32]).public().to_peer_id();
        let err = signed().verify(Some(&other), T0).unwrap_err();
        assert_eq!(
            err,
            Error::UnexpectedPeer {
                expected: Box::new(other),
                found: Box::new(record().peer_id)
            }
        );
    }

    #[test]
    fn sign_refuses_a_key_of_another_peer() {
        let other = keypair_from_secret([7; 32]);
        let err = record().sign(&other).unwrap_err();
        assert_eq!(
            err,
            Error::SignerMismatch {
                record: Box::new(record().peer_id),
                signer: Box::new(other.public().to_peer_id())
            }
        );
    }

    #[test]
    fn verify_rejects_a_record_naming_another_peer() {
        // Validly signed by `key()`, but the record says it is someone else's.
        let mut r = record();
        r.peer_id = keypair_from_secret([7; 32]).public().to_peer_id();
        let s = sign_bytes(codec::encode(&r, "r").unwrap());
        let err = s.verify(None, T0).unwrap_err();
        assert_eq!(
            err,
            Error::SignerMismatch {
                record: Box::new(r.peer_id),
                signer: Box::new(record().peer_id)
            }
        );
    }

    #[test]
    fn verify_rejects_non_ed25519_keys() {
        let mut s = signed();
        // A secp256k1 public key: Type = 2, Data = 33 bytes.
        s.public_key = [&[0x08, 0x02, 0x12, 0x21][..], &[2; 33]].concat();
        let err = s.verify(None, T0).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedKeyType { ref key_type, .. } if key_type == "Secp256k1"),
            "{err}"
        );
        s.public_key = vec![1, 2, 3];
        assert!(matches!(
            s.verify(None, T0).unwrap_err(),
            Error::InvalidKey { .. }
        ));
    }

    #[test]
    fn verify_rejects_invalid_record_content() {
        let mut r = record();
        r.load_permille = 5000;
        let s = sign_bytes(codec::encode(&r, "r").unwrap());
        assert!(matches!(
            s.verify(None, T0).unwrap_err(),
            Error::InvalidField { .. }
        ));
    }

    #[test]
    fn verify_reports_newer_versions() {
        #[derive(Serialize)]
        struct V2 {
            version: u16,
            something_new: bool,
        }
        let s = sign_bytes(
            codec::encode(
                &V2 {
                    version: 2,
                    something_new: true,
                },
                "v2",
            )
            .unwrap(),
        );
        let err = s.verify(None, T0).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedVersion { found: 2, .. }),
            "{err}"
        );
        // version 1 with an unknown field is just malformed
        let s = sign_bytes(
            codec::encode(
                &V2 {
                    version: 1,
                    something_new: true,
                },
                "v2",
            )
            .unwrap(),
        );
        assert!(matches!(
            s.verify(None, T0).unwrap_err(),
            Error::Malformed { .. }
        ));
    }

    #[test]
    fn verify_rejects_non_canonical_record_bytes() {
        // Append an unrelated byte inside a validly signed blob: trailing data.
        let mut bytes = codec::encode(&record(), "r").unwrap();
        bytes.push(0xf6);
        let err = sign_bytes(bytes).verify(None, T0).unwrap_err();
        assert!(matches!(err, Error::TrailingBytes { .. }), "{err}");
    }

    #[test]
    fn decode_checks_size_before_parsing() {
        let err = SignedNodeRecord::decode(&vec![0xff; MAX_RECORD_SIZE + 1]).unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                what: WHAT_SIGNED,
                len: MAX_RECORD_SIZE + 1,
                limit: MAX_RECORD_SIZE
            }
        );
    }

    #[test]
    fn sign_refuses_records_over_the_size_limit() {
        let mut r = record();
        r.compute.as_mut().unwrap().models = vec!["m".repeat(128); 64];
        let err = r.sign(&key()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    what: WHAT_SIGNED,
                    limit: MAX_RECORD_SIZE,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn decode_rejects_truncated_trailing_and_unknown() {
        let bytes = signed().encode().unwrap();
        for n in 0..bytes.len() {
            let err = SignedNodeRecord::decode(&bytes[..n]).unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{n}: {err}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            SignedNodeRecord::decode(&long).unwrap_err(),
            Error::TrailingBytes { extra: 1, .. }
        ));

        // Same map with a fourth key: change the map header from 3 to 4 entries and append "x": 0.
        assert_eq!(bytes[0], 0xa3);
        let mut extra = bytes.clone();
        extra[0] = 0xa4;
        extra.extend_from_slice(&[0x61, b'x', 0x00]);
        let err = SignedNodeRecord::decode(&extra).unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { detail, .. } if detail.contains("unknown field")),
            "{err}"
        );
    }

    #[test]
    fn decode_rejects_short_signatures() {
        #[derive(Serialize)]
        struct Short<'a> {
            #[serde(with = "serde_bytes")]
            record: &'a [u8],
            #[serde(with = "serde_bytes")]
            public_key: &'a [u8],
            #[serde(with = "serde_bytes")]
            signature: &'a [u8],
        }
        let s = signed();
        let bytes = codec::encode(
            &Short {
                record: &s.record,
                public_key: &s.public_key,
                signature: &[0; 63],
            },
            "s",
        )
        .unwrap();
        assert!(matches!(
            SignedNodeRecord::decode(&bytes).unwrap_err(),
            Error::Malformed { .. }
        ));
    }

    proptest! {
        #[test]
        fn signed_record_round_trips(r in arb_record(), secret in any::<[u8; 32]>()) {
            let mut r = r;
            let key = keypair_from_secret(secret);
            r.peer_id = key.public().to_peer_id();
            let bytes = r.sign(&key).unwrap().encode().unwrap();
            let now = r.issued_at;
            prop_assert_eq!(SignedNodeRecord::decode_verified(&bytes, Some(&r.peer_id), now).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = SignedNodeRecord::decode_verified(&bytes, None, T0);
        }

        #[test]
        fn mutated_records_never_panic_and_never_verify_changed(
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = signed().encode().unwrap();
            let i = pos.index(bytes.len());
            let changed = bytes[i] != byte;
            bytes[i] = byte;
            let result = SignedNodeRecord::decode_verified(&bytes, None, T0);
            if changed {
                // Any change to the signed content or signature must be caught.
                prop_assert!(result.is_err() || result.unwrap() == record());
            }
        }
    }
}
