//! Erasure-coded pieces (spec: `spec/storage.md`, "Pieces"): a file kept as Reed-Solomon stripes
//! instead of whole copies.
//!
//! The blocks of a file (its manifests and chunk blocks, in [`Store::dag`](crate::Store::dag)
//! order, each once) are concatenated into one byte stream. The stream is cut into stripes of
//! `data × piece_size` bytes (the last one shorter); each stripe is zero-padded to `data` equal
//! data pieces and encoded with Reed-Solomon (`reed-solomon-simd`, GF(2¹⁶), the Leopard
//! construction) into `parity` more pieces, any `data` of which rebuild the stripe. Every piece is
//! a raw block with its own BLAKE3 id. A [`PieceManifest`] lists the code, the file's blocks
//! (to cut the stream back into blocks, each checked against its id) and every piece id; it is
//! itself a raw block whose first byte (`W`) no chunk block starts with. Everything is a pure
//! function of the file's blocks and the three numbers: equal files give equal pieces and equal
//! manifests.
//!
//! No I/O here: the node reads the blocks, places the pieces and fetches them back.

use warren_protocol::{Codec, ContentId};

use crate::Error;
use crate::chunk::MAX_BLOCK_SIZE;
use crate::placement::{Candidate, MAX_RF, PlacementPolicy, place};
use crate::stripe::StripePolicy;
use warren_protocol::PeerId;

/// First bytes of an encoded [`PieceManifest`], version 1 (`WPM1`). A chunk block starts with
/// its tag (0x00 or 0x01), so no chunk block is mistaken for a piece manifest.
pub const MAGIC: [u8; 4] = *b"WPM1";
/// Default data pieces per stripe (`k`): any 12 pieces rebuild a stripe.
pub const DEFAULT_DATA: u8 = 12;
/// Default parity pieces per stripe (`m`): 36 pieces, 3× the file's bytes.
pub const DEFAULT_PARITY: u8 = 24;
/// Default bytes per piece of a full stripe (a stripe covers 12 MiB of blocks by default).
pub const DEFAULT_PIECE_SIZE: u32 = 1 << 20;
/// Default repair threshold: rebuild when fewer than `k + m/4` pieces count (18 of 36).
pub const DEFAULT_REPAIR_AT: usize = 18;
/// Default time a piece's holder may be offline and still count: a day.
pub const DEFAULT_LAZY_MS: u64 = 24 * 3_600_000;
/// Most data pieces per stripe.
pub const MAX_DATA: u8 = 64;
/// Most parity pieces per stripe.
pub const MAX_PARITY: u8 = 64;
/// Piece sizes are multiples of this (the SIMD kernels' unit; `reed-solomon-simd` needs even).
pub const PIECE_ALIGN: u32 = 64;
/// Largest piece: a chunk's size, so that a piece travels as one block.
pub const MAX_PIECE_SIZE: u32 = 1 << 20;
/// Largest encoded piece manifest (checked before decoding): it travels and is stored as one
/// block.
pub const MAX_PIECE_MANIFEST: usize = MAX_BLOCK_SIZE;
/// Bytes of the fixed header: magic, data, parity, piece size, block count.
const HEADER: usize = 4 + 1 + 1 + 4 + 4;
/// Bytes of one block entry: codec (0 raw, 1 cbor), hash, stored length.
const BLOCK_ENTRY: usize = 1 + 32 + 4;

/// The code of a file kept as pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceCode {
    /// Data pieces per stripe (`k`).
    pub data: u8,
    /// Parity pieces per stripe (`m`).
    pub parity: u8,
    /// Bytes per piece of a full stripe.
    pub piece_size: u32,
}

impl Default for PieceCode {
    fn default() -> Self {
        PieceCode {
            data: DEFAULT_DATA,
            parity: DEFAULT_PARITY,
            piece_size: DEFAULT_PIECE_SIZE,
        }
    }
}

impl PieceCode {
    /// Reads `K+M` (e.g. `4+4`) with the default piece size; an empty text is the default
    /// code. Errors are sentences for the user.
    pub fn parse(text: &str) -> Result<PieceCode, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(PieceCode::default());
        }
        let bad = || format!("pieces `{text}`: expected K+M, e.g. 12+24 (K data, M parity)");
        let (k, m) = text.split_once('+').ok_or_else(bad)?;
        let code = PieceCode {
            data: k.trim().parse().map_err(|_| bad())?,
            parity: m.trim().parse().map_err(|_| bad())?,
            piece_size: DEFAULT_PIECE_SIZE,
        };
        code.check().map_err(|e| format!("pieces `{text}`: {e}"))?;
        Ok(code)
    }

    /// Pieces per stripe.
    pub fn pieces(&self) -> usize {
        usize::from(self.data) + usize::from(self.parity)
    }

    /// Checks the numbers: 1..=[`MAX_DATA`] data, 1..=[`MAX_PARITY`] parity, a piece size that
    /// is a multiple of [`PIECE_ALIGN`] up to [`MAX_PIECE_SIZE`].
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_DATA).contains(&self.data) {
            return Err(format!("{} data pieces (1 to {MAX_DATA})", self.data));
        }
        if !(1..=MAX_PARITY).contains(&self.parity) {
            return Err(format!("{} parity pieces (1 to {MAX_PARITY})", self.parity));
        }
        if self.piece_size == 0
            || self.piece_size > MAX_PIECE_SIZE
            || !self.piece_size.is_multiple_of(PIECE_ALIGN)
        {
            return Err(format!(
                "a piece size of {} bytes (a multiple of {PIECE_ALIGN} up to {MAX_PIECE_SIZE})",
                self.piece_size
            ));
        }
        Ok(())
    }

    /// The repair policy of this code: rebuild below `k + m/4` pieces that count, a holder
    /// offline for less than [`DEFAULT_LAZY_MS`] still counts.
    pub fn policy(&self) -> StripePolicy {
        let (k, m) = (usize::from(self.data), usize::from(self.parity));
        StripePolicy {
            data: k,
            parity: m,
            repair_at: k + m.div_ceil(4),
            lazy_ms: DEFAULT_LAZY_MS,
        }
    }

    /// The stripes of a stream of `len` bytes: `(offset, bytes, piece size)` each, in order.
    /// Full stripes cover `data × piece_size` bytes; the last one's pieces are the shortest
    /// multiple of [`PIECE_ALIGN`] that holds its bytes in `data` pieces.
    pub fn stripes(&self, len: u64) -> Vec<StripeSpan> {
        let full = u64::from(self.data) * u64::from(self.piece_size);
        let mut out = Vec::new();
        let mut offset = 0u64;
        while offset < len {
            let bytes = (len - offset).min(full);
            let per = bytes.div_ceil(u64::from(self.data));
            let piece_size = per.div_ceil(u64::from(PIECE_ALIGN)) * u64::from(PIECE_ALIGN);
            out.push(StripeSpan {
                offset,
                len: bytes as usize,
                piece_size: piece_size as usize,
            });
            offset += bytes;
        }
        out
    }

    /// Encodes one stripe's bytes (at most `data × piece_size`) into its `data + parity` pieces
    /// of `piece_size` bytes (`piece_size` from [`stripes`](Self::stripes)).
    pub fn encode_stripe(&self, bytes: &[u8], piece_size: usize) -> Result<Vec<Vec<u8>>, Error> {
        let k = usize::from(self.data);
        if bytes.len() > k * piece_size || piece_size == 0 || !piece_size.is_multiple_of(2) {
            return Err(Error::Pieces {
                cid: None,
                reason: format!(
                    "a stripe of {} bytes does not fit {k} pieces of {piece_size}",
                    bytes.len()
                ),
            });
        }
        let mut pieces: Vec<Vec<u8>> = (0..k)
            .map(|i| {
                let start = (i * piece_size).min(bytes.len());
                let end = ((i + 1) * piece_size).min(bytes.len());
                let mut p = bytes[start..end].to_vec();
                p.resize(piece_size, 0);
                p
            })
            .collect();
        let parity = reed_solomon_simd::encode(k, usize::from(self.parity), &pieces)
            .map_err(|e| rs_error(None, e))?;
        pieces.extend(parity);
        Ok(pieces)
    }

    /// Rebuilds a stripe of `len` bytes from at least `data` of its pieces, given as (index,
    /// bytes of `piece_size`). The pieces must already be checked against their ids
    /// ([`PieceManifest::check_piece`]).
    pub fn decode_stripe(
        &self,
        pieces: &[(usize, &[u8])],
        piece_size: usize,
        len: usize,
    ) -> Result<Vec<u8>, Error> {
        let k = usize::from(self.data);
        let total = self.pieces();
        let mut originals: Vec<Option<&[u8]>> = vec![None; k];
        let mut recovery = Vec::new();
        for &(i, p) in pieces {
            if i >= total || p.len() != piece_size {
                return Err(Error::Pieces {
                    cid: None,
                    reason: format!(
                        "piece {i} of {} bytes for a stripe of {total} pieces of {piece_size}",
                        p.len()
                    ),
                });
            }
            if i < k {
                originals[i] = Some(p);
            } else if !recovery.iter().any(|&(j, _)| j == i - k) {
                recovery.push((i - k, p));
            }
        }
        let have = originals.iter().flatten().count();
        if have < k {
            let restored = reed_solomon_simd::decode(
                k,
                usize::from(self.parity),
                originals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.map(|p| (i, p))),
                recovery.iter().take(k - have).copied(),
            )
            .map_err(|e| rs_error(None, e))?;
            let mut out = Vec::with_capacity(k * piece_size);
            for (i, p) in originals.iter().enumerate() {
                match p {
                    Some(p) => out.extend_from_slice(p),
                    None => match restored.get(&i) {
                        Some(r) => out.extend_from_slice(r),
                        None => return Err(missing(have, k)),
                    },
                }
            }
            out.truncate(len);
            return Ok(out);
        }
        let mut out = Vec::with_capacity(k * piece_size);
        for p in originals.iter().flatten() {
            out.extend_from_slice(p);
        }
        out.truncate(len);
        Ok(out)
    }
}

fn missing(have: usize, k: usize) -> Error {
    Error::Pieces {
        cid: None,
        reason: format!("{have} distinct pieces, {k} needed"),
    }
}

fn rs_error(cid: Option<ContentId>, e: reed_solomon_simd::Error) -> Error {
    Error::Pieces {
        cid,
        reason: format!("Reed-Solomon: {e}"),
    }
}

/// The stripe key of a stripe whose pieces have these hashes, in index order
/// ([`PieceManifest::stripe_key`]).
pub fn stripe_key_of<'a>(hashes: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"warren stripe v1");
    for p in hashes {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// The holders of a stripe's `n` pieces: the peers closest to its `key` as [`place`] picks them
/// (capacity, reputation floor, one piece per network group while another group has room),
/// piece `i` on the `i`-th. [`place`] picks at most [`MAX_RF`] at a time, so a wider stripe
/// takes the next closest in further rounds. Distinct peers while there are enough; with fewer
/// eligible peers than pieces, the list starts over (a peer then holds more than one piece of the
/// stripe). Empty when no peer is eligible.
pub fn place_pieces(
    key: &[u8; 32],
    candidates: &[Candidate],
    n: usize,
    piece_size: u64,
    exclude: &[PeerId],
) -> Vec<PeerId> {
    let mut chosen: Vec<PeerId> = Vec::new();
    while chosen.len() < n {
        let mut skip = exclude.to_vec();
        skip.extend_from_slice(&chosen);
        let policy = PlacementPolicy::with_rf((n - chosen.len()).min(MAX_RF));
        let more = place(key, candidates, &policy, piece_size, &skip).into_peers();
        if more.is_empty() {
            break;
        }
        chosen.extend(more);
    }
    if chosen.is_empty() {
        return chosen;
    }
    (0..n).map(|i| chosen[i % chosen.len()]).collect()
}

/// Where a stripe lies in a file's stream of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeSpan {
    /// First byte of the stripe in the stream.
    pub offset: u64,
    /// Bytes of the stream in the stripe (before padding).
    pub len: usize,
    /// Bytes per piece; the padded length is `data × piece_size`.
    pub piece_size: usize,
}

/// What a file kept as pieces is made of: the code, the file's blocks, and every piece's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceManifest {
    /// The code.
    pub code: PieceCode,
    /// The file's blocks in stream order (root manifest first), with their stored lengths.
    pub blocks: Vec<(ContentId, u32)>,
    /// The pieces' BLAKE3 hashes (raw ids), stripe after stripe, `data + parity` each.
    pub pieces: Vec<[u8; 32]>,
}

impl PieceManifest {
    /// Encodes a file's blocks (root manifest first, each once, in [`Store::dag`] order) into
    /// pieces: calls `piece_out(stripe, index, bytes)` for every piece of every stripe, in order,
    /// and returns the manifest. `blocks` yields each block's id and bytes; a block that does
    /// not hash to its id is refused.
    ///
    /// [`Store::dag`]: crate::Store::dag
    pub fn encode<I, F>(code: PieceCode, blocks: I, mut piece_out: F) -> Result<Self, Error>
    where
        I: IntoIterator<Item = Result<(ContentId, Vec<u8>), Error>>,
        F: FnMut(usize, usize, Vec<u8>) -> Result<(), Error>,
    {
        code.check()
            .map_err(|reason| Error::Pieces { cid: None, reason })?;
        let full = usize::from(code.data) * code.piece_size as usize;
        let mut table = Vec::new();
        let mut pieces = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(full);
        let mut stripe = 0usize;
        let mut flush = |buf: &[u8], stripe: &mut usize, pieces: &mut Vec<[u8; 32]>| {
            let span = code.stripes(buf.len() as u64)[0];
            for (i, p) in code
                .encode_stripe(buf, span.piece_size)?
                .into_iter()
                .enumerate()
            {
                pieces.push(ContentId::of_block(Codec::Raw, &p).hash());
                piece_out(*stripe, i, p)?;
            }
            *stripe += 1;
            Ok::<(), Error>(())
        };
        for block in blocks {
            let (cid, bytes) = block?;
            if ContentId::of_block(cid.codec(), &bytes) != cid {
                return Err(Error::Corrupt {
                    cid,
                    reason: "the block does not hash to its id".into(),
                });
            }
            if table.is_empty() && cid.codec() != Codec::Cbor {
                return Err(Error::NotAFile { cid });
            }
            if bytes.is_empty() || bytes.len() > MAX_BLOCK_SIZE {
                return Err(Error::Corrupt {
                    cid,
                    reason: format!("{} bytes (1 to {MAX_BLOCK_SIZE})", bytes.len()),
                });
            }
            table.push((cid, bytes.len() as u32));
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let take = (full - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == full {
                    flush(&buf, &mut stripe, &mut pieces)?;
                    buf.clear();
                }
            }
        }
        if !buf.is_empty() {
            flush(&buf, &mut stripe, &mut pieces)?;
        }
        let manifest = PieceManifest {
            code,
            blocks: table,
            pieces,
        };
        let len = manifest.encoded_len();
        if len > MAX_PIECE_MANIFEST {
            return Err(Error::Pieces {
                cid: None,
                reason: format!(
                    "the piece manifest would take {len} bytes (at most {MAX_PIECE_MANIFEST}): \
                     the file has too many blocks for pieces; keep it as whole copies"
                ),
            });
        }
        Ok(manifest)
    }

    /// The file's id: the first block's.
    pub fn root(&self) -> Option<ContentId> {
        self.blocks.first().map(|(c, _)| *c)
    }

    /// Bytes of the stream: the sum of the blocks' lengths.
    pub fn stream_len(&self) -> u64 {
        self.blocks.iter().map(|(_, l)| u64::from(*l)).sum()
    }

    /// The stripes of the stream.
    pub fn stripes(&self) -> Vec<StripeSpan> {
        self.code.stripes(self.stream_len())
    }

    /// The raw ids of stripe `s`'s pieces, in index order.
    pub fn stripe_pieces(&self, s: usize) -> Vec<ContentId> {
        let n = self.code.pieces();
        self.pieces
            .iter()
            .skip(s * n)
            .take(n)
            .map(|h| ContentId::from_parts(Codec::Raw, *h))
            .collect()
    }

    /// The key the pieces of stripe `s` are placed by (the XOR-closest peers to it hold them,
    /// piece `i` on the `i`-th): BLAKE3 of `warren stripe v1` and the stripe's piece hashes.
    pub fn stripe_key(&self, s: usize) -> [u8; 32] {
        let n = self.code.pieces();
        stripe_key_of(self.pieces.iter().skip(s * n).take(n))
    }

    /// Checks a fetched piece against its id: piece `i` of stripe `s` must hash to the id the
    /// manifest lists and be as long as the stripe's pieces.
    pub fn check_piece(&self, s: usize, i: usize, bytes: &[u8]) -> Result<(), Error> {
        let ids = self.stripe_pieces(s);
        let span = self.stripes().get(s).copied();
        let (Some(cid), Some(span)) = (ids.get(i), span) else {
            return Err(Error::Pieces {
                cid: None,
                reason: format!("no piece {i} in stripe {s}"),
            });
        };
        if bytes.len() != span.piece_size || ContentId::of_block(Codec::Raw, bytes) != *cid {
            return Err(Error::Corrupt {
                cid: *cid,
                reason: format!("not piece {i} of stripe {s}: it does not hash to its id"),
            });
        }
        Ok(())
    }

    /// Rebuilds stripe `s` from at least `data` of its pieces (index, bytes), checking each
    /// against its id first: a corrupt piece is an error naming it.
    pub fn rebuild_stripe(&self, s: usize, pieces: &[(usize, Vec<u8>)]) -> Result<Vec<u8>, Error> {
        let span = self
            .stripes()
            .get(s)
            .copied()
            .ok_or_else(|| Error::Pieces {
                cid: None,
                reason: format!("no stripe {s}"),
            })?;
        for (i, p) in pieces {
            self.check_piece(s, *i, p)?;
        }
        let refs: Vec<(usize, &[u8])> = pieces.iter().map(|(i, p)| (*i, &p[..])).collect();
        self.code.decode_stripe(&refs, span.piece_size, span.len)
    }

    /// Rebuilds the pieces `want` of stripe `s` from at least `data` others (for repair).
    pub fn rebuild_pieces(
        &self,
        s: usize,
        pieces: &[(usize, Vec<u8>)],
        want: &[usize],
    ) -> Result<Vec<(usize, Vec<u8>)>, Error> {
        let bytes = self.rebuild_stripe(s, pieces)?;
        let span = self.stripes()[s];
        let mut all = self.code.encode_stripe(&bytes, span.piece_size)?;
        let mut out = Vec::new();
        for &i in want {
            if i < all.len() {
                out.push((i, std::mem::take(&mut all[i])));
            }
        }
        Ok(out)
    }

    /// Cuts the stream back into the file's blocks: give it the stripes' bytes in order
    /// ([`BlockCutter::push`]).
    pub fn cutter(&self) -> BlockCutter<'_> {
        BlockCutter {
            manifest: self,
            next: 0,
            buf: Vec::new(),
        }
    }

    fn encoded_len(&self) -> usize {
        HEADER + self.blocks.len() * BLOCK_ENTRY + self.pieces.len() * 32
    }

    /// The canonical encoding (spec: `spec/storage.md`, "Piece manifest").
    pub fn encode_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.push(self.code.data);
        out.push(self.code.parity);
        out.extend_from_slice(&self.code.piece_size.to_be_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_be_bytes());
        for (cid, len) in &self.blocks {
            out.push(match cid.codec() {
                Codec::Raw => 0,
                Codec::Cbor => 1,
            });
            out.extend_from_slice(&cid.hash());
            out.extend_from_slice(&len.to_be_bytes());
        }
        for p in &self.pieces {
            out.extend_from_slice(p);
        }
        out
    }

    /// The manifest's id (a raw block).
    pub fn id(&self) -> ContentId {
        ContentId::of_block(Codec::Raw, &self.encode_bytes())
    }

    /// Whether a block is a piece manifest (by its first bytes; [`decode`](Self::decode) says
    /// whether it is a good one).
    pub fn is_piece_manifest(block: &[u8]) -> bool {
        block.starts_with(&MAGIC)
    }

    /// Decodes and checks a piece manifest: at most [`MAX_PIECE_MANIFEST`] bytes (checked
    /// first), the magic, a valid code, 1 to `u32::MAX` blocks of 1 to [`MAX_BLOCK_SIZE`] bytes
    /// the first of which is a manifest (cbor), and exactly the pieces the stream's stripes have.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::Pieces { cid: None, reason };
        if bytes.len() > MAX_PIECE_MANIFEST {
            return Err(bad(format!(
                "a piece manifest of {} bytes (at most {MAX_PIECE_MANIFEST})",
                bytes.len()
            )));
        }
        if bytes.len() < HEADER || bytes[..4] != MAGIC {
            return Err(bad("not a piece manifest (no WPM1 header)".into()));
        }
        let be32 = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let code = PieceCode {
            data: bytes[4],
            parity: bytes[5],
            piece_size: be32(6),
        };
        code.check().map_err(bad)?;
        let count = be32(10) as usize;
        let body = bytes.len() - HEADER;
        if count == 0 || count > body / BLOCK_ENTRY {
            return Err(bad(format!("{count} blocks in {body} bytes")));
        }
        let mut blocks = Vec::with_capacity(count);
        for b in 0..count {
            let at = HEADER + b * BLOCK_ENTRY;
            let codec = match bytes[at] {
                0 => Codec::Raw,
                1 => Codec::Cbor,
                c => return Err(bad(format!("block {b}: codec byte {c} (0 raw, 1 cbor)"))),
            };
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&bytes[at + 1..at + 33]);
            let len = be32(at + 33);
            if len == 0 || len as usize > MAX_BLOCK_SIZE {
                return Err(bad(format!(
                    "block {b}: {len} bytes (1 to {MAX_BLOCK_SIZE})"
                )));
            }
            if b == 0 && codec != Codec::Cbor {
                return Err(bad("the first block is not a manifest (codec cbor)".into()));
            }
            blocks.push((ContentId::from_parts(codec, hash), len));
        }
        let rest = &bytes[HEADER + count * BLOCK_ENTRY..];
        let stream: u64 = blocks.iter().map(|(_, l)| u64::from(*l)).sum();
        let stripes = stream.div_ceil(u64::from(code.data) * u64::from(code.piece_size));
        let want = stripes as usize * code.pieces() * 32;
        if rest.len() != want {
            return Err(bad(format!(
                "{} bytes of piece ids, {want} for {stripes} stripes of {} pieces",
                rest.len(),
                code.pieces()
            )));
        }
        let pieces = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(PieceManifest {
            code,
            blocks,
            pieces,
        })
    }
}

/// Cuts a rebuilt stream into the file's blocks, checking each against its id.
pub struct BlockCutter<'a> {
    manifest: &'a PieceManifest,
    next: usize,
    buf: Vec<u8>,
}

impl BlockCutter<'_> {
    /// Adds the next stripe's bytes; returns the blocks completed by them, each checked.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<(ContentId, Vec<u8>)>, Error> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0usize;
        while let Some(&(cid, len)) = self.manifest.blocks.get(self.next) {
            let len = len as usize;
            if self.buf.len() - at < len {
                break;
            }
            let block = self.buf[at..at + len].to_vec();
            if ContentId::of_block(cid.codec(), &block) != cid {
                return Err(Error::Corrupt {
                    cid,
                    reason: "rebuilt from pieces, it does not hash to its id".into(),
                });
            }
            out.push((cid, block));
            at += len;
            self.next += 1;
        }
        self.buf.drain(..at);
        Ok(out)
    }

    /// Whether every block has come out.
    pub fn done(&self) -> bool {
        self.next == self.manifest.blocks.len() && self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests;
