//! A tiny llama-architecture GGUF model made from a fixed seed, for fast tests of the loader and
//! the decoding loop without the real weights.
//!
//! The file is a complete GGUF (version 2, as candle's writer emits) with llama metadata, F32
//! tensors filled from a xorshift generator, and a GPT-2-style byte-level BPE tokenizer: the 256
//! byte symbols, a few merges, and `<|endoftext|>` as end of sequence. Its output is nonsense but
//! deterministic, which is all a loader test needs.

use std::io::{Seek, Write};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

/// Embedding width of the tiny model.
pub const TINY_DIM: usize = 32;
/// Its layers.
pub const TINY_LAYERS: usize = 2;
/// Its feed-forward width.
pub const TINY_FFN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const MERGES: [(&str, &str); 4] = [("h", "e"), ("l", "l"), ("o", "Ġ"), ("Ġ", "t")];

/// GPT-2's printable stand-in for each byte (`bytes_to_unicode`).
fn byte_symbols() -> Vec<String> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            let c = if printable.contains(&b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).map(String::from).unwrap_or_default()
        })
        .collect()
}

struct XorShift(u64);

impl XorShift {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
    }
}

/// Writes the tiny model, its weights drawn from `seed`, to `w`.
pub fn write_tiny_llama<W: Write + Seek>(w: &mut W, seed: u64) -> candle_core::Result<()> {
    let mut tokens = byte_symbols();
    for (a, b) in MERGES {
        tokens.push(format!("{a}{b}"));
    }
    let eos = tokens.len() as u32;
    tokens.push("<|endoftext|>".to_string());
    let vocab = tokens.len();
    let mut rng = XorShift(seed.max(1));
    let mut tensor = |name: String, dims: &[usize]| -> candle_core::Result<(String, QTensor)> {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| rng.next_f32()).collect()
        };
        let t = Tensor::from_vec(data, dims, &Device::Cpu)?;
        Ok((name, QTensor::quantize(&t, GgmlDType::F32)?))
    };
    let head_dim = TINY_DIM / HEADS;
    let mut tensors = vec![
        tensor("token_embd.weight".into(), &[vocab, TINY_DIM])?,
        tensor("output_norm.weight".into(), &[TINY_DIM])?,
        tensor("output.weight".into(), &[vocab, TINY_DIM])?,
    ];
    for i in 0..TINY_LAYERS {
        let p = format!("blk.{i}");
        tensors.push(tensor(format!("{p}.attn_q.weight"), &[TINY_DIM, TINY_DIM])?);
        tensors.push(tensor(
            format!("{p}.attn_k.weight"),
            &[KV_HEADS * head_dim, TINY_DIM],
        )?);
        tensors.push(tensor(
            format!("{p}.attn_v.weight"),
            &[KV_HEADS * head_dim, TINY_DIM],
        )?);
        tensors.push(tensor(
            format!("{p}.attn_output.weight"),
            &[TINY_DIM, TINY_DIM],
        )?);
        tensors.push(tensor(
            format!("{p}.ffn_gate.weight"),
            &[TINY_FFN, TINY_DIM],
        )?);
        tensors.push(tensor(
            format!("{p}.ffn_down.weight"),
            &[TINY_DIM, TINY_FFN],
        )?);
        tensors.push(tensor(format!("{p}.ffn_up.weight"), &[TINY_FFN, TINY_DIM])?);
        tensors.push(tensor(format!("{p}.attn_norm.weight"), &[TINY_DIM])?);
        tensors.push(tensor(format!("{p}.ffn_norm.weight"), &[TINY_DIM])?);
    }
    use gguf_file::Value;
    let s = |v: &str| Value::String(v.to_string());
    let metadata = vec![
        ("general.architecture", s("llama")),
        ("general.name", s("warren-tiny-llama")),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.block_count", Value::U32(TINY_LAYERS as u32)),
        ("llama.embedding_length", Value::U32(TINY_DIM as u32)),
        ("llama.feed_forward_length", Value::U32(TINY_FFN as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.context_length", Value::U32(256)),
        ("tokenizer.ggml.model", s("gpt2")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(MERGES.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect()),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(eos)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(w, &metadata, &tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::digest::generation_digest;
    use crate::files::{ModelFile, hash_file};
    use crate::generate::{GenerateParams, Generator};

    fn write(dir: &std::path::Path, seed: u64) -> std::path::PathBuf {
        let path = dir.join(format!("tiny-{seed}.gguf"));
        let mut f = std::fs::File::create(&path).unwrap();
        write_tiny_llama(&mut f, seed).unwrap();
        path
    }

    #[test]
    fn tiny_model_loads_and_decodes_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 7);
        let hash = hash_file(&path).unwrap();
        assert_eq!(
            hash,
            hash_file(&write(dir.path(), 7)).unwrap(),
            "same seed, same file"
        );
        assert_ne!(hash, hash_file(&write(dir.path(), 8)).unwrap());

        let mut g =
            Generator::load("tiny", &ModelFile::checked(&path, hash), Backend::Cpu).unwrap();
        assert_eq!(
            g.templated("hello"),
            "hello",
            "no chat template in the tiny model"
        );
        let params = GenerateParams::greedy(12);
        let mut streamed = String::new();
        let a = g
            .generate("hello the", &params, |piece| {
                streamed.push_str(piece);
                true
            })
            .unwrap();
        assert!(!a.tokens.is_empty() && a.tokens.len() <= 12);
        assert_eq!(streamed, a.text, "the streamed pieces add up to the text");
        assert!(
            a.prompt_tokens >= 2,
            "merges shorten but do not erase the prompt"
        );
        let b = g.generate("hello the", &params, |_| true).unwrap();
        assert_eq!(
            a, b,
            "greedy decoding repeats itself (the KV cache is reset)"
        );
        let digest = |t: &[u32]| generation_digest(&hash, Backend::Cpu, "hello the", &params, t);
        assert_eq!(digest(&a.tokens), digest(&b.tokens));

        let sampled = GenerateParams {
            max_tokens: 12,
            temperature: 1.0,
            seed: 42,
            top_p: None,
            stop: Vec::new(),
        };
        let s1 = g.generate("hello the", &sampled, |_| true).unwrap();
        let s2 = g.generate("hello the", &sampled, |_| true).unwrap();
        let nucleus = GenerateParams {
            top_p: Some(0.5),
            ..sampled.clone()
        };
        let n1 = g.generate("hello the", &nucleus, |_| true).unwrap();
        assert_eq!(n1, g.generate("hello the", &nucleus, |_| true).unwrap());

        // A stop string: the text ends before it, the pieces never show it.
        let skip = a.text.char_indices().nth(2).map(|(i, _)| i).unwrap_or(0);
        let stop: String = a.text[skip..].chars().take(2).collect();
        if !stop.is_empty() {
            let cut = a.text.find(&stop).unwrap();
            let stopping = GenerateParams {
                stop: vec![stop.clone()],
                ..params.clone()
            };
            let mut pieces = String::new();
            let st = g
                .generate("hello the", &stopping, |p| {
                    pieces.push_str(p);
                    true
                })
                .unwrap();
            assert_eq!(st.text, a.text[..cut], "stop {stop:?} in {:?}", a.text);
            assert_eq!(pieces, st.text);
            assert_eq!(st.finish, crate::generate::Finish::Stop);
        }
        assert_eq!(s1, s2, "seeded sampling repeats itself");

        let mut n = 0;
        let cancelled = g
            .generate("hello the", &params, |_| {
                n += 1;
                n < 2
            })
            .unwrap();
        assert!(cancelled.tokens.len() < a.tokens.len() || a.tokens.len() <= 2);
    }

    #[test]
    fn a_tampered_model_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 7);
        let other = hash_file(&write(dir.path(), 8)).unwrap();
        let err =
            Generator::load("tiny", &ModelFile::checked(&path, other), Backend::Cpu).unwrap_err();
        assert!(matches!(err, crate::Error::HashMismatch { .. }), "{err}");
    }
}
