//! warren-inference: the compute side of a warren peer.
//!
//! Owns hardware detection ([`hardware`]), the candle executor ([`executor`]) with its two model
//! families — BERT sentence embeddings ([`embed`]) and llama-architecture GGUF generation
//! ([`generate`]) — model files checked against their manifest hashes ([`files`]), result digests
//! and comparisons for verification by redundant execution ([`digest`]), and the pure planning
//! of distributed jobs: ranking operators by strategy, splitting batches, choosing the sample to
//! re-run ([`plan`]). CPU by default; CUDA with the `cuda` feature ([`backend`]).
//!
//! It must not touch the network: jobs arrive from `warren-node` as values and results leave the
//! same way. [`plan`] is sans-I/O: time and randomness are passed in.

pub mod admission;
pub mod backend;
pub mod chat;
pub mod digest;
pub mod embed;
mod error;
pub mod executor;
pub mod files;
pub mod generate;
pub mod hardware;
pub mod llama;
pub mod plan;
mod qmatrix;
mod requant;
pub mod signals;
pub mod tiny;

pub use backend::Backend;
pub use chat::Prompt;
pub use error::{Error, Result};
pub use executor::{EmbedOutput, Executor, GenerateOutput, JobSlot, Limits, ModelKind};
pub use files::ModelFile;
pub use generate::{Detokenizer, Finish, GenerateParams, Generation};
pub use hardware::{GpuInfo, Hardware};
