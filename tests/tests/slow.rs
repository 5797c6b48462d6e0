//! A slow holder is outrun, not waited for: four real node processes on loopback, two holders
//! that answer every block request 5 s late (`--fault-inject slow-blocks`) and one that answers
//! at once. A fetch that asks a slow holder first asks the fast one too after the hedge delay,
//! takes its answer, and asks the slow holder last for the rest of the file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes, wait_for_records};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: usize = 1 << 20;

#[test]
fn a_fetch_outruns_slow_holders() {
    let tmp = tempfile::tempdir().unwrap();
    // 0: origin (slow), 1: slow, 2: fast, 3: a fetcher offering no storage.
    let extra: [&[&str]; 4] = [
        &["--fault-inject", "slow-blocks"],
        &["--fault-inject", "slow-blocks"],
        &[],
        &["--role", "operator"],
    ];
    let mut procs = Vec::new();
    let mut dirs = Vec::new();
    let mut boot = None::<String>;
    for (i, flags) in extra.iter().enumerate() {
        let dir = tmp.path().join(format!("n{i}"));
        let mut args: Vec<&str> = Vec::new();
        if let Some(b) = &boot {
            args.extend(["--bootstrap", b.as_str()]);
        }
        args.extend_from_slice(flags);
        procs.push(NodeProcess::start(BIN, &dir, &args).unwrap());
        if boot.is_none() {
            boot = tcp_multiaddr(&cli_json(BIN, &dir, &["status"]).unwrap());
        }
        dirs.push(dir);
    }
    for dir in &dirs {
        wait_for_records(BIN, dir, 3).unwrap();
    }
    // Holders are asked in an order set by each block's id: try fresh files until one is asked
    // of a slow holder first (each file: one chance in three that the fast one comes first).
    let mut outrun = false;
    for round in 0..8u64 {
        let bytes = test_bytes(2 * MIB, 100 + round, false);
        let file = tmp.path().join(format!("f{round}.bin"));
        std::fs::write(&file, &bytes).unwrap();
        let put = cli_json(BIN, &dirs[0], &["put", file.to_str().unwrap(), "--rf", "2"]).unwrap();
        assert_eq!(put["replication"]["failed"], 0, "{put}");
        let cid = put["cid"].as_str().unwrap();
        let out = tmp.path().join(format!("out{round}.bin"));
        let o = cli(
            BIN,
            &dirs[3],
            &["get", cid, "-o", out.to_str().unwrap()],
            false,
        )
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(&out).unwrap() == bytes, "round {round}");
        if procs[3].log().contains("a slow holder was outrun") {
            outrun = true;
            break;
        }
    }
    assert!(outrun, "no fetch asked a slow holder first in 8 files");
}
