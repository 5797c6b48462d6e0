//! The hex test vectors of `spec/block-transfer.md`, checked against the code.
//!
//! Same conventions as `spec_vectors.rs`: a vector is an HTML comment marker line
//! (`<!-- vector: NAME -->`, or `<!-- vector: NAME error: KIND -->` for bytes every decoder must
//! refuse) followed by a fenced `hex` block, `#` starting a comment. Every valid vector must match
//! what the code produces from the fixed inputs below, byte for byte. To regenerate the blocks
//! after a deliberate format change:
//! `cargo test -p warren-protocol --test transfer_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::collections::BTreeMap;

use warren_protocol::block_transfer::{
    AuditRequest, AuditResponse, BlockRequest, BlockResponse, PROTOCOL_NAME, RenewRequest, Request,
    Response, StoreRequest, StoreResponse, TransferError, provider_key,
};
use warren_protocol::ticket::PlacementTicket;
use warren_protocol::{Codec, ContentId};

const PAGE: &str = include_str!("../../spec/block-transfer.md");

// ---------------------------------------------------------------------------------------------
// The fixed inputs the page states in prose.

const DATA: &[u8] = b"hello warren";

fn id() -> ContentId {
    ContentId::of_block(Codec::Raw, DATA)
}

/// The ticket of the vectors: origin key from the secret `07 07 … 07`, RF 3, expiring at
/// 1 800 000 000 (2027-01-15T08:00:00Z).
fn ticket() -> PlacementTicket {
    let key = warren_protocol::keypair_from_secret([7; 32]);
    PlacementTicket::sign(&key, id(), 3, 1_800_000_000).unwrap()
}

fn messages() -> Vec<(&'static str, Result<Request, Response>)> {
    vec![
        (
            "store-request-with-ticket",
            Ok(Request::Store(StoreRequest {
                block: id(),
                data: DATA.to_vec(),
                rf: 3,
                ticket: Some(ticket()),
            })),
        ),
        (
            "renew-request",
            Ok(Request::Renew(RenewRequest {
                block: id(),
                ticket: ticket(),
            })),
        ),
        (
            "get-request",
            Ok(Request::Get(BlockRequest { block: id() })),
        ),
        (
            "block-response",
            Err(Response::Block(BlockResponse {
                block: id(),
                data: DATA.to_vec(),
            })),
        ),
        (
            "not-found-response",
            Err(Response::NotFound { block: id() }),
        ),
        (
            "store-request",
            Ok(Request::Store(StoreRequest {
                block: id(),
                data: DATA.to_vec(),
                rf: 3,
                ticket: None,
            })),
        ),
        (
            "stored-response",
            Err(Response::Stored(StoreResponse {
                block: id(),
                accepted: true,
                reason: None,
            })),
        ),
        (
            "stored-response-refused",
            Err(Response::Stored(StoreResponse {
                block: id(),
                accepted: false,
                reason: Some("no room".into()),
            })),
        ),
        (
            "audit-request",
            Ok(Request::Audit(AuditRequest {
                block: id(),
                block_len: 12,
                nonce: std::array::from_fn(|i| i as u8),
                offset: 0,
                len: 12,
            })),
        ),
        (
            "proof-response",
            Err(Response::Proof(AuditResponse {
                block: id(),
                proof: vec![0xab; 40],
            })),
        ),
        (
            "failed-response",
            Err(Response::Failed {
                reason: "busy".into(),
            }),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Extraction (as in spec_vectors.rs).

use warren_protocol::spec_text::SpecVector as Vector;

fn vectors(page: &str) -> Vec<Vector> {
    warren_protocol::spec_text::extract_vectors(page).unwrap_or_else(|e| panic!("{e}"))
}

/// The error's kind: the variant name, looking through `TransferError::Protocol`.
fn kind(err: &TransferError) -> String {
    let debug = match err {
        TransferError::Protocol(e) => format!("{e:?}"),
        other => format!("{other:?}"),
    };
    debug.split([' ', '(', '{']).next().unwrap_or("").to_owned()
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn page_names_the_protocol() {
    assert!(PAGE.contains(&format!("`{PROTOCOL_NAME}`")));
    assert!(
        PAGE.contains(&id().to_string()),
        "the page states the test block's id"
    );
}

#[test]
fn transfer_vectors() {
    let all = vectors(PAGE);
    let good: BTreeMap<&str, &[u8]> = all
        .iter()
        // The Kademlia-key vectors need SHA-256: warren-storage-mesh's tests check them.
        .filter(|v| v.error.is_none() && !v.name.starts_with("kad-"))
        .map(|v| (v.name.as_str(), v.bytes.as_slice()))
        .collect();

    assert_eq!(good["provider-key"], provider_key(&id().hash()));
    assert_eq!(good["block-id"], id().to_bytes());

    let expected = messages();
    for (name, msg) in &expected {
        let bytes = good
            .get(name)
            .unwrap_or_else(|| panic!("the page lacks vector {name}"));
        match msg {
            Ok(req) => {
                assert_eq!(&Request::decode(bytes).unwrap(), req, "{name} fields");
                assert_eq!(&req.encode().unwrap(), bytes, "{name} encodes");
                assert!(Response::decode(bytes).is_err(), "{name} is no response");
            }
            Err(resp) => {
                assert_eq!(&Response::decode(bytes).unwrap(), resp, "{name} fields");
                assert_eq!(&resp.encode().unwrap(), bytes, "{name} encodes");
                assert!(Request::decode(bytes).is_err(), "{name} is no request");
            }
        }
    }
    // Nothing else valid on the page (the two keys are checked above).
    assert_eq!(good.len(), expected.len() + 2, "valid vectors on the page");

    let bad: Vec<&Vector> = all.iter().filter(|v| v.error.is_some()).collect();
    assert!(bad.len() >= 4, "invalid vectors on the page");
    for v in bad {
        let want = v.error.as_deref().unwrap_or_default();
        // An invalid vector is refused whichever direction it is read in.
        let req = Request::decode(&v.bytes).expect_err(&v.name);
        let resp = Response::decode(&v.bytes).expect_err(&v.name);
        let got = if v.name.contains("request") {
            req
        } else {
            resp
        };
        assert_eq!(kind(&got), want, "vector {}: {got}", v.name);
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
// Generator: prints annotated hex blocks for the page.

fn line(out: &mut String, depth: usize, hex_part: &str, comment: &str) {
    let code = format!("{}{}", "   ".repeat(depth), hex_part);
    if comment.is_empty() {
        out.push_str(&code);
    } else {
        out.push_str(&format!("{code:<48} # {comment}"));
    }
    out.push('\n');
}

/// Writes one CBOR item as annotated hex lines, one item head per line.
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
    match (major, ib) {
        (0, _) => {
            line(out, depth, &head, &format!("{arg}"));
            rest
        }
        (2 | 3, _) => {
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
        (5, _) => {
            line(out, depth, &head, &format!("map({n})"));
            (0..2 * n).fold(rest, |r, _| annotate_item(r, depth + 1, out))
        }
        (7, 0xf4) => {
            line(out, depth, &head, "false");
            rest
        }
        (7, 0xf5) => {
            line(out, depth, &head, "true");
            rest
        }
        (7, 0xf6) => {
            line(out, depth, &head, "null");
            rest
        }
        _ => panic!("unexpected CBOR item {ib:#04x}"),
    }
}

fn annotate(bytes: &[u8]) -> String {
    let mut out = String::new();
    let rest = annotate_item(bytes, 0, &mut out);
    assert!(rest.is_empty(), "trailing bytes");
    out
}

fn plain(bytes: &[u8]) -> String {
    bytes.chunks(16).map(|c| hex::encode(c) + "\n").collect()
}

fn block(name: &str, error: Option<&str>, body: &str) {
    match error {
        None => println!("<!-- vector: {name} -->"),
        Some(kind) => println!("<!-- vector: {name} error: {kind} -->"),
    }
    println!("```hex\n{body}```\n");
}

#[test]
#[ignore = "generator: prints the vector blocks for spec/block-transfer.md"]
fn print_vectors() {
    println!("block id {}\n", id());
    block("block-id", None, &plain(&id().to_bytes()));
    block("provider-key", None, &plain(&provider_key(&id().hash())));
    for (name, msg) in messages() {
        let bytes = match msg {
            Ok(req) => req.encode().unwrap(),
            Err(resp) => resp.encode().unwrap(),
        };
        block(name, None, &annotate(&bytes));
    }

    let store = Request::Store(StoreRequest {
        block: id(),
        data: DATA.to_vec(),
        rf: 3,
        ticket: None,
    })
    .encode()
    .unwrap();
    let mut corrupt = store.clone();
    // The last byte of `data` (the `rf` entry follows it).
    let at = store.windows(DATA.len()).position(|w| w == DATA).unwrap() + DATA.len() - 1;
    corrupt[at] ^= 0x01;
    block(
        "invalid-store-request-corrupt-data",
        Some("HashMismatch"),
        &annotate(&corrupt),
    );
    let mut forged = ticket();
    forged.rf = 16;
    block(
        "invalid-renew-request-forged-ticket",
        Some("InvalidField"),
        &annotate(
            &serde_cbor::to_vec(&Request::Renew(RenewRequest {
                block: id(),
                ticket: forged,
            }))
            .unwrap(),
        ),
    );
    let mut trailing = store.clone();
    trailing.push(0x00);
    block(
        "invalid-store-request-trailing-byte",
        Some("TrailingBytes"),
        &plain(&trailing),
    );
    // `rf` 17, one above the limit (the last byte is the rf value, 3 in the valid request).
    let mut rf_high = store.clone();
    let last = rf_high.len() - 1;
    assert_eq!(rf_high[last], 3);
    rf_high[last] = 17;
    block(
        "invalid-store-request-rf-above-max",
        Some("InvalidField"),
        &annotate(&rf_high),
    );
    let get = Request::Get(BlockRequest { block: id() }).encode().unwrap();
    let unknown = hex::encode(&get).replacen(&hex::encode(b"\x63get"), &hex::encode(b"\x63put"), 1);
    block(
        "invalid-request-unknown-kind",
        Some("Malformed"),
        &annotate(&hex::decode(unknown).unwrap()),
    );
    // The same request with the CID's codec set to dag-pb (0x70).
    let dag_pb = hex::encode(&get).replacen("01551e20", "01701e20", 1);
    block(
        "invalid-request-dag-pb-cid",
        Some("Malformed"),
        &annotate(&hex::decode(dag_pb).unwrap()),
    );
    let audit = Request::Audit(AuditRequest {
        block: id(),
        block_len: 100_000,
        nonce: [0; 16],
        offset: 1000,
        len: 1000,
    });
    let bytes = warren_protocol_codec_bypass(&audit);
    block(
        "invalid-audit-request-unaligned-offset",
        Some("InvalidField"),
        &annotate(&bytes),
    );
    let found = Response::NotFound { block: id() }.encode().unwrap();
    // block_len as a two-byte integer would be non-canonical; here: the map head of the inner
    // map spelled as an indefinite-length map.
    let mut indefinite = found.clone();
    let pos = 1 + 1 + "not_found".len();
    assert_eq!(indefinite[pos], 0xa1);
    indefinite[pos] = 0xbf;
    indefinite.push(0xff);
    block(
        "invalid-response-indefinite-map",
        Some("NonCanonical"),
        &plain(&indefinite),
    );
}

/// Encodes a request without validating it (for invalid vectors): the valid audit request with
/// offset and len patched.
fn warren_protocol_codec_bypass(audit: &Request) -> Vec<u8> {
    let Request::Audit(a) = audit else {
        unreachable!()
    };
    let valid = Request::Audit(AuditRequest {
        offset: 16384,
        len: 16384,
        ..a.clone()
    })
    .encode()
    .unwrap();
    // offset 16384 = 19 4000, len 16384 = 19 4000; 1000 = 19 03e8.
    let h = hex::encode(valid);
    let h = h.replacen(
        &(hex::encode(b"\x66offset") + "194000"),
        &(hex::encode(b"\x66offset") + "1903e8"),
        1,
    );
    let h = h.replacen(
        &(hex::encode(b"\x63len") + "194000"),
        &(hex::encode(b"\x63len") + "1903e8"),
        1,
    );
    hex::decode(h).unwrap()
}
