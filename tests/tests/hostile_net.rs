//! Adversarial: one hostile peer against the DHT, the connections and gossip of real node
//! processes (issue 19, items 6, 7, 8, 9 and 12; spec/threat-model.md).
//!
//! The hostile peer is a warren node in the test's process ([`Hostile`]); where it needs a
//! capability no honest node has (a raw Kademlia `ADD_PROVIDER` with any key, many connections
//! from one peer), the test drives libp2p itself. Run with `WARREN_TEST_NODE_BIN` pointing at an
//! older build to see each attack succeed there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::str::FromStr;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use warren_protocol::{ContentId, PeerId};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::kad_raw::{self, KAD};
use warren_tests::{NodeProcess, cli_json, tcp_multiaddr, test_bytes};

fn bin() -> String {
    node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"))
}

/// [`kad_raw::flood_provider_table`] of the first junk series, waiting up to 60 s.
async fn flood_provider_table(hostile: &Hostile, victim: PeerId, count: u32) -> libp2p::Stream {
    kad_raw::flood_provider_table(hostile, victim, 0, count, Duration::from_secs(60))
        .await
        .unwrap()
}

fn junk_key(i: u32) -> Vec<u8> {
    kad_raw::junk_key(0, i)
}

async fn providers_of(stream: &mut libp2p::Stream, key: &[u8]) -> Vec<(PeerId, usize)> {
    kad_raw::providers_of(stream, key).await.unwrap()
}

/// Item 6: a peer fills the provider table with junk keys; the node's own announcements must
/// still be stored and found. On 38fbb4c the table (65,536 keys) is full and `start_providing`
/// fails: no lookup finds the node as a provider of its own file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_provider_flood_does_not_stop_the_nodes_own_announcements() {
    let started = Instant::now();
    let bin = bin();
    let tmp = tempfile::tempdir().unwrap();
    let v_dir = tmp.path().join("victim");
    // A small offer: the smallest provider table (65,536 keys).
    let v = NodeProcess::start(&bin, &v_dir, &["--storage-offer", "10MiB"]).unwrap();
    let status = cli_json(&bin, &v_dir, &["status"]).unwrap();
    let boot: Multiaddr = tcp_multiaddr(&status).unwrap().parse().unwrap();
    let v_id = PeerId::from_str(status["peer_id"].as_str().unwrap()).unwrap();
    let x = Hostile::start(&tmp.path().join("hostile"), "local", vec![], 0, |_| {})
        .await
        .unwrap();
    x.connect(boot, Duration::from_secs(10)).await.unwrap();

    drop(flood_provider_table(&x, v_id, 66_000).await);
    println!("flooded in {:?}", started.elapsed());

    let file = tmp.path().join("f.bin");
    std::fs::write(&file, test_bytes(300_000, 6, false)).unwrap();
    let put = cli_json(&bin, &v_dir, &["put", file.to_str().unwrap(), "--rf", "1"]).unwrap();
    let cid = ContentId::from_str(put["cid"].as_str().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        let providers = x.client().providers(cid).await.unwrap_or_default();
        if providers.contains(&v_id) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        found,
        "after the junk flood, no providers lookup finds the victim for its own file {cid}: {}",
        v.log()
            .lines()
            .filter(|l| l.contains("provider"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(v.log().contains("listening"));
    println!("passed in {:?}", started.elapsed());
    x.stop().await;
}

/// Item 7 (provider squatting, per peer): one peer announces 6,000 keys; the victim keeps at most
/// its share (4,096 of the smallest table) and 8 addresses per record. On 38fbb4c it keeps every
/// key with all 16 addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holds_only_its_share_of_the_provider_table() {
    let bin = bin();
    let tmp = tempfile::tempdir().unwrap();
    let v_dir = tmp.path().join("victim");
    let _v = NodeProcess::start(&bin, &v_dir, &["--storage-offer", "10MiB"]).unwrap();
    let status = cli_json(&bin, &v_dir, &["status"]).unwrap();
    let boot: Multiaddr = tcp_multiaddr(&status).unwrap().parse().unwrap();
    let v_id = PeerId::from_str(status["peer_id"].as_str().unwrap()).unwrap();
    let x = Hostile::start(&tmp.path().join("hostile"), "local", vec![], 0, |_| {})
        .await
        .unwrap();
    x.connect(boot.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    drop(flood_provider_table(&x, v_id, 6_000).await);
    // Asked by another peer (kad leaves the asker out of the providers it names).
    let y = Hostile::start(&tmp.path().join("asker"), "local", vec![], 0, |_| {})
        .await
        .unwrap();
    y.connect(boot, Duration::from_secs(10)).await.unwrap();
    let mut stream = y
        .client()
        .stream_control()
        .open_stream(v_id, KAD)
        .await
        .unwrap();
    let first = providers_of(&mut stream, &junk_key(0)).await;
    let last = providers_of(&mut stream, &junk_key(5_999)).await;
    println!("first junk key: {first:?}; last: {last:?}");
    assert_eq!(
        first,
        vec![(x.peer_id(), 8)],
        "the first junk record, with its address list bounded to 8"
    );
    assert!(
        last.is_empty(),
        "the victim keeps a 6,000th key from one peer: {last:?}"
    );
    x.stop().await;
    y.stop().await;
}

/// Item 9: one peer (one identity, one IP) opens 24 connections to a node, and floods it with
/// block requests: beyond the per-peer limit the connections are refused, and an honest get from
/// another node still works. On 38fbb4c all 24 connections are kept (no per-peer limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_hold_many_connections_and_the_node_stays_responsive() {
    use libp2p::futures::StreamExt;
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
    use libp2p::{noise, tcp, yamux};
    use warren_protocol::block_transfer::{BlockRequest, Request, Response};

    let started = Instant::now();
    let bin = bin();
    let tmp = tempfile::tempdir().unwrap();
    let v_dir = tmp.path().join("victim");
    let h_dir = tmp.path().join("honest");
    let v = NodeProcess::start(&bin, &v_dir, &["--storage-offer", "100MiB"]).unwrap();
    let status = cli_json(&bin, &v_dir, &["status"]).unwrap();
    let boot_s = tcp_multiaddr(&status).unwrap();
    let boot: Multiaddr = boot_s.parse().unwrap();
    let v_id = PeerId::from_str(status["peer_id"].as_str().unwrap()).unwrap();
    let _h = NodeProcess::start(&bin, &h_dir, &["--bootstrap", &boot_s]).unwrap();
    let file = tmp.path().join("f.bin");
    let data = test_bytes(1_500_000, 9, false);
    std::fs::write(&file, &data).unwrap();
    let put = cli_json(&bin, &v_dir, &["put", file.to_str().unwrap(), "--rf", "1"]).unwrap();
    let cid_s = put["cid"].as_str().unwrap().to_owned();
    let cid = ContentId::from_str(&cid_s).unwrap();

    // Many connections from one peer.
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    for _ in 0..24 {
        swarm
            .dial(
                DialOpts::peer_id(v_id)
                    .addresses(vec![boot.clone()])
                    .condition(PeerCondition::Always)
                    .build(),
            )
            .unwrap();
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::timeout_at(until, swarm.select_next_some())
        .await
        .is_ok()
    {}
    let held = swarm.network_info().connection_counters().num_established();
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });

    // And many block requests from one peer, while an honest node fetches the file.
    let x = Hostile::start(&tmp.path().join("hostile"), "local", vec![], 0, |_| {})
        .await
        .unwrap();
    x.connect(boot, Duration::from_secs(10)).await.unwrap();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let client = x.client().clone();
        flood.spawn(async move {
            client
                .blocks(v_id, Request::Get(BlockRequest { block: cid }))
                .await
        });
    }
    let out = tmp.path().join("back.bin");
    let (bin2, h2, out2, cid2) = (bin.clone(), h_dir.clone(), out.clone(), cid_s.clone());
    let got = tokio::task::spawn_blocking(move || {
        warren_tests::cli(
            &bin2,
            &h2,
            &["get", &cid2, "-o", out2.to_str().unwrap()],
            false,
        )
    })
    .await
    .unwrap()
    .unwrap();
    let (mut served, mut refused, mut failed) = (0, 0, 0);
    while let Some(r) = flood.join_next().await {
        match r.unwrap() {
            Ok(Response::Block(_)) => served += 1,
            Ok(Response::Failed { .. }) => refused += 1,
            _ => failed += 1,
        }
    }
    driver.abort();
    println!(
        "connections held from one peer: {held}/24; block flood: {served} served, {refused} refused, {failed} failed; {:?}",
        started.elapsed()
    );
    assert!(
        got.status.success(),
        "honest get failed under the flood: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(
        held <= 3,
        "the victim kept {held} of 24 connections from one peer (limit 3)"
    );
    drop(v);
    x.stop().await;
}

/// A bare gossipsub peer with identity `key` (nothing else: no DHT, so it dials no one but
/// `addr`), subscribed to `topic`, connected to `addr` and past the remote's subscription.
async fn gossip_peer(
    key: libp2p::identity::Keypair,
    addr: Multiaddr,
    topic: &libp2p::gossipsub::IdentTopic,
) -> libp2p::Swarm<libp2p::gossipsub::Behaviour> {
    use libp2p::futures::StreamExt;
    use libp2p::gossipsub;
    use libp2p::swarm::SwarmEvent;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|k| {
            gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(k.clone()),
                gossipsub::Config::default(),
            )
            .unwrap()
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.behaviour_mut().subscribe(topic).unwrap();
    swarm.dial(addr).unwrap();
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { topic: t, .. }) =
                swarm.select_next_some().await
                && t == topic.hash()
            {
                break;
            }
        }
    })
    .await
    .expect("the node never subscribed");
    swarm
}

/// Polls `swarm` for `time`.
async fn drive<B: libp2p::swarm::NetworkBehaviour>(swarm: &mut libp2p::Swarm<B>, time: Duration) {
    use libp2p::futures::StreamExt;
    let until = tokio::time::Instant::now() + time;
    while tokio::time::timeout_at(until, swarm.select_next_some())
        .await
        .is_ok()
    {}
}

/// gossipsub messages a node has received (`libp2p_gossipsub_messages_total` on `/metrics`).
fn gossip_received(dir: &std::path::Path) -> f64 {
    let (addr, _) = warren_tests::api_of(dir).unwrap();
    let (_, metrics) = warren_tests::http_get(&addr, "/metrics", None).unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("libp2p_gossipsub_messages_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Item 8: a fresh identity (no standing anywhere) publishes a flood of valid signed
/// observations to the one node it is connected to, A. A must not forward them: C (connected to
/// A and the bootstrap node B, whom the trust walk of A and C starts from) receives none. On
/// 38fbb4c A forwards every observation within the rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_from_a_fresh_key_are_not_forwarded() {
    use warren_protocol::observation::{Kind, Observation};

    let started = Instant::now();
    let bin = bin();
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let c_dir = tmp.path().join("c");
    let _b = NodeProcess::start(&bin, &b_dir, &[]).unwrap();
    let b_boot = tcp_multiaddr(&cli_json(&bin, &b_dir, &["status"]).unwrap()).unwrap();
    let _a = NodeProcess::start(&bin, &a_dir, &["--bootstrap", &b_boot]).unwrap();
    let boot_s = tcp_multiaddr(&cli_json(&bin, &a_dir, &["status"]).unwrap()).unwrap();
    let _c = NodeProcess::start(
        &bin,
        &c_dir,
        &["--bootstrap", &b_boot, "--bootstrap", &boot_s],
    )
    .unwrap();
    warren_tests::wait_for(Duration::from_secs(20), "C connected to A and B", || {
        let peers = cli_json(&bin, &c_dir, &["peers"]).ok()?;
        (peers.as_array()?.len() >= 2).then_some(())
    })
    .unwrap();
    // The hostile peer: a fresh key with nothing but gossipsub, dialing A only (a warren node
    // would also reach C through its DHT queries: whatever C gets here, A forwarded).
    let key = libp2p::identity::Keypair::generate_ed25519();
    let me = key.public().to_peer_id();
    let topic = libp2p::gossipsub::IdentTopic::new(warren_protocol::REPUTATION_TOPIC);
    let mut swarm = gossip_peer(key.clone(), boot_s.parse().unwrap(), &topic).await;
    let (a0, c0) = (gossip_received(&a_dir), gossip_received(&c_dir));
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    const FLOOD: usize = 100;
    for i in 0..FLOOD {
        let obs = Observation {
            observer: me,
            subject: libp2p::identity::Keypair::generate_ed25519()
                .public()
                .to_peer_id(),
            kind: Kind::StorageProofPassed,
            value: 1,
            time_ms: now_ms + i as u64,
            evidence: None,
        };
        let bytes = obs.sign(&key).unwrap().encode().unwrap();
        swarm.behaviour_mut().publish(topic.clone(), bytes).unwrap();
    }
    drive(&mut swarm, Duration::from_secs(4)).await;
    let (a1, c1) = (gossip_received(&a_dir), gossip_received(&c_dir));
    let c_peers: Vec<String> = cli_json(&bin, &c_dir, &["peers"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].to_string())
        .collect();
    println!("C's peers: {c_peers:?}; the hostile peer: {me}");
    if std::env::var("HOSTILE_NET_KEEP").is_ok() {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    println!(
        "A received {} gossip messages, C {} ({FLOOD} observations published); {:?}",
        a1 - a0,
        c1 - c0,
        started.elapsed()
    );
    assert!(
        a1 - a0 >= FLOOD as f64,
        "the flood did not reach A: {}",
        a1 - a0
    );
    assert!(
        c1 - c0 < 10.0,
        "A forwarded the observations of a peer without standing: C received {} messages",
        c1 - c0
    );
}

/// The roles the node on `dir` shows for `peer` (`warren peers`), as JSON text.
fn roles_seen(bin: &str, dir: &std::path::Path, peer: &PeerId) -> Option<String> {
    let peers = cli_json(bin, dir, &["peers"]).ok()?;
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer.to_string().as_str())
        .map(|p| p["roles"].to_string())
}

/// Item 12: an older record of N, genuinely signed by N (say, captured when N published it), is
/// replayed through gossip to V (by a peer holding N's key, once N has gone: a replay of N's old
/// gossip message would carry N's signature the same way): V keeps N's newest record (its roles are not rolled back). On
/// 38fbb4c the gossip path stores whatever record verifies, so N's roles become the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_record_does_not_roll_back_the_newest() {
    use warren_protocol::{NodeRecord, Price, RECORD_VERSION, Role};

    let started = Instant::now();
    let bin = bin();
    let tmp = tempfile::tempdir().unwrap();
    let v_dir = tmp.path().join("victim");
    let n_dir = tmp.path().join("n");
    let _v = NodeProcess::start(&bin, &v_dir, &[]).unwrap();
    let boot_s = tcp_multiaddr(&cli_json(&bin, &v_dir, &["status"]).unwrap()).unwrap();
    let n = NodeProcess::start(
        &bin,
        &n_dir,
        &["--bootstrap", &boot_s, "--storage-offer", "10MiB"],
    )
    .unwrap();
    let n_id = PeerId::from_str(
        cli_json(&bin, &n_dir, &["status"]).unwrap()["peer_id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    warren_tests::wait_for(Duration::from_secs(30), "V knows N's record", || {
        roles_seen(&bin, &v_dir, &n_id).filter(|r| r.contains("station"))
    })
    .unwrap();

    // N goes away; the replayer speaks as N (gossipsub exchanges subscriptions on a peer's
    // first connection only).
    n.stop().unwrap();
    warren_tests::wait_for(Duration::from_secs(20), "V disconnected from N", || {
        roles_seen(&bin, &v_dir, &n_id).is_none().then_some(())
    })
    .unwrap();
    let key = warren_node::keystore::load_or_create_identity(&n_dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = NodeRecord {
        version: RECORD_VERSION,
        network: "local".into(),
        peer_id: n_id,
        roles: vec![Role::Middle],
        onion_key: [7; 32],
        storage: None,
        compute: None,
        price: Price {
            storage_per_gib_month: 0,
            compute_per_1k_tokens: 0,
        },
        load_permille: 0,
        addrs: vec![],
        issued_at: now - 600,
        expires_at: now + 3600,
    };
    let bytes = old.sign(&key).unwrap().encode().unwrap();
    let topic = libp2p::gossipsub::IdentTopic::new(warren_protocol::gossip::NODES_TOPIC);
    let mut swarm = gossip_peer(key, boot_s.parse().unwrap(), &topic).await;
    swarm.behaviour_mut().publish(topic, bytes).unwrap();
    drive(&mut swarm, Duration::from_secs(3)).await;
    let roles = roles_seen(&bin, &v_dir, &n_id).unwrap_or_default();
    println!(
        "V shows N's roles {roles} after the replay; {:?}",
        started.elapsed()
    );
    assert!(
        roles.contains("station") && !roles.contains("middle"),
        "the replayed older record rolled back N's record on V: roles {roles}"
    );
}
