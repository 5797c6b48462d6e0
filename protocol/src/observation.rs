//! Signed reputation observations (spec: `spec/reputation.md`): what one peer saw another do.
//!
//! An [`Observation`] says that `observer` saw `subject` pass or fail a storage proof, return an
//! inference result that matched or did not match a cross-check, answer with some latency, stay
//! online for part of an hour, or send an invalid message. Peers publish them on the gossipsub topic
//! [`REPUTATION_TOPIC`] as a [`SignedObservation`]: the exact CBOR bytes of the observation, the
//! observer's public key, and an Ed25519 signature over [`OBSERVATION_SIGNATURE_DOMAIN`] ++ those
//! bytes (the same construction as the signed node record).
//!
//! Goals: small (well under [`MAX_OBSERVATION_SIZE`]), one encoding per value, checked completely
//! before use by [`SignedObservation::verify`] (size before parsing, signature before the content,
//! signer = observer, no self-observation, a bounded clock window, per-kind value bounds).
//! Non-goals: an observation is a claim, not a proof — the evidence reference lets a peer re-check
//! it, and the reputation machine ([`crate::reputation`]) decides how much the observer's word is
//! worth. Observations are public; they carry nothing secret.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Keypair, PeerId, codec, identity::decode_ed25519_public_key};

/// The gossipsub topic observations are published on.
pub const REPUTATION_TOPIC: &str = "warren/reputation/1";
/// Prefix of the signed message: `warren/observation/v1` and a NUL byte.
pub const OBSERVATION_SIGNATURE_DOMAIN: &[u8] = b"warren/observation/v1\0";
/// Largest encoded signed observation, checked before decoding.
pub const MAX_OBSERVATION_SIZE: usize = 1024;
/// Longest evidence reference, in bytes (a CIDv1 of a BLAKE3 block is 36; a job id 16 or 32).
pub const MAX_EVIDENCE_LEN: usize = 64;
/// How far in the future (after the verifier's clock) an observation's time may lie.
pub const MAX_OBSERVATION_SKEW_MS: u64 = 5 * 60 * 1000;
/// How old an observation may be when it is verified.
pub const MAX_OBSERVATION_AGE_MS: u64 = 24 * 3600 * 1000;
/// The largest latency sample, in milliseconds.
pub const MAX_LATENCY_MS: u32 = 60_000;
/// The window an uptime sample covers, in seconds: its value is the number of seconds of the last
/// hour that the observer saw the subject online.
pub const UPTIME_WINDOW_SECS: u32 = 3600;

const WHAT_SIGNED: &str = "signed observation";
const WHAT_OBSERVATION: &str = "observation";
const WHAT_KEY: &str = "observation public key";

/// What was observed. Encoded as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The subject answered a proof-of-storage challenge correctly. Value: 1.
    StorageProofPassed,
    /// The subject failed a proof-of-storage challenge (wrong answer, or none in time). Value: 1.
    StorageProofFailed,
    /// The subject's inference result matched a redundant execution. Value: 1.
    InferenceMatched,
    /// The subject's inference result did not match a redundant execution. Value: 1.
    InferenceMismatched,
    /// A round-trip time to the subject. Value: milliseconds, at most [`MAX_LATENCY_MS`].
    LatencySample,
    /// How long the subject was online. Value: seconds of the last [`UPTIME_WINDOW_SECS`] that it was
    /// seen online, so at most [`UPTIME_WINDOW_SECS`].
    UptimeSample,
    /// The subject sent a message that failed validation (bad signature, malformed, spam). Value: 1.
    InvalidMessage,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 7] = [
        Kind::StorageProofPassed,
        Kind::StorageProofFailed,
        Kind::InferenceMatched,
        Kind::InferenceMismatched,
        Kind::LatencySample,
        Kind::UptimeSample,
        Kind::InvalidMessage,
    ];

    /// The smallest and largest `value` an observation of this kind may carry.
    pub fn value_bounds(self) -> (u32, u32) {
        match self {
            Kind::LatencySample => (0, MAX_LATENCY_MS),
            Kind::UptimeSample => (0, UPTIME_WINDOW_SECS),
            _ => (1, 1),
        }
    }

    /// The wire name (`"storage_proof_passed"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Kind::StorageProofPassed => "storage_proof_passed",
            Kind::StorageProofFailed => "storage_proof_failed",
            Kind::InferenceMatched => "inference_matched",
            Kind::InferenceMismatched => "inference_mismatched",
            Kind::LatencySample => "latency_sample",
            Kind::UptimeSample => "uptime_sample",
            Kind::InvalidMessage => "invalid_message",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One peer's observation of another: a CBOR map
/// `{observer, subject, kind, value, time_ms, evidence}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// Who observed (and signs).
    #[serde(with = "peer_bytes")]
    pub observer: PeerId,
    /// Who was observed; never the observer.
    #[serde(with = "peer_bytes")]
    pub subject: PeerId,
    /// What was observed.
    pub kind: Kind,
    /// The measurement, in the unit of `kind` (see [`Kind`] and [`Kind::value_bounds`]).
    pub value: u32,
    /// When it was observed, Unix milliseconds.
    pub time_ms: u64,
    /// What the observation is about, for re-checking: a block's CID bytes for a storage proof, a
    /// job id for an inference cross-check; 1 to [`MAX_EVIDENCE_LEN`] bytes, or none.
    #[serde(with = "serde_bytes")]
    pub evidence: Option<Vec<u8>>,
}

/// Why an observation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObservationError {
    /// The bytes or a key did not decode (size limit, malformed, trailing bytes, non-canonical,
    /// not an Ed25519 key).
    #[error(transparent)]
    Codec(#[from] Error),
    /// The signature does not verify.
    #[error("bad signature on observation signed by {signer}")]
    BadSignature {
        /// The peer id of the key the signature was checked against.
        signer: Box<PeerId>,
    },
    /// The observation names a different observer than the key that signs it.
    #[error("observation names observer {observer} but is signed by {signer}")]
    SignerMismatch {
        /// The observer named inside the observation.
        observer: Box<PeerId>,
        /// The peer id of the signing key.
        signer: Box<PeerId>,
    },
    /// A peer observing itself.
    #[error("observation by {peer} is about itself")]
    SelfObservation {
        /// The peer.
        peer: Box<PeerId>,
    },
    /// The observation's time is too far after the verifier's clock.
    #[error(
        "observation by {observer} at {time_ms} ms is more than {max_skew_ms} ms after now ({now_ms})"
    )]
    InFuture {
        /// The observer.
        observer: Box<PeerId>,
        /// Its `time_ms`.
        time_ms: u64,
        /// The verifier's clock, Unix ms.
        now_ms: u64,
        /// The skew allowed, ms.
        max_skew_ms: u64,
    },
    /// The observation is older than [`MAX_OBSERVATION_AGE_MS`].
    #[error(
        "observation by {observer} at {time_ms} ms is more than {max_age_ms} ms old (now {now_ms})"
    )]
    TooOld {
        /// The observer.
        observer: Box<PeerId>,
        /// Its `time_ms`.
        time_ms: u64,
        /// The verifier's clock, Unix ms.
        now_ms: u64,
        /// The age allowed, ms.
        max_age_ms: u64,
    },
    /// `value` is outside the bounds of its kind.
    #[error("observation of kind {kind}: value {value} is outside {min}..={max}")]
    ValueOutOfRange {
        /// The kind.
        kind: Kind,
        /// The value found.
        value: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// The evidence reference is empty or too long.
    #[error("observation evidence is {len} bytes; it must be 1 to {max} bytes, or absent")]
    InvalidEvidence {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Observation {
    /// Checks every rule that does not need a clock: `observer != subject`, the value within the
    /// bounds of its kind, the evidence 1 to [`MAX_EVIDENCE_LEN`] bytes or absent.
    pub fn validate_content(&self) -> Result<(), ObservationError> {
        if self.observer == self.subject {
            return Err(ObservationError::SelfObservation {
                peer: Box::new(self.observer),
            });
        }
        let (min, max) = self.kind.value_bounds();
        if !(min..=max).contains(&self.value) {
            return Err(ObservationError::ValueOutOfRange {
                kind: self.kind,
                value: self.value,
                min,
                max,
            });
        }
        if let Some(evidence) = &self.evidence
            && (evidence.is_empty() || evidence.len() > MAX_EVIDENCE_LEN)
        {
            return Err(ObservationError::InvalidEvidence {
                len: evidence.len(),
                max: MAX_EVIDENCE_LEN,
            });
        }
        Ok(())
    }

    /// [`Observation::validate_content`], then the time window: `time_ms` at most
    /// [`MAX_OBSERVATION_SKEW_MS`] after `now_ms` and at most [`MAX_OBSERVATION_AGE_MS`] before it.
    pub fn validate(&self, now_ms: u64) -> Result<(), ObservationError> {
        self.validate_content()?;
        if self.time_ms > now_ms.saturating_add(MAX_OBSERVATION_SKEW_MS) {
            return Err(ObservationError::InFuture {
                observer: Box::new(self.observer),
                time_ms: self.time_ms,
                now_ms,
                max_skew_ms: MAX_OBSERVATION_SKEW_MS,
            });
        }
        if self.time_ms.saturating_add(MAX_OBSERVATION_AGE_MS) < now_ms {
            return Err(ObservationError::TooOld {
                observer: Box::new(self.observer),
                time_ms: self.time_ms,
                now_ms,
                max_age_ms: MAX_OBSERVATION_AGE_MS,
            });
        }
        Ok(())
    }

    /// The canonical CBOR encoding of the observation (the bytes that get signed).
    pub fn encode(&self) -> Result<Vec<u8>, ObservationError> {
        Ok(codec::encode(self, WHAT_OBSERVATION)?)
    }

    /// Decodes an unsigned observation strictly (at most [`MAX_OBSERVATION_SIZE`] bytes, canonical,
    /// no trailing bytes). Checks no rule; used for persisted evidence.
    pub fn decode(bytes: &[u8]) -> Result<Observation, ObservationError> {
        Ok(codec::decode(
            bytes,
            MAX_OBSERVATION_SIZE,
            WHAT_OBSERVATION,
        )?)
    }

    /// Encodes and signs the observation with `key`, which must be the Ed25519 key of
    /// `self.observer`. Checks [`Observation::validate_content`] and the size limit; not the clock.
    pub fn sign(&self, key: &Keypair) -> Result<SignedObservation, ObservationError> {
        let public = key.public();
        let signer = public.to_peer_id();
        let public_key = public.encode_protobuf();
        // Also refuses non-Ed25519 keys.
        decode_ed25519_public_key("signing key", &public_key)?;
        if signer != self.observer {
            return Err(ObservationError::SignerMismatch {
                observer: Box::new(self.observer),
                signer: Box::new(signer),
            });
        }
        self.validate_content()?;
        let observation = self.encode()?;
        let signature = key
            .sign(&signed_message(&observation))
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
        let signed = SignedObservation {
            observation,
            public_key,
            signature,
        };
        let len = signed.encode()?.len();
        if len > MAX_OBSERVATION_SIZE {
            return Err(Error::TooLarge {
                what: WHAT_SIGNED,
                len,
                limit: MAX_OBSERVATION_SIZE,
            }
            .into());
        }
        Ok(signed)
    }
}

/// An observation as published: a CBOR map `{observation, public_key, signature}` of at most
/// [`MAX_OBSERVATION_SIZE`] bytes. Nothing in it is trusted until [`SignedObservation::verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedObservation {
    /// The canonical CBOR encoding of an [`Observation`], exactly as signed.
    #[serde(with = "serde_bytes")]
    observation: Vec<u8>,
    /// The signer's libp2p protobuf-encoded public key (Ed25519, 36 bytes).
    #[serde(with = "serde_bytes")]
    public_key: Vec<u8>,
    /// Ed25519 signature over [`OBSERVATION_SIGNATURE_DOMAIN`] ++ `observation`.
    #[serde(with = "serde_bytes")]
    signature: [u8; 64],
}

fn signed_message(observation: &[u8]) -> Vec<u8> {
    [OBSERVATION_SIGNATURE_DOMAIN, observation].concat()
}

impl SignedObservation {
    /// The bytes to publish (the gossipsub message data).
    pub fn encode(&self) -> Result<Vec<u8>, ObservationError> {
        Ok(codec::encode(self, WHAT_SIGNED)?)
    }

    /// Parses the outer structure only: refuses input over [`MAX_OBSERVATION_SIZE`] before reading
    /// it, then anything but the canonical `{observation, public_key, signature}` map. Checks no
    /// signature.
    pub fn decode(bytes: &[u8]) -> Result<SignedObservation, ObservationError> {
        Ok(codec::decode(bytes, MAX_OBSERVATION_SIZE, WHAT_SIGNED)?)
    }

    /// Checks the observation and returns it: the key is Ed25519; the signature verifies over the
    /// bytes carried; they decode strictly; the observer is the signer; and
    /// [`Observation::validate`] passes at `now_ms`.
    pub fn verify(&self, now_ms: u64) -> Result<Observation, ObservationError> {
        let public = decode_ed25519_public_key(WHAT_KEY, &self.public_key)?;
        let signer = public.to_peer_id();
        if !public.verify(&signed_message(&self.observation), &self.signature) {
            return Err(ObservationError::BadSignature {
                signer: Box::new(signer),
            });
        }
        let observation = Observation::decode(&self.observation)?;
        if observation.observer != signer {
            return Err(ObservationError::SignerMismatch {
                observer: Box::new(observation.observer),
                signer: Box::new(signer),
            });
        }
        observation.validate(now_ms)?;
        Ok(observation)
    }

    /// [`SignedObservation::decode`] then [`SignedObservation::verify`]: what to call on a message
    /// from the reputation topic.
    pub fn decode_verified(bytes: &[u8], now_ms: u64) -> Result<Observation, ObservationError> {
        Self::decode(bytes)?.verify(now_ms)
    }

    /// The signed observation bytes (canonical CBOR of an [`Observation`]).
    pub fn observation_bytes(&self) -> &[u8] {
        &self.observation
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

/// `PeerId` ⇄ byte string holding its multihash bytes; only the canonical form is accepted.
pub(crate) mod peer_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use serde_bytes::ByteBuf;

    use crate::PeerId;

    pub(crate) fn serialize<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&peer.to_bytes())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let bytes = ByteBuf::deserialize(d)?;
        let peer = PeerId::from_bytes(&bytes)
            .map_err(|e| D::Error::custom(format_args!("invalid peer id: {e}")))?;
        if peer.to_bytes() != bytes.as_slice() {
            return Err(D::Error::custom("peer id not in its canonical form"));
        }
        Ok(peer)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::keypair_from_secret;

    /// 2023-11-14T22:13:20Z, in ms.
    pub(crate) const T0: u64 = 1_700_000_000_000;

    pub(crate) fn key(n: u8) -> Keypair {
        keypair_from_secret([n; 32])
    }

    pub(crate) fn peer(n: u8) -> PeerId {
        key(n).public().to_peer_id()
    }

    fn observation() -> Observation {
        Observation {
            observer: peer(1),
            subject: peer(2),
            kind: Kind::StorageProofPassed,
            value: 1,
            time_ms: T0,
            evidence: Some(vec![0xab; 36]),
        }
    }

    fn sign_bytes(observation: Vec<u8>) -> SignedObservation {
        let signature = key(1)
            .sign(&signed_message(&observation))
            .unwrap()
            .try_into()
            .unwrap();
        SignedObservation {
            observation,
            public_key: key(1).public().encode_protobuf(),
            signature,
        }
    }

    #[test]
    fn sign_verify_round_trip() {
        let signed = observation().sign(&key(1)).unwrap();
        let bytes = signed.encode().unwrap();
        assert!(bytes.len() <= MAX_OBSERVATION_SIZE, "{}", bytes.len());
        assert_eq!(
            SignedObservation::decode_verified(&bytes, T0).unwrap(),
            observation()
        );
        assert_eq!(SignedObservation::decode(&bytes).unwrap(), signed);
    }

    #[test]
    fn kinds_encode_as_snake_case_names() {
        for kind in Kind::ALL {
            let bytes = codec::encode(&kind, "kind").unwrap();
            let text: String = codec::decode(&bytes, 64, "kind").unwrap();
            assert_eq!(text, kind.name());
            assert_eq!(kind.to_string(), kind.name());
        }
    }

    #[test]
    fn signature_covers_the_domain() {
        let s = observation().sign(&key(1)).unwrap();
        let public = key(1).public();
        assert!(public.verify(
            &[OBSERVATION_SIGNATURE_DOMAIN, &s.observation].concat(),
            &s.signature
        ));
        assert!(!public.verify(&s.observation, &s.signature));
    }

    #[test]
    fn rejects_flipped_bits() {
        let s = observation().sign(&key(1)).unwrap();
        for i in 0..64 * 8 {
            let mut bad = s.clone();
            bad.signature[i / 8] ^= 1 << (i % 8);
            assert!(matches!(
                bad.verify(T0).unwrap_err(),
                ObservationError::BadSignature { .. }
            ));
        }
        for i in 0..s.observation.len() {
            let mut bad = s.clone();
            bad.observation[i] ^= 0x01;
            assert!(matches!(
                bad.verify(T0).unwrap_err(),
                ObservationError::BadSignature { .. }
            ));
        }
    }

    #[test]
    fn sign_refuses_another_peers_observation() {
        let err = observation().sign(&key(3)).unwrap_err();
        assert_eq!(
            err,
            ObservationError::SignerMismatch {
                observer: Box::new(peer(1)),
                signer: Box::new(peer(3))
            }
        );
    }

    #[test]
    fn verify_refuses_observation_of_another_observer() {
        // Validly signed by key 1, but naming peer 3 as the observer.
        let o = Observation {
            observer: peer(3),
            ..observation()
        };
        let err = sign_bytes(o.encode().unwrap()).verify(T0).unwrap_err();
        assert!(
            matches!(err, ObservationError::SignerMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_self_observation() {
        let o = Observation {
            subject: peer(1),
            ..observation()
        };
        assert!(matches!(
            o.sign(&key(1)).unwrap_err(),
            ObservationError::SelfObservation { .. }
        ));
        let err = sign_bytes(o.encode().unwrap()).verify(T0).unwrap_err();
        assert!(
            matches!(err, ObservationError::SelfObservation { .. }),
            "{err}"
        );
    }

    #[test]
    fn checks_the_time_window() {
        let s = observation().sign(&key(1)).unwrap();
        // Exactly at the edges: accepted.
        s.verify(T0 - MAX_OBSERVATION_SKEW_MS).unwrap();
        s.verify(T0 + MAX_OBSERVATION_AGE_MS).unwrap();
        assert!(matches!(
            s.verify(T0 - MAX_OBSERVATION_SKEW_MS - 1).unwrap_err(),
            ObservationError::InFuture { .. }
        ));
        assert!(matches!(
            s.verify(T0 + MAX_OBSERVATION_AGE_MS + 1).unwrap_err(),
            ObservationError::TooOld { .. }
        ));
        // Clocks near the ends of u64 do not overflow.
        let late = Observation {
            time_ms: u64::MAX,
            ..observation()
        };
        late.validate(u64::MAX).unwrap();
        assert!(late.validate(0).is_err());
    }

    #[test]
    fn checks_value_bounds_per_kind() {
        let at = |kind, value| {
            Observation {
                kind,
                value,
                ..observation()
            }
            .validate(T0)
        };
        for kind in Kind::ALL {
            let (min, max) = kind.value_bounds();
            at(kind, min).unwrap();
            at(kind, max).unwrap();
            assert!(matches!(
                at(kind, max + 1).unwrap_err(),
                ObservationError::ValueOutOfRange { .. }
            ));
            if min > 0 {
                assert!(at(kind, min - 1).is_err());
            }
        }
        assert_eq!(Kind::LatencySample.value_bounds(), (0, 60_000));
        assert_eq!(Kind::UptimeSample.value_bounds(), (0, 3600));
    }

    #[test]
    fn checks_evidence_length() {
        let with = |len: usize| Observation {
            evidence: Some(vec![1; len]),
            ..observation()
        };
        with(1).validate(T0).unwrap();
        with(MAX_EVIDENCE_LEN).validate(T0).unwrap();
        for len in [0, MAX_EVIDENCE_LEN + 1] {
            assert_eq!(
                with(len).validate(T0).unwrap_err(),
                ObservationError::InvalidEvidence {
                    len,
                    max: MAX_EVIDENCE_LEN
                }
            );
        }
        Observation {
            evidence: None,
            ..observation()
        }
        .sign(&key(1))
        .unwrap();
    }

    #[test]
    fn decode_checks_size_before_parsing() {
        let err = SignedObservation::decode(&vec![0xff; MAX_OBSERVATION_SIZE + 1]).unwrap_err();
        assert_eq!(
            err,
            ObservationError::Codec(Error::TooLarge {
                what: WHAT_SIGNED,
                len: MAX_OBSERVATION_SIZE + 1,
                limit: MAX_OBSERVATION_SIZE
            })
        );
    }

    #[test]
    fn decode_rejects_truncated_and_trailing() {
        let bytes = observation().sign(&key(1)).unwrap().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(matches!(
                SignedObservation::decode(&bytes[..n]).unwrap_err(),
                ObservationError::Codec(Error::Malformed { .. })
            ));
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            SignedObservation::decode(&long).unwrap_err(),
            ObservationError::Codec(Error::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn observation_without_evidence_field_is_refused() {
        #[derive(Serialize)]
        struct NoEvidence {
            #[serde(with = "peer_bytes")]
            observer: PeerId,
            #[serde(with = "peer_bytes")]
            subject: PeerId,
            kind: Kind,
            value: u32,
            time_ms: u64,
        }
        let o = observation();
        let bytes = codec::encode(
            &NoEvidence {
                observer: o.observer,
                subject: o.subject,
                kind: o.kind,
                value: o.value,
                time_ms: o.time_ms,
            },
            "o",
        )
        .unwrap();
        // "no evidence" has one spelling: `null`, never a missing key.
        assert!(matches!(
            Observation::decode(&bytes).unwrap_err(),
            ObservationError::Codec(Error::Malformed { .. } | Error::NonCanonical { .. })
        ));
    }

    pub(crate) fn arb_kind() -> impl Strategy<Value = Kind> {
        prop::sample::select(Kind::ALL.to_vec())
    }

    prop_compose! {
        fn arb_observation()(
            observer in any::<[u8; 32]>(),
            subject in any::<[u8; 32]>(),
            kind in arb_kind(),
            raw in any::<u32>(),
            time_ms in 0..u64::MAX / 2,
            evidence in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=MAX_EVIDENCE_LEN)),
        ) -> (Keypair, Observation) {
            let key = keypair_from_secret(observer);
            let (min, max) = kind.value_bounds();
            let value = min + raw % (max - min + 1);
            let mut subject_key = subject;
            if subject_key == observer {
                subject_key[0] ^= 1;
            }
            let o = Observation {
                observer: key.public().to_peer_id(),
                subject: keypair_from_secret(subject_key).public().to_peer_id(),
                kind,
                value,
                time_ms,
                evidence,
            };
            (key, o)
        }
    }

    proptest! {
        #[test]
        fn signed_observation_round_trips((key, o) in arb_observation()) {
            let bytes = o.sign(&key).unwrap().encode().unwrap();
            prop_assert!(bytes.len() <= MAX_OBSERVATION_SIZE);
            prop_assert_eq!(SignedObservation::decode_verified(&bytes, o.time_ms).unwrap(), o.clone());
            let inner = Observation::decode(&o.encode().unwrap()).unwrap();
            prop_assert_eq!(inner, o);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = SignedObservation::decode_verified(&bytes, T0);
            let _ = Observation::decode(&bytes);
        }

        #[test]
        fn mutated_observations_never_verify_changed(
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = observation().sign(&key(1)).unwrap().encode().unwrap();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            if let Ok(o) = SignedObservation::decode_verified(&bytes, T0) {
                prop_assert_eq!(o, observation());
            }
        }
    }
}
