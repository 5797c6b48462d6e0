//! warren-inference: the compute side of a warren peer.
//!
//! Owns hardware detection (what an operator can offer: cores, RAM, GPUs) and, as the inference
//! work lands, the candle executor, model loading and result digests. It must not touch the
//! network: jobs arrive from `warren-node` as values and results leave the same way.

pub mod hardware;

pub use hardware::{GpuInfo, Hardware};
