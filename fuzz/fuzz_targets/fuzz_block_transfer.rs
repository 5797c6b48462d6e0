//! `/warren/blocks/2.0.0` messages: `Request::decode` and `Response::decode` on arbitrary bytes
//! never panic, and whatever they accept (a block that hashes to its id, fields within their
//! limits) re-encodes to exactly the input (one encoding per message) and decodes again to the
//! same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::block_transfer::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::decode(data) {
        let bytes = request.encode().expect("a decoded request encodes");
        assert_eq!(bytes, data, "accepted a non-canonical request");
        assert_eq!(Request::decode(&bytes).expect("decodes again"), request);
    }
    if let Ok(response) = Response::decode(data) {
        let bytes = response.encode().expect("a decoded response encodes");
        assert_eq!(bytes, data, "accepted a non-canonical response");
        assert_eq!(Response::decode(&bytes).expect("decodes again"), response);
    }
});
