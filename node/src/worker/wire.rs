//! The node ⇄ worker pipe (spec/worker.md): length-prefixed CBOR frames, sans-I/O.
//!
//! ```text
//! frame = length (u32, big-endian, 1..=MAX_FRAME) | CBOR of one message
//! ```
//!
//! [`encode`] makes a frame, [`Decoder`] takes bytes as they come and gives whole messages back;
//! a length of 0 or above [`MAX_FRAME`] is an error before any of the body is buffered, so a
//! misbehaving peer on either end costs the reader at most one frame of memory. [`read`] and
//! [`write`] are the blocking helpers both ends use over the pipe.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use warren_protocol::inference::ChatMessage;

use crate::error::NodeError;

/// Largest frame body either end sends or accepts.
pub const MAX_FRAME: usize = 16 << 20;

/// What the node asks its worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Load the generation model (a GGUF) from the descriptor the worker got as its stdin;
    /// its bytes must hash to `blake3`.
    LoadGenerator {
        /// The model's id in the node.
        id: String,
        /// BLAKE3 of the file, as its manifest names it.
        blake3: ByteBuf,
    },
    /// Load the embedding model whose weights are the descriptor on stdin.
    LoadEmbedder {
        /// The model's id in the node.
        id: String,
        /// BLAKE3 of the weights.
        blake3: ByteBuf,
        /// `tokenizer.json` (checked by the node against the manifest).
        tokenizer: ByteBuf,
        /// `config.json` (checked by the node against the manifest).
        config: ByteBuf,
    },
    /// Run one generation job; the worker answers with [`FromWorker::Text`] pieces, each
    /// acknowledged by [`ToWorker::Go`] or [`ToWorker::Stop`], then a result or a failure.
    Generate {
        /// The job id (hex).
        job: String,
        /// The model id bytes the result's digest binds.
        model_id: ByteBuf,
        /// The prompt.
        prompt: Prompt,
        /// Decoding parameters.
        params: Params,
    },
    /// Run one embedding job.
    Embed {
        /// The job id (hex).
        job: String,
        /// The texts.
        texts: Vec<String>,
    },
    /// Decode a relay request (the body of an onion `BEGIN`, from a stranger); answered by
    /// [`FromWorker::Request`] or a failure.
    Decode {
        /// The request's bytes.
        request: ByteBuf,
    },
    /// Encode one chunk of an upload (1 ..= `CHUNK_SIZE` bytes) as a block: brotli and BLAKE3;
    /// answered by [`FromWorker::Block`].
    Encode {
        /// The chunk.
        chunk: ByteBuf,
    },
    /// Go on after a text piece.
    Go,
    /// Stop after a text piece: the requester went away.
    Stop,
}

/// A generation prompt (`warren_inference::Prompt` on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Prompt {
    /// One user message.
    User(String),
    /// Raw text.
    Raw(String),
    /// A conversation.
    Chat(Vec<ChatMessage>),
}

/// Decoding parameters (`warren_inference::GenerateParams` on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Most new tokens.
    pub max_tokens: u32,
    /// 0 for greedy.
    pub temperature: f32,
    /// Sampler seed.
    pub seed: u64,
    /// Nucleus threshold.
    pub top_p: Option<f32>,
    /// Stop strings.
    pub stop: Vec<String>,
}

/// What the worker tells the node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker confined itself (Landlock ABI `landlock`, seccomp on) and waits for work.
    Ready {
        /// The Landlock ABI in force.
        landlock: u32,
    },
    /// The worker could not confine itself and does no work: why.
    Refused {
        /// Why.
        why: String,
    },
    /// The model is loaded.
    Loaded,
    /// A piece of generated text.
    Text(String),
    /// A generation's result.
    Generated {
        /// New token ids.
        tokens: Vec<u32>,
        /// Their text.
        text: String,
        /// Prompt tokens after templating.
        prompt_tokens: u32,
        /// `stop` or `length`.
        finish: String,
        /// The result digest.
        digest: ByteBuf,
    },
    /// An embedding job's vectors.
    Embedded {
        /// Length of each vector.
        dim: u32,
        /// The vectors, f32 little-endian, one after another.
        vectors: ByteBuf,
        /// The result digest.
        digest: ByteBuf,
    },
    /// A relay request, decoded and checked.
    Request(RelayRequest),
    /// A chunk encoded as a block, and the block's id (binary CID).
    Block {
        /// The block's id.
        cid: ByteBuf,
        /// The block.
        block: ByteBuf,
    },
    /// The request failed (the worker goes on).
    Failed(Failure),
}

/// A relay request as the worker decoded it (`warren_protocol::onion::request::Request`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayRequest {
    /// Fetch this content id (binary CID).
    Get(ByteBuf),
    /// Store the upload that follows under this name.
    Put(Option<String>),
    /// Run this inference job (an encoded generation or embedding request, checked).
    Infer(ByteBuf),
}

/// Why a worker request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `limit`, `unknown-model`, `load` or `error`.
    pub code: String,
    /// The message.
    pub detail: String,
    /// For `limit`: what is over, what was asked and the limit.
    pub over: Option<(String, u64, u64)>,
}

fn bad(detail: impl std::fmt::Display) -> NodeError {
    NodeError::Worker(detail.to_string())
}

/// The frame carrying `msg`.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, NodeError> {
    let mut out = vec![0u8; 4];
    serde_cbor::to_writer(&mut out, msg).map_err(bad)?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(bad(format!("a frame of {len} bytes, at most {MAX_FRAME}")));
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// The body length a frame header announces, refused when 0 or above [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, NodeError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(bad(format!("a frame of {len} bytes, at most {MAX_FRAME}")));
    }
    Ok(len)
}

/// One message from a frame's body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, NodeError> {
    serde_cbor::from_slice(body).map_err(bad)
}

/// Takes bytes as they arrive and gives back whole messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `None` until one is complete, or an error (the pipe is then
    /// unusable: close it).
    pub fn message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, NodeError> {
        let Some(header) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = frame_len(*header)?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = decode(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        msg.map(Some)
    }
}

/// Reads one message; `Ok(None)` at a clean end of the pipe.
pub fn read<T: DeserializeOwned>(r: &mut impl Read) -> std::io::Result<Option<T>> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let invalid =
        |e: NodeError| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    let len = frame_len(header).map_err(invalid)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode(&body).map(Some).map_err(invalid)
}

/// Writes one message.
pub fn write<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let frame = encode(msg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&frame)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use proptest::prelude::*;

    use super::*;

    fn to_worker() -> impl Strategy<Value = ToWorker> {
        let text = ".{0,40}";
        prop_oneof![
            (text, proptest::collection::vec(any::<u8>(), 32)).prop_map(|(id, h)| {
                ToWorker::LoadGenerator {
                    id,
                    blake3: ByteBuf::from(h),
                }
            }),
            (text, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(id, t)| {
                ToWorker::LoadEmbedder {
                    id,
                    blake3: ByteBuf::from(vec![1; 32]),
                    tokenizer: ByteBuf::from(t.clone()),
                    config: ByteBuf::from(t),
                }
            }),
            (
                text,
                text,
                any::<u32>(),
                0.0f32..2.0,
                any::<u64>(),
                proptest::option::of(0.0f32..1.0),
                proptest::collection::vec(text, 0..3)
            )
                .prop_map(|(job, p, max_tokens, temperature, seed, top_p, stop)| {
                    ToWorker::Generate {
                        job,
                        model_id: ByteBuf::from(p.as_bytes().to_vec()),
                        prompt: Prompt::Chat(vec![ChatMessage {
                            role: "user".into(),
                            content: p,
                        }]),
                        params: Params {
                            max_tokens,
                            temperature,
                            seed,
                            top_p,
                            stop,
                        },
                    }
                }),
            (text, proptest::collection::vec(text, 0..5))
                .prop_map(|(job, texts)| ToWorker::Embed { job, texts }),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| ToWorker::Decode {
                request: ByteBuf::from(b)
            }),
            proptest::collection::vec(any::<u8>(), 1..300).prop_map(|b| ToWorker::Encode {
                chunk: ByteBuf::from(b)
            }),
            Just(ToWorker::Go),
            Just(ToWorker::Stop),
        ]
    }

    fn from_worker() -> impl Strategy<Value = FromWorker> {
        prop_oneof![
            any::<u32>().prop_map(|landlock| FromWorker::Ready { landlock }),
            ".{0,40}".prop_map(|why| FromWorker::Refused { why }),
            Just(FromWorker::Loaded),
            ".{0,40}".prop_map(FromWorker::Text),
            (proptest::collection::vec(any::<u32>(), 0..20), ".{0,40}").prop_map(
                |(tokens, text)| FromWorker::Generated {
                    tokens,
                    text,
                    prompt_tokens: 3,
                    finish: "stop".into(),
                    digest: ByteBuf::from(vec![9; 32]),
                }
            ),
            proptest::collection::vec(any::<u8>(), 0..400).prop_map(|v| FromWorker::Embedded {
                dim: 4,
                vectors: ByteBuf::from(v),
                digest: ByteBuf::from(vec![9; 32]),
            }),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| FromWorker::Request(RelayRequest::Get(ByteBuf::from(b)))),
            proptest::option::of(".{0,20}").prop_map(|n| FromWorker::Request(RelayRequest::Put(n))),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| FromWorker::Request(RelayRequest::Infer(ByteBuf::from(b)))),
            proptest::collection::vec(any::<u8>(), 1..300).prop_map(|b| FromWorker::Block {
                cid: ByteBuf::from(vec![1; 34]),
                block: ByteBuf::from(b),
            }),
            (
                ".{0,20}",
                proptest::option::of((".{0,10}", any::<u64>(), any::<u64>()))
            )
                .prop_map(|(detail, over)| FromWorker::Failed(Failure {
                    code: "limit".into(),
                    detail,
                    over,
                })),
        ]
    }

    proptest! {
        #[test]
        fn messages_cross_the_decoder_whole_however_the_bytes_are_cut(
            msgs in proptest::collection::vec(to_worker(), 1..6),
            answers in proptest::collection::vec(from_worker(), 1..6),
            cut in 1usize..64,
        ) {
            let mut bytes = Vec::new();
            for m in &msgs {
                bytes.extend(encode(m).unwrap());
            }
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                d.push(piece);
                while let Some(m) = d.message::<ToWorker>().unwrap() {
                    got.push(m);
                }
            }
            prop_assert_eq!(&got, &msgs);
            // And through the blocking reader.
            let mut bytes = Vec::new();
            for m in &answers {
                write(&mut bytes, m).unwrap();
            }
            let mut r = &bytes[..];
            let mut got = Vec::new();
            while let Some(m) = read::<FromWorker>(&mut r).unwrap() {
                got.push(m);
            }
            prop_assert_eq!(got, answers);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_huge_lengths_are_refused_at_the_header(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut d = Decoder::default();
            d.push(&bytes);
            let _ = d.message::<ToWorker>();
            let _ = read::<FromWorker>(&mut &bytes[..]);
        }
    }

    #[test]
    fn a_frame_header_over_the_limit_or_empty_is_refused_before_its_body() {
        let mut d = Decoder::default();
        d.push(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(d.message::<ToWorker>().is_err());
        assert!(frame_len([0, 0, 0, 0]).is_err());
        assert_eq!(
            frame_len((MAX_FRAME as u32).to_be_bytes()).unwrap(),
            MAX_FRAME
        );
        // A reader is not made to allocate what a header claims: it fails at the header.
        let huge = u32::MAX.to_be_bytes();
        assert!(read::<FromWorker>(&mut &huge[..]).is_err());
        let big = vec![b'x'; MAX_FRAME];
        assert!(encode(&FromWorker::Text(String::from_utf8(big).unwrap())).is_err());
    }

    #[test]
    fn the_spec_vectors_hold() {
        // spec/worker.md: `Go` is the CBOR text "Go" in a 3-byte frame; `Ready` a one-entry map.
        assert_eq!(
            encode(&ToWorker::Go).unwrap(),
            [0, 0, 0, 3, 0x62, b'G', b'o']
        );
        let ready = [
            0, 0, 0, 18, 0xa1, 0x65, b'R', b'e', b'a', b'd', b'y', 0xa1, 0x68, b'l', b'a', b'n',
            b'd', b'l', b'o', b'c', b'k', 6,
        ];
        assert_eq!(encode(&FromWorker::Ready { landlock: 6 }).unwrap(), ready);
        // A relay request: `{"Request": {"Put": "a"}}`.
        assert_eq!(
            encode(&FromWorker::Request(RelayRequest::Put(Some("a".into())))).unwrap(),
            [
                0, 0, 0, 16, 0xa1, 0x67, b'R', b'e', b'q', b'u', b'e', b's', b't', 0xa1, 0x63,
                b'P', b'u', b't', 0x61, b'a'
            ]
        );
        let mut d = Decoder::default();
        d.push(&ready);
        assert_eq!(
            d.message::<FromWorker>().unwrap(),
            Some(FromWorker::Ready { landlock: 6 })
        );
    }
}
