//! Proof-of-storage audits against hostile holders (issue 19, attacks 1 and 10): one real node
//! process A, the auditor, which put a file; hostile holders built from warren's own libp2p stack
//! in this process, each a bare swarm whose `/warren/blocks/2.0.0` requests the test answers
//! itself. A runs `warren audit HOLDER BLOCK` on a chunk of its file.
//!
//! - The **outsourcer** stores nothing: when audited it fetches the block from its auditor, A
//!   (which holds it and serves anyone), and proves the slice. Its audit must not pass.
//! - The **reflector** stores nothing either: it sends the very challenge back to A as its own
//!   audit request and returns A's proof. Its audit must not pass.
//! - The **silent** holder never answers an audit (an overloaded or stalled holder). Its audit
//!   does not pass, but it must not be reported as a failed proof (`storage_proof_failed`).
//! - The **liar** holds the block and answers with an altered proof: still reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use warren_node::net::{Client, InboundBlocks};
use warren_protocol::block_transfer::{AuditResponse, BlockRequest, Request, Response};
use warren_protocol::{ContentId, PeerId};
use warren_storage_mesh::proof::{self, Challenge};
use warren_tests::bare::Bare;
use warren_tests::hostile::node_bin;
use warren_tests::{NodeProcess, cli_json, tcp_multiaddr, test_bytes};

/// How a hostile holder answers an audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// Fetches the block from the auditor, then proves.
    Outsourcer,
    /// Passes the challenge on to the auditor itself and returns its proof.
    Reflector,
    /// Never answers.
    Silent,
    /// Proves from its copy, with the proof's first byte flipped.
    Liar,
}

/// What a hostile holder saw.
#[derive(Debug)]
enum Seen {
    /// The outsourcer (or reflector) asked the auditor for the block (or its proof) and got
    /// this answer kind.
    Fetched(&'static str),
}

/// A bare warren swarm in this process whose block requests the test answers.
struct Hostile {
    client: Client,
    peer: PeerId,
    _bare: Bare,
}

impl Hostile {
    /// Starts the swarm, dials `auditor` and answers block requests as `mode`, holding `copy`.
    async fn start(
        auditor: &str,
        mode: Holder,
        copy: Option<Vec<u8>>,
        seen: mpsc::Sender<Seen>,
    ) -> Self {
        let mut bare = Bare::start("local", 0, Vec::new()).await.unwrap();
        let requests = bare.requests.take().unwrap();
        let (client, peer) = (bare.client.clone(), bare.peer);
        tokio::spawn(answer(client.clone(), requests, mode, copy, seen));
        let (dialed, _) = tokio::time::timeout(
            Duration::from_secs(10),
            client.dial(auditor.parse().unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_ne!(dialed, peer);
        Self {
            client,
            peer,
            _bare: bare,
        }
    }
}

/// Answers every block request: audits as `mode` says, anything else `not_found`.
async fn answer(
    client: Client,
    mut requests: mpsc::Receiver<InboundBlocks>,
    mode: Holder,
    copy: Option<Vec<u8>>,
    seen: mpsc::Sender<Seen>,
) {
    // The silent holder keeps the channels open: the auditor sees no answer, not a closed stream.
    let mut parked = Vec::new();
    while let Some(InboundBlocks {
        peer,
        request,
        channel,
    }) = requests.recv().await
    {
        let request = Request::decode(&request).unwrap();
        let Request::Audit(audit) = request else {
            respond(
                &client,
                peer,
                channel,
                Response::NotFound {
                    block: *request.block(),
                },
            );
            continue;
        };
        let challenge = Challenge::from_request(&audit);
        match mode {
            Holder::Silent => parked.push(channel),
            Holder::Liar => {
                let mut p = proof::prove(copy.as_ref().unwrap(), &challenge)
                    .unwrap()
                    .to_bytes();
                p[0] ^= 0xff;
                let proof = Response::Proof(AuditResponse {
                    block: audit.block,
                    proof: p,
                });
                respond(&client, peer, channel, proof);
            }
            Holder::Reflector => {
                let client = client.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let response = match client.blocks(peer, Request::Audit(audit.clone())).await {
                        Ok(r) => r,
                        Err(_) => Response::NotFound { block: audit.block },
                    };
                    let _ = seen.try_send(Seen::Fetched(response.kind()));
                    respond(&client, peer, channel, response);
                });
            }
            Holder::Outsourcer => {
                let client = client.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    // The auditor holds the block and serves anyone: ask it.
                    let got = client
                        .blocks(peer, Request::Get(BlockRequest { block: audit.block }))
                        .await;
                    let response = match got {
                        Ok(Response::Block(b)) => {
                            let _ = seen.try_send(Seen::Fetched("block"));
                            Response::Proof(AuditResponse {
                                block: audit.block,
                                proof: proof::prove(&b.data, &challenge).unwrap().to_bytes(),
                            })
                        }
                        Ok(other) => {
                            let _ = seen.try_send(Seen::Fetched(other.kind()));
                            Response::NotFound { block: audit.block }
                        }
                        Err(_) => {
                            let _ = seen.try_send(Seen::Fetched("error"));
                            Response::NotFound { block: audit.block }
                        }
                    };
                    respond(&client, peer, channel, response);
                });
            }
        }
    }
    drop(parked);
}

fn respond(
    client: &Client,
    peer: PeerId,
    channel: libp2p::request_response::ResponseChannel<Vec<u8>>,
    response: Response,
) {
    warren_tests::bare::respond(client, peer, channel, &response);
}

/// Runs the CLI off the runtime's workers.
async fn cli(bin: &str, dir: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let (bin, dir) = (bin.to_owned(), dir.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_json(&bin, &dir, &args)
    })
    .await
    .unwrap()
}

/// The auditor A, with a file put: its directory, API-less multiaddr, and one chunk (id, bytes).
struct Auditor {
    _process: NodeProcess,
    dir: std::path::PathBuf,
    addr: String,
    chunk: ContentId,
    chunk_bytes: Vec<u8>,
}

async fn auditor(bin: &str, tmp: &Path) -> Auditor {
    let dir = tmp.join("a");
    let process = NodeProcess::start(bin, &dir, &[]).unwrap();
    let status = cli(bin, &dir, &["status"]).await.unwrap();
    let addr = tcp_multiaddr(&status).unwrap();
    // One incompressible chunk of 200 000 bytes (the file's second block).
    let bytes = test_bytes(200_000, 19, false);
    let file = tmp.join("f.bin");
    std::fs::write(&file, &bytes).unwrap();
    let put = cli(bin, &dir, &["put", file.to_str().unwrap(), "--rf", "0"])
        .await
        .unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    let blocks = cli(bin, &dir, &["where", &cid]).await.unwrap();
    let chunk: ContentId = blocks["blocks"][1]["block"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Auditor {
        _process: process,
        dir,
        addr,
        chunk,
        chunk_bytes: Vec::new(),
    }
}

impl Auditor {
    /// `warren audit PEER CHUNK` on A.
    async fn audit(&self, bin: &str, peer: PeerId) -> Value {
        cli(
            bin,
            &self.dir,
            &["audit", &peer.to_string(), &self.chunk.to_string()],
        )
        .await
        .unwrap()
    }

    /// The `storage_proof_failed` observations in A's view of `peer`.
    async fn failed_proofs(&self, bin: &str, peer: PeerId) -> usize {
        let Ok(view) = cli(bin, &self.dir, &["reputation", &peer.to_string()]).await else {
            return 0;
        };
        view["observations"].as_array().map_or(0, |o| {
            o.iter()
                .filter(|o| o["kind"] == "storage_proof_failed")
                .count()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsourcing_holder_cannot_pass_an_audit_with_the_auditors_copy() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let a = auditor(&bin, tmp.path()).await;
    let (seen_tx, mut seen) = mpsc::channel(64);
    let h = Hostile::start(&a.addr, Holder::Outsourcer, None, seen_tx).await;
    // It claims the block, holding nothing.
    h.client.provide(vec![a.chunk]).await.unwrap();

    let record = a.audit(&bin, h.peer).await;
    let fetched = seen.try_recv();
    println!("audit of the outsourcer: {record}; its fetch from the auditor: {fetched:?}");
    assert!(
        matches!(fetched, Ok(Seen::Fetched(_))),
        "the outsourcer was not audited: {record}"
    );
    assert_eq!(
        record["passed"], false,
        "an outsourcing holder passed an audit with the auditor's own copy: {record}"
    );
    assert!(
        matches!(fetched, Ok(Seen::Fetched("not_found"))),
        "the auditor served the block under audit: {fetched:?}"
    );
    // Once the audit is over, the block is served to it again like to anyone (retried: A's own
    // background audits of it may be running for a moment).
    let a_id = a_peer(&bin, &a.dir).await;
    let mut served = None;
    for _ in 0..20 {
        let got = h
            .client
            .blocks(a_id, Request::Get(BlockRequest { block: a.chunk }))
            .await
            .unwrap();
        if got.kind() == "block" {
            served = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        served.is_some(),
        "the block is still withheld after the audit"
    );

    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_reflecting_the_challenge_to_its_auditor_cannot_pass() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    let a = auditor(&bin, tmp.path()).await;
    // The reflector: A's own challenge, sent back to A, must not come back with A's proof.
    let (seen_tx, mut seen) = mpsc::channel(64);
    let r = Hostile::start(&a.addr, Holder::Reflector, None, seen_tx).await;
    r.client.provide(vec![a.chunk]).await.unwrap();
    let record = a.audit(&bin, r.peer).await;
    let reflected = seen.try_recv();
    println!(
        "audit of the reflector: {record}; A's answer to its reflected challenge: {reflected:?}"
    );
    assert!(
        matches!(reflected, Ok(Seen::Fetched(_))),
        "the reflector was not audited: {record}"
    );
    assert_eq!(
        record["passed"], false,
        "a holder passed an audit by reflecting the challenge to its auditor: {record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_holder_is_not_reported_as_a_failed_proof_but_a_liar_is() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut a = auditor(&bin, tmp.path()).await;
    let (seen_tx, _seen) = mpsc::channel(64);
    let silent = Hostile::start(&a.addr, Holder::Silent, None, seen_tx.clone()).await;
    // The liar really holds the block (fetched from A), but answers with an altered proof.
    let a_id = a_peer(&bin, &a.dir).await;
    let fetch = Hostile::start(&a.addr, Holder::Outsourcer, None, seen_tx.clone()).await;
    let Response::Block(b) = fetch
        .client
        .blocks(a_id, Request::Get(BlockRequest { block: a.chunk }))
        .await
        .unwrap()
    else {
        panic!("A did not serve its block")
    };
    a.chunk_bytes = b.data;
    let liar = Hostile::start(&a.addr, Holder::Liar, Some(a.chunk_bytes.clone()), seen_tx).await;
    silent.client.provide(vec![a.chunk]).await.unwrap();
    liar.client.provide(vec![a.chunk]).await.unwrap();

    // The silent holder: no proof within the deadline. Not passed, and not a failed proof.
    let t = Instant::now();
    let record = a.audit(&bin, silent.peer).await;
    let waited = t.elapsed();
    println!(
        "audit of the silent holder after {:.1} s: {record}",
        waited.as_secs_f64()
    );
    assert_eq!(record["passed"], false, "{record}");
    // The liar: a wrong proof, a failed audit.
    let record = a.audit(&bin, liar.peer).await;
    println!("audit of the liar: {record}");
    assert_eq!(record["passed"], false, "{record}");
    assert_ne!(record["answered"], false, "{record}");

    let failed_liar = a.failed_proofs(&bin, liar.peer).await;
    let failed_silent = a.failed_proofs(&bin, silent.peer).await;
    println!(
        "storage_proof_failed on A: about the liar {failed_liar}, about the silent holder {failed_silent}"
    );
    assert!(failed_liar >= 1, "a wrong proof was not reported");
    assert_eq!(
        failed_silent, 0,
        "a holder that did not answer in time was reported as a failed proof"
    );
    // The audit deadline (10 s, spec/block-transfer.md) ended it, not the 30 s request timeout.
    assert!(
        waited < Duration::from_secs(20),
        "the audit deadline is not enforced: {waited:?}"
    );
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

/// A's peer id.
async fn a_peer(bin: &str, dir: &Path) -> PeerId {
    let status = cli(bin, dir, &["status"]).await.unwrap();
    status["peer_id"].as_str().unwrap().parse().unwrap()
}
