//! `/warren/credits/1.0.0` messages and gossiped fraud proofs (spec/credits.md): `Receipt::decode`,
//! `Reply::decode` and `FraudProof::decode` on arbitrary bytes never panic, and whatever they accept (signatures that verify, fields within
//! their limits) re-encodes to exactly the input and decodes again to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::credits::{FraudProof, Receipt};
use warren_protocol::credits::wire::Reply;

fuzz_target!(|data: &[u8]| {
    if let Ok(receipt) = Receipt::decode(data) {
        let bytes = receipt.encode().expect("a decoded receipt encodes");
        assert_eq!(bytes, data, "accepted a non-canonical receipt");
        assert_eq!(Receipt::decode(&bytes).expect("decodes again"), receipt);
    }
    if let Ok(reply) = Reply::decode(data) {
        let bytes = reply.encode().expect("a decoded reply encodes");
        assert_eq!(bytes, data, "accepted a non-canonical reply");
        assert_eq!(Reply::decode(&bytes).expect("decodes again"), reply);
    }
    if let Ok(proof) = FraudProof::decode(data) {
        let bytes = proof.encode().expect("a decoded fraud proof encodes");
        assert_eq!(bytes, data, "accepted a non-canonical fraud proof");
        assert_eq!(FraudProof::decode(&bytes).expect("decodes again"), proof);
        assert!(proof.check());
    }
});
