//! `ROOT/latest.md`: the night in a few lines of Markdown, for a CI comment — the verdict
//! and exit code, one table row per scenario (seed, verdict, p99, throughput, change
//! against the previous night), then failures with their rerun commands, regressions,
//! and notes. A copy with links relative to the night goes to `ROOT/<night>/summary.md`.

use std::fmt::Write as _;
use std::path::Path;

use super::results::{fmt_us, ScenarioResult, Status};
use super::{exit_meaning, NightReport, LOG_FILE};
use raftbus_reports::render::REPORT_FILE;

fn md_esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn link(base: &Path, target: &Path) -> String {
    target
        .strip_prefix(base)
        .unwrap_or(target)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// `ROOT/latest.md`, links relative to ROOT.
pub fn render(report: &NightReport) -> String {
    render_from(report, &report.root, true)
}

/// `ROOT/<night>/summary.md`, links relative to the night directory.
pub fn render_for_night(report: &NightReport) -> String {
    render_from(report, &report.root.join(&report.night), false)
}

fn change_of(r: &ScenarioResult) -> String {
    let Some(c) = &r.regression else {
        return "–".to_string();
    };
    let parts: Vec<String> = c
        .deltas
        .iter()
        .filter(|(_, m)| m.gating)
        .filter_map(|(label, m)| {
            m.change()
                .map(|x| format!("{label} {} {:+.0}%", m.name, x * 100.0))
        })
        .collect();
    let mut text = if parts.is_empty() {
        "n/a".to_string()
    } else {
        parts.join(", ")
    };
    if c.regressed() {
        text.push_str(if c.gated {
            " **REGRESSION**"
        } else {
            " (slower, not gated)"
        });
    }
    text
}

fn render_from(report: &NightReport, base: &Path, with_trend: bool) -> String {
    let mut out = String::new();
    let icon = match report.exit_code {
        0 => "✅",
        4 => "⚠️",
        _ => "❌",
    };
    let _ = writeln!(
        out,
        "## {icon} raftbus nightly {} — {} (exit {})\n",
        report.night,
        exit_meaning(report.exit_code),
        report.exit_code
    );
    let ran = report
        .results
        .iter()
        .filter(|r| r.status != Status::Skipped)
        .count();
    let _ = write!(
        out,
        "Suite `{}` ({}): {ran} scenario(s) run, budget {}, took {}, regression threshold {:.0}%",
        report.suite,
        report.suite_source,
        humantime::format_duration(report.plan.budget),
        humantime::format_duration(std::time::Duration::from_secs(report.elapsed.as_secs())),
        report.threshold * 100.0
    );
    if !report.hostname.is_empty() {
        let _ = write!(out, ", on `{}`", report.hostname);
    }
    let _ = writeln!(out, ".");
    if with_trend {
        match &report.trend_error {
            None => {
                let _ = writeln!(
                    out,
                    "Trend: [index.html](index.html) · JUnit: [{n}/junit.xml]({n}/junit.xml)",
                    n = report.night
                );
            }
            Some(e) => {
                let _ = writeln!(out, "Trend view not written: {}", md_esc(e));
            }
        }
    }
    let _ = writeln!(
        out,
        "\n| scenario | command | target | seed | result | ack p99 | e2e p99 | throughput | vs previous night |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in &report.results {
        let attempt = r.reported_attempt();
        let name = match attempt {
            Some(a) if a.dir.join(REPORT_FILE).is_file() => {
                format!("[{}]({})", r.name, link(base, &a.dir.join(REPORT_FILE)))
            }
            _ => r.name.clone(),
        };
        let mut result = match r.status {
            Status::Passed => "✅ valid".to_string(),
            Status::Violation => format!("❌ {}", r.violation_summary()),
            Status::Error => "❌ error".to_string(),
            Status::Skipped => "⏭ skipped".to_string(),
        };
        if r.flaky {
            result.push_str(" (flaky)");
        }
        if r.reproduced == Some(true) {
            result.push_str(" (reproduced)");
        } else if r.reproduced == Some(false) {
            result.push_str(" (not reproduced)");
        }
        if let Some(a) = attempt {
            if !a.expected_violations.is_empty() {
                let v: Vec<String> = a
                    .expected_violations
                    .iter()
                    .map(|v| format!("{} {}", v.kind, v.count))
                    .collect();
                result.push_str(&format!(" (expected: {})", v.join(", ")));
            }
        }
        let per_target = |f: &dyn Fn(&raftbus_reports::model::Summary) -> String| -> String {
            attempt
                .map(|a| {
                    a.targets
                        .iter()
                        .map(|t| {
                            if a.targets.len() > 1 {
                                format!(
                                    "{} {}",
                                    super::results::target_label(t.target),
                                    f(&t.summary)
                                )
                            } else {
                                f(&t.summary)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("<br>")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "–".to_string())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            name,
            r.command,
            if r.target.is_empty() {
                "–"
            } else {
                &r.target
            },
            r.seed.map(|s| s.to_string()).unwrap_or_else(|| "–".into()),
            md_esc(&result),
            per_target(&|s| fmt_us(s.latency_us.publish_ack.p99 as f64)),
            per_target(&|s| fmt_us(s.latency_us.end_to_end.p99 as f64)),
            per_target(&|s| format!("{:.0}/s", s.throughput.achieved_per_s)),
            md_esc(&change_of(r)),
        );
    }

    let failed: Vec<&ScenarioResult> = report
        .results
        .iter()
        .filter(|r| matches!(r.status, Status::Violation | Status::Error))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\n### Failures\n");
        for r in failed {
            let _ = writeln!(
                out,
                "**{}** — {}{}",
                r.name,
                if r.status == Status::Violation {
                    format!("correctness violation: {}", r.violation_summary())
                } else {
                    "environment error".to_string()
                },
                r.seed.map(|s| format!(" (seed {s})")).unwrap_or_default()
            );
            if let Some(a) = r.failing_attempt() {
                for v in &a.violations {
                    let _ = writeln!(out, "- `{}` ({}): {}", v.kind, v.count, v.property);
                    for e in v.examples.iter().take(3) {
                        let _ = writeln!(out, "  - {}", md_esc(e));
                    }
                }
                if let super::results::AttemptVerdict::Error(e) = &a.verdict {
                    let _ = writeln!(out, "- {}", md_esc(e));
                }
                let _ = writeln!(out, "- log: `{}`", link(base, &a.dir.join(LOG_FILE)));
            }
            if let Some(note) = r.rerun_note() {
                let _ = writeln!(out, "- {}", md_esc(&note));
            }
            if let Some(cmd) = r.rerun_command() {
                let _ = writeln!(out, "- rerun: `{cmd}`");
            }
            let _ = writeln!(out);
        }
    }

    let regressions: Vec<&ScenarioResult> = report
        .results
        .iter()
        .filter(|r| r.regression.as_ref().is_some_and(|c| c.regressed()))
        .collect();
    if !regressions.is_empty() {
        let _ = writeln!(out, "\n### Performance against the previous night\n");
        for r in regressions {
            let c = r.regression.as_ref().expect("filtered");
            for f in &c.findings {
                let _ = writeln!(
                    out,
                    "- **{}**: {}{}",
                    r.name,
                    md_esc(f),
                    if c.gated { "" } else { " (not gated)" }
                );
            }
            if let Some(p) = &c.report {
                let _ = writeln!(out, "  - comparison: `{}`", link(base, p));
            }
        }
    }

    let _ = writeln!(out, "\n### Coverage\n");
    let gaps = report.plan.coverage.gaps().count();
    let _ = writeln!(
        out,
        "{}",
        if gaps == 0 {
            "Every target ran in every mode under every fault kind.".to_string()
        } else {
            format!("{gaps} target/mode row(s) left fault kinds out tonight (marked NOT COVERED).")
        }
    );
    let _ = writeln!(out);
    for line in report.plan.coverage.lines() {
        let _ = writeln!(out, "- {}", md_esc(&line));
    }

    let mut notes: Vec<String> = Vec::new();
    for r in &report.results {
        if r.flaky {
            if let Some(n) = r.rerun_note() {
                notes.push(format!("{}: {n}", r.name));
            }
        }
        if let Some(reason) = &r.skip_reason {
            notes.push(format!("{} skipped: {reason}", r.name));
        }
        for n in &r.notes {
            notes.push(format!("{}: {n}", r.name));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\n### Notes\n");
        for n in notes {
            let _ = writeln!(out, "- {}", md_esc(&n));
        }
    }
    out
}
