//! Inference slots follow credit (issue 21, "charge only under contention"), on three real node
//! processes.
//!
//! O serves the tiny model and is made busy by the test (`--fault-inject busy-inference`: one
//! job slot free, each job holding it 3 s), with a small credit threshold (1 M nc). C is a
//! contributor (O fetched 8 MiB that only C holds); F a free-rider (it fetched 4 MiB from O and
//! gave nothing: its debt is past 125 % of its threshold).
//! - While C's job holds O's slot, F's job is refused at once with a `credit` failure that says
//!   why (its debt past 125 %) and what to do; C's job completes.
//! - Once O is idle again, F's job is served: an idle node serves everyone.
//!
//! On 87cf0fd (before this; `WARREN_TEST_NODE_BIN=/work/old-bin/warren-87cf0fd`, O made slow
//! with `slow-inference` as that binary has no `busy-inference`), F's job is served while C's
//! runs, and the test fails at "F's job was served while O was busy".

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use warren_tests::hostile::node_bin;
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes, wait_for_records};

const MIB: usize = 1 << 20;

fn put(bin: &str, dir: &Path, name: &str, len: usize, seed: u64) -> String {
    let file = dir.join(name);
    std::fs::write(&file, test_bytes(len, seed, false)).unwrap();
    let v = cli_json(bin, dir, &["put", file.to_str().unwrap(), "--rf", "0"]).unwrap();
    v["cid"].as_str().unwrap().to_owned()
}

fn get(bin: &str, dir: &Path, cid: &str) {
    let out = dir.join("got.bin");
    cli_json(bin, dir, &["get", cid, "-o", out.to_str().unwrap()]).unwrap();
}

/// `warren infer` of the model on `dir`: Ok(the answer) or Err(stderr).
fn infer(bin: &str, dir: &Path, model: &str) -> Result<serde_json::Value, String> {
    let args = [
        "infer",
        "--model",
        model,
        "--prompt",
        "hello",
        "--max-tokens",
        "2",
        "--sample",
        "0",
    ];
    let out = cli(bin, dir, &args, true).unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_busy_operator_refuses_a_deep_debtor_and_serves_it_when_idle() {
    let started = Instant::now();
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let bin = bin.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    {
        let mut f = std::fs::File::create(&gguf).unwrap();
        warren_inference::tiny::write_tiny_llama(&mut f, 7).unwrap();
    }
    let (o, c, f) = (
        tmp.path().join("o"),
        tmp.path().join("c"),
        tmp.path().join("f"),
    );
    let help = std::process::Command::new(bin)
        .args(["start", "--help"])
        .output()
        .unwrap();
    let fault = if String::from_utf8_lossy(&help.stdout).contains("busy-inference") {
        "busy-inference"
    } else {
        "slow-inference"
    };
    std::fs::create_dir_all(&o).unwrap();
    std::fs::write(
        o.join("config.toml"),
        "[credits.policy]\nbase_threshold = 1000000\nallowance_per_sec = 1000\nnewcomer_cap_per_sec = 10000\n",
    )
    .unwrap();
    let _po = NodeProcess::start(bin, &o, &["--fault-inject", fault]).unwrap();
    let boot = tcp_multiaddr(&cli_json(bin, &o, &["status"]).unwrap()).unwrap();
    let _pc = NodeProcess::start(bin, &c, &["--bootstrap", &boot]).unwrap();
    let _pf = NodeProcess::start(bin, &f, &["--bootstrap", &boot]).unwrap();
    for dir in [&o, &c, &f] {
        wait_for_records(bin, dir, 2).unwrap();
    }

    // O serves the model; C and F have it too (so that they fetch nothing of it from O).
    let mut model = String::new();
    for dir in [&o, &c, &f] {
        let added = cli_json(
            bin,
            dir,
            &[
                "model",
                "add",
                gguf.to_str().unwrap(),
                "--name",
                "tiny",
                "--rf",
                "0",
            ],
        )
        .unwrap();
        model = added["model"].as_str().unwrap().to_owned();
    }
    cli_json(bin, &o, &["model", "serve", &model]).unwrap();

    // C contributes 8 MiB to O; F only takes 4 MiB from it.
    let y = put(bin, &c, "y.bin", 8 * MIB, 1);
    get(bin, &o, &y);
    let z = put(bin, &o, "z.bin", 4 * MIB, 2);
    get(bin, &f, &z);

    // F's job waits until O serves the model (idle: served whatever F's debt), then C takes
    // O's slot and F asks again while C's job holds it.
    warren_tests::wait_for(Duration::from_secs(30), "O's model at F", || {
        infer(bin, &f, &model).ok()
    })
    .unwrap();
    let c_job = {
        let (bin, c, model) = (bin.to_owned(), c.clone(), model.clone());
        std::thread::spawn(move || infer(&bin, &c, &model))
    };
    std::thread::sleep(Duration::from_millis(1200));
    let t = Instant::now();
    let f_busy = infer(bin, &f, &model);
    let f_secs = t.elapsed().as_secs_f64();
    let c_out = c_job.join().unwrap();
    println!("C's job under contention: {c_out:?}");
    println!("F's job under contention ({f_secs:.2} s): {f_busy:?}");
    let c_out = c_out.unwrap_or_else(|e| panic!("C's job failed: {e}"));
    assert!(c_out["operator"].is_string(), "{c_out}");
    let why = match f_busy {
        Ok(out) => panic!("F's job was served while O was busy: {out}"),
        Err(e) => e,
    };
    assert!(
        why.contains("refused for credit") && why.contains("past 125 %"),
        "F's refusal says why: {why}"
    );

    // Idle again: F is served.
    let f_idle = infer(bin, &f, &model).unwrap_or_else(|e| panic!("F's job on an idle O: {e}"));
    assert!(f_idle["operator"].is_string(), "{f_idle}");
    println!(
        "credits_slots e2e took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
