//! `warren devnet --netns`: N real `warren start` processes, each in its own network namespace
//! on an emulated access link (`--latency`, `--jitter`, `--rate`, `--loss`), some of them
//! (`--nat K`, the last K) behind their own masquerading home router:
//!
//! ```text
//!  ns wdPID-0  10.1.0.1/8 eth0 ─┐
//!  ns wdPID-1  10.2.0.1/8 eth0 ─┤ TAP ports of the switch in this process (link.rs, tap.rs)
//!  ns wdPID-r5 10.6.0.1/8 wan0 ─┘   masquerade lan0 → wan0, new inbound flows dropped
//!      │ veth lan0 192.168.77.1
//!  ns wdPID-5  192.168.77.2 eth0  (a home node: DHT client, reachable only through its dials)
//! ```
//!
//! Node 0 starts first and the others bootstrap from it. Each node's API listens on its own
//! namespace's loopback, so the CLI runs there too: `ip netns exec wdPID-0 warren --data-dir …`.
//! Needs root, iproute2 and /dev/net/tun (nftables too with `--nat`); without them it says
//! which is missing and stops. On exit (signal or error) the nodes are stopped and the
//! namespaces deleted; the TAP devices go with this process.

mod link;
mod tap;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

pub use link::{LinkShape, parse_duration, parse_loss, parse_rate};

use crate::cli::DevnetArgs;
use crate::cli::devnet::{
    DevnetNode, die_with_parent, role_flags, stop_all, stop_signals, wait_until_stopped,
};

/// How long one node may take to come up.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(40);

/// Why `--netns` cannot run here, if it cannot.
fn unavailable(nat: bool) -> Option<String> {
    #[allow(unsafe_code)]
    // SAFETY: geteuid(2) has no preconditions and never fails.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Some("--netns needs root (network namespaces and TAP devices need CAP_NET_ADMIN); run it with sudo".into());
    }
    let mut tools = vec!["ip"];
    if nat {
        tools.push("nft");
    }
    for tool in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!(
                "--netns needs `{tool}` (install iproute2{})",
                if tool == "nft" { " and nftables" } else { "" }
            ));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("--netns needs /dev/net/tun (the kernel's tun module)".into());
    }
    None
}

async fn sh(args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {args:?}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        pipe.write_all(text.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A home router: masquerade outbound; forward replies only; drop unsolicited inbound flows
/// (the ruleset of tests/tests/nat.rs).
const HOME_ROUTER_RULES: &str = r#"
table ip nat {
  chain postrouting { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}
table ip filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state new drop
  }
}
"#;

/// One node's place on the emulated network.
struct Slot {
    ns: String,
    /// The namespace holding the switch port: the node's, or its home router's.
    port_ns: String,
    /// The address the node listens on.
    addr: String,
    behind_nat: bool,
}

/// Builds the namespaces; each slot is recorded before its namespaces are made, so that a
/// failure half way still deletes them.
async fn build(tag: u32, count: u16, nat: u16, slots: &mut Vec<Slot>) -> anyhow::Result<()> {
    for i in 0..count {
        let behind_nat = i >= count - nat;
        let ns = format!("wd{tag}-{i}");
        let port_ns = if behind_nat {
            format!("wd{tag}-r{i}")
        } else {
            ns.clone()
        };
        let addr = if behind_nat {
            "192.168.77.2".to_owned()
        } else {
            format!("10.{}.0.1", i + 1)
        };
        slots.push(Slot {
            ns: ns.clone(),
            port_ns: port_ns.clone(),
            addr,
            behind_nat,
        });
        let mut names = vec![ns];
        if behind_nat {
            names.push(port_ns);
        }
        for n in &names {
            sh(&["ip", "netns", "add", n], None).await?;
            sh(&["ip", "-n", n, "link", "set", "lo", "up"], None).await?;
        }
    }
    Ok(())
}

async fn wire(tag: u32, i: usize, slot: &Slot) -> anyhow::Result<std::os::fd::OwnedFd> {
    let tap_name = format!("wt{tag}n{i}");
    let fd = tap::open_tap(&tap_name)?;
    let dev = if slot.behind_nat { "wan0" } else { "eth0" };
    let p = slot.port_ns.as_str();
    // One L2 segment, but each node in its own /16 (as on the Internet, where onion paths
    // take one peer per /16).
    let port_addr = format!("10.{}.0.1/8", i + 1);
    sh(&["ip", "link", "set", &tap_name, "netns", p], None).await?;
    sh(
        &["ip", "-n", p, "link", "set", &tap_name, "name", dev],
        None,
    )
    .await?;
    sh(
        &["ip", "-n", p, "addr", "add", &port_addr, "dev", dev],
        None,
    )
    .await?;
    sh(&["ip", "-n", p, "link", "set", dev, "up"], None).await?;
    if slot.behind_nat {
        let n = slot.ns.as_str();
        sh(
            &[
                "ip", "link", "add", "lan0", "netns", p, "type", "veth", "peer", "name", "eth0",
                "netns", n,
            ],
            None,
        )
        .await?;
        for (ns, dev, a) in [
            (p, "lan0", "192.168.77.1/24"),
            (n, "eth0", "192.168.77.2/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", a, "dev", dev], None).await?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"], None).await?;
        }
        sh(
            &[
                "ip",
                "-n",
                n,
                "route",
                "add",
                "default",
                "via",
                "192.168.77.1",
            ],
            None,
        )
        .await?;
        sh(
            &[
                "ip",
                "netns",
                "exec",
                p,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
            None,
        )
        .await?;
        sh(
            &["ip", "netns", "exec", p, "nft", "-f", "-"],
            Some(HOME_ROUTER_RULES),
        )
        .await?;
    }
    Ok(fd)
}

fn spawn(
    exe: &Path,
    dir: &Path,
    slot: &Slot,
    args: &DevnetArgs,
    bootstrap: Option<&str>,
) -> anyhow::Result<DevnetNode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join(crate::keystore::API_ADDR_FILE));
    let log = std::fs::File::create(dir.join("node.log")).context("creating node.log")?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &slot.ns])
        .arg(exe)
        .arg("--data-dir")
        .arg(dir)
        .arg("start")
        .arg("--listen")
        .arg(format!("/ip4/{}/tcp/4001", slot.addr))
        .arg("--listen")
        .arg(format!("/ip4/{}/udp/4001/quic-v1", slot.addr))
        .args([
            "--kad-mode",
            if slot.behind_nat { "client" } else { "server" },
        ])
        .arg("--network")
        .arg(&args.network)
        .args(role_flags(&args.roles.0));
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    // `ip netns exec` execs the node in place, so the death signal carries over.
    die_with_parent(&mut cmd);
    let child = cmd.spawn().context("spawning ip netns exec")?;
    Ok(DevnetNode {
        dir: dir.to_owned(),
        child,
    })
}

/// `warren status --json` inside the node's namespace, once it answers.
async fn wait_ready(exe: &Path, node: &mut DevnetNode, ns: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    loop {
        if let Some(status) = node.child.try_wait()? {
            bail!(
                "node in {} exited with {status}; see its node.log",
                node.dir.display()
            );
        }
        if node.dir.join(crate::keystore::API_ADDR_FILE).exists() {
            let exe = exe.to_string_lossy();
            let dir = node.dir.to_string_lossy();
            let args: [&str; 9] = [
                "ip",
                "netns",
                "exec",
                ns,
                &exe,
                "--data-dir",
                &dir,
                "status",
                "--json",
            ];
            if let Ok(out) = sh(&args, None).await
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&out)
                && let Some(peer) = v["peer_id"].as_str()
                && v["listen_addrs"].as_array().is_some_and(|a| !a.is_empty())
            {
                return Ok(peer.to_owned());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "node in {} not ready after {NODE_READY_TIMEOUT:?}",
                node.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the namespaced devnet and runs until a signal, then stops every node and deletes the
/// namespaces.
pub async fn run(dir: &Path, args: &DevnetArgs) -> anyhow::Result<()> {
    if args.nat >= args.nodes {
        bail!(
            "--nat {} leaves no public node to bootstrap from: at most {}",
            args.nat,
            args.nodes - 1
        );
    }
    if let Some(why) = unavailable(args.nat > 0) {
        bail!("{why}");
    }
    let shape = LinkShape {
        delay: args.latency.unwrap_or_default(),
        jitter: args.jitter.unwrap_or_default(),
        rate_bps: args.rate,
        loss_ppm: args.loss.unwrap_or(0),
    };
    let exe = std::env::current_exe().context("finding the warren executable")?;
    let signals = stop_signals()?;
    let tag = std::process::id();
    let mut slots = Vec::new();
    let mut nodes: Vec<DevnetNode> = Vec::new();
    let mut switch = None;
    let result: anyhow::Result<()> = async {
        build(tag, args.nodes, args.nat, &mut slots).await?;
        let mut taps = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            taps.push(wire(tag, i, slot).await?);
        }
        switch = Some(tap::run_switch(taps, shape)?);
        let mut peers = Vec::new();
        let mut boot = None;
        for (i, slot) in slots.iter().enumerate() {
            let node_dir = dir.join(format!("node-{i}"));
            nodes.push(spawn(&exe, &node_dir, slot, args, boot.as_deref())?);
            if i == 0 {
                let peer = wait_ready(&exe, &mut nodes[0], &slot.ns).await?;
                boot = Some(format!("/ip4/{}/tcp/4001/p2p/{peer}", slot.addr));
                peers.push(peer);
            }
        }
        for (i, slot) in slots.iter().enumerate().skip(1) {
            peers.push(wait_ready(&exe, &mut nodes[i], &slot.ns).await?);
        }
        println!(
            "devnet {}: {} nodes in network namespaces, links: {}",
            args.network,
            args.nodes,
            describe(&shape)
        );
        for (i, ((slot, node), peer)) in slots.iter().zip(&nodes).zip(&peers).enumerate() {
            println!(
                "node-{i}  /ip4/{}/tcp/4001/p2p/{peer}  {}  netns {}{}",
                slot.addr,
                node.dir.display(),
                slot.ns,
                if slot.behind_nat { "  behind NAT" } else { "" }
            );
        }
        println!(
            "try: ip netns exec {} warren --data-dir {} peers     (Ctrl-C stops the devnet)",
            slots[0].ns,
            nodes[0].dir.display()
        );
        Ok(())
    }
    .await;
    let outcome = match result {
        Ok(()) => wait_until_stopped(nodes, signals).await,
        Err(e) => {
            stop_all(&mut nodes).await;
            Err(e)
        }
    };
    if let Some(mut set) = switch {
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    for slot in &slots {
        let _ = sh(&["ip", "netns", "del", &slot.ns], None).await;
        if slot.port_ns != slot.ns {
            let _ = sh(&["ip", "netns", "del", &slot.port_ns], None).await;
        }
    }
    let _ = writeln!(std::io::stdout(), "devnet stopped");
    outcome
}

fn describe(s: &LinkShape) -> String {
    format!(
        "one-way delay {:?}, jitter {:?}, rate {}, loss {}%",
        s.delay,
        s.jitter,
        s.rate_bps.map_or("unlimited".to_owned(), |b| format!(
            "{} Mbit/s",
            b as f64 / 1e6
        )),
        f64::from(s.loss_ppm) / 10_000.0
    )
}
