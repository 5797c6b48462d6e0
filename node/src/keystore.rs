//! The node's secret files in its data directory: the Ed25519 identity, the X25519 onion key and the
//! control API token.
//!
//! Each is created on first start with mode 0600 (written to a temporary file with that mode, then
//! renamed, so no other user can ever read a partial key). A secret file whose mode lets anyone but
//! the owner read it is refused, with the `chmod` that fixes it: the key may already have leaked,
//! and silently tightening it would hide that.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use rand::RngCore;
use warren_protocol::OnionSecret;

use crate::error::NodeError;

/// File name of the identity key (libp2p protobuf encoding, see `spec/identity.md`).
pub const IDENTITY_FILE: &str = "identity.key";
/// File name of the onion static key (32 raw bytes).
pub const ONION_FILE: &str = "onion.key";
/// File name of the control API token (hex text).
pub const TOKEN_FILE: &str = "api.token";
/// File name holding the control API's `host:port`.
pub const API_ADDR_FILE: &str = "api.addr";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates the data directory (mode 0700) if it does not exist, and refuses one that is not a
/// directory owned by this user, or that others may write into (they could replace its key
/// files, or plant links where the node writes).
pub fn ensure_data_dir(dir: &Path) -> Result<(), NodeError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    check_data_dir(dir, meta.is_dir(), meta.uid(), meta.mode(), euid())
}

/// The data directory rule: a directory, owned by `me`, not writable by group or others.
fn check_data_dir(
    dir: &Path,
    is_dir: bool,
    owner: u32,
    mode: u32,
    me: u32,
) -> Result<(), NodeError> {
    let bad = |reason: String| {
        Err(NodeError::InsecureDataDir {
            path: dir.to_owned(),
            reason,
        })
    };
    if !is_dir {
        return bad("not a directory".into());
    }
    if owner != me {
        return bad(format!(
            "owned by uid {owner}, not by this user (uid {me}); use a directory of your own"
        ));
    }
    let mode = mode & 0o7777;
    if mode & 0o022 != 0 {
        return bad(format!(
            "mode {mode:o} lets other users write into it; run `chmod 700 {}`",
            dir.display()
        ));
    }
    Ok(())
}

/// This process's effective user id.
#[allow(unsafe_code)]
fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a secret file that anyone but its owner can read or write.
pub fn check_private(path: &Path) -> Result<(), NodeError> {
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode()
        & 0o777;
    check_mode(path, mode)
}

fn check_mode(path: &Path, mode: u32) -> Result<(), NodeError> {
    if mode & 0o077 != 0 {
        return Err(NodeError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600, atomically (temporary file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// Reads a secret file: opened without following a symbolic link, then checked on the open file
/// itself (a regular file, owned by this user or read by root, mode 0600 or tighter), so nothing can be swapped
/// in between the check and the read.
fn read_private(path: &Path) -> Result<Vec<u8>, NodeError> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(NodeError::BadKeyFile {
            path: path.to_owned(),
            reason: "not a regular file".into(),
        });
    }
    // Root may read another user's node files (`sudo warren status`); nobody else may.
    let me = euid();
    if meta.uid() != me && me != 0 {
        return Err(NodeError::BadKeyFile {
            path: path.to_owned(),
            reason: format!("owned by uid {}, not by this user", meta.uid()),
        });
    }
    check_mode(path, meta.mode() & 0o777)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_err(path))?;
    Ok(bytes)
}

/// Loads the identity from `dir`, creating a fresh Ed25519 key on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<Keypair, NodeError> {
    let path = dir.join(IDENTITY_FILE);
    if path.exists() {
        let bytes = read_private(&path)?;
        return warren_protocol::decode_keypair(&bytes).map_err(|e| NodeError::BadKeyFile {
            path,
            reason: e.to_string(),
        });
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key = warren_protocol::keypair_from_secret(secret);
    write_private(&path, &warren_protocol::encode_keypair(&key)?)?;
    Ok(key)
}

/// Folder of the data directory that holds the named keys of names (`warren name key-gen`).
pub const NAME_KEYS_DIR: &str = "name-keys";

fn name_key_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(NAME_KEYS_DIR).join(format!("{label}.key"))
}

/// Creates a fresh Ed25519 key labelled `label` (checked by the caller) under `dir`, mode 0600;
/// refuses to replace one.
pub fn create_name_key(dir: &Path, label: &str) -> Result<Keypair, NodeError> {
    let keys = dir.join(NAME_KEYS_DIR);
    fs::create_dir_all(&keys).map_err(io_err(&keys))?;
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).map_err(io_err(&keys))?;
    let path = name_key_path(dir, label);
    if fs::symlink_metadata(&path).is_ok() {
        return Err(NodeError::NameInput(format!(
            "a key named {label:?} exists already ({})",
            path.display()
        )));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key = warren_protocol::keypair_from_secret(secret);
    write_private(&path, &warren_protocol::encode_keypair(&key)?)?;
    Ok(key)
}

/// Loads the key labelled `label` under `dir` (checked as the identity is: 0600, ours, no link).
pub fn load_name_key(dir: &Path, label: &str) -> Result<Keypair, NodeError> {
    let path = name_key_path(dir, label);
    if fs::symlink_metadata(&path).is_err() {
        return Err(NodeError::NameInput(format!(
            "no key named {label:?}: create it with `warren name key-gen {label}`"
        )));
    }
    let bytes = read_private(&path)?;
    warren_protocol::decode_keypair(&bytes).map_err(|e| NodeError::BadKeyFile {
        path,
        reason: e.to_string(),
    })
}

/// The labels of the named keys under `dir`, sorted.
pub fn name_key_labels(dir: &Path) -> Result<Vec<String>, NodeError> {
    let keys = dir.join(NAME_KEYS_DIR);
    let Ok(entries) = fs::read_dir(&keys) else {
        return Ok(Vec::new());
    };
    let mut labels = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&keys))?;
        if let Some(label) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".key"))
        {
            labels.push(label.to_owned());
        }
    }
    labels.sort();
    Ok(labels)
}

/// Loads the onion static key from `dir`, creating one on first start.
pub fn load_or_create_onion_key(dir: &Path) -> Result<OnionSecret, NodeError> {
    let path = dir.join(ONION_FILE);
    if path.exists() {
        let bytes = read_private(&path)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| NodeError::BadKeyFile {
                path: path.clone(),
                reason: format!("expected 32 bytes, found {}", bytes.len()),
            })?;
        return Ok(OnionSecret::from_bytes(arr));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    write_private(&path, &secret)?;
    Ok(OnionSecret::from_bytes(secret))
}

/// Writes a fresh random API token (64 hex characters) and returns it.
pub fn create_api_token(dir: &Path) -> Result<String, NodeError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    write_private(&dir.join(TOKEN_FILE), token.as_bytes())?;
    Ok(token)
}

/// Reads the API token a running node wrote.
pub fn read_api_token(dir: &Path) -> Result<String, NodeError> {
    let path = dir.join(TOKEN_FILE);
    let bytes = read_private(&path)?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| NodeError::BadKeyFile {
            path,
            reason: "token is not UTF-8".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_must_be_ours_and_not_writable_by_others() {
        let d = Path::new("/x");
        assert!(check_data_dir(d, true, 1000, 0o40700, 1000).is_ok());
        assert!(check_data_dir(d, true, 1000, 0o40755, 1000).is_ok());
        for (is_dir, owner, mode) in [
            (false, 1000, 0o700),
            (true, 0, 0o700),
            (true, 1000, 0o770),
            (true, 1000, 0o1777),
        ] {
            let e = check_data_dir(d, is_dir, owner, mode, 1000).unwrap_err();
            assert!(matches!(e, NodeError::InsecureDataDir { .. }), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        ensure_data_dir(dir.path()).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_data_dir(dir.path()).is_err());
    }

    #[test]
    fn a_key_file_is_never_read_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let real = elsewhere.path().join("someone-elses.key");
        write_private(&real, &[7; 32]).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join(ONION_FILE)).unwrap();
        let e = load_or_create_onion_key(dir.path())
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, NodeError::Io { .. }), "{e}");
        // A directory in a key file's place is not a key either.
        fs::create_dir(dir.path().join(IDENTITY_FILE)).unwrap();
        assert!(load_or_create_identity(dir.path()).is_err());
    }

    #[test]
    fn identity_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn refuses_a_key_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create_identity(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_identity(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_corrupt_key_file() {
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join(IDENTITY_FILE), b"not a key").unwrap();
        let err = load_or_create_identity(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid key file"), "{err}");
        write_private(&dir.path().join(ONION_FILE), &[1u8; 31]).unwrap();
        let err = load_or_create_onion_key(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 32 bytes"), "{err}");
    }

    #[test]
    fn onion_key_and_token_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_onion_key(dir.path()).unwrap();
        let b = load_or_create_onion_key(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let t = create_api_token(dir.path()).unwrap();
        assert_eq!(read_api_token(dir.path()).unwrap(), t);
        assert_eq!(t.len(), 64);
    }
}
