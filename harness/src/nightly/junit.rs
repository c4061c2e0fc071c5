//! `ROOT/<night>/junit.xml`: one `<testcase>` per scenario (classname = suite name), so
//! CI systems show nightly results natively.
//!
//! - violation: `<failure type="violation">`, message = the violation summary, body =
//!   kinds, counts, first examples, what the rerun showed, and the rerun command;
//! - environment error: `<error type="environment">` with the reason and the log's tail;
//! - gated performance regression: `<failure type="regression">` with the findings;
//! - skipped (no fault kind it needs can be injected here): `<skipped>`;
//! - flaky (error, then a clean rerun): passes, with property `flaky=true` and a note.
//!
//! Every case has properties (`seed`, `command`, `target`, `results`, `rerun_command`, …)
//! and a `<system-out>` with the key latency figures.

use std::fmt::Write as _;

use super::results::{fmt_metric, fmt_us, log_tail, target_label, ScenarioResult, Status};
use super::{NightReport, LOG_FILE};

/// Escapes text for XML attributes and content; drops characters XML 1.0 forbids.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn rel(report: &NightReport, path: &std::path::Path) -> String {
    path.strip_prefix(&report.root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The key figures of a scenario, for `<system-out>` (also used by latest.md details).
pub fn figures(report: &NightReport, r: &ScenarioResult) -> String {
    let mut out = String::new();
    if let Some(seed) = r.seed {
        let _ = writeln!(out, "seed {seed}");
    }
    if let Some(a) = r.reported_attempt() {
        let _ = writeln!(out, "results {}", rel(report, &a.dir));
        for t in &a.targets {
            let s = &t.summary;
            let l = &s.latency_us;
            let _ = writeln!(
                out,
                "{}: verdict {:?}, throughput offered {:.0}/s achieved {:.0}/s",
                target_label(t.target),
                s.verdict,
                s.throughput.offered_per_s,
                s.throughput.achieved_per_s
            );
            for (name, p) in [
                ("publish→ack", &l.publish_ack),
                ("end-to-end", &l.end_to_end),
            ] {
                let _ = writeln!(
                    out,
                    "  {name:<12} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                    fmt_us(p.p50 as f64),
                    fmt_us(p.p90 as f64),
                    fmt_us(p.p99 as f64),
                    fmt_us(p.p999 as f64),
                    fmt_us(p.max as f64),
                    p.count
                );
            }
            let c = &s.checks;
            let _ = writeln!(
                out,
                "  checks acked {} indeterminate {} delivered {} lost {} duplicated {} reordered {} phantom {} diverged {}",
                c.acked, c.indeterminate, c.delivered, c.lost, c.duplicated, c.reordered, c.phantom, c.diverged
            );
            if !s.faults.is_empty() {
                let kinds: Vec<String> = s
                    .faults
                    .iter()
                    .map(|f| format!("{}@{:.0}s", f.kind, f.start_s))
                    .collect();
                let _ = writeln!(out, "  faults {}", kinds.join(" "));
            }
            for rec in &s.recovery {
                if let Some(after) = rec.first_ok_after_s {
                    let _ = writeln!(out, "  recovery after {}: {after:.2}s", rec.kind);
                }
            }
        }
        for v in &a.expected_violations {
            let _ = writeln!(
                out,
                "expected (not a failure): {} {} — {}",
                v.kind, v.count, v.property
            );
        }
    }
    if let Some(c) = &r.regression {
        let _ = writeln!(out, "vs previous night {}:", rel(report, &c.previous));
        for (label, m) in c.deltas.iter().filter(|(_, m)| m.gating) {
            let change = m
                .change()
                .map(|x| format!("{:+.1}%", x * 100.0))
                .unwrap_or_else(|| "n/a".into());
            let _ = writeln!(
                out,
                "  {label} {}: {} → {} ({change})",
                m.name,
                fmt_metric(m, m.a),
                fmt_metric(m, m.b)
            );
        }
        for (label, n) in &c.noise {
            let _ = writeln!(
                out,
                "  {label} per-second ack p99 varies by {:.0}% within the runs",
                n * 100.0
            );
        }
        for f in &c.findings {
            let _ = writeln!(
                out,
                "  {}{f}",
                if c.gated {
                    "REGRESSION "
                } else {
                    "not gated: "
                }
            );
        }
    }
    if let Some(note) = r.rerun_note() {
        let _ = writeln!(out, "{note}");
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn violation_body(report: &NightReport, r: &ScenarioResult) -> String {
    let mut out = String::new();
    let Some(a) = r.failing_attempt() else {
        return out;
    };
    let _ = writeln!(
        out,
        "correctness violation in {}{}",
        r.name,
        r.seed.map(|s| format!(" (seed {s})")).unwrap_or_default()
    );
    for v in &a.violations {
        let _ = writeln!(out, "{} ({}): {}", v.kind, v.count, v.property);
        for e in v.examples.iter().take(3) {
            let _ = writeln!(out, "  e.g. {e}");
        }
    }
    if let Some(note) = r.rerun_note() {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(out, "results: {}", rel(report, &a.dir));
    let _ = writeln!(out, "log: {}", rel(report, &a.dir.join(LOG_FILE)));
    if let Some(cmd) = r.rerun_command() {
        let _ = writeln!(out, "rerun: {cmd}");
    }
    out
}

fn testcase(out: &mut String, report: &NightReport, r: &ScenarioResult) {
    let _ = writeln!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
        esc(&report.suite),
        esc(&r.name),
        r.total_elapsed().as_secs_f64()
    );
    let mut props: Vec<(&str, String)> = vec![("command", r.command.clone())];
    if !r.target.is_empty() {
        props.push(("target", r.target.clone()));
    }
    if let Some(seed) = r.seed {
        props.push(("seed", seed.to_string()));
    }
    if let Some(d) = r.plan.as_ref().and_then(|p| p.duration()) {
        props.push(("duration_s", d.as_secs().to_string()));
    }
    if let Some(a) = r.reported_attempt() {
        props.push(("results", rel(report, &a.dir)));
    }
    if let Some(cmd) = r.rerun_command() {
        props.push(("rerun_command", cmd.to_string()));
    }
    if r.flaky {
        props.push(("flaky", "true".to_string()));
    }
    if let Some(rep) = r.reproduced {
        props.push(("reproduced", rep.to_string()));
    }
    if let Some(a) = r.reported_attempt() {
        if !a.expected_violations.is_empty() {
            let v: Vec<String> = a
                .expected_violations
                .iter()
                .map(|v| format!("{} {}", v.kind, v.count))
                .collect();
            props.push(("expected_violations", v.join(", ")));
        }
        let injected = a.faults_injected();
        if !injected.is_empty() {
            props.push((
                "faults_injected",
                injected.into_iter().collect::<Vec<_>>().join(","),
            ));
        }
    }
    let _ = writeln!(out, "      <properties>");
    for (name, value) in props {
        let _ = writeln!(
            out,
            "        <property name=\"{}\" value=\"{}\"/>",
            esc(name),
            esc(&value)
        );
    }
    let _ = writeln!(out, "      </properties>");
    match r.status {
        Status::Violation => {
            let mut message = r.violation_summary();
            if let Some(note) = r.rerun_note() {
                message.push_str("; ");
                message.push_str(&note);
            }
            let _ = writeln!(
                out,
                "      <failure type=\"violation\" message=\"{}\">{}</failure>",
                esc(&message),
                esc(&violation_body(report, r))
            );
        }
        Status::Error => {
            let a = r.failing_attempt();
            let reason = match a.map(|a| &a.verdict) {
                Some(super::results::AttemptVerdict::Error(e)) => e.clone(),
                _ => "the run failed".to_string(),
            };
            let mut body = format!("{reason}\n");
            if let Some(note) = r.rerun_note() {
                body.push_str(&format!("{note}\n"));
            }
            if let Some(cmd) = r.rerun_command() {
                body.push_str(&format!("rerun: {cmd}\n"));
            }
            if let Some(a) = a {
                let log = a.dir.join(LOG_FILE);
                body.push_str(&format!(
                    "last lines of {}:\n{}\n",
                    rel(report, &log),
                    log_tail(&log, 20)
                ));
            }
            let _ = writeln!(
                out,
                "      <error type=\"environment\" message=\"{}\">{}</error>",
                esc(&reason),
                esc(&body)
            );
        }
        Status::Skipped => {
            let _ = writeln!(
                out,
                "      <skipped message=\"{}\"/>",
                esc(r.skip_reason.as_deref().unwrap_or("skipped"))
            );
        }
        Status::Passed => {
            if let Some(c) = r.regression.as_ref().filter(|c| c.fails_night()) {
                let mut body = c.findings.join("\n");
                body.push_str(&format!("\nprevious night: {}\n", rel(report, &c.previous)));
                if let Some(p) = &c.report {
                    body.push_str(&format!("comparison: {}\n", rel(report, p)));
                }
                let _ = writeln!(
                    out,
                    "      <failure type=\"regression\" message=\"{}\">{}</failure>",
                    esc(&c.findings.join("; ")),
                    esc(&body)
                );
            }
        }
    }
    let text = figures(report, r);
    if !text.is_empty() {
        let _ = writeln!(out, "      <system-out>{}</system-out>", esc(&text));
    }
    let _ = writeln!(out, "    </testcase>");
}

/// The whole junit.xml document.
pub fn render(report: &NightReport) -> String {
    let results = &report.results;
    let tests = results.len();
    let failures = results
        .iter()
        .filter(|r| {
            r.status == Status::Violation
                || (r.status == Status::Passed
                    && r.regression.as_ref().is_some_and(|c| c.fails_night()))
        })
        .count();
    let errors = results.iter().filter(|r| r.status == Status::Error).count();
    let skipped = results
        .iter()
        .filter(|r| r.status == Status::Skipped)
        .count();
    let time = results
        .iter()
        .map(|r| r.total_elapsed().as_secs_f64())
        .sum::<f64>();
    let timestamp = super::night::UtcTime::from_unix(report.started_unix).iso();
    let mut out = String::new();
    let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        out,
        "<testsuites name=\"raftbus nightly\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\" timestamp=\"{timestamp}\" hostname=\"{}\">",
        esc(&report.suite),
        esc(&report.hostname)
    );
    let _ = writeln!(out, "    <properties>");
    for (name, value) in [
        ("night", report.night.clone()),
        ("suite_source", report.suite_source.clone()),
        ("budget_s", report.plan.budget.as_secs().to_string()),
        ("threshold", report.threshold.to_string()),
        ("exit_code", report.exit_code.to_string()),
    ] {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            esc(&value)
        );
    }
    let _ = writeln!(out, "    </properties>");
    for r in results {
        testcase(&mut out, report, r);
    }
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(out, "</testsuites>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(esc("ok\tline\nnext\u{1b}[31m\u{0}"), "ok\tline\nnext[31m");
        assert_eq!(esc("µs → ✓"), "µs → ✓");
    }
}
