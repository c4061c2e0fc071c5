//! `render_run`: a results directory in, `report.html` + `summary.md` + charts out.

use std::path::{Path, PathBuf};

use crate::error::ReportError;
use crate::html;
use crate::markdown;
use crate::plot::comparison_bars::{BarGroup, ComparisonBars};
use crate::plot::cost_bars::{CostBars, CostGroup};
use crate::plot::latency_over_time::LatencyOverTime;
use crate::plot::percentile_spectrum::PercentileSpectrum;
use crate::plot::throughput_over_time::ThroughputOverTime;
use crate::plot::{render, ChartOutput, PlotContext};
use crate::run::{layout, Layout, RunData};

pub const REPORT_FILE: &str = "report.html";
pub const MARKDOWN_FILE: &str = "summary.md";

/// What [`render_run`] wrote.
#[derive(Debug, Clone)]
pub struct RenderedReport {
    pub dir: PathBuf,
    pub html: PathBuf,
    pub markdown: PathBuf,
    /// Every PNG and SVG written for this directory (not its sub-runs).
    pub charts: Vec<PathBuf>,
    /// For a `both` directory: the report of each target.
    pub runs: Vec<RenderedReport>,
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::io(path, e))
}

fn chart_files(charts: &[ChartOutput]) -> Vec<PathBuf> {
    charts
        .iter()
        .flat_map(|c| [c.png.clone(), c.svg.clone()])
        .collect()
}

/// Draws a run's charts into its directory.
fn run_charts(run: &RunData) -> Result<Vec<ChartOutput>, ReportError> {
    let ctx = PlotContext::new(&run.dir);
    let mut charts = Vec::new();
    let label = run.label();
    let lat_rows = run.latency_rows();
    if !lat_rows.is_empty() {
        charts.push(render(
            &ctx,
            &LatencyOverTime {
                label: label.clone(),
                rows: &lat_rows,
                faults: &run.summary.faults,
                warmup_s: run.warmup_s(),
            },
        )?);
    }
    let tp_rows = run.throughput_rows();
    if !tp_rows.is_empty() {
        charts.push(render(
            &ctx,
            &ThroughputOverTime {
                label: label.clone(),
                rows: &tp_rows,
                faults: &run.summary.faults,
                warmup_s: run.warmup_s(),
            },
        )?);
    }
    let series = run.spectrum("");
    if !series.is_empty() {
        charts.push(render(
            &ctx,
            &PercentileSpectrum {
                label,
                series,
                stem: "percentile_spectrum".to_string(),
            },
        )?);
    }
    Ok(charts)
}

fn render_single(dir: &Path) -> Result<(RenderedReport, RunData, Vec<ChartOutput>), ReportError> {
    let run = RunData::load(dir)?;
    let charts = run_charts(&run)?;
    let html_path = dir.join(REPORT_FILE);
    write(&html_path, &html::run_page(&run, &charts))?;
    let md_path = dir.join(MARKDOWN_FILE);
    write(&md_path, &markdown::run_markdown(&run))?;
    tracing::info!(dir = %dir.display(), charts = charts.len(), "report written");
    Ok((
        RenderedReport {
            dir: dir.to_path_buf(),
            html: html_path,
            markdown: md_path,
            charts: chart_files(&charts),
            runs: Vec::new(),
        },
        run,
        charts,
    ))
}

/// Renders the report of a results directory: one run (`DIR/summary.json`) or a
/// `--target both` pair (`DIR/bus/`, `DIR/redis/`), which also gets each run's own report,
/// or a capacity sweep (`DIR/sweep.json`).
pub fn render_run(dir: &Path) -> Result<RenderedReport, ReportError> {
    if dir.join(crate::model::SWEEP_FILE).is_file() {
        return crate::sweep::render_sweep(dir);
    }
    let subs = match layout(dir)? {
        Layout::Single => return render_single(dir).map(|r| r.0),
        Layout::Both(subs) => subs,
    };
    let mut reports = Vec::new();
    let mut runs = Vec::new();
    let mut per_run = Vec::new();
    for sub in &subs {
        let (rep, run, charts) = render_single(sub)?;
        reports.push(rep);
        runs.push(run);
        per_run.push(charts);
    }
    let ctx = PlotContext::new(dir);
    let mut charts = Vec::new();
    let labels: Vec<String> = runs.iter().map(RunData::label).collect();
    charts.push(render(
        &ctx,
        &ComparisonBars {
            groups: runs
                .iter()
                .map(|r| BarGroup {
                    label: r.label(),
                    ack: r.summary.latency_us.publish_ack.clone(),
                    e2e: r.summary.latency_us.end_to_end.clone(),
                    throughput: r.summary.throughput.clone(),
                })
                .collect(),
        },
    )?);
    let cost_groups: Vec<CostGroup> = runs
        .iter()
        .filter_map(|r| {
            let c = r.summary.cost.as_ref()?;
            let k = c.per_1k_acked.as_ref()?;
            Some(CostGroup {
                label: r.label(),
                cpu_s_per_1k: k.cpu_s,
                peak_rss_bytes: c.total.peak_rss_bytes,
                write_bytes_per_1k: k.write_bytes,
                fsyncs_per_1k: k.fsyncs,
                fsyncs_absent: c.fsyncs_absent.clone(),
            })
        })
        .collect();
    if !cost_groups.is_empty() {
        charts.push(render(
            &ctx,
            &CostBars {
                groups: cost_groups,
            },
        )?);
    }
    let series: Vec<_> = runs
        .iter()
        .flat_map(|r| r.spectrum(crate::run::target_name(r.summary.target)))
        .collect();
    if !series.is_empty() {
        charts.push(render(
            &ctx,
            &PercentileSpectrum {
                label: labels.join(" vs "),
                series,
                stem: "percentile_spectrum".to_string(),
            },
        )?);
    }
    let links: Vec<String> = subs
        .iter()
        .map(|s| {
            let name = s
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            format!("{name}/{REPORT_FILE}")
        })
        .collect();
    let html_path = dir.join(REPORT_FILE);
    write(
        &html_path,
        &html::comparison_page(&runs, &links, &charts, &per_run),
    )?;
    let md_path = dir.join(MARKDOWN_FILE);
    write(&md_path, &markdown::comparison_markdown(&runs))?;
    tracing::info!(dir = %dir.display(), runs = runs.len(), "comparison report written");
    Ok(RenderedReport {
        dir: dir.to_path_buf(),
        html: html_path,
        markdown: md_path,
        charts: chart_files(&charts),
        runs: reports,
    })
}
