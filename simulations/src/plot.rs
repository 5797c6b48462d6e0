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

/// What to draw.
pub struct Chart<'a> {
    /// Title.
    pub title: &'a str,
    /// x axis label.
    pub x_label: &'a str,
    /// y axis label.
    pub y_label: &'a str,
    /// y axis range.
    pub y_range: (f64, f64),
    /// A horizontal reference line (value, legend text), e.g. a goal.
    pub goal: Option<(f64, &'a str)>,
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
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(chart.title, ("sans-serif", 26))
            .x_label_area_size(50)
            .y_label_area_size(70);
    } else {
        builder.x_label_area_size(5).y_label_area_size(5);
    }
    let mut ctx = builder.build_cartesian_2d(0.0..x_max, chart.y_range.0..chart.y_range.1)?;
    let mut mesh = ctx.configure_mesh();
    if text {
        mesh.x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;

    if let Some((y, label)) = chart.goal {
        let line = ctx.draw_series(DashedLineSeries::new(
            vec![(0.0, y), (x_max, y)],
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
            .position(SeriesLabelPosition::MiddleRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
