//! `compare A B`: how run B differs from run A, and whether B regressed.
//!
//! B regressed when, beyond the threshold (default 10%), its publish→ack p99 is higher or
//! its achieved throughput lower than A's, or — when both runs measured their cost — its
//! CPU per 1,000 acknowledged messages or its peak RSS is higher, or when a correctness
//! check that held in A fails in B. Other metrics are shown but do not gate. `both` directories are compared
//! target by target.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::ReportError;
use crate::html::{check_rows, fmt_count};
use crate::markdown::md_esc;
use crate::model::{Summary, Verdict};
use crate::plot::fmt_us;
use crate::run::{layout, target_name, Layout, RunData};

/// The default regression threshold: 10%.
pub const DEFAULT_THRESHOLD: f64 = 0.10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Micros,
    PerSecond,
    /// CPU seconds.
    CpuSeconds,
    Bytes,
    /// A plain count, e.g. fsyncs per 1,000 acknowledged messages.
    Count,
}

/// One metric in A and B.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDelta {
    pub name: String,
    pub a: f64,
    pub b: f64,
    pub unit: Unit,
    pub higher_is_better: bool,
    /// Whether this metric decides `regressed`.
    pub gating: bool,
}

impl MetricDelta {
    /// `(b - a) / a`; `None` when A is zero.
    pub fn change(&self) -> Option<f64> {
        (self.a > 0.0).then(|| (self.b - self.a) / self.a)
    }

    /// How much worse B is, as a fraction (negative when better).
    pub fn worsening(&self) -> Option<f64> {
        self.change()
            .map(|c| if self.higher_is_better { -c } else { c })
    }

    /// `v` in this metric's unit, for people.
    pub fn fmt(&self, v: f64) -> String {
        match self.unit {
            Unit::Micros => fmt_us(v),
            Unit::PerSecond => format!("{v:.0}/s"),
            Unit::CpuSeconds => crate::cost::fmt_cpu(v),
            Unit::Bytes => crate::cost::fmt_bytes(v),
            Unit::Count => format!("{v:.1}"),
        }
    }

    fn change_text(&self) -> String {
        match self.change() {
            Some(c) => format!("{:+.1}%", c * 100.0),
            None => "n/a".to_string(),
        }
    }
}

/// One correctness count in A and B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDelta {
    pub name: String,
    pub a: u64,
    pub b: u64,
    /// Non-zero is a violation.
    pub violation: bool,
    /// A breakdown of another row (lost mid-stream / tail).
    pub breakdown: bool,
}

/// A against B for one target.
#[derive(Debug, Clone)]
pub struct RunComparison {
    /// `bus`, `redis`, or `bus → redis` when comparing different targets.
    pub label: String,
    pub a_dir: PathBuf,
    pub b_dir: PathBuf,
    pub a_verdict: Verdict,
    pub b_verdict: Verdict,
    pub metrics: Vec<MetricDelta>,
    pub checks: Vec<CheckDelta>,
    /// Why this pair regressed; empty when it did not.
    pub regressions: Vec<String>,
    /// How trustworthy the deltas are.
    pub noise: Vec<String>,
}

/// The result of `compare`.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub a: PathBuf,
    pub b: PathBuf,
    pub threshold: f64,
    pub runs: Vec<RunComparison>,
    /// B is worse than A beyond the threshold on p99 or throughput, or has a new violation.
    pub regressed: bool,
}

/// Compares two results directories (single runs or `both` pairs).
pub fn compare(a: &Path, b: &Path, threshold: f64) -> Result<Comparison, ReportError> {
    if !threshold.is_finite() || !(0.0..=10.0).contains(&threshold) {
        return Err(ReportError::InvalidThreshold(threshold));
    }
    let a_runs = runs_of(a)?;
    let b_runs = runs_of(b)?;
    let mut pairs = Vec::new();
    if a_runs.len() == 1 && b_runs.len() == 1 {
        pairs.push((&a_runs[0], &b_runs[0]));
    } else {
        for ra in &a_runs {
            if let Some(rb) = b_runs
                .iter()
                .find(|rb| rb.summary.target == ra.summary.target)
            {
                pairs.push((ra, rb));
            }
        }
    }
    if pairs.is_empty() {
        return Err(ReportError::NoRuns(b.to_path_buf()));
    }
    let runs: Vec<RunComparison> = pairs
        .into_iter()
        .map(|(ra, rb)| compare_runs(ra, rb, threshold))
        .collect();
    let regressed = runs.iter().any(|r| !r.regressions.is_empty());
    if regressed {
        tracing::info!(a = %a.display(), b = %b.display(), "regression found");
    }
    Ok(Comparison {
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        threshold,
        runs,
        regressed,
    })
}

fn runs_of(dir: &Path) -> Result<Vec<RunData>, ReportError> {
    match layout(dir)? {
        Layout::Single => Ok(vec![RunData::load(dir)?]),
        Layout::Both(subs) => subs.iter().map(|d| RunData::load(d)).collect(),
    }
}

fn metrics_of(a: &Summary, b: &Summary) -> Vec<MetricDelta> {
    let lat = |name: &str, fa: u64, fb: u64, gating: bool| MetricDelta {
        name: name.to_string(),
        a: fa as f64,
        b: fb as f64,
        unit: Unit::Micros,
        higher_is_better: false,
        gating,
    };
    let (la, lb) = (&a.latency_us, &b.latency_us);
    let mut metrics = vec![
        lat("ack p50", la.publish_ack.p50, lb.publish_ack.p50, false),
        lat("ack p99", la.publish_ack.p99, lb.publish_ack.p99, true),
        lat("ack p99.9", la.publish_ack.p999, lb.publish_ack.p999, false),
        lat("ack max", la.publish_ack.max, lb.publish_ack.max, false),
        lat("deliver p50", la.end_to_end.p50, lb.end_to_end.p50, false),
        lat("deliver p99", la.end_to_end.p99, lb.end_to_end.p99, false),
        lat(
            "deliver p99.9",
            la.end_to_end.p999,
            lb.end_to_end.p999,
            false,
        ),
        lat("deliver max", la.end_to_end.max, lb.end_to_end.max, false),
        MetricDelta {
            name: "throughput".to_string(),
            a: a.throughput.achieved_per_s,
            b: b.throughput.achieved_per_s,
            unit: Unit::PerSecond,
            higher_is_better: true,
            gating: true,
        },
    ];
    metrics.extend(cost_metrics(a, b));
    metrics
}

/// CPU per 1k acknowledged and peak RSS (gating), disk writes and fsyncs per 1k (shown),
/// when both runs measured their cost; a figure either run lacks is left out.
fn cost_metrics(a: &Summary, b: &Summary) -> Vec<MetricDelta> {
    let (Some(ca), Some(cb)) = (&a.cost, &b.cost) else {
        return Vec::new();
    };
    let (ka, kb) = (ca.per_1k_acked.as_ref(), cb.per_1k_acked.as_ref());
    let m = |name: &str, fa: Option<f64>, fb: Option<f64>, unit: Unit, gating: bool| {
        Some(MetricDelta {
            name: name.to_string(),
            a: fa?,
            b: fb?,
            unit,
            higher_is_better: false,
            gating,
        })
    };
    [
        m(
            "CPU / 1k acked",
            ka.map(|k| k.cpu_s),
            kb.map(|k| k.cpu_s),
            Unit::CpuSeconds,
            true,
        ),
        m(
            "peak RSS",
            Some(ca.total.peak_rss_bytes),
            Some(cb.total.peak_rss_bytes),
            Unit::Bytes,
            true,
        ),
        m(
            "writes / 1k acked",
            ka.and_then(|k| k.write_bytes),
            kb.and_then(|k| k.write_bytes),
            Unit::Bytes,
            false,
        ),
        m(
            "fsyncs / 1k acked",
            ka.and_then(|k| k.fsyncs),
            kb.and_then(|k| k.fsyncs),
            Unit::Count,
            false,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Spread of the per-second ack p99 after warmup, as a coefficient of variation.
fn p99_spread(run: &RunData) -> Option<f64> {
    let warmup = run.warmup_s();
    let vals: Vec<f64> = run
        .latency_rows()
        .iter()
        .filter(|r| r.t_s >= warmup && r.ack[1] > 0)
        .filter(|r| {
            !run.summary
                .faults
                .iter()
                .any(|f| r.t_s + 1.0 > f.start_s && r.t_s < f.end_s)
        })
        .map(|r| r.ack[1] as f64)
        .collect();
    if vals.len() < 5 {
        return None;
    }
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
    (mean > 0.0).then(|| var.sqrt() / mean)
}

fn compare_runs(ra: &RunData, rb: &RunData, threshold: f64) -> RunComparison {
    let (a, b) = (&ra.summary, &rb.summary);
    let label = if a.target == b.target {
        target_name(a.target).to_string()
    } else {
        format!("{} → {}", target_name(a.target), target_name(b.target))
    };
    let metrics = metrics_of(a, b);
    let rows_a = check_rows(&a.checks);
    let rows_b = check_rows(&b.checks);
    let checks: Vec<CheckDelta> = rows_a
        .iter()
        .zip(&rows_b)
        .map(|(x, y)| CheckDelta {
            name: x.name.to_string(),
            a: x.count,
            b: y.count,
            violation: x.violation,
            breakdown: x.sub_count,
        })
        .collect();

    let mut regressions = Vec::new();
    for m in metrics.iter().filter(|m| m.gating) {
        if let Some(w) = m.worsening().filter(|w| *w > threshold) {
            regressions.push(format!(
                "{} worse by {:.1}% ({} → {}), beyond the {:.0}% threshold",
                m.name,
                w * 100.0,
                m.fmt(m.a),
                m.fmt(m.b),
                threshold * 100.0
            ));
        }
    }
    let new_violations: Vec<&CheckDelta> = checks
        .iter()
        .filter(|c| c.violation && !c.breakdown && c.a == 0 && c.b > 0)
        .collect();
    for c in &new_violations {
        regressions.push(format!("new correctness violation: {} ({})", c.name, c.b));
    }
    if a.verdict == Verdict::Valid && b.verdict == Verdict::Invalid && new_violations.is_empty() {
        regressions.push("verdict went from valid to invalid".to_string());
    }

    let mut noise = Vec::new();
    match (p99_spread(ra), p99_spread(rb)) {
        (Some(sa), Some(sb)) => {
            let s = sa.max(sb);
            noise.push(format!(
                "per-second ack p99 varies by {:.0}% (A) and {:.0}% (B) within a run, outside faults",
                sa * 100.0,
                sb * 100.0
            ));
            if s > threshold {
                noise.push(format!(
                    "that spread exceeds the {:.0}% threshold: treat small p99 deltas as noise and repeat the runs",
                    threshold * 100.0
                ));
            }
        }
        _ => noise.push("not enough per-second data to estimate run-to-run noise".to_string()),
    }
    let min_count = a
        .latency_us
        .publish_ack
        .count
        .min(b.latency_us.publish_ack.count);
    if min_count < 10_000 {
        noise.push(format!(
            "only {} acknowledged samples in the smaller run: p99.9 and max rest on few samples",
            fmt_count(min_count)
        ));
    }
    if a.workload != b.workload {
        noise.push("the workloads differ: deltas mix workload and target effects".to_string());
    }
    if a.environment.hostname != b.environment.hostname || a.environment.cpus != b.environment.cpus
    {
        noise.push("the runs come from different machines".to_string());
    }
    RunComparison {
        label,
        a_dir: ra.dir.clone(),
        b_dir: rb.dir.clone(),
        a_verdict: a.verdict,
        b_verdict: b.verdict,
        metrics,
        checks,
        regressions,
        noise,
    }
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "valid",
        Verdict::Invalid => "INVALID",
        Verdict::Unknown => "unknown",
    }
}

impl Comparison {
    /// Plain text for the terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "A: {}", self.a.display());
        let _ = writeln!(out, "B: {}", self.b.display());
        for r in &self.runs {
            let _ = writeln!(
                out,
                "\n[{}] verdict {} → {}",
                r.label,
                verdict_text(r.a_verdict),
                verdict_text(r.b_verdict)
            );
            let _ = writeln!(
                out,
                "  {:<18} {:>12} {:>12} {:>9}",
                "metric", "A", "B", "change"
            );
            for m in &r.metrics {
                let flag = match m.worsening() {
                    Some(w) if m.gating && w > self.threshold => "  REGRESSED",
                    Some(w) if w > self.threshold => "  worse",
                    Some(w) if w < -self.threshold => "  better",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "  {:<18} {:>12} {:>12} {:>9}{flag}",
                    m.name,
                    m.fmt(m.a),
                    m.fmt(m.b),
                    m.change_text()
                );
            }
            let changed: Vec<&CheckDelta> = r
                .checks
                .iter()
                .filter(|c| c.violation && (c.a > 0 || c.b > 0))
                .collect();
            if changed.is_empty() {
                let _ = writeln!(out, "  checks: no violations in either run");
            } else {
                for c in changed {
                    let _ = writeln!(out, "  check {:<20} {:>8} → {:<8}", c.name, c.a, c.b);
                }
            }
            for n in &r.noise {
                let _ = writeln!(out, "  note: {n}");
            }
            for g in &r.regressions {
                let _ = writeln!(out, "  REGRESSION: {g}");
            }
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.regressed {
                format!(
                    "result: B REGRESSED against A (threshold {:.0}%)",
                    self.threshold * 100.0
                )
            } else {
                format!(
                    "result: no regression beyond {:.0}%",
                    self.threshold * 100.0
                )
            }
        );
        out
    }

    /// Markdown for CI comments.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## raftbus compare — {}\n",
            if self.regressed {
                "❌ regression"
            } else {
                "✅ no regression"
            }
        );
        let _ = writeln!(
            out,
            "A: `{}` · B: `{}` · threshold {:.0}%\n",
            self.a.display(),
            self.b.display(),
            self.threshold * 100.0
        );
        for r in &self.runs {
            let _ = writeln!(
                out,
                "### {} (verdict {} → {})\n",
                md_esc(&r.label),
                verdict_text(r.a_verdict),
                verdict_text(r.b_verdict)
            );
            let _ = writeln!(out, "| metric | A | B | change |\n|---|---:|---:|---:|");
            for m in &r.metrics {
                let bold = m.gating && m.worsening().is_some_and(|w| w > self.threshold);
                let change = if bold {
                    format!("**{}**", m.change_text())
                } else {
                    m.change_text()
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {change} |",
                    m.name,
                    m.fmt(m.a),
                    m.fmt(m.b)
                );
            }
            let changed: Vec<&CheckDelta> = r
                .checks
                .iter()
                .filter(|c| c.violation && (c.a > 0 || c.b > 0))
                .collect();
            if !changed.is_empty() {
                let _ = writeln!(out, "\n| check | A | B |\n|---|---:|---:|");
                for c in changed {
                    let _ = writeln!(out, "| {} | {} | {} |", c.name, c.a, c.b);
                }
            }
            out.push('\n');
            for n in &r.noise {
                let _ = writeln!(out, "- note: {}", md_esc(n));
            }
            for g in &r.regressions {
                let _ = writeln!(out, "- **regression**: {}", md_esc(g));
            }
            out.push('\n');
        }
        out
    }
}
