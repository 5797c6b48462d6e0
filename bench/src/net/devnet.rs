//! A `warren devnet` (on loopback, or `--netns` on shaped links) started by the bench, and the
//! commands it runs on one node: `warren --data-dir …` (inside the node's namespace when it has
//! one), or any other program in that namespace.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How the links between the nodes are shaped; `None` fields: not limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shape {
    /// One-way delay between two nodes.
    pub(crate) latency: Duration,
    /// Each node's access link, each way, bits per second.
    pub(crate) rate_bps: u64,
}

/// One node of the devnet.
pub(crate) struct Node {
    /// Its network namespace (`--netns`), or none on loopback.
    pub(crate) ns: Option<String>,
    pub(crate) dir: PathBuf,
    pub(crate) peer: String,
}

impl Node {
    /// `program` to run in this node's namespace.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// `warren --data-dir DIR args…` on this node.
    pub(crate) fn warren(&self, exe: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command(exe);
        cmd.arg("--data-dir").arg(&self.dir).args(args);
        cmd
    }

    /// Runs `warren args… --json` on this node and parses its output.
    pub(crate) async fn json(&self, exe: &Path, args: &[&str]) -> anyhow::Result<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        let (out, _) = timed(self.warren(exe, &a)).await?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("warren {} printed no JSON", args.join(" ")))
    }
}

/// Runs `cmd` to its end; its output and how long it took. A failure is an error with its
/// stderr.
pub(crate) async fn timed(mut cmd: Command) -> anyhow::Result<(Output, Duration)> {
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("running {cmd:?}"))?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{:?} exited with {}: {}",
            cmd.as_std(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((out, took))
}

/// A running `warren devnet`.
pub(crate) struct Devnet {
    child: Child,
    pub(crate) nodes: Vec<Node>,
}

/// Why `warren devnet --netns` cannot run here, if it cannot (the devnet says the same, later).
pub(crate) fn netns_unavailable() -> Option<String> {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not root: network namespaces and TAP devices need CAP_NET_ADMIN".into());
    }
    let has_ip = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("ip").is_file()));
    if !has_ip {
        return Some("no `ip` on PATH (install iproute2)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun (the kernel's tun module)".into());
    }
    None
}

impl Devnet {
    /// Starts `warren devnet --nodes N` in `dir` (on `shape`d links in namespaces when given)
    /// and waits until it has printed every node and each of them knows the others with
    /// their roles.
    pub(crate) async fn start(
        exe: &Path,
        dir: &Path,
        count: usize,
        shape: Option<Shape>,
    ) -> anyhow::Result<Devnet> {
        let mut cmd = Command::new(exe);
        cmd.arg("--data-dir")
            .arg(dir)
            .args(["devnet", "--nodes", &count.to_string()]);
        if let Some(s) = shape {
            cmd.args([
                "--netns",
                "--latency",
                &format!("{}ms", s.latency.as_millis()),
                "--rate",
                &format!("{}kbit", s.rate_bps / 1000),
            ]);
        }
        std::fs::create_dir_all(dir)?;
        let err_path = dir.join("devnet.err");
        let err = std::fs::File::create(&err_path)?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} devnet", exe.display()))?;
        let stdout = child.stdout.take().context("devnet stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut nodes = Vec::new();
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("try:") {
                    return anyhow::Ok(true);
                }
                if line.starts_with("node-") {
                    // node-i  ADDR  DIR  [netns NS]
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    let dir = match parts.as_slice() {
                        [_, _, dir, ..] => *dir,
                        _ => bail!("devnet printed {line:?}"),
                    };
                    let ns = match parts.as_slice() {
                        [_, _, _, "netns", ns, ..] => Some((*ns).to_owned()),
                        _ => None,
                    };
                    nodes.push(Node {
                        ns,
                        dir: PathBuf::from(dir),
                        peer: String::new(),
                    });
                }
            }
            Ok(false)
        };
        let up = tokio::time::timeout(Duration::from_secs(120), read).await;
        // The rest of its output is not read: drain it so the devnet never blocks on a pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut devnet = Devnet { child, nodes };
        if !matches!(up, Ok(Ok(true))) {
            let _ = devnet.terminate().await;
            let text = std::fs::read_to_string(&err_path).unwrap_or_default();
            let why = text
                .trim()
                .lines()
                .last()
                .unwrap_or("it printed nothing on stderr");
            bail!("the devnet did not come up: {why}");
        }
        anyhow::ensure!(
            devnet.nodes.len() == count,
            "the devnet printed {} of {count} nodes",
            devnet.nodes.len()
        );
        for n in &mut devnet.nodes {
            let s = n.json(exe, &["status"]).await?;
            n.peer = s["peer_id"]
                .as_str()
                .context("status without peer_id")?
                .to_owned();
        }
        devnet.converge(exe).await?;
        Ok(devnet)
    }

    /// Waits until every node knows every other with its roles (records gossiped).
    async fn converge(&self, exe: &Path) -> anyhow::Result<()> {
        let want = self.nodes.len() - 1;
        let deadline = Instant::now() + Duration::from_secs(150);
        for (i, n) in self.nodes.iter().enumerate() {
            loop {
                let peers = n.json(exe, &["peers"]).await?;
                let ok = peers.as_array().is_some_and(|ps| {
                    ps.len() >= want
                        && ps
                            .iter()
                            .all(|p| p["roles"].as_array().is_some_and(|r| !r.is_empty()))
                });
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node {i} did not see its {want} peers with records in 150 s: {peers}");
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        Ok(())
    }

    /// SIGTERM (the devnet stops its nodes and deletes its namespaces), SIGKILL after 20 s.
    pub(crate) async fn stop(mut self) {
        let _ = self.terminate().await;
    }

    async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        }
    }
}
