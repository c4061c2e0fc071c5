//! HdrHistogram-style percentile spectrum: x is the percentile on a log scale of
//! `1/(1-p)` (0%, 90%, 99%, 99.9%, …), y the latency on a log axis. Several series
//! overlay, e.g. bus and Redis, ack and deliver.

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{draw_segmented, fmt_us, log_range_us, Chart, DrawResult, PlotContext};
use crate::model::Percentiles;

/// One curve: `(x, latency µs)` points where `x = -log10(1 - p)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumSeries {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// `x` for percentile `p` (a fraction); `None` for `p >= 1`.
pub fn percentile_x(p: f64) -> Option<f64> {
    (p < 1.0).then(|| -(1.0 - p.max(0.0)).log10())
}

/// The percentile label of an integer `x`: 0 → `0%`, 1 → `90%`, 3 → `99.9%`.
pub fn percentile_label(x: f64) -> String {
    let n = x.round();
    if (x - n).abs() > 1e-6 || n < 0.0 {
        return String::new();
    }
    match n as i32 {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        k => format!("99.{}%", "9".repeat((k - 2) as usize)).replace("99.%", "99%"),
    }
}

impl SpectrumSeries {
    /// The curve of a histogram, sampled like HdrHistogram's percentile distribution output
    /// (5 ticks per half distance); the maximum is placed just past the last percentile.
    pub fn from_histogram(label: &str, hist: &Histogram<u64>) -> Self {
        let mut points = Vec::new();
        if hist.is_empty() {
            return SpectrumSeries {
                label: label.to_string(),
                points,
            };
        }
        // Percentiles finer than one sample say nothing; stop there, then put the max.
        let cap = (hist.len() as f64).log10().max(1.0);
        let mut last_x = 0.0f64;
        for v in hist.iter_quantiles(5) {
            let value = hist.highest_equivalent(v.value_iterated_to()) as f64;
            if let Some(x) = percentile_x(v.quantile_iterated_to()).filter(|x| *x <= cap) {
                last_x = last_x.max(x);
                points.push((x, value));
            }
        }
        points.push((last_x + 0.25, hist.highest_equivalent(hist.max()) as f64));
        points.dedup();
        SpectrumSeries {
            label: label.to_string(),
            points,
        }
    }

    /// A coarse curve from summary percentiles, when no histogram log exists.
    pub fn from_percentiles(label: &str, p: &Percentiles) -> Self {
        let mut points = Vec::new();
        if p.count > 0 {
            for (q, v) in [(0.5, p.p50), (0.9, p.p90), (0.99, p.p99), (0.999, p.p999)] {
                points.push((percentile_x(q).unwrap_or(0.0), v as f64));
            }
            points.push((3.25, p.max as f64));
        }
        SpectrumSeries {
            label: label.to_string(),
            points,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PercentileSpectrum {
    pub label: String,
    pub series: Vec<SpectrumSeries>,
    /// File stem, so a run and a comparison can both have one.
    pub stem: String,
}

impl Chart for PercentileSpectrum {
    fn stem(&self) -> String {
        self.stem.clone()
    }

    fn title(&self) -> String {
        format!("Latency by percentile — {}", self.label)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let x_max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(2.0f64, f64::max)
            .ceil();
        let (lo, hi) = log_range_us(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let mut chart = ChartBuilder::on(root)
            .caption(self.title(), ctx.font(22.0))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .x_desc("percentile")
            .y_desc("latency (log)")
            .y_label_formatter(&|v| fmt_us(*v))
            .label_style(ctx.font(13.0))
            .axis_desc_style(ctx.font(14.0))
            .draw()?;
        for (i, s) in self.series.iter().enumerate() {
            draw_segmented(
                &mut chart,
                s.points.iter().map(|p| Some(*p)),
                ctx.palette.series(i).stroke_width(2),
                &s.label,
            )?;
        }
        ctx.legend(&mut chart, SeriesLabelPosition::UpperLeft, 13.0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_nines() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
        assert_eq!(percentile_label(2.5), "");
    }

    #[test]
    fn spectrum_is_monotonic_and_ends_at_max() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let s = SpectrumSeries::from_histogram("x", &h);
        assert!(s
            .points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let last = s.points.last().unwrap();
        assert_eq!(last.1, h.highest_equivalent(10_000) as f64);
        assert!(last.0 > 3.0);
    }
}
