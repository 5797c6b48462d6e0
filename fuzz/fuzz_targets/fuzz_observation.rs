//! `SignedObservation::decode`, `verify` and `decode_verified`, and `Observation::decode`, on
//! arbitrary bytes: never panic; whatever the structural decoders accept re-encodes to exactly the
//! input; an observation that verifies passes every content and clock rule.
//!
//! Random bytes almost never carry a valid signature, so seed the corpus with the signed
//! observation vectors of `spec/reputation.md` (as binary files, like the other targets' seeds);
//! mutations of those reach the signature check and, for mutations of the signature alone, the
//! observation decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::{Observation, SignedObservation};

/// The clock of the spec vectors (their time plus one minute), so that the seeds verify.
const NOW_MS: u64 = 1_700_000_060_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(observation) = Observation::decode(data) {
        let bytes = observation.encode().expect("a decoded observation encodes");
        assert_eq!(bytes, data, "accepted a non-canonical observation");
    }
    let Ok(signed) = SignedObservation::decode(data) else {
        return;
    };
    let bytes = signed
        .encode()
        .expect("a decoded signed observation encodes");
    assert_eq!(bytes, data, "accepted a non-canonical signed observation");
    if let Ok(observation) = signed.verify(NOW_MS) {
        observation
            .validate(NOW_MS)
            .expect("a verified observation is valid");
        assert_ne!(observation.observer, observation.subject);
        assert_eq!(
            SignedObservation::decode_verified(data, NOW_MS).expect("verifies again"),
            observation
        );
    }
});
