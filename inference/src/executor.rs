//! The executor: the models an operator has loaded, its job slots, and its limits.
//!
//! A job first takes a [`JobSlot`] ([`Executor::try_slot`]); when every slot is taken the job is
//! refused with [`Error::Busy`] rather than queued, so a requester can go to another operator at
//! once. Loading a model counts its file sizes against a memory budget. The executor is
//! synchronous: callers run jobs on a blocking thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::chat::Prompt;
use crate::digest::{embeddings_digest, prompt_digest};
use crate::embed::{EmbedFiles, Embedder};
use crate::error::{Error, Result};
use crate::files::ModelFile;
use crate::generate::{GenerateParams, Generation, Generator};

/// Per-executor limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Jobs that may run at once.
    pub max_concurrent_jobs: usize,
    /// Bytes of model files that may be loaded at once.
    pub memory_budget_bytes: u64,
    /// Texts in one embedding job.
    pub max_batch: usize,
    /// Bytes in one text or prompt.
    pub max_text_bytes: usize,
    /// New tokens one generation job may ask for.
    pub max_new_tokens: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_jobs: 2,
            memory_budget_bytes: 4 << 30,
            max_batch: 256,
            max_text_bytes: 16 * 1024,
            max_new_tokens: 1024,
        }
    }
}

/// What kind of jobs a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Texts in, vectors out.
    Embed,
    /// Prompt in, tokens out.
    Generate,
}

impl ModelKind {
    /// `embed` or `generate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embed => "embed",
            Self::Generate => "generate",
        }
    }
}

enum Loaded {
    Embed(Arc<Embedder>),
    Generate(Box<Generator>),
}

struct Entry {
    model: Loaded,
    bytes: u64,
}

/// A job slot; dropping it frees the slot.
#[derive(Debug)]
pub struct JobSlot {
    active: Arc<AtomicUsize>,
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The output of an embedding job.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedOutput {
    /// One vector per text.
    pub vectors: Vec<Vec<f32>>,
    /// Where they were computed.
    pub backend: Backend,
    /// [`embeddings_digest`] of the vectors.
    pub digest: [u8; 32],
}

/// The output of a generation job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateOutput {
    /// Tokens and text.
    pub generation: Generation,
    /// Where they were computed.
    pub backend: Backend,
    /// [`generation_digest`] of the job and its tokens.
    pub digest: [u8; 32],
}

/// Loaded models and job slots of one operator.
pub struct Executor {
    backend: Backend,
    limits: Limits,
    models: Mutex<HashMap<String, Entry>>,
    active: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("backend", &self.backend)
            .field("limits", &self.limits)
            .field("models", &self.models().len())
            .finish()
    }
}

impl Executor {
    /// An executor with no models.
    pub fn new(backend: Backend, limits: Limits) -> Self {
        Self {
            backend,
            limits,
            models: Mutex::new(HashMap::new()),
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The backend its models run on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.models.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids and kinds of the loaded models, sorted by id.
    pub fn models(&self) -> Vec<(String, ModelKind)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(id, e)| {
                let kind = match e.model {
                    Loaded::Embed(_) => ModelKind::Embed,
                    Loaded::Generate(_) => ModelKind::Generate,
                };
                (id.clone(), kind)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Jobs running now.
    pub fn active_jobs(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn reserve(&self, id: &str, bytes: u64) -> Result<()> {
        let used: u64 = self
            .lock()
            .iter()
            .filter(|(k, _)| k.as_str() != id)
            .map(|(_, e)| e.bytes)
            .sum();
        let available = self.limits.memory_budget_bytes.saturating_sub(used);
        if bytes > available {
            return Err(Error::OutOfMemoryBudget {
                model: id.to_string(),
                needed: bytes,
                available,
            });
        }
        Ok(())
    }

    /// Loads (or reloads) an embedding model under `id`.
    pub fn load_embedder(&self, id: &str, files: &EmbedFiles) -> Result<()> {
        let bytes = files.weights.size() + files.tokenizer.size() + files.config.size();
        self.reserve(id, bytes)?;
        let model = Embedder::load(id, files, self.backend)?;
        self.lock().insert(
            id.to_string(),
            Entry {
                model: Loaded::Embed(Arc::new(model)),
                bytes,
            },
        );
        Ok(())
    }

    /// Loads (or reloads) a generation model under `id`.
    pub fn load_generator(&self, id: &str, file: &ModelFile) -> Result<()> {
        let bytes = file.size();
        self.reserve(id, bytes)?;
        let model = Generator::load(id, file, self.backend)?;
        self.lock().insert(
            id.to_string(),
            Entry {
                model: Loaded::Generate(Box::new(model)),
                bytes,
            },
        );
        Ok(())
    }

    /// Takes a job slot, or refuses with [`Error::Busy`].
    pub fn try_slot(&self) -> Result<JobSlot> {
        let limit = self.limits.max_concurrent_jobs;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|active| Error::Busy { active, limit })?;
        Ok(JobSlot {
            active: self.active.clone(),
        })
    }

    fn not_loaded(id: &str, kind: ModelKind) -> Error {
        Error::Load {
            model: id.to_string(),
            detail: format!("no {} model loaded under this id", kind.as_str()),
        }
    }

    /// Checks an embedding job against the limits.
    pub fn check_embed(&self, job: &str, texts: &[String]) -> Result<()> {
        let over = |what, got: usize, limit: usize| Error::OverLimit {
            job: job.to_string(),
            what,
            got: got as u64,
            limit: limit as u64,
        };
        if texts.len() > self.limits.max_batch {
            return Err(over("batch size", texts.len(), self.limits.max_batch));
        }
        if let Some(t) = texts.iter().find(|t| t.len() > self.limits.max_text_bytes) {
            return Err(over("text bytes", t.len(), self.limits.max_text_bytes));
        }
        Ok(())
    }

    /// Checks a generation job against the limits.
    /// A chat may hold four times a prompt's bytes, all messages together.
    pub fn check_generate(
        &self,
        job: &str,
        prompt: &Prompt,
        params: &GenerateParams,
    ) -> Result<()> {
        let limit = match prompt {
            Prompt::Chat(_) => self.limits.max_text_bytes * 4,
            _ => self.limits.max_text_bytes,
        };
        if prompt.len() > limit {
            return Err(Error::OverLimit {
                job: job.to_string(),
                what: "prompt bytes",
                got: prompt.len() as u64,
                limit: limit as u64,
            });
        }
        if params.max_tokens > self.limits.max_new_tokens {
            return Err(Error::OverLimit {
                job: job.to_string(),
                what: "max tokens",
                got: u64::from(params.max_tokens),
                limit: u64::from(self.limits.max_new_tokens),
            });
        }
        Ok(())
    }

    /// Runs an embedding job with model `id`.
    pub fn embed(
        &self,
        _slot: &JobSlot,
        job: &str,
        id: &str,
        texts: &[String],
    ) -> Result<EmbedOutput> {
        self.check_embed(job, texts)?;
        let model = match self.lock().get(id).map(|e| &e.model) {
            Some(Loaded::Embed(m)) => m.clone(),
            _ => return Err(Self::not_loaded(id, ModelKind::Embed)),
        };
        let vectors = model.embed(texts)?;
        Ok(EmbedOutput {
            digest: embeddings_digest(self.backend, &vectors),
            vectors,
            backend: self.backend,
        })
    }

    /// Runs a generation job with model `id`, streaming text to `on_text` (which returns `false`
    /// to cancel). `model_id_bytes` is what the digest binds the result to.
    #[allow(clippy::too_many_arguments)] // one call site per caller; a struct would only rename them
    pub fn generate(
        &self,
        _slot: &JobSlot,
        job: &str,
        id: &str,
        model_id_bytes: &[u8],
        prompt: &Prompt,
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<GenerateOutput> {
        self.check_generate(job, prompt, params)?;
        let mut model = match self.lock().get(id).map(|e| &e.model) {
            Some(Loaded::Generate(m)) => (**m).clone(),
            _ => return Err(Self::not_loaded(id, ModelKind::Generate)),
        };
        let generation = model.generate_prompt(prompt, params, on_text)?;
        Ok(GenerateOutput {
            digest: prompt_digest(
                model_id_bytes,
                self.backend,
                prompt,
                params,
                &generation.tokens,
            ),
            generation,
            backend: self.backend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_refuse_when_busy_and_free_on_drop() {
        let ex = Executor::new(
            Backend::Cpu,
            Limits {
                max_concurrent_jobs: 2,
                ..Limits::default()
            },
        );
        let a = ex.try_slot().unwrap();
        let b = ex.try_slot().unwrap();
        assert!(matches!(
            ex.try_slot(),
            Err(Error::Busy {
                active: 2,
                limit: 2
            })
        ));
        drop(a);
        let _c = ex.try_slot().unwrap();
        drop(b);
        assert_eq!(ex.active_jobs(), 1);
    }

    #[test]
    fn limits_and_budget_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        let mut f = std::fs::File::create(&path).unwrap();
        crate::tiny::write_tiny_llama(&mut f, 3).unwrap();
        drop(f);
        let small = Executor::new(
            Backend::Cpu,
            Limits {
                memory_budget_bytes: 1000,
                ..Limits::default()
            },
        );
        let err = small
            .load_generator("t", &ModelFile::unchecked(&path))
            .unwrap_err();
        assert!(matches!(err, Error::OutOfMemoryBudget { .. }), "{err}");

        let ex = Executor::new(Backend::Cpu, Limits::default());
        ex.load_generator("t", &ModelFile::unchecked(&path))
            .unwrap();
        assert_eq!(ex.models(), vec![("t".to_string(), ModelKind::Generate)]);
        let slot = ex.try_slot().unwrap();
        let hi = Prompt::User("hi".into());
        let too_many = GenerateParams::greedy(ex.limits().max_new_tokens + 1);
        assert!(matches!(
            ex.generate(&slot, "j", "t", b"t", &hi, &too_many, |_| true),
            Err(Error::OverLimit {
                what: "max tokens",
                ..
            })
        ));
        let out = ex
            .generate(
                &slot,
                "j",
                "t",
                b"t",
                &hi,
                &GenerateParams::greedy(4),
                |_| true,
            )
            .unwrap();
        assert_eq!(out.backend, Backend::Cpu);
        assert!(
            ex.embed(&slot, "j", "t", &["x".to_string()]).is_err(),
            "not an embedder"
        );
        let texts = vec!["x".to_string(); ex.limits().max_batch + 1];
        assert!(matches!(
            ex.check_embed("j", &texts),
            Err(Error::OverLimit {
                what: "batch size",
                ..
            })
        ));
    }
}
