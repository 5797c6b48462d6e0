//! `Directory::decode` (a directory's listing, `spec/storage.md` "Directories") on arbitrary
//! bytes: never panics; whatever it accepts re-encodes to exactly the input, has only names that
//! are one path component (never `.`, `..`, `/`, NUL), sorted and unique, and every lookup by
//! name finds its entry.
//!
//! Seed the corpus with the listing vectors of `spec/storage.md` (`fuzz/seeds/fuzz_directory/`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::{Codec, ContentId, Directory, directory::name_problem};

fuzz_target!(|data: &[u8]| {
    let id = ContentId::of_block(Codec::Cbor, data);
    if let Ok(dir) = Directory::decode(&id, data) {
        assert_eq!(dir.encode().expect("a decoded listing encodes"), data);
        for pair in dir.entries.windows(2) {
            assert!(pair[0].name.as_bytes() < pair[1].name.as_bytes(), "sorted, unique");
        }
        for e in &dir.entries {
            assert_eq!(name_problem(&e.name), None, "{:?}", e.name);
            assert!(!e.name.contains('/') && e.name != ".." && e.name != ".");
            assert_eq!(dir.find(&e.name), Some(e));
            assert_eq!(e.cid.codec(), Codec::Cbor);
        }
        assert!(dir.total_size().is_some());
    }
});
