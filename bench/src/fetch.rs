//! `warren-bench fetch`: loopback `get` throughput of a file held by 1 and by 3 other nodes, next
//! to reference copies of the same bytes in the same run (plain TCP, libp2p streams, libp2p
//! request-response).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warren_node::cli::client::ApiClient;

use crate::nodes::{
    cpu_seconds, public_put, spawn_loopback_nodes_with, spread, sync_disks, write_mixed_file,
};

/// Copies `bytes` once over a loopback TCP connection; returns MiB/s. With `into`, the receiver
/// writes what it reads to that file and fsyncs it, as `warren get -o` does; otherwise it only
/// counts the bytes.
pub(crate) async fn plain_tcp_copy(
    bytes: Arc<Vec<u8>>,
    into: Option<&Path>,
) -> anyhow::Result<f64> {
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

/// Longest a reference copy of `warren-bench fetch` may take before it is reported as stuck.
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
            warren_node::net::protocols::blocks::Codec,
            [(
                warren_node::net::protocols::blocks::PROTOCOL_NAME,
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

/// `warren-bench fetch`: loopback `get` throughput of a file held by 1 and by 3 other nodes,
/// next to a plain TCP copy of the same bytes in the same run.
pub(crate) async fn fetch(
    exe: &Path,
    size_mib: u64,
    seed: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let rounds = rounds.max(1);
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
            fetch_over(exe, &dir, (transport, listen), run).await?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// One `warren-bench fetch` run: its file size, data seed, timed gets per source and the reference
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

/// The node half of `warren-bench fetch`: five nodes in `tmp` listening on `listen` only, a file held
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
    let origin = ApiClient::from_data_dir(&dirs[1])?;
    let fetcher = ApiClient::from_data_dir(&dirs[4])?;
    for (holders, seed_offset) in [(1usize, 0u64), (3, 1)] {
        // A different file per holder count, so no node has it cached.
        let f = tmp.join(format!("round-{holders}.bin"));
        write_mixed_file(&f, size_mib << 20, seed + 100 + seed_offset)?;
        let put =
            warren_node::cli::transfer::put(&origin, &f, public_put(holders - 1), true).await?;
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
                let n =
                    warren_node::cli::transfer::get(api, &put.cid, Some(&out), true, false).await?;
                rates.push(mib / started.elapsed().as_secs_f64());
                let after = cpu_seconds(&pids);
                for (c, (a, b)) in cpu.iter_mut().zip(after.iter().zip(&before)) {
                    *c += (a - b) / rounds as f64;
                }
                let _ = std::fs::remove_file(&out);
                anyhow::ensure!(n == size_mib << 20, "fetched {n} bytes");
                if node == 4 {
                    // Drop the fetched copy (cached, unpinned) for the next round.
                    let _: warren_node::api::GcView = fetcher.post("/v1/gc").await?;
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
