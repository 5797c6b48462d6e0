//! `Manifest::decode` and `ContentId::from_bytes` on arbitrary bytes: never panic; whatever they
//! accept re-encodes to exactly the input (one encoding per value), and an accepted manifest
//! passes its own validation (and `validate_root` decides without panicking).
//!
//! Seed the corpus with the manifest vectors of `spec/storage.md` (`fuzz/seeds/fuzz_manifest/`),
//! so mutations start from well-formed manifests with valid content ids inside.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::{ContentId, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::decode(data) {
        let bytes = manifest.encode().expect("a decoded manifest encodes");
        assert_eq!(bytes, data, "accepted a non-canonical manifest");
        manifest.validate().expect("a decoded manifest is valid");
        let _ = manifest.validate_root();
        let (id, block) = manifest.to_block().expect("a decoded manifest has a block");
        assert_eq!(block, data);
        id.verify(data).expect("a block matches its own id");
    }
    if let Ok(id) = ContentId::from_bytes(data) {
        assert_eq!(id.to_bytes(), data, "accepted a non-canonical content id");
        let text = id.to_string();
        assert_eq!(text.parse::<ContentId>().expect("its text parses"), id);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = text.parse::<ContentId>()
    {
        assert_eq!(id.to_string().parse::<ContentId>().expect("re-parses"), id);
    }
});
