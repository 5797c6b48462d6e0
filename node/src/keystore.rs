//! The node's secret files in its data directory: the Ed25519 identity, the X25519 onion key and the
//! control API token.
//!
//! Each is created on first start with mode 0600 (written to a temporary file with that mode, then
//! renamed, so no other user can ever read a partial key). A secret file whose mode lets anyone but
//! the owner read it is refused, with the `chmod` that fixes it: the key may already have leaked,
//! and silently tightening it would hide that.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// Creates the data directory (mode 0700) if it does not exist.
pub fn ensure_data_dir(dir: &Path) -> Result<(), NodeError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Refuses a secret file that anyone but its owner can read or write.
pub fn check_private(path: &Path) -> Result<(), NodeError> {
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode()
        & 0o777;
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

/// Reads a secret file after checking its permissions.
fn read_private(path: &Path) -> Result<Vec<u8>, NodeError> {
    check_private(path)?;
    fs::read(path).map_err(io_err(path))
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
