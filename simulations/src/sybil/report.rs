//! The Sybil scenario's outputs: CSV, the summary table, and the plot's series.

use std::fmt::Write as _;

use super::{Row, Scenario};
use crate::plot::Series;

/// The CSV header.
pub const CSV_HEADER: &str = "scenario,sybil_fraction,round,hours,bad_in_top_quartile,bad_below_floor,honest_below_floor,sybils_with_standing";

/// The rows as CSV, fixed precision, in the order given (deterministic: no times, no floats
/// printed with platform-dependent precision).
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let _ = writeln!(
            out,
            "{},{:.2},{},{},{:.6},{:.6},{:.6},{:.6}",
            r.scenario,
            r.sybil_fraction,
            r.round,
            r.round,
            r.bad_in_top_quartile,
            r.bad_below_floor,
            r.honest_below_floor,
            r.sybils_with_standing,
        );
    }
    out
}

/// One line per (scenario, fraction): the share of bad providers in the top quartile after the
/// first round, at a quarter of the run, at the end, and the mean over the last quarter; the share
/// of bad and honest providers below the floor at the end.
pub fn summary(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:>6} {:>9} {:>9} {:>9} {:>11} {:>10} {:>13}",
        "scoring",
        "sybils",
        "bad@1h",
        "bad@25%",
        "bad@end",
        "bad(last¼)",
        "bad<floor",
        "honest<floor"
    );
    let mut keys: Vec<(Scenario, u64)> = rows
        .iter()
        .map(|r| (r.scenario, (r.sybil_fraction * 1000.0).round() as u64))
        .collect();
    keys.dedup();
    for (scenario, f) in keys {
        let series: Vec<&Row> = rows
            .iter()
            .filter(|r| r.scenario == scenario && (r.sybil_fraction * 1000.0).round() as u64 == f)
            .collect();
        let (Some(first), Some(last)) = (series.first(), series.last()) else {
            continue;
        };
        let quarter = series[(series.len() / 4).min(series.len() - 1)];
        let tail = &series[series.len() - series.len().div_ceil(4)..];
        let tail_mean = tail.iter().map(|r| r.bad_in_top_quartile).sum::<f64>() / tail.len() as f64;
        let _ = writeln!(
            out,
            "{:<11} {:>5.0}% {:>8.2}% {:>8.2}% {:>8.2}% {:>10.2}% {:>9.1}% {:>12.2}%",
            scenario.to_string(),
            f as f64 / 10.0,
            100.0 * first.bad_in_top_quartile,
            100.0 * quarter.bad_in_top_quartile,
            100.0 * last.bad_in_top_quartile,
            100.0 * tail_mean,
            100.0 * last.bad_below_floor,
            100.0 * last.honest_below_floor,
        );
    }
    out
}

/// One plot series per (scenario, fraction): bad share in the top quartile (%) against hours.
pub fn series(rows: &[Row]) -> Vec<Series> {
    // Strong colours for warren, pale ones of the same hues for the baseline.
    let palette = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
    ];
    let pale = |(r, g, b): (u8, u8, u8)| {
        let mix = |c: u8| ((u16::from(c) + 2 * 255) / 3) as u8;
        (mix(r), mix(g), mix(b))
    };
    let mut fractions: Vec<u64> = rows
        .iter()
        .map(|r| (r.sybil_fraction * 1000.0).round() as u64)
        .collect();
    fractions.sort_unstable();
    fractions.dedup();
    let mut out = Vec::new();
    for scenario in [Scenario::Warren, Scenario::NoDefence] {
        for (k, f) in fractions.iter().enumerate() {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| {
                    r.scenario == scenario && (r.sybil_fraction * 1000.0).round() as u64 == *f
                })
                .map(|r| (f64::from(r.round), 100.0 * r.bad_in_top_quartile))
                .collect();
            if points.is_empty() {
                continue;
            }
            out.push(Series {
                label: format!("{scenario}, {:.0}% Sybil", *f as f64 / 10.0),
                points,
                color: match scenario {
                    Scenario::Warren => palette[k % palette.len()],
                    Scenario::NoDefence => pale(palette[k % palette.len()]),
                },
                dashed: scenario == Scenario::NoDefence,
            });
        }
    }
    out
}
