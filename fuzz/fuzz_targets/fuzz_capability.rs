//! Capability and key text on arbitrary input: never panics, and whatever parses prints back to
//! exactly the input (one text per capability).

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::{Capability, FileKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cap) = text.parse::<Capability>() {
        assert_eq!(cap.to_string(), text);
    }
    if let Ok(key) = FileKey::from_text(text) {
        assert_eq!(key.to_text(), text);
    }
});
