//! Measures brotli quality 1..=9 (and a few window sizes) on 1 MiB chunks of text, an ELF binary
//! and random bytes: the table in `spec/storage.md` comes from this.
//!
//! `cargo run --release -p warren-storage-mesh --example brotli_params [ELF]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use brotli::enc::StandardAlloc;
use brotli::enc::backward_references::BrotliEncoderMode;
use brotli::enc::encode::{
    BrotliEncoderOperation, BrotliEncoderParameter, BrotliEncoderStateStruct,
};

const MIB: usize = 1 << 20;

fn compress(chunk: &[u8], quality: u32, lgwin: u32) -> usize {
    let mut s = BrotliEncoderStateStruct::new(StandardAlloc::default());
    s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, quality);
    s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, lgwin);
    s.set_parameter(
        BrotliEncoderParameter::BROTLI_PARAM_MODE,
        BrotliEncoderMode::BROTLI_MODE_GENERIC as u32,
    );
    s.set_parameter(
        BrotliEncoderParameter::BROTLI_PARAM_SIZE_HINT,
        chunk.len() as u32,
    );
    let mut out = vec![0u8; chunk.len() + 1024];
    let (mut avail_in, mut in_off, mut avail_out, mut out_off, mut total) =
        (chunk.len(), 0, out.len(), 0, Some(0));
    while !s.is_finished() {
        assert!(s.compress_stream(
            BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
            &mut avail_in,
            chunk,
            &mut in_off,
            &mut avail_out,
            &mut out,
            &mut out_off,
            &mut total,
            &mut |_, _, _, _| (),
        ));
        assert!(avail_out > 0 || s.is_finished());
    }
    out_off
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn source_text() -> Vec<u8> {
    // Real text: Rust sources and licence texts found on this machine.
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("/usr/share/common-licenses")];
    for d in std::fs::read_dir(std::env::var("HOME").unwrap() + "/.cargo/registry/src").unwrap() {
        dirs.push(d.unwrap().path().join("redb-4.6.0/src"));
    }
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                dirs.push(p)
            } else if out.len() < MIB {
                out.extend(std::fs::read(&p).unwrap_or_default())
            }
        }
    }
    out.truncate(MIB);
    assert_eq!(out.len(), MIB);
    out
}

fn main() {
    let elf_path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/usr/bin/gdb".into());
    let elf = std::fs::read(&elf_path).unwrap();
    let mid = elf.len() / 2;
    let samples: Vec<(String, Vec<u8>)> = vec![
        ("source text".into(), source_text()),
        ("word-list text".into(), warren_storage_mesh_text()),
        (format!("ELF {elf_path}"), elf[mid..mid + MIB].to_vec()),
        ("random".into(), {
            let mut s = 7;
            (0..MIB / 8)
                .flat_map(|_| splitmix(&mut s).to_le_bytes())
                .collect()
        }),
    ];
    let run = |q: u32, lgwin: u32| {
        let mut line = format!("| q{q} lgwin {lgwin} |");
        for (_, data) in &samples {
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..5 {
                let t = Instant::now();
                size = compress(data, q, lgwin);
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let mibs = 1.0 / times[2];
            line += &format!(" {mibs:.0} MiB/s, {:.3} |", size as f64 / MIB as f64);
        }
        println!("{line}");
    };
    println!(
        "| params |{}",
        samples
            .iter()
            .map(|(n, _)| format!(" {n} |"))
            .collect::<String>()
    );
    for q in 1..=9 {
        run(q, 20)
    }
    for lgwin in [18, 19, 20, 21, 22, 24] {
        run(5, lgwin)
    }
}

fn warren_storage_mesh_text() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "of", "and", "to", "in", "peer", "store", "block", "chunk", "manifest", "warren",
        "network", "is", "a", "that", "for", "with", "hash", "tree", "node",
    ];
    let mut s = 1;
    let mut out = Vec::with_capacity(MIB + 16);
    while out.len() < MIB {
        let r = splitmix(&mut s);
        out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
        out.push(if r >> 60 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(MIB);
    out
}
