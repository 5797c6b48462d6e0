//! Issue 20, attack 8: Sybils around placement and guards. Three identities in one network group
//! (an IPv4 /16, from the addresses their signed records announce) stand beside two honest peers
//! in two other groups; all five offer storage and every onion role. The nodes are real processes
//! (`WARREN_TEST_NODE_BIN` may point at an older build); the Sybils run the honest binary, since
//! what matters is only where they are and that the origin and client trusts them blindly.
//!
//! - Placement: the origin puts an RF 3 file of seven blocks. Before the diversity rule the
//!   copies went to the three XOR-closest peers, so most blocks had two or three copies on the
//!   Sybils (one operator could drop them all). Now no block has two copies in one group while
//!   another group has room: at most one copy on the Sybils.
//! - Guards: the client builds circuits, restarts, and builds more. Before the guard set it took
//!   the gate of its first circuit after each start from whoever was connected then (and forgot
//!   it at restart), so each restart gave the Sybils another draw. Now the guard set is kept in
//!   the data directory: every circuit after the restarts starts at the same guard.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use warren_tests::hostile::node_bin;
use warren_tests::{NodeProcess, cli, cli_json, held, tcp_multiaddr, test_bytes, wait_for};

const ROLES: [&str; 8] = [
    "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
];

/// The address each node announces first in its record, which defines its network group:
/// n0 (origin and onion client), n1 and n2 (honest) in their own /16s, n3..n5 (Sybils) in one.
const ANNOUNCED: [&str; 6] = [
    "/ip4/10.1.0.1/tcp/1",
    "/ip4/10.2.0.1/tcp/1",
    "/ip4/10.3.0.1/tcp/1",
    "/ip4/10.66.0.1/tcp/1",
    "/ip4/10.66.0.2/tcp/1",
    "/ip4/10.66.0.3/tcp/1",
];
const SYBILS: [usize; 3] = [3, 4, 5];
const MIB: usize = 1 << 20;

struct Net {
    bin: String,
    procs: Vec<Option<NodeProcess>>,
    dirs: Vec<PathBuf>,
    peers: Vec<String>,
    addrs: Vec<String>,
    config: String,
}

impl Net {
    fn args<'a>(&'a self, i: usize, boots: &'a [String]) -> Vec<&'a str> {
        let mut args = vec!["--config", self.config.as_str()];
        args.extend_from_slice(&ROLES);
        args.extend_from_slice(&["--external-addr", ANNOUNCED[i]]);
        for b in boots {
            args.extend_from_slice(&["--bootstrap", b.as_str()]);
        }
        args
    }

    fn start(&mut self, i: usize, boots: &[String]) {
        let args = self.args(i, boots);
        let p = NodeProcess::start(&self.bin, &self.dirs[i], &args).unwrap();
        let s = cli_json(&self.bin, &self.dirs[i], &["status"]).unwrap();
        self.peers[i] = s["peer_id"].as_str().unwrap().to_owned();
        self.addrs[i] = tcp_multiaddr(&s).unwrap();
        self.procs[i] = Some(p);
    }

    /// Waits until node `i` is connected to the five others and has their records.
    fn wait_records(&self, i: usize) {
        wait_for(Duration::from_secs(40), "the other nodes' records", || {
            let list = cli_json(&self.bin, &self.dirs[i], &["peers"]).ok()?;
            let with_roles = list
                .as_array()?
                .iter()
                .filter(|p| p["roles"].as_array().is_some_and(|r| r.len() == 4))
                .count();
            (with_roles >= 5).then_some(())
        })
        .unwrap();
    }

    /// The gates of node 0's client circuits, oldest first.
    fn gates(&self) -> Vec<String> {
        cli_json(&self.bin, &self.dirs[0], &["circuits"])
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["role"] == "client")
            .filter_map(|c| c["next"].as_str().map(str::to_owned))
            .collect()
    }

    /// Builds one circuit from node 0 (an anonymous get of `cid`; its outcome does not matter
    /// here) and answers its gate.
    fn circuit(&self, cid: &str, out: &std::path::Path) -> String {
        let before = self.gates().len();
        let o = cli(
            &self.bin,
            &self.dirs[0],
            &["get", cid, "--anon", "-o", out.to_str().unwrap()],
            false,
        )
        .unwrap();
        let gates = self.gates();
        assert!(
            gates.len() > before,
            "no client circuit was built: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        gates.last().unwrap().clone()
    }

    fn name(&self, peer: &str) -> String {
        match self.peers.iter().position(|p| p == peer) {
            Some(i) if SYBILS.contains(&i) => format!("n{i} (Sybil)"),
            Some(i) => format!("n{i}"),
            None => peer.to_owned(),
        }
    }
}

#[test]
fn sybils_in_one_group_get_one_copy_and_cannot_replace_the_guard_at_restart() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let config = tmp.path().join("fast.toml");
    std::fs::write(
        &config,
        "[mesh]\nrepair_every_ms = 1000\naudit_every_ms = 250\n",
    )
    .unwrap();
    let mut net = Net {
        bin: node_bin(env!("CARGO_BIN_EXE_warren-e2e-node")),
        procs: (0..6).map(|_| None).collect(),
        dirs: (0..6).map(|i| tmp.path().join(format!("n{i}"))).collect(),
        peers: vec![String::new(); 6],
        addrs: vec![String::new(); 6],
        config: config.to_str().unwrap().to_owned(),
    };
    // n1 first (the bootstrap), then the others.
    net.start(1, &[]);
    let boot = vec![net.addrs[1].clone()];
    for i in [0, 2, 3, 4, 5] {
        net.start(i, &boot);
    }
    for i in 0..6 {
        net.wait_records(i);
    }
    println!("{} s: six nodes up", started.elapsed().as_secs());
    let mut failures: Vec<String> = Vec::new();

    // Placement: an RF 3 file of six chunks and its manifest, put by n0.
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, test_bytes(6 * MIB, 11, false)).unwrap();
    cli_json(
        &net.bin,
        &net.dirs[0],
        &["put", file.to_str().unwrap(), "--rf", "3"],
    )
    .unwrap();
    let holders = || {
        let mut map: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for i in 1..6 {
            for b in held(&net.bin, &net.dirs[i]) {
                map.entry(b).or_default().insert(i);
            }
        }
        map
    };
    let map = wait_for(Duration::from_secs(40), "3 holders of every block", || {
        let map = holders();
        (map.len() == 7 && map.values().all(|h| h.len() >= 3)).then_some(map)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", holders()));
    let on_sybils: Vec<(&String, Vec<usize>)> = map
        .iter()
        .map(|(b, h)| {
            (
                b,
                h.iter().copied().filter(|i| SYBILS.contains(i)).collect(),
            )
        })
        .collect();
    for (b, s) in &on_sybils {
        println!("block {b}: held by {:?}, Sybils {s:?}", map[*b]);
    }
    let crowded = on_sybils.iter().filter(|(_, s)| s.len() > 1).count();
    if crowded > 0 {
        failures.push(format!(
            "{crowded} of 7 blocks have two or more of their copies in the Sybils' /16 while \
             n1 and n2 (other groups) had room: {on_sybils:?}"
        ));
    }
    println!("{} s: placement checked", started.elapsed().as_secs());

    // Guards: circuits from n0 (anonymous gets of a small file), across two restarts.
    let small = tmp.path().join("small.bin");
    std::fs::write(&small, test_bytes(4096, 12, false)).unwrap();
    let put = cli_json(
        &net.bin,
        &net.dirs[0],
        &["put", small.to_str().unwrap(), "--rf", "3"],
    )
    .unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    let out = tmp.path().join("anon.bin");
    let first = net.circuit(&cid, &out);
    let again = net.circuit(&cid, &out);
    println!(
        "{} s: gate before restarts: {} then {}",
        started.elapsed().as_secs(),
        net.name(&first),
        net.name(&again)
    );
    let all_boots: Vec<String> = (1..6).map(|i| net.addrs[i].clone()).collect();
    for round in 1..=2 {
        net.procs[0].take().unwrap().stop().unwrap();
        net.start(0, &all_boots);
        net.wait_records(0);
        let gate = net.circuit(&cid, &out);
        println!(
            "{} s: gate after restart {round}: {}",
            started.elapsed().as_secs(),
            net.name(&gate)
        );
        if gate != first {
            failures.push(format!(
                "after restart {round} the client's circuit started at {}, not at its guard {}",
                net.name(&gate),
                net.name(&first)
            ));
        }
    }
    if net.dirs[0].join("onion-guards.json").exists() {
        let text = std::fs::read_to_string(net.dirs[0].join("onion-guards.json")).unwrap();
        println!("guard set: {text}");
    }
    println!("{} s in all", started.elapsed().as_secs());
    assert!(failures.is_empty(), "{failures:#?}");
}
