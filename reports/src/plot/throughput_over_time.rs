//! Offered vs achieved publishes per second, with failed and indeterminate publishes, and
//! the warmup and fault windows shaded.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{draw_bands, draw_segmented, Chart, DrawResult, PlotContext};
use crate::model::FaultWindow;

/// Counts for one second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThroughputRow {
    pub t_s: f64,
    pub offered: u64,
    pub acked: u64,
    pub failed: u64,
    pub indeterminate: u64,
}

/// Reads one count out of a row.
type Getter = fn(&ThroughputRow) -> u64;

#[derive(Debug, Clone)]
pub struct ThroughputOverTime<'a> {
    pub label: String,
    pub rows: &'a [ThroughputRow],
    pub faults: &'a [FaultWindow],
    pub warmup_s: f64,
}

impl Chart for ThroughputOverTime<'_> {
    fn stem(&self) -> String {
        "throughput_over_time".to_string()
    }

    fn title(&self) -> String {
        format!("Throughput over time — {}", self.label)
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
            .rows
            .iter()
            .map(|r| r.t_s + 1.0)
            .chain(self.faults.iter().map(|f| f.end_s))
            .fold(1.0f64, f64::max)
            .ceil();
        let y_peak = self
            .rows
            .iter()
            .map(|r| r.offered.max(r.acked).max(r.failed).max(r.indeterminate))
            .max()
            .unwrap_or(0) as f64;
        let y_max = (y_peak * 1.3).max(10.0);
        let mut chart = ChartBuilder::on(root)
            .caption(self.title(), ctx.font(22.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_desc("seconds since start")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("publishes per second")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(ctx.font(13.0))
            .axis_desc_style(ctx.font(14.0))
            .draw()?;
        draw_bands(
            ctx,
            &mut chart,
            self.warmup_s,
            self.faults,
            (0.0, y_max),
            &|row| y_max * (0.99 - 0.06 * row as f64),
        )?;
        let series: [(&str, Getter, RGBColor, u32); 4] = [
            ("offered", |r| r.offered, ctx.palette.warmup, 2),
            ("achieved (acked)", |r| r.acked, ctx.palette.series(0), 2),
            ("failed", |r| r.failed, ctx.palette.series(2), 2),
            (
                "indeterminate",
                |r| r.indeterminate,
                ctx.palette.series(1),
                2,
            ),
        ];
        for (name, get, colour, width) in series {
            // Failed / indeterminate are drawn only when they happened at all.
            if name != "offered"
                && name != "achieved (acked)"
                && self.rows.iter().all(|r| get(r) == 0)
            {
                continue;
            }
            draw_segmented(
                &mut chart,
                self.rows.iter().map(|r| Some((r.t_s, get(r) as f64))),
                colour.stroke_width(width),
                name,
            )?;
        }
        ctx.legend(&mut chart, SeriesLabelPosition::LowerRight, 13.0)?;
        Ok(())
    }
}
