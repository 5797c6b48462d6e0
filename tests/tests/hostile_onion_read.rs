//! Anonymous reads against hostile relays (issue 20, attacks 1 and 4).
//!
//! 1. A hostile relay (`warren_tests::hostile_relay`: warren's swarm and hop state machine, in
//!    this process) answers a client's `warren get CID --anon` with other bytes: first a fake
//!    file outright, then the real root manifest with one chunk substituted. The client's node
//!    must refuse both, naming the block, and write nothing to `-o`; the real blocks pass.
//! 2. An honest relay (a node process) asked through a real circuit for a file whose root
//!    declares 2 GiB (above its 1 GiB limit; a few KiB stored, held by an in-process node)
//!    must refuse it having fetched the root alone; before that, a flood of anonymous requests
//!    from one previous hop must hit the relay's per-hop request limit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use warren_protocol::{CHUNK_SIZE, Codec, ContentId, MANIFEST_FANOUT, Manifest, ManifestEntry};
use warren_storage_mesh::{PutOptions, Store, chunk};
use warren_tests::hostile::Hostile;
use warren_tests::hostile_relay::HostileRelay;
use warren_tests::{NodeProcess, api_of, cli, cli_json, tcp_multiaddr, test_bytes, wait_for};

fn bin() -> String {
    warren_tests::hostile::node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"))
}

/// Starts a client node on `dir` whose circuits have one hop.
fn one_hop_client(dir: &Path, extra: &[&str]) -> NodeProcess {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.toml"), "onion_hops = 1\n").unwrap();
    NodeProcess::start(&bin(), dir, extra).unwrap()
}

/// `warren get CID --anon -o out` on `dir`: success and stderr.
async fn anon_get(dir: &Path, cid: &str, out: &Path) -> (bool, String) {
    let (dir, cid, out) = (dir.to_owned(), cid.to_owned(), out.to_owned());
    tokio::task::spawn_blocking(move || {
        let o = cli(
            &bin(),
            &dir,
            &["get", &cid, "--anon", "-o", out.to_str().unwrap()],
            false,
        )
        .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn frame(block: &[u8]) -> Vec<u8> {
    let mut f = (block.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(block);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_substituting_a_public_file_is_refused_and_nothing_reaches_the_output() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    // The real public file (3 chunks) and its blocks, as every node stores it.
    let original = test_bytes(2 * CHUNK_SIZE + 1000, 11, false);
    let store = Store::open(&tmp.path().join("reference"), u64::MAX).unwrap();
    let cid = store
        .put(&original[..], &PutOptions::default(), &|_| {})
        .unwrap()
        .cid;
    let root = store.stat(&cid).unwrap();
    assert_eq!(root.entries.len(), 3);
    let block = |c: &ContentId| store.get_block(c).unwrap();
    let size = (original.len() as u64).to_be_bytes();
    let honest: Vec<u8> = [size.to_vec(), frame(&block(&cid))]
        .into_iter()
        .chain(root.entries.iter().map(|e| frame(&block(&e.cid))))
        .flatten()
        .collect();
    // The second chunk swapped for another valid block.
    let fake_chunk = chunk::encode_block(&test_bytes(CHUNK_SIZE, 99, false));
    let swapped: Vec<u8> = [
        size.to_vec(),
        frame(&block(&cid)),
        frame(&block(&root.entries[0].cid)),
        frame(&fake_chunk),
        frame(&block(&root.entries[2].cid)),
    ]
    .concat();
    let fake_file = b"not the file you asked for\n".to_vec();
    let fake: Vec<u8> = [(fake_file.len() as u64).to_be_bytes().to_vec(), fake_file].concat();

    let mode = Arc::new(AtomicUsize::new(0));
    let answers = [fake, swapped, honest];
    let m = mode.clone();
    let answer = Arc::new(move |_: ContentId| answers[m.load(Ordering::SeqCst)].clone());

    let c_dir = tmp.path().join("client");
    let c = one_hop_client(&c_dir, &[]);
    let boot = tcp_multiaddr(&cli_json(&bin(), &c_dir, &["status"]).unwrap()).unwrap();
    let relay = HostileRelay::start("local", vec![boot.parse().unwrap()], answer)
        .await
        .unwrap();
    let relay_id = relay.peer.to_string();
    let dir = c_dir.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(30), "the relay's record", || {
            let peers = cli_json(&bin(), &dir, &["peers"]).ok()?;
            peers
                .as_array()?
                .iter()
                .any(|p| {
                    p["peer_id"] == relay_id.as_str()
                        && p["roles"].as_array().is_some_and(|r| r.len() == 2)
                })
                .then_some(())
        })
    })
    .await
    .unwrap()
    .unwrap();

    let cid_text = cid.to_string();
    // 1. A fake file outright.
    let out = tmp.path().join("fake.bin");
    let (ok, stderr) = anon_get(&c_dir, &cid_text, &out).await;
    println!("fake file: ok={ok} {}", stderr.trim());
    assert!(
        !ok,
        "the client accepted a substituted file: -o holds {:?}",
        std::fs::read(&out).map(|b| String::from_utf8_lossy(&b).into_owned())
    );
    assert!(!out.exists(), "nothing may reach -o");
    assert!(
        stderr.contains(&cid_text),
        "the error must name the root: {stderr}"
    );

    // 2. The real root manifest, one chunk substituted.
    mode.store(1, Ordering::SeqCst);
    let out = tmp.path().join("swapped.bin");
    let (ok, stderr) = anon_get(&c_dir, &cid_text, &out).await;
    println!("swapped chunk: ok={ok} {}", stderr.trim());
    assert!(!ok, "the client accepted a substituted chunk");
    assert!(!out.exists(), "nothing may reach -o");
    let second = root.entries[1].cid.to_string();
    assert!(
        stderr.contains(&second),
        "the error must name the chunk {second}: {stderr}"
    );

    // 3. The real blocks: the file arrives whole.
    mode.store(2, Ordering::SeqCst);
    let out = tmp.path().join("honest.bin");
    let (ok, stderr) = anon_get(&c_dir, &cid_text, &out).await;
    assert!(ok, "{stderr}");
    assert!(std::fs::read(&out).unwrap() == original);
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
    drop(c);
}

/// Writes into `store` a file whose root declares 2 GiB: one zero chunk, a leaf naming it 1024
/// times, a root naming the leaf twice. Returns its blocks, root first.
fn plant_two_gib(store: &Store) -> Vec<ContentId> {
    let block = chunk::encode_block(&vec![0; CHUNK_SIZE]);
    let zero = ContentId::of_block(Codec::Raw, &block);
    store.put_block(&zero, &block).unwrap();
    let entry = ManifestEntry {
        cid: zero,
        raw_len: CHUNK_SIZE as u64,
        stored_len: block.len() as u64,
    };
    let leaf = Manifest {
        version: warren_protocol::MANIFEST_VERSION,
        size: (CHUNK_SIZE * MANIFEST_FANOUT) as u64,
        depth: 0,
        entries: vec![entry; MANIFEST_FANOUT],
        name: None,
        media_type: None,
    };
    let (leaf_id, leaf_bytes) = leaf.to_block().unwrap();
    store.put_block(&leaf_id, &leaf_bytes).unwrap();
    let to_leaf = ManifestEntry {
        cid: leaf_id,
        raw_len: leaf.size,
        stored_len: leaf.stored_total(leaf_bytes.len()),
    };
    let root = Manifest {
        version: warren_protocol::MANIFEST_VERSION,
        size: 2 * leaf.size,
        depth: 1,
        entries: vec![to_leaf.clone(), to_leaf],
        name: None,
        media_type: None,
    };
    let (root_id, root_bytes) = root.to_block().unwrap();
    store.put_block(&root_id, &root_bytes).unwrap();
    vec![root_id, leaf_id, zero]
}

/// The blocks a node stores, from `warren status`.
fn stored_blocks(dir: &Path) -> u64 {
    let s = cli_json(&bin(), dir, &["status"]).unwrap();
    s["storage"]["blocks"]
        .as_u64()
        .unwrap_or_else(|| panic!("no storage.blocks in {s}"))
}

/// A raw `GET path` on the node's API; the body, lossily decoded.
fn raw_get(addr: &str, token: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_limits_a_flood_from_one_hop_and_checks_the_size_before_fetching() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    println!("work dir {}", tmp.path().display());
    let r_dir = tmp.path().join("relay");
    // The relay offers 16 MiB: blocks it caches for others may use a quarter of it.
    let r = NodeProcess::start(
        &bin(),
        &r_dir,
        &[
            "--role",
            "gate",
            "--role",
            "relay",
            "--storage-offer",
            "16MiB",
        ],
    )
    .unwrap();
    let boot = tcp_multiaddr(&cli_json(&bin(), &r_dir, &["status"]).unwrap()).unwrap();
    let c_dir = tmp.path().join("client");
    let c = one_hop_client(&c_dir, &["--bootstrap", &boot]);
    // The holder: an in-process node (no gate or relay role) with the 2 GiB file and a small one.
    let h = Hostile::start(
        &tmp.path().join("holder"),
        "local",
        vec![boot.parse().unwrap()],
        1 << 30,
        |c| c.roles = vec![warren_protocol::Role::Station],
    )
    .await
    .unwrap();
    let big = plant_two_gib(&h.node.store);
    let small = h
        .node
        .store
        .put(
            &b"a small public file\n"[..],
            &PutOptions::default(),
            &|_| {},
        )
        .unwrap()
        .cid;
    let mut files = Vec::new();
    for seed in 0..3 {
        let data = test_bytes(3 << 20, 100 + seed, false);
        let cid = h
            .node
            .store
            .put(&data[..], &PutOptions::default(), &|_| {})
            .unwrap()
            .cid;
        h.node.mesh.announce(cid).await.unwrap();
        files.push((cid, data));
    }
    h.node.mesh.announce(big[0]).await.unwrap();
    h.node.mesh.announce(small).await.unwrap();
    let dir = c_dir.clone();
    tokio::task::spawn_blocking(move || {
        warren_tests::wait_for_records(&bin(), &dir, 2).unwrap();
    })
    .await
    .unwrap();

    // A flood from one previous hop (the client: one-hop circuits): 8 threads of 24 requests.
    let (addr, token) = api_of(&c_dir).unwrap();
    let path = format!("/v1/anon/get/{small}");
    let flood = Instant::now();
    let bodies: Vec<String> = tokio::task::spawn_blocking(move || {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (addr, token, path) = (addr.clone(), token.clone(), path.clone());
                std::thread::spawn(move || {
                    (0..24)
                        .map(|_| raw_get(&addr, &token, &path))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    })
    .await
    .unwrap();
    let served = bodies
        .iter()
        .filter(|b| b.contains("a small public file"))
        .count();
    let limited = bodies
        .iter()
        .filter(|b| b.contains("request limit"))
        .count();
    println!(
        "flood of {} requests in {:.1} s: {served} served, {limited} refused by a limit",
        bodies.len(),
        flood.elapsed().as_secs_f64()
    );
    assert!(served >= 1, "{:?}", bodies.first());
    assert!(
        limited >= 1,
        "no request of the flood was refused by a per-hop limit: {:?}",
        bodies.iter().find(|b| !b.contains("a small public file"))
    );
    // The 2 GiB file: refused for its size (the hop's bucket has refilled by then), and the
    // relay fetched its root alone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stored_blocks(&r_dir);
    let out = tmp.path().join("big.bin");
    let (ok, stderr) = anon_get(&c_dir, &big[0].to_string(), &out).await;
    println!("2 GiB file: ok={ok} {}", stderr.trim());
    assert!(
        !ok && stderr.contains("above the runner's limit"),
        "{stderr}"
    );
    assert!(!out.exists());
    let fetched = stored_blocks(&r_dir) - before;
    assert!(
        fetched <= 1,
        "the relay fetched {fetched} blocks of a file above its limit before refusing it \
         (its root alone is needed to see the size)"
    );

    // Three 3 MiB files read through the relay: it keeps what it cached for them within a
    // quarter of its offer (4 MiB), not all 9 MiB.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, (cid, data)) in files.iter().enumerate() {
        let out = tmp.path().join(format!("file-{i}.bin"));
        let (ok, stderr) = anon_get(&c_dir, &cid.to_string(), &out).await;
        assert!(ok, "{stderr}");
        assert!(std::fs::read(&out).unwrap() == *data);
    }
    let status = cli_json(&bin(), &r_dir, &["status"]).unwrap();
    let cached = status["storage"]["stored_bytes"].as_u64().unwrap();
    println!("the relay stores {cached} bytes after serving 9 MiB of files");
    assert!(
        cached <= 4 << 20,
        "the relay keeps {cached} bytes of files it fetched for others, above a quarter of \
         its 16 MiB offer"
    );
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
    h.stop().await;
    drop((c, r));
}
