//! The dht scenario's outputs: CSV, the hop histogram, the summary table and the plots' series.

use std::fmt::Write as _;

use super::Row;
use crate::plot::Series;

/// The CSV header.
pub const CSV_HEADER: &str = "n,adversarial,attack,offline,k,alpha,paths,lookups,success,hops_median,hops_p90,hops_max,queries_mean,failures_mean,millis_median,millis_p90";

/// One line per run.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let p = &r.params;
        let _ = writeln!(
            out,
            "{},{:.3},{},{:.3},{},{},{},{},{:.6},{},{},{},{:.3},{:.3},{},{}",
            p.n,
            p.adversarial,
            p.attack,
            p.offline,
            p.lookup.k,
            p.lookup.alpha,
            p.lookup.paths,
            p.lookups,
            r.success(),
            r.hops_quantile(0.5),
            r.hops_quantile(0.9),
            r.hops.last().copied().unwrap_or(0),
            r.queries_mean,
            r.failures_mean,
            r.millis_quantile(0.5),
            r.millis_quantile(0.9),
        );
    }
    out
}

/// The hop counts of successful lookups, one line per run and hop count.
pub fn hops_csv(rows: &[Row]) -> String {
    let mut out = String::from("n,adversarial,attack,paths,hops,lookups\n");
    for r in rows {
        let p = &r.params;
        let max = r.hops.last().copied().unwrap_or(0);
        for h in 1..=max {
            let count = r.hops.iter().filter(|&&x| x == h).count();
            let _ = writeln!(
                out,
                "{},{:.3},{},{},{},{}",
                p.n, p.adversarial, p.attack, p.lookup.paths, h, count
            );
        }
    }
    out
}

/// One line per run.
pub fn summary(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>7} {:>6} {:>8} {:>5} {:>9} {:>7} {:>7} {:>8} {:>8} {:>9}",
        "nodes",
        "adv",
        "attack",
        "paths",
        "success",
        "hops50",
        "hops90",
        "queries",
        "timeouts",
        "ms50/90"
    );
    for r in rows {
        let p = &r.params;
        let _ = writeln!(
            out,
            "{:>7} {:>5.0}% {:>8} {:>5} {:>8.2}% {:>7} {:>7} {:>8.1} {:>8.1} {:>4}/{:<4}",
            p.n,
            100.0 * p.adversarial,
            p.attack,
            p.lookup.paths,
            100.0 * r.success(),
            r.hops_quantile(0.5),
            r.hops_quantile(0.9),
            r.queries_mean,
            r.failures_mean,
            r.millis_quantile(0.5),
            r.millis_quantile(0.9),
        );
    }
    out
}

const COLORS: [(u8, u8, u8); 6] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (23, 190, 207),
];

/// One series per setting (adversarial share, attack, paths): `y(row)` against log10(nodes).
/// Settings without adversaries are dashed.
pub fn series(rows: &[Row], y: impl Fn(&Row) -> f64) -> Vec<Series> {
    let mut out: Vec<(String, Series)> = Vec::new();
    for r in rows {
        let p = &r.params;
        let key = format!(
            "{:.0}% adversarial ({}), d = {}",
            100.0 * p.adversarial,
            p.attack,
            p.lookup.paths
        );
        let label = if p.adversarial > 0.0 {
            key.clone()
        } else {
            format!("no adversaries, d = {}", p.lookup.paths)
        };
        let point = ((p.n as f64).log10(), y(r));
        match out.iter_mut().find(|(k, _)| *k == label) {
            Some((_, s)) => s.points.push(point),
            None => {
                let color = COLORS[out.len() % COLORS.len()];
                out.push((
                    label.clone(),
                    Series {
                        label,
                        points: vec![point],
                        color,
                        dashed: p.adversarial == 0.0,
                    },
                ));
            }
        }
    }
    out.into_iter().map(|(_, s)| s).collect()
}
