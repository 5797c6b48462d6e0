//! `warren devnet --nodes N`: N real `warren start` processes on loopback.
//!
//! Node 0 starts first; the others bootstrap from its TCP address. Each node's log goes to
//! `DIR/node-i/node.log`. On SIGINT or SIGTERM every child gets SIGTERM, then SIGKILL after 10 s;
//! each child also asks the kernel to SIGTERM it if the devnet process itself dies
//! (`PR_SET_PDEATHSIG`), so nothing is left running either way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};
use warren_protocol::Role;

use crate::api::StatusInfo;
use crate::cli::client::ApiClient;
use crate::keystore::API_ADDR_FILE;

/// How long one node may take to come up.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct DevnetNode {
    pub(super) dir: PathBuf,
    pub(super) child: Child,
}

/// The `--role` flags of `warren start` for these roles.
pub(super) fn role_flags(roles: &[Role]) -> Vec<&'static str> {
    roles
        .iter()
        .flat_map(|r| {
            let name = match r {
                Role::Station => "station",
                Role::Operator => "operator",
                Role::Gate => "gate",
                Role::Middle => "middle",
                Role::Relay => "relay",
            };
            ["--role", name]
        })
        .collect()
}

#[allow(unsafe_code)]
pub(super) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[allow(unsafe_code)]
fn send_sigterm(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

fn spawn_node(
    exe: &Path,
    dir: &Path,
    network: &str,
    roles: &[Role],
    bootstrap: Option<&str>,
) -> anyhow::Result<DevnetNode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join(API_ADDR_FILE));
    let log = std::fs::File::create(dir.join("node.log")).context("creating node.log")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir")
        .arg(dir)
        .args([
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .args(["--kad-mode", "server", "--network", network])
        .args(role_flags(roles));
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", exe.display()))?;
    Ok(DevnetNode {
        dir: dir.to_owned(),
        child,
    })
}

async fn wait_ready(node: &mut DevnetNode) -> anyhow::Result<StatusInfo> {
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    loop {
        if let Some(status) = node.child.try_wait()? {
            bail!(
                "node in {} exited with {status}; see its node.log",
                node.dir.display()
            );
        }
        if node.dir.join(API_ADDR_FILE).exists()
            && let Ok(api) = ApiClient::from_data_dir(&node.dir)
            && let Ok(s) = api.get::<StatusInfo>("/v1/status").await
            && !s.listen_addrs.is_empty()
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "node in {} not ready after {:?}",
                node.dir.display(),
                NODE_READY_TIMEOUT
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tcp_addr(s: &StatusInfo) -> Option<&str> {
    s.listen_addrs
        .iter()
        .map(String::as_str)
        .find(|a| a.contains("/tcp/"))
}

pub(super) async fn stop_all(nodes: &mut [DevnetNode]) {
    for n in nodes.iter() {
        send_sigterm(&n.child);
    }
    for n in nodes.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), n.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                warn!(dir = %n.dir.display(), "node ignored SIGTERM for 10 s, killing it");
                let _ = n.child.kill().await;
            }
        }
    }
}

/// Starts the devnet and runs until a signal, then stops every node.
pub async fn run(dir: &Path, count: u16, network: &str, roles: &[Role]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the warren executable")?;
    let signals = stop_signals()?;
    let mut nodes: Vec<DevnetNode> = Vec::new();

    let result: anyhow::Result<()> = async {
        nodes.push(spawn_node(&exe, &dir.join("node-0"), network, roles, None)?);
        let first = wait_ready(&mut nodes[0]).await?;
        let boot = tcp_addr(&first)
            .context("node-0 has no TCP address")?
            .to_owned();
        let mut statuses = vec![first];
        for i in 1..count {
            nodes.push(spawn_node(
                &exe,
                &dir.join(format!("node-{i}")),
                network,
                roles,
                Some(&boot),
            )?);
        }
        for n in nodes.iter_mut().skip(1) {
            statuses.push(wait_ready(n).await?);
        }
        println!("devnet {network}: {count} nodes on loopback");
        for (i, (s, n)) in statuses.iter().zip(&nodes).enumerate() {
            println!(
                "node-{i}  {}  {}",
                tcp_addr(s).unwrap_or("?"),
                n.dir.display()
            );
        }
        println!(
            "try: warren --data-dir {} peers     (Ctrl-C stops the devnet)",
            nodes[0].dir.display()
        );
        Ok(())
    }
    .await;
    if let Err(e) = result {
        stop_all(&mut nodes).await;
        return Err(e);
    }

    let outcome = wait_until_stopped(nodes, signals).await;
    // stdout may be gone by now (a closed pipe); the exit status tells the outcome.
    let _ = writeln!(std::io::stdout(), "devnet stopped");
    outcome
}

/// SIGTERM and SIGINT, listened to from the start so that one sent while nodes come up waits.
pub(super) fn stop_signals() -> anyhow::Result<(Signal, Signal)> {
    Ok((
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    ))
}

/// Runs until SIGINT/SIGTERM or until a node exits, then stops every node.
pub(super) async fn wait_until_stopped(
    mut nodes: Vec<DevnetNode>,
    (mut term, mut int): (Signal, Signal),
) -> anyhow::Result<()> {
    let exited = async {
        loop {
            for (i, n) in nodes.iter_mut().enumerate() {
                if let Ok(Some(status)) = n.child.try_wait() {
                    return (i, status);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let outcome = tokio::select! {
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
        (i, status) = exited => Err(anyhow::anyhow!("node-{i} exited unexpectedly with {status}; see its node.log")),
    };
    info!("stopping {} nodes", nodes.len());
    stop_all(&mut nodes).await;
    outcome
}
