//! The benchmarks behind `warren bench ingest` and `warren bench private`, and the deterministic
//! test data they use.
//!
//! [`ingest`] generates mixed data (even chunks text-like: words from a fixed list picked by a
//! seeded generator; odd chunks random), then times, on the same bytes held in memory, (a)
//! [`Store::put`] into a fresh store and (b) a plain loop of the same work without a store: the
//! same brotli compression and BLAKE3 hashing of the same chunks on the same number of threads.
//! Their ratio says how much the pipeline (reading, ordering, dedup, files, fsync, commits) costs
//! on top of the unavoidable work; the goal is at least 0.85.

use std::{
    fmt,
    num::NonZero,
    path::Path,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    thread,
    time::Instant,
};

use warren_protocol::{CHUNK_SIZE, Codec, ContentId};

use crate::{Class, Error, FileKey, PutOptions, SealOptions, Store, chunk};

/// The figures of one [`ingest`] run.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestReport {
    /// Bytes of input.
    pub total_bytes: u64,
    /// Worker threads of both runs (`available_parallelism`).
    pub threads: usize,
    /// Seconds `Store::put` took.
    pub put_secs: f64,
    /// Its rate, MiB of input per second.
    pub put_mib_s: f64,
    /// Seconds the plain compress-and-hash loop took.
    pub plain_secs: f64,
    /// Its rate, MiB of input per second.
    pub plain_mib_s: f64,
    /// `put_mib_s / plain_mib_s`.
    pub ratio: f64,
    /// Bytes stored (compressed blocks and manifests).
    pub stored_bytes: u64,
    /// The id of the file put.
    pub cid: ContentId,
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.total_bytes as f64 / (1 << 20) as f64;
        writeln!(
            f,
            "ingest of {mib:.0} MiB mixed data (half text, half random) on {} threads",
            self.threads
        )?;
        writeln!(
            f,
            "  put (chunk, brotli, BLAKE3, store): {:8.1} MiB/s  ({:.2} s)",
            self.put_mib_s, self.put_secs
        )?;
        writeln!(
            f,
            "  plain brotli + BLAKE3 loop:         {:8.1} MiB/s  ({:.2} s)",
            self.plain_mib_s, self.plain_secs
        )?;
        writeln!(
            f,
            "  ratio put / plain:                  {:8.3}  (goal >= 0.85)",
            self.ratio
        )?;
        write!(
            f,
            "  stored {} bytes ({:.1}% of input) as {}",
            self.stored_bytes,
            100.0 * self.stored_bytes as f64 / self.total_bytes.max(1) as f64,
            self.cid
        )
    }
}

/// Runs the benchmark on `total_bytes` of data made from `seed`, with a fresh store in `dir`
/// (which should be empty or absent; the store is left there). Holds the data in memory.
pub fn ingest(dir: &Path, total_bytes: u64, seed: u64) -> Result<IngestReport, Error> {
    let data = mixed_data(total_bytes, seed);
    let threads = thread::available_parallelism().map_or(1, NonZero::get);

    let start = Instant::now();
    plain_loop(&data, threads);
    let plain_secs = start.elapsed().as_secs_f64();

    let store = Store::open(dir, u64::MAX)?;
    let start = Instant::now();
    let outcome = store.put(data.as_slice(), &PutOptions::default(), &|_| {})?;
    let put_secs = start.elapsed().as_secs_f64();

    let mib = total_bytes as f64 / (1 << 20) as f64;
    let (put_mib_s, plain_mib_s) = (mib / put_secs, mib / plain_secs);
    Ok(IngestReport {
        total_bytes,
        threads,
        put_secs,
        put_mib_s,
        plain_secs,
        plain_mib_s,
        ratio: put_mib_s / plain_mib_s,
        stored_bytes: outcome.stored_bytes,
        cid: outcome.cid,
    })
}

/// The figures of one [`private`] run: public and private puts of the same data, side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivateReport {
    /// Bytes of input.
    pub total_bytes: u64,
    /// Rounds (each one public put and one private put, alternating, each into a fresh store).
    pub rounds: usize,
    /// Median seconds of the public puts.
    pub public_secs: f64,
    /// Median seconds of the private puts.
    pub private_secs: f64,
    /// `public_secs / private_secs`: the private put's rate as a fraction of the public one's.
    pub ratio: f64,
    /// Bytes the public file takes in the store.
    pub public_stored: u64,
    /// Bytes the sealed file takes in the store.
    pub private_stored: u64,
}

impl fmt::Display for PrivateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.total_bytes as f64 / (1 << 20) as f64;
        writeln!(
            f,
            "put of {mib:.0} MiB mixed data (half text, half random), median of {} alternating rounds",
            self.rounds
        )?;
        writeln!(
            f,
            "  public put (brotli, BLAKE3, store):       {:8.1} MiB/s  ({:.2} s, stored {} bytes)",
            mib / self.public_secs,
            self.public_secs,
            self.public_stored
        )?;
        writeln!(
            f,
            "  private put (+ XChaCha20-Poly1305 STREAM): {:8.1} MiB/s  ({:.2} s, stored {} bytes)",
            mib / self.private_secs,
            self.private_secs,
            self.private_stored
        )?;
        write!(
            f,
            "  ratio private / public:                  {:8.3}  (goal >= 0.8)",
            self.ratio
        )
    }
}

/// Puts the same `total_bytes` of mixed data from `seed` `rounds` times as a public file and as a
/// private one, alternating, each into a fresh store under `dir` (removed again), and compares
/// the median times. The data is held in memory.
pub fn private(
    dir: &Path,
    total_bytes: u64,
    seed: u64,
    rounds: usize,
) -> Result<PrivateReport, Error> {
    let data = mixed_data(total_bytes, seed);
    let key = FileKey::from_bytes([0x5a; 32]);
    let opts = SealOptions {
        class: Class::Private,
        name: Some("bench.bin".into()),
        media_type: None,
    };
    let (mut public, mut private) = (Vec::new(), Vec::new());
    let (mut public_stored, mut private_stored) = (0, 0);
    for round in 0..rounds.max(1) {
        for sealed in [false, true] {
            let sub = dir.join(format!("round-{round}-{sealed}"));
            let store = Store::open(&sub, u64::MAX)?;
            let start = Instant::now();
            if sealed {
                let (out, _) = store.put_sealed(data.as_slice(), &key, &opts, true, &|_| {})?;
                private.push(start.elapsed().as_secs_f64());
                private_stored = out.stored_bytes;
            } else {
                let out = store.put(data.as_slice(), &PutOptions::default(), &|_| {})?;
                public.push(start.elapsed().as_secs_f64());
                public_stored = out.stored_bytes;
            }
            drop(store);
            let _ = std::fs::remove_dir_all(&sub);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (public_secs, private_secs) = (median(&mut public), median(&mut private));
    Ok(PrivateReport {
        total_bytes,
        rounds: rounds.max(1),
        public_secs,
        private_secs,
        ratio: public_secs / private_secs,
        public_stored,
        private_stored,
    })
}

/// Encodes and hashes every chunk of `data` on `threads` threads; returns the stored bytes.
fn plain_loop(data: &[u8], threads: usize) -> u64 {
    let chunks: Vec<&[u8]> = data.chunks(CHUNK_SIZE).collect();
    let next = AtomicUsize::new(0);
    let stored = AtomicU64::new(0);
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(c) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let block = chunk::encode_block(c);
                    let cid = ContentId::of_block(Codec::Raw, &block);
                    std::hint::black_box(cid);
                    stored.fetch_add(block.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    stored.into_inner()
}

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

    #[test]
    fn small_ingest_reports_consistent_figures() {
        let dir = tempfile::tempdir().unwrap();
        let report = ingest(dir.path(), 3 * CHUNK_SIZE as u64, 1).unwrap();
        assert_eq!(report.total_bytes, 3 * CHUNK_SIZE as u64);
        assert!(report.put_mib_s > 0.0 && report.plain_mib_s > 0.0);
        assert!((report.ratio - report.put_mib_s / report.plain_mib_s).abs() < 1e-9);
        assert!(report.to_string().contains("ratio put / plain"));
        assert!(report.stored_bytes < report.total_bytes);
    }

    #[test]
    fn small_private_bench_reports_consistent_figures() {
        let dir = tempfile::tempdir().unwrap();
        let report = private(dir.path(), 3 * CHUNK_SIZE as u64 + 9, 1, 1).unwrap();
        assert!(report.public_secs > 0.0 && report.private_secs > 0.0);
        assert!((report.ratio - report.public_secs / report.private_secs).abs() < 1e-9);
        // Sealed: compressed, padded, with tags; never much more than the public blocks.
        assert!(
            report.private_stored > 0 && report.private_stored < report.public_stored * 12 / 10
        );
        assert!(report.to_string().contains("ratio private / public"));
    }

    /// The figures for the note: `cargo test --release -p warren-storage-mesh bench --
    /// --ignored --nocapture` (BENCH_MIB sets the size, default 256).
    #[test]
    #[ignore = "benchmark: run in release mode"]
    fn bench_ingest_256_mib() {
        let mib: u64 = std::env::var("BENCH_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        let dir = tempfile::tempdir().unwrap();
        let report = ingest(dir.path(), mib << 20, 7).unwrap();
        println!("{report}");
    }

    /// Peak memory of a streamed put: `RSS_MIB` (default 1024) MiB of mixed data from a
    /// [`MixedReader`], in release mode: `cargo test --release -p warren-storage-mesh
    /// rss_of_a_large_put -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark: run in release mode"]
    fn rss_of_a_large_put() {
        let mib: u64 = std::env::var("RSS_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let hwm = || {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("VmHWM"))
                .unwrap()
                .to_owned()
        };
        println!("before: {}", hwm());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), u64::MAX).unwrap();
        let start = Instant::now();
        let out = store
            .put(
                MixedReader::new(mib << 20, 11),
                &PutOptions::default(),
                &|_| {},
            )
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "put of {mib} MiB: {:.1} MiB/s, peak {}, {} blocks, {}",
            mib as f64 / secs,
            hwm(),
            out.blocks,
            out.cid
        );
    }
}
