//! A capacity sweep: latency (p50/p99/p99.9 of every scheduled publish, log axis) against
//! the offered rate, one colour per target configuration, the objective as a horizontal
//! line; and achieved against offered throughput with the line where they are equal.
//! Steps that broke the objective or fell behind are drawn hollow.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{fmt_us, log_range_us, Chart, DrawResult, PlotContext};
use crate::model::{Percentiles, SweepCurve};

#[derive(Debug, Clone)]
pub struct SweepCurves {
    pub curves: Vec<SweepCurve>,
    /// The objective's bound, drawn across the latency panel.
    pub slo_us: u64,
    pub slo: String,
}

/// Picks one percentile out of a step's.
type Pick = fn(&Percentiles) -> u64;

/// The latency series drawn per curve: name, value, stroke width.
const PERCENTILES: [(&str, Pick, u32); 3] = [
    ("p50", |p| p.p50, 1),
    ("p99", |p| p.p99, 3),
    ("p99.9", |p| p.p999, 1),
];

impl Chart for SweepCurves {
    fn stem(&self) -> String {
        "sweep".into()
    }

    fn title(&self) -> String {
        format!("capacity sweep (objective {})", self.slo)
    }

    fn size(&self, _ctx: &PlotContext) -> (u32, u32) {
        (1200, 420)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let steps = || self.curves.iter().flat_map(|c| c.steps.iter());
        let max_rate = steps().map(|s| s.offered_per_s).fold(1.0, f64::max) * 1.08;
        let (w, _) = root.dim_in_pixel();
        let (left, right) = root.split_horizontally(w / 2);

        let (lo, hi) = log_range_us(
            steps()
                .flat_map(|s| PERCENTILES.map(|(_, get, _)| get(&s.publish_all) as f64))
                .chain([self.slo_us as f64]),
        );
        let mut lat = ChartBuilder::on(&left)
            .caption(
                "latency of every scheduled publish vs offered rate",
                ctx.font(15.0),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..max_rate, (lo..hi).log_scale())?;
        lat.configure_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_desc("offered /s")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|v| fmt_us(*v))
            .label_style(ctx.font(12.0))
            .draw()?;
        let slo = self.slo_us as f64;
        // Dashed black, so it is not read as one of the curves.
        let slo_colour = BLACK;
        lat.draw_series(DashedLineSeries::new(
            [(0.0, slo), (max_rate, slo)],
            8,
            5,
            slo_colour.stroke_width(2),
        ))?
        .label(format!("objective {}", self.slo))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], slo_colour));
        for (k, curve) in self.curves.iter().enumerate() {
            let colour = ctx.palette.series(k);
            for (name, get, width) in PERCENTILES {
                let points: Vec<(f64, f64)> = curve
                    .steps
                    .iter()
                    .filter(|s| get(&s.publish_all) > 0)
                    .map(|s| (s.offered_per_s, get(&s.publish_all) as f64))
                    .collect();
                lat.draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(width),
                ))?
                .label(format!("{} {name}", curve.label))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width))
                });
                lat.draw_series(
                    curve
                        .steps
                        .iter()
                        .filter(|s| get(&s.publish_all) > 0)
                        .map(|s| {
                            let style = if s.within_slo {
                                colour.filled()
                            } else {
                                colour.stroke_width(1)
                            };
                            Circle::new((s.offered_per_s, get(&s.publish_all) as f64), 3, style)
                        }),
                )?;
            }
        }
        ctx.legend(&mut lat, SeriesLabelPosition::UpperLeft, 11.0)?;

        let peak = steps()
            .map(|s| s.achieved_per_s.max(s.offered_per_s))
            .fold(1.0, f64::max)
            * 1.08;
        let mut tp = ChartBuilder::on(&right)
            .caption("achieved vs offered throughput", ctx.font(15.0))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..max_rate, 0f64..peak)?;
        tp.configure_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_desc("offered /s")
            .y_desc("achieved /s")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(ctx.font(12.0))
            .draw()?;
        let even = ctx.palette.grid;
        tp.draw_series(LineSeries::new(
            [(0.0, 0.0), (max_rate, max_rate)],
            even.stroke_width(2),
        ))?
        .label("achieved = offered")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], even));
        for (k, curve) in self.curves.iter().enumerate() {
            let colour = ctx.palette.series(k);
            tp.draw_series(LineSeries::new(
                curve
                    .steps
                    .iter()
                    .map(|s| (s.offered_per_s, s.achieved_per_s)),
                colour.stroke_width(2),
            ))?
            .label(curve.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
            tp.draw_series(curve.steps.iter().map(|s| {
                let style = if s.within_slo {
                    colour.filled()
                } else {
                    colour.stroke_width(1)
                };
                Circle::new((s.offered_per_s, s.achieved_per_s), 3, style)
            }))?;
        }
        ctx.legend(&mut tp, SeriesLabelPosition::UpperLeft, 11.0)?;
        Ok(())
    }
}
