//! Inference slots follow credit (issue 21, "charge only under contention"), on four real node
//! processes.
//!
//! O serves the tiny model and is made busy by the test (`--fault-inject busy-inference`: one
//! job slot free, each job holding it 3 s), with a small credit threshold (1 M nc). C is a
//! contributor (O fetched 8 MiB that only C holds); D took 512 KiB from O (in debt, within its
//! threshold); F a free-rider (it took 4 MiB and gave nothing: its debt is past 125 % of its
//! threshold).
//! - O idle: F's job takes the slot at once, whatever its debt (an idle node serves everyone).
//! - While it runs, D asks, then C: both wait, and C's job runs first though it came later.
//! - F asks again while C's job holds the slot: refused at once with a `credit` failure that
//!   says why (its debt past 125 %) and what to do.
//! - Relay work: O is also an onion hop, busy (`[credits.relay] busy_circuits = 0`): C's
//!   one-hop circuit is carried, F's refused, and O's log says why without naming F; F's
//!   `get --anon` says that hop 1 refused the circuit for credit (a `DESTROY` credit).
//!
//! On 87cf0fd (before this; `WARREN_TEST_NODE_BIN=/work/old-bin/warren-87cf0fd`, O made slow
//! with `slow-inference` as that binary has no `busy-inference`), F's second job is served, and
//! the test fails at "F's job was served while O was busy".

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
fn a_busy_operator_serves_by_credit_and_refuses_a_deep_debtor_but_an_idle_one_serves_all() {
    let started = Instant::now();
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let bin = bin.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    {
        let mut f = std::fs::File::create(&gguf).unwrap();
        warren_inference::tiny::write_tiny_llama(&mut f, 7).unwrap();
    }
    let (o, c, d, f) = (
        tmp.path().join("o"),
        tmp.path().join("c"),
        tmp.path().join("d"),
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
    // O is also an onion hop, busy from its first circuit (`busy_circuits = 0`: every circuit
    // is taken by standing); C and F build one-hop circuits (O is gate and relay). A binary
    // without `busy-inference` (87cf0fd) has no `[credits.relay]` either.
    let relay = if fault == "busy-inference" {
        "[credits.relay]\nbusy_circuits = 0\n"
    } else {
        ""
    };
    for dir in [&o, &c, &f] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(
        o.join("config.toml"),
        format!("[credits.policy]\nbase_threshold = 1000000\nallowance_per_sec = 1000\nnewcomer_cap_per_sec = 10000\n{relay}"),
    )
    .unwrap();
    std::fs::write(c.join("config.toml"), "onion_hops = 1\n").unwrap();
    let roles = [
        "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
    ];
    let mut o_args = vec!["--fault-inject", fault];
    o_args.extend(roles);
    let po = NodeProcess::start(bin, &o, &o_args).unwrap();
    let boot = tcp_multiaddr(&cli_json(bin, &o, &["status"]).unwrap()).unwrap();
    let _pc = NodeProcess::start(bin, &c, &["--bootstrap", &boot]).unwrap();
    let _pd = NodeProcess::start(bin, &d, &["--bootstrap", &boot]).unwrap();
    let pf = NodeProcess::start(bin, &f, &["--bootstrap", &boot]).unwrap();
    let f_id = cli_json(bin, &f, &["status"]).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for dir in [&o, &c, &d, &f] {
        wait_for_records(bin, dir, 3).unwrap();
    }

    // O serves the model; the others have it too (so that they fetch nothing of it from O).
    let mut model = String::new();
    for dir in [&o, &c, &d, &f] {
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

    // C contributes 8 MiB to O; D takes 512 KiB from it (in debt, within its threshold); F
    // takes 4 MiB (past 125 %).
    let y = put(bin, &c, "y.bin", 8 * MIB, 1);
    get(bin, &o, &y);
    let x = put(bin, &o, "x.bin", MIB / 2, 3);
    get(bin, &d, &x);
    let z = put(bin, &o, "z.bin", 4 * MIB, 2);
    get(bin, &f, &z);
    warren_tests::wait_for(Duration::from_secs(30), "O's model at C", || {
        infer(bin, &c, &model).ok()
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // O idle: F's job takes the slot (an idle node serves everyone, whatever its debt). While
    // it runs, D asks, then C: both wait, and C goes first though it came later. F asks again
    // while C's job runs: refused at once.
    let t0 = Instant::now();
    let job = |dir: &Path, after_ms: u64| {
        let (bin, dir, model) = (bin.to_owned(), dir.to_owned(), model.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(after_ms));
            let out = infer(&bin, &dir, &model);
            (out, t0.elapsed().as_secs_f64())
        })
    };
    let f_job = {
        let (bin, f, model) = (bin.to_owned(), f.clone(), model.clone());
        std::thread::spawn(move || {
            let idle = infer(&bin, &f, &model);
            let idle_at = t0.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(500));
            let busy = infer(&bin, &f, &model);
            (idle, idle_at, busy, t0.elapsed().as_secs_f64())
        })
    };
    let d_job = job(&d, 1000);
    let c_job = job(&c, 1600);
    let (f_idle, f_idle_at, f_busy, f_busy_at) = f_job.join().unwrap();
    let (d_out, d_at) = d_job.join().unwrap();
    let (c_out, c_at) = c_job.join().unwrap();
    println!("F on an idle O, done at {f_idle_at:.2} s: {f_idle:?}");
    println!("F while O is busy, answered at {f_busy_at:.2} s: {f_busy:?}");
    println!(
        "D (asked at 1.0 s, in debt) done at {d_at:.2} s; C (asked at 1.6 s, in credit) done at {c_at:.2} s"
    );
    let f_idle = f_idle.unwrap_or_else(|e| panic!("F's job on an idle O: {e}"));
    assert!(f_idle["operator"].is_string(), "{f_idle}");
    let why = match f_busy {
        Ok(out) => panic!("F's job was served while O was busy: {out}"),
        Err(e) => e,
    };
    // Past 125 % now, or still within the refusal its debt set when O's block server, busy
    // with F's own download, refused it mid-way (a race of the download, not of the slots).
    assert!(
        why.contains("refused for credit")
            && (why.contains("past 125 %") || why.contains("refused for its debt")),
        "F's refusal says why: {why}"
    );
    d_out.unwrap_or_else(|e| panic!("D's job failed: {e}"));
    c_out.unwrap_or_else(|e| panic!("C's job failed: {e}"));
    assert!(
        c_at < d_at,
        "C (in credit) waited behind D (in debt): C done at {c_at:.2} s, D at {d_at:.2} s"
    );

    // Relay work: O, busy as a hop, carries C's circuit (C is in credit) and refuses F's (past
    // 125 %), saying why in its log (without naming F: a hop's log must not link circuits).
    let anon_get = |dir: &Path, out: &str| {
        let o = dir.join(out);
        cli_json(bin, dir, &["get", &x, "--anon", "-o", o.to_str().unwrap()])
    };
    let c_anon = anon_get(&c, "x-anon.bin");
    println!("C's anonymous get through O: {c_anon:?}");
    c_anon.unwrap_or_else(|e| panic!("C's circuit (in credit) through a busy O: {e}"));
    assert_eq!(
        std::fs::read(c.join("x-anon.bin")).unwrap(),
        test_bytes(MIB / 2, 3, false)
    );
    // F restarts with one-hop circuits (its account on O is O's, and stays).
    pf.stop().unwrap();
    std::fs::write(f.join("config.toml"), "onion_hops = 1\n").unwrap();
    let _pf = NodeProcess::start(bin, &f, &["--bootstrap", &boot]).unwrap();
    wait_for_records(bin, &f, 3).unwrap();
    let f_anon = anon_get(&f, "x-anon.bin");
    println!("F's anonymous get through O: {f_anon:?}");
    assert!(
        f_anon.is_err(),
        "F's circuit was carried while O was busy: {f_anon:?}"
    );
    // F is told why (a `DESTROY` credit from O before the CREATE is read), not "link closed".
    let told = format!("{:#}", f_anon.unwrap_err());
    assert!(
        told.contains("hop 1 (")
            && told.contains("refused the circuit for credit")
            && told.contains("your standing with it is past its threshold"),
        "F is told why its circuit was refused: {told}"
    );
    let log = po.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("refusing a circuit for credit"))
        .unwrap_or_else(|| panic!("O says why it refused F's circuit"));
    println!("O: {refusal}");
    // Its debt (refused since its last job: the deadline its debt set).
    assert!(refusal.contains("its debt"), "{refusal}");
    assert!(!refusal.contains(&f_id), "O's log names F: {refusal}");
    println!(
        "credits_slots e2e took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
