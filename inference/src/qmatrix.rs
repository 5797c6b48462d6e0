//! warren's CPU matrix-vector kernels for GGML `Q4_1` weights (which candle multiplies only in its
//! scalar reference loop) and `Q8_0` weights (which it multiplies with SIMD, but with an
//! out-of-line f16 conversion per block).
//!
//! Before this module the CPU executor converted `Q4_1` tensors to `Q8_0` at load (see
//! `requant`), which candle multiplies with SIMD; that made generation 3.5× faster but reads
//! 1.06 bytes per weight instead of 0.625, and on a 2-core home machine decoding is bound by
//! memory bandwidth: llama.cpp, which keeps `Q4_1` and multiplies it with SIMD, stayed 1.6× ahead.
//! Here the weights stay `Q4_1` as the file has them, each activation row is quantized to 8 bits
//! per 32-value block (llama.cpp's `Q8_1`: a scale and the scaled sum), and a block's dot product
//! is `d_w·d_x·Σ q_w·q_x + m_w·s_x` (`d_w·d_x·Σ q_w·q_x` for `Q8_0`), with AVX2 on x86-64 and a
//! scalar loop elsewhere. The `Q8_0` kernel is used for the same reason: a small model's output
//! matrix (the tied token embeddings, `Q8_0` in the usual GGUF files) is a quarter of the bytes
//! read per token.
//!
//! **Identical results on every operator of one build.** Verification compares digests of
//! generated tokens, so the AVX2 and scalar paths must give bit-identical floats: both compute
//! the same eight integer lane sums exactly, fold them into eight `f32` lanes with fused
//! multiply-adds in the same order, and add the lanes in the order of the AVX2 horizontal sum;
//! a unit test checks the two paths bit for bit on random data. The work is split across
//! threads by output rows only, so the thread count never changes a value either.
#![allow(unsafe_code)] // SIMD loads and the f16c conversion are `unsafe` intrinsics; each use says why it is sound.

use std::sync::Mutex;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result as CandleResult, Tensor};
use half::f16;

/// Values per block (GGML's `QK4_1` and `QK8_1`).
pub(crate) const BLOCK: usize = 32;
/// Bytes per `Q4_1` block: `d` and `m` as f16, then 16 bytes of nibbles.
const Q4_1_BYTES: usize = 20;
/// Bytes per `Q8_0` block: `d` as f16, then 32 signed bytes.
const Q8_0_BYTES: usize = 34;

/// The weight block types these kernels multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Q4_1,
    Q8_0,
}

impl Format {
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => Q4_1_BYTES,
            Self::Q8_0 => Q8_0_BYTES,
        }
    }
}

/// One activation block quantized to 8 bits: `x_i ≈ d · q_i`, and `s = d · Σ q_i`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BlockQ8 {
    d: f32,
    s: f32,
    qs: [i8; BLOCK],
}

/// A `rows × cols` weight matrix in GGML `Q4_1` or `Q8_0` blocks, row-major (a row is
/// `cols / 32` blocks), as stored in the GGUF file.
#[derive(Debug)]
pub(crate) struct QMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
}

impl QMatrix {
    /// Takes a 2-D `Q4_1` or `Q8_0` tensor (`rows × cols`, `cols` a multiple of 32) on the CPU;
    /// `None` for any other type, shape or device (the caller keeps candle's matmul for those).
    pub(crate) fn from_qtensor(t: &QTensor) -> Option<Self> {
        let format = match t.dtype() {
            GgmlDType::Q4_1 => Format::Q4_1,
            GgmlDType::Q8_0 => Format::Q8_0,
            _ => return None,
        };
        if !matches!(t.device(), Device::Cpu) {
            return None;
        }
        let &[rows, cols] = t.shape().dims() else {
            return None;
        };
        if cols == 0 || !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let bytes = t.data().ok()?.into_owned();
        if bytes.len() != rows * (cols / BLOCK) * format.block_bytes() {
            return None;
        }
        Some(Self {
            format,
            rows,
            cols,
            bytes,
        })
    }

    /// `x · Wᵀ` for `x` of shape `(…, cols)`: the result has shape `(…, rows)`.
    pub(crate) fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("quantized matmul: a scalar input");
        };
        if k != self.cols {
            candle_core::bail!(
                "quantized matmul: input has {k} features, weights {}",
                self.cols
            );
        }
        let m: usize = lead.iter().product();
        let xs: Vec<f32> = x
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let blocks = self.cols / BLOCK;
        let mut xq = vec![BlockQ8::default(); m * blocks];
        for (row, q) in xs.chunks_exact(k).zip(xq.chunks_mut(blocks)) {
            quantize_row(row, q);
        }
        let out = self.gemm(&xq, m);
        let mut shape = lead.to_vec();
        shape.push(self.rows);
        Tensor::from_vec(out, shape, x.device())
    }

    /// `out[t · rows + r]` = row `r` of W · activation row `t`, for `m` quantized activation rows
    /// (`xq`, `m · cols / 32` blocks). Weight rows are split across candle's CPU thread pool in
    /// contiguous chunks; each weight row is read from memory once and multiplied with every
    /// activation row while it is in cache (prompt tokens then cost little more than one).
    fn gemm(&self, xq: &[BlockQ8], m: usize) -> Vec<f32> {
        // About 8 chunks per thread so that a slow thread is absorbed; each chunk's results are
        // locked by the one worker that computes them (never contended).
        const ROWS_PER_CHUNK_MIN: usize = 16;
        let threads = candle_core::utils::get_num_threads().max(1);
        let per_chunk = self.rows.div_ceil(threads * 8).max(ROWS_PER_CHUNK_MIN);
        let blocks = self.cols / BLOCK;
        let row_bytes = blocks * self.format.block_bytes();
        let starts: Vec<usize> = (0..self.rows).step_by(per_chunk).collect();
        let results: Vec<Mutex<Vec<f32>>> = starts.iter().map(|_| Mutex::new(Vec::new())).collect();
        let dot = dot_fn(self.format);
        candle_core::utils::barrier_pool().execute_chunked(starts.len(), |range| {
            for i in range {
                let (Some(&first), Some(slot)) = (starts.get(i), results.get(i)) else {
                    continue;
                };
                let last = (first + per_chunk).min(self.rows);
                // Row-major within the chunk: (weight row, activation row).
                let mut local = Vec::with_capacity((last - first) * m);
                for r in first..last {
                    let w = &self.bytes[r * row_bytes..(r + 1) * row_bytes];
                    for t in 0..m {
                        local.push(dot(w, &xq[t * blocks..(t + 1) * blocks]));
                    }
                }
                match slot.lock() {
                    Ok(mut g) => *g = local,
                    Err(poisoned) => *poisoned.into_inner() = local,
                }
            }
        });
        let mut out = vec![0f32; m * self.rows];
        for (first, slot) in starts.iter().zip(results) {
            let local = match slot.into_inner() {
                Ok(v) => v,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (j, v) in local.iter().enumerate() {
                let (r, t) = (first + j / m, j % m);
                out[t * self.rows + r] = *v;
            }
        }
        out
    }
}

/// Quantizes `x` (a multiple of 32 values) to 8-bit blocks as llama.cpp's `quantize_row_q8_1`
/// does, with the scale and sum kept as f32.
pub(crate) fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
    for (v, b) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        let amax = v.iter().fold(0f32, |a, x| a.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, x) in b.qs.iter_mut().zip(v) {
            // |x · id| ≤ 127 by construction, so the cast never saturates.
            *q = (x * id).round() as i8;
            sum += i32::from(*q);
        }
        b.d = d;
        b.s = d * sum as f32;
    }
}

type DotFn = fn(&[u8], &[BlockQ8]) -> f32;

/// The dot product of `format` for this CPU: AVX2 with F16C and FMA where present, else the
/// scalar loop (both give identical results, see the module documentation).
fn dot_fn(format: Format) -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        return match format {
            Format::Q4_1 => |w, x| {
                // SAFETY: the three features this function is compiled for were detected above.
                unsafe { avx2::dot_q4_1(w, x) }
            },
            Format::Q8_0 => |w, x| {
                // SAFETY: as above.
                unsafe { avx2::dot_q8_0(w, x) }
            },
        };
    }
    match format {
        Format::Q4_1 => dot_scalar_q4_1,
        Format::Q8_0 => dot_scalar_q8_0,
    }
}

/// Adds eight lanes in the order of the AVX2 horizontal sum (`hsum_float_8`).
fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// The portable dot product of one `Q8_0` row (`w`, raw GGML bytes) with a quantized row.
fn dot_scalar_q8_0(w: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = [0f32; 8];
    for (wb, xb) in w.chunks_exact(Q8_0_BYTES).zip(x) {
        let d = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let scale = d * xb.d;
        for (lane, a) in acc.iter_mut().enumerate() {
            let mut isum = 0i32;
            for e in 4 * lane..4 * lane + 4 {
                isum += i32::from(wb[2 + e] as i8) * i32::from(xb.qs[e]);
            }
            *a = scale.mul_add(isum as f32, *a);
        }
    }
    hsum8(&acc)
}

/// The portable dot product of one `Q4_1` row (`w`, raw GGML bytes) with a quantized row.
fn dot_scalar_q4_1(w: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (wb, xb) in w.chunks_exact(Q4_1_BYTES).zip(x) {
        let d = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let m = f16::from_le_bytes([wb[2], wb[3]]).to_f32();
        let qs = &wb[4..20];
        let scale = d * xb.d;
        for (lane, a) in acc.iter_mut().enumerate() {
            let mut isum = 0i32;
            for e in 4 * lane..4 * lane + 4 {
                let q = if e < 16 {
                    qs[e] & 0x0F
                } else {
                    qs[e - 16] >> 4
                };
                isum += i32::from(q) * i32::from(xb.qs[e]);
            }
            *a = scale.mul_add(isum as f32, *a);
        }
        summs += m * xb.s;
    }
    hsum8(&acc) + summs
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BlockQ8, Q4_1_BYTES, Q8_0_BYTES};

    /// AVX2 version of [`super::dot_scalar_q8_0`], bit-identical to it.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q8_0(w: &[u8], x: &[BlockQ8]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (wb, xb) in w.chunks_exact(Q8_0_BYTES).zip(x) {
            // SAFETY: `wb` is 34 bytes: an f16 scale then 32 values, so the 32-byte load at
            // offset 2 stays inside it; `xb.qs` is 32 bytes.
            let (d, wq, xq) = unsafe {
                (
                    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
                        u16::from_le_bytes([wb[0], wb[1]]),
                    )))),
                    _mm256_loadu_si256(wb.as_ptr().add(2).cast::<__m256i>()),
                    _mm256_loadu_si256(xb.qs.as_ptr().cast::<__m256i>()),
                )
            };
            // |w| × (x with w's sign): u8 × i8 pairs into i16 (at most 2·127·127, no
            // saturation; GGML's Q8_0 values are within ±127), then into eight i32 lanes.
            let lanes = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq)),
                ones,
            );
            let scale = _mm256_set1_ps(d * xb.d);
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(lanes), acc);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds eight f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        super::hsum8(&lanes)
    }

    /// AVX2 version of [`super::dot_scalar_q4_1`], bit-identical to it.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4_1(w: &[u8], x: &[BlockQ8]) -> f32 {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for (wb, xb) in w.chunks_exact(Q4_1_BYTES).zip(x) {
            // SAFETY: `wb` is 20 bytes: 4 bytes of scales then 16 of nibbles, so the 16-byte
            // load at offset 4 stays inside it; `xb.qs` is 32 bytes.
            let (dm, nibbles, xq) = unsafe {
                (
                    _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
                        wb[0], wb[1], wb[2], wb[3],
                    ]))),
                    _mm_loadu_si128(wb.as_ptr().add(4).cast::<__m128i>()),
                    _mm256_loadu_si256(xb.qs.as_ptr().cast::<__m256i>()),
                )
            };
            let d = _mm_cvtss_f32(dm);
            let m = _mm_cvtss_f32(_mm_shuffle_ps::<0b01>(dm, dm));
            // Low nibbles are values 0..16, high nibbles values 16..32.
            let q = _mm256_and_si256(
                low,
                _mm256_insertf128_si256::<1>(
                    _mm256_castsi128_si256(nibbles),
                    _mm_srli_epi16::<4>(nibbles),
                ),
            );
            // u8 × i8 pairs into i16 (at most 2·15·127, no saturation), then pairs into the
            // eight i32 lanes of four values each.
            let lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xq), ones);
            let scale = _mm256_set1_ps(d * xb.d);
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(lanes), acc);
            summs += m * xb.s;
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds eight f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        super::hsum8(&lanes) + summs
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A deterministic pseudo-random generator for test data.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    fn random_q4_1(rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows * cols / BLOCK * Q4_1_BYTES);
        for _ in 0..rows * cols / BLOCK {
            let d = f16::from_f32((rng(seed) % 1000) as f32 / 40_000.0);
            let m = f16::from_f32(-((rng(seed) % 1000) as f32) / 5_000.0);
            out.extend_from_slice(&d.to_le_bytes());
            out.extend_from_slice(&m.to_le_bytes());
            for _ in 0..16 {
                out.push(rng(seed) as u8);
            }
        }
        out
    }

    fn random_f32(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| (rng(seed) % 20_001) as f32 / 10_000.0 - 1.0)
            .collect()
    }

    /// The dequantized weight at (row, col) as GGML defines `Q4_1`.
    fn weight(bytes: &[u8], cols: usize, r: usize, c: usize) -> f32 {
        let b = &bytes[(r * cols / BLOCK + c / BLOCK) * Q4_1_BYTES..][..Q4_1_BYTES];
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        let m = f16::from_le_bytes([b[2], b[3]]).to_f32();
        let e = c % BLOCK;
        let q = if e < 16 {
            b[4 + e] & 0xF
        } else {
            b[4 + e - 16] >> 4
        };
        d * f32::from(q) + m
    }

    fn random_q8_0(rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows * cols / BLOCK * Q8_0_BYTES);
        for _ in 0..rows * cols / BLOCK {
            let d = f16::from_f32((rng(seed) % 1000) as f32 / 100_000.0);
            out.extend_from_slice(&d.to_le_bytes());
            for _ in 0..BLOCK {
                // GGML's Q8_0 values are within ±127.
                out.push(((rng(seed) % 255) as i32 - 127) as i8 as u8);
            }
        }
        out
    }

    #[test]
    fn the_simd_and_scalar_dot_products_are_bit_identical() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        for cols in [32, 64, 576, 1536] {
            let x = random_f32(cols, &mut seed);
            let mut xq = vec![BlockQ8::default(); cols / BLOCK];
            quantize_row(&x, &mut xq);
            let w = random_q4_1(1, cols, &mut seed);
            let scalar = dot_scalar_q4_1(&w, &xq);
            let chosen = dot_fn(Format::Q4_1)(&w, &xq);
            assert_eq!(scalar.to_bits(), chosen.to_bits(), "q4_1, cols {cols}");
            let w = random_q8_0(1, cols, &mut seed);
            let scalar = dot_scalar_q8_0(&w, &xq);
            let chosen = dot_fn(Format::Q8_0)(&w, &xq);
            assert_eq!(scalar.to_bits(), chosen.to_bits(), "q8_0, cols {cols}");
        }
    }

    #[test]
    fn a_q8_0_product_matches_candles_to_within_rounding() {
        let mut seed = 11;
        let (rows, cols) = (20, 128);
        let values = random_f32(rows * cols, &mut seed);
        let w = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let ours = QMatrix::from_qtensor(&q).unwrap();
        let theirs = candle_core::quantized::QMatMul::from_qtensor(q).unwrap();
        let x = Tensor::from_vec(random_f32(cols, &mut seed), (1, cols), &Device::Cpu).unwrap();
        let a: Vec<f32> = ours
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = candle_core::Module::forward(&theirs, &x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (r, (a, b)) in a.iter().zip(&b).enumerate() {
            // candle rounds the activation scale through f16; we keep it as f32.
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "row {r}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn the_product_matches_the_dequantized_weights_to_within_the_8_bit_activation_step() {
        let mut seed = 42;
        let (rows, cols) = (37, 256);
        let w = random_q4_1(rows, cols, &mut seed);
        let m = QMatrix {
            format: Format::Q4_1,
            rows,
            cols,
            bytes: w.clone(),
        };
        let x = random_f32(2 * cols, &mut seed);
        let input = Tensor::from_vec(x.clone(), (1, 2, cols), &Device::Cpu).unwrap();
        let out = m.forward(&input).unwrap();
        assert_eq!(out.dims(), &[1, 2, rows]);
        let got: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        for t in 0..2 {
            for r in 0..rows {
                let exact: f32 = (0..cols)
                    .map(|c| weight(&w, cols, r, c) * x[t * cols + c])
                    .sum();
                let g = got[t * rows + r];
                // Each activation moves by at most half a step (1/254 of its block's largest
                // magnitude, ≤ 1/254 here); weights are ≤ 0.4 in magnitude.
                let bound = cols as f32 * 0.4 / 254.0;
                assert!((g - exact).abs() <= bound, "row {r}: {g} vs {exact}");
            }
        }
    }

    #[test]
    fn the_result_does_not_depend_on_how_rows_are_split_across_threads() {
        let mut seed = 7;
        let (rows, cols) = (300, 96);
        let w = random_q4_1(rows, cols, &mut seed);
        let m = QMatrix {
            format: Format::Q4_1,
            rows,
            cols,
            bytes: w.clone(),
        };
        let x = random_f32(cols, &mut seed);
        let mut xq = vec![BlockQ8::default(); cols / BLOCK];
        quantize_row(&x, &mut xq);
        let threaded = m.gemm(&xq, 1);
        let row_bytes = cols / BLOCK * Q4_1_BYTES;
        for (r, v) in threaded.iter().enumerate() {
            let alone = dot_scalar_q4_1(&w[r * row_bytes..(r + 1) * row_bytes], &xq);
            assert_eq!(v.to_bits(), alone.to_bits(), "row {r}");
        }
    }

    #[test]
    fn only_2d_cpu_q4_1_and_q8_0_tensors_are_taken() {
        let dev = Device::Cpu;
        let t = Tensor::zeros((4, 64), candle_core::DType::F32, &dev).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q4_1).unwrap();
        let m = QMatrix::from_qtensor(&q).unwrap();
        assert_eq!((m.format, m.rows, m.cols), (Format::Q4_1, 4, 64));
        let q8 = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        assert_eq!(QMatrix::from_qtensor(&q8).unwrap().format, Format::Q8_0);
        let q6 = QTensor::quantize(
            &Tensor::zeros((4, 256), candle_core::DType::F32, &dev).unwrap(),
            GgmlDType::Q6K,
        )
        .unwrap();
        assert!(QMatrix::from_qtensor(&q6).is_none());
    }
}
