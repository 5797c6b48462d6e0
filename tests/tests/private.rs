//! Acceptance of "Storage mesh III: private data" with four real node processes on loopback:
//! private files of 0 B to 100 MiB round-trip through the mesh by capability; no holder's disk
//! has a byte of plaintext or the name; the manifest shows only the padded ciphertext length;
//! tampered, reordered and truncated ciphertext and a wrong key all fail with a clear error and
//! leave no output file; shared files deduplicate and private ones do not; `pins` shows classes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");
const MIB: usize = 1 << 20;
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7d1f";
const NAME: &str = "payroll-2026.csv";

fn start_mesh(tmp: &Path, n: usize) -> (Vec<NodeProcess>, Vec<PathBuf>) {
    let mut procs = Vec::new();
    let mut dirs = Vec::new();
    let a = tmp.join("n0");
    procs.push(NodeProcess::start(BIN, &a, &[]).unwrap());
    let boot = tcp_multiaddr(&cli_json(BIN, &a, &["status"]).unwrap()).unwrap();
    dirs.push(a);
    for i in 1..n {
        let dir = tmp.join(format!("n{i}"));
        procs.push(NodeProcess::start(BIN, &dir, &["--bootstrap", &boot]).unwrap());
        dirs.push(dir);
    }
    for dir in &dirs {
        wait_for(Duration::from_secs(30), "every peer's record", || {
            let peers = cli_json(BIN, dir, &["peers"]).ok()?;
            let peers = peers.as_array()?;
            (peers.len() == n - 1
                && peers
                    .iter()
                    .all(|p| !p["roles"].as_array().unwrap().is_empty()))
            .then_some(())
        })
        .unwrap();
    }
    (procs, dirs)
}

fn put(dir: &Path, file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["put", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli_json(BIN, dir, &args).unwrap()
}

/// `get TARGET -o out`: Ok(bytes) or Err(stderr); on failure checks that no output (and no
/// partial file) was left.
fn get(dir: &Path, target: &str, out: &Path) -> Result<Vec<u8>, String> {
    let o = cli(
        BIN,
        dir,
        &["get", target, "-o", out.to_str().unwrap()],
        false,
    )
    .unwrap();
    if o.status.success() {
        return Ok(std::fs::read(out).unwrap());
    }
    let parent = out.parent().unwrap();
    assert!(!out.exists(), "a failed get left {}", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("warren-partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    Err(String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Every file under a node's store directory (block files and the redb index).
fn store_files(dir: &Path) -> Vec<PathBuf> {
    let mut todo = vec![dir.join("store")];
    let mut out = Vec::new();
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Random bytes with the marker every 64 KiB, so any readable piece of it would show (random,
/// so that it does not compress and spans several sealed segments).
fn marked(len: usize, seed: u64) -> Vec<u8> {
    let mut d = test_bytes(len, seed, false);
    let mut at = 0;
    while at + MARKER.len() <= len {
        d[at..at + MARKER.len()].copy_from_slice(MARKER);
        at += 64 * 1024;
    }
    d
}

#[test]
fn private_files_round_trip_hide_their_content_and_resist_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let (_procs, dirs) = start_mesh(tmp.path(), 4);
    let work = tmp.path().join("files");
    std::fs::create_dir_all(&work).unwrap();

    // Round trips through the mesh: put on node 0 at RF 2, get by capability on node 3.
    let mut big = test_bytes(100 * MIB, 9, false);
    // Half of it compressible, so both block kinds go through.
    big[50 * MIB..].copy_from_slice(&test_bytes(50 * MIB, 10, true));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("0 B", vec![]),
        ("1 B", vec![b'x']),
        ("1 MiB", test_bytes(MIB, 1, false)),
        ("1 MiB + 1", test_bytes(MIB + 1, 2, true)),
        ("100 MiB", big),
    ];
    for (i, (what, data)) in cases.iter().enumerate() {
        let f = work.join(format!("case-{i}"));
        std::fs::write(&f, data).unwrap();
        let started = std::time::Instant::now();
        let v = put(&dirs[0], &f, &["--private", "--rf", "2"]);
        let cap = v["capability"].as_str().unwrap().to_owned();
        assert!(cap.starts_with("warren:") && cap.contains('#'), "{v}");
        assert_eq!(v["class"], "private");
        assert_eq!(v["size"], data.len() as u64, "{what}: {v}");
        let out = work.join(format!("out-{i}"));
        let got = get(&dirs[3], &cap, &out).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(got == *data, "{what}: not byte-identical");
        println!(
            "{what}: put + get through the mesh in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    // A private file with a known marker and name, at RF 3: no holder's disk has either.
    let secret = marked(3 * MIB + 12_345, 3);
    let f = work.join(NAME);
    std::fs::write(&f, &secret).unwrap();
    let v = put(&dirs[0], &f, &["--private", "--rf", "3"]);
    let cap = v["capability"].as_str().unwrap().to_owned();
    let cid = v["cid"].as_str().unwrap().to_owned();
    let blocks = v["blocks"].as_u64().unwrap();
    let mut seen = 0;
    for dir in &dirs {
        for path in store_files(dir) {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!contains(&bytes, MARKER), "plaintext in {}", path.display());
            assert!(
                !contains(&bytes, NAME.as_bytes()),
                "the name in {}",
                path.display()
            );
            seen += 1;
        }
        let held = cli_json(BIN, dir, &["held"]).unwrap();
        println!(
            "{}: {} blocks held",
            dir.display(),
            held.as_array().unwrap().len()
        );
    }
    assert!(seen > 3 * blocks as usize, "read {seen} store files");
    // The manifest: no name, no media type, the padded ciphertext length only.
    let stat = cli_json(BIN, &dirs[2], &["stat", &cid]).unwrap();
    assert_eq!(stat["name"], Value::Null, "{stat}");
    assert_eq!(stat["media_type"], Value::Null, "{stat}");
    let sealed_size = stat["size"].as_u64().unwrap();
    assert!(sealed_size > secret.len() as u64, "{stat}");
    // The bare CID gives the ciphertext, on any node: no marker in it.
    let ct_path = work.join("ciphertext.bin");
    let ciphertext = get(&dirs[3], &cid, &ct_path).unwrap();
    assert_eq!(ciphertext.len() as u64, sealed_size);
    assert!(!contains(&ciphertext, MARKER));
    assert!(get(&dirs[3], &cap, &work.join("secret.out")).unwrap() == secret);

    // Tampering: republish altered ciphertext as a new DAG and ask for it with the real key.
    let key = cap.split_once('#').unwrap().1.to_owned();
    let segments = ciphertext.len().div_ceil(MIB);
    assert!(segments >= 2, "{segments} segments");
    let mut flipped = ciphertext.clone();
    flipped[MIB / 2] ^= 0x04;
    let mut swapped = ciphertext.clone();
    let (a, b) = swapped.split_at_mut(MIB);
    a.swap_with_slice(&mut b[..MIB]);
    let dropped = ciphertext[..(segments - 1) * MIB].to_vec();
    for (what, bytes, want) in [
        ("a flipped bit", flipped, "segment 0 of"),
        ("a swapped pair of chunks", swapped, "segment 0 of"),
        ("the last chunk dropped", dropped, "failed authentication"),
    ] {
        let f = work.join("tampered.bin");
        std::fs::write(&f, &bytes).unwrap();
        let v = put(&dirs[1], &f, &["--rf", "2"]);
        let tampered = format!("warren:{}#{key}", v["cid"].as_str().unwrap());
        let err = get(&dirs[2], &tampered, &work.join("tampered.out")).unwrap_err();
        assert!(
            err.contains("cannot open sealed file") && err.contains(want),
            "{what}: {err}"
        );
        println!("{what}: {}", err.trim());
    }
    // A wrong key.
    let wrong = format!("warren:{cid}#b{}", "a".repeat(52));
    let err = get(&dirs[3], &wrong, &work.join("wrong.out")).unwrap_err();
    assert!(err.contains("wrong key"), "{err}");
    // A capability that does not parse: a clear error, and the key is not echoed.
    let bad = format!("warren:{cid}#{}", &key[..20]);
    let err = get(&dirs[3], &bad, &work.join("bad.out")).unwrap_err();
    assert!(
        err.contains("not a capability") && !err.contains(&key[1..20]),
        "{err}"
    );

    // Classes: shared deduplicates (same capability twice), private never does.
    let f = work.join("report.txt");
    std::fs::write(&f, test_bytes(2 * MIB, 4, true)).unwrap();
    let s1 = put(&dirs[0], &f, &["--class", "shared", "--rf", "0"]);
    let s2 = put(&dirs[0], &f, &["--class", "shared", "--rf", "0"]);
    assert_eq!(s1["capability"], s2["capability"]);
    assert_eq!(s2["new_bytes"], 0, "{s2}");
    let p1 = put(&dirs[0], &f, &["--class", "private", "--rf", "0"]);
    let p2 = put(&dirs[0], &f, &["--private", "--rf", "0"]);
    assert_ne!(p1["cid"], p2["cid"]);
    assert_ne!(p1["cid"], s1["cid"]);
    let public = put(&dirs[0], &f, &["--rf", "0"]);
    assert_eq!(public["capability"], Value::Null);
    let pins = cli_json(BIN, &dirs[0], &["pins"]).unwrap();
    let class_of = |cid: &Value| {
        pins.as_array()
            .unwrap()
            .iter()
            .find(|p| p["cid"] == *cid)
            .map(|p| (p["class"].clone(), p["name"].clone()))
            .unwrap()
    };
    assert_eq!(class_of(&s1["cid"]), ("shared".into(), Value::Null));
    assert_eq!(class_of(&p1["cid"]), ("private".into(), Value::Null));
    assert_eq!(class_of(&public["cid"]).0, "public");
    let text = cli(BIN, &dirs[0], &["pins"], false).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("private") && text.contains("shared"),
        "{text}"
    );
    // Bad class and a shared put from stdin: clear errors.
    let o = cli(
        BIN,
        &dirs[0],
        &["put", f.to_str().unwrap(), "--class", "secret"],
        false,
    )
    .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("public, shared or private"));
}
