//! The one place CBOR is produced and parsed.
//!
//! `serde_cbor` 0.11 is unmaintained; everything else in the crate goes through [`encode`] and
//! [`decode`], so swapping it for another CBOR implementation touches only this file (and the
//! byte-exact vectors in `spec/` say whether the swap changed the wire).
//!
//! The encoding is deterministic: structs are maps with text keys in declaration order, integers in
//! their shortest form, definite lengths only. [`decode`] accepts exactly that form and nothing else:
//! it checks the size limit before reading a byte, rejects trailing bytes, and re-encodes the value
//! to reject any other spelling of it (so every value has one encoding, and a decoded value always
//! re-encodes to the bytes it came from).

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// Encodes `v` as canonical CBOR.
pub(crate) fn encode<T: Serialize>(v: &T, what: &'static str) -> Result<Vec<u8>, Error> {
    serde_cbor::to_vec(v).map_err(|e| Error::Encode {
        what,
        detail: e.to_string(),
    })
}

/// Decodes one canonical CBOR value of type `T` that must fill `bytes` exactly.
///
/// `limit` is checked against `bytes.len()` before anything is parsed. `what` names the value in
/// errors.
pub(crate) fn decode<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, Error> {
    if bytes.len() > limit {
        return Err(Error::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    let mut de = serde_cbor::Deserializer::from_slice(bytes)
        .disable_packed_format()
        .disable_legacy_enums();
    let value = T::deserialize(&mut de).map_err(|e| Error::Malformed {
        what,
        detail: e.to_string(),
    })?;
    let consumed = de.byte_offset();
    if consumed != bytes.len() {
        return Err(Error::TrailingBytes {
            what,
            consumed,
            extra: bytes.len() - consumed,
        });
    }
    let canonical = encode(&value, what)?;
    if canonical != bytes {
        return Err(Error::NonCanonical {
            what,
            len: bytes.len(),
            canonical_len: canonical.len(),
        });
    }
    Ok(value)
}

/// Reads a value leniently (unknown fields ignored, no canonical check), for looking at one field
/// of a value that [`decode`] refused, such as the version of a newer record format. Never use the
/// result as the decoded value.
pub(crate) fn probe<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Option<T> {
    if bytes.len() > limit {
        return None;
    }
    serde_cbor::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        a: u64,
        #[serde(with = "serde_bytes")]
        b: Vec<u8>,
    }

    fn pair() -> Pair {
        Pair {
            a: 1,
            b: vec![0xaa],
        }
    }

    #[test]
    fn encodes_map_with_text_keys_in_declaration_order() {
        // {"a": 1, "b": h'aa'}
        assert_eq!(
            encode(&pair(), "pair").unwrap(),
            [0xa2, 0x61, b'a', 0x01, 0x61, b'b', 0x41, 0xaa]
        );
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&pair(), "pair").unwrap();
        assert_eq!(decode::<Pair>(&bytes, 100, "pair").unwrap(), pair());
    }

    #[test]
    fn checks_limit_before_parsing() {
        // Garbage that would fail to parse: the size error must win.
        let err = decode::<Pair>(&[0xff; 9], 8, "pair").unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                what: "pair",
                len: 9,
                limit: 8
            }
        );
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&pair(), "pair").unwrap();
        bytes.push(0x00);
        let err = decode::<Pair>(&bytes, 100, "pair").unwrap_err();
        assert_eq!(
            err,
            Error::TrailingBytes {
                what: "pair",
                consumed: 8,
                extra: 1
            }
        );
    }

    #[test]
    fn rejects_truncated_input() {
        let bytes = encode(&pair(), "pair").unwrap();
        for n in 0..bytes.len() {
            let err = decode::<Pair>(&bytes[..n], 100, "pair").unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{n}: {err}");
        }
    }

    #[test]
    fn rejects_unknown_fields() {
        // {"a": 1, "b": h'aa', "c": 0}
        let bytes = [
            0xa3, 0x61, b'a', 0x01, 0x61, b'b', 0x41, 0xaa, 0x61, b'c', 0x00,
        ];
        let err = decode::<Pair>(&bytes, 100, "pair").unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { detail, .. } if detail.contains("unknown field")),
            "{err}"
        );
    }

    #[test]
    fn rejects_non_canonical_spellings() {
        let cases: &[&[u8]] = &[
            // a = 1 as a two-byte integer
            &[0xa2, 0x61, b'a', 0x18, 0x01, 0x61, b'b', 0x41, 0xaa],
            // keys out of declaration order
            &[0xa2, 0x61, b'b', 0x41, 0xaa, 0x61, b'a', 0x01],
            // indefinite-length map
            &[0xbf, 0x61, b'a', 0x01, 0x61, b'b', 0x41, 0xaa, 0xff],
            // b as an array of integers instead of a byte string
            &[0xa2, 0x61, b'a', 0x01, 0x61, b'b', 0x81, 0x18, 0xaa],
            // wrapped in the self-describe tag 55799
            &[
                0xd9, 0xd9, 0xf7, 0xa2, 0x61, b'a', 0x01, 0x61, b'b', 0x41, 0xaa,
            ],
        ];
        for bytes in cases {
            let err = decode::<Pair>(bytes, 100, "pair").unwrap_err();
            assert!(
                matches!(err, Error::NonCanonical { .. }),
                "{}: {err}",
                hex::encode(bytes)
            );
        }
    }

    #[test]
    fn rejects_duplicate_map_keys() {
        // {"x": "1", "x": "2"} decodes into a one-entry map, so it cannot re-encode to itself.
        let bytes = [0xa2, 0x61, b'x', 0x61, b'1', 0x61, b'x', 0x61, b'2'];
        let err = decode::<BTreeMap<String, String>>(&bytes, 100, "map").unwrap_err();
        assert!(matches!(err, Error::NonCanonical { .. }), "{err}");
    }
}
