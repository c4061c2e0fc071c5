//! The report of a capacity sweep (`sweep.json` at a directory's root): per target
//! configuration the highest offered rate that held the latency objective, why its sweep
//! stopped, every step with its percentiles and a link to the step's own report, and the
//! latency-vs-offered and achieved-vs-offered chart.

use std::fmt::Write;
use std::path::Path;

use crate::error::ReportError;
use crate::html::{esc, fmt_rate, fmt_unix, inline_svg, page, rel_href};
use crate::markdown::md_esc;
use crate::model::{Sweep, SweepCurve, SweepStep, Verdict};
use crate::plot::sweep_curves::SweepCurves;
use crate::plot::{fmt_us, render, PlotContext};
use crate::render::{RenderedReport, MARKDOWN_FILE, REPORT_FILE};

fn max_rate_text(c: &SweepCurve) -> String {
    c.max_rate_within_slo
        .map(fmt_rate)
        .unwrap_or_else(|| "none (the first step broke it)".into())
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "valid",
        Verdict::Invalid => "INVALID",
        Verdict::Unknown => "unknown",
    }
}

fn step_note(s: &SweepStep) -> &'static str {
    if s.generator_behind {
        "generator behind"
    } else if s.within_slo {
        "holds"
    } else {
        "breaks"
    }
}

/// The column heads of a step row, and the row's cells (plain text, not escaped: numbers
/// and fixed words only).
const STEP_HEADS: [&str; 9] = [
    "offered",
    "achieved",
    "p50",
    "p99",
    "p99.9",
    "ok-only p99",
    "send lag p99",
    "verdict",
    "step",
];

fn step_cells(s: &SweepStep) -> [String; 9] {
    let p = &s.publish_all;
    [
        fmt_rate(s.offered_per_s),
        fmt_rate(s.achieved_per_s),
        fmt_us(p.p50 as f64),
        fmt_us(p.p99 as f64),
        fmt_us(p.p999 as f64),
        fmt_us(s.publish_ack.p99 as f64),
        fmt_us(s.send_lag.p99 as f64),
        verdict_text(s.verdict).to_string(),
        step_note(s).to_string(),
    ]
}

/// `summary.md` of a sweep.
pub fn sweep_markdown(sweep: &Sweep) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# raftbus sweep — {}\n\nObjective: {} over every scheduled publish, {} s measured per step, seed {}.\n",
        md_esc(&sweep.name),
        md_esc(&sweep.slo),
        sweep.step_s,
        sweep.seed
    );
    let _ = writeln!(
        out,
        "| configuration | highest rate within the objective | stopped |\n|---|---:|---|"
    );
    for c in &sweep.curves {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            md_esc(&c.label),
            max_rate_text(c),
            md_esc(&c.stopped)
        );
    }
    for c in &sweep.curves {
        let _ = writeln!(
            out,
            "\n## {}\n\n| {} |\n|{}",
            md_esc(&c.label),
            STEP_HEADS.join(" | "),
            "---:|".repeat(7) + "---|---|"
        );
        for s in &c.steps {
            let _ = writeln!(out, "| {} |", step_cells(s).join(" | "));
        }
    }
    let _ = writeln!(out, "\nRerun: `{}`", sweep.rerun);
    out
}

fn sweep_html(sweep: &Sweep, chart_svg: &str, chart_title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<header><div><h1>raftbus sweep — {}</h1><div class=\"sub\">objective <strong>{}</strong> over every scheduled publish · {} s per step · seed <code>{}</code> · started {}</div></div></header>",
        esc(&sweep.name),
        esc(&sweep.slo),
        sweep.step_s,
        sweep.seed,
        fmt_unix(sweep.started_at)
    );
    let _ = writeln!(out, "<h2 id=\"capacity\">Capacity</h2><table><tr><th class=\"l\">configuration</th><th>highest rate within the objective</th><th class=\"l\">stopped</th></tr>");
    for c in &sweep.curves {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&c.label),
            esc(&max_rate_text(c)),
            esc(&c.stopped)
        );
    }
    let _ = writeln!(out, "</table>");
    let _ = writeln!(
        out,
        "<h2 id=\"charts\">Charts</h2><figure>{}<figcaption>{} — <a href=\"sweep.png\">PNG</a> · <a href=\"sweep.svg\">SVG</a></figcaption></figure>",
        inline_svg(chart_svg),
        esc(chart_title)
    );
    let _ = writeln!(out, "<h2 id=\"steps\">Steps</h2>");
    for c in &sweep.curves {
        let heads: String = STEP_HEADS.iter().map(|h| format!("<th>{h}</th>")).collect();
        let _ = writeln!(
            out,
            "<h3>{}</h3><table><tr>{heads}<th class=\"l\">report</th></tr>",
            esc(&c.label)
        );
        for s in &c.steps {
            let cells: String = step_cells(s)
                .iter()
                .map(|v| format!("<td>{}</td>", esc(v)))
                .collect();
            let _ = writeln!(
                out,
                "<tr>{cells}<td class=\"l\"><a href=\"{}\">{}</a></td></tr>",
                rel_href(&format!("{}/{REPORT_FILE}", s.dir)),
                esc(&s.dir)
            );
        }
        let _ = writeln!(out, "</table>");
    }
    let _ = writeln!(
        out,
        "<h2 id=\"rerun\">Rerun</h2><pre><code>{}</code></pre>",
        esc(&sweep.rerun)
    );
    page(&format!("raftbus sweep — {}", sweep.name), &out)
}

/// Writes `report.html`, `summary.md` and the sweep chart for a sweep directory. The steps'
/// own reports are written when each step ends.
pub fn render_sweep(dir: &Path) -> Result<RenderedReport, ReportError> {
    let sweep = Sweep::read(dir)?;
    let chart = SweepCurves {
        curves: sweep.curves.clone(),
        slo_us: sweep.slo_us,
        slo: sweep.slo.clone(),
    };
    let drawn = render(&PlotContext::new(dir), &chart)?;
    let html_path = dir.join(REPORT_FILE);
    std::fs::write(
        &html_path,
        sweep_html(&sweep, &drawn.svg_text, &drawn.title),
    )
    .map_err(|e| ReportError::io(&html_path, e))?;
    let md_path = dir.join(MARKDOWN_FILE);
    std::fs::write(&md_path, sweep_markdown(&sweep)).map_err(|e| ReportError::io(&md_path, e))?;
    tracing::info!(dir = %dir.display(), curves = sweep.curves.len(), "sweep report written");
    Ok(RenderedReport {
        dir: dir.to_path_buf(),
        html: html_path,
        markdown: md_path,
        charts: vec![drawn.png, drawn.svg],
        runs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Percentiles, Target};

    fn step(offered: f64, p99: u64, within: bool) -> SweepStep {
        SweepStep {
            offered_per_s: offered,
            achieved_per_s: offered * 0.999,
            publish_all: Percentiles {
                count: 100,
                p50: p99 / 4,
                p90: p99 / 2,
                p99,
                p999: p99 * 2,
                max: p99 * 3,
            },
            publish_ack: Percentiles::default(),
            send_lag: Percentiles::default(),
            verdict: Verdict::Valid,
            within_slo: within,
            generator_behind: false,
            dir: format!("bus/rate-{offered}"),
        }
    }

    fn sweep() -> Sweep {
        Sweep {
            schema: "raftbus.sweep/1".into(),
            name: "sweep".into(),
            seed: 1,
            started_at: 0,
            slo: "p99 <= 10ms".into(),
            slo_quantile: 0.99,
            slo_us: 10_000,
            step_s: 5.0,
            rerun: "raftbus sweep --seed 1".into(),
            curves: vec![
                SweepCurve {
                    label: "bus <3 nodes>".into(),
                    target: Target::Bus,
                    steps: vec![step(1000.0, 3_000, true), step(2000.0, 40_000, false)],
                    max_rate_within_slo: Some(1000.0),
                    stopped: "p99 40.0ms > 10ms at 2,000/s".into(),
                },
                SweepCurve {
                    label: "redis".into(),
                    target: Target::Redis,
                    steps: vec![step(1000.0, 20_000, false)],
                    max_rate_within_slo: None,
                    stopped: "p99 20.0ms > 10ms at 1,000/s".into(),
                },
            ],
        }
    }

    #[test]
    fn report_names_each_curves_capacity_and_links_every_step() {
        let dir = tempfile::tempdir().unwrap();
        let s = sweep();
        s.write(dir.path()).unwrap();
        let r = render_sweep(dir.path()).unwrap();
        let html = std::fs::read_to_string(&r.html).unwrap();
        assert!(html.contains("bus &lt;3 nodes&gt;"), "labels are escaped");
        assert!(html.contains("1,000/s"));
        assert!(html.contains("none (the first step broke it)"));
        assert!(html.contains("bus/rate-2000/report.html"));
        assert!(html.contains("<svg"));
        let md = std::fs::read_to_string(&r.markdown).unwrap();
        assert!(md.contains("| 1,000/s |"), "{md}");
        assert!(md.contains("none (the first step broke it)"), "{md}");
        assert!(md.contains("| 2,000/s |"), "{md}");
        assert!(md.contains("breaks"));
        assert!(r.charts.iter().all(|c| c.is_file()));
    }
}
