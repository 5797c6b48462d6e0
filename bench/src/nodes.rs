//! Starting `warren` nodes on loopback and reading their figures from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;
use warren_node::cli::client::ApiClient;
use warren_node::keystore::API_ADDR_FILE;

/// The `warren` binary to run: `given`, else `warren` in this binary's directory (the same
/// target directory, as `cargo build -p warren-node -p warren-bench` leaves them).
pub(crate) fn warren_exe(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(path.is_file(), "no warren binary at {}", path.display());
        return Ok(path);
    }
    let me = std::env::current_exe()?;
    let sibling = me
        .parent()
        .context("warren-bench has no directory")?
        .join(format!("warren{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        sibling.is_file(),
        "no warren binary at {}: build it (cargo build --release -p warren-node -p warren-bench) \
         or pass --warren PATH",
        sibling.display()
    );
    Ok(sibling)
}

/// Reads `VmRSS` (resident now) of a process, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// Reads `VmHWM` (peak resident) of a process, in bytes.
pub(crate) fn peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `warren start` on loopback in `dir` and waits until it is ready.
pub(crate) async fn spawn_node(
    exe: &Path,
    dir: &Path,
) -> anyhow::Result<(tokio::process::Child, Duration)> {
    spawn_node_with(exe, dir, None).await
}

/// Like [`spawn_node`], bootstrapped from `bootstrap` when given.
pub(crate) async fn spawn_node_with(
    exe: &Path,
    dir: &Path,
    bootstrap: Option<&str>,
) -> anyhow::Result<(tokio::process::Child, Duration)> {
    spawn_node_args(exe, dir, bootstrap, &[]).await
}

/// Starts `n` nodes in `tmp/n0` … with `extra` start flags, node 0 bootstrapping the rest.
pub(crate) async fn spawn_loopback_nodes(
    exe: &Path,
    tmp: &Path,
    n: usize,
    extra: &[&str],
) -> anyhow::Result<(Vec<tokio::process::Child>, Vec<PathBuf>)> {
    spawn_loopback_nodes_with(exe, tmp, n, |_| extra.to_vec()).await
}

/// [`spawn_loopback_nodes`] with start flags per node (`extra(i)` for node `i`).
pub(crate) async fn spawn_loopback_nodes_with<'a>(
    exe: &Path,
    tmp: &Path,
    n: usize,
    extra: impl Fn(usize) -> Vec<&'a str>,
) -> anyhow::Result<(Vec<tokio::process::Child>, Vec<PathBuf>)> {
    let mut children = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for i in 0..n {
        let dir = tmp.join(format!("n{i}"));
        let boot = match dirs.first() {
            Some(d) => {
                let api = ApiClient::from_data_dir(d)?;
                let s: warren_node::api::StatusInfo = api.get("/v1/status").await?;
                s.listen_addrs.first().cloned()
            }
            None => None,
        };
        let (child, _) = spawn_node_args(exe, &dir, boot.as_deref(), &extra(i)).await?;
        children.push(child);
        dirs.push(dir);
    }
    Ok((children, dirs))
}

async fn spawn_node_args(
    exe: &Path,
    dir: &Path,
    bootstrap: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<(tokio::process::Child, Duration)> {
    let started = Instant::now();
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir").arg(dir).arg("start");
    // Loopback TCP and QUIC unless `extra` names its own listen addresses.
    if !extra.contains(&"--listen") {
        cmd.args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ]);
    }
    cmd.args(extra);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {} start", exe.display()))?;
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
    Ok((child, started.elapsed()))
}

/// Writes the benchmark's mixed data (chunk i text-like for even i, random for odd i, as
/// `warren_storage_mesh::testdata::mixed_data`) to `path`, one chunk at a time.
pub(crate) fn write_mixed_file(path: &Path, total: u64, seed: u64) -> anyhow::Result<()> {
    use std::io::Write;
    use warren_storage_mesh::testdata::MixedReader;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    std::io::copy(&mut MixedReader::new(total, seed), &mut f)?;
    f.flush()?;
    Ok(())
}

/// A pinned public put at `rf`, with no name.
pub(crate) fn public_put(rf: usize) -> warren_node::cli::transfer::PutRequest {
    warren_node::cli::transfer::PutRequest {
        name: None,
        media_type: None,
        pin: true,
        rf,
        class: warren_protocol::Class::Public,
        anon: false,
        key: None,
        pieces: None,
    }
}

/// Flushes every file system's dirty pages to disk (`sync(1)`, i.e. `sync(2)`).
pub(crate) fn sync_disks() {
    let _ = std::process::Command::new("sync").status();
}

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 on Linux if that fails).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system) used so far by each process of `pids`, then by this one.
pub(crate) fn cpu_seconds(pids: &[u32]) -> Vec<f64> {
    let ticks = clock_ticks();
    let read = |path: String| -> f64 {
        let Ok(stat) = std::fs::read_to_string(path) else {
            return 0.0;
        };
        // Fields after the command name (which may hold spaces), from field 3 on.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
        (num(11) + num(12)) / ticks
    };
    pids.iter()
        .map(|p| read(format!("/proc/{p}/stat")))
        .chain(std::iter::once(read("/proc/self/stat".into())))
        .collect()
}

/// Min, median and max of `v`, or `None` if it is empty.
pub(crate) fn min_med_max<T: Copy + Ord>(mut v: Vec<T>) -> Option<(T, T, T)> {
    v.sort();
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

/// Min, median and max of `v` (sorted here).
pub(crate) fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    match v {
        [] => (f64::NAN, f64::NAN, f64::NAN),
        _ => (v[0], v[v.len() / 2], v[v.len() - 1]),
    }
}

/// Median and 90th percentile of `v` (sorted here).
pub(crate) fn median_p90(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss() {
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 1 << 20);
        assert!(peak_rss_bytes(std::process::id()).unwrap() >= rss);
    }

    #[test]
    fn min_med_max_of_odd_and_empty() {
        assert_eq!(min_med_max(vec![3, 1, 2]), Some((1, 2, 3)));
        assert_eq!(min_med_max(Vec::<u32>::new()), None);
    }

    #[test]
    fn mixed_file_is_the_mixed_data() {
        let dir = std::env::temp_dir().join(format!("warren-bench-test-{}", std::process::id()));
        let path = dir.join("mixed.bin");
        let total = 2 * warren_protocol::CHUNK_SIZE as u64 + 5;
        write_mixed_file(&path, total, 9).unwrap();
        let written = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(written, warren_storage_mesh::testdata::mixed_data(total, 9));
    }

    #[test]
    fn counts_own_cpu() {
        let cpu = cpu_seconds(&[std::process::id()]);
        assert_eq!(cpu.len(), 2);
        assert!(cpu.iter().all(|c| *c >= 0.0));
    }
}
