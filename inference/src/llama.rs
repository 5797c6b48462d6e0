//! The llama-family decoder (Llama, SmolLM, Qwen2, Mistral, … in GGUF) that the CPU executor
//! runs, with its linear layers able to use warren's own `Q4_1` and `Q8_0` kernels
//! ([`crate::qmatrix`]).
//!
//! Adapted from candle-transformers' `quantized_llama` (MIT or Apache-2.0, as candle), which is
//! what the executor used before: the same weights, RoPE conventions, attention and KV cache,
//! for dense models only (a mixture-of-experts file is loaded with candle's own model by
//! [`crate::generate`]). The one change is [`Linear`]: a `Q4_1` or `Q8_0` weight on the CPU is kept as
//! the file stores it and multiplied by [`QMatrix`]; every other weight goes through candle's
//! `QMatMul` as before.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::{Embedding, Module};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::{build_causal_mask, repeat_kv};

use crate::qmatrix::QMatrix;

/// The longest sequence (prompt and generated tokens) a model runs.
pub const MAX_SEQ_LEN: usize = candle_transformers::models::quantized_llama::MAX_SEQ_LEN;

/// A weight matrix applied as `x · Wᵀ` (shared by clones of the model).
#[derive(Clone, Debug)]
enum Linear {
    /// `Q4_1` or `Q8_0` on the CPU: warren's kernels.
    Own(Arc<QMatrix>),
    /// Any other type or device: candle's quantized matmul.
    Candle(QMatMul),
}

impl Linear {
    fn new(t: QTensor, own_kernels: bool) -> Result<Self> {
        if own_kernels && let Some(m) = QMatrix::from_qtensor(&t) {
            return Ok(Self::Own(Arc::new(m)));
        }
        Ok(Self::Candle(QMatMul::from_qtensor(t)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Own(m) => m.forward(x),
            Self::Candle(m) => m.forward(x),
        }
    }
}

#[derive(Clone, Debug)]
struct Mlp {
    gate: Linear,
    down: Linear,
    up: Linear,
}

impl Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = self.gate.forward(xs)?;
        let up = self.up.forward(xs)?;
        self.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)
    }
}

#[derive(Clone, Debug)]
struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attention_norm: RmsNorm,
    mlp: Mlp,
    ffn_norm: RmsNorm,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    /// RoPE convention: NEOX pairs i with i + d/2 (Qwen, Phi, …), NORM pairs 2i with 2i + 1
    /// (Llama, Mistral, …), as llama.cpp's `llama_model_rope_type`.
    rope_is_neox: bool,
    cos: Tensor,
    sin: Tensor,
    neg_inf: Tensor,
    kv_cache: Option<(Tensor, Tensor)>,
}

impl Layer {
    fn rotary(&self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (_b, _h, seq_len, _d) = x.dims4()?;
        let cos = self.cos.narrow(0, index_pos, seq_len)?;
        let sin = self.sin.narrow(0, index_pos, seq_len)?;
        let x = x.contiguous()?;
        if self.rope_is_neox {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)
        }
    }

    fn attention(&mut self, x: &Tensor, mask: Option<&Tensor>, index_pos: usize) -> Result<Tensor> {
        let (b, seq_len, n_embd) = x.dims3()?;
        let q = self
            .wq
            .forward(x)?
            .reshape((b, seq_len, self.n_head, self.head_dim))?
            .transpose(1, 2)?;
        let k = self
            .wk
            .forward(x)?
            .reshape((b, seq_len, self.n_kv_head, self.head_dim))?
            .transpose(1, 2)?;
        let v = self
            .wv
            .forward(x)?
            .reshape((b, seq_len, self.n_kv_head, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.rotary(&q, index_pos)?;
        let k = self.rotary(&k, index_pos)?;
        let (k, v) = match &self.kv_cache {
            Some((k_cache, v_cache)) if index_pos > 0 => (
                Tensor::cat(&[k_cache, &k], 2)?,
                Tensor::cat(&[v_cache, &v], 2)?,
            ),
            _ => (k, v),
        };
        self.kv_cache = Some((k.clone(), v.clone()));
        let k = repeat_kv(k, self.n_head / self.n_kv_head)?;
        let v = repeat_kv(v, self.n_head / self.n_kv_head)?;
        let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let att = match mask {
            None => att,
            Some(mask) => {
                let mask = mask.broadcast_as(att.shape())?;
                mask.where_cond(&self.neg_inf.broadcast_as(mask.shape().dims())?, &att)?
            }
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape(&[b, seq_len, n_embd])?;
        self.wo.forward(&y)
    }
}

/// A loaded model with its KV cache (clones share the weights, each has its own cache).
#[derive(Clone, Debug)]
pub struct Llama {
    tok_embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    masks: HashMap<(usize, usize), Tensor>,
}

/// Architectures whose RoPE is NEOX-style (llama.cpp's `LLAMA_ROPE_TYPE_NEOX`).
const NEOX_ARCHITECTURES: &[&str] = &[
    "qwen",
    "qwen2",
    "qwen2moe",
    "qwen3",
    "qwen3moe",
    "falcon",
    "grok",
    "dbrx",
    "phi2",
    "phi3",
    "phimoe",
    "stablelm",
    "starcoder2",
    "bert",
    "nomic-bert",
    "jina-bert-v2",
    "olmo2",
    "olmoe",
    "codeshell",
    "plamo",
];

fn rope_tables(head_dim: usize, freq_base: f32, device: &Device) -> Result<(Tensor, Tensor)> {
    let theta: Vec<_> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / freq_base.powf(i as f32 / head_dim as f32))
        .collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let idx_theta = Tensor::arange(0, MAX_SEQ_LEN as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((MAX_SEQ_LEN, 1))?
        .matmul(&theta.reshape((1, theta.elem_count()))?)?;
    Ok((idx_theta.cos()?, idx_theta.sin()?))
}

impl Llama {
    /// Whether this file is a dense model this module runs (a mixture of experts is not).
    pub fn supports(ct: &gguf_file::Content) -> bool {
        let expert_count = ct
            .metadata
            .get("llama.expert_count")
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(0);
        expert_count <= 1
    }

    /// Loads the model; `own_kernels` lets `Q4_1` and `Q8_0` weights run on warren's kernels (CPU
    /// only).
    pub fn from_gguf<R: Seek + Read>(
        ct: gguf_file::Content,
        reader: &mut R,
        device: &Device,
        own_kernels: bool,
    ) -> Result<Self> {
        let md_get = |s: &str| match ct.metadata.get(s) {
            None => candle_core::bail!("cannot find {s} in metadata"),
            Some(v) => Ok(v),
        };
        let head_count = md_get("llama.attention.head_count")?.to_u32()? as usize;
        let head_count_kv = md_get("llama.attention.head_count_kv")?.to_u32()? as usize;
        let block_count = md_get("llama.block_count")?.to_u32()? as usize;
        let embedding_length = md_get("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = md_get("llama.rope.dimension_count")?.to_u32()? as usize;
        let rms_norm_eps = md_get("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let rope_freq_base = md_get("llama.rope.freq_base")
            .and_then(|m| m.to_f32())
            .unwrap_or(10000f32);
        if head_count == 0 || head_count_kv == 0 || !head_count.is_multiple_of(head_count_kv) {
            candle_core::bail!("{head_count} attention heads for {head_count_kv} KV heads");
        }
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let rope_is_neox = NEOX_ARCHITECTURES.contains(&arch.as_str());
        let (cos, sin) = rope_tables(rope_dim, rope_freq_base, device)?;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, device)?;

        let tok_embeddings_q = ct.tensor(reader, "token_embd.weight", device)?;
        let tok_embeddings = tok_embeddings_q.dequantize(device)?;
        let norm = RmsNorm::from_qtensor(
            ct.tensor(reader, "output_norm.weight", device)?,
            rms_norm_eps,
        )?;
        let output = match ct.tensor(reader, "output.weight", device) {
            Ok(tensor) => tensor,
            Err(_) => tok_embeddings_q,
        };
        let mut layers = Vec::with_capacity(block_count);
        for i in 0..block_count {
            let mut weight = |name: &str| -> Result<Linear> {
                Linear::new(
                    ct.tensor(reader, &format!("blk.{i}.{name}.weight"), device)?,
                    own_kernels,
                )
            };
            let wq = weight("attn_q")?;
            let wk = weight("attn_k")?;
            let wv = weight("attn_v")?;
            let wo = weight("attn_output")?;
            let mlp = Mlp {
                gate: weight("ffn_gate")?,
                down: weight("ffn_down")?,
                up: weight("ffn_up")?,
            };
            let attention_norm = ct.tensor(reader, &format!("blk.{i}.attn_norm.weight"), device)?;
            let ffn_norm = ct.tensor(reader, &format!("blk.{i}.ffn_norm.weight"), device)?;
            layers.push(Layer {
                wq,
                wk,
                wv,
                wo,
                attention_norm: RmsNorm::from_qtensor(attention_norm, rms_norm_eps)?,
                mlp,
                ffn_norm: RmsNorm::from_qtensor(ffn_norm, rms_norm_eps)?,
                n_head: head_count,
                n_kv_head: head_count_kv,
                head_dim: embedding_length / head_count,
                rope_is_neox,
                cos: cos.clone(),
                sin: sin.clone(),
                neg_inf: neg_inf.clone(),
                kv_cache: None,
            })
        }
        Ok(Self {
            tok_embeddings: Embedding::new(tok_embeddings, embedding_length),
            layers,
            norm,
            output: Linear::new(output, own_kernels)?,
            masks: HashMap::new(),
        })
    }

    fn mask(&mut self, seq_len: usize, index_pos: usize, device: &Device) -> Result<Tensor> {
        let kv_len = index_pos + seq_len;
        if let Some(mask) = self.masks.get(&(seq_len, kv_len)) {
            return Ok(mask.clone());
        }
        let mask = build_causal_mask(seq_len, index_pos, device)?;
        // Prompts of many lengths would grow this without end; a few entries are all a
        // generation needs (one prompt length, then single tokens without a mask).
        if self.masks.len() >= 16 {
            self.masks.clear();
        }
        self.masks.insert((seq_len, kv_len), mask.clone());
        Ok(mask)
    }

    /// Empties the KV cache (between independent generations).
    pub fn clear_kv_cache(&mut self) {
        for layer in &mut self.layers {
            layer.kv_cache = None;
        }
    }

    /// Logits of the last position of `x` (`(batch, seq_len)` token ids) placed at `index_pos`.
    pub fn forward(&mut self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (_b, seq_len) = x.dims2()?;
        let mask = if seq_len == 1 {
            None
        } else {
            Some(self.mask(seq_len, index_pos, x.device())?)
        };
        let mut h = self.tok_embeddings.forward(x)?;
        for layer in &mut self.layers {
            let residual = &h;
            let x = layer.attention_norm.forward(&h)?;
            let x = (layer.attention(&x, mask.as_ref(), index_pos)? + residual)?;
            let residual = &x;
            let y = layer.ffn_norm.forward(&x)?;
            h = (layer.mlp.forward(&y)? + residual)?;
        }
        let x = self.norm.forward(&h)?;
        let x = x.i((.., seq_len - 1, ..))?;
        self.output.forward(&x)
    }
}
