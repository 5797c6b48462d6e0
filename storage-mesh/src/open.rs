//! Opening a sealed stream (spec: `spec/private-data.md`; sealing is in [`crate::seal`]).
//!
//! [`Opener`] is a [`Write`]: feed it the stored file's bytes in order and it authenticates each
//! segment before it parses a byte of it, decodes the chunk frames of the inner stream and writes
//! their plaintext out. Whether the stream was whole and well formed is known only at
//! [`Opener::finish`]. Memory: one segment and one frame.

use std::io::{self, Write};

use chacha20poly1305::{AeadInPlace, Tag};
use warren_protocol::{CHUNK_SIZE, Class, ContentId, FileKey, Manifest};

use crate::{
    Error, chunk,
    seal::{FRAME_HEADER, Format, Keys, SIV_NONCE_LEN, TAG_LEN, padme},
};

/// What an opened file said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Its class.
    pub class: Class,
    /// Its name.
    pub name: Option<String>,
    /// Its media type.
    pub media_type: Option<String>,
    /// Plaintext bytes written.
    pub size: u64,
}

/// Where the inner-stream parser is.
#[derive(Debug)]
enum Part {
    Header,
    Frames { last_was_short: bool },
    Trailer,
    Padding,
}

/// Opens a sealed stream written to it, writing the plaintext to `out`. Feed it the sealed file's
/// bytes in order (any pieces), then call [`finish`](Opener::finish).
pub struct Opener<W: Write> {
    cid: ContentId,
    keys: Keys,
    /// The stream's format, known once its first segment authenticated.
    format: Option<Format>,
    out: W,
    /// Sealed bytes the stored file has in all (its manifest's size).
    sealed_len: u64,
    /// Segments in the sealed stream.
    segments: u64,
    /// Sealed bytes of the current segment not yet opened.
    sealed: Vec<u8>,
    /// Index of the current segment.
    index: u64,
    /// Opened inner-stream bytes not yet parsed.
    inner: Vec<u8>,
    /// Inner-stream bytes parsed (and dropped from `inner`).
    consumed: u64,
    part: Part,
    header: Option<(Class, Option<String>, Option<String>)>,
    size: u64,
    /// The first error, kept so that `finish` reports it rather than an I/O wrapper.
    failed: Option<Error>,
}

impl<W: Write> Opener<W> {
    /// An opener for the sealed file `cid` of `sealed_len` bytes.
    pub fn new(cid: ContentId, key: &FileKey, sealed_len: u64, out: W) -> Result<Self, Error> {
        let segments = sealed_len.div_ceil(CHUNK_SIZE as u64);
        let last = sealed_len.saturating_sub(segments.saturating_sub(1) * CHUNK_SIZE as u64);
        if segments == 0 || last <= TAG_LEN as u64 || segments > u64::from(u32::MAX) + 1 {
            return Err(Error::Open {
                cid,
                reason: format!("{sealed_len} bytes is not the length of a sealed stream"),
            });
        }
        Ok(Self {
            cid,
            keys: Keys::derive(key),
            format: None,
            out,
            sealed_len,
            segments,
            sealed: Vec::with_capacity(CHUNK_SIZE),
            index: 0,
            inner: Vec::with_capacity(2 * CHUNK_SIZE),
            consumed: 0,
            part: Part::Header,
            header: None,
            size: 0,
            failed: None,
        })
    }

    fn fail(&self, reason: impl Into<String>) -> Error {
        Error::Open {
            cid: self.cid,
            reason: reason.into(),
        }
    }

    fn segment_len(&self) -> usize {
        if self.index + 1 < self.segments {
            CHUNK_SIZE
        } else {
            (self.sealed_len - self.index * CHUNK_SIZE as u64) as usize
        }
    }

    fn take(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            if self.index >= self.segments {
                return Err(self.fail("more bytes than the manifest says"));
            }
            let want = self.segment_len() - self.sealed.len();
            let n = want.min(bytes.len());
            self.sealed.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.sealed.len() == self.segment_len() {
                self.open_segment()?;
            }
        }
        Ok(())
    }

    fn open_segment(&mut self) -> Result<(), Error> {
        let last = self.index + 1 == self.segments;
        let segment = std::mem::take(&mut self.sealed);
        // The index fits: `new` refuses more than 2^32 segments.
        let index = self.index as u32;
        let opened = match self.format {
            Some(format) => self.open_as(format, index, last, &segment),
            // The first segment: whichever format authenticates it is the stream's.
            None => [Format::KeyNonce, Format::Siv]
                .into_iter()
                .find_map(|f| self.open_as(f, index, last, &segment).map(|p| (f, p)))
                .map(|(f, p)| {
                    self.format = Some(f);
                    p
                }),
        };
        let Some(plain) = opened else {
            let why = if self.index == 0 {
                "wrong key, or the data was altered"
            } else {
                "the data was altered, reordered or cut short"
            };
            return Err(self.fail(format!(
                "segment {} of {} failed authentication ({why})",
                self.index, self.segments
            )));
        };
        self.inner.extend_from_slice(&plain);
        self.sealed = segment;
        self.sealed.clear();
        self.index += 1;
        self.parse()
    }

    /// The plaintext of sealed segment `index` in `format`, if it authenticates (in format 2,
    /// also if its stored nonce is the one its plaintext and position give).
    fn open_as(&self, format: Format, index: u32, last: bool, segment: &[u8]) -> Option<Vec<u8>> {
        if segment.len() < format.overhead() {
            return None;
        }
        let (nonce, body) = match format {
            Format::KeyNonce => (self.keys.nonce(index, last), segment),
            Format::Siv => {
                let (n, body) = segment.split_at(SIV_NONCE_LEN);
                (*chacha20poly1305::XNonce::from_slice(n), body)
            }
        };
        let body_len = body.len() - TAG_LEN;
        let tag = Tag::clone_from_slice(&body[body_len..]);
        let mut plain = body[..body_len].to_vec();
        self.keys
            .cipher
            .decrypt_in_place_detached(&nonce, format.ad(), &mut plain, &tag)
            .ok()?;
        if format == Format::Siv && self.keys.siv_nonce(index, last, &plain)[..] != nonce[..] {
            return None;
        }
        Some(plain)
    }

    /// Parses what it can of `inner`, writing decoded chunks out.
    fn parse(&mut self) -> Result<(), Error> {
        let mut at = 0;
        loop {
            let avail = &self.inner[at..];
            match self.part {
                Part::Header => {
                    if avail.len() < 4 {
                        break;
                    }
                    let format = self.format.unwrap_or(Format::KeyNonce);
                    if avail[0] != format.version() {
                        return Err(self.fail(format!(
                            "sealed format version {} does not match its segments (format {}), or \
                             is not supported",
                            avail[0],
                            format.version()
                        )));
                    }
                    let class = match Class::from_byte(avail[1]) {
                        Some(c) if c.is_encrypted() => c,
                        _ => return Err(self.fail(format!("class byte {} is invalid", avail[1]))),
                    };
                    let name_len = usize::from(u16::from_be_bytes([avail[2], avail[3]]));
                    if avail.len() < 5 + name_len {
                        break;
                    }
                    let media_len = usize::from(avail[4 + name_len]);
                    let len = 5 + name_len + media_len;
                    if avail.len() < len {
                        break;
                    }
                    let text = |b: &[u8], what: &str| -> Result<Option<String>, Error> {
                        if b.is_empty() {
                            return Ok(None);
                        }
                        String::from_utf8(b.to_vec())
                            .map(Some)
                            .map_err(|_| self.fail(format!("the {what} is not UTF-8")))
                    };
                    let name = text(&avail[4..4 + name_len], "name")?;
                    let media = text(&avail[5 + name_len..len], "media type")?;
                    Manifest::empty(name.clone(), media.clone())
                        .validate()
                        .map_err(|e| self.fail(format!("header: {e}")))?;
                    self.header = Some((class, name, media));
                    at += len;
                    self.part = Part::Frames {
                        last_was_short: false,
                    };
                }
                Part::Frames { last_was_short } => {
                    if avail.len() < FRAME_HEADER {
                        break;
                    }
                    let raw_len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
                    let block_len = u32::from_be_bytes([avail[4], avail[5], avail[6], avail[7]]);
                    let (raw_len, block_len) = (raw_len as usize, block_len as usize);
                    if raw_len == 0 && block_len == 0 {
                        at += FRAME_HEADER;
                        self.part = Part::Trailer;
                        continue;
                    }
                    if last_was_short {
                        return Err(self.fail("a chunk follows a short chunk"));
                    }
                    if raw_len == 0
                        || raw_len > CHUNK_SIZE
                        || block_len == 0
                        || block_len > chunk::MAX_BLOCK_SIZE
                    {
                        return Err(self.fail(format!(
                            "frame of {raw_len} bytes in a {block_len}-byte block is out of bounds"
                        )));
                    }
                    if avail.len() < FRAME_HEADER + block_len {
                        break;
                    }
                    let block = &avail[FRAME_HEADER..FRAME_HEADER + block_len];
                    let mut chunk = Vec::with_capacity(raw_len);
                    chunk::decode_block(&self.cid, block, raw_len, &mut chunk).map_err(|e| {
                        self.fail(format!("chunk {}: {e}", self.size / CHUNK_SIZE as u64))
                    })?;
                    self.out.write_all(&chunk).map_err(Error::Write)?;
                    self.size += raw_len as u64;
                    at += FRAME_HEADER + block_len;
                    self.part = Part::Frames {
                        last_was_short: raw_len < CHUNK_SIZE,
                    };
                }
                Part::Trailer => {
                    if avail.len() < 8 {
                        break;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[..8]);
                    let said = u64::from_be_bytes(b);
                    if said != self.size {
                        return Err(self.fail(format!(
                            "the trailer says {said} bytes, the chunks hold {}",
                            self.size
                        )));
                    }
                    at += 8;
                    self.part = Part::Padding;
                    let unpadded = self.consumed + at as u64;
                    let expected = self
                        .format
                        .unwrap_or(Format::KeyNonce)
                        .sealed_len(padme(unpadded));
                    if expected != self.sealed_len {
                        return Err(self.fail(format!(
                            "{} sealed bytes, but the content pads to {expected}",
                            self.sealed_len
                        )));
                    }
                }
                Part::Padding => {
                    if avail.iter().any(|&b| b != 0) {
                        return Err(self.fail("padding is not zero"));
                    }
                    at += avail.len();
                    break;
                }
            }
        }
        self.inner.drain(..at);
        self.consumed += at as u64;
        Ok(())
    }

    /// Checks that the whole stream was there and well formed; returns what the file said about
    /// itself.
    pub fn finish(mut self) -> Result<Opened, Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.index < self.segments {
            return Err(self.fail(format!(
                "cut short: {} of {} segments",
                self.index, self.segments
            )));
        }
        if !matches!(self.part, Part::Padding) {
            return Err(self.fail(format!("the stream ends inside its {:?}", self.part)));
        }
        self.out.flush().map_err(Error::Write)?;
        let (class, name, media_type) = self.header.take().ok_or_else(|| self.fail("no header"))?;
        Ok(Opened {
            class,
            name,
            media_type,
            size: self.size,
        })
    }

    /// The error that stopped the opener, if any (a [`Write`] error only says it stopped).
    pub fn take_error(&mut self) -> Option<Error> {
        self.failed.take()
    }
}

impl<W: Write> Write for Opener<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("the sealed stream already failed"));
        }
        match self.take(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let msg = e.to_string();
                self.failed = Some(e);
                Err(io::Error::new(io::ErrorKind::InvalidData, msg))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
