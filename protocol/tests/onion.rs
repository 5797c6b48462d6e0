//! Onion circuits driven in memory: a client and three hops exchange real cells (encoded to bytes
//! and decoded again on every link), with what each hop saw recorded so that its view can be
//! checked; and the hex test vectors of `spec/onion.md`.
//!
//! To regenerate the vector blocks after a deliberate format change:
//! `cargo test -p warren-protocol --test onion -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::collections::{HashMap, VecDeque};

use warren_protocol::onion::cell::decode_end;
use warren_protocol::onion::crypto::{self, ClientHandshake, HopKeys};
use warren_protocol::onion::request::Request;
use warren_protocol::onion::{
    CELL_LEN, Cell, Client, ClientEvent, DestroyReason, Direction, Hop, HopEvent, HopPosition,
    HopTarget, MAX_DATA, OnionError, ReplayCache,
};
use warren_protocol::{Codec, ContentId, OnionSecret, PeerId, keypair_from_secret};

const NOW: u64 = 1_700_000_000;
const PAGE: &str = include_str!("../../spec/onion.md");

fn peer(i: u8) -> PeerId {
    keypair_from_secret([i; 32]).public().to_peer_id()
}

/// What may happen to a cell on a link: (from node, to node, cell bytes, index of this cell on
/// that link) → cells delivered instead.
type Tamper = Box<dyn FnMut(usize, usize, Vec<u8>, usize) -> Vec<Vec<u8>>>;

/// Node 0 is the client, nodes 1..=n the hops; link k joins nodes k-1 and k.
struct Net {
    client: Client,
    hops: Vec<Option<Hop>>,
    secrets: Vec<OnionSecret>,
    replay: Vec<ReplayCache>,
    peers: Vec<PeerId>,
    /// Every cell (bytes) each node received, and the events each hop emitted.
    seen: Vec<Vec<Vec<u8>>>,
    hop_events: Vec<Vec<HopEvent>>,
    client_events: Vec<ClientEvent>,
    /// The relay's files, served to GET.
    files: HashMap<ContentId, Vec<u8>>,
    /// Answers the relay's runner still has to send: stream → bytes left.
    outgoing: HashMap<u16, Vec<u8>>,
    /// PUT uploads in progress at the relay: stream → bytes so far.
    uploads: HashMap<u16, Vec<u8>>,
    requests: HashMap<u16, Request>,
    queue: VecDeque<(usize, usize, Vec<u8>)>,
    link_count: HashMap<(usize, usize), usize>,
    tamper: Option<Tamper>,
    seed: u8,
}

impl Net {
    fn new(n: usize) -> Self {
        let secrets: Vec<OnionSecret> = (0..n)
            .map(|i| OnionSecret::from_bytes([0x40 + i as u8; 32]))
            .collect();
        let peers: Vec<PeerId> = (0..=n).map(|i| peer(i as u8 + 1)).collect();
        let path = (0..n)
            .map(|i| HopTarget {
                peer: peers[i + 1].to_bytes(),
                onion_key: secrets[i].public(),
            })
            .collect();
        let seeds = (0..n).map(|i| [0x80 + i as u8; 32]).collect();
        let client = Client::new(path, seeds, NOW).unwrap();
        Self {
            client,
            hops: (0..n).map(|_| None).collect(),
            secrets,
            replay: (0..n).map(|_| ReplayCache::new()).collect(),
            peers,
            seen: vec![Vec::new(); n + 1],
            hop_events: vec![Vec::new(); n + 1],
            client_events: Vec::new(),
            files: HashMap::new(),
            outgoing: HashMap::new(),
            uploads: HashMap::new(),
            requests: HashMap::new(),
            queue: VecDeque::new(),
            link_count: HashMap::new(),
            tamper: None,
            seed: 1,
        }
    }

    fn send(&mut self, from: usize, to: usize, cell: Cell) {
        let bytes = cell.encode().unwrap();
        assert_eq!(bytes.len(), CELL_LEN);
        let k = self.link_count.entry((from, to)).or_default();
        let index = *k;
        *k += 1;
        let out = match self.tamper.as_mut() {
            Some(t) => t(from, to, bytes, index),
            None => vec![bytes],
        };
        for b in out {
            self.queue.push_back((from, to, b));
        }
    }

    /// Runs until nothing moves; panics on livelock.
    fn drive(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("livelock: the circuit never went quiet");
    }

    fn step(&mut self) -> bool {
        let mut moved = false;
        while let Some(c) = self.client.poll_transmit() {
            self.send(0, 1, c);
            moved = true;
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
            moved = true;
        }
        for i in 0..self.hops.len() {
            let node = i + 1;
            let mut cells = Vec::new();
            let mut events = Vec::new();
            if let Some(h) = self.hops[i].as_mut() {
                while let Some(t) = h.poll_transmit() {
                    cells.push(t);
                }
                while let Some(e) = h.poll_event() {
                    events.push(e);
                }
            }
            for (dir, c) in cells {
                moved = true;
                let to = match dir {
                    Direction::Prev => node - 1,
                    Direction::Next => node + 1,
                };
                self.send(node, to, c);
            }
            for e in events {
                moved = true;
                self.hop_events[node].push(e.clone());
                self.runner(node, e);
            }
            moved |= self.pump_runner(node);
        }
        if let Some((from, to, bytes)) = self.queue.pop_front() {
            moved = true;
            self.seen[to].push(bytes.clone());
            let cell = Cell::decode(&bytes).unwrap();
            if to == 0 {
                let _ = self.client.handle_cell(NOW, cell);
            } else {
                let i = to - 1;
                match self.hops[i].as_mut() {
                    None => {
                        self.seed = self.seed.wrapping_add(1);
                        let h = Hop::accept(
                            NOW,
                            &self.secrets[i],
                            &cell,
                            [self.seed; 32],
                            &mut self.replay[i],
                            true,
                            &self.peers[from].to_bytes(),
                        )
                        .unwrap();
                        self.hops[i] = Some(h);
                    }
                    Some(h) => {
                        let _ = if from < to {
                            h.handle_prev(cell)
                        } else {
                            h.handle_next(cell)
                        };
                    }
                }
            }
        }
        moved
    }

    /// The relay's runner in this harness: GET serves from `files`, PUT echoes a content id.
    fn runner(&mut self, node: usize, e: HopEvent) {
        match e {
            HopEvent::Extend { peer, create } => {
                let next = self
                    .peers
                    .iter()
                    .position(|p| p.to_bytes() == peer)
                    .unwrap();
                assert_eq!(next, node + 1, "a hop extends only to the next one");
                self.send(node, next, create);
            }
            HopEvent::Begin { stream, request } => {
                let r = Request::decode(&request).unwrap();
                self.requests.insert(stream, r);
            }
            HopEvent::StreamData { stream, data } => {
                self.uploads.entry(stream).or_default().extend(data);
            }
            HopEvent::StreamEnd { stream } => {
                let h = self.hops[node - 1].as_mut().unwrap();
                match self.requests.remove(&stream) {
                    Some(Request::Get(cid)) => match self.files.get(&cid) {
                        Some(f) => {
                            self.outgoing.insert(stream, f.clone());
                        }
                        None => h.finish(stream, &Err(format!("{cid} not found"))).unwrap(),
                    },
                    Some(Request::Put { .. }) => {
                        let bytes = self.uploads.remove(&stream).unwrap_or_default();
                        let cid = ContentId::of_block(Codec::Raw, &bytes);
                        self.files.insert(cid, bytes);
                        h.finish(stream, &Ok(cid.to_string())).unwrap();
                    }
                    Some(Request::Infer(_)) | None => h
                        .finish(stream, &Err("inference not available on this node".into()))
                        .unwrap(),
                }
            }
            HopEvent::Closed { .. } => {}
        }
    }

    fn pump_runner(&mut self, node: usize) -> bool {
        let Some(h) = self.hops[node - 1].as_mut() else {
            return false;
        };
        if h.is_closed() {
            return false;
        }
        let mut moved = false;
        let streams: Vec<u16> = self.outgoing.keys().copied().collect();
        for s in streams {
            let left = self.outgoing.get_mut(&s).unwrap();
            let n = h.send(s, left).unwrap();
            if n > 0 {
                moved = true;
                left.drain(..n);
            }
            if left.is_empty() {
                self.outgoing.remove(&s);
                let len = self.files.values().next().map_or(0, Vec::len);
                h.finish(s, &Ok(len.to_string())).unwrap();
                moved = true;
            }
        }
        moved
    }

    fn hop(&self, node: usize) -> &Hop {
        self.hops[node - 1].as_ref().unwrap()
    }

    fn received(&self, stream: u16) -> (Vec<u8>, Option<Result<String, String>>) {
        let mut data = Vec::new();
        let mut end = None;
        for e in &self.client_events {
            match e {
                ClientEvent::StreamData { stream: s, data: d } if *s == stream => data.extend(d),
                ClientEvent::StreamEnd { stream: s, result } if *s == stream => {
                    end = Some(result.clone())
                }
                _ => {}
            }
        }
        (data, end)
    }

    fn closed_error(&self) -> Option<OnionError> {
        self.client_events.iter().find_map(|e| match e {
            ClientEvent::Closed { error } => Some(error.clone()),
            _ => None,
        })
    }
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8 ^ 0x5a).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

fn built(n: usize) -> Net {
    let mut net = Net::new(n);
    net.drive();
    assert!(net.client.is_built(), "{:?}", net.client_events);
    assert!(net.client_events.contains(&ClientEvent::Built));
    net
}

fn get(net: &mut Net, cid: ContentId) -> u16 {
    let s = net
        .client
        .open_stream(&Request::Get(cid).encode().unwrap())
        .unwrap();
    net.client.finish(s).unwrap();
    net.drive();
    s
}

#[test]
fn three_hop_get_and_what_each_hop_sees() {
    let mut net = built(3);
    let body = file(2_600_000); // > the stream window: SENDMEs must flow
    let cid = ContentId::of_block(Codec::Raw, &body);
    net.files.insert(cid, body.clone());
    let s = get(&mut net, cid);
    let (data, end) = net.received(s);
    assert_eq!(data.len(), body.len());
    assert!(data == body, "the file arrives byte-identical");
    assert_eq!(end, Some(Ok(body.len().to_string())));

    assert_eq!(net.hop(1).position(), HopPosition::Gate);
    assert_eq!(net.hop(2).position(), HopPosition::Middle);
    assert_eq!(net.hop(3).position(), HopPosition::Relay);

    let cid_bytes = cid.to_bytes();
    let request = Request::Get(cid).encode().unwrap();
    let sample = &body[1000..1032];
    let client_peer = net.peers[0].to_bytes();
    let gate_peer = net.peers[1].to_bytes();
    // The gate and the middle hop: only cells, never the request, the CID or the file's bytes, and
    // no stream ever opened at them.
    for node in [1, 2] {
        for c in &net.seen[node] {
            assert!(!contains(c, &cid_bytes), "hop {node} saw the CID");
            assert!(!contains(c, &request), "hop {node} saw the request");
            assert!(!contains(c, sample), "hop {node} saw file bytes");
        }
        assert!(
            net.hop_events[node]
                .iter()
                .all(|e| matches!(e, HopEvent::Extend { .. })),
            "hop {node} got {:?}",
            net.hop_events[node]
        );
        assert_eq!(net.hop(node).streams(), 0);
    }
    // The gate decrypted exactly one cell addressed to it (the EXTEND to the middle); the middle
    // one (the EXTEND to the relay); everything else they passed on as ciphertext.
    assert_eq!(net.hop(1).view().own, 1);
    assert_eq!(net.hop(2).view().own, 1);
    assert!(net.hop(2).view().forwarded_prev > 2590);
    // A cell changes completely at every hop: the cells the middle hop got share no 32-byte run
    // with the ones the gate got (nothing to link them by content).
    let gate_cells: Vec<&Vec<u8>> = net.seen[1].iter().filter(|c| c[0] == 3).collect();
    for c in net.seen[2].iter().filter(|c| c[0] == 3).take(50) {
        for g in gate_cells.iter().take(50) {
            assert!(!contains(g, &c[100..132]));
        }
    }
    // The relay saw the request, but never the client's (or the gate's) peer id.
    assert!(
        net.hop_events[3]
            .iter()
            .any(|e| matches!(e, HopEvent::Begin { .. }))
    );
    for c in &net.seen[3] {
        assert!(!contains(c, &client_peer));
        assert!(!contains(c, &gate_peer));
    }
    for e in &net.hop_events[3] {
        if let HopEvent::Begin { request, .. } = e {
            assert!(!contains(request, &client_peer));
        }
    }
}

#[test]
fn streams_multiplex_put_then_get_and_the_inference_hook_refuses() {
    let mut net = built(3);
    let up = file(5000);
    let put = net
        .client
        .open_stream(
            &Request::Put {
                name: Some("a.bin".into()),
            }
            .encode()
            .unwrap(),
        )
        .unwrap();
    let infer = net
        .client
        .open_stream(&Request::Infer(b"job".to_vec()).encode().unwrap())
        .unwrap();
    assert_eq!(net.client.send(put, &up).unwrap(), up.len());
    net.client.finish(put).unwrap();
    net.client.finish(infer).unwrap();
    net.drive();
    let (_, end) = net.received(put);
    let cid: ContentId = end.unwrap().unwrap().parse().unwrap();
    assert_eq!(cid, ContentId::of_block(Codec::Raw, &up));
    let (_, end) = net.received(infer);
    assert_eq!(
        end,
        Some(Err("inference not available on this node".into()))
    );
    let s = get(&mut net, cid);
    assert_eq!(net.received(s).0, up);
}

/// Builds a circuit, then opens a GET whose cells on link `from → to` get `tamper`ed.
fn attacked(
    from: usize,
    to: usize,
    mut f: impl FnMut(Vec<u8>, usize) -> Vec<Vec<u8>> + 'static,
) -> Net {
    let mut net = built(3);
    let body = file(300_000);
    let cid = ContentId::of_block(Codec::Raw, &body);
    net.files.insert(cid, body);
    // Count from now on: the link's index restarts at the attack.
    let start = *net.link_count.get(&(from, to)).unwrap_or(&0);
    net.tamper = Some(Box::new(move |a, b, bytes, i| {
        if (a, b) == (from, to) && i >= start && bytes[0] == 3 {
            f(bytes, i - start)
        } else {
            vec![bytes]
        }
    }));
    let s = net
        .client
        .open_stream(&Request::Get(cid).encode().unwrap())
        .unwrap();
    net.client.finish(s).unwrap();
    net.drive();
    net
}

fn assert_torn_down(net: &Net, reason: DestroyReason) {
    let err = net
        .closed_error()
        .expect("the client saw the circuit close");
    match (&err, reason) {
        (OnionError::Destroyed { reason: r }, _) => assert_eq!(*r, reason, "{err}"),
        (OnionError::Integrity { .. }, DestroyReason::Integrity) => {}
        _ => panic!("unexpected {err}"),
    }
    assert!(err.to_string().contains("integrity"), "{err}");
    for node in 1..=3 {
        assert!(net.hop(node).is_closed(), "hop {node} still open");
    }
}

#[test]
fn a_tampered_forward_cell_tears_the_circuit_down_at_the_relay() {
    let net = attacked(1, 2, |mut b, i| {
        if i == 0 {
            b[500] ^= 1;
        }
        vec![b]
    });
    assert_torn_down(&net, DestroyReason::Integrity);
    let relay_err = net.hop_events[3].iter().find_map(|e| match e {
        HopEvent::Closed { error } => Some(error.clone()),
        _ => None,
    });
    assert!(
        matches!(
            relay_err,
            Some(OnionError::Integrity {
                direction: "forward",
                ..
            })
        ),
        "{relay_err:?}"
    );
}

#[test]
fn a_replayed_forward_cell_tears_the_circuit_down() {
    let net = attacked(
        2,
        3,
        |b, i| if i == 0 { vec![b.clone(), b] } else { vec![b] },
    );
    assert_torn_down(&net, DestroyReason::Integrity);
}

#[test]
fn misordered_backward_cells_tear_the_circuit_down_at_the_client() {
    let mut held: Option<Vec<u8>> = None;
    let net = attacked(2, 1, move |b, i| match i {
        3 => {
            held = Some(b);
            vec![]
        }
        4 => vec![b, held.take().unwrap()],
        _ => vec![b],
    });
    let err = net.closed_error().unwrap();
    assert!(
        matches!(
            err,
            OnionError::Integrity {
                direction: "backward",
                ..
            }
        ),
        "{err}"
    );
    assert_torn_down(&net, DestroyReason::Integrity);
}

#[test]
fn a_tampered_backward_cell_is_caught_by_the_client() {
    let net = attacked(1, 0, |mut b, i| {
        if i == 2 {
            b[1023] ^= 0x80;
        }
        vec![b]
    });
    assert!(matches!(
        net.closed_error(),
        Some(OnionError::Integrity { .. })
    ));
    assert_torn_down(&net, DestroyReason::Integrity);
}

#[test]
fn a_replayed_handshake_is_refused() {
    let net = built(3);
    let create = Cell::decode(&net.seen[1][0]).unwrap();
    assert!(matches!(create, Cell::Create { .. }));
    let mut replay = std::mem::take(&mut { net }.replay[0]);
    let err = Hop::accept(
        NOW + 5,
        &OnionSecret::from_bytes([0x40; 32]),
        &create,
        [9; 32],
        &mut replay,
        true,
        b"someone else",
    )
    .unwrap_err();
    assert!(matches!(err, OnionError::Replay { .. }), "{err}");
    assert!(err.to_string().contains("seen before"), "{err}");
}

#[test]
fn a_handshake_for_another_key_fails() {
    let (_, msg) =
        ClientHandshake::start(0, &OnionSecret::from_bytes([1; 32]).public(), [2; 32], NOW)
            .unwrap();
    let err = crypto::respond(
        &OnionSecret::from_bytes([3; 32]),
        &msg,
        [4; 32],
        NOW,
        &mut ReplayCache::new(),
        b"client",
    )
    .unwrap_err();
    assert!(matches!(err, OnionError::Handshake { .. }), "{err}");
}

#[test]
fn send_stops_at_the_stream_window() {
    // The client may not send more DATA than the relay's window: `send` stops at the window.
    let mut net = built(1);
    let s = net
        .client
        .open_stream(&Request::Put { name: None }.encode().unwrap())
        .unwrap();
    let big = vec![7u8; MAX_DATA * 2500];
    let n = net.client.send(s, &big).unwrap();
    assert_eq!(n, MAX_DATA * warren_protocol::onion::STREAM_WINDOW as usize);
    assert_eq!(net.client.writable(s), 0);
}

// ---------------------------------------------------------------------------------------------
// Loops and extension limits: a path of node ids (a node may appear twice), each hop told which
// peer its CREATE came from.

/// What happened to a chain: the client's events and every hop's first error.
struct Chain {
    client: Client,
    hops: Vec<Hop>,
    events: Vec<ClientEvent>,
    errors: Vec<(usize, OnionError)>,
}

fn node_secret(id: u8) -> OnionSecret {
    OnionSecret::from_bytes([0x60 + id; 32])
}

/// Builds a circuit along `ids` (node 0 is the client); `rewrite` may change each cell the
/// client sends to the gate.
fn chain(ids: &[u8], mut rewrite: impl FnMut(Cell) -> Cell) -> Chain {
    let path = ids
        .iter()
        .map(|&i| HopTarget {
            peer: peer(i).to_bytes(),
            onion_key: node_secret(i).public(),
        })
        .collect();
    let seeds = (0..ids.len()).map(|i| [0x90 + i as u8; 32]).collect();
    let mut ch = Chain {
        client: Client::new(path, seeds, NOW).unwrap(),
        hops: Vec::new(),
        events: Vec::new(),
        errors: Vec::new(),
    };
    let mut replay: HashMap<u8, ReplayCache> = HashMap::new();
    // (to: 0 = client, k = hop k-1; from the previous side?; cell)
    let mut queue: VecDeque<(usize, bool, Cell)> = VecDeque::new();
    for _ in 0..10_000 {
        while let Some(c) = ch.client.poll_transmit() {
            queue.push_back((1, true, rewrite(c)));
        }
        while let Some(e) = ch.client.poll_event() {
            ch.events.push(e);
        }
        for i in 0..ch.hops.len() {
            while let Some(e) = ch.hops[i].poll_event() {
                if let HopEvent::Extend { peer: p, create } = e {
                    assert_eq!(p, peer(ids[i + 1]).to_bytes());
                    queue.push_back((i + 2, true, create));
                }
            }
            while let Some((dir, c)) = ch.hops[i].poll_transmit() {
                match dir {
                    Direction::Prev => queue.push_back((i, false, c)),
                    Direction::Next => queue.push_back((i + 2, true, c)),
                }
            }
        }
        let Some((to, from_prev, cell)) = queue.pop_front() else {
            return ch;
        };
        if to == 0 {
            let _ = ch.client.handle_cell(NOW, cell);
            continue;
        }
        let i = to - 1;
        let r = if i == ch.hops.len() {
            let prev = if i == 0 { peer(0) } else { peer(ids[i - 1]) };
            Hop::accept(
                NOW,
                &node_secret(ids[i]),
                &cell,
                [0xa0 + i as u8; 32],
                replay.entry(ids[i]).or_default(),
                true,
                &prev.to_bytes(),
            )
            .map(|h| ch.hops.push(h))
        } else if from_prev {
            ch.hops[i].handle_prev(cell)
        } else {
            ch.hops[i].handle_next(cell)
        };
        if let Err(e) = r {
            ch.errors.push((i, e));
        }
    }
    panic!("livelock")
}

#[test]
fn extends_travel_in_relay_early_cells_and_distinct_hops_make_a_circuit() {
    let mut earlies = 0;
    let ch = chain(&[1, 2, 3, 1, 2, 3, 1, 2], |c| {
        earlies += usize::from(matches!(c, Cell::RelayEarly { .. }));
        c
    });
    assert!(ch.client.is_built(), "{:?} {:?}", ch.events, ch.errors);
    assert_eq!(earlies, 7, "one RELAY_EARLY per extension");
}

#[test]
fn an_extend_back_to_the_previous_hop_is_refused() {
    let ch = chain(&[1, 2, 1], |c| c);
    assert!(!ch.client.is_built());
    let (hop, e) = &ch.errors[0];
    assert_eq!(*hop, 1, "the middle refuses");
    assert!(e.to_string().contains("previous hop"), "{e}");
    assert!(ch.events.iter().any(|e| matches!(
        e,
        ClientEvent::Closed {
            error: OnionError::Destroyed {
                reason: DestroyReason::Protocol
            }
        }
    )));
    assert!(ch.hops.iter().all(Hop::is_closed));
}

#[test]
fn an_extend_outside_relay_early_is_refused() {
    let ch = chain(&[1, 2], |c| match c {
        Cell::RelayEarly { body } => Cell::Relay { body },
        c => c,
    });
    assert!(!ch.client.is_built());
    assert!(
        ch.errors[0].1.to_string().contains("RELAY_EARLY"),
        "{:?}",
        ch.errors
    );
}

#[test]
fn a_hop_passes_at_most_max_relay_early_cells() {
    // A client that cheats with more extensions than MAX_HOPS allows: after a 2-hop build
    // (1 RELAY_EARLY), send RELAY_EARLY cells with junk the gate passes on, until it refuses.
    let mut sent = 1;
    let junk = Cell::RelayEarly {
        body: Box::new([7u8; CELL_LEN - 1]),
    };
    let mut ch = chain(&[1, 2], |c| c);
    assert!(ch.client.is_built());
    let gate = &mut ch.hops[0];
    let mut refused = None;
    for _ in 0..20 {
        sent += 1;
        if let Err(e) = gate.handle_prev(junk.clone()) {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the gate refused at some point");
    assert_eq!(sent, warren_protocol::onion::MAX_RELAY_EARLY as usize + 1);
    assert!(matches!(e, OnionError::Limit { .. }), "{e}");
    // Passed on as RELAY_EARLY, so the next hop counts them too.
    let forwarded: Vec<_> = std::iter::from_fn(|| gate.poll_transmit()).collect();
    assert!(
        forwarded
            .iter()
            .any(|(d, c)| *d == Direction::Next && matches!(c, Cell::RelayEarly { .. }))
    );
    // And a RELAY_EARLY from the next hop is a violation.
    let mut ch = chain(&[1, 2], |c| c);
    let e = ch.hops[0].handle_next(junk).unwrap_err();
    assert!(matches!(e, OnionError::Protocol { .. }), "{e}");
}

#[test]
fn the_handshake_carries_the_clock_rounded_to_a_minute() {
    assert_eq!(warren_protocol::onion::handshake_clock(NOW), 1_699_999_980);
    // Two clients 50 s apart within one minute send the same message 1 for the same seed.
    let key = node_secret(1).public();
    let (_, a) = ClientHandshake::start(0, &key, [5; 32], 1_699_999_981).unwrap();
    let (_, b) = ClientHandshake::start(0, &key, [5; 32], 1_700_000_031).unwrap();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------------------------
// spec/onion.md vectors.

/// The fixed inputs the page states: hop secret 0x11…, client ephemeral seed 0x22…, hop
/// ephemeral seed 0x33…, clock 1 700 000 000.
fn vector_handshake() -> (Vec<u8>, Vec<u8>, HopKeys, HopKeys) {
    let secret = OnionSecret::from_bytes([0x11; 32]);
    let (hs, msg1) = ClientHandshake::start(0, &secret.public(), [0x22; 32], NOW).unwrap();
    let (hop_keys, msg2) = crypto::respond(
        &secret,
        &msg1,
        [0x33; 32],
        NOW,
        &mut ReplayCache::new(),
        b"client",
    )
    .unwrap();
    let client_keys = hs.finish(&msg2).unwrap();
    (msg1, msg2, client_keys, hop_keys)
}

fn keys_bytes(k: &HopKeys) -> Vec<u8> {
    [k.forward, k.backward, k.forward_mac, k.backward_mac].concat()
}

/// The 1-hop circuit of the vectors sends DATA "hello" on stream 1: the cell on the wire.
fn vector_cells() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let secret = OnionSecret::from_bytes([0x11; 32]);
    let mut c = Client::new(
        vec![HopTarget {
            peer: peer(1).to_bytes(),
            onion_key: secret.public(),
        }],
        vec![[0x22; 32]],
        NOW,
    )
    .unwrap();
    let create = c.poll_transmit().unwrap();
    let mut hop = Hop::accept(
        NOW,
        &secret,
        &create,
        [0x33; 32],
        &mut ReplayCache::new(),
        true,
        b"client",
    )
    .unwrap();
    let (_, created) = hop.poll_transmit().unwrap();
    c.handle_cell(NOW, created.clone()).unwrap();
    let s = c.open_stream(&[1, 2, 3]).unwrap();
    let _begin = c.poll_transmit().unwrap();
    c.send(s, b"hello").unwrap();
    let data = c.poll_transmit().unwrap().encode().unwrap();
    (create.encode().unwrap(), created.encode().unwrap(), data)
}

fn vectors() -> HashMap<String, Vec<u8>> {
    warren_protocol::spec_text::extract_vectors(PAGE)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|v| (v.name, v.bytes))
        .collect()
}

#[test]
fn spec_vectors_match_the_code() {
    let v = vectors();
    let (msg1, msg2, ck, hk) = vector_handshake();
    assert_eq!(ck, hk, "both ends derive the same keys");
    assert_eq!(v["handshake-message-1"], msg1);
    assert_eq!(v["handshake-message-2"], msg2);
    assert_eq!(v["hop-keys"], keys_bytes(&ck));
    let (create, created, data) = vector_cells();
    assert_eq!(v["relay-cell-data-hello"], data);
    // The CREATE / CREATED cells are the messages in the layout, zero padded.
    assert_eq!(create[..2], [1, 0]);
    assert_eq!(create[4..4 + msg1.len()], msg1[..]);
    assert_eq!(created[3..3 + msg2.len()], msg2[..]);
    assert_eq!(
        Cell::decode(&v["cell-destroy-integrity"]).unwrap(),
        Cell::Destroy {
            reason: DestroyReason::Integrity
        }
    );
    // A hop's refusals (issue 21): busy, and refused for credit.
    assert_eq!(
        Cell::decode(&v["cell-destroy-credit"]).unwrap(),
        Cell::Destroy {
            reason: DestroyReason::Credit
        }
    );
    let busy = Cell::Destroy {
        reason: DestroyReason::Busy,
    }
    .encode()
    .unwrap();
    assert_eq!(busy[..2], [4, 8]);
    let mut unknown = v["cell-destroy-credit"].clone();
    unknown[1] = 10;
    assert!(matches!(
        Cell::decode(&unknown),
        Err(OnionError::Malformed { .. })
    ));
    assert!(matches!(
        Cell::decode(&v["cell-destroy-bad-padding"]),
        Err(OnionError::Malformed { .. })
    ));
    // The relay decrypts the vector cell to the stated plaintext.
    let secret = OnionSecret::from_bytes([0x11; 32]);
    let mut c = Client::new(
        vec![HopTarget {
            peer: peer(1).to_bytes(),
            onion_key: secret.public(),
        }],
        vec![[0x22; 32]],
        NOW,
    )
    .unwrap();
    let create = c.poll_transmit().unwrap();
    let mut hop = Hop::accept(
        NOW,
        &secret,
        &create,
        [0x33; 32],
        &mut ReplayCache::new(),
        true,
        b"client",
    )
    .unwrap();
    let (_, created) = hop.poll_transmit().unwrap();
    c.handle_cell(NOW, created).unwrap();
    let s = c.open_stream(&[1, 2, 3]).unwrap();
    hop.handle_prev(c.poll_transmit().unwrap()).unwrap();
    hop.handle_prev(Cell::decode(&v["relay-cell-data-hello"]).unwrap())
        .unwrap();
    let events: Vec<HopEvent> = std::iter::from_fn(|| hop.poll_event()).collect();
    assert_eq!(
        events,
        vec![
            HopEvent::Begin {
                stream: s,
                request: vec![1, 2, 3]
            },
            HopEvent::StreamData {
                stream: s,
                data: b"hello".to_vec()
            }
        ]
    );
    let _ = decode_end(&[0]).unwrap();
}

#[test]
#[ignore = "generator: prints the vector blocks for spec/onion.md"]
fn print_vectors() {
    let plain = |b: &[u8]| -> String { b.chunks(32).map(|c| hex::encode(c) + "\n").collect() };
    let (msg1, msg2, ck, _) = vector_handshake();
    for (name, b) in [
        ("handshake-message-1", msg1),
        ("handshake-message-2", msg2),
        ("hop-keys", keys_bytes(&ck)),
        ("relay-cell-data-hello", vector_cells().2),
    ] {
        println!("<!-- vector: {name} -->\n```hex\n{}```\n", plain(&b));
    }
}
