//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong loading a model or running a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model file could not be read.
    #[error("model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A model file's BLAKE3 hash differs from the one its manifest names.
    #[error("model file {path}: blake3 {actual} does not match the manifest's {expected}")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's hash (hex).
        expected: String,
        /// The file's hash (hex).
        actual: String,
    },
    /// The model's files are not a model this executor can load.
    #[error("model {model}: {detail}")]
    Load {
        /// The model (name or path).
        model: String,
        /// What is wrong.
        detail: String,
    },
    /// The tokenizer failed on a job's input or output.
    #[error("tokenizer of model {model}: {detail}")]
    Tokenizer {
        /// The model.
        model: String,
        /// The tokenizer's message.
        detail: String,
    },
    /// candle failed while running a model.
    #[error("model {model}: candle: {source}")]
    Candle {
        /// The model.
        model: String,
        /// candle's error.
        source: candle_core::Error,
    },
    /// A job asks for more than the executor's limits allow.
    #[error("job {job}: {what} is {got}, over the limit of {limit}")]
    OverLimit {
        /// The job id (hex).
        job: String,
        /// What is over the limit.
        what: &'static str,
        /// What the job asked for.
        got: u64,
        /// The limit.
        limit: u64,
    },
    /// Every job slot is taken: the job is refused rather than queued.
    #[error("executor busy: {active} of {limit} job slots in use")]
    Busy {
        /// Jobs running.
        active: usize,
        /// Slots configured.
        limit: usize,
    },
    /// Loading the model would exceed the executor's memory budget.
    #[error("model {model}: needs {needed} bytes, {available} of the memory budget left")]
    OutOfMemoryBudget {
        /// The model.
        model: String,
        /// Bytes its files take.
        needed: u64,
        /// Bytes left in the budget.
        available: u64,
    },
    /// The CUDA backend was asked for but is not compiled in or finds no device.
    #[error("backend {backend} unavailable: {detail}")]
    BackendUnavailable {
        /// The backend.
        backend: &'static str,
        /// Why.
        detail: String,
    },
    /// The sandboxed model worker failed, died or was stopped (the job fails; the node goes on).
    #[error("model worker: {detail}")]
    Worker {
        /// What happened.
        detail: String,
    },
    /// The job was cancelled by its requester.
    #[error("job {job} cancelled")]
    Cancelled {
        /// The job id (hex).
        job: String,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn candle(model: &str) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |source| Error::Candle {
        model: model.to_string(),
        source,
    }
}

pub(crate) fn tokenizer<E: std::fmt::Display>(model: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Tokenizer {
        model: model.to_string(),
        detail: e.to_string(),
    }
}
