//! Content ids (spec: `spec/storage.md`, "Content ids"): the name of every block warren stores.
//!
//! A [`ContentId`] is a CIDv1 whose multihash is the BLAKE3-256 hash of the whole block and whose
//! multicodec says what the block is: [`Codec::Raw`] for a chunk block, [`Codec::Cbor`] for a
//! manifest. In text it is written in base32 lower case with the multibase prefix `b`
//! (`bafkr4i…` for chunks, `bafir4i…` for manifests); in binary it is the 36 bytes
//! `01 <codec> 1e 20 <hash>`. Nothing else is a content id: other CID versions, codecs and hashes
//! are refused with an error that says which rule they break.
//!
//! Because the id is the plain BLAKE3 hash, it is also the root of the block's BLAKE3 (bao) tree:
//! any slice of a block can be proven against the id alone.

use std::{fmt, str::FromStr};

use cid::{Cid, Version, multihash::Multihash};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

use crate::Error;

/// Multicodec of a chunk block: raw bytes.
pub const RAW_CODEC: u64 = 0x55;
/// Multicodec of a manifest block: CBOR.
pub const CBOR_CODEC: u64 = 0x51;
/// Multihash code of BLAKE3 with a 32-byte digest.
pub const BLAKE3_CODE: u64 = 0x1e;
/// Length of a content id in binary: version, codec, hash code, digest length, digest.
pub const CONTENT_ID_LEN: usize = 36;

/// What a block holds, as the multicodec of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Codec {
    /// A chunk block (multicodec raw, 0x55).
    Raw,
    /// A manifest block (multicodec cbor, 0x51).
    Cbor,
}

impl Codec {
    /// The multicodec number.
    pub fn code(self) -> u64 {
        match self {
            Codec::Raw => RAW_CODEC,
            Codec::Cbor => CBOR_CODEC,
        }
    }

    /// The codec with this multicodec number, if warren uses it.
    pub fn from_code(code: u64) -> Option<Codec> {
        match code {
            RAW_CODEC => Some(Codec::Raw),
            CBOR_CODEC => Some(Codec::Cbor),
            _ => None,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Raw => "raw",
            Codec::Cbor => "cbor",
        })
    }
}

/// The id of a block: CIDv1, codec raw or cbor, multihash BLAKE3-256 of the block's bytes.
///
/// `Display` writes the base32 text form, `FromStr` reads any multibase text form of a CIDv1,
/// [`to_bytes`](ContentId::to_bytes)/[`from_bytes`](ContentId::from_bytes) the binary form.
/// With serde it is the text form in human-readable formats (JSON) and the binary form (a byte
/// string) in others (CBOR).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId {
    codec: Codec,
    hash: [u8; 32],
}

impl ContentId {
    /// The id of `bytes` stored as a block of kind `codec`.
    pub fn of_block(codec: Codec, bytes: &[u8]) -> Self {
        Self::from_parts(codec, *blake3::hash(bytes).as_bytes())
    }

    /// The id made of a codec and a BLAKE3 hash.
    pub fn from_parts(codec: Codec, hash: [u8; 32]) -> Self {
        Self { codec, hash }
    }

    /// What the block is.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The BLAKE3 hash of the block (the bao root of its BLAKE3 tree).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The binary form, [`CONTENT_ID_LEN`] bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTENT_ID_LEN);
        // Every number here is below 0x80, so each varint is one byte.
        out.extend_from_slice(&[1, self.codec.code() as u8, BLAKE3_CODE as u8, 32]);
        out.extend_from_slice(&self.hash);
        out
    }

    /// Reads the binary form. Refuses anything but one CIDv1 with a warren codec and a BLAKE3-256
    /// multihash filling `bytes` exactly, in its one (minimal varint) encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidCid {
            input: cut(&hex::encode(bytes)),
            reason,
        };
        let mut reader = bytes;
        let cid = Cid::read_bytes(&mut reader).map_err(|e| invalid(e.to_string()))?;
        if !reader.is_empty() {
            return Err(invalid(format!(
                "{} trailing bytes after the CID",
                reader.len()
            )));
        }
        let id = Self::try_from(cid)?;
        if id.to_bytes() != bytes {
            return Err(invalid("not in its minimal encoding".into()));
        }
        Ok(id)
    }

    /// Checks that `bytes` are the block this id names.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), Error> {
        if blake3::hash(bytes).as_bytes() == &self.hash {
            Ok(())
        } else {
            Err(Error::HashMismatch {
                cid: *self,
                len: bytes.len(),
            })
        }
    }

    /// The id as a [`Cid`].
    pub fn to_cid(&self) -> Cid {
        match Multihash::wrap(BLAKE3_CODE, &self.hash) {
            Ok(mh) => Cid::new_v1(self.codec.code(), mh),
            // A 32-byte digest always fits the default 64-byte multihash.
            Err(_) => unreachable!("a 32-byte digest fits a Multihash<64>"),
        }
    }
}

/// Cuts text shown in an error to 100 characters.
fn cut(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl TryFrom<Cid> for ContentId {
    type Error = Error;

    fn try_from(cid: Cid) -> Result<Self, Error> {
        if cid.version() != Version::V1 {
            return Err(Error::InvalidCid {
                input: cid.to_string(),
                reason: "CIDv0 is not supported, only CIDv1".into(),
            });
        }
        let codec = Codec::from_code(cid.codec()).ok_or_else(|| Error::UnsupportedCodec {
            cid: cid.to_string(),
            codec: cid.codec(),
        })?;
        let mh = cid.hash();
        let hash: [u8; 32] = match (mh.code(), mh.digest().try_into()) {
            (BLAKE3_CODE, Ok(hash)) => hash,
            _ => {
                return Err(Error::UnsupportedHash {
                    cid: cid.to_string(),
                    code: mh.code(),
                    len: mh.size(),
                });
            }
        };
        Ok(Self { codec, hash })
    }
}

impl From<ContentId> for Cid {
    fn from(id: ContentId) -> Cid {
        id.to_cid()
    }
}

impl fmt::Display for ContentId {
    /// Base32 lower case with the multibase prefix `b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_cid(), f)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let cid = Cid::try_from(s).map_err(|e| Error::InvalidCid {
            input: cut(s),
            reason: e.to_string(),
        })?;
        Self::try_from(cid)
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.to_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?.parse().map_err(D::Error::custom)
        } else {
            let bytes = serde_bytes::ByteBuf::deserialize(d)?;
            ContentId::from_bytes(&bytes).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn binary_form_is_36_bytes_with_one_byte_varints() {
        let id = ContentId::of_block(Codec::Raw, b"hello\n");
        let bytes = id.to_bytes();
        assert_eq!(bytes.len(), CONTENT_ID_LEN);
        assert_eq!(&bytes[..4], &[0x01, 0x55, 0x1e, 0x20]);
        assert_eq!(&bytes[4..], blake3::hash(b"hello\n").as_bytes());
        assert_eq!(bytes, id.to_cid().to_bytes());
        let m = ContentId::of_block(Codec::Cbor, b"x");
        assert_eq!(&m.to_bytes()[..4], &[0x01, 0x51, 0x1e, 0x20]);
    }

    #[test]
    fn text_form_is_base32_lower() {
        let chunk = ContentId::of_block(Codec::Raw, b"");
        let manifest = ContentId::of_block(Codec::Cbor, b"");
        assert!(chunk.to_string().starts_with("bafkr4i"), "{chunk}");
        assert!(manifest.to_string().starts_with("bafir4i"), "{manifest}");
        assert_eq!(chunk.to_string(), chunk.to_string().to_lowercase());
        assert_eq!(chunk.to_string().parse::<ContentId>().unwrap(), chunk);
        assert_eq!(format!("{chunk:?}"), format!("ContentId({chunk})"));
    }

    #[test]
    fn accepts_other_multibases_and_prints_base32() {
        let id = ContentId::of_block(Codec::Cbor, b"abc");
        let b58 = id
            .to_cid()
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        assert!(b58.starts_with('z'));
        assert_eq!(b58.parse::<ContentId>().unwrap(), id);
    }

    #[test]
    fn verify_names_the_block() {
        let id = ContentId::of_block(Codec::Raw, b"good");
        id.verify(b"good").unwrap();
        let err = id.verify(b"evil").unwrap_err();
        assert_eq!(err, Error::HashMismatch { cid: id, len: 4 });
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }

    #[test]
    fn refuses_other_codecs_and_hashes() {
        let sha = Multihash::<64>::wrap(0x12, &[7; 32]).unwrap();
        let dag_pb = Cid::new_v1(0x70, Multihash::wrap(BLAKE3_CODE, &[7; 32]).unwrap());
        let err = dag_pb.to_string().parse::<ContentId>().unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedCodec { codec: 0x70, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("0x70"), "{err}");

        let sha_raw = Cid::new_v1(RAW_CODEC, sha);
        let err = ContentId::from_bytes(&sha_raw.to_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedHash {
                    code: 0x12,
                    len: 32,
                    ..
                }
            ),
            "{err}"
        );

        let short = Cid::new_v1(RAW_CODEC, Multihash::wrap(BLAKE3_CODE, &[7; 16]).unwrap());
        let err = short.to_string().parse::<ContentId>().unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedHash { len: 16, .. }),
            "{err}"
        );

        let v0 = Cid::new_v0(sha).unwrap();
        let err = v0.to_string().parse::<ContentId>().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidCid { reason, .. } if reason.contains("CIDv0")),
            "{err}"
        );
    }

    #[test]
    fn refuses_garbage_trailing_and_non_minimal_bytes() {
        for text in ["", "hello", "bafk", "b!!!!"] {
            let err = text.parse::<ContentId>().unwrap_err();
            assert!(matches!(err, Error::InvalidCid { .. }), "{text:?}: {err}");
        }
        let id = ContentId::of_block(Codec::Raw, b"x");
        let mut trailing = id.to_bytes();
        trailing.push(0);
        let err = ContentId::from_bytes(&trailing).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidCid { reason, .. } if reason.contains("trailing")),
            "{err}"
        );
        let bytes = id.to_bytes();
        for n in 0..bytes.len() {
            assert!(ContentId::from_bytes(&bytes[..n]).is_err(), "{n}");
        }
        // The codec 0x55 as a two-byte varint.
        let mut long = vec![0x01, 0xd5, 0x00];
        long.extend_from_slice(&bytes[2..]);
        assert!(ContentId::from_bytes(&long).is_err());
    }

    #[test]
    fn long_input_is_cut_in_errors() {
        let err = "x".repeat(1000).parse::<ContentId>().unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }

    #[test]
    fn serde_is_text_for_json_and_bytes_for_cbor() {
        let id = ContentId::of_block(Codec::Cbor, b"m");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ContentId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ContentId>("\"bafy\"").is_err());
        let cbor = crate::codec::encode(&id, "id").unwrap();
        assert_eq!(cbor[..2], [0x58, 36]); // byte string, one-byte length
        assert_eq!(&cbor[2..], &id.to_bytes()[..]);
        let back: ContentId = crate::codec::decode(&cbor, 100, "id").unwrap();
        assert_eq!(back, id);
    }

    proptest! {
        #[test]
        fn binary_and_text_round_trip(hash in any::<[u8; 32]>(), cbor in any::<bool>()) {
            let codec = if cbor { Codec::Cbor } else { Codec::Raw };
            let id = ContentId::from_parts(codec, hash);
            prop_assert_eq!(ContentId::from_bytes(&id.to_bytes()).unwrap(), id);
            prop_assert_eq!(id.to_string().parse::<ContentId>().unwrap(), id);
            prop_assert_eq!(id.codec(), codec);
            prop_assert_eq!(id.hash(), hash);
        }

        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(id) = ContentId::from_bytes(&bytes) {
                prop_assert_eq!(id.to_bytes(), bytes);
            }
        }

        #[test]
        fn from_str_never_panics(text in "\\PC{0,80}") {
            if let Ok(id) = text.parse::<ContentId>() {
                prop_assert_eq!(id.to_string().parse::<ContentId>().unwrap(), id);
            }
        }
    }
}
