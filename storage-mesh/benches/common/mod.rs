//! Command-line flags of the storage benches.
//!
//! `cargo bench` runs a bench with `--bench` and the flags given after `--`; `cargo test` runs it
//! without `--bench` (and with whatever test filters it was given), and then a bench only checks
//! itself on a few chunks.

use std::collections::HashMap;

/// The flags of one run.
pub(crate) struct Flags {
    /// Run as a benchmark (`cargo bench`), not as the smoke test of `cargo test`.
    pub(crate) bench: bool,
    values: HashMap<String, u64>,
}

impl Flags {
    /// Parses this process's arguments; `known` are the flags (`--size-mib N` or `--size-mib=N`)
    /// the bench takes. In a smoke test unknown arguments (test filters) are ignored.
    pub(crate) fn parse(known: &[&str]) -> Result<Self, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let bench = args.iter().any(|a| a == "--bench");
        let mut values = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--bench" {
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (arg.as_str(), None),
            };
            let Some(flag) = name.strip_prefix("--").filter(|n| known.contains(n)) else {
                if bench {
                    return Err(format!(
                        "unknown argument {arg}; flags: {}",
                        known
                            .iter()
                            .map(|k| format!("--{k} N"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
                continue;
            };
            let value = inline
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("--{flag} needs a value"))?;
            let n = value
                .parse()
                .map_err(|_| format!("--{flag}: {value} is not a number"))?;
            values.insert(flag.to_owned(), n);
        }
        Ok(Self { bench, values })
    }

    /// The value of `--name`, or `default`.
    pub(crate) fn get(&self, name: &str, default: u64) -> u64 {
        self.values.get(name).copied().unwrap_or(default)
    }
}
