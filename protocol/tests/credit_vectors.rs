//! The hex test vectors of `spec/credits.md`, checked against the code.
//!
//! Same conventions as `spec_vectors.rs`: a vector is a marker line (`<!-- vector: NAME -->`, or
//! `<!-- vector: NAME error: KIND -->` for bytes every decoder must refuse with that
//! [`CreditError::kind`]) followed by a fenced `hex` block. Every valid vector must match what the
//! code produces from the fixed inputs below, byte for byte. To regenerate the blocks after a
//! deliberate format change:
//! `cargo test -p warren-protocol --test credit_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use warren_protocol::credits::receipt::{MAX_RECEIPT_SIZE, ed25519_key};
use warren_protocol::credits::wire::Reply;
use warren_protocol::credits::{FraudProof, Quantities, RateCard, Receipt};
use warren_protocol::keypair_from_secret;

const PAGE: &str = include_str!("../../spec/credits.md");

/// The receipt the page describes: payer key from the secret `01 … 01`, payee `02 … 02`,
/// number 1, time 1 800 000 000, 1 MiB delivered, 3 600 KiB-seconds of storage, and 15 tokens of
/// a 7M-parameter model named `tiny`.
fn receipt() -> Receipt {
    let payer = keypair_from_secret([1; 32]);
    let payee = ed25519_key(&keypair_from_secret([2; 32])).unwrap();
    let mut work = Quantities {
        bytes: 1 << 20,
        storage_kib_secs: 3600,
        ..Quantities::default()
    };
    work.add_inference("tiny", 7, 10, 5);
    Receipt::issue(&payer, payee, 1, 1_800_000_000, work).unwrap()
}

/// The next receipt of the pair with relay work: number 2, time 1 800 000 060, the same counters
/// and 512 KiB of onion cells the payee delivered back on the payer's circuits (`relay_bytes`,
/// omitted from the CBOR of the receipts above, where it is 0).
fn relay_receipt() -> Receipt {
    let payer = keypair_from_secret([1; 32]);
    let r = receipt();
    let work = Quantities {
        relay_bytes: 512 << 10,
        ..r.work
    };
    Receipt::issue(&payer, r.payee, 2, 1_800_000_060, work).unwrap()
}

fn countersigned() -> Receipt {
    let mut r = receipt();
    r.countersign(&keypair_from_secret([2; 32])).unwrap();
    r
}

/// The fraud proof the page describes: the receipt above, and another of the same payer, payee
/// and number stating 2 MiB delivered.
fn fraud_proof() -> FraudProof {
    let payer = keypair_from_secret([1; 32]);
    let mut second = receipt();
    second.work.bytes = 2 << 20;
    let second = Receipt::issue(&payer, second.payee, 1, second.time, second.work).unwrap();
    FraudProof::new(receipt(), second).unwrap()
}

fn valid() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("receipt-payer-signed", receipt().encode().unwrap()),
        ("receipt-countersigned", countersigned().encode().unwrap()),
        (
            "reply-accepted",
            Reply::Accepted(Box::new(countersigned())).encode().unwrap(),
        ),
        (
            "reply-refused",
            Reply::refused("credit receipt #1: replayed (the latest of this pair is #1)")
                .encode()
                .unwrap(),
        ),
        ("fraud-proof", fraud_proof().encode().unwrap()),
        (
            "receipt-relay-payer-signed",
            relay_receipt().encode().unwrap(),
        ),
    ]
}

fn invalid() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let good = receipt().encode().unwrap();
    let mut forged = good.clone();
    // The `bytes` counter: 1a 00 10 00 00 (1 MiB) becomes 2 MiB.
    let at = good
        .windows(5)
        .position(|w| w == [0x1a, 0x00, 0x10, 0x00, 0x00])
        .unwrap();
    forged[at + 2] = 0x20;
    let mut trailing = good.clone();
    trailing.push(0);
    vec![
        ("invalid-receipt-forged-counter", "Forged", forged),
        ("invalid-receipt-trailing-byte", "TrailingBytes", trailing),
    ]
}

fn plain(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_pages_vectors_match_the_code() {
    let vectors = warren_protocol::spec_text::extract_vectors(PAGE).unwrap();
    let mut checked = 0;
    for (name, bytes) in valid() {
        let v = vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("vector {name} missing from spec/credits.md"));
        assert!(v.error.is_none());
        assert_eq!(hex::encode(&v.bytes), hex::encode(&bytes), "vector {name}");
        checked += 1;
    }
    assert_eq!(
        Receipt::decode(&valid()[0].1).unwrap(),
        receipt(),
        "the payer-signed vector decodes"
    );
    assert_eq!(Receipt::decode(&valid()[1].1).unwrap(), countersigned());
    assert_eq!(FraudProof::decode(&valid()[4].1).unwrap(), fraud_proof());
    let relay = Receipt::decode(&valid()[5].1).unwrap();
    assert_eq!(relay, relay_receipt());
    assert_eq!(relay.work.relay_bytes, 512 << 10);
    assert!(
        relay.work.covers(&receipt().work),
        "it follows the first receipt"
    );
    for (name, kind, bytes) in invalid() {
        let v = vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("vector {name} missing from spec/credits.md"));
        assert_eq!(v.error.as_deref(), Some(kind), "vector {name}");
        assert_eq!(v.bytes, bytes, "vector {name}");
        let err = Receipt::decode(&v.bytes).unwrap_err();
        assert_eq!(err.kind(), kind, "vector {name}: {err}");
        checked += 1;
    }
    assert_eq!(
        checked,
        vectors.len(),
        "every vector on the page is checked"
    );
    assert!(Receipt::decode(&vec![0; MAX_RECEIPT_SIZE + 1]).is_err());
}

#[test]
fn the_pages_prices_are_the_default_rate_card() {
    let card = RateCard::default();
    // "1 credit ≈ 1 GiB of egress ≈ 1,000 GiB-hours of storage"
    assert_eq!(card.bytes(1 << 30), 1_000_000_000);
    assert!(PAGE.contains("| `egress_per_gib` | 1 000 000 000 |"));
    assert!(PAGE.contains("| `storage_per_gib_hour` | 1 000 000 |"));
    assert!(PAGE.contains("| `inference_per_pflop` | 1 000 000 000 |"));
    // The vector receipt is worth 976 562 nc of egress + 0 of storage (3 600 KiB-s ≈ 0.95 nc)
    // + 210 of inference (15 tokens × 2 × 7e6 = 2.1e8 FLOPs).
    assert_eq!(card.value(&receipt().work), 976_772);
    assert!(PAGE.contains("976 772 nc"));
    // Relay work is priced as egress: the relay receipt adds 512 KiB = 488 281 nc.
    assert!(PAGE.contains("| `relay_per_gib` | 1 000 000 000 |"));
    assert_eq!(card.value(&relay_receipt().work), 976_772 + 488_281);
    assert!(PAGE.contains("1 465 053 nc"));
}

#[test]
#[ignore = "prints the vector blocks for the page"]
fn print_vectors() {
    for (name, bytes) in valid() {
        println!("<!-- vector: {name} -->\n```hex\n{}\n```\n", plain(&bytes));
    }
    for (name, kind, bytes) in invalid() {
        println!(
            "<!-- vector: {name} error: {kind} -->\n```hex\n{}\n```\n",
            plain(&bytes)
        );
    }
}
