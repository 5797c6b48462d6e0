//! The hex test vectors of `spec/proof-of-storage.md`, and the Kademlia-key vectors of
//! `spec/block-transfer.md` (placement's metric), checked against the code.
//!
//! Same conventions as `protocol/tests/spec_vectors.rs`: a vector is an HTML comment marker line
//! (`<!-- vector: NAME -->`, or `<!-- vector: NAME error: KIND -->` for a proof every verifier
//! must refuse, with `ProofError::KIND`) followed by a fenced `hex` block, `#` starting a
//! comment. To regenerate the blocks after a deliberate format change:
//! `cargo test -p warren-storage-mesh --test proof_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::collections::BTreeMap;

use warren_protocol::block_transfer::provider_key;
use warren_protocol::{Codec, ContentId, keypair_from_secret};
use warren_storage_mesh::placement::{block_key, distance, peer_key};
use warren_storage_mesh::proof::{Challenge, Proof, TAG_CONTEXT, prove, verify};

const PROOF_MD: &str = include_str!("../../spec/proof-of-storage.md");
const TRANSFER_MD: &str = include_str!("../../spec/block-transfer.md");

// ---------------------------------------------------------------------------------------------
// The fixed inputs the pages state in prose.

/// The audited block: 17 000 bytes, byte `i` = `i mod 251`.
fn block() -> Vec<u8> {
    (0..17_000u32).map(|i| (i % 251) as u8).collect()
}

/// The seed: 32 bytes of 0x09.
const SEED: [u8; 32] = [9; 32];

fn challenge() -> Challenge {
    let b = block();
    Challenge::new(*blake3::hash(&b).as_bytes(), b.len() as u64, SEED)
}

fn empty_challenge() -> Challenge {
    Challenge::new(*blake3::hash(b"").as_bytes(), 0, [0; 32])
}

/// The peer of `spec/identity.md`: identity secret 0x01, 0x02, …, 0x20.
fn peer() -> warren_protocol::PeerId {
    keypair_from_secret(std::array::from_fn(|i| i as u8 + 1))
        .public()
        .to_peer_id()
}

/// The block of `spec/block-transfer.md`.
fn transfer_block() -> [u8; 32] {
    *blake3::hash(b"hello warren").as_bytes()
}

// ---------------------------------------------------------------------------------------------
// Extraction (as in protocol/tests/spec_vectors.rs).

use warren_protocol::spec_text::SpecVector as Vector;

fn vectors(page: &str) -> Vec<Vector> {
    warren_protocol::spec_text::extract_vectors(page).unwrap_or_else(|e| panic!("{e}"))
}

fn valid(page: &str) -> BTreeMap<String, Vec<u8>> {
    vectors(page)
        .into_iter()
        .filter(|v| v.error.is_none())
        .map(|v| (v.name, v.bytes))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn page_states_the_inputs() {
    let c = challenge();
    let id = ContentId::from_parts(Codec::Raw, c.block);
    assert!(PROOF_MD.contains(&id.to_string()), "block id {id}");
    assert!(PROOF_MD.contains(&hex::encode(c.block)), "block hash");
    assert!(
        PROOF_MD.contains(&format!("offset {}, len {}", c.offset, c.len)),
        "slice {} {}",
        c.offset,
        c.len
    );
    assert!(PROOF_MD.contains(&hex::encode(c.nonce)), "nonce");
    let e = empty_challenge();
    assert!(PROOF_MD.contains(&hex::encode(e.block)), "empty block hash");
    assert!(
        PROOF_MD.contains(&hex::encode(e.nonce)),
        "empty block nonce"
    );
    assert!(PROOF_MD.contains(TAG_CONTEXT));
    assert!(PROOF_MD.contains(warren_storage_mesh::proof::CHALLENGE_CONTEXT));
}

#[test]
fn proof_vectors() {
    let good = valid(PROOF_MD);
    let names: Vec<&str> = good.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["challenge-bytes", "proof", "proof-empty-block", "tag-key"],
        "valid vectors on the page"
    );
    let c = challenge();
    assert_eq!(good["challenge-bytes"], c.to_bytes());
    assert_eq!(
        good["tag-key"],
        blake3::derive_key(TAG_CONTEXT, &c.to_bytes())
    );

    let b = block();
    let proof = prove(&b, &c).unwrap();
    assert_eq!(good["proof"], proof.to_bytes());
    let parsed = Proof::from_bytes(&c.block, &good["proof"]).unwrap();
    let slice = verify(&c, &parsed).unwrap();
    assert_eq!(slice, &b[c.offset as usize..][..c.len as usize]);

    let e = empty_challenge();
    assert_eq!(
        good["proof-empty-block"],
        prove(&[], &e).unwrap().to_bytes()
    );
    verify(
        &e,
        &Proof::from_bytes(&e.block, &good["proof-empty-block"]).unwrap(),
    )
    .unwrap();

    let bad: Vec<Vector> = vectors(PROOF_MD)
        .into_iter()
        .filter(|v| v.error.is_some())
        .collect();
    assert!(bad.len() >= 3, "invalid vectors on the page");
    for v in bad {
        // `invalid-empty-proof-*` answer the empty block's challenge, the others the main one.
        let ch = if v.name.starts_with("invalid-empty-proof") {
            e
        } else {
            c
        };
        let err = Proof::from_bytes(&ch.block, &v.bytes)
            .and_then(|p| verify(&ch, &p))
            .expect_err(&v.name);
        let debug = format!("{err:?}");
        let kind = debug.split([' ', '(', '{']).next().unwrap_or("");
        assert_eq!(Some(kind), v.error.as_deref(), "vector {}: {err}", v.name);
    }
}

#[test]
fn kademlia_key_vectors() {
    let good = valid(TRANSFER_MD);
    let block = transfer_block();
    assert_eq!(good["provider-key"], provider_key(&block));
    assert_eq!(good["kad-block-key"], block_key(&block));
    assert_eq!(good["kad-peer-key"], peer_key(&peer()));
    assert_eq!(
        good["kad-distance"],
        distance(&block_key(&block), &peer_key(&peer()))
    );
    assert!(TRANSFER_MD.contains(&peer().to_string()));
}

// ---------------------------------------------------------------------------------------------
// Generator.

fn plain(bytes: &[u8]) -> String {
    bytes.chunks(16).map(|c| hex::encode(c) + "\n").collect()
}

fn print(name: &str, error: Option<&str>, body: &str) {
    match error {
        None => println!("<!-- vector: {name} -->"),
        Some(kind) => println!("<!-- vector: {name} error: {kind} -->"),
    }
    println!("```hex\n{body}```\n");
}

#[test]
#[ignore = "generator: prints the vector blocks for spec/proof-of-storage.md"]
fn print_vectors() {
    let b = block();
    let c = challenge();
    println!(
        "block {} = {}; nonce {}; offset {}, len {}\n",
        ContentId::from_parts(Codec::Raw, c.block),
        hex::encode(c.block),
        hex::encode(c.nonce),
        c.offset,
        c.len
    );
    print("challenge-bytes", None, &plain(&c.to_bytes()));
    print(
        "tag-key",
        None,
        &plain(&blake3::derive_key(TAG_CONTEXT, &c.to_bytes())),
    );
    let proof = prove(&b, &c).unwrap();
    println!(
        "proof: {} bytes, encoded {} bytes\n",
        proof.len(),
        proof.encoded.len()
    );
    let mut annotated = String::new();
    let bytes = proof.to_bytes();
    let (tag, rest) = bytes.split_at(32);
    let (pair, data) = rest.split_at(64);
    annotated += &format!("{:<48} # tag\n", hex::encode(&tag[..16]));
    annotated += &format!("{}\n", hex::encode(&tag[16..]));
    annotated += &format!(
        "{:<48} # parent (root): left child hash\n",
        hex::encode(&pair[..16])
    );
    annotated += &format!("{}\n", hex::encode(&pair[16..32]));
    annotated += &format!("{:<48} # right child hash\n", hex::encode(&pair[32..48]));
    annotated += &format!("{}\n", hex::encode(&pair[48..]));
    annotated += &format!(
        "{:<48} # chunk group 1: bytes 16384..17000 of the block\n",
        hex::encode(&data[..16])
    );
    annotated += &plain(&data[16..]);
    print("proof", None, &annotated);
    let e = empty_challenge();
    println!("empty: nonce {}\n", hex::encode(e.nonce));
    print(
        "proof-empty-block",
        None,
        &plain(&prove(&[], &e).unwrap().to_bytes()),
    );

    let good = proof.to_bytes();
    let mut data = good.clone();
    let last = data.len() - 1;
    data[last] ^= 0x01;
    print(
        "invalid-proof-flipped-data",
        Some("Mismatch"),
        &plain(&data),
    );
    let empty = prove(&[], &e).unwrap().to_bytes();
    let mut tag = empty.clone();
    tag[0] ^= 0x01;
    print(
        "invalid-empty-proof-wrong-tag",
        Some("WrongTag"),
        &plain(&tag),
    );
    print(
        "invalid-empty-proof-truncated",
        Some("Malformed"),
        &plain(&empty[..31]),
    );
    let mut trailing = empty.clone();
    trailing.push(0x00);
    print(
        "invalid-empty-proof-trailing-byte",
        Some("Malformed"),
        &plain(&trailing),
    );

    println!("==== block-transfer.md (peer {})\n", peer());
    let block = transfer_block();
    print("kad-block-key", None, &plain(&block_key(&block)));
    print("kad-peer-key", None, &plain(&peer_key(&peer())));
    print(
        "kad-distance",
        None,
        &plain(&distance(&block_key(&block), &peer_key(&peer()))),
    );
}
