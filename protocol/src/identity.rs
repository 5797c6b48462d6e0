//! Identities (spec: `spec/identity.md`).
//!
//! A peer is its Ed25519 key: the [`PeerId`](crate::PeerId) is derived from it and every node record is signed by
//! it. Its onion hops use a second, X25519 static key ([`OnionSecret`]) whose public half the node
//! record carries. Both secrets come from the caller (this crate has no RNG); on disk the identity
//! key is libp2p's protobuf keypair encoding ([`encode_keypair`]) and the onion key is its 32 raw
//! bytes ([`OnionSecret::to_bytes`]), both in owner-only files.
//!
//! Only Ed25519 is accepted, and only in the canonical protobuf encoding, so that a key has exactly
//! one encoding and one [`PeerId`](crate::PeerId).

use std::fmt;

use libp2p_identity::{KeyType, ed25519};

use crate::{Error, Keypair, PublicKey};

/// Largest identity key file [`decode_keypair`] reads. An Ed25519 key file is 68 bytes.
pub const MAX_KEY_FILE_SIZE: usize = 1024;

/// The protobuf header of an Ed25519 private key: field 1 (`Type`) = 1 (Ed25519), field 2 (`Data`)
/// of 64 bytes.
const ED25519_KEYPAIR_HEADER: [u8; 4] = [0x08, 0x01, 0x12, 0x40];

/// Builds the Ed25519 identity whose 32-byte secret (RFC 8032 seed) is `secret`.
///
/// The caller supplies the randomness (for a new identity: 32 bytes from the OS RNG).
pub fn keypair_from_secret(secret: [u8; 32]) -> Keypair {
    match ed25519::SecretKey::try_from_bytes(secret) {
        Ok(sk) => Keypair::from(ed25519::Keypair::from(sk)),
        // `try_from_bytes` fails only for input that is not 32 bytes long.
        Err(_) => unreachable!("any 32 bytes are an Ed25519 secret key"),
    }
}

/// Encodes an Ed25519 identity in the key-file format: libp2p's protobuf `PrivateKey`
/// (`08 01 12 40` ++ 32-byte secret ++ 32-byte public key, 68 bytes).
pub fn encode_keypair(key: &Keypair) -> Result<Vec<u8>, Error> {
    require_ed25519("identity key", key.key_type())?;
    key.to_protobuf_encoding().map_err(|e| Error::InvalidKey {
        what: "identity key",
        detail: e.to_string(),
    })
}

/// Decodes a key file written by [`encode_keypair`].
///
/// Refuses input over [`MAX_KEY_FILE_SIZE`] before parsing, any key type but Ed25519, a public half
/// that does not match the secret, and any encoding other than the canonical one.
pub fn decode_keypair(bytes: &[u8]) -> Result<Keypair, Error> {
    const WHAT: &str = "identity key";
    if bytes.len() > MAX_KEY_FILE_SIZE {
        return Err(Error::TooLarge {
            what: WHAT,
            len: bytes.len(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    check_declared_type(WHAT, bytes)?;
    let key = Keypair::from_protobuf_encoding(bytes).map_err(|e| Error::InvalidKey {
        what: WHAT,
        detail: e.to_string(),
    })?;
    require_ed25519(WHAT, key.key_type())?;
    if bytes.len() != 68 || bytes[..4] != ED25519_KEYPAIR_HEADER {
        return Err(Error::InvalidKey {
            what: WHAT,
            detail: format!(
                "not the canonical 68-byte Ed25519 encoding ({} bytes)",
                bytes.len()
            ),
        });
    }
    Ok(key)
}

/// Decodes a libp2p protobuf-encoded public key that must be Ed25519 in canonical form
/// (`08 01 12 20` ++ 32 bytes).
pub(crate) fn decode_ed25519_public_key(
    what: &'static str,
    bytes: &[u8],
) -> Result<PublicKey, Error> {
    check_declared_type(what, bytes)?;
    let key = PublicKey::try_decode_protobuf(bytes).map_err(|e| Error::InvalidKey {
        what,
        detail: e.to_string(),
    })?;
    require_ed25519(what, key.key_type())?;
    if key.encode_protobuf() != bytes {
        return Err(Error::InvalidKey {
            what,
            detail: format!(
                "not the canonical 36-byte Ed25519 encoding ({} bytes)",
                bytes.len()
            ),
        });
    }
    Ok(key)
}

fn require_ed25519(what: &'static str, key_type: KeyType) -> Result<(), Error> {
    if key_type == KeyType::Ed25519 {
        Ok(())
    } else {
        Err(Error::UnsupportedKeyType {
            what,
            key_type: key_type.to_string(),
        })
    }
}

/// Reads the key type a protobuf key declares in its first field, so that an RSA, secp256k1 or
/// ECDSA key is reported as such whichever key types libp2p was built with.
fn check_declared_type(what: &'static str, bytes: &[u8]) -> Result<(), Error> {
    let name = match bytes {
        [0x08, 0x01, ..] => return Ok(()),
        [0x08, 0x00, ..] => "RSA".to_owned(),
        [0x08, 0x02, ..] => "Secp256k1".to_owned(),
        [0x08, 0x03, ..] => "ECDSA".to_owned(),
        [0x08, t, ..] => format!("unknown ({t:#04x})"),
        _ => return Ok(()), // not even a key type field: libp2p's parser says why
    };
    Err(Error::UnsupportedKeyType {
        what,
        key_type: name,
    })
}

/// The X25519 static secret of a peer's onion hops (the `s` of the Noise NK handshake).
///
/// Its public half goes into the node record as `onion_key`. `Debug` does not print the secret.
#[derive(Clone)]
pub struct OnionSecret(x25519_dalek::StaticSecret);

impl OnionSecret {
    /// Size of the onion key file: the raw secret.
    pub const FILE_SIZE: usize = 32;

    /// Wraps 32 secret bytes (from the caller's RNG, or read from the onion key file).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self(x25519_dalek::StaticSecret::from(secret))
    }

    /// Parses the onion key file: exactly [`OnionSecret::FILE_SIZE`] raw bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let secret: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidKey {
            what: "onion key",
            detail: format!("expected {} bytes, found {}", Self::FILE_SIZE, bytes.len()),
        })?;
        Ok(Self::from_bytes(secret))
    }

    /// The secret bytes, as written to the onion key file.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key, as published in the node record.
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    /// X25519 with a peer's public key. The caller must reject an all-zero result (a low-order
    /// point), as Noise implementations do.
    pub fn diffie_hellman(&self, their_public: &[u8; 32]) -> [u8; 32] {
        self.0
            .diffie_hellman(&x25519_dalek::PublicKey::from(*their_public))
            .to_bytes()
    }
}

impl fmt::Debug for OnionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnionSecret")
            .field("public", &hex::encode(self.public()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> [u8; 32] {
        std::array::from_fn(|i| i as u8 + 1)
    }

    #[test]
    fn keypair_is_deterministic_in_its_secret() {
        let a = keypair_from_secret(secret());
        let b = keypair_from_secret(secret());
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), keypair_from_secret([0; 32]).public());
        // RFC 8032 seed: the secret half of the key file is the input.
        let file = encode_keypair(&a).unwrap();
        assert_eq!(file[..4], ED25519_KEYPAIR_HEADER);
        assert_eq!(file[4..36], secret());
    }

    #[test]
    fn key_file_round_trips() {
        let key = keypair_from_secret(secret());
        let file = encode_keypair(&key).unwrap();
        assert_eq!(file.len(), 68);
        let back = decode_keypair(&file).unwrap();
        assert_eq!(back.public(), key.public());
        assert_eq!(encode_keypair(&back).unwrap(), file);
    }

    #[test]
    fn key_file_rejects_garbage() {
        let file = encode_keypair(&keypair_from_secret(secret())).unwrap();
        // truncated
        for n in 0..file.len() {
            assert!(decode_keypair(&file[..n]).is_err(), "{n}");
        }
        // public half that does not match the secret
        let mut bad = file.clone();
        bad[67] ^= 1;
        assert!(matches!(
            decode_keypair(&bad),
            Err(Error::InvalidKey { .. })
        ));
        // trailing bytes
        let mut long = file.clone();
        long.push(0);
        assert!(decode_keypair(&long).is_err());
        // oversize: refused before parsing
        let err = decode_keypair(&[0; MAX_KEY_FILE_SIZE + 1]).unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                what: "identity key",
                len: MAX_KEY_FILE_SIZE + 1,
                limit: MAX_KEY_FILE_SIZE
            }
        );
    }

    #[test]
    fn key_file_rejects_other_key_types() {
        // A secp256k1 private key: Type = 2, Data = 32 bytes.
        let mut file = vec![0x08, 0x02, 0x12, 0x20];
        file.extend_from_slice(&[7; 32]);
        let err = decode_keypair(&file).unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedKeyType {
                what: "identity key",
                key_type: "Secp256k1".into()
            }
        );
    }

    #[test]
    fn public_key_must_be_canonical_ed25519() {
        let public = keypair_from_secret(secret()).public().encode_protobuf();
        assert_eq!(public[..4], [0x08, 0x01, 0x12, 0x20]);
        assert_eq!(
            decode_ed25519_public_key("k", &public).unwrap(),
            keypair_from_secret(secret()).public()
        );

        // Same key with the two fields swapped: valid protobuf, not canonical.
        let mut swapped = public[2..].to_vec();
        swapped.extend_from_slice(&public[..2]);
        assert!(matches!(
            decode_ed25519_public_key("k", &swapped),
            Err(Error::InvalidKey { .. })
        ));

        let mut rsa = vec![0x08, 0x00, 0x12, 0x04];
        rsa.extend_from_slice(&[1, 2, 3, 4]);
        assert!(matches!(
            decode_ed25519_public_key("k", &rsa),
            Err(Error::UnsupportedKeyType { .. })
        ));
    }

    #[test]
    fn onion_secret_round_trips() {
        let s = OnionSecret::from_bytes(secret());
        assert_eq!(s.to_bytes(), secret());
        assert_eq!(OnionSecret::decode(&secret()).unwrap().public(), s.public());
        assert!(matches!(
            OnionSecret::decode(&[0; 31]),
            Err(Error::InvalidKey { .. })
        ));
        assert!(!format!("{s:?}").contains(&hex::encode(secret())));
    }

    #[test]
    fn onion_diffie_hellman_agrees() {
        let a = OnionSecret::from_bytes([1; 32]);
        let b = OnionSecret::from_bytes([2; 32]);
        assert_eq!(a.diffie_hellman(&b.public()), b.diffie_hellman(&a.public()));
    }
}
