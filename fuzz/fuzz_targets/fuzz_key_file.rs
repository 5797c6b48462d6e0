//! `decode_keypair` on arbitrary bytes: never panics; an accepted key file re-encodes to the input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = warren_protocol::decode_keypair(data) {
        let bytes = warren_protocol::encode_keypair(&key).expect("a decoded key encodes");
        assert_eq!(bytes, data, "accepted a non-canonical key file");
    }
});
