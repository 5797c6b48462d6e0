//! `warren-sim`: runs the simulation scenarios and writes their CSV and plots.
//!
//! ```text
//! warren-sim sybil --peers 10000 --sybil-fraction 0.2,0.5,0.8 --seed 1 --rounds 48 --out results/sybil
//! warren-sim churn --peers 10000 --files 100000 --rf 2,3,5 --churn 0.02,0.05,0.1 --days 30
//! warren-sim dht --nodes 1000,10000,100000 --adversarial 0.2 --attack collude,fake --paths 1,8
//! warren-sim swarm --nodes 200 --files 20 --rf 3
//! warren-sim credits --peers 10000 --rounds 30 --seed 1
//! warren-sim pieces --peers 10000 --files 100000 --data 8 --parity 16 --churn 0.05,0.1,0.2
//! ```

mod credits_cmd;
mod pieces_cmd;

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use warren_simulations::{
    churn, dht,
    plot::{self, Chart, XScale, YRange},
    swarm,
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
    /// Placement and repair keeping files alive under heavy-tailed churn.
    Churn(ChurnArgs),
    /// The churn model with silent copy losses: repair at the old pace (every block every 5 s)
    /// next to the background sweep's (once per recheck period), in one run.
    Pace(PaceArgs),
    /// Erasure-coded stripes with lazy repair next to RF 3 whole copies, in the same churn.
    Pieces(pieces_cmd::PiecesArgs),
    /// The credit ledger under load: contributors, free-riders, a Sybil ring, whitewashers.
    Credits(credits_cmd::CreditsArgs),
    /// Kademlia lookups over disjoint paths with churn and adversarial nodes.
    Dht(DhtArgs),
    /// Real warren nodes by the hundred in one process on the memory transport.
    Swarm(SwarmArgs),
}

#[derive(Args)]
struct PaceArgs {
    /// Peers (departed ones are replaced by fresh identities).
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Files (one 1 MiB block each).
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    /// Replication factor.
    #[arg(long, default_value_t = 3)]
    rf: usize,
    /// Permanent departures per peer per day.
    #[arg(long, default_value_t = 0.05)]
    churn: f64,
    /// Copies lost silently per copy per day (a disk that rots, a holder that deletes).
    #[arg(long, default_value_t = 0.01)]
    silent_loss: f64,
    /// Recheck periods of the sweep to compare with the old pace, hours.
    #[arg(long, value_delimiter = ',', default_value = "16,72")]
    period_h: Vec<f64>,
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
    #[arg(long, default_value = "results/pace")]
    out: PathBuf,
    /// TrueType font for the plots' text.
    #[arg(long)]
    font: Option<PathBuf>,
}

#[derive(Args)]
struct SwarmArgs {
    /// Nodes.
    #[arg(long, default_value_t = 200)]
    nodes: usize,
    /// Files put.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// KiB per file.
    #[arg(long, default_value_t = 256)]
    file_kib: usize,
    /// Replication factor of each put.
    #[arg(long, default_value_t = 3)]
    rf: usize,
    /// Nodes that fetch each file.
    #[arg(long, default_value_t = 5)]
    gets: usize,
    /// DHT record lookups.
    #[arg(long, default_value_t = 100)]
    lookups: usize,
    /// Peers each node needs for the network to count as converged.
    #[arg(long, default_value_t = 8)]
    min_peers: usize,
    /// Each node's connection limit (the node's max_peers; 64 is the node's default).
    #[arg(long, default_value_t = 64)]
    max_peers: usize,
    /// Longest wait for convergence, seconds.
    #[arg(long, default_value_t = 180)]
    converge_timeout: u64,
    /// Seed of identities, bootstrap choices and data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads of the runtime. Default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Folder for the nodes' stores (emptied first, removed at the end).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "results/swarm")]
    out: PathBuf,
}

#[derive(Args)]
struct DhtArgs {
    /// Network sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    nodes: Vec<usize>,
    /// Share of adversarial nodes (each size also runs without any).
    #[arg(long, default_value_t = 0.2)]
    adversarial: f64,
    /// What adversaries answer: collude (the adversaries closest to the target), fake (made-up
    /// closer ids), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "collude,fake")]
    attack: Vec<String>,
    /// Disjoint paths d, comma-separated (1 is plain Kademlia).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    paths: Vec<usize>,
    /// Share of nodes offline at a time (their table entries go stale).
    #[arg(long, default_value_t = 0.3)]
    offline: f64,
    /// Bucket size k.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Queries in flight per path, α.
    #[arg(long, default_value_t = 3)]
    alpha: usize,
    /// Lookups per setting.
    #[arg(long, default_value_t = 2_000)]
    lookups: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (results do not depend on it). Default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "results/dht")]
    out: PathBuf,
    /// TrueType font for the plots' text.
    #[arg(long)]
    font: Option<PathBuf>,
}

#[derive(Args)]
struct ChurnArgs {
    /// Peers (departed ones are replaced by fresh identities).
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Files (one 1 MiB block each).
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    /// Replication factors, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,3,5")]
    rf: Vec<usize>,
    /// Permanent departures per peer per day, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.02,0.05,0.1")]
    churn: Vec<f64>,
    /// The churn rate the summary and the first plot focus on (must be in --churn).
    #[arg(long, default_value_t = 0.05)]
    default_churn: f64,
    /// Simulated days after the files are stored.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Median online session, hours (Weibull).
    #[arg(long, default_value_t = 3.0)]
    session_median_h: f64,
    /// Weibull shape of sessions and offline periods (< 1: heavy-tailed).
    #[arg(long, default_value_t = 0.5)]
    session_shape: f64,
    /// Median offline period, hours (Weibull).
    #[arg(long, default_value_t = 3.0)]
    offline_median_h: f64,
    /// Minutes a holder must be unreachable before the others stop counting it.
    #[arg(long, default_value_t = 30)]
    detect_minutes: u64,
    /// Share of repair copies lost in transfer.
    #[arg(long, default_value_t = 0.01)]
    copy_loss: f64,
    /// Rows every this many hours.
    #[arg(long, default_value_t = 6)]
    sample_hours: u32,
    /// Worker threads (results do not depend on it). Default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "results/churn")]
    out: PathBuf,
    /// TrueType font for the plots' text.
    #[arg(long)]
    font: Option<PathBuf>,
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
        Command::Churn(args) => run_churn(args),
        Command::Pace(args) => run_pace(args),
        Command::Pieces(args) => pieces_cmd::run(args),
        Command::Credits(args) => credits_cmd::run(args),
        Command::Dht(args) => run_dht(args),
        Command::Swarm(args) => run_swarm(args),
    }
}

fn run_swarm(args: SwarmArgs) -> Result<()> {
    // Progress on stderr; the nodes' own logs only from warnings up (RUST_LOG overrides).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warren_simulations=info,error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let threads = threads(args.threads);
    let params = swarm::Params {
        nodes: args.nodes,
        files: args.files,
        file_bytes: args.file_kib << 10,
        rf: args.rf,
        gets_per_file: args.gets,
        lookups: args.lookups,
        min_peers: args.min_peers,
        max_peers: args.max_peers,
        converge_timeout: std::time::Duration::from_secs(args.converge_timeout),
        dir: args.data_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("warren-swarm-{}", std::process::id()))
        }),
        seed: args.seed,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "swarm: {} nodes on the memory transport, {} files of {} KiB at RF {}, {} gets each, {} lookups, seed {}, {} threads",
        params.nodes,
        params.files,
        args.file_kib,
        params.rf,
        params.gets_per_file,
        params.lookups,
        params.seed,
        threads
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let started = Instant::now();
    let r = runtime.block_on(swarm::run(&params))?;
    let elapsed = started.elapsed();
    let csv = format!(
        "nodes,below_min_peers,start_ms,converge_ms,peers_min,peers_mean,peers_max,routing_table_mean,lookups_ok,lookups,lookup_ms_median,puts_ok,puts,put_ms_median,gets_ok,gets,get_ms_median\n{},{},{},{},{},{:.1},{},{:.1},{},{},{},{},{},{},{},{},{}\n",
        r.nodes,
        r.below_min_peers,
        r.start_ms,
        r.converge_ms
            .map_or_else(|| "timeout".to_string(), |m| m.to_string()),
        r.peers.0,
        r.peers.1,
        r.peers.2,
        r.routing_table_mean,
        r.lookups_ok.0,
        r.lookups_ok.1,
        r.lookup_ms_median,
        r.puts_ok.0,
        r.puts_ok.1,
        r.put_ms_median,
        r.gets_ok.0,
        r.gets_ok.1,
        r.get_ms_median,
    );
    let csv_path = args.out.join("swarm.csv");
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    let mut conv = String::from("seconds,peers_min,peers_mean,routing_table_mean\n");
    for (t, min, mean, table) in &r.convergence {
        conv.push_str(&format!("{t:.2},{min},{mean:.2},{table:.2}\n"));
    }
    let conv_path = args.out.join("swarm_convergence.csv");
    std::fs::write(&conv_path, conv).with_context(|| format!("writing {}", conv_path.display()))?;
    let png_path = args.out.join("swarm_convergence.png");
    let font = plot::load_font(None);
    type Poll = (f64, usize, f64, f64);
    let line = |label: &str, color, f: &dyn Fn(&Poll) -> f64| plot::Series {
        label: label.to_string(),
        points: r.convergence.iter().map(|c| (c.0, f(c))).collect(),
        color,
        dashed: false,
    };
    let series = vec![
        line("fewest peers of any node", (214, 39, 40), &|c| c.1 as f64),
        line("mean peers per node", (31, 119, 180), &|c| c.2),
        line("mean routing-table size", (44, 160, 44), &|c| c.3),
    ];
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let title = format!("Convergence of {} in-process warren nodes", r.nodes);
    plot::line_chart(
        &png_path,
        &Chart {
            title: &title,
            x_label: "seconds after the last node started",
            x_scale: XScale::Linear,
            y_label: "peers",
            y_range: YRange::Fixed(0.0, y_max),
            goal: Some((
                params.min_peers as f64,
                "converged: every node at this many peers",
            )),
        },
        &series,
        font.is_some(),
    )
    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", png_path.display()))?;
    let pct = |(a, b): (usize, usize)| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    println!();
    println!("{:<34} {}", "nodes started", r.nodes);
    println!(
        "{:<34} {:.1} s",
        "start (all listening)",
        r.start_ms as f64 / 1e3
    );
    println!(
        "{:<34} {}",
        "nodes below --min-peers at the end", r.below_min_peers
    );
    match r.converge_ms {
        Some(m) => println!("{:<34} {:.1} s", "converged", m as f64 / 1e3),
        None => println!("{:<34} not within {} s", "converged", args.converge_timeout),
    }
    println!(
        "{:<34} {} / {:.1} / {}",
        "peers per node (min/mean/max)", r.peers.0, r.peers.1, r.peers.2
    );
    println!("{:<34} {:.1}", "routing table (mean)", r.routing_table_mean);
    println!(
        "{:<34} {}/{} ({:.1}%), median {} ms",
        "DHT record lookups",
        r.lookups_ok.0,
        r.lookups_ok.1,
        pct(r.lookups_ok),
        r.lookup_ms_median
    );
    println!(
        "{:<34} {}/{} ({:.1}%), median {} ms",
        "puts at full RF",
        r.puts_ok.0,
        r.puts_ok.1,
        pct(r.puts_ok),
        r.put_ms_median
    );
    println!(
        "{:<34} {}/{} ({:.1}%), median {} ms",
        "gets (verified)",
        r.gets_ok.0,
        r.gets_ok.1,
        pct(r.gets_ok),
        r.get_ms_median
    );
    println!();
    println!(
        "wrote {}, {}, {}",
        csv_path.display(),
        conv_path.display(),
        png_path.display()
    );
    println!("ran in {:.1} s", elapsed.as_secs_f64());
    Ok(())
}

fn run_dht(args: DhtArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.adversarial) || !(0.0..1.0).contains(&args.offline) {
        bail!("--adversarial and --offline must be in [0, 1)");
    }
    if args.nodes.iter().any(|&n| n < 2) || args.paths.contains(&0) {
        bail!("--nodes must be at least 2 and --paths at least 1");
    }
    let mut attacks = Vec::new();
    for a in &args.attack {
        attacks.push(match a.as_str() {
            "collude" => dht::Attack::Collude,
            "fake" => dht::Attack::Fake,
            other => bail!("unknown --attack {other:?} (collude, fake)"),
        });
    }
    let threads = threads(args.threads);
    let base = dht::Params {
        adversarial: 0.0,
        offline: args.offline,
        lookups: args.lookups,
        seed: args.seed,
        ..dht::Params::default()
    };
    let mut jobs = Vec::new();
    for &paths in &args.paths {
        let lookup = dht::lookup::Config {
            k: args.k,
            alpha: args.alpha,
            paths,
            ..dht::lookup::Config::default()
        };
        for &n in &args.nodes {
            jobs.push(dht::Params {
                n,
                lookup,
                ..base.clone()
            });
        }
        for &attack in &attacks {
            for &n in &args.nodes {
                jobs.push(dht::Params {
                    n,
                    lookup,
                    adversarial: args.adversarial,
                    attack,
                    ..base.clone()
                });
            }
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "dht: k = {}, α = {}, {:.0}% offline, {} lookups per setting, seed {}, {} threads",
        args.k,
        args.alpha,
        100.0 * args.offline,
        args.lookups,
        args.seed,
        threads
    );
    let started = Instant::now();
    let rows = parallel(&jobs, threads, |p| {
        let t = Instant::now();
        let row = dht::run(p);
        println!(
            "  {:>6} nodes {:>3.0}% {:<7} d = {}: {:.1} s",
            p.n,
            100.0 * p.adversarial,
            p.attack,
            p.lookup.paths,
            t.elapsed().as_secs_f64()
        );
        row
    });
    let elapsed = started.elapsed();
    let csv_path = args.out.join("dht.csv");
    std::fs::write(&csv_path, dht::report::csv(&rows))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let hops_path = args.out.join("dht_hops.csv");
    std::fs::write(&hops_path, dht::report::hops_csv(&rows))
        .with_context(|| format!("writing {}", hops_path.display()))?;
    let font = plot::load_font(args.font.as_deref());
    let mut written = vec![
        csv_path.display().to_string(),
        hops_path.display().to_string(),
    ];
    let plots = [
        (
            "dht_success.png",
            format!(
                "Lookup success vs network size ({:.0}% offline; adversarial runs solid)",
                100.0 * args.offline
            ),
            "lookups that found the value (%)",
            dht::report::series(&rows, |r| 100.0 * r.success()),
            YRange::Fit(0.0, 100.0),
            Some((99.0, "goal: 99%")),
        ),
        (
            "dht_hops.png",
            "Median lookup hops vs network size".to_string(),
            "median hops (successful lookups)",
            dht::report::series(&rows, |r| f64::from(r.hops_quantile(0.5))),
            YRange::Fit(0.0, 12.0),
            Some((4.0, "goal: 4 hops")),
        ),
    ];
    for (file, title, y_label, series, y_range, goal) in plots {
        let path = args.out.join(file);
        plot::line_chart(
            &path,
            &Chart {
                title: &title,
                x_label: "nodes (log scale)",
                x_scale: XScale::Log10Count,
                y_label,
                y_range,
                goal,
            },
            &series,
            font.is_some(),
        )
        .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    println!();
    print!("{}", dht::report::summary(&rows));
    println!();
    println!("wrote {}", written.join(", "));
    font_note(font.as_ref(), args.font.as_ref());
    println!("simulated in {:.1} s", elapsed.as_secs_f64());
    Ok(())
}

fn threads(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Runs `jobs` on `threads` workers and returns their results in job order.
fn parallel<J: Sync, R: Send>(jobs: &[J], threads: usize, f: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.min(jobs.len()).max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        done.push((i, f(job)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Draws `series` against days into `path`, the y axis from 0 to `y_max` (default: 10 % above
/// the highest point).
fn days_chart(
    path: &std::path::Path,
    title: &str,
    y_label: &str,
    series: &[plot::Series],
    y_max: Option<f64>,
    text: bool,
) -> Result<()> {
    let y_max = y_max.unwrap_or_else(|| {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(1.0, f64::max)
            * 1.1
    });
    plot::line_chart(
        path,
        &Chart {
            title,
            x_label: "days",
            x_scale: XScale::Linear,
            y_label,
            y_range: YRange::Fixed(0.0, y_max),
            goal: None,
        },
        series,
        text,
    )
    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

fn font_note(font: Option<&String>, asked: Option<&PathBuf>) {
    if font.is_none() {
        let tried = match asked {
            Some(path) => path.display().to_string(),
            None => plot::FONT_CANDIDATES.join(", "),
        };
        println!(
            "note: no usable TrueType font (tried {tried}); the plots have no text. Pass --font FILE.ttf."
        );
    }
}

fn run_churn(args: ChurnArgs) -> Result<()> {
    if args.rf.contains(&0) || args.churn.iter().any(|c| !(0.0..=1.0).contains(c)) {
        bail!("--rf values must be at least 1 and --churn values in [0, 1]");
    }
    if !args
        .churn
        .iter()
        .any(|c| (c - args.default_churn).abs() < 1e-12)
    {
        bail!("--default-churn must be one of --churn");
    }
    let threads = threads(args.threads);
    let defaults = churn::Params::default();
    let params = churn::Params {
        peers: args.peers,
        files: args.files,
        sessions: churn::Sessions {
            online_median_h: args.session_median_h,
            online_shape: args.session_shape,
            offline_median_h: args.offline_median_h,
            offline_shape: args.session_shape,
            departures_per_day: args.default_churn,
        },
        days: args.days,
        sample_hours: args.sample_hours,
        detect_minutes: args.detect_minutes,
        copy_loss: args.copy_loss,
        seed: args.seed,
        ..defaults
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "churn: {} peers, {} files of 1 MiB, {} days, sessions Weibull(median {} h on / {} h off, shape {}) = {:.0}% online, detect after {} min, seed {}, {} threads",
        params.peers,
        params.files,
        params.days,
        args.session_median_h,
        args.offline_median_h,
        args.session_shape,
        100.0 * params.sessions.availability(),
        params.detect_minutes,
        params.seed,
        threads
    );
    // Every RF at the default churn, then RF 3 at the other churn rates; each with and without
    // repair.
    let mut specs = Vec::new();
    for &rf in &args.rf {
        for repair in [true, false] {
            specs.push(churn::Spec {
                rf,
                churn: args.default_churn,
                repair,
                pace: churn::Pace::EveryPass,
            });
        }
    }
    let focus_rf = if args.rf.contains(&3) { 3 } else { args.rf[0] };
    for &c in args
        .churn
        .iter()
        .filter(|c| (*c - args.default_churn).abs() >= 1e-12)
    {
        for repair in [true, false] {
            specs.push(churn::Spec {
                rf: focus_rf,
                churn: c,
                repair,
                pace: churn::Pace::EveryPass,
            });
        }
    }
    let started = Instant::now();
    let runs = parallel(&specs, threads, |spec| {
        let t = Instant::now();
        let rows = churn::run(&params, *spec);
        println!(
            "  RF {} churn {:>4.1}%/day repair {:<3}: {:.1} s",
            spec.rf,
            100.0 * spec.churn,
            if spec.repair { "on" } else { "off" },
            t.elapsed().as_secs_f64()
        );
        rows
    });
    let elapsed = started.elapsed();
    let rows: Vec<churn::Row> = runs.into_iter().flatten().collect();

    let csv_path = args.out.join("churn.csv");
    std::fs::write(&csv_path, churn::report::csv(&rows))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let font = plot::load_font(args.font.as_deref());
    let default_churn = args.default_churn;
    let at_default = |s: &churn::Spec| (s.churn - default_churn).abs() < 1e-12;
    let lost_pct = |r: &churn::Row| 100.0 * r.lost as f64 / r.files.max(1) as f64;
    /// File name, title, y label, lines, y maximum (None: fit the data).
    type Plot<'a> = (&'a str, String, &'a str, Vec<plot::Series>, Option<f64>);
    let plots: [Plot<'_>; 3] = [
        (
            "churn_lost_by_rf.png",
            format!(
                "Files lost, repair on (solid) vs off (dashed), {:.0}% of peers leave per day ({} peers)",
                100.0 * default_churn,
                params.peers
            ),
            "files lost (%)",
            churn::report::series(&rows, at_default, lost_pct),
            Some(100.0),
        ),
        (
            "churn_lost_by_rate.png",
            format!("Files lost at RF {focus_rf} by churn rate, repair on (solid) vs off (dashed)"),
            "files lost (%)",
            churn::report::series(&rows, |s| s.rf == focus_rf, lost_pct),
            Some(100.0),
        ),
        (
            "churn_traffic.png",
            "Repair traffic: copies made per file (1 MiB each), cumulative".to_string(),
            "copies per file",
            churn::report::series(
                &rows,
                |s| s.repair,
                |r| r.attempted as f64 / r.files.max(1) as f64,
            ),
            None,
        ),
    ];
    let mut written = vec![csv_path.display().to_string()];
    for (file, title, y_label, series, y_max) in plots {
        let path = args.out.join(file);
        days_chart(&path, &title, y_label, &series, y_max, font.is_some())?;
        written.push(path.display().to_string());
    }
    println!();
    print!("{}", churn::report::summary(&rows));
    println!();
    println!("wrote {}", written.join(", "));
    font_note(font.as_ref(), args.font.as_ref());
    println!("simulated in {:.1} s", elapsed.as_secs_f64());
    Ok(())
}

fn run_pace(args: PaceArgs) -> Result<()> {
    if args.rf == 0
        || !(0.0..=1.0).contains(&args.churn)
        || !(0.0..=1.0).contains(&args.silent_loss)
        || args.period_h.iter().any(|p| *p <= 0.0)
    {
        bail!("--rf must be at least 1, --churn and --silent-loss in [0, 1], --period-h positive");
    }
    let threads = threads(args.threads);
    let defaults = churn::Params::default();
    let params = churn::Params {
        peers: args.peers,
        files: args.files,
        sessions: churn::Sessions {
            departures_per_day: args.churn,
            ..defaults.sessions
        },
        days: args.days,
        sample_hours: args.sample_hours,
        silent_loss_per_day: args.silent_loss,
        seed: args.seed,
        ..defaults
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "pace: {} peers, {} files of 1 MiB at RF {}, {} days, {:.0}%/day of peers leave, {:.2}%/day of copies lost silently, seed {}",
        params.peers,
        params.files,
        args.rf,
        params.days,
        100.0 * args.churn,
        100.0 * args.silent_loss,
        params.seed
    );
    let mut paces = vec![churn::Pace::EveryPass];
    paces.extend(
        args.period_h
            .iter()
            .map(|&period_h| churn::Pace::Sweep { period_h }),
    );
    paces.extend(
        args.period_h
            .iter()
            .map(|&period_h| churn::Pace::Rotating { period_h }),
    );
    let specs: Vec<churn::Spec> = paces
        .iter()
        .map(|&pace| churn::Spec {
            rf: args.rf,
            churn: args.churn,
            repair: true,
            pace,
        })
        .collect();
    let started = Instant::now();
    let runs = parallel(&specs, threads, |spec| churn::run(&params, *spec));
    let elapsed = started.elapsed();

    let mut csv = String::from(
        "pace,hours,days,files,lost,lost_fraction,silent_losses,copied,attempted,copies_per_file,under_rf,audits_per_file\n",
    );
    let mut lost_series = Vec::new();
    let colors = [
        (200, 60, 40),
        (40, 90, 200),
        (40, 160, 80),
        (150, 80, 170),
        (220, 150, 30),
        (30, 170, 170),
    ];
    println!();
    println!(
        "{:<14} {:>10} {:>12} {:>14} {:>14} {:>16} {:>12}",
        "pace",
        "files lost",
        "silent losses",
        "repair copies",
        "copies/file",
        "audits/file/day",
        "under RF"
    );
    for (i, rows) in runs.iter().enumerate() {
        let pace = specs[i].pace;
        for r in rows {
            csv.push_str(&format!(
                "{},{},{:.2},{},{},{:.6},{},{},{},{:.4},{:.6},{:.2}\n",
                pace.label(),
                r.hours,
                f64::from(r.hours) / 24.0,
                r.files,
                r.lost,
                r.lost as f64 / r.files.max(1) as f64,
                r.silent,
                r.copied,
                r.attempted,
                r.copies_mean,
                r.under_rf,
                r.audits_per_file,
            ));
        }
        if let Some(last) = rows.last() {
            println!(
                "{:<14} {:>10} {:>12} {:>14} {:>14.2} {:>16.1} {:>11.3}%",
                pace.label(),
                last.lost,
                last.silent,
                last.attempted,
                last.copies_mean,
                pace.audits_per_file_day(args.rf),
                100.0 * last.under_rf,
            );
        }
        lost_series.push(plot::Series {
            label: pace.label(),
            points: rows
                .iter()
                .map(|r| (f64::from(r.hours) / 24.0, r.lost as f64))
                .collect(),
            color: colors[i % colors.len()],
            dashed: i == 0,
        });
    }
    let csv_path = args.out.join("pace.csv");
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    let font = plot::load_font(args.font.as_deref());
    let y_max = lost_series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let png = args.out.join("pace_lost.png");
    plot::line_chart(
        &png,
        &Chart {
            title: "Files lost: old pace (dashed) vs the background sweep",
            x_label: "days",
            x_scale: XScale::Linear,
            y_label: "files lost",
            y_range: YRange::Fixed(0.0, y_max),
            goal: None,
        },
        &lost_series,
        font.is_some(),
    )
    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", png.display()))?;
    println!();
    println!("wrote {}, {}", csv_path.display(), png.display());
    font_note(font.as_ref(), args.font.as_ref());
    println!("simulated in {:.1} s", elapsed.as_secs_f64());
    Ok(())
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
            x_scale: XScale::Linear,
            y_label: "bad providers in top quartile (%)",
            y_range: YRange::Fit(0.0, 100.0),
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
