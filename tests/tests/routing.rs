//! Real routing signals (issue 22, item 3), with three nodes on loopback.
//!
//! A (the requester, and everyone's bootstrap) adds the tiny GGUF model; B and C serve it.
//! B is free (`[price]` set to 0 in its config: unset, a node asks its credits rate card's
//! price) but slow (`--fault-inject slow-inference`: every job starts 1.5 s late); C is fast
//! but asks a price (`[price] compute_per_1k_tokens = 50` in its config, carried by its signed
//! node record). After two warm-up jobs sent to B by `cost` and re-run on C (`--sample 1`, so
//! both are measured and B earns two `inference_matched` observations):
//! - `--strategy speed` picks C (B's measured throughput and round trips are far worse);
//! - `--strategy cost` picks B (the price in C's record);
//! - `--strategy quality` picks B (the better reputation, though slower);
//! - `--strategy private` refuses to send the job in the clear (it goes through `--anon`);
//! - while C keeps B's job streams full, B's record says so (`load_permille` 1000) and `cost`
//!   turns to C;
//! - every node publishes signed latency samples of its peers: C's score of B counts A's samples
//!   (second-hand, A is C's bootstrap) and its speed component is off the neutral ½.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use serde_json::Value;
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, wait_for, wait_for_records};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

#[test]
fn strategies_choose_by_measured_speed_price_and_reputation() {
    let started = Instant::now();
    let bin = warren_tests::hostile::node_bin(BIN);
    let bin = bin.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    {
        let mut f = std::fs::File::create(&gguf).unwrap();
        warren_inference::tiny::write_tiny_llama(&mut f, 7).unwrap();
    }
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    // A runs no storage audits of its own: the only evidence it has about B and C is what the
    // jobs show (and the latency samples, alike for both).
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("config.toml"), "[mesh]\naudit_every_ms = 3600000\n").unwrap();
    let _pa = NodeProcess::start(bin, &a, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(bin, &a, &["status"]).unwrap()).unwrap();
    // B asks nothing (explicitly: unset, a price is the credits rate card's, not 0).
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("config.toml"),
        "[price]\nstorage_per_gib_month = 0\ncompute_per_1k_tokens = 0\n",
    )
    .unwrap();
    let _pb = NodeProcess::start(
        bin,
        &b,
        &["--bootstrap", &boot, "--fault-inject", "slow-inference"],
    )
    .unwrap();
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("config.toml"),
        "[price]\nstorage_per_gib_month = 0\ncompute_per_1k_tokens = 50\n",
    )
    .unwrap();
    let _pc = NodeProcess::start(bin, &c, &["--bootstrap", &boot]).unwrap();
    let id_of = |dir: &std::path::Path| {
        cli_json(bin, dir, &["status"]).unwrap()["peer_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (id_b, id_c) = (id_of(&b), id_of(&c));
    wait_for_records(bin, &a, 2).unwrap();

    let added = cli_json(
        bin,
        &a,
        &["model", "add", gguf.to_str().unwrap(), "--name", "tiny"],
    )
    .unwrap();
    let model = added["model"].as_str().unwrap().to_owned();
    for dir in [&b, &c] {
        cli_json(bin, dir, &["model", "serve", &model]).unwrap();
    }
    // C's price, as A sees it in C's record.
    wait_for(Duration::from_secs(20), "C's priced record at A", || {
        let peers = cli_json(bin, &a, &["peers"]).ok()?;
        peers
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == id_c.as_str())?;
        Some(())
    })
    .unwrap();

    let infer = |strategy: &str, sample: &str| -> Value {
        cli_json(
            bin,
            &a,
            &[
                "infer",
                "--model",
                &model,
                "--prompt",
                "hello",
                "--max-tokens",
                "2",
                "--strategy",
                strategy,
                "--sample",
                sample,
            ],
        )
        .unwrap()
    };
    // Warm-up: `cost` sends each job to B, and each is re-run on C, so both are measured and B
    // earns two `inference_matched` observations at A.
    for _ in 0..2 {
        let out = infer("cost", "1");
        println!("warm-up: operator {}", out["operator"]);
        assert_eq!(out["operator"], id_b.as_str(), "cost: {out}");
    }
    let speed = infer("speed", "0");
    assert_eq!(speed["operator"], id_c.as_str(), "speed: {speed}");
    let cost = infer("cost", "0");
    assert_eq!(cost["operator"], id_b.as_str(), "cost: {cost}");
    // B, slow but with the better record of checked results, is the `quality` choice.
    // (No evidence yet is the neutral ½.)
    let total = |peer: &str| {
        cli_json(bin, &a, &["reputation", peer])
            .ok()
            .and_then(|r| r["total"].as_f64())
            .unwrap_or(0.5)
    };
    let (rep_b, rep_c) = (total(&id_b), total(&id_c));
    println!("reputation at A: B {rep_b:.3}, C {rep_c:.3}");
    assert!(rep_b > rep_c + 0.05, "B {rep_b}, C {rep_c}");
    let quality = infer("quality", "0");
    assert_eq!(quality["operator"], id_b.as_str(), "quality: {quality}");
    let private = cli(
        bin,
        &a,
        &[
            "infer",
            "--model",
            &model,
            "--prompt",
            "hello",
            "--strategy",
            "private",
        ],
        true,
    )
    .unwrap();
    assert!(!private.status.success(), "private went in the clear");
    let said = String::from_utf8_lossy(&private.stderr).to_string()
        + &String::from_utf8_lossy(&private.stdout);
    assert!(said.contains("--anon"), "{said}");

    // Loaded: C keeps three jobs open on B (its only other operator); B's record soon says it is
    // full (load 1000), and A's `cost` turns to C, the dear one, rather than queue at B.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, c, model) = (stop.clone(), c.clone(), model.clone());
            let bin = bin.to_owned();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = cli(
                        &bin,
                        &c,
                        &[
                            "infer",
                            "--model",
                            &model,
                            "--prompt",
                            "hi",
                            "--max-tokens",
                            "1",
                            "--sample",
                            "0",
                        ],
                        true,
                    );
                }
            })
        })
        .collect();
    let loaded = wait_for(
        Duration::from_secs(30),
        "cost to avoid the loaded B",
        || {
            let out = infer("cost", "0");
            (out["operator"] == id_c.as_str()).then_some(out)
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let loaded = loaded.unwrap();
    println!("cost while B is loaded: {}", loaded["operator"]);

    // Latency samples: C counts A's samples of B, and B's speed is off neutral.
    let id_a = id_of(&a);
    let seen = wait_for(
        Duration::from_secs(30),
        "A's latency sample of B at C",
        || {
            let r = cli_json(bin, &c, &["reputation", &id_b]).ok()?;
            let from_a = r["observations"].as_array()?.iter().any(|o| {
                let observer: Vec<u8> = o["observer"]
                    .as_array()
                    .map(|b| {
                        b.iter()
                            .filter_map(|x| x.as_u64())
                            .map(|x| x as u8)
                            .collect()
                    })
                    .unwrap_or_default();
                o["kind"] == "latency_sample"
                    && warren_protocol::PeerId::from_bytes(&observer)
                        .is_ok_and(|p| p.to_string() == id_a)
            });
            (from_a && r["components"]["speed"].as_f64()? != 0.5).then_some(r)
        },
    )
    .unwrap();
    println!("C's view of B: {seen}");
    println!("routing: {:?}", started.elapsed());
}
