//! Interoperability with another libp2p implementation: a js-libp2p peer
//! (`tests/interop-js/dial.mjs`) dials a warren node over TCP, completes Noise +
//! Yamux, runs identify and ping, and sends a Kademlia FIND_NODE on
//! `/warren/kad/1.0.0`, which must return the node's other peer.
//!
//! Needs Node >= 20 and the npm packages: run `scripts/setup-interop.sh` once.
//!
//! Run: `cargo test -p warren-tests --test interop_js -- --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

const KAD_PROTOCOL: &str = "/warren/kad/1.0.0";
const PING_PROTOCOL: &str = "/ipfs/ping/1.0.0";
const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";
const IDENTIFY_PROTOCOL_VERSION: &str = "/warren/1.0.0";

/// How long a warren node may take to write `api.addr`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long B may take to show up at A.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// dial.mjs stops itself after 30 s; this is the backstop.
const DIAL_TIMEOUT: Duration = Duration::from_secs(45);

/// The warren CLI under test: this package's `warren-e2e-node` bin (the same CLI
/// as `warren`), or `WARREN_BIN` when set.
fn warren_bin() -> PathBuf {
    std::env::var_os("WARREN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_warren-e2e-node")))
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop-js")
}

/// Last `n` lines of a log file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Child processes of this test; all are killed (and reaped) when it drops, on
/// every path out of the test, panics included.
#[derive(Default)]
struct Children(Vec<(String, Child)>);

impl Children {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<usize> {
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name}: {cmd:?}"))?;
        self.0.push((name.to_owned(), child));
        Ok(self.0.len() - 1)
    }

    fn try_wait(&mut self, idx: usize) -> Result<Option<ExitStatus>> {
        let (name, child) = &mut self.0[idx];
        child.try_wait().with_context(|| format!("wait for {name}"))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            // Already exited: kill fails harmlessly; wait reaps either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A log file that a child writes both stdout and stderr to.
fn log_file(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

/// A warren node started by this test. Its data dir is `work/<name>`, its
/// output goes to `work/<name>.log`.
struct Node {
    name: &'static str,
    idx: usize,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Node {
    fn start(
        children: &mut Children,
        bin: &Path,
        work: &Path,
        name: &'static str,
        bootstrap: &[String],
    ) -> Result<Node> {
        let data_dir = work.join(name);
        let log = work.join(format!("{name}.log"));
        let mut cmd = Command::new(bin);
        cmd.arg("start").arg("--data-dir").arg(&data_dir).args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--kad-mode",
            "server",
        ]);
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        let (out, err) = log_file(&log)?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let idx = children.spawn(name, &mut cmd)?;
        let node = Node {
            name,
            idx,
            data_dir,
            log,
        };
        node.wait_ready(children)?;
        Ok(node)
    }

    fn dir(&self) -> &Path {
        &self.data_dir
    }

    fn logs(&self) -> String {
        format!(
            "--- warren {} stderr (last 40 lines) ---\n{}",
            self.name,
            tail(&self.log, 40)
        )
    }

    /// Waits for `api.addr`, which warren writes once it is listening.
    fn wait_ready(&self, children: &mut Children) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr_file = self.dir().join("api.addr");
        loop {
            if let Some(status) = children.try_wait(self.idx)? {
                bail!(
                    "warren {} exited early with {status}\n{}",
                    self.name,
                    self.logs()
                );
            }
            if std::fs::read_to_string(&addr_file).is_ok_and(|s| !s.trim().is_empty()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "warren {} did not write {} within {START_TIMEOUT:?}\n{}",
                    self.name,
                    addr_file.display(),
                    self.logs()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// `warren status --data-dir DIR --json`.
    fn status(&self, bin: &Path) -> Result<Value> {
        let out = Command::new(bin)
            .arg("status")
            .arg("--data-dir")
            .arg(self.dir())
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run warren status for {}", self.name))?;
        if !out.status.success() {
            bail!(
                "warren status ({}) failed with {}: {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "warren status ({}) printed no JSON: {}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Retries `status` while the API is coming up.
    fn status_retry(&self, bin: &Path) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.status(bin) {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() > deadline => return Err(e.context(self.logs())),
                Err(_) => sleep(Duration::from_millis(200)),
            }
        }
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no string `{key}` in {v}"))
}

/// A's TCP loopback listen address, ending in /p2p/PEER_ID.
fn tcp_p2p_addr(status: &Value) -> Result<String> {
    let peer_id = str_field(status, "peer_id")?;
    let addrs = status
        .get("listen_addrs")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("no `listen_addrs` in {status}"))?;
    addrs
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/") && a.ends_with(&format!("/p2p/{peer_id}")))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no /ip4/127.0.0.1/tcp/PORT/p2p/{peer_id} address in {status}"))
}

#[test]
fn js_libp2p_peer_dials_identifies_pings_and_finds_nodes() -> Result<()> {
    let js_dir = interop_dir();
    if !js_dir.join("node_modules").is_dir() {
        bail!(
            "{} is missing: run `scripts/setup-interop.sh` (needs Node >= 20 and npm) before this test",
            js_dir.join("node_modules").display()
        );
    }
    let node_version = Command::new("node")
        .arg("--version")
        .output()
        .context("cannot run `node` (Node >= 20 is needed for the interop test)")?;
    eprintln!(
        "node {}",
        String::from_utf8_lossy(&node_version.stdout).trim()
    );

    let bin = warren_bin();
    eprintln!("warren binary: {}", bin.display());
    // Declared before `children`, so it is deleted after every child is killed.
    let work = tempfile::Builder::new()
        .prefix("warren-interop-js-")
        .tempdir()?;
    let mut children = Children::default();

    // Two warren nodes; B bootstraps from A.
    let a = Node::start(&mut children, &bin, work.path(), "a", &[])?;
    let a_status = a.status_retry(&bin)?;
    let a_peer = str_field(&a_status, "peer_id")?.to_owned();
    let a_addr = tcp_p2p_addr(&a_status)?;
    eprintln!("A: {a_peer} at {a_addr}");

    let b = Node::start(
        &mut children,
        &bin,
        work.path(),
        "b",
        std::slice::from_ref(&a_addr),
    )?;
    let b_status = b.status_retry(&bin)?;
    let b_peer = str_field(&b_status, "peer_id")?.to_owned();
    eprintln!("B: {b_peer}");

    // Wait until A has B as a peer (and, where status reports it, in its routing
    // table, which is what FIND_NODE answers from).
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        let s = a.status_retry(&bin)?;
        let peers = s.get("peers").and_then(Value::as_u64).unwrap_or(0);
        let routing = s.get("routing_table").and_then(Value::as_u64);
        if peers >= 1 && routing.is_none_or(|r| r >= 1) {
            eprintln!("A status: {s}");
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "A never reported B (last status {s})\n{}\n{}",
                a.logs(),
                b.logs()
            );
        }
        sleep(Duration::from_millis(200));
    }

    // The js-libp2p peer.
    let js_out = work.path().join("dial.stdout");
    let js_err = work.path().join("dial.stderr");
    let mut cmd = Command::new("node");
    cmd.current_dir(&js_dir)
        .arg("dial.mjs")
        .arg(&a_addr)
        .arg(&b_peer)
        .stdin(Stdio::null())
        .stdout(Stdio::from(File::create(&js_out)?))
        .stderr(Stdio::from(File::create(&js_err)?));
    let started = Instant::now();
    let js = children.spawn("dial.mjs", &mut cmd)?;
    let js_status = loop {
        if let Some(st) = children.try_wait(js)? {
            break st;
        }
        if started.elapsed() > DIAL_TIMEOUT {
            bail!(
                "dial.mjs still running after {DIAL_TIMEOUT:?}\n{}\n{}",
                tail(&js_err, 40),
                a.logs()
            );
        }
        sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&js_out)?;
    let stderr = tail(&js_err, 60);
    eprintln!(
        "--- dial.mjs ({js_status}, {:?}) stderr ---\n{stderr}",
        started.elapsed()
    );
    eprintln!("--- dial.mjs stdout ---\n{}", stdout.trim());

    let context = || {
        format!(
            "dial.mjs output: {}\n--- dial.mjs stderr ---\n{stderr}\n{}\n{}",
            stdout.trim(),
            a.logs(),
            b.logs()
        )
    };
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let res: Value = match line.map(serde_json::from_str) {
        Some(Ok(v)) => v,
        _ => bail!(
            "dial.mjs printed no JSON result ({js_status})\n{}",
            context()
        ),
    };

    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    check(
        res["ok"] == Value::Bool(true),
        format!("ok is not true (error: {})", res["error"]),
    );
    check(
        js_status.success(),
        format!("dial.mjs exited with {js_status}"),
    );
    check(
        res["remote_peer"].as_str() == Some(a_peer.as_str()),
        format!("remote_peer {} != A {a_peer}", res["remote_peer"]),
    );
    let agent = res["agent_version"].as_str().unwrap_or_default();
    check(
        agent.starts_with("warren/"),
        format!("agent_version {agent:?} does not start with \"warren/\""),
    );
    let proto_version = res["protocol_version"].as_str().unwrap_or_default();
    check(
        proto_version == IDENTIFY_PROTOCOL_VERSION,
        format!("identify protocol_version {proto_version:?} != {IDENTIFY_PROTOCOL_VERSION:?}"),
    );
    let protocols: Vec<&str> = res["protocols"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for p in [KAD_PROTOCOL, PING_PROTOCOL, IDENTIFY_PROTOCOL] {
        check(
            protocols.contains(&p),
            format!("identify protocols {protocols:?} lack {p}"),
        );
    }
    check(
        res["ping_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        format!("no ping RTT (ping_ms {})", res["ping_ms"]),
    );
    let found: Vec<&str> = res["find_node_peers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    check(
        found.contains(&b_peer.as_str()),
        format!("FIND_NODE on {KAD_PROTOCOL} returned {found:?}, not B {b_peer}"),
    );

    if !failures.is_empty() {
        bail!(
            "js-libp2p interop failed:\n  - {}\n{}",
            failures.join("\n  - "),
            context()
        );
    }
    eprintln!(
        "interop ok: agent {agent}, {} protocols, ping {} ms, FIND_NODE -> {found:?}",
        protocols.len(),
        res["ping_ms"]
    );
    drop(children);
    Ok(())
}
