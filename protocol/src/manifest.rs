//! The manifest (spec: `spec/storage.md`, "Manifest"): what a file is made of.
//!
//! A file is cut into chunks of [`CHUNK_SIZE`] bytes (the last one shorter); each chunk is stored
//! as a block with a raw id. A manifest lists, in order, the ids of the chunks (depth 0) or of
//! child manifests (depth ≥ 1) with how many file bytes each covers, and is itself stored as a
//! block with a cbor id. One manifest holds at most [`MANIFEST_FANOUT`] entries, so a depth-0
//! manifest covers at most 1 GiB and larger files get a tree; the id of the root manifest is the
//! file's id.
//!
//! The tree of a file is unique: every entry but the last covers as much as an entry at that
//! depth can ([`Manifest::entry_capacity`]), the last covers the rest, and a manifest of depth ≥ 1
//! has at least two entries. [`Manifest::validate`] enforces that, so the same bytes (with the same
//! name and media type) always get the same id, and a reader can check sizes level by level.

use serde::{Deserialize, Serialize};

use crate::{
    Codec, ContentId, Error, codec,
    directory::{DIRECTORY_MEDIA_TYPE, DIRECTORY_VERSION},
    error::Subject,
};

/// The manifest format this implementation writes and reads.
pub const MANIFEST_VERSION: u16 = 1;
/// Bytes of a file per chunk (the last chunk of a file may be shorter).
pub const CHUNK_SIZE: usize = 1 << 20;
/// Most entries in one manifest.
pub const MANIFEST_FANOUT: usize = 1024;
/// Largest encoded manifest, checked before decoding.
pub const MAX_MANIFEST_SIZE: usize = 128 * 1024;
/// Deepest manifest tree (depth of the root). Depth 4 already covers any `u64` size.
pub const MAX_MANIFEST_DEPTH: u8 = 8;
/// Longest file name, in bytes of UTF-8.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest media type, in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 127;

/// One entry of a manifest: a chunk (depth 0) or a child manifest (depth ≥ 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Id of the chunk block ([`Codec::Raw`]) or child manifest ([`Codec::Cbor`]).
    #[serde(with = "cid_bytes")]
    pub cid: ContentId,
    /// File bytes the entry covers.
    pub raw_len: u64,
    /// Bytes stored for the entry: the chunk block's length (tag byte included), or for a child
    /// manifest the length of its block plus the `stored_len` of all its entries.
    pub stored_len: u64,
}

/// A manifest. Encoded as a CBOR map with the fields in this order; see `spec/storage.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u16,
    /// File bytes covered: the sum of the entries' `raw_len`.
    pub size: u64,
    /// 0: the entries are chunks; d ≥ 1: the entries are manifests of depth d − 1.
    pub depth: u8,
    /// The entries, in file order (at most [`MANIFEST_FANOUT`]).
    pub entries: Vec<ManifestEntry>,
    /// The file's name (root manifest only; at most [`MAX_FILE_NAME_LEN`] bytes).
    pub name: Option<String>,
    /// The file's media type, e.g. `text/plain` (root manifest only; at most
    /// [`MAX_MEDIA_TYPE_LEN`] bytes).
    pub media_type: Option<String>,
}

/// `ContentId` ⇄ byte string, whatever the format (the manifest's wire form is fixed here, not by
/// `ContentId`'s own serde impl).
mod cid_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use serde_bytes::ByteBuf;

    use crate::ContentId;

    pub(super) fn serialize<S: Serializer>(id: &ContentId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&id.to_bytes())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ContentId, D::Error> {
        let bytes = ByteBuf::deserialize(d)?;
        ContentId::from_bytes(&bytes)
            .map_err(|e| D::Error::custom(format_args!("field `cid`: {e}")))
    }
}

impl Manifest {
    /// The manifest of an empty file: depth 0, no entries.
    pub fn empty(name: Option<String>, media_type: Option<String>) -> Self {
        Self {
            version: MANIFEST_VERSION,
            size: 0,
            depth: 0,
            entries: Vec::new(),
            name,
            media_type,
        }
    }

    /// File bytes one entry of a manifest of `depth` covers when full: [`CHUNK_SIZE`] ×
    /// [`MANIFEST_FANOUT`]^`depth`.
    pub fn entry_capacity(depth: u8) -> u128 {
        (CHUNK_SIZE as u128) * (MANIFEST_FANOUT as u128).pow(u32::from(depth))
    }

    /// Whether this is a directory's root (version [`DIRECTORY_VERSION`]): its content is a
    /// [`Directory`](crate::Directory) listing, not a file.
    pub fn is_directory(&self) -> bool {
        self.version == DIRECTORY_VERSION
    }

    /// Bytes stored for the whole tree under this manifest, given the length of its own block.
    pub fn stored_total(&self, own_len: usize) -> u64 {
        self.entries
            .iter()
            .fold(own_len as u64, |sum, e| sum.saturating_add(e.stored_len))
    }

    /// Checks every rule of `spec/storage.md` that a manifest must satisfy on its own.
    pub fn validate(&self) -> Result<(), Error> {
        self.check(&|| Subject::Manifest(None))
    }

    /// Checks the rule only a file's root manifest must satisfy (on top of
    /// [`validate`](Self::validate)): above depth 0 it has at least two entries, since a file
    /// that fits one entry gets a shallower tree. (Below the root, the last manifest of each level
    /// may have a single entry: every chunk sits at the same depth.)
    pub fn validate_root(&self) -> Result<(), Error> {
        if self.depth > 0 && self.entries.len() < 2 {
            return Err(Error::InvalidField {
                subject: Subject::Manifest(None),
                field: "entries".into(),
                reason: format!(
                    "a root manifest of depth {} must have at least 2 entries, it has {} \
                     (a smaller file gets a shallower tree)",
                    self.depth,
                    self.entries.len()
                ),
            });
        }
        Ok(())
    }

    /// Validates and encodes the manifest as canonical CBOR.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        self.validate()?;
        let bytes = codec::encode(self, "manifest")?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                what: "manifest",
                len: bytes.len(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        Ok(bytes)
    }

    /// [`encode`](Self::encode)s the manifest and returns its block with the block's id.
    pub fn to_block(&self) -> Result<(ContentId, Vec<u8>), Error> {
        let bytes = self.encode()?;
        Ok((ContentId::of_block(Codec::Cbor, &bytes), bytes))
    }

    /// Decodes and validates a manifest block. Checks the size limit before parsing, and refuses
    /// trailing bytes and any encoding but the canonical one. Validation errors name the
    /// manifest's id.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, Error> {
        let manifest: Manifest = codec::decode(bytes, MAX_MANIFEST_SIZE, "manifest")?;
        let id = ContentId::of_block(Codec::Cbor, bytes);
        manifest.check(&|| Subject::Manifest(Some(Box::new(id))))?;
        Ok(manifest)
    }

    fn check(&self, subject: &dyn Fn() -> Subject) -> Result<(), Error> {
        let invalid = |field: String, reason: String| Error::InvalidField {
            subject: subject(),
            field,
            reason,
        };
        if self.version != MANIFEST_VERSION && self.version != DIRECTORY_VERSION {
            return Err(Error::UnsupportedVersion {
                subject: subject(),
                found: self.version,
                supported: DIRECTORY_VERSION,
            });
        }
        if self.is_directory()
            && (self.name.is_some() || self.media_type.as_deref() != Some(DIRECTORY_MEDIA_TYPE))
        {
            return Err(invalid(
                "media_type".into(),
                format!(
                    "a version-{DIRECTORY_VERSION} manifest is a directory: no name, media type \
                     {DIRECTORY_MEDIA_TYPE}"
                ),
            ));
        }
        if self.depth > MAX_MANIFEST_DEPTH {
            return Err(invalid(
                "depth".into(),
                format!("{} is deeper than {MAX_MANIFEST_DEPTH}", self.depth),
            ));
        }
        if self.entries.len() > MANIFEST_FANOUT {
            return Err(Error::TooMany {
                subject: subject(),
                field: "entries",
                count: self.entries.len(),
                max: MANIFEST_FANOUT,
            });
        }
        if self.depth > 0 && self.entries.is_empty() {
            return Err(invalid(
                "entries".into(),
                format!("a manifest of depth {} must have entries", self.depth),
            ));
        }
        check_text(&self.name, "name", MAX_FILE_NAME_LEN, subject, |c| {
            !c.is_control()
        })?;
        check_text(
            &self.media_type,
            "media_type",
            MAX_MEDIA_TYPE_LEN,
            subject,
            |c| c.is_ascii() && !c.is_ascii_control(),
        )?;
        if let Some(media_type) = &self.media_type
            && !media_type.contains('/')
        {
            return Err(invalid(
                "media_type".into(),
                "must have the form type/subtype".into(),
            ));
        }

        let (codec, what) = if self.depth == 0 {
            (Codec::Raw, "chunk")
        } else {
            (Codec::Cbor, "manifest")
        };
        let capacity = Self::entry_capacity(self.depth);
        let last = self.entries.len().saturating_sub(1);
        let mut sum: u128 = 0;
        for (i, e) in self.entries.iter().enumerate() {
            if e.cid.codec() != codec {
                return Err(invalid(
                    format!("entries[{i}].cid"),
                    format!(
                        "{} has codec {}, but the entries of a depth-{} manifest are {what}s \
                         (codec {codec})",
                        e.cid,
                        e.cid.codec(),
                        self.depth
                    ),
                ));
            }
            let raw = u128::from(e.raw_len);
            let ok = if i < last {
                raw == capacity
            } else {
                raw >= 1 && raw <= capacity
            };
            if !ok {
                let rule = if i < last {
                    format!("every entry but the last must cover exactly {capacity} bytes")
                } else {
                    format!("the last entry must cover 1 to {capacity} bytes")
                };
                return Err(invalid(
                    format!("entries[{i}].raw_len"),
                    format!("{} ({rule})", e.raw_len),
                ));
            }
            // A chunk block is a tag byte and a payload: raw (raw_len bytes) or brotli (shorter).
            let stored_ok = if self.depth == 0 {
                e.stored_len >= 2 && e.stored_len <= e.raw_len.saturating_add(1)
            } else {
                e.stored_len >= 1
            };
            if !stored_ok {
                return Err(invalid(
                    format!("entries[{i}].stored_len"),
                    format!("{} is impossible for {} raw bytes", e.stored_len, e.raw_len),
                ));
            }
            sum += raw;
        }
        if sum != u128::from(self.size) {
            return Err(invalid(
                "size".into(),
                format!(
                    "{} is not the sum of the entries' raw_len ({sum})",
                    self.size
                ),
            ));
        }
        Ok(())
    }
}

fn check_text(
    text: &Option<String>,
    field: &'static str,
    max: usize,
    subject: &dyn Fn() -> Subject,
    allowed: fn(char) -> bool,
) -> Result<(), Error> {
    let Some(text) = text else { return Ok(()) };
    if text.len() > max {
        return Err(Error::TooLong {
            subject: subject(),
            field: field.into(),
            len: text.len(),
            max,
        });
    }
    let reason = if text.is_empty() {
        "empty (leave it out instead)"
    } else if !text.chars().all(allowed) {
        "contains a control or otherwise disallowed character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidField {
        subject: subject(),
        field: field.into(),
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chunk(i: u32) -> ContentId {
        ContentId::of_block(Codec::Raw, &i.to_le_bytes())
    }

    fn leaf(raw_lens: &[u64]) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            size: raw_lens.iter().sum(),
            depth: 0,
            entries: raw_lens
                .iter()
                .enumerate()
                .map(|(i, &raw_len)| ManifestEntry {
                    cid: chunk(i as u32),
                    raw_len,
                    stored_len: raw_len / 2 + 2,
                })
                .collect(),
            name: Some("notes.txt".into()),
            media_type: Some("text/plain".into()),
        }
    }

    const MIB: u64 = CHUNK_SIZE as u64;

    #[test]
    fn round_trips_and_names_field_order() {
        let m = leaf(&[MIB, 6]);
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // {"version": 1, "size": …
        assert_eq!(
            &bytes[..13],
            &[
                0xa6, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x01, 0x64, b's', b'i'
            ]
        );
        let (id, block) = m.to_block().unwrap();
        assert_eq!(block, bytes);
        assert_eq!(id, ContentId::of_block(Codec::Cbor, &bytes));
    }

    #[test]
    fn empty_file_manifest_is_valid() {
        let m = Manifest::empty(None, None);
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn full_manifest_fits_the_limit() {
        let mut m = leaf(&vec![MIB; MANIFEST_FANOUT]);
        for e in &mut m.entries {
            e.raw_len = MIB;
            e.stored_len = MIB + 1;
        }
        m.name = Some("n".repeat(MAX_FILE_NAME_LEN));
        m.media_type = Some(format!("a/{}", "b".repeat(MAX_MEDIA_TYPE_LEN - 2)));
        let bytes = m.encode().unwrap();
        assert!(bytes.len() < MAX_MANIFEST_SIZE, "{}", bytes.len());
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn limit_is_checked_before_parsing() {
        let err = Manifest::decode(&vec![0xff; MAX_MANIFEST_SIZE + 1]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let bytes = leaf(&[MIB, 6]).encode().unwrap();
        for n in 0..bytes.len() {
            let err = Manifest::decode(&bytes[..n]).unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{n}: {err}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        let err = Manifest::decode(&trailing).unwrap_err();
        assert!(matches!(err, Error::TrailingBytes { .. }), "{err}");
    }

    fn rejects(m: &Manifest, expect: &str) {
        let err = m.validate().unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
        // Decoding the same fields (bypassing encode's validation) fails the same way and names
        // the manifest's id.
        let bytes = codec::encode(m, "manifest").unwrap();
        let err = Manifest::decode(&bytes).unwrap_err();
        let id = ContentId::of_block(Codec::Cbor, &bytes);
        assert!(err.to_string().contains(expect), "{err}");
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }

    #[test]
    fn version_2_is_only_a_directory_root() {
        let dir = Manifest {
            version: DIRECTORY_VERSION,
            name: None,
            media_type: Some(DIRECTORY_MEDIA_TYPE.into()),
            ..leaf(&[10])
        };
        dir.validate().unwrap();
        assert!(dir.is_directory());
        rejects(
            &Manifest {
                name: Some("d".into()),
                ..dir.clone()
            },
            "is a directory",
        );
        rejects(
            &Manifest {
                media_type: Some("text/plain".into()),
                ..dir
            },
            "is a directory",
        );
    }

    #[test]
    fn validation_rules() {
        let good = leaf(&[MIB, MIB, 10]);
        good.validate().unwrap();

        rejects(
            &Manifest {
                version: 3,
                ..good.clone()
            },
            "version 3",
        );
        rejects(
            &Manifest {
                depth: 9,
                ..good.clone()
            },
            "deeper than 8",
        );
        rejects(
            &Manifest {
                size: 1,
                ..good.clone()
            },
            "not the sum",
        );
        rejects(&leaf(&[10, MIB]), "entries[0].raw_len");
        rejects(&leaf(&[MIB, 0]), "entries[1].raw_len");
        rejects(&leaf(&[MIB + 1]), "entries[0].raw_len");
        rejects(&leaf(&vec![MIB; MANIFEST_FANOUT + 1]), "at most 1024");

        let mut m = good.clone();
        m.entries[1].stored_len = MIB + 2;
        rejects(&m, "entries[1].stored_len");
        m.entries[1].stored_len = 1;
        rejects(&m, "entries[1].stored_len");

        let mut m = good.clone();
        m.entries[2].cid = ContentId::of_block(Codec::Cbor, b"x");
        rejects(&m, "entries[2].cid");

        let mut m = good.clone();
        m.depth = 1;
        rejects(&m, "entries[0].cid");

        let one_child = Manifest {
            depth: 1,
            entries: vec![ManifestEntry {
                cid: ContentId::of_block(Codec::Cbor, b"child"),
                raw_len: 5,
                stored_len: 7,
            }],
            size: 5,
            ..good.clone()
        };
        one_child.validate().unwrap();
        let err = one_child.validate_root().unwrap_err();
        assert!(err.to_string().contains("at least 2 entries"), "{err}");
        good.validate_root().unwrap();
        rejects(
            &Manifest {
                entries: vec![],
                size: 0,
                ..one_child.clone()
            },
            "must have entries",
        );

        rejects(
            &Manifest {
                name: Some("n".repeat(256)),
                ..good.clone()
            },
            "at most 255",
        );
        rejects(
            &Manifest {
                name: Some(String::new()),
                ..good.clone()
            },
            "empty",
        );
        rejects(
            &Manifest {
                name: Some("a\u{1b}[2J".into()),
                ..good.clone()
            },
            "control",
        );
        rejects(
            &Manifest {
                media_type: Some("text".into()),
                ..good.clone()
            },
            "type/subtype",
        );
        rejects(
            &Manifest {
                media_type: Some("text/plaïn".into()),
                ..good.clone()
            },
            "control",
        );
    }

    #[test]
    fn depth_one_manifest_entries_cover_a_full_leaf() {
        let child = |i: u8| ContentId::of_block(Codec::Cbor, &[i]);
        let gib = MIB * MANIFEST_FANOUT as u64;
        let m = Manifest {
            version: MANIFEST_VERSION,
            size: gib + 1,
            depth: 1,
            entries: vec![
                ManifestEntry {
                    cid: child(0),
                    raw_len: gib,
                    stored_len: gib / 3,
                },
                ManifestEntry {
                    cid: child(1),
                    raw_len: 1,
                    stored_len: 200,
                },
            ],
            name: None,
            media_type: None,
        };
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(
            m.stored_total(bytes.len()),
            bytes.len() as u64 + gib / 3 + 200
        );
        assert_eq!(Manifest::entry_capacity(1), u128::from(gib));
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        let bytes = leaf(&[6]).encode().unwrap();
        // version 1 spelled as a two-byte integer.
        let mut long = bytes.clone();
        long.splice(9..10, [0x18, 0x01]);
        let err = Manifest::decode(&long).unwrap_err();
        assert!(matches!(err, Error::NonCanonical { .. }), "{err}");
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        (
            0usize..40,
            1u64..=MIB,
            any::<[u8; 32]>(),
            proptest::option::of("[a-zA-Z0-9 ._-]{1,40}"),
            proptest::option::of("[a-z]{1,10}/[a-z0-9.+-]{1,20}"),
        )
            .prop_map(|(n, last, seed, name, media_type)| {
                let mut raw: Vec<u64> = vec![MIB; n];
                if n > 0 {
                    raw[n - 1] = last;
                }
                Manifest {
                    version: MANIFEST_VERSION,
                    size: raw.iter().sum(),
                    depth: 0,
                    entries: raw
                        .iter()
                        .enumerate()
                        .map(|(i, &raw_len)| {
                            let mut h = seed;
                            h[0] ^= i as u8;
                            ManifestEntry {
                                cid: ContentId::from_parts(Codec::Raw, h),
                                raw_len,
                                stored_len: 2 + (u64::from(h[1]) * raw_len / 256),
                            }
                        })
                        .collect(),
                    name,
                    media_type,
                }
            })
    }

    proptest! {
        #[test]
        fn codec_round_trips(m in arb_manifest()) {
            let bytes = m.encode().unwrap();
            let back = Manifest::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &m);
            prop_assert_eq!(back.encode().unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(m) = Manifest::decode(&bytes) {
                prop_assert_eq!(m.encode().unwrap(), bytes);
            }
        }

        #[test]
        fn mutated_manifests_never_panic(m in arb_manifest(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = m.encode().unwrap();
            let pos = pos % bytes.len();
            bytes[pos] = byte;
            if let Ok(m) = Manifest::decode(&bytes) {
                prop_assert_eq!(m.encode().unwrap(), bytes);
            }
        }
    }
}
