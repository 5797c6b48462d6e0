//! Acceptance: malformed and oversized envelopes and records sent to a real node process are refused
//! with a clear error, and the node keeps serving.
//!
//! The test is its own libp2p peer (TCP, Noise, Yamux) that sends raw bytes on
//! `/warren/envelope/1.0.0` and Kademlia PUTs on `/warren/kad/1.0.0`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io;
use std::time::Duration;

use futures::prelude::*;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use warren_protocol::{Envelope, EventType, NodeRecord, Price, State};
use warren_tests::{NodeProcess, cli_json, tcp_multiaddr};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const ENVELOPE: StreamProtocol = StreamProtocol::new("/warren/envelope/1.0.0");
const KAD: StreamProtocol = StreamProtocol::new("/warren/kad/1.0.0");

/// Sends whatever bytes it is given; reads answers up to 2 MiB.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut b = Vec::new();
        io.take(2 << 20).read_to_end(&mut b).await?;
        Ok(b)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut b = Vec::new();
        io.take(2 << 20).read_to_end(&mut b).await?;
        Ok(b)
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct Probe {
    rr: request_response::Behaviour<RawCodec>,
    kad: kad::Behaviour<MemoryStore>,
}

fn probe_swarm() -> Swarm<Probe> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mut cfg = kad::Config::new(KAD);
            cfg.set_query_timeout(Duration::from_secs(10));
            Probe {
                rr: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(ENVELOPE, ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(20)),
                ),
                kad: kad::Behaviour::with_config(peer, MemoryStore::new(peer), cfg),
            }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Sends `bytes` and returns the decoded answer, or the failure as text.
async fn send(swarm: &mut Swarm<Probe>, node: PeerId, bytes: Vec<u8>) -> Result<Envelope, String> {
    let id = swarm.behaviour_mut().rr.send_request(&node, bytes);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(ProbeEvent::Rr(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            })) if request_id == id => {
                return Envelope::decode(&response).map_err(|e| format!("undecodable answer: {e}"));
            }
            SwarmEvent::Behaviour(ProbeEvent::Rr(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            })) if request_id == id => {
                return Err(error.to_string());
            }
            _ => {}
        }
    }
}

async fn get_record(swarm: &mut Swarm<Probe>, key: Vec<u8>) -> Option<Vec<u8>> {
    let id = swarm
        .behaviour_mut()
        .kad
        .get_record(kad::RecordKey::new(&key));
    loop {
        if let SwarmEvent::Behaviour(ProbeEvent::Kad(kad::Event::OutboundQueryProgressed {
            id: qid,
            result,
            step,
            ..
        })) = swarm.select_next_some().await
        {
            if qid != id {
                continue;
            }
            match result {
                kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(r))) => {
                    return Some(r.record.value);
                }
                _ if step.last => return None,
                _ => {}
            }
        }
    }
}

async fn put_record(swarm: &mut Swarm<Probe>, node: PeerId, key: Vec<u8>, value: Vec<u8>) {
    let record = kad::Record::new(kad::RecordKey::new(&key), value);
    let id =
        swarm
            .behaviour_mut()
            .kad
            .put_record_to(record, std::iter::once(node), kad::Quorum::One);
    loop {
        if let SwarmEvent::Behaviour(ProbeEvent::Kad(kad::Event::OutboundQueryProgressed {
            id: qid,
            step,
            ..
        })) = swarm.select_next_some().await
            && qid == id
            && step.last
        {
            return;
        }
    }
}

fn ping(id: u8) -> Envelope {
    Envelope::new(
        [id; 16],
        "node:ping:v1:requested".parse::<EventType>().unwrap(),
        1,
        vec![id; 8],
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed_record(secret: u8) -> (PeerId, Vec<u8>) {
    let key = warren_protocol::keypair_from_secret([secret; 32]);
    let peer = key.public().to_peer_id();
    let record = NodeRecord {
        version: warren_protocol::RECORD_VERSION,
        network: "local".into(),
        peer_id: peer,
        roles: vec![],
        onion_key: [3; 32],
        storage: None,
        compute: None,
        price: Price::default(),
        load_permille: 0,
        addrs: vec![],
        issued_at: now(),
        expires_at: now() + 600,
    };
    (peer, record.sign(&key).unwrap().encode().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_input_is_refused_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = NodeProcess::start(BIN, &dir, &[]).unwrap();
    let status = cli_json(BIN, &dir, &["status"]).unwrap();
    let addr: Multiaddr = tcp_multiaddr(&status).unwrap().parse().unwrap();
    let node_peer: PeerId = status["peer_id"].as_str().unwrap().parse().unwrap();

    let mut swarm = probe_swarm();
    let mut base = addr.clone();
    base.pop();
    swarm.behaviour_mut().kad.add_address(&node_peer, base);
    swarm.dial(addr).unwrap();

    // A well-formed ping works (so the refusals below are about the input, not the path).
    let ok = send(&mut swarm, node_peer, ping(1).encode().unwrap())
        .await
        .unwrap();
    assert_eq!(ok.event.to_string(), "node:ping:v1:completed");
    assert_eq!(ok.payload, vec![1; 8]);

    // Truncated CBOR: an error envelope that says why.
    let good = ping(2).encode().unwrap();
    let err = send(&mut swarm, node_peer, good[..good.len() / 2].to_vec())
        .await
        .unwrap();
    assert_eq!(err.event.to_string(), "node:error:v1:failed");
    let reason = String::from_utf8(err.payload).unwrap();
    println!("truncated: {reason}");
    assert!(!reason.is_empty());

    // Wrong event type grammar (same length, so the CBOR stays well-formed).
    let mut bad_bytes = good.clone();
    let pos = good
        .windows(22)
        .position(|w| w == b"node:ping:v1:requested")
        .unwrap();
    bad_bytes[pos..pos + 22].copy_from_slice(b"node:ping:vx:requested");
    let err = send(&mut swarm, node_peer, bad_bytes).await.unwrap();
    assert_eq!(err.event.to_string(), "node:error:v1:failed");
    let reason = String::from_utf8(err.payload).unwrap();
    println!("grammar: {reason}");
    assert!(
        reason.contains("vx") || reason.to_lowercase().contains("version"),
        "{reason}"
    );

    // An unknown service: a `failed` reply of the same type.
    let unknown = Envelope::new(
        [4; 16],
        "storage:fetch_chunk:v1:requested"
            .parse::<EventType>()
            .unwrap(),
        1,
        vec![],
    );
    let err = send(&mut swarm, node_peer, unknown.encode().unwrap())
        .await
        .unwrap();
    assert_eq!(err.event.to_string(), "storage:fetch_chunk:v1:failed");

    // 10 MiB: the node stops reading at 1 MiB + 1 and resets the stream.
    let huge = Envelope {
        payload: vec![0xAB; 10 << 20],
        ..ping(5)
    };
    assert!(
        huge.encode().is_err(),
        "the encoder must refuse a 10 MiB envelope too"
    );
    let mut raw = ping(5).encode().unwrap();
    raw.resize(10 << 20, 0);
    let failure = send(&mut swarm, node_peer, raw).await.unwrap_err();
    println!("10 MiB: {failure}");

    // Records: a bad signature and a record filed under someone else's key are not stored; a valid
    // record is (so the check can fail).
    let (peer_a, mut forged) = signed_record(11);
    let n = forged.len();
    forged[n - 5] ^= 0x01; // inside the signature bytes at the end
    put_record(
        &mut swarm,
        node_peer,
        warren_protocol::record_key(&peer_a),
        forged,
    )
    .await;
    let (peer_b, valid_b) = signed_record(12);
    put_record(
        &mut swarm,
        node_peer,
        warren_protocol::record_key(&peer_a),
        valid_b.clone(),
    )
    .await;
    put_record(
        &mut swarm,
        node_peer,
        warren_protocol::record_key(&peer_b),
        valid_b[..40].to_vec(),
    )
    .await;
    assert_eq!(
        get_record(&mut swarm, warren_protocol::record_key(&peer_a)).await,
        None
    );
    assert_eq!(
        get_record(&mut swarm, warren_protocol::record_key(&peer_b)).await,
        None
    );
    put_record(
        &mut swarm,
        node_peer,
        warren_protocol::record_key(&peer_b),
        valid_b.clone(),
    )
    .await;
    assert_eq!(
        get_record(&mut swarm, warren_protocol::record_key(&peer_b)).await,
        Some(valid_b)
    );

    // Still serving: ping over the network and the control API both answer.
    let ok = send(&mut swarm, node_peer, ping(6).encode().unwrap())
        .await
        .unwrap();
    assert_eq!(ok.event.state, State::Completed);
    let status = cli_json(BIN, &dir, &["status"]).unwrap();
    assert_eq!(status["peer_id"], node_peer.to_string());
    let peers = cli_json(BIN, &dir, &["peers"]).unwrap();
    let me = swarm.local_peer_id().to_string();
    let entry = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == me.as_str())
        .expect("probe listed as a peer");
    assert!(entry["invalid_messages"].as_u64().unwrap() >= 4, "{entry}");
    let log = node.log();
    assert!(
        log.contains("refused envelope") && log.contains("refused DHT record"),
        "{log}"
    );
    let exit = node.stop().unwrap();
    assert!(exit.success(), "node exited with {exit}");
}
