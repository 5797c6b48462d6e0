//! The onion cell decoders on arbitrary bytes: a link cell, the plaintext of a relay cell, the data
//! of an `EXTEND` and `END`, and a runner request. Never panics; whatever decodes encodes back to
//! the same bytes (one encoding per cell).

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::onion::cell::{self, BODY_LEN, Cell, RelayPayload};
use warren_protocol::onion::request::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Cell::decode(data) {
        assert_eq!(c.encode().expect("a decoded cell encodes"), data);
    }
    if data.len() >= BODY_LEN {
        let mut body = [0u8; BODY_LEN];
        body.copy_from_slice(&data[..BODY_LEN]);
        if let Ok(p) = RelayPayload::decode(&body) {
            let again = p.encode().expect("a decoded payload encodes");
            assert_eq!(again[16..], body[16..]);
        }
    }
    if let Ok((peer, hs)) = cell::decode_extend(data) {
        assert_eq!(cell::encode_extend(&peer, &hs).expect("re-encodes"), data);
    }
    let _ = cell::decode_end(data);
    if let Ok(r) = Request::decode(data) {
        let _ = r.encode();
    }
});
