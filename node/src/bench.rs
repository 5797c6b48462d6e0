//! `warren bench startup`: measures how fast a node comes up and how much memory it holds idle.
//!
//! Each run starts a fresh `warren start` process on loopback (TCP and QUIC) in a new data
//! directory — so the first start's key generation is included — and measures the time from
//! `exec` until the control API's address file appears (written only once every listener is up),
//! then the process's resident set size (`VmRSS` from `/proc/PID/status`) after it has idled for a
//! while. Prints min / median / max over the runs. Targets: < 1 s to listening, < 50 MiB idle.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
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

/// Reads `VmRSS` (resident now) of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// Reads `VmHWM` (peak resident) of a process, in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `warren start` on loopback in `dir` and waits until it is ready.
async fn spawn_node(exe: &Path, dir: &Path) -> anyhow::Result<(tokio::process::Child, Duration)> {
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
async fn spawn_loopback_nodes(
    exe: &Path,
    tmp: &Path,
    n: usize,
    extra: &[&str],
) -> anyhow::Result<(Vec<tokio::process::Child>, Vec<std::path::PathBuf>)> {
    spawn_loopback_nodes_with(exe, tmp, n, |_| extra.to_vec()).await
}

/// [`spawn_loopback_nodes`] with start flags per node (`extra(i)` for node `i`).
async fn spawn_loopback_nodes_with<'a>(
    exe: &Path,
    tmp: &Path,
    n: usize,
    extra: impl Fn(usize) -> Vec<&'a str>,
) -> anyhow::Result<(Vec<tokio::process::Child>, Vec<std::path::PathBuf>)> {
    let mut children = Vec::new();
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for i in 0..n {
        let dir = tmp.join(format!("n{i}"));
        let boot = match dirs.first() {
            Some(d) => {
                let api = crate::cli::client::ApiClient::from_data_dir(d)?;
                let s: crate::api::StatusInfo = api.get("/v1/status").await?;
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
    Ok((child, started.elapsed()))
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

/// `warren bench ingest`: the store's put rate against a plain compress-and-hash loop over the
/// same chunks on the same cores (see `warren_storage_mesh::bench`).
pub fn ingest(size_mib: u64, seed: u64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("warren-bench-ingest-{}", std::process::id()));
    let report = warren_storage_mesh::bench::ingest(&dir, size_mib << 20, seed);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report?);
    Ok(())
}

/// `warren bench private`: `put --private` against a public put of the same data, side by side
/// (see `warren_storage_mesh::bench::private`).
pub fn private(size_mib: u64, seed: u64, rounds: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("warren-bench-private-{}", std::process::id()));
    let report = warren_storage_mesh::bench::private(&dir, size_mib << 20, seed, rounds);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report?);
    Ok(())
}

/// Writes the benchmark's mixed data (chunk i text-like for even i, random for odd i, as
/// `warren_storage_mesh::bench::mixed_data`) to `path`, one chunk at a time.
fn write_mixed_file(path: &Path, total: u64, seed: u64) -> anyhow::Result<()> {
    use std::io::Write;
    use warren_storage_mesh::bench::{random_chunk, text_chunk};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut written, mut i) = (0u64, 0u64);
    while written < total {
        let len = (total - written).min(warren_protocol::CHUNK_SIZE as u64) as usize;
        let chunk_seed = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let chunk = if i % 2 == 0 {
            text_chunk(chunk_seed, len)
        } else {
            random_chunk(chunk_seed, len)
        };
        f.write_all(&chunk)?;
        written += len as u64;
        i += 1;
    }
    f.flush()?;
    Ok(())
}

/// `warren bench put-memory`: peak resident memory of a node while it ingests a large file
/// through `warren put` (the node's `VmHWM`, which includes start-up).
pub async fn put_memory(size_mib: u64, seed: u64) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("warren-bench-put-{}", std::process::id()));
    let result = async {
        let dir = tmp.join("node");
        let file = tmp.join("input.bin");
        write_mixed_file(&file, size_mib << 20, seed)?;
        let (mut child, _) = spawn_node(&exe, &dir).await?;
        let pid = child.id().context("node exited")?;
        let before = peak_rss_bytes(pid).unwrap_or(0);
        let api = crate::cli::client::ApiClient::from_data_dir(&dir)?;
        let started = Instant::now();
        let put = crate::cli::transfer::put(&api, &file, public_put(0), true).await?;
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

/// Copies `bytes` once over a loopback TCP connection; returns MiB/s. With `into`, the receiver
/// writes what it reads to that file and fsyncs it, as `warren get -o` does; otherwise it only
/// counts the bytes.
async fn plain_tcp_copy(bytes: Arc<Vec<u8>>, into: Option<&Path>) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let total = bytes.len();
    let sender = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        sock.write_all(&bytes).await?;
        sock.shutdown().await?;
        anyhow::Ok(())
    });
    let started = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(addr).await?;
    let mut file = match into {
        Some(path) => Some(tokio::fs::File::create(path).await?),
        None => None,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if let Some(f) = file.as_mut() {
            f.write_all(&buf[..n]).await?;
        }
        got += n;
    }
    if let Some(mut f) = file {
        f.flush().await?;
        f.sync_all().await?;
    }
    let secs = started.elapsed().as_secs_f64();
    sender.await??;
    anyhow::ensure!(got == total, "plain copy moved {got} of {total} bytes");
    Ok(total as f64 / (1 << 20) as f64 / secs)
}

/// Longest a reference copy of `bench fetch` may take before it is reported as stuck.
const COPY_LIMIT: Duration = Duration::from_secs(120);

/// `copy`, or an error once `limit` has passed.
async fn within(
    limit: Duration,
    copy: impl std::future::Future<Output = anyhow::Result<f64>>,
) -> anyhow::Result<f64> {
    tokio::time::timeout(limit, copy)
        .await
        .map_err(|_| anyhow::anyhow!("a reference copy did not finish within {limit:?}"))?
}

/// An in-process swarm with the node's transports (TCP + Noise + Yamux, QUIC) around `behaviour`.
fn bench_swarm<B: libp2p::swarm::NetworkBehaviour>(
    behaviour: B,
) -> anyhow::Result<libp2p::Swarm<B>> {
    use libp2p::{noise, tcp, yamux};
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Starts `swarm` listening on `addr` and returns the address it got.
async fn listen_on<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut libp2p::Swarm<B>,
    addr: &str,
) -> anyhow::Result<libp2p::Multiaddr> {
    use futures::StreamExt;
    swarm.listen_on(addr.parse()?)?;
    loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            swarm.select_next_some().await
        {
            return Ok(address);
        }
    }
}

/// Copies `bytes` once from one in-process libp2p swarm to another over loopback TCP with the
/// node's own stack (Noise, Yamux) on `streams` parallel streams; returns MiB/s. The ceiling any
/// block protocol over libp2p can reach on this machine.
async fn libp2p_stream_copy(
    bytes: Arc<Vec<u8>>,
    streams: usize,
    quic: bool,
) -> anyhow::Result<f64> {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::StreamProtocol;
    const PROTO: StreamProtocol = StreamProtocol::new("/warren/bench-copy/1.0.0");
    let mut server = bench_swarm(libp2p_stream::Behaviour::new())?;
    let mut client = bench_swarm(libp2p_stream::Behaviour::new())?;
    let listen = if quic {
        "/ip4/127.0.0.1/udp/0/quic-v1"
    } else {
        "/ip4/127.0.0.1/tcp/0"
    };
    let addr = listen_on(&mut server, listen).await?;
    let server_id = *server.local_peer_id();
    let mut incoming = server.behaviour().new_control().accept(PROTO)?;
    let mut control = client.behaviour().new_control();
    client.dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))?;
    // Both swarms are driven until the copy is over, then dropped (connections closed).
    let drivers = [
        tokio::spawn(async move {
            loop {
                server.select_next_some().await;
            }
        }),
        tokio::spawn(async move {
            loop {
                client.select_next_some().await;
            }
        }),
    ];
    let total = bytes.len();
    let part = total.div_ceil(streams);
    let senders = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for i in 0..streams {
            let (_, mut s) = incoming.next().await.context("no stream")?;
            let bytes = bytes.clone();
            tasks.push(tokio::spawn(async move {
                let range = (i * part).min(total)..((i + 1) * part).min(total);
                for piece in bytes[range].chunks(1 << 20) {
                    s.write_all(piece).await?;
                }
                s.close().await?;
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    });
    let started = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..streams {
        // The first open waits for the dial; give up after ten seconds.
        let mut s = loop {
            match control.open_stream(server_id, PROTO).await {
                Ok(s) => break s,
                Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(p)) => {
                    bail!("{p} unsupported")
                }
                Err(e) if started.elapsed() > Duration::from_secs(10) => {
                    bail!("no libp2p stream to the copy's receiver: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0usize;
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            anyhow::Ok(got)
        }));
    }
    let mut got = 0;
    for r in readers {
        got += r.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    senders.await??;
    for d in drivers {
        d.abort();
    }
    anyhow::ensure!(got == total, "libp2p copy moved {got} of {total} bytes");
    Ok(total as f64 / (1 << 20) as f64 / secs)
}

/// Fetches `bytes` in 1 MiB pieces, one `/warren/blocks` request-response exchange per piece
/// with `in_flight` outstanding, between two in-process swarms over loopback TCP (the node's
/// codec and stack, no store, no hashing); returns MiB/s. The ceiling of a one-block-per-stream
/// fetch on this machine.
async fn libp2p_request_copy(bytes: Arc<Vec<u8>>, in_flight: usize) -> anyhow::Result<f64> {
    use futures::StreamExt;
    use libp2p::request_response::{self, Event, Message, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    let behaviour = || {
        request_response::Behaviour::with_codec(
            crate::net::protocols::blocks::Codec,
            [(
                crate::net::protocols::blocks::PROTOCOL_NAME,
                ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(32),
        )
    };
    let mut server = bench_swarm(behaviour())?;
    let mut client = bench_swarm(behaviour())?;
    let addr = listen_on(&mut server, "/ip4/127.0.0.1/tcp/0").await?;
    let server_id = *server.local_peer_id();
    let total = bytes.len();
    let served = bytes.clone();
    let serving = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            }) = server.select_next_some().await
            {
                // The request is the piece's index, 4 bytes little-endian.
                let i = <[u8; 4]>::try_from(request.as_slice()).map_or(usize::MAX, |b| {
                    usize::try_from(u32::from_le_bytes(b)).unwrap_or(usize::MAX)
                });
                let start = i.saturating_mul(1 << 20).min(total);
                let piece = served[start..(start + (1 << 20)).min(total)].to_vec();
                let _ = server.behaviour_mut().send_response(channel, piece);
            }
        }
    });
    client.dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))?;
    let n = total.div_ceil(1 << 20);
    let started = Instant::now();
    let (mut next, mut outstanding, mut got) = (0usize, 0usize, 0usize);
    while next < n || outstanding > 0 {
        while next < n && outstanding < in_flight {
            client
                .behaviour_mut()
                .send_request(&server_id, (next as u32).to_le_bytes().to_vec());
            next += 1;
            outstanding += 1;
        }
        match client.select_next_some().await {
            SwarmEvent::Behaviour(Event::Message {
                message: Message::Response { response, .. },
                ..
            }) => {
                got += response.len();
                outstanding -= 1;
            }
            SwarmEvent::Behaviour(Event::OutboundFailure { error, .. }) => {
                bail!("request-response copy: {error}")
            }
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    serving.abort();
    anyhow::ensure!(
        got == total,
        "request-response copy moved {got} of {total} bytes"
    );
    Ok(total as f64 / (1 << 20) as f64 / secs)
}

/// `warren bench fetch`: loopback `get` throughput of a file held by 1 and by 3 other nodes,
/// next to a plain TCP copy of the same bytes in the same run.
pub async fn fetch(size_mib: u64, seed: u64, rounds: usize) -> anyhow::Result<()> {
    let rounds = rounds.max(1);
    let exe = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("warren-bench-fetch-{}", std::process::id()));
    let result = async {
        let file = tmp.join("input.bin");
        write_mixed_file(&file, size_mib << 20, seed)?;
        let bytes = Arc::new(std::fs::read(&file)?);
        let plain = plain_tcp_copy(bytes.clone(), None).await?;
        println!("plain TCP copy on loopback: {plain:.1} MiB/s");
        let copy_out = tmp.join("plain-copy.bin");
        let plain_file = plain_tcp_copy(bytes.clone(), Some(&copy_out)).await?;
        let _ = std::fs::remove_file(&copy_out);
        println!(
            "plain TCP copy on loopback into a file (fsynced, as get -o does): {plain_file:.1} MiB/s"
        );
        let (mut tcp_best, mut quic_best) = (0f64, 0f64);
        for (quic, streams) in [(false, 1), (false, 8), (true, 1), (true, 8)] {
            let rate =
                within(COPY_LIMIT, libp2p_stream_copy(bytes.clone(), streams, quic)).await?;
            let best = if quic { &mut quic_best } else { &mut tcp_best };
            *best = best.max(rate);
            let stack = if quic { "QUIC" } else { "TCP + Noise + Yamux" };
            println!(
                "libp2p copy ({stack}, {streams} stream(s)): {rate:.1} MiB/s ({:.2} of the plain copy)",
                rate / plain
            );
        }
        for in_flight in [1, 8] {
            let rate = within(COPY_LIMIT, libp2p_request_copy(bytes.clone(), in_flight)).await?;
            println!(
                "libp2p request-response (one 1 MiB block per stream, {in_flight} in flight): {rate:.1} MiB/s ({:.2} of the plain copy)",
                rate / plain
            );
        }
        for (transport, listen, ceiling) in [
            ("TCP", "/ip4/127.0.0.1/tcp/0", tcp_best),
            ("QUIC", "/ip4/127.0.0.1/udp/0/quic-v1", quic_best),
        ] {
            let run = FetchRun {
                size_mib,
                seed,
                rounds,
                plain,
                plain_file,
                libp2p: ceiling,
            };
            let dir = tmp.join(transport);
            fetch_over(&exe, &dir, (transport, listen), run).await?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// One `bench fetch` run: its file size, data seed, timed gets per source and the reference
/// copies (MiB/s) the gets are compared with.
#[derive(Clone, Copy)]
struct FetchRun {
    size_mib: u64,
    seed: u64,
    rounds: usize,
    plain: f64,
    plain_file: f64,
    /// The best libp2p copy over the transport the nodes use.
    libp2p: f64,
}

/// The node half of `bench fetch`: five nodes in `tmp` listening on `listen` only, a file held
/// by 1 and by 3 of them fetched by the fifth (and the 1-holder file read from its own store
/// on TCP), `run.rounds` timed gets each.
async fn fetch_over(
    exe: &Path,
    tmp: &Path,
    (transport, listen): (&str, &str),
    run: FetchRun,
) -> anyhow::Result<()> {
    let FetchRun {
        size_mib,
        seed,
        rounds,
        ..
    } = run;
    let mib = size_mib as f64;
    // Node 0 bootstraps the rest; nodes 0..=3 offer storage, node 4 (an operator, no
    // storage offered, so no copy is ever placed on it) fetches.
    let (children, dirs) = spawn_loopback_nodes_with(exe, tmp, 5, |i| {
        let mut flags = vec!["--listen", listen];
        if i == 4 {
            flags.extend(["--role", "operator"]);
        }
        flags
    })
    .await?;
    let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    anyhow::ensure!(pids.len() == 5, "a node exited at start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let origin = crate::cli::client::ApiClient::from_data_dir(&dirs[1])?;
    let fetcher = crate::cli::client::ApiClient::from_data_dir(&dirs[4])?;
    for (holders, seed_offset) in [(1usize, 0u64), (3, 1)] {
        // A different file per holder count, so no node has it cached.
        let f = tmp.join(format!("round-{holders}.bin"));
        write_mixed_file(&f, size_mib << 20, seed + 100 + seed_offset)?;
        let put = crate::cli::transfer::put(&origin, &f, public_put(holders - 1), true).await?;
        let _ = std::fs::remove_file(&f);
        let mut sources = vec![(
            &fetcher,
            4usize,
            format!("{holders} holder(s) over {transport}"),
        )];
        if holders == 1 && transport == "TCP" {
            // The read path alone: the origin's own copy, no network.
            sources.insert(0, (&origin, 1, "the local store (no network)".into()));
        }
        for (api, node, from) in sources {
            let mut rates = Vec::new();
            let mut cpu = vec![0.0; pids.len() + 1];
            for round in 0..rounds {
                // Every earlier write (the put, the last round's output) on disk first: the
                // kernel's writeback of them must not run during the timed get.
                sync_disks();
                let before = cpu_seconds(&pids);
                let out = tmp.join(format!("out-{holders}-{round}.bin"));
                let started = Instant::now();
                let n = crate::cli::transfer::get(api, &put.cid, Some(&out), true, false).await?;
                rates.push(mib / started.elapsed().as_secs_f64());
                let after = cpu_seconds(&pids);
                for (c, (a, b)) in cpu.iter_mut().zip(after.iter().zip(&before)) {
                    *c += (a - b) / rounds as f64;
                }
                let _ = std::fs::remove_file(&out);
                anyhow::ensure!(n == size_mib << 20, "fetched {n} bytes");
                if node == 4 {
                    // Drop the fetched copy (cached, unpinned) for the next round.
                    let _: crate::api::GcView = fetcher.post("/v1/gc").await?;
                }
            }
            let (lo, med, hi) = spread(&mut rates);
            println!(
                "get -o of {size_mib} MiB from {from}: median {med:.1} MiB/s (min {lo:.1}, max {hi:.1}, {rounds} rounds): {:.2} of the plain copy, {:.2} of the copy into a file, {:.2} of the libp2p {transport} copy",
                med / run.plain,
                med / run.plain_file,
                med / run.libp2p
            );
            let holder_cpu: f64 = (0..pids.len()).filter(|i| *i != node).map(|i| cpu[i]).sum();
            println!(
                "    CPU seconds per get: the node serving the get {:.2}, other nodes {:.2}, the client {:.2}",
                cpu[node],
                holder_cpu,
                cpu[pids.len()]
            );
        }
    }
    for mut c in children {
        let _ = c.kill().await;
    }
    Ok(())
}

/// Flushes every file system's dirty pages to disk (`sync(2)`).
#[allow(unsafe_code)]
fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// CPU seconds (user + system) used so far by each process of `pids`, then by this one.
#[allow(unsafe_code)]
fn cpu_seconds(pids: &[u32]) -> Vec<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
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

/// Min, median and max of `v` (sorted here).
fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    match v {
        [] => (f64::NAN, f64::NAN, f64::NAN),
        _ => (v[0], v[v.len() / 2], v[v.len() - 1]),
    }
}

/// Median and 90th percentile of `v` (sorted here).
fn median_p90(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

/// Builds one 3-hop circuit between the sans-I/O machines in memory (every cell encoded and
/// decoded on each link, as on the wire); returns the time it took.
fn build_in_memory(
    secrets: &[warren_protocol::OnionSecret],
    round: u64,
) -> anyhow::Result<Duration> {
    use warren_protocol::onion::{Cell, Client, Direction, Hop, HopEvent, HopTarget, ReplayCache};
    let now = crate::clock::unix_now();
    // Distinct ephemeral seeds per build (snow's RNG derives the keys from them).
    let seed = |i: u64| -> [u8; 32] {
        let mut s = [0x5a; 32];
        s[..8].copy_from_slice(&(round * 16 + i).to_le_bytes());
        s
    };
    let started = Instant::now();
    let path = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| HopTarget {
            peer: vec![i as u8 + 1],
            onion_key: s.public(),
        })
        .collect();
    let mut client = Client::new(path, (0..3).map(seed).collect(), now)?;
    let mut hops: Vec<Hop> = Vec::new();
    let mut replay: Vec<ReplayCache> = (0..3).map(|_| ReplayCache::new()).collect();
    let wire = |c: Cell| -> anyhow::Result<Cell> { Ok(Cell::decode(&c.encode()?)?) };
    // (to node, from-side prev?, cell): node 0 = client, i = hop i.
    let mut queue: std::collections::VecDeque<(usize, bool, Cell)> = Default::default();
    while let Some(c) = client.poll_transmit() {
        queue.push_back((1, true, c));
    }
    while !client.is_built() {
        let (to, from_prev, cell) = queue
            .pop_front()
            .context("the circuit stalled before it was built")?;
        let cell = wire(cell)?;
        if to == 0 {
            client.handle_cell(now, cell)?;
            while let Some(c) = client.poll_transmit() {
                queue.push_back((1, true, c));
            }
            continue;
        }
        let i = to - 1;
        if i == hops.len() {
            hops.push(Hop::accept(
                now,
                &secrets[i],
                &cell,
                seed(8 + i as u64),
                &mut replay[i],
                true,
            )?);
        } else if from_prev {
            hops[i].handle_prev(cell)?;
        } else {
            hops[i].handle_next(cell)?;
        }
        while let Some(ev) = hops[i].poll_event() {
            if let HopEvent::Extend { create, .. } = ev {
                queue.push_back((to + 1, true, create));
            }
        }
        while let Some((dir, c)) = hops[i].poll_transmit() {
            match dir {
                Direction::Prev => queue.push_back((to - 1, false, c)),
                Direction::Next => queue.push_back((to + 1, true, c)),
            }
        }
    }
    Ok(started.elapsed())
}

/// `warren bench onion`: 3-hop circuit build time (median, p90) on the sans-I/O machines and on
/// real loopback nodes, and `get --anon` throughput next to a direct `get` of the same file from
/// the same holder in the same run; the per-cell overhead.
pub async fn onion(size_mib: u64, builds: usize, rounds: usize, seed: u64) -> anyhow::Result<()> {
    use warren_protocol::onion::{CELL_LEN, MAX_DATA};
    let secrets: Vec<warren_protocol::OnionSecret> = (0..3u8)
        .map(|i| warren_protocol::OnionSecret::from_bytes([i + 7; 32]))
        .collect();
    let mut mem: Vec<f64> = Vec::new();
    for r in 0..builds.max(1) as u64 {
        mem.push(build_in_memory(&secrets, r)?.as_secs_f64() * 1e3);
    }
    let (m, p) = median_p90(&mut mem);
    println!(
        "3-hop circuit build, sans-I/O machines in memory ({builds} builds): median {m:.3} ms, p90 {p:.3} ms"
    );
    let overhead = (CELL_LEN - MAX_DATA) as f64 / CELL_LEN as f64;
    println!(
        "per-cell overhead: {} of {CELL_LEN} bytes = {:.2} % (1 command byte, 16-byte tag, 5-byte relay header)",
        CELL_LEN - MAX_DATA,
        overhead * 100.0
    );

    let exe = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("warren-bench-onion-{}", std::process::id()));
    let result = async {
        let roles = [
            "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
        ];
        let (children, dirs) = spawn_loopback_nodes(&exe, &tmp, 5, &roles).await?;
        let client = crate::cli::client::ApiClient::from_data_dir(&dirs[0])?;
        // Wait until node 0 knows every other node's record (the path candidates).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let peers: Vec<crate::api::PeerInfo> = client.get("/v1/peers").await?;
            if peers.len() == 4 && peers.iter().all(|p| p.roles.len() == 4) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the devnet did not converge in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let holder = crate::cli::client::ApiClient::from_data_dir(&dirs[1])?;
        // Circuit builds on loopback: small anonymous gets, build time as the client saw it.
        let small = tmp.join("small.bin");
        write_mixed_file(&small, 1024, seed)?;
        let put = crate::cli::transfer::put(&holder, &small, public_put(0), true).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..builds.clamp(1, 50) {
            let out = tmp.join(format!("small-{i}.bin"));
            crate::cli::transfer::get(&client, &put.cid, Some(&out), true, true).await?;
        }
        let circuits: Vec<crate::onion::CircuitView> = client.get("/v1/circuits").await?;
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
            let put = crate::cli::transfer::put(&holder, &f, public_put(0), true).await?;
            // Provider records go out asynchronously: let them land before the first lookup.
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (anon, into) in [(false, &mut direct), (true, &mut cold), (true, &mut warm)] {
                let out = tmp.join("out.bin");
                let started = Instant::now();
                let got = crate::cli::transfer::get(&client, &put.cid, Some(&out), true, anon).await?;
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

/// A pinned public put at `rf`, with no name.
fn public_put(rf: usize) -> crate::cli::transfer::PutRequest {
    crate::cli::transfer::PutRequest {
        name: None,
        media_type: None,
        pin: true,
        rf,
        class: warren_protocol::Class::Public,
        anon: false,
    }
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
