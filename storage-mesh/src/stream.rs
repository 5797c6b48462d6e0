//! A file as a stream of blocks, read back with the verified read of [`Store::get`].
//!
//! For a peer that reads a file on someone else's behalf (the onion relay's `GET`,
//! `spec/onion.md`): the sender writes the file's declared size, then every block a verified
//! read of the file reads, in the order it reads them (the root manifest; then, entry by entry,
//! a chunk block or a child manifest followed by its own entries). The receiver runs the very
//! walk [`Store::get`] runs, taking each block from the stream instead of the store and checking
//! it against the id its parent manifest names (the root against the id asked for) before using
//! it. A sender cannot substitute a byte: a block that does not hash to its id, a manifest that
//! breaks `spec/storage.md`'s rules, or a chunk that decodes to the wrong length stops the read
//! with an error naming that block, and no byte of it is written.
//!
//! ```text
//! stream = size u64 BE | block* ;  block = len u32 BE | bytes [len]
//! ```

use std::cell::RefCell;
use std::io::{self, Read, Write};

use warren_protocol::{Codec, ContentId, MAX_MANIFEST_SIZE, Manifest, ManifestEntry};

use crate::chunk::MAX_BLOCK_SIZE;
use crate::read::{self, Blocks, Visitor};
use crate::{Error, Store};

/// The largest block of `cid`'s kind, and the kind's name.
fn limit(cid: &ContentId) -> (usize, &'static str) {
    match cid.codec() {
        Codec::Raw => (MAX_BLOCK_SIZE, "chunk"),
        Codec::Cbor => (MAX_MANIFEST_SIZE, "manifest"),
    }
}

/// The declared size of the file `root` (its root manifest must be in the store); refuses
/// ([`Error::FileTooLarge`]) a root that declares more than `max` bytes (or more than
/// [`crate::MAX_FILE_SIZE`]). Reads the root only, so a sender can check a file's size before
/// it fetches the rest.
pub fn declared_size(store: &Store, root: &ContentId, max: u64) -> Result<u64, Error> {
    let size = store.stat(root)?.size;
    let limit = max.min(crate::MAX_FILE_SIZE);
    if size > limit {
        return Err(Error::FileTooLarge {
            root: *root,
            size,
            limit,
        });
    }
    Ok(size)
}

/// Writes the file `root` as a block stream to `out` (see the module doc): its size, checked
/// with [`declared_size`] before anything is written, then its blocks, each verified against its
/// id as it is read from the store. Every block must be in the store. Returns the file's size.
pub fn send<W: Write>(store: &Store, root: &ContentId, max: u64, out: W) -> Result<u64, Error> {
    struct Sender<'a, W> {
        store: &'a Store,
        out: RefCell<W>,
    }
    impl<W: Write> Blocks for Sender<'_, W> {
        fn block(&self, cid: &ContentId) -> Result<Vec<u8>, Error> {
            let bytes = self.store.get_block(cid)?;
            let len = u32::try_from(bytes.len()).map_err(|_| Error::BlockTooLarge {
                cid: *cid,
                len: bytes.len(),
                max: limit(cid).0,
                kind: limit(cid).1,
            })?;
            let mut out = self.out.borrow_mut();
            out.write_all(&len.to_be_bytes()).map_err(Error::Write)?;
            out.write_all(&bytes).map_err(Error::Write)?;
            Ok(bytes)
        }
    }
    /// Reads (and so sends) each chunk; chunks are not decoded here, the receiver does that.
    struct Chunks<'a, 'b, W>(&'a Sender<'b, W>);
    impl<W: Write> Visitor for Chunks<'_, '_, W> {
        fn manifest(&mut self, _: &ContentId, _: &Manifest, _: usize) -> Result<bool, Error> {
            Ok(true)
        }
        fn chunk(&mut self, entry: &ManifestEntry) -> Result<(), Error> {
            self.0.block(&entry.cid).map(drop)
        }
    }
    let size = declared_size(store, root, max)?;
    let sender = Sender {
        store,
        out: RefCell::new(out),
    };
    sender
        .out
        .borrow_mut()
        .write_all(&size.to_be_bytes())
        .map_err(Error::Write)?;
    read::walk(&sender, root, &mut Chunks(&sender))?;
    sender.out.into_inner().flush().map_err(Error::Write)?;
    Ok(size)
}

/// Reads the size that starts a block stream.
pub fn read_size<R: Read>(input: &mut R) -> Result<u64, Error> {
    let mut size = [0u8; 8];
    input.read_exact(&mut size).map_err(Error::Read)?;
    Ok(u64::from_be_bytes(size))
}

/// Reads the rest of a block stream for the file `root` from `input`, after [`read_size`] gave
/// `size`, with the verified read of [`Store::get`], and writes the file's bytes to `out`.
/// Fails naming the first block that does not hash to its id or breaks a rule; also fails when
/// the root declares another size than `size` (before anything is written) or bytes follow
/// the last block. `progress` gets the bytes written so far. Returns the bytes written.
pub fn receive<R: Read, W: Write>(
    root: &ContentId,
    size: u64,
    input: R,
    out: W,
    progress: &dyn Fn(u64),
) -> Result<u64, Error> {
    struct Receiver<R> {
        root: ContentId,
        announced: u64,
        input: RefCell<R>,
        /// Whether the root was read (it comes first, and is checked against `announced`).
        started: std::cell::Cell<bool>,
    }
    impl<R: Read> Blocks for Receiver<R> {
        fn block(&self, cid: &ContentId) -> Result<Vec<u8>, Error> {
            let cut = |e: io::Error| Error::Unavailable {
                cid: *cid,
                reason: format!("the stream ended before it: {e}"),
            };
            let mut input = self.input.borrow_mut();
            let mut len = [0u8; 4];
            input.read_exact(&mut len).map_err(cut)?;
            let len = u32::from_be_bytes(len) as usize;
            let (max, kind) = limit(cid);
            if len > max {
                return Err(Error::BlockTooLarge {
                    cid: *cid,
                    len,
                    max,
                    kind,
                });
            }
            let mut bytes = vec![0u8; len];
            input.read_exact(&mut bytes).map_err(cut)?;
            cid.verify(&bytes).map_err(|_| Error::Corrupt {
                cid: *cid,
                reason: format!("the {len} bytes sent for it do not hash to its id"),
            })?;
            if !self.started.replace(true) && *cid == self.root {
                let declared = Manifest::decode(&bytes)
                    .map_err(|source| Error::Manifest {
                        cid: *cid,
                        source: Box::new(source),
                    })?
                    .size;
                if declared != self.announced {
                    return Err(Error::Corrupt {
                        cid: *cid,
                        reason: format!(
                            "it declares {declared} bytes, the sender announced {}",
                            self.announced
                        ),
                    });
                }
            }
            Ok(bytes)
        }
    }
    let receiver = Receiver {
        root: *root,
        announced: size,
        input: RefCell::new(input),
        started: std::cell::Cell::new(false),
    };
    let n = read::get(&receiver, root, out, progress, &|_| Ok(None))?;
    if n != size {
        return Err(Error::Corrupt {
            cid: *root,
            reason: format!("its chunks hold {n} bytes, the sender announced {size}"),
        });
    }
    let mut extra = [0u8; 1];
    match receiver.input.into_inner().read(&mut extra) {
        Ok(0) => Ok(n),
        Ok(_) => Err(Error::Corrupt {
            cid: *root,
            reason: "the sender sent bytes after its last block".into(),
        }),
        Err(e) => Err(Error::Read(e)),
    }
}

#[cfg(test)]
mod tests {
    use warren_protocol::CHUNK_SIZE;

    use super::*;
    use crate::test_util::{put, store};
    use crate::testdata::random_chunk;

    /// The stream `send` writes for `data`, with the file's id.
    fn sent(data: &[u8]) -> (ContentId, Vec<u8>) {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, data);
        let mut out = Vec::new();
        let size = send(&store, &file.cid, u64::MAX, &mut out).unwrap();
        assert_eq!(size, data.len() as u64);
        (file.cid, out)
    }

    fn received(root: &ContentId, stream: &[u8]) -> (Result<u64, Error>, Vec<u8>) {
        let mut input = stream;
        let size = read_size(&mut input).unwrap();
        let mut out = Vec::new();
        let r = receive(root, size, input, &mut out, &|_| {});
        (r, out)
    }

    #[test]
    fn a_file_round_trips_through_a_block_stream() {
        for len in [0, 5, CHUNK_SIZE, 3 * CHUNK_SIZE + 17] {
            let data = random_chunk(len as u64, len);
            let (cid, stream) = sent(&data);
            let (r, out) = received(&cid, &stream);
            assert_eq!(r.unwrap(), len as u64);
            assert_eq!(out, data);
        }
    }

    /// The offsets of the blocks in a stream: (start of the length prefix, length).
    fn frames(stream: &[u8]) -> Vec<(usize, usize)> {
        let mut at = 8;
        let mut out = Vec::new();
        while at < stream.len() {
            let len = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
            out.push((at, len));
            at += 4 + len;
        }
        out
    }

    #[test]
    fn a_substituted_chunk_fails_naming_it_and_nothing_of_it_is_written() {
        let data = random_chunk(9, 3 * CHUNK_SIZE);
        let (cid, mut stream) = sent(&data);
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, &data);
        let second = store.stat(&file.cid).unwrap().entries[1].cid;
        // Frames: root, chunk 0, chunk 1, chunk 2. Flip a byte of chunk 1.
        let (at, _) = frames(&stream)[2];
        stream[at + 4 + 100] ^= 1;
        let (r, out) = received(&cid, &stream);
        let err = r.unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { cid: c, .. } if *c == second),
            "{err}"
        );
        assert!(err.to_string().contains(&second.to_string()), "{err}");
        assert_eq!(out, &data[..CHUNK_SIZE]);
    }

    #[test]
    fn another_file_or_garbage_is_refused_naming_the_root() {
        let (cid, _) = sent(b"the real file");
        let (_, other) = sent(b"another file");
        let mut garbage = 13u64.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"the fake file");
        for stream in [other, garbage] {
            let (r, out) = received(&cid, &stream);
            let err = r.unwrap_err();
            assert!(err.to_string().contains(&cid.to_string()), "{err}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_wrong_size_a_cut_stream_and_trailing_bytes_are_refused() {
        let data = random_chunk(4, CHUNK_SIZE + 10);
        let (cid, stream) = sent(&data);
        // The announced size is not the root's.
        let mut lie = stream.clone();
        lie[7] ^= 1;
        let (r, out) = received(&cid, &lie);
        assert!(r.unwrap_err().to_string().contains("announced"));
        assert!(out.is_empty());
        // Cut in the last block: the first chunk only.
        let (r, out) = received(&cid, &stream[..stream.len() - 3]);
        assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
        assert_eq!(out, &data[..CHUNK_SIZE]);
        // A byte after the last block.
        let mut more = stream.clone();
        more.push(0);
        let (r, _) = received(&cid, &more);
        assert!(r.unwrap_err().to_string().contains("after its last block"));
        // A length above a manifest's limit, for the root.
        let mut huge = stream[..8].to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let (r, _) = received(&cid, &huge);
        assert!(matches!(r, Err(Error::BlockTooLarge { .. })), "{r:?}");
    }

    #[test]
    fn send_refuses_a_file_over_its_limit_before_writing() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, &random_chunk(5, 1000));
        let mut out = Vec::new();
        let err = send(&store, &file.cid, 999, &mut out).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FileTooLarge {
                    size: 1000,
                    limit: 999,
                    ..
                }
            ),
            "{err}"
        );
        assert!(out.is_empty());
        assert_eq!(declared_size(&store, &file.cid, 1000).unwrap(), 1000);
    }
}
