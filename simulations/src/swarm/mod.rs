//! The `swarm` scenario: a few hundred real warren nodes — each started by the node's own
//! [`NodeBuilder`] (libp2p swarm, event loop, block server and storage mesh, as `warren start`
//! wires them) with a redb store each — in one process on libp2p's memory transport.
//!
//! Each node runs only the services the scenario measures ([`Services::NONE`]: the event loop
//! and the block server): no repair or audit timers, no trust refresh, no inference, no onion.
//! Its keys and store are given, so nothing but the store is written to disk.
//!
//! ```text
//! run ─┬─ node i: NodeBuilder::start      ×N, /memory/<base + i>, bootstrap from up to 3 earlier nodes
//!      ├─ converge: poll every node's status until each has `min_peers` peers and storage candidates
//!      ├─ lookups:  find_record(random peer) from random nodes (Kademlia walks)
//!      ├─ put:      Store::put + Mesh::replicate at RF from random nodes
//!      ├─ get:      Mesh::fetch from random other nodes, verified block by block
//!      └─ shutdown: Node::stop on every node at once
//! ```
//!
//! Unlike the model-level scenarios this one runs on the wall clock and tokio's scheduler: the
//! counts are reproducible in practice, the times are measurements.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_inference::hardware::Hardware;
use warren_node::config::{Config, KadMode};
use warren_node::net::Transport;
use warren_node::node::{Node, NodeBuilder, Services};
use warren_protocol::{ContentId, OnionSecret, keypair_from_secret};
use warren_storage_mesh::{PutOptions, Store};

use warren_protocol::multiaddr;

use crate::error::SimError;
use crate::rng::Rng;

/// Parameters of a run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Nodes.
    pub nodes: usize,
    /// Files put.
    pub files: usize,
    /// Bytes per file.
    pub file_bytes: usize,
    /// Replication factor of each put.
    pub rf: usize,
    /// Nodes that fetch each file.
    pub gets_per_file: usize,
    /// DHT record lookups.
    pub lookups: usize,
    /// Peers each node must have for the network to count as converged.
    pub min_peers: usize,
    /// Each node's connection limit (the node's `max_peers`, default 64 as in the node; at 200
    /// nodes that is about 10,000 connections, all in this one process).
    pub max_peers: usize,
    /// Longest wait for convergence.
    pub converge_timeout: Duration,
    /// Folder for the nodes' stores (emptied first, removed at the end).
    pub dir: PathBuf,
    /// Seed of identities, bootstrap choices and data.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            nodes: 200,
            files: 20,
            file_bytes: 256 << 10,
            rf: 3,
            gets_per_file: 5,
            lookups: 100,
            min_peers: 8,
            max_peers: 64,
            converge_timeout: Duration::from_secs(120),
            dir: std::env::temp_dir().join("warren-swarm"),
            seed: 1,
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Nodes started.
    pub nodes: usize,
    /// Time to start every node and see it listening, ms.
    pub start_ms: u64,
    /// Time from the last start until every node had `min_peers` peers and storage candidates,
    /// ms (`None`: not within the timeout).
    pub converge_ms: Option<u64>,
    /// Fewest, mean and most peers per node at the end of convergence.
    pub peers: (usize, f64, usize),
    /// Mean routing-table size per node.
    pub routing_table_mean: f64,
    /// Nodes still below `min_peers` at the end of convergence.
    pub below_min_peers: usize,
    /// Each poll of convergence: seconds since the last start, fewest and mean peers per node,
    /// mean routing-table size.
    pub convergence: Vec<(f64, usize, f64, f64)>,
    /// DHT record lookups that found and verified the record, of how many.
    pub lookups_ok: (usize, usize),
    /// Median lookup time, ms.
    pub lookup_ms_median: u64,
    /// Puts whose every block reached `rf` holders, of how many.
    pub puts_ok: (usize, usize),
    /// Median put time (store + replicate), ms.
    pub put_ms_median: u64,
    /// Fetches that made every block of the file local, of how many.
    pub gets_ok: (usize, usize),
    /// Median fetch time, ms.
    pub get_ms_median: u64,
}

fn median(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs.get(xs.len() / 2).copied().unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Runs the scenario on the current tokio runtime.
pub async fn run(params: &Params) -> Result<Report, SimError> {
    if params.nodes < 2 || params.rf == 0 {
        return Err(SimError::Params("at least 2 nodes and RF 1"));
    }
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| SimError::Io { path, source }
    };
    let _ = std::fs::remove_dir_all(&params.dir);
    std::fs::create_dir_all(&params.dir).map_err(io(&params.dir))?;
    let mut rng = Rng::new(params.seed);
    // Memory-transport ports are process-wide: a seeded base keeps parallel runs apart.
    let base = 1 + (rng.next_u64() >> 24);
    let hardware = Hardware::detect();
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs: Vec<multiaddr::Multiaddr> = Vec::new();

    let started = Instant::now();
    for i in 0..params.nodes {
        let key = keypair_from_secret(rng.bytes32());
        let peer = key.public().to_peer_id();
        let dir = params.dir.join(format!("node-{i}"));
        let store = Store::open(&dir, 1 << 30)
            .map(Arc::new)
            .map_err(|source| SimError::Store { node: i, source })?;
        let listen: multiaddr::Multiaddr =
            multiaddr::Multiaddr::empty().with(multiaddr::Protocol::Memory(base + i as u64));
        let mut config = Config {
            listen: vec![listen.clone()],
            kad_mode: KadMode::Server,
            mdns: false,
            max_peers: params.max_peers.max(1),
            ..Config::default()
        };
        // Up to three of the ten nodes started last: they still have room for inbound peers (a
        // node over its peer limit closes new inbound connections at once, so a newcomer whose
        // only bootstrap peers are full stays alone; uniform picks over all earlier nodes pile
        // onto the first ones and leave some newcomers isolated).
        let recent = addrs.len().saturating_sub(10);
        for _ in 0..3.min(addrs.len()) {
            let j = recent + rng.below(addrs.len() - recent);
            if !config.bootstrap.contains(&addrs[j]) {
                config.bootstrap.push(addrs[j].clone());
            }
        }
        let onion = OnionSecret::from_bytes(rng.bytes32());
        let node = NodeBuilder::new(config)
            .identity(key)
            .onion_key(onion)
            .store(store)
            .hardware(hardware.clone())
            .transport(Transport::Memory)
            .services(Services::NONE)
            .start()
            .await
            .map_err(|source| SimError::Node { node: i, source })?;
        addrs.push(listen.with(multiaddr::Protocol::P2p(peer)));
        if (i + 1) % 25 == 0 {
            tracing::info!(nodes = i + 1, secs = started.elapsed().as_secs(), "started");
        }
        nodes.push(node);
    }
    let mut report = Report {
        nodes: nodes.len(),
        start_ms: ms(started.elapsed()),
        ..Report::default()
    };

    // Convergence: every node has enough peers and sees enough storage offers to place at RF.
    let want = params.min_peers.min(params.nodes - 1);
    let converging = Instant::now();
    loop {
        // Ask every node at once: each answer waits for that node's event loop.
        let mut asks = tokio::task::JoinSet::new();
        for (i, n) in nodes.iter().enumerate() {
            let client = n.client.clone();
            asks.spawn(async move { (i, client.status().await) });
        }
        let mut statuses = Vec::with_capacity(nodes.len());
        while let Some(done) = asks.join_next().await {
            let Ok((i, status)) = done else {
                return Err(SimError::Params("a status task panicked"));
            };
            let status = status.map_err(|source| SimError::Node { node: i, source })?;
            statuses.push((i, status.peers, status.routing_table));
        }
        statuses.sort_unstable();
        let peers: Vec<usize> = statuses.iter().map(|s| s.1).collect();
        let tables: usize = statuses.iter().map(|s| s.2).sum();
        let mut ready = peers.iter().all(|&p| p >= want);
        if ready {
            for (i, n) in nodes.iter().enumerate() {
                let (_, candidates) = n
                    .client
                    .candidates()
                    .await
                    .map_err(|source| SimError::Node { node: i, source })?;
                if candidates.len() < params.rf {
                    ready = false;
                    break;
                }
            }
        }
        report.below_min_peers = peers.iter().filter(|&&p| p < want).count();
        tracing::info!(
            secs = converging.elapsed().as_secs(),
            below = report.below_min_peers,
            "converging"
        );
        let min = peers.iter().copied().min().unwrap_or(0);
        let max = peers.iter().copied().max().unwrap_or(0);
        let mean = peers.iter().sum::<usize>() as f64 / peers.len().max(1) as f64;
        report.peers = (min, mean, max);
        report.routing_table_mean = tables as f64 / nodes.len().max(1) as f64;
        report.convergence.push((
            converging.elapsed().as_secs_f64(),
            min,
            mean,
            report.routing_table_mean,
        ));
        if ready {
            report.converge_ms = Some(ms(converging.elapsed()));
            break;
        }
        if converging.elapsed() > params.converge_timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    tracing::info!(converged = ?report.converge_ms, "lookups");
    // DHT lookups: a node's signed record, found by a Kademlia walk and verified.
    let mut lookup_ms = Vec::new();
    for _ in 0..params.lookups {
        let from = rng.below(nodes.len());
        let mut to = rng.below(nodes.len());
        if to == from {
            to = (to + 1) % nodes.len();
        }
        let t = Instant::now();
        if nodes[from]
            .client
            .find_record(nodes[to].peer_id)
            .await
            .is_ok()
        {
            report.lookups_ok.0 += 1;
            lookup_ms.push(ms(t.elapsed()));
        }
        report.lookups_ok.1 += 1;
    }
    report.lookup_ms_median = median(lookup_ms);

    tracing::info!(ok = report.lookups_ok.0, "puts");
    // Puts and gets.
    let mut files: Vec<(usize, ContentId)> = Vec::new();
    let mut put_ms = Vec::new();
    for f in 0..params.files {
        let origin = rng.below(nodes.len());
        let mut data = vec![0u8; params.file_bytes];
        for chunk in data.chunks_mut(8) {
            let bytes = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let t = Instant::now();
        let store = nodes[origin].store.clone();
        let put = tokio::task::spawn_blocking(move || {
            store.put(data.as_slice(), &PutOptions::default(), &|_| {})
        })
        .await;
        let outcome = match put {
            Ok(Ok(o)) => o,
            Ok(Err(source)) => {
                return Err(SimError::Store {
                    node: origin,
                    source,
                });
            }
            Err(_) => return Err(SimError::Params("a store task panicked")),
        };
        report.puts_ok.1 += 1;
        match nodes[origin].mesh.replicate(outcome.cid, params.rf).await {
            Ok(r) if r.failed == 0 && r.copies >= r.blocks * params.rf => {
                report.puts_ok.0 += 1;
                put_ms.push(ms(t.elapsed()));
                files.push((origin, outcome.cid));
            }
            Ok(r) => {
                tracing::warn!(
                    file = f,
                    failed = r.failed,
                    copies = r.copies,
                    blocks = r.blocks,
                    "put short of RF"
                );
                files.push((origin, outcome.cid));
            }
            Err(e) => tracing::warn!(file = f, "put failed: {e}"),
        }
    }
    report.put_ms_median = median(put_ms);

    tracing::info!(ok = report.puts_ok.0, "gets");
    let mut get_ms = Vec::new();
    for (origin, cid) in &files {
        for _ in 0..params.gets_per_file {
            let mut who = rng.below(nodes.len());
            if who == *origin {
                who = (who + 1) % nodes.len();
            }
            report.gets_ok.1 += 1;
            let t = Instant::now();
            if nodes[who].mesh.fetch(*cid).await.is_ok() {
                let complete = nodes[who].store.dag(cid).is_ok_and(|dag| {
                    dag.iter()
                        .all(|(b, _)| nodes[who].store.has_block(b).unwrap_or(false))
                });
                if complete {
                    report.gets_ok.0 += 1;
                    get_ms.push(ms(t.elapsed()));
                }
            }
        }
    }
    report.get_ms_median = median(get_ms);

    let mut stops = tokio::task::JoinSet::new();
    for node in nodes {
        stops.spawn(node.stop());
    }
    while stops.join_next().await.is_some() {}
    let _ = std::fs::remove_dir_all(&params.dir);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_swarm_converges_and_serves_put_and_get() {
        let dir = std::env::temp_dir().join(format!("warren-swarm-test-{}", std::process::id()));
        let params = Params {
            nodes: 12,
            files: 2,
            file_bytes: 64 << 10,
            gets_per_file: 2,
            lookups: 5,
            min_peers: 4,
            max_peers: 8,
            converge_timeout: Duration::from_secs(60),
            dir,
            seed: 7,
            ..Params::default()
        };
        let report = run(&params).await.unwrap();
        assert_eq!(report.nodes, 12);
        assert!(report.converge_ms.is_some(), "{report:?}");
        assert_eq!(report.puts_ok, (2, 2), "{report:?}");
        assert_eq!(report.gets_ok, (4, 4), "{report:?}");
        assert!(report.lookups_ok.0 >= 4, "{report:?}");
    }
}
