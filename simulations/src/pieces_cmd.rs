//! `warren-sim pieces`: erasure-coded stripes with lazy repair next to RF 3 whole copies with
//! eager repair, in the same churn (same seed, same sessions, same departures).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use warren_simulations::churn::{self, pieces};
use warren_simulations::plot::{self, Series};
use warren_storage_mesh::stripe::StripePolicy;

#[derive(Args)]
pub(crate) struct PiecesArgs {
    /// Peers (departed ones are replaced by fresh identities).
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Files (1 MiB each).
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    /// Data pieces per stripe (any this many rebuild it).
    #[arg(long, default_value_t = 8)]
    data: usize,
    /// Parity pieces per stripe.
    #[arg(long, default_value_t = 16)]
    parity: usize,
    /// Rebuild when fewer pieces than this count.
    #[arg(long, default_value_t = 12)]
    repair_at: usize,
    /// Hours a holder may be offline and still count.
    #[arg(long, default_value_t = 24.0)]
    lazy_h: f64,
    /// Rebuilt pieces take fresh indices; a returning holder's piece counts again.
    #[arg(long)]
    fresh_indices: bool,
    /// A repair that finds fewer than `data` pieces online fetches and keeps those it can and
    /// finishes on a later try, instead of waiting for `data` holders online at once.
    #[arg(long)]
    gather: bool,
    /// Permanent departures per peer per day, comma-separated (the first is the headline).
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.06,0.08,0.1,0.2")]
    churn: Vec<f64>,
    /// Simulated days after the files are stored.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rows every this many hours.
    #[arg(long, default_value_t = 6)]
    sample_hours: u32,
    /// Worker threads (results do not depend on it). Default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "results/pieces")]
    out: PathBuf,
    /// TrueType font for the plots' text.
    #[arg(long)]
    font: Option<PathBuf>,
}

enum Job {
    Copies(f64),
    Pieces(f64),
}

enum Rows {
    Copies(Vec<churn::Row>),
    Pieces(Vec<pieces::PieceRow>),
}

pub(crate) fn run(args: PiecesArgs) -> Result<()> {
    let policy = StripePolicy {
        data: args.data,
        parity: args.parity,
        repair_at: args.repair_at,
        lazy_ms: (args.lazy_h * 3_600_000.0) as u64,
    };
    if !policy.is_valid() || args.lazy_h < 0.0 {
        bail!("--data must be at least 1 and --repair-at between --data and --data + --parity");
    }
    if args.churn.is_empty() || args.churn.iter().any(|c| !(0.0..=1.0).contains(c)) {
        bail!("--churn values must be in [0, 1]");
    }
    let threads = crate::threads(args.threads);
    let defaults = churn::Params::default();
    let params = churn::Params {
        peers: args.peers,
        files: args.files,
        days: args.days,
        sample_hours: args.sample_hours,
        seed: args.seed,
        ..defaults
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "pieces: {} peers, {} files of 1 MiB, {} days, {:.0}% online, seed {}; stripes {}+{} ({:.2}x), rebuild below {} counted, offline < {} h counts; against RF 3 (detect 30 min)",
        params.peers,
        params.files,
        params.days,
        100.0 * params.sessions.availability(),
        params.seed,
        policy.data,
        policy.parity,
        policy.expansion(),
        policy.repair_at,
        args.lazy_h
    );
    let jobs: Vec<Job> = args
        .churn
        .iter()
        .flat_map(|&c| [Job::Copies(c), Job::Pieces(c)])
        .collect();
    let started = Instant::now();
    let runs = crate::parallel(&jobs, threads, |job| match *job {
        Job::Copies(c) => Rows::Copies(churn::run(
            &params,
            churn::Spec {
                rf: 3,
                churn: c,
                repair: true,
                pace: churn::Pace::EveryPass,
            },
        )),
        Job::Pieces(c) => Rows::Pieces(pieces::run(
            &params,
            policy,
            c,
            args.fresh_indices,
            args.gather,
        )),
    });
    let elapsed = started.elapsed();
    let (mut copies, mut stripes) = (Vec::new(), Vec::new());
    for r in runs {
        match r {
            Rows::Copies(rows) => copies.push(rows),
            Rows::Pieces(rows) => stripes.push(rows),
        }
    }
    let days = f64::from(params.days.max(1));
    println!();
    println!(
        "{:>7} | {:>22} | {:>8} | {:>14} | {:>11} | {:>8}",
        "churn", "files lost (RF3/pieces)", "stored", "stored", "repair/day", "repair/day"
    );
    println!(
        "{:>7} | {:>22} | {:>8} | {:>14} | {:>11} | {:>8}",
        "%/day", "", "RF 3", "pieces", "RF 3", "pieces"
    );
    let mut csv = pieces::csv(&stripes.concat());
    csv.push_str("\n# RF 3, same churn\nchurn,hours,lost,files,copies_per_file,repair_per_byte\n");
    for (c, s) in copies.iter().zip(&stripes) {
        let (Some(c_last), Some(s_last)) = (c.last(), s.last()) else {
            continue;
        };
        for r in c {
            csv.push_str(&format!(
                "{},{},{},{},{:.4},{:.4}\n",
                r.spec.churn,
                r.hours,
                r.lost,
                r.files,
                r.copies_mean,
                r.attempted as f64 / r.files.max(1) as f64
            ));
        }
        let c_repair = c_last.attempted as f64 / c_last.files.max(1) as f64 / days;
        let s_repair = s_last.repair_per_byte / days;
        println!(
            "{:>7.1} | {:>10} / {:<9} | {:>8.2} | {:>14.2} | {:>11.3} | {:>8.3}  ({})",
            100.0 * s_last.churn,
            c_last.lost,
            s_last.lost,
            c_last.copies_mean,
            s_last.stored_per_byte,
            c_repair,
            s_repair,
            if s_repair > 0.0 {
                format!("{:.2}x less", c_repair / s_repair)
            } else {
                "no repair".to_string()
            }
        );
    }
    let csv_path = args.out.join("pieces.csv");
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    // Plots at the headline churn: stored bytes and cumulative repair traffic per file byte.
    let font = plot::load_font(args.font.as_deref());
    let mut written = vec![csv_path.display().to_string()];
    if let (Some(c), Some(s)) = (copies.first(), stripes.first()) {
        let day = |h: u32| f64::from(h) / 24.0;
        let label = format!(
            "pieces {}+{}, rebuild below {}, lazy {} h",
            policy.data, policy.parity, policy.repair_at, args.lazy_h
        );
        let plots = [
            (
                "pieces_stored.png",
                format!(
                    "Stored bytes per file byte, {:.0}% of peers leave per day ({} peers, {} files)",
                    100.0 * args.churn[0],
                    params.peers,
                    params.files
                ),
                "stored bytes per file byte",
                vec![
                    Series {
                        label: "RF 3 whole copies, eager repair".into(),
                        points: c.iter().map(|r| (day(r.hours), r.copies_mean)).collect(),
                        color: (200, 60, 40),
                        dashed: false,
                    },
                    Series {
                        label: label.clone(),
                        points: s
                            .iter()
                            .map(|r| (day(r.hours), r.stored_per_byte))
                            .collect(),
                        color: (40, 90, 200),
                        dashed: false,
                    },
                ],
            ),
            (
                "pieces_repair.png",
                format!(
                    "Repair traffic per file byte, cumulative, {:.0}% of peers leave per day",
                    100.0 * args.churn[0]
                ),
                "repair bytes per file byte",
                vec![
                    Series {
                        label: "RF 3 whole copies, eager repair".into(),
                        points: c
                            .iter()
                            .map(|r| (day(r.hours), r.attempted as f64 / r.files.max(1) as f64))
                            .collect(),
                        color: (200, 60, 40),
                        dashed: false,
                    },
                    Series {
                        label,
                        points: s
                            .iter()
                            .map(|r| (day(r.hours), r.repair_per_byte))
                            .collect(),
                        color: (40, 90, 200),
                        dashed: false,
                    },
                ],
            ),
        ];
        for (file, title, y_label, series) in plots {
            let path = args.out.join(file);
            crate::days_chart(&path, &title, y_label, &series, None, font.is_some())?;
            written.push(path.display().to_string());
        }
    }
    println!();
    println!("wrote {}", written.join(", "));
    crate::font_note(font.as_ref(), args.font.as_ref());
    println!("simulated in {:.1} s", elapsed.as_secs_f64());
    Ok(())
}
