//! A stalled upload must not freeze a node's store (issue 19, attack 4), with five real node
//! processes on loopback.
//!
//! The attacker is a client with an upload that never ends: `warren put --anon --class public -`
//! on node 0, its standard input fed a few KiB and then held open, so the circuit's relay gets
//! a PUT and one DATA cell, then nothing. Before the fix the relay's store took its writer lock
//! before reading the upload and kept it for the runner's 300 s (and past them: the timeout
//! dropped the future, not the blocking task), so every other put, pushed replica and gc on the
//! relay waited. An honest `warren put` on the relay must now finish within seconds. The same is
//! then checked for the plain API upload path (`warren put -` with a stalled standard input on
//! the node itself). When the stalled clients go away, their uploads leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::hostile::node_bin;
use warren_tests::{NodeProcess, cli_json, tcp_multiaddr, test_bytes, wait_for};

const ROLES: [&str; 8] = [
    "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
];

/// How long an honest put may take while the other upload is stalled.
const HONEST_PUT: Duration = Duration::from_secs(20);

/// `warren --data-dir DIR put ARGS… -` with a piped standard input: a few KiB sent, the pipe
/// kept open (the stall).
fn stalled_put(bin: &str, dir: &Path, args: &[&str]) -> Child {
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .arg("put")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(&test_bytes(16 << 10, 3, false)).unwrap();
    stdin.flush().unwrap();
    child
}

/// Runs an honest `warren put FILE --rf 0` on `dir`; the elapsed time and its JSON answer, or
/// a panic naming the attack when it is still running after [`HONEST_PUT`].
fn honest_put(bin: &str, dir: &Path, file: &Path, what: &str) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(["put", file.to_str().unwrap(), "--rf", "0", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return (
                started.elapsed(),
                serde_json::from_slice(&out.stdout).unwrap(),
            );
        }
        if started.elapsed() > HONEST_PUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: an honest put was still running after {HONEST_PUT:?} (the store is \
                 frozen by the stalled upload)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files left in the store's temporary folder (uploads being written).
fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("store").join("tmp")).map_or(0, |d| d.count())
}

#[test]
fn a_stalled_upload_does_not_freeze_the_store() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let mut procs = Vec::new();
    let mut nodes: Vec<PathBuf> = Vec::new();
    let a_dir = tmp.path().join("n0");
    procs.push(NodeProcess::start(&bin, &a_dir, &ROLES).unwrap());
    let boot = tcp_multiaddr(&cli_json(&bin, &a_dir, &["status"]).unwrap()).unwrap();
    nodes.push(a_dir);
    for i in 1..5 {
        let dir = tmp.path().join(format!("n{i}"));
        let mut args = ROLES.to_vec();
        args.extend(["--bootstrap", &boot]);
        procs.push(NodeProcess::start(&bin, &dir, &args).unwrap());
        nodes.push(dir);
    }
    for dir in &nodes {
        wait_for(Duration::from_secs(30), "every peer's record", || {
            let peers = cli_json(&bin, dir, &["peers"]).ok()?;
            let peers = peers.as_array()?;
            (peers.len() == 4
                && peers
                    .iter()
                    .all(|p| p["roles"].as_array().unwrap().len() == 4))
            .then_some(())
        })
        .unwrap();
    }
    let honest = tmp.path().join("honest.bin");
    std::fs::write(&honest, test_bytes(2 << 20, 5, false)).unwrap();

    // The attack: an anonymous PUT that sends one DATA cell's worth, then stalls.
    let marks: Vec<usize> = procs.iter().map(|p| p.log().len()).collect();
    let mut anon = stalled_put(&bin, &nodes[0], &["--anon", "--class", "public"]);
    let relay = wait_for(Duration::from_secs(30), "a relay running the PUT", || {
        (1..5).find(|i| procs[*i].log()[marks[*i]..].contains("runner: put"))
    })
    .unwrap();
    // Give the relay time to reach its store with the first bytes.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        anon.try_wait().unwrap().is_none(),
        "the stalled client is still uploading"
    );
    let (took, put) = honest_put(
        &bin,
        &nodes[relay],
        &honest,
        "on the relay of a stalled PUT",
    );
    println!("honest put on relay {relay} while an anonymous PUT stalls: {took:?}");
    assert!(put["cid"].is_string(), "{put}");

    // The same through the node's own API: a local upload that stalls holds up nobody either.
    let victim = if relay == 1 { 2 } else { 1 };
    let mut local = stalled_put(&bin, &nodes[victim], &["--rf", "0"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(local.try_wait().unwrap().is_none());
    let (took, put) = honest_put(&bin, &nodes[victim], &honest, "beside a stalled API upload");
    println!("honest put beside a stalled API upload: {took:?}");
    assert!(put["cid"].is_string(), "{put}");

    // The stalled clients go: their uploads fail and leave no temporary files.
    for mut c in [anon, local] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    for i in [relay, victim] {
        wait_for(
            Duration::from_secs(30),
            "the cut-off uploads' temporary files removed",
            || (temporaries(&nodes[i]) == 0).then_some(()),
        )
        .unwrap_or_else(|e| panic!("node {i}: {e}"));
    }
}
