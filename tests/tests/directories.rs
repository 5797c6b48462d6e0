//! Issue 25, directories: two real node processes on loopback and a hostile node in this process.
//!
//! - A tree of 1,000 files in nested folders (0 B to 5 MiB, unicode names, an empty folder, a
//!   symbolic link that is skipped and said) is put on A with RF 0 (so only A holds it), fetched
//!   byte-identical as a tree on B, `ls` matches on both, one file of the tree is fetched by path,
//!   and the same tree put on B gets the same id.
//! - Hostile directory listings (names `..`, `a/b`, an absolute path, a duplicate name, unsorted names) are stored
//!   as raw blocks on the hostile node and announced; `warren get ID -o DIR` on B refuses each
//!   with the rule it breaks and writes nothing, inside DIR or outside it.
//! - A small private tree (`put DIR --private`) on A: none of its names is in the sealed bytes B
//!   fetches without the key; `ls CAP`, `ls CAP/sub`, `get CAP -o DIR` and `get CAP/sub/file` on
//!   B give the names, sizes and bytes; a wrong key lists nothing; `--class shared` is refused.
//!
//! With the binary of an older commit (`WARREN_TEST_NODE_BIN`), `warren put DIR` fails: "… is not
//! a regular file". On 87cf0fd (directories, public only) it fails at the private tree: "… is a
//! directory: directories are stored public (without --anon, --private or --class)".

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_protocol::directory::DIRECTORY_MEDIA_TYPE;
use warren_protocol::{Codec, ContentId, DIRECTORY_VERSION, Manifest, ManifestEntry, Role};
use warren_storage_mesh::{PutOptions, chunk};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::{NodeProcess, cli, cli_json, files_under, tcp_multiaddr, test_bytes};

const MIB: usize = 1 << 20;

/// Writes the tree: 10 folders × 10 subfolders × 10 files, plus an empty folder and a link.
/// Returns its files (relative path → bytes) and total size.
fn write_tree(root: &Path) -> (BTreeMap<PathBuf, Vec<u8>>, u64) {
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let mut n = 0u64;
    for i in 0..10 {
        for j in 0..10 {
            let dir = PathBuf::from(format!("dossier-{i}-ü")).join(format!("子フォルダ-{j}"));
            std::fs::create_dir_all(root.join(&dir)).unwrap();
            for k in 0..10 {
                n += 1;
                let len = match n {
                    1 => 5 * MIB,
                    2 => MIB + 1,
                    3 => MIB,
                    4 | 5 => 0,
                    _ => (n as usize * 7919) % 6000,
                };
                let name = format!("файл-{k}-{}.bin", ["a", "é", "🦀", "z"][k % 4]);
                let rel = dir.join(name);
                let data = test_bytes(len, n, n.is_multiple_of(3));
                std::fs::write(root.join(&rel), &data).unwrap();
                total += len as u64;
                files.insert(rel, data);
            }
        }
    }
    std::fs::create_dir_all(root.join("vide/aussi vide")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("lien")).unwrap();
    (files, total)
}

/// `warren ls` of every directory under `cid`, as (path, entries) with kinds and sizes.
fn ls_all(bin: &str, dir: &Path, cid: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(path) = todo.pop() {
        let target = if path.is_empty() {
            cid.to_owned()
        } else {
            format!("{cid}/{path}")
        };
        let view = cli_json(bin, dir, &["ls", &target]).unwrap();
        for e in view["entries"].as_array().unwrap() {
            if e["kind"] == "dir" {
                let name = e["name"].as_str().unwrap();
                todo.push(if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}/{name}")
                });
            }
        }
        out.push((path, view));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

// A hand-written CBOR encoder for the hostile listings (the real encoder refuses them).
fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
    }
}

fn text(s: &str, out: &mut Vec<u8>) {
    head(3, s.len() as u64, out);
    out.extend(s.as_bytes());
}

/// A listing `{"entries": [{"name", "kind": "file", "cid", "size"}…]}` in the given order.
fn hostile_listing(names: &[&str], cid: &ContentId, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    head(5, 1, &mut out);
    text("entries", &mut out);
    head(4, names.len() as u64, &mut out);
    for name in names {
        head(5, 4, &mut out);
        text("name", &mut out);
        text(name, &mut out);
        text("kind", &mut out);
        text("file", &mut out);
        text("cid", &mut out);
        let id = cid.to_bytes();
        head(2, id.len() as u64, &mut out);
        out.extend(id);
        text("size", &mut out);
        head(0, size, &mut out);
    }
    out
}

/// Stores `listing` on the hostile node as a directory (a listing chunk under a version-2 root)
/// and announces it; returns the directory's id.
fn plant(rt: &tokio::runtime::Runtime, hostile: &Hostile, listing: &[u8]) -> ContentId {
    let block = chunk::encode_block(listing);
    let chunk_id = ContentId::of_block(Codec::Raw, &block);
    let root = Manifest {
        version: DIRECTORY_VERSION,
        size: listing.len() as u64,
        depth: 0,
        entries: vec![ManifestEntry {
            cid: chunk_id,
            raw_len: listing.len() as u64,
            stored_len: block.len() as u64,
        }],
        name: None,
        media_type: Some(DIRECTORY_MEDIA_TYPE.into()),
    };
    let (root_id, root_bytes) = root.to_block().unwrap();
    let store = &hostile.node.store;
    store.put_block(&chunk_id, &block).unwrap();
    store.put_block(&root_id, &root_bytes).unwrap();
    store.pin(&root_id).unwrap();
    rt.block_on(hostile.node.mesh.keep_here(root_id)).unwrap();
    root_id
}

#[test]
fn a_tree_round_trips_between_nodes_and_hostile_listings_are_refused() {
    let started = Instant::now();
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = NodeProcess::start(&bin, &a_dir, &[]).unwrap();
    let boot = tcp_multiaddr(&cli_json(&bin, &a_dir, &["status"]).unwrap()).unwrap();
    let b = NodeProcess::start(&bin, &b_dir, &["--bootstrap", &boot]).unwrap();

    let tree = tmp.path().join("tree");
    let (files, total) = write_tree(&tree);
    assert_eq!(files.len(), 1000);
    println!("tree: {} files, {total} bytes", files.len());

    // Put on A, kept there only.
    let t = Instant::now();
    let out = cli(
        &bin,
        &a_dir,
        &["put", tree.to_str().unwrap(), "--rf", "0"],
        true,
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "put DIR failed: {stderr}");
    assert!(
        stderr.contains("lien") && stderr.contains("not followed"),
        "the skipped link is said: {stderr}"
    );
    let put: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = put["cid"].as_str().unwrap().to_owned();
    println!("put: {id} in {:?}", t.elapsed());
    // One pin: the tree's.
    let pins = cli_json(&bin, &a_dir, &["pins"]).unwrap();
    assert_eq!(pins.as_array().unwrap().len(), 1, "{pins}");

    // Fetched as a tree on B, byte-identical, the empty folders kept, the link absent.
    let t = Instant::now();
    let got = tmp.path().join("got");
    let view = cli_json(&bin, &b_dir, &["get", &id, "-o", got.to_str().unwrap()]).unwrap();
    println!("get on B: {view} in {:?}", t.elapsed());
    assert_eq!(view["files"], 1000);
    assert_eq!(view["size"], total);
    let fetched = files_under(&got);
    assert_eq!(fetched.len(), files.len());
    for (rel, data) in &files {
        let bytes = std::fs::read(got.join(rel)).unwrap();
        assert!(bytes == *data, "{} differs", rel.display());
    }
    assert!(got.join("vide/aussi vide").is_dir());
    assert!(std::fs::symlink_metadata(got.join("lien")).is_err());

    // `ls` agrees on both nodes, and with the tree.
    let on_a = ls_all(&bin, &a_dir, &id);
    let on_b = ls_all(&bin, &b_dir, &id);
    assert_eq!(on_a, on_b);
    assert_eq!(on_a.len(), 1 + 10 + 100 + 2);
    let top: Vec<_> = on_a[0].1["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    let mut local: Vec<_> = std::fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "lien")
        .collect();
    local.sort();
    assert_eq!(top, local);
    assert_eq!(on_a[0].1["size"], total);

    // One file by its path in the tree.
    let (rel, data) = files.iter().next().unwrap();
    let one = tmp.path().join("one.bin");
    let path = format!("{id}/{}", rel.to_str().unwrap());
    cli_json(&bin, &b_dir, &["get", &path, "-o", one.to_str().unwrap()]).unwrap();
    assert!(std::fs::read(&one).unwrap() == *data);
    // A directory without -o, and a missing entry, are sentences.
    let out = cli(&bin, &b_dir, &["get", &id], false).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a directory"), "{err}");
    let out = cli(&bin, &b_dir, &["ls", &format!("{id}/nope")], false).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no entry \"nope\""),
        "{err}"
    );

    // A private tree: names and sizes inside the encryption, opened by one capability on B.
    let secret = tmp.path().join("secret");
    std::fs::create_dir_all(secret.join("sub")).unwrap();
    std::fs::create_dir_all(secret.join("vide")).unwrap();
    let notes = test_bytes(70_000, 7, true);
    let deep = test_bytes(300_000, 8, false);
    std::fs::write(secret.join("notes privées.txt"), &notes).unwrap();
    std::fs::write(secret.join("sub/deep.bin"), &deep).unwrap();
    let private = cli_json(
        &bin,
        &a_dir,
        &["put", secret.to_str().unwrap(), "--private", "--rf", "0"],
    )
    .unwrap();
    let cap = private["capability"].as_str().unwrap().to_owned();
    let sealed_id = private["cid"].as_str().unwrap().to_owned();
    assert_eq!(private["class"], "private");
    // Without the key: a private file of padded size; no name in the bytes B can fetch.
    let raw = tmp.path().join("sealed.bin");
    cli_json(
        &bin,
        &b_dir,
        &["get", &sealed_id, "-o", raw.to_str().unwrap()],
    )
    .unwrap();
    let raw = std::fs::read(&raw).unwrap();
    for name in ["notes privées", "deep.bin", "vide"] {
        assert!(
            !raw.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name:?} readable without the key"
        );
    }
    let listed = cli_json(&bin, &b_dir, &["ls", &cap]).unwrap();
    let names: Vec<_> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["notes privées.txt", "sub", "vide"], "{listed}");
    assert_eq!(listed["size"], (notes.len() + deep.len()) as u64);
    let sub = cli_json(&bin, &b_dir, &["ls", &format!("{cap}/sub")]).unwrap();
    assert_eq!(sub["entries"][0]["name"], "deep.bin");
    let got_private = tmp.path().join("got-private");
    let view = cli_json(
        &bin,
        &b_dir,
        &["get", &cap, "-o", got_private.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(view["files"], 2, "{view}");
    assert!(std::fs::read(got_private.join("notes privées.txt")).unwrap() == notes);
    assert!(std::fs::read(got_private.join("sub/deep.bin")).unwrap() == deep);
    assert!(got_private.join("vide").is_dir());
    let one_private = tmp.path().join("deep.bin");
    cli_json(
        &bin,
        &b_dir,
        &[
            "get",
            &format!("{cap}/sub/deep.bin"),
            "-o",
            one_private.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(std::fs::read(&one_private).unwrap() == deep);
    // Another key opens nothing; a shared tree is refused with a sentence.
    let wrong = format!(
        "{}#{}",
        cap.split_once('#').unwrap().0,
        "b".to_owned() + &"a".repeat(52)
    );
    let out = cli(&bin, &b_dir, &["ls", &wrong], false).unwrap();
    assert!(!out.status.success(), "a wrong key listed the tree");
    let out = cli(
        &bin,
        &a_dir,
        &["put", secret.to_str().unwrap(), "--class", "shared"],
        false,
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("shared"), "{err}");

    // The same tree put on B gets the same id.
    let again = cli_json(&bin, &b_dir, &["put", tree.to_str().unwrap(), "--rf", "0"]).unwrap();
    assert_eq!(again["cid"], id.as_str());

    // Hostile listings, served by a peer that stored them as raw blocks.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hostile = rt.block_on(async {
        let h = Hostile::start(
            &tmp.path().join("hostile"),
            "local",
            vec![boot.parse().unwrap()],
            64 * MIB as u64,
            |c| c.roles = vec![Role::Operator],
        )
        .await
        .unwrap();
        h.connect(boot.parse().unwrap(), Duration::from_secs(20))
            .await
            .unwrap();
        h
    });
    let victim = hostile
        .node
        .store
        .put(&b"overwritten"[..], &PutOptions::default(), &|_| {})
        .unwrap();
    rt.block_on(hostile.node.mesh.keep_here(victim.cid))
        .unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let before = files_under(&outside).len();
    for (names, rule) in [
        (&[".."][..], "would leave or repeat the directory"),
        (&["a/b"][..], "contains `/`"),
        (&["/tmp/warren-e2e-escaped"][..], "contains `/`"),
        (&["x", "x"][..], "appears twice"),
        (&["b", "a"][..], "must be sorted"),
    ] {
        let listing = hostile_listing(names, &victim.cid, 11);
        let bad = plant(&rt, &hostile, &listing).to_string();
        let target = outside.join("sub").join("target");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let out = cli(
            &bin,
            &b_dir,
            &["get", &bad, "-o", target.to_str().unwrap()],
            false,
        )
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        println!("{names:?}: {}", err.trim());
        assert!(!out.status.success(), "{names:?} accepted");
        assert!(
            err.contains(&format!("directory {bad} is refused")) && err.contains(rule),
            "{names:?}: {err}"
        );
        assert!(!target.exists(), "{names:?}: created the target");
        let out = cli(&bin, &b_dir, &["ls", &bad], false).unwrap();
        assert!(!out.status.success(), "{names:?}: ls accepted");
    }
    assert_eq!(files_under(&outside).len(), before, "nothing written");
    assert!(!Path::new("/tmp/warren-e2e-escaped").exists());
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "only the folder the test made"
    );

    rt.block_on(hostile.stop());
    b.stop().unwrap();
    a.stop().unwrap();
    println!("directories: {:?}", started.elapsed());
}
