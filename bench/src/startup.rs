//! `warren-bench startup`: how fast a node comes up and how much memory it holds idle; and
//! `warren-bench put-memory`: a node's peak memory during a large put.
//!
//! Each startup run starts a fresh `warren start` process on loopback (TCP and QUIC) in a new
//! data directory — so the first start's key generation is included — and measures the time from
//! `exec` until the control API's address file appears (written only once every listener is up),
//! then the process's resident set size (`VmRSS` from `/proc/PID/status`) after it has idled for
//! a while. Prints min / median / max over the runs. Targets: < 1 s to listening, < 50 MiB idle.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use warren_node::cli::client::ApiClient;

use crate::nodes::{
    min_med_max, peak_rss_bytes, public_put, rss_bytes, spawn_node, write_mixed_file,
};

/// The figures of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StartupSample {
    /// From spawn to the API address file.
    pub(crate) ready: Duration,
    /// Resident memory after idling, in bytes.
    pub(crate) idle_rss_bytes: u64,
}

async fn one_run(exe: &Path, dir: &Path, idle: Duration) -> anyhow::Result<StartupSample> {
    let (mut child, ready) = spawn_node(exe, dir).await?;
    tokio::time::sleep(idle).await;
    let pid = child.id().context("node already exited")?;
    let idle_rss_bytes = rss_bytes(pid).context("reading the node's VmRSS")?;
    child.kill().await?;
    Ok(StartupSample {
        ready,
        idle_rss_bytes,
    })
}

/// Runs the startup benchmark with the `warren` binary `exe` and prints its figures.
pub(crate) async fn startup(
    exe: &Path,
    runs: u32,
    idle_secs: u64,
) -> anyhow::Result<Vec<StartupSample>> {
    let tmp = std::env::temp_dir().join(format!("warren-bench-{}", std::process::id()));
    let mut samples = Vec::new();
    for i in 0..runs {
        let dir = tmp.join(format!("run-{i}"));
        let s = one_run(exe, &dir, Duration::from_secs(idle_secs)).await;
        let _ = std::fs::remove_dir_all(&dir);
        let s = s?;
        println!(
            "run {i}: ready in {:.1} ms, idle RSS after {idle_secs} s {:.1} MiB",
            s.ready.as_secs_f64() * 1000.0,
            s.idle_rss_bytes as f64 / (1 << 20) as f64
        );
        samples.push(s);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some((lo, med, hi)) = min_med_max(samples.iter().map(|s| s.ready).collect()) {
        println!(
            "startup to listening: min {:.1} ms, median {:.1} ms, max {:.1} ms   (target < 1000 ms)",
            lo.as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e3,
            hi.as_secs_f64() * 1e3
        );
    }
    if let Some((lo, med, hi)) = min_med_max(samples.iter().map(|s| s.idle_rss_bytes).collect()) {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "idle RSS: min {:.1} MiB, median {:.1} MiB, max {:.1} MiB   (target < 50 MiB)",
            mib(lo),
            mib(med),
            mib(hi)
        );
    }
    Ok(samples)
}

/// `warren-bench put-memory`: peak resident memory of a node while it ingests a large file
/// through `warren put` (the node's `VmHWM`, which includes start-up).
pub(crate) async fn put_memory(exe: &Path, size_mib: u64, seed: u64) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("warren-bench-put-{}", std::process::id()));
    let result = async {
        let dir = tmp.join("node");
        let file = tmp.join("input.bin");
        write_mixed_file(&file, size_mib << 20, seed)?;
        let (mut child, _) = spawn_node(exe, &dir).await?;
        let pid = child.id().context("node exited")?;
        let before = peak_rss_bytes(pid).unwrap_or(0);
        let api = ApiClient::from_data_dir(&dir)?;
        let started = Instant::now();
        let put = warren_node::cli::transfer::put(&api, &file, public_put(0), true).await?;
        let secs = started.elapsed().as_secs_f64();
        let peak = peak_rss_bytes(pid).context("reading the node's VmHWM")?;
        child.kill().await?;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "put of {size_mib} MiB (mixed text/random) through the API: {:.1} s, {:.1} MiB/s, cid {}",
            secs,
            mib(put.size) / secs,
            put.cid
        );
        println!(
            "node peak RSS: {:.1} MiB (before the put: {:.1} MiB)   (target < 256 MiB)",
            mib(peak),
            mib(before)
        );
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
