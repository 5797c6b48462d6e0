//! Re-quantization at load (since warren has its own `Q4_1` kernel, `crate::qmatrix`, only for the
//! other types below, and for `Q4_1` in models that candle's decoder runs): GGML block types whose CPU dot product candle runs in scalar code are
//! converted once, when a model is loaded on the CPU, to `Q8_0`, whose dot product candle runs
//! with AVX2/AVX-512 (x86) or NEON (ARM).
//!
//! Profiled on SmolLM2-135M Q4_1 (`warren-bench infer`): nearly all of a token's time went to
//! `vec_dot_q4_1_q8_1`, candle's generic scalar loop; llama.cpp has SIMD code for that type, candle
//! has it for `Q4_0`, `Q8_0` and the k-quants only. `Q8_0` keeps every value of a 4- or 5-bit block
//! to within half a step of 1/127 of the block's largest value, so the output barely moves; the
//! conversion is deterministic (the same file gives the same weights on every operator of one
//! build), which is what verification by digest needs. `WARREN_NO_REQUANT=1` in the environment of
//! the process that loads the model keeps the file's own types, to measure the difference with the
//! `gen_speed` example (a node's model workers start with a cleared environment, so it never
//! reaches them).

use std::io::Cursor;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};

use crate::error::{self, Result};

/// Block types converted to [`GgmlDType::Q8_0`] on the CPU: candle's `vec_dot` for these is the
/// scalar reference loop.
pub(crate) const SLOW_ON_CPU: [GgmlDType; 4] = [
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_1,
];

/// [`SLOW_ON_CPU`] without `Q4_1`, for the decoder that multiplies `Q4_1` with warren's own
/// kernel ([`crate::qmatrix`]).
pub(crate) const SLOW_BESIDES_Q4_1: [GgmlDType; 3] =
    [GgmlDType::Q5_0, GgmlDType::Q5_1, GgmlDType::Q8_1];

/// Whether a tensor of this type and shape is converted: a slow type whose rows split into
/// whole `Q8_0` blocks (32 values).
#[cfg(test)]
pub(crate) fn converts(dtype: GgmlDType, dims: &[usize]) -> bool {
    converts_of(&SLOW_ON_CPU, dtype, dims)
}

/// [`converts`] for a chosen list of slow types (`Q4_1` is left out where warren's own kernel
/// multiplies it, see [`crate::qmatrix`]).
pub(crate) fn converts_of(slow: &[GgmlDType], dtype: GgmlDType, dims: &[usize]) -> bool {
    slow.contains(&dtype)
        && dims
            .last()
            .is_some_and(|d| d.is_multiple_of(GgmlDType::Q8_0.block_size()))
}

/// Rewrites a GGUF model in memory with every slow tensor (see [`converts`]) as `Q8_0`, the
/// others and the metadata unchanged. Returns `None` when nothing needs converting (the file is
/// then used as it is).
#[cfg(test)]
pub(crate) fn for_cpu(
    model: &str,
    content: &gguf_file::Content,
    reader: &mut Cursor<Vec<u8>>,
) -> Result<Option<Vec<u8>>> {
    for_cpu_of(&SLOW_ON_CPU, model, content, reader)
}

/// Converts only the types in `slow` (`for_cpu` converts all of [`SLOW_ON_CPU`]).
pub(crate) fn for_cpu_of(
    slow: &[GgmlDType],
    model: &str,
    content: &gguf_file::Content,
    reader: &mut Cursor<Vec<u8>>,
) -> Result<Option<Vec<u8>>> {
    let converts = |dtype, dims: &[usize]| converts_of(slow, dtype, dims);
    if !content
        .tensor_infos
        .values()
        .any(|t| converts(t.ggml_dtype, t.shape.dims()))
    {
        return Ok(None);
    }
    let c = error::candle(model);
    let cpu = Device::Cpu;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content.tensor(reader, name, &cpu).map_err(&c)?;
        let tensor = if converts(tensor.dtype(), tensor.shape().dims()) {
            let values = tensor.dequantize(&cpu).map_err(&c)?;
            QTensor::quantize(&values, GgmlDType::Q8_0).map_err(&c)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let mut keys: Vec<&String> = content.metadata.keys().collect();
    keys.sort();
    let metadata: Vec<(&str, &gguf_file::Value)> = keys
        .into_iter()
        .filter_map(|k| content.metadata.get(k).map(|v| (k.as_str(), v)))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs).map_err(&c)?;
    Ok(Some(out.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn only_slow_types_with_whole_blocks_convert() {
        assert!(converts(GgmlDType::Q4_1, &[64, 576]));
        assert!(converts(GgmlDType::Q5_0, &[32]));
        assert!(!converts(GgmlDType::Q4_1, &[64, 48]));
        assert!(!converts(GgmlDType::Q4_0, &[64, 576]));
        assert!(!converts(GgmlDType::Q8_0, &[64, 576]));
        assert!(!converts(GgmlDType::Q6K, &[64, 576]));
        assert!(!converts(GgmlDType::F32, &[64, 576]));
    }

    fn gguf(dtype: GgmlDType) -> Vec<u8> {
        let values: Vec<f32> = (0..4 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
            .collect();
        let t = Tensor::from_vec(values, (4, 64), &Device::Cpu).expect("tensor");
        let q = QTensor::quantize(&t, dtype).expect("quantize");
        let name = gguf_file::Value::String("tiny".to_string());
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &[("general.name", &name)], &[("w", &q)]).expect("write");
        out.into_inner()
    }

    #[test]
    fn a_q4_1_tensor_becomes_q8_0_with_the_same_values_to_within_a_step() {
        let bytes = gguf(GgmlDType::Q4_1);
        let mut reader = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader).expect("read");
        let before = content
            .tensor(&mut reader, "w", &Device::Cpu)
            .and_then(|t| t.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("before");
        let out = for_cpu("tiny", &content, &mut reader)
            .expect("convert")
            .expect("converted");
        // Deterministic: the same input gives the same bytes.
        let again = for_cpu("tiny", &content, &mut reader)
            .expect("convert")
            .expect("converted");
        assert_eq!(out, again);
        let mut reader = Cursor::new(out);
        let content = gguf_file::Content::read(&mut reader).expect("reread");
        assert_eq!(
            content
                .metadata
                .get("general.name")
                .and_then(|v| v.to_string().ok())
                .map(String::as_str),
            Some("tiny")
        );
        let t = content.tensor(&mut reader, "w", &Device::Cpu).expect("w");
        assert_eq!(t.dtype(), GgmlDType::Q8_0);
        let after = t
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("after");
        let amax = before.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (a, b) in before.iter().zip(&after) {
            assert!((a - b).abs() <= amax / 127.0, "{a} vs {b}");
        }
    }

    #[test]
    fn a_file_without_slow_tensors_is_left_alone() {
        let bytes = gguf(GgmlDType::Q8_0);
        let mut reader = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader).expect("read");
        assert!(
            for_cpu("tiny", &content, &mut reader)
                .expect("convert")
                .is_none()
        );
    }
}
