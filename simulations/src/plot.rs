//! Line plots as PNG (plotters' bitmap backend).
//!
//! Text needs a TrueType font. plotters' `ab_glyph` feature renders it in pure Rust from font bytes
//! we load at run time ([`load_font`]), so building needs no fontconfig or freetype. Without a font
//! file the plot is still drawn — axes, grid and lines — but without any text, and the caller says
//! so.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Where [`load_font`] looks when no path is given (Debian/Ubuntu `fonts-dejavu-core`, Fedora,
/// Arch, macOS).
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers a TTF as plotters' "sans-serif": `path` if given, else the first of
/// [`FONT_CANDIDATES`] that exists. Returns the file used, or `None` (plots will have no text).
pub fn load_font(path: Option<&Path>) -> Option<String> {
    let candidates: Vec<&Path> = match path {
        Some(p) => vec![p],
        None => FONT_CANDIDATES.iter().map(Path::new).collect(),
    };
    for p in candidates {
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
            return Some(p.display().to_string());
        }
    }
    None
}

/// One line of a plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
    /// RGB colour.
    pub color: (u8, u8, u8),
    /// Dashed (for baselines).
    pub dashed: bool,
}

/// How the x axis is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XScale {
    /// x is the quantity itself; ticks are labelled with as many decimals as their spacing needs.
    Linear,
    /// x is log10 of a count (e.g. network size); ticks are labelled with the count ("1k", "30k").
    Log10Count,
}

/// The y axis range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum YRange {
    /// Exactly this range.
    Fixed(f64, f64),
    /// Fitted to the data and the goal line with a little padding, never beyond these bounds
    /// (e.g. `Fit(0.0, 100.0)` for a percentage).
    Fit(f64, f64),
}

/// What to draw.
pub struct Chart<'a> {
    /// Title.
    pub title: &'a str,
    /// x axis label.
    pub x_label: &'a str,
    /// How x values are read and labelled.
    pub x_scale: XScale,
    /// y axis label.
    pub y_label: &'a str,
    /// y axis range.
    pub y_range: YRange,
    /// A horizontal reference line (value, legend text), e.g. a goal.
    pub goal: Option<(f64, &'a str)>,
}

/// The x range of the data (padded when all points share one x).
fn x_bounds(series: &[Series]) -> (f64, f64) {
    let xs = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let lo = xs().fold(f64::INFINITY, f64::min);
    let hi = xs().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

/// The y range to draw: `range` itself, or the data and goal padded by 5 % of their span
/// (at least 0.5), clipped to the bounds, plus 1 % so that no line lies on the frame.
fn y_bounds(range: YRange, series: &[Series], goal: Option<f64>) -> (f64, f64) {
    match range {
        YRange::Fixed(lo, hi) => (lo, hi),
        YRange::Fit(floor, ceil) => {
            let ys = || {
                series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.1))
                    .chain(goal)
                    .filter(|y| y.is_finite())
            };
            let lo = ys().fold(f64::INFINITY, f64::min);
            let hi = ys().fold(f64::NEG_INFINITY, f64::max);
            if !lo.is_finite() {
                return (floor, ceil);
            }
            let pad = ((hi - lo) * 0.05).max(0.5);
            let (lo, hi) = ((lo - pad).max(floor), (hi + pad).min(ceil));
            // Lines exactly at a bound stay off the frame.
            let margin = (hi - lo) * 0.01;
            (lo - margin, hi + margin)
        }
    }
}

/// Decimals that tell apart ticks about `span / 10` apart.
fn decimals(span: f64) -> usize {
    let step = span / 10.0;
    if step <= 0.0 || !step.is_finite() {
        return 0;
    }
    (-step.log10().floor()).clamp(0.0, 4.0) as usize
}

/// Where the legend covers the fewest points: the corner (a third of the width, half of the
/// height) that the lines cross least.
fn legend_position(
    series: &[Series],
    (x_min, x_max): (f64, f64),
    (y_min, y_max): (f64, f64),
) -> SeriesLabelPosition {
    let left_cut = x_min + (x_max - x_min) / 3.0;
    let right_cut = x_max - (x_max - x_min) / 3.0;
    let y_mid = (y_min + y_max) / 2.0;
    // Counts for upper right, lower right, upper left, lower left.
    let mut counts = [0usize; 4];
    for s in series {
        // Sample each segment so a line crossing a corner counts, not only its ends.
        for w in s.points.windows(2) {
            for i in 0..=8 {
                let t = f64::from(i) / 8.0;
                let x = w[0].0 + t * (w[1].0 - w[0].0);
                let y = w[0].1 + t * (w[1].1 - w[0].1);
                let upper = y >= y_mid;
                if x >= right_cut {
                    counts[usize::from(!upper)] += 1;
                }
                if x <= left_cut {
                    counts[2 + usize::from(!upper)] += 1;
                }
            }
        }
    }
    let corners = [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerLeft,
    ];
    let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
    corners[best].clone()
}

/// A count as people write it: 950, 1k, 3.2k, 10k, 1.5M.
pub fn count_label(n: f64) -> String {
    let (v, unit) = if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "k")
    } else {
        (n, "")
    };
    // Two significant digits, without a trailing ".0".
    let digits = if v >= 10.0 { 0 } else { 1 };
    let text = format!("{v:.digits$}");
    let text = text.strip_suffix(".0").unwrap_or(&text).to_string();
    format!("{text}{unit}")
}

/// Draws `series` into a 1200×700 PNG at `path`; `text` says whether a font was loaded.
pub fn line_chart(
    path: &Path,
    chart: &Chart<'_>,
    series: &[Series],
    text: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x_min, x_max) = x_bounds(series);
    let (y_min, y_max) = y_bounds(chart.y_range, series, chart.goal.map(|g| g.0));
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(chart.title, ("sans-serif", 26))
            .x_label_area_size(50)
            .y_label_area_size(80);
    } else {
        builder.x_label_area_size(5).y_label_area_size(5);
    }
    let mut ctx = builder.build_cartesian_2d(x_min..x_max, y_min..y_max)?;
    let x_decimals = decimals(x_max - x_min);
    let y_decimals = decimals(y_max - y_min);
    let x_format = move |v: &f64| match chart.x_scale {
        XScale::Linear => format!("{v:.x_decimals$}"),
        XScale::Log10Count => count_label(10f64.powf(*v)),
    };
    // With a fitted range, no tick is labelled beyond the bounds (no "100.2 %").
    let y_limits = match chart.y_range {
        YRange::Fixed(lo, hi) | YRange::Fit(lo, hi) => (lo, hi),
    };
    let y_format = move |v: &f64| {
        let tolerance = (y_limits.1 - y_limits.0).abs() * 1e-3;
        if *v < y_limits.0 - tolerance || *v > y_limits.1 + tolerance {
            String::new()
        } else {
            format!("{v:.y_decimals$}")
        }
    };
    let mut mesh = ctx.configure_mesh();
    if text {
        mesh.x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .x_labels(10)
            .y_labels(10)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;

    if let Some((y, label)) = chart.goal {
        let line = ctx.draw_series(DashedLineSeries::new(
            vec![(x_min, y), (x_max, y)],
            4,
            6,
            BLACK.stroke_width(1),
        ))?;
        if text {
            line.label(label)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        }
    }
    for s in series {
        let color = RGBColor(s.color.0, s.color.1, s.color.2);
        let style = color.stroke_width(3);
        let drawn = if s.dashed {
            ctx.draw_series(DashedLineSeries::new(
                s.points.clone(),
                10,
                6,
                color.stroke_width(2),
            ))?
        } else {
            ctx.draw_series(LineSeries::new(s.points.clone(), style))?
        };
        if text {
            drawn.label(s.label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        }
    }
    if text {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .position(legend_position(series, (x_min, x_max), (y_min, y_max)))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: &[(f64, f64)]) -> Series {
        Series {
            label: "s".into(),
            points: points.to_vec(),
            color: (0, 0, 0),
            dashed: false,
        }
    }

    #[test]
    fn x_axis_spans_the_data_not_zero() {
        let s = [line(&[(3.0, 1.0), (5.0, 2.0)])];
        assert_eq!(x_bounds(&s), (3.0, 5.0));
        assert_eq!(x_bounds(&[line(&[(4.0, 1.0)])]), (3.5, 4.5));
    }

    #[test]
    fn a_fitted_percentage_axis_zooms_in_and_stays_within_bounds() {
        let s = [line(&[(3.0, 99.2), (4.0, 99.9), (5.0, 98.7)])];
        let (lo, hi) = y_bounds(YRange::Fit(0.0, 100.0), &s, Some(99.0));
        assert!(lo > 97.0 && lo < 98.7, "{lo}");
        assert!(hi > 100.0 && hi < 100.1, "{hi}");
        assert_eq!(y_bounds(YRange::Fixed(0.0, 8.0), &s, None), (0.0, 8.0));
    }

    #[test]
    fn tick_labels_have_the_decimals_their_spacing_needs() {
        assert_eq!(decimals(100.0), 0);
        assert_eq!(decimals(2.0), 1);
        assert_eq!(decimals(0.3), 2);
        // Ticks at 3.0, 3.2, ..., 5.0 on a log axis read as distinct counts.
        let labels: Vec<String> = (0..=10)
            .map(|i| count_label(10f64.powf(3.0 + 0.2 * f64::from(i))))
            .collect();
        assert_eq!(labels[0], "1k");
        assert_eq!(labels[5], "10k");
        assert_eq!(labels[10], "100k");
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");
    }
}
