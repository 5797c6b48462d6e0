//! Which device a job runs on.
//!
//! CPU is always there. CUDA exists only when the crate is built with the `cuda` feature and a
//! device is found. Results record their backend, because the same model gives slightly different
//! floating-point results on a GPU than on a CPU: verification compares like with like.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A compute backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// candle's CPU backend (gemm, multi-threaded).
    Cpu,
    /// candle's CUDA backend, device 0.
    Cuda,
}

impl Backend {
    /// The best backend this build and machine offer: CUDA when compiled in and a device opens,
    /// else CPU.
    pub fn best() -> Self {
        if cfg!(feature = "cuda") && Self::Cuda.device().is_ok() {
            Self::Cuda
        } else {
            Self::Cpu
        }
    }

    /// The backend's name as written in results and node records: `cpu` or `cuda`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }

    /// Parses [`Backend::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda),
            _ => None,
        }
    }

    /// Opens the candle device.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda => cuda_device(),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Device::new_cuda(0).map_err(|e| Error::BackendUnavailable {
        backend: "cuda",
        detail: e.to_string(),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(Error::BackendUnavailable {
        backend: "cuda",
        detail: "built without the `cuda` feature".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in [Backend::Cpu, Backend::Cuda] {
            assert_eq!(Backend::parse(b.as_str()), Some(b));
        }
        assert_eq!(Backend::parse("tpu"), None);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_is_refused_without_the_feature() {
        assert!(Backend::Cuda.device().is_err());
        assert_eq!(Backend::best(), Backend::Cpu);
    }
}
