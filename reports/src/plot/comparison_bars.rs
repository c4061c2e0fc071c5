//! Bus vs Redis (or any set of runs): grouped bars of p50/p99/p99.9 for publish→ack and
//! publish→deliver, and achieved vs offered throughput.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{category_label, fmt_us, log_range_us, Chart, DrawResult, PlotContext};
use crate::model::{Percentiles, Throughput};

/// One run's numbers.
#[derive(Debug, Clone)]
pub struct BarGroup {
    pub label: String,
    pub ack: Percentiles,
    pub e2e: Percentiles,
    pub throughput: Throughput,
}

#[derive(Debug, Clone)]
pub struct ComparisonBars {
    pub groups: Vec<BarGroup>,
}

const CATEGORIES: [&str; 6] = [
    "ack p50",
    "ack p99",
    "ack p99.9",
    "deliver p50",
    "deliver p99",
    "deliver p99.9",
];

fn category_values(g: &BarGroup) -> [u64; 6] {
    [
        g.ack.p50, g.ack.p99, g.ack.p999, g.e2e.p50, g.e2e.p99, g.e2e.p999,
    ]
}

impl ComparisonBars {
    fn latency<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        area: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (lo, hi) = log_range_us(
            self.groups
                .iter()
                .flat_map(|g| category_values(g).into_iter().map(|v| v as f64)),
        );
        let n = CATEGORIES.len();
        let mut chart = ChartBuilder::on(area)
            .caption("latency (lower is better)", ctx.font(17.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_labels(n + 2)
            .x_label_formatter(&|x| category_label(*x, &CATEGORIES))
            .y_desc("latency (log)")
            .y_label_formatter(&|v| fmt_us(*v))
            .label_style(ctx.font(12.0))
            .axis_desc_style(ctx.font(14.0))
            .draw()?;
        let k = self.groups.len().max(1) as f64;
        let width = 0.8 / k;
        for (gi, g) in self.groups.iter().enumerate() {
            let colour = ctx.palette.series(gi);
            let bars = category_values(g)
                .into_iter()
                .enumerate()
                .filter(|(_, v)| *v > 0)
                .map(move |(ci, v)| {
                    let x0 = ci as f64 - 0.4 + gi as f64 * width;
                    Rectangle::new([(x0, lo), (x0 + width * 0.92, v as f64)], colour.filled())
                });
            chart
                .draw_series(bars)?
                .label(g.label.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled())
                });
        }
        ctx.legend(&mut chart, SeriesLabelPosition::UpperLeft, 13.0)?;
        Ok(())
    }

    fn throughput<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        area: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let names: Vec<&str> = self.groups.iter().map(|g| g.label.as_str()).collect();
        let n = names.len().max(1);
        let peak = self
            .groups
            .iter()
            .map(|g| g.throughput.offered_per_s.max(g.throughput.achieved_per_s))
            .fold(0.0f64, f64::max);
        let y_max = (peak * 1.25).max(10.0);
        let mut chart = ChartBuilder::on(area)
            .caption("throughput (higher is better)", ctx.font(17.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_labels(n + 2)
            .x_label_formatter(&|x| category_label(*x, &names))
            .y_desc("publishes per second")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(ctx.font(12.0))
            .axis_desc_style(ctx.font(14.0))
            .draw()?;
        let offered_colour = ctx.palette.warmup;
        chart
            .draw_series(self.groups.iter().enumerate().map(|(i, g)| {
                let x = i as f64;
                Rectangle::new(
                    [(x - 0.3, 0.0), (x + 0.3, g.throughput.offered_per_s)],
                    offered_colour.mix(0.35).filled(),
                )
            }))?
            .label("offered")
            .legend(move |(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 14, y + 5)],
                    offered_colour.mix(0.35).filled(),
                )
            });
        for (i, g) in self.groups.iter().enumerate() {
            let colour = ctx.palette.series(i);
            let x = i as f64;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x - 0.18, 0.0), (x + 0.18, g.throughput.achieved_per_s)],
                colour.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{:.0}/s", g.throughput.achieved_per_s),
                (
                    x - 0.17,
                    g.throughput.achieved_per_s.max(g.throughput.offered_per_s) + y_max * 0.07,
                ),
                ctx.font(13.0),
            )))?;
        }
        ctx.legend(&mut chart, SeriesLabelPosition::UpperRight, 13.0)?;
        Ok(())
    }
}

impl Chart for ComparisonBars {
    fn stem(&self) -> String {
        "comparison_bars".to_string()
    }

    fn title(&self) -> String {
        let names: Vec<&str> = self.groups.iter().map(|g| g.label.as_str()).collect();
        format!("Comparison — {}", names.join(" vs "))
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
        let (w, _) = root.dim_in_pixel();
        let (left, right) = root.split_horizontally(w * 64 / 100);
        self.latency(ctx, &left)?;
        self.throughput(ctx, &right)?;
        Ok(())
    }
}
