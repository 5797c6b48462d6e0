//! `warren bench startup`: measures how fast a node comes up and how much memory it holds idle.
//!
//! Each run starts a fresh `warren start` process on loopback (TCP and QUIC) in a new data
//! directory — so the first start's key generation is included — and measures the time from
//! `exec` until the control API's address file appears (written only once every listener is up),
//! then the process's resident set size (`VmRSS` from `/proc/PID/status`) after it has idled for a
//! while. Prints min / median / max over the runs. Targets: < 1 s to listening, < 50 MiB idle.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::keystore::API_ADDR_FILE;

/// The figures of one run.
#[derive(Clone, Copy, Debug)]
pub struct StartupSample {
    /// From spawn to the API address file.
    pub ready: Duration,
    /// Resident memory after idling, in bytes.
    pub idle_rss_bytes: u64,
}

/// Reads `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn one_run(exe: &Path, dir: &Path, idle: Duration) -> anyhow::Result<StartupSample> {
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning warren start")?;
    let addr_file = dir.join(API_ADDR_FILE);
    while !addr_file.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("node exited with {status} before it was ready");
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("node not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = started.elapsed();
    tokio::time::sleep(idle).await;
    let pid = child.id().context("node already exited")?;
    let idle_rss_bytes = rss_bytes(pid).context("reading the node's VmRSS")?;
    child.kill().await?;
    Ok(StartupSample {
        ready,
        idle_rss_bytes,
    })
}

fn min_med_max<T: Copy + Ord>(mut v: Vec<T>) -> Option<(T, T, T)> {
    v.sort();
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

/// Runs the benchmark and prints its figures.
pub async fn startup(runs: u32, idle_secs: u64) -> anyhow::Result<Vec<StartupSample>> {
    let exe = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("warren-bench-{}", std::process::id()));
    let mut samples = Vec::new();
    for i in 0..runs {
        let dir = tmp.join(format!("run-{i}"));
        let s = one_run(&exe, &dir, Duration::from_secs(idle_secs)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss() {
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 1 << 20);
    }

    #[test]
    fn min_med_max_of_odd_and_empty() {
        assert_eq!(min_med_max(vec![3, 1, 2]), Some((1, 2, 3)));
        assert_eq!(min_med_max(Vec::<u32>::new()), None);
    }
}
