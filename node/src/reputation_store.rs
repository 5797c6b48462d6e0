//! The reputation state on disk: `DATA_DIR/reputation.redb`, a redb database whose table
//! `reputation` holds, under the key `state`, the bytes of [`Reputation::to_bytes`]
//! (`spec/reputation.md`, "Persisted state").
//!
//! One value rewritten whole in one transaction: a crash leaves either the old state or the new
//! one, never half of each (redb commits are atomic). A data directory of an earlier version has
//! `reputation.cbor` (the same bytes in a plain file) instead; [`ReputationStore::load`] moves it
//! into the database once and renames the file to `reputation.cbor.migrated`.
//!
//! [`Reputation::to_bytes`]: warren_protocol::Reputation::to_bytes

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use crate::error::NodeError;

/// The database file in the data directory.
pub const REPUTATION_DB: &str = "reputation.redb";
/// The file earlier versions kept the state in; migrated on first load.
pub const LEGACY_REPUTATION_FILE: &str = "reputation.cbor";

/// State name → encoded state.
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("reputation");
/// The one key of [`TABLE`].
const STATE_KEY: &str = "state";
/// Page cache: the state is read once at start and written now and then.
const CACHE_BYTES: usize = 1 << 20;

/// The reputation database of one data directory.
pub struct ReputationStore {
    db: Database,
    path: PathBuf,
    legacy: PathBuf,
}

impl std::fmt::Debug for ReputationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReputationStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ReputationStore {
    /// Opens (or creates) `dir/reputation.redb`.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        let path = dir.join(REPUTATION_DB);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| db_err(&path, e))?;
        let store = Self {
            db,
            legacy: dir.join(LEGACY_REPUTATION_FILE),
            path,
        };
        let tx = store.db.begin_write().map_err(|e| store.err(e))?;
        tx.open_table(TABLE).map_err(|e| store.err(e))?;
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, if any: the database's, else the legacy file's (moved into the database
    /// first, the file renamed to `reputation.cbor.migrated`).
    pub fn load(&self) -> Result<Option<Vec<u8>>, NodeError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
        if let Some(v) = table.get(STATE_KEY).map_err(|e| self.err(e))? {
            return Ok(Some(v.value().to_vec()));
        }
        drop(table);
        drop(tx);
        let bytes = match std::fs::read(&self.legacy) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(NodeError::Io {
                    path: self.legacy.clone(),
                    source: e,
                });
            }
        };
        self.save(&bytes)?;
        let migrated = self.legacy.with_extension("cbor.migrated");
        std::fs::rename(&self.legacy, &migrated).map_err(|e| NodeError::Io {
            path: self.legacy.clone(),
            source: e,
        })?;
        Ok(Some(bytes))
    }

    /// Replaces the saved state with `bytes`, durably.
    pub fn save(&self, bytes: &[u8]) -> Result<(), NodeError> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
            table.insert(STATE_KEY, bytes).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
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
    use super::*;

    #[test]
    fn saves_and_loads_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = ReputationStore::open(dir.path()).unwrap();
            assert_eq!(s.load().unwrap(), None);
            s.save(b"first").unwrap();
            s.save(b"second state").unwrap();
            assert_eq!(s.load().unwrap().as_deref(), Some(&b"second state"[..]));
        }
        let s = ReputationStore::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap().as_deref(), Some(&b"second state"[..]));
    }

    #[test]
    fn migrates_the_legacy_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join(LEGACY_REPUTATION_FILE);
        std::fs::write(&legacy, b"old cbor").unwrap();
        let s = ReputationStore::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap().as_deref(), Some(&b"old cbor"[..]));
        assert!(!legacy.exists());
        assert!(dir.path().join("reputation.cbor.migrated").exists());
        // The database has it now; a legacy file appearing later does not override it.
        std::fs::write(&legacy, b"stale").unwrap();
        assert_eq!(s.load().unwrap().as_deref(), Some(&b"old cbor"[..]));
    }
}
