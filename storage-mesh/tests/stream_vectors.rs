//! The block-stream vector of `spec/onion.md` (a relay's `GET` answer), checked against the code:
//! `warren_storage_mesh::stream::send` of the public file `hello\n` gives the page's bytes, and
//! the verified read of those bytes gives the file back. To print the block after a deliberate
//! format change: `cargo test -p warren-storage-mesh --test stream_vectors -- --ignored
//! --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use warren_storage_mesh::{PutOptions, Store, stream};

const PAGE: &str = include_str!("../../spec/onion.md");

/// The public file `hello\n` (no name), stored; its id and the stream `send` writes for it.
fn answer() -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), u64::MAX).unwrap();
    let cid = store
        .put(&b"hello\n"[..], &PutOptions::default(), &|_| {})
        .unwrap()
        .cid;
    let mut out = Vec::new();
    stream::send(&store, &cid, u64::MAX, &mut out).unwrap();
    (cid.to_string(), out)
}

#[test]
fn the_get_answer_vector_matches_the_code_and_reads_back() {
    let (cid, bytes) = answer();
    assert!(PAGE.contains(&cid), "the page names the file {cid}");
    let v = warren_protocol::spec_text::extract_vectors(PAGE)
        .unwrap()
        .into_iter()
        .find(|v| v.name == "get-answer-hello")
        .expect("vector get-answer-hello in spec/onion.md");
    assert_eq!(hex::encode(&v.bytes), hex::encode(&bytes));
    let mut input = &v.bytes[..];
    let size = stream::read_size(&mut input).unwrap();
    let mut out = Vec::new();
    stream::receive(&cid.parse().unwrap(), size, input, &mut out, &|_| {}).unwrap();
    assert_eq!(out, b"hello\n");
}

#[test]
#[ignore = "generator: prints the vector block for spec/onion.md"]
fn print_vectors() {
    let (cid, bytes) = answer();
    println!("file {cid}");
    for line in hex::encode(bytes).as_bytes().chunks(64) {
        println!("{}", std::str::from_utf8(line).unwrap());
    }
}
