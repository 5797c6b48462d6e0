//! The store's ingest rate against a plain compress-and-hash loop over the same chunks on the
//! same cores.
//!
//! `cargo bench -p warren-storage-mesh --bench ingest [-- --size-mib 256 --seed 1]`
//!
//! Generates mixed data (even chunks text-like: words from a fixed list picked by a seeded
//! generator; odd chunks random), then times, on the same bytes held in memory, (a) `Store::put`
//! into a fresh store and (b) a plain loop of the same work without a store: the same brotli
//! compression and BLAKE3 hashing of the same chunks on the same number of threads. Their ratio
//! says how much the pipeline (reading, ordering, dedup, files, fsync, commits) costs on top of
//! the unavoidable work; the goal is at least 0.85.
//!
//! In the same run, (c) the plain loop with the rule before the sample test (brotli tried on every
//! chunk, [`chunk::brotli_block`]): the ingest's gain from storing incompressible chunks raw
//! without compressing them (goal: put ≥ 2× that); and (d) random chunks alone on one thread,
//! encoded and hashed: the rate per core for incompressible data (goal ≥ 1 GB/s).

mod common;

use std::{
    fmt,
    num::NonZero,
    path::Path,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    thread,
    time::Instant,
};

use warren_storage_mesh::{
    CHUNK_SIZE, Codec, ContentId, Error, PutOptions, Store, chunk, testdata::mixed_data,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = common::Flags::parse(&["size-mib", "seed"])?;
    let dir = std::env::temp_dir().join(format!("warren-bench-ingest-{}", std::process::id()));
    if !flags.bench {
        // `cargo test`: a few chunks, and figures that add up.
        let report = ingest(&dir, 3 * CHUNK_SIZE as u64, 1);
        let _ = std::fs::remove_dir_all(&dir);
        let report = report?;
        assert_eq!(report.total_bytes, 3 * CHUNK_SIZE as u64);
        assert!(report.put_mib_s > 0.0 && report.plain_mib_s > 0.0);
        assert!((report.ratio - report.put_mib_s / report.plain_mib_s).abs() < 1e-9);
        assert!(report.to_string().contains("ratio put / plain"));
        assert!(report.stored_bytes < report.total_bytes);
        assert!(report.before_mib_s > 0.0 && report.random_mib_s > 0.0);
        return Ok(());
    }
    let report = ingest(&dir, flags.get("size-mib", 256) << 20, flags.get("seed", 1));
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report?);
    Ok(())
}

/// The figures of one [`ingest`] run.
#[derive(Clone, Debug, PartialEq)]
struct IngestReport {
    /// Bytes of input.
    total_bytes: u64,
    /// Worker threads of both runs (`available_parallelism`).
    threads: usize,
    /// Seconds `Store::put` took.
    put_secs: f64,
    /// Its rate, MiB of input per second.
    put_mib_s: f64,
    /// Seconds the plain compress-and-hash loop took.
    plain_secs: f64,
    /// Its rate, MiB of input per second.
    plain_mib_s: f64,
    /// `put_mib_s / plain_mib_s`.
    ratio: f64,
    /// The plain loop with brotli tried on every chunk (the rule before the sample test).
    before_mib_s: f64,
    /// Random chunks encoded and hashed on one thread.
    random_mib_s: f64,
    /// Bytes stored (compressed blocks and manifests).
    stored_bytes: u64,
    /// The id of the file put.
    cid: ContentId,
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
        writeln!(
            f,
            "  plain loop, brotli on every chunk:  {:8.1} MiB/s  (before the sample test; put / it = {:.2}, goal >= 2)",
            self.before_mib_s,
            self.put_mib_s / self.before_mib_s
        )?;
        writeln!(
            f,
            "  random chunks, 1 thread:            {:8.1} MiB/s  ({:.2} GB/s per core, goal >= 1)",
            self.random_mib_s,
            self.random_mib_s * (1 << 20) as f64 / 1e9
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
fn ingest(dir: &Path, total_bytes: u64, seed: u64) -> Result<IngestReport, Error> {
    let data = mixed_data(total_bytes, seed);
    let threads = thread::available_parallelism().map_or(1, NonZero::get);

    let start = Instant::now();
    plain_loop(&data, threads, chunk::encode_block);
    let plain_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    plain_loop(&data, threads, chunk::brotli_block);
    let before_secs = start.elapsed().as_secs_f64();
    let random: Vec<u8> = (0..(total_bytes / CHUNK_SIZE as u64).clamp(1, 64))
        .flat_map(|i| warren_storage_mesh::testdata::random_chunk(seed ^ i, CHUNK_SIZE))
        .collect();
    let start = Instant::now();
    plain_loop(&random, 1, chunk::encode_block);
    let random_secs = start.elapsed().as_secs_f64();
    let random_mib = random.len() as f64 / (1 << 20) as f64;

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
        before_mib_s: mib / before_secs,
        random_mib_s: random_mib / random_secs,
        stored_bytes: outcome.stored_bytes,
        cid: outcome.cid,
    })
}

/// Encodes (with `encode`) and hashes every chunk of `data` on `threads` threads; returns the
/// stored bytes.
fn plain_loop(data: &[u8], threads: usize, encode: fn(&[u8]) -> Vec<u8>) -> u64 {
    let chunks: Vec<&[u8]> = data.chunks(CHUNK_SIZE).collect();
    let next = AtomicUsize::new(0);
    let stored = AtomicU64::new(0);
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(c) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let block = encode(c);
                    let cid = ContentId::of_block(Codec::Raw, &block);
                    std::hint::black_box(cid);
                    stored.fetch_add(block.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    stored.into_inner()
}
