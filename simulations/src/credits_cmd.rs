//! `warren-sim credits`: the credit ledger under load with free-riders, a Sybil ring and
//! whitewashers (table, CSV, plot).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use warren_simulations::credits::{self, Class, Params};
use warren_simulations::plot::{self, Chart, Series, XScale, YRange};

#[derive(Args)]
pub(crate) struct CreditsArgs {
    /// Peers.
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Fraction of contributors (they serve and store; the holders).
    #[arg(long, default_value_t = 0.5)]
    contributors: f64,
    /// Fraction of free-riders (only download).
    #[arg(long, default_value_t = 0.2)]
    free_riders: f64,
    /// Fraction in the Sybil ring (the rest are whitewashers).
    #[arg(long, default_value_t = 0.2)]
    sybils: f64,
    /// Rounds.
    #[arg(long, default_value_t = 30)]
    rounds: u32,
    /// Seconds per round.
    #[arg(long, default_value_t = 60)]
    round_secs: u64,
    /// Blocks (1 MiB) each peer asks for per round.
    #[arg(long, default_value_t = 16)]
    demand: usize,
    /// Blocks a holder serves per round.
    #[arg(long, default_value_t = 24)]
    capacity: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "results/credits")]
    out: PathBuf,
    /// TrueType font for the plot's text.
    #[arg(long)]
    font: Option<PathBuf>,
}

const COLORS: [(u8, u8, u8); 4] = [
    (30, 120, 200),
    (220, 120, 20),
    (200, 30, 30),
    (120, 60, 170),
];

pub(crate) fn run(args: CreditsArgs) -> Result<()> {
    let fractions = args.contributors + args.free_riders + args.sybils;
    if !(0.0..=1.0).contains(&fractions) || args.contributors <= 0.0 {
        bail!("--contributors, --free-riders and --sybils must be fractions summing to at most 1");
    }
    let p = Params {
        peers: args.peers,
        contributors: args.contributors,
        free_riders: args.free_riders,
        sybils: args.sybils,
        rounds: args.rounds,
        round_secs: args.round_secs,
        demand: args.demand,
        capacity: args.capacity,
        seed: args.seed,
        ..Params::default()
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "credits: {} peers ({:.0}% contributors, {:.0}% free-riders, {:.0}% Sybil ring, rest whitewashers), {} rounds of {} s, {} blocks of 1 MiB asked per peer per round from {} holders, {} served per holder per round, seed {}",
        p.peers,
        100.0 * p.contributors,
        100.0 * p.free_riders,
        100.0 * p.sybils,
        p.rounds,
        p.round_secs,
        p.demand,
        p.holders,
        p.capacity,
        p.seed
    );
    let started = Instant::now();
    let rows = credits::run(&p)?;
    let elapsed = started.elapsed();
    let asked: u64 = rows.iter().map(|r| r.asked).sum();
    let served: u64 = rows.iter().map(|r| r.served).sum();
    let receipts: u64 = rows
        .iter()
        .filter(|r| r.class == Class::Contributor)
        .map(|r| r.receipts)
        .sum();
    println!(
        "load: {asked} blocks asked, {served} served ({:.0}%); {receipts} receipts signed and countersigned; {:.1} s",
        100.0 * served as f64 / asked.max(1) as f64,
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "{:>12} | {:>6} | {:>14} | {:>9} | {:>16}",
        "class", "peers", "share served", "refused", "mean balance (nc)"
    );
    for class in Class::ALL {
        let of: Vec<_> = rows.iter().filter(|r| r.class == class).cloned().collect();
        let Some(last) = of.last() else { continue };
        println!(
            "{:>12} | {:>6} | {:>13.1}% | {:>9} | {:>16.0}",
            class.name(),
            last.peers,
            100.0 * credits::summary(&of, class),
            of.iter().map(|r| r.refused).sum::<u64>(),
            last.mean_balance_nc
        );
    }
    if let Some(last) = rows.last() {
        println!();
        println!(
            "sybil ring: mean balance with the member that signs it receipts {:.0} nc; best balance of any Sybil with an honest holder {} nc; {} collusion receipts shown to honest holders in the last round, {} refused",
            last.sybil_in_group_nc,
            last.sybil_best_nc,
            rows.iter()
                .rev()
                .find(|r| r.class == Class::Sybil)
                .map_or(0, |r| r.peers),
            last.sybil_refused
        );
    }
    let csv_path = args.out.join("credits.csv");
    std::fs::write(&csv_path, credits::csv(&rows))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let font = plot::load_font(args.font.as_deref());
    let series: Vec<Series> = Class::ALL
        .iter()
        .zip(COLORS)
        .map(|(&class, color)| Series {
            label: class.name().to_string(),
            points: rows
                .iter()
                .filter(|r| r.class == class)
                .map(|r| (f64::from(r.round), 100.0 * r.share()))
                .collect(),
            color,
            dashed: false,
        })
        .collect();
    let png = args.out.join("credits-share.png");
    let title = format!(
        "Share of requested blocks served per round, busy holders ({} peers, seed {})",
        p.peers, p.seed
    );
    plot::line_chart(
        &png,
        &Chart {
            title: &title,
            x_label: "round (60 s)",
            x_scale: XScale::Linear,
            y_label: "% of blocks asked that were served",
            y_range: YRange::Fixed(0.0, 105.0),
            goal: None,
        },
        &series,
        font.is_some(),
    )
    .map_err(|e| anyhow::anyhow!("plotting {}: {e}", png.display()))?;
    println!("wrote {} and {}", csv_path.display(), png.display());
    Ok(())
}
