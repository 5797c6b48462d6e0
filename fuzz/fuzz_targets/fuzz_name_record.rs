//! `name::decode_verified` (a signed name record from the DHT, `spec/names.md`) on arbitrary
//! bytes, for the name of the spec's key: never panics; a record that verifies is valid at `now`,
//! names that name, signs again to exactly the input (canonical CBOR, deterministic Ed25519), and
//! never supersedes itself in a store.
//!
//! Seed the corpus with the vectors of `spec/names.md` (`fuzz/seeds/fuzz_name_record/`): random
//! bytes almost never carry a valid signature.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::keypair_from_secret;
use warren_protocol::name::{accept_for_store, decode_verified};

/// The `now` of the spec vectors.
const NOW: u64 = 1_700_000_100;

fuzz_target!(|data: &[u8]| {
    let key = keypair_from_secret(std::array::from_fn(|i| i as u8 + 1));
    let name = key.public().to_peer_id();
    if let Ok(record) = decode_verified(data, &name, NOW) {
        record.validate(NOW).expect("a verified record is valid");
        assert_eq!(record.name, name);
        assert_eq!(record.sign(&key).expect("re-signs"), data, "not canonical");
        assert!(accept_for_store(data, Some(data), &name, NOW).is_err());
    }
});
