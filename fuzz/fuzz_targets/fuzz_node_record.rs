//! `SignedNodeRecord::decode` and `decode_verified` on arbitrary bytes: never panic; whatever the
//! structural decoder accepts re-encodes to exactly the input; a record that verifies is valid.
//!
//! Random bytes almost never carry a valid signature, so the corpus should be seeded with the
//! signed record vectors of `spec/node-record.md` (see `fuzz/README.md`); mutations of those reach
//! the signature check and, for mutations of the signature alone, the record decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::SignedNodeRecord;

/// The `now` of the spec vectors, so that the seed records are within their lifetime.
const NOW: u64 = 1_700_000_100;

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedNodeRecord::decode(data) else {
        return;
    };
    let bytes = signed.encode().expect("a decoded record encodes");
    assert_eq!(bytes, data, "accepted a non-canonical signed record");
    if let Ok(record) = signed.verify(None, NOW) {
        record.validate(NOW).expect("a verified record is valid");
        let peer = record.peer_id;
        SignedNodeRecord::decode_verified(data, Some(&peer), NOW)
            .expect("verifies for its own peer");
    }
});
