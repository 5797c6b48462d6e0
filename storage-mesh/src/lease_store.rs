//! The store's side of leases ([`crate::lease`]): held blocks with the ticket they are held
//! under, the end of each lease, and the bytes each origin holds here.
//!
//! ```text
//! leases       block id → (origin key, rf, expires, ticket encoding)
//! lease_ends   (expires, block id) → ()        the leases in the order they end
//! origin_use   origin key → bytes held under its leases
//! ```
//!
//! Every change to the three tables and to `held` is one transaction, so they always agree.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use warren_protocol::ContentId;
use warren_protocol::ticket::PlacementTicket;

use crate::lease::{Decision, Lease, decide};
use crate::store::{HELD, HELD_RF, index_key};
use crate::{Error, Store, read};

/// A lease row: origin key, rf, expires, the ticket's encoding.
type LeaseRow = (&'static [u8], u8, u64, &'static [u8]);
/// Held block → (origin key, rf, expires, the ticket's encoding).
pub(crate) const LEASES: TableDefinition<&[u8], LeaseRow> = TableDefinition::new("leases");
/// (expires, block) → (): the leases by end.
pub(crate) const LEASE_ENDS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("lease_ends");
/// Origin key → bytes held here under its leases.
pub(crate) const ORIGIN_USE: TableDefinition<&[u8], u64> = TableDefinition::new("origin_use");

/// What [`Store::hold_leased`] and [`Store::renew_lease`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// The block is held under the ticket's lease (new or renewed).
    Leased,
    /// The block is held, its lease unchanged (why).
    Unchanged(&'static str),
}

/// A lease as listed by [`Store::leases`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The held block.
    pub block: ContentId,
    /// Its lease.
    pub lease: Lease,
}

fn refused(cid: &ContentId, reason: String) -> Error {
    Error::Refused { cid: *cid, reason }
}

fn to_lease(origin: &[u8], rf: u8, expires: u64) -> Lease {
    let mut o = [0u8; 32];
    if origin.len() == 32 {
        o.copy_from_slice(origin);
    }
    Lease {
        origin: o,
        rf,
        expires,
    }
}

fn read_lease(tx: &WriteTransaction, key: &[u8]) -> Result<Option<Lease>, Error> {
    let table = tx.open_table(LEASES)?;
    let found = table.get(key)?.map(|v| {
        let (origin, rf, expires, _) = v.value();
        to_lease(origin, rf, expires)
    });
    Ok(found)
}

fn add_use(tx: &WriteTransaction, origin: &[u8; 32], delta: i128) -> Result<(), Error> {
    let mut table = tx.open_table(ORIGIN_USE)?;
    let now = table.get(origin.as_slice())?.map_or(0, |v| v.value());
    let next = (i128::from(now) + delta).clamp(0, i128::from(u64::MAX)) as u64;
    if next == 0 {
        table.remove(origin.as_slice())?;
    } else {
        table.insert(origin.as_slice(), next)?;
    }
    Ok(())
}

/// Removes the lease of `key` (if any) and un-charges its origin; returns it.
fn drop_lease(tx: &WriteTransaction, key: &[u8], len: u64) -> Result<Option<Lease>, Error> {
    let lease = read_lease(tx, key)?;
    if let Some(l) = &lease {
        tx.open_table(LEASES)?.remove(key)?;
        tx.open_table(LEASE_ENDS)?.remove((l.expires, key))?;
        add_use(tx, &l.origin, -i128::from(len))?;
    }
    Ok(lease)
}

fn write_lease(tx: &WriteTransaction, key: &[u8], ticket: &PlacementTicket) -> Result<(), Error> {
    let encoded = ticket.encode().map_err(|e| Error::Refused {
        cid: ticket.block,
        reason: e.to_string(),
    })?;
    tx.open_table(LEASES)?.insert(
        key,
        (
            ticket.origin.as_slice(),
            ticket.rf,
            ticket.expires,
            encoded.as_slice(),
        ),
    )?;
    tx.open_table(LEASE_ENDS)?
        .insert((ticket.expires, key), ())?;
    Ok(())
}

impl Store {
    /// Opens (creates) the lease tables in `tx`.
    pub(crate) fn open_lease_tables(tx: &WriteTransaction) -> Result<(), Error> {
        tx.open_table(LEASES)?;
        tx.open_table(LEASE_ENDS)?;
        tx.open_table(ORIGIN_USE)?;
        Ok(())
    }

    /// Whether a ticket for `cid` (of `len` bytes) would be taken, without storing anything:
    /// the check a holder makes before it writes a pushed block. `Err(Error::Refused)` when not.
    pub fn check_ticket(
        &self,
        cid: &ContentId,
        len: u64,
        ticket: &PlacementTicket,
        quota: u64,
        now_secs: u64,
    ) -> Result<(), Error> {
        let current = self.lease(cid)?;
        let used = self.origin_use(&ticket.origin)?;
        match decide(current.as_ref(), ticket, len, used, quota, now_secs) {
            Decision::Refuse(reason) => Err(refused(cid, reason)),
            _ => Ok(()),
        }
    }

    fn origin_use_in(&self, tx: &WriteTransaction, origin: &[u8; 32]) -> Result<u64, Error> {
        let table = tx.open_table(ORIGIN_USE)?;
        let used = table.get(origin.as_slice())?.map_or(0, |v| v.value());
        Ok(used)
    }

    /// Holds the stored block `cid` for the mesh under `ticket`'s lease ([`crate::lease`]'s
    /// rules): a new lease is charged to the origin's `quota`; a live lease is renewed only by
    /// its own origin. Refused ([`Error::Refused`]) for a bad ticket or over quota.
    pub fn hold_leased(
        &self,
        cid: &ContentId,
        ticket: &PlacementTicket,
        quota: u64,
        now_secs: u64,
    ) -> Result<Held, Error> {
        let _writer = self.lock_writer();
        let len = self.block_len(cid)?.ok_or(Error::Missing { cid: *cid })?;
        self.apply_ticket(cid, len, ticket, quota, now_secs)
    }

    /// Renews the lease on a held block with a fresh ticket; `Ok(None)` when the block is not
    /// held here (the origin then pushes it again).
    pub fn renew_lease(
        &self,
        cid: &ContentId,
        ticket: &PlacementTicket,
        quota: u64,
        now_secs: u64,
    ) -> Result<Option<Held>, Error> {
        let _writer = self.lock_writer();
        let Some(len) = self.block_len(cid)? else {
            return Ok(None);
        };
        if self.held_since(cid)?.is_none() {
            return Ok(None);
        }
        self.apply_ticket(cid, len, ticket, quota, now_secs)
            .map(Some)
    }

    fn held_since(&self, cid: &ContentId) -> Result<Option<u64>, Error> {
        let tx = self.db().begin_read()?;
        let since = tx
            .open_table(HELD)?
            .get(cid.to_bytes().as_slice())?
            .map(|v| v.value());
        Ok(since)
    }

    /// The body of `hold_leased`/`renew_lease`; the caller holds the writer lock.
    fn apply_ticket(
        &self,
        cid: &ContentId,
        len: u64,
        ticket: &PlacementTicket,
        quota: u64,
        now_secs: u64,
    ) -> Result<Held, Error> {
        let key = cid.to_bytes();
        let mut tx = self.db().begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        let current = read_lease(&tx, &key)?;
        let used = self.origin_use_in(&tx, &ticket.origin)?;
        let held = match decide(current.as_ref(), ticket, len, used, quota, now_secs) {
            Decision::Refuse(reason) => return Err(refused(cid, reason)),
            Decision::Keep(why) => Held::Unchanged(why),
            Decision::Renew => {
                if let Some(c) = &current {
                    tx.open_table(LEASE_ENDS)?
                        .remove((c.expires, key.as_slice()))?;
                }
                write_lease(&tx, &key, ticket)?;
                Held::Leased
            }
            Decision::Take { .. } => {
                drop_lease(&tx, &key, len)?;
                write_lease(&tx, &key, ticket)?;
                add_use(&tx, &ticket.origin, i128::from(len))?;
                Held::Leased
            }
        };
        {
            let mut table = tx.open_table(HELD)?;
            if table.get(key.as_slice())?.is_none() {
                table.insert(key.as_slice(), now_secs)?;
            }
        }
        tx.commit()?;
        Ok(held)
    }

    /// The lease a held block is kept under, if any.
    pub fn lease(&self, cid: &ContentId) -> Result<Option<Lease>, Error> {
        let tx = self.db().begin_read()?;
        let table = tx.open_table(LEASES)?;
        let found = table.get(cid.to_bytes().as_slice())?.map(|v| {
            let (origin, rf, expires, _) = v.value();
            to_lease(origin, rf, expires)
        });
        Ok(found)
    }

    /// The ticket a held block is kept under (to forward with a repair push).
    pub fn lease_ticket(&self, cid: &ContentId) -> Result<Option<PlacementTicket>, Error> {
        let tx = self.db().begin_read()?;
        let table = tx.open_table(LEASES)?;
        let Some(row) = table.get(cid.to_bytes().as_slice())? else {
            return Ok(None);
        };
        let (_, _, _, encoded) = row.value();
        Ok(PlacementTicket::decode(encoded).ok())
    }

    /// Every lease, ordered by block.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, Error> {
        let tx = self.db().begin_read()?;
        let table = tx.open_table(LEASES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let (origin, rf, expires, _) = value.value();
            out.push(LeaseInfo {
                block: index_key(key.value())?,
                lease: to_lease(origin, rf, expires),
            });
        }
        Ok(out)
    }

    /// Bytes held here under the leases of `origin`.
    pub fn origin_use(&self, origin: &[u8; 32]) -> Result<u64, Error> {
        let tx = self.db().begin_read()?;
        let used = tx
            .open_table(ORIGIN_USE)?
            .get(origin.as_slice())?
            .map_or(0, |v| v.value());
        Ok(used)
    }

    /// Ends every lease that expired by `now_secs`: the blocks are no longer held, their
    /// origins' quotas are freed, and each such block that no pinned file needs is removed.
    /// Returns the blocks released. Reads only the leases that ended (an index by end time), so
    /// it costs nothing per block held when none did.
    pub fn expire_leases(&self, now_secs: u64) -> Result<Vec<ContentId>, Error> {
        let _writer = self.lock_writer();
        let mut released: Vec<ContentId> = Vec::new();
        {
            let tx = self.db().begin_read()?;
            let ends = tx.open_table(LEASE_ENDS)?;
            for row in ends.range((0u64, &[][..])..(now_secs.saturating_add(1), &[][..]))? {
                let (key, _) = row?;
                let (_, block) = key.value();
                released.push(index_key(block)?);
            }
        }
        self.release_all(released)
    }

    /// Ends every hold without a lease (kept by a store from before leases): one pass over the
    /// blocks held, for a node to run once when it starts. Returns the blocks released.
    pub fn release_unleased(&self) -> Result<Vec<ContentId>, Error> {
        let _writer = self.lock_writer();
        let mut released: Vec<ContentId> = Vec::new();
        {
            let tx = self.db().begin_read()?;
            let leases = tx.open_table(LEASES)?;
            for row in tx.open_table(HELD)?.iter()? {
                let (key, _) = row?;
                if leases.get(key.value())?.is_none() {
                    released.push(index_key(key.value())?);
                }
            }
        }
        self.release_all(released)
    }

    /// Drops the holds (and leases) of `released` and removes what no pin needs; the caller
    /// holds the writer lock.
    fn release_all(&self, released: Vec<ContentId>) -> Result<Vec<ContentId>, Error> {
        if released.is_empty() {
            return Ok(released);
        }
        let tx = self.db().begin_write()?;
        for cid in &released {
            let key = cid.to_bytes();
            let len = self.block_len(cid)?.unwrap_or(0);
            drop_lease(&tx, &key, len)?;
            tx.open_table(HELD)?.remove(key.as_slice())?;
            tx.open_table(HELD_RF)?.remove(key.as_slice())?;
        }
        tx.commit()?;
        // Remove what no pin needs (a cached copy of a block this node reads is not touched).
        let mut live: HashSet<ContentId> = HashSet::new();
        for pin in self.pins()? {
            let (_, summary) = read::summarize(self, &pin.cid, false)?;
            live.extend(summary.blocks);
        }
        let dead: Vec<ContentId> = released
            .iter()
            .filter(|c| !live.contains(c))
            .copied()
            .collect();
        self.remove_blocks(&dead)?;
        Ok(released)
    }

    /// Drops the lease of a block no longer held (release or discard), in `tx`.
    pub(crate) fn forget_lease(
        tx: &WriteTransaction,
        cid: &ContentId,
        len: u64,
    ) -> Result<(), Error> {
        drop_lease(tx, &cid.to_bytes(), len)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use crate::test_util::store;
    use warren_protocol::{Codec, keypair_from_secret};

    fn block(i: u8, len: usize) -> (ContentId, Vec<u8>) {
        let bytes = vec![i; len];
        (ContentId::of_block(Codec::Raw, &bytes), bytes)
    }

    fn ticket(origin: u8, cid: ContentId, rf: u8, expires: u64) -> PlacementTicket {
        PlacementTicket::sign(&keypair_from_secret([origin; 32]), cid, rf, expires).unwrap()
    }

    #[test]
    fn a_lease_keeps_its_origins_rf_until_it_ends_then_the_block_goes() {
        let (_dir, s) = store(1 << 30);
        let (a, bytes) = block(1, 20_000);
        s.put_block(&a, &bytes).unwrap();
        let t = ticket(1, a, 3, 100);
        assert_eq!(s.hold_leased(&a, &t, 1 << 20, 10).unwrap(), Held::Leased);
        assert_eq!(s.held_rf(&a).unwrap(), Some(3));
        assert_eq!(s.origin_use(&t.origin).unwrap(), 20_000);
        // Another origin (an attacker's own ticket) can neither lower nor raise it.
        for rf in [0, 16] {
            let other = ticket(2, a, rf, 90);
            assert!(matches!(
                s.hold_leased(&a, &other, 1 << 20, 10).unwrap(),
                Held::Unchanged(_)
            ));
        }
        assert_eq!(s.held_rf(&a).unwrap(), Some(3));
        assert_eq!(s.lease_ticket(&a).unwrap(), Some(t.clone()));
        // The origin renews.
        let renewed = ticket(1, a, 3, 200);
        assert_eq!(
            s.renew_lease(&a, &renewed, 1 << 20, 50).unwrap(),
            Some(Held::Leased)
        );
        assert!(s.expire_leases(150).unwrap().is_empty());
        assert!(s.has_block(&a).unwrap());
        // It ends: released, freed, removed.
        assert_eq!(s.expire_leases(200).unwrap(), vec![a]);
        assert!(s.held().unwrap().is_empty());
        assert!(!s.has_block(&a).unwrap());
        assert_eq!(s.origin_use(&t.origin).unwrap(), 0);
        assert_eq!(
            s.renew_lease(&a, &ticket(1, a, 3, 300), 1 << 20, 250)
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_block_a_pin_needs_stays_when_its_lease_ends() {
        let (_dir, s) = store(1 << 30);
        let root = crate::test_util::put(&s, &vec![5u8; 40_000]).cid;
        let dag = s.dag(&root).unwrap();
        let (chunk, _) = *dag.last().unwrap();
        s.hold_leased(&chunk, &ticket(1, chunk, 3, 100), u64::MAX, 10)
            .unwrap();
        assert_eq!(s.expire_leases(100).unwrap(), vec![chunk]);
        assert!(s.held().unwrap().is_empty());
        assert!(s.has_block(&chunk).unwrap(), "the pinned file needs it");
    }

    #[test]
    fn an_origin_is_held_to_its_quota() {
        let (_dir, s) = store(1 << 30);
        let (a, ab) = block(1, 20_000);
        let (b, bb) = block(2, 20_000);
        s.put_block(&a, &ab).unwrap();
        s.put_block(&b, &bb).unwrap();
        s.hold_leased(&a, &ticket(1, a, 3, 100), 30_000, 10)
            .unwrap();
        let tb = ticket(1, b, 3, 100);
        let err = s.check_ticket(&b, 20_000, &tb, 30_000, 10).unwrap_err();
        assert!(err.to_string().contains("over quota"), "{err}");
        assert!(s.hold_leased(&b, &tb, 30_000, 10).is_err());
        // Another origin has its own quota.
        s.hold_leased(&b, &ticket(2, b, 3, 100), 30_000, 10)
            .unwrap();
        // Released blocks free the quota.
        assert!(s.release(&a).unwrap());
        assert_eq!(s.origin_use(&tb.origin).unwrap(), 0);
    }
}
