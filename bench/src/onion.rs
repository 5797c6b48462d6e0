//! `warren-bench onion`: 3-hop circuit build time on real loopback nodes, and `get --anon`
//! throughput next to a direct `get` of the same file from the same holder in the same run.
//!
//! The build time on the sans-I/O machines in memory, and the per-cell overhead:
//! `cargo bench -p warren-protocol --bench onion`.

use std::path::Path;
use std::time::{Duration, Instant};

use warren_node::cli::client::ApiClient;

use crate::nodes::{median_p90, public_put, spawn_loopback_nodes, write_mixed_file};

/// Runs the benchmark with the `warren` binary `exe` and prints its figures.
pub(crate) async fn onion(
    exe: &Path,
    size_mib: u64,
    builds: usize,
    rounds: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("warren-bench-onion-{}", std::process::id()));
    let result = async {
        let roles = [
            "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
        ];
        let (children, dirs) = spawn_loopback_nodes(exe, &tmp, 5, &roles).await?;
        let client = ApiClient::from_data_dir(&dirs[0])?;
        // Wait until node 0 knows every other node's record (the path candidates).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let peers: Vec<warren_node::api::PeerInfo> = client.get("/v1/peers").await?;
            if peers.len() == 4 && peers.iter().all(|p| p.roles.len() == 4) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the devnet did not converge in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let holder = ApiClient::from_data_dir(&dirs[1])?;
        // Circuit builds on loopback: small anonymous gets, build time as the client saw it.
        let small = tmp.join("small.bin");
        write_mixed_file(&small, 1024, seed)?;
        let put = warren_node::cli::transfer::put(&holder, &small, public_put(0), true).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..builds.clamp(1, 50) {
            let out = tmp.join(format!("small-{i}.bin"));
            warren_node::cli::transfer::get(&client, &put.cid, Some(&out), true, true).await?;
        }
        let circuits: Vec<warren_node::onion::CircuitView> = client.get("/v1/circuits").await?;
        let mut real: Vec<f64> = circuits
            .iter()
            .filter(|c| c.role == "client")
            .filter_map(|c| c.build_ms.map(|b| b as f64))
            .collect();
        let n = real.len();
        let (m, p) = median_p90(&mut real);
        println!("3-hop circuit build, 5 nodes on loopback ({n} builds, ms resolution): median {m:.0} ms, p90 {p:.0} ms");

        // Throughput: each round a new file on the holder, fetched directly by node 0, then by
        // node 0 through a circuit (the relay fetches it from the same holder), then again (the
        // relay holds it). Medians over the rounds: the machine is shared, so single runs vary.
        let mib = size_mib as f64;
        let (mut direct, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds.max(1) {
            let f = tmp.join(format!("big-{round}.bin"));
            write_mixed_file(&f, size_mib << 20, seed + 1 + round as u64)?;
            let put = warren_node::cli::transfer::put(&holder, &f, public_put(0), true).await?;
            // Provider records go out asynchronously: let them land before the first lookup.
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (anon, into) in [(false, &mut direct), (true, &mut cold), (true, &mut warm)] {
                let out = tmp.join("out.bin");
                let started = Instant::now();
                let got = warren_node::cli::transfer::get(&client, &put.cid, Some(&out), true, anon).await?;
                into.push(mib / started.elapsed().as_secs_f64());
                anyhow::ensure!(got == size_mib << 20, "get returned {got} bytes");
            }
            let _ = std::fs::remove_file(&f);
        }
        let (d, _) = median_p90(&mut direct);
        let (c, _) = median_p90(&mut cold);
        let (w, _) = median_p90(&mut warm);
        println!("direct get of {size_mib} MiB from 1 holder: {d:.1} MiB/s (median of {rounds})");
        println!(
            "get --anon, the relay fetching from the same holder: {c:.1} MiB/s ({:.2} × direct)",
            c / d
        );
        println!(
            "get --anon, the relay holding the file: {w:.1} MiB/s ({:.2} × direct)",
            w / d
        );
        for mut c in children {
            let _ = c.kill().await;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
