//! The credit receipts on disk: `DATA_DIR/credits.redb`, table `receipts`, key
//! `PEER/mine` or `PEER/theirs` → the latest receipt of that pair and direction (canonical CBOR,
//! `spec/credits.md`). Receipts are cumulative, so keeping the latest is keeping everything, and a
//! restart counts nothing twice. This node's own receipt is written before it is sent: a crash
//! cannot make it sign two receipts with one sequence number.

use std::path::{Path, PathBuf};

use libp2p::PeerId;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use warren_protocol::credits::Receipt;

use crate::error::NodeError;

/// The database file in the data directory.
pub const CREDITS_DB: &str = "credits.redb";

/// What [`CreditStore::load`] read: the receipts with their peers, and why others were skipped.
pub type Loaded = (Vec<(PeerId, Receipt)>, Vec<String>);

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("receipts");

/// The receipts database of one data directory.
pub struct CreditStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for CreditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreditStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn key(peer: &PeerId, mine: bool) -> String {
    format!("{peer}/{}", if mine { "mine" } else { "theirs" })
}

impl CreditStore {
    /// Opens (or creates) `dir/credits.redb`.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        let path = dir.join(CREDITS_DB);
        let db = Database::builder()
            .set_cache_size(1 << 20)
            .create(&path)
            .map_err(|e| db_err(&path, e))?;
        let store = Self { db, path };
        let tx = store.db.begin_write().map_err(|e| store.err(e))?;
        tx.open_table(TABLE).map_err(|e| store.err(e))?;
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Replaces the latest receipt of `peer` in one direction (`mine`: signed by this node).
    pub fn save(&self, peer: &PeerId, mine: bool, receipt: &Receipt) -> Result<(), NodeError> {
        let bytes = receipt.encode().map_err(|e| NodeError::Credits {
            peer: *peer,
            detail: e.to_string(),
        })?;
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
            table
                .insert(key(peer, mine).as_str(), bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every saved receipt, with its peer; entries that no longer decode are skipped (and
    /// returned as warnings).
    pub fn load(&self) -> Result<Loaded, NodeError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for entry in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            let name = k.value().to_owned();
            let peer = name
                .split('/')
                .next()
                .and_then(|p| p.parse::<PeerId>().ok());
            match (peer, Receipt::decode(v.value())) {
                (Some(p), Ok(r)) => out.push((p, r)),
                (_, Err(e)) => bad.push(format!("{name}: {e}")),
                (None, _) => bad.push(format!("{name}: not a peer id")),
            }
        }
        Ok((out, bad))
    }

    fn err(&self, e: impl Into<redb::Error>) -> NodeError {
        db_err(&self.path, e)
    }
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> NodeError {
    NodeError::Database {
        path: path.to_owned(),
        source: Box::new(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use warren_protocol::credits::Quantities;

    #[test]
    fn the_latest_receipts_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            warren_protocol::keypair_from_secret([1; 32]),
            warren_protocol::keypair_from_secret([2; 32]),
        );
        let b_key = warren_protocol::credits::receipt::ed25519_key(&b).unwrap();
        let peer = b.public().to_peer_id();
        let r = |seq| {
            Receipt::issue(
                &a,
                b_key,
                seq,
                1,
                Quantities {
                    bytes: seq,
                    ..Quantities::default()
                },
            )
            .unwrap()
        };
        {
            let s = CreditStore::open(dir.path()).unwrap();
            s.save(&peer, true, &r(1)).unwrap();
            s.save(&peer, true, &r(2)).unwrap();
        }
        let s = CreditStore::open(dir.path()).unwrap();
        let (all, bad) = s.load().unwrap();
        assert!(bad.is_empty());
        assert_eq!(all, vec![(peer, r(2))]);
    }
}
