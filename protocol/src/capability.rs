//! Data classes and read capabilities (spec: `spec/private-data.md`).
//!
//! Every file put on the mesh has a [`Class`]: `public` files are stored as plaintext and
//! deduplicate across everyone who stores the same bytes; `shared` and `private` files are
//! encrypted by the putting node before they are cut into blocks, so holders, auditors and
//! repairers only ever see ciphertext. The id of such a file names the ciphertext; reading it
//! takes a [`Capability`]: the id plus the file's 32-byte key ([`FileKey`]), written
//!
//! ```text
//! warren:<cid>#<key>      key = multibase base32 lower case: "b" and 52 characters
//! warren:bafir4i…#bgm3…
//! ```
//!
//! Whoever has the string can read the file, so it is handed around like a password (the
//! Tahoe-LAFS read-cap idea). The key travels after `#`, the part of a URI that is never sent to a
//! server.

use std::{fmt, str::FromStr};

use cid::multibase::{self, Base};

use crate::{ContentId, Error};

/// Scheme prefix of a capability.
pub const CAPABILITY_SCHEME: &str = "warren:";
/// Bytes of a file key.
pub const FILE_KEY_LEN: usize = 32;

/// How a file is stored, chosen at put time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Plaintext: anyone with the id reads it, and equal files share their blocks.
    #[default]
    Public,
    /// Encrypted with a key derived from the file itself (convergent encryption): readable with
    /// the capability, and equal files (same bytes, name and media type) still share blocks.
    /// Whoever already knows a file can tell that it is stored.
    Shared,
    /// Encrypted with a fresh random key: readable only with the capability, and two puts of the
    /// same file share nothing.
    Private,
}

impl Class {
    /// The class's name on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Public => "public",
            Class::Shared => "shared",
            Class::Private => "private",
        }
    }

    /// The class's byte in the sealed header and the store (`spec/private-data.md`).
    pub fn to_byte(self) -> u8 {
        match self {
            Class::Public => 0,
            Class::Shared => 1,
            Class::Private => 2,
        }
    }

    /// The class with this byte.
    pub fn from_byte(b: u8) -> Option<Class> {
        match b {
            0 => Some(Class::Public),
            1 => Some(Class::Shared),
            2 => Some(Class::Private),
            _ => None,
        }
    }

    /// Whether files of this class are encrypted.
    pub fn is_encrypted(self) -> bool {
        self != Class::Public
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Class {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "public" => Ok(Class::Public),
            "shared" => Ok(Class::Shared),
            "private" => Ok(Class::Private),
            other => Err(Error::InvalidCapability {
                input: cut(other),
                reason: "not a data class (public, shared or private)".into(),
            }),
        }
    }
}

/// The BLAKE3 `derive_key` context of [`FileKey::entry_key`].
pub const ENTRY_KEY_CONTEXT: &str = "warren 2026-12 private directory entry key v1";

/// The secret key of one encrypted file. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey([u8; FILE_KEY_LEN]);

impl FileKey {
    /// A key from its bytes (from a CSPRNG for private files, a keyed hash for shared ones).
    pub fn from_bytes(bytes: [u8; FILE_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key of the entry `name` of a private directory sealed with this key
    /// (`spec/storage.md`, "Private directories"): BLAKE3 `derive_key` with the context
    /// [`ENTRY_KEY_CONTEXT`] over this key ++ the name's UTF-8 bytes. One capability then opens
    /// the whole tree, and the listing carries no keys.
    pub fn entry_key(&self, name: &str) -> FileKey {
        let mut material = Vec::with_capacity(FILE_KEY_LEN + name.len());
        material.extend_from_slice(&self.0);
        material.extend_from_slice(name.as_bytes());
        FileKey(blake3::derive_key(ENTRY_KEY_CONTEXT, &material))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; FILE_KEY_LEN] {
        &self.0
    }

    /// The key as text: multibase base32 lower case (`b` and 52 characters). A method rather
    /// than `Display`, so that a key is never printed by accident.
    pub fn to_text(&self) -> String {
        multibase::encode(Base::Base32Lower, self.0)
    }

    /// Reads [`to_text`](Self::to_text)'s form, and only that (no other base, no upper case).
    /// Errors never contain the key.
    pub fn from_text(text: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidCapability {
            input: "key".into(),
            reason,
        };
        if !text.starts_with('b') {
            return Err(bad(
                "the key must be multibase base32 lower case (prefix `b`)".into(),
            ));
        }
        let (_, bytes) = multibase::decode(text).map_err(|e| bad(format!("the key: {e}")))?;
        // Exactly one text per key: refuse upper case and other spellings that decode the same.
        if multibase::encode(Base::Base32Lower, &bytes) != text {
            return Err(bad("the key is not in canonical base32 lower case".into()));
        }
        let bytes: [u8; FILE_KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            bad(format!(
                "the key is {} bytes, it must be {FILE_KEY_LEN}",
                b.len()
            ))
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(…)")
    }
}

/// A read capability: the id of an encrypted file and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Id of the ciphertext's root manifest.
    pub cid: ContentId,
    /// The key that decrypts it.
    pub key: FileKey,
}

impl Capability {
    /// Whether `text` looks like a capability rather than a bare id (it starts with `warren:`).
    pub fn looks_like(text: &str) -> bool {
        text.starts_with(CAPABILITY_SCHEME)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CAPABILITY_SCHEME}{}#{}", self.cid, self.key.to_text())
    }
}

impl FromStr for Capability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidCapability {
            input: redact(s),
            reason: reason.into(),
        };
        let rest = s
            .strip_prefix(CAPABILITY_SCHEME)
            .ok_or_else(|| bad("does not start with `warren:`"))?;
        let (cid, key) = rest
            .split_once('#')
            .ok_or_else(|| bad("no `#` before the key"))?;
        let text = cid;
        let cid: ContentId = text.parse().map_err(|e| bad(&format!("the id: {e}")))?;
        // One text per capability: the id in its canonical form (base32 lower case), too.
        if cid.to_string() != text {
            return Err(bad(&format!(
                "the id is not written canonically (as {cid})"
            )));
        }
        let key = FileKey::from_text(key).map_err(|e| match e {
            Error::InvalidCapability { reason, .. } => bad(&reason),
            other => other,
        })?;
        Ok(Capability { cid, key })
    }
}

/// The input for an error message without its key: everything after `#` is a secret.
fn redact(s: &str) -> String {
    match s.split_once('#') {
        Some((head, _)) => format!("{}#…", cut(head)),
        None => cut(s),
    }
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_keys_follow_the_spec_vector() {
        let root = super::FileKey::from_bytes([0x42; 32]);
        let line = format!(
            "entry key of `photo.jpg` under the key 42…42: `{}`",
            hex::encode(root.entry_key("photo.jpg").as_bytes())
        );
        assert!(
            include_str!("../../spec/storage.md").contains(&line),
            "spec/storage.md (Private directories) does not state: {line}"
        );
        assert_ne!(root.entry_key("a"), root.entry_key("b"));
        assert_ne!(root.entry_key("a"), root);
    }

    use proptest::prelude::*;

    use super::*;
    use crate::Codec;

    fn cap() -> Capability {
        Capability {
            cid: ContentId::of_block(Codec::Cbor, b"manifest"),
            key: FileKey::from_bytes([7; 32]),
        }
    }

    #[test]
    fn round_trips_and_keeps_the_key_out_of_debug() {
        let c = cap();
        let text = c.to_string();
        assert!(text.starts_with("warren:bafir4i"), "{text}");
        assert_eq!(text.parse::<Capability>().unwrap(), c);
        assert!(Capability::looks_like(&text));
        assert!(!format!("{:?}", c.key).contains('7'));
    }

    #[test]
    fn refuses_bad_capabilities_without_echoing_the_key() {
        let good = cap().to_string();
        let (head, key) = good.split_once('#').unwrap();
        let cases = [
            (good.replacen("warren:", "", 1), "warren:"),
            (head.to_string(), "no `#`"),
            (format!("{head}#{}", key.to_uppercase()), "prefix `b`"),
            (format!("{head}#{}", &key[..key.len() - 2]), "bytes"),
            (format!("{head}#{key}aaaaaaaa"), "bytes"),
            (format!("warren:bafkqaaa#{key}"), "the id"),
            (format!("{head}#z{}", &key[1..]), "prefix `b`"),
            (
                format!("warren:{}#{key}", head["warren:".len()..].to_uppercase()),
                "canonical",
            ),
        ];
        for (text, want) in cases {
            let err = text.parse::<Capability>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains(&key[1..20]), "the key leaked: {err}");
        }
    }

    #[test]
    fn classes_parse_and_round_trip_their_bytes() {
        for c in [Class::Public, Class::Shared, Class::Private] {
            assert_eq!(c.as_str().parse::<Class>().unwrap(), c);
            assert_eq!(Class::from_byte(c.to_byte()), Some(c));
        }
        assert!("secret".parse::<Class>().is_err());
        assert_eq!(Class::from_byte(3), None);
        assert!(!Class::Public.is_encrypted() && Class::Private.is_encrypted());
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "warren:\\PC{0,120}") {
            if let Ok(c) = text.parse::<Capability>() {
                prop_assert_eq!(c.to_string(), text);
            }
        }

        #[test]
        fn any_key_round_trips(key in any::<[u8; 32]>()) {
            let c = Capability { cid: cap().cid, key: FileKey::from_bytes(key) };
            prop_assert_eq!(c.to_string().parse::<Capability>().unwrap(), c);
        }
    }
}
