//! Acceptance of "Reputation" with six real node processes on loopback: a node whose disk answers
//! every storage audit wrongly (`--fault-inject corrupt-audits`) drops below the floor on every
//! other node's table within two minutes, and a file put afterwards places no block on it.
//!
//! The faulty node keeps its blocks and keeps answering, so repair cannot "heal" it: every audit of
//! it fails, which is what a disk that returns altered bytes looks like from outside.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_tests::{
    NodeProcess, cli_json, held, tcp_multiaddr, test_bytes, wait_for, wait_for_records,
};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: usize = 1 << 20;
/// Nodes in the devnet; the last one is the faulty one.
const NODES: usize = 6;
const BAD: usize = NODES - 1;

/// `peer`'s row in the reputation table of the node on `dir`, if it has one.
fn row(dir: &Path, peer: &str) -> Option<Value> {
    let table = cli_json(BIN, dir, &["reputation"]).ok()?;
    table
        .as_array()?
        .iter()
        .find(|r| r["peer_id"] == peer)
        .cloned()
}

fn put(dir: &Path, file: &Path) -> Value {
    cli_json(BIN, dir, &["put", file.to_str().unwrap(), "--rf", "3"]).unwrap()
}

#[test]
fn a_node_that_fails_audits_drops_below_the_floor_everywhere_and_gets_no_new_blocks() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let config = tmp.path().join("fast.toml");
    std::fs::write(
        &config,
        "[mesh]\nrepair_every_ms = 1000\naudit_every_ms = 250\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    let mut procs: Vec<NodeProcess> = Vec::new();
    let mut nodes: Vec<(PathBuf, String)> = Vec::new();
    let boot_dir = tmp.path().join("n0");
    procs.push(NodeProcess::start(BIN, &boot_dir, &["--config", cfg]).unwrap());
    let boot_status = cli_json(BIN, &boot_dir, &["status"]).unwrap();
    let boot = tcp_multiaddr(&boot_status).unwrap();
    nodes.push((
        boot_dir,
        boot_status["peer_id"].as_str().unwrap().to_owned(),
    ));
    for i in 1..NODES {
        let dir = tmp.path().join(format!("n{i}"));
        let mut args = vec!["--config", cfg, "--bootstrap", &boot];
        if i == BAD {
            args.extend(["--fault-inject", "corrupt-audits"]);
        }
        procs.push(NodeProcess::start(BIN, &dir, &args).unwrap());
        let s = cli_json(BIN, &dir, &["status"]).unwrap();
        nodes.push((dir, s["peer_id"].as_str().unwrap().to_owned()));
    }
    let bad = nodes[BAD].1.clone();
    for (dir, _) in &nodes {
        wait_for_records(BIN, dir, NODES - 1).unwrap();
    }
    println!("devnet up after {:.1} s", started.elapsed().as_secs_f64());

    // A file placed while nobody knows anything about anybody: the faulty node is a candidate
    // like every other and gets some of the copies.
    let first = tmp.path().join("first.bin");
    std::fs::write(&first, test_bytes(8 * MIB, 1, false)).unwrap();
    let report = put(&nodes[0].0, &first);
    let placed = Instant::now();
    let holders: Vec<&str> = report["replication"]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(
        holders.contains(&bad.as_str()),
        "the faulty node got no copy of the first file, nothing to audit: {report}"
    );
    assert!(!held(BIN, &nodes[BAD].0).is_empty());

    // Its audits fail, the observations spread, and every other node puts it below the floor.
    let others: Vec<usize> = (0..NODES).filter(|i| *i != BAD).collect();
    let mut below_at: Vec<Option<f64>> = vec![None; NODES];
    wait_for(
        Duration::from_secs(120),
        "the faulty node below the floor on every other node's table",
        || {
            for &i in &others {
                if below_at[i].is_none()
                    && row(&nodes[i].0, &bad).is_some_and(|r| r["below_floor"] == true)
                {
                    below_at[i] = Some(placed.elapsed().as_secs_f64());
                }
            }
            others.iter().all(|&i| below_at[i].is_some()).then_some(())
        },
    )
    .unwrap_or_else(|e| {
        let tables: Vec<String> = others
            .iter()
            .map(|&i| format!("node {i}: {:?}", row(&nodes[i].0, &bad)))
            .collect();
        panic!("{e}; below-floor times {below_at:?}\n{}", tables.join("\n"))
    });
    let slowest = below_at.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
    println!("below the floor on every table {slowest:.1} s after the put: {below_at:?}");
    assert!(slowest < 120.0);

    // The scores come from evidence: failed audits, first-hand on some nodes and gossiped to the
    // rest. The honest nodes stay above the floor everywhere.
    for &i in &others {
        let r = row(&nodes[i].0, &bad).unwrap();
        let evidence = r["evidence"]["first_hand"].as_f64().unwrap()
            + r["evidence"]["second_hand"].as_f64().unwrap();
        assert!(evidence > 0.0, "node {i} has no evidence: {r}");
        assert!(
            r["components"]["performance"].as_f64().unwrap() < 0.25,
            "node {i}: {r}"
        );
        for &j in &others {
            if j != i
                && let Some(good) = row(&nodes[i].0, &nodes[j].1)
            {
                assert_eq!(
                    good["below_floor"], false,
                    "node {i} about node {j}: {good}"
                );
            }
        }
    }

    // A file put now, from another node, places no block on the faulty node.
    let bad_held_before = held(BIN, &nodes[BAD].0);
    let second = tmp.path().join("second.bin");
    std::fs::write(&second, test_bytes(8 * MIB, 2, false)).unwrap();
    let report = put(&nodes[1].0, &second);
    assert_eq!(report["replication"]["failed"], 0, "{report}");
    assert!(
        report["replication"]["copies"].as_u64().unwrap()
            >= 3 * report["replication"]["blocks"].as_u64().unwrap(),
        "{report}"
    );
    let holders: Vec<&str> = report["replication"]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(
        !holders.contains(&bad.as_str()),
        "the faulty node was chosen: {report}"
    );
    // Nor does repair hand it any of the new blocks later.
    std::thread::sleep(Duration::from_secs(3));
    let new_on_bad: Vec<String> = held(BIN, &nodes[BAD].0)
        .difference(&bad_held_before)
        .cloned()
        .collect();
    assert!(
        new_on_bad.is_empty(),
        "blocks placed on the faulty node after it fell below the floor: {new_on_bad:?}"
    );

    // The table survives a restart (redb): stop the others so nothing new arrives, then restart
    // node 0 on its data directory and compare.
    drop(procs.split_off(1));
    wait_for(Duration::from_secs(30), "node 0 alone", || {
        let peers = cli_json(BIN, &nodes[0].0, &["peers"]).ok()?;
        peers.as_array()?.is_empty().then_some(())
    })
    .unwrap();
    // Let an audit that was under way when the others went away finish.
    std::thread::sleep(Duration::from_secs(1));
    let before = cli_json(BIN, &nodes[0].0, &["reputation"]).unwrap();
    procs.pop().unwrap().stop().unwrap();
    assert!(nodes[0].0.join("reputation.redb").exists());
    let _node0 = NodeProcess::start(BIN, &nodes[0].0, &["--config", cfg]).unwrap();
    let after = cli_json(BIN, &nodes[0].0, &["reputation"]).unwrap();
    let rows = |t: &Value| -> BTreeMap<String, (bool, f64, f64)> {
        t.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["peer_id"].as_str().unwrap().to_owned(),
                    (
                        r["below_floor"].as_bool().unwrap(),
                        r["total"].as_f64().unwrap(),
                        r["evidence"]["first_hand"].as_f64().unwrap(),
                    ),
                )
            })
            .collect()
    };
    let (before, after) = (rows(&before), rows(&after));
    assert!(before.contains_key(&bad), "{before:?}");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (peer, b) in &before {
        // The stored evidence is the same but for seconds of decay (24 h half-life). The totals
        // may move a little: trust is not stored but recomputed at load (it was up to 10 s old
        // before), which changes how much each reporter's evidence weighs; the verdicts stay.
        let a = &after[peer];
        assert_eq!(b.0, a.0, "{peer}: {b:?} / {a:?}");
        assert!((b.1 - a.1).abs() < 0.05, "{peer}: {b:?} / {a:?}");
        assert!(
            (b.2 - a.2).abs() <= 1e-3 * b.2.max(1.0),
            "{peer}: {b:?} / {a:?}"
        );
    }
    assert!(
        after[&bad].0,
        "the faulty node is still below the floor after the restart"
    );
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}
