//! `Envelope::decode` on arbitrary bytes: never panics, and whatever it accepts re-encodes to
//! exactly the input (one encoding per value) and decodes again to the same envelope.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let bytes = envelope.encode().expect("a decoded envelope encodes");
        assert_eq!(bytes, data, "accepted a non-canonical envelope");
        let again = Envelope::decode(&bytes).expect("an encoded envelope decodes");
        assert_eq!(again, envelope);
        let _ = envelope
            .reply(warren_protocol::State::Completed, 0, Vec::new())
            .encode();
    }
});
