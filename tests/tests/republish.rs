//! A node republishes its record before it expires: with a 60 s lifetime, another node sees a
//! freshly issued record in the DHT after about 30 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use warren_tests::{NodeProcess, cli_json, tcp_multiaddr, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

#[test]
fn record_is_republished_before_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let _a = NodeProcess::start(BIN, &a_dir, &["--record-ttl-secs", "60"]).unwrap();
    let a_status = cli_json(BIN, &a_dir, &["status"]).unwrap();
    let a_peer = a_status["peer_id"].as_str().unwrap().to_owned();
    let boot = tcp_multiaddr(&a_status).unwrap();
    let _b = NodeProcess::start(BIN, &b_dir, &["--bootstrap", &boot]).unwrap();

    // Once a's record is stored on b, the next issue is the scheduled republish.
    wait_for(
        Duration::from_secs(20),
        "a's record to be stored on another peer",
        || {
            let s = cli_json(BIN, &a_dir, &["status"]).ok()?;
            (s["record_published"] == true).then_some(())
        },
    )
    .unwrap();
    let first = wait_for(Duration::from_secs(20), "b to fetch a's record", || {
        cli_json(BIN, &b_dir, &["record", &a_peer]).ok()
    })
    .unwrap();
    let issued = first["issued_at"].as_u64().unwrap();
    assert_eq!(first["expires_at"].as_u64().unwrap(), issued + 60);

    // Republished at half the lifetime, long before the first copy expires.
    let again = wait_for(
        Duration::from_secs(45),
        "a fresher record of a in the DHT",
        || {
            let r = cli_json(BIN, &b_dir, &["record", &a_peer]).ok()?;
            (r["issued_at"].as_u64()? > issued).then_some(r)
        },
    )
    .unwrap();
    let reissued = again["issued_at"].as_u64().unwrap();
    assert!(
        reissued < issued + 60,
        "republished only after expiry: {issued} -> {reissued}"
    );
    assert_eq!(again["verified"], true);
}
