//! Inference jobs on the wire (spec: `spec/inference-jobs.md`) and the model manifest.
//!
//! A job runs on one libp2p stream of protocol [`PROTOCOL_NAME`]. The requester writes one
//! [`Envelope`](crate::Envelope) of type `inference:{generate|embed}:v1:requested`; the operator
//! answers with zero or more `…:processing` envelopes (streamed text for generation) and then
//! exactly one `…:completed` or `…:failed`, and closes the stream. Every envelope on the stream is
//! preceded by its length as u32 big-endian ([`frame`]), at most [`MAX_ENVELOPE_SIZE`] bytes.
//! Cancelling a job is closing (resetting) the stream; the operator stops at its next token.
//!
//! Payloads are canonical CBOR maps (one encoding per value, no trailing bytes), each with a size
//! limit checked before decoding and field limits checked after.
//!
//! A model is published on the storage mesh as its files plus a [`ModelManifest`] naming each
//! file's role, size, BLAKE3 hash and mesh content id; the manifest's own content id is the model
//! id that operators advertise (as DHT provider records) and jobs name.

use serde::{Deserialize, Serialize};

use crate::content::ContentId;
use crate::envelope::MAX_ENVELOPE_SIZE;
use crate::error::{Error, Subject};
use crate::{codec, event::EventType};

/// libp2p protocol of the job stream.
pub const PROTOCOL_NAME: &str = "/warren/inference/1.0.0";
/// Largest job payload (request or result), bytes; leaves room for the envelope around it.
pub const MAX_JOB_PAYLOAD: usize = MAX_ENVELOPE_SIZE - 4096;
/// Most texts in one embedding job.
pub const MAX_TEXTS: usize = 256;
/// Longest text or prompt, bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Most new tokens a generation job may ask for.
pub const MAX_NEW_TOKENS: u32 = 4096;
/// Longest embedding vector, components.
pub const MAX_DIM: u32 = 4096;
/// Most files in a model manifest.
pub const MAX_MODEL_FILES: usize = 16;
/// Largest encoded model manifest, bytes.
pub const MAX_MODEL_MANIFEST_SIZE: usize = 16 * 1024;
/// Most messages in a chat generation request.
pub const MAX_MESSAGES: usize = 256;
/// Most bytes of message content in a chat generation request, all messages together.
pub const MAX_CHAT_BYTES: usize = 64 * 1024;
/// Most stop strings in a generation request.
pub const MAX_STOP: usize = 4;
/// Longest stop string, bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// The message roles a chat request may use.
pub const CHAT_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];
/// Longest name (model name, file name, role, backend, architecture, reason), bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest failure reason, bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// The model manifest version this code writes and reads.
pub const MODEL_MANIFEST_VERSION: u16 = 1;

/// `requested` payload of `inference:generate:v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// The model (its manifest's content id).
    pub model: ContentId,
    /// The user prompt (the operator applies the model's chat template).
    pub prompt: String,
    /// Most new tokens.
    pub max_tokens: u32,
    /// 0 = greedy; otherwise the sampling temperature.
    pub temperature: f32,
    /// Sampler seed.
    pub seed: u64,
    /// A chat to render with the model's own chat template (then `prompt` is empty). Absent in
    /// plain requests; operators before this field refuse requests that carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// `true`: feed `prompt` to the model as it is, no chat template. Absent when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub raw: bool,
    /// Nucleus sampling: sample only from the smallest set of tokens whose probability reaches
    /// this, in (0, 1]. Absent: all tokens. Unused when greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Stop generating once the text contains one of these (at most [`MAX_STOP`]); the text
    /// ends before it. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// `true`: the result carries `prompt_tokens` and `finish`. Absent when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub usage: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl GenerateRequest {
    /// A plain request: `prompt` as the user's message, none of the optional fields.
    pub fn plain(
        model: ContentId,
        prompt: String,
        max_tokens: u32,
        temperature: f32,
        seed: u64,
    ) -> Self {
        Self {
            model,
            prompt,
            max_tokens,
            temperature,
            seed,
            messages: None,
            raw: false,
            top_p: None,
            stop: Vec::new(),
            usage: false,
        }
    }
}

/// One message of a chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// One of [`CHAT_ROLES`].
    pub role: String,
    /// The text.
    pub content: String,
}

/// `processing` payload of `inference:generate:v1`: the next piece of text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenChunk {
    /// 0 for the first chunk, then +1.
    pub index: u32,
    /// The text.
    pub text: String,
}

/// `completed` payload of `inference:generate:v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateResult {
    /// The new token ids.
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// `cpu` or `cuda`.
    pub backend: String,
    /// The operator's generation digest (see `warren-inference`'s `digest`).
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
    /// Milliseconds the operator spent on the job.
    pub compute_ms: u32,
    /// Tokens of the prompt after templating; present when the request asked for `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// Why generation ended, `stop` (a stop token or string) or `length` (`max_tokens`);
    /// present when the request asked for `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<String>,
}

/// `requested` payload of `inference:embed:v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// The model (its manifest's content id).
    pub model: ContentId,
    /// The texts, at most [`MAX_TEXTS`].
    pub texts: Vec<String>,
}

/// `completed` payload of `inference:embed:v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedResult {
    /// Components per vector.
    pub dim: u32,
    /// All vectors, in text order, as f32 little-endian: `texts × dim × 4` bytes.
    #[serde(with = "serde_bytes")]
    pub vectors: Vec<u8>,
    /// `cpu` or `cuda`.
    pub backend: String,
    /// Milliseconds the operator spent on the job.
    pub compute_ms: u32,
}

/// `failed` payload of either job kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFailure {
    /// Why, in one word: `busy`, `unknown-model`, `limit`, `bad-request`, `error`.
    pub code: String,
    /// Details for a person.
    pub reason: String,
}

/// Role of a file in a model.
pub mod role {
    /// safetensors weights (BERT).
    pub const WEIGHTS: &str = "weights";
    /// `tokenizer.json`.
    pub const TOKENIZER: &str = "tokenizer";
    /// `config.json`.
    pub const CONFIG: &str = "config";
    /// A GGUF file: weights and tokenizer together.
    pub const GGUF: &str = "gguf";
}

/// One file of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFileEntry {
    /// Its role ([`role`]).
    pub role: String,
    /// File name (no directories).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole file.
    #[serde(with = "serde_bytes")]
    pub blake3: Vec<u8>,
    /// Its content id on the storage mesh.
    pub content: ContentId,
}

/// A model published on the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// [`MODEL_MANIFEST_VERSION`].
    pub version: u16,
    /// Human name, e.g. `smollm2-135m-instruct`.
    pub name: String,
    /// `embed` or `generate`.
    pub kind: String,
    /// `bert` or `llama`.
    pub architecture: String,
    /// Its files.
    pub files: Vec<ModelFileEntry>,
}

fn check_len(what: &'static str, field: String, len: usize, max: usize) -> Result<(), Error> {
    if len > max {
        return Err(Error::TooLong {
            subject: Subject::Inference(what),
            field,
            len,
            max,
        });
    }
    Ok(())
}

fn invalid(what: &'static str, field: &str, reason: &str) -> Error {
    Error::InvalidField {
        subject: Subject::Inference(what),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

macro_rules! codec_impl {
    ($ty:ty, $what:literal, $limit:expr) => {
        impl $ty {
            /// What errors call this message.
            pub const WHAT: &'static str = $what;

            /// Encodes after checking the field limits.
            pub fn encode(&self) -> Result<Vec<u8>, Error> {
                self.validate()?;
                let bytes = codec::encode(self, $what)?;
                if bytes.len() > $limit {
                    return Err(Error::TooLarge {
                        what: $what,
                        len: bytes.len(),
                        limit: $limit,
                    });
                }
                Ok(bytes)
            }

            /// Decodes (size limit first, canonical form, no trailing bytes) and checks the field
            /// limits.
            pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
                let v: Self = codec::decode(bytes, $limit, $what)?;
                v.validate()?;
                Ok(v)
            }
        }
    };
}

codec_impl!(GenerateRequest, "generate request", MAX_JOB_PAYLOAD);
codec_impl!(TokenChunk, "token chunk", MAX_JOB_PAYLOAD);
codec_impl!(GenerateResult, "generate result", MAX_JOB_PAYLOAD);
codec_impl!(EmbedRequest, "embed request", MAX_JOB_PAYLOAD);
codec_impl!(EmbedResult, "embed result", MAX_JOB_PAYLOAD);
codec_impl!(JobFailure, "job failure", MAX_JOB_PAYLOAD);
codec_impl!(ModelManifest, "model manifest", MAX_MODEL_MANIFEST_SIZE);

impl GenerateRequest {
    fn validate(&self) -> Result<(), Error> {
        check_len(
            Self::WHAT,
            "prompt".into(),
            self.prompt.len(),
            MAX_TEXT_BYTES,
        )?;
        if self.max_tokens == 0 || self.max_tokens > MAX_NEW_TOKENS {
            return Err(invalid(Self::WHAT, "max_tokens", "must be 1 to 4096"));
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(invalid(
                Self::WHAT,
                "temperature",
                "must be finite and not negative",
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(invalid(Self::WHAT, "top_p", "must be in (0, 1]"));
        }
        if self.stop.len() > MAX_STOP {
            return Err(Error::TooMany {
                subject: Subject::Inference(Self::WHAT),
                field: "stop",
                count: self.stop.len(),
                max: MAX_STOP,
            });
        }
        for (i, s) in self.stop.iter().enumerate() {
            check_len(Self::WHAT, format!("stop[{i}]"), s.len(), MAX_STOP_BYTES)?;
            if s.is_empty() {
                return Err(invalid(
                    Self::WHAT,
                    "stop",
                    "stop strings must not be empty",
                ));
            }
        }
        if let Some(messages) = &self.messages {
            if self.raw || !self.prompt.is_empty() {
                return Err(invalid(
                    Self::WHAT,
                    "messages",
                    "a chat request has an empty prompt and no raw flag",
                ));
            }
            if messages.is_empty() || messages.len() > MAX_MESSAGES {
                return Err(invalid(
                    Self::WHAT,
                    "messages",
                    "must hold 1 to 256 messages",
                ));
            }
            let mut total = 0usize;
            for (i, m) in messages.iter().enumerate() {
                if !CHAT_ROLES.contains(&m.role.as_str()) {
                    return Err(invalid(
                        Self::WHAT,
                        &format!("messages[{i}].role"),
                        "must be system, user, assistant or tool",
                    ));
                }
                total += m.content.len();
            }
            check_len(Self::WHAT, "messages".into(), total, MAX_CHAT_BYTES)?;
        }
        Ok(())
    }
}

impl TokenChunk {
    fn validate(&self) -> Result<(), Error> {
        check_len(Self::WHAT, "text".into(), self.text.len(), MAX_TEXT_BYTES)
    }
}

fn check_backend(what: &'static str, backend: &str) -> Result<(), Error> {
    if matches!(backend, "cpu" | "cuda") {
        Ok(())
    } else {
        Err(invalid(what, "backend", "must be cpu or cuda"))
    }
}

impl GenerateResult {
    fn validate(&self) -> Result<(), Error> {
        check_backend(Self::WHAT, &self.backend)?;
        if let Some(f) = &self.finish
            && !matches!(f.as_str(), "stop" | "length")
        {
            return Err(invalid(Self::WHAT, "finish", "must be stop or length"));
        }
        if self.digest.len() != 32 {
            return Err(invalid(Self::WHAT, "digest", "must be 32 bytes"));
        }
        if self.tokens.len() > MAX_NEW_TOKENS as usize {
            return Err(Error::TooMany {
                subject: Subject::Inference(Self::WHAT),
                field: "tokens",
                count: self.tokens.len(),
                max: MAX_NEW_TOKENS as usize,
            });
        }
        Ok(())
    }
}

impl EmbedRequest {
    fn validate(&self) -> Result<(), Error> {
        if self.texts.is_empty() || self.texts.len() > MAX_TEXTS {
            return Err(invalid(Self::WHAT, "texts", "must hold 1 to 256 texts"));
        }
        for (i, t) in self.texts.iter().enumerate() {
            check_len(Self::WHAT, format!("texts[{i}]"), t.len(), MAX_TEXT_BYTES)?;
        }
        Ok(())
    }
}

impl EmbedResult {
    fn validate(&self) -> Result<(), Error> {
        check_backend(Self::WHAT, &self.backend)?;
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(invalid(Self::WHAT, "dim", "must be 1 to 4096"));
        }
        if !self.vectors.len().is_multiple_of(self.dim as usize * 4) {
            return Err(invalid(
                Self::WHAT,
                "vectors",
                "length must be a multiple of dim × 4",
            ));
        }
        Ok(())
    }

    /// Packs vectors of equal length `dim`.
    pub fn pack(vectors: &[Vec<f32>]) -> Vec<u8> {
        vectors
            .iter()
            .flat_map(|v| v.iter().flat_map(|x| x.to_le_bytes()))
            .collect()
    }

    /// The vectors, unpacked.
    pub fn unpack(&self) -> Vec<Vec<f32>> {
        let dim = self.dim.max(1) as usize;
        self.vectors
            .chunks_exact(dim * 4)
            .map(|v| {
                v.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect()
    }
}

impl JobFailure {
    fn validate(&self) -> Result<(), Error> {
        check_len(Self::WHAT, "code".into(), self.code.len(), MAX_NAME_BYTES)?;
        check_len(
            Self::WHAT,
            "reason".into(),
            self.reason.len(),
            MAX_REASON_BYTES,
        )
    }
}

impl ModelManifest {
    fn validate(&self) -> Result<(), Error> {
        if self.version != MODEL_MANIFEST_VERSION {
            return Err(Error::UnsupportedVersion {
                subject: Subject::Inference(Self::WHAT),
                found: self.version,
                supported: MODEL_MANIFEST_VERSION,
            });
        }
        check_len(Self::WHAT, "name".into(), self.name.len(), MAX_NAME_BYTES)?;
        if !matches!(self.kind.as_str(), "embed" | "generate") {
            return Err(invalid(Self::WHAT, "kind", "must be embed or generate"));
        }
        check_len(
            Self::WHAT,
            "architecture".into(),
            self.architecture.len(),
            MAX_NAME_BYTES,
        )?;
        if self.files.is_empty() || self.files.len() > MAX_MODEL_FILES {
            return Err(invalid(Self::WHAT, "files", "must hold 1 to 16 files"));
        }
        for (i, f) in self.files.iter().enumerate() {
            check_len(
                Self::WHAT,
                format!("files[{i}].role"),
                f.role.len(),
                MAX_NAME_BYTES,
            )?;
            check_len(
                Self::WHAT,
                format!("files[{i}].name"),
                f.name.len(),
                MAX_NAME_BYTES,
            )?;
            if f.name.is_empty() || f.name.contains(['/', '\\']) || f.name.starts_with('.') {
                return Err(invalid(
                    Self::WHAT,
                    &format!("files[{i}].name"),
                    "must be a plain file name",
                ));
            }
            if f.blake3.len() != 32 {
                return Err(invalid(
                    Self::WHAT,
                    &format!("files[{i}].blake3"),
                    "must be 32 bytes",
                ));
            }
        }
        Ok(())
    }

    /// The first file with `role`.
    pub fn file(&self, role: &str) -> Option<&ModelFileEntry> {
        self.files.iter().find(|f| f.role == role)
    }
}

/// The event types of the two job kinds.
pub fn event(kind: &str, state: crate::State) -> Result<EventType, Error> {
    format!("inference:{kind}:v1:{}", state.as_str()).parse()
}

/// Frames one encoded envelope for the job stream: u32 big-endian length, then the bytes.
pub fn frame(envelope: &[u8]) -> Result<Vec<u8>, Error> {
    if envelope.len() > MAX_ENVELOPE_SIZE {
        return Err(Error::TooLarge {
            what: "job frame",
            len: envelope.len(),
            limit: MAX_ENVELOPE_SIZE,
        });
    }
    let mut out = Vec::with_capacity(4 + envelope.len());
    out.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
    out.extend_from_slice(envelope);
    Ok(out)
}

/// Reads a frame header, refusing lengths over [`MAX_ENVELOPE_SIZE`] before anything is buffered.
pub fn frame_len(header: [u8; 4]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_ENVELOPE_SIZE {
        return Err(Error::TooLarge {
            what: "job frame",
            len,
            limit: MAX_ENVELOPE_SIZE,
        });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use proptest::prelude::*;

    fn model() -> ContentId {
        ContentId::of_block(Codec::Raw, b"model")
    }

    #[test]
    fn limits_are_enforced_both_ways() {
        let mut r = GenerateRequest::plain(model(), "hi".into(), 0, 0.0, 0);
        assert!(r.encode().is_err());
        r.max_tokens = 8;
        let bytes = r.encode().unwrap();
        assert_eq!(GenerateRequest::decode(&bytes).unwrap(), r);
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            GenerateRequest::decode(&long),
            Err(Error::TrailingBytes { .. })
        ));
        let e = EmbedRequest {
            model: model(),
            texts: vec![],
        };
        assert!(e.encode().is_err());
        assert!(frame_len((MAX_ENVELOPE_SIZE as u32 + 1).to_be_bytes()).is_err());
    }

    #[test]
    fn chat_fields_are_optional_and_checked() {
        let plain = GenerateRequest::plain(model(), "hi".into(), 8, 0.0, 0);
        let mut chat = plain.clone();
        chat.prompt.clear();
        chat.messages = Some(vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            },
        ]);
        chat.top_p = Some(0.9);
        chat.stop = vec!["\n\n".into()];
        chat.usage = true;
        let bytes = chat.encode().unwrap();
        assert_eq!(GenerateRequest::decode(&bytes).unwrap(), chat);
        // The optional fields are absent from a plain request's encoding.
        let plain_bytes = plain.encode().unwrap();
        assert!(!plain_bytes.windows(8).any(|w| w == b"messages"));
        let mut bad = chat.clone();
        bad.prompt = "also".into();
        assert!(bad.encode().is_err(), "messages and prompt together");
        let mut bad = chat.clone();
        bad.messages = Some(vec![ChatMessage {
            role: "root".into(),
            content: String::new(),
        }]);
        assert!(bad.encode().is_err(), "unknown role");
        let mut bad = chat.clone();
        bad.top_p = Some(0.0);
        assert!(bad.encode().is_err(), "top_p 0");
        let mut bad = chat.clone();
        bad.stop = vec!["a".into(); MAX_STOP + 1];
        assert!(bad.encode().is_err(), "too many stops");
        let mut bad = chat;
        bad.stop = vec![String::new()];
        assert!(bad.encode().is_err(), "empty stop");
        let r = GenerateResult {
            tokens: vec![1],
            text: "a".into(),
            backend: "cpu".into(),
            digest: vec![0; 32],
            compute_ms: 1,
            prompt_tokens: Some(3),
            finish: Some("maybe".into()),
        };
        assert!(r.encode().is_err(), "unknown finish reason");
    }

    #[test]
    fn embed_vectors_pack_and_unpack() {
        let v = vec![vec![1.0f32, -2.5], vec![0.125, 3.0]];
        let r = EmbedResult {
            dim: 2,
            vectors: EmbedResult::pack(&v),
            backend: "cpu".into(),
            compute_ms: 3,
        };
        let back = EmbedResult::decode(&r.encode().unwrap()).unwrap();
        assert_eq!(back.unpack(), v);
    }

    proptest! {
        #[test]
        fn generate_request_round_trips(prompt in ".{0,64}", max in 1u32..4096, t in 0.0f32..4.0, seed: u64) {
            let r = GenerateRequest::plain(model(), prompt, max, t, seed);
            let bytes = r.encode().unwrap();
            prop_assert_eq!(GenerateRequest::decode(&bytes).unwrap(), r);
        }

        #[test]
        fn embed_request_round_trips(texts in proptest::collection::vec(".{0,32}", 1..8)) {
            let r = EmbedRequest { model: model(), texts };
            prop_assert_eq!(EmbedRequest::decode(&r.encode().unwrap()).unwrap(), r);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = GenerateRequest::decode(&bytes);
            let _ = GenerateResult::decode(&bytes);
            let _ = EmbedRequest::decode(&bytes);
            let _ = EmbedResult::decode(&bytes);
            let _ = TokenChunk::decode(&bytes);
            let _ = JobFailure::decode(&bytes);
            let _ = ModelManifest::decode(&bytes);
        }
    }
}
