//! Trend of one scenario across runs: p50 and p99 publish→ack latency (log axis) and
//! achieved throughput, one point per run, invalid runs marked in red.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{draw_segmented, fmt_us, log_range_us, Chart, DrawResult, PlotContext};

/// One run in a trend.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    pub p50_us: u64,
    pub p99_us: u64,
    pub throughput: f64,
    pub valid: bool,
}

#[derive(Debug, Clone)]
pub struct TrendLines {
    pub label: String,
    pub points: Vec<TrendPoint>,
    pub stem: String,
}

impl Chart for TrendLines {
    fn stem(&self) -> String {
        self.stem.clone()
    }

    fn title(&self) -> String {
        self.label.clone()
    }

    fn size(&self, _ctx: &PlotContext) -> (u32, u32) {
        (1100, 320)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.points.len().max(1) as f64;
        let (w, _) = root.dim_in_pixel();
        let (left, right) = root.split_horizontally(w / 2);
        let bad = ctx.palette.fault("kill");

        let (lo, hi) = log_range_us(
            self.points
                .iter()
                .flat_map(|p| [p.p50_us as f64, p.p99_us as f64]),
        );
        let mut lat = ChartBuilder::on(&left)
            .caption("publish → ack latency", ctx.font(15.0))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(65)
            .build_cartesian_2d(0.5f64..(n + 0.5), (lo..hi).log_scale())?;
        lat.configure_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_labels((n as usize).min(12) + 1)
            .x_label_formatter(&|x| run_label(*x))
            .y_label_formatter(&|v| fmt_us(*v))
            .label_style(ctx.font(12.0))
            .draw()?;
        for (k, (name, get)) in [
            ("p50", (|p: &TrendPoint| p.p50_us) as fn(&TrendPoint) -> u64),
            ("p99", |p: &TrendPoint| p.p99_us),
        ]
        .into_iter()
        .enumerate()
        {
            draw_segmented(
                &mut lat,
                self.points.iter().enumerate().map(|(i, p)| {
                    let v = get(p);
                    (v > 0).then_some((i as f64 + 1.0, v as f64))
                }),
                ctx.palette.series(k).stroke_width(2),
                name,
            )?;
            lat.draw_series(
                self.points
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| get(p) > 0)
                    .map(|(i, p)| {
                        let c = if p.valid { ctx.palette.series(k) } else { bad };
                        Circle::new((i as f64 + 1.0, get(p) as f64), 4, c.filled())
                    }),
            )?;
        }
        ctx.legend(&mut lat, SeriesLabelPosition::LowerRight, 12.0)?;

        let peak = self.points.iter().map(|p| p.throughput).fold(0.0, f64::max);
        let mut tp = ChartBuilder::on(&right)
            .caption("achieved throughput (/s)", ctx.font(15.0))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(65)
            .build_cartesian_2d(0.5f64..(n + 0.5), 0f64..(peak * 1.25).max(10.0))?;
        tp.configure_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_labels((n as usize).min(12) + 1)
            .x_label_formatter(&|x| run_label(*x))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(ctx.font(12.0))
            .draw()?;
        let colour = ctx.palette.series(4);
        draw_segmented(
            &mut tp,
            self.points
                .iter()
                .enumerate()
                .map(|(i, p)| Some((i as f64 + 1.0, p.throughput))),
            colour.stroke_width(2),
            "achieved",
        )?;
        tp.draw_series(self.points.iter().enumerate().map(|(i, p)| {
            let c = if p.valid { colour } else { bad };
            Circle::new((i as f64 + 1.0, p.throughput), 4, c.filled())
        }))?;
        Ok(())
    }
}

fn run_label(x: f64) -> String {
    let n = x.round();
    if (x - n).abs() < 1e-6 && n >= 1.0 {
        format!("#{n:.0}")
    } else {
        String::new()
    }
}
