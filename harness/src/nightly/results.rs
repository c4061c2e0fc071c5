//! What each scenario of a night found: its attempts (the first run and the rerun with
//! the same seed), how each is judged, and the comparison with the previous night.
//!
//! Judging, in one place:
//! - a bus run with an invalid verdict, or a Redis run whose scenario does not expect
//!   violations, is a **violation**;
//! - an invalid Redis run whose scenario expects violations is reported, not a failure;
//! - a run that did not finish, exited with a code other than 0 or 1, wrote no
//!   `summary.json`, or could not be checked (`unknown`) is an **environment error**.
//!
//! After a failed first attempt the scenario is rerun once with the same seed:
//! - violation: the night fails either way (the recorded history proves it); the rerun
//!   says whether it is *reproducible* (rerun violates too) or *not reproduced*;
//! - environment error then a clean rerun: *flaky*, the scenario passes with a note;
//!   an error or violation on the rerun keeps it failed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftbus_reports::compare::{MetricDelta, Unit};
use raftbus_reports::model::{Summary, Target, TimeSeries, Verdict, ViolationReport};

use super::exec::ChildRun;
use super::plan::PlannedScenario;

/// One target run of an attempt.
#[derive(Debug, Clone)]
pub struct TargetResult {
    pub target: Target,
    pub dir: PathBuf,
    pub summary: Summary,
    /// Its violations (if any) are expected: a Redis run of a scenario that says so.
    pub violations_expected: bool,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptVerdict {
    Valid,
    Violation,
    /// The run could not be completed or checked; the text says why.
    Error(String),
}

/// One execution of a scenario (the first run, or the rerun).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Its results directory.
    pub dir: PathBuf,
    /// The exact command line that ran it.
    pub command: String,
    /// The command that reproduces it: the same one, writing to `<scenario>.repro/`
    /// so the night's results are not overwritten.
    pub rerun_command: String,
    /// How the child ended (`None` when it could not be started).
    pub child: Option<ChildRun>,
    pub targets: Vec<TargetResult>,
    pub verdict: AttemptVerdict,
    /// Unexpected violations, kinds prefixed by the target (`bus: lost`).
    pub violations: Vec<ViolationReport>,
    /// Violations that were expected (Redis), reported only.
    pub expected_violations: Vec<ViolationReport>,
    pub elapsed: Duration,
}

impl Attempt {
    /// Fault kinds that were actually injected, from the summaries.
    pub fn faults_injected(&self) -> BTreeSet<String> {
        self.targets
            .iter()
            .flat_map(|t| t.summary.faults.iter().map(|f| f.kind.clone()))
            .collect()
    }
}

/// The final status of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Violation,
    Error,
    Skipped,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Violation => "VIOLATION",
            Status::Error => "ERROR",
            Status::Skipped => "skipped",
        }
    }
}

/// This scenario against the same scenario of the previous night.
#[derive(Debug, Clone)]
pub struct RegressionCheck {
    /// The previous night's results directory.
    pub previous: PathBuf,
    /// Metric deltas, labelled by target.
    pub deltas: Vec<(String, MetricDelta)>,
    /// Why it counts as a performance regression; empty when it does not.
    pub findings: Vec<String>,
    /// Per-second p99 spread within the runs, per target label, when measurable.
    pub noise: BTreeMap<String, f64>,
    /// Whether this scenario's regressions fail the night.
    pub gated: bool,
    /// The full comparison (`compare.md`).
    pub report: Option<PathBuf>,
}

impl RegressionCheck {
    pub fn regressed(&self) -> bool {
        !self.findings.is_empty()
    }

    pub fn fails_night(&self) -> bool {
        self.gated && self.regressed()
    }
}

/// Everything known about one scenario after the night.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub name: String,
    /// `bench`, `chaos` or `check`.
    pub command: String,
    /// `bus`, `redis`, `both` or `-`.
    pub target: String,
    pub seed: Option<u64>,
    pub plan: Option<PlannedScenario>,
    pub status: Status,
    /// Failed with an environment error, then passed on the rerun.
    pub flaky: bool,
    /// For a violation: whether the rerun with the same seed violated too.
    pub reproduced: Option<bool>,
    pub first: Option<Attempt>,
    pub rerun: Option<Attempt>,
    pub regression: Option<RegressionCheck>,
    /// Comparison problems, dropped faults, and the like.
    pub notes: Vec<String>,
    pub skip_reason: Option<String>,
}

impl ScenarioResult {
    /// The attempt whose figures are reported (the rerun when the first errored).
    pub fn reported_attempt(&self) -> Option<&Attempt> {
        match (&self.first, &self.rerun) {
            (Some(f), Some(r)) if matches!(f.verdict, AttemptVerdict::Error(_)) => Some(r),
            (Some(f), _) => Some(f),
            (None, r) => r.as_ref(),
        }
    }

    /// The attempt that shows the failure.
    pub fn failing_attempt(&self) -> Option<&Attempt> {
        [&self.first, &self.rerun]
            .into_iter()
            .flatten()
            .find(|a| a.verdict != AttemptVerdict::Valid)
    }

    /// The command that reruns the failure exactly.
    pub fn rerun_command(&self) -> Option<&str> {
        self.failing_attempt()
            .or(self.first.as_ref())
            .map(|a| a.rerun_command.as_str())
    }

    pub fn total_elapsed(&self) -> Duration {
        [&self.first, &self.rerun]
            .into_iter()
            .flatten()
            .map(|a| a.elapsed)
            .sum()
    }

    /// Violation summary: `bus: lost 3, duplicated 1`.
    pub fn violation_summary(&self) -> String {
        let Some(a) = self.failing_attempt() else {
            return String::new();
        };
        let parts: Vec<String> = a
            .violations
            .iter()
            .map(|v| format!("{} {}", v.kind, v.count))
            .collect();
        if parts.is_empty() {
            "the checker reported a violation".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// One line saying what the rerun showed, when there was one.
    pub fn rerun_note(&self) -> Option<String> {
        let rerun = self.rerun.as_ref()?;
        let seed = self
            .seed
            .map(|s| format!(" with seed {s}"))
            .unwrap_or_default();
        Some(match (&self.status, self.reproduced, self.flaky) {
            (Status::Violation, Some(true), _) => {
                format!("reproducible: the rerun{seed} violated too")
            }
            (Status::Violation, Some(false), _) => format!(
                "not reproduced: the rerun{seed} was {}; the first run's history still proves the violation",
                attempt_word(&rerun.verdict)
            ),
            (_, _, true) => format!(
                "flaky: the first run failed ({}), the rerun{seed} passed",
                self.first
                    .as_ref()
                    .map(|a| attempt_word(&a.verdict))
                    .unwrap_or_default()
            ),
            (Status::Error, _, _) => format!(
                "the rerun{seed} failed too ({})",
                attempt_word(&rerun.verdict)
            ),
            _ => format!("rerun{seed}: {}", attempt_word(&rerun.verdict)),
        })
    }
}

pub fn attempt_word(v: &AttemptVerdict) -> String {
    match v {
        AttemptVerdict::Valid => "valid".to_string(),
        AttemptVerdict::Violation => "a violation".to_string(),
        AttemptVerdict::Error(e) => format!("an error: {e}"),
    }
}

/// Combines the first attempt and the optional rerun into a status, `flaky` and
/// `reproduced` (see the module documentation).
pub fn final_status(
    first: &AttemptVerdict,
    rerun: Option<&AttemptVerdict>,
) -> (Status, bool, Option<bool>) {
    match (first, rerun) {
        (AttemptVerdict::Valid, _) => (Status::Passed, false, None),
        (AttemptVerdict::Violation, r) => (
            Status::Violation,
            false,
            r.map(|r| *r == AttemptVerdict::Violation),
        ),
        (AttemptVerdict::Error(_), Some(AttemptVerdict::Valid)) => (Status::Passed, true, None),
        (AttemptVerdict::Error(_), Some(AttemptVerdict::Violation)) => {
            (Status::Violation, false, Some(false))
        }
        (AttemptVerdict::Error(_), _) => (Status::Error, false, None),
    }
}

/// The night's exit code: 1 on any violation, else 3 on any environment error, else 4 on
/// a gated performance regression, else 0.
pub fn night_exit_code(results: &[ScenarioResult]) -> u8 {
    use crate::run::exit;
    if results.iter().any(|r| r.status == Status::Violation) {
        exit::VIOLATION
    } else if results.iter().any(|r| r.status == Status::Error) {
        exit::ENVIRONMENT
    } else if results
        .iter()
        .any(|r| r.regression.as_ref().is_some_and(|c| c.fails_night()))
    {
        exit::REGRESSION
    } else {
        exit::VALID
    }
}

/// Judges the target runs of a bench/chaos attempt.
pub fn judge_runs(
    child: &ChildRun,
    expected_dirs: &[(Target, PathBuf)],
    redis_violations_expected: bool,
) -> (
    Vec<TargetResult>,
    AttemptVerdict,
    Vec<ViolationReport>,
    Vec<ViolationReport>,
) {
    let mut targets = Vec::new();
    let mut missing = Vec::new();
    for (target, dir) in expected_dirs {
        match Summary::read(dir) {
            Ok(summary) => targets.push(TargetResult {
                target: *target,
                dir: dir.clone(),
                summary,
                violations_expected: *target == Target::Redis && redis_violations_expected,
            }),
            Err(e) => missing.push(e.to_string()),
        }
    }
    let (mut violations, mut expected) = (Vec::new(), Vec::new());
    let mut unknown = Vec::new();
    for t in &targets {
        let label = target_label(t.target);
        match t.summary.verdict {
            Verdict::Valid => {}
            Verdict::Unknown => unknown.push(format!("the {label} run could not be checked")),
            Verdict::Invalid => {
                let mut reports: Vec<ViolationReport> = t
                    .summary
                    .checks
                    .violations
                    .iter()
                    .map(|v| ViolationReport {
                        kind: format!("{label}: {}", v.kind),
                        ..v.clone()
                    })
                    .collect();
                if reports.is_empty() {
                    reports.push(ViolationReport {
                        kind: format!("{label}: invalid"),
                        property: "the run's verdict is invalid".to_string(),
                        count: 1,
                        examples: Vec::new(),
                    });
                }
                if t.violations_expected {
                    expected.extend(reports);
                } else {
                    violations.extend(reports);
                }
            }
        }
    }
    let verdict = if !violations.is_empty() {
        // A violation found in a written history stands even if the process then failed.
        AttemptVerdict::Violation
    } else if !matches!(child.code, Some(0) | Some(1)) || child.timed_out {
        AttemptVerdict::Error(format!("the run {}", child.describe()))
    } else if !missing.is_empty() {
        AttemptVerdict::Error(format!("no results: {}", missing.join("; ")))
    } else if !unknown.is_empty() {
        AttemptVerdict::Error(unknown.join("; "))
    } else {
        AttemptVerdict::Valid
    };
    (targets, verdict, violations, expected)
}

/// Judges a `raftbus check DIR` attempt from its exit code and output; `expected` when
/// the checked run was a Redis run whose violations the scenario expects.
pub fn judge_check(
    child: &ChildRun,
    expected: bool,
) -> (AttemptVerdict, Vec<ViolationReport>, Vec<ViolationReport>) {
    match (child.code, child.timed_out) {
        (Some(0), false) => (AttemptVerdict::Valid, Vec::new(), Vec::new()),
        (Some(1), false) => {
            let mut found = parse_check_output(&child.stdout);
            if found.is_empty() {
                found.push(ViolationReport {
                    kind: "invalid".to_string(),
                    property: "raftbus check exited with code 1".to_string(),
                    count: 1,
                    examples: Vec::new(),
                });
            }
            if expected {
                (AttemptVerdict::Valid, Vec::new(), found)
            } else {
                (AttemptVerdict::Violation, found, Vec::new())
            }
        }
        _ => (
            AttemptVerdict::Error(format!("raftbus check {}", child.describe())),
            Vec::new(),
            Vec::new(),
        ),
    }
}

/// A `raftbus selftest` child: exit 0 passed; exit 1 a planted bug went unnoticed, was
/// reported as another kind, or the control raised an alarm (one violation per such row of
/// its table); anything else an error.
pub fn judge_selftest(child: &ChildRun) -> (AttemptVerdict, Vec<ViolationReport>) {
    match (child.code, child.timed_out) {
        (Some(0), false) => (AttemptVerdict::Valid, Vec::new()),
        (Some(1), false) => {
            let rows: Vec<String> = child
                .stdout
                .lines()
                .filter(|l| {
                    ["MISSED", "WRONG KIND", "FALSE ALARM"]
                        .iter()
                        .any(|w| l.contains(w))
                })
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            let found = vec![ViolationReport {
                kind: "selftest_missed".to_string(),
                property: "every planted bug is reported as its violation kind, and the control run is valid"
                    .to_string(),
                count: rows.len().max(1) as u64,
                examples: rows,
            }];
            (AttemptVerdict::Violation, found)
        }
        _ => (
            AttemptVerdict::Error(format!("raftbus selftest {}", child.describe())),
            Vec::new(),
        ),
    }
}

/// Reads the `violation KIND (COUNT): PROPERTY` blocks (examples indented below) that
/// `raftbus check` prints.
pub fn parse_check_output(stdout: &str) -> Vec<ViolationReport> {
    let mut out: Vec<ViolationReport> = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("violation ") {
            let Some((head, property)) = rest.split_once("): ") else {
                continue;
            };
            let Some((kind, count)) = head.split_once(" (") else {
                continue;
            };
            out.push(ViolationReport {
                kind: kind.trim().to_string(),
                property: property.trim().to_string(),
                count: count.trim().parse().unwrap_or(0),
                examples: Vec::new(),
            });
        } else if let (Some(last), true) = (out.last_mut(), line.starts_with("  ")) {
            last.examples.push(line.trim().to_string());
        }
    }
    out
}

pub fn target_label(t: Target) -> &'static str {
    match t {
        Target::Bus => "bus",
        Target::Redis => "redis",
    }
}

/// The performance findings in a comparison: gating metrics worse than `threshold`.
/// Latency changes must also exceed `min_latency_delta_us`, and the latency threshold of
/// a target is raised to its measured noise (`latency_noise[label]`, the relative spread
/// of per-second p99 within the runs): a change the runs show within themselves is not a
/// regression.
pub fn performance_findings(
    deltas: &[(String, MetricDelta)],
    threshold: f64,
    min_latency_delta_us: f64,
    latency_noise: &BTreeMap<String, f64>,
) -> Vec<String> {
    deltas
        .iter()
        .filter(|(_, m)| m.gating)
        .filter_map(|(label, m)| {
            let w = m.worsening()?;
            let limit = match m.unit {
                Unit::Micros => threshold.max(latency_noise.get(label).copied().unwrap_or(0.0)),
                Unit::PerSecond | Unit::CpuSeconds | Unit::Bytes | Unit::Count => threshold,
            };
            if w <= limit {
                return None;
            }
            if m.unit == Unit::Micros && (m.b - m.a).abs() < min_latency_delta_us {
                return None;
            }
            Some(format!(
                "{label} {} worse by {:.1}% ({} → {}), beyond the {:.0}% {}",
                m.name,
                w * 100.0,
                fmt_metric(m, m.a),
                fmt_metric(m, m.b),
                limit * 100.0,
                if limit > threshold {
                    "run-to-run noise"
                } else {
                    "threshold"
                }
            ))
        })
        .collect()
}

/// The relative spread (coefficient of variation) of the per-second publish→ack p99
/// after warmup, outside fault windows; `None` with fewer than 5 seconds of data.
pub fn p99_noise(dir: &Path) -> Option<f64> {
    let ts = TimeSeries::read(dir).ok()?;
    let faults = Summary::read(dir).map(|s| s.faults).unwrap_or_default();
    let vals: Vec<f64> = ts
        .rows
        .iter()
        .filter(|r| r.t_s as f64 >= ts.warmup_s && r.ack_p99_us > 0)
        .filter(|r| {
            let t = r.t_s as f64;
            !faults.iter().any(|f| t + 1.0 > f.start_s && t < f.end_s)
        })
        .map(|r| r.ack_p99_us as f64)
        .collect();
    if vals.len() < 5 {
        return None;
    }
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
    (mean > 0.0).then(|| var.sqrt() / mean)
}

pub fn fmt_metric(m: &MetricDelta, v: f64) -> String {
    match m.unit {
        Unit::Micros => fmt_us(v),
        Unit::PerSecond => format!("{v:.0}/s"),
        Unit::CpuSeconds | Unit::Bytes | Unit::Count => m.fmt(v),
    }
}

/// Microseconds for people: `850 µs`, `12.3 ms`, `1.20 s`.
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// The last `n` lines of a log file, for error reports.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_attempts() {
        use AttemptVerdict::*;
        let err = || Error("boom".into());
        assert_eq!(final_status(&Valid, None), (Status::Passed, false, None));
        assert_eq!(
            final_status(&Violation, Some(&Violation)),
            (Status::Violation, false, Some(true))
        );
        assert_eq!(
            final_status(&Violation, Some(&Valid)),
            (Status::Violation, false, Some(false))
        );
        assert_eq!(
            final_status(&err(), Some(&Valid)),
            (Status::Passed, true, None)
        );
        assert_eq!(
            final_status(&err(), Some(&err())),
            (Status::Error, false, None)
        );
        assert_eq!(
            final_status(&err(), Some(&Violation)),
            (Status::Violation, false, Some(false))
        );
    }

    #[test]
    fn check_output_is_parsed() {
        let out = "verdict INVALID: acked 10 lost 2\n\
                   violation lost (2): every acknowledged message is in every final stream\n  \
                   msg 5 on ch1 missing on n1\n  msg 6 on ch1 missing on n1\n\
                   violation duplicated (1): no message twice\n  msg 9 twice\n";
        let v = parse_check_output(out);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].kind, "lost");
        assert_eq!(v[0].count, 2);
        assert_eq!(v[0].examples.len(), 2);
        assert!(v[0].property.starts_with("every acknowledged"));
        assert_eq!(v[1].kind, "duplicated");
        assert_eq!(v[1].examples, vec!["msg 9 twice".to_string()]);
    }

    #[test]
    fn check_exit_codes_are_judged() {
        let child = |code| ChildRun {
            code: Some(code),
            stdout: "violation lost (1): p\n".into(),
            ..ChildRun::default()
        };
        assert_eq!(judge_check(&child(0), false).0, AttemptVerdict::Valid);
        let (v, found, expected) = judge_check(&child(1), false);
        assert_eq!(v, AttemptVerdict::Violation);
        assert_eq!(found[0].kind, "lost");
        assert!(expected.is_empty());
        let (v, found, expected) = judge_check(&child(1), true);
        assert_eq!(v, AttemptVerdict::Valid);
        assert!(found.is_empty());
        assert_eq!(expected.len(), 1);
        assert!(matches!(
            judge_check(&child(3), false).0,
            AttemptVerdict::Error(_)
        ));
    }

    fn delta(
        name: &str,
        unit: Unit,
        a: f64,
        b: f64,
        higher_is_better: bool,
    ) -> (String, MetricDelta) {
        (
            "bus".to_string(),
            MetricDelta {
                name: name.to_string(),
                a,
                b,
                unit,
                higher_is_better,
                gating: true,
            },
        )
    }

    #[test]
    fn small_latency_changes_are_noise() {
        let quiet = BTreeMap::new();
        // +50% but only 500 µs: noise under a 2 ms floor.
        let d = vec![delta("ack p99", Unit::Micros, 1000.0, 1500.0, false)];
        assert!(performance_findings(&d, 0.10, 2000.0, &quiet).is_empty());
        // +50% and 5 ms: a regression.
        let d = vec![delta("ack p99", Unit::Micros, 10_000.0, 15_000.0, false)];
        let f = performance_findings(&d, 0.10, 2000.0, &quiet);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("worse by 50.0%"), "{}", f[0]);
        // … unless the runs' own per-second p99 varies by more than that.
        let noisy = BTreeMap::from([("bus".to_string(), 0.6)]);
        assert!(performance_findings(&d, 0.10, 2000.0, &noisy).is_empty());
        let noisy = BTreeMap::from([("bus".to_string(), 0.3)]);
        let f = performance_findings(&d, 0.10, 2000.0, &noisy);
        assert!(f[0].contains("beyond the 30% run-to-run noise"), "{}", f[0]);
        // Throughput down 20%; noise does not excuse it.
        let d = vec![delta("throughput", Unit::PerSecond, 1000.0, 800.0, true)];
        assert_eq!(performance_findings(&d, 0.10, 2000.0, &noisy).len(), 1);
        // Better is never a regression.
        let d = vec![delta("throughput", Unit::PerSecond, 800.0, 1000.0, true)];
        assert!(performance_findings(&d, 0.10, 2000.0, &quiet).is_empty());
    }

    #[test]
    fn cpu_and_memory_regress_beyond_the_threshold() {
        let quiet = BTreeMap::new();
        // CPU per 1k acked up 30%: a regression, however small in absolute terms.
        let d = vec![delta(
            "CPU / 1k acked",
            Unit::CpuSeconds,
            0.040,
            0.052,
            false,
        )];
        let f = performance_findings(&d, 0.10, 2000.0, &quiet);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("40.0 ms → 52.0 ms"), "{}", f[0]);
        // Up 5%: within the threshold. Latency noise does not widen it.
        let d = vec![delta(
            "CPU / 1k acked",
            Unit::CpuSeconds,
            0.040,
            0.042,
            false,
        )];
        assert!(performance_findings(&d, 0.10, 2000.0, &quiet).is_empty());
        let noisy = BTreeMap::from([("bus".to_string(), 0.6)]);
        let d = vec![delta("peak RSS", Unit::Bytes, 100e6, 130e6, false)];
        assert_eq!(performance_findings(&d, 0.10, 2000.0, &noisy).len(), 1);
    }

    #[test]
    fn p99_noise_from_the_time_series() {
        use raftbus_reports::model::SecondRow;
        let dir = tempfile::tempdir().unwrap();
        let rows = |p99: &[u64]| TimeSeries {
            warmup_s: 1.0,
            rows: p99
                .iter()
                .enumerate()
                .map(|(i, &v)| SecondRow {
                    t_s: i as u64,
                    ack_p99_us: v,
                    ..SecondRow::default()
                })
                .collect(),
            extra: Default::default(),
        };
        // The first second is warmup and ignored.
        rows(&[99_999, 100, 100, 100, 100, 100])
            .write(dir.path())
            .unwrap();
        assert_eq!(p99_noise(dir.path()), Some(0.0));
        rows(&[0, 100, 300, 100, 300, 100, 300])
            .write(dir.path())
            .unwrap();
        let n = p99_noise(dir.path()).unwrap();
        assert!((0.5..0.6).contains(&n), "{n}");
        rows(&[1, 2, 3]).write(dir.path()).unwrap();
        assert_eq!(p99_noise(dir.path()), None);
    }
}
