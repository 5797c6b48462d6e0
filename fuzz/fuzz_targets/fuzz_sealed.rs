//! The sealed-stream opener on arbitrary bytes, twice: as a sealed stream (nearly always refused
//! by the AEAD), and as an inner stream sealed with a fixed key, so that the parser behind the
//! AEAD (header, frames, trailer, padding) sees arbitrary input. Never panics; whatever opens
//! seals again and opens to the same file. (Not byte-identical: a frame may carry a raw block
//! where brotli would be shorter, which the opener accepts, as the chunk reader does.)

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use warren_storage_mesh::{
    Codec, ContentId, FileKey, SealOptions,
    seal::{Opener, seal, seal_inner},
};

fn open(key: &FileKey, sealed: &[u8]) -> Option<(Vec<u8>, warren_storage_mesh::Opened)> {
    let cid = ContentId::of_block(Codec::Cbor, b"fuzz");
    let mut out = Vec::new();
    let mut opener = Opener::new(cid, key, sealed.len() as u64, &mut out).ok()?;
    opener.write_all(sealed).ok()?;
    let opened = opener.finish().ok()?;
    Some((out, opened))
}

fuzz_target!(|data: &[u8]| {
    let key = FileKey::from_bytes([7; 32]);
    let _ = open(&key, data);
    let Ok(sealed) = seal_inner(&key, data) else {
        return;
    };
    if let Some((plain, opened)) = open(&key, &sealed) {
        let opts = SealOptions {
            class: opened.class,
            name: opened.name,
            media_type: opened.media_type,
        };
        let mut again = Vec::new();
        seal(&key, &opts, plain.as_slice(), &mut again).expect("an opened file seals");
        let (plain2, opened2) = open(&key, &again).expect("a sealed file opens");
        assert!(plain2 == plain, "the plaintext changed");
        assert_eq!(opened2.class, opts.class);
        assert_eq!((opened2.name, opened2.media_type), (opts.name, opts.media_type));
    }
});
