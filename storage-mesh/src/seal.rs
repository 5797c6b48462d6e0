//! Shared and private files (spec: `spec/private-data.md`): sealing a file before it is cut into
//! blocks, and opening it again.
//!
//! ```text
//! plaintext ─▶ 1 MiB chunks ─▶ brotli (N workers) ─▶ inner stream ─▶ XChaCha20-Poly1305 STREAM ─▶ sealed stream
//!
//! inner stream:  header  | frame* | end | trailer | zero padding (Padmé)
//!   header:  version u8 = 1 | class u8 | name_len u16 | name | media_len u8 | media type
//!   frame:   raw_len u32 | block_len u32 | block (a chunk block: tag byte + payload)
//!   end:     0u32 | 0u32          trailer: plaintext size u64        (all big-endian)
//! sealed stream: the inner stream cut into segments of 1 MiB − 16 bytes, each sealed on its own:
//!   segment i = ciphertext ‖ tag, nonce = prefix (19 bytes) ‖ i (u32) ‖ last (u8: 1 on the last)
//! ```
//!
//! A sealed segment is exactly [`CHUNK_SIZE`] bytes (the last one shorter), so each chunk block of
//! the stored file is one segment; the sealed stream is stored like any file, uncompressed and with
//! no name, and holders, auditors and repairers handle its blocks like any other. Compression
//! happens before encryption (ciphertext does not compress), the name and media type sit inside
//! the encrypted header, and the padding leaves only the padded length visible.
//!
//! The segment index and the last-segment flag in each nonce make the STREAM construction of
//! Hoang, Reyhanitabar, Rogaway and Vizár (CRYPTO 2015): reordered, dropped, repeated or truncated
//! segments fail authentication. [`Opener`] writes plaintext only from segments that verified;
//! whether the file is whole is known at [`Opener::finish`], so a caller writing to a file must
//! keep the output aside until then.
//!
//! Keys: a private file's key is random (the caller draws it: this crate has no hidden
//! randomness); a shared file's key is [`convergent_key`] of its contents. The cipher key is
//! derived from the file key with BLAKE3's key derivation.
//!
//! Nonces: a private file (format 1) derives its nonce prefix from its key too, which is safe
//! because a random key seals one stream. A convergent key could seal two different inner
//! streams (the same contents compressed by another build, or a bug), and a nonce repeated under
//! one key with different plaintext breaks XChaCha20-Poly1305. So a shared file is sealed in
//! format 2 (SIV-style): each segment's 24-byte nonce is a keyed BLAKE3 hash of the segment's
//! index, last flag and plaintext, and is stored in front of the segment (segment i = nonce ‖
//! ciphertext ‖ tag, still exactly one chunk). Two streams then share a nonce only where they
//! share the segment's plaintext and position, which yields the same ciphertext. The opener
//! recomputes the nonce from what it decrypted, so reordered, dropped or truncated segments
//! still fail. The opener tells the formats apart by which one authenticates the first segment,
//! and the inner header's version byte must agree; files sealed before format 2 still open.

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
    num::NonZero,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, SyncSender, sync_channel},
    },
    thread,
};

use chacha20poly1305::{AeadInPlace, KeyInit, XChaCha20Poly1305, XNonce};
use warren_protocol::{CHUNK_SIZE, Capability, Class, FileKey, Manifest};

pub use crate::open::{Opened, Opener};
use crate::{Error, PutOptions, PutOutcome, Store, chunk, ingest};

/// Version byte of the inner stream's header in format 1 (nonce prefix from the key; private
/// files).
pub const SEAL_VERSION: u8 = 1;
/// Version byte of the inner stream's header in format 2 (SIV nonces; shared files).
pub const SEAL_VERSION_SIV: u8 = 2;
/// Bytes of a format-2 segment's stored nonce.
pub const SIV_NONCE_LEN: usize = 24;
/// Associated data of every format-2 segment.
pub const SEGMENT_AD_SIV: &[u8] = b"warren/private-data/v2";
/// BLAKE3 `derive_key` context of the key of format 2's nonce hash.
pub const SIV_NONCE_CONTEXT: &str = "warren shared-data v2 segment nonce";
/// Bytes of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes of the inner stream per segment: a sealed segment is then exactly one chunk.
pub const SEGMENT_PLAIN: usize = CHUNK_SIZE - TAG_LEN;
/// Bytes of the nonce prefix (XChaCha20's 24 − 4 for the index − 1 for the flag).
pub const NONCE_PREFIX_LEN: usize = 19;
/// Associated data of every segment.
pub const SEGMENT_AD: &[u8] = b"warren/private-data/v1";
/// BLAKE3 `derive_key` context of the segment cipher key.
pub const CIPHER_KEY_CONTEXT: &str = "warren private-data v1 segment cipher key";
/// BLAKE3 `derive_key` context of the nonce prefix.
pub const NONCE_PREFIX_CONTEXT: &str = "warren private-data v1 nonce prefix";
/// BLAKE3 `derive_key` context of the key of [`convergent_key`]'s keyed hash.
pub const CONVERGENCE_CONTEXT: &str = "warren shared-data v1 convergent key";
/// Bytes of a frame header (raw_len u32, block_len u32) and of the end marker.
pub(crate) const FRAME_HEADER: usize = 8;
/// Sealed-stream bytes handed to the writer at once.
const OUT_CHUNK: usize = CHUNK_SIZE;

/// What to seal besides the bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealOptions {
    /// [`Class::Shared`] or [`Class::Private`] (recorded in the encrypted header).
    pub class: Class,
    /// The file's name, kept inside the encryption (same limits as a manifest's).
    pub name: Option<String>,
    /// The file's media type, kept inside the encryption.
    pub media_type: Option<String>,
}

/// What a seal wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealOutcome {
    /// Plaintext bytes read.
    pub plain_size: u64,
    /// Sealed bytes written (the stored file's size).
    pub sealed_size: u64,
}

/// Padmé (Nikitin et al., "Reducing metadata leakage from encrypted files and communication
/// with PURBs", PETS 2019): rounds `len` up so that it leaks O(log log len) bits, at most about
/// 12 % more bytes.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros()); // ⌊log2 len⌋
    let s = 64 - u64::from(e.leading_zeros()); // ⌊log2 e⌋ + 1
    let last_bits = e.saturating_sub(s);
    let mask = (1u64 << last_bits) - 1;
    (len + mask) & !mask
}

/// Length of the sealed stream of an inner stream of `inner_len` bytes (padding included).
pub fn sealed_len(inner_len: u64) -> u64 {
    let segments = inner_len.div_ceil(SEGMENT_PLAIN as u64).max(1);
    inner_len + segments * TAG_LEN as u64
}

/// The key of a shared file: BLAKE3 keyed with a key derived from `secret` (all zero for the
/// network-wide convergence domain) over the name, the media type and the contents, so files that
/// differ in any of them never share a key. Reads `reader` to its end.
pub fn convergent_key(
    secret: &[u8; 32],
    name: Option<&str>,
    media_type: Option<&str>,
    mut reader: impl Read,
) -> Result<FileKey, Error> {
    let mut hasher = blake3::Hasher::new_keyed(&blake3::derive_key(CONVERGENCE_CONTEXT, secret));
    for field in [name, media_type] {
        match field {
            Some(s) => {
                hasher.update(&[1]);
                hasher.update(&(s.len() as u64).to_be_bytes());
                hasher.update(s.as_bytes());
            }
            None => {
                hasher.update(&[0]);
            }
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Read(e)),
        }
    }
    Ok(FileKey::from_bytes(*hasher.finalize().as_bytes()))
}

/// How segments are sealed: format 1 (nonce prefix from the key) or format 2 (SIV nonces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Format 1: private files, and shared files sealed before format 2.
    KeyNonce,
    /// Format 2: shared files.
    Siv,
}

impl Format {
    /// The format a new file of `class` is sealed in.
    pub(crate) fn for_class(class: Class) -> Self {
        if class == Class::Shared {
            Format::Siv
        } else {
            Format::KeyNonce
        }
    }

    /// The inner header's version byte.
    pub(crate) fn version(self) -> u8 {
        match self {
            Format::KeyNonce => SEAL_VERSION,
            Format::Siv => SEAL_VERSION_SIV,
        }
    }

    /// Sealed bytes per segment besides its plaintext.
    pub(crate) fn overhead(self) -> usize {
        match self {
            Format::KeyNonce => TAG_LEN,
            Format::Siv => SIV_NONCE_LEN + TAG_LEN,
        }
    }

    /// Inner-stream bytes per full segment.
    pub(crate) fn segment_plain(self) -> usize {
        CHUNK_SIZE - self.overhead()
    }

    /// The associated data of every segment.
    pub(crate) fn ad(self) -> &'static [u8] {
        match self {
            Format::KeyNonce => SEGMENT_AD,
            Format::Siv => SEGMENT_AD_SIV,
        }
    }

    /// Length of the sealed stream of an inner stream of `inner_len` bytes (padding included).
    pub(crate) fn sealed_len(self, inner_len: u64) -> u64 {
        let segments = inner_len.div_ceil(self.segment_plain() as u64).max(1);
        inner_len + segments * self.overhead() as u64
    }
}

/// The per-file cipher, nonce prefix (format 1) and nonce key (format 2).
pub(crate) struct Keys {
    pub(crate) cipher: XChaCha20Poly1305,
    prefix: [u8; NONCE_PREFIX_LEN],
    siv: [u8; 32],
}

impl Keys {
    pub(crate) fn derive(key: &FileKey) -> Self {
        let cipher_key = blake3::derive_key(CIPHER_KEY_CONTEXT, key.as_bytes());
        let prefix_full = blake3::derive_key(NONCE_PREFIX_CONTEXT, key.as_bytes());
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&prefix_full[..NONCE_PREFIX_LEN]);
        Self {
            cipher: XChaCha20Poly1305::new(&cipher_key.into()),
            prefix,
            siv: blake3::derive_key(SIV_NONCE_CONTEXT, key.as_bytes()),
        }
    }

    /// Format 2's nonce of segment `index` with plaintext `plain`: the first 24 bytes of BLAKE3
    /// keyed with the nonce key over `index (u32 BE) ‖ last (u8) ‖ plain`.
    pub(crate) fn siv_nonce(&self, index: u32, last: bool, plain: &[u8]) -> [u8; SIV_NONCE_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.siv);
        h.update(&index.to_be_bytes());
        h.update(&[u8::from(last)]);
        h.update(plain);
        let mut n = [0u8; SIV_NONCE_LEN];
        n.copy_from_slice(&h.finalize().as_bytes()[..SIV_NONCE_LEN]);
        n
    }

    pub(crate) fn nonce(&self, index: u32, last: bool) -> XNonce {
        let mut n = [0u8; 24];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.prefix);
        n[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
        n[23] = u8::from(last);
        n.into()
    }
}

/// The header of the inner stream.
fn header(opts: &SealOptions) -> Result<Vec<u8>, Error> {
    if !opts.class.is_encrypted() {
        return Err(Error::Seal(format!(
            "class {} is not sealed; public files are stored as they are",
            opts.class
        )));
    }
    Manifest::empty(opts.name.clone(), opts.media_type.clone())
        .validate()
        .map_err(|e| Error::Options(Box::new(e)))?;
    let name = opts.name.as_deref().unwrap_or("").as_bytes();
    let media = opts.media_type.as_deref().unwrap_or("").as_bytes();
    let mut h = Vec::with_capacity(5 + name.len() + media.len());
    h.push(Format::for_class(opts.class).version());
    h.push(opts.class.to_byte());
    // Lengths fit: validate() caps the name at 255 bytes and the media type at 127.
    h.extend_from_slice(&(name.len() as u16).to_be_bytes());
    h.extend_from_slice(name);
    h.push(media.len() as u8);
    h.extend_from_slice(media);
    Ok(h)
}

/// Cuts the inner stream into segments, seals them and writes them out.
struct Sealer<W: Write> {
    keys: Keys,
    format: Format,
    out: W,
    /// Inner-stream bytes not sealed yet (at most a segment and a frame).
    pending: Vec<u8>,
    /// Index of the next segment.
    index: u32,
    /// Inner-stream bytes so far.
    inner_len: u64,
    /// Sealed bytes written.
    written: u64,
}

impl<W: Write> Sealer<W> {
    fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.pending.extend_from_slice(bytes);
        self.inner_len += bytes.len() as u64;
        // Keep at least one byte back: only `finish` knows which segment is the last.
        let plain = self.format.segment_plain();
        while self.pending.len() > plain {
            let rest = self.pending.split_off(plain);
            let segment = std::mem::replace(&mut self.pending, rest);
            self.seal(segment, false)?;
        }
        Ok(())
    }

    fn seal(&mut self, mut segment: Vec<u8>, last: bool) -> Result<(), Error> {
        let (nonce, stored) = match self.format {
            Format::KeyNonce => (self.keys.nonce(self.index, last), None),
            Format::Siv => {
                let n = self.keys.siv_nonce(self.index, last, &segment);
                (XNonce::from(n), Some(n))
            }
        };
        let tag = self
            .keys
            .cipher
            .encrypt_in_place_detached(&nonce, self.format.ad(), &mut segment)
            .map_err(|_| Error::Seal(format!("segment {} could not be sealed", self.index)))?;
        segment.extend_from_slice(&tag);
        if let Some(n) = stored {
            self.out.write_all(&n).map_err(Error::Write)?;
            self.written += n.len() as u64;
        }
        self.out.write_all(&segment).map_err(Error::Write)?;
        self.written += segment.len() as u64;
        self.index = self
            .index
            .checked_add(1)
            .ok_or_else(|| Error::Seal("the file is too large: more than 2^32 segments".into()))?;
        Ok(())
    }

    /// Pads to Padmé length, seals the last segment and flushes.
    fn finish(mut self) -> Result<u64, Error> {
        let padded = padme(self.inner_len);
        let mut left = padded - self.inner_len;
        let zeros = vec![0u8; self.format.segment_plain().min(left as usize)];
        while left > 0 {
            let n = (left as usize).min(zeros.len());
            self.push(&zeros[..n])?;
            left -= n as u64;
        }
        let last = std::mem::take(&mut self.pending);
        self.seal(last, true)?;
        self.out.flush().map_err(Error::Write)?;
        Ok(self.written)
    }
}

/// Seals the plaintext read from `reader` with `key` and writes the sealed stream to `out`.
/// Chunks are compressed on all cores, in bounded memory (a few chunks per core in flight).
pub fn seal<R: Read + Send, W: Write>(
    key: &FileKey,
    opts: &SealOptions,
    reader: R,
    out: W,
) -> Result<SealOutcome, Error> {
    seal_in(Format::for_class(opts.class), key, opts, reader, out)
}

/// [`seal`] in `format` (tests seal shared files in format 1, as before format 2).
pub(crate) fn seal_in<R: Read + Send, W: Write>(
    format: Format,
    key: &FileKey,
    opts: &SealOptions,
    reader: R,
    out: W,
) -> Result<SealOutcome, Error> {
    let mut header = header(opts)?;
    header[0] = format.version();
    let mut sealer = Sealer {
        keys: Keys::derive(key),
        format,
        out,
        pending: Vec::with_capacity(SEGMENT_PLAIN + CHUNK_SIZE + 64),
        index: 0,
        inner_len: 0,
        written: 0,
    };
    sealer.push(&header)?;
    let workers = thread::available_parallelism().map_or(1, NonZero::get);
    let slots = (2 * workers).max(4);
    // Tokens bound the chunks in flight: the reader takes one per chunk, the writer gives it back.
    let (token_tx, token_rx) = sync_channel::<()>(slots);
    for _ in 0..slots {
        let _ = token_tx.send(());
    }
    let (work_tx, work_rx) = sync_channel::<(u64, Vec<u8>)>(slots);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<Compressed>(slots);

    let plain_size = thread::scope(|scope| {
        let reader_done = done_tx.clone();
        scope.spawn(move || read_plain(reader, &token_rx, &work_tx, &reader_done));
        for _ in 0..workers {
            let (work_rx, done_tx) = (Arc::clone(&work_rx), done_tx.clone());
            scope.spawn(move || compress_chunks(&work_rx, &done_tx));
        }
        drop((done_tx, work_rx));
        write_frames(&mut sealer, done_rx, &token_tx)
    })?;
    sealer.push(&[0u8; FRAME_HEADER])?;
    sealer.push(&plain_size.to_be_bytes())?;
    let sealed_size = sealer.finish()?;
    Ok(SealOutcome {
        plain_size,
        sealed_size,
    })
}

/// Seals `inner` as given, without checking or padding it: for fuzzing and tests of the opener,
/// which must refuse any malformed inner stream that arrives properly encrypted.
pub fn seal_inner(key: &FileKey, inner: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut sealer = Sealer {
        keys: Keys::derive(key),
        format: Format::KeyNonce,
        out: &mut out,
        pending: Vec::new(),
        index: 0,
        inner_len: 0,
        written: 0,
    };
    sealer.push(inner)?;
    let last = std::mem::take(&mut sealer.pending);
    sealer.seal(last, true)?;
    Ok(out)
}

/// Messages to the frame writer.
enum Compressed {
    Chunk {
        index: u64,
        raw_len: usize,
        block: Vec<u8>,
    },
    End(u64),
    Failed(Error),
}

fn read_plain<R: Read>(
    mut reader: R,
    tokens: &Receiver<()>,
    work: &SyncSender<(u64, Vec<u8>)>,
    done: &SyncSender<Compressed>,
) {
    let mut index = 0;
    loop {
        if tokens.recv().is_err() {
            return;
        }
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = done.send(Compressed::Failed(Error::Read(e)));
                    return;
                }
            }
        }
        buf.truncate(filled);
        if filled > 0 {
            if work.send((index, buf)).is_err() {
                return;
            }
            index += 1;
        }
        if filled < CHUNK_SIZE {
            break;
        }
    }
    let _ = done.send(Compressed::End(index));
}

fn compress_chunks(work: &Mutex<Receiver<(u64, Vec<u8>)>>, done: &SyncSender<Compressed>) {
    loop {
        let job = work.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((index, raw)) = job else { return };
        let block = chunk::encode_block(&raw);
        let msg = Compressed::Chunk {
            index,
            raw_len: raw.len(),
            block,
        };
        if done.send(msg).is_err() {
            return;
        }
    }
}

/// Takes compressed chunks in file order into frames; returns the plaintext size.
fn write_frames<W: Write>(
    sealer: &mut Sealer<W>,
    done: Receiver<Compressed>,
    tokens: &SyncSender<()>,
) -> Result<u64, Error> {
    let mut early = BTreeMap::new();
    let (mut next, mut end, mut size) = (0u64, None, 0u64);
    for msg in done {
        match msg {
            Compressed::Chunk {
                index,
                raw_len,
                block,
            } => {
                early.insert(index, (raw_len, block));
            }
            Compressed::End(n) => end = Some(n),
            Compressed::Failed(e) => return Err(e),
        }
        while let Some((raw_len, block)) = early.remove(&next) {
            let mut frame = [0u8; FRAME_HEADER];
            frame[..4].copy_from_slice(&(raw_len as u32).to_be_bytes());
            frame[4..].copy_from_slice(&(block.len() as u32).to_be_bytes());
            sealer.push(&frame)?;
            sealer.push(&block)?;
            size += raw_len as u64;
            next += 1;
            // The reader may be done; then the token is not needed.
            let _ = tokens.send(());
        }
        if end == Some(next) {
            return Ok(size);
        }
    }
    Err(Error::Pipeline("a chunk was lost while sealing"))
}

/// A [`Write`] into a bounded channel of 1 MiB pieces, and the [`Read`] at its other end: the
/// sealer writes into one on its thread while the put pipeline reads the other.
pub(crate) fn pipe(depth: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(depth);
    (
        PipeWriter {
            tx,
            buf: Vec::with_capacity(OUT_CHUNK),
        },
        PipeReader {
            rx,
            current: Vec::new(),
            at: 0,
        },
    )
}

/// The writing end of [`pipe`].
pub(crate) struct PipeWriter {
    tx: SyncSender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl PipeWriter {
    /// Makes the reader fail instead of seeing a clean end.
    pub(crate) fn fail(self, why: &Error) {
        let _ = self.tx.send(Err(io::Error::other(why.to_string())));
    }

    fn send(&mut self) -> io::Result<()> {
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(OUT_CHUNK));
        self.tx
            .send(Ok(buf))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the store stopped reading"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(OUT_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == OUT_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// The reading end of [`pipe`].
pub(crate) struct PipeReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    self.current = next;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Sealed pieces (1 MiB each) in flight between the sealer and the put pipeline.
const PIPE_DEPTH: usize = 4;

impl Store {
    /// Seals the file read from `reader` with `key` (see the module doc) and stores the sealed
    /// stream like [`put`](Store::put) stores a file: chunk blocks (uncompressed) and a manifest
    /// tree with no name. The class is recorded for [`pins`](Store::pins). Sealing and storing
    /// run side by side; `progress` counts sealed bytes stored. On any error nothing of the file
    /// stays in the store.
    pub fn put_sealed<R: Read + Send>(
        &self,
        reader: R,
        key: &FileKey,
        opts: &SealOptions,
        pin: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(PutOutcome, SealOutcome), Error> {
        header(opts)?;
        let (mut writer, pipe_reader) = pipe(PIPE_DEPTH);
        let put_opts = PutOptions {
            name: None,
            media_type: None,
            pin,
        };
        thread::scope(|scope| {
            let sealer = scope.spawn(move || {
                let result = seal(key, opts, reader, &mut writer);
                if let Err(e) = &result {
                    writer.fail(e);
                }
                result
            });
            let put = ingest::put(self, pipe_reader, &put_opts, opts.class, progress);
            let sealed = match sealer.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            match (sealed, put) {
                (Ok(sealed), Ok(put)) => Ok((put, sealed)),
                // The store stopped first: its error says why.
                (Err(Error::Write(e)), Err(put)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    Err(put)
                }
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            }
        })
    }

    /// Opens the sealed file the capability names and writes its plaintext to `out`. Every block
    /// is verified against its id and every segment authenticated before its plaintext is
    /// written; the result says whether the file was whole. A caller writing to a file must keep
    /// the output aside until this returns `Ok`.
    pub fn get_sealed<W: Write>(
        &self,
        cap: &Capability,
        out: W,
        progress: &dyn Fn(u64),
    ) -> Result<Opened, Error> {
        self.get_sealed_when_ready(cap, out, progress, &|_| Ok(None))
    }

    /// [`Store::get_sealed`] for a file whose chunks are still arriving; `ready` as in
    /// [`Store::get_when_ready`].
    pub fn get_sealed_when_ready<W: Write>(
        &self,
        cap: &Capability,
        out: W,
        progress: &dyn Fn(u64),
        ready: &crate::store::Ready<'_>,
    ) -> Result<Opened, Error> {
        let root = self.stat(&cap.cid)?;
        let mut opener = Opener::new(cap.cid, &cap.key, root.size, out)?;
        match self.get_when_ready(&cap.cid, &mut opener, progress, ready) {
            Ok(_) => opener.finish(),
            Err(e) => Err(opener.take_error().unwrap_or(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use warren_protocol::{Codec, ContentId, ManifestEntry};

    use super::*;
    use crate::{
        test_util::store,
        testdata::{mixed_data, random_chunk, text_chunk},
    };

    const MIB: usize = CHUNK_SIZE;

    fn key(b: u8) -> FileKey {
        FileKey::from_bytes([b; 32])
    }

    fn private(name: &str) -> SealOptions {
        SealOptions {
            class: Class::Private,
            name: Some(name.into()),
            media_type: Some("text/plain".into()),
        }
    }

    fn seal_bytes(k: &FileKey, opts: &SealOptions, data: &[u8]) -> (Vec<u8>, SealOutcome) {
        let mut out = Vec::new();
        let outcome = seal(k, opts, data, &mut out).unwrap();
        (out, outcome)
    }

    fn open_bytes(k: &FileKey, sealed: &[u8]) -> Result<(Vec<u8>, Opened), Error> {
        let cid = ContentId::of_block(Codec::Cbor, b"test");
        let mut plain = Vec::new();
        let mut opener = Opener::new(cid, k, sealed.len() as u64, &mut plain)?;
        // Odd piece sizes: segments and frames straddle writes.
        for piece in sealed.chunks(77_777) {
            if opener.write_all(piece).is_err() {
                return Err(opener.take_error().unwrap());
            }
        }
        let opened = opener.finish()?;
        Ok((plain, opened))
    }

    #[test]
    fn padme_matches_the_paper() {
        // Values from the PURBs paper's definition: E = ⌊log2 L⌋, S = ⌊log2 E⌋ + 1.
        for (len, want) in [
            (0, 0),
            (1, 1),
            (2, 2),
            (9, 10),
            (100, 104),
            (1000, 1024),
            (1 << 20, 1 << 20),
            ((1 << 20) + 1, (1 << 20) + (1 << 15)),
        ] {
            assert_eq!(padme(len), want, "padme({len})");
        }
        for len in [3u64, 77, 4097, 123_456_789, 1 << 40] {
            let p = padme(len);
            assert!(
                p >= len && (p - len) as f64 <= 0.12 * len as f64 + 1.0,
                "{len} → {p}"
            );
        }
    }

    #[test]
    fn round_trips_edge_sizes_and_hides_the_plaintext() {
        let k = key(1);
        let marker = b"WARREN-PLAINTEXT-MARKER";
        let mut text = text_chunk(3, MIB + 1);
        text[..marker.len()].copy_from_slice(marker);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("one byte", vec![42]),
            ("1 MiB random", random_chunk(1, MIB)),
            ("1 MiB + 1 text", text),
            ("3 MiB + 5 mixed", mixed_data((3 * MIB + 5) as u64, 2)),
        ];
        for (what, data) in cases {
            let opts = private("notes.txt");
            let (sealed, outcome) = seal_bytes(&k, &opts, &data);
            assert_eq!(outcome.plain_size, data.len() as u64, "{what}");
            assert_eq!(outcome.sealed_size, sealed.len() as u64, "{what}");
            assert!(
                !sealed.windows(marker.len()).any(|w| w == marker),
                "{what}: plaintext visible"
            );
            assert!(
                !sealed.windows(9).any(|w| w == b"notes.txt"),
                "{what}: name visible"
            );
            let (plain, opened) = open_bytes(&k, &sealed).unwrap();
            assert!(plain == data, "{what}: round trip");
            assert_eq!(opened.name.as_deref(), Some("notes.txt"));
            assert_eq!(opened.media_type.as_deref(), Some("text/plain"));
            assert_eq!(opened.class, Class::Private);
            assert_eq!(opened.size, data.len() as u64);
            // Sealed segments are whole chunks but the last.
            assert_eq!(
                sealed.len() as u64,
                sealed_len(padme(
                    sealed.len() as u64 - TAG_LEN as u64 * sealed.len().div_ceil(MIB) as u64
                ))
            );
        }
    }

    #[test]
    fn compresses_before_encrypting() {
        let data = text_chunk(5, 4 * MIB);
        let (sealed, _) = seal_bytes(&key(2), &private("t"), &data);
        assert!(
            sealed.len() < data.len() / 2,
            "{} sealed bytes for {} of text",
            sealed.len(),
            data.len()
        );
    }

    #[test]
    fn the_length_leaks_only_the_padded_size() {
        // Plaintexts of nearby lengths seal to the same length.
        let k = key(3);
        let lens: Vec<u64> = (0..200)
            .map(|extra| {
                let data = random_chunk(9, 100_000 + extra * 7);
                seal_bytes(&k, &private("x"), &data).1.sealed_size
            })
            .collect();
        let distinct: std::collections::BTreeSet<_> = lens.iter().collect();
        assert!(distinct.len() <= 3, "{distinct:?}");
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(4);
        let data = random_chunk(4, 3 * MIB + 100);
        let (sealed, _) = seal_bytes(&k, &private("t"), &data);
        assert_eq!(sealed.len().div_ceil(MIB), 4);

        let mut flipped = sealed.clone();
        flipped[MIB + 12345] ^= 0x01;
        let e = open_bytes(&k, &flipped).unwrap_err().to_string();
        assert!(e.contains("segment 1 of 4 failed authentication"), "{e}");

        let mut swapped = sealed.clone();
        let (a, b) = swapped.split_at_mut(2 * MIB);
        a[MIB..2 * MIB].swap_with_slice(&mut b[..MIB]);
        let e = open_bytes(&k, &swapped).unwrap_err().to_string();
        assert!(e.contains("segment 1 of 4 failed authentication"), "{e}");

        let dropped = &sealed[..3 * MIB];
        let e = open_bytes(&k, dropped).unwrap_err().to_string();
        assert!(e.contains("segment 2 of 3 failed authentication"), "{e}");

        let e = open_bytes(&key(5), &sealed).unwrap_err().to_string();
        assert!(
            e.contains("segment 0 of 4") && e.contains("wrong key"),
            "{e}"
        );

        let short = &sealed[..sealed.len() - 1];
        assert!(open_bytes(&k, short).is_err());
    }

    #[test]
    fn a_writer_sees_no_plaintext_of_a_bad_segment() {
        let k = key(6);
        let data = random_chunk(6, 2 * MIB + 9);
        let (mut sealed, _) = seal_bytes(&k, &private("t"), &data);
        let last = sealed.len() - 1;
        sealed[last] ^= 0x80;
        let cid = ContentId::of_block(Codec::Cbor, b"t");
        let mut plain = Vec::new();
        let mut opener = Opener::new(cid, &k, sealed.len() as u64, &mut plain).unwrap();
        assert!(opener.write_all(&sealed).is_err());
        assert!(opener.finish().is_err());
        // Only what verified came out: the first two segments' plaintext, no byte more.
        assert!(plain.len() < 2 * MIB && data.starts_with(&plain));
    }

    #[test]
    fn same_key_and_options_give_the_same_stream_and_convergent_keys_differ() {
        let data = mixed_data((MIB + 3) as u64, 7);
        let shared = |name: &str| SealOptions {
            class: Class::Shared,
            name: Some(name.into()),
            media_type: None,
        };
        let k1 = convergent_key(&[0; 32], Some("a"), None, &data[..]).unwrap();
        let k2 = convergent_key(&[0; 32], Some("b"), None, &data[..]).unwrap();
        let k3 = convergent_key(&[1; 32], Some("a"), None, &data[..]).unwrap();
        assert!(k1 != k2 && k1 != k3);
        assert_eq!(
            k1,
            convergent_key(&[0; 32], Some("a"), None, &data[..]).unwrap()
        );
        let (s1, _) = seal_bytes(&k1, &shared("a"), &data);
        let (s2, _) = seal_bytes(&k1, &shared("a"), &data);
        assert!(s1 == s2, "deterministic");
        let (plain, opened) = open_bytes(&k1, &s1).unwrap();
        assert!(plain == data);
        assert_eq!(opened.class, Class::Shared);
    }

    fn shared(name: &str) -> SealOptions {
        SealOptions {
            class: Class::Shared,
            name: Some(name.into()),
            media_type: None,
        }
    }

    #[test]
    fn shared_files_use_siv_nonces_that_differ_for_different_streams_under_one_key() {
        let k = key(21);
        let a = random_chunk(21, 2 * MIB + 5);
        let mut b = a.clone();
        b[MIB + 7] ^= 1; // same key, a different second segment (a "second inner stream")
        let (sa, _) = seal_bytes(&k, &shared("x"), &a);
        let (sb, _) = seal_bytes(&k, &shared("x"), &b);
        assert_eq!(sa.len(), sb.len());
        assert_eq!(
            sa.len(),
            Format::Siv.sealed_len(padme(sa.len() as u64 - 40 * 3)) as usize
        );
        // Segment i starts with its nonce: equal where the plaintext is equal, else different.
        let nonce = |s: &[u8], i: usize| s[i * MIB..i * MIB + SIV_NONCE_LEN].to_vec();
        assert_eq!(nonce(&sa, 0), nonce(&sb, 0));
        assert_ne!(nonce(&sa, 1), nonce(&sb, 1));
        assert_eq!(&sa[..MIB], &sb[..MIB], "same segment, same ciphertext");
        // A private file keeps format 1: no nonce stored, the key's nonce prefix.
        let (p, _) = seal_bytes(&k, &private("x"), &a);
        assert_eq!(p.len() as u64, sealed_len(padme(p.len() as u64 - 16 * 3)));
        // Both open; the header's version matches the format.
        let (plain, opened) = open_bytes(&k, &sa).unwrap();
        assert!(plain == a);
        assert_eq!(opened.class, Class::Shared);
        assert!(open_bytes(&k, &p).unwrap().0 == a);
    }

    #[test]
    fn siv_streams_still_refuse_tampering_reordering_and_truncation() {
        let k = key(22);
        let data = random_chunk(22, 3 * MIB + 100);
        let (sealed, _) = seal_bytes(&k, &shared("t"), &data);
        assert_eq!(sealed.len().div_ceil(MIB), 4);
        let mut flipped = sealed.clone();
        flipped[MIB + 12345] ^= 0x01;
        let e = open_bytes(&k, &flipped).unwrap_err().to_string();
        assert!(e.contains("segment 1 of 4 failed authentication"), "{e}");
        // A flipped stored nonce.
        let mut flipped = sealed.clone();
        flipped[2 * MIB + 3] ^= 0x01;
        let e = open_bytes(&k, &flipped).unwrap_err().to_string();
        assert!(e.contains("segment 2 of 4 failed authentication"), "{e}");
        // Swapped segments decrypt, but their nonces name other positions.
        let mut swapped = sealed.clone();
        let (a, b) = swapped.split_at_mut(2 * MIB);
        a[MIB..2 * MIB].swap_with_slice(&mut b[..MIB]);
        let e = open_bytes(&k, &swapped).unwrap_err().to_string();
        assert!(e.contains("segment 1 of 4 failed authentication"), "{e}");
        // Dropped or cut: the new last segment is not marked last.
        let e = open_bytes(&k, &sealed[..3 * MIB]).unwrap_err().to_string();
        assert!(e.contains("segment 2 of 3 failed authentication"), "{e}");
        assert!(open_bytes(&k, &sealed[..sealed.len() - 1]).is_err());
        assert!(open_bytes(&key(23), &sealed).is_err());
    }

    #[test]
    fn shared_files_sealed_before_format_2_still_open_and_versions_must_match() {
        let k = key(24);
        let data = mixed_data((2 * MIB + 11) as u64, 24);
        let mut old = Vec::new();
        seal_in(Format::KeyNonce, &k, &shared("old"), &data[..], &mut old).unwrap();
        let (plain, opened) = open_bytes(&k, &old).unwrap();
        assert!(plain == data);
        assert_eq!(opened.class, Class::Shared);
        // Format-2 segments around a version-1 header (or the reverse) are refused.
        let mut inner = header(&shared("v")).unwrap();
        assert_eq!(inner[0], SEAL_VERSION_SIV);
        inner[0] = SEAL_VERSION;
        let mut out = Vec::new();
        let mut sealer = Sealer {
            keys: Keys::derive(&k),
            format: Format::Siv,
            out: &mut out,
            pending: Vec::new(),
            index: 0,
            inner_len: 0,
            written: 0,
        };
        sealer.push(&inner).unwrap();
        sealer.push(&[0u8; FRAME_HEADER]).unwrap();
        sealer.push(&0u64.to_be_bytes()).unwrap();
        sealer.finish().unwrap();
        let e = open_bytes(&k, &out).unwrap_err().to_string();
        assert!(e.contains("does not match its segments"), "{e}");
    }

    #[test]
    fn malformed_inner_streams_are_refused_even_when_encrypted() {
        let k = key(11);
        let good_header = [1u8, 2, 0, 0, 0];
        let frame = |raw: u32, block: &[u8]| {
            let mut f = raw.to_be_bytes().to_vec();
            f.extend_from_slice(&(block.len() as u32).to_be_bytes());
            f.extend_from_slice(block);
            f
        };
        let end = [0u8; 8];
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "version",
                [&[2u8, 2, 0, 0, 0][..], &end, &[0; 8]].concat(),
                "version 2",
            ),
            (
                "class",
                [&[1u8, 0, 0, 0, 0][..], &end, &[0; 8]].concat(),
                "class byte 0",
            ),
            (
                "no end",
                [&good_header[..], &frame(1, &[0, 7])].concat(),
                "ends inside",
            ),
            (
                "trailer",
                [
                    &good_header[..],
                    &frame(1, &[0, 7]),
                    &end,
                    &5u64.to_be_bytes(),
                ]
                .concat(),
                "trailer says 5",
            ),
            (
                "padding",
                [&good_header[..], &end, &[0; 8], &[1]].concat(),
                "padding is not zero",
            ),
            (
                "not padded",
                [&good_header[..], &end, &[0; 8], &[0; 40]].concat(),
                "pads to",
            ),
            (
                "raw_len",
                [&good_header[..], &frame(3, &[0, 7])].concat(),
                "raw payload",
            ),
            (
                "short then more",
                [&good_header[..], &frame(1, &[0, 7]), &frame(1, &[0, 7])].concat(),
                "follows a short chunk",
            ),
            (
                "huge frame",
                [&good_header[..], &frame(u32::MAX, &[0])].concat(),
                "out of bounds",
            ),
        ];
        for (what, inner, want) in cases {
            let sealed = seal_inner(&k, &inner).unwrap();
            let e = open_bytes(&k, &sealed).unwrap_err().to_string();
            assert!(e.contains(want), "{what}: {e}");
        }
    }

    #[test]
    fn refuses_public_class_and_bad_names() {
        let mut opts = private("ok");
        opts.class = Class::Public;
        assert!(seal(&key(1), &opts, &b"x"[..], Vec::new()).is_err());
        let opts = private(&"n".repeat(300));
        assert!(matches!(
            seal(&key(1), &opts, &b"x"[..], Vec::new()),
            Err(Error::Options(_))
        ));
    }

    #[test]
    fn store_round_trip_records_the_class_and_stores_no_plaintext() {
        let (dir, store) = store(u64::MAX);
        let marker = b"MARKER-0123456789";
        let mut data = text_chunk(8, 2 * MIB + 17);
        for at in (0..data.len() - marker.len()).step_by(100_000) {
            data[at..at + marker.len()].copy_from_slice(marker);
        }
        let k = key(8);
        let (put, sealed) = store
            .put_sealed(&data[..], &k, &private("secret.txt"), true, &|_| {})
            .unwrap();
        assert_eq!(sealed.plain_size, data.len() as u64);
        assert_eq!(put.size, sealed.sealed_size);
        let root = store.stat(&put.cid).unwrap();
        assert_eq!((root.name, root.media_type), (None, None));
        assert!(
            root.entries
                .iter()
                .all(|e: &ManifestEntry| e.raw_len + 1 == e.stored_len)
        );
        let pins = store.pins().unwrap();
        assert_eq!(pins.len(), 1);
        assert_eq!(
            (pins[0].class, pins[0].name.as_deref()),
            (Class::Private, None)
        );
        // Every file under the store directory: no marker, no name.
        let mut files = vec![dir.path().to_owned()];
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert!(!bytes.windows(marker.len()).any(|w| w == marker), "{p:?}");
                assert!(!bytes.windows(10).any(|w| w == b"secret.txt"), "{p:?}");
            }
        }
        let cap = Capability {
            cid: put.cid,
            key: k,
        };
        let mut out = Vec::new();
        let opened = store.get_sealed(&cap, &mut out, &|_| {}).unwrap();
        assert!(out == data);
        assert_eq!(opened.name.as_deref(), Some("secret.txt"));
        let wrong = Capability {
            cid: put.cid,
            key: key(9),
        };
        let e = store.get_sealed(&wrong, Vec::new(), &|_| {}).unwrap_err();
        assert!(e.to_string().contains("wrong key"), "{e}");
    }

    #[test]
    fn a_failed_sealed_put_leaves_nothing() {
        let (_dir, store) = store(3 * MIB as u64);
        // A private put is the user's own: the offer to others does not limit it.
        let data = random_chunk(10, 5 * MIB);
        let fits = store
            .put_sealed(&data[..], &key(1), &private("big"), true, &|_| {})
            .unwrap();
        assert!(
            store.usage().unwrap().stored_bytes > 3 * MIB as u64,
            "{fits:?}"
        );
        assert!(store.unpin(&fits.0.cid).unwrap());
        store.gc().unwrap();
        assert_eq!(store.usage().unwrap().blocks, 0);

        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let e = store
            .put_sealed(Broken(2 * MIB + 3), &key(1), &private("b"), true, &|_| {})
            .unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        assert_eq!(store.usage().unwrap().blocks, 0);
        assert!(store.pins().unwrap().is_empty());
    }
}
