//! `warren-bench`: benchmarks that start real `warren` nodes on loopback and print figures.
//!
//! Every subcommand spawns the `warren` binary (`--warren PATH`, by default the `warren` next to
//! this binary, i.e. in the same target directory), so build both first:
//!
//! ```sh
//! cargo build --release -p warren-node -p warren-bench
//! target/release/warren-bench startup | put-memory | fetch | onion | infer | idle | net
//! ```
//!
//! The benchmarks of one library run as `cargo bench` targets there: the store's ingest and
//! private puts in `warren-storage-mesh`, the in-memory onion circuit build in
//! `warren-protocol`.

mod fetch;
mod idle;
mod infer;
mod net;
mod nodes;
mod onion;
mod pieces;
mod startup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks of real `warren` nodes on loopback, printing figures.
#[derive(Debug, Parser)]
#[command(name = "warren-bench", version)]
struct Cli {
    /// The `warren` binary to run (default: `warren` next to this binary).
    #[arg(long, global = true, value_name = "PATH")]
    warren: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tokens/s and embeddings/s of the same models on this node's executor and through one
    /// remote operator on loopback.
    Infer {
        /// Models directory (default: WARREN_MODELS_DIR or ./models).
        #[arg(long)]
        models: Option<PathBuf>,
        /// New tokens per generation.
        #[arg(long, default_value_t = 64)]
        tokens: u32,
        /// Texts per embedding batch.
        #[arg(long, default_value_t = 128)]
        texts: usize,
        /// Rounds of each measurement (medians are printed).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Time from exec to listening, and idle resident memory, of fresh nodes.
    Startup {
        /// Number of nodes started one after another.
        #[arg(long, default_value_t = 5)]
        runs: u32,
        /// Seconds each node idles before its memory is read.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
    /// Loopback `get` throughput from 1 and from 3 holders, next to a plain TCP copy.
    Fetch {
        /// MiB per file.
        #[arg(long, default_value_t = 256)]
        size_mib: u64,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Timed gets per source (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// 3-hop onion circuit build time on loopback nodes, `get --anon` throughput next to a
    /// direct `get` (the in-memory build: `cargo bench -p warren-protocol --bench onion`).
    Onion {
        /// MiB of the file fetched.
        #[arg(long, default_value_t = 64)]
        size_mib: u64,
        /// Circuits built on loopback (at most 50).
        #[arg(long, default_value_t = 50)]
        builds: usize,
        /// Throughput rounds (medians are printed).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Background CPU and DHT/audit work of idle nodes holding N replica blocks each, next to
    /// empty nodes, in one run.
    Idle {
        /// Replica blocks per node, one measurement each (0: empty nodes).
        #[arg(long, value_delimiter = ',', default_values_t = [0u64, 1_000, 10_000, 100_000])]
        blocks: Vec<u64>,
        /// Seconds the nodes idle before the measurement.
        #[arg(long, default_value_t = 30)]
        warmup_secs: u64,
        /// Seconds measured.
        #[arg(long, default_value_t = 120)]
        measure_secs: u64,
        /// Start the nodes as a network's first start (no sweep snapshot: every block's holders
        /// looked up and every provider record announced in the first period) instead of as a
        /// settled network restarted.
        #[arg(long)]
        fresh: bool,
    },
    /// A `warren devnet` on loopback and on shaped links (`--netns`, needs root): get from 1
    /// and 3 holders next to the link rate and to iroh's `sendme`, put at RF 3, DHT record
    /// lookups, 3-hop circuit builds in round trips, `get --anon` next to a direct get; a table,
    /// net.csv and the sweep's plots in `--out`.
    Net {
        /// MiB per file (less on a slow link: what it carries in 5 s).
        #[arg(long, default_value_t = 32)]
        size_mib: u64,
        /// Shaped settings, LATENCY/RATE (one-way latency, each access link's rate each way).
        #[arg(long, value_delimiter = ',', value_parser = net::parse_shape,
              default_value = "20ms/100mbit,80ms/20mbit,20ms/20mbit,80ms/100mbit")]
        links: Vec<net::Shape>,
        /// Leave out the loopback devnet.
        #[arg(long)]
        no_loopback: bool,
        /// Only loopback, small files, few lookups and builds: a smoke run.
        #[arg(long)]
        quick: bool,
        /// Timed gets (and sendme copies) per figure; medians are reported.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// DHT record lookups timed per setting.
        #[arg(long, default_value_t = 40)]
        lookups: usize,
        /// Circuits built per setting (small `get --anon`s).
        #[arg(long, default_value_t = 5)]
        builds: usize,
        /// iroh's sendme (default: on PATH, in ~/.cargo/bin or /work/target-sendme/release).
        #[arg(long, value_name = "PATH")]
        sendme: Option<PathBuf>,
        /// Where net.csv and the plots go.
        #[arg(long, default_value = "bench-net")]
        out: PathBuf,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Times record lookups through a node's API and prints them (ms) as JSON: run by `net`
    /// inside a node's namespace.
    #[command(hide = true)]
    Lookups {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
        #[arg(long, default_value_t = 40)]
        count: usize,
    },
    /// Loopback `get` of a file kept as pieces next to whole copies on 1 and 3 holders, and
    /// `put` with encoding next to a local put and a put at RF 3, in the same run.
    Pieces {
        /// MiB per file.
        #[arg(long, default_value_t = 64)]
        size_mib: u64,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Timed gets per source (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The code, K+M.
        #[arg(long, default_value = "4+4")]
        code: String,
    },
    /// Peak resident memory of a node during a large `put`.
    PutMemory {
        /// MiB of mixed data to put.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Lookups {
        data_dir,
        peers,
        count,
    } = &cli.command
    {
        return net::lookups(data_dir, peers, *count).await;
    }
    let exe = nodes::warren_exe(cli.warren)?;
    match cli.command {
        Command::Lookups { .. } => Ok(()),
        Command::Net {
            size_mib,
            links,
            no_loopback,
            quick,
            rounds,
            lookups,
            builds,
            sendme,
            out,
            seed,
        } => {
            let b = net::NetBench {
                size_mib: if quick { size_mib.min(4) } else { size_mib },
                shapes: if quick { Vec::new() } else { links },
                loopback: quick || !no_loopback,
                rounds: rounds.max(1),
                lookups: if quick {
                    lookups.min(5)
                } else {
                    lookups.max(1)
                },
                builds: if quick { builds.min(1) } else { builds },
                out,
                seed,
            };
            net::net(&exe, net::find_sendme(sendme), b).await
        }
        Command::Infer {
            models,
            tokens,
            texts,
            rounds,
        } => {
            let o = infer::InferBench {
                models: models.unwrap_or_else(infer::default_models_dir),
                tokens,
                texts,
                rounds,
            };
            infer::run(&exe, &o).await
        }
        Command::Idle {
            blocks,
            warmup_secs,
            measure_secs,
            fresh,
        } => idle::idle(&exe, &blocks, warmup_secs, measure_secs, !fresh).await,
        Command::Startup { runs, idle_secs } => {
            startup::startup(&exe, runs, idle_secs).await.map(|_| ())
        }
        Command::Onion {
            size_mib,
            builds,
            rounds,
            seed,
        } => onion::onion(&exe, size_mib, builds, rounds, seed).await,
        Command::Fetch {
            size_mib,
            seed,
            rounds,
        } => fetch::fetch(&exe, size_mib, seed, rounds).await,
        Command::Pieces {
            size_mib,
            seed,
            rounds,
            code,
        } => pieces::pieces(&exe, size_mib, seed, rounds, &code).await,
        Command::PutMemory { size_mib, seed } => startup::put_memory(&exe, size_mib, seed).await,
    }
}
