//! The churn scenario's outputs: CSV, the summary table, and the plots' series.

use std::fmt::Write as _;

use super::{Row, Spec};
use crate::plot::Series;

/// The CSV header.
pub const CSV_HEADER: &str = "rf,churn_per_day,repair,hours,days,files,lost,lost_fraction,copied,attempted,copies_per_file,under_rf,unavailable,online";

fn repair(spec: &Spec) -> &'static str {
    if spec.repair { "on" } else { "off" }
}

/// The rows as CSV, fixed precision, in the order given.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let _ = writeln!(
            out,
            "{},{:.3},{},{},{:.2},{},{},{:.6},{},{},{:.4},{:.6},{:.6},{:.4}",
            r.spec.rf,
            r.spec.churn,
            repair(&r.spec),
            r.hours,
            f64::from(r.hours) / 24.0,
            r.files,
            r.lost,
            r.lost as f64 / r.files.max(1) as f64,
            r.copied,
            r.attempted,
            r.copies_mean,
            r.under_rf,
            r.unavailable,
            r.online,
        );
    }
    out
}

/// The rows of each run, in the order the runs first appear.
fn runs(rows: &[Row]) -> Vec<Vec<&Row>> {
    let mut out: Vec<Vec<&Row>> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|run| run[0].spec == r.spec) {
            Some(run) => run.push(r),
            None => out.push(vec![r]),
        }
    }
    out
}

/// One line per run: files lost at the end, repair traffic, copies per file and the time-averaged
/// share of files under RF and unavailable.
pub fn summary(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>3} {:>7} {:>6} {:>6} {:>9} {:>8} {:>11} {:>13} {:>9} {:>9} {:>11}",
        "rf",
        "churn/d",
        "repair",
        "days",
        "lost",
        "lost %",
        "copies made",
        "copies/file/d",
        "copies/f",
        "under RF",
        "unavailable"
    );
    for run in runs(rows) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let n = run.len() as f64;
        let under = run.iter().map(|r| r.under_rf).sum::<f64>() / n;
        let unavailable = run.iter().map(|r| r.unavailable).sum::<f64>() / n;
        let days = f64::from(last.hours) / 24.0;
        let per_file_day = if days > 0.0 {
            last.attempted as f64 / last.files.max(1) as f64 / days
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "{:>3} {:>6.1}% {:>6} {:>6.1} {:>9} {:>7.3}% {:>11} {:>13.3} {:>9.2} {:>8.2}% {:>10.3}%",
            first.spec.rf,
            100.0 * first.spec.churn,
            repair(&first.spec),
            days,
            last.lost,
            100.0 * last.lost as f64 / last.files.max(1) as f64,
            last.copied,
            per_file_day,
            last.copies_mean,
            100.0 * under,
            100.0 * unavailable,
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

/// One series per run whose spec `keep` accepts: `y(row)` against days; runs without repair are
/// dashed and share the colour of the same setting with repair.
pub fn series(rows: &[Row], keep: impl Fn(&Spec) -> bool, y: impl Fn(&Row) -> f64) -> Vec<Series> {
    let mut settings: Vec<(usize, u64)> = Vec::new();
    let mut out = Vec::new();
    for run in runs(rows) {
        let spec = run[0].spec;
        if !keep(&spec) {
            continue;
        }
        let setting = (spec.rf, (spec.churn * 1e6).round() as u64);
        let idx = settings
            .iter()
            .position(|s| *s == setting)
            .unwrap_or_else(|| {
                settings.push(setting);
                settings.len() - 1
            });
        out.push(Series {
            label: format!(
                "RF {}, {:.0}%/day leave, repair {}",
                spec.rf,
                100.0 * spec.churn,
                repair(&spec)
            ),
            points: run
                .iter()
                .map(|r| (f64::from(r.hours) / 24.0, y(r)))
                .collect(),
            color: COLORS[idx % COLORS.len()],
            dashed: !spec.repair,
        });
    }
    out
}
