//! `warren-sim`: runs the simulation scenarios and writes their CSV and plots.
//!
//! ```text
//! warren-sim sybil --peers 10000 --sybil-fraction 0.2,0.5,0.8 --seed 1 --rounds 48 --out results/sybil
//! ```

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use warren_simulations::{
    plot::{self, Chart},
    sybil::{self, Params, Scenario},
};

#[derive(Parser)]
#[command(
    name = "warren-sim",
    about = "warren's protocol code at scale",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The reputation machine under colluding Sybil identities.
    Sybil(SybilArgs),
}

#[derive(Args)]
struct SybilArgs {
    /// Identities in total (providers and Sybils).
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Shares of the identities that are Sybils, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.5,0.8")]
    sybil_fraction: Vec<f64>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds; each is one virtual hour.
    #[arg(long, default_value_t = 48)]
    rounds: u32,
    /// Output folder.
    #[arg(long, default_value = "results/sybil")]
    out: PathBuf,
    /// Share of the providers that are bad.
    #[arg(long, default_value_t = 0.2)]
    bad_fraction: f64,
    /// Honest providers that each run a full reputation machine.
    #[arg(long, default_value_t = 50)]
    evaluators: usize,
    /// Bootstrap peers (pre-trusted by every evaluator).
    #[arg(long, default_value_t = 8)]
    bootstrap: usize,
    /// Audits each provider runs per round.
    #[arg(long, default_value_t = 2)]
    audits: usize,
    /// Reports each Sybil files per round.
    #[arg(long, default_value_t = 4)]
    sybil_reports: usize,
    /// Share of audits a bad provider passes.
    #[arg(long, default_value_t = 0.5)]
    bad_pass_rate: f64,
    /// /16 networks the Sybils live in (0: spread over random /16s, the hard case).
    #[arg(long, default_value_t = 0)]
    sybil_networks: usize,
    /// The reputation machine's vetting threshold (default: the protocol's).
    #[arg(long)]
    vetting_threshold: Option<f64>,
    /// Also run the no-defence baseline (every identity pre-trusted) with this many evaluators;
    /// 0 skips it.
    #[arg(long, default_value_t = 5)]
    baseline_evaluators: usize,
    /// Worker threads (results do not depend on it). Default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// TrueType font for the plot's text (default: DejaVu Sans or Arial where installed).
    #[arg(long)]
    font: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Sybil(args) => run_sybil(args),
    }
}

fn run_sybil(args: SybilArgs) -> Result<()> {
    if args.sybil_fraction.iter().any(|f| !(0.0..1.0).contains(f)) {
        bail!("--sybil-fraction values must be in [0, 1)");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let params = Params {
        peers: args.peers,
        bad_fraction: args.bad_fraction,
        evaluators: args.evaluators,
        baseline_evaluators: args.baseline_evaluators,
        bootstrap: args.bootstrap,
        rounds: args.rounds,
        audits_per_round: args.audits,
        sybil_reports_per_round: args.sybil_reports,
        bad_pass_rate: args.bad_pass_rate,
        sybil_networks: args.sybil_networks,
        seed: args.seed,
        threads,
        vetting_threshold: args
            .vetting_threshold
            .unwrap_or(Params::default().vetting_threshold),
        ..Params::default()
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "sybil: {} identities, {:.0}% of providers bad, {} evaluators ({} in the baseline), {} rounds of 1 h, seed {}, {} threads",
        params.peers,
        100.0 * params.bad_fraction,
        params.evaluators,
        params.baseline_evaluators,
        params.rounds,
        params.seed,
        threads
    );

    let started = Instant::now();
    let mut rows = Vec::new();
    let mut scenarios = vec![Scenario::Warren];
    if params.baseline_evaluators > 0 {
        scenarios.push(Scenario::NoDefence);
    }
    for scenario in scenarios {
        for &f in &args.sybil_fraction {
            let t = Instant::now();
            let r = sybil::run(&params, scenario, f);
            println!(
                "  {scenario:<10} {:>3.0}% Sybil: {:.1} s",
                100.0 * f,
                t.elapsed().as_secs_f64()
            );
            rows.extend(r);
        }
    }
    let elapsed = started.elapsed();

    let csv_path = args.out.join("sybil.csv");
    std::fs::write(&csv_path, sybil::report::csv(&rows))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let png_path = args.out.join("sybil.png");
    let font = plot::load_font(args.font.as_deref());
    let title = format!(
        "Bad providers among top-quartile choices ({} identities, {:.0}% of providers bad)",
        params.peers,
        100.0 * params.bad_fraction
    );
    plot::line_chart(
        &png_path,
        &Chart {
            title: &title,
            x_label: "hours",
            y_label: "bad providers in top quartile (%)",
            y_range: (0.0, 100.0),
            goal: Some((5.0, "goal: 5%")),
        },
        &sybil::report::series(&rows),
        font.is_some(),
    )
    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", png_path.display()))?;

    println!();
    print!("{}", sybil::report::summary(&rows));
    println!();
    println!("wrote {} and {}", csv_path.display(), png_path.display());
    if font.is_none() {
        let tried = match &args.font {
            Some(path) => path.display().to_string(),
            None => plot::FONT_CANDIDATES.join(", "),
        };
        println!(
            "note: no usable TrueType font (tried {tried}); the plot has no text. Pass --font FILE.ttf."
        );
    }
    println!("simulated in {:.1} s", elapsed.as_secs_f64());
    Ok(())
}
