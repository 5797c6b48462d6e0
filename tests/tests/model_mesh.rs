//! Models stored on the mesh for real (issue 22, item 5): `warren model add` places the model's
//! blocks at its RF like any file put, so the model outlives its adder.
//!
//! Three nodes on loopback. A adds the tiny GGUF model (at the default RF, 3): its file and
//! manifest are pushed to B and C. A is stopped; B fetches the model (from the copies on the
//! mesh), verifies, loads and serves it, and C's `warren infer` is answered by B. On a build that only announced
//! the model's blocks, B's serve fails: nobody but the stopped adder had them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::time::{Duration, Instant};

use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, wait_for, wait_for_records};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

#[test]
fn a_model_survives_its_adder_going_offline() {
    let started = Instant::now();
    let bin = warren_tests::hostile::node_bin(BIN);
    let bin = bin.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let gguf: PathBuf = tmp.path().join("tiny.gguf");
    {
        let mut f = std::fs::File::create(&gguf).unwrap();
        warren_inference::tiny::write_tiny_llama(&mut f, 7).unwrap();
    }
    let a = tmp.path().join("a");
    let pa = NodeProcess::start(bin, &a, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(bin, &a, &["status"]).unwrap()).unwrap();
    let mut procs = Vec::new();
    let mut ids = Vec::new();
    for name in ["b", "c"] {
        let dir = tmp.path().join(name);
        procs.push(NodeProcess::start(bin, &dir, &["--bootstrap", &boot]).unwrap());
        ids.push(
            cli_json(bin, &dir, &["status"]).unwrap()["peer_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (b, c) = (tmp.path().join("b"), tmp.path().join("c"));
    wait_for_records(bin, &a, 2).unwrap();
    wait_for_records(bin, &b, 2).unwrap();
    wait_for_records(bin, &c, 2).unwrap();

    // At the node's default RF (3): both other nodes get a copy of every block.
    let added = cli_json(
        bin,
        &a,
        &["model", "add", gguf.to_str().unwrap(), "--name", "tiny"],
    )
    .unwrap();
    println!("added: {added}");
    let id = added["model"].as_str().unwrap().to_owned();

    // The adder goes offline for good.
    pa.stop().unwrap();

    let served = cli(bin, &b, &["model", "serve", &id], true).unwrap();
    assert!(
        served.status.success(),
        "B could not serve the model once its adder was gone: {}{}",
        String::from_utf8_lossy(&served.stdout),
        String::from_utf8_lossy(&served.stderr)
    );
    let served: serde_json::Value = serde_json::from_slice(&served.stdout).unwrap();
    assert_eq!(served["name"], "tiny");
    // Where `model add` said it placed the blocks.
    let placed = &added["placed"];
    assert_eq!(placed["failed"], 0, "{added}");
    assert!(placed["copies"].as_u64().unwrap_or(0) > 0, "{added}");
    let holders: Vec<&str> = placed["holders"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    for peer in &ids {
        assert!(
            holders.contains(&peer.as_str()),
            "{peer} holds no copy: {added}"
        );
    }

    // C asks the mesh; B answers.
    let out = wait_for(Duration::from_secs(30), "C's job answered by B", || {
        let r = cli_json(
            bin,
            &c,
            &[
                "infer",
                "--model",
                &id,
                "--prompt",
                "hello",
                "--max-tokens",
                "4",
                "--sample",
                "0",
            ],
        )
        .ok()?;
        (r["operator"] == ids[0].as_str()).then_some(r)
    })
    .unwrap();
    println!("C's job: {out}");
    println!("model_mesh: {:?}", started.elapsed());
}
