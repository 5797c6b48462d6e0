//! `warren-bench pieces`: on loopback nodes, `get` of a file kept as K + M pieces (the K fastest
//! of each stripe, decoded) next to `get` of whole copies held by 1 and by 3 nodes, and the
//! ingest (`put`) with encoding and placing pieces next to a put kept local and a put at RF 3,
//! all in the same run on the same nodes.

use std::path::Path;
use std::time::{Duration, Instant};

use warren_node::cli::client::ApiClient;

use crate::nodes::{
    public_put, spawn_loopback_nodes_with, spawn_node_with, spread, sync_disks, write_mixed_file,
};

/// One timed `put` of a fresh file; answers (seconds, the id `get` takes).
async fn timed_put(
    origin: &ApiClient,
    tmp: &Path,
    size_mib: u64,
    seed: u64,
    rf: usize,
    pieces: Option<String>,
) -> anyhow::Result<(f64, String)> {
    let f = tmp.join(format!("in-{seed}.bin"));
    write_mixed_file(&f, size_mib << 20, seed)?;
    sync_disks();
    let mut req = public_put(rf);
    req.pieces = pieces;
    let started = Instant::now();
    let put = warren_node::cli::transfer::put(origin, &f, req, true).await?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&f);
    let id = match put.pieces {
        Some(p) => {
            anyhow::ensure!(p.failed == 0, "{} pieces not placed", p.failed);
            p.manifest
        }
        None => put.cid,
    };
    Ok((secs, id))
}

/// `warren-bench pieces`.
pub(crate) async fn pieces(
    exe: &Path,
    size_mib: u64,
    seed: u64,
    rounds: usize,
    code: &str,
) -> anyhow::Result<()> {
    let parsed = warren_storage_mesh::pieces::PieceCode::parse(code).map_err(anyhow::Error::msg)?;
    // The fetcher, the origin, a holder for every piece.
    let n = parsed.pieces() + 2;
    let tmp = std::env::temp_dir().join(format!("warren-bench-pieces-{}", std::process::id()));
    let result = async {
        // Node 1 puts; the others hold copies and pieces. The fetcher starts after the puts,
        // so it holds nothing (a node offering no storage could not cache the rebuilt blocks).
        let (mut children, dirs) = spawn_loopback_nodes_with(exe, &tmp, n - 1, |_| vec![]).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let origin = ApiClient::from_data_dir(&dirs[1])?;
        let mib = size_mib as f64;
        let mut sources = Vec::new();
        for (what, rf, pieces, s) in [
            ("kept local (RF 0, no network)", 0usize, None, 0u64),
            ("whole copies at RF 2 (3 holders)", 2, None, 1),
            ("whole copies at RF 3", 3, None, 2),
            ("pieces", 0, Some(code.to_owned()), 3),
        ] {
            let (secs, id) = timed_put(&origin, &tmp, size_mib, seed + 200 + s, rf, pieces).await?;
            println!(
                "put of {size_mib} MiB {what}{}: {:.1} MiB/s ({secs:.2} s)",
                if s == 3 { format!(" {code}") } else { String::new() },
                mib / secs
            );
            if s != 2 {
                sources.push((what, id));
            }
        }
        let boot = {
            let api = ApiClient::from_data_dir(&dirs[0])?;
            let s: warren_node::api::StatusInfo = api.get("/v1/status").await?;
            s.listen_addrs.first().cloned()
        };
        let fetcher_dir = tmp.join("fetcher");
        let (child, _) = spawn_node_with(exe, &fetcher_dir, boot.as_deref()).await?;
        children.push(child);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let fetcher = ApiClient::from_data_dir(&fetcher_dir)?;
        for (what, id) in sources {
            let mut rates = Vec::new();
            for round in 0..rounds.max(1) {
                sync_disks();
                let out = tmp.join(format!("out-{round}.bin"));
                let started = Instant::now();
                let got = warren_node::cli::transfer::get(&fetcher, &id, Some(&out), true, false)
                    .await?;
                rates.push(mib / started.elapsed().as_secs_f64());
                let _ = std::fs::remove_file(&out);
                anyhow::ensure!(got == size_mib << 20, "fetched {got} bytes");
                let _: warren_node::api::GcView = fetcher.post("/v1/gc").await?;
            }
            let (lo, med, hi) = spread(&mut rates);
            let from = match what {
                "pieces" => format!("{code} pieces (the {} fastest of each stripe)", parsed.data),
                "kept local (RF 0, no network)" => "1 holder".to_owned(),
                _ => "3 holders".to_owned(),
            };
            println!(
                "get -o of {size_mib} MiB from {from}: median {med:.1} MiB/s (min {lo:.1}, max {hi:.1}, {} rounds)",
                rounds.max(1)
            );
        }
        for mut c in children {
            let _ = c.kill().await;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
