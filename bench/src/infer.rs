//! `warren-bench infer`: the same model, in one run, on this node's own executor and through one
//! remote operator on loopback.
//!
//! Starts two nodes, A and B (B bootstrapped from A). A adds SmolLM2 and MiniLM to the mesh; both
//! serve them. Each figure is timed at A's control API, end to end (request to last byte), so the
//! only difference between "local" (`local: true`, A's executor) and "network" (B's executor, the
//! job and its results over a libp2p stream) is the network path. Rounds alternate local and
//! network; medians are printed. Goal: network ≥ 0.9 × local.
//!
//! Two more lines in the same rounds: a streamed chat completion through the OpenAI endpoint
//! answered by B, as a ratio to the same request answered by A's executor (goal ≥ 0.9; the chat
//! template makes the prompt longer than the plain one, so the ratio to plain local generation
//! is printed too), and llama.cpp (llama-cpp-python, installed by
//! `scripts/setup-llama.sh` by package name) generating from the same GGUF file and prompt on as
//! many threads as the executor has (ratio local / llama.cpp; goal ≥ 0.8). The llama.cpp line is
//! skipped, saying why, where llama-cpp-python cannot be installed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;

use warren_node::cli::client::ApiClient;
use warren_node::inference::{EmbedOutcome, ModelView};

use crate::nodes::spawn_node_with;

/// Options of the benchmark.
#[derive(Clone, Debug)]
pub(crate) struct InferBench {
    /// Directory holding the models (as `scripts/fetch-models.sh` lays them out).
    pub(crate) models: PathBuf,
    /// New tokens per generation (greedy).
    pub(crate) tokens: u32,
    /// Texts per embedding batch.
    pub(crate) texts: usize,
    /// Rounds of each measurement.
    pub(crate) rounds: usize,
}

async fn generate(
    api: &ApiClient,
    model: &str,
    tokens: u32,
    local: bool,
) -> anyhow::Result<(usize, f64, f64)> {
    let body = serde_json::json!({
        "model": model,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "local": local,
        "sample": 0.0,
    });
    let started = Instant::now();
    let resp = api.post_json_stream("/v1/infer", &body).await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    let secs = started.elapsed().as_secs_f64();
    for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line)?;
        if let Some(done) = v.get("done") {
            let n = done["tokens"].as_array().map(|t| t.len()).unwrap_or(0);
            let compute = done["compute_ms"].as_f64().unwrap_or(0.0) / 1000.0;
            return Ok((n, secs, compute));
        }
        if let Some(e) = v.get("error") {
            bail!("generation failed: {e}");
        }
    }
    bail!("no result")
}

async fn embed(api: &ApiClient, model: &str, texts: &[String], local: bool) -> anyhow::Result<f64> {
    let started = Instant::now();
    let r: EmbedOutcome = api
        .post_json(
            "/v1/embed",
            &serde_json::json!({
                "model": model, "texts": texts, "local": local, "operators": 1, "sample": 0.0,
            }),
        )
        .await?;
    anyhow::ensure!(
        r.vectors.len() == texts.len(),
        "{} vectors",
        r.vectors.len()
    );
    Ok(started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

const PROMPT: &str = "Write a short story about a lighthouse keeper.";

/// A streamed chat completion through the OpenAI endpoint (`/openai/v1/chat/completions`),
/// answered by this node's executor (`warren_local: true`) or by a remote operator (`false`), no
/// sample re-run: completion tokens and seconds to the last chunk.
async fn chat(
    api: &ApiClient,
    model: &str,
    tokens: u32,
    local: bool,
) -> anyhow::Result<(usize, f64)> {
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0.0,
        "stream": true,
        "stream_options": {"include_usage": true},
        "warren_local": local,
        "warren_sample": 0.0,
    });
    let started = Instant::now();
    let resp = api
        .post_json_stream("/openai/v1/chat/completions", &body)
        .await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    let secs = started.elapsed().as_secs_f64();
    let mut completion = None;
    for line in buf.split(|b| *b == b'\n') {
        let Some(data) = line.strip_prefix(b"data: ") else {
            continue;
        };
        if data == b"[DONE]" {
            break;
        }
        let v: serde_json::Value = serde_json::from_slice(data)?;
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            completion = Some(n as usize);
        }
    }
    let n = completion.context("the stream ended without usage")?;
    Ok((n, secs))
}

/// llama.cpp's reference (`scripts/llama_ref.py` through llama-cpp-python): the python of
/// `WARREN_LLAMA_PYTHON`, else of the venv `scripts/setup-llama.sh` makes (it installs
/// llama-cpp-python from PyPI by name). `None`, saying why, where neither works.
fn llama_python() -> Option<PathBuf> {
    if let Some(py) = std::env::var_os("WARREN_LLAMA_PYTHON") {
        return Some(PathBuf::from(py));
    }
    let setup = Path::new("scripts/setup-llama.sh");
    if !setup.exists() {
        println!(
            "llama.cpp line skipped: no scripts/setup-llama.sh here (run from the repository root or set WARREN_LLAMA_PYTHON)"
        );
        return None;
    }
    println!(
        "llama.cpp: scripts/setup-llama.sh (installs llama-cpp-python by name on first use; minutes)"
    );
    match std::process::Command::new("bash").arg(setup).output() {
        Ok(out) if out.status.success() => {
            let py = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Some(PathBuf::from(py))
        }
        Ok(out) => {
            println!(
                "llama.cpp line skipped: scripts/setup-llama.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            None
        }
        Err(e) => {
            println!("llama.cpp line skipped: cannot run scripts/setup-llama.sh: {e}");
            None
        }
    }
}

/// One llama.cpp round: tokens/s of greedy generation of `tokens` tokens on `threads` threads.
fn llama_round(
    py: &Path,
    script: &Path,
    gguf: &Path,
    tokens: u32,
    threads: usize,
) -> anyhow::Result<f64> {
    let out = std::process::Command::new(py)
        .arg(script)
        .arg(gguf)
        .arg(PROMPT)
        .arg(tokens.to_string())
        .arg("1")
        .arg(threads.to_string())
        .output()
        .context("running llama_ref.py")?;
    anyhow::ensure!(
        out.status.success(),
        "llama_ref.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim())?;
    let n = v["tokens"].as_f64().context("no tokens")?;
    let secs = v["secs"].as_f64().context("no secs")?;
    Ok(n / secs)
}

/// Runs the benchmark with the `warren` binary `exe` and prints the figures.
pub(crate) async fn run(exe: &Path, o: &InferBench) -> anyhow::Result<()> {
    let gguf = o
        .models
        .join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let minilm = o.models.join("all-minilm-l6-v2");
    if !gguf.exists() || !minilm.join("model.safetensors").exists() {
        bail!(
            "models missing in {}: run scripts/fetch-models.sh",
            o.models.display()
        );
    }
    let tmp = std::env::temp_dir().join(format!("warren-bench-infer-{}", std::process::id()));
    let result = async {
        let a_dir = tmp.join("a");
        let (a_child, _) = spawn_node_with(exe, &a_dir, None).await?;
        let a = ApiClient::from_data_dir(&a_dir)?;
        let s: warren_node::api::StatusInfo = a.get("/v1/status").await?;
        let boot = s.listen_addrs.first().cloned().context("A has no address")?;
        let b_dir = tmp.join("b");
        let (b_child, _) = spawn_node_with(exe, &b_dir, Some(&boot)).await?;
        let b = ApiClient::from_data_dir(&b_dir)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let peers: Vec<warren_node::api::PeerInfo> = a.get("/v1/peers").await?;
            if !peers.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!("the two nodes did not connect");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let smol: ModelView = a
            .post_json("/v1/models/add", &serde_json::json!({"name": "smollm2", "paths": [gguf]}))
            .await?;
        let mini: ModelView = a
            .post_json(
                "/v1/models/add",
                &serde_json::json!({"name": "minilm", "paths": [
                    minilm.join("model.safetensors"), minilm.join("tokenizer.json"), minilm.join("config.json")
                ]}),
            )
            .await?;
        for api in [&a, &b] {
            for m in [&smol.model, &mini.model] {
                let _: ModelView = api
                    .post_json("/v1/models/serve", &serde_json::json!({ "model": m }))
                    .await?;
            }
        }
        let texts: Vec<String> = (0..o.texts)
            .map(|i| format!("Sentence number {i} is about a lighthouse keeper and the sea."))
            .collect();
        // Warm up both paths (first job loads caches, opens the stream's connection).
        generate(&a, &smol.model, 4, true).await?;
        generate(&a, &smol.model, 4, false).await?;
        embed(&a, &mini.model, &texts[..8.min(texts.len())], true).await?;
        embed(&a, &mini.model, &texts[..8.min(texts.len())], false).await?;
        let (mut gl, mut gn, mut el, mut en) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut ol, mut on) = (Vec::new(), Vec::new());
        let (mut oc, mut ll) = (Vec::new(), Vec::new());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let llama = llama_python();
        let script = tmp.join("llama_ref.py");
        std::fs::write(&script, include_str!("../scripts/llama_ref.py"))?;
        chat(&a, "smollm2", 4, false).await?;
        chat(&a, "smollm2", 4, true).await?;
        let mut ocl = Vec::new();
        for _ in 0..o.rounds {
            let (n, s, c) = generate(&a, &smol.model, o.tokens, true).await?;
            gl.push(n as f64 / s);
            ol.push((s - c) * 1000.0);
            let (n, s, c) = generate(&a, &smol.model, o.tokens, false).await?;
            gn.push(n as f64 / s);
            on.push((s - c) * 1000.0);
            el.push(texts.len() as f64 / embed(&a, &mini.model, &texts, true).await?);
            en.push(texts.len() as f64 / embed(&a, &mini.model, &texts, false).await?);
            let (n, s) = chat(&a, "smollm2", o.tokens, false).await?;
            oc.push(n as f64 / s);
            let (n, s) = chat(&a, "smollm2", o.tokens, true).await?;
            ocl.push(n as f64 / s);
            if let Some(py) = &llama {
                ll.push(llama_round(py, &script, &gguf, o.tokens, threads)?);
            }
        }
        let (gl, gn, el, en) = (median(gl), median(gn), median(el), median(en));
        println!(
            "backend {}  (medians of {} rounds; {} new tokens greedy; {} texts per batch)",
            warren_inference::Backend::best(),
            o.rounds,
            o.tokens,
            o.texts
        );
        println!("generate  smollm2   local {gl:8.1} tokens/s   network {gn:8.1} tokens/s   ratio {:.3}", gn / gl);
        println!(
            "generate  overhead beyond the executor's own time: local {:.1} ms, network {:.1} ms per job",
            median(ol),
            median(on)
        );
        let (oc, ocl) = (median(oc), median(ocl));
        // The chat template adds its own text (SmolLM2's adds a system message), so the chat
        // prompt is longer than the plain one: the same request answered here is the like-for-like
        // reference, and the ratio to the plain local generation is printed beside it.
        println!("chat      smollm2   local {ocl:8.1} tokens/s   openai  {oc:8.1} tokens/s   ratio {:.3}  (the same streamed /openai/v1/chat/completions answered here vs by a remote operator; vs plain local generation {:.3})", oc / ocl, oc / gl);
        if !ll.is_empty() {
            let ll = median(ll);
            println!("generate  smollm2   local {gl:8.1} tokens/s   llama.cpp {ll:6.1} tokens/s   ratio {:.3}  (llama-cpp-python, {threads} threads, same GGUF and prompt)", gl / ll);
        }
        println!("embed     minilm    local {el:8.1} texts/s    network {en:8.1} texts/s    ratio {:.3}", en / el);
        drop(a_child);
        drop(b_child);
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The default models directory: `WARREN_MODELS_DIR`, else `./models`.
pub(crate) fn default_models_dir() -> PathBuf {
    std::env::var_os("WARREN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("models").to_path_buf())
}
