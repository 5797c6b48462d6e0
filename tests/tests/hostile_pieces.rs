//! Audits of erasure-coded pieces against a holder that dropped its data (issue 26): the
//! origin A and four honest holders are real node processes; the cheating holder H is a real
//! node in this process whose store the test edits. H drops what it holds and, when about to be
//! audited, fetches it back from the other peers and stores it again: a holder that keeps
//! nothing and borrows on demand.
//!
//! - **Whole copies (RF 3), the control:** every block H held has two more copies on honest
//!   peers, so H gets each back and passes A's audit. This is why whole copies cannot prove
//!   storage (spec/proof-of-storage.md, "Threats").
//! - **Pieces (2 + 3):** H's pieces are unique (no other peer holds them, and the origin keeps
//!   none), so nothing can be fetched back and A's audit of H against the piece ids fails. To
//!   rebuild a piece H would need 2 other pieces of its stripe and the code, inside the deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_protocol::block_transfer::{BlockRequest, Request, Response};
use warren_protocol::{ContentId, PeerId};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, cli_json, tcp_multiaddr, test_bytes, wait_for_records};

/// Runs the CLI off the runtime's workers.
async fn cli(bin: &str, dir: &Path, args: &[&str]) -> Value {
    let (bin, dir) = (bin.to_owned(), dir.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_json(&bin, &dir, &args)
    })
    .await
    .unwrap()
    .unwrap()
}

/// H drops `blocks` from its store, then asks every peer in `peers` for each and stores what it
/// gets back (checked against the id). Answers how many came back, and how long it took.
async fn drop_and_refetch(
    h: &Hostile,
    blocks: &[ContentId],
    peers: &[PeerId],
) -> (usize, Duration) {
    for b in blocks {
        h.node.store.discard_block(b).unwrap();
        assert!(!h.node.store.has_block(b).unwrap());
    }
    let t = Instant::now();
    let mut back = 0;
    for b in blocks {
        for p in peers {
            let got = h
                .client()
                .blocks(*p, Request::Get(BlockRequest { block: *b }))
                .await;
            if let Ok(Response::Block(r)) = got {
                h.node.store.put_block(b, &r.data).unwrap();
                back += 1;
                break;
            }
        }
    }
    (back, t.elapsed())
}

/// The blocks H holds now that it did not hold in `before`.
fn new_held(h: &Hostile, before: &[ContentId]) -> Vec<ContentId> {
    h.node
        .store
        .held()
        .unwrap()
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_dropped_its_piece_cannot_borrow_it_back_for_an_audit() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    // A (origin and auditor) and four honest holders.
    let mut procs = Vec::new();
    let mut dirs = Vec::new();
    let mut peers: Vec<PeerId> = Vec::new();
    let mut boot = String::new();
    for i in 0..5 {
        let dir = tmp.path().join(format!("n{i}"));
        let extra: Vec<&str> = if i == 0 {
            vec![]
        } else {
            vec!["--bootstrap", &boot]
        };
        procs.push(NodeProcess::start(&bin, &dir, &extra).unwrap());
        let s = cli(&bin, &dir, &["status"]).await;
        if i == 0 {
            boot = tcp_multiaddr(&s).unwrap();
        }
        peers.push(s["peer_id"].as_str().unwrap().parse().unwrap());
        dirs.push(dir);
    }
    let h = Hostile::start(
        &tmp.path().join("h"),
        "local",
        vec![boot.parse().unwrap()],
        1 << 30,
        |_| {},
    )
    .await
    .unwrap();
    let a_dir = dirs[0].clone();
    {
        let (bin, a) = (bin.clone(), a_dir.clone());
        tokio::task::spawn_blocking(move || wait_for_records(&bin, &a, 5))
            .await
            .unwrap()
            .unwrap();
    }
    println!("6 nodes up in {:?}", started.elapsed());

    // Control: 8 MiB at RF 3. H holds some of its blocks; it drops them and borrows them back.
    let f1 = tmp.path().join("copies.bin");
    std::fs::write(&f1, test_bytes(8 << 20, 261, false)).unwrap();
    let put = cli(&bin, &a_dir, &["put", f1.to_str().unwrap(), "--rf", "3"]).await;
    let root = put["cid"].as_str().unwrap().to_owned();
    let copies = new_held(&h, &[]);
    assert!(
        !copies.is_empty(),
        "H holds no block of the RF 3 file: {put}"
    );
    let (back, took) = drop_and_refetch(&h, &copies, &peers).await;
    println!(
        "whole copies: H dropped {} blocks, borrowed {back} back in {took:?}",
        copies.len()
    );
    assert_eq!(back, copies.len(), "every whole copy can be borrowed back");
    let audit = cli(&bin, &a_dir, &["audit", &h.peer_id().to_string(), &root]).await;
    println!("audit of H on the whole copies: {audit}");
    assert_eq!(
        audit["passed"], true,
        "the control: borrowed copies pass: {audit}"
    );

    // Pieces: 4 MiB as 2 + 3 pieces, one piece of each stripe on each of the five holders.
    let f2 = tmp.path().join("pieces.bin");
    std::fs::write(&f2, test_bytes(4 << 20, 262, false)).unwrap();
    let put = cli(
        &bin,
        &a_dir,
        &["put", f2.to_str().unwrap(), "--pieces", "2+3"],
    )
    .await;
    let manifest = put["pieces"]["manifest"].as_str().unwrap().to_owned();
    let pieces: Vec<ContentId> = new_held(&h, &copies)
        .into_iter()
        .filter(|c| c.to_string() != manifest)
        .collect();
    println!("H holds {} pieces: {put}", pieces.len());
    assert!(!pieces.is_empty(), "H holds no piece: {put}");
    let (back, took) = drop_and_refetch(&h, &pieces, &peers).await;
    println!(
        "pieces: H dropped {}, borrowed {back} back in {took:?}",
        pieces.len()
    );
    assert_eq!(
        back, 0,
        "a piece is held by one peer only: nothing to borrow"
    );
    let audit = cli(
        &bin,
        &a_dir,
        &["audit", &h.peer_id().to_string(), &manifest],
    )
    .await;
    println!("audit of H on its pieces: {audit}");
    assert_eq!(
        audit["passed"], false,
        "a holder without its piece passed: {audit}"
    );
    assert_eq!(
        audit["answered"], true,
        "it answered (not_found), it was not silent: {audit}"
    );
    // The honest holders pass the same audit.
    let honest = cli(&bin, &a_dir, &["audit", &peers[1].to_string(), &manifest]).await;
    assert_eq!(honest["passed"], true, "an honest piece holder: {honest}");
    println!("test took {:?}", started.elapsed());
    drop(procs);
    h.stop().await;
}
