//! Where `warren get` takes a capability from without putting its key in argv (where every user
//! of the machine can read it in `ps` and it lands in shell history): a file
//! (`--capability-file FILE`), standard input (`--capability-file -`) or the environment
//! (`WARREN_CAPABILITY`). The argument then may be the bare CID (which must match the
//! capability's) or left out. A capability given as the argument still works.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use warren_protocol::Capability;

/// The environment variable `warren get` reads a capability from.
pub(crate) const CAPABILITY_ENV: &str = "WARREN_CAPABILITY";

/// Largest capability file read (a capability is about 120 bytes).
const MAX_CAPABILITY_FILE: u64 = 4096;

/// The capability text from `file` (`-`: standard input), trimmed.
pub(crate) fn read_capability_file(file: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .take(MAX_CAPABILITY_FILE)
            .read_to_string(&mut text)
            .context("reading the capability from standard input")?;
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("opening {}", file.display()))?
            .take(MAX_CAPABILITY_FILE)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(text.trim().to_owned())
}

/// What `warren get` fetches: `arg` (a CID or a capability) and a capability from elsewhere
/// (`from_file` before `from_env`). Answers the argument when it is a capability or nothing else
/// is given; else the capability given elsewhere, whose CID must equal a bare CID `arg`. Errors
/// never contain the key.
pub(crate) fn resolve(
    arg: Option<&str>,
    from_file: Option<String>,
    from_env: Option<String>,
) -> anyhow::Result<String> {
    let other = from_file.or(from_env.filter(|e| !e.trim().is_empty()));
    match (arg, other) {
        (Some(a), _) if Capability::looks_like(a) => Ok(a.to_owned()),
        (Some(a), None) => Ok(a.to_owned()),
        (a, Some(text)) => {
            let cap: Capability = text.trim().parse()?;
            if let Some(a) = a
                && a != cap.cid.to_string()
            {
                bail!(
                    "{a} is not the CID of the capability given (it names {})",
                    cap.cid
                );
            }
            Ok(cap.to_string())
        }
        (None, None) => bail!(
            "nothing to get: give a CID, or a capability with --capability-file FILE (`-` for \
             standard input) or {CAPABILITY_ENV}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capability_comes_from_the_argument_a_file_or_the_environment() {
        let cid = warren_protocol::ContentId::of_block(warren_protocol::Codec::Raw, b"x");
        let cap = format!(
            "warren:{cid}#{}",
            warren_protocol::FileKey::from_bytes([7; 32]).to_text()
        );
        let bare = cid.to_string();
        assert_eq!(resolve(Some(&cap), None, None).unwrap(), cap);
        assert_eq!(resolve(Some(&bare), None, None).unwrap(), bare);
        assert_eq!(resolve(None, None, Some(cap.clone())).unwrap(), cap);
        assert_eq!(resolve(Some(&bare), Some(cap.clone()), None).unwrap(), cap);
        assert_eq!(
            resolve(None, Some(format!("{cap}\n")), Some("junk".into())).unwrap(),
            cap
        );
        let other =
            warren_protocol::ContentId::of_block(warren_protocol::Codec::Raw, b"y").to_string();
        let e = resolve(Some(&other), None, Some(cap.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not the CID") && !e.contains(&cap[cap.len() - 20..]),
            "{e}"
        );
        assert!(resolve(None, None, None).is_err());
        assert!(resolve(None, None, Some(String::new())).is_err());
        let e = resolve(None, Some("warren:nope#secretkeytext".into()), None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secretkeytext"), "{e}");
    }

    #[test]
    fn a_capability_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap");
        std::fs::write(&path, "  warren:abc#def \n").unwrap();
        assert_eq!(read_capability_file(&path).unwrap(), "warren:abc#def");
        assert!(read_capability_file(&dir.path().join("missing")).is_err());
    }
}
