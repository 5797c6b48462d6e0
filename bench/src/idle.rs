//! `warren-bench idle`: the background CPU of nodes that hold N replica blocks and do nothing
//! else, next to empty nodes, in one run (issue "idle at scale").
//!
//! For each N: four data directories are filled offline with the same N small replica blocks
//! (random bytes, each held under a lease ticket of one origin, as a push would leave them),
//! four nodes start on loopback with the default mesh configuration (recheck period, budget),
//! idle for a warm-up, then for the measured window. Printed per N: CPU-seconds per minute of
//! each node (median and max), as a share of one core, and what the background sweep did per
//! minute (`warren_background_*`, from the dashboard feed): checks, DHT queries, audits, work
//! deferred by the budget, and the checks per minute needed to check every block once per
//! period. By default the nodes start as a settled network restarted: each store carries the
//! sweep snapshot such a node would have saved (spec/sweep-snapshot.md: the other three nodes
//! hold every block, proven one, two and three periods ago, this node's provider record
//! announced one to two periods ago), so the first checks do what every later period's do. `--fresh` starts them as a network's
//! first start instead (no snapshot: every check looks the providers up, finds none, since no
//! record was announced, and pushes the copies the others already hold).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use warren_node::cli::client::ApiClient;
use warren_node::view::DashboardView;
use warren_protocol::ticket::PlacementTicket;
use warren_protocol::{Codec, ContentId, Keypair, PeerId};
use warren_storage_mesh::Store;
use warren_storage_mesh::sweep::{Sweep, SweepConfig};

use crate::nodes;

/// Nodes per run.
const NODES: usize = 4;
/// Bytes per block.
const BLOCK: usize = 256;

/// Runs the benchmark for each of `counts`, warming up `warmup_secs` and measuring
/// `measure_secs`.
pub(crate) async fn idle(
    exe: &Path,
    counts: &[u64],
    warmup_secs: u64,
    measure_secs: u64,
    steady: bool,
) -> anyhow::Result<()> {
    let start = if steady {
        "a settled network restarted (sweep snapshots: holders known and proven 1-3 periods \
         ago, records announced 1-2 periods ago)"
    } else {
        "a first start (no sweep snapshot)"
    };
    println!(
        "idle: {NODES} nodes on loopback, N replica blocks of {BLOCK} B each held by all of \
         them, default mesh config, {start}; warm-up {warmup_secs} s, measured {measure_secs} s"
    );
    println!(
        "{:>8} {:>12} {:>12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "N",
        "cpu s/min",
        "max s/min",
        "% core",
        "checks/min",
        "needed/min",
        "dht/min",
        "audits/min",
        "deferred",
        "period h"
    );
    for &n in counts {
        let tmp = tempdir(n)?;
        let filled = Instant::now();
        fill(&tmp, n, steady)?;
        let fill_secs = filled.elapsed().as_secs_f64();
        let (mut children, dirs) = nodes::spawn_loopback_nodes(exe, &tmp, NODES, &[]).await?;
        let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
        tokio::time::sleep(Duration::from_secs(warmup_secs)).await;
        let before = sample(&dirs).await?;
        let cpu0 = nodes::cpu_seconds(&pids);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(measure_secs)).await;
        let cpu1 = nodes::cpu_seconds(&pids);
        let minutes = t0.elapsed().as_secs_f64() / 60.0;
        let after = sample(&dirs).await?;
        let mut per_min: Vec<f64> = (0..pids.len())
            .map(|i| (cpu1[i] - cpu0[i]) / minutes)
            .collect();
        let (_, med, max) = nodes::spread(&mut per_min);
        let delta = |f: fn(&DashboardView) -> u64| -> f64 {
            let d: u64 = after
                .iter()
                .zip(&before)
                .map(|(a, b)| f(a).saturating_sub(f(b)))
                .sum();
            d as f64 / minutes / NODES as f64
        };
        let checks = delta(|d| d.activity.background.checks);
        let dht = delta(|d| d.activity.background.dht_queries);
        let audits = delta(|d| d.activity.background.audits);
        let deferred = delta(|d| d.activity.background.deferred);
        let period_s = after
            .iter()
            .map(|d| d.activity.background.period_secs)
            .max()
            .unwrap_or(0);
        let needed = if period_s == 0 {
            0.0
        } else {
            n as f64 / (period_s as f64 / 60.0)
        };
        println!(
            "{n:>8} {med:>12.3} {max:>12.3} {:>8.2} {checks:>10.1} {needed:>10.1} {dht:>10.1} \
             {audits:>10.1} {deferred:>10.1} {:>10.1}",
            med / 60.0 * 100.0,
            period_s as f64 / 3600.0
        );
        eprintln!("  (N = {n}: stores filled in {fill_secs:.1} s)");
        for c in &mut children {
            let _ = c.kill().await;
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn tempdir(n: u64) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("warren-bench-idle-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Fills the stores of nodes n0 … n3 under `tmp` with the same `n` replica blocks, one thread
/// per store.
fn fill(tmp: &Path, n: u64, steady: bool) -> anyhow::Result<()> {
    let origin = Keypair::generate_ed25519();
    let expires = warren_node::clock::unix_now() + 2 * 24 * 3600;
    let blocks: Vec<(ContentId, Vec<u8>, PlacementTicket)> = (0..n)
        .map(|i| {
            let mut data = vec![0u8; BLOCK];
            let seed = blake3::hash(&i.to_le_bytes());
            data[..32].copy_from_slice(seed.as_bytes());
            let cid = ContentId::of_block(Codec::Raw, &data);
            let ticket = PlacementTicket::sign(&origin, cid, 3, expires)?;
            Ok((cid, data, ticket))
        })
        .collect::<anyhow::Result<_>>()?;
    // Each node's identity, made now (the node loads it at start), so that each store's sweep
    // snapshot can name the other three as the blocks' holders.
    let peers: Vec<PeerId> = (0..NODES)
        .map(|i| {
            let dir = tmp.join(format!("n{i}"));
            std::fs::create_dir_all(&dir)?;
            Ok(warren_node::keystore::load_or_create_identity(&dir)?
                .public()
                .to_peer_id())
        })
        .collect::<anyhow::Result<_>>()?;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..NODES)
            .map(|i| {
                let blocks = &blocks;
                let peers = &peers;
                s.spawn(move || -> anyhow::Result<()> {
                    let dir = tmp.join(format!("n{i}")).join("store");
                    std::fs::create_dir_all(&dir)?;
                    let store = Store::open(&dir, 1 << 30).context("opening a store")?;
                    let now = warren_node::clock::unix_now();
                    for (cid, data, ticket) in blocks {
                        store.put_block_cached(cid, data)?;
                        store.hold_leased(cid, ticket, u64::MAX, now)?;
                    }
                    if steady {
                        store.save_sweep(&steady_snapshot(blocks, peers, i))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a fill thread panicked"))?
        })
    })
}

/// The sweep snapshot of a node in a settled network (the default): every block's holders are
/// the other nodes, proven one, two and three periods ago (as three periods of checks, each
/// auditing the holder proven longest ago, leave them: the next check audits the third, the
/// others are within their trust of four periods), and this node's provider record announced
/// one to two periods ago, uniformly (so half the checks of the measured minutes renew it, as
/// every other check does).
fn steady_snapshot(
    blocks: &[(ContentId, Vec<u8>, PlacementTicket)],
    peers: &[PeerId],
    me: usize,
) -> Vec<u8> {
    let now = warren_node::clock::unix_now_ms();
    let mut sweep = Sweep::new(SweepConfig::default());
    let list: Vec<(ContentId, u64)> = blocks
        .iter()
        .map(|(c, d, _)| (*c, d.len() as u64))
        .collect();
    let mut seed = 1u64;
    sweep.sync(&list, now, || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        seed
    });
    let others: Vec<PeerId> = peers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, p)| *p)
        .collect();
    let period = SweepConfig::default().period_ms.min(
        warren_node::config::Config::default()
            .mesh
            .recheck_period_ms(),
    );
    for (cid, _) in &list {
        sweep.holders_found(&cid.hash(), &others);
        for (k, p) in others.iter().enumerate() {
            sweep.verified(&cid.hash(), p, now - (k as u64 + 1) * period);
        }
        // In a settled network half the checks renew the record (every other one does): renewed
        // between one and two periods ago, so that a check in the measured minutes finds it due
        // (older than 1.5 periods) for half the blocks.
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        sweep.renewed(&cid.hash(), now - period - (seed >> 11) % period);
    }
    sweep.snapshot()
}

async fn sample(dirs: &[std::path::PathBuf]) -> anyhow::Result<Vec<DashboardView>> {
    let mut out = Vec::new();
    for d in dirs {
        let api = ApiClient::from_data_dir(d)?;
        out.push(api.get("/v1/dashboard").await?);
    }
    Ok(out)
}
