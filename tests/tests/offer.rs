//! A file larger than the fetching node's storage offer still streams whole: the blocks its store
//! will not cache (a full offer) reach the reader from memory, a chunk the file repeats included,
//! and the fetch waits for a slow reader instead of failing. Two real node processes on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes, wait_for_records};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: usize = 1 << 20;

#[test]
fn a_file_larger_than_the_fetchers_offer_streams_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin");
    let fetcher = tmp.path().join("fetcher");
    let _a = NodeProcess::start(BIN, &origin, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(BIN, &origin, &["status"]).unwrap()).unwrap();
    let _b = NodeProcess::start(
        BIN,
        &fetcher,
        &["--bootstrap", &boot, "--storage-offer", "4MiB"],
    )
    .unwrap();
    wait_for_records(BIN, &fetcher, 1).unwrap();
    // `get --no-cache` first, while the fetcher's store is empty: 3 MiB (a chunk, another, the
    // first again) come back whole, and only the manifest is left in its store.
    let (c1, c2) = (test_bytes(MIB, 501, false), test_bytes(MIB, 502, false));
    let small: Vec<u8> = [c1.as_slice(), &c2, &c1].concat();
    let small_file = tmp.path().join("small.bin");
    std::fs::write(&small_file, &small).unwrap();
    let put = cli_json(
        BIN,
        &origin,
        &["put", small_file.to_str().unwrap(), "--rf", "0"],
    )
    .unwrap();
    let small_out = tmp.path().join("small-out.bin");
    let o = cli(
        BIN,
        &fetcher,
        &[
            "get",
            put["cid"].as_str().unwrap(),
            "--no-cache",
            "-o",
            small_out.to_str().unwrap(),
        ],
        false,
    )
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&small_out).unwrap() == small,
        "--no-cache bytes differ"
    );
    let status = cli_json(BIN, &fetcher, &["status"]).unwrap();
    let stored = status["storage"]["stored_bytes"].as_u64().unwrap();
    assert!(stored < 64 << 10, "get --no-cache kept a copy: {status}");
    // 40 MiB: 24 distinct chunks (six times what the fetcher may cache), a chunk X, 14 more, X
    // again (read twice, cached never), a short tail. Before blocks went to the reader from
    // memory, this get failed: "the storage offer would be exceeded".
    let repeated = test_bytes(MIB, 999, false);
    let mut bytes = Vec::new();
    for i in 0..24 {
        bytes.extend(test_bytes(MIB, i, false));
    }
    bytes.extend(&repeated);
    for i in 24..38 {
        bytes.extend(test_bytes(MIB, i, false));
    }
    bytes.extend(&repeated);
    bytes.extend(test_bytes(MIB / 3, 77, true));
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let put = cli_json(BIN, &origin, &["put", file.to_str().unwrap(), "--rf", "0"]).unwrap();
    let cid = put["cid"].as_str().unwrap();
    let out = tmp.path().join("out.bin");
    let o = cli(
        BIN,
        &fetcher,
        &["get", cid, "-o", out.to_str().unwrap()],
        false,
    )
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == bytes, "bytes differ");
    // To standard output, read by a consumer that stalls for 3 s first, so the fetch runs ahead
    // of the reader (waiting for room once 16 MiB are held for it: unit tests in mesh.rs).
    let mut child = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&fetcher)
        .args(["get", cid])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut got).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(got == bytes, "stdout bytes differ");
    // The fetcher cached what its offer allows and no more.
    let status = cli_json(BIN, &fetcher, &["status"]).unwrap();
    let stored = status["storage"]["stored_bytes"].as_u64().unwrap();
    assert!(
        stored <= 4 * MIB as u64,
        "cached beyond the offer: {status}"
    );
}
