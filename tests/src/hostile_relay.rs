//! A hostile onion relay: a bare warren swarm (transport, Noise, Yamux, Kademlia, identify and a
//! signed node record offering the roles `gate` and `relay` with a real onion key) that carries
//! circuits with warren's own hop state machine ([`warren_protocol::onion::Hop`]), and answers
//! every `GET` with whatever bytes the test chooses instead of the file (issue 20, attack 1).
//! A client whose path has one hop (`onion_hops = 1`) builds its circuit to it directly.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio::sync::watch;
use warren_inference::hardware::Hardware;
use warren_node::config::{Config, KadMode};
use warren_node::net::{self, Client};
use warren_node::record::RecordBuilder;
use warren_protocol::onion::request::Request;
use warren_protocol::onion::{CELL_LEN, Cell, Direction, Hop, HopEvent, ReplayCache};
use warren_protocol::{ContentId, OnionSecret, PeerId, Role};

/// What the relay sends for a `GET` of a content id: the whole answer's bytes (`DATA`), then
/// `END` ok.
pub type Substitute = Arc<dyn Fn(ContentId) -> Vec<u8> + Send + Sync>;

/// A running hostile relay; it stops when dropped.
pub struct HostileRelay {
    /// Its command handle.
    pub client: Client,
    /// Its peer id.
    pub peer: PeerId,
    _stop: watch::Sender<bool>,
}

fn seed() -> [u8; 32] {
    let mut out = [0u8; 32];
    for part in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        part.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HostileRelay {
    /// Starts the relay on loopback on `network`, bootstrapped from `bootstrap`; every `GET` is
    /// answered with `answer(cid)`.
    pub async fn start(
        network: &str,
        bootstrap: Vec<Multiaddr>,
        answer: Substitute,
    ) -> anyhow::Result<Self> {
        let mut config = Config {
            network: network.into(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            bootstrap,
            kad_mode: KadMode::Server,
            ..Config::default()
        };
        config.roles = vec![Role::Gate, Role::Relay];
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let secret = Arc::new(OnionSecret::from_bytes(seed()));
        let hardware = Hardware {
            cpu_cores: 1,
            ram_bytes: 1 << 30,
            gpus: Vec::new(),
        };
        let records = RecordBuilder::new(&config, key.clone(), secret.public(), &hardware);
        let (client, mut event_loop) = net::build(&config, key, records)?;
        let ready = event_loop.on_ready();
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(event_loop.run(stop_rx));
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .context("the swarm did not come up in 30 s")??;
        let mut incoming = client
            .stream_control()
            .accept(warren_node::onion::PROTOCOL)
            .context("accepting onion links")?;
        tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                let (secret, answer) = (secret.clone(), answer.clone());
                tokio::spawn(async move {
                    let _ = carry(stream, &secret, &answer).await;
                });
            }
        });
        Ok(Self {
            client,
            peer,
            _stop: stop,
        })
    }
}

/// Carries one circuit as its only hop: answers `CREATE`, then each `GET` with the substitute.
async fn carry(
    stream: libp2p::Stream,
    secret: &OnionSecret,
    answer: &Substitute,
) -> anyhow::Result<()> {
    let (mut r, mut w) = stream.split();
    let mut buf = vec![0u8; CELL_LEN];
    r.read_exact(&mut buf).await?;
    let create = Cell::decode(&buf)?;
    let mut replay = ReplayCache::new();
    // The only hop: no previous hop to refuse an EXTEND to (an empty id).
    let mut hop = Hop::accept(now_secs(), secret, &create, seed(), &mut replay, true, &[])?;
    // Answers still going out: stream, bytes, how many sent, whether END went.
    let mut pending: Vec<(u16, Vec<u8>, usize, bool)> = Vec::new();
    loop {
        while let Some(ev) = hop.poll_event() {
            match ev {
                HopEvent::Begin { stream, request } => {
                    let bytes = match Request::decode(&request) {
                        Ok(Request::Get(cid)) => answer(cid),
                        _ => Vec::new(),
                    };
                    pending.push((stream, bytes, 0, false));
                }
                HopEvent::Closed { .. } => return Ok(()),
                _ => {}
            }
        }
        for (stream, bytes, sent, ended) in pending.iter_mut() {
            if *sent < bytes.len() {
                *sent += hop.send(*stream, &bytes[*sent..])?;
            }
            if *sent == bytes.len() && !*ended {
                hop.finish(*stream, &Ok(bytes.len().to_string()))?;
                *ended = true;
            }
        }
        let mut out = Vec::new();
        while let Some((dir, cell)) = hop.poll_transmit() {
            if dir == Direction::Prev {
                out.extend_from_slice(&cell.encode()?);
            }
        }
        if !out.is_empty() {
            w.write_all(&out).await?;
            w.flush().await?;
        }
        if hop.is_closed() {
            return Ok(());
        }
        r.read_exact(&mut buf).await?;
        hop.handle_prev(Cell::decode(&buf)?)?;
    }
}
