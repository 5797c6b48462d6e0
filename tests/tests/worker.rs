//! The sandboxed worker process (issue 22 item 2), driven directly through
//! `warren_node::worker::Models` with the real binary as the worker:
//! - confinement: a confined worker can neither open a file, connect a socket, make a socket nor
//!   run a program, while the same probes succeed unconfined; a machine without a sandbox
//!   (simulated) refuses;
//! - a model in its worker gives the same tokens and digest as in process;
//! - a malformed GGUF (its RoPE width makes candle ask for 128 GiB at load), a wrong hash and a
//!   model bigger than the memory limit each fail the load, not the caller; a killed worker and
//!   a hung (stopped) one fail their job and are started again after the backoff.
//!
//! And end to end, with node processes (adversarial: fails on 38fbb4c): a stranger adds the
//! malformed GGUF to the mesh as a model; an operator that serves it must stay up (on 38fbb4c the
//! load runs in the node and the failed allocation aborts it) and go on serving an honest model;
//! a node whose worker cannot be sandboxed refuses to serve any model and says why, and does not
//! offer the onion relay role (issue 20 item 5; on 38fbb4c such a node offers `relay` and then
//! fails every request).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_inference::{Backend, Executor, GenerateParams, Limits, ModelFile, Prompt};
use warren_node::worker::{Models, Settings, confine::NO_SANDBOX_ENV, preflight};
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

fn check(file: &Path, addr: &str, unconfined: bool, no_sandbox: bool) -> Value {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "__worker",
        "check",
        file.to_str().unwrap(),
        addr,
        "/bin/true",
    ]);
    if unconfined {
        cmd.arg("--unconfined");
    }
    if no_sandbox {
        cmd.env(NO_SANDBOX_ENV, "1");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_confined_worker_cannot_open_connect_or_exec_and_without_a_sandbox_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("identity.key");
    std::fs::write(&key, b"secret").unwrap();
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = api.local_addr().unwrap().to_string();
    let outside = check(&key, &addr, true, false);
    for probe in ["open", "connect", "exec", "socket"] {
        assert_eq!(outside["probes"][probe], "ok", "{outside}");
    }
    let inside = check(&key, &addr, false, false);
    assert!(inside["confined"]["Ok"].as_u64().unwrap() >= 4, "{inside}");
    for probe in ["open", "connect", "exec", "socket"] {
        let p = inside["probes"][probe].as_str().unwrap();
        assert!(p.starts_with("denied"), "{probe} went through: {inside}");
    }
    let refused = check(&key, &addr, false, true);
    assert!(
        refused["confined"]["Err"]
            .as_str()
            .unwrap()
            .contains("no sandbox"),
        "{refused}"
    );
    // The node's own check: a worker that starts, confines itself and says so.
    let settings = settings(Duration::from_secs(20), None);
    assert!(preflight(&settings).unwrap() >= 4);
}

fn settings(deadline: Duration, memory: Option<u64>) -> Settings {
    Settings {
        program: PathBuf::from(BIN),
        memory,
        deadline,
    }
}

fn tiny(dir: &Path) -> (PathBuf, [u8; 32]) {
    let path = dir.join("tiny.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    warren_inference::tiny::write_tiny_llama(&mut f, 7).unwrap();
    drop(f);
    let hash = warren_inference::files::hash_file(&path).unwrap();
    (path, hash)
}

/// The tiny model with a RoPE width of 2^24: candle then builds a 4096 × 2^23 table of f32 at
/// load, an allocation of 128 GiB that fails and aborts the process that tries it.
fn hostile_gguf(dir: &Path) -> (PathBuf, [u8; 32]) {
    let (path, _) = tiny(dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let key = b"llama.rope.dimension_count";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the key is in the file")
        + key.len();
    // value type (u32 = 4) then the value.
    assert_eq!(&bytes[at..at + 4], &4u32.to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&(1u32 << 24).to_le_bytes());
    let evil = dir.join("evil.gguf");
    std::fs::write(&evil, &bytes).unwrap();
    let hash = warren_inference::files::hash_file(&evil).unwrap();
    (evil, hash)
}

/// Address space given to the workers of the restart test: it names them among this process's
/// children (tests run side by side).
const MARK: u64 = 777 << 20;

/// Pids of this process's worker children started with [`MARK`].
fn workers() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if ppid == Some(me) && cmdline.contains(&format!("__worker model {MARK}")) {
            out.push(pid);
        }
    }
    out
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn models_run_in_their_worker_and_a_failing_worker_fails_its_job_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (path, hash) = tiny(dir.path());
    let s = settings(Duration::from_secs(3), Some(MARK));
    let models = Models::new(s.clone(), Limits::default(), preflight(&s));
    models
        .load_generator("t", &ModelFile::checked(&path, hash))
        .unwrap();
    let prompt = Prompt::User("hello there".into());
    let params = GenerateParams::greedy(8);
    let run = |models: &Models| {
        let slot = models.try_slot().unwrap();
        let mut pieces = String::new();
        models
            .generate(&slot, "j", "t", b"t", &prompt, &params, |p| {
                pieces.push_str(p);
                true
            })
            .map(|o| (o, pieces))
    };
    let (out, pieces) = run(&models).unwrap();
    // The same as in this process.
    let local = Executor::new(Backend::Cpu, Limits::default());
    local
        .load_generator("t", &ModelFile::checked(&path, hash))
        .unwrap();
    let slot = local.try_slot().unwrap();
    let want = local
        .generate(&slot, "j", "t", b"t", &prompt, &params, |_| true)
        .unwrap();
    assert_eq!(out, want);
    assert_eq!(pieces, want.generation.text);

    // A wrong hash and a malformed GGUF fail their load; this process goes on.
    let err = models
        .load_generator("w", &ModelFile::checked(&path, [7; 32]))
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let (evil, evil_hash) = hostile_gguf(dir.path());
    let started = Instant::now();
    let err = models
        .load_generator("evil", &ModelFile::checked(&evil, evil_hash))
        .unwrap_err();
    println!("malformed GGUF: {err} ({:?})", started.elapsed());
    assert!(err.to_string().contains("model worker"), "{err}");
    assert!(run(&models).is_ok(), "the other model still runs");

    // A killed worker fails its job, refuses during the backoff, then starts again.
    let pids = workers();
    assert_eq!(pids.len(), 1, "one worker per loaded model: {pids:?}");
    signal(pids[0], "-KILL");
    let err = run(&models).unwrap_err();
    assert!(err.to_string().contains("worker"), "{err}");
    let err = run(&models).unwrap_err();
    assert!(err.to_string().contains("starts again"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&models).unwrap().0, want);

    // A hung worker (stopped) fails its job at the deadline and is replaced.
    let pids = workers();
    assert_eq!(pids.len(), 1, "{pids:?}");
    signal(pids[0], "-STOP");
    let started = Instant::now();
    let err = run(&models).unwrap_err();
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(6));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&models).unwrap().0, want);
    assert!(!workers().contains(&pids[0]), "the hung worker was killed");
}

#[test]
fn a_model_bigger_than_the_memory_limit_fails_to_load_and_the_caller_goes_on() {
    let models_dir = std::env::var_os("WARREN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    let gguf = models_dir.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.exists(), "run scripts/fetch-models.sh");
    let hash = warren_inference::files::hash_file(&gguf).unwrap();
    let size = std::fs::metadata(&gguf).unwrap().len();
    let s = settings(Duration::from_secs(60), Some(size / 4));
    let models = Models::new(s.clone(), Limits::default(), preflight(&s));
    let err = models
        .load_generator("smol", &ModelFile::checked(&gguf, hash))
        .unwrap_err();
    println!("{size}-byte model under a {}-byte limit: {err}", size / 4);
    assert!(err.to_string().contains("model worker"), "{err}");
    // With the default allowance (twice the model plus 1 GiB) it loads and runs.
    let s = settings(Duration::from_secs(60), None);
    let models = Models::new(s.clone(), Limits::default(), preflight(&s));
    models
        .load_generator("smol", &ModelFile::checked(&gguf, hash))
        .unwrap();
    let prompt = Prompt::User("What is the capital of France?".into());
    let params = GenerateParams::greedy(8);
    let slot = models.try_slot().unwrap();
    let started = Instant::now();
    let out = models
        .generate(&slot, "j", "smol", b"smol", &prompt, &params, |_| true)
        .unwrap();
    let in_worker = started.elapsed();
    assert!(!out.generation.tokens.is_empty());
    // The same tokens and digest as in this process, in about the same time.
    let local = Executor::new(Backend::Cpu, Limits::default());
    local
        .load_generator("smol", &ModelFile::checked(&gguf, hash))
        .unwrap();
    let slot = local.try_slot().unwrap();
    let started = Instant::now();
    let want = local
        .generate(&slot, "j", "smol", b"smol", &prompt, &params, |_| true)
        .unwrap();
    let in_process = started.elapsed();
    assert_eq!(out, want);
    println!("SmolLM2, 8 greedy tokens: in its worker {in_worker:?}, in process {in_process:?}");
}

#[test]
fn a_hostile_model_from_the_mesh_fails_its_serve_and_not_the_operator() {
    let bin = warren_tests::hostile::node_bin(BIN);
    let bin = bin.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let (evil, _) = hostile_gguf(tmp.path());
    let (honest, _) = tiny(tmp.path());
    // The stranger: a node of its own that adds the model.
    let a = tmp.path().join("a");
    let _pa = NodeProcess::start(bin, &a, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(bin, &a, &["status"]).unwrap()).unwrap();
    let b = tmp.path().join("b");
    let mut pb = Some(NodeProcess::start(bin, &b, &["--bootstrap", &boot]).unwrap());
    let add = |path: &Path, name: &str| {
        cli_json(
            bin,
            &a,
            &["model", "add", path.to_str().unwrap(), "--name", name],
        )
        .unwrap()["model"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let evil_id = add(&evil, "evil");
    let honest_id = add(&honest, "tiny");
    wait_for(Duration::from_secs(20), "B connected to A", || {
        cli_json(bin, &b, &["peers"])
            .ok()
            .and_then(|p| p.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false)
            .then_some(())
    })
    .unwrap();
    let started = Instant::now();
    let serve = cli(bin, &b, &["model", "serve", &evil_id], true).unwrap();
    println!(
        "serve of the hostile model ({:?}): {}{}",
        started.elapsed(),
        String::from_utf8_lossy(&serve.stdout),
        String::from_utf8_lossy(&serve.stderr)
    );
    assert!(!serve.status.success(), "the hostile model was served");
    let alive = cli_json(bin, &b, &["status"]);
    if alive.is_err() {
        let log = pb.take().map(|p| p.log()).unwrap_or_default();
        let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
        panic!("the operator died serving a hostile model; its log ends with:\n{tail}");
    }
    // It goes on: the honest model is served and answers.
    let served = cli_json(bin, &b, &["model", "serve", &honest_id]).unwrap();
    assert_eq!(served["name"], "tiny");
    let out = cli_json(
        bin,
        &b,
        &[
            "infer",
            "--model",
            &honest_id,
            "--prompt",
            "hello",
            "--max-tokens",
            "4",
            "--local",
        ],
    )
    .unwrap();
    println!("after: {out}");

    // A node that cannot sandbox its workers refuses to serve, saying why.
    let c = tmp.path().join("c");
    let _pc = NodeProcess::start_env(
        bin,
        &c,
        "local",
        &["--bootstrap", &boot],
        &[(NO_SANDBOX_ENV, "1")],
    )
    .unwrap();
    let refused = cli(bin, &c, &["model", "serve", &honest_id], true).unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("cannot sandbox"), "{said}");
}

#[test]
fn a_node_that_cannot_sandbox_does_not_offer_the_relay_role() {
    let bin = warren_tests::hostile::node_bin(BIN);
    let bin = bin.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let _pa = NodeProcess::start(bin, &a, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(bin, &a, &["status"]).unwrap()).unwrap();
    let roles = [
        "--role",
        "gate",
        "--role",
        "middle",
        "--role",
        "relay",
        "--bootstrap",
        &boot,
    ];
    let mut ids = Vec::new();
    let mut procs = Vec::new();
    for (name, env) in [("sandboxed", vec![]), ("bare", vec![(NO_SANDBOX_ENV, "1")])] {
        let dir = tmp.path().join(name);
        procs.push(NodeProcess::start_env(bin, &dir, "local", &roles, &env).unwrap());
        ids.push(
            cli_json(bin, &dir, &["status"]).unwrap()["peer_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // What A sees in each one's node record.
    let offered = wait_for(Duration::from_secs(30), "both records at A", || {
        let peers = cli_json(bin, &a, &["peers"]).ok()?;
        let roles_of = |id: &str| -> Option<Vec<String>> {
            let p = peers.as_array()?.iter().find(|p| p["peer_id"] == id)?;
            let r: Vec<String> = p["roles"]
                .as_array()?
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            (!r.is_empty()).then_some(r)
        };
        Some((roles_of(&ids[0])?, roles_of(&ids[1])?))
    })
    .unwrap();
    println!("offered: sandboxed {:?}, bare {:?}", offered.0, offered.1);
    assert!(offered.0.iter().any(|r| r == "relay"), "{offered:?}");
    assert!(offered.1.iter().any(|r| r == "gate"), "{offered:?}");
    assert!(
        !offered.1.iter().any(|r| r == "relay"),
        "a node that cannot sandbox its runner offers relay: {offered:?}"
    );
}
