//! Chunk blocks (spec: `spec/storage.md`, "Chunk blocks"): one chunk of a file as stored.
//!
//! A block is a tag byte and a payload: [`TAG_RAW`] and the chunk itself, or [`TAG_BROTLI`] and
//! the chunk compressed with brotli at [`BROTLI_QUALITY`] and [`BROTLI_LGWIN`]. The compressed form
//! is stored only when it is shorter than the chunk. Compression is deterministic: the whole chunk
//! is handed to the encoder in one call with fixed parameters (size hint included), so the same
//! chunk always gives the same block and hence the same id.

use brotli::enc::{
    StandardAlloc,
    backward_references::BrotliEncoderMode,
    encode::{BrotliEncoderOperation, BrotliEncoderParameter, BrotliEncoderStateStruct},
};
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use warren_protocol::{CHUNK_SIZE, ContentId};

use crate::Error;

/// Tag of a block whose payload is the chunk itself.
pub const TAG_RAW: u8 = 0x00;
/// Tag of a block whose payload is the chunk compressed with brotli.
pub const TAG_BROTLI: u8 = 0x01;
/// Brotli quality (0–11). Chosen from the measurements in `spec/storage.md`.
pub const BROTLI_QUALITY: u32 = 5;
/// Brotli window, log2 bytes: a 1 MiB window, the size of a chunk.
pub const BROTLI_LGWIN: u32 = 20;
/// Longest block: a raw chunk and its tag.
pub const MAX_BLOCK_SIZE: usize = CHUNK_SIZE + 1;

/// Chunks shorter than this are always offered to brotli (the sample test below is skipped).
pub const SAMPLE_MIN_CHUNK: usize = 64 * 1024;
/// Windows the sample test reads from a chunk, evenly spread from its first byte to its last.
pub const SAMPLE_WINDOWS: usize = 8;
/// Bytes of each window.
pub const SAMPLE_WINDOW: usize = 4096;
/// Slots of the sample test's table of 4-byte words seen.
const SAMPLE_SLOTS: usize = 4096;

/// The sample test (spec/storage.md, "Incompressible chunks"): whether a chunk is stored raw
/// without trying brotli. Integer arithmetic on the chunk's bytes only, so every writer decides
/// alike. A chunk of at least [`SAMPLE_MIN_CHUNK`] bytes is incompressible when, over
/// [`SAMPLE_WINDOWS`] windows of [`SAMPLE_WINDOW`] bytes at offsets `k * (len - W) / (K - 1)`:
///
/// 1. its byte histogram is flat: `256 * sum(count²) < n * (n + 400)` for the `n` bytes sampled
///    (a chi-square statistic under 400, where random bytes give 255 ± 23 and any text thousands);
/// 2. and 4-byte words rarely repeat: of the little-endian words at every offset of each window,
///    fewer than 1 in 100 equal the last word stored in their slot `(w * 2654435761) >> 20 mod
///    4096` of a table shared by the windows.
pub fn looks_incompressible(chunk: &[u8]) -> bool {
    let len = chunk.len();
    if len < SAMPLE_MIN_CHUNK {
        return false;
    }
    let mut hist = [0u64; 256];
    let mut slots = vec![0u64; SAMPLE_SLOTS];
    let (mut words, mut repeats) = (0u64, 0u64);
    for k in 0..SAMPLE_WINDOWS {
        let at = k * (len - SAMPLE_WINDOW) / (SAMPLE_WINDOWS - 1);
        let window = &chunk[at..at + SAMPLE_WINDOW];
        for &b in window {
            hist[usize::from(b)] += 1;
        }
        for w in window.windows(4) {
            let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let slot = (word.wrapping_mul(2_654_435_761) >> 20) as usize % SAMPLE_SLOTS;
            let tagged = u64::from(word) | 1 << 32;
            if slots[slot] == tagged {
                repeats += 1;
            }
            slots[slot] = tagged;
            words += 1;
        }
    }
    let n = (SAMPLE_WINDOWS * SAMPLE_WINDOW) as u64;
    let sum_sq: u64 = hist.iter().map(|c| c * c).sum();
    256 * sum_sq < n * (n + 400) && repeats * 100 < words
}

/// Encodes one chunk (at most [`CHUNK_SIZE`] bytes) as a block: raw when the sample test finds
/// it incompressible, else brotli when that is shorter ([`brotli_block`]).
pub fn encode_block(chunk: &[u8]) -> Vec<u8> {
    if looks_incompressible(chunk) {
        return raw_block(chunk);
    }
    brotli_block(chunk)
}

/// Encodes one chunk with brotli when its output is shorter, raw otherwise, without the sample
/// test (the rule before it; the ingest bench's reference).
pub fn brotli_block(chunk: &[u8]) -> Vec<u8> {
    let mut block = vec![0u8; 1 + chunk.len()];
    match compress_into(chunk, &mut block[1..]) {
        Some(len) => {
            block[0] = TAG_BROTLI;
            block.truncate(1 + len);
        }
        None => {
            block[0] = TAG_RAW;
            block[1..].copy_from_slice(chunk);
        }
    }
    block
}

/// Stores one chunk uncompressed (for sealed data, which does not compress).
pub fn raw_block(chunk: &[u8]) -> Vec<u8> {
    let mut block = Vec::with_capacity(1 + chunk.len());
    block.push(TAG_RAW);
    block.extend_from_slice(chunk);
    block
}

/// Compresses `chunk` into `out` (as long as the chunk) and returns the compressed length, or
/// `None` when brotli's output is not shorter than the chunk.
fn compress_into(chunk: &[u8], out: &mut [u8]) -> Option<usize> {
    if chunk.is_empty() {
        return None;
    }
    let mut s = BrotliEncoderStateStruct::new(StandardAlloc::default());
    for (param, value) in [
        (BrotliEncoderParameter::BROTLI_PARAM_QUALITY, BROTLI_QUALITY),
        (BrotliEncoderParameter::BROTLI_PARAM_LGWIN, BROTLI_LGWIN),
        (
            BrotliEncoderParameter::BROTLI_PARAM_MODE,
            BrotliEncoderMode::BROTLI_MODE_GENERIC as u32,
        ),
        // Fixed here: left at 0, the encoder would guess it from how the input is fed.
        (
            BrotliEncoderParameter::BROTLI_PARAM_SIZE_HINT,
            chunk.len() as u32,
        ),
    ] {
        if !s.set_parameter(param, value) {
            return None;
        }
    }
    let (mut avail_in, mut in_off) = (chunk.len(), 0);
    // One byte less than the chunk: output that does not fit is not worth storing.
    let limit = chunk.len() - 1;
    let (mut avail_out, mut out_off) = (limit, 0);
    let mut total = None;
    while !s.is_finished() {
        let ok = s.compress_stream(
            BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
            &mut avail_in,
            chunk,
            &mut in_off,
            &mut avail_out,
            &mut out[..limit],
            &mut out_off,
            &mut total,
            &mut |_, _, _, _| (),
        );
        if !ok || (avail_out == 0 && !s.is_finished()) {
            return None;
        }
    }
    Some(out_off)
}

/// Checks a block encoded elsewhere before it is stored: it hashes to `cid` (codec raw), and is
/// a block [`encode_block`] or [`raw_block`] could have made of a chunk of `raw_len` bytes: a raw
/// payload of exactly `raw_len` bytes, or a brotli payload shorter than that (not decompressed
/// here: a reader checks it against `raw_len` as for any block).
pub fn check_encoded(cid: &ContentId, block: &[u8], raw_len: u64) -> Result<(), Error> {
    let corrupt = |reason: String| Error::Corrupt { cid: *cid, reason };
    if ContentId::of_block(warren_protocol::Codec::Raw, block) != *cid {
        return Err(corrupt("the block does not hash to its id".into()));
    }
    if raw_len == 0 || raw_len > CHUNK_SIZE as u64 {
        return Err(corrupt(format!(
            "a chunk of {raw_len} bytes (1 to {CHUNK_SIZE})"
        )));
    }
    match block.split_first() {
        Some((&TAG_RAW, payload)) if payload.len() as u64 == raw_len => Ok(()),
        Some((&TAG_BROTLI, payload)) if !payload.is_empty() && (payload.len() as u64) < raw_len => {
            Ok(())
        }
        Some((tag, payload)) => Err(corrupt(format!(
            "tag {tag:#04x} with a payload of {} bytes for a chunk of {raw_len}",
            payload.len()
        ))),
        None => Err(corrupt("empty block (no tag byte)".into())),
    }
}

/// Decodes a block (already verified against `cid`) into the chunk of `raw_len` bytes its
/// manifest entry promises, appending it to `out`. Errors name `cid`.
pub fn decode_block(
    cid: &ContentId,
    block: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let corrupt = |reason: String| Error::Corrupt { cid: *cid, reason };
    let Some((&tag, payload)) = block.split_first() else {
        return Err(corrupt("empty block (no tag byte)".into()));
    };
    if raw_len > CHUNK_SIZE {
        return Err(corrupt(format!(
            "a chunk of {raw_len} bytes is longer than {CHUNK_SIZE}"
        )));
    }
    match tag {
        TAG_RAW if payload.len() == raw_len => {
            out.extend_from_slice(payload);
            Ok(())
        }
        TAG_RAW => Err(corrupt(format!(
            "raw payload is {} bytes, the manifest says {raw_len}",
            payload.len()
        ))),
        TAG_BROTLI => {
            let start = out.len();
            out.resize(start + raw_len, 0);
            let result = decompress_exact(payload, &mut out[start..]);
            if result.is_err() {
                out.truncate(start);
            }
            result.map_err(|reason| corrupt(format!("brotli payload: {reason}")))
        }
        other => Err(corrupt(format!("unknown tag byte {other:#04x}"))),
    }
}

/// Decompresses `payload` into exactly `out.len()` bytes; refuses shorter or longer output, and
/// a stream with a window larger than 16 MiB (brotli's large-window extension).
fn decompress_exact(payload: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut state = BrotliState::new(
        StandardAlloc::default(),
        StandardAlloc::default(),
        StandardAlloc::default(),
    );
    state.large_window = false;
    let (mut avail_in, mut in_off) = (payload.len(), 0);
    let (mut avail_out, mut out_off, mut total) = (out.len(), 0, 0);
    let result = BrotliDecompressStream(
        &mut avail_in,
        &mut in_off,
        payload,
        &mut avail_out,
        &mut out_off,
        out,
        &mut total,
        &mut state,
    );
    match result {
        BrotliResult::ResultSuccess if out_off == out.len() && avail_in == 0 => Ok(()),
        BrotliResult::ResultSuccess if avail_in != 0 => {
            Err(format!("{avail_in} bytes after the end of the stream"))
        }
        BrotliResult::ResultSuccess => Err(format!(
            "decompresses to {out_off} bytes, the manifest says {}",
            out.len()
        )),
        BrotliResult::NeedsMoreOutput => Err(format!(
            "decompresses to more than the {} bytes the manifest says",
            out.len()
        )),
        BrotliResult::NeedsMoreInput => Err("truncated stream".into()),
        BrotliResult::ResultFailure => Err("invalid stream".into()),
    }
}

#[cfg(test)]
mod tests {
    use warren_protocol::Codec;

    use super::*;
    use crate::testdata::{random_chunk, text_chunk};

    fn round_trip(chunk: &[u8]) -> Vec<u8> {
        let block = encode_block(chunk);
        let cid = ContentId::of_block(Codec::Raw, &block);
        let mut out = vec![0xaa];
        decode_block(&cid, &block, chunk.len(), &mut out).unwrap();
        assert_eq!(out[0], 0xaa, "appends");
        assert_eq!(&out[1..], chunk);
        block
    }

    #[test]
    fn random_data_is_stored_raw() {
        let chunk = random_chunk(1, CHUNK_SIZE);
        let block = round_trip(&chunk);
        assert_eq!(block[0], TAG_RAW);
        assert_eq!(block.len(), CHUNK_SIZE + 1);
    }

    #[test]
    fn the_sample_test_sends_random_chunks_raw_and_the_rest_to_brotli() {
        for seed in 0..8 {
            let random = random_chunk(seed, CHUNK_SIZE);
            assert!(looks_incompressible(&random), "random chunk {seed}");
            assert!(looks_incompressible(&random[..SAMPLE_MIN_CHUNK]));
            assert!(!looks_incompressible(&text_chunk(seed, CHUNK_SIZE)));
        }
        // Below the threshold, brotli always gets its try (and declines on random bytes).
        let short = random_chunk(3, SAMPLE_MIN_CHUNK - 1);
        assert!(!looks_incompressible(&short));
        assert_eq!(encode_block(&short)[0], TAG_RAW);
        // A flat histogram alone is not enough: a random 4 KiB block repeated compresses.
        let tile = random_chunk(5, 4096);
        let tiled: Vec<u8> = tile.iter().copied().cycle().take(CHUNK_SIZE).collect();
        assert!(!looks_incompressible(&tiled));
        assert_eq!(round_trip(&tiled)[0], TAG_BROTLI);
        // Nor few repeats alone: random bytes over half the alphabet compress.
        let half: Vec<u8> = random_chunk(6, CHUNK_SIZE)
            .iter()
            .map(|b| b & 0x7f)
            .collect();
        assert!(!looks_incompressible(&half));
        assert_eq!(round_trip(&half)[0], TAG_BROTLI);
        // Random but for one compressible stretch the windows miss: raw, and still equal
        // everywhere (the decision reads only the sampled bytes).
        let mut mostly = random_chunk(7, CHUNK_SIZE);
        mostly[310_000..440_000].fill(0);
        assert!(looks_incompressible(&mostly));
        assert_eq!(encode_block(&mostly), raw_block(&mostly));
    }

    #[test]
    fn text_is_stored_compressed() {
        let chunk = text_chunk(1, CHUNK_SIZE);
        let block = round_trip(&chunk);
        assert_eq!(block[0], TAG_BROTLI);
        assert!(block.len() < CHUNK_SIZE / 3, "{}", block.len());
    }

    #[test]
    fn tiny_chunks_are_stored_raw() {
        for chunk in [&b"x"[..], b"hello\n", &[0; 8]] {
            let block = round_trip(chunk);
            assert_eq!(block[0], TAG_RAW, "{chunk:?}");
        }
        assert_eq!(encode_block(b""), vec![TAG_RAW]);
    }

    #[test]
    fn zeros_compress_to_a_few_bytes() {
        let block = round_trip(&vec![0; CHUNK_SIZE]);
        assert_eq!(block[0], TAG_BROTLI);
        assert!(block.len() < 64, "{}", block.len());
    }

    #[test]
    fn compression_is_deterministic() {
        let chunk = text_chunk(7, CHUNK_SIZE - 3);
        let first = encode_block(&chunk);
        for _ in 0..3 {
            assert_eq!(encode_block(&chunk), first);
        }
        // The same bytes at another address and capacity give the same block.
        let mut copy = Vec::with_capacity(3 * CHUNK_SIZE);
        copy.extend_from_slice(&chunk);
        assert_eq!(encode_block(&copy), first);
    }

    #[test]
    fn decode_checks_lengths_and_tags() {
        let cid = ContentId::of_block(Codec::Raw, b"x");
        let mut out = Vec::new();
        let text = text_chunk(3, 4096);
        let block = encode_block(&text);
        assert_eq!(block[0], TAG_BROTLI);
        let cases: Vec<(Vec<u8>, usize, &str)> = vec![
            (vec![], 0, "empty block"),
            (vec![0x02, 1, 2], 2, "unknown tag byte 0x02"),
            (vec![TAG_RAW, 1, 2], 3, "raw payload is 2 bytes"),
            (block.clone(), 4095, "more than the 4095 bytes"),
            (block.clone(), 4097, "decompresses to 4096 bytes"),
            (block[..block.len() - 4].to_vec(), 4096, "truncated"),
            ([&block[..], &[0]].concat(), 4096, "after the end"),
            (vec![TAG_BROTLI, 0xff, 0xff, 0xff], 10, "invalid stream"),
            (vec![TAG_RAW; 3], CHUNK_SIZE + 1, "longer than"),
        ];
        for (block, raw_len, expect) in cases {
            let err = decode_block(&cid, &block, raw_len, &mut out).unwrap_err();
            assert!(err.to_string().contains(expect), "{expect}: {err}");
            assert!(err.to_string().contains(&cid.to_string()), "{err}");
            assert!(out.is_empty(), "nothing written on error");
        }
    }

    #[test]
    fn large_window_streams_are_refused() {
        // A valid brotli stream using the large-window extension (here a 32 MiB window): its
        // decoder would need far more memory than a chunk, so it is refused outright.
        let text = text_chunk(5, 4096);
        let mut s = BrotliEncoderStateStruct::new(StandardAlloc::default());
        assert!(s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LARGE_WINDOW, 1));
        assert!(s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, 25));
        let mut payload = vec![0; 8192];
        let (mut ai, mut io, mut ao, mut oo, mut t) = (text.len(), 0, payload.len(), 0, None);
        while !s.is_finished() {
            assert!(s.compress_stream(
                BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
                &mut ai,
                &text,
                &mut io,
                &mut ao,
                &mut payload,
                &mut oo,
                &mut t,
                &mut |_, _, _, _| (),
            ));
        }
        let block = [&[TAG_BROTLI][..], &payload[..oo]].concat();
        let cid = ContentId::of_block(Codec::Raw, &block);
        let err = decode_block(&cid, &block, text.len(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("invalid stream"), "{err}");
    }

    /// The id of a block is its bao root: a holder can prove any slice of the block against the
    /// id alone (and the block's length, which the manifest records), with an outboard computed
    /// from the block when asked.
    #[test]
    fn bao_root_of_a_block_is_its_id() {
        use bao_tree::{
            BaoTree, BlockSize, ByteRanges,
            io::{
                BaoContentItem,
                outboard::PreOrderMemOutboard,
                round_up_to_chunks,
                sync::{DecodeResponseIter, encode_ranges_validated},
            },
        };

        let block = encode_block(&random_chunk(9, CHUNK_SIZE));
        let cid = ContentId::of_block(Codec::Raw, &block);
        for chunk_log in [0, 4] {
            let outboard =
                PreOrderMemOutboard::create(&block, BlockSize::from_chunk_log(chunk_log));
            assert_eq!(
                outboard.root.as_bytes(),
                &cid.hash(),
                "chunk groups of 2^{chunk_log} KiB"
            );
        }

        // The holder answers a challenge for bytes 300000..300030 of the block.
        let size = BlockSize::from_chunk_log(0);
        let outboard = PreOrderMemOutboard::create(&block, size);
        let ranges = round_up_to_chunks(&ByteRanges::from(300_000..300_030));
        let mut proof = Vec::new();
        encode_ranges_validated(&block[..], &outboard, &ranges, &mut proof).unwrap();
        assert_eq!(
            proof.len(),
            11 * 64 + 1024,
            "11 hash pairs and one 1 KiB chunk"
        );

        // The challenger knows only the id and the block's length.
        let verify = |proof: &[u8]| -> Result<Vec<u8>, String> {
            let root = bao_tree::blake3::Hash::from(cid.hash());
            let tree = BaoTree::new(block.len() as u64, size);
            let mut leaves = Vec::new();
            for item in DecodeResponseIter::new(root, tree, proof, &ranges) {
                if let BaoContentItem::Leaf(leaf) = item.map_err(|e| e.to_string())? {
                    assert_eq!(leaf.offset, 299_008, "the 1 KiB chunk holding byte 300000");
                    leaves.extend_from_slice(&leaf.data);
                }
            }
            Ok(leaves)
        };
        assert_eq!(verify(&proof).unwrap(), &block[299_008..300_032]);
        let mut forged = proof.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(verify(&forged).is_err(), "a forged slice is refused");
    }
}
