//! What a [`Sweep`] knew, kept across restarts (spec: `spec/sweep-snapshot.md`): per block, the
//! holders its last check found, when each last proved it holds the block, and when this node
//! last announced itself as the block's provider. Without it, a restarted node would look up
//! every block's providers and re-announce every record in its first period.
//!
//! Decoding is bounded by the input: counts are checked against the bytes left before anything
//! is allocated, peer ids against [`MAX_PEER_ID`], holders per block against [`MAX_HOLDERS`].

use warren_protocol::PeerId;

use super::{MAX_HOLDERS, NONE, Sweep};
use crate::error::Error;

/// The first bytes of a snapshot.
pub const MAGIC: &[u8; 4] = b"WSWP";
/// The version this build writes and reads.
pub const VERSION: u8 = 1;
/// Longest peer id accepted, bytes (an Ed25519 identity multihash is 38).
pub const MAX_PEER_ID: usize = 64;

/// Bytes of an entry without its holders: hash, renewal time, holder count.
const ENTRY_MIN: usize = 32 + 8 + 1;
/// Bytes of one holder: peer index, verification time.
const HOLDER: usize = 4 + 8;

impl Sweep {
    /// The sweep's knowledge of its blocks' holders and renewals, encoded.
    pub fn snapshot(&self) -> Vec<u8> {
        // Snapshot peer indices, in order of first use.
        let mut peers: Vec<Vec<u8>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for e in self.entries.values() {
            for &i in e.holders.iter().filter(|&&i| i != NONE) {
                if index.contains_key(&i) {
                    continue;
                }
                if let Some(p) = self.peers.get(i) {
                    peers.push(p.to_bytes());
                    index.insert(i, peers.len() - 1);
                }
            }
        }
        let mut out = Vec::with_capacity(16 + peers.len() * 40 + self.entries.len() * 60);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(peers.len() as u32).to_le_bytes());
        for p in &peers {
            out.push(p.len() as u8);
            out.extend_from_slice(p);
        }
        let mut blocks: Vec<(&[u8; 32], &super::Entry)> = self.entries.iter().collect();
        blocks.sort_unstable_by_key(|(h, _)| **h);
        out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
        for (h, e) in blocks {
            out.extend_from_slice(h);
            out.extend_from_slice(&e.renewed_ms.to_le_bytes());
            let held: Vec<(u32, u64)> = e
                .holders
                .iter()
                .zip(e.verified_ms)
                .filter_map(|(i, t)| Some((*index.get(i)? as u32, t)))
                .collect();
            out.push(held.len() as u8);
            for (i, t) in held {
                out.extend_from_slice(&i.to_le_bytes());
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        out
    }

    /// Takes back what `bytes` (a [`Sweep::snapshot`]) knew of the blocks in the sweep now
    /// (blocks no longer held are skipped). Returns the blocks restored. A malformed snapshot
    /// changes nothing.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let decoded = decode(bytes)?;
        let mut restored = 0;
        for (block, renewed_ms, holders) in decoded.entries {
            if !self.entries.contains_key(&block) {
                continue;
            }
            let peers: Vec<PeerId> = holders.iter().map(|(p, _)| decoded.peers[*p]).collect();
            self.holders_found(&block, &peers);
            if let Some(e) = self.entries.get_mut(&block) {
                e.renewed_ms = renewed_ms;
                for (slot, (_, t)) in holders.iter().enumerate().take(MAX_HOLDERS) {
                    e.verified_ms[slot] = *t;
                }
            }
            restored += 1;
        }
        Ok(restored)
    }
}

/// A decoded block entry: its hash, renewal time and (peer table index, verified) per holder.
type DecodedEntry = ([u8; 32], u64, Vec<(usize, u64)>);

/// A decoded snapshot: the peer table and the block entries.
struct Decoded {
    peers: Vec<PeerId>,
    entries: Vec<DecodedEntry>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.bad("truncated"));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn bad(&self, reason: &'static str) -> Error {
        Error::SweepSnapshot {
            offset: self.at,
            reason,
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(Error::SweepSnapshot {
            offset: 0,
            reason: "not a sweep snapshot (bad magic)",
        });
    }
    if r.u8()? != VERSION {
        return Err(r.bad("unknown version"));
    }
    let n_peers = r.u32()? as usize;
    if n_peers > r.left() / 2 {
        return Err(r.bad("more peers than the bytes can hold"));
    }
    let mut peers = Vec::with_capacity(n_peers);
    for _ in 0..n_peers {
        let len = usize::from(r.u8()?);
        if len > MAX_PEER_ID {
            return Err(r.bad("peer id too long"));
        }
        let raw = r.take(len)?;
        let peer = PeerId::from_bytes(raw).map_err(|_| r.bad("malformed peer id"))?;
        peers.push(peer);
    }
    let n_entries = r.u32()? as usize;
    if n_entries > r.left() / ENTRY_MIN {
        return Err(r.bad("more blocks than the bytes can hold"));
    }
    let mut entries = Vec::with_capacity(n_entries);
    for _ in 0..n_entries {
        let mut block = [0u8; 32];
        block.copy_from_slice(r.take(32)?);
        let renewed = r.u64()?;
        let n = usize::from(r.u8()?);
        if n > MAX_HOLDERS {
            return Err(r.bad("too many holders for a block"));
        }
        if n * HOLDER > r.left() {
            return Err(r.bad("truncated"));
        }
        let mut holders = Vec::with_capacity(n);
        for _ in 0..n {
            let p = r.u32()? as usize;
            if p >= peers.len() {
                return Err(r.bad("holder refers to no peer of the table"));
            }
            holders.push((p, r.u64()?));
        }
        entries.push((block, renewed, holders));
    }
    if r.left() != 0 {
        return Err(r.bad("trailing bytes"));
    }
    Ok(Decoded { peers, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::SweepConfig;
    use warren_protocol::{Codec, ContentId, Keypair};

    const T0: u64 = 1_700_000_000_000;

    fn cid(i: u8) -> ContentId {
        ContentId::from_parts(Codec::Raw, [i; 32])
    }

    fn peer(seed: u8) -> PeerId {
        let key = Keypair::ed25519_from_bytes([seed; 32]).expect("a 32-byte seed");
        key.public().to_peer_id()
    }

    fn sweep_with(blocks: &[u8]) -> Sweep {
        let mut s = Sweep::new(SweepConfig::default());
        let list: Vec<(ContentId, u64)> = blocks.iter().map(|&i| (cid(i), 256)).collect();
        let mut r = 7u64;
        s.sync(&list, T0, || {
            r = r.wrapping_mul(6364136223846793005).wrapping_add(1);
            r
        });
        s
    }

    #[test]
    fn a_restart_keeps_holders_verifications_and_renewals() {
        let mut a = sweep_with(&[1, 2, 3]);
        a.holders_found(&cid(1).hash(), &[peer(1), peer(2)]);
        a.verified(&cid(1).hash(), &peer(2), T0 + 5);
        a.renewed(&cid(1).hash(), T0 + 9);
        a.holders_found(&cid(2).hash(), &[peer(2)]);
        let bytes = a.snapshot();
        // The restarted node holds blocks 1 and 3 only (2 was dropped meanwhile).
        let mut b = sweep_with(&[1, 3]);
        assert_eq!(b.restore(&bytes).unwrap(), 2);
        assert_eq!(b.holders(&cid(1).hash()), vec![peer(1), peer(2)]);
        assert!(b.verified_recently(&cid(1).hash(), &peer(2), T0 + 10));
        assert!(!b.verified_recently(&cid(1).hash(), &peer(1), T0 + 10));
        assert!(!b.renewal_due(&cid(1).hash(), T0 + 10));
        assert!(b.holders(&cid(3).hash()).is_empty());
        assert_eq!(b.peers_known(), 2);
    }

    #[test]
    fn every_malformed_snapshot_is_refused_and_changes_nothing() {
        let mut a = sweep_with(&[1]);
        a.holders_found(&cid(1).hash(), &[peer(1)]);
        let good = a.snapshot();
        let mut b = sweep_with(&[1]);
        // Every truncation, and every single-byte change of the header and counts.
        for cut in 0..good.len() {
            assert!(b.restore(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(b.restore(&long).is_err());
        let mut huge = good.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(b.restore(&huge).is_err());
        assert!(
            b.holders(&cid(1).hash()).is_empty(),
            "nothing taken from bad input"
        );
        assert_eq!(b.restore(&good).unwrap(), 1);
    }

    #[test]
    fn the_spec_vector_is_what_the_code_writes_and_reads() {
        // spec/sweep-snapshot.md, "Test vector": one block, one holder.
        let mut a = sweep_with(&[1]);
        a.holders_found(&cid(1).hash(), &[peer(1)]);
        a.verified(&cid(1).hash(), &peer(1), T0 + 5);
        a.renewed(&cid(1).hash(), T0);
        let hex: String = a.snapshot().iter().map(|b| format!("{b:02x}")).collect();
        let spec = include_str!("../../../spec/sweep-snapshot.md");
        let vector: String = spec
            .split("<!-- vector: sweep-snapshot -->")
            .nth(1)
            .and_then(|s| s.split("```hex").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("the vector in the spec")
            .split_whitespace()
            .collect();
        assert_eq!(hex, vector);
        let bytes: Vec<u8> = (0..vector.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&vector[i..i + 2], 16).unwrap())
            .collect();
        let mut b = sweep_with(&[1]);
        assert_eq!(b.restore(&bytes).unwrap(), 1);
        assert!(b.verified_recently(&cid(1).hash(), &peer(1), T0 + 6));
    }
}
