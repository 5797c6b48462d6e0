//! Deterministic test data: the mixed text-and-random data the crate's tests, its examples and
//! benches, and `warren-bench` use. Built for this crate's own unit tests, and for others with
//! the `test-data` feature; it is not part of the store.
//!
//! Chunk i of the mixed data is [`text_chunk`] (words from a fixed list, picked by a seeded
//! generator) for even i and [`random_chunk`] for odd i. The generator is fixed forever, so the
//! data, and the ids of the spec's vectors made from it, never change.

use warren_protocol::CHUNK_SIZE;

/// [`mixed_data`] as a reader that makes it as it goes: memory stays at one chunk whatever the
/// size.
pub struct MixedReader {
    total: u64,
    seed: u64,
    pos: u64,
    chunk: Vec<u8>,
}

impl MixedReader {
    /// `total_bytes` of the data [`mixed_data`]`(total_bytes, seed)` returns.
    pub fn new(total_bytes: u64, seed: u64) -> Self {
        Self {
            total: total_bytes,
            seed,
            pos: 0,
            chunk: Vec::new(),
        }
    }
}

impl std::io::Read for MixedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.total {
            return Ok(0);
        }
        let chunk_size = CHUNK_SIZE as u64;
        let (index, offset) = (self.pos / chunk_size, (self.pos % chunk_size) as usize);
        if offset == 0 || self.chunk.is_empty() {
            let len = (self.total - index * chunk_size).min(chunk_size) as usize;
            self.chunk = mixed_chunk(self.seed, index, len);
        }
        let n = buf.len().min(self.chunk.len() - offset);
        buf[..n].copy_from_slice(&self.chunk[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Chunk `index` of the mixed data made from `seed`, `len` bytes long.
fn mixed_chunk(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let chunk_seed = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if index.is_multiple_of(2) {
        text_chunk(chunk_seed, len)
    } else {
        random_chunk(chunk_seed, len)
    }
}

/// `total_bytes` of mixed data: chunk i is [`text_chunk`] for even i and [`random_chunk`] for
/// odd i, each seeded by `seed` and i.
pub fn mixed_data(total_bytes: u64, seed: u64) -> Vec<u8> {
    let total = usize::try_from(total_bytes).unwrap_or(usize::MAX);
    let mut data = Vec::with_capacity(total);
    let mut i = 0u64;
    while data.len() < total {
        let len = CHUNK_SIZE.min(total - data.len());
        data.extend_from_slice(&mixed_chunk(seed, i, len));
        i += 1;
    }
    data
}

/// `len` bytes of text-like data: words from a fixed list, spaces, now and then a newline.
pub fn text_chunk(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "in",
        "a",
        "is",
        "that",
        "for",
        "it",
        "as",
        "with",
        "was",
        "on",
        "be",
        "by",
        "peer",
        "store",
        "block",
        "chunk",
        "manifest",
        "warren",
        "network",
        "hash",
        "tree",
        "node",
        "file",
        "data",
        "offer",
        "proof",
        "replica",
        "id",
        "read",
        "write",
        "verified",
        "compressed",
        "bytes",
        "disk",
        "mesh",
        "storage",
        "which",
        "from",
        "this",
        "have",
        "not",
        "are",
        "or",
        "an",
        "at",
        "but",
    ];
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng.next();
        out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
        out.push(if (r >> 58) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// `len` pseudo-random bytes.
pub fn random_chunk(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SplitMix64: small, fast, and fixed forever (unlike `rand`'s `StdRng`), so the data and the
/// ids of the spec's vectors never change.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic_and_mixed() {
        let a = mixed_data(3 * CHUNK_SIZE as u64 + 5, 42);
        assert_eq!(a, mixed_data(3 * CHUNK_SIZE as u64 + 5, 42));
        assert_ne!(a, mixed_data(3 * CHUNK_SIZE as u64 + 5, 43));
        assert_eq!(a.len(), 3 * CHUNK_SIZE + 5);
        let text = &a[..CHUNK_SIZE];
        assert!(
            text.iter()
                .all(|b| b.is_ascii_lowercase() || b" \n".contains(b))
        );
        let random = &a[CHUNK_SIZE..2 * CHUNK_SIZE];
        assert!(random.iter().filter(|b| !b.is_ascii()).count() > CHUNK_SIZE / 3);
    }

    #[test]
    fn reader_streams_the_same_data() {
        use std::io::Read;
        let total = 2 * CHUNK_SIZE as u64 + 777;
        let mut streamed = Vec::new();
        MixedReader::new(total, 5)
            .read_to_end(&mut streamed)
            .unwrap();
        assert_eq!(streamed, mixed_data(total, 5));
        // Odd read sizes across chunk boundaries.
        let mut reader = MixedReader::new(total, 5);
        let mut odd = Vec::new();
        let mut buf = vec![0; 333_333];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            odd.extend_from_slice(&buf[..n]);
        }
        assert_eq!(odd, streamed);
    }
}
