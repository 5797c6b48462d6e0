//! Acceptance for running a home node:
//! - a node offering 10 MiB never stores more than 10 MiB, and says so in its log and on its
//!   dashboard when it refuses a replica or a put; its record carries the storage and compute
//!   offers;
//! - `warren init` writes a commented config that `start` reads back (preset, offers);
//! - nodes of different network ids refuse each other with a clear message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use warren_tests::{
    NodeProcess, api_of, chromium, cli, cli_json, http_get, run_chromium, tcp_multiaddr,
    test_bytes, wait_for,
};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: u64 = 1 << 20;

fn stored_bytes(dir: &Path) -> u64 {
    cli_json(BIN, dir, &["status"]).unwrap()["storage"]["stored_bytes"]
        .as_u64()
        .unwrap()
}

fn dashboard(dir: &Path) -> serde_json::Value {
    let (addr, token) = api_of(dir).unwrap();
    let (code, body) = http_get(&addr, "/v1/dashboard", Some(&token)).unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_node_never_stores_past_its_offer() {
    let tmp = tempfile::tempdir().unwrap();
    let da = tmp.path().join("a");
    let db = tmp.path().join("b");
    let _a = NodeProcess::start(BIN, &da, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(BIN, &da, &["status"]).unwrap()).unwrap();
    // One origin (A) fills B here: its per-origin quota (a quarter of the offer by default) is
    // raised to the whole offer, so that the offer is the limit under test.
    std::fs::create_dir_all(&db).unwrap();
    let config = db.join("quota.toml");
    std::fs::write(
        &config,
        format!("[mesh]\norigin_quota_bytes = {}\n", 10 * MIB),
    )
    .unwrap();
    let b = NodeProcess::start(
        BIN,
        &db,
        &[
            "--config",
            config.to_str().unwrap(),
            "--bootstrap",
            &boot,
            "--storage-offer",
            "10MiB",
            "--tier",
            "hot",
            "--compute-offer",
        ],
    )
    .unwrap();
    let pb = cli_json(BIN, &db, &["status"]).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Its record, as node A finds it in the DHT, carries both offers.
    let rec = wait_for(Duration::from_secs(30), "B's record in the DHT", || {
        cli_json(BIN, &da, &["record", &pb]).ok()
    })
    .unwrap();
    assert_eq!(rec["storage"]["bytes_offered"], 10 * MIB, "{rec}");
    assert_eq!(rec["storage"]["tier"], "hot", "{rec}");
    assert!(rec["compute"]["cpu_cores"].as_u64().unwrap() >= 1, "{rec}");
    assert!(rec["compute"]["ram_bytes"].as_u64().unwrap() > 0, "{rec}");
    // A knows B's offer, so B is its (only) placement candidate.
    wait_for(Duration::from_secs(30), "B's roles known to A", || {
        let peers = cli_json(BIN, &da, &["peers"]).ok()?;
        peers
            .as_array()?
            .iter()
            .any(|p| {
                p["peer_id"] == pb.as_str() && p["roles"].as_array().is_some_and(|r| !r.is_empty())
            })
            .then_some(())
    })
    .unwrap();

    // A places three 4 MiB files (incompressible) on B: 12 MiB do not fit in 10.
    let mut failed = 0;
    for seed in 1..=3u64 {
        let file = tmp.path().join(format!("f{seed}.bin"));
        std::fs::write(&file, test_bytes(4 * MIB as usize, seed, false)).unwrap();
        let put = cli_json(BIN, &da, &["put", file.to_str().unwrap(), "--rf", "1"]).unwrap();
        failed += put["replication"]["failed"].as_u64().unwrap();
        assert!(stored_bytes(&db) <= 10 * MIB);
    }
    assert!(failed > 0, "some replicas must have been refused");
    let used = stored_bytes(&db);
    println!("B stores {used} bytes of its 10 MiB offer; {failed} replicas refused");
    assert!(used > 6 * MIB && used <= 10 * MIB, "{used}");

    // Its log and its dashboard say so.
    // One origin fills B, and its quota is the whole offer: whichever of the two checks runs
    // first for a block (the origin's quota or the offer) refuses it, with its own sentence.
    let at_the_limit =
        |t: &str| t.contains("storage offer would be exceeded") || t.contains("over quota");
    let log = b.log();
    assert!(
        log.contains("refused to hold a replica") && at_the_limit(&log),
        "{log}"
    );
    let d = dashboard(&db);
    let refusals = d["activity"]["storage_refusals"].as_u64().unwrap();
    assert!(refusals as usize > failed as usize / 2, "{d}");
    let recent = d["activity"]["recent_refusals"].to_string();
    assert!(at_the_limit(&recent), "{recent}");
    assert_eq!(d["storage"]["offered_bytes"], 10 * MIB);
    assert!(d["storage"]["used_bytes"].as_u64().unwrap() <= 10 * MIB);
    assert!(d["storage"]["held_blocks"].as_u64().unwrap() >= 8, "{d}");
    assert_eq!(d["storage"]["tier"], "hot");
    let (addr, token) = api_of(&db).unwrap();
    // The page itself says so, as a person sees it.
    match chromium() {
        Some(browser) => {
            let url = format!("http://{addr}/dashboard#token={token}");
            let out =
                run_chromium(&browser, &tmp.path().join("profile"), &url, &["--dump-dom"]).unwrap();
            let html = String::from_utf8_lossy(&out.stdout);
            assert!(
                html.contains(r#"<p class="bad">Refused to store "#),
                "{html}"
            );
            // The latest refusal, as the page shows it: the offer, or the origin's quota
            // (raised to the whole offer above, so the same limit), whichever came last.
            assert!(
                html.contains("storage offer would be exceeded") || html.contains("over quota"),
                "{html}"
            );
            assert!(html.contains("of 10.0 MiB offered (hot)"), "{html}");
            let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/dashboard");
            std::fs::create_dir_all(&shots).unwrap();
            let png = shots.join("offer-full.png");
            let shot = format!("--screenshot={}", png.display());
            let out = run_chromium(
                &browser,
                &tmp.path().join("profile-2"),
                &url,
                &[&shot, "--window-size=1400,1000"],
            )
            .unwrap();
            assert!(out.status.success() && png.exists());
        }
        None => println!("SKIPPED (rendered page check): chromium is not installed"),
    }
    let metrics = http_get(&addr, "/metrics", None).unwrap().1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("warren_blocks_refused_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // A put on B itself is its user's own file: the offer to others does not limit it (the
    // disk does), and it is stored past the offer.
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, test_bytes(4 * MIB as usize, 9, false)).unwrap();
    let out = cli(
        BIN,
        &db,
        &["put", file.to_str().unwrap(), "--rf", "0"],
        false,
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stored_bytes(&db) > 10 * MIB);
}

#[test]
fn init_writes_a_config_that_start_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let args = [
        "init",
        "--testnet",
        "local",
        "--storage-offer",
        "200GiB",
        "--tier",
        "hot",
        "--compute-offer",
    ];
    let out = cli(BIN, &dir, &args, false).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        text.contains("# Bytes offered; the node never stores more"),
        "{text}"
    );
    assert!(text.contains("offer_bytes = 214748364800"), "{text}");
    // Not overwritten without --force.
    let again = cli(BIN, &dir, &args, false).unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let dump = cli(BIN, &dir, &["start", "--dump-config"], false).unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("network = \"local\""), "{dump}");
    assert!(dump.contains("tier = \"hot\""), "{dump}");
    assert!(dump.contains("\"operator\""), "{dump}");
    assert!(dump.contains("offer_bytes = 214748364800"), "{dump}");

    let bad = cli(
        BIN,
        &dir,
        &["start", "--testnet", "nope", "--dump-config"],
        false,
    )
    .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no testnet preset \"nope\"") && err.contains("warren-testnet"),
        "{err}"
    );
}

#[test]
fn nodes_of_different_networks_refuse_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let dx = tmp.path().join("x");
    let dy = tmp.path().join("y");
    let x = NodeProcess::start_on(BIN, &dx, "alpha", &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(BIN, &dx, &["status"]).unwrap()).unwrap();
    let px = boot.rsplit('/').next().unwrap().to_owned();
    let y = NodeProcess::start_on(BIN, &dy, "beta", &["--bootstrap", &boot]).unwrap();
    let py = cli_json(BIN, &dy, &["status"]).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let says_y =
        format!("refusing peer {px}: it is on network \"alpha\", this node is on network \"beta\"");
    let says_x =
        format!("refusing peer {py}: it is on network \"beta\", this node is on network \"alpha\"");
    wait_for(Duration::from_secs(20), "both refusals in the logs", || {
        (y.log().contains(&says_y) && x.log().contains(&says_x)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\nX:\n{}\nY:\n{}", x.log(), y.log()));
    // They part (a refused peer is closed within a tick, after its own identify of us) and stay
    // apart: no connection, nothing in the routing tables, nothing redialled.
    for d in [&dx, &dy] {
        wait_for(Duration::from_secs(10), "the nodes to part", || {
            let s = cli_json(BIN, d, &["status"]).ok()?;
            (s["peers"] == 0 && s["routing_table"] == 0).then_some(())
        })
        .unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    for d in [&dx, &dy] {
        let s = cli_json(BIN, d, &["status"]).unwrap();
        assert_eq!(s["peers"], 0, "{s}");
        assert_eq!(s["routing_table"], 0, "{s}");
        assert_eq!(
            s["nat"]["network_refusals"], 1,
            "refused once, never redialled: {s}"
        );
    }
}
