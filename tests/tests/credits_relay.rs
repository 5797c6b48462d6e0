//! Relay work earns credit (issue 21, spec/credits.md "Relay work"), on real node processes.
//!
//! - Honest: C (a station, no hop role) gets a file anonymously through a 3-hop circuit of A, B
//!   and D. Each hop counted the cells it delivered back to its previous hop; the previous hop
//!   receipted them (`relay_bytes`), so each hop holds a countersigned receipt of relay work from
//!   its previous hop, and has a positive balance there.
//! - Attack: H, a hostile previous hop (an in-process node that takes the cells of its
//!   circuits through O and never sends a receipt), gets anonymous gets through O, which is busy
//!   as a hop (`busy_circuits = 0`) with a small threshold. Once H's unpaid relay work is past
//!   125 % of its threshold, O refuses H's circuits, and H is told so (`refused the circuit for
//!   credit`) rather than seeing its link drop.
//!
//! On f59610e (`WARREN_TEST_NODE_BIN=/work/old-bin/warren-f59610e`), relay work is not counted:
//! the honest test fails at "holds no receipt of relay work", and the attack at "O carried every
//! circuit of H".

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_node::onion::Answer;
use warren_protocol::ContentId;
use warren_protocol::onion::request::Request;
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes, wait_for};

const MIB: usize = 1 << 20;
const ROLES: [&str; 8] = [
    "--role", "station", "--role", "gate", "--role", "middle", "--role", "relay",
];

/// The standing `dir`'s node gives `peer` (`warren credits PEER --json`), if it has an account.
fn standing(bin: &str, dir: &Path, peer: &str) -> Option<Value> {
    let v = cli_json(bin, dir, &["credits", peer]).ok()?;
    v["peers"].as_array()?.first().cloned()
}

fn relay_bytes(q: &Value) -> u64 {
    q["relay_bytes"].as_u64().unwrap_or(0)
}

#[test]
fn each_hop_holds_a_receipt_for_relay_work_from_its_previous_hop() {
    let started = Instant::now();
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let bin = bin.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let names = ["c", "a", "b", "d"];
    let dirs: Vec<PathBuf> = names.iter().map(|n| tmp.path().join(n)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("config.toml"), "[credits]\nreceipt_every_ms = 500\n").unwrap();
    }
    let mut procs = vec![NodeProcess::start(bin, &dirs[0], &["--role", "station"]).unwrap()];
    let boot = tcp_multiaddr(&cli_json(bin, &dirs[0], &["status"]).unwrap()).unwrap();
    for d in &dirs[1..] {
        let mut args = ROLES.to_vec();
        args.extend(["--bootstrap", &boot]);
        procs.push(NodeProcess::start(bin, d, &args).unwrap());
    }
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (i, d) in dirs.iter().enumerate() {
        warren_tests::wait_for_records(bin, d, 3).unwrap();
        let id = cli_json(bin, d, &["status"]).unwrap()["peer_id"]
            .as_str()
            .unwrap()
            .to_owned();
        ids.insert(id, i);
    }

    // C keeps a 1 MiB file (rf 0) and gets it back anonymously: the relay fetches it from C.
    let original = test_bytes(MIB, 11, false);
    let file = tmp.path().join("file.bin");
    std::fs::write(&file, &original).unwrap();
    let put = cli_json(bin, &dirs[0], &["put", file.to_str().unwrap(), "--rf", "0"]).unwrap();
    let cid = put["cid"].as_str().unwrap().to_owned();
    let out = tmp.path().join("anon.bin");
    for attempt in 0..8 {
        let o = cli(
            bin,
            &dirs[0],
            &["get", &cid, "--anon", "-o", out.to_str().unwrap()],
            false,
        )
        .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        // `put --rf 0` does not wait for its provider records to land (nothing onion-specific).
        if !o.status.success() && stderr.contains("found in the DHT") && attempt < 7 {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert!(o.status.success(), "{stderr}");
        break;
    }
    assert!(std::fs::read(&out).unwrap() == original, "byte-identical");

    // Every hop circuit on A, B, D, with its previous hop.
    let mut pairs: Vec<(usize, usize, String)> = Vec::new();
    for (x, d) in dirs.iter().enumerate().skip(1) {
        for c in cli_json(bin, d, &["circuits"]).unwrap().as_array().unwrap() {
            let Some(prev) = c["prev"].as_str() else {
                continue;
            };
            let p = *ids.get(prev).expect("a previous hop of this devnet");
            pairs.push((p, x, c["role"].as_str().unwrap_or("?").to_owned()));
        }
    }
    pairs.sort();
    pairs.dedup();
    println!("hop pairs (previous hop, hop, role): {pairs:?}");
    assert!(
        pairs.iter().any(|(p, _, _)| *p == 0),
        "C's gate carried its circuit: {pairs:?}"
    );
    assert!(pairs.len() >= 3, "a 3-hop circuit: {pairs:?}");

    for (p, x, role) in &pairs {
        let (pn, xn) = (names[*p], names[*x]);
        let p_id = ids.iter().find(|(_, i)| *i == p).unwrap().0.clone();
        let x_id = ids.iter().find(|(_, i)| *i == x).unwrap().0.clone();
        // X (the hop) holds P's countersigned receipt for the cells it delivered back to P.
        let got = wait_for(Duration::from_secs(15), "a receipt of relay work", || {
            let s = standing(bin, &dirs[*x], &p_id)?;
            (s["their_seq"].as_u64()? > 0 && relay_bytes(&s["delivered_to_peer"]) > 0).then_some(s)
        });
        let s = got.unwrap_or_else(|e| {
            panic!(
                "{xn} ({role}) holds no receipt of relay work from its previous hop {pn}: {e}; {:?}",
                standing(bin, &dirs[*x], &p_id)
            )
        });
        // P's ledger: X delivered relay work, so X has a positive balance with P.
        let ps = standing(bin, &dirs[*p], &x_id).expect("P has an account of X");
        println!(
            "{xn} ({role}) delivered {} relay bytes to {pn} (receipt #{} from {pn}); {pn} says {xn} earned {} nc, spent {} nc, balance {} nc",
            relay_bytes(&s["delivered_to_peer"]),
            s["their_seq"],
            ps["earned_by_peer"],
            ps["spent_by_peer"],
            ps["balance"]
        );
        assert!(relay_bytes(&ps["delivered_by_peer"]) > 0, "{ps}");
        assert!(
            ps["balance"].as_i64().unwrap() > 0,
            "{xn}'s balance with {pn}: {ps}"
        );
    }
    // The table says it too.
    let text = cli(bin, &dirs[0], &["credits"], false).unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("relay MiB in/out"));
    drop(procs);
    println!(
        "credits_relay honest e2e took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// An anonymous get of `cid` through `h`'s own onion client: the bytes received, or why not.
async fn anon_get(h: &Hostile, cid: ContentId) -> Result<usize, String> {
    let onion = h
        .node
        .onion
        .as_ref()
        .expect("the hostile node builds circuits");
    let mut answers = onion
        .request(Request::Get(cid), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    while let Some(a) = answers.recv().await {
        match a {
            Answer::Built { .. } => {}
            Answer::Data(d) => n += d.len(),
            Answer::End(Ok(_)) => return Ok(n),
            Answer::End(Err(e)) => return Err(e),
        }
    }
    Err("the answers stopped".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_hop_that_never_receipts_relay_cells_is_refused_circuits() {
    let started = Instant::now();
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("o");
    std::fs::create_dir_all(&o).unwrap();
    // O: a hop busy from its first circuit, with a threshold of 1 M nc (about 1 MiB of cells).
    std::fs::write(
        o.join("config.toml"),
        "[credits]\nreceipt_every_ms = 500\n[credits.policy]\nbase_threshold = 1000000\nallowance_per_sec = 1000\nnewcomer_cap_per_sec = 10000\n[credits.relay]\nbusy_circuits = 0\n",
    )
    .unwrap();
    let po = NodeProcess::start(&bin, &o, &ROLES).unwrap();
    let boot = tcp_multiaddr(&cli_json(&bin, &o, &["status"]).unwrap()).unwrap();
    let original = test_bytes(MIB, 5, false);
    std::fs::write(tmp.path().join("x.bin"), &original).unwrap();
    let x = tmp.path().join("x.bin");
    let put = cli_json(&bin, &o, &["put", x.to_str().unwrap(), "--rf", "0"]).unwrap();
    let cid: ContentId = put["cid"].as_str().unwrap().parse().unwrap();

    // H: one-hop circuits (O is gate and relay); it never sends a receipt (none is due before
    // u64::MAX bytes are owed, and its periodic flush is an hour away).
    let h = Hostile::start(
        &tmp.path().join("h"),
        "local",
        vec![boot.parse().unwrap()],
        0,
        |c| {
            c.onion_hops = 1;
            c.credits.receipt_every_ms = 3_600_000;
            c.credits.policy.relay_window_bytes = u64::MAX;
        },
    )
    .await
    .unwrap();
    let h_id = h.peer_id().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while h
        .client()
        .onion_candidates()
        .await
        .map(|(_, c)| c.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "O's record never reached H");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut carried = 0;
    let mut refusal = None;
    for i in 0..5 {
        match anon_get(&h, cid).await {
            Ok(n) => {
                println!("H's anonymous get {i} through O: {n} bytes");
                carried += 1;
            }
            Err(e) => {
                println!("H's anonymous get {i} through O: {e}");
                refusal = Some(e);
                break;
            }
        }
    }
    let owed = {
        let (bin, o, h_id) = (bin.clone(), o.clone(), h_id.clone());
        tokio::task::spawn_blocking(move || standing(&bin, &o, &h_id))
            .await
            .unwrap()
    };
    println!("O's account of H: {owed:?}");
    let Some(why) = refusal else {
        panic!(
            "O carried every circuit of H ({carried}), though H never receipted a relay cell: {owed:?}"
        )
    };
    assert!(carried >= 1, "O carried no circuit of H at all: {why}");
    let owed = owed.expect("O keeps an account of H");
    assert!(
        relay_bytes(&owed["delivered_to_peer"]) >= MIB as u64,
        "O counted the cells it delivered to H: {owed}"
    );
    assert_eq!(owed["their_seq"], 0, "H never sent a receipt: {owed}");
    assert!(
        why.contains("refused the circuit for credit"),
        "H is told why its circuit failed: {why}"
    );
    let log = po.log();
    let line = log
        .lines()
        .find(|l| l.contains("refusing a circuit for credit"))
        .unwrap_or_else(|| panic!("O logs why it refused H's circuit"));
    println!("O: {line}");
    assert!(!line.contains(&h_id), "O's log names H: {line}");
    h.stop().await;
    println!(
        "credits_relay attack e2e took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
