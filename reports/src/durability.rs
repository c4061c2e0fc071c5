//! The durability-and-availability table: one row per configuration run (the bus, Redis
//! with its persistence, replicas, Sentinel, min-replicas and WAIT settings), one column
//! group per fault kind with the acknowledged writes lost to that kind and the seconds
//! during which no write was acknowledged, the duplicates per row; then plain words under it: what
//! each configuration promises and what it did.
//!
//! Losses are attributed to a fault kind by the harness (`Recovery::lost`: a lost message
//! belongs to the fault window that was on when it was acknowledged, else the next one to
//! start, else the last); duplicates are not attributed and are shown once per row.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::html::esc;
use crate::markdown::md_esc;
use crate::model::{Summary, Target};

/// One fault kind in one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// Fault windows of this kind.
    pub windows: usize,
    /// Acknowledged writes lost, attributed to this kind.
    pub lost: u64,
    /// Seconds during which no write was acknowledged, summed over the windows.
    pub unavailable_s: f64,
    /// Slowest time from a window's start to its first acknowledged write.
    pub resume_s: Option<f64>,
}

/// One configuration run.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `bus (3 nodes)`, `redis (appendfsync always, 2 replicas, ...)`.
    pub config: String,
    pub target: Target,
    pub acked: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// What the target promises in this mode.
    pub promise: String,
    /// Per fault kind, by kind name.
    pub cells: BTreeMap<String, Cell>,
}

/// The rows of `summaries`, in order.
pub fn rows(summaries: &[&Summary]) -> Vec<Row> {
    summaries.iter().map(|s| row(s)).collect()
}

fn row(s: &Summary) -> Row {
    let target = match s.target {
        Target::Bus => "bus",
        Target::Redis => "redis",
    };
    let mut cells: BTreeMap<String, Cell> = BTreeMap::new();
    for r in &s.recovery {
        let c = cells.entry(r.kind.clone()).or_default();
        c.windows += 1;
        c.lost += r.lost;
        c.unavailable_s += r.unavailable_s;
        if let Some(t) = r.first_ok_after_start_s {
            c.resume_s = Some(c.resume_s.map_or(t, |x: f64| x.max(t)));
        }
    }
    Row {
        config: if s.target_detail.is_empty() {
            target.to_string()
        } else {
            format!("{target} ({})", s.target_detail)
        },
        target: s.target,
        acked: s.checks.acked,
        lost: s.checks.lost,
        duplicated: s.checks.duplicated,
        promise: s.checks.promise.clone(),
        cells,
    }
}

/// Every fault kind of any row, sorted.
fn kinds(rows: &[Row]) -> Vec<String> {
    let mut k: Vec<String> = rows.iter().flat_map(|r| r.cells.keys().cloned()).collect();
    k.sort();
    k.dedup();
    k
}

fn cell_text(c: Option<&Cell>) -> (String, String) {
    match c {
        None => ("–".into(), "–".into()),
        Some(c) => (c.lost.to_string(), format!("{:.1}", c.unavailable_s)),
    }
}

/// What a configuration promises about acknowledged writes, in plain words.
fn promise_words(r: &Row) -> String {
    let c = r.config.to_ascii_lowercase();
    if r.target == Target::Bus {
        return "acknowledges a write only once it is fsynced on a majority, so no fault of a \
                minority may lose it"
            .into();
    }
    let mut words = Vec::new();
    if c.contains("sentinel") {
        words.push(
            "replication is asynchronous and Sentinel promotes a replica on failover, so writes \
             the old primary acknowledged but had not replicated may be discarded",
        );
    } else if c.contains("replica") {
        words.push("replicas are asynchronous copies; without failover a dead primary means no writes until it restarts");
    }
    if c.contains("appendfsync always") {
        words.push("each server fsyncs its AOF before replying");
    } else if c.contains("everysec") {
        words.push(
            "each server fsyncs its AOF once a second (a power loss may drop the last second)",
        );
    } else if c.contains("no persistence") {
        words.push("nothing is on disk: a restarted server is empty");
    }
    if c.contains("min-replicas-to-write") {
        words.push("min-replicas-to-write makes a primary cut off from its replicas refuse writes once their lag exceeds the limit, which narrows but does not close the split-brain window");
    }
    if c.contains("wait ") {
        words.push("WAIT counts a write as acknowledged only after the replicas confirmed it; Redis still does not promise it survives a failover");
    }
    words.join("; ")
}

/// What the row did, in plain words.
fn did_words(r: &Row) -> String {
    let unavailable: f64 = r.cells.values().map(|c| c.unavailable_s).sum();
    let worst = r
        .cells
        .iter()
        .filter(|(_, c)| c.lost > 0)
        .max_by_key(|(_, c)| c.lost)
        .map(|(k, c)| format!(", most to {k} ({})", c.lost))
        .unwrap_or_default();
    let lost = if r.lost == 0 {
        format!("lost none of {} acknowledged writes", r.acked)
    } else {
        format!(
            "lost {} of {} acknowledged writes ({:.1}%){worst}",
            r.lost,
            r.acked,
            100.0 * r.lost as f64 / r.acked.max(1) as f64
        )
    };
    let dup = if r.duplicated > 0 {
        format!(", duplicated {}", r.duplicated)
    } else {
        String::new()
    };
    format!("{lost}{dup}; did not take writes for {unavailable:.1}s in all under faults")
}

/// The table and the words under it, as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let kinds = kinds(rows);
    let _ = writeln!(out, "### Durability and availability\n");
    let mut head = String::from("| configuration | acked | lost | duplicated |");
    let mut rule = String::from("|---|---:|---:|---:|");
    for k in &kinds {
        let _ = write!(head, " {k}: lost | {k}: unavailable s |");
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for r in rows {
        let mut line = format!(
            "| {} | {} | {} | {} |",
            md_esc(&r.config),
            r.acked,
            r.lost,
            r.duplicated
        );
        for k in &kinds {
            let (lost, unav) = cell_text(r.cells.get(k));
            let _ = write!(line, " {lost} | {unav} |");
        }
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    for r in rows {
        let _ = writeln!(
            out,
            "- **{}** promises: {}. It {}.",
            md_esc(&r.config),
            md_esc(&promise_words(r)),
            md_esc(&did_words(r))
        );
    }
    let _ = writeln!(
        out,
        "\nLost writes count under the fault that was on when they were acknowledged, else the next fault to start (after the last one: the last one), so writes an old primary acknowledged between a heal and its demotion count under the next fault; unavailable seconds are the time from each fault's start until the first acknowledgement after it healed during which no write was acknowledged (pauses of more than 250 ms between acknowledgements).\n"
    );
    out
}

/// The table and the words under it, as an HTML section.
pub fn html(rows: &[Row]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let kinds = kinds(rows);
    let _ = writeln!(
        out,
        "<h2 id=\"durability\">Durability and availability</h2><table><tr><th class=\"l\">configuration</th><th>acked</th><th>lost</th><th>duplicated</th>"
    );
    for k in &kinds {
        let _ = write!(out, "<th>{0}: lost</th><th>{0}: unavailable s</th>", esc(k));
    }
    let _ = writeln!(out, "</tr>");
    for r in rows {
        let bad = if r.lost > 0 || r.duplicated > 0 {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr{bad}><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&r.config),
            r.acked,
            r.lost,
            r.duplicated
        );
        for k in &kinds {
            let (lost, unav) = cell_text(r.cells.get(k));
            let _ = write!(out, "<td>{lost}</td><td>{unav}</td>");
        }
        let _ = writeln!(out, "</tr>");
    }
    let _ = writeln!(out, "</table><ul>");
    for r in rows {
        let _ = writeln!(
            out,
            "<li><b>{}</b> promises: {}. It {}.</li>",
            esc(&r.config),
            esc(&promise_words(r)),
            esc(&did_words(r))
        );
    }
    let _ = writeln!(
        out,
        "</ul><p>Lost writes count under the fault that was on when they were acknowledged, else the next fault to start (after the last one: the last one), so writes an old primary acknowledged between a heal and its demotion count under the next fault; unavailable seconds are the time from each fault's start until the first acknowledgement after it healed during which no write was acknowledged (pauses of more than 250 ms between acknowledgements).</p>"
    );
    out
}

/// The table as plain text for the terminal.
pub fn text(rows: &[Row]) -> String {
    let mut out = String::new();
    let kinds = kinds(rows);
    let width = rows
        .iter()
        .map(|r| r.config.chars().count())
        .chain([13])
        .max()
        .unwrap_or(13);
    let _ = write!(
        out,
        "{:<width$} {:>8} {:>7} {:>5}",
        "configuration", "acked", "lost", "dup"
    );
    for k in &kinds {
        let _ = write!(out, " {:>18}", format!("{k} lost/unavail"));
    }
    out.push('\n');
    for r in rows {
        let _ = write!(
            out,
            "{:<width$} {:>8} {:>7} {:>5}",
            r.config, r.acked, r.lost, r.duplicated
        );
        for k in &kinds {
            let (lost, unav) = cell_text(r.cells.get(k));
            let _ = write!(out, " {:>18}", format!("{lost} / {unav}s"));
        }
        out.push('\n');
    }
    for r in rows {
        let _ = writeln!(out, "  {}: {}.", r.config, did_words(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Recovery;

    fn recovery(kind: &str, lost: u64, unavailable_s: f64) -> Recovery {
        Recovery {
            kind: kind.into(),
            healed_at_s: 10.0,
            first_ok_after_s: Some(0.1),
            started_at_s: 5.0,
            first_ok_after_start_s: Some(3.5),
            availability: Some(0.5),
            unavailable_s,
            lost,
        }
    }

    #[test]
    fn rows_sum_per_fault_kind_and_words_name_the_loss() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = crate::synthetic::SyntheticRun {
            target: Target::Redis,
            ..Default::default()
        }
        .write(dir.path())
        .unwrap();
        s.target_detail = "appendfsync always, 2 replicas, 3 sentinels".into();
        s.checks.acked = 1000;
        s.checks.lost = 30;
        s.recovery = vec![
            recovery("kill", 10, 3.0),
            recovery("partition", 20, 1.0),
            recovery("kill", 0, 0.5),
        ];
        let rows = rows(&[&s]);
        let r = &rows[0];
        assert_eq!(r.cells["kill"].windows, 2);
        assert_eq!(r.cells["kill"].lost, 10);
        assert!((r.cells["kill"].unavailable_s - 3.5).abs() < 1e-9);
        assert_eq!(r.cells["partition"].lost, 20);
        let md = markdown(&rows);
        assert!(md.contains("| kill: lost | kill: unavailable s |"), "{md}");
        assert!(md.contains("lost 30 of 1000"), "{md}");
        assert!(md.contains("most to partition (20)"), "{md}");
        assert!(promise_words(r).contains("Sentinel promotes a replica"));
        assert!(html(&rows).contains("class=\"bad\""));
    }
}
