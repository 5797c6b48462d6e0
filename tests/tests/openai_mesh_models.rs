//! `GET /openai/v1/models` lists the mesh's models, not only those here (issue 22, item 1), and
//! a flood of fake models does not blow the list up (spec/threat-model.md).
//!
//! B adds SmolLM2 to the mesh and serves it; C serves and adds nothing. A hostile peer in the
//! test's process ([`Hostile`]) first stores at C, by Kademlia `PUT_VALUE` as any peer may, 160
//! validly signed records of sybil identities, each naming 64 fake served models (10,240 in
//! all), and one whose entries are junk (control characters, empty names, ids that do not parse).
//! Then C's list must hold B's model by its id, owned by B, first (B is connected, the sybils
//! are not); the whole list at most `MAX_MESH_MODELS` entries, every one a valid id with a clean
//! name; and a chat completion on C naming the id, and one naming the name, is answered by B.
//!
//! On 87cf0fd (`WARREN_TEST_NODE_BIN=/work/old-bin/warren-87cf0fd`) C lists nothing: its list
//! holds the models served or added on C only.
//!
//! Needs the model from `scripts/fetch-models.sh`; without it the test says so and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warren_protocol::mesh_models::{MAX_MESH_MODELS, served_entry};
use warren_protocol::{
    Codec, ComputeOffer, ContentId, NodeRecord, PeerId, Price, RECORD_VERSION, Role,
};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, api_of, cli_json, http_get, tcp_multiaddr, wait_for};

const SYBILS: u32 = 160;
const PER_SYBIL: u32 = 64;

fn gguf() -> Option<PathBuf> {
    let models = std::env::var_os("WARREN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    let f = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if f.exists() {
        Some(f)
    } else {
        eprintln!(
            "SKIPPED: models missing in {}: run scripts/fetch-models.sh",
            models.display()
        );
        None
    }
}

fn models_of(dir: &Path) -> Vec<Value> {
    let (addr, token) = api_of(dir).unwrap();
    let (code, body) = http_get(&addr, "/openai/v1/models", Some(&token)).unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"].as_array().cloned().unwrap_or_default()
}

/// POSTs a short greedy chat naming `model` to C's OpenAI endpoint: status and body.
fn chat(dir: &Path, model: &str) -> (u16, Value) {
    let (addr, token) = api_of(dir).unwrap();
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 6,
        "temperature": 0,
    })
    .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A signed record of a fresh sybil identity naming `models` as served.
fn sybil_record(seed: u32, models: Vec<String>) -> (PeerId, Vec<u8>) {
    let mut secret = [7u8; 32];
    secret[..4].copy_from_slice(&seed.to_le_bytes());
    let key = warren_protocol::keypair_from_secret(secret);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = NodeRecord {
        version: RECORD_VERSION,
        network: "local".into(),
        peer_id: key.public().to_peer_id(),
        roles: vec![Role::Operator],
        onion_key: [9; 32],
        storage: None,
        compute: Some(ComputeOffer {
            cpu_cores: 64,
            ram_bytes: 1 << 40,
            gpus: vec![],
            models,
        }),
        price: Price::default(),
        load_permille: 0,
        addrs: vec![],
        issued_at: now,
        expires_at: now + 3600,
    };
    (record.peer_id, record.sign(&key).unwrap().encode().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_lists_and_chats_with_a_model_only_b_serves_and_a_fake_model_flood_stays_bounded() {
    let Some(gguf) = gguf() else { return };
    let started = Instant::now();
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    let (b, c) = (tmp.path().join("b"), tmp.path().join("c"));
    let _pb = NodeProcess::start(&bin, &b, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(&bin, &b, &["status"]).unwrap()).unwrap();
    let _pc = NodeProcess::start(&bin, &c, &["--bootstrap", &boot]).unwrap();
    let b_id = cli_json(&bin, &b, &["status"]).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c_status = cli_json(&bin, &c, &["status"]).unwrap();
    let c_id = PeerId::from_str(c_status["peer_id"].as_str().unwrap()).unwrap();
    let c_addr = tcp_multiaddr(&c_status).unwrap();

    // The flood, before B serves anything.
    let hostile = Hostile::start(&tmp.path().join("h"), "local", vec![], 0, |_| {})
        .await
        .unwrap();
    hostile
        .connect(c_addr.parse().unwrap(), Duration::from_secs(10))
        .await
        .unwrap();
    let fake_id = |s: u32, i: u32| {
        ContentId::of_block(Codec::Raw, &[s.to_le_bytes(), i.to_le_bytes()].concat())
    };
    let cid = fake_id(0, 0).to_string();
    let junk = vec![
        format!("\u{1b}[2J\u{1b}[31mEVIL@{cid}"),
        format!("@{cid}"),
        format!("evil@{cid}junk"),
        "evil@bafknotacid".to_string(),
    ];
    let mut records = vec![sybil_record(0, junk)];
    for s in 1..=SYBILS {
        let models = (0..PER_SYBIL)
            .map(|i| served_entry(&format!("fake-{s}-{i}-padpadpadpadpad"), &fake_id(s, i)))
            .collect();
        records.push(sybil_record(s, models));
    }
    let flood = Instant::now();
    for (peer, bytes) in &records {
        warren_tests::kad_raw::put_value(&hostile, c_id, &warren_protocol::record_key(peer), bytes)
            .await
            .unwrap();
    }
    println!(
        "stored {} sybil records naming {} fake models at C in {:?}",
        records.len(),
        SYBILS * PER_SYBIL,
        flood.elapsed()
    );

    let add = cli_json(
        &bin,
        &b,
        &["model", "add", gguf.to_str().unwrap(), "--name", "smollm2"],
    )
    .unwrap();
    let smol = add["model"].as_str().unwrap().to_owned();
    cli_json(&bin, &b, &["model", "serve", &smol]).unwrap();
    println!("B serves {smol} after {:?}", started.elapsed());

    let c_dir = c.clone();
    let smol_w = smol.clone();
    let list = tokio::task::spawn_blocking(move || {
        wait_for(
            Duration::from_secs(40),
            "C's /openai/v1/models lists B's model",
            || {
                let l = models_of(&c_dir);
                l.iter().any(|m| m["id"] == smol_w.as_str()).then_some(l)
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    println!(
        "C lists {} models ({} bytes) after {:?}; first {}",
        list.len(),
        serde_json::to_string(&list).unwrap().len(),
        started.elapsed(),
        list[0]
    );
    let first = &list[0];
    assert_eq!(
        first["id"],
        smol.as_str(),
        "B's model is not first: {first}"
    );
    assert_eq!(first["owned_by"], b_id.as_str());
    assert_eq!(first["warren"]["name"], "smollm2");
    assert_eq!(first["warren"]["connected"], 1);
    assert!(first["created"].as_u64().unwrap() > 1_700_000_000);
    assert!(
        list.len() <= MAX_MESH_MODELS,
        "C lists {} models, more than {MAX_MESH_MODELS}",
        list.len()
    );
    let fakes = list
        .iter()
        .filter(|m| {
            m["warren"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("fake-")
        })
        .count();
    assert!(
        fakes > 0,
        "the flood did not reach C's list: the test proves nothing"
    );
    for m in &list {
        let id = m["id"].as_str().unwrap();
        assert!(ContentId::from_str(id).is_ok(), "not an id: {m}");
        let name = m["warren"]["name"].as_str().unwrap();
        assert!(
            !name.chars().any(char::is_control) && !name.contains("EVIL") && !name.is_empty(),
            "junk listed: {m}"
        );
    }

    let c_dir = c.clone();
    let smol_w = smol.clone();
    let (by_id, by_name) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let by_id = chat(&c_dir, &smol_w);
        println!("chat on C by id answered in {:?}", t.elapsed());
        let t = Instant::now();
        let by_name = chat(&c_dir, "smollm2");
        println!("chat on C by name answered in {:?}", t.elapsed());
        (by_id, by_name)
    })
    .await
    .unwrap();
    for (what, (code, body)) in [("id", by_id), ("name", by_name)] {
        assert_eq!(code, 200, "chat by {what}: {body}");
        assert_eq!(
            body["warren"]["operator"],
            b_id.as_str(),
            "chat by {what} not answered by B: {body}"
        );
        assert!(
            !body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );
    }
    println!(
        "{fakes} of the fake models listed after B's; done after {:?}",
        started.elapsed()
    );
    hostile.stop().await;
}
