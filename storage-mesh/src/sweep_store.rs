//! The store's side of the sweep: the latest [`crate::sweep::Sweep::snapshot`], kept in the block
//! index so that a restarted node remembers its blocks' holders (spec/sweep-snapshot.md).
//!
//! ```text
//! sweep   "snapshot" → the snapshot's bytes
//! ```

use redb::{Durability, ReadableDatabase, TableDefinition, TableError};

use crate::{Error, Store};

const SWEEP: TableDefinition<&str, &[u8]> = TableDefinition::new("sweep");
const KEY: &str = "snapshot";

impl Store {
    /// Replaces the saved sweep snapshot with `bytes` (one write every few minutes; losing the
    /// last one in a crash costs some lookups, never data).
    pub fn save_sweep(&self, bytes: &[u8]) -> Result<(), Error> {
        let _writer = self.lock_writer();
        let mut tx = self.db().begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.open_table(SWEEP)?.insert(KEY, bytes)?;
        tx.commit()?;
        Ok(())
    }

    /// The saved sweep snapshot, if any.
    pub fn load_sweep(&self) -> Result<Option<Vec<u8>>, Error> {
        let tx = self.db().begin_read()?;
        let table = match tx.open_table(SWEEP) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(KEY)?.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_survives_a_reopen_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(
                store.load_sweep().unwrap(),
                None,
                "none before the first save"
            );
            store.save_sweep(b"one").unwrap();
            store.save_sweep(b"two").unwrap();
        }
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.load_sweep().unwrap().as_deref(), Some(&b"two"[..]));
    }
}
