//! A hostile holder is caught by the hash and named: three real node processes on loopback. The
//! origin A puts a file with RF 1, so that its only other holder is B, which serves every block
//! with one byte altered (`--fault-inject corrupt-blocks`). With A stopped, B is the only holder
//! left: a `warren get` on C must fail naming the block and B, leave no output file and nothing in
//! C's store, and C's reputation view of B must hold an `invalid_message` observation, made by C,
//! about a block of the file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_protocol::{ContentId, PeerId};
use warren_tests::{
    NodeProcess, cli, cli_json, files_under, held, tcp_multiaddr, test_bytes, wait_for,
    wait_for_records,
};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: usize = 1 << 20;

/// What a bounded CLI run left: whether it exited with success, and its stderr.
struct Ran {
    success: bool,
    stderr: String,
}

/// Runs `warren --data-dir dir ARGS`, killed (and the test failed) after `timeout`.
fn cli_bounded(dir: &Path, args: &[&str], timeout: Duration, logs: &Path) -> Ran {
    let out = logs.join("cli.stdout");
    let err = logs.join("cli.stderr");
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("warren {args:?} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ran {
        success: status.success(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// A JSON array of byte values (how the API shows an observation's peer ids and evidence).
fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    v.as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect()
}

#[test]
fn a_holder_serving_altered_blocks_fails_the_get_and_is_reported_as_invalid() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());

    // A: origin; B: the hostile holder (the only other node offering storage); C: the fetcher,
    // offering no storage, so no replica reaches it by placement or repair.
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let c_dir = tmp.path().join("c");
    let mut a = Some(NodeProcess::start(BIN, &a_dir, &[]).unwrap());
    let boot = tcp_multiaddr(&cli_json(BIN, &a_dir, &["status"]).unwrap()).unwrap();
    let b = NodeProcess::start(
        BIN,
        &b_dir,
        &["--bootstrap", &boot, "--fault-inject", "corrupt-blocks"],
    )
    .unwrap();
    let b_status = cli_json(BIN, &b_dir, &["status"]).unwrap();
    let b_id = b_status["peer_id"].as_str().unwrap().to_owned();
    let b_addr = tcp_multiaddr(&b_status).unwrap();
    let c =
        NodeProcess::start(BIN, &c_dir, &["--bootstrap", &b_addr, "--role", "operator"]).unwrap();
    let c_id = cli_json(BIN, &c_dir, &["status"]).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for dir in [&a_dir, &b_dir, &c_dir] {
        wait_for_records(BIN, dir, 2).unwrap();
    }
    assert!(
        b.log().contains("FAULT INJECTION ON"),
        "B must warn that it misbehaves on purpose"
    );

    // A puts 3 MiB with RF 1: every block's one copy goes to B, the only candidate.
    let original = test_bytes(3 * MIB, 18, false);
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, &original).unwrap();
    let put = cli_json(BIN, &a_dir, &["put", file.to_str().unwrap(), "--rf", "1"]).unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    let rep = &put["replication"];
    assert_eq!(rep["failed"], 0, "{put}");
    assert_eq!(rep["holders"], serde_json::json!([b_id]), "{put}");
    let blocks = rep["blocks"].as_u64().unwrap() as usize;
    assert_eq!(blocks, 4, "three 1 MiB chunks and the root manifest: {put}");
    let on_b: BTreeSet<String> = wait_for(Duration::from_secs(30), "B holding every block", || {
        let h = held(BIN, &b_dir);
        (h.len() == blocks && h.contains(&cid)).then_some(h)
    })
    .unwrap();
    assert!(held(BIN, &c_dir).is_empty());

    // Stop A: B is the only holder left. C sees only B.
    assert!(a.take().unwrap().stop().unwrap().success());
    wait_for(Duration::from_secs(30), "C connected to B only", || {
        let peers = cli_json(BIN, &c_dir, &["peers"]).ok()?;
        let peers = peers.as_array()?;
        (peers.len() == 1 && peers[0]["peer_id"] == b_id.as_str()).then_some(())
    })
    .unwrap();

    // The get fails: every answer of B fails its hash.
    let out = tmp.path().join("out.bin");
    let asked = Instant::now();
    let got = cli_bounded(
        &c_dir,
        &["get", &cid, "-o", out.to_str().unwrap()],
        Duration::from_secs(120),
        tmp.path(),
    );
    println!(
        "get failed after {:.1} s: {}",
        asked.elapsed().as_secs_f64(),
        got.stderr.trim()
    );
    assert!(!got.success, "a get served only altered blocks must fail");
    let named: Vec<&String> = on_b
        .iter()
        .filter(|block| got.stderr.contains(block.as_str()))
        .collect();
    assert!(
        !named.is_empty(),
        "the error must name the block that failed: {}",
        got.stderr
    );
    assert!(
        got.stderr.contains(&b_id),
        "the error must name the holder B ({b_id}): {}",
        got.stderr
    );
    assert!(
        got.stderr.contains("hash"),
        "the error must say the block failed its hash: {}",
        got.stderr
    );
    assert!(!out.exists(), "nothing may be written to -o on failure");
    assert!(
        b.log().contains("serving an altered block"),
        "B served no altered block: {}",
        b.log()
    );

    // C kept none of the altered bytes: nothing held, no block file, no root to stat.
    assert!(held(BIN, &c_dir).is_empty());
    let stored = files_under(&c_dir.join("store").join("blocks"));
    assert!(stored.is_empty(), "C stored blocks: {stored:?}");
    let stat = cli(BIN, &c_dir, &["stat", &cid], true).unwrap();
    assert!(
        !stat.status.success(),
        "C must not have the root: {}",
        String::from_utf8_lossy(&stat.stdout)
    );

    // C's reputation view of B: an invalid_message observation, made by C about B, whose evidence
    // is one of the file's blocks.
    let b_peer = PeerId::from_str(&b_id).unwrap().to_bytes();
    let c_peer = PeerId::from_str(&c_id).unwrap().to_bytes();
    let file_blocks: BTreeSet<Vec<u8>> = on_b
        .iter()
        .map(|s| ContentId::from_str(s).unwrap().to_bytes())
        .collect();
    let view = wait_for(
        Duration::from_secs(15),
        "an invalid_message observation about B on C",
        || {
            let v = cli_json(BIN, &c_dir, &["reputation", &b_id]).ok()?;
            v["observations"]
                .as_array()?
                .iter()
                .any(|o| o["kind"] == "invalid_message")
                .then_some(v)
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}; C's view of B: {:?}",
            cli_json(BIN, &c_dir, &["reputation", &b_id])
        )
    });
    let invalid: Vec<&Value> = view["observations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "invalid_message")
        .collect();
    for o in &invalid {
        assert_eq!(bytes_of(&o["observer"]), Some(c_peer.clone()), "{o}");
        assert_eq!(bytes_of(&o["subject"]), Some(b_peer.clone()), "{o}");
        assert_eq!(o["value"], 1, "{o}");
        let evidence = bytes_of(&o["evidence"]).unwrap();
        assert!(
            file_blocks.contains(&evidence),
            "the evidence is not a block of the file: {o}"
        );
    }
    assert!(
        view["evidence"]["first_hand"].as_f64().unwrap() > 0.0,
        "{view}"
    );
    println!(
        "{} invalid_message observation(s) of B on C; B's total {} on C; test took {:.1} s",
        invalid.len(),
        view["total"],
        started.elapsed().as_secs_f64()
    );
    assert!(c.log().contains("bad block answer"), "{}", c.log());
}
