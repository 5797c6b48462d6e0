use proptest::prelude::*;
use warren_protocol::{Codec, ContentId};

use super::*;

/// Blocks for a stream: a "manifest" (cbor) then chunk blocks (raw), from deterministic bytes.
fn blocks(lens: &[usize], seed: u8) -> Vec<(ContentId, Vec<u8>)> {
    lens.iter()
        .enumerate()
        .map(|(b, &len)| {
            let bytes: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ b as u8))
                .collect();
            let codec = if b == 0 { Codec::Cbor } else { Codec::Raw };
            (ContentId::of_block(codec, &bytes), bytes)
        })
        .collect()
}

fn encode_all(
    code: PieceCode,
    blocks: &[(ContentId, Vec<u8>)],
) -> (PieceManifest, Vec<Vec<Vec<u8>>>) {
    let mut stripes: Vec<Vec<Vec<u8>>> = Vec::new();
    let m = PieceManifest::encode(code, blocks.iter().cloned().map(Ok), |s, i, p| {
        if stripes.len() == s {
            stripes.push(Vec::new());
        }
        assert_eq!(stripes[s].len(), i);
        stripes[s].push(p);
        Ok(())
    })
    .expect("encode");
    (m, stripes)
}

/// Rebuilds every block from the pieces at `pick(stripe)` of each stripe.
fn rebuild_all(
    m: &PieceManifest,
    stripes: &[Vec<Vec<u8>>],
    pick: impl Fn(usize) -> Vec<usize>,
) -> Result<Vec<(ContentId, Vec<u8>)>, Error> {
    let mut cutter = m.cutter();
    let mut out = Vec::new();
    for (s, pieces) in stripes.iter().enumerate() {
        let got: Vec<(usize, Vec<u8>)> = pick(s)
            .into_iter()
            .map(|i| (i, pieces[i].clone()))
            .collect();
        out.extend(cutter.push(&m.rebuild_stripe(s, &got)?)?);
    }
    assert!(cutter.done());
    Ok(out)
}

const SMALL: PieceCode = PieceCode {
    data: 4,
    parity: 2,
    piece_size: 64,
};

/// The vectors of spec/storage.md, "Piece manifest".
#[test]
fn spec_vectors() {
    let b = blocks(&[40, 300, 100], 7);
    let (m, stripes) = encode_all(SMALL, &b);
    // 440 bytes: one full stripe of 4 × 64 and a last one of 184 bytes in 4 pieces of 64.
    assert_eq!(
        m.stripes(),
        vec![
            StripeSpan {
                offset: 0,
                len: 256,
                piece_size: 64
            },
            StripeSpan {
                offset: 256,
                len: 184,
                piece_size: 64
            },
        ]
    );
    assert_eq!(stripes.len(), 2);
    let bytes = m.encode_bytes();
    assert_eq!(bytes.len(), 14 + 3 * 37 + 12 * 32);
    assert_eq!(
        hex::encode(&bytes[..14]),
        "57504d31040200000040".to_owned() + "00000003"
    );
    assert_eq!(
        m.id().to_string(),
        "bafkr4ibbftgygoenghiips7kjfmuxs67o6wpkxbxileen4qwrib2qdyoji"
    );
    assert_eq!(
        hex::encode(m.pieces[0]),
        "fa319876e07d13d480470aeaf94c74290c10dc4631e6567b5a999cd57a6d6fed"
    );
    assert_eq!(
        hex::encode(m.pieces[5]),
        "947df1fd9f1f086554ddd54ecbe14f99af9e5bb4ad1b769b7ef23b7bb369d9af"
    );
    assert_eq!(
        hex::encode(m.stripe_key(0)),
        "10ee7cfe14b4b2f4522b0060ec23d922a6e230b9a47b40ce6bb285a13f35ef7d"
    );
    let page = include_str!("../../../spec/storage.md");
    let vectors = warren_protocol::spec_text::extract_vectors(page).expect("vectors");
    let v = vectors
        .iter()
        .find(|v| v.name == "piece-manifest-4-2")
        .expect("spec/storage.md has the piece-manifest-4-2 vector");
    assert_eq!(v.bytes, bytes, "spec/storage.md, Pieces");
    assert_eq!(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/seeds/fuzz_piece_manifest/piece-manifest-4-2"
        ))
        .expect("the fuzz seed"),
        bytes
    );
    assert_eq!(PieceManifest::decode(&bytes).expect("decode"), m);
}

#[test]
fn the_default_code_is_12_plus_24_below_18() {
    let code = PieceCode::default();
    code.check().expect("valid");
    let p = code.policy();
    assert!(p.is_valid());
    assert_eq!((p.data, p.parity, p.repair_at), (12, 24, DEFAULT_REPAIR_AT));
    assert_eq!(p.expansion(), 3.0);
    // A 64 MiB stream: five full stripes of 12 MiB and one of 4 MiB.
    let s = code.stripes(64 << 20);
    assert_eq!(s.len(), 6);
    assert_eq!(s[5].len, 4 << 20);
    assert_eq!(
        s[5].piece_size,
        (4usize << 20).div_ceil(12).div_ceil(64) * 64
    );
}

#[test]
fn codes_parse_from_k_plus_m() {
    assert_eq!(PieceCode::parse("").expect("default"), PieceCode::default());
    let c = PieceCode::parse(" 4+6 ").expect("4+6");
    assert_eq!((c.data, c.parity, c.piece_size), (4, 6, DEFAULT_PIECE_SIZE));
    for bad in ["4", "4+", "a+b", "0+4", "4+0", "65+1", "-1+3", "4+300"] {
        assert!(PieceCode::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_corrupt_piece_is_caught_by_its_id() {
    let b = blocks(&[50, 700], 1);
    let (m, mut stripes) = encode_all(SMALL, &b);
    stripes[0][5][3] ^= 1;
    let err = rebuild_all(&m, &stripes, |_| vec![0, 1, 2, 5]).expect_err("corrupt");
    let id = m.stripe_pieces(0)[5];
    assert!(
        matches!(err, Error::Corrupt { cid, .. } if cid == id),
        "{err}"
    );
    // The other four still rebuild it.
    assert_eq!(
        rebuild_all(&m, &stripes, |_| vec![0, 1, 3, 4]).expect("rebuild"),
        b
    );
    // A piece of the wrong length, or one too few, is refused too.
    let short = vec![(0, vec![0u8; 10])];
    assert!(m.rebuild_stripe(0, &short).is_err());
    let three: Vec<(usize, Vec<u8>)> = (1..4).map(|i| (i, stripes[0][i].clone())).collect();
    assert!(matches!(
        m.rebuild_stripe(0, &three),
        Err(Error::Pieces { .. })
    ));
}

#[test]
fn a_block_that_does_not_hash_to_its_id_is_refused() {
    let mut b = blocks(&[50, 70], 1);
    b[1].1[0] ^= 1;
    let r = PieceManifest::encode(SMALL, b.into_iter().map(Ok), |_, _, _| Ok(()));
    assert!(matches!(r, Err(Error::Corrupt { .. })));
    // A file's first block is its root manifest.
    let b = blocks(&[50, 70], 1);
    let r = PieceManifest::encode(SMALL, b.into_iter().skip(1).map(Ok), |_, _, _| Ok(()));
    assert!(matches!(r, Err(Error::NotAFile { .. })));
}

#[test]
fn repair_rebuilds_exactly_the_missing_pieces() {
    let b = blocks(&[100, 900], 3);
    let (m, stripes) = encode_all(SMALL, &b);
    for (s, pieces) in stripes.iter().enumerate() {
        let got: Vec<(usize, Vec<u8>)> = [1, 3, 4, 5]
            .iter()
            .map(|&i| (i, pieces[i].clone()))
            .collect();
        let rebuilt = m.rebuild_pieces(s, &got, &[0, 2]).expect("rebuild");
        assert_eq!(
            rebuilt,
            vec![(0, pieces[0].clone()), (2, pieces[2].clone())]
        );
    }
}

#[test]
fn decode_refuses_what_breaks_a_rule() {
    let b = blocks(&[40, 300], 2);
    let (m, _) = encode_all(SMALL, &b);
    let good = m.encode_bytes();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("empty", Vec::new()));
    cases.push(("truncated", good[..good.len() - 1].to_vec()));
    let mut long = good.clone();
    long.push(0);
    cases.push(("trailing byte", long));
    let mut magic = good.clone();
    magic[3] = b'2';
    cases.push(("magic", magic));
    let mut k = good.clone();
    k[4] = 0;
    cases.push(("zero data pieces", k));
    let mut size = good.clone();
    size[9] = 65;
    cases.push(("unaligned piece size", size));
    let mut first = good.clone();
    first[14] = 0;
    cases.push(("raw first block", first));
    let mut codec = good.clone();
    codec[14 + 37] = 9;
    cases.push(("codec byte", codec));
    let mut count = good.clone();
    count[10] = 0xff;
    cases.push(("block count", count));
    cases.push(("too large", vec![0u8; MAX_PIECE_MANIFEST + 1]));
    for (what, bytes) in cases {
        assert!(
            matches!(PieceManifest::decode(&bytes), Err(Error::Pieces { .. })),
            "{what}"
        );
    }
    assert!(PieceManifest::is_piece_manifest(&good));
    assert!(!PieceManifest::is_piece_manifest(&b[1].1));
}

fn code_strategy() -> impl Strategy<Value = PieceCode> {
    (1u8..=8, 1u8..=8, 1u32..=8).prop_map(|(data, parity, units)| PieceCode {
        data,
        parity,
        piece_size: units * PIECE_ALIGN,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any `data` of the `data + parity` pieces rebuild every stripe, and the blocks come back
    /// byte for byte; encoding is deterministic and the manifest round-trips.
    #[test]
    fn any_k_pieces_rebuild_the_file(
        code in code_strategy(),
        lens in prop::collection::vec(1usize..3000, 1..6),
        seed in any::<u8>(),
        choice in any::<u64>(),
    ) {
        let b = blocks(&lens, seed);
        let (m, stripes) = encode_all(code, &b);
        let (m2, stripes2) = encode_all(code, &b);
        prop_assert_eq!(&m, &m2);
        prop_assert_eq!(&stripes, &stripes2);
        prop_assert_eq!(PieceManifest::decode(&m.encode_bytes()).expect("decode"), m.clone());
        let n = code.pieces();
        let k = usize::from(code.data);
        let pick = |s: usize| {
            // A shuffled prefix of k indices, different per stripe.
            let mut idx: Vec<usize> = (0..n).collect();
            let mut x = choice ^ (s as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for i in (1..n).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                idx.swap(i, (x >> 33) as usize % (i + 1));
            }
            idx.truncate(k);
            idx
        };
        prop_assert_eq!(rebuild_all(&m, &stripes, pick).expect("rebuild"), b);
    }

    /// The decoder never panics, and what it accepts re-encodes to the same bytes.
    #[test]
    fn decode_is_total_and_canonical(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        for b in [bytes, with_magic] {
            if let Ok(m) = PieceManifest::decode(&b) {
                prop_assert_eq!(m.encode_bytes(), b);
            }
        }
    }
}

#[test]
fn pieces_go_to_distinct_close_peers_and_wrap_only_when_short() {
    use crate::placement::{Candidate, rank};
    use warren_protocol::{PeerId, Tier};
    let peers: Vec<PeerId> = (0..40u8)
        .map(|i| {
            let mut digest = vec![0x00, 0x20];
            digest.extend_from_slice(&[i; 32]);
            PeerId::from_bytes(&digest).expect("identity peer id")
        })
        .collect();
    let cands: Vec<Candidate> = peers
        .iter()
        .map(|p| Candidate {
            peer: *p,
            tier: Tier::Cold,
            bytes_free: 1 << 30,
            score: None,
            group: None,
        })
        .collect();
    let key = [7u8; 32];
    let placed = place_pieces(&key, &cands, 36, 1 << 20, &[]);
    assert_eq!(placed.len(), 36);
    let mut distinct = placed.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 36, "36 pieces on 36 distinct peers");
    // The closest 36 of the 40.
    let closest: Vec<PeerId> = rank(&key, &peers).into_iter().take(36).collect();
    for p in &placed {
        assert!(closest.contains(p));
    }
    // Deterministic, and an excluded peer gets nothing.
    assert_eq!(place_pieces(&key, &cands, 36, 1 << 20, &[]), placed);
    assert!(!place_pieces(&key, &cands, 8, 1 << 20, &[placed[0]]).contains(&placed[0]));
    // Five peers for eight pieces: each of them, then round again.
    let few = place_pieces(&key, &cands[..5], 8, 1 << 20, &[]);
    assert_eq!(few.len(), 8);
    assert_eq!(few[5], few[0]);
    assert!(place_pieces(&key, &[], 8, 1, &[]).is_empty());
}
