//! Acceptance: `warren devnet --nodes 5` starts five real node processes on loopback; within 30 s
//! every node lists the other four as peers and fetches and verifies every other node's record from
//! the DHT; every node offers every role, so `get --anon` works on it; SIGTERM to the devnet stops
//! them all and leaves nothing running.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::{cli, cli_json, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn five_node_devnet_meshes_and_serves_verified_records() {
    let tmp = tempfile::tempdir().unwrap();
    let mut devnet = KillOnDrop(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(tmp.path())
            .args(["devnet", "--nodes", "5"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // "node-i  MULTIADDR  DIR" lines, then the hint line.
    let stdout = devnet.0.stdout.take().unwrap();
    let mut nodes = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        println!("devnet: {line}");
        if line.starts_with("node-") {
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert!(
                parts[1].starts_with("/ip4/127.0.0.1/tcp/") && parts[1].contains("/p2p/"),
                "{line}"
            );
            let peer = parts[1].rsplit('/').next().unwrap().to_owned();
            nodes.push((peer, std::path::PathBuf::from(parts[2])));
        }
        if line.starts_with("try:") {
            break;
        }
    }
    assert_eq!(nodes.len(), 5, "devnet printed {} nodes", nodes.len());
    // Keep reading so the devnet never writes into a closed pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let ready = Instant::now();

    let all: BTreeSet<String> = nodes.iter().map(|(p, _)| p.clone()).collect();
    for (peer, dir) in &nodes {
        let want: BTreeSet<String> = all.iter().filter(|p| *p != peer).cloned().collect();
        let left = Duration::from_secs(30).saturating_sub(ready.elapsed());
        wait_for(left, &format!("{peer} to list the other 4 peers"), || {
            let peers = cli_json(BIN, dir, &["peers"]).ok()?;
            let got: BTreeSet<String> = peers
                .as_array()?
                .iter()
                .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
                .collect();
            want.is_subset(&got).then_some(())
        })
        .unwrap();
    }
    println!("full mesh after {:?}", ready.elapsed());

    for (asker, dir) in &nodes {
        for (subject, _) in &nodes {
            let left = Duration::from_secs(30)
                .saturating_sub(ready.elapsed())
                .max(Duration::from_secs(1));
            let record = wait_for(
                left,
                &format!("{asker} to fetch {subject}'s record"),
                || cli_json(BIN, dir, &["record", subject]).ok(),
            )
            .unwrap();
            assert_eq!(record["verified"], true);
            assert_eq!(record["peer_id"], subject.as_str());
            assert_eq!(record["network"], "local");
            assert_eq!(record["onion_key"].as_str().unwrap().len(), 64);
            assert!(
                record["addrs"][0]
                    .as_str()
                    .unwrap()
                    .starts_with("/ip4/127.0.0.1/")
            );
            assert!(record["expires_at"].as_u64().unwrap() > record["issued_at"].as_u64().unwrap());
        }
    }
    println!(
        "all 25 records fetched and verified after {:?}",
        ready.elapsed()
    );

    // Every node offers every role by default, so the quick start's `get --anon` finds a gate,
    // a middle and a relay on the devnet it just started (the old devnet: "no usable peer for
    // hop 0 (Gate) among 0 candidates").
    let original = warren_tests::test_bytes(256 << 10, 5, true);
    let file = tmp.path().join("anon-src.txt");
    std::fs::write(&file, &original).unwrap();
    let put = cli_json(BIN, &nodes[1].1, &["put", file.to_str().unwrap()]).unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    let back = tmp.path().join("anon-back.txt");
    let mut last = String::new();
    let got = (0..6).any(|_| {
        let o = cli(
            BIN,
            &nodes[0].1,
            &["get", &cid, "--anon", "-o", back.to_str().unwrap()],
            false,
        )
        .unwrap();
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        if !o.status.success() {
            std::thread::sleep(Duration::from_secs(1));
        }
        o.status.success()
    });
    assert!(got, "get --anon on the devnet: {last}");
    assert!(std::fs::read(&back).unwrap() == original, "byte-identical");
    println!("get --anon on the devnet after {:?}", ready.elapsed());

    // A wrong id gets a clear error, not a hang or a crash.
    let out = cli(BIN, &nodes[0].1, &["record", "not-a-peer-id"], false).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a peer id"));

    // SIGTERM stops every node: each removes its api.addr and releases its data-dir lock.
    let pid = devnet.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_for(Duration::from_secs(20), "devnet to exit", || {
        devnet.0.try_wait().ok().flatten()
    })
    .unwrap();
    assert!(status.success(), "devnet exited with {status}");
    let tail = drain.join().unwrap();
    assert_eq!(
        tail.last().map(String::as_str),
        Some("devnet stopped"),
        "{tail:?}"
    );
    for (_, dir) in &nodes {
        assert!(
            !dir.join("api.addr").exists(),
            "{} still has api.addr",
            dir.display()
        );
        let lock = std::fs::File::open(dir.join("node.lock")).unwrap();
        lock.try_lock()
            .expect("a node still holds its data directory");
    }
}
