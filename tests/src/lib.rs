//! warren-tests: helpers for end-to-end tests that run real `warren` processes on loopback.
//!
//! Every process started here is killed when its handle drops, on every path out of a test, so a
//! failing test leaves nothing running. Tests talk only to 127.0.0.1.

pub mod attacks;
pub mod bare;
pub mod hostile;
pub mod hostile_relay;
pub mod kad_raw;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// A `warren start` process on a data directory.
pub struct NodeProcess {
    /// Its data directory.
    pub dir: PathBuf,
    child: Child,
}

impl NodeProcess {
    /// Starts `bin start` on loopback (TCP, kad server mode) with `extra` flags, and waits until its
    /// control API answers with a listen address.
    pub fn start(bin: &str, dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(bin, dir, "local", extra)
    }

    /// [`NodeProcess::start`] on the network id `network`.
    pub fn start_on(bin: &str, dir: &Path, network: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_env(bin, dir, network, extra, &[])
    }

    /// [`NodeProcess::start_on`] with `env` added to the node's environment.
    pub fn start_env(
        bin: &str,
        dir: &Path,
        network: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("node.log"))?;
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "start",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--kad-mode",
                "server",
                "--network",
                network,
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {bin}"))?;
        let mut node = Self {
            dir: dir.to_owned(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = node.child.try_wait()? {
                bail!("node exited with {status}: {}", node.log());
            }
            if dir.join("api.addr").exists()
                && let Ok(s) = cli_json(bin, dir, &["status"])
                && s["listen_addrs"].as_array().is_some_and(|a| !a.is_empty())
            {
                return Ok(node);
            }
            if Instant::now() > deadline {
                bail!(
                    "node in {} not ready in 30 s: {}",
                    dir.display(),
                    node.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Its OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("node did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET to `addr` (host:port), with the API token as a bearer token if given;
/// answers the status code and the body.
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .context("empty HTTP answer")?
        .parse()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_owned()))
}

/// The node's API address and token, from its data directory.
pub fn api_of(dir: &Path) -> anyhow::Result<(String, String)> {
    let addr = std::fs::read_to_string(dir.join("api.addr"))?;
    let token = std::fs::read_to_string(dir.join("api.token"))?;
    Ok((addr.trim().to_owned(), token.trim().to_owned()))
}

/// Runs `bin --data-dir dir ARGS --json` and parses its output.
pub fn cli_json(bin: &str, dir: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let out = cli(bin, dir, args, true)?;
    if !out.status.success() {
        bail!(
            "warren {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("warren {args:?} printed no JSON"))
}

/// Runs `bin --data-dir dir ARGS [--json]`.
pub fn cli(bin: &str, dir: &Path, args: &[&str], json: bool) -> anyhow::Result<Output> {
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir").arg(dir).args(args);
    if json {
        cmd.arg("--json");
    }
    Ok(cmd.output()?)
}

/// Polls `f` every 200 ms until it returns `Some`, or fails after `timeout` with `what`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The blocks the node on `dir` holds for the mesh (`warren held`); empty if it cannot say.
pub fn held(bin: &str, dir: &Path) -> std::collections::BTreeSet<String> {
    cli_json(bin, dir, &["held"])
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Waits (up to 30 s) until the node on `dir` is connected to `peers` peers whose verified
/// records have arrived (each lists at least one role).
pub fn wait_for_records(bin: &str, dir: &Path, peers: usize) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(30), "every peer's record", || {
        let list = cli_json(bin, dir, &["peers"]).ok()?;
        let list = list.as_array()?;
        (list.len() == peers
            && list
                .iter()
                .all(|p| p["roles"].as_array().is_some_and(|r| !r.is_empty())))
        .then_some(())
    })
}

/// The TCP `/p2p/` multiaddr from a `status --json` answer.
pub fn tcp_multiaddr(status: &Value) -> Option<String> {
    status["listen_addrs"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.contains("/tcp/"))
        .map(str::to_owned)
}

/// Deterministic test bytes: xorshift64* for random-looking data, or words for text-like data.
pub fn test_bytes(len: usize, seed: u64, text: bool) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut out = Vec::with_capacity(len + 16);
    if text {
        const WORDS: [&str; 12] = [
            "warren ", "peer ", "mesh ", "block ", "store ", "the ", "of ", "and ", "chunk ",
            "id ", "node\n", "relay ",
        ];
        while out.len() < len {
            out.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize].as_bytes());
        }
    } else {
        while out.len() < len {
            out.extend_from_slice(&next().to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Debian's `chromium` (installed by `scripts/setup-home.sh`), if present.
pub fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !path.is_empty() {
                return Some(PathBuf::from(path));
            }
        }
    }
    None
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=…`), with a fresh
/// profile in `profile` and the flags that keep it off the network.
pub fn run_chromium(
    browser: &Path,
    profile: &Path,
    url: &str,
    mode: &[&str],
) -> std::io::Result<Output> {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Lets the page's first fetch and render finish before the DOM or pixels are taken.
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(mode)
        .arg(url)
        .output()
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
