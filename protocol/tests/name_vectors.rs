//! The hex test vectors of `spec/names.md`, checked against the code.
//!
//! Same page conventions as `spec_vectors.rs`: a `<!-- vector: NAME -->` marker line (or
//! `<!-- vector: NAME error: KIND -->` for bytes every verifier must refuse, `KIND` the
//! [`warren_protocol::Error`] variant) followed by a fenced `hex` block whose `#` comments are
//! ignored.
//!
//! To regenerate the blocks after a deliberate format change:
//! `cargo test -p warren-protocol --test name_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::collections::BTreeMap;

use warren_protocol::name::{NAME_RECORD_VERSION, NameRecord, decode_verified, name_key};
use warren_protocol::{Codec, ContentId, Error, Keypair, PeerId, keypair_from_secret};

const PAGE: &str = include_str!("../../spec/names.md");

/// The identity of `spec/identity.md`: secret bytes 0x01, 0x02, …, 0x20.
fn key() -> Keypair {
    keypair_from_secret(std::array::from_fn(|i| i as u8 + 1))
}

fn name() -> PeerId {
    key().public().to_peer_id()
}

const ISSUED_AT: u64 = 1_700_000_000;
const NOW: u64 = 1_700_000_100;

fn record() -> NameRecord {
    NameRecord {
        version: NAME_RECORD_VERSION,
        name: name(),
        value: ContentId::from_parts(Codec::Raw, [0x11; 32]),
        sequence: 7,
        issued_at: ISSUED_AT,
        expires_at: ISSUED_AT + 3600,
    }
}

/// The `record` field of a signed record: `a3 66 "record" 58 LEN BYTES …`.
fn inner(signed: &[u8]) -> Vec<u8> {
    assert_eq!(&signed[..8], b"\xa3\x66record");
    assert_eq!(signed[8], 0x58);
    let len = signed[9] as usize;
    signed[10..10 + len].to_vec()
}

fn expected() -> BTreeMap<&'static str, Vec<u8>> {
    let signed = record().sign(&key()).unwrap();
    let mut bad_signature = signed.clone();
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 0x01;
    let mut trailing = signed.clone();
    trailing.push(0x00);
    BTreeMap::from([
        ("name-key", name_key(&name())),
        ("name-record", inner(&signed)),
        ("signed-name-record", signed),
        ("invalid-name-record-bad-signature", bad_signature),
        ("invalid-name-record-trailing-byte", trailing),
    ])
}

fn kind(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn page_vectors_match_the_code() {
    let vectors = warren_protocol::spec_text::extract_vectors(PAGE).unwrap();
    let want = expected();
    assert_eq!(vectors.len(), want.len(), "vectors on the page");
    for v in &vectors {
        let bytes = want
            .get(v.name.as_str())
            .unwrap_or_else(|| panic!("unknown vector {}", v.name));
        assert_eq!(&v.bytes, bytes, "vector {} differs from the code", v.name);
        match (&v.error, v.name.as_str()) {
            (Some(k), _) => {
                let e = decode_verified(&v.bytes, &name(), NOW).unwrap_err();
                assert_eq!(&kind(&e), k, "vector {}: {e}", v.name);
            }
            (None, "signed-name-record") => {
                assert_eq!(decode_verified(&v.bytes, &name(), NOW).unwrap(), record());
            }
            (None, _) => {}
        }
    }
}

#[test]
fn the_signed_vector_expires_and_loses_to_a_higher_sequence_as_the_page_says() {
    let signed = &expected()["signed-name-record"];
    let e = decode_verified(signed, &name(), ISSUED_AT + 3600).unwrap_err();
    assert_eq!(kind(&e), "NameExpired");
    let newer = NameRecord {
        sequence: 8,
        ..record()
    };
    assert!(warren_protocol::name::supersedes(&newer, &record()));
    let e = warren_protocol::name::accept_for_store(
        signed,
        Some(&newer.sign(&key()).unwrap()),
        &name(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(kind(&e), "NameNotNewer");
}

#[test]
#[ignore = "prints the page's hex blocks"]
fn print_vectors() {
    for (name, bytes) in expected() {
        println!("{name}:");
        for chunk in bytes.chunks(16) {
            println!("{}", hex::encode(chunk));
        }
    }
}
