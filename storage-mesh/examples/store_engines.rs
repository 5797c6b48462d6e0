//! Measures ways of storing 1 MiB blocks durably: redb alone (one commit per block, batched
//! commits) and files with redb as the index. The numbers in `spec/storage.md` come from this.
//!
//! `cargo run --release -p warren-storage-mesh --example store_engines -- VARIANT DIR MIB`
//! VARIANT: redb-each | redb-batch-N | redb-batch-N-none | files-each | files-batch-N | open

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::time::Instant;

use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
const INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("index");
const MIB: usize = 1 << 20;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn block(i: u64) -> Vec<u8> {
    let mut s = i;
    let len: usize = std::env::var("BLOCK_LEN")
        .map(|v| v.parse().unwrap())
        .unwrap_or(MIB + 1);
    (0..len).map(|_| splitmix(&mut s) as u8).collect()
}

fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().filter(|l| l.starts_with("VmHWM")).collect()
}

fn open(dir: &std::path::Path) -> Database {
    std::fs::create_dir_all(dir).unwrap();
    Database::builder()
        .set_cache_size(64 * MIB)
        .create(dir.join("store.redb"))
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let variant = args[1].as_str();
    let dir = std::path::PathBuf::from(&args[2]);
    let mib: u64 = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(512);
    if variant == "open" {
        let t = Instant::now();
        let db = open(&dir);
        let n = db
            .begin_read()
            .unwrap()
            .open_table(BLOCKS)
            .map(|t| t.len().unwrap())
            .unwrap_or(0);
        println!(
            "open after kill: {:.2} s, {n} blocks",
            t.elapsed().as_secs_f64()
        );
        return;
    }
    let db = open(&dir);
    let blocks: Vec<Vec<u8>> = (0..64).map(block).collect(); // reused, distinct keys below
    let key = |i: u64| blake3::hash(&i.to_le_bytes()).as_bytes().to_vec();
    let t = Instant::now();
    let parse_batch = |v: &str| {
        v.split('-')
            .nth(2)
            .map(|n| n.parse::<u64>().unwrap())
            .unwrap_or(1)
    };
    let batch = parse_batch(variant);
    let durability_none = variant.ends_with("-none");
    let files = variant.starts_with("files");
    let mut tx = db.begin_write().unwrap();
    let mut pending_files: Vec<std::fs::File> = Vec::new();
    for i in 0..mib {
        let k = key(i);
        let data = &blocks[(i % 64) as usize];
        if files {
            let sub = dir.join(hex(&k[..1]));
            std::fs::create_dir_all(&sub).unwrap();
            let mut f = std::fs::File::create(sub.join(hex(&k))).unwrap();
            f.write_all(data).unwrap();
            if variant == "files-each" {
                f.sync_all().unwrap()
            } else {
                pending_files.push(f)
            }
            tx.open_table(INDEX)
                .unwrap()
                .insert(k.as_slice(), data.len() as u64)
                .unwrap();
        } else {
            tx.open_table(BLOCKS)
                .unwrap()
                .insert(k.as_slice(), data.as_slice())
                .unwrap();
        }
        if (i + 1) % batch == 0 || i + 1 == mib {
            for f in pending_files.drain(..) {
                f.sync_all().unwrap()
            }
            let last = i + 1 == mib;
            if durability_none && !last {
                tx.set_durability(Durability::None).unwrap();
            }
            tx.commit().unwrap();
            tx = db.begin_write().unwrap();
        }
    }
    drop(tx);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{variant}: {mib} MiB in {secs:.2} s = {:.0} MiB/s; {}",
        mib as f64 / secs,
        rss()
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
