//! Times computing a block's BLAKE3 (bao) outboard on demand, the cost a holder pays per
//! proof-of-storage challenge (`spec/storage.md`, "Proofs of storage").
//!
//! `cargo run --release -p warren-storage-mesh --example bao_outboard`

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use bao_tree::{BlockSize, io::outboard::PreOrderMemOutboard};
use warren_storage_mesh::{CHUNK_SIZE, chunk::encode_block, testdata::random_chunk};

fn main() {
    let block = encode_block(&random_chunk(1, CHUNK_SIZE));
    for chunk_log in [0u8, 4] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..21 {
            let t = Instant::now();
            let ob = PreOrderMemOutboard::create(&block, BlockSize::from_chunk_log(chunk_log));
            times.push(t.elapsed().as_secs_f64() * 1e3);
            size = ob.data.len();
        }
        times.sort_by(f64::total_cmp);
        let t = Instant::now();
        for _ in 0..21 {
            std::hint::black_box(blake3::hash(&block));
        }
        let hash_ms = t.elapsed().as_secs_f64() * 1e3 / 21.0;
        println!(
            "chunk groups of {} KiB: outboard {size} bytes, median {:.2} ms (plain BLAKE3 hash {hash_ms:.2} ms)",
            1 << chunk_log,
            times[10]
        );
    }
}
