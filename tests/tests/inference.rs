//! Acceptance of "Inference" with four real node processes on loopback.
//!
//! Node A adds MiniLM and SmolLM2 to the storage mesh; B, C and D fetch, verify and serve MiniLM
//! (C also SmolLM2), and B is started with `--fault-inject perturb-inference`, so every embedding
//! it returns is shifted. A also serves MiniLM to have a local reference. Then:
//! - A embeds 64 sentences split across the three operators; B's part is caught by the sample
//!   re-run (a third operator arbitrates), discarded and redone elsewhere, and A's reputation
//!   table holds a first-hand `inference_mismatched` observation of B. The vectors equal A's
//!   local run within 1e-4. A fifth node E, which holds no copy of MiniLM, embeds the same
//!   sentences with every item re-run: each operator whose part a re-run confirmed is owed its
//!   tokens on E (`embedded`, issue 21), B nothing, and E read only the header of the weights.
//! - A's `warren infer` on SmolLM2 (served by B, C and A), re-run on a second operator every time,
//!   returns C's coherent answer (B's altered tokens are outvoted by A), and greedy decoding gives
//!   the same tokens twice.
//!
//! Needs the models from `scripts/fetch-models.sh` (scripts/test.sh runs it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, wait_for};

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("WARREN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    assert!(
        dir.join("all-minilm-l6-v2/model.safetensors").exists(),
        "models missing in {}: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}

fn sentences() -> Vec<String> {
    let subjects = [
        "The cat",
        "A young engineer",
        "My neighbour",
        "The old train",
        "A small bird",
        "The committee",
        "Our teacher",
        "The river",
    ];
    let actions = [
        "walks slowly along the road",
        "writes a long letter",
        "sings in the morning",
        "waits for the rain to stop",
        "reads about distant stars",
        "builds a wooden boat",
        "forgets the keys again",
        "looks at the mountains",
    ];
    let mut out = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for (j, a) in actions.iter().enumerate() {
            out.push(format!("{s} {a} ({i}{j})."));
        }
    }
    out
}

/// Bytes of the files under `dir` whose names do not end in `.log` (a weights file fetched
/// whole, or its blocks in the store, would show here).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&path),
            Ok(m) if !path.to_string_lossy().ends_with(".log") => {
                assert!(
                    path.file_name() != Some(std::ffi::OsStr::new("model.safetensors")),
                    "a copy of the weights at {}",
                    path.display()
                );
                total += m.len();
            }
            _ => {}
        }
    }
    total
}

fn read_vectors(path: &Path) -> Vec<Vec<f32>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

#[test]
fn embeddings_split_across_operators_catch_a_perturbing_one_and_generation_streams() {
    let bin = warren_tests::hostile::node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let started = Instant::now();
    let models = models_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut procs = Vec::new();
    let mut dirs = Vec::new();
    let mut ids = Vec::new();
    let a = tmp.path().join("a");
    procs.push(NodeProcess::start(&bin, &a, &[]).unwrap());
    let status = cli_json(&bin, &a, &["status"]).unwrap();
    let boot = tcp_multiaddr(&status).unwrap();
    ids.push(status["peer_id"].as_str().unwrap().to_owned());
    dirs.push(a.clone());
    for name in ["b", "c", "d"] {
        let dir = tmp.path().join(name);
        let mut args = vec!["--bootstrap", boot.as_str()];
        if name == "b" {
            args.extend(["--fault-inject", "perturb-inference"]);
        }
        procs.push(NodeProcess::start(&bin, &dir, &args).unwrap());
        let s = cli_json(&bin, &dir, &["status"]).unwrap();
        ids.push(s["peer_id"].as_str().unwrap().to_owned());
        dirs.push(dir);
    }
    let (b, c, d) = (&dirs[1], &dirs[2], &dirs[3]);
    wait_for(
        Duration::from_secs(30),
        "every node connected to the others",
        || {
            dirs.iter()
                .all(|dir| {
                    cli_json(&bin, dir, &["peers"])
                        .ok()
                        .and_then(|p| p.as_array().map(|a| a.len() >= 3))
                        .unwrap_or(false)
                })
                .then_some(())
        },
    )
    .unwrap();

    let m = models.join("all-minilm-l6-v2");
    let minilm = cli_json(
        &bin,
        &a,
        &[
            "model",
            "add",
            m.join("model.safetensors").to_str().unwrap(),
            m.join("tokenizer.json").to_str().unwrap(),
            m.join("config.json").to_str().unwrap(),
            "--name",
            "minilm",
        ],
    )
    .unwrap();
    let minilm_id = minilm["model"].as_str().unwrap().to_owned();
    assert_eq!(minilm["kind"], "embed");
    let gguf = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let smol = cli_json(
        &bin,
        &a,
        &["model", "add", gguf.to_str().unwrap(), "--name", "smollm2"],
    )
    .unwrap();
    let smol_id = smol["model"].as_str().unwrap().to_owned();
    println!("models added after {:?}", started.elapsed());

    for dir in [&a, b, c, d] {
        let served = cli_json(&bin, dir, &["model", "serve", &minilm_id]).unwrap();
        assert_eq!(served["name"], "minilm");
    }
    // SmolLM2: C honest, B perturbing, A as the arbiter of last resort.
    for dir in [&a, b, c] {
        cli_json(&bin, dir, &["model", "serve", &smol_id]).unwrap();
    }
    println!("models served after {:?}", started.elapsed());

    // 64 sentences, split across the three operators, 10 % re-run elsewhere.
    let input = tmp.path().join("in.jsonl");
    let lines: Vec<String> = sentences()
        .iter()
        .map(|s| serde_json::json!({ "text": s }).to_string())
        .collect();
    assert_eq!(lines.len(), 64);
    std::fs::write(&input, lines.join("\n")).unwrap();
    let remote_out = tmp.path().join("remote.jsonl");
    let local_out = tmp.path().join("local.jsonl");
    let summary = cli_json(
        &bin,
        &a,
        &[
            "embed",
            "--model",
            &minilm_id,
            "--input",
            input.to_str().unwrap(),
            "--output",
            remote_out.to_str().unwrap(),
            "--operators",
            "3",
            "--sample",
            "0.1",
        ],
    )
    .unwrap();
    println!("distributed embed: {summary}");
    cli_json(
        &bin,
        &a,
        &[
            "embed",
            "--model",
            "minilm",
            "--input",
            input.to_str().unwrap(),
            "--output",
            local_out.to_str().unwrap(),
            "--local",
        ],
    )
    .unwrap();
    let remote = read_vectors(&remote_out);
    let local = read_vectors(&local_out);
    assert_eq!(remote.len(), 64);
    assert_eq!(local.len(), 64);
    let max_diff = remote
        .iter()
        .zip(&local)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    println!("max |remote - local| = {max_diff:e}");
    assert!(
        max_diff <= 1e-4,
        "remote vectors differ from local by {max_diff}"
    );

    let bad = &ids[1];
    let operators: Vec<&str> = summary["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer"].as_str().unwrap())
        .collect();
    assert!(operators.len() >= 2, "the batch was split: {operators:?}");
    assert!(
        !operators.contains(&bad.as_str()),
        "B's part was redone elsewhere"
    );
    let discarded: Vec<&str> = summary["parts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["discarded"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
        })
        .collect();
    assert_eq!(discarded, [bad.as_str()], "B's results were discarded");
    assert_eq!(summary["faulty"], serde_json::json!([bad]), "B was named");
    // Verified embedding work earns credit (issue 21): on the requester, each operator whose part a
    // re-run confirmed is owed the tokens of its texts as the requester counts them (`embedded`),
    // priced per FLOP of MiniLM (its parameter count read from the safetensors header); B,
    // caught, earns nothing. The requester is a fifth node E that neither serves nor holds
    // MiniLM: it reads the header off the first blocks of the weights on the mesh, never the
    // whole 90 MB file.
    let e = tmp.path().join("e");
    procs.push(NodeProcess::start(&bin, &e, &["--bootstrap", boot.as_str()]).unwrap());
    wait_for(Duration::from_secs(30), "E connected to the others", || {
        cli_json(&bin, &e, &["peers"])
            .ok()
            .and_then(|p| p.as_array().map(|a| a.len() >= 4))
            .unwrap_or(false)
            .then_some(())
    })
    .unwrap();
    let embedded_on_e = |peer: &str| -> (u64, u64, i64) {
        // No account at all (`warren credits PEER` fails): nothing owed.
        let Ok(v) = cli_json(&bin, &e, &["credits", peer]) else {
            return (0, 0, 0);
        };
        let Some(p) = v["peers"].as_array().and_then(|p| p.first()).cloned() else {
            return (0, 0, 0);
        };
        let w = p["delivered_by_peer"]["inference"]
            .as_array()
            .and_then(|l| l.iter().find(|w| w["model"] == minilm_id.as_str()))
            .cloned()
            .unwrap_or_default();
        (
            w["embedded"].as_u64().unwrap_or(0),
            w["params_m"].as_u64().unwrap_or(0),
            p["earned_by_peer"].as_i64().unwrap_or(0),
        )
    };
    // Every item re-run (`--sample 1`), so that each part is confirmed or refuted whichever
    // operators the plan picks.
    let checked = cli_json(
        &bin,
        &e,
        &[
            "embed",
            "--model",
            &minilm_id,
            "--input",
            input.to_str().unwrap(),
            "--output",
            remote_out.to_str().unwrap(),
            "--operators",
            "3",
            "--sample",
            "1",
        ],
    )
    .unwrap();
    let matched: Vec<String> = checked["checks"]
        .as_array()
        .unwrap()
        .iter()
        // Confirmed: the re-run matched, or a third run sided with the original.
        .filter(|c| {
            c["verdict"] == "match" || (c["fault"].is_string() && c["fault"] == c["verifier"])
        })
        .filter(|c| c["original"] != bad.as_str())
        .map(|c| c["original"].as_str().unwrap().to_owned())
        .collect();
    assert!(!matched.is_empty(), "a part was confirmed: {checked}");
    for p in &matched {
        let (embedded, params_m, earned) = embedded_on_e(p);
        println!(
            "on E, {p} embedded {embedded} confirmed tokens of a {params_m}M model: {earned} nc earned in all"
        );
        assert!(embedded > 0, "{p}'s confirmed part earns on E");
        assert_eq!(params_m, 23, "MiniLM: 22 713 728 parameters");
    }
    assert_eq!(embedded_on_e(bad).0, 0, "B's refuted part earns nothing");
    // E sized the jobs from the weights' header: no copy of the weights, and its data directory
    // holds far less than the 90 MB file.
    let held = dir_bytes(&e);
    println!("E's data directory after sizing MiniLM's jobs: {held} bytes");
    assert!(
        held < 40 << 20,
        "E fetched only the header of the weights, not the file: {held} bytes"
    );
    // A scored B's mismatches first-hand: security = 1 / (1 + invalid + mismatched) (the table keeps
    // only the newest evidence, mostly storage audits here, so the component is what is checked: one
    // mismatch puts it at 0.5, an honest operator stays at 1).
    let security = |peer: &str| {
        cli_json(&bin, &a, &["reputation", peer]).unwrap()["components"]["security"]
            .as_f64()
            .unwrap()
    };
    let (bad_security, good_security) = (security(bad), security(&ids[2]));
    println!("security on A: B {bad_security:.3}, C {good_security:.3}");
    assert!(
        bad_security < 0.75,
        "B's mismatches count against it: {bad_security}"
    );
    assert!(good_security > bad_security);

    // Generation through the network, every job re-run on a second operator (--sample 1): B
    // changes its last token, so whichever of B and C runs a job first, the disagreement is settled
    // by A's own run and C's answer is the one returned.
    let infer = |dir: &Path| {
        cli_json(
            &bin,
            dir,
            &[
                "infer",
                "--model",
                &smol_id,
                "--prompt",
                "What is the capital of France?",
                "--max-tokens",
                "12",
                "--sample",
                "1",
            ],
        )
        .unwrap()
    };
    let standing = |dir: &Path, peer: &str| match cli_json(&bin, dir, &["credits", peer]) {
        Ok(v) => v["peers"][0].clone(),
        Err(e) => {
            println!("credits {peer} on {}: {e}", dir.display());
            serde_json::Value::Null
        }
    };
    // What C delivered to A in all, by A's count: it only grows, whatever else A and C
    // exchange meanwhile (a balance can fall by the bytes A serves C at the same time).
    let earned = |peer: &str| standing(&a, peer)["earned_by_peer"].as_i64().unwrap_or(0);
    let c_before = earned(&ids[2]);
    let first = infer(&a);
    let second = infer(&a);
    println!("infer: {first}\nsecond: {second}");
    for r in [&first, &second] {
        assert_eq!(
            r["operator"],
            ids[2].as_str(),
            "C's answer is returned: {r}"
        );
        let check = &r["check"];
        assert!(
            check["verdict"] == "match" || check["fault"] == bad.as_str(),
            "every job was re-run; a disagreement blames B: {check}"
        );
    }
    assert!(first["text"].as_str().unwrap().contains("Paris"), "{first}");
    assert_eq!(
        first["tokens"], second["tokens"],
        "greedy decoding repeats itself"
    );
    assert_eq!(first["digest"], second["digest"]);
    // Credits for verified work only: A owes C both confirmed jobs (the tokens it generated, the
    // prompt tokens, SmolLM2's 135 M parameters read from the GGUF), and B nothing.
    let work_of = |s: &serde_json::Value, side: &str| {
        s[side]["inference"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["model"] == smol_id.as_str())
            .cloned()
    };
    let generated: u64 = [&first, &second]
        .iter()
        .map(|r| r["tokens"].as_array().unwrap().len() as u64)
        .sum();
    let on_a = standing(&a, &ids[2]);
    println!("C's standing on A: {on_a}");
    let w = work_of(&on_a, "delivered_by_peer").expect("C's verified jobs count on A");
    assert_eq!(w["params_m"], 135, "{w}");
    assert_eq!(w["generated"], generated, "{w}");
    let prefill = w["prefill"].as_u64().unwrap();
    assert!(prefill > 0, "{w}");
    // 2 × 135·10⁶ FLOPs a token at 1 credit a PFLOP.
    let value = 2 * 135_000_000 * (prefill + generated) as i64 / 1_000_000;
    let c_after = earned(&ids[2]);
    println!("C's earnings on A: {c_before} -> {c_after} nc (inference worth {value})");
    assert!(c_after - c_before >= value, "{c_before} -> {c_after}");
    assert!(
        work_of(&standing(&a, bad), "delivered_by_peer").is_none(),
        "B's mismatched runs earn nothing: {}",
        standing(&a, bad)
    );
    // A's receipt reaches C, which countersigns it: C sees the work acknowledged.
    wait_for(
        Duration::from_secs(15),
        "C holds A's receipt for the jobs",
        || {
            work_of(&standing(c, &ids[0]), "delivered_to_peer")
                .filter(|w| w["generated"] == generated)
        },
    )
    .unwrap();
    let streamed = cli(
        &bin,
        &a,
        &[
            "infer",
            "--model",
            &smol_id,
            "--prompt",
            "Say hi.",
            "--max-tokens",
            "4",
        ],
        false,
    )
    .unwrap();
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    let jobs = cli_json(&bin, c, &["jobs"]).unwrap();
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "generate" && j["role"] == "served")
    );
    println!("done after {:?}", started.elapsed());
}
