//! Onion circuits with five real node processes on loopback: `warren get CID --anon` goes
//! client → gate → middle → relay, the file comes back byte-identical, and the holders' logs show
//! only the relay fetching; `warren put --anon` stores a sealed file through a circuit,
//! `warren circuits` shows each node's role, and `warren infer --anon` runs a generation whose
//! operator sees only the relay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

const ROLES: [&str; 8] = [
    "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
];

/// For each block this node served after log byte `from`: the known peers named in that log line.
fn fetchers(log: &str, from: usize, peers: &[String]) -> Vec<Vec<String>> {
    log[from.min(log.len())..]
        .lines()
        .filter(|l| l.contains("serving a block"))
        .map(|l| {
            peers
                .iter()
                .filter(|p| l.contains(p.as_str()))
                .cloned()
                .collect()
        })
        .collect()
}

fn circuits(dir: &std::path::Path) -> Vec<Value> {
    cli_json(BIN, dir, &["circuits"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn five_nodes_get_and_put_through_a_three_hop_circuit() {
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let mut procs = Vec::new();
    let mut nodes: Vec<(PathBuf, String)> = Vec::new();
    let a_dir = tmp.path().join("n0");
    procs.push(NodeProcess::start(BIN, &a_dir, &ROLES).unwrap());
    let a_status = cli_json(BIN, &a_dir, &["status"]).unwrap();
    let boot = tcp_multiaddr(&a_status).unwrap();
    nodes.push((a_dir, a_status["peer_id"].as_str().unwrap().to_owned()));
    for i in 1..5 {
        let dir = tmp.path().join(format!("n{i}"));
        let mut args = ROLES.to_vec();
        args.extend(["--bootstrap", &boot]);
        procs.push(NodeProcess::start(BIN, &dir, &args).unwrap());
        let s = cli_json(BIN, &dir, &["status"]).unwrap();
        nodes.push((dir, s["peer_id"].as_str().unwrap().to_owned()));
    }
    for (dir, _) in &nodes {
        wait_for(Duration::from_secs(30), "every peer's record", || {
            let peers = cli_json(BIN, dir, &["peers"]).ok()?;
            let peers = peers.as_array()?;
            (peers.len() == 4
                && peers
                    .iter()
                    .all(|p| p["roles"].as_array().unwrap().len() == 4))
            .then_some(())
        })
        .unwrap();
    }

    // A 3 MiB file kept on node 1 only (rf 0: announced, not replicated).
    let original = test_bytes(3 << 20, 7, false);
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, &original).unwrap();
    let put = cli_json(
        BIN,
        &nodes[1].0,
        &["put", file.to_str().unwrap(), "--rf", "0"],
    )
    .unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();

    // Node 0 gets it anonymously, until a circuit's relay is not the holder itself (paths are
    // random; the gate is kept as a guard).
    let mut relay = 0;
    let mut marks: Vec<usize> = Vec::new();
    for attempt in 0..8 {
        marks = procs.iter().map(|p| p.log().len()).collect();
        let out = tmp.path().join(format!("anon-{attempt}.bin"));
        let o = cli(
            BIN,
            &nodes[0].0,
            &["get", &cid, "--anon", "-o", out.to_str().unwrap()],
            false,
        )
        .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        // `put --rf 0` announces its provider records without waiting for them to land: on a
        // loaded machine the relay's first lookup may come too early. (Nothing onion-specific.)
        if !o.status.success() && stderr.contains("found in the DHT") && attempt < 7 {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert!(o.status.success(), "{stderr}");
        assert!(std::fs::read(&out).unwrap() == original, "byte-identical");
        let runners: Vec<usize> = (0..5)
            .filter(|i| procs[*i].log()[marks[*i]..].contains("runner: get"))
            .collect();
        assert_eq!(runners.len(), 1, "exactly one relay ran the request");
        relay = runners[0];
        if relay != 1 {
            break;
        }
    }
    assert_ne!(relay, 0, "the client is never its own relay");

    // Roles: node 0 is the client; gate → middle → relay are three distinct other nodes, and
    // each knows only its neighbours: the gate sees node 0; the relay sees the middle, not node 0.
    let client = circuits(&nodes[0].0);
    assert!(client.iter().any(|c| c["role"] == "client"), "{client:?}");
    let find = |i: usize, role: &str, next: Option<&str>| -> Value {
        circuits(&nodes[i].0)
            .into_iter()
            .rev()
            .find(|c| c["role"] == role && next.is_none_or(|n| c["next"] == n))
            .unwrap_or_else(|| panic!("node {i} has no {role} circuit towards {next:?}"))
    };
    let index_of = |peer: &Value| nodes.iter().position(|(_, p)| peer == p.as_str()).unwrap();
    let relay_c = find(relay, "relay", None);
    assert!(relay_c["next"].is_null());
    let middle = index_of(&relay_c["prev"]);
    let middle_c = find(middle, "middle", Some(&nodes[relay].1));
    let gate = index_of(&middle_c["prev"]);
    let gate_c = find(gate, "gate", Some(&nodes[middle].1));
    assert_eq!(
        gate_c["prev"],
        nodes[0].1.as_str(),
        "only the gate sees the client"
    );
    let hops = [gate, middle, relay];
    assert!(!hops.contains(&0) && gate != middle && middle != relay && gate != relay);

    // The holders saw only the relay fetching.
    let mut served = 0;
    let peers: Vec<String> = nodes.iter().map(|(_, p)| p.clone()).collect();
    for (i, p) in procs.iter().enumerate() {
        for named in fetchers(&p.log(), marks[i], &peers) {
            assert_eq!(
                named,
                vec![nodes[relay].1.clone()],
                "node {i} served a block to {named:?}"
            );
            served += 1;
        }
    }
    if relay != 1 {
        // At least one block: a failed earlier attempt may have left some at the same relay.
        assert!(served >= 1, "node 1 served the relay the file's blocks");
    }
    // The relay decoded it in a sandboxed relay worker process (no file, socket or program; see
    // tests/tests/worker.rs for the probes and tests/tests/hostile_relay_worker.rs for an attack).
    assert!(procs[relay].log()[marks[relay]..].contains("runner sandboxed"));
    for i in [0, gate, middle] {
        assert!(
            !procs[i].log()[marks[i]..].contains("runner"),
            "node {i} ran something"
        );
    }

    // An anonymous put (private by default): the relay stores ciphertext, node 0 keeps the key.
    let secret = test_bytes(200_000, 9, true);
    let sfile = tmp.path().join("secret.txt");
    std::fs::write(&sfile, &secret).unwrap();
    let put = cli_json(
        BIN,
        &nodes[0].0,
        &["put", sfile.to_str().unwrap(), "--anon"],
    )
    .unwrap();
    assert_eq!(put["class"], "private", "{put}");
    let cap = put["capability"].as_str().unwrap().to_owned();
    let back = tmp.path().join("secret.back");
    for attempt in 0..5 {
        let o = cli(
            BIN,
            &nodes[0].0,
            &["get", &cap, "--anon", "-o", back.to_str().unwrap()],
            false,
        )
        .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        // As above: the replicas' provider records land asynchronously.
        if !o.status.success() && stderr.contains("found in the DHT") && attempt < 4 {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert!(o.status.success(), "{stderr}");
        break;
    }
    assert!(std::fs::read(&back).unwrap() == secret);
    // Without the key the stored bytes are ciphertext.
    let sealed_cid = put["cid"].as_str().unwrap();
    let raw = tmp.path().join("sealed.bin");
    let o = cli(
        BIN,
        &nodes[2].0,
        &["get", sealed_cid, "-o", raw.to_str().unwrap()],
        false,
    )
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let raw = std::fs::read(&raw).unwrap();
    assert!(!raw.windows(64).any(|w| w == &secret[1000..1064]));

    let text = cli(BIN, &nodes[0].0, &["circuits"], false).unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("client"));

    // Anonymous inference: nodes 3 and 4 serve SmolLM2; node 0 asks through a circuit. The
    // relay runs the job as itself: the operator's job log names the relay, never node 0.
    let gguf = models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let added = cli_json(
        BIN,
        &nodes[3].0,
        &["model", "add", gguf.to_str().unwrap(), "--name", "smollm2"],
    )
    .unwrap();
    let model = added["model"].as_str().unwrap().to_owned();
    for i in [3, 4] {
        cli_json(BIN, &nodes[i].0, &["model", "serve", &model]).unwrap();
    }
    let mut answer = Value::Null;
    for attempt in 0..5 {
        let o = cli(
            BIN,
            &nodes[0].0,
            &[
                "infer",
                "--model",
                &model,
                "--prompt",
                "What is the capital of France?",
                "--max-tokens",
                "12",
                "--anon",
            ],
            true,
        )
        .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        // The operators' provider records land asynchronously, as above.
        if (!o.status.success() || stdout.trim().is_empty()) && attempt < 4 {
            println!("anonymous inference attempt {attempt}: {stderr}");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert!(o.status.success(), "{stderr}");
        answer = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        break;
    }
    assert!(!answer["text"].as_str().unwrap().is_empty(), "{answer}");
    let tokens = answer["tokens"].as_array().unwrap().len();
    assert!((1..=12).contains(&tokens), "{answer}");
    let operator = answer["operator"].as_str().unwrap().to_owned();
    assert!(operator == nodes[3].1 || operator == nodes[4].1, "{answer}");
    let op = if operator == nodes[3].1 { 3 } else { 4 };

    // The same through the OpenAI-compatible API with `X-Warren-Anon: 1`, whole and streamed.
    let (addr, token) = warren_tests::api_of(&nodes[0].0).unwrap();
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 12,
        "temperature": 0,
    });
    let (code, whole) = http_post(&addr, &token, "/openai/v1/chat/completions", &body, true);
    assert_eq!(code, 200, "{whole}");
    let whole: Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(whole["warren"]["anonymous"], true, "{whole}");
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("Paris"), "{whole}");
    assert!(
        whole["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{whole}"
    );
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let (code, sse) = http_post(
        &addr,
        &token,
        "/openai/v1/chat/completions",
        &streamed,
        true,
    );
    assert_eq!(code, 200, "{sse}");
    let data: Vec<&str> = sse
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{sse}");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, content, "{sse}");
    println!(
        "anonymous OpenAI chat: {content:?}, streamed in {} events",
        data.len()
    );
    let served: Vec<Value> = cli_json(BIN, &nodes[op].0, &["jobs"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "generate" && j["role"] == "served")
        .cloned()
        .collect();
    assert!(!served.is_empty(), "no served job on the operator");
    let relays: Vec<&String> = (0..5)
        .filter(|i| circuits(&nodes[*i].0).iter().any(|c| c["role"] == "relay"))
        .map(|i| &nodes[i].1)
        .collect();
    for job in &served {
        let peer = job["peer"].as_str().unwrap();
        assert_ne!(peer, nodes[0].1, "the operator saw the client: {job}");
        assert!(
            relays.iter().any(|r| r.as_str() == peer),
            "{job} {relays:?}"
        );
    }

    // Anonymous embeddings: nodes 3 and 4 serve MiniLM; node 0's `warren embed --anon` (texts
    // in cell-sized shares, each through its own circuit) equals node 3's local run, and the
    // operators' embed jobs name relays only. The OpenAI endpoint with `X-Warren-Anon: 1` too.
    let m = models_dir().join("all-minilm-l6-v2");
    let added = cli_json(
        BIN,
        &nodes[3].0,
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
    let minilm = added["model"].as_str().unwrap().to_owned();
    for i in [3, 4] {
        cli_json(BIN, &nodes[i].0, &["model", "serve", &minilm]).unwrap();
    }
    let texts: Vec<String> = (0..24)
        .map(|i| format!("Sentence number {i} is about a cat sitting on a warm mat."))
        .collect();
    let input = tmp.path().join("texts.jsonl");
    std::fs::write(
        &input,
        texts
            .iter()
            .map(|t| serde_json::json!({ "text": t }).to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let (anon_out, local_out) = (
        tmp.path().join("anon.jsonl"),
        tmp.path().join("local.jsonl"),
    );
    let mut ok = false;
    for attempt in 0..5 {
        let o = cli(
            BIN,
            &nodes[0].0,
            &[
                "embed",
                "--model",
                &minilm,
                "--input",
                input.to_str().unwrap(),
                "--output",
                anon_out.to_str().unwrap(),
                "--anon",
            ],
            true,
        )
        .unwrap();
        if o.status.success() {
            ok = true;
            break;
        }
        println!(
            "anonymous embed attempt {attempt}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(ok, "warren embed --anon failed five times");
    cli_json(
        BIN,
        &nodes[3].0,
        &[
            "embed",
            "--model",
            &minilm,
            "--input",
            input.to_str().unwrap(),
            "--output",
            local_out.to_str().unwrap(),
            "--local",
        ],
    )
    .unwrap();
    let read = |p: &std::path::Path| -> Vec<Vec<f64>> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    let (anon_v, local_v) = (read(&anon_out), read(&local_out));
    assert_eq!(anon_v.len(), 24);
    let diff = anon_v
        .iter()
        .zip(&local_v)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f64, f64::max);
    assert!(
        diff < 1e-4,
        "anonymous embeddings differ from a local run by {diff}"
    );
    let body = serde_json::json!({ "model": minilm, "input": &texts[..2] });
    let (code, whole) = http_post(&addr, &token, "/openai/v1/embeddings", &body, true);
    assert_eq!(code, 200, "{whole}");
    let whole: Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(whole["warren"]["anonymous"], true, "{whole}");
    let first: Vec<f64> = whole["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let d0 = first
        .iter()
        .zip(&local_v[0])
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(d0 < 1e-4, "OpenAI anonymous embedding differs by {d0}");
    let relays: Vec<&String> = (0..5)
        .filter(|i| circuits(&nodes[*i].0).iter().any(|c| c["role"] == "relay"))
        .map(|i| &nodes[i].1)
        .collect();
    let mut embed_jobs = 0;
    for i in [3, 4] {
        for job in cli_json(BIN, &nodes[i].0, &["jobs"])
            .unwrap()
            .as_array()
            .unwrap()
        {
            if job["kind"] == "embed" && job["role"] == "served" {
                embed_jobs += 1;
                let peer = job["peer"].as_str().unwrap();
                assert_ne!(peer, nodes[0].1, "the operator saw the client: {job}");
                assert!(
                    relays.iter().any(|r| r.as_str() == peer),
                    "{job} {relays:?}"
                );
            }
        }
    }
    assert!(embed_jobs >= 2, "served embed jobs: {embed_jobs}");
    println!("anonymous embeddings: 24 texts in {embed_jobs} jobs, max diff {diff:e} vs local");
    drop(procs);
}

/// POSTs JSON to the API (HTTP/1.0, so the answer is not chunked); the status and the body.
fn http_post(addr: &str, token: &str, path: &str, body: &Value, anon: bool) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.to_string();
    let anon = if anon { "X-Warren-Anon: 1\r\n" } else { "" };
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{anon}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_owned())
}

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("WARREN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    assert!(
        dir.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
            .exists(),
        "models missing in {}: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}
