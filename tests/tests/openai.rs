//! The OpenAI-compatible endpoint (`/openai/v1`) driven by the official `openai` Python package
//! against three real node processes on loopback.
//!
//! A adds MiniLM and SmolLM2 to the mesh and serves MiniLM; B and C serve both. A's API, with the
//! `openai` client (`tests/python/openai_e2e.py`): lists models; streams a chat completion that B
//! or C answers token by token (A does not serve SmolLM2), ending with `data: [DONE]`; the same
//! chat not streamed (same text, usage, the operator named), with a stop string and with a length
//! limit; text completions whole and streamed; embeddings in the SDK's default base64 and in
//! float, each equal to A's local run within 1e-4; and an unknown model, malformed JSON, a missing
//! and a wrong token, a bad temperature, each an OpenAI-shaped 4xx.
//!
//! Needs the models from `scripts/fetch-models.sh` and the `openai` package, which
//! `scripts/setup-openai.sh` installs from PyPI into a virtual environment; without either the
//! test says so and passes without checking anything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use warren_tests::{NodeProcess, api_of, cli_json, tcp_multiaddr, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The python with `openai` installed, or why there is none.
fn openai_python() -> Result<PathBuf, String> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let out = Command::new(repo().join("scripts/setup-openai.sh"))
        .arg(&venv)
        .output()
        .map_err(|e| format!("cannot run scripts/setup-openai.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/setup-openai.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[test]
fn the_openai_sdk_lists_streams_chats_and_embeds_through_the_mesh() {
    let started = Instant::now();
    let models = std::env::var_os("WARREN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"));
    let gguf = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !gguf.exists() || !models.join("all-minilm-l6-v2/model.safetensors").exists() {
        eprintln!(
            "SKIPPED: models missing in {}: run scripts/fetch-models.sh",
            models.display()
        );
        return;
    }
    let python = match openai_python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: the `openai` Python package cannot be installed: {why}");
            return;
        }
    };

    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let mut procs = vec![NodeProcess::start(BIN, &a, &[]).unwrap()];
    let boot = tcp_multiaddr(&cli_json(BIN, &a, &["status"]).unwrap()).unwrap();
    let mut operators = Vec::new();
    let mut dirs = vec![a.clone()];
    for name in ["b", "c"] {
        let dir = tmp.path().join(name);
        procs.push(NodeProcess::start(BIN, &dir, &["--bootstrap", boot.as_str()]).unwrap());
        let s = cli_json(BIN, &dir, &["status"]).unwrap();
        operators.push(s["peer_id"].as_str().unwrap().to_owned());
        dirs.push(dir);
    }
    wait_for(Duration::from_secs(30), "every node connected", || {
        dirs.iter()
            .all(|dir| {
                cli_json(BIN, dir, &["peers"])
                    .ok()
                    .and_then(|p| p.as_array().map(|a| a.len() >= 2))
                    .unwrap_or(false)
            })
            .then_some(())
    })
    .unwrap();

    let m = models.join("all-minilm-l6-v2");
    let minilm = cli_json(
        BIN,
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
    let minilm = minilm["model"].as_str().unwrap().to_owned();
    let smol = cli_json(
        BIN,
        &a,
        &["model", "add", gguf.to_str().unwrap(), "--name", "smollm2"],
    )
    .unwrap();
    let smol = smol["model"].as_str().unwrap().to_owned();
    for dir in &dirs {
        cli_json(BIN, dir, &["model", "serve", &minilm]).unwrap();
    }
    for dir in &dirs[1..] {
        cli_json(BIN, dir, &["model", "serve", &smol]).unwrap();
    }
    println!("devnet up, models served after {:?}", started.elapsed());

    let (addr, token) = api_of(&a).unwrap();
    let script = repo().join("tests/python/openai_e2e.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&addr)
        .arg(&token)
        .arg(serde_json::to_string(&operators).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        for (p, dir) in procs.iter().zip(["a", "b", "c"]) {
            eprintln!("--- node {dir} log tail ---");
            let log = p.log();
            let from = (log.len().saturating_sub(3000)..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(0);
            eprintln!("{}", &log[from..]);
        }
    }
    assert!(
        out.status.success(),
        "the openai client failed:\n{stdout}\n{stderr}"
    );
    let found: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    println!(
        "openai client findings:\n{}",
        serde_json::to_string_pretty(&found).unwrap()
    );
    println!("done after {:?}", started.elapsed());
    drop(procs);
}
