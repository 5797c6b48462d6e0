//! Directories (spec: `spec/storage.md`, "Directories"): a manifest of version
//! [`DIRECTORY_VERSION`] whose content is a listing of named entries.
//!
//! A directory is stored as a file is — its listing is cut into chunks under a manifest tree, so
//! a large directory splits into a tree exactly as a large file does — but its root manifest has
//! version 2 and the media type [`DIRECTORY_MEDIA_TYPE`]. A reader that knows only version 1
//! refuses the root with `UnsupportedVersion`, so a directory is never mistaken for a file.
//!
//! The listing is canonical CBOR: entries sorted by the bytes of their names, each name checked
//! ([`check_name`]), so the same tree gives the same listing, the same blocks and the same id on
//! every node. A directory names its children by id, and an id is the hash of what it names, so
//! a directory cannot contain itself: cycles are impossible by construction.

use serde::{Deserialize, Serialize};

use crate::{Codec, ContentId, Error, codec, error::Subject};

/// The manifest version of a directory's root.
pub const DIRECTORY_VERSION: u16 = 2;
/// The media type every directory root carries.
pub const DIRECTORY_MEDIA_TYPE: &str = "application/vnd.warren.directory+cbor";
/// Most entries in one directory.
pub const MAX_DIRECTORY_ENTRIES: usize = 65_536;
/// Largest encoded listing (checked against the root's declared size before anything is read).
pub const MAX_LISTING_SIZE: usize = 24 << 20;
/// Longest entry name, in bytes of UTF-8.
pub const MAX_ENTRY_NAME_LEN: usize = 255;

/// What an entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A file: the id of its root manifest (version 1).
    File,
    /// A directory: the id of its root manifest (version 2).
    Dir,
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
        })
    }
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    /// The entry's name ([`check_name`]).
    pub name: String,
    /// File or directory.
    pub kind: EntryKind,
    /// The id of the entry's root manifest.
    #[serde(with = "cid_bytes")]
    pub cid: ContentId,
    /// A file's size; a directory's total: the sum of its entries' sizes.
    pub size: u64,
}

/// A directory listing. Encoded as a CBOR map with one key, `"entries"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// The entries, sorted by the bytes of their names, names unique.
    pub entries: Vec<DirEntry>,
}

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

/// Why `name` cannot be an entry's name, or `None` when it can: 1 to [`MAX_ENTRY_NAME_LEN`]
/// bytes of UTF-8, not `.` or `..`, no `/` and no control character (NUL included). Such a name
/// is always one component of a relative path, never a way out of the directory it is written in.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_ENTRY_NAME_LEN {
        return Some(format!(
            "is {} bytes long, at most {MAX_ENTRY_NAME_LEN} allowed",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} would leave or repeat the directory"));
    }
    if name.contains('/') {
        return Some(format!("{name:?} contains `/`"));
    }
    if name.chars().any(char::is_control) {
        return Some(format!(
            "{:?} contains a control character (NUL included)",
            name
        ));
    }
    None
}

/// [`name_problem`] as an error.
pub fn check_name(name: &str) -> Result<(), Error> {
    match name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidField {
            subject: Subject::Directory(None),
            field: "name".into(),
            reason,
        }),
    }
}

impl Directory {
    /// Sorts the entries into listing order (the bytes of their names).
    pub fn sort(&mut self) {
        self.entries
            .sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    }

    /// The sum of the entries' sizes, or `None` past `u64`.
    pub fn total_size(&self) -> Option<u64> {
        self.entries
            .iter()
            .try_fold(0u64, |sum, e| sum.checked_add(e.size))
    }

    /// The entry called `name`.
    pub fn find(&self, name: &str) -> Option<&DirEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Checks every rule of a listing: at most [`MAX_DIRECTORY_ENTRIES`] entries, valid names,
    /// strictly sorted (so unique), every id a manifest id (codec cbor), the total in `u64`.
    pub fn validate(&self) -> Result<(), Error> {
        self.check(&|| Subject::Directory(None))
    }

    /// Validates and encodes the listing as canonical CBOR.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        self.validate()?;
        let bytes = codec::encode(self, "directory")?;
        if bytes.len() > MAX_LISTING_SIZE {
            return Err(Error::TooLarge {
                what: "directory listing",
                len: bytes.len(),
                limit: MAX_LISTING_SIZE,
            });
        }
        Ok(bytes)
    }

    /// Decodes and validates the listing of the directory `id`; errors name it.
    pub fn decode(id: &ContentId, bytes: &[u8]) -> Result<Directory, Error> {
        let dir: Directory = codec::decode(bytes, MAX_LISTING_SIZE, "directory listing")?;
        dir.check(&|| Subject::Directory(Some(Box::new(*id))))?;
        Ok(dir)
    }

    fn check(&self, subject: &dyn Fn() -> Subject) -> Result<(), Error> {
        let invalid = |field: String, reason: String| Error::InvalidField {
            subject: subject(),
            field,
            reason,
        };
        if self.entries.len() > MAX_DIRECTORY_ENTRIES {
            return Err(Error::TooMany {
                subject: subject(),
                field: "entries",
                count: self.entries.len(),
                max: MAX_DIRECTORY_ENTRIES,
            });
        }
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(reason) = name_problem(&e.name) {
                return Err(invalid(format!("entries[{i}].name"), reason));
            }
            if e.cid.codec() != Codec::Cbor {
                return Err(invalid(
                    format!("entries[{i}].cid"),
                    format!(
                        "{} has codec {}, but an entry names a root manifest (codec {})",
                        e.cid,
                        e.cid.codec(),
                        Codec::Cbor
                    ),
                ));
            }
            if i > 0 {
                let prev = &self.entries[i - 1].name;
                match prev.as_bytes().cmp(e.name.as_bytes()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(invalid(
                            format!("entries[{i}].name"),
                            format!("{:?} appears twice", e.name),
                        ));
                    }
                    std::cmp::Ordering::Greater => {
                        return Err(invalid(
                            format!("entries[{i}].name"),
                            format!(
                                "{:?} comes after {prev:?}: entries must be sorted by name",
                                e.name
                            ),
                        ));
                    }
                }
            }
        }
        if self.total_size().is_none() {
            return Err(invalid(
                "entries".into(),
                "the sizes add up to more than 2^64 - 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(i: u32) -> ContentId {
        ContentId::of_block(Codec::Cbor, &i.to_le_bytes())
    }

    fn entry(name: &str, kind: EntryKind, size: u64) -> DirEntry {
        DirEntry {
            name: name.into(),
            kind,
            cid: id(size as u32),
            size,
        }
    }

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/etc",
            "../x",
            "a\0b",
            "line\nbreak",
            &"x".repeat(256),
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            "a",
            "...",
            ".hidden",
            "ファイル.txt",
            "a b",
            "a\\b",
            &"x".repeat(255),
        ] {
            assert_eq!(name_problem(good), None, "{good:?}");
        }
    }

    #[test]
    fn round_trip_and_rules() {
        let mut dir = Directory {
            entries: vec![
                entry("zeta", EntryKind::File, 3),
                entry("Alpha", EntryKind::Dir, 10),
                entry("é", EntryKind::File, 0),
            ],
        };
        assert!(dir.validate().is_err(), "unsorted");
        dir.sort();
        let bytes = dir.encode().unwrap();
        let cid = ContentId::of_block(Codec::Cbor, &bytes);
        assert_eq!(Directory::decode(&cid, &bytes).unwrap(), dir);
        assert_eq!(dir.find("zeta").unwrap().size, 3);
        assert!(dir.find("zet").is_none());
        assert_eq!(dir.total_size(), Some(13));

        let mut dup = dir.clone();
        dup.entries[1].name = "Alpha".into();
        let err = dup.validate().unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");

        let mut raw = dir.clone();
        raw.entries[0].cid = ContentId::of_block(Codec::Raw, b"x");
        assert!(raw.validate().is_err());

        let mut over = dir;
        over.entries[0].size = u64::MAX;
        assert!(over.validate().is_err());
    }

    fn arb_entry() -> impl Strategy<Value = DirEntry> {
        (
            "[a-zA-Z0-9 ._é日-]{1,20}",
            any::<bool>(),
            any::<u32>(),
            0u64..1 << 40,
        )
            .prop_map(|(name, dir, i, size)| DirEntry {
                name,
                kind: if dir { EntryKind::Dir } else { EntryKind::File },
                cid: id(i),
                size,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(entries in proptest::collection::vec(arb_entry(), 0..40)) {
            let mut dir = Directory { entries };
            dir.sort();
            dir.entries.dedup_by(|a, b| a.name == b.name);
            dir.entries.retain(|e| name_problem(&e.name).is_none());
            let bytes = dir.encode().unwrap();
            let cid = ContentId::of_block(Codec::Cbor, &bytes);
            prop_assert_eq!(Directory::decode(&cid, &bytes).unwrap(), dir.clone());
            prop_assert_eq!(dir.encode().unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let cid = ContentId::of_block(Codec::Cbor, &bytes);
            if let Ok(dir) = Directory::decode(&cid, &bytes) {
                prop_assert_eq!(dir.encode().unwrap(), bytes);
            }
        }
    }
}
