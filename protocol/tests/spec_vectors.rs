//! The hex test vectors of `spec/*.md`, checked against the code.
//!
//! A vector in a spec page is an HTML comment marker line followed by a fenced `hex` block:
//!
//! ````text
//! <!-- vector: NAME -->            a valid encoding: decoded, checked field by field, re-encoded
//! <!-- vector: NAME error: KIND --> an encoding every decoder must refuse, with Error::KIND
//! ```hex
//! a3 66 7265636f7264   # everything after `#` on a line is a comment
//! ```
//! ````
//!
//! Every valid vector must match what the code produces from the fixed inputs below, byte for byte.
//! To regenerate the blocks after a deliberate format change:
//! `cargo test -p warren-protocol --test spec_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::collections::BTreeMap;

use warren_protocol::{
    ComputeOffer, Envelope, Error, EventType, Gpu, Keypair, Metadata, Multiaddr, NodeRecord,
    OnionSecret, Price, RECORD_VERSION, Role, SignedNodeRecord, State, StorageOffer, Tier,
    decode_keypair, encode_keypair, keypair_from_secret, record_key,
};

const IDENTITY_MD: &str = include_str!("../../spec/identity.md");
const NODE_RECORD_MD: &str = include_str!("../../spec/node-record.md");
const ENVELOPE_MD: &str = include_str!("../../spec/envelope.md");

// ---------------------------------------------------------------------------------------------
// The fixed inputs the spec pages state in prose.

/// Identity secret: bytes 0x01, 0x02, …, 0x20.
fn identity() -> Keypair {
    keypair_from_secret(std::array::from_fn(|i| i as u8 + 1))
}

/// Onion secret: bytes 0x21, 0x22, …, 0x40.
fn onion() -> OnionSecret {
    OnionSecret::from_bytes(std::array::from_fn(|i| i as u8 + 33))
}

const ISSUED_AT: u64 = 1_700_000_000;
const EXPIRES_AT: u64 = 1_700_003_600;
/// The clock at which the record vectors are verified.
const NOW: u64 = 1_700_000_100;

fn record() -> NodeRecord {
    let addr = |s: &str| s.parse::<Multiaddr>().unwrap();
    NodeRecord {
        version: RECORD_VERSION,
        network: "warren-testnet-1".into(),
        peer_id: identity().public().to_peer_id(),
        roles: vec![Role::Station, Role::Operator, Role::Gate],
        onion_key: onion().public(),
        storage: Some(StorageOffer {
            tier: Tier::Hot,
            bytes_offered: 1 << 40,
            bytes_free: 1 << 39,
        }),
        compute: Some(ComputeOffer {
            cpu_cores: 16,
            ram_bytes: 64 << 30,
            gpus: vec![Gpu {
                name: "NVIDIA GeForce RTX 4090".into(),
                memory_bytes: 24 << 30,
            }],
            models: vec!["llama-3.1-8b-instruct".into()],
        }),
        price: Price {
            storage_per_gib_month: 2000,
            compute_per_1k_tokens: 150,
        },
        load_permille: 125,
        addrs: vec![
            addr("/ip4/198.51.100.7/tcp/4001"),
            addr("/ip4/198.51.100.7/udp/4001/quic-v1"),
        ],
        issued_at: ISSUED_AT,
        expires_at: EXPIRES_AT,
    }
}

fn minimal_record() -> NodeRecord {
    NodeRecord {
        roles: vec![],
        storage: None,
        compute: None,
        price: Price::default(),
        load_permille: 0,
        addrs: vec![],
        ..record()
    }
}

fn request() -> Envelope {
    let event: EventType = "storage:fetch_chunk:v1:requested".parse().unwrap();
    let mut e = Envelope::new(
        std::array::from_fn(|i| i as u8),
        event,
        1_700_000_000_123,
        b"hello warren".to_vec(),
    );
    e.metadata = Metadata {
        peer: Some(identity().public().to_peer_id()),
        device: Some("laptop".into()),
        trace: BTreeMap::from([(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]),
    };
    e
}

fn reply() -> Envelope {
    request().reply(State::Completed, 1_700_000_000_456, b"ok".to_vec())
}

fn minimal_envelope() -> Envelope {
    Envelope::new(
        [0xff; 16],
        EventType::new("node", "ping", 1, State::Requested).unwrap(),
        0,
        vec![],
    )
}

// ---------------------------------------------------------------------------------------------
// Extraction.

use warren_protocol::spec_text::SpecVector as Vector;

fn vectors(page: &str) -> Vec<Vector> {
    warren_protocol::spec_text::extract_vectors(page).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks that the page has exactly the `valid` vectors (plus any number of invalid ones) and
/// returns them by name.
fn split(page: &str, valid: &[&str]) -> (BTreeMap<String, Vec<u8>>, Vec<Vector>) {
    let (good, bad): (Vec<_>, Vec<_>) = vectors(page).into_iter().partition(|v| v.error.is_none());
    let good: BTreeMap<_, _> = good.into_iter().map(|v| (v.name, v.bytes)).collect();
    let names: Vec<&str> = good.keys().map(String::as_str).collect();
    let mut expected = valid.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "valid vectors on the page");
    assert!(!bad.is_empty(), "the page has no invalid vector");
    (good, bad)
}

fn assert_error_kind(name: &str, err: &Error, kind: &str) {
    let debug = format!("{err:?}");
    let got = debug.split([' ', '(', '{']).next().unwrap_or("");
    assert_eq!(got, kind, "vector {name}: {err}");
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn identity_vectors() {
    let (good, bad) = split(
        IDENTITY_MD,
        &[
            "identity-key-file",
            "identity-public-key",
            "peer-id",
            "onion-key-file",
            "onion-public-key",
        ],
    );

    let file = &good["identity-key-file"];
    let key = decode_keypair(file).unwrap();
    assert_eq!(key.public(), identity().public());
    assert_eq!(&encode_keypair(&key).unwrap(), file);

    assert_eq!(
        good["identity-public-key"],
        identity().public().encode_protobuf()
    );
    let peer = warren_protocol::PeerId::from_bytes(&good["peer-id"]).unwrap();
    assert_eq!(peer, identity().public().to_peer_id());
    assert_eq!(
        peer.to_string(),
        "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf"
    );
    assert!(IDENTITY_MD.contains(&peer.to_string()));

    let onion_secret = OnionSecret::decode(&good["onion-key-file"]).unwrap();
    assert_eq!(onion_secret.to_bytes(), onion().to_bytes());
    assert_eq!(good["onion-public-key"], onion().public());

    for v in bad {
        let err = decode_keypair(&v.bytes).expect_err(&v.name);
        assert_error_kind(&v.name, &err, v.error.as_deref().unwrap_or_default());
    }
}

#[test]
fn node_record_vectors() {
    let (good, bad) = split(
        NODE_RECORD_MD,
        &[
            "record-key",
            "node-record",
            "signed-node-record",
            "minimal-signed-node-record",
        ],
    );
    let peer = identity().public().to_peer_id();
    assert_eq!(good["record-key"], record_key(&peer));
    assert_eq!(
        warren_protocol::peer_from_record_key(&good["record-key"]),
        Some(peer)
    );

    let signed = record().sign(&identity()).unwrap();
    assert_eq!(good["node-record"], signed.record_bytes());
    for (name, expected) in [
        ("signed-node-record", record()),
        ("minimal-signed-node-record", minimal_record()),
    ] {
        let bytes = &good[name];
        let decoded = SignedNodeRecord::decode(bytes).unwrap();
        assert_eq!(&decoded.encode().unwrap(), bytes, "{name} re-encodes");
        let verified = decoded.verify(Some(&peer), NOW).unwrap();
        assert_eq!(verified, expected, "{name} fields");
        // Ed25519 signatures are deterministic: signing the same record gives the same bytes.
        assert_eq!(
            &expected.sign(&identity()).unwrap().encode().unwrap(),
            bytes,
            "{name}"
        );
    }

    for v in bad {
        let err = SignedNodeRecord::decode_verified(&v.bytes, Some(&peer), NOW).expect_err(&v.name);
        assert_error_kind(&v.name, &err, v.error.as_deref().unwrap_or_default());
    }
}

#[test]
fn envelope_vectors() {
    let (good, bad) = split(
        ENVELOPE_MD,
        &["envelope-request", "envelope-reply", "envelope-minimal"],
    );
    for (name, expected) in [
        ("envelope-request", request()),
        ("envelope-reply", reply()),
        ("envelope-minimal", minimal_envelope()),
    ] {
        let bytes = &good[name];
        let decoded = Envelope::decode(bytes).unwrap();
        assert_eq!(decoded, expected, "{name} fields");
        assert_eq!(&decoded.encode().unwrap(), bytes, "{name} re-encodes");
    }
    for v in bad {
        let err = Envelope::decode(&v.bytes).expect_err(&v.name);
        assert_error_kind(&v.name, &err, v.error.as_deref().unwrap_or_default());
    }
}

#[test]
fn extraction_ignores_comments_and_layout() {
    let page = "text\n<!-- vector: a -->\n```hex\n01 02  # one, two\n  0304\n```\n\
                <!-- vector: b error: Malformed -->\n```hex\nff\n```\n";
    let v = vectors(page);
    assert_eq!(
        (v[0].name.as_str(), v[0].bytes.as_slice()),
        ("a", &[1, 2, 3, 4][..])
    );
    assert_eq!(
        (v[1].error.as_deref(), v[1].bytes.as_slice()),
        (Some("Malformed"), &[0xff][..])
    );
}

// ---------------------------------------------------------------------------------------------
// Generator: prints annotated hex blocks for the pages.

/// Writes `bytes` (one CBOR item) as annotated hex lines, one item head per line.
fn annotate(bytes: &[u8]) -> String {
    let mut out = String::new();
    let rest = annotate_item(bytes, 0, &mut out);
    assert!(rest.is_empty(), "trailing bytes");
    out
}

fn line(out: &mut String, depth: usize, hex_part: &str, comment: &str) {
    let code = format!("{}{}", "   ".repeat(depth), hex_part);
    if comment.is_empty() {
        out.push_str(&code);
    } else {
        out.push_str(&format!("{code:<48} # {comment}"));
    }
    out.push('\n');
}

fn annotate_item<'a>(bytes: &'a [u8], depth: usize, out: &mut String) -> &'a [u8] {
    let ib = bytes[0];
    let (major, ai) = (ib >> 5, ib & 0x1f);
    let (arg, head_len) = match ai {
        0..=23 => (u64::from(ai), 1),
        24 => (u64::from(bytes[1]), 2),
        25 => (u64::from(u16::from_be_bytes([bytes[1], bytes[2]])), 3),
        26 => (
            u64::from(u32::from_be_bytes(bytes[1..5].try_into().unwrap())),
            5,
        ),
        27 => (u64::from_be_bytes(bytes[1..9].try_into().unwrap()), 9),
        _ => panic!("indefinite or reserved length"),
    };
    let head = hex::encode(&bytes[..head_len]);
    let rest = &bytes[head_len..];
    let n = arg as usize;
    match major {
        0 => {
            line(out, depth, &head, &format!("{arg}"));
            rest
        }
        2 | 3 => {
            let (content, rest) = rest.split_at(n);
            let what = if major == 2 { "bytes" } else { "text" };
            let shown = if major == 3 {
                format!(" {:?}", std::str::from_utf8(content).unwrap())
            } else {
                String::new()
            };
            if n <= 16 {
                let comment = if major == 3 {
                    shown.trim().to_owned()
                } else {
                    format!("{what}({n})")
                };
                line(
                    out,
                    depth,
                    format!("{head} {}", hex::encode(content)).trim_end(),
                    &comment,
                );
            } else {
                line(out, depth, &head, &format!("{what}({n}){shown}"));
                for chunk in content.chunks(16) {
                    line(out, depth + 1, &hex::encode(chunk), "");
                }
            }
            rest
        }
        4 => {
            line(out, depth, &head, &format!("array({n})"));
            (0..n).fold(rest, |r, _| annotate_item(r, depth + 1, out))
        }
        5 => {
            line(out, depth, &head, &format!("map({n})"));
            (0..2 * n).fold(rest, |r, _| annotate_item(r, depth + 1, out))
        }
        7 if ib == 0xf6 => {
            line(out, depth, &head, "null");
            rest
        }
        _ => panic!("unexpected CBOR item {ib:#04x}"),
    }
}

fn block(name: &str, error: Option<&str>, body: &str) {
    match error {
        None => println!("<!-- vector: {name} -->"),
        Some(kind) => println!("<!-- vector: {name} error: {kind} -->"),
    }
    println!("```hex\n{}```\n", body);
}

fn plain(bytes: &[u8]) -> String {
    bytes.chunks(16).map(|c| hex::encode(c) + "\n").collect()
}

#[test]
#[ignore = "generator: prints the vector blocks for spec/*.md"]
fn print_vectors() {
    let peer = identity().public().to_peer_id();
    println!("==== identity.md (peer id {peer})\n");
    block(
        "identity-key-file",
        None,
        &plain(&encode_keypair(&identity()).unwrap()),
    );
    block(
        "identity-public-key",
        None,
        &plain(&identity().public().encode_protobuf()),
    );
    block("peer-id", None, &plain(&peer.to_bytes()));
    block("onion-key-file", None, &plain(&onion().to_bytes()));
    block("onion-public-key", None, &plain(&onion().public()));
    let mut bad = encode_keypair(&identity()).unwrap();
    bad[67] ^= 0x01;
    block(
        "invalid-identity-key-file-wrong-public-half",
        Some("InvalidKey"),
        &plain(&bad),
    );
    let mut secp = vec![0x08, 0x02, 0x12, 0x20];
    secp.extend_from_slice(&[0x11; 32]);
    block(
        "invalid-identity-key-file-secp256k1",
        Some("UnsupportedKeyType"),
        &plain(&secp),
    );

    println!("==== node-record.md\n");
    block("record-key", None, &plain(&record_key(&peer)));
    let signed = record().sign(&identity()).unwrap();
    block("node-record", None, &annotate(signed.record_bytes()));
    let bytes = signed.encode().unwrap();
    block("signed-node-record", None, &annotate(&bytes));
    let minimal = minimal_record().sign(&identity()).unwrap();
    block(
        "minimal-signed-node-record",
        None,
        &annotate(&minimal.encode().unwrap()),
    );
    let mut flipped = minimal.encode().unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    block(
        "invalid-signed-node-record-bad-signature",
        Some("BadSignature"),
        &annotate(&flipped),
    );
    let mut trailing = minimal.encode().unwrap();
    trailing.push(0x00);
    block(
        "invalid-signed-node-record-trailing-byte",
        Some("TrailingBytes"),
        &plain(&trailing),
    );

    println!("==== envelope.md\n");
    block(
        "envelope-request",
        None,
        &annotate(&request().encode().unwrap()),
    );
    block(
        "envelope-reply",
        None,
        &annotate(&reply().encode().unwrap()),
    );
    let min = minimal_envelope().encode().unwrap();
    block("envelope-minimal", None, &annotate(&min));
    let bad_event = hex::encode(&min).replace(
        &hex::encode(b"\x76node:ping:v1:requested"),
        &hex::encode(b"\x77node:ping:v01:requested"),
    );
    block(
        "invalid-envelope-version-leading-zero",
        Some("Malformed"),
        &annotate(&hex::decode(bad_event).unwrap()),
    );
    let mut long_ts = min.clone();
    let pos = long_ts
        .windows(13)
        .position(|w| w == b"\x6ctimestamp_ms")
        .unwrap()
        + 13;
    long_ts.splice(pos..pos + 1, [0x18, 0x00]);
    block(
        "invalid-envelope-non-minimal-integer",
        Some("NonCanonical"),
        &annotate(&long_ts),
    );
    let mut trailing = min.clone();
    trailing.push(0xf6);
    block(
        "invalid-envelope-trailing-byte",
        Some("TrailingBytes"),
        &plain(&trailing),
    );
}
