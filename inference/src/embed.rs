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
