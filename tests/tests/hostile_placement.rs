//! Issue 19, attacks 2 and 3: a stranger cannot change what a holder keeps, nor place data for
//! free and forever. The nodes under attack are real processes (`WARREN_TEST_NODE_BIN` may point
//! at an older build); the attacker is a warren node in this process
//! ([`warren_tests::hostile::Hostile`]) sending `/warren/blocks/2.0.0` requests of its own.
//!
//! - RF poisoning: the hostile fetches a block of an honest RF 3 file and pushes it back to its
//!   holders with `rf: 16`, then `rf: 0`. Before placement tickets the holders took the pusher's
//!   word: the closest one repaired the block onto every node. Now the holders keep the origin's
//!   RF (their leases name the origin and RF 3), the block stays on 3 nodes, and after a holder
//!   is killed repair restores 3 copies.
//! - Unpaid permanent storage: the hostile pushes junk blocks with `rf: 16`. Before tickets they
//!   were held (pinned for the mesh) forever. Now a push without a ticket is refused; pushes with
//!   the hostile's own tickets are held only within that origin's quota (the rest refused, over
//!   quota) and released, and removed, when their lease ends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use warren_protocol::block_transfer::{
    BlockRequest, Request, Response, StoreRequest, StoreResponse,
};
use warren_protocol::ticket::PlacementTicket;
use warren_protocol::{Codec, ContentId, PeerId, Role};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, cli_json, held, tcp_multiaddr, test_bytes, wait_for};

const MIB: usize = 1 << 20;

struct Net {
    bin: String,
    procs: Vec<Option<NodeProcess>>,
    dirs: Vec<PathBuf>,
    peers: Vec<PeerId>,
    boot: String,
}

/// Starts `n` nodes on `root` with fast mesh timers, each bootstrapping from the first.
fn start_nodes(root: &Path, n: usize, extra: &[&str]) -> Net {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let config = root.join("fast.toml");
    std::fs::write(
        &config,
        "[mesh]\nrepair_every_ms = 1000\naudit_every_ms = 250\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_owned();
    let mut net = Net {
        bin,
        procs: Vec::new(),
        dirs: Vec::new(),
        peers: Vec::new(),
        boot: String::new(),
    };
    for i in 0..n {
        let dir = root.join(format!("n{i}"));
        let mut args = vec!["--config", &cfg];
        args.extend_from_slice(extra);
        let boot = net.boot.clone();
        if i > 0 {
            args.extend_from_slice(&["--bootstrap", &boot]);
        }
        net.procs
            .push(Some(NodeProcess::start(&net.bin, &dir, &args).unwrap()));
        let s = cli_json(&net.bin, &dir, &["status"]).unwrap();
        if i == 0 {
            net.boot = tcp_multiaddr(&s).unwrap();
        }
        net.peers
            .push(PeerId::from_str(s["peer_id"].as_str().unwrap()).unwrap());
        net.dirs.push(dir);
    }
    net
}

/// The hostile node: no storage offer (so no honest placement lands on it), dialled into `boot`.
fn start_hostile(rt: &tokio::runtime::Runtime, dir: &Path, boot: &str) -> Hostile {
    rt.block_on(async {
        let h = Hostile::start(dir, "local", vec![boot.parse().unwrap()], 0, |c| {
            c.roles = vec![Role::Operator];
        })
        .await
        .unwrap();
        h.connect(boot.parse().unwrap(), Duration::from_secs(20))
            .await
            .unwrap();
        h
    })
}

/// block → the nodes (indexes among `live`) that hold it for the mesh.
fn holders(net: &Net, live: &[usize]) -> BTreeMap<String, BTreeSet<usize>> {
    let mut map: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for &i in live {
        for block in held(&net.bin, &net.dirs[i]) {
            map.entry(block).or_default().insert(i);
        }
    }
    map
}

/// The RF and origin of node `i`'s lease of block `b`, if its `warren leases` lists one.
fn lease_of(net: &Net, i: usize, b: &str) -> Option<(u64, String)> {
    let leases = cli_json(&net.bin, &net.dirs[i], &["leases"]).ok()?;
    let lease = leases.as_array()?.iter().find(|l| l["block"] == *b)?;
    Some((lease["rf"].as_u64()?, lease["origin"].as_str()?.to_owned()))
}

fn push(
    rt: &tokio::runtime::Runtime,
    hostile: &Hostile,
    to: PeerId,
    block: ContentId,
    data: &[u8],
    rf: u8,
    ticket: Option<PlacementTicket>,
) -> String {
    let request = Request::Store(StoreRequest {
        block,
        data: data.to_vec(),
        rf,
        ticket,
    });
    match rt.block_on(hostile.client().blocks(to, request)) {
        Ok(Response::Stored(StoreResponse {
            accepted, reason, ..
        })) => format!("accepted={accepted} reason={}", reason.unwrap_or_default()),
        Ok(other) => format!("answer {}", other.kind()),
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn a_stranger_pushing_a_block_back_with_rf_0_or_16_changes_nothing() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // n0: the origin; n1..n5 may hold replicas.
    let mut net = start_nodes(tmp.path(), 6, &[]);
    let hostile = start_hostile(&rt, &tmp.path().join("hostile"), &net.boot);
    // Every node knows the other five's offers (roles come from verified records).
    for dir in &net.dirs {
        wait_for(Duration::from_secs(30), "the other nodes' records", || {
            let list = cli_json(&net.bin, dir, &["peers"]).ok()?;
            let with_roles = list
                .as_array()?
                .iter()
                .filter(|p| p["roles"].as_array().is_some_and(|r| !r.is_empty()))
                .count();
            (with_roles >= 5).then_some(())
        })
        .unwrap();
    }

    // An honest RF 3 file of two chunks and its manifest.
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, test_bytes(2 * MIB, 7, false)).unwrap();
    let put = cli_json(
        &net.bin,
        &net.dirs[0],
        &["put", file.to_str().unwrap(), "--rf", "3"],
    )
    .unwrap();
    let root = put["cid"].as_str().unwrap().to_owned();
    let others: Vec<usize> = (1..6).collect();
    let map = wait_for(Duration::from_secs(30), "3 holders of every block", || {
        let map = holders(&net, &others);
        (map.len() == 3 && map.values().all(|h| h.len() == 3)).then_some(map)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", holders(&net, &others)));
    // A chunk (not the root manifest).
    let (b, b_holders) = map.iter().find(|(c, _)| **c != root).unwrap();
    let block = ContentId::from_str(b).unwrap();
    let b_holders: Vec<usize> = b_holders.iter().copied().collect();
    println!("block {b} held by {b_holders:?}");

    // The hostile fetches it like anyone may...
    let first = net.peers[b_holders[0]];
    let data = match rt.block_on(
        hostile
            .client()
            .blocks(first, Request::Get(BlockRequest { block })),
    ) {
        Ok(Response::Block(r)) => r.data,
        other => panic!("fetching {b}: {other:?}"),
    };
    // ...and pushes it back to its holders claiming RF 16.
    for &i in &b_holders {
        let r = push(&rt, &hostile, net.peers[i], block, &data, 16, None);
        println!("rf 16 pushed to n{i}: {r}");
    }
    // Eight repair passes: the block must stay on 3 nodes (the origin pays for 3).
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let now = holders(&net, &others).remove(b).unwrap_or_default();
        // A copy past 3 is allowed only as the origin's own: a holder whose audit went
        // unanswered under load is left uncounted and repair adds a copy, under n0's ticket at
        // RF 3. A copy held at the pusher's RF 16 (or under no lease at all) is the attack.
        let honest_extra = |i: usize| {
            lease_of(&net, i, b)
                .is_some_and(|(rf, origin)| rf == 3 && origin == net.peers[0].to_string())
        };
        assert!(
            now.len() <= 3 || now.iter().all(|i| honest_extra(*i)),
            "block {b} over-replicated after a stranger pushed it with rf 16: held by {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Then claiming RF 0.
    for &i in &b_holders {
        let r = push(&rt, &hostile, net.peers[i], block, &data, 0, None);
        println!("rf 0 pushed to n{i}: {r}");
    }
    // With tickets of its own (any key signs for itself): a live lease of another origin stays.
    let key = warren_protocol::keypair_from_secret([42; 32]);
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    for rf in [0, 16] {
        let ticket = PlacementTicket::sign(&key, block, rf, expires).unwrap();
        for &i in &b_holders {
            let r = push(
                &rt,
                &hostile,
                net.peers[i],
                block,
                &data,
                rf,
                Some(ticket.clone()),
            );
            println!("rf {rf} pushed to n{i} with the hostile's own ticket: {r}");
        }
    }
    // What each holder keeps: the origin's RF 3, under the origin's lease.
    for &i in &b_holders {
        let leases = cli_json(&net.bin, &net.dirs[i], &["leases"]).unwrap();
        let lease = leases
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["block"] == *b)
            .unwrap_or_else(|| panic!("n{i} holds {b} under no lease: {leases}"));
        assert_eq!(lease["rf"], 3, "n{i}: {lease}");
        assert_eq!(lease["origin"], net.peers[0].to_string(), "n{i}: {lease}");
    }
    // Kill one holder: repair restores 3 copies among the live nodes.
    let killed = b_holders[0];
    drop(net.procs[killed].take());
    let live: Vec<usize> = others.iter().copied().filter(|i| *i != killed).collect();
    wait_for(
        Duration::from_secs(40),
        "3 live copies of the block",
        || {
            let now = holders(&net, &live).remove(b).unwrap_or_default();
            (now.len() >= 3).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", holders(&net, &live)));
    rt.block_on(hostile.stop());
    println!("done in {:?}", started.elapsed());
}

#[test]
fn junk_pushed_by_a_stranger_is_not_kept_for_free_or_forever() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // One node offering 8 MiB: an origin may hold a quarter of it, 2 MiB.
    let net = start_nodes(tmp.path(), 1, &["--storage-offer", "8MiB"]);
    let hostile = start_hostile(&rt, &tmp.path().join("hostile"), &net.boot);
    let target = net.peers[0];
    let junk = |i: u64| {
        let data = test_bytes(100 * 1024, 1000 + i, false);
        (ContentId::of_block(Codec::Raw, &data), data)
    };

    // Junk claiming RF 16, without a ticket: not kept.
    for i in 0..4 {
        let (block, data) = junk(i);
        let r = push(&rt, &hostile, target, block, &data, 16, None);
        println!("junk {i} without a ticket: {r}");
        let held_now = held(&net.bin, &net.dirs[0]);
        assert!(
            !held_now.contains(&block.to_string()),
            "junk block {block} pushed by a stranger with rf 16 and no ticket is held for the \
             mesh ({r})"
        );
        assert!(r.contains("no placement ticket"), "{r}");
    }

    // Junk under the stranger's own tickets (any key will do: it signs for itself), ending in
    // 15 s: held up to its quota, the rest refused.
    let key = warren_protocol::keypair_from_secret([42; 32]);
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 15;
    let mut accepted = Vec::new();
    let mut over = 0;
    for i in 10..40 {
        let (block, data) = junk(i);
        let ticket = PlacementTicket::sign(&key, block, 16, expires).unwrap();
        let r = push(&rt, &hostile, target, block, &data, 16, Some(ticket));
        if r.starts_with("accepted=true") {
            accepted.push(block.to_string());
        } else {
            assert!(r.contains("over quota"), "{r}");
            over += 1;
        }
    }
    println!(
        "{} accepted under tickets, {over} over quota",
        accepted.len()
    );
    assert_eq!(accepted.len(), 20, "2 MiB of 100 KiB blocks");
    let usage = |net: &Net| {
        cli_json(&net.bin, &net.dirs[0], &["status"]).unwrap()["storage"]["blocks"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(usage(&net), 20);
    // When the lease ends they are released and removed.
    wait_for(Duration::from_secs(30), "the junk released", || {
        let h = held(&net.bin, &net.dirs[0]);
        (accepted.iter().all(|b| !h.contains(b)) && usage(&net) == 0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: still held {:?}", held(&net.bin, &net.dirs[0])));
    rt.block_on(hostile.stop());
    println!("done in {:?}", started.elapsed());
}

/// The honest side of leases: the origin renews its replicas before they end, so a file outlives
/// many lease periods (here 12 s leases, renewed every 6 s); the holders keep the origin's RF.
#[test]
fn the_origin_renews_its_leases_before_they_end() {
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    if bin != env!("CARGO_BIN_EXE_warren-e2e-node") {
        println!("skipped: leases are configured only on this build");
        return;
    }
    let config = tmp.path().join("lease.toml");
    std::fs::write(
        &config,
        "[mesh]\nrepair_every_ms = 1000\naudit_every_ms = 250\nlease_secs = 12\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let mut procs = Vec::new();
    let mut dirs = Vec::new();
    let mut boot = String::new();
    for i in 0..3 {
        let dir = tmp.path().join(format!("n{i}"));
        let mut args = vec!["--config", cfg];
        if i > 0 {
            args.extend_from_slice(&["--bootstrap", &boot]);
        }
        procs.push(NodeProcess::start(&bin, &dir, &args).unwrap());
        if i == 0 {
            boot = tcp_multiaddr(&cli_json(&bin, &dir, &["status"]).unwrap()).unwrap();
        }
        dirs.push(dir);
    }
    for dir in &dirs {
        warren_tests::wait_for_records(&bin, dir, 2).unwrap();
    }
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, test_bytes(MIB + 1000, 3, false)).unwrap();
    let put = cli_json(
        &bin,
        &dirs[0],
        &["put", file.to_str().unwrap(), "--rf", "2"],
    )
    .unwrap();
    assert_eq!(put["replication"]["copies"], 6, "{put}");
    let leases = |i: usize| -> Vec<(String, u64)> {
        let l = cli_json(&bin, &dirs[i], &["leases"]).unwrap();
        l.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                assert_eq!(x["rf"], 2, "{x}");
                (
                    x["block"].as_str().unwrap().to_owned(),
                    x["expires"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let first = leases(1);
    assert_eq!(first.len(), 3, "{first:?}");
    let first_end = first.iter().map(|(_, e)| *e).max().unwrap();
    // Past the first leases' end (and a repair pass): still held, under renewed leases.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    while now() < first_end + 3 {
        std::thread::sleep(Duration::from_millis(500));
    }
    for i in [1, 2] {
        let later = leases(i);
        assert_eq!(later.len(), 3, "n{i} lost replicas: {later:?}");
        assert!(
            later.iter().all(|(_, e)| *e > first_end),
            "n{i}: leases not renewed past {first_end}: {later:?}"
        );
        assert_eq!(held(&bin, &dirs[i]).len(), 3);
    }
    drop(procs);
}
