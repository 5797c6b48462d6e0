//! The table, the CSV and the plots of `warren-bench net`.

use std::path::{Path, PathBuf};

use warren_simulations::plot::{Chart, Series, XScale, YRange, line_chart, load_font};

use super::figures::{Figures, label};

/// Prints every setting's rows.
pub(crate) fn print_table(all: &[Figures]) {
    println!();
    println!(
        "{:<14} {:<38} {:>10} {:<7} {:<38} {:>8}",
        "setting", "figure", "value", "unit", "reference", "ratio"
    );
    for f in all {
        for r in f.rows() {
            println!(
                "{:<14} {:<38} {:>10.2} {:<7} {:<38} {:>6.2} {}",
                label(f.shape),
                r.figure,
                r.value,
                r.unit,
                r.reference,
                r.ratio,
                r.ratio_means
            );
        }
    }
}

/// Every row of every setting as CSV.
pub(crate) fn csv(all: &[Figures]) -> String {
    let mut s = String::from(
        "setting,latency_ms,rate_mbit,figure,value,unit,reference,reference_value,ratio,ratio_means\n",
    );
    for f in all {
        let (lat, rate) = match f.shape {
            Some(sh) => (
                sh.latency.as_millis().to_string(),
                format!("{}", sh.rate_bps as f64 / 1e6),
            ),
            None => (String::new(), String::new()),
        };
        for r in f.rows() {
            s.push_str(&format!(
                "{},{lat},{rate},\"{}\",{:.4},{},\"{}\",{:.4},{:.4},{}\n",
                label(f.shape),
                r.figure.replace('"', "'"),
                r.value,
                r.unit,
                r.reference.replace('"', "'"),
                r.reference_value,
                r.ratio,
                r.ratio_means
            ));
        }
    }
    s
}

/// Colours of the lines of group `g` (one latency or one rate): warren from 1 holder, from 3,
/// sendme, the link rate.
fn colours(g: usize) -> [(u8, u8, u8); 4] {
    match g % 2 {
        0 => [(31, 119, 180), (44, 160, 44), (214, 39, 40), (90, 90, 90)],
        _ => [
            (23, 190, 207),
            (188, 189, 34),
            (255, 127, 14),
            (160, 160, 160),
        ],
    }
}

/// The lines of one plot: shaped settings grouped by `group` (the fixed quantity), x from `x`;
/// groups with fewer than two points are left out.
fn sweep_series(
    all: &[Figures],
    group: impl Fn(&Figures) -> Option<u64>,
    x: impl Fn(&Figures) -> f64,
    group_label: impl Fn(u64) -> String,
) -> Vec<Series> {
    let mut keys: Vec<u64> = all.iter().filter_map(&group).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut series = Vec::new();
    for (g, key) in keys.into_iter().enumerate() {
        let mut fs: Vec<&Figures> = all.iter().filter(|f| group(f) == Some(key)).collect();
        if fs.len() < 2 {
            continue;
        }
        fs.sort_by(|a, b| x(a).total_cmp(&x(b)));
        let c = colours(g);
        let line = |label: String, y: &dyn Fn(&Figures) -> Option<f64>, color, dashed| Series {
            label,
            points: fs
                .iter()
                .filter_map(|f| y(f).filter(|v| v.is_finite()).map(|v| (x(f), v)))
                .collect(),
            color,
            dashed,
        };
        let at = group_label(key);
        series.push(line(
            format!("warren get, 1 holder, {at}"),
            &|f| Some(f.get1_mbit),
            c[0],
            false,
        ));
        series.push(line(
            format!("warren get, 3 holders, {at}"),
            &|f| Some(f.get3_mbit),
            c[1],
            false,
        ));
        series.push(line(
            format!("sendme, {at}"),
            &|f| f.sendme_mbit,
            c[2],
            false,
        ));
        series.push(line(
            format!("link rate, {at}"),
            &|f| Some(f.link_mbit),
            c[3],
            true,
        ));
    }
    series.retain(|s| s.points.len() >= 2);
    series
}

/// Plots the shaped-link sweep: throughput against the rate (one line per latency) and against
/// the latency (one line per rate). Returns the files written; a plot without two settings that
/// differ only in that quantity is left out, and said.
pub(crate) fn plots(out: &Path, all: &[Figures]) -> anyhow::Result<Vec<PathBuf>> {
    let shaped: Vec<Figures> = all.iter().filter(|f| f.shape.is_some()).cloned().collect();
    let text = load_font(None).is_some();
    if !text {
        println!("no TrueType font found: the plots have no text");
    }
    let by_rate = sweep_series(
        &shaped,
        |f| f.shape.map(|s| s.latency.as_millis() as u64),
        |f| f.shape.map_or(0.0, |s| s.rate_bps as f64 / 1e6),
        |ms| format!("{ms} ms one way"),
    );
    let by_latency = sweep_series(
        &shaped,
        |f| f.shape.map(|s| s.rate_bps),
        |f| f.shape.map_or(0.0, |s| s.latency.as_millis() as f64),
        |bps| format!("{} Mbit/s", bps as f64 / 1e6),
    );
    let mut written = Vec::new();
    for (name, series, title, x_label) in [
        (
            "net_vs_rate.png",
            by_rate,
            "warren get and sendme on shaped links: throughput against the link rate",
            "link rate each way (Mbit/s)",
        ),
        (
            "net_vs_latency.png",
            by_latency,
            "warren get and sendme on shaped links: throughput against the latency",
            "one-way latency between two nodes (ms)",
        ),
    ] {
        if series.is_empty() {
            println!("{name} not drawn: no two shaped settings differ only in its x quantity");
            continue;
        }
        let path = out.join(name);
        let chart = Chart {
            title,
            x_label,
            x_scale: XScale::Linear,
            y_label: "throughput (Mbit/s)",
            y_range: YRange::Fit(0.0, f64::MAX),
            goal: None,
        };
        line_chart(&path, &chart, &series, text)
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Shape;
    use std::time::Duration;

    fn fig(ms: u64, mbit: u64, get: f64) -> Figures {
        let shape = Shape {
            latency: Duration::from_millis(ms),
            rate_bps: mbit * 1_000_000,
        };
        let mut f = Figures::new(Some(shape), 8.0, mbit as f64);
        f.get1_mbit = get;
        f.get3_mbit = get;
        f.sendme_mbit = Some(get / 2.0);
        f
    }

    #[test]
    fn sweep_lines_group_by_the_fixed_quantity() {
        let all = [
            fig(20, 100, 80.0),
            fig(80, 20, 15.0),
            fig(20, 20, 18.0),
            fig(80, 100, 50.0),
        ];
        let s = sweep_series(
            &all,
            |f| f.shape.map(|s| s.latency.as_millis() as u64),
            |f| f.shape.map_or(0.0, |s| s.rate_bps as f64 / 1e6),
            |ms| format!("{ms} ms"),
        );
        // Two latencies, four lines each, every line over the two rates in order.
        assert_eq!(s.len(), 8);
        assert_eq!(s[0].label, "warren get, 1 holder, 20 ms");
        assert_eq!(s[0].points, vec![(20.0, 18.0), (100.0, 80.0)]);
        assert!(s[3].dashed);
        let c = csv(&all);
        assert!(c.lines().count() > 4 * 8, "{c}");
        assert!(c.contains("20ms/100Mbit,20,100,"), "{c}");
    }
}
