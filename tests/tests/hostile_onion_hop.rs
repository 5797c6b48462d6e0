//! Hostile clients against onion hops (issue 20, items 2, 3 and 9): three real node processes
//! A, B, C offering gate, middle and relay, and in-process peers that speak the onion link
//! protocol cell by cell with warren's own codec and crypto (`warren_protocol::onion`), so they
//! can send what an honest client never would.
//!
//! - slots: two peers open circuits to A until it refuses; an honest client must still get one;
//! - SENDME on a stream that was never opened must tear the circuit down (else a circuit lives
//!   for ever on SENDMEs);
//! - one source flooding B with handshakes gets refused once over its share of the replay cache,
//!   an honest client is not; a handshake whose clock is 4 minutes ahead is refused;
//! - an EXTEND back to the previous hop (A → B → A) is refused, and a circuit A, B, C, A, B, C,
//!   A, B, C (8 extensions) is cut at the 8th;
//! - item 9: after all this and an anonymous GET through C, no node's log names a hostile or
//!   honest peer, the client's clock, or (at the relay) the content id.
//!
//! Each check fails on 38fbb4c (`WARREN_TEST_NODE_BIN=/work/old-bin/warren-38fbb4c`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use libp2p::{PeerId, Stream};
use warren_node::net::Client;
use warren_protocol::onion::cell::{BODY_LEN, encode_extend};
use warren_protocol::onion::crypto::{ClientHandshake, apply_layer, recognized, seal};
use warren_protocol::onion::request::Request;
use warren_protocol::onion::{
    CELL_LEN, Cell, CreateOrigin, DestroyReason, RelayCommand, RelayPayload,
};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, cli_json, tcp_multiaddr};

const ROLES: [&str; 8] = [
    "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
];

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    s[..16].copy_from_slice(&t.to_be_bytes());
    s[16..24].copy_from_slice(
        &COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes(),
    );
    s
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One hop's keys and counters, kept by the raw client.
struct HopState {
    fkey: [u8; 32],
    fmac: [u8; 32],
    fctr: u64,
    bkey: [u8; 32],
    bmac: [u8; 32],
    bctr: u64,
}

/// A client that speaks the link cell by cell.
struct Raw {
    r: ReadHalf<Stream>,
    w: WriteHalf<Stream>,
    hops: Vec<HopState>,
}

/// What a hop answered.
#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug in failure messages
enum Got {
    Relay(usize, RelayPayload),
    Destroy(DestroyReason),
    Other(String),
}

async fn write_cell(w: &mut WriteHalf<Stream>, c: &Cell) -> anyhow::Result<()> {
    w.write_all(&c.encode()?).await?;
    w.flush().await?;
    Ok(())
}

impl Raw {
    /// Opens a link to `peer` and sends a CREATE whose clock is `clock`; Ok once CREATED.
    async fn open(
        client: &Client,
        peer: PeerId,
        onion_key: &[u8; 32],
        clock: u64,
    ) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .stream_control()
                .open_stream(peer, warren_node::onion::PROTOCOL),
        )
        .await
        .context("open timed out")?
        .map_err(|e| anyhow!("open: {e}"))?;
        let (r, mut w) = stream.split();
        let (hs, msg) = ClientHandshake::start(0, onion_key, seed(), clock)?;
        write_cell(
            &mut w,
            &Cell::Create {
                origin: CreateOrigin::Client,
                handshake: msg,
            },
        )
        .await?;
        let mut raw = Self {
            r,
            w,
            hops: Vec::new(),
        };
        match raw.read_cell(Duration::from_secs(5)).await? {
            Cell::Created { handshake } => {
                let k = hs.finish(&handshake)?;
                raw.push(k);
                Ok(raw)
            }
            Cell::Destroy { reason } => bail!("refused: DESTROY {reason}"),
            c => bail!("unexpected {c:?}"),
        }
    }

    fn push(&mut self, k: warren_protocol::onion::HopKeys) {
        self.hops.push(HopState {
            fkey: k.forward,
            fmac: k.forward_mac,
            fctr: 0,
            bkey: k.backward,
            bmac: k.backward_mac,
            bctr: 0,
        });
    }

    async fn read_cell(&mut self, timeout: Duration) -> anyhow::Result<Cell> {
        let mut buf = vec![0u8; CELL_LEN];
        tokio::time::timeout(timeout, self.r.read_exact(&mut buf))
            .await
            .context("no answer in time")?
            .context("link closed")?;
        Ok(Cell::decode(&buf)?)
    }

    /// Sends `p` to hop `hop`, as RELAY or RELAY_EARLY.
    async fn send(&mut self, hop: usize, p: RelayPayload, early: bool) -> anyhow::Result<()> {
        let mut body: Box<[u8; BODY_LEN]> = p.encode()?;
        let t = &self.hops[hop];
        seal(&t.fmac, t.fctr, &mut body);
        for i in (0..=hop).rev() {
            let h = &mut self.hops[i];
            apply_layer(&h.fkey, h.fctr, &mut body);
            h.fctr += 1;
        }
        let cell = if early {
            Cell::RelayEarly { body }
        } else {
            Cell::Relay { body }
        };
        write_cell(&mut self.w, &cell).await
    }

    /// The next cell from the gate, unwrapped.
    async fn recv(&mut self, timeout: Duration) -> anyhow::Result<Got> {
        Ok(match self.read_cell(timeout).await? {
            Cell::Relay { mut body } => {
                for i in 0..self.hops.len() {
                    let h = &mut self.hops[i];
                    apply_layer(&h.bkey, h.bctr, &mut body);
                    let c = h.bctr;
                    h.bctr += 1;
                    if recognized(&h.bmac, c, &body) {
                        return Ok(Got::Relay(i, RelayPayload::decode(&body)?));
                    }
                }
                Got::Other("an unrecognized relay cell".into())
            }
            Cell::Destroy { reason } => Got::Destroy(reason),
            c => Got::Other(format!("{c:?}")),
        })
    }

    /// Extends the circuit to `peer`; Ok once EXTENDED.
    async fn extend(
        &mut self,
        peer: PeerId,
        onion_key: &[u8; 32],
        early: bool,
    ) -> anyhow::Result<()> {
        let n = self.hops.len();
        let (hs, msg) = ClientHandshake::start(n, onion_key, seed(), now_secs())?;
        let data = encode_extend(&peer.to_bytes(), &msg)?;
        self.send(
            n - 1,
            RelayPayload {
                command: RelayCommand::Extend,
                stream: 0,
                data,
            },
            early,
        )
        .await?;
        match self.recv(Duration::from_secs(10)).await? {
            Got::Relay(i, p) if i == n - 1 && p.command == RelayCommand::Extended => {
                let k = hs.finish(&p.data)?;
                self.push(k);
                Ok(())
            }
            got => bail!("extension {n} refused: {got:?}"),
        }
    }

    async fn close(mut self) {
        let _ = write_cell(
            &mut self.w,
            &Cell::Destroy {
                reason: DestroyReason::Requested,
            },
        )
        .await;
        let _ = self.w.close().await;
    }
}

struct Target {
    peer: PeerId,
    key: [u8; 32],
}

/// Builds `path` (gate first), extending in RELAY_EARLY cells, or in RELAY cells where the
/// hops do not know RELAY_EARLY (38fbb4c): an attacker speaks whatever the hops accept. Returns
/// the hops built and why it stopped, if it did.
async fn build(client: &Client, path: &[&Target]) -> (usize, Option<String>) {
    let mut last = (0, None);
    for early in [true, false] {
        let mut raw = match Raw::open(client, path[0].peer, &path[0].key, now_secs()).await {
            Ok(r) => r,
            Err(e) => return (0, Some(e.to_string())),
        };
        let mut stop = None;
        for t in &path[1..] {
            if let Err(e) = raw.extend(t.peer, &t.key, early).await {
                stop = Some(e.to_string());
                break;
            }
        }
        let built = raw.hops.len();
        raw.close().await;
        if early && built == 1 && path.len() > 1 && stop.is_some() {
            // The gate refused the first RELAY_EARLY cell itself: an old hop. Try RELAY.
            last = (built, stop);
            continue;
        }
        return (built, stop);
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_cannot_shut_loop_or_fingerprint_onion_hops() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let a = NodeProcess::start(&bin, &a_dir, &ROLES).unwrap();
    let a_status = cli_json(&bin, &a_dir, &["status"]).unwrap();
    let boot = tcp_multiaddr(&a_status).unwrap();
    let mut dirs = vec![a_dir];
    let mut procs = vec![a];
    for name in ["b", "c"] {
        let dir = tmp.path().join(name);
        let mut args = ROLES.to_vec();
        args.extend(["--bootstrap", &boot]);
        procs.push(NodeProcess::start(&bin, &dir, &args).unwrap());
        dirs.push(dir);
    }
    let ids: Vec<String> = dirs
        .iter()
        .map(|d| {
            cli_json(&bin, d, &["status"]).unwrap()["peer_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let boot_addr: libp2p::Multiaddr = boot.parse().unwrap();
    let mut peers = Vec::new();
    for name in ["mallory", "mallet", "alice"] {
        let h = Hostile::start(
            &tmp.path().join(name),
            "local",
            vec![boot_addr.clone()],
            0,
            |_| {},
        )
        .await
        .unwrap();
        peers.push(h);
    }
    let (mallory, mallet, alice) = (&peers[0], &peers[1], &peers[2]);
    // Everyone sees the three hops' records (their onion keys).
    let mut targets: Vec<Target> = Vec::new();
    for h in &peers {
        for d in &dirs[1..] {
            let s = cli_json(&bin, d, &["status"]).unwrap();
            let addr: libp2p::Multiaddr = tcp_multiaddr(&s).unwrap().parse().unwrap();
            h.connect(addr, Duration::from_secs(10)).await.unwrap();
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for h in &peers {
        loop {
            let (_, c) = h.client().onion_candidates().await.unwrap();
            let found: Vec<Target> = ids
                .iter()
                .filter_map(|id| {
                    c.iter()
                        .find(|c| c.peer.to_string() == *id)
                        .map(|c| Target {
                            peer: c.peer,
                            key: c.onion_key,
                        })
                })
                .collect();
            if found.len() == 3 {
                targets = found;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hops' records did not arrive"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (ta, tb, tc) = (&targets[0], &targets[1], &targets[2]);
    let mut failures: Vec<String> = Vec::new();

    // 1. Slots: two peers open circuits to A until it refuses them.
    let mut held = Vec::new();
    let mut per_peer = Vec::new();
    for h in [mallory, mallet] {
        let mut n = 0;
        for _ in 0..300 {
            if let Ok(r) = Raw::open(h.client(), ta.peer, &ta.key, now_secs()).await {
                n += 1;
                held.push(r);
            }
        }
        per_peer.push(n);
    }
    println!("circuits A carried for mallory, mallet: {per_peer:?}");
    match Raw::open(alice.client(), ta.peer, &ta.key, now_secs()).await {
        Ok(r) => r.close().await,
        Err(e) => failures.push(format!(
            "slots: the honest client is locked out of A by {per_peer:?} hostile circuits: {e}"
        )),
    }
    if per_peer.iter().any(|n| *n > 32) {
        failures.push(format!(
            "slots: one peer holds more than 32 circuits at A: {per_peer:?}"
        ));
    }
    for r in held {
        r.close().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. A SENDME on a stream never opened.
    let mut raw = Raw::open(mallory.client(), ta.peer, &ta.key, now_secs())
        .await
        .unwrap();
    raw.send(
        0,
        RelayPayload {
            command: RelayCommand::Sendme,
            stream: 77,
            data: Vec::new(),
        },
        false,
    )
    .await
    .unwrap();
    match raw.recv(Duration::from_secs(3)).await {
        Ok(Got::Destroy(DestroyReason::Protocol)) => {}
        other => failures.push(format!(
            "sendme: a SENDME on stream 77 (never opened) did not tear the circuit down: {other:?}"
        )),
    }
    drop(raw);

    // 3. The replay cache: one source floods B with handshakes; then a clock 4 minutes ahead.
    let mut accepted = 0;
    let mut refused_at = None;
    for i in 0..1100 {
        match Raw::open(mallory.client(), tb.peer, &tb.key, now_secs()).await {
            Ok(r) => {
                accepted += 1;
                r.close().await;
            }
            Err(_) => {
                refused_at.get_or_insert(i);
            }
        }
    }
    println!("replay flood: B accepted {accepted} of 1100 handshakes from mallory");
    if refused_at.is_none() {
        failures.push(format!(
            "replay: B took all {accepted} handshakes from one source (no per-source share)"
        ));
    }
    if let Err(e) = Raw::open(alice.client(), tb.peer, &tb.key, now_secs()).await {
        failures.push(format!(
            "replay: the honest client was refused by B after the flood: {e}"
        ));
    }
    let ahead = now_secs() + 250;
    if let Ok(r) = Raw::open(alice.client(), tb.peer, &tb.key, ahead).await {
        failures.push("replay: B accepted a handshake clock 250 s ahead of its own".into());
        r.close().await;
    }
    let far = now_secs() + 1000;
    let far_rounded = warren_protocol::onion::handshake_clock(far);
    assert!(
        Raw::open(alice.client(), tb.peer, &tb.key, far)
            .await
            .is_err()
    );

    // 4. Loops: A → B → A, and A, B, C, A, B, C, A, B, C (8 extensions).
    let (built, why) = build(mallory.client(), &[ta, tb, ta]).await;
    if built == 3 {
        failures.push("loop: the circuit A → B → A was built".into());
    } else {
        println!("A → B → A stopped after {built} hops: {why:?}");
    }
    let long = [ta, tb, tc, ta, tb, tc, ta, tb, tc];
    let (built, why) = build(mallory.client(), &long).await;
    println!("A, B, C × 3 stopped after {built} hops: {why:?}");
    if built != warren_protocol::onion::MAX_HOPS {
        failures.push(format!(
            "extensions: a 9-hop circuit got {built} hops (want {} and a refusal)",
            warren_protocol::onion::MAX_HOPS
        ));
    }

    // 5. An anonymous GET through C (1-hop circuit): the relay fetches a file held by B.
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, warren_tests::test_bytes(20_000, 3, false)).unwrap();
    let put = cli_json(
        &bin,
        &dirs[1],
        &["put", file.to_str().unwrap(), "--rf", "0"],
    )
    .unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut raw = Raw::open(alice.client(), tc.peer, &tc.key, now_secs())
        .await
        .unwrap();
    raw.send(
        0,
        RelayPayload {
            command: RelayCommand::Begin,
            stream: 1,
            data: Request::Get(cid.parse().unwrap()).encode().unwrap(),
        },
        false,
    )
    .await
    .unwrap();
    let mut got = 0;
    loop {
        match raw.recv(Duration::from_secs(20)).await.unwrap() {
            Got::Relay(_, p) if p.command == RelayCommand::Data => got += p.data.len(),
            Got::Relay(_, p) if p.command == RelayCommand::Sendme => {}
            Got::Relay(_, p) if p.command == RelayCommand::End => break,
            other => panic!("GET through C: {other:?}"),
        }
    }
    assert!(got > 20_000, "{got} bytes");
    raw.close().await;

    // 6. Logs (item 9): no peer of the attacks, no client clock, no content id at the relay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outsiders: Vec<String> = peers.iter().map(|h| h.peer_id().to_string()).collect();
    for (i, p) in procs.iter().enumerate() {
        let log = p.log();
        for o in &outsiders {
            if let Some(line) = log.lines().find(|l| l.contains(o.as_str())) {
                failures.push(format!("logs: node {i} names a client's peer: {line}"));
            }
        }
        for t in [far.to_string(), far_rounded.to_string()] {
            if let Some(line) = log.lines().find(|l| l.contains(&t)) {
                failures.push(format!("logs: node {i} logs a client's clock: {line}"));
            }
        }
    }
    if let Some(line) = procs[2].log().lines().find(|l| l.contains(&cid)) {
        failures.push(format!(
            "logs: the relay C logs the content id it fetched: {line}"
        ));
    }

    for h in peers {
        h.stop().await;
    }
    for p in procs {
        let _ = p.stop();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
