//! `summary.md`: the key tables of a run (or a `both` pair), for CI comments.

use std::fmt::Write as _;

use crate::html::{check_rows, fmt_count, fmt_rate};
use crate::model::{Percentiles, StaleReads, Verdict};
use crate::plot::{fault_label, fmt_us};
use crate::run::RunData;

/// Escapes text for a Markdown table cell or inline text.
pub fn md_esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub fn verdict_md(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "✅ **VALID**",
        Verdict::Invalid => "❌ **INVALID**",
        Verdict::Unknown => "⚠️ **UNKNOWN**",
    }
}

fn pct_row(label: &str, p: &Percentiles) -> String {
    if p.count == 0 {
        return format!("| {label} | 0 | – | – | – | – | – |\n");
    }
    format!(
        "| {label} | {} | {} | {} | {} | {} | {} |\n",
        fmt_count(p.count),
        fmt_us(p.p50 as f64),
        fmt_us(p.p90 as f64),
        fmt_us(p.p99 as f64),
        fmt_us(p.p999 as f64),
        fmt_us(p.max as f64)
    )
}

fn fence(s: &str) -> String {
    // A fence longer than any backtick run inside the command.
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

fn run_body(out: &mut String, run: &RunData, heading: &str) {
    let s = &run.summary;
    let _ = writeln!(
        out,
        "{heading} {} — {} — {}\n",
        md_esc(&s.name),
        md_esc(&run.label()),
        verdict_md(s.verdict)
    );
    let f = fence(&s.rerun);
    let _ = writeln!(
        out,
        "seed `{}` · {} fault window(s) · rerun:\n\n{f}sh\n{}\n{f}\n",
        s.seed,
        s.faults.len(),
        s.rerun
    );
    let _ = writeln!(out, "| latency | count | p50 | p90 | p99 | p99.9 | max |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    out.push_str(&pct_row(
        "publish, every scheduled one",
        &s.latency_us.publish_all,
    ));
    out.push_str(&pct_row("publish → ack", &s.latency_us.publish_ack));
    out.push_str(&pct_row("publish → deliver", &s.latency_us.end_to_end));
    if s.latency_us.consumed.count > 0 {
        out.push_str(&pct_row("publish → XACK (queue)", &s.latency_us.consumed));
    }
    if s.latency_us.read.count > 0 {
        out.push_str(&pct_row("read (send → reply)", &s.latency_us.read));
    }
    if !s.checks.queue.is_empty() {
        let q = &s.checks.queue;
        let _ = writeln!(
            out,
            "\nQueue: {} groups; entries taken {}, redelivered by claims {} (at least once, not violations), consumed {}, consumer crashes {}; pending at the end: {}",
            q.groups,
            fmt_count(q.taken),
            fmt_count(q.redelivered),
            fmt_count(q.consumed),
            q.crashes,
            if q.pending_at_end.is_empty() { "none".to_string() } else { q.pending_at_end.join(", ") }
        );
    }
    let _ = writeln!(
        out,
        "\nThroughput: offered {}, achieved {} · acknowledged {}, failed {}, indeterminate {}\n",
        fmt_rate(s.throughput.offered_per_s),
        fmt_rate(s.throughput.achieved_per_s),
        fmt_count(s.checks.acked),
        fmt_count(s.checks.failed),
        fmt_count(s.checks.indeterminate)
    );
    let violated: Vec<_> = check_rows(&s.checks)
        .into_iter()
        .filter(|r| r.violation && r.count > 0)
        .collect();
    if violated.is_empty() {
        let _ = writeln!(out, "Checks: all correctness checks held.\n");
    } else {
        let _ = writeln!(out, "| violated check | count |\n|---|---:|");
        for r in violated {
            let _ = writeln!(out, "| {} | {} |", r.name, fmt_count(r.count));
        }
        out.push('\n');
        for v in &s.checks.violations {
            let _ = writeln!(
                out,
                "- **{}** ({}): {}",
                md_esc(&v.kind),
                v.count,
                md_esc(&v.property)
            );
            for e in v.examples.iter().take(3) {
                let _ = writeln!(out, "  - {}", md_esc(e));
            }
        }
        out.push('\n');
    }
    for why in &s.checks.unchecked {
        let _ = writeln!(out, "- **not checked**: {}", md_esc(why));
    }
    for why in &s.checks.excused {
        let _ = writeln!(out, "- not read: {}", md_esc(why));
    }
    for a in &s.checks.anomalies {
        let _ = writeln!(
            out,
            "- anomaly within the promise ({}): **{}** ({}): {}",
            md_esc(&s.checks.promise),
            md_esc(&a.kind),
            a.count,
            md_esc(&a.property)
        );
    }
    if !s.checks.unchecked.is_empty()
        || !s.checks.excused.is_empty()
        || !s.checks.anomalies.is_empty()
    {
        out.push('\n');
    }
    stale_reads_table(out, &s.checks.stale_reads);
    if !s.faults.is_empty() {
        let _ = writeln!(
            out,
            "| fault | start | end | first ack after start | availability | unavailable | first ok after heal | acked lost |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (i, fw) in s.faults.iter().enumerate() {
            let rec = s
                .recovery
                .get(i)
                .filter(|r| r.kind == fw.kind)
                .map(|r| match r.first_ok_after_s {
                    Some(a) => format!("{a:.2}s"),
                    None => "never".to_string(),
                })
                .unwrap_or_else(|| "–".to_string());
            let window = s.recovery.get(i).filter(|r| r.kind == fw.kind);
            let (resume, avail, unav, lost) = match window {
                Some(r) => (
                    r.first_ok_after_start_s
                        .map_or("never".to_string(), |a| format!("{a:.2}s")),
                    r.availability
                        .map_or("–".to_string(), |a| format!("{:.0}%", a * 100.0)),
                    format!("{:.1}s", r.unavailable_s),
                    r.lost.to_string(),
                ),
                None => ("–".into(), "–".into(), "–".into(), "–".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {:.1}s | {:.1}s | {resume} | {avail} | {unav} | {rec} | {lost} |",
                md_esc(&fault_label(fw)),
                fw.start_s,
                fw.end_s
            );
        }
        out.push('\n');
    }
}

/// Stale reads per node and per fault window, when the run read anything.
fn stale_reads_table(out: &mut String, r: &StaleReads) {
    if r.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Stale reads: {} of {} ({}; {}), {} failed, {} not judged\n",
        fmt_count(r.stale),
        fmt_count(r.reads),
        if r.stale == 0 {
            "none"
        } else if r.promised {
            "**violation**"
        } else {
            "anomaly within the promise"
        },
        md_esc(&r.consistency),
        fmt_count(r.failed),
        fmt_count(r.unjudged)
    );
    let _ = writeln!(
        out,
        "| node / fault window | reads | failed | stale | max entries behind | max ms behind |\n|---|---:|---:|---:|---:|---:|"
    );
    for g in r.per_node.iter().chain(&r.per_window) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} |",
            md_esc(&g.label),
            fmt_count(g.reads),
            fmt_count(g.failed),
            fmt_count(g.stale),
            fmt_count(g.max_entries_behind),
            g.max_ms_behind
        );
    }
    out.push('\n');
}

/// `summary.md` of one run.
pub fn run_markdown(run: &RunData) -> String {
    let mut out = String::new();
    run_body(&mut out, run, "##");
    out.push_str(&crate::cost::markdown(&[&run.summary]));
    if let Some(g) = &run.summary.generator {
        let _ = writeln!(
            out,
            "Load generator over the measured window: {}.\n",
            md_esc(&g.describe())
        );
    }
    if !run.summary.recovery.is_empty() {
        out.push_str(&crate::durability::markdown(&crate::durability::rows(&[
            &run.summary,
        ])));
    }
    out
}

/// Renders one cell of the comparison table.
type Cell = fn(&RunData) -> String;

/// `summary.md` of a `both` directory: a comparison table, then each run.
pub fn comparison_markdown(runs: &[RunData]) -> String {
    let mut out = String::new();
    let name = runs.first().map(|r| r.summary.name.as_str()).unwrap_or("");
    let _ = writeln!(out, "## {} — comparison\n", md_esc(name));
    let header: Vec<String> = runs.iter().map(|r| md_esc(&r.label())).collect();
    let _ = writeln!(out, "| | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(runs.len()));
    let rows: [(&str, Cell); 7] = [
        ("verdict", |r| verdict_md(r.summary.verdict).to_string()),
        ("ack p50", |r| {
            fmt_us(r.summary.latency_us.publish_ack.p50 as f64)
        }),
        ("ack p99", |r| {
            fmt_us(r.summary.latency_us.publish_ack.p99 as f64)
        }),
        ("ack p99.9", |r| {
            fmt_us(r.summary.latency_us.publish_ack.p999 as f64)
        }),
        ("deliver p99", |r| {
            fmt_us(r.summary.latency_us.end_to_end.p99 as f64)
        }),
        ("achieved", |r| {
            fmt_rate(r.summary.throughput.achieved_per_s)
        }),
        ("offered", |r| fmt_rate(r.summary.throughput.offered_per_s)),
    ];
    for (label, get) in rows {
        let cells: Vec<String> = runs.iter().map(get).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    out.push('\n');
    let summaries: Vec<&crate::model::Summary> = runs.iter().map(|r| &r.summary).collect();
    out.push_str(&crate::durability::markdown(&crate::durability::rows(
        &summaries,
    )));
    out.push_str(&crate::cost::markdown(&summaries));
    for r in runs {
        run_body(&mut out, r, "###");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_table_breakers() {
        assert_eq!(md_esc("a|b\nc"), "a\\|b c");
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }
}
