//! Sentence embeddings with a BERT encoder (e.g. all-MiniLM-L6-v2): tokenize with padding, run
//! the encoder, mean-pool the last hidden state over the attention mask, L2-normalise.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::backend::Backend;
use crate::error::{self, Error, Result};
use crate::files::ModelFile;

/// Longest input, in tokens, an embedding job reads; longer texts are truncated (the
/// sentence-transformers default for MiniLM).
pub const MAX_EMBED_TOKENS: usize = 256;

/// The files of a BERT embedding model.
#[derive(Clone, Debug)]
pub struct EmbedFiles {
    /// `model.safetensors`.
    pub weights: ModelFile,
    /// `tokenizer.json`.
    pub tokenizer: ModelFile,
    /// `config.json` (Hugging Face BERT config).
    pub config: ModelFile,
}

/// A loaded embedding model.
pub struct Embedder {
    name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    backend: Backend,
    dim: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("dim", &self.dim)
            .finish()
    }
}

impl Embedder {
    /// Loads the model, checking each file's hash where one is given.
    pub fn load(name: &str, files: &EmbedFiles, backend: Backend) -> Result<Self> {
        let device = backend.device()?;
        let config_bytes = files.config.read()?;
        let config: Config = serde_json::from_slice(&config_bytes).map_err(|e| Error::Load {
            model: name.to_string(),
            detail: format!("config.json: {e}"),
        })?;
        let dim = hidden_size(&config_bytes).ok_or_else(|| Error::Load {
            model: name.to_string(),
            detail: "config.json has no hidden_size".to_string(),
        })?;
        let mut tokenizer =
            Tokenizer::from_bytes(files.tokenizer.read()?).map_err(error::tokenizer(name))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_EMBED_TOKENS,
                ..Default::default()
            }))
            .map_err(error::tokenizer(name))?;
        let vb = VarBuilder::from_buffered_safetensors(files.weights.read()?, DType::F32, &device)
            .map_err(error::candle(name))?;
        let model = BertModel::load(vb, &config).map_err(error::candle(name))?;
        Ok(Self {
            name: name.to_string(),
            model,
            tokenizer,
            device,
            backend,
            dim,
        })
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Length of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds a batch of texts: one unit-length vector per text, in order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let name = self.name.as_str();
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(error::tokenizer(name))?;
        let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<Vec<u32>> = encodings
            .iter()
            .map(|e| e.get_attention_mask().to_vec())
            .collect();
        let c = error::candle(name);
        let ids = Tensor::new(ids, &self.device).map_err(&c)?;
        let mask = Tensor::new(mask, &self.device).map_err(&c)?;
        let token_types = ids.zeros_like().map_err(&c)?;
        let hidden = self
            .model
            .forward(&ids, &token_types, Some(&mask))
            .map_err(&c)?;
        let pooled = mean_pool(&hidden, &mask).map_err(&c)?;
        let norm = pooled
            .sqr()
            .and_then(|t| t.sum_keepdim(1))
            .and_then(|t| t.sqrt())
            .map_err(&c)?;
        pooled
            .broadcast_div(&norm)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(&c)
    }
}

/// Mean of `hidden` (batch, seq, dim) over the positions where `mask` (batch, seq) is 1.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?;
    summed.broadcast_div(&counts)
}

fn hidden_size(config: &[u8]) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    v.get("hidden_size")?.as_u64().map(|n| n as usize)
}

/// Largest safetensors header read, bytes (the format's own limit is 100 MB).
pub const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// The parameter count of a safetensors file: the elements of its tensors (the shapes in its
/// header, multiplied out) summed, whatever their dtype. Only the header is read: the 8-byte
/// little-endian length, then that many bytes of JSON.
pub fn safetensors_parameters(path: &std::path::Path) -> Result<u64> {
    let f = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    safetensors_parameters_from(std::io::BufReader::new(f), &path.display().to_string())
}

/// [`safetensors_parameters`] of the file whose first bytes `r` gives (at least the 8-byte
/// length and the header; the tensors' data is not read). `what` names the file in errors.
pub fn safetensors_parameters_from(r: impl std::io::Read, what: &str) -> Result<u64> {
    use std::io::Read;
    let mut r = r;
    let bad = |detail: String| Error::Load {
        model: what.to_owned(),
        detail,
    };
    let mut len = [0u8; 8];
    r.read_exact(&mut len)
        .map_err(|e| bad(format!("the safetensors length: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_SAFETENSORS_HEADER {
        return Err(bad(format!("a safetensors header of {len} bytes")));
    }
    let mut header = Vec::new();
    r.take(len)
        .read_to_end(&mut header)
        .map_err(|e| bad(format!("the safetensors header: {e}")))?;
    if header.len() as u64 != len {
        return Err(bad(format!(
            "the safetensors header is cut short: {} of {len} bytes",
            header.len()
        )));
    }
    header_parameters(&header).map_err(bad)
}

/// How many bytes from the start of a safetensors file hold its header, given the file's first
/// eight bytes (the header's length): `8 + length`, or why the header is refused.
pub fn safetensors_header_end(first: [u8; 8]) -> std::result::Result<u64, String> {
    let len = u64::from_le_bytes(first);
    if len > MAX_SAFETENSORS_HEADER {
        return Err(format!("a safetensors header of {len} bytes"));
    }
    Ok(8 + len)
}

/// [`safetensors_parameters`] of the JSON header `header`.
fn header_parameters(header: &[u8]) -> std::result::Result<u64, String> {
    let v: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("safetensors header: {e}"))?;
    let tensors = v.as_object().ok_or("the safetensors header is not a map")?;
    let mut total: u64 = 0;
    for (name, t) in tensors.iter().filter(|(n, _)| *n != "__metadata__") {
        let shape = t["shape"]
            .as_array()
            .ok_or_else(|| format!("tensor {name} has no shape"))?;
        let mut n: u64 = 1;
        for d in shape {
            let d = d
                .as_u64()
                .ok_or_else(|| format!("tensor {name}: a dimension is not a count"))?;
            n = n.saturating_mul(d);
        }
        total = total.saturating_add(n);
    }
    Ok(total)
}

/// What a requester needs to size an embedding job an operator ran for it: the model's
/// parameter count (from the safetensors header) and its tokenizer, to count the tokens of the
/// texts it sent as the operator reads them (never the operator's count).
pub struct EmbedSizer {
    parameters: u64,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for EmbedSizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedSizer")
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

impl EmbedSizer {
    /// Reads the parameter count of `weights` and the tokenizer `tokenizer` of model `name`.
    pub fn load(
        name: &str,
        weights: &std::path::Path,
        tokenizer: &std::path::Path,
    ) -> Result<Self> {
        let parameters = safetensors_parameters(weights)?;
        let bytes = std::fs::read(tokenizer).map_err(|source| Error::Io {
            path: tokenizer.to_owned(),
            source,
        })?;
        Self::new(name, parameters, bytes)
    }

    /// A sizer of model `name` from its parameter count and its `tokenizer.json` bytes.
    pub fn new(name: &str, parameters: u64, tokenizer: Vec<u8>) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(tokenizer).map_err(error::tokenizer(name))?;
        Ok(Self {
            parameters,
            tokenizer,
        })
    }

    /// The model's parameter count.
    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// The tokens an embedding job reads of `texts`: each text with the special tokens the
    /// embedder adds, truncated at [`MAX_EMBED_TOKENS`], padding not counted.
    pub fn count_tokens(&self, texts: &[String]) -> u64 {
        texts
            .iter()
            .filter_map(|t| self.tokenizer.encode(t.as_str(), true).ok())
            .map(|e| e.len().min(MAX_EMBED_TOKENS) as u64)
            .sum()
    }
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_parameters_are_the_shapes_multiplied_out_and_summed() {
        let header = br#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]},"b":{"dtype":"F16","shape":[5],"data_offsets":[48,58]},"c":{"dtype":"F32","shape":[],"data_offsets":[58,62]}}"#;
        assert_eq!(header_parameters(header), Ok(12 + 5 + 1));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("model.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 62]);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(safetensors_parameters(&path).ok(), Some(18));
        assert!(header_parameters(br#"{"a":{"dtype":"F32"}}"#).is_err());
        assert!(header_parameters(b"[1]").is_err());
        let huge = dir.path().join("huge.safetensors");
        std::fs::write(&huge, u64::MAX.to_le_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(safetensors_parameters(&huge).is_err());
        // From the first bytes only, as a requester reads them off the mesh.
        let end = safetensors_header_end(bytes[..8].try_into().unwrap_or_default());
        assert_eq!(end, Ok(8 + header.len() as u64));
        let prefix = &bytes[..8 + header.len()];
        assert_eq!(safetensors_parameters_from(prefix, "t").ok(), Some(18));
        assert!(safetensors_parameters_from(&prefix[..prefix.len() - 1], "t").is_err());
        assert!(safetensors_header_end(u64::MAX.to_le_bytes()).is_err());
    }
}
