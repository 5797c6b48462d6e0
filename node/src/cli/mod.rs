//! The `warren` command line: clap definitions and what each subcommand prints.
//!
//! `start` and `devnet` run things; every other subcommand talks to a running node through its
//! control API, found through the data directory (`--data-dir` or `WARREN_DATA_DIR`).
//!
//! | module     | holds                                                             |
//! |------------|-------------------------------------------------------------------|
//! | [`args`]   | clap definitions; start flags applied over the config             |
//! | [`start`]  | `warren start`: a [`crate::node::Node`] with the control API      |
//! | `remote` | subcommands answered by a running node's API                      |
//! | `text`   | what they print without `--json`                                  |
//! | [`client`] | the API's HTTP client                                             |
//! | [`transfer`], `jobs`, [`devnet`], [`netns`], [`init`] | put/get, inference, devnets (loopback or namespaces), config files |

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::remote::run_client;
use crate::config::{self, Config, LogFormat};

pub mod args;
mod capability_input;
pub mod client;
pub mod devnet;
pub mod init;
mod jobs;
pub mod names;
pub mod netns;
mod remote;
pub mod start;
mod text;
pub mod transfer;
mod tree;

pub use args::*;

fn init_logging(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_env("WARREN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn run_async(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    match cli.command {
        Command::Start(args) => {
            let file = args.config.clone().or_else(|| {
                let p = data_dir.join("config.toml");
                p.exists().then_some(p)
            });
            let base = match &file {
                Some(f) => Config::from_file(f)?,
                None => Config::default(),
            };
            let config = args.apply(base)?;
            if args.dump_config {
                config.validate()?;
                print!("{}", config.to_toml()?);
                return Ok(());
            }
            init_logging(
                config.log_format,
                "info,libp2p_kad=warn,libp2p_gossipsub=warn",
            );
            crate::cli::start::run(config, &data_dir).await?;
            Ok(())
        }
        Command::Init { force, start } => {
            let path = start
                .config
                .clone()
                .unwrap_or_else(|| data_dir.join("config.toml"));
            if path.exists() && !force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            let config = start.apply(Config::default())?;
            config.validate()?;
            crate::keystore::ensure_data_dir(&data_dir)?;
            std::fs::write(&path, crate::cli::init::commented_toml(&config)?)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
            println!(
                "start the node with: warren --data-dir {} start",
                data_dir.display()
            );
            Ok(())
        }
        Command::Devnet(args) => {
            init_logging(LogFormat::Text, "info");
            let dir = cli
                .data_dir
                .clone()
                .unwrap_or_else(|| config::default_data_dir().join("devnet"));
            if args.netns {
                crate::cli::netns::run(&dir, &args).await
            } else {
                crate::cli::devnet::run(&dir, args.nodes, &args.network, &args.roles.0).await
            }
        }
        _ => run_client(cli, data_dir).await,
    }
}

/// Entry point of the `warren` binary.
pub fn main() -> ExitCode {
    // The sandboxed worker (hidden): before clap and the runtime, while one thread runs.
    if std::env::args_os().nth(1).as_deref() == Some(crate::worker::child::SUBCOMMAND.as_ref()) {
        let args: Vec<String> = std::env::args_os()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return crate::worker::child::main(&args);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
