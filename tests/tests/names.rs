//! Acceptance for names that can change (issue 25 item 2, `spec/names.md`): three node processes
//! A, B, C and one hostile peer H in this process, on loopback.
//!
//! - A publishes its name (its identity key) → file 1; C resolves it and `get /name/N` gives
//!   file 1's bytes. H keeps that signed record.
//! - A publishes file 2 (a higher sequence); C resolves file 2.
//! - H replays the older signed record into the DHT (`put_record` to the peers closest to the
//!   name, and in its own store): A, B and C refuse to store it (not newer), C still resolves
//!   file 2, and the only answer with the old sequence is H's own.
//! - H sends C and B raw `PUT_VALUE`s under the name's key: its own validly signed record (the
//!   wrong key for the name) and A's record with the CID changed (the signature fails). Both are
//!   refused, and C still resolves file 2.
//! - C's gateway serves `GET /name/N` as file 2, `Cache-Control: public, max-age=10`, `ETag` the
//!   id.
//! - A makes two named keys and publishes each with a 4 s lifetime, one `--no-republish`: after
//!   7 s the first resolves to a clear "expired" error, the second (republished by A's timer)
//!   still resolves, with a higher sequence.
//!
//! On 87cf0fd (`WARREN_TEST_NODE_BIN=/work/old-bin/warren-87cf0fd`, no names at all) the test
//! fails at the first publish: `error: unrecognized subcommand 'name'`; that node also refuses
//! every DHT record outside `/warren/node/` ("refused DHT record: key is not in the /warren/node/
//! namespace"), so a name could not be stored there at all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_protocol::name::{NAME_RECORD_VERSION, NameRecord, decode_verified, name_key};
use warren_protocol::{ContentId, Keypair, PeerId};
use warren_tests::hostile::{Hostile, node_bin};
use warren_tests::kad_raw::put_value;
use warren_tests::{NodeProcess, cli, cli_json, tcp_multiaddr, test_bytes, wait_for};

use crate::gateway::{get as http, header};

fn put(bin: &str, dir: &Path, file: &str, seed: u64) -> (String, Vec<u8>) {
    let bytes = test_bytes(50_000, seed, false);
    let path = dir.join(file);
    std::fs::write(&path, &bytes).unwrap();
    let v = cli_json(bin, dir, &["put", path.to_str().unwrap(), "--rf", "0"]).unwrap();
    (v["cid"].as_str().unwrap().to_owned(), bytes)
}

/// `warren name resolve NAME --json` on `dir`: the answer, or the error's text.
fn resolve(bin: &str, dir: &Path, name: &str) -> Result<Value, String> {
    let out = cli(bin, dir, &["name", "resolve", name], true).unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Waits until C resolves `name` to `cid`.
fn resolves_to(bin: &str, dir: &Path, name: &str, cid: &str) -> Value {
    wait_for(
        Duration::from_secs(20),
        &format!("{name} → {cid}"),
        || resolve(bin, dir, name).ok().filter(|v| v["cid"] == cid),
    )
    .unwrap()
}

fn get_name(bin: &str, dir: &Path, target: &str, out: &str) -> Vec<u8> {
    let o = dir.join(out);
    cli_json(bin, dir, &["get", target, "-o", o.to_str().unwrap()]).unwrap();
    std::fs::read(o).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_to_the_newest_record_and_replays_forgeries_and_expiry_lose() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let (b, ad, bd, cd) = (bin.clone(), a_dir.clone(), b_dir.clone(), c_dir.clone());
    let (a, bn, c, a_addr) = tokio::task::spawn_blocking(move || {
        let a = NodeProcess::start(&b, &ad, &[]).unwrap();
        let a_addr = tcp_multiaddr(&cli_json(&b, &ad, &["status"]).unwrap()).unwrap();
        let bn = NodeProcess::start(&b, &bd, &["--bootstrap", &a_addr]).unwrap();
        let c = NodeProcess::start(
            &b,
            &cd,
            &["--bootstrap", &a_addr, "--gateway", "127.0.0.1:0"],
        )
        .unwrap();
        (a, bn, c, a_addr)
    })
    .await
    .unwrap();
    let h_key = Keypair::generate_ed25519();
    let h = Hostile::start_with_key(
        &tmp.path().join("h"),
        "local",
        vec![a_addr.parse().unwrap()],
        0,
        h_key.clone(),
        |_| {},
    )
    .await
    .unwrap();
    let peer_of = |dir: &Path| -> PeerId {
        cli_json(&bin, dir, &["status"]).unwrap()["peer_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (b_id, c_id) = (peer_of(&b_dir), peer_of(&c_dir));
    let (bin2, cd) = (bin.clone(), c_dir.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(30), "C to see A, B and H", || {
            let peers = cli_json(&bin2, &cd, &["peers"]).ok()?;
            (peers.as_array()?.len() >= 3).then_some(())
        })
    })
    .await
    .unwrap()
    .unwrap();

    // 1. A's name → file 1, resolved and fetched on C.
    let (cid1, bytes1) = put(&bin, &a_dir, "one.bin", 1);
    let (cid2, bytes2) = put(&bin, &a_dir, "two.bin", 2);
    let p1 = cli_json(&bin, &a_dir, &["name", "publish", &cid1]).unwrap();
    let name = p1["name"].as_str().unwrap().to_owned();
    let name_id: PeerId = name.parse().unwrap();
    let seq1 = p1["sequence"].as_u64().unwrap();
    let (b1, c1, n1, cid) = (bin.clone(), c_dir.clone(), name.clone(), cid1.clone());
    let got = tokio::task::spawn_blocking(move || {
        resolves_to(&b1, &c1, &n1, &cid);
        get_name(&b1, &c1, &format!("/name/{n1}"), "via-name-1")
    })
    .await
    .unwrap();
    assert_eq!(got, bytes1, "get /name/N on C is file 1");
    // H keeps the signed record of sequence 1, as any peer that held it could.
    let answers = h.client().get_name(name_id).await.unwrap();
    let old = answers
        .iter()
        .find(|a| {
            decode_verified(&a.bytes, &name_id, warren_node::clock::unix_now())
                .is_ok_and(|r| r.sequence == seq1)
        })
        .expect("H found the first record")
        .bytes
        .clone();

    // 2. A points the name at file 2.
    let p2 = cli_json(&bin, &a_dir, &["name", "publish", &cid2]).unwrap();
    let seq2 = p2["sequence"].as_u64().unwrap();
    assert!(seq2 > seq1, "sequence {seq2} after {seq1}");
    let (b1, c1, n1, cid) = (bin.clone(), c_dir.clone(), name.clone(), cid2.clone());
    tokio::task::spawn_blocking(move || resolves_to(&b1, &c1, &n1, &cid))
        .await
        .unwrap();

    // 3. H replays the older record into the DHT.
    h.client().put_name(name_id, old.clone()).await.unwrap();
    let (b1, c1, n1) = (bin.clone(), c_dir.clone(), name.clone());
    let after = tokio::task::spawn_blocking(move || resolve(&b1, &c1, &n1))
        .await
        .unwrap()
        .expect("resolves after the replay");
    assert_eq!(
        after["cid"],
        cid2.as_str(),
        "the replayed older record won: {after}"
    );
    let h_id = h.peer_id().to_string();
    for answer in after["answers"].as_array().unwrap() {
        if answer["sequence"] == seq1 {
            assert_eq!(
                answer["from"],
                h_id.as_str(),
                "an honest node stored the replay: {after}"
            );
        }
    }
    assert!(
        after["answers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["from"] == h_id.as_str() && a["sequence"] == seq1),
        "C never saw the replayed record (the attack did not reach it): {after}"
    );
    assert!(
        after["answers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["sequence"] == seq2)
            .count()
            >= 2,
        "several peers answered with the newest record: {after}"
    );

    // 4. Forgeries sent straight to C and B.
    let own = NameRecord {
        version: NAME_RECORD_VERSION,
        name: h.peer_id(),
        value: ContentId::of_block(warren_protocol::Codec::Raw, b"evil"),
        sequence: u64::MAX - 1,
        issued_at: warren_node::clock::unix_now(),
        expires_at: warren_node::clock::unix_now() + 3600,
    }
    .sign(&h_key)
    .unwrap();
    let newest = answers_bytes(&h, name_id, seq2).await;
    let (c1_raw, c2_raw) = (
        cid1.parse::<ContentId>().unwrap().to_bytes(),
        cid2.parse::<ContentId>().unwrap().to_bytes(),
    );
    let at = newest
        .windows(c2_raw.len())
        .position(|w| w == c2_raw)
        .expect("the record carries its CID");
    let mut tampered = newest.clone();
    tampered[at..at + c1_raw.len()].copy_from_slice(&c1_raw);
    let key = name_key(&name_id);
    for victim in [c_id, b_id] {
        put_value(&h, victim, &key, &own).await.unwrap();
        put_value(&h, victim, &key, &tampered).await.unwrap();
    }
    let (b1, c1, n1, cid) = (bin.clone(), c_dir.clone(), name.clone(), cid2.clone());
    let got = tokio::task::spawn_blocking(move || {
        resolves_to(&b1, &c1, &n1, &cid);
        get_name(&b1, &c1, &format!("/name/{n1}"), "via-name-2")
    })
    .await
    .unwrap();
    assert_eq!(
        got, bytes2,
        "get /name/N on C is file 2 after the forgeries"
    );
    // The gateway follows the name too, with a short cache and the id as ETag.
    let gw = std::fs::read_to_string(c_dir.join("gateway.addr")).unwrap();
    let (gw, n1) = (gw.trim().to_owned(), name.clone());
    let (code, head, body) =
        tokio::task::spawn_blocking(move || http(&gw, &format!("/name/{n1}"), ""))
            .await
            .unwrap();
    assert_eq!((code, body == bytes2), (200, true), "{head}");
    assert_eq!(header(&head, "cache-control"), Some("public, max-age=10"));
    assert_eq!(header(&head, "etag"), Some(format!("\"{cid2}\"").as_str()));
    let log = c.log();
    assert!(
        log.contains("not newer than the sequence"),
        "C did not say it refused the replay"
    );
    assert!(
        log.contains("not of the name"),
        "C did not refuse H's own record"
    );
    assert!(
        log.contains("does not verify"),
        "C did not refuse the tampered record"
    );

    // 5. Expiry, and the republish timer.
    for k in ["short", "kept"] {
        cli_json(&bin, &a_dir, &["name", "key-gen", k]).unwrap();
    }
    let short = cli_json(
        &bin,
        &a_dir,
        &[
            "name",
            "publish",
            &cid1,
            "--key",
            "short",
            "--lifetime",
            "4s",
            "--no-republish",
        ],
    )
    .unwrap();
    let kept = cli_json(
        &bin,
        &a_dir,
        &[
            "name",
            "publish",
            &cid1,
            "--key",
            "kept",
            "--lifetime",
            "4s",
        ],
    )
    .unwrap();
    let mode = std::fs::metadata(a_dir.join("name-keys/short.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let (short, kept) = (
        short["name"].as_str().unwrap().to_owned(),
        kept["sequence"]
            .as_u64()
            .map(|s| (s, kept["name"].as_str().unwrap().to_owned())),
    );
    let (kept_seq, kept) = kept.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (b1, c1) = (bin.clone(), c_dir.clone());
    let (expired, still) =
        tokio::task::spawn_blocking(move || (resolve(&b1, &c1, &short), resolve(&b1, &c1, &kept)))
            .await
            .unwrap();
    let err = expired.expect_err("an expired name resolved");
    assert!(err.contains("expired at"), "not a clear error: {err}");
    let still = still.expect("the republished name lapsed");
    assert_eq!(still["cid"], cid1.as_str());
    assert!(
        still["sequence"].as_u64().unwrap() > kept_seq,
        "not republished: {still}"
    );

    println!(
        "names: replay, 2 forgeries and expiry refused; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    h.stop().await;
    for n in [a, bn, c] {
        n.stop().unwrap();
    }
}

/// The bytes of the record of `name` with sequence `seq`, as found in the DHT by `h`.
async fn answers_bytes(h: &Hostile, name: PeerId, seq: u64) -> Vec<u8> {
    let now = warren_node::clock::unix_now();
    h.client()
        .get_name(name)
        .await
        .unwrap()
        .into_iter()
        .find(|a| decode_verified(&a.bytes, &name, now).is_ok_and(|r| r.sequence == seq))
        .expect("the newest record is in the DHT")
        .bytes
}
