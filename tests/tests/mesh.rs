//! Acceptance of "Storage mesh II" with six real node processes on loopback: placement at RF 3,
//! verified fetch from another node, audits that catch an altered copy and a wiped store, and
//! self-healing after two holders are SIGKILLed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use warren_tests::{
    NodeProcess, cli, cli_json, held, tcp_multiaddr, test_bytes, wait_for, wait_for_records,
};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: usize = 1 << 20;

/// block → the nodes (by index) holding it, over `live` nodes.
fn holders(nodes: &[(PathBuf, String)], live: &[usize]) -> BTreeMap<String, BTreeSet<usize>> {
    let mut map: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for &i in live {
        for block in held(BIN, &nodes[i].0) {
            map.entry(block).or_default().insert(i);
        }
    }
    map
}

fn audits_about(nodes: &[(PathBuf, String)], live: &[usize], subject: &str) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for &i in live {
        if let Ok(a) = cli_json(BIN, &nodes[i].0, &["audits"]) {
            for r in a.as_array().unwrap() {
                if r["subject"] == subject {
                    if r["passed"] == true {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
    }
    (passed, failed)
}

fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir.join("store").join("blocks"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out
}

#[test]
fn six_nodes_place_fetch_audit_and_heal() {
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let config = tmp.path().join("fast.toml");
    std::fs::write(
        &config,
        // A holder wiped silently is found by the audits of the checks within a recheck period
        // (16 h by default): every second here, as before the sweep, with the budget to match
        // and no CPU cap (a debug build on a loaded machine is always over 1 % of a core).
        "[mesh]\nrepair_every_ms = 1000\naudit_every_ms = 250\nrecheck_every_ms = 1000\n\
         background_dht_per_min = 6000\nbackground_audits_per_min = 6000\n\
         background_cpu_permille = 100000\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    let mut procs: Vec<Option<NodeProcess>> = Vec::new();
    let mut nodes: Vec<(PathBuf, String)> = Vec::new();
    let a_dir = tmp.path().join("n0");
    procs.push(Some(
        NodeProcess::start(BIN, &a_dir, &["--config", cfg]).unwrap(),
    ));
    let a_status = cli_json(BIN, &a_dir, &["status"]).unwrap();
    let boot = tcp_multiaddr(&a_status).unwrap();
    nodes.push((a_dir, a_status["peer_id"].as_str().unwrap().to_owned()));
    for i in 1..6 {
        let dir = tmp.path().join(format!("n{i}"));
        procs.push(Some(
            NodeProcess::start(BIN, &dir, &["--config", cfg, "--bootstrap", &boot]).unwrap(),
        ));
        let s = cli_json(BIN, &dir, &["status"]).unwrap();
        nodes.push((dir, s["peer_id"].as_str().unwrap().to_owned()));
    }
    // Every node knows every other's offer (roles come from verified records).
    for (dir, _) in &nodes {
        wait_for_records(BIN, dir, 5).unwrap();
    }

    // Put 32 MiB with RF 3 on node 0: every block on >= 3 distinct other nodes.
    let original = test_bytes(32 * MIB, 1, false);
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, &original).unwrap();
    let put = cli_json(
        BIN,
        &nodes[0].0,
        &["put", file.to_str().unwrap(), "--rf", "3"],
    )
    .unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    let rep = &put["replication"];
    assert_eq!(rep["blocks"], 33, "{put}");
    assert_eq!(rep["copies"], 99, "{put}");
    assert!(rep["holders"].as_array().unwrap().len() >= 3, "{put}");
    let all: Vec<usize> = (1..6).collect();
    let map = holders(&nodes, &all);
    assert_eq!(map.len(), 33, "every block is held somewhere: {map:?}");
    assert!(map.values().all(|h| h.len() >= 3), "{map:?}");

    // get from node 5 (it may hold some blocks; the rest come from the others), byte-identical.
    let out = tmp.path().join("from-5.bin");
    let o = cli(
        BIN,
        &nodes[5].0,
        &["get", &cid, "-o", out.to_str().unwrap()],
        false,
    )
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == original);

    // `warren where`: every block and its live holders. Node 5 now stores the whole file too.
    let w = cli_json(BIN, &nodes[5].0, &["where", &cid]).unwrap();
    let blocks = w["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 33, "{w}");
    assert!(w["min_rf_held"].as_u64().unwrap() >= 3, "{w}");
    for b in blocks {
        let hs = b["holders"].as_array().unwrap();
        assert!(hs.iter().any(|h| h["this_node"] == true), "{b}");
        let live = hs.iter().filter(|h| h["live"] == true).count() as u64;
        assert_eq!(b["rf_held"].as_u64().unwrap(), live, "{b}");
    }
    let w0 = cli_json(BIN, &nodes[0].0, &["where", &cid]).unwrap();
    assert_eq!(w0["wanted_rf"], 3, "{w0}");
    let text = cli(BIN, &nodes[0].0, &["where", &cid], false).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("33 blocks") && text.contains("put here at RF 3"),
        "{text}"
    );

    // Alter one block on disk at a holder: an audit fails, the bad copy is dropped, and a good
    // replica takes its place.
    let map = holders(&nodes, &all);
    // A chunk block (a file on disk; small manifests live inside the index).
    let (victim_block, victim_holders) = map
        .iter()
        .find(|(b, h)| b.starts_with("bafk") && (h.contains(&1) || h.contains(&2)))
        .unwrap();
    let x = *victim_holders
        .iter()
        .find(|i| **i == 1 || **i == 2)
        .unwrap();
    let path = block_files(&nodes[x].0)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy() == *victim_block)
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let others: Vec<usize> = (0..6).filter(|i| *i != x).collect();
    wait_for(
        Duration::from_secs(60),
        "a failed audit of the altered copy",
        || (audits_about(&nodes, &others, &nodes[x].1).1 > 0).then_some(()),
    )
    .unwrap();
    wait_for(Duration::from_secs(60), "the bad copy replaced", || {
        let now = holders(&nodes, &all);
        // The altered bytes are gone from x (dropped, or overwritten by a good copy pushed back),
        // and at least three other-than-origin nodes list a copy again.
        let copies = now.get(victim_block.as_str())?.len();
        let bad_left = std::fs::read(&path).map(|b| b == bytes).unwrap_or(false);
        (copies >= 3 && !bad_left).then_some(())
    })
    .unwrap();

    // A holder that wiped its store fails audits. The wipe removes the chunk files only (small
    // manifests live inside the index), and repair may push a good copy of a block back to the
    // wiped holder as soon as an audit found it missing (a failed holder counts again once it
    // stores a good copy). So `warren audit PEER CID` runs right after the wipe, and an audit
    // that passes must be of a block the holder really has: a manifest, or a chunk whose file is
    // back. Audits of blocks it lacks fail; at least one must.
    let y = if x == 1 { 2 } else { 1 };
    for f in block_files(&nodes[y].0) {
        std::fs::remove_file(f).unwrap();
    }
    let mut failed_audit = None;
    for _ in 0..16 {
        let a = cli_json(BIN, &nodes[0].0, &["audit", &nodes[y].1, &cid]).unwrap();
        assert_eq!(a["subject"], nodes[y].1.as_str(), "{a}");
        if a["passed"] == false {
            failed_audit = Some(a);
            break;
        }
        let block = a["block"].as_str().unwrap();
        let chunk_back = block_files(&nodes[y].0)
            .iter()
            .any(|p| p.file_name().unwrap().to_string_lossy() == block);
        let manifest_kept = !block.starts_with("bafk") && held(BIN, &nodes[y].0).contains(block);
        assert!(
            chunk_back || manifest_kept,
            "the wiped holder passed an audit of a block it does not have: {a}"
        );
    }
    let a = failed_audit.expect("no audit of the wiped holder failed");
    println!("audit of the wiped holder: {a}");
    // Failed observations about it, from the scheduled audits too.
    let others: Vec<usize> = (0..6).filter(|i| *i != y).collect();
    wait_for(
        Duration::from_secs(60),
        "failed audits of the wiped holder",
        || (audits_about(&nodes, &others, &nodes[y].1).1 >= 2).then_some(()),
    )
    .unwrap();

    // A good holder passes.
    let good = (1..6)
        .find(|i| *i != x && *i != y && !held(BIN, &nodes[*i].0).is_empty())
        .unwrap();
    let a = cli_json(BIN, &nodes[0].0, &["audit", &nodes[good].1, &cid]).unwrap();
    assert_eq!(a["passed"], true, "{a}");
    let o = cli(BIN, &nodes[0].0, &["audit", "not-a-peer"], false).unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a peer id"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Audit results are observations: every auditor scores the holders first-hand, and the
    // signed observations reach the others over gossipsub.
    wait_for(
        Duration::from_secs(60),
        "node 0 to score the wiped holder from evidence",
        || {
            // Node 0's own audit result (every node also publishes latency samples of its
            // peers, which are first-hand evidence too but not an audit's).
            let view = cli_json(BIN, &nodes[0].0, &["reputation", &nodes[y].1]).ok()?;
            view["observations"]
                .as_array()?
                .iter()
                .any(|o| {
                    let observer: Vec<u8> = o["observer"]
                        .as_array()
                        .map(|b| {
                            b.iter()
                                .filter_map(|x| x.as_u64())
                                .map(|x| x as u8)
                                .collect()
                        })
                        .unwrap_or_default();
                    o["kind"]
                        .as_str()
                        .is_some_and(|k| k.starts_with("storage_proof"))
                        && warren_protocol::PeerId::from_bytes(&observer)
                            .is_ok_and(|p| p.to_string() == nodes[0].1)
                })
                .then_some(())
        },
    )
    .unwrap();
    let scored_by_gossip = (1..6).filter(|i| *i != y).any(|i| {
        cli_json(BIN, &nodes[i].0, &["reputation"])
            .ok()
            .and_then(|t| t.as_array().cloned())
            .is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["evidence"]["second_hand"].as_f64().unwrap_or(0.0) > 0.0)
            })
    });
    assert!(scored_by_gossip, "no node counted a gossiped observation");

    // SIGKILL two holders: the survivors restore RF 3 among the live nodes within 60 s.
    let killed = [3usize, 4];
    for k in killed {
        let p = procs[k].take().unwrap();
        assert!(
            Command::new("kill")
                .args(["-KILL", &p.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
        drop(p);
    }
    // The wiped holder is alive and takes copies again.
    let live: Vec<usize> = (1..6).filter(|i| !killed.contains(i)).collect();
    // Within a minute on an idle machine; the checks go by evidence (the holders gone) and
    // stand-ins, and the wiped holder takes a copy back only after an audit of it found the
    // copy missing, so a loaded 2-core machine has been seen to need over two minutes.
    wait_for(
        Duration::from_secs(300),
        "RF 3 restored among the live nodes",
        || {
            let map = holders(&nodes, &live);
            (map.len() == 33 && map.values().all(|h| h.len() >= 3)).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", holders(&nodes, &live)));

    // Every live node still returns the file byte-identical.
    for i in (0..6).filter(|i| !killed.contains(i)) {
        let out = tmp.path().join(format!("after-{i}.bin"));
        let o = cli(
            BIN,
            &nodes[i].0,
            &["get", &cid, "-o", out.to_str().unwrap()],
            false,
        )
        .unwrap();
        assert!(
            o.status.success(),
            "node {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            std::fs::read(&out).unwrap() == original,
            "node {i} returned other bytes"
        );
    }
}
