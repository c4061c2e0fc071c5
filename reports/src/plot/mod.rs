//! Charts: one file per chart, all behind [`Chart`], drawn twice (PNG and SVG) from one
//! [`PlotContext`] that holds the size, the palette and the output directory.
//!
//! - [`latency_over_time`] — per-second p50/p99/max, publish→ack and publish→deliver.
//! - [`throughput_over_time`] — offered vs achieved per second, failed and indeterminate.
//! - [`percentile_spectrum`] — HdrHistogram-style percentile distribution, log axis.
//! - [`comparison_bars`] — bus vs Redis grouped bars.
//! - [`cost_bars`] — bus vs Redis: CPU, peak RSS, disk writes and fsyncs per message.
//! - [`trend_lines`] — p50/p99/throughput across runs, for `trend`.
//! - [`sweep_curves`] — latency and achieved rate against offered rate, for `sweep`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::ReportError;
use crate::model::FaultWindow;

pub mod comparison_bars;
pub mod cost_bars;
pub mod latency_over_time;
pub mod percentile_spectrum;
pub mod sweep_curves;
pub mod throughput_over_time;
pub mod trend_lines;

/// What a chart's `draw` returns.
pub type DrawResult = Result<(), Box<dyn Error>>;

/// The font used for every chart, bundled so PNG text renders without system fonts.
/// DejaVu Sans, Bitstream Vera license (see `assets/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The family name charts ask for; registered to the bundled font.
pub const FONT_FAMILY: &str = "sans-serif";

/// Registers the bundled font once per process.
pub fn ensure_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if register_font(FONT_FAMILY, style, FONT).is_err() {
                tracing::warn!("bundled chart font could not be registered, text will be missing");
            }
        }
    });
}

/// Text colour of every chart.
const TEXT_COLOUR: RGBColor = RGBColor(0x22, 0x22, 0x22);

/// Colours shared by every chart.
#[derive(Debug, Clone)]
pub struct Palette {
    /// Series colours, in order of use.
    pub series: Vec<RGBColor>,
    pub text: RGBColor,
    pub grid: RGBColor,
    pub warmup: RGBColor,
}

impl Default for Palette {
    fn default() -> Self {
        // Tableau 10: distinguishable, print-friendly.
        Palette {
            series: vec![
                RGBColor(0x4e, 0x79, 0xa7),
                RGBColor(0xf2, 0x8e, 0x2b),
                RGBColor(0xe1, 0x57, 0x59),
                RGBColor(0x76, 0xb7, 0xb2),
                RGBColor(0x59, 0xa1, 0x4f),
                RGBColor(0xed, 0xc9, 0x48),
                RGBColor(0xb0, 0x7a, 0xa1),
                RGBColor(0x9c, 0x75, 0x5f),
            ],
            text: TEXT_COLOUR,
            grid: RGBColor(0xdd, 0xdd, 0xdd),
            warmup: RGBColor(0x99, 0x99, 0x99),
        }
    }
}

impl Palette {
    pub fn series(&self, i: usize) -> RGBColor {
        self.series[i % self.series.len()]
    }

    /// One fixed colour per fault kind, so a kind looks the same in every report.
    pub fn fault(&self, kind: &str) -> RGBColor {
        match kind {
            "kill" | "crash" => RGBColor(0xd6, 0x27, 0x28),
            "pause" | "stop" => RGBColor(0xe6, 0xa1, 0x00),
            "partition" => RGBColor(0x94, 0x67, 0xbd),
            "loss" => RGBColor(0x8c, 0x56, 0x4b),
            "delay" | "jitter" => RGBColor(0x17, 0xbe, 0xcf),
            "bandwidth" => RGBColor(0x2c, 0xa0, 0x2c),
            "restart" | "terminate" | "rolling-restart" => RGBColor(0xe3, 0x77, 0xc2),
            other => {
                let h = other
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                self.series(h as usize)
            }
        }
    }
}

/// Everything charts share: size, palette, where files go.
#[derive(Debug, Clone)]
pub struct PlotContext {
    pub size: (u32, u32),
    pub palette: Palette,
    pub out_dir: PathBuf,
}

impl PlotContext {
    pub fn new(out_dir: &Path) -> Self {
        ensure_fonts();
        PlotContext {
            size: (1200, 620),
            palette: Palette::default(),
            out_dir: out_dir.to_path_buf(),
        }
    }

    pub fn font(&self, size: f64) -> TextStyle<'static> {
        TextStyle::from((FONT_FAMILY, size).into_font()).color(&TEXT_COLOUR)
    }

    /// Draws a chart's series legend in the shared style.
    pub fn legend<'a, DB, CT>(
        &self,
        chart: &mut ChartContext<'a, DB, CT>,
        position: SeriesLabelPosition,
        font_size: f64,
    ) -> DrawResult
    where
        DB: DrawingBackend + 'a,
        DB::ErrorType: 'static,
        CT: CoordTranslate,
    {
        chart
            .configure_series_labels()
            .position(position)
            .background_style(WHITE.mix(0.9))
            .border_style(self.palette.grid)
            .label_font(self.font(font_size))
            .draw()?;
        Ok(())
    }
}

/// One chart: knows its file name and how to draw itself on any backend.
pub trait Chart {
    /// File stem: the chart is written as `<stem>.png` and `<stem>.svg`.
    fn stem(&self) -> String;
    /// Human title, used as the caption and in reports.
    fn title(&self) -> String;
    /// Pixel size; the context's default unless the chart needs another shape.
    fn size(&self, ctx: &PlotContext) -> (u32, u32) {
        ctx.size
    }
    /// Draws onto a blank, white area.
    fn draw<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// A chart written to disk.
#[derive(Debug, Clone)]
pub struct ChartOutput {
    pub stem: String,
    pub title: String,
    pub png: PathBuf,
    pub svg: PathBuf,
    /// The SVG document, for inlining into HTML.
    pub svg_text: String,
}

fn plot_err(chart: &str, e: impl std::fmt::Display) -> ReportError {
    ReportError::Plot {
        chart: chart.to_string(),
        reason: e.to_string(),
    }
}

/// Draws a chart as SVG into a string.
pub fn render_svg_string<C: Chart>(ctx: &PlotContext, chart: &C) -> Result<String, ReportError> {
    ensure_fonts();
    let size = chart.size(ctx);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&chart.stem(), e))?;
        chart
            .draw(ctx, &root)
            .map_err(|e| plot_err(&chart.stem(), e))?;
        root.present().map_err(|e| plot_err(&chart.stem(), e))?;
    }
    Ok(text)
}

/// Draws a chart as PNG and SVG into the context's output directory.
pub fn render<C: Chart>(ctx: &PlotContext, chart: &C) -> Result<ChartOutput, ReportError> {
    let stem = chart.stem();
    let svg_text = render_svg_string(ctx, chart)?;
    let svg = ctx.out_dir.join(format!("{stem}.svg"));
    std::fs::write(&svg, &svg_text).map_err(|e| ReportError::io(&svg, e))?;
    let png = ctx.out_dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, chart.size(ctx)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&stem, e))?;
        chart.draw(ctx, &root).map_err(|e| plot_err(&stem, e))?;
        root.present().map_err(|e| plot_err(&stem, e))?;
    }
    Ok(ChartOutput {
        stem,
        title: chart.title(),
        png,
        svg,
        svg_text,
    })
}

/// Splits a series with holes (`None`) into drawable runs of points.
pub(crate) fn segments(
    points: impl IntoIterator<Item = Option<(f64, f64)>>,
) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for p in points {
        match p {
            Some(p) => out.last_mut().expect("never empty").push(p),
            None => {
                if !out.last().expect("never empty").is_empty() {
                    out.push(Vec::new());
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Draws one series made of several segments, with a single legend entry.
pub(crate) fn draw_segmented<DB: DrawingBackend, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    points: impl IntoIterator<Item = Option<(f64, f64)>>,
    style: ShapeStyle,
    label: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    let segs = segments(points);
    for (i, seg) in segs.iter().enumerate() {
        let single = seg.len() == 1;
        let anno = if single {
            chart.draw_series(seg.iter().map(|p| Circle::new(*p, 2, style.filled())))?
        } else {
            chart.draw_series(LineSeries::new(seg.iter().copied(), style))?
        };
        if i == 0 {
            anno.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(3))
            });
        }
    }
    Ok(())
}

/// Shades the warmup and every fault window as labelled vertical bands (Jepsen style).
///
/// `y_range` is the chart's visible y range; labels are stacked in rows near the top so
/// overlapping windows stay readable.
pub(crate) fn draw_bands<DB: DrawingBackend, Y>(
    ctx: &PlotContext,
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    warmup_s: f64,
    faults: &[FaultWindow],
    y_range: (f64, f64),
    label_rows_y: &dyn Fn(usize) -> f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    let (y0, y1) = y_range;
    let x_range = chart.x_range();
    let label_pad = (x_range.end - x_range.start) * 0.003;
    if warmup_s > 0.0 {
        let c = ctx.palette.warmup;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y0), (warmup_s, y1)],
            c.mix(0.12).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(warmup_s, y0), (warmup_s, y1)],
            c.stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            "warmup".to_string(),
            (label_pad, label_rows_y(0)),
            ctx.font(13.0).color(&c),
        )))?;
    }
    for (i, f) in faults.iter().enumerate() {
        if !f.start_s.is_finite() {
            continue;
        }
        let c = ctx.palette.fault(&f.kind);
        // A fault still open at the end of the run (no finite end) runs to the edge.
        let end = if f.end_s.is_finite() {
            f.end_s.max(f.start_s)
        } else {
            x_range.end
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(f.start_s, y0), (end, y1)],
            c.mix(0.18).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(f.start_s, y0), (f.start_s, y1)],
            c.mix(0.7).stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            fault_label(f),
            (f.start_s + label_pad, label_rows_y(i % 3)),
            ctx.font(13.0).color(&c),
        )))?;
    }
    Ok(())
}

/// Short label for a fault band: kind, detail and targets.
pub fn fault_label(f: &FaultWindow) -> String {
    let mut s = f.kind.clone();
    if !f.detail.is_empty() {
        s.push(' ');
        s.push_str(&f.detail);
    }
    if !f.targets.is_empty() {
        s.push(' ');
        s.push_str(&f.targets.join(","));
    }
    s
}

/// The label of category `x` on a bar chart's axis of `names` at 0, 1, ..; nothing between.
pub(crate) fn category_label(x: f64, names: &[&str]) -> String {
    let n = x.round();
    if (x - n).abs() < 1e-6 && n >= 0.0 && (n as usize) < names.len() {
        names[n as usize].to_string()
    } else {
        String::new()
    }
}

/// Formats microseconds for an axis or a table: `850µs`, `12.5ms`, `3.2s`.
pub fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{}s", trim(us / 1_000_000.0))
    } else if us >= 1000.0 {
        format!("{}ms", trim(us / 1000.0))
    } else {
        format!("{}µs", trim(us))
    }
}

fn trim(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A log-axis range in microseconds that covers `values` with some head room.
pub(crate) fn log_range_us(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.into_iter().filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1.0, 1000.0);
    }
    let lo = 10f64.powf(lo.log10().floor()).max(0.1);
    let hi = 10f64.powf((hi * 1.5).log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_on_holes() {
        let s = segments(vec![
            Some((0.0, 1.0)),
            Some((1.0, 1.0)),
            None,
            None,
            Some((4.0, 2.0)),
        ]);
        assert_eq!(s, vec![vec![(0.0, 1.0), (1.0, 1.0)], vec![(4.0, 2.0)]]);
        assert!(segments(vec![None, None]).is_empty());
    }

    #[test]
    fn formats_durations() {
        assert_eq!(fmt_us(850.0), "850µs");
        assert_eq!(fmt_us(12_500.0), "12.5ms");
        assert_eq!(fmt_us(3_200_000.0), "3.2s");
        assert_eq!(fmt_us(1000.0), "1ms");
    }

    #[test]
    fn log_range_covers_values() {
        let (lo, hi) = log_range_us(vec![0.0, 150.0, 90_000.0]);
        assert!(lo <= 150.0 && hi >= 90_000.0);
        assert_eq!(log_range_us(Vec::new()), (1.0, 1000.0));
    }

    #[test]
    fn fault_colours_are_stable() {
        let p = Palette::default();
        assert_eq!(p.fault("kill"), p.fault("kill"));
        assert_ne!(p.fault("kill"), p.fault("partition"));
        assert_eq!(p.fault("weird"), p.fault("weird"));
    }
}
