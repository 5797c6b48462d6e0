//! The record decoder and validator behind a valid signature: the input is taken as the `record`
//! bytes, signed with a fixed key, wrapped and verified. (Through `fuzz_node_record` a mutated
//! record almost never gets past the signature check.) Never panics; a record that verifies
//! re-signs to the same bytes.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use warren_protocol::{Keypair, RECORD_SIGNATURE_DOMAIN, SignedNodeRecord, keypair_from_secret};

/// The identity of the spec vectors, so that their records are a useful seed corpus.
static KEY: LazyLock<Keypair> =
    LazyLock::new(|| keypair_from_secret(std::array::from_fn(|i| i as u8 + 1)));
const NOW: u64 = 1_700_000_100;

/// CBOR head of a byte or text string (major type 2 or 3) of length `len`.
fn head(major: u8, len: usize, out: &mut Vec<u8>) {
    let m = major << 5;
    match len {
        0..=23 => out.push(m | len as u8),
        24..=0xff => out.extend([m | 24, len as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((len as u32).to_be_bytes());
        }
    }
}

fn entry(key: &str, value: &[u8], out: &mut Vec<u8>) {
    head(3, key.len(), out);
    out.extend(key.as_bytes());
    head(2, value.len(), out);
    out.extend(value);
}

fuzz_target!(|record: &[u8]| {
    let signature = KEY
        .sign(&[RECORD_SIGNATURE_DOMAIN, record].concat())
        .expect("ed25519 signs");
    let mut signed = vec![0xa3];
    entry("record", record, &mut signed);
    entry("public_key", &KEY.public().encode_protobuf(), &mut signed);
    entry("signature", &signature, &mut signed);
    if let Ok(decoded) =
        SignedNodeRecord::decode_verified(&signed, Some(&KEY.public().to_peer_id()), NOW)
    {
        let again = decoded.sign(&KEY).expect("a verified record signs");
        assert_eq!(
            again.record_bytes(),
            record,
            "accepted a non-canonical record"
        );
    }
});
