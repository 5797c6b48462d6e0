//! Names that can change (`spec/names.md`): this node signs records "name N points to CID,
//! sequence n, valid until t" with its identity key (`self`) or a named key of the data
//! directory, puts them in the DHT, republishes them before they expire, and resolves any name
//! to the newest valid record the DHT holds.
//!
//! What was published is kept in `DATA_DIR/names.json` (label → CID, sequence, lifetime), so a
//! restarted node goes on republishing and never reuses a sequence. The format, the signature
//! and which record wins are `warren_protocol::name`'s; this module only moves the bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};
use warren_protocol::name::{self, NAME_RECORD_VERSION, NameRecord};
use warren_protocol::{ContentId, Error as ProtocolError};

use crate::clock::unix_now;
use crate::error::NodeError;
use crate::keystore;
use crate::net::Client;
use crate::view::{NameAnswerView, NameKeyView, PublishNameRequest, PublishedView, ResolvedView};

/// The label of the node's identity key.
pub const SELF_KEY: &str = "self";
/// Lifetime of a record when the publisher names none: one day.
pub const DEFAULT_LIFETIME_SECS: u64 = 24 * 3600;
/// Where the publications are remembered, in the data directory.
pub const PUBLISHED_FILE: &str = "names.json";
/// Longest key label.
const MAX_LABEL_LEN: usize = 32;
/// How often the republisher looks at what it published.
const REPUBLISH_TICK: Duration = Duration::from_secs(1);

/// A record this node published, remembered to republish it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Publication {
    cid: String,
    sequence: u64,
    lifetime_secs: u64,
    expires_at: u64,
    republish: bool,
}

/// The names service: keys, publications and resolutions.
pub struct Names {
    client: Client,
    identity: Keypair,
    dir: Option<PathBuf>,
    published: Mutex<BTreeMap<String, Publication>>,
}

/// Refuses a key label that is not 1 to 32 of `[a-z0-9_-]`.
fn check_label(label: &str) -> Result<(), NodeError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NodeError::NameInput(format!(
            "{label:?} is not a key label: use 1 to {MAX_LABEL_LEN} of a-z, 0-9, '-' and '_'"
        )))
    }
}

/// Parses a name (a peer id, as `warren name publish` prints it).
pub fn parse_name(text: &str) -> Result<PeerId, NodeError> {
    text.parse::<PeerId>().map_err(|_| {
        NodeError::NameInput(format!(
            "{text:?} is not a name (names are key ids such as 12D3KooW…, printed by `warren name publish`)"
        ))
    })
}

impl Names {
    /// The service of a node whose identity is `identity`; with a data directory, named keys
    /// and publications live there.
    pub fn new(client: Client, identity: Keypair, dir: Option<PathBuf>) -> Result<Self, NodeError> {
        let mut published = BTreeMap::new();
        if let Some(path) = dir.as_ref().map(|d| d.join(PUBLISHED_FILE))
            && path.exists()
        {
            let bytes = std::fs::read(&path).map_err(|source| NodeError::Io {
                path: path.clone(),
                source,
            })?;
            published = serde_json::from_slice(&bytes).map_err(|e| {
                NodeError::Config(format!(
                    "{}: not a list of publications: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(Self {
            client,
            identity,
            dir,
            published: Mutex::new(published),
        })
    }

    fn dir(&self) -> Result<&PathBuf, NodeError> {
        self.dir.as_ref().ok_or_else(|| {
            NodeError::NameInput("this node has no data directory: only the `self` key".into())
        })
    }

    fn key(&self, label: &str) -> Result<Keypair, NodeError> {
        if label == SELF_KEY {
            return Ok(self.identity.clone());
        }
        check_label(label)?;
        keystore::load_name_key(self.dir()?, label)
    }

    /// The keys that can sign records: `self`, then the named keys.
    pub fn keys(&self) -> Result<Vec<NameKeyView>, NodeError> {
        let mut out = vec![NameKeyView {
            key: SELF_KEY.into(),
            name: self.identity.public().to_peer_id().to_string(),
        }];
        if let Some(dir) = &self.dir {
            for label in keystore::name_key_labels(dir)? {
                let key = keystore::load_name_key(dir, &label)?;
                out.push(NameKeyView {
                    key: label,
                    name: key.public().to_peer_id().to_string(),
                });
            }
        }
        Ok(out)
    }

    /// Creates a new named key `label` in the data directory (mode 0600).
    pub fn key_gen(&self, label: &str) -> Result<NameKeyView, NodeError> {
        if label == SELF_KEY {
            return Err(NodeError::NameInput(
                "`self` is the node's identity key; choose another label".into(),
            ));
        }
        check_label(label)?;
        let key = keystore::create_name_key(self.dir()?, label)?;
        Ok(NameKeyView {
            key: label.into(),
            name: key.public().to_peer_id().to_string(),
        })
    }

    /// Points the name of key `req.key` at `req.cid`: a record with a sequence above every
    /// earlier one of this node (and at least the Unix time, so a lost `names.json` does not
    /// send the name back), signed, stored here and on the closest peers, remembered.
    pub async fn publish(&self, req: PublishNameRequest) -> Result<PublishedView, NodeError> {
        let cid: ContentId = req
            .cid
            .parse()
            .map_err(|e| NodeError::NameInput(format!("{:?} is not a CID: {e}", req.cid)))?;
        let label = req.key.unwrap_or_else(|| SELF_KEY.into());
        let lifetime = req.lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
        if lifetime == 0 || lifetime > name::MAX_NAME_LIFETIME_SECS {
            return Err(NodeError::NameInput(format!(
                "a lifetime of {lifetime} s is out of range (1 s to {} s)",
                name::MAX_NAME_LIFETIME_SECS
            )));
        }
        let key = self.key(&label)?;
        let mut published = self.published.lock().await;
        let previous = published.get(&label).map_or(0, |p| p.sequence);
        let sequence = (previous + 1).max(unix_now());
        let publication = Publication {
            cid: cid.to_string(),
            sequence,
            lifetime_secs: lifetime,
            expires_at: 0,
            republish: req.republish.unwrap_or(true),
        };
        self.put(&mut published, &label, &key, publication).await
    }

    /// Signs, stores and remembers one publication.
    async fn put(
        &self,
        published: &mut BTreeMap<String, Publication>,
        label: &str,
        key: &Keypair,
        mut publication: Publication,
    ) -> Result<PublishedView, NodeError> {
        let now = unix_now();
        let value: ContentId = publication
            .cid
            .parse()
            .map_err(|e| NodeError::NameInput(format!("{}: {e}", publication.cid)))?;
        let name = key.public().to_peer_id();
        let record = NameRecord {
            version: NAME_RECORD_VERSION,
            name,
            value,
            sequence: publication.sequence,
            issued_at: now,
            expires_at: now + publication.lifetime_secs,
        };
        let bytes = record.sign(key)?;
        let stored_on = self.client.put_name(name, bytes).await?;
        publication.expires_at = record.expires_at;
        published.insert(label.to_owned(), publication.clone());
        self.save(published)?;
        Ok(PublishedView {
            name: name.to_string(),
            key: label.to_owned(),
            cid: publication.cid,
            sequence: publication.sequence,
            expires_at: publication.expires_at,
            stored_on,
            republish: publication.republish,
        })
    }

    fn save(&self, published: &BTreeMap<String, Publication>) -> Result<(), NodeError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(published)
            .map_err(|e| NodeError::Config(format!("publications not encoded: {e}")))?;
        keystore::write_private(&dir.join(PUBLISHED_FILE), &json)
    }

    /// The newest valid record of `name` among those found here and on the closest peers
    /// (highest sequence, signature verified, not expired). Every answer is listed with what
    /// became of it; when none is valid, the error says whether they had expired.
    pub async fn resolve(&self, name: &str) -> Result<ResolvedView, NodeError> {
        let name = parse_name(name)?;
        let answers = self.client.get_name(name).await?;
        let now = unix_now();
        let mut valid = Vec::new();
        let mut views = Vec::new();
        let mut expired: Option<ProtocolError> = None;
        let mut refused = None;
        for answer in answers {
            let from = answer
                .from
                .map_or_else(|| "local".into(), |p| p.to_string());
            match name::decode_verified(&answer.bytes, &name, now) {
                Ok(record) => {
                    views.push(NameAnswerView {
                        from,
                        sequence: Some(record.sequence),
                        refused: None,
                    });
                    valid.push(record);
                }
                Err(e) => {
                    warn!(%name, from = %from, "refused a record of the name: {e}");
                    views.push(NameAnswerView {
                        from,
                        sequence: None,
                        refused: Some(e.to_string()),
                    });
                    match e {
                        ProtocolError::NameExpired { expires_at, .. } if !matches!(expired, Some(ProtocolError::NameExpired { expires_at: e, .. }) if e >= expires_at) =>
                        {
                            expired = Some(e);
                        }
                        ProtocolError::NameExpired { .. } => {}
                        e => refused = Some(e),
                    }
                }
            }
        }
        let Some(best) = name::newest(&valid) else {
            if let Some(e) = expired {
                return Err(NodeError::Protocol(e));
            }
            let detail = match refused {
                Some(e) => format!("{} record(s) found, none valid ({e})", views.len()),
                None => "none found here or on the closest peers".into(),
            };
            return Err(NodeError::NameNotFound { name, detail });
        };
        Ok(ResolvedView {
            name: name.to_string(),
            cid: best.value.to_string(),
            sequence: best.sequence,
            expires_at: best.expires_at,
            answers: views,
        })
    }

    /// Republishes what this node published before it expires (at half its lifetime), each
    /// time with the next sequence, until `shutdown`.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REPUBLISH_TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => self.republish_due().await,
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn republish_due(&self) {
        let now = unix_now();
        let mut published = self.published.lock().await;
        let due: Vec<(String, Publication)> = published
            .iter()
            .filter(|(_, p)| p.republish && now + p.lifetime_secs / 2 >= p.expires_at)
            .map(|(l, p)| (l.clone(), p.clone()))
            .collect();
        for (label, mut publication) in due {
            let key = match self.key(&label) {
                Ok(k) => k,
                Err(e) => {
                    warn!(key = %label, "name not republished: {e}");
                    continue;
                }
            };
            publication.sequence = (publication.sequence + 1).max(now);
            match self.put(&mut published, &label, &key, publication).await {
                Ok(v) => info!(name = %v.name, sequence = v.sequence, "republished name record"),
                Err(e) => warn!(key = %label, "name not republished: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_labels_are_short_plain_words() {
        for ok in ["blog", "a", "site-2", "my_key", &"k".repeat(MAX_LABEL_LEN)] {
            check_label(ok).unwrap();
        }
        for bad in [
            "",
            "Blog",
            "../x",
            "a/b",
            "a.key",
            "ключ",
            &"k".repeat(MAX_LABEL_LEN + 1),
        ] {
            let e = check_label(bad).unwrap_err();
            assert!(e.to_string().contains("not a key label"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn names_are_peer_ids() {
        let key = warren_protocol::keypair_from_secret([3; 32]);
        let id = key.public().to_peer_id();
        assert_eq!(parse_name(&id.to_string()).unwrap(), id);
        let e = parse_name("bafy-not-a-name").unwrap_err();
        assert!(e.to_string().contains("is not a name"), "{e}");
    }
}
