//! Hardware detection: CPU cores, RAM and NVIDIA GPUs.
//!
//! Linux sources: `available_parallelism` (respects cgroup CPU limits), `/proc/meminfo` for RAM,
//! and `/proc/driver/nvidia/gpus/*/information` plus `nvidia-smi` (when installed) for GPU names and
//! memory. Detection never fails: what cannot be read is reported as absent.

use std::path::Path;
use std::process::Command;

/// One GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Device memory in bytes.
    pub memory_bytes: u64,
}

/// What this machine has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hardware {
    /// Logical CPU cores available to this process.
    pub cpu_cores: u32,
    /// Total RAM in bytes.
    pub ram_bytes: u64,
    /// GPUs found.
    pub gpus: Vec<GpuInfo>,
}

impl Hardware {
    /// Detects this machine's hardware.
    pub fn detect() -> Self {
        let cpu_cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let ram_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| parse_meminfo_total(&s))
            .unwrap_or(0);
        Self {
            cpu_cores,
            ram_bytes,
            gpus: detect_gpus(),
        }
    }
}

/// `MemTotal:  24576000 kB` → bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (MiB).
pub fn parse_nvidia_smi(csv: &str) -> Vec<GpuInfo> {
    csv.lines()
        .filter_map(|line| {
            let (name, mem) = line.rsplit_once(',')?;
            let mib: u64 = mem.trim().parse().ok()?;
            Some(GpuInfo {
                name: name.trim().to_owned(),
                memory_bytes: mib * 1024 * 1024,
            })
        })
        .collect()
}

fn detect_gpus() -> Vec<GpuInfo> {
    if !Path::new("/proc/driver/nvidia/gpus").exists() && !Path::new("/dev/nvidiactl").exists() {
        return Vec::new();
    }
    Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let s = "MemTotal:       24576000 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo_total(s), Some(24_576_000 * 1024));
        assert_eq!(parse_meminfo_total("nothing"), None);
    }

    #[test]
    fn parses_nvidia_smi_csv() {
        let gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559\nbad line\nA, B, 1024\n");
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].memory_bytes, 81559 * 1024 * 1024);
        assert_eq!(gpus[1].name, "A, B");
    }

    #[test]
    fn detects_at_least_one_core_and_some_ram() {
        let hw = Hardware::detect();
        assert!(hw.cpu_cores >= 1);
        assert!(hw.ram_bytes > 0);
    }
}
