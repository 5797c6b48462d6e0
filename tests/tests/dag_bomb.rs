//! A DAG bomb from a hostile peer: two real node processes on loopback. The hostile node H holds
//! a file of five blocks: one 1 MiB chunk and four manifests of 1024 entries, each naming the
//! level below 1024 times. Every manifest is valid on its own (spec/storage.md), so the root
//! declares 2^60 bytes read as 2^40 chunk reads. H pins it, and its repair pass pushes the
//! blocks to the victim V, a stranger offering storage. `warren get` of the root on V must fail
//! within seconds with the size cap named, write nothing, and leave V answering: before the fix,
//! counting the file's chunk reads walked every one of the 2^40 paths on a blocking thread.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_protocol::{CHUNK_SIZE, Codec, ContentId, MANIFEST_FANOUT, Manifest, ManifestEntry};
use warren_storage_mesh::{Store, chunk};
use warren_tests::{NodeProcess, cli_json, held, tcp_multiaddr, wait_for};

/// The nodes' binary: this build, or `WARREN_TEST_NODE_BIN` (an older build the attack should
/// beat).
fn bin() -> String {
    warren_tests::hostile::node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"))
}

/// Writes the bomb into the store at `dir` (no node running on it) and pins it; returns its
/// blocks, root last.
fn plant_bomb(dir: &Path) -> Vec<ContentId> {
    let store = Store::open(dir, u64::MAX).unwrap();
    let block = chunk::encode_block(&vec![0; CHUNK_SIZE]);
    let cid = ContentId::of_block(Codec::Raw, &block);
    store.put_block(&cid, &block).unwrap();
    let mut blocks = vec![cid];
    let mut below = ManifestEntry {
        cid,
        raw_len: CHUNK_SIZE as u64,
        stored_len: block.len() as u64,
    };
    for depth in 0..4 {
        let m = Manifest {
            version: warren_protocol::MANIFEST_VERSION,
            size: below.raw_len * MANIFEST_FANOUT as u64,
            depth,
            entries: vec![below.clone(); MANIFEST_FANOUT],
            name: None,
            media_type: None,
        };
        let (cid, bytes) = m.to_block().unwrap();
        store.put_block(&cid, &bytes).unwrap();
        below = ManifestEntry {
            cid,
            raw_len: m.size,
            stored_len: m.stored_total(bytes.len()),
        };
        blocks.push(cid);
    }
    assert_eq!(below.raw_len, 1 << 60);
    store.pin(&below.cid).unwrap();
    blocks
}

/// Runs `warren --data-dir dir ARGS`; `None` if it was still running after `timeout` (killed).
fn cli_bounded(
    dir: &Path,
    args: &[&str],
    timeout: Duration,
    logs: &Path,
) -> Option<(bool, String)> {
    let err = logs.join("cli.stderr");
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Some((
        status.success(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    ))
}

#[test]
fn a_dag_bomb_pushed_by_a_hostile_peer_is_refused_fast_and_the_victim_stays_up() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let h_dir = tmp.path().join("h");
    let v_dir = tmp.path().join("v");
    let blocks = plant_bomb(&h_dir.join("store"));
    let root = blocks.last().unwrap().to_string();

    let h = NodeProcess::start(&bin(), &h_dir, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(&bin(), &h_dir, &["status"]).unwrap()).unwrap();
    let v = NodeProcess::start(&bin(), &v_dir, &["--bootstrap", &boot]).unwrap();

    // H's repair pass finds its pinned file held nowhere else and pushes every block to V.
    wait_for(
        Duration::from_secs(60),
        "V holding the bomb's blocks",
        || {
            let on_v = held(&bin(), &v_dir);
            blocks
                .iter()
                .all(|b| on_v.contains(&b.to_string()))
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}; H's log: {}", h.log()));
    println!(
        "V holds the 5 blocks after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The read is refused at once, naming the file and the cap; nothing is written.
    let out = tmp.path().join("out.bin");
    let asked = Instant::now();
    let got = cli_bounded(
        &v_dir,
        &["get", &root, "-o", out.to_str().unwrap()],
        Duration::from_secs(60),
        tmp.path(),
    );
    let took = asked.elapsed();
    let Some((success, stderr)) = got else {
        panic!(
            "warren get of the bomb still running after {took:?} (V pins a thread walking its \
             2^40 paths)"
        );
    };
    println!(
        "get failed after {:.2} s: {}",
        took.as_secs_f64(),
        stderr.trim()
    );
    assert!(!success, "a get of the bomb must fail");
    assert!(
        stderr.contains(&root),
        "the error must name the file: {stderr}"
    );
    let limit = warren_storage_mesh::MAX_FILE_SIZE.to_string();
    assert!(
        stderr.contains("refused") && stderr.contains(&limit),
        "the error must name the cap ({limit} bytes): {stderr}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!out.exists(), "nothing may be written to -o on failure");

    // V still answers, and a second attempt is refused as fast.
    let asked = Instant::now();
    let status = cli_bounded(&v_dir, &["status"], Duration::from_secs(10), tmp.path());
    assert!(
        matches!(status, Some((true, _))),
        "V must answer: {status:?}"
    );
    let again = cli_bounded(
        &v_dir,
        &["get", &root, "-o", out.to_str().unwrap()],
        Duration::from_secs(10),
        tmp.path(),
    );
    assert!(matches!(again, Some((false, _))), "{again:?}");
    println!(
        "V answered status and a second get in {:.2} s; test took {:.1} s",
        asked.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(v);
    drop(h);
}
