//! Receipts (spec: `spec/credits.md`, "Receipts"): one cumulative, monotone, double-signed
//! statement per ordered pair (payer, payee) of what the payee has delivered to the payer.
//!
//! A receipt counts physical quantities, never prices: bytes of blocks the payer received and
//! verified, KiB-seconds of storage closed by a passed audit, inference work per model, and bytes
//! of onion cells a hop delivered back on the payer's circuits. Each
//! new receipt of a pair carries the next sequence number and counters that never go down, so
//! only the latest one per pair and direction is kept. The payer signs first
//! ([`Receipt::issue`]); the payee checks it and countersigns ([`Receipt::countersign`]). Two
//! receipts signed by one payer with the same sequence number and different contents are a fraud
//! proof ([`FraudProof`]).

use serde::{Deserialize, Serialize};

use super::CreditError;
use crate::{Keypair, PeerId, PublicKey};

/// Prefix of the bytes the payer signs (domain separation from every other signature of the key).
pub const RECEIPT_PAYER_DOMAIN: &[u8] = b"warren/credit-receipt/payer/1\0";
/// Prefix of the bytes the payee countersigns.
pub const RECEIPT_PAYEE_DOMAIN: &[u8] = b"warren/credit-receipt/payee/1\0";
/// Largest encoded receipt, checked before decoding.
pub const MAX_RECEIPT_SIZE: usize = 2048;
/// Most models one receipt carries inference work for.
pub const MAX_MODELS: usize = 16;
/// Longest model name, in bytes.
pub const MAX_MODEL_NAME: usize = 64;

const WHAT: &str = "credit receipt";

/// Cumulative verified inference work for one model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceWork {
    /// The model's name (at most [`MAX_MODEL_NAME`] bytes).
    pub model: String,
    /// Its parameter count in millions (the price is per FLOP, about 2 × parameters per token).
    pub params_m: u64,
    /// Prompt tokens processed.
    pub prefill: u64,
    /// Tokens generated.
    pub generated: u64,
    /// Tokens embedded.
    pub embedded: u64,
}

impl InferenceWork {
    /// All tokens counted (prefill, generated, embedded), saturating.
    pub fn tokens(&self) -> u64 {
        self.prefill
            .saturating_add(self.generated)
            .saturating_add(self.embedded)
    }
}

/// What a receipt counts: cumulative quantities the payee delivered to the payer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    /// Bytes of blocks the payer received and verified.
    pub bytes: u64,
    /// KiB-seconds of storage, counted only over intervals closed by a passed audit.
    pub storage_kib_secs: u64,
    /// Inference work per model, sorted by model name, each name once.
    pub inference: Vec<InferenceWork>,
    /// Bytes of onion cells the payer received from the payee on circuits the payee carried for
    /// it (relay work); omitted from the CBOR when 0, so receipts without relay work encode as
    /// before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub relay_bytes: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Quantities {
    /// Whether every counter of `self` is at least the one of `older` (a model missing from
    /// `self` but present in `older` is a decrease).
    pub fn covers(&self, older: &Quantities) -> bool {
        self.bytes >= older.bytes
            && self.storage_kib_secs >= older.storage_kib_secs
            && self.relay_bytes >= older.relay_bytes
            && older.inference.iter().all(|o| {
                self.inference.iter().any(|n| {
                    n.model == o.model
                        && n.prefill >= o.prefill
                        && n.generated >= o.generated
                        && n.embedded >= o.embedded
                })
            })
    }

    /// Adds generation work for `model`, keeping the list sorted.
    pub fn add_inference(&mut self, model: &str, params_m: u64, prefill: u64, generated: u64) {
        self.add_work(&InferenceWork {
            model: model.to_owned(),
            params_m,
            prefill,
            generated,
            embedded: 0,
        });
    }

    /// Adds embedding work for `model` (`embedded` tokens), keeping the list sorted.
    pub fn add_embedding(&mut self, model: &str, params_m: u64, embedded: u64) {
        self.add_work(&InferenceWork {
            model: model.to_owned(),
            params_m,
            prefill: 0,
            generated: 0,
            embedded,
        });
    }

    /// Adds `w`'s token counts to its model's (its parameter count replacing the one held),
    /// keeping the list sorted.
    pub fn add_work(&mut self, w: &InferenceWork) {
        match self
            .inference
            .binary_search_by(|x| x.model.as_str().cmp(&w.model))
        {
            Ok(i) => {
                if let Some(x) = self.inference.get_mut(i) {
                    x.params_m = w.params_m;
                    x.prefill = x.prefill.saturating_add(w.prefill);
                    x.generated = x.generated.saturating_add(w.generated);
                    x.embedded = x.embedded.saturating_add(w.embedded);
                }
            }
            Err(i) => self.inference.insert(i, w.clone()),
        }
    }

    fn check(&self) -> Result<(), &'static str> {
        if self.inference.len() > MAX_MODELS {
            return Err("more than 16 models");
        }
        if self
            .inference
            .iter()
            .any(|w| w.model.len() > MAX_MODEL_NAME)
        {
            return Err("a model name longer than 64 bytes");
        }
        if self.inference.windows(2).any(|w| w[0].model >= w[1].model) {
            return Err("models not sorted by name, or named twice");
        }
        Ok(())
    }
}

/// One signed receipt.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The payer's Ed25519 public key: the peer that received the service.
    #[serde(with = "serde_bytes")]
    pub payer: [u8; 32],
    /// The payee's Ed25519 public key: the peer that delivered it.
    #[serde(with = "serde_bytes")]
    pub payee: [u8; 32],
    /// Sequence number of the pair, from 1, one more than the last receipt's.
    pub seq: u64,
    /// Unix seconds the payer issued it.
    pub time: u64,
    /// Cumulative quantities.
    pub work: Quantities,
    /// The payer's signature over [`Receipt::payer_bytes`].
    #[serde(with = "serde_bytes")]
    pub payer_sig: [u8; 64],
    /// The payee's countersignature over [`Receipt::payee_bytes`] (absent until countersigned).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_sig")]
    pub payee_sig: Option<[u8; 64]>,
}

mod opt_sig {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<[u8; 64]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => serde_bytes::serialize(&b[..], s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 64]>, D::Error> {
        let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
        let arr: [u8; 64] = b
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::custom("payee_sig is not 64 bytes"))?;
        Ok(Some(arr))
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt")
            .field("payer", &peer_of(&self.payer).map(|p| p.to_string()))
            .field("payee", &peer_of(&self.payee).map(|p| p.to_string()))
            .field("seq", &self.seq)
            .field("time", &self.time)
            .field("work", &self.work)
            .field("countersigned", &self.payee_sig.is_some())
            .finish()
    }
}

/// The peer id of an Ed25519 public key, if it is one.
pub fn peer_of(key: &[u8; 32]) -> Option<PeerId> {
    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(PublicKey::from(key).to_peer_id())
}

/// The 32-byte Ed25519 public key of `key`.
pub fn ed25519_key(key: &Keypair) -> Result<[u8; 32], CreditError> {
    key.public()
        .try_into_ed25519()
        .map(|k| k.to_bytes())
        .map_err(|_| CreditError::Invalid {
            seq: 0,
            reason: "the key is not Ed25519",
        })
}

fn sign64(key: &Keypair, msg: &[u8], seq: u64) -> Result<[u8; 64], CreditError> {
    let sig = key.sign(msg).map_err(|_| CreditError::Invalid {
        seq,
        reason: "the key cannot sign",
    })?;
    sig.as_slice().try_into().map_err(|_| CreditError::Invalid {
        seq,
        reason: "the signature is not 64 bytes",
    })
}

fn verify64(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    libp2p_identity::ed25519::PublicKey::try_from_bytes(key).is_ok_and(|k| k.verify(msg, sig))
}

/// The unsigned part of a receipt, as signed.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(with = "serde_bytes")]
    payer: &'a [u8; 32],
    #[serde(with = "serde_bytes")]
    payee: &'a [u8; 32],
    seq: u64,
    time: u64,
    work: &'a Quantities,
}

impl Receipt {
    fn body(&self) -> Result<Vec<u8>, CreditError> {
        Ok(crate::codec::encode(
            &Body {
                payer: &self.payer,
                payee: &self.payee,
                seq: self.seq,
                time: self.time,
                work: &self.work,
            },
            WHAT,
        )?)
    }

    /// What the payer signs: [`RECEIPT_PAYER_DOMAIN`] then the CBOR map `{payer, payee, seq, time,
    /// work}`.
    pub fn payer_bytes(&self) -> Result<Vec<u8>, CreditError> {
        let mut out = RECEIPT_PAYER_DOMAIN.to_vec();
        out.extend(self.body()?);
        Ok(out)
    }

    /// What the payee countersigns: [`RECEIPT_PAYEE_DOMAIN`], the same map, then the payer's
    /// signature.
    pub fn payee_bytes(&self) -> Result<Vec<u8>, CreditError> {
        let mut out = RECEIPT_PAYEE_DOMAIN.to_vec();
        out.extend(self.body()?);
        out.extend_from_slice(&self.payer_sig);
        Ok(out)
    }

    /// A receipt issued by `payer_key` to `payee` (its Ed25519 key), signed by the payer.
    pub fn issue(
        payer_key: &Keypair,
        payee: [u8; 32],
        seq: u64,
        time: u64,
        work: Quantities,
    ) -> Result<Self, CreditError> {
        let mut r = Receipt {
            payer: ed25519_key(payer_key)?,
            payee,
            seq,
            time,
            work,
            payer_sig: [0; 64],
            payee_sig: None,
        };
        r.check_fields()?;
        r.payer_sig = sign64(payer_key, &r.payer_bytes()?, seq)?;
        Ok(r)
    }

    /// Adds the payee's countersignature (`payee_key` must be the payee's).
    pub fn countersign(&mut self, payee_key: &Keypair) -> Result<(), CreditError> {
        if ed25519_key(payee_key)? != self.payee {
            return Err(self.invalid("countersigned by a key other than the payee's"));
        }
        self.payee_sig = Some(sign64(payee_key, &self.payee_bytes()?, self.seq)?);
        Ok(())
    }

    fn invalid(&self, reason: &'static str) -> CreditError {
        CreditError::Invalid {
            seq: self.seq,
            reason,
        }
    }

    fn check_fields(&self) -> Result<(), CreditError> {
        if self.seq == 0 {
            return Err(self.invalid("sequence numbers start at 1"));
        }
        if self.payer == self.payee {
            return Err(self.invalid("payer and payee are the same key"));
        }
        self.work.check().map_err(|r| self.invalid(r))
    }

    /// Checks the fields and the payer's signature (and the payee's, when present).
    pub fn verify(&self) -> Result<(), CreditError> {
        self.check_fields()?;
        if !verify64(&self.payer, &self.payer_bytes()?, &self.payer_sig) {
            return Err(CreditError::Forged {
                seq: self.seq,
                who: "payer",
            });
        }
        if let Some(sig) = &self.payee_sig
            && !verify64(&self.payee, &self.payee_bytes()?, sig)
        {
            return Err(CreditError::Forged {
                seq: self.seq,
                who: "payee",
            });
        }
        Ok(())
    }

    /// The payer's peer id.
    pub fn payer_peer(&self) -> Option<PeerId> {
        peer_of(&self.payer)
    }

    /// The payee's peer id.
    pub fn payee_peer(&self) -> Option<PeerId> {
        peer_of(&self.payee)
    }

    /// Same pair, sequence number and contents (signatures aside).
    pub fn same_statement(&self, other: &Receipt) -> bool {
        self.payer == other.payer
            && self.payee == other.payee
            && self.seq == other.seq
            && self.time == other.time
            && self.work == other.work
    }

    /// Canonical CBOR.
    pub fn encode(&self) -> Result<Vec<u8>, CreditError> {
        let out = crate::codec::encode(self, WHAT)?;
        if out.len() > MAX_RECEIPT_SIZE {
            return Err(self.invalid("encodes to more than 2048 bytes"));
        }
        Ok(out)
    }

    /// Decodes (size checked first, canonical form only) and verifies the signatures.
    pub fn decode(bytes: &[u8]) -> Result<Self, CreditError> {
        let r: Self = crate::codec::decode(bytes, MAX_RECEIPT_SIZE, WHAT)?;
        r.verify()?;
        Ok(r)
    }
}

/// Largest encoded fraud proof (two receipts), checked before decoding.
pub const MAX_FRAUD_PROOF_SIZE: usize = 2 * MAX_RECEIPT_SIZE + 64;

/// Two receipts signed by one payer for one payee with the same sequence number and different
/// contents: anyone can check it, and it proves the payer signed contradictory statements.
/// Gossiped on [`FRAUD_TOPIC`](super::FRAUD_TOPIC) as canonical CBOR `{first, second}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudProof {
    /// The first receipt.
    pub first: Receipt,
    /// The conflicting one.
    pub second: Receipt,
}

impl FraudProof {
    /// A proof from two receipts, if they are one.
    pub fn new(first: Receipt, second: Receipt) -> Option<Self> {
        let p = FraudProof { first, second };
        p.check().then_some(p)
    }

    /// Whether both verify, share payer, payee and sequence number, and state different things.
    pub fn check(&self) -> bool {
        let (a, b) = (&self.first, &self.second);
        a.verify().is_ok()
            && b.verify().is_ok()
            && a.payer == b.payer
            && a.payee == b.payee
            && a.seq == b.seq
            && !a.same_statement(b)
    }

    /// The payer that signed both.
    pub fn culprit(&self) -> Option<PeerId> {
        self.first.payer_peer()
    }

    /// Canonical CBOR, at most [`MAX_FRAUD_PROOF_SIZE`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CreditError> {
        let out = crate::codec::encode(self, FRAUD_WHAT)?;
        if out.len() > MAX_FRAUD_PROOF_SIZE {
            return Err(self.first.invalid("fraud proof over its size limit"));
        }
        Ok(out)
    }

    /// Decodes (size checked first, canonical form only) and checks it ([`FraudProof::check`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, CreditError> {
        let p: Self = crate::codec::decode(bytes, MAX_FRAUD_PROOF_SIZE, FRAUD_WHAT)?;
        if !p.check() {
            return Err(p
                .first
                .invalid("not a fraud proof (signatures, pair, number or contents)"));
        }
        Ok(p)
    }
}

const FRAUD_WHAT: &str = "credit fraud proof";
