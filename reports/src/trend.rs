//! `trend ROOT`: every run under ROOT, ordered by start time and grouped by scenario and
//! target, written as `ROOT/index.html` with one trend chart per group and links to each
//! run's report; its tables show p99, CPU per 1,000 acknowledged messages and peak RSS
//! against the previous run (the regression gate itself is [`crate::compare()`], which the
//! nightly runs against the previous night).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cost::{fmt_bytes, fmt_cpu};
use crate::error::ReportError;
use crate::html::{esc, fmt_rate, fmt_unix, inline_svg, rel_href};
use crate::model::{Summary, Verdict, SUMMARY_FILE};
use crate::plot::trend_lines::{TrendLines, TrendPoint};
use crate::plot::{fmt_us, render_svg_string, PlotContext};
use crate::render::REPORT_FILE;
use crate::run::target_name;

pub const INDEX_FILE: &str = "index.html";

/// Directories deeper than this under ROOT are not searched.
const MAX_DEPTH: usize = 12;

/// One run found under ROOT.
#[derive(Debug, Clone)]
pub struct TrendRun {
    pub dir: PathBuf,
    /// `dir` relative to ROOT, with `/` separators.
    pub rel: String,
    pub summary: Summary,
    /// Relative link from `index.html` to the run's report (or its summary when the report
    /// was never rendered).
    pub link: String,
    pub has_report: bool,
}

/// One scenario on one target, runs oldest first.
#[derive(Debug, Clone)]
pub struct TrendGroup {
    pub name: String,
    pub target: String,
    pub runs: Vec<TrendRun>,
}

/// What [`trend`] wrote.
#[derive(Debug, Clone)]
pub struct TrendReport {
    pub root: PathBuf,
    pub index_path: PathBuf,
    /// Every run, ordered by `started_at` (then path).
    pub runs: Vec<TrendRun>,
    pub groups: Vec<TrendGroup>,
    /// Directories with an unreadable `summary.json`, skipped.
    pub skipped: Vec<(PathBuf, String)>,
}

fn find_runs(
    dir: &Path,
    depth: usize,
    found: &mut Vec<PathBuf>,
    skipped: &mut Vec<(PathBuf, String)>,
) {
    if dir.join(SUMMARY_FILE).is_file() {
        found.push(dir.to_path_buf());
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            skipped.push((dir.to_path_buf(), e.to_string()));
            return;
        }
    };
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        // Symlinks are not followed: they could loop or leave ROOT.
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    for d in subdirs {
        find_runs(&d, depth + 1, found, skipped);
    }
}

fn rel_path(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Finds every run under `root`, writes `root/index.html` and returns what it found.
pub fn trend(root: &Path) -> Result<TrendReport, ReportError> {
    let mut dirs = Vec::new();
    let mut skipped = Vec::new();
    find_runs(root, 0, &mut dirs, &mut skipped);
    let mut runs = Vec::new();
    for dir in dirs {
        match Summary::read(&dir) {
            Ok(summary) => {
                let rel = rel_path(root, &dir);
                let has_report = dir.join(REPORT_FILE).is_file();
                let file = if has_report {
                    REPORT_FILE
                } else {
                    SUMMARY_FILE
                };
                let link = if rel.is_empty() {
                    file.to_string()
                } else {
                    format!("{rel}/{file}")
                };
                runs.push(TrendRun {
                    dir,
                    rel,
                    summary,
                    link,
                    has_report,
                });
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "skipping run");
                skipped.push((dir, e.to_string()));
            }
        }
    }
    if runs.is_empty() {
        return Err(ReportError::NoRuns(root.to_path_buf()));
    }
    runs.sort_by(|a, b| {
        a.summary
            .started_at
            .cmp(&b.summary.started_at)
            .then_with(|| a.rel.cmp(&b.rel))
    });
    let mut grouped: BTreeMap<(String, String), Vec<TrendRun>> = BTreeMap::new();
    for r in &runs {
        grouped
            .entry((
                r.summary.name.clone(),
                target_name(r.summary.target).to_string(),
            ))
            .or_default()
            .push(r.clone());
    }
    let groups: Vec<TrendGroup> = grouped
        .into_iter()
        .map(|((name, target), runs)| TrendGroup { name, target, runs })
        .collect();
    let index_path = root.join(INDEX_FILE);
    let html = index_page(root, &runs, &groups, &skipped)?;
    std::fs::write(&index_path, html).map_err(|e| ReportError::io(&index_path, e))?;
    tracing::info!(root = %root.display(), runs = runs.len(), "trend index written");
    Ok(TrendReport {
        root: root.to_path_buf(),
        index_path,
        runs,
        groups,
        skipped,
    })
}

/// CPU seconds per 1,000 acknowledged messages, when the run measured its cost.
fn cpu_per_1k(s: &Summary) -> Option<f64> {
    s.cost.as_ref()?.per_1k_acked.as_ref().map(|k| k.cpu_s)
}

fn pct_change(a: f64, b: f64) -> String {
    if a > 0.0 {
        format!("{:+.1}%", (b - a) / a * 100.0)
    } else {
        "–".to_string()
    }
}

fn index_page(
    root: &Path,
    runs: &[TrendRun],
    groups: &[TrendGroup],
    skipped: &[(PathBuf, String)],
) -> Result<String, ReportError> {
    let ctx = PlotContext::new(root);
    let mut body = String::new();
    let invalid = runs
        .iter()
        .filter(|r| r.summary.verdict == Verdict::Invalid)
        .count();
    let _ = writeln!(
        body,
        "<header><div><h1>raftbus trend</h1><div class=\"sub\">{} run(s) in {} scenario/target group(s) · {} invalid · {} to {}</div></div>{}</header>",
        runs.len(),
        groups.len(),
        invalid,
        runs.first().map(|r| fmt_unix(r.summary.started_at)).unwrap_or_default(),
        runs.last().map(|r| fmt_unix(r.summary.started_at)).unwrap_or_default(),
        if invalid == 0 {
            "<div class=\"verdict valid\">ALL VALID<small>every run</small></div>".to_string()
        } else {
            format!("<div class=\"verdict invalid\">{invalid} INVALID<small>runs</small></div>")
        }
    );
    for (gi, g) in groups.iter().enumerate() {
        let _ = writeln!(
            body,
            "<h2 id=\"g{gi}\">{} — {}</h2>",
            esc(&g.name),
            esc(&g.target)
        );
        let chart = TrendLines {
            label: format!("{} — {}", g.name, g.target),
            points: g
                .runs
                .iter()
                .map(|r| TrendPoint {
                    p50_us: r.summary.latency_us.publish_ack.p50,
                    p99_us: r.summary.latency_us.publish_ack.p99,
                    throughput: r.summary.throughput.achieved_per_s,
                    valid: r.summary.verdict != Verdict::Invalid,
                })
                .collect(),
            stem: format!("trend_{gi}"),
        };
        let svg = render_svg_string(&ctx, &chart)?;
        let _ = writeln!(body, "<figure>{}</figure>", inline_svg(&svg));
        let _ = writeln!(
            body,
            "<table><tr><th>#</th><th class=\"l\">started</th><th class=\"l\">verdict</th><th>ack p50</th><th>ack p99</th><th>p99 vs previous</th><th>throughput</th><th>CPU / 1k acked</th><th>CPU vs previous</th><th>peak RSS</th><th>RSS vs previous</th><th class=\"l\">seed</th><th class=\"l\">run</th></tr>"
        );
        let mut prev: Option<&TrendRun> = None;
        for (i, r) in g.runs.iter().enumerate() {
            let s = &r.summary;
            let (word, class, row) = match s.verdict {
                Verdict::Valid => ("valid", "ok", ""),
                Verdict::Invalid => ("INVALID", "bad", " class=\"bad\""),
                Verdict::Unknown => ("unknown", "info", ""),
            };
            let vs_prev = prev
                .map(|p| {
                    pct_change(
                        p.summary.latency_us.publish_ack.p99 as f64,
                        s.latency_us.publish_ack.p99 as f64,
                    )
                })
                .unwrap_or_else(|| "–".to_string());
            let cpu = |r: &TrendRun| cpu_per_1k(&r.summary);
            let rss = |r: &TrendRun| r.summary.cost.as_ref().map(|c| c.total.peak_rss_bytes);
            let vs = |f: &dyn Fn(&TrendRun) -> Option<f64>| match (prev.and_then(f), f(r)) {
                (Some(a), Some(b)) => pct_change(a, b),
                _ => "–".to_string(),
            };
            let (cpu_vs, rss_vs) = (vs(&cpu), vs(&rss));
            let cpu_text = cpu(r).map_or_else(|| "–".to_string(), fmt_cpu);
            let rss_text = rss(r).map_or_else(|| "–".to_string(), fmt_bytes);
            let _ = writeln!(
                body,
                "<tr{row}><td>#{}</td><td class=\"l\">{}</td><td class=\"l\"><span class=\"pill {class}\">{word}</span></td><td>{}</td><td>{}</td><td>{vs_prev}</td><td>{}</td><td>{cpu_text}</td><td>{cpu_vs}</td><td>{rss_text}</td><td>{rss_vs}</td><td class=\"l\"><code>{}</code></td><td class=\"l\"><a href=\"{}\">{}</a>{}</td></tr>",
                i + 1,
                fmt_unix(s.started_at),
                fmt_us(s.latency_us.publish_ack.p50 as f64),
                fmt_us(s.latency_us.publish_ack.p99 as f64),
                fmt_rate(s.throughput.achieved_per_s),
                s.seed,
                rel_href(&r.link),
                esc(if r.rel.is_empty() { "." } else { &r.rel }),
                if r.has_report { "" } else { " <span class=\"sub\">(no report yet: <code>raftbus report</code>)</span>" }
            );
            prev = Some(r);
        }
        let _ = writeln!(body, "</table>");
    }
    if !skipped.is_empty() {
        let _ = writeln!(body, "<h2>Skipped</h2><ul>");
        for (d, why) in skipped {
            let _ = writeln!(
                body,
                "<li><code>{}</code>: {}</li>",
                esc(&d.display().to_string()),
                esc(why)
            );
        }
        let _ = writeln!(body, "</ul>");
    }
    Ok(crate::html::page("raftbus trend", &body))
}
