//! Proof of storage (spec: `spec/proof-of-storage.md`): any peer audits any holder of a block
//! with a random slice, checked against the block id alone.
//!
//! A block's id is its BLAKE3 hash, which is also the root of its BLAKE3 tree. The auditor derives
//! a [`Challenge`] from fresh random bytes of its own ([`Challenge::new`]): a 16-byte nonce and a
//! slice of 1 to 4 chunk groups of 16 KiB, aligned to a group; the holder answers with a
//! [`Proof`] ([`prove`]): the slice and the tree hashes linking it to the root, in bao-tree's
//! encoding of that chunk range (an outboard built from the block on demand, nothing stored), plus
//! a tag binding the answer to this challenge; the auditor checks it ([`verify`]) with nothing but
//! the challenge. No challenge is precomputed, and a holder missing a fraction `f` of a block
//! fails a challenge with probability about `f`.
//!
//! The tag is `blake3::keyed_hash(derive_key(TAG_CONTEXT, challenge bytes), slice)`. It makes a
//! proof answer one challenge only (a proof for another nonce or slice fails), so a recorded
//! answer cannot be passed off for a different audit and an observation can cite the challenge it
//! answered. It is not a secret: anyone holding the slice can compute it; the strength of an audit
//! is the unpredictability of the slice.
//!
//! Limits: a block of at most [`MAX_BLOCK_SIZE`] bytes; a proof of at most [`MAX_PROOF_SIZE`]
//! bytes (68 KiB). A proof is a 32-byte tag, the slice (at most 64 KiB) and at most 18 hash pairs
//! (1152 bytes) for any slice of a block up to the maximum size; the largest measured by a test
//! over every slice of such blocks is 66 400 bytes. Proving costs one BLAKE3 pass over the block;
//! verifying costs hashing the slice and its tree path.
//!
//! Non-goals: proving that the holder stores the block *itself* rather than fetching it from
//! another holder when challenged (only response deadlines bound that; the node sets them),
//! scheduling audits and recording their results as reputation observations (the node), and
//! protecting the content from the holder (private data is encrypted before chunking).

use std::fmt;

use bao_tree::io::BaoContentItem;
use bao_tree::io::outboard::PostOrderMemOutboard;
use bao_tree::io::sync::{DecodeResponseIter, encode_ranges, outboard_post_order};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use warren_protocol::block_transfer::{AUDIT_GROUP_SIZE, AuditRequest, MAX_AUDIT_SLICE};
use warren_protocol::{Codec, ContentId};

pub use warren_protocol::block_transfer::{MAX_BLOCK_SIZE, MAX_PROOF_SIZE};

/// The bao-tree chunk group: 2⁴ chunks of 1 KiB = 16 KiB ([`AUDIT_GROUP_SIZE`]).
pub const GROUP: BlockSize = BlockSize::from_chunk_log(4);

/// Most chunk groups in a challenged slice.
pub const MAX_GROUPS: u64 = 4;

/// BLAKE3 `derive_key` context of the challenge derivation.
pub const CHALLENGE_CONTEXT: &str = "warren 2025 proof-of-storage challenge v1";

/// BLAKE3 `derive_key` context of the tag key.
pub const TAG_CONTEXT: &str = "warren 2025 proof-of-storage tag v1";

/// Length of [`Challenge::to_bytes`].
pub const CHALLENGE_LEN: usize = 68;

/// Length of a proof's tag.
pub const TAG_LEN: usize = 32;

const CHUNK: u64 = 1024;

/// Writes a block hash in hex, for error messages.
struct Hex<'a>(&'a [u8; 32]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&blake3::Hash::from_bytes(*self.0).to_hex(), f)
    }
}

/// Everything that can go wrong proving or checking a proof of storage. Each names the block by
/// its BLAKE3 hash in hex.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The challenge breaks a rule of [`Challenge::validate`].
    #[error("challenge for block {}: {reason}", Hex(.block))]
    InvalidChallenge {
        /// The block.
        block: [u8; 32],
        /// The rule it breaks.
        reason: &'static str,
    },

    /// The holder's copy has another length than the challenge says.
    #[error("block {}: the copy is {found} bytes, the challenge says {expected}", Hex(.block))]
    WrongLength {
        /// The block.
        block: [u8; 32],
        /// The challenge's `block_len`.
        expected: u64,
        /// The copy's length.
        found: u64,
    },

    /// The holder's copy does not hash to the block id: it is corrupt and must not be served.
    #[error("block {}: the copy is corrupt (it hashes to {})", Hex(.block), Hex(.found))]
    CorruptCopy {
        /// The block.
        block: [u8; 32],
        /// What the copy hashes to.
        found: [u8; 32],
    },

    /// The proof is larger than [`MAX_PROOF_SIZE`].
    #[error("proof for block {}: {len} bytes exceeds the limit of {limit}", Hex(.block))]
    TooLarge {
        /// The block.
        block: [u8; 32],
        /// The proof's length.
        len: usize,
        /// [`MAX_PROOF_SIZE`].
        limit: usize,
    },

    /// The proof is truncated, has bytes left over, or covers another range.
    #[error("proof for block {} is malformed: {detail}", Hex(.block))]
    Malformed {
        /// The block.
        block: [u8; 32],
        /// What is wrong.
        detail: String,
    },

    /// The slice or a tree hash does not lead to the block id.
    #[error("proof for block {} does not verify against the block id: {detail}", Hex(.block))]
    Mismatch {
        /// The block.
        block: [u8; 32],
        /// Where the hashes disagree.
        detail: String,
    },

    /// The slice verifies, but the tag is not this challenge's: the proof answers another
    /// challenge.
    #[error("proof for block {} answers another challenge (wrong tag)", Hex(.block))]
    WrongTag {
        /// The block.
        block: [u8; 32],
    },
}

/// A proof-of-storage challenge: prove you hold bytes `offset..offset + len` of `block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Challenge {
    /// The block's BLAKE3 hash (the bao root).
    pub block: [u8; 32],
    /// The block's length in bytes: the auditor knows it from the manifest that lists the block
    /// or from its own copy. It fixes the shape of the tree.
    pub block_len: u64,
    /// Makes the challenge unique.
    pub nonce: [u8; 16],
    /// Start of the slice, a multiple of [`AUDIT_GROUP_SIZE`].
    pub offset: u64,
    /// Length of the slice: 1 to [`MAX_GROUPS`] groups, cut at the block's end.
    pub len: u32,
}

impl Challenge {
    /// Derives a challenge for `block` (of `block_len` bytes) from 32 fresh random bytes `seed`.
    ///
    /// `x = BLAKE3-XOF(derive_key(CHALLENGE_CONTEXT), seed ‖ block ‖ block_len as u64 LE)`, first
    /// 32 bytes; `nonce = x[0..16]`, `r1 = u64 LE x[16..24]`, `r2 = u64 LE x[24..32]`;
    /// `groups = max(1, ⌈block_len / 16384⌉)`, `count = 1 + r1 mod min(4, groups)`,
    /// `start = r2 mod (groups − count + 1)`, `offset = 16384 · start`,
    /// `len = min(16384 · count, block_len − offset)`. (The modulo bias is below 2⁻⁵⁸.)
    pub fn new(block: [u8; 32], block_len: u64, seed: [u8; 32]) -> Challenge {
        let mut h = blake3::Hasher::new_derive_key(CHALLENGE_CONTEXT);
        h.update(&seed);
        h.update(&block);
        h.update(&block_len.to_le_bytes());
        let mut x = [0u8; 32];
        h.finalize_xof().fill(&mut x);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&x[..16]);
        let r1 = u64::from_le_bytes(x[16..24].try_into().unwrap_or_default());
        let r2 = u64::from_le_bytes(x[24..32].try_into().unwrap_or_default());
        let groups = block_len.div_ceil(AUDIT_GROUP_SIZE).max(1);
        let count = 1 + r1 % MAX_GROUPS.min(groups);
        let start = r2 % (groups - count + 1);
        let offset = start * AUDIT_GROUP_SIZE;
        let len = (count * AUDIT_GROUP_SIZE).min(block_len.saturating_sub(offset));
        Challenge {
            block,
            block_len,
            nonce,
            offset,
            // At most 4 · 16384.
            len: u32::try_from(len).unwrap_or(MAX_AUDIT_SLICE),
        }
    }

    /// The challenge an [`AuditRequest`] carries.
    pub fn from_request(request: &AuditRequest) -> Challenge {
        Challenge {
            block: request.block.hash(),
            block_len: request.block_len,
            nonce: request.nonce,
            offset: request.offset,
            len: request.len,
        }
    }

    /// The [`AuditRequest`] for this challenge, naming the block as a `codec` block.
    pub fn to_request(&self, codec: Codec) -> AuditRequest {
        AuditRequest {
            block: ContentId::from_parts(codec, self.block),
            block_len: self.block_len,
            nonce: self.nonce,
            offset: self.offset,
            len: self.len,
        }
    }

    /// The bytes the tag key is derived from: `block ‖ block_len (u64 LE) ‖ nonce ‖ offset (u64
    /// LE) ‖ len (u32 LE)`.
    pub fn to_bytes(&self) -> [u8; CHALLENGE_LEN] {
        let mut out = [0u8; CHALLENGE_LEN];
        out[..32].copy_from_slice(&self.block);
        out[32..40].copy_from_slice(&self.block_len.to_le_bytes());
        out[40..56].copy_from_slice(&self.nonce);
        out[56..64].copy_from_slice(&self.offset.to_le_bytes());
        out[64..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// The tag a proof for this challenge carries for `slice`.
    pub fn tag(&self, slice: &[u8]) -> [u8; TAG_LEN] {
        let key = blake3::derive_key(TAG_CONTEXT, &self.to_bytes());
        *blake3::keyed_hash(&key, slice).as_bytes()
    }

    /// Checks the shape every challenge has (derived or not): `block_len` at most
    /// [`MAX_BLOCK_SIZE`]; `offset` a multiple of 16384 inside the block (0 for an empty block);
    /// `len` 1 to 4 whole groups, or fewer bytes ending exactly at the block's end (0 only for an
    /// empty block).
    pub fn validate(&self) -> Result<(), ProofError> {
        let invalid = |reason| {
            Err(ProofError::InvalidChallenge {
                block: self.block,
                reason,
            })
        };
        let len = u64::from(self.len);
        if self.block_len > MAX_BLOCK_SIZE as u64 {
            return invalid("the block is larger than a block can be");
        }
        if !self.offset.is_multiple_of(AUDIT_GROUP_SIZE) {
            return invalid("the offset is not a multiple of 16384");
        }
        if self.block_len == 0 {
            return if self.offset == 0 && len == 0 {
                Ok(())
            } else {
                invalid("the block is empty")
            };
        }
        if self.offset >= self.block_len {
            return invalid("the offset is not inside the block");
        }
        if len == 0 || len > MAX_GROUPS * AUDIT_GROUP_SIZE {
            return invalid("the slice is empty or longer than 4 groups");
        }
        let end = self.offset + len;
        if end > self.block_len {
            return invalid("the slice ends after the block");
        }
        if !len.is_multiple_of(AUDIT_GROUP_SIZE) && end != self.block_len {
            return invalid("the slice is neither whole groups nor cut at the block's end");
        }
        Ok(())
    }

    /// The chunk range the proof covers (at least one chunk, so an empty block has one).
    fn ranges(&self) -> ChunkRanges {
        let start = self.offset / CHUNK;
        let end = (self.offset + u64::from(self.len))
            .div_ceil(CHUNK)
            .max(start + 1);
        ChunkRanges::from(ChunkNum(start)..ChunkNum(end))
    }

    fn tree(&self) -> BaoTree {
        BaoTree::new(self.block_len, GROUP)
    }
}

/// A holder's answer to a [`Challenge`].
#[derive(Clone, PartialEq, Eq)]
pub struct Proof {
    /// [`Challenge::tag`] of the slice.
    pub tag: [u8; TAG_LEN],
    /// bao-tree's encoding of the slice's chunk range: parent hash pairs (64 bytes each) and the
    /// slice's chunk groups, in pre-order.
    pub encoded: Vec<u8>,
}

impl fmt::Debug for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proof")
            .field("tag", &format_args!("{}", Hex(&self.tag)))
            .field("encoded", &format_args!("{} bytes", self.encoded.len()))
            .finish()
    }
}

impl Proof {
    /// The wire form: `tag ‖ encoded`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG_LEN + self.encoded.len());
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&self.encoded);
        out
    }

    /// Reads the wire form of a proof about `block`: at least the tag, at most
    /// [`MAX_PROOF_SIZE`] bytes (checked before anything is copied).
    pub fn from_bytes(block: &[u8; 32], bytes: &[u8]) -> Result<Proof, ProofError> {
        if bytes.len() > MAX_PROOF_SIZE {
            return Err(ProofError::TooLarge {
                block: *block,
                len: bytes.len(),
                limit: MAX_PROOF_SIZE,
            });
        }
        let Some((tag, encoded)) = bytes.split_first_chunk::<TAG_LEN>() else {
            return Err(ProofError::Malformed {
                block: *block,
                detail: format!("{} bytes is shorter than the tag", bytes.len()),
            });
        };
        Ok(Proof {
            tag: *tag,
            encoded: encoded.to_vec(),
        })
    }

    /// The length of [`Proof::to_bytes`].
    pub fn len(&self) -> usize {
        TAG_LEN + self.encoded.len()
    }

    /// Never true: a proof has at least its tag.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Answers `challenge` from the holder's copy `block` of the challenged block.
///
/// Fails if the challenge is invalid, if the copy has another length than the challenge says, or
/// if the copy does not hash to the block id ([`ProofError::CorruptCopy`]: the holder should drop
/// it and fetch a good replica rather than answer).
pub fn prove(block: &[u8], challenge: &Challenge) -> Result<Proof, ProofError> {
    challenge.validate()?;
    let id = challenge.block;
    if block.len() as u64 != challenge.block_len {
        return Err(ProofError::WrongLength {
            block: id,
            expected: challenge.block_len,
            found: block.len() as u64,
        });
    }
    let tree = challenge.tree();
    let mut outboard = Vec::new();
    // Writing to memory cannot fail, nor can reading exactly `block_len` bytes from `block`.
    let root =
        outboard_post_order(block, tree, &mut outboard).map_err(|e| ProofError::Malformed {
            block: id,
            detail: format!("building the tree: {e}"),
        })?;
    if root.as_bytes() != &id {
        return Err(ProofError::CorruptCopy {
            block: id,
            found: *root.as_bytes(),
        });
    }
    let outboard = PostOrderMemOutboard {
        root,
        tree,
        data: outboard,
    };
    let mut encoded = Vec::new();
    encode_ranges(block, &outboard, &challenge.ranges(), &mut encoded).map_err(|e| {
        ProofError::Malformed {
            block: id,
            detail: format!("encoding the slice: {e}"),
        }
    })?;
    let start = challenge.offset as usize;
    let slice = &block[start..start + challenge.len as usize];
    let proof = Proof {
        tag: challenge.tag(slice),
        encoded,
    };
    if proof.len() > MAX_PROOF_SIZE {
        return Err(ProofError::TooLarge {
            block: id,
            len: proof.len(),
            limit: MAX_PROOF_SIZE,
        });
    }
    Ok(proof)
}

/// Checks `proof` against `challenge`, which holds all the auditor needs: the block id (the bao
/// root) and length, the slice and the nonce. Returns the verified slice.
pub fn verify(challenge: &Challenge, proof: &Proof) -> Result<Vec<u8>, ProofError> {
    challenge.validate()?;
    let id = challenge.block;
    if proof.len() > MAX_PROOF_SIZE {
        return Err(ProofError::TooLarge {
            block: id,
            len: proof.len(),
            limit: MAX_PROOF_SIZE,
        });
    }
    let malformed = |detail: String| ProofError::Malformed { block: id, detail };
    let ranges = challenge.ranges();
    let mut reader: &[u8] = &proof.encoded;
    let mut slice = Vec::with_capacity(challenge.len as usize);
    let items = DecodeResponseIter::new(
        blake3::Hash::from_bytes(id),
        challenge.tree(),
        &mut reader,
        &ranges,
    );
    for item in items {
        let item = item.map_err(|e| {
            use bao_tree::io::DecodeError as E;
            match e {
                E::ParentHashMismatch(node) => ProofError::Mismatch {
                    block: id,
                    detail: format!("tree node {node:?}"),
                },
                E::LeafHashMismatch(chunk) => ProofError::Mismatch {
                    block: id,
                    detail: format!("data at byte {}", chunk.to_bytes()),
                },
                E::ParentNotFound(_) | E::LeafNotFound(_) => malformed("truncated".into()),
                E::Io(e) => malformed(e.to_string()),
            }
        })?;
        if let BaoContentItem::Leaf(leaf) = item {
            let expected = challenge.offset + slice.len() as u64;
            if leaf.offset != expected {
                return Err(malformed(format!(
                    "data at byte {} where byte {expected} was due",
                    leaf.offset
                )));
            }
            slice.extend_from_slice(&leaf.data);
        }
    }
    if !reader.is_empty() {
        return Err(malformed(format!("{} bytes left over", reader.len())));
    }
    if slice.len() != challenge.len as usize {
        return Err(malformed(format!(
            "{} bytes of data for a {}-byte slice",
            slice.len(),
            challenge.len
        )));
    }
    if proof.tag != challenge.tag(&slice) {
        return Err(ProofError::WrongTag { block: id });
    }
    Ok(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    /// Deterministic pseudo-random bytes (splitmix64).
    pub(crate) fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn id(block: &[u8]) -> [u8; 32] {
        *blake3::hash(block).as_bytes()
    }

    fn challenge(block: &[u8], seed: u8) -> Challenge {
        Challenge::new(id(block), block.len() as u64, [seed; 32])
    }

    /// A proof made without the holder's own check, from whatever bytes a cheater has.
    fn forge(data: &[u8], challenge: &Challenge) -> Proof {
        let tree = BaoTree::new(data.len() as u64, GROUP);
        let mut ob = Vec::new();
        let root = outboard_post_order(data, tree, &mut ob).unwrap();
        let ob = PostOrderMemOutboard {
            root,
            tree,
            data: ob,
        };
        let mut encoded = Vec::new();
        encode_ranges(data, &ob, &challenge.ranges(), &mut encoded).unwrap();
        let s = challenge.offset as usize;
        let e = (s + challenge.len as usize).min(data.len());
        Proof {
            tag: challenge.tag(&data[s..e]),
            encoded,
        }
    }

    #[test]
    fn bao_root_is_the_blake3_hash() {
        for len in [0, 1, 1024, 1025, 16 * KIB, 16 * KIB + 1, 100_000, 1 << 20] {
            let data = bytes(len, len as u64);
            let ob = PostOrderMemOutboard::create(&data, GROUP);
            assert_eq!(ob.root, blake3::hash(&data), "{len}");
        }
    }

    #[test]
    fn good_proofs_verify() {
        for (len, seed) in [
            (0, 0),
            (1, 1),
            (1000, 2),
            (16 * KIB, 3),
            (16 * KIB + 1, 4),
            (100_000, 5),
            (1 << 20, 6),
            (MAX_BLOCK_SIZE, 7),
        ] {
            let block = bytes(len, seed);
            for s in 0..8 {
                let c = challenge(&block, s);
                c.validate().unwrap();
                let proof = prove(&block, &c).unwrap();
                let slice = verify(&c, &proof).unwrap();
                let o = c.offset as usize;
                assert_eq!(slice, &block[o..o + c.len as usize], "{len}/{s}");
                // Through the wire form too.
                let back = Proof::from_bytes(&c.block, &proof.to_bytes()).unwrap();
                assert_eq!(back, proof);
            }
        }
    }

    #[test]
    fn challenges_are_deterministic_aligned_and_cover_the_block() {
        let block = bytes(1 << 20, 9);
        let groups = (1 << 20) / AUDIT_GROUP_SIZE;
        let mut starts = std::collections::BTreeSet::new();
        let mut counts = std::collections::BTreeSet::new();
        for s in 0..=255u8 {
            let c = challenge(&block, s);
            assert_eq!(c, challenge(&block, s));
            c.validate().unwrap();
            assert_eq!(c.offset % AUDIT_GROUP_SIZE, 0);
            assert_eq!(u64::from(c.len) % AUDIT_GROUP_SIZE, 0);
            starts.insert(c.offset / AUDIT_GROUP_SIZE);
            counts.insert(u64::from(c.len) / AUDIT_GROUP_SIZE);
        }
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert!(starts.len() > groups as usize / 2, "{}", starts.len());
        assert!(starts.iter().all(|&s| s < groups));
        // Different seeds give different nonces.
        assert_ne!(challenge(&block, 1).nonce, challenge(&block, 2).nonce);
    }

    #[test]
    fn small_blocks_get_whole_block_challenges() {
        let block = bytes(5000, 1);
        for s in 0..16 {
            let c = challenge(&block, s);
            assert_eq!((c.offset, c.len), (0, 5000));
        }
        let c = Challenge::new(id(&[]), 0, [1; 32]);
        assert_eq!((c.offset, c.len), (0, 0));
        verify(&c, &prove(&[], &c).unwrap()).unwrap();
    }

    #[test]
    fn a_proof_from_altered_bytes_fails() {
        let block = bytes(200_000, 3);
        let c = challenge(&block, 1);
        // Flip a byte inside the slice: the holder's own check catches it …
        let mut bad = block.clone();
        bad[c.offset as usize + 7] ^= 1;
        assert!(matches!(
            prove(&bad, &c).unwrap_err(),
            ProofError::CorruptCopy { .. }
        ));
        // … and a cheater that answers anyway fails verification.
        let err = verify(&c, &forge(&bad, &c)).unwrap_err();
        assert!(matches!(err, ProofError::Mismatch { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&blake3::hash(&block).to_hex().to_string())
        );
        // Altered bytes outside the slice change the tree hashes on the path: also caught.
        let mut bad = block.clone();
        let outside = if c.offset == 0 { block.len() - 1 } else { 0 };
        bad[outside] ^= 1;
        assert!(matches!(
            verify(&c, &forge(&bad, &c)).unwrap_err(),
            ProofError::Mismatch { .. }
        ));
        // Altering the slice inside a good proof.
        let mut proof = prove(&block, &c).unwrap();
        let n = proof.encoded.len();
        proof.encoded[n - 1] ^= 1;
        assert!(matches!(
            verify(&c, &proof).unwrap_err(),
            ProofError::Mismatch { .. }
        ));
    }

    #[test]
    fn a_proof_for_another_challenge_fails() {
        let block = bytes(300_000, 4);
        let c = challenge(&block, 1);
        let proof = prove(&block, &c).unwrap();
        // Same slice, other nonce: the tag gives it away.
        let other_nonce = Challenge {
            nonce: [0xee; 16],
            ..c
        };
        assert_eq!(
            verify(&other_nonce, &proof).unwrap_err(),
            ProofError::WrongTag { block: c.block }
        );
        // Another slice.
        let other_slice = Challenge {
            offset: (c.offset + AUDIT_GROUP_SIZE) % (16 * AUDIT_GROUP_SIZE),
            len: AUDIT_GROUP_SIZE as u32,
            ..c
        };
        assert!(verify(&other_slice, &proof).is_err());
        // Another block of the same length.
        let other = bytes(300_000, 5);
        let other_block = Challenge {
            block: id(&other),
            ..c
        };
        assert!(matches!(
            verify(&other_block, &proof).unwrap_err(),
            ProofError::Mismatch { .. }
        ));
        // A whole proof of another block.
        assert!(verify(&c, &prove(&other, &other_block).unwrap()).is_err());
    }

    #[test]
    fn truncated_garbage_and_padded_proofs_fail_cleanly() {
        let block = bytes(500_000, 6);
        let c = challenge(&block, 2);
        let good = prove(&block, &c).unwrap().to_bytes();
        for n in [0, 1, 31, 32, 33, 64, 96, good.len() / 2, good.len() - 1] {
            let err = match Proof::from_bytes(&c.block, &good[..n]) {
                Ok(p) => verify(&c, &p).unwrap_err(),
                Err(e) => e,
            };
            assert!(matches!(err, ProofError::Malformed { .. }), "{n}: {err}");
        }
        let mut padded = good.clone();
        padded.push(0);
        let err = verify(&c, &Proof::from_bytes(&c.block, &padded).unwrap()).unwrap_err();
        assert!(matches!(err, ProofError::Malformed { .. }), "{err}");
        let garbage = bytes(good.len(), 99);
        let err = verify(&c, &Proof::from_bytes(&c.block, &garbage).unwrap()).unwrap_err();
        assert!(matches!(err, ProofError::Mismatch { .. }), "{err}");
        let huge = vec![0u8; MAX_PROOF_SIZE + 1];
        assert!(matches!(
            Proof::from_bytes(&c.block, &huge).unwrap_err(),
            ProofError::TooLarge { .. }
        ));
        let huge = Proof {
            tag: [0; 32],
            encoded: huge,
        };
        assert!(matches!(
            verify(&c, &huge).unwrap_err(),
            ProofError::TooLarge { .. }
        ));
    }

    #[test]
    fn invalid_challenges_are_refused_by_both_sides() {
        let block = bytes(100_000, 7);
        let c = challenge(&block, 3);
        let bad = [
            Challenge { offset: 1000, ..c },
            Challenge {
                offset: 7 * AUDIT_GROUP_SIZE,
                ..c
            },
            Challenge { len: 0, ..c },
            Challenge {
                offset: 0,
                len: 5 * AUDIT_GROUP_SIZE as u32,
                ..c
            },
            Challenge {
                offset: 0,
                len: 1000,
                ..c
            },
            Challenge {
                block_len: MAX_BLOCK_SIZE as u64 + 1,
                ..c
            },
            Challenge {
                offset: 5 * AUDIT_GROUP_SIZE,
                len: 2 * AUDIT_GROUP_SIZE as u32,
                ..c
            },
        ];
        for b in bad {
            assert!(
                matches!(b.validate(), Err(ProofError::InvalidChallenge { .. })),
                "{b:?}"
            );
            assert!(prove(&block, &b).is_err(), "{b:?}");
            assert!(verify(&b, &prove(&block, &c).unwrap()).is_err(), "{b:?}");
        }
        // The last group cut at the block's end is fine: 100_000 = 6 · 16384 + 1696.
        let tail = Challenge {
            offset: 6 * AUDIT_GROUP_SIZE,
            len: 1696,
            ..c
        };
        tail.validate().unwrap();
        verify(&tail, &prove(&block, &tail).unwrap()).unwrap();
        // The holder refuses a challenge with the wrong length.
        let short = Challenge {
            block_len: 99_999,
            offset: 0,
            len: AUDIT_GROUP_SIZE as u32,
            ..tail
        };
        assert!(matches!(
            prove(&block, &short).unwrap_err(),
            ProofError::WrongLength { .. }
        ));
        // An empty block has exactly one challenge shape.
        let empty = Challenge::new(id(&[]), 0, [0; 32]);
        assert!(Challenge { len: 1, ..empty }.validate().is_err());
    }

    #[test]
    fn proof_size_is_bounded_for_every_slice() {
        // Every slice shape of blocks up to the largest: the bound in the docs holds.
        let mut largest = 0;
        for len in [
            16 * KIB,
            64 * KIB + 1,
            300_000,
            (1 << 20) - 1,
            1 << 20,
            MAX_BLOCK_SIZE,
        ] {
            let block = bytes(len, len as u64);
            let groups = (len as u64).div_ceil(AUDIT_GROUP_SIZE);
            for start in 0..groups {
                for count in 1..=MAX_GROUPS.min(groups - start) {
                    let offset = start * AUDIT_GROUP_SIZE;
                    let c = Challenge {
                        block: id(&block),
                        block_len: len as u64,
                        nonce: [0; 16],
                        offset,
                        len: (count * AUDIT_GROUP_SIZE).min(len as u64 - offset) as u32,
                    };
                    let p = prove(&block, &c).unwrap();
                    largest = largest.max(p.len());
                    verify(&c, &p).unwrap();
                }
            }
        }
        assert!(largest <= MAX_PROOF_SIZE, "{largest}");
        assert!(largest > 64 * KIB, "{largest}");
        // The tree hashes add little: at most 18 pairs.
        assert!(largest <= 64 * KIB + TAG_LEN + 18 * 64, "{largest}");
    }

    #[test]
    fn requests_carry_the_challenge() {
        let block = bytes(70_000, 8);
        let c = challenge(&block, 4);
        let req = c.to_request(Codec::Raw);
        req.validate().unwrap();
        assert_eq!(req.block, ContentId::of_block(Codec::Raw, &block));
        assert_eq!(Challenge::from_request(&req), c);
    }

    #[test]
    fn errors_name_the_block() {
        let block = bytes(100, 1);
        let c = challenge(&block, 1);
        let err = prove(&block[..99], &c).unwrap_err();
        assert!(
            err.to_string()
                .contains(&blake3::hash(&block).to_hex().to_string()),
            "{err}"
        );
        assert!(format!("{:?}", prove(&block, &c).unwrap()).contains("bytes"));
    }
}
