//! Acceptance of "Storage mesh I" through the real binary: put and get round trips from 0 B to
//! 300 MiB, the same CID on two nodes, idempotent puts, pins and gc, bad ids, corruption and a
//! SIGKILL in the middle of a large put.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use warren_tests::{NodeProcess, cli, cli_json, files_under, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: usize = 1 << 20;

fn data(len: usize, seed: u64, text: bool) -> Vec<u8> {
    warren_tests::test_bytes(len, seed, text)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn put(dir: &Path, file: &Path) -> serde_json::Value {
    cli_json(BIN, dir, &["put", file.to_str().unwrap()]).unwrap()
}

fn get_to(dir: &Path, cid: &str, out: &Path) -> std::process::Output {
    cli(BIN, dir, &["get", cid, "-o", out.to_str().unwrap()], false).unwrap()
}

#[test]
fn round_trips_from_0_b_to_300_mib_and_ids_agree_across_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let _a = NodeProcess::start(BIN, &a_dir, &[]).unwrap();
    let _b = NodeProcess::start(BIN, &b_dir, &[]).unwrap();
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one", vec![42]),
        ("hello.txt", b"hello\n".to_vec()),
        ("exact-1mib", data(MIB, 1, false)),
        ("1mib-plus-1", data(MIB + 1, 2, false)),
        ("text-3mib", data(3 * MIB + 123, 3, true)),
        ("random-5mib", data(5 * MIB - 7, 4, false)),
    ];
    for (name, bytes) in &cases {
        let f = write_file(&files, name, bytes);
        let a = put(&a_dir, &f);
        let b = put(&b_dir, &f);
        assert_eq!(
            a["cid"], b["cid"],
            "{name}: the same file must get the same CID on two nodes"
        );
        assert_eq!(a["size"].as_u64().unwrap(), bytes.len() as u64);
        let cid = a["cid"].as_str().unwrap();
        let out = files.join(format!("{name}.out"));
        let o = get_to(&a_dir, cid, &out);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            std::fs::read(&out).unwrap() == *bytes,
            "{name}: bytes differ after the round trip"
        );
        // Also through stdout.
        let o = cli(BIN, &b_dir, &["get", cid], false).unwrap();
        assert!(o.status.success());
        assert!(o.stdout == *bytes, "{name}: stdout bytes differ");
    }

    // 300 MiB, half text-like and half random, streamed through both nodes.
    let big: Vec<u8> = [data(150 * MIB, 5, true), data(150 * MIB, 6, false)].concat();
    let f = write_file(&files, "big", &big);
    let a = put(&a_dir, &f);
    let b = put(&b_dir, &f);
    assert_eq!(a["cid"], b["cid"]);
    let out = files.join("big.out");
    let o = get_to(&b_dir, a["cid"].as_str().unwrap(), &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&out).unwrap() == big,
        "300 MiB file differs after the round trip"
    );

    // Putting the same file again is idempotent: same CID, nothing new written.
    let again = put(&a_dir, &f);
    assert_eq!(again["cid"], a["cid"]);
    assert_eq!(again["new_bytes"], 0);
}

#[test]
fn pins_gc_and_bad_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let _n = NodeProcess::start(BIN, &dir, &[]).unwrap();
    let keep = write_file(tmp.path(), "keep.txt", &data(2 * MIB, 7, true));
    let drop_ = write_file(tmp.path(), "drop.bin", &data(2 * MIB, 8, false));
    let keep_cid = put(&dir, &keep)["cid"].as_str().unwrap().to_owned();
    let drop_cid = put(&dir, &drop_)["cid"].as_str().unwrap().to_owned();

    let pins = cli_json(BIN, &dir, &["pins"]).unwrap();
    let listed: Vec<&str> = pins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cid"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&keep_cid.as_str()) && listed.contains(&drop_cid.as_str()));
    let kept = pins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["cid"] == keep_cid.as_str())
        .unwrap();
    assert_eq!(kept["name"], "keep.txt");

    let gc = cli_json(BIN, &dir, &["gc"]).unwrap();
    assert_eq!(gc["blocks_removed"], 0, "gc must keep pinned files");
    cli_json(BIN, &dir, &["unpin", &drop_cid]).unwrap();
    let gc = cli_json(BIN, &dir, &["gc"]).unwrap();
    assert!(gc["blocks_removed"].as_u64().unwrap() >= 3, "{gc}");
    assert!(
        gc["bytes_freed"].as_u64().unwrap() >= 2 * MIB as u64,
        "{gc}"
    );

    let o = get_to(&dir, &keep_cid, &tmp.path().join("keep.out"));
    assert!(o.status.success());
    let o = get_to(&dir, &drop_cid, &tmp.path().join("drop.out"));
    assert!(!o.status.success(), "a collected file must not come back");
    assert!(!tmp.path().join("drop.out").exists());

    // Bad and unknown ids get clear errors.
    let o = cli(BIN, &dir, &["get", "bafy-not-a-cid"], false).unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a warren CID"));
    let o = cli(BIN, &dir, &["unpin", &drop_cid], false).unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not pinned"));
    let status = cli_json(BIN, &dir, &["status"]).unwrap();
    assert!(status["storage"]["blocks"].as_u64().unwrap() >= 3);
}

#[test]
fn sigkill_in_the_middle_of_a_put_loses_nothing_reported_and_pins_nothing_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let node = NodeProcess::start(BIN, &dir, &[]).unwrap();
    let small = write_file(tmp.path(), "small.txt", &data(3 * MIB, 9, true));
    let small_cid = put(&dir, &small)["cid"].as_str().unwrap().to_owned();
    let big = write_file(tmp.path(), "big.bin", &data(400 * MIB, 10, false));

    // Start a large put in the background and kill the node while it runs.
    let mut putter = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["put", big.to_str().unwrap(), "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store_dir = dir.join("store");
    let du = |p: &Path| -> u64 {
        files_under(p)
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    let before = du(&store_dir);
    wait_for(Duration::from_secs(60), "the put to be under way", || {
        (du(&store_dir) > before + 40 * MIB as u64).then_some(())
    })
    .unwrap();
    let pid = node.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let put_status = putter.wait().unwrap();
    assert!(
        !put_status.success(),
        "the put cannot have succeeded against a killed node"
    );
    drop(node);

    // Restart on the same data directory: the store opens, the earlier file is whole, the partial
    // one is not pinned.
    let _node = NodeProcess::start(BIN, &dir, &[]).unwrap();
    let out = tmp.path().join("small.out");
    let o = get_to(&dir, &small_cid, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&small).unwrap());
    let pins = cli_json(BIN, &dir, &["pins"]).unwrap();
    let pins = pins.as_array().unwrap();
    assert_eq!(
        pins.len(),
        1,
        "only the completed file may be pinned: {pins:?}"
    );
    assert_eq!(pins[0]["cid"], small_cid.as_str());
    // The partial blocks are garbage: gc reclaims them, and a fresh put of the file completes.
    let gc = cli_json(BIN, &dir, &["gc"]).unwrap();
    println!("gc after the crash: {gc}");
    let done = put(&dir, &big);
    assert_eq!(done["size"].as_u64().unwrap(), 400 * MIB as u64);
}

#[test]
fn a_flipped_byte_in_a_stored_block_fails_get_naming_the_block() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let _n = NodeProcess::start(BIN, &dir, &[]).unwrap();
    let original = data(3 * MIB, 11, false);
    let f = write_file(tmp.path(), "victim.bin", &original);
    let cid = put(&dir, &f)["cid"].as_str().unwrap().to_owned();

    // Blocks larger than a few KiB are files named by their CID under store/blocks/.
    let mut blocks = files_under(&dir.join("store").join("blocks"));
    blocks.sort();
    assert_eq!(blocks.len(), 3, "three 1 MiB chunks: {blocks:?}");
    // Corrupt the block that holds the file's second MiB (find it by content: random chunks are
    // stored raw after a one-byte tag).
    let victim = blocks
        .iter()
        .find(|p| std::fs::read(p).unwrap()[1..33] == original[MIB..MIB + 32])
        .expect("the second chunk's block")
        .clone();
    let victim_cid = victim.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[4242] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();

    let out = tmp.path().join("victim.out");
    let o = get_to(&dir, &cid, &out);
    assert!(!o.status.success(), "get of a corrupt file must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&victim_cid),
        "the error must name the corrupt block {victim_cid}: {err}"
    );
    assert!(!out.exists(), "nothing may be written to -o on failure");

    // To stdout: only verified bytes come out (the first chunk), never the corrupt one.
    let o = cli(BIN, &dir, &["get", &cid], false).unwrap();
    assert!(!o.status.success());
    assert!(
        o.stdout.len() <= MIB && o.stdout[..] == original[..o.stdout.len()],
        "wrong bytes on stdout"
    );

    // The node keeps serving other files.
    let ok = write_file(tmp.path(), "ok.txt", b"still here\n");
    let ok_cid = put(&dir, &ok)["cid"].as_str().unwrap().to_owned();
    let o = cli(BIN, &dir, &["get", &ok_cid], false).unwrap();
    assert_eq!(o.stdout, b"still here\n");
}

#[test]
fn the_users_own_puts_are_limited_by_the_disk_not_by_the_offer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let config = tmp.path().join("small.toml");
    std::fs::write(
        &config,
        "[storage]\ntier = \"hot\"\noffer_bytes = 4194304\n",
    )
    .unwrap();
    let _n = NodeProcess::start(BIN, &dir, &["--config", config.to_str().unwrap()]).unwrap();
    let fits = write_file(tmp.path(), "fits.bin", &data(3 * MIB, 12, false));
    let cid = put(&dir, &fits)["cid"].as_str().unwrap().to_owned();
    // Past the 4 MiB offer: the offer is what others may place here; the user's own files are
    // limited by the disk (38fbb4c refused this: "the storage offer would be exceeded").
    let more = write_file(tmp.path(), "more.bin", &data(2 * MIB, 13, false));
    let more_cid = put(&dir, &more)["cid"].as_str().unwrap().to_owned();
    let status = cli_json(BIN, &dir, &["status"]).unwrap();
    assert!(status["storage"]["stored_bytes"].as_u64().unwrap() > 4 * MIB as u64);
    assert_eq!(
        status["storage"]["offered_bytes"].as_u64().unwrap(),
        4 * MIB as u64
    );
    let o = cli(BIN, &dir, &["get", &more_cid], false).unwrap();
    assert!(
        o.stdout == data(2 * MIB, 13, false),
        "the second file reads back"
    );
    let pins = cli_json(BIN, &dir, &["pins"]).unwrap();
    assert_eq!(pins.as_array().unwrap().len(), 2);
    assert!(
        pins.as_array()
            .unwrap()
            .iter()
            .any(|p| p["cid"] == cid.as_str())
    );
    // The node's own record advertises what is left.
    let peer = status["peer_id"].as_str().unwrap().to_owned();
    let record = cli_json(BIN, &dir, &["record", &peer]).unwrap();
    assert_eq!(record["storage"]["tier"], "hot");
    assert_eq!(
        record["storage"]["bytes_offered"].as_u64().unwrap(),
        4 * MIB as u64
    );
}
