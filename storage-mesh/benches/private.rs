//! `put --private` against a public put of the same data, side by side.
//!
//! `cargo bench -p warren-storage-mesh --bench private [-- --size-mib 256 --seed 1 --rounds 3]`
//!
//! Puts the same mixed data (half text-like, half random) `rounds` times as a public file and as
//! a private one, alternating, each into a fresh store, and compares the median times. The goal:
//! the private put at 0.8 of the public one's rate or better.

mod common;

use std::{fmt, path::Path, time::Instant};

use warren_storage_mesh::{
    CHUNK_SIZE, Class, Error, FileKey, PutOptions, SealOptions, Store, testdata::mixed_data,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = common::Flags::parse(&["size-mib", "seed", "rounds"])?;
    let dir = std::env::temp_dir().join(format!("warren-bench-private-{}", std::process::id()));
    if !flags.bench {
        // `cargo test`: a few chunks, and figures that add up.
        let report = private(&dir, 3 * CHUNK_SIZE as u64 + 9, 1, 1);
        let _ = std::fs::remove_dir_all(&dir);
        let report = report?;
        assert!(report.public_secs > 0.0 && report.private_secs > 0.0);
        assert!((report.ratio - report.public_secs / report.private_secs).abs() < 1e-9);
        // Sealed: compressed, padded, with tags; never much more than the public blocks.
        assert!(
            report.private_stored > 0 && report.private_stored < report.public_stored * 12 / 10
        );
        assert!(report.to_string().contains("ratio private / public"));
        return Ok(());
    }
    let rounds = usize::try_from(flags.get("rounds", 3))?;
    let report = private(
        &dir,
        flags.get("size-mib", 256) << 20,
        flags.get("seed", 1),
        rounds,
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report?);
    Ok(())
}

/// The figures of one [`private`] run: public and private puts of the same data, side by side.
#[derive(Clone, Debug, PartialEq)]
struct PrivateReport {
    /// Bytes of input.
    total_bytes: u64,
    /// Rounds (each one public put and one private put, alternating, each into a fresh store).
    rounds: usize,
    /// Median seconds of the public puts.
    public_secs: f64,
    /// Median seconds of the private puts.
    private_secs: f64,
    /// `public_secs / private_secs`: the private put's rate as a fraction of the public one's.
    ratio: f64,
    /// Bytes the public file takes in the store.
    public_stored: u64,
    /// Bytes the sealed file takes in the store.
    private_stored: u64,
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
fn private(dir: &Path, total_bytes: u64, seed: u64, rounds: usize) -> Result<PrivateReport, Error> {
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
