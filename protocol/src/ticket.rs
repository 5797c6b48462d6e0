//! Placement tickets (spec: `spec/block-transfer.md`, "Placement tickets"): what binds a replica
//! to the file's origin.
//!
//! A holder keeps a block for the mesh only under a ticket `{block, rf, expires, origin,
//! signature}` signed by the origin's Ed25519 identity key: the origin is the peer that put the
//! file and pays for its copies. The ticket fixes the replication factor the holder keeps (a
//! push cannot lower or raise it) and when the replica ends: a replica is a lease, renewed by the
//! origin with a fresh ticket before `expires` and released by the holder after it. Repairers
//! forward the ticket they hold with the copies they push.
//!
//! Goals: a ticket names one block, so a holder checks it against the block it stores without
//! reading the file's manifests; its signature is checked when the message carrying it decodes
//! ([`PlacementTicket::check_signature`]); its time ([`PlacementTicket::check_time`]) against the
//! holder's clock. Non-goals: whole-file tickets (one ticket per block; renewal costs one small
//! message per block and holder per half lease), what a holder does with it (lease and quota
//! accounting live in `warren-storage-mesh`'s `lease` module).

use serde::{Deserialize, Serialize};

use crate::block_transfer::{MAX_RF, TransferError};
use crate::{ContentId, Keypair, PeerId, PublicKey};

/// Longest lease a ticket may grant, counted from the holder's clock: 7 days. A ticket that
/// expires later is refused (so nothing is placed "forever").
pub const MAX_LEASE_SECS: u64 = 7 * 24 * 3600;

/// Clock skew a holder tolerates on top of [`MAX_LEASE_SECS`].
pub const TICKET_CLOCK_SKEW_SECS: u64 = 300;

/// Prefix of the signed bytes (domain separation from every other signature of the same key).
pub const TICKET_SIGNATURE_DOMAIN: &[u8] = b"warren/placement-ticket/1\0";

const WHAT: &str = "placement ticket";

/// The origin's word that `block` is to be kept on `rf` peers until `expires`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementTicket {
    /// The block it covers.
    pub block: ContentId,
    /// Copies of the block the origin pays for (peers other than the origin), at most
    /// [`MAX_RF`].
    pub rf: u8,
    /// When the lease ends, Unix seconds.
    pub expires: u64,
    /// The origin's Ed25519 public key (32 bytes; its peer id is derived from it).
    #[serde(with = "serde_bytes")]
    pub origin: [u8; 32],
    /// Ed25519 signature by `origin` over [`PlacementTicket::signed_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

impl std::fmt::Debug for PlacementTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementTicket")
            .field("block", &self.block)
            .field("rf", &self.rf)
            .field("expires", &self.expires)
            .field("origin", &self.origin_peer().map(|p| p.to_string()))
            .finish_non_exhaustive()
    }
}

fn invalid(block: ContentId, reason: &'static str) -> TransferError {
    TransferError::InvalidField {
        what: WHAT,
        block: Some(block),
        field: "ticket",
        reason,
    }
}

impl PlacementTicket {
    /// The bytes the origin signs: the domain, the block id (binary), `rf`, `expires` (8 bytes
    /// big-endian) and the origin key.
    pub fn signed_bytes(block: &ContentId, rf: u8, expires: u64, origin: &[u8; 32]) -> Vec<u8> {
        let id = block.to_bytes();
        let mut out = Vec::with_capacity(TICKET_SIGNATURE_DOMAIN.len() + id.len() + 1 + 8 + 32);
        out.extend_from_slice(TICKET_SIGNATURE_DOMAIN);
        out.extend_from_slice(&id);
        out.push(rf);
        out.extend_from_slice(&expires.to_be_bytes());
        out.extend_from_slice(origin);
        out
    }

    /// A ticket for `block` signed with `key` (an Ed25519 identity key).
    pub fn sign(
        key: &Keypair,
        block: ContentId,
        rf: u8,
        expires: u64,
    ) -> Result<Self, TransferError> {
        if rf > MAX_RF {
            return Err(invalid(block, "rf above MAX_RF (16)"));
        }
        let origin = key
            .public()
            .try_into_ed25519()
            .map_err(|_| invalid(block, "the origin key is not Ed25519"))?
            .to_bytes();
        let signature = key
            .sign(&Self::signed_bytes(&block, rf, expires, &origin))
            .map_err(|_| invalid(block, "the origin key cannot sign"))?;
        let signature: [u8; 64] = signature
            .as_slice()
            .try_into()
            .map_err(|_| invalid(block, "the signature is not 64 bytes"))?;
        Ok(Self {
            block,
            rf,
            expires,
            origin,
            signature,
        })
    }

    /// The origin's peer id, if `origin` is a valid Ed25519 key.
    pub fn origin_peer(&self) -> Option<PeerId> {
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.origin).ok()?;
        Some(PublicKey::from(key).to_peer_id())
    }

    /// Checks what needs no clock: `rf` at most [`MAX_RF`], a valid origin key and signature.
    pub fn check_signature(&self) -> Result<(), TransferError> {
        if self.rf > MAX_RF {
            return Err(invalid(self.block, "rf above MAX_RF (16)"));
        }
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.origin)
            .map_err(|_| invalid(self.block, "origin is not an Ed25519 public key"))?;
        let signed = Self::signed_bytes(&self.block, self.rf, self.expires, &self.origin);
        if !key.verify(&signed, &self.signature) {
            return Err(invalid(self.block, "the signature does not verify"));
        }
        Ok(())
    }

    /// Checks the ticket's time against the holder's clock `now_secs`: not expired, and ending at
    /// most [`MAX_LEASE_SECS`] (plus [`TICKET_CLOCK_SKEW_SECS`]) from now.
    pub fn check_time(&self, now_secs: u64) -> Result<(), TransferError> {
        if self.expires <= now_secs {
            return Err(invalid(self.block, "expired"));
        }
        if self.expires > now_secs + MAX_LEASE_SECS + TICKET_CLOCK_SKEW_SECS {
            return Err(invalid(self.block, "its lease is longer than 7 days"));
        }
        Ok(())
    }

    /// [`check_signature`](Self::check_signature) and [`check_time`](Self::check_time).
    pub fn verify(&self, now_secs: u64) -> Result<(), TransferError> {
        self.check_signature()?;
        self.check_time(now_secs)
    }

    /// The ticket's canonical CBOR encoding (how a holder stores it).
    pub fn encode(&self) -> Result<Vec<u8>, TransferError> {
        Ok(crate::codec::encode(self, WHAT)?)
    }

    /// Decodes a stored ticket (canonical CBOR) and checks its signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, TransferError> {
        let t: Self = crate::codec::decode(bytes, 512, WHAT)?;
        t.check_signature()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use crate::Codec;
    use proptest::prelude::*;

    fn key(i: u8) -> Keypair {
        crate::keypair_from_secret([i; 32])
    }

    fn block(i: u8) -> ContentId {
        ContentId::of_block(Codec::Raw, &[i; 10])
    }

    #[test]
    fn a_signed_ticket_verifies_and_names_its_origin() {
        let k = key(1);
        let t = PlacementTicket::sign(&k, block(1), 3, 1_000).unwrap();
        t.verify(900).unwrap();
        assert_eq!(t.origin_peer(), Some(k.public().to_peer_id()));
        assert_eq!(PlacementTicket::decode(&t.encode().unwrap()).unwrap(), t);
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let t = PlacementTicket::sign(&key(1), block(1), 3, 1_000).unwrap();
        let mut changed = vec![t.clone(), t.clone(), t.clone(), t.clone()];
        changed[0].rf = 0;
        changed[1].rf = 16;
        changed[2].expires += 1;
        changed[3].block = block(2);
        for c in changed {
            let err = c.check_signature().unwrap_err();
            assert!(err.to_string().contains("signature"), "{err}");
        }
        let mut other = t.clone();
        other.origin = key(2).public().try_into_ed25519().unwrap().to_bytes();
        assert!(other.check_signature().is_err());
        let mut flipped = t;
        flipped.signature[0] ^= 1;
        assert!(flipped.check_signature().is_err());
    }

    #[test]
    fn time_is_checked_against_the_holders_clock() {
        let t = PlacementTicket::sign(&key(1), block(1), 3, 1_000).unwrap();
        assert!(
            t.check_time(1_000)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        t.check_time(999).unwrap();
        let far = PlacementTicket::sign(&key(1), block(1), 3, 10 * MAX_LEASE_SECS).unwrap();
        assert!(
            far.check_time(0)
                .unwrap_err()
                .to_string()
                .contains("7 days")
        );
        far.check_time(9 * MAX_LEASE_SECS).unwrap();
        assert!(PlacementTicket::sign(&key(1), block(1), 17, 1_000).is_err());
    }

    proptest! {
        #[test]
        fn tickets_round_trip(i in any::<u8>(), b in any::<u8>(), rf in 0u8..=16, expires in any::<u64>()) {
            let t = PlacementTicket::sign(&key(i), block(b), rf, expires).unwrap();
            let bytes = t.encode().unwrap();
            prop_assert_eq!(PlacementTicket::decode(&bytes).unwrap(), t);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PlacementTicket::decode(&bytes);
        }
    }
}
