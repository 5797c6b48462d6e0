//! The hex test vectors of `spec/reputation.md`, checked against the code.
//!
//! Same page conventions as `spec_vectors.rs`: a `<!-- vector: NAME -->` marker line (or
//! `<!-- vector: NAME error: KIND -->` for bytes every verifier must refuse) followed by a fenced
//! `hex` block whose `#` comments are ignored. `KIND` is the [`ObservationError`] variant, or for
//! decoding errors the inner [`warren_protocol::Error`] variant (`TrailingBytes`, `NonCanonical`, …).
//!
//! To regenerate the blocks after a deliberate format change:
//! `cargo test -p warren-protocol --test reputation_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::collections::BTreeMap;

use warren_protocol::{
    Keypair, OBSERVATION_SIGNATURE_DOMAIN, Observation, ObservationError, PeerId, Reputation,
    SignedObservation, keypair_from_secret,
    observation::Kind,
    reputation::{Config, Ingest},
};

const PAGE: &str = include_str!("../../spec/reputation.md");

// ---------------------------------------------------------------------------------------------
// The fixed inputs the page states in prose.

/// Observer identity: secret bytes 0x01, 0x02, …, 0x20 (the identity of `spec/identity.md`).
fn observer_key() -> Keypair {
    keypair_from_secret(std::array::from_fn(|i| i as u8 + 1))
}

/// Subject identity: secret bytes 0x21, 0x22, …, 0x40.
fn subject_key() -> Keypair {
    keypair_from_secret(std::array::from_fn(|i| i as u8 + 0x21))
}

fn observer() -> PeerId {
    observer_key().public().to_peer_id()
}

fn subject() -> PeerId {
    subject_key().public().to_peer_id()
}

/// When the observations were made, Unix ms.
const TIME_MS: u64 = 1_700_000_000_000;
/// The clock the vectors are verified at: one minute later.
const NOW_MS: u64 = TIME_MS + 60_000;

/// The CID bytes of a raw chunk whose BLAKE3 digest is 32 bytes of 0x11.
fn chunk_cid() -> Vec<u8> {
    let mut cid = vec![0x01, 0x55, 0x1e, 0x20];
    cid.extend_from_slice(&[0x11; 32]);
    cid
}

fn proof_passed() -> Observation {
    Observation {
        observer: observer(),
        subject: subject(),
        kind: Kind::StorageProofPassed,
        value: 1,
        time_ms: TIME_MS,
        evidence: Some(chunk_cid()),
    }
}

fn latency() -> Observation {
    Observation {
        kind: Kind::LatencySample,
        value: 42,
        evidence: None,
        ..proof_passed()
    }
}

/// Signs any observation bytes with the observer key, bypassing `Observation::sign`'s checks, and
/// writes the outer map by hand: `{"observation": bytes, "public_key": bytes, "signature": bytes}`.
fn sign_raw(observation: &[u8]) -> Vec<u8> {
    let key = observer_key();
    let signature = key
        .sign(&[OBSERVATION_SIGNATURE_DOMAIN, observation].concat())
        .unwrap();
    let public_key = key.public().encode_protobuf();
    let mut out = vec![0xa3];
    let mut field = |name: &str, bytes: &[u8]| {
        out.push(0x60 + name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        match bytes.len() {
            n if n < 24 => out.push(0x40 + n as u8),
            n if n < 256 => out.extend_from_slice(&[0x58, n as u8]),
            n => {
                out.push(0x59);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(bytes);
    };
    field("observation", observation);
    field("public_key", &public_key);
    field("signature", &signature);
    out
}

/// A small machine state: the observer has audited the subject once (passed) and knows it is in
/// 198.51.0.0/16.
fn state() -> Reputation {
    let mut r = Reputation::new(observer(), &[], Config::default()).unwrap();
    r.set_network(subject(), [198, 51]);
    assert_eq!(
        r.observe_first_hand(&proof_passed(), TIME_MS),
        Ingest::Counted
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Extraction (as in spec_vectors.rs).

use warren_protocol::spec_text::SpecVector as Vector;

fn vectors(page: &str) -> Vec<Vector> {
    warren_protocol::spec_text::extract_vectors(page).unwrap_or_else(|e| panic!("{e}"))
}

/// The variant name of an observation error, looking through `Codec(…)`.
fn kind_of(err: &ObservationError) -> String {
    let debug = format!("{err:?}");
    let inner = debug.strip_prefix("Codec(").unwrap_or(&debug);
    inner.split([' ', '(', '{']).next().unwrap_or("").to_owned()
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn observation_vectors() {
    let all = vectors(PAGE);
    let (good, bad): (Vec<_>, Vec<_>) = all.into_iter().partition(|v| v.error.is_none());
    let good: BTreeMap<_, _> = good.into_iter().map(|v| (v.name, v.bytes)).collect();
    let names: Vec<&str> = good.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "observation",
            "reputation-state",
            "signed-observation-latency",
            "signed-observation-storage-proof",
        ]
    );
    assert!(bad.len() >= 6, "{} invalid vectors", bad.len());

    assert_eq!(good["observation"], proof_passed().encode().unwrap());
    for (name, expected) in [
        ("signed-observation-storage-proof", proof_passed()),
        ("signed-observation-latency", latency()),
    ] {
        let bytes = &good[name];
        let decoded = SignedObservation::decode(bytes).unwrap();
        assert_eq!(&decoded.encode().unwrap(), bytes, "{name} re-encodes");
        assert_eq!(decoded.verify(NOW_MS).unwrap(), expected, "{name} fields");
        // Ed25519 signatures are deterministic: signing again gives the same bytes.
        assert_eq!(
            &expected.sign(&observer_key()).unwrap().encode().unwrap(),
            bytes,
            "{name}"
        );
    }

    let state_bytes = &good["reputation-state"];
    assert_eq!(&state().to_bytes().unwrap(), state_bytes);
    let restored =
        Reputation::from_bytes(state_bytes, observer(), &[], Config::default(), TIME_MS).unwrap();
    assert_eq!(&restored.to_bytes().unwrap(), state_bytes);
    let score = restored.score(&subject(), TIME_MS).unwrap();
    assert!((score.components.performance - 2.0 / 3.0).abs() < 1e-12);

    for v in bad {
        let err = SignedObservation::decode_verified(&v.bytes, NOW_MS).expect_err(&v.name);
        assert_eq!(
            kind_of(&err),
            v.error.as_deref().unwrap_or_default(),
            "vector {}: {err}",
            v.name
        );
    }
}

#[test]
fn the_page_states_the_fixed_inputs() {
    assert!(PAGE.contains(&observer().to_string()));
    assert!(PAGE.contains(&subject().to_string()));
    assert!(PAGE.contains("1700000000000"));
}

// ---------------------------------------------------------------------------------------------
// Generator.

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
    if major == 7 {
        let len = match ai {
            22 => 1,
            25 => 3,
            26 => 5,
            27 => 9,
            _ => panic!("unexpected simple value {ib:#04x}"),
        };
        let what = match ai {
            22 => "null".to_owned(),
            25 => format!("float16 {}", half(u16::from_be_bytes([bytes[1], bytes[2]]))),
            26 => format!(
                "float32 {}",
                f32::from_be_bytes(bytes[1..5].try_into().unwrap())
            ),
            _ => format!(
                "float64 {}",
                f64::from_be_bytes(bytes[1..9].try_into().unwrap())
            ),
        };
        line(out, depth, &hex::encode(&bytes[..len]), &what);
        return &bytes[len..];
    }
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
            if major == 3 {
                let text = std::str::from_utf8(content).unwrap();
                line(
                    out,
                    depth,
                    &format!("{head} {}", hex::encode(content)),
                    &format!("{text:?}"),
                );
            } else if n <= 16 {
                line(
                    out,
                    depth,
                    format!("{head} {}", hex::encode(content)).trim_end(),
                    &format!("bytes({n})"),
                );
            } else {
                line(out, depth, &head, &format!("bytes({n})"));
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
        _ => panic!("unexpected CBOR item {ib:#04x}"),
    }
}

/// IEEE 754 half precision to f64 (normal numbers and zero, enough for the annotations).
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    if exp == 0 {
        sign * frac * 2f64.powi(-24)
    } else {
        sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15)
    }
}

fn block(name: &str, error: Option<&str>, body: &str) {
    match error {
        None => println!("<!-- vector: {name} -->"),
        Some(kind) => println!("<!-- vector: {name} error: {kind} -->"),
    }
    println!("```hex\n{body}```\n");
}

fn plain(bytes: &[u8]) -> String {
    bytes.chunks(16).map(|c| hex::encode(c) + "\n").collect()
}

#[test]
#[ignore = "generator: prints the vector blocks for spec/reputation.md"]
fn print_vectors() {
    println!("observer {}\nsubject {}\n", observer(), subject());
    let inner = proof_passed().encode().unwrap();
    block("observation", None, &annotate(&inner));
    let signed = proof_passed()
        .sign(&observer_key())
        .unwrap()
        .encode()
        .unwrap();
    block("signed-observation-storage-proof", None, &annotate(&signed));
    let lat = latency().sign(&observer_key()).unwrap().encode().unwrap();
    block("signed-observation-latency", None, &annotate(&lat));

    let mut flipped = lat.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    block(
        "invalid-observation-bad-signature",
        Some("BadSignature"),
        &annotate(&flipped),
    );
    let mut trailing = lat.clone();
    trailing.push(0x00);
    block(
        "invalid-observation-trailing-byte",
        Some("TrailingBytes"),
        &plain(&trailing),
    );
    let about_itself = Observation {
        subject: observer(),
        ..latency()
    };
    block(
        "invalid-observation-about-itself",
        Some("SelfObservation"),
        &annotate(&sign_raw(&about_itself.encode().unwrap())),
    );
    let named_other = Observation {
        observer: subject(),
        subject: observer(),
        ..latency()
    };
    block(
        "invalid-observation-observer-is-not-signer",
        Some("SignerMismatch"),
        &annotate(&sign_raw(&named_other.encode().unwrap())),
    );
    let slow = Observation {
        value: 60_001,
        ..latency()
    };
    block(
        "invalid-observation-latency-out-of-range",
        Some("ValueOutOfRange"),
        &annotate(&sign_raw(&slow.encode().unwrap())),
    );
    let two = Observation {
        kind: Kind::StorageProofFailed,
        value: 2,
        ..latency()
    };
    block(
        "invalid-observation-proof-value-2",
        Some("ValueOutOfRange"),
        &annotate(&sign_raw(&two.encode().unwrap())),
    );
    let old = Observation {
        time_ms: NOW_MS - 24 * 3600 * 1000 - 1,
        ..latency()
    };
    block(
        "invalid-observation-too-old",
        Some("TooOld"),
        &annotate(&old.sign(&observer_key()).unwrap().encode().unwrap()),
    );
    let future = Observation {
        time_ms: NOW_MS + 5 * 60 * 1000 + 1,
        ..latency()
    };
    block(
        "invalid-observation-in-future",
        Some("InFuture"),
        &annotate(&future.sign(&observer_key()).unwrap().encode().unwrap()),
    );
    // value 42 as a two-byte integer (19 002a instead of 18 2a) inside the signed bytes.
    let canonical = latency().encode().unwrap();
    let hex_text = hex::encode(&canonical).replace("6576616c7565182a", "6576616c756519002a");
    assert_ne!(hex_text, hex::encode(&canonical));
    block(
        "invalid-observation-non-minimal-integer",
        Some("NonCanonical"),
        &annotate(&sign_raw(&hex::decode(hex_text).unwrap())),
    );
    block(
        "reputation-state",
        None,
        &annotate(&state().to_bytes().unwrap()),
    );
}
