//! Adversarial: hostile inference operators and requesters against real node processes (issue
//! 20, items 6 and 7; spec/threat-model.md).
//!
//! A (requester) adds SmolLM2 to the mesh, O (an honest operator) serves it. The hostile peer is a
//! warren node in the test's process ([`Hostile`]) that speaks the job protocol itself:
//! - as an operator of the model (announced under its operator key, its peer id chosen to rank
//!   before O's), it answers with wrong tokens under a claimed CUDA backend its record does not
//!   show, then with O's own tokens (fetched from O as a requester) under text of its own;
//! - as a requester, it floods O with job streams it never reads.
//!
//! Run with `WARREN_TEST_NODE_BIN` pointing at an older build to see each attack succeed there.
//! Needs the models from `scripts/fetch-models.sh`; without them the tests say so and pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, Stream};
use serde_json::Value;
use warren_node::inference::{PROTOCOL, operator_key};
use warren_protocol::inference::{self as wire, GenerateRequest, GenerateResult, TokenChunk};
use warren_protocol::{ContentId, Envelope, Keypair, PeerId, State};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, api_of, cli_json, tcp_multiaddr};

/// What the hostile operator writes where the user would read it.
const EVIL: &str = "EVIL-TEXT-FROM-THE-OPERATOR";
const PROMPT: &str = "What is the capital of France?";

fn bin() -> String {
    node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"))
}

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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn write_env(s: &mut Stream, env: &Envelope) -> std::io::Result<()> {
    let bytes = wire::frame(&env.encode().unwrap()).unwrap();
    s.write_all(&bytes).await?;
    s.flush().await
}

async fn read_env(s: &mut Stream) -> Option<Envelope> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.ok()?;
    let mut buf = vec![0u8; wire::frame_len(header).ok()?];
    s.read_exact(&mut buf).await.ok()?;
    Envelope::decode(&buf).ok()
}

fn generate_envelope(request: &GenerateRequest) -> Envelope {
    Envelope::new(
        rand_id(),
        wire::event("generate", State::Requested).unwrap(),
        now_ms(),
        request.encode().unwrap(),
    )
}

fn rand_id() -> [u8; 16] {
    let k = Keypair::generate_ed25519();
    let b = k.public().to_peer_id().to_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&b[b.len() - 16..]);
    id
}

/// Runs `request` on `peer` as a plain requester (reads every frame): its result.
async fn run_job(h: &Hostile, peer: PeerId, request: &GenerateRequest) -> GenerateResult {
    let mut s = h
        .client()
        .stream_control()
        .open_stream(peer, PROTOCOL)
        .await
        .unwrap();
    write_env(&mut s, &generate_envelope(request))
        .await
        .unwrap();
    loop {
        let env = read_env(&mut s).await.expect("the operator answered");
        match env.event.state {
            State::Completed => return GenerateResult::decode(&env.payload).unwrap(),
            State::Failed => panic!("job failed at the honest operator"),
            _ => continue,
        }
    }
}

/// POST `body` to the node's `/v1/infer`: the NDJSON lines of the answer.
fn infer_api(dir: &Path, body: &Value) -> Vec<Value> {
    let (addr, token) = api_of(dir).unwrap();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST /v1/infer HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, mut rest) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{resp}");
    // Chunked transfer encoding: size line, data, CRLF, until 0.
    let mut data = String::new();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            data.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
    } else {
        data = rest.to_owned();
    }
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A (requester, adds SmolLM2) and O (operator, serves it): their dirs, O's id and address, the
/// model id.
struct Mesh {
    _procs: Vec<NodeProcess>,
    a: PathBuf,
    o: PathBuf,
    o_id: PeerId,
    a_addr: Multiaddr,
    o_addr: Multiaddr,
    model: ContentId,
}

fn mesh(bin: &str, tmp: &Path, gguf: &Path) -> Mesh {
    let a = tmp.join("a");
    let mut procs = vec![NodeProcess::start(bin, &a, &[]).unwrap()];
    let a_addr = tcp_multiaddr(&cli_json(bin, &a, &["status"]).unwrap()).unwrap();
    let o = tmp.join("o");
    procs.push(NodeProcess::start(bin, &o, &["--bootstrap", a_addr.as_str()]).unwrap());
    let s = cli_json(bin, &o, &["status"]).unwrap();
    let o_id = PeerId::from_str(s["peer_id"].as_str().unwrap()).unwrap();
    let o_addr: Multiaddr = tcp_multiaddr(&s).unwrap().parse().unwrap();
    let added = cli_json(
        bin,
        &a,
        &["model", "add", gguf.to_str().unwrap(), "--name", "smollm2"],
    )
    .unwrap();
    let model = added["model"].as_str().unwrap().to_owned();
    cli_json(bin, &o, &["model", "serve", &model]).unwrap();
    Mesh {
        _procs: procs,
        a,
        o,
        o_id,
        a_addr: a_addr.parse().unwrap(),
        o_addr,
        model: ContentId::from_str(&model).unwrap(),
    }
}

/// A hostile node whose peer id sorts before `before` (the requester ranks unmeasured operators
/// in peer id order), connected to `addrs`.
async fn hostile_before(dir: &Path, before: PeerId, addrs: &[Multiaddr]) -> Hostile {
    let key = loop {
        let k = Keypair::generate_ed25519();
        if k.public().to_peer_id() < before {
            break k;
        }
    };
    let h = Hostile::start_with_key(dir, "local", vec![], 0, key, |_| {})
        .await
        .unwrap();
    for a in addrs {
        h.connect(a.clone(), Duration::from_secs(10)).await.unwrap();
    }
    h
}

#[derive(Clone, Copy, PartialEq)]
enum Lie {
    /// Wrong tokens, "cuda" as the backend (its record shows no GPU), and its own text.
    OtherBackend,
    /// O's true tokens, backend and digest, under its own text.
    TextOnly,
}

/// Serves every job stream the hostile node gets as a lying operator.
async fn serve_lies(h: Arc<Hostile>, o: PeerId, lie: Arc<std::sync::Mutex<Lie>>) {
    let mut incoming = h.client().stream_control().accept(PROTOCOL).unwrap();
    while let Some((_, mut s)) = incoming.next().await {
        let h = h.clone();
        let lie = *lie.lock().unwrap();
        tokio::spawn(async move {
            let Some(req) = read_env(&mut s).await else {
                return;
            };
            let Ok(request) = GenerateRequest::decode(&req.payload) else {
                return;
            };
            // Its text streams first, as an operator's does.
            let mut chunk = req.reply(
                State::Processing,
                now_ms(),
                TokenChunk {
                    index: 0,
                    text: EVIL.into(),
                }
                .encode()
                .unwrap(),
            );
            chunk.event = wire::event("generate", State::Processing).unwrap();
            let _ = write_env(&mut s, &chunk).await;
            let result = match lie {
                Lie::OtherBackend => GenerateResult {
                    tokens: vec![28, 29, 30, 31],
                    text: EVIL.into(),
                    backend: "cuda".into(),
                    digest: vec![7; 32],
                    compute_ms: 1,
                    prompt_tokens: request.usage.then_some(9),
                    finish: request.usage.then(|| "length".into()),
                },
                Lie::TextOnly => {
                    let mut honest = run_job(&h, o, &request).await;
                    honest.text = EVIL.into();
                    honest
                }
            };
            let done = req.reply(State::Completed, now_ms(), result.encode().unwrap());
            let _ = write_env(&mut s, &done).await;
            let _ = s.close().await;
        });
    }
}

/// Item 6, then item 7 ([`stream_flood`]) on the same nodes.
///
/// Item 6: a hostile operator (ranked first) answers A's jobs, every one re-run (`sample` 1).
/// (a) Wrong tokens claimed as computed on CUDA, which its record does not show: the result is a
/// mismatch, dropped and scored against it, and A gets O's answer. On 38fbb4c the CUDA claim
/// makes O's re-run "incomparable" and A keeps the hostile result: its text reaches the user.
/// (b) O's own tokens under its own text: A decodes the tokens itself, so the user reads O's
/// text, never the operator's, neither streamed nor in the result. On 38fbb4c the check says
/// "match" and the user gets the hostile text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_operators_and_job_stream_floods_get_past_no_requester() {
    let Some(gguf) = gguf() else { return };
    let started = Instant::now();
    let bin = bin();
    let tmp = tempfile::tempdir().unwrap();
    let m = mesh(&bin, tmp.path(), &gguf);
    println!("model served after {:?}", started.elapsed());
    let h = Arc::new(
        hostile_before(
            &tmp.path().join("hostile"),
            m.o_id,
            &[m.a_addr.clone(), m.o_addr.clone()],
        )
        .await,
    );
    let h_id = h.peer_id();
    let lie = Arc::new(std::sync::Mutex::new(Lie::TextOnly));
    tokio::spawn(serve_lies(h.clone(), m.o_id, lie.clone()));
    h.client()
        .provide(vec![operator_key(&m.model)])
        .await
        .unwrap();
    let key = operator_key(&m.model);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = h.client().providers(key).await.unwrap_or_default();
        if p.contains(&h_id) && p.contains(&m.o_id) {
            break;
        }
        assert!(Instant::now() < deadline, "operators not found: {p:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let a = m.a.clone();
    let model = m.model.to_string();
    let infer = |sample: &str| {
        let a = a.clone();
        let body = serde_json::json!({
            "model": model, "prompt": PROMPT, "max_tokens": 8, "sample": sample.parse::<f64>().unwrap(),
        });
        tokio::task::spawn_blocking(move || infer_api(&a, &body))
    };

    // (b) The right tokens under the operator's own text.
    let lines = infer("1").await.unwrap();
    println!("(b) {lines:?}");
    let all = serde_json::to_string(&lines).unwrap();
    let done = lines
        .iter()
        .find_map(|l| l.get("done"))
        .unwrap_or_else(|| panic!("no result: {lines:?}"));
    assert!(
        !all.contains(EVIL),
        "text the operator sent, not decoded from its tokens, reached the user: {all}"
    );
    assert!(done["text"].as_str().unwrap().contains("Paris"), "{done}");
    assert_eq!(
        done["verified"], true,
        "O's re-run matched the tokens: {done}"
    );
    let honest_text = done["text"].as_str().unwrap().to_owned();
    let streamed: String = lines
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect::<String>();
    assert_eq!(
        streamed, honest_text,
        "the streamed pieces are the decoded text"
    );

    // (a) Another backend, wrong tokens.
    *lie.lock().unwrap() = Lie::OtherBackend;
    let lines = infer("1").await.unwrap();
    println!("(a) {lines:?}");
    let done = lines
        .iter()
        .find_map(|l| l.get("done"))
        .unwrap_or_else(|| panic!("no result: {lines:?}"));
    let all = serde_json::to_string(&lines).unwrap();
    assert!(
        !all.contains(EVIL),
        "the hostile operator's text reached the user (its CUDA claim made the check \
         incomparable and its result was kept): {all}"
    );
    assert_eq!(done["operator"], m.o_id.to_string(), "{done}");
    assert_eq!(done["text"].as_str().unwrap(), honest_text, "{done}");
    let rep = cli_json(&bin, &m.a, &["reputation", &h_id.to_string()]).unwrap();
    println!("A's view of the hostile operator: {rep}");
    assert!(
        rep["components"]["security"].as_f64().unwrap_or(1.0) < 0.75,
        "the unbacked backend claim counts against the operator: {rep}"
    );
    println!("item 6 passed after {:?}", started.elapsed());

    // Item 7, with the same nodes: the hostile peer now floods O as a requester.
    stream_flood(&h, &m, &bin).await;
    println!("passed in {:?}", started.elapsed());
}

/// Item 7: `h` opens job streams to O without end, each with a long job, and never reads an
/// answer. A's small job must still run on O. On 38fbb4c the peer holds every executor slot (and
/// the 16 streams), and A's job is refused ("busy") or its stream dropped.
async fn stream_flood(h: &Hostile, m: &Mesh, bin: &str) {
    let long = GenerateRequest::plain(
        m.model,
        "Count from 1 to 1000, separated by commas.".into(),
        1000,
        0.0,
        0,
    );
    let o_id = m.o_id;
    let control = h.client().stream_control();
    let flood = tokio::spawn(async move {
        let mut held: std::collections::VecDeque<Stream> = Default::default();
        loop {
            let mut c = control.clone();
            if let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(2), c.open_stream(o_id, PROTOCOL)).await
            {
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    write_env(&mut s, &generate_envelope(&long)),
                )
                .await;
                held.push_back(s); // never read
                if held.len() > 300 {
                    held.pop_front();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Let the flood take hold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = m.a.clone();
    let model = m.model.to_string();
    let r = tokio::task::spawn_blocking(move || {
        let body = serde_json::json!({
            "model": model, "prompt": PROMPT, "max_tokens": 4, "sample": 0.0,
        });
        infer_api(&a, &body)
    })
    .await
    .unwrap();
    println!("A's job during the flood: {r:?}");
    if let Ok(jobs) = cli_json(bin, &m.o, &["jobs"]) {
        for j in jobs.as_array().into_iter().flatten().take(12) {
            println!(
                "O's job: {} {} {} {}",
                j["peer"], j["items"], j["outcome"], j["ms"]
            );
        }
    }
    flood.abort();
    let done = r.iter().find_map(|l| l.get("done"));
    assert!(
        done.is_some_and(|d| d["operator"] == o_id.to_string()),
        "A got no service from O while one peer flooded it with job streams: {r:?}"
    );
}
