//! `PieceManifest::decode` on arbitrary bytes (spec/storage.md, "Piece manifest"): never panics;
//! whatever it accepts re-encodes to exactly the input (one encoding per value), has a root
//! manifest first and exactly the pieces its stripes need, and the stripe helpers on it
//! (`stripes`, `stripe_pieces`, `stripe_key`, `check_piece`) stay in bounds.
//!
//! Seed the corpus with the vector of `spec/storage.md` (`fuzz/seeds/fuzz_piece_manifest/`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_storage_mesh::pieces::PieceManifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = PieceManifest::decode(data) {
        assert_eq!(m.encode_bytes(), data, "accepted a non-canonical piece manifest");
        assert!(m.root().is_some());
        let stripes = m.stripes();
        assert_eq!(m.pieces.len(), stripes.len() * m.code.pieces());
        for (s, span) in stripes.iter().enumerate().take(4) {
            assert_eq!(m.stripe_pieces(s).len(), m.code.pieces());
            let _ = m.stripe_key(s);
            assert!(m.check_piece(s, 0, &vec![0u8; span.piece_size]).is_err() || span.piece_size > 0);
        }
        assert!(m.check_piece(stripes.len(), 0, &[]).is_err());
    }
});
