//! Transient read errors must not delete good blocks (issue 19, attack 5): a real node process V
//! and a hostile node H in the test's process.
//!
//! V stores a file (pinned, kept on V only). While one of its block files cannot be read — the
//! file is moved aside and a directory put in its place, so `open` works and every read fails
//! with EISDIR, as reads fail under EMFILE or EIO; the test runs as root, which ignores file
//! modes, so `chmod 000` would not do — H asks V for the block and audits it. When the condition
//! ends (the file is back), V must still list and serve the block and return its file
//! byte-identical. Before the fix any open or read error counted as a bad copy: V dropped the
//! block from its index on the first request, and the pinned file was broken for good.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::time::Duration;

use warren_protocol::block_transfer::{BlockRequest, Request, Response};
use warren_protocol::{Codec, ContentId};
use warren_storage_mesh::proof::Challenge;
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes};

#[test]
fn a_block_unreadable_for_a_while_is_kept() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let v_dir = tmp.path().join("v");
    let v = NodeProcess::start(&bin, &v_dir, &[]).unwrap();
    let status = cli_json(&bin, &v_dir, &["status"]).unwrap();
    let v_addr = tcp_multiaddr(&status).unwrap();
    let v_peer: libp2p::PeerId = status["peer_id"].as_str().unwrap().parse().unwrap();

    let original = test_bytes(3 << 20, 11, false);
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, &original).unwrap();
    let put = cli_json(&bin, &v_dir, &["put", file.to_str().unwrap(), "--rf", "0"]).unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    // A chunk block of the file, stored in a file of its own.
    let block_file: PathBuf = warren_tests::files_under(&v_dir.join("store").join("blocks"))
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("bafk"))
        .expect("a chunk stored in a file");
    let block: ContentId = block_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .parse()
        .unwrap();
    let bytes = std::fs::read(&block_file).unwrap();
    assert_eq!(block.codec(), Codec::Raw);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let h_dir = tmp.path().join("h");
    let (during, after) = rt.block_on(async {
        let h = Hostile::start(&h_dir, "local", vec![], 0, |_| {})
            .await
            .unwrap();
        h.connect(v_addr.parse().unwrap(), Duration::from_secs(30))
            .await
            .unwrap();

        // The condition: the block's file cannot be read for a while.
        let aside = block_file.with_extension("aside");
        std::fs::rename(&block_file, &aside).unwrap();
        std::fs::create_dir(&block_file).unwrap();
        let mut during = Vec::new();
        for i in 0..3u8 {
            let get = Request::Get(BlockRequest { block });
            during.push(h.client().blocks(v_peer, get).await);
            let challenge = Challenge::new(block.hash(), bytes.len() as u64, [i; 32]);
            let audit = Request::Audit(challenge.to_request(Codec::Raw));
            during.push(h.client().blocks(v_peer, audit).await);
        }
        // The condition ends.
        std::fs::remove_dir(&block_file).unwrap();
        std::fs::rename(&aside, &block_file).unwrap();
        let after = h
            .client()
            .blocks(v_peer, Request::Get(BlockRequest { block }))
            .await;
        h.stop().await;
        (during, after)
    });
    for r in &during {
        println!("while unreadable: {r:?}");
    }

    // The good block is still listed and served, and the file comes back whole.
    match &after {
        Ok(Response::Block(b)) => assert!(b.block == block && b.data == bytes),
        other => panic!(
            "the good block was deleted by a transient read error: after the condition ended V \
             answered {other:?}\n{}",
            v.log()
        ),
    }
    let out = tmp.path().join("back.bin");
    let o = cli(
        &bin,
        &v_dir,
        &["get", &cid, "-o", out.to_str().unwrap()],
        false,
    )
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == original, "byte-identical");
    // While it could not be read, V said so (`failed`), never `not_found` (dropped).
    for r in &during {
        assert!(
            matches!(r, Ok(Response::Failed { reason }) if reason.contains("cannot be read")),
            "{r:?}"
        );
    }
    assert!(v.log().contains("cannot read a stored block now (kept"));
}
