//! The cost of a message: what the target's server processes spent on the run (CPU
//! seconds, peak and final RSS, bytes written to storage, fsyncs), in total and per 1,000
//! acknowledged messages, as one table row per run plus one row per process, in HTML,
//! Markdown and plain text; and [`tally`], which adds processes up into a [`Cost`].
//!
//! A figure a target does not report stays absent and says so (Redis 7.0's INFO has no
//! fsync count: "not reported by Redis"), never zero.

use std::fmt::Write as _;

use crate::html::{esc, fmt_count};
use crate::markdown::md_esc;
use crate::model::{Cost, CostFigures, ProcessCost, Summary, Target};
use crate::run::target_name;

/// What `fsyncs` says for Redis.
pub const REDIS_FSYNCS_ABSENT: &str = "not reported by Redis";

/// Adds the processes up and divides by the acknowledged messages.
pub fn tally(processes: Vec<ProcessCost>, acked: u64) -> Cost {
    let sum_opt = |f: &dyn Fn(&ProcessCost) -> Option<u64>| -> Option<f64> {
        let vals: Vec<u64> = processes.iter().filter_map(f).collect();
        (!vals.is_empty()).then(|| vals.iter().sum::<u64>() as f64)
    };
    let total = CostFigures {
        cpu_s: processes.iter().map(|p| p.cpu_s).sum(),
        peak_rss_bytes: processes.iter().map(|p| p.peak_rss_bytes as f64).sum(),
        final_rss_bytes: processes.iter().map(|p| p.final_rss_bytes as f64).sum(),
        write_bytes: sum_opt(&|p| p.write_bytes),
        // Absent as soon as one process does not report it: a partial sum would mislead.
        fsyncs: if processes.iter().all(|p| p.fsyncs.is_some()) && !processes.is_empty() {
            sum_opt(&|p| p.fsyncs)
        } else {
            None
        },
    };
    let per_1k_acked = (acked > 0).then(|| per_1k(&total, acked));
    Cost {
        acked,
        processes,
        total,
        per_1k_acked,
        ..Cost::default()
    }
}

/// `total / acked * 1000`, figure by figure.
pub fn per_1k(total: &CostFigures, acked: u64) -> CostFigures {
    let k = 1000.0 / acked.max(1) as f64;
    CostFigures {
        cpu_s: total.cpu_s * k,
        peak_rss_bytes: total.peak_rss_bytes * k,
        final_rss_bytes: total.final_rss_bytes * k,
        write_bytes: total.write_bytes.map(|v| v * k),
        fsyncs: total.fsyncs.map(|v| v * k),
    }
}

/// Bytes for people: `812 B`, `4.0 KiB`, `12.3 MiB`, `1.50 GiB`.
pub fn fmt_bytes(b: f64) -> String {
    const KIB: f64 = 1024.0;
    if !b.is_finite() {
        return "–".to_string();
    }
    if b < KIB {
        format!("{b:.0} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

/// CPU seconds for people: `850 µs`, `12.3 ms`, `4.56 s`.
pub fn fmt_cpu(s: f64) -> String {
    if !s.is_finite() {
        "–".to_string()
    } else if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn fmt_fsyncs(v: Option<f64>, absent: &str) -> String {
    match v {
        Some(v) if v >= 100.0 || v == v.trunc() => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None if absent.is_empty() => "not reported".to_string(),
        None => absent.to_string(),
    }
}

fn fmt_writes(v: Option<f64>) -> String {
    v.map_or_else(|| "unreadable".to_string(), fmt_bytes)
}

/// One table row: the figures of one run, as text cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `bus (3 nodes)`.
    pub label: String,
    pub target: Target,
    pub cells: Vec<String>,
}

/// The columns of [`rows`].
pub const COLUMNS: [&str; 10] = [
    "acked",
    "CPU",
    "CPU / 1k acked",
    "peak RSS",
    "final RSS",
    "RSS / 1k acked (peak)",
    "disk writes",
    "writes / 1k acked",
    "fsyncs",
    "fsyncs / 1k acked",
];

fn label(s: &Summary) -> String {
    if s.target_detail.is_empty() {
        target_name(s.target).to_string()
    } else {
        format!("{} ({})", target_name(s.target), s.target_detail)
    }
}

/// One row per run that measured its cost (older results have none).
pub fn rows(summaries: &[&Summary]) -> Vec<Row> {
    summaries
        .iter()
        .filter_map(|s| {
            let c = s.cost.as_ref()?;
            let k = c.per_1k_acked.as_ref();
            let dash = || "–".to_string();
            Some(Row {
                label: label(s),
                target: s.target,
                cells: vec![
                    fmt_count(c.acked),
                    fmt_cpu(c.total.cpu_s),
                    k.map_or_else(dash, |k| fmt_cpu(k.cpu_s)),
                    fmt_bytes(c.total.peak_rss_bytes),
                    fmt_bytes(c.total.final_rss_bytes),
                    k.map_or_else(dash, |k| fmt_bytes(k.peak_rss_bytes)),
                    fmt_writes(c.total.write_bytes),
                    k.map_or_else(dash, |k| fmt_writes(k.write_bytes)),
                    fmt_fsyncs(c.total.fsyncs, &c.fsyncs_absent),
                    k.map_or_else(dash, |k| fmt_fsyncs(k.fsyncs, &c.fsyncs_absent)),
                ],
            })
        })
        .collect()
}

fn process_cells(target: Target, p: &ProcessCost, absent: &str) -> Vec<String> {
    vec![
        target_name(target).to_string(),
        p.name.clone(),
        p.role.clone(),
        if p.unsampled_lifetimes > 0 {
            format!("{} ({} never sampled)", p.lifetimes, p.unsampled_lifetimes)
        } else {
            p.lifetimes.to_string()
        },
        fmt_cpu(p.cpu_s),
        fmt_bytes(p.peak_rss_bytes as f64),
        fmt_bytes(p.final_rss_bytes as f64),
        fmt_writes(p.write_bytes.map(|w| w as f64)),
        fmt_fsyncs(p.fsyncs.map(|f| f as f64), absent),
    ]
}

const PROCESS_COLUMNS: [&str; 9] = [
    "target",
    "process",
    "role",
    "lifetimes",
    "CPU",
    "peak RSS",
    "final RSS",
    "disk writes",
    "fsyncs",
];

/// The plain words under the table: what the figures are.
pub fn words(summaries: &[&Summary]) -> Vec<String> {
    let Some(c) = summaries.iter().find_map(|s| s.cost.as_ref()) else {
        return Vec::new();
    };
    let mut w = vec![format!(
        "CPU is user + system time of the target's server processes (reaped children included), \
         in clock ticks of 1/{} s; RSS is VmHWM (peak) and VmRSS (at the end, before stopping), \
         summed over processes; disk writes are /proc/<pid>/io write_bytes (page-granular, as \
         the kernel accounts them); fsyncs are what the target reports itself. Per 1k acked \
         divides each total by the acknowledged messages of the whole run (warmup included) \
         and multiplies by 1,000.",
        c.clock_ticks_per_s
    )];
    w.push(format!(
        "A process killed and restarted by a fault has several lifetimes: CPU, writes and \
         fsyncs are summed over them and peak RSS is the highest; each lifetime keeps its last \
         sample, taken every {}s and right before the harness stops it.",
        c.sample_interval_s
    ));
    for s in summaries {
        if let Some(c) = &s.cost {
            for n in &c.notes {
                w.push(format!("{}: {n}", target_name(s.target)));
            }
        }
    }
    w
}

/// The cost section of `summary.md`; empty when no run measured its cost.
pub fn markdown(summaries: &[&Summary]) -> String {
    let rows = rows(summaries);
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(out, "#### Cost of a message\n");
    let _ = writeln!(out, "| target | {} |", COLUMNS.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(COLUMNS.len()));
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} |",
            md_esc(&r.label),
            r.cells
                .iter()
                .map(|c| md_esc(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let _ = writeln!(
        out,
        "\n| {} |\n|---|---|---|{}",
        PROCESS_COLUMNS.join(" | "),
        "---:|".repeat(PROCESS_COLUMNS.len() - 3)
    );
    for s in summaries {
        let Some(c) = &s.cost else { continue };
        for p in &c.processes {
            let cells = process_cells(s.target, p, &c.fsyncs_absent);
            let _ = writeln!(
                out,
                "| {} |",
                cells
                    .iter()
                    .map(|c| md_esc(c))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
    }
    out.push('\n');
    for w in words(summaries) {
        let _ = writeln!(out, "- {}", md_esc(&w));
    }
    out.push('\n');
    out
}

/// One row of the process table: the first three columns (target, process, role) are text.
fn html_cells(tag: &str, cells: &[String]) -> String {
    cells
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let class = if i < 3 { " class=\"l\"" } else { "" };
            format!("<{tag}{class}>{}</{tag}>", esc(v))
        })
        .collect()
}

/// The cost section of `report.html`; empty when no run measured its cost.
pub fn html(summaries: &[&Summary]) -> String {
    let rows = rows(summaries);
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<h2 id=\"cost\">Cost of a message</h2><table><tr><th class=\"l\">target</th>{}</tr>",
        COLUMNS
            .iter()
            .map(|c| format!("<th>{}</th>", esc(c)))
            .collect::<String>()
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td>{}</tr>",
            esc(&r.label),
            r.cells
                .iter()
                .map(|c| format!("<td>{}</td>", esc(c)))
                .collect::<String>()
        );
    }
    let _ = writeln!(out, "</table>");
    let head: Vec<String> = PROCESS_COLUMNS.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(out, "<table><tr>{}</tr>", html_cells("th", &head));
    for s in summaries {
        let Some(c) = &s.cost else { continue };
        for p in &c.processes {
            let cells = process_cells(s.target, p, &c.fsyncs_absent);
            let _ = writeln!(out, "<tr>{}</tr>", html_cells("td", &cells));
        }
    }
    let _ = writeln!(out, "</table><ul class=\"sub\">");
    for w in words(summaries) {
        let _ = writeln!(out, "<li>{}</li>", esc(&w));
    }
    let _ = writeln!(out, "</ul>");
    out
}

/// The cost table for the terminal; empty when no run measured its cost.
pub fn text(summaries: &[&Summary]) -> String {
    let rows = rows(summaries);
    if rows.is_empty() {
        return String::new();
    }
    let mut table: Vec<Vec<String>> = vec![std::iter::once("target".to_string())
        .chain(COLUMNS.iter().map(|c| c.to_string()))
        .collect()];
    for r in rows {
        table.push(std::iter::once(r.label).chain(r.cells).collect());
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", line.join("  "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, cpu: f64, peak: u64, fin: u64, wb: u64, fsyncs: Option<u64>) -> ProcessCost {
        ProcessCost {
            name: name.to_string(),
            role: "bus node".to_string(),
            lifetimes: 1,
            cpu_s: cpu,
            peak_rss_bytes: peak,
            final_rss_bytes: fin,
            write_bytes: Some(wb),
            fsyncs,
            unsampled_lifetimes: 0,
        }
    }

    #[test]
    fn totals_add_up_and_per_1k_divides_by_acked() {
        let c = tally(
            vec![
                p("n1", 1.5, 100, 80, 4096, Some(10)),
                p("n2", 0.5, 50, 40, 8192, Some(30)),
            ],
            4000,
        );
        assert!((c.total.cpu_s - 2.0).abs() < 1e-12);
        assert_eq!(c.total.peak_rss_bytes, 150.0);
        assert_eq!(c.total.final_rss_bytes, 120.0);
        assert_eq!(c.total.write_bytes, Some(12288.0));
        assert_eq!(c.total.fsyncs, Some(40.0));
        let k = c.per_1k_acked.unwrap();
        assert!((k.cpu_s - 0.5).abs() < 1e-12);
        assert_eq!(k.write_bytes, Some(3072.0));
        assert_eq!(k.fsyncs, Some(10.0));
        assert!(tally(vec![p("n1", 1.0, 1, 1, 1, None)], 0)
            .per_1k_acked
            .is_none());
    }

    #[test]
    fn fsyncs_not_reported_stay_absent() {
        let mut c = tally(
            vec![p("n1", 1.0, 1, 1, 1, None), p("s1", 1.0, 1, 1, 1, None)],
            1000,
        );
        assert_eq!(c.total.fsyncs, None);
        assert_eq!(c.per_1k_acked.as_ref().unwrap().fsyncs, None);
        c.fsyncs_absent = REDIS_FSYNCS_ABSENT.to_string();
        assert_eq!(
            fmt_fsyncs(c.total.fsyncs, &c.fsyncs_absent),
            REDIS_FSYNCS_ABSENT
        );
    }

    #[test]
    fn units_read_well() {
        assert_eq!(fmt_bytes(812.0), "812 B");
        assert_eq!(fmt_bytes(4096.0), "4.0 KiB");
        assert_eq!(fmt_bytes(12.5 * 1024.0 * 1024.0), "12.5 MiB");
        assert_eq!(fmt_cpu(0.0123), "12.3 ms");
        assert_eq!(fmt_cpu(4.561), "4.56 s");
        assert_eq!(fmt_cpu(0.00085), "850 µs");
    }
}
