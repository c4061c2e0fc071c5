//! Per-second latency (p50, p99, max) for publish→ack and publish→deliver, on a log axis,
//! with the warmup and every fault window shaded as a labelled band.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{draw_bands, draw_segmented, fmt_us, log_range_us, Chart, DrawResult, PlotContext};
use crate::model::FaultWindow;

/// One second: `[p50, p99, max]` in microseconds per metric; `0` means no sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyRow {
    pub t_s: f64,
    pub ack: [u64; 3],
    pub e2e: [u64; 3],
}

#[derive(Debug, Clone)]
pub struct LatencyOverTime<'a> {
    /// Which run this is, e.g. `bus` or `redis (appendfsync always)`.
    pub label: String,
    pub rows: &'a [LatencyRow],
    pub faults: &'a [FaultWindow],
    pub warmup_s: f64,
}

impl LatencyOverTime<'_> {
    fn x_max(&self) -> f64 {
        let last_row = self.rows.iter().map(|r| r.t_s + 1.0).fold(1.0, f64::max);
        let last_fault = self.faults.iter().map(|f| f.end_s).fold(0.0, f64::max);
        last_row.max(last_fault).max(self.warmup_s).ceil()
    }

    fn panel<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        area: &DrawingArea<DB, Shift>,
        name: &str,
        metric: fn(&LatencyRow) -> [u64; 3],
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let x_max = self.x_max();
        let (lo, hi) = log_range_us(
            self.rows
                .iter()
                .flat_map(|r| metric(r).into_iter().map(|v| v as f64)),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(name, ctx.font(17.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_desc("seconds since start")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("latency (log)")
            .y_label_formatter(&|v| fmt_us(*v))
            .label_style(ctx.font(13.0))
            .axis_desc_style(ctx.font(14.0))
            .draw()?;
        draw_bands(
            ctx,
            &mut chart,
            self.warmup_s,
            self.faults,
            (lo, hi),
            &|row| hi / 1.25 / 1.9f64.powi(row as i32),
        )?;
        let names = ["p50", "p99", "max"];
        for (k, series_name) in names.iter().enumerate() {
            let colour = ctx.palette.series(k);
            let width = if k == 2 { 1 } else { 2 };
            draw_segmented(
                &mut chart,
                self.rows.iter().map(|r| {
                    let v = metric(r)[k];
                    (v > 0).then_some((r.t_s, v as f64))
                }),
                colour.stroke_width(width),
                series_name,
            )?;
        }
        ctx.legend(&mut chart, SeriesLabelPosition::UpperRight, 13.0)?;
        Ok(())
    }
}

impl Chart for LatencyOverTime<'_> {
    fn stem(&self) -> String {
        "latency_over_time".to_string()
    }

    fn title(&self) -> String {
        format!("Latency over time — {}", self.label)
    }

    fn size(&self, _ctx: &PlotContext) -> (u32, u32) {
        (1200, 860)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = root.titled(&self.title(), ctx.font(22.0))?;
        let (_, h) = root.dim_in_pixel();
        let (top, bottom) = root.split_vertically(h / 2);
        self.panel(ctx, &top, "publish → ack", |r| r.ack)?;
        self.panel(ctx, &bottom, "publish → deliver (all subscribers)", |r| {
            r.e2e
        })?;
        Ok(())
    }
}
