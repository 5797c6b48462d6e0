//! Peak memory of a streamed put: `RSS_MIB` (default 1024) MiB of mixed data from a
//! [`MixedReader`], in release mode:
//! `cargo test --release -p warren-storage-mesh --test large_put -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::time::Instant;

use warren_storage_mesh::{PutOptions, Store, testdata::MixedReader};

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
