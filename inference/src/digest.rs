//! Result digests and comparisons for verification by redundant execution.
//!
//! Greedy or seeded decoding is deterministic on one backend, so two honest operators on the same
//! backend produce the same tokens and the same [`generation_digest`]. Embeddings are floats whose
//! last bits depend on thread count and kernel choice, so they are compared within a tolerance
//! ([`compare_embeddings`]). A result computed on another backend is never compared bit for bit:
//! generation digests from different backends are [`Verdict::Incomparable`], embeddings get the
//! looser [`CROSS_BACKEND_TOLERANCE`].
//!
//! The backend is the operator's own claim, so it proves nothing: an incomparable re-run leaves a
//! result *unverified* (the requester looks for a verifier on the same backend), and a claim the
//! operator's signed record cannot back ([`backend_claim_backed`]) counts as a mismatch.

use crate::backend::Backend;
use crate::chat::Prompt;
use crate::generate::GenerateParams;

/// Largest per-component difference between two embeddings from the same backend that still
/// counts as agreement.
pub const SAME_BACKEND_TOLERANCE: f32 = 1e-4;
/// The same across backends (CPU against CUDA).
pub const CROSS_BACKEND_TOLERANCE: f32 = 1e-2;

/// BLAKE3 over a generation job and its output tokens, domain-separated and length-prefixed:
/// `"warren/inference/generate/v1\0" || backend || model id || prompt || max_tokens ||
/// temperature bits || seed || tokens`, each variable-length field preceded by its length as u32
/// little-endian, numbers little-endian. For a user prompt without `top_p` or stop strings
/// (see [`prompt_digest`] for the rest).
pub fn generation_digest(
    model: &[u8],
    backend: Backend,
    prompt: &str,
    params: &GenerateParams,
    tokens: &[u32],
) -> [u8; 32] {
    prompt_digest(
        model,
        backend,
        &Prompt::User(prompt.to_string()),
        params,
        tokens,
    )
}

fn put(h: &mut blake3::Hasher, field: &[u8]) {
    h.update(&(field.len() as u32).to_le_bytes());
    h.update(field);
}

/// [`generation_digest`] for any [`Prompt`]: the prompt field is the user or raw text (empty for
/// a chat), and between the seed and the token count come, each only when it applies:
/// `"raw\0"`; `"chat\0" || count u32 || (len‖role || len‖content)…`; `"top_p\0" || f32 bits`;
/// `"stop\0" || count u32 || len‖stop…`. A plain job's digest is the same as before these existed.
pub fn prompt_digest(
    model: &[u8],
    backend: Backend,
    prompt: &Prompt,
    params: &GenerateParams,
    tokens: &[u32],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"warren/inference/generate/v1\0");
    let text = match prompt {
        Prompt::User(p) | Prompt::Raw(p) => p.as_str(),
        Prompt::Chat(_) => "",
    };
    for field in [backend.as_str().as_bytes(), model, text.as_bytes()] {
        put(&mut h, field);
    }
    h.update(&params.max_tokens.to_le_bytes());
    h.update(&params.temperature.to_bits().to_le_bytes());
    h.update(&params.seed.to_le_bytes());
    match prompt {
        Prompt::User(_) => {}
        Prompt::Raw(_) => {
            h.update(b"raw\0");
        }
        Prompt::Chat(messages) => {
            h.update(b"chat\0");
            h.update(&(messages.len() as u32).to_le_bytes());
            for m in messages {
                put(&mut h, m.role.as_bytes());
                put(&mut h, m.content.as_bytes());
            }
        }
    }
    if let Some(p) = params.top_p {
        h.update(b"top_p\0");
        h.update(&p.to_bits().to_le_bytes());
    }
    if !params.stop.is_empty() {
        h.update(b"stop\0");
        h.update(&(params.stop.len() as u32).to_le_bytes());
        for s in &params.stop {
            put(&mut h, s.as_bytes());
        }
    }
    h.update(&(tokens.len() as u32).to_le_bytes());
    for t in tokens {
        h.update(&t.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

/// BLAKE3 over a batch of embeddings' exact bits (for logs and job listings; verification uses
/// [`compare_embeddings`]).
pub fn embeddings_digest(backend: Backend, vectors: &[Vec<f32>]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"warren/inference/embed/v1\0");
    h.update(backend.as_str().as_bytes());
    h.update(&(vectors.len() as u32).to_le_bytes());
    for v in vectors {
        h.update(&(v.len() as u32).to_le_bytes());
        for x in v {
            h.update(&x.to_bits().to_le_bytes());
        }
    }
    *h.finalize().as_bytes()
}

/// The outcome of comparing two results of the same job.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// They agree.
    Match,
    /// They disagree; `detail` says where.
    Mismatch {
        /// Index of the first differing item (token or vector).
        index: usize,
        /// The difference found (for embeddings, the largest component difference).
        difference: f32,
    },
    /// They came from different backends and cannot be compared exactly.
    Incomparable,
}

/// Whether an operator whose signed record offers `record_gpus` GPUs can have computed a result on
/// `claimed`: CPU always, CUDA only with a GPU in the record. A result claiming a backend its
/// operator's record does not show is treated as a mismatch (it cannot be honest), so that
/// naming another backend is no way to make a wrong result incomparable.
pub fn backend_claim_backed(claimed: Backend, record_gpus: usize) -> bool {
    match claimed {
        Backend::Cpu => true,
        Backend::Cuda => record_gpus > 0,
    }
}

/// Compares two token sequences of the same generation job.
pub fn compare_generations(
    a_backend: Backend,
    a: &[u32],
    b_backend: Backend,
    b: &[u32],
) -> Verdict {
    if a_backend != b_backend {
        return Verdict::Incomparable;
    }
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(index) => Verdict::Mismatch {
            index,
            difference: 1.0,
        },
        None if a.len() != b.len() => Verdict::Mismatch {
            index: a.len().min(b.len()),
            difference: 1.0,
        },
        None => Verdict::Match,
    }
}

/// Compares two batches of embeddings of the same texts component by component, with the
/// tolerance that fits their backends.
pub fn compare_embeddings(
    a_backend: Backend,
    a: &[Vec<f32>],
    b_backend: Backend,
    b: &[Vec<f32>],
) -> Verdict {
    let tolerance = if a_backend == b_backend {
        SAME_BACKEND_TOLERANCE
    } else {
        CROSS_BACKEND_TOLERANCE
    };
    if a.len() != b.len() {
        return Verdict::Mismatch {
            index: a.len().min(b.len()),
            difference: f32::INFINITY,
        };
    }
    for (index, (x, y)) in a.iter().zip(b).enumerate() {
        if x.len() != y.len() {
            return Verdict::Mismatch {
                index,
                difference: f32::INFINITY,
            };
        }
        let difference = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(
                0.0f32,
                |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
            );
        if difference > tolerance {
            return Verdict::Mismatch { index, difference };
        }
    }
    Verdict::Match
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_digest_depends_on_every_field() {
        let p = GenerateParams::greedy(8);
        let base = generation_digest(b"m", Backend::Cpu, "hi", &p, &[1, 2, 3]);
        assert_eq!(
            base,
            generation_digest(b"m", Backend::Cpu, "hi", &p, &[1, 2, 3])
        );
        assert_ne!(
            base,
            generation_digest(b"n", Backend::Cpu, "hi", &p, &[1, 2, 3])
        );
        assert_ne!(
            base,
            generation_digest(b"m", Backend::Cuda, "hi", &p, &[1, 2, 3])
        );
        assert_ne!(
            base,
            generation_digest(b"m", Backend::Cpu, "ho", &p, &[1, 2, 3])
        );
        assert_ne!(
            base,
            generation_digest(b"m", Backend::Cpu, "hi", &p, &[1, 2, 4])
        );
        let q = GenerateParams {
            seed: 1,
            ..p.clone()
        };
        assert_ne!(
            base,
            generation_digest(b"m", Backend::Cpu, "hi", &q, &[1, 2, 3])
        );
        let raw = Prompt::Raw("hi".into());
        let chat = Prompt::Chat(vec![warren_protocol::inference::ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }]);
        let d = |prompt: &Prompt, p: &GenerateParams| {
            prompt_digest(b"m", Backend::Cpu, prompt, p, &[1, 2, 3])
        };
        assert_eq!(base, d(&Prompt::User("hi".into()), &p));
        assert_ne!(base, d(&raw, &p));
        assert_ne!(base, d(&chat, &p));
        assert_ne!(d(&raw, &p), d(&chat, &p));
        let top = GenerateParams {
            top_p: Some(0.5),
            ..p.clone()
        };
        assert_ne!(base, d(&Prompt::User("hi".into()), &top));
        let stop = GenerateParams {
            stop: vec!["x".into()],
            ..p
        };
        assert_ne!(base, d(&Prompt::User("hi".into()), &stop));
    }

    #[test]
    fn generations_compare_exactly_on_one_backend_only() {
        let c = Backend::Cpu;
        assert_eq!(compare_generations(c, &[1, 2], c, &[1, 2]), Verdict::Match);
        assert!(matches!(
            compare_generations(c, &[1, 2], c, &[1, 3]),
            Verdict::Mismatch { index: 1, .. }
        ));
        assert!(matches!(
            compare_generations(c, &[1, 2], c, &[1, 2, 3]),
            Verdict::Mismatch { index: 2, .. }
        ));
        assert_eq!(
            compare_generations(c, &[1], Backend::Cuda, &[2]),
            Verdict::Incomparable
        );
    }

    #[test]
    fn a_gpu_backend_needs_a_gpu_in_the_record() {
        assert!(backend_claim_backed(Backend::Cpu, 0));
        assert!(!backend_claim_backed(Backend::Cuda, 0));
        assert!(backend_claim_backed(Backend::Cuda, 1));
    }

    #[test]
    fn embeddings_compare_within_tolerance() {
        let c = Backend::Cpu;
        let a = vec![vec![0.5, 0.5], vec![1.0, 0.0]];
        let mut b = a.clone();
        b[1][0] += 5e-5;
        assert_eq!(compare_embeddings(c, &a, c, &b), Verdict::Match);
        b[1][1] += 1e-3;
        assert!(matches!(
            compare_embeddings(c, &a, c, &b),
            Verdict::Mismatch { index: 1, .. }
        ));
        assert_eq!(compare_embeddings(c, &a, Backend::Cuda, &b), Verdict::Match);
        b[0][0] = f32::NAN;
        assert!(matches!(
            compare_embeddings(c, &a, Backend::Cuda, &b),
            Verdict::Mismatch { index: 0, .. }
        ));
        assert!(matches!(
            compare_embeddings(c, &a, c, &a[..1]),
            Verdict::Mismatch { index: 1, .. }
        ));
    }
}
