//! Helpers shared by the unit tests.

use std::path::Path;

use tempfile::TempDir;
use warren_protocol::ContentId;

use crate::{PutOptions, PutOutcome, Store};

/// A store in a fresh temporary directory (removed when the `TempDir` drops).
pub(crate) fn store(offer: u64) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), offer).unwrap();
    (dir, store)
}

pub(crate) fn reopen(dir: &Path, offer: u64) -> Store {
    Store::open(dir, offer).unwrap()
}

pub(crate) fn put(store: &Store, data: &[u8]) -> PutOutcome {
    put_with(store, data, &PutOptions::default())
}

pub(crate) fn put_with(store: &Store, data: &[u8], opts: &PutOptions) -> PutOutcome {
    store.put(data, opts, &|_| {}).unwrap()
}

pub(crate) fn get(store: &Store, cid: &ContentId) -> Vec<u8> {
    let mut out = Vec::new();
    let n = store.get(cid, &mut out, &|_| {}).unwrap();
    assert_eq!(n, out.len() as u64);
    out
}
