//! Bus vs Redis (or any set of runs): what a message costs, as four small bar panels —
//! CPU per 1,000 acknowledged messages, peak RSS, disk writes per 1,000 and fsyncs per
//! 1,000. A figure a target does not report is written as such instead of a bar.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{category_label, Chart, DrawResult, PlotContext};
use crate::cost::{fmt_bytes, fmt_cpu};

/// One run's figures (`None`: not reported).
#[derive(Debug, Clone)]
pub struct CostGroup {
    pub label: String,
    pub cpu_s_per_1k: f64,
    pub peak_rss_bytes: f64,
    pub write_bytes_per_1k: Option<f64>,
    pub fsyncs_per_1k: Option<f64>,
    /// Shown where the fsyncs bar would be when they are absent, e.g. `not reported by
    /// Redis`.
    pub fsyncs_absent: String,
}

#[derive(Debug, Clone)]
pub struct CostBars {
    pub groups: Vec<CostGroup>,
}

/// One panel: a title, a value per group and how to print it.
struct Panel<'a> {
    title: &'a str,
    values: Vec<Option<f64>>,
    fmt: &'a dyn Fn(f64) -> String,
    /// What stands where a group's figure is absent.
    absent: &'a dyn Fn(&CostGroup) -> String,
}

/// Words in lines of at most `width` characters (a longer word gets its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

impl CostBars {
    fn panel<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        area: &DrawingArea<DB, Shift>,
        p: &Panel<'_>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let names: Vec<&str> = self
            .groups
            .iter()
            .map(|g| g.label.split(" (").next().unwrap_or(&g.label))
            .collect();
        let n = names.len().max(1);
        let peak = p.values.iter().flatten().copied().fold(0.0f64, f64::max);
        let y_max = if peak > 0.0 { peak * 1.3 } else { 1.0 };
        let fmt = p.fmt;
        let mut chart = ChartBuilder::on(area)
            .caption(p.title, ctx.font(15.0))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(ctx.palette.grid)
            .light_line_style(ctx.palette.grid.mix(0.4))
            .x_labels(n + 2)
            .x_label_formatter(&|x| category_label(*x, &names))
            .y_labels(5)
            .y_label_formatter(&|v| fmt(*v))
            .label_style(ctx.font(12.0))
            .draw()?;
        for (i, (g, v)) in self.groups.iter().zip(&p.values).enumerate() {
            let x = i as f64;
            match v {
                Some(v) => {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.3, 0.0), (x + 0.3, *v)],
                        ctx.palette.series(i).filled(),
                    )))?;
                    chart.draw_series(std::iter::once(Text::new(
                        fmt(*v),
                        (x - 0.28, v + y_max * 0.06),
                        ctx.font(13.0),
                    )))?;
                }
                None => {
                    let lines = wrap(&(p.absent)(g), 14);
                    let n = lines.len();
                    chart.draw_series(lines.into_iter().enumerate().map(|(li, line)| {
                        Text::new(
                            line,
                            (x - 0.3, y_max * (0.08 + 0.07 * (n - li) as f64)),
                            ctx.font(12.0).color(&ctx.palette.warmup),
                        )
                    }))?;
                }
            }
        }
        Ok(())
    }
}

impl Chart for CostBars {
    fn stem(&self) -> String {
        "cost_bars".to_string()
    }

    fn title(&self) -> String {
        let names: Vec<&str> = self.groups.iter().map(|g| g.label.as_str()).collect();
        format!("Cost of a message — {}", names.join(" vs "))
    }

    fn size(&self, ctx: &PlotContext) -> (u32, u32) {
        (ctx.size.0, 420)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        ctx: &PlotContext,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = root.titled(&self.title(), ctx.font(20.0))?;
        let cpu = |v: f64| fmt_cpu(v);
        let bytes = |v: f64| fmt_bytes(v);
        let count = |v: f64| {
            if v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        };
        let never = |_: &CostGroup| String::new();
        let unreadable = |_: &CostGroup| "unreadable".to_string();
        let fsyncs_absent = |g: &CostGroup| {
            if g.fsyncs_absent.is_empty() {
                "not reported".to_string()
            } else {
                g.fsyncs_absent.clone()
            }
        };
        let panels = [
            Panel {
                title: "CPU per 1k acked",
                values: self.groups.iter().map(|g| Some(g.cpu_s_per_1k)).collect(),
                fmt: &cpu,
                absent: &never,
            },
            Panel {
                title: "peak RSS (all processes)",
                values: self.groups.iter().map(|g| Some(g.peak_rss_bytes)).collect(),
                fmt: &bytes,
                absent: &never,
            },
            Panel {
                title: "disk writes per 1k acked",
                values: self.groups.iter().map(|g| g.write_bytes_per_1k).collect(),
                fmt: &bytes,
                absent: &unreadable,
            },
            Panel {
                title: "fsyncs per 1k acked",
                values: self.groups.iter().map(|g| g.fsyncs_per_1k).collect(),
                fmt: &count,
                absent: &fsyncs_absent,
            },
        ];
        let areas = root.split_evenly((1, panels.len()));
        for (area, p) in areas.iter().zip(&panels) {
            self.panel(ctx, area, p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_wrap() {
        assert_eq!(
            wrap("not reported by Redis", 14),
            ["not reported", "by Redis"]
        );
        assert_eq!(wrap("unreadable", 4), ["unreadable"]);
    }

    #[test]
    fn draws_with_absent_figures() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = PlotContext::new(dir.path());
        let chart = CostBars {
            groups: vec![
                CostGroup {
                    label: "bus (3 nodes)".into(),
                    cpu_s_per_1k: 0.04,
                    peak_rss_bytes: 90e6,
                    write_bytes_per_1k: Some(300e3),
                    fsyncs_per_1k: Some(120.0),
                    fsyncs_absent: String::new(),
                },
                CostGroup {
                    label: "redis (appendfsync always)".into(),
                    cpu_s_per_1k: 0.01,
                    peak_rss_bytes: 12e6,
                    write_bytes_per_1k: None,
                    fsyncs_per_1k: None,
                    fsyncs_absent: crate::cost::REDIS_FSYNCS_ABSENT.into(),
                },
            ],
        };
        let svg = super::super::render_svg_string(&ctx, &chart).unwrap();
        // Wrapped in two lines.
        assert!(
            svg.contains("\nnot reported\n"),
            "absent figure is labelled"
        );
        assert!(svg.contains("\nby Redis\n"), "absent figure is labelled");
        assert!(
            svg.contains("\nunreadable\n"),
            "unreadable writes are labelled"
        );
        assert!(svg.contains("fsyncs per 1k acked"));
    }
}
