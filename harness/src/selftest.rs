//! `raftbus selftest`: the harness proves it still catches broken buses.
//!
//! A failpoint build of the node (`--features failpoints`, see raftbus-node's `failpoint`
//! module) carries planted bugs — wrong behaviours real buses have shipped. For each, a
//! short seeded chaos run (a scenario of `harness/scenarios/selftest/`, rerunnable on its
//! own with `raftbus chaos --scenario`) plants the bug, drives the fault that exposes it,
//! and the checkers must report it as the right violation kind. A control run with the
//! same kinds of faults and no bug must come out VALID. Any bug missed or reported as
//! another kind, or a false alarm in the control, fails the self-test (exit 1).
//!
//! Each case runs as a child `raftbus chaos` process (its own lab), like the nightly's runs.
//! The failpoint build is `--node-bin`, else built from this source tree with
//! `cargo build --release -p raftbus-node --features failpoints --target-dir
//! target/failpoints` (kept apart from the default binary).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftbus_reports::model::{Summary, Verdict, ViolationReport};
use serde::Serialize;

use crate::nightly::exec::{run_logged, Invocation};

/// One planted bug (or the control) and what the checkers must say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Short name (`ack-before-fsync`), also the scenario file's stem.
    pub name: &'static str,
    /// What the node does wrong.
    pub bug: &'static str,
    /// What the table shows as expected.
    pub expected: &'static str,
    /// Violation kinds any of which counts as caught; empty: the control (must be VALID).
    pub kinds: &'static [&'static str],
    /// The scenario (TOML).
    pub scenario: &'static str,
}

const LOST: &[&str] = &["lost_mid_stream", "lost_tail"];

/// Every case, the control last.
pub const CASES: &[Case] = &[
    Case {
        name: "ack-before-commit",
        bug: "leader acks once proposed, before commit",
        expected: "lost",
        kinds: LOST,
        scenario: include_str!("../scenarios/selftest/ack-before-commit.toml"),
    },
    Case {
        name: "ack-before-fsync",
        bug: "log acks writes without fsync",
        expected: "lost or diverged",
        // A node that happened to write its unsynced log back before the power loss keeps
        // what the others lost: then the replicas disagree instead.
        kinds: &["lost_mid_stream", "lost_tail", "diverged"],
        scenario: include_str!("../scenarios/selftest/ack-before-fsync.toml"),
    },
    Case {
        name: "drop-forwarded",
        bug: "follower acks a write it never forwarded",
        expected: "lost",
        kinds: LOST,
        scenario: include_str!("../scenarios/selftest/drop-forwarded.toml"),
    },
    Case {
        name: "apply-twice",
        bug: "new term's first batch applied twice",
        expected: "duplicated",
        kinds: &["duplicated", "duplicated_delivery"],
        scenario: include_str!("../scenarios/selftest/apply-twice.toml"),
    },
    Case {
        name: "skip-delivery",
        bug: "one node's subscribers skip an entry",
        expected: "skipped",
        kinds: &["skipped"],
        scenario: include_str!("../scenarios/selftest/skip-delivery.toml"),
    },
    Case {
        name: "reorder-delivery",
        bug: "one node's subscribers get two entries swapped",
        expected: "reordered",
        // Pub/sub deliveries carry no offset: a swap shows as subscribers disagreeing.
        kinds: &["reordered", "disagreement"],
        scenario: include_str!("../scenarios/selftest/reorder-delivery.toml"),
    },
    Case {
        name: "stale-read",
        bug: "leader serves linearizable reads without a quorum check",
        expected: "stale read",
        kinds: &["stale_read"],
        scenario: include_str!("../scenarios/selftest/stale-read.toml"),
    },
    Case {
        name: "control",
        bug: "no bug, only failpoints a correct bus survives",
        expected: "valid",
        kinds: &[],
        scenario: include_str!("../scenarios/selftest/control.toml"),
    },
];

/// The load duration of every case's run, in table order (for the nightly planner).
pub fn case_durations() -> Vec<Duration> {
    CASES
        .iter()
        .map(|c| {
            crate::scenario::Scenario::from_toml(c.scenario, c.name)
                .map(|s| s.duration)
                .unwrap_or_default()
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    #[error("unknown selftest case {0:?}; cases: {1}")]
    UnknownCase(String, String),
    #[error("no failpoint build of raftbus-node: {0}")]
    NoFailpointBuild(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SelftestError {
    let what = what.into();
    move |source| SelftestError::Io { what, source }
}

/// How one case came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The planted bug was reported as an expected kind.
    Caught,
    /// The control run was valid, as it must be.
    Clean,
    /// Violations were reported, none of the expected kind.
    WrongKind,
    /// The run came out valid: the bug went unnoticed.
    Missed,
    /// The control run reported violations.
    FalseAlarm,
    /// The run did not produce a verdict (environment problem, crash, unknown verdict).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Caught => "caught",
            Outcome::Clean => "ok",
            Outcome::WrongKind => "WRONG KIND",
            Outcome::Missed => "MISSED",
            Outcome::FalseAlarm => "FALSE ALARM",
            Outcome::Error => "ERROR",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub bug: String,
    pub expected: String,
    /// What the run reported: `kind(count)` per violation, or the verdict.
    pub reported: String,
    pub outcome: Outcome,
    pub seconds: f64,
    pub dir: PathBuf,
    pub command: String,
}

/// What a run said: its verdict, its violations, and what it could not check.
#[derive(Debug, Clone, PartialEq)]
pub struct RunVerdict {
    pub verdict: Verdict,
    pub violations: Vec<ViolationReport>,
    pub unchecked: Vec<String>,
}

impl From<&Summary> for RunVerdict {
    fn from(s: &Summary) -> Self {
        RunVerdict {
            verdict: s.verdict,
            violations: s.checks.violations.clone(),
            unchecked: s.checks.unchecked.clone(),
        }
    }
}

/// Judges one case from what its run said (`None`: the run wrote no summary; `why` says
/// how it ended). Returns the outcome and what was reported, for the table.
pub fn judge(case: &Case, run: Option<&RunVerdict>, why: &str) -> (Outcome, String) {
    let Some(r) = run else {
        return (Outcome::Error, format!("no verdict: {why}"));
    };
    let kinds: Vec<String> = r
        .violations
        .iter()
        .map(|v| format!("{}({})", v.kind, v.count))
        .collect();
    let reported = match (r.verdict, kinds.is_empty()) {
        (Verdict::Valid, _) => "valid".to_string(),
        (Verdict::Unknown, true) => format!("unknown: {}", r.unchecked.join("; ")),
        (_, _) => kinds.join(", "),
    };
    let hit = r
        .violations
        .iter()
        .any(|v| v.count > 0 && case.kinds.contains(&v.kind.as_str()));
    let control = case.kinds.is_empty();
    let outcome = match r.verdict {
        Verdict::Valid if control => Outcome::Clean,
        Verdict::Valid => Outcome::Missed,
        _ if control && r.violations.is_empty() => Outcome::Error,
        _ if control => Outcome::FalseAlarm,
        _ if hit => Outcome::Caught,
        Verdict::Unknown if r.violations.is_empty() => Outcome::Error,
        _ => Outcome::WrongKind,
    };
    (outcome, reported)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SelftestOptions {
    /// The `raftbus` executable for the child runs.
    pub raftbus_bin: PathBuf,
    /// The failpoint build of the node.
    pub node_bin: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// Case names to run (all when empty).
    pub only: Vec<String>,
}

/// The cases `only` names (all when empty), in table order.
pub fn select(only: &[String]) -> Result<Vec<&'static Case>, SelftestError> {
    for name in only {
        if !CASES.iter().any(|c| c.name == name) {
            let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
            return Err(SelftestError::UnknownCase(name.clone(), names.join(", ")));
        }
    }
    Ok(CASES
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
        .collect())
}

/// Runs the cases one after another; `progress` gets a line per case as it ends.
pub fn run(
    opts: &SelftestOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<CaseResult>, SelftestError> {
    let cases = select(&opts.only)?;
    std::fs::create_dir_all(&opts.out).map_err(io_err(format!("create {}", opts.out.display())))?;
    let mut results = Vec::new();
    for case in cases {
        let dir = opts.out.join(case.name);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let input = dir.join("selftest-scenario.toml");
        std::fs::write(&input, case.scenario)
            .map_err(io_err(format!("write {}", input.display())))?;
        let run_dir = dir.join("run");
        let inv = Invocation {
            program: opts.raftbus_bin.clone(),
            args: vec![
                "chaos".into(),
                "--scenario".into(),
                input.display().to_string(),
                "--seed".into(),
                opts.seed.to_string(),
                "--node-bin".into(),
                opts.node_bin.display().to_string(),
                "--out".into(),
                run_dir.display().to_string(),
            ],
        };
        progress(&format!("{}: {}", case.name, inv.command_line()));
        let log = dir.join("selftest.log");
        let child = run_logged(&inv, &log, Duration::from_secs(240))
            .map_err(io_err(format!("run {}", opts.raftbus_bin.display())))?;
        let verdict = Summary::read(&run_dir).ok().map(|s| RunVerdict::from(&s));
        let why = format!("raftbus chaos {} (log {})", child.describe(), log.display());
        let (outcome, reported) = judge(case, verdict.as_ref(), &why);
        let result = CaseResult {
            case: case.name.to_string(),
            bug: case.bug.to_string(),
            expected: case.expected.to_string(),
            reported,
            outcome,
            seconds: child.elapsed.as_secs_f64(),
            dir: run_dir,
            command: inv.command_line(),
        };
        progress(&format!(
            "{}: {} in {:.1}s ({})",
            case.name,
            outcome.as_str(),
            result.seconds,
            result.reported
        ));
        results.push(result);
    }
    let json = serde_json::to_string_pretty(&results).unwrap_or_default();
    let path = opts.out.join("selftest.json");
    std::fs::write(&path, json).map_err(io_err(format!("write {}", path.display())))?;
    let path = opts.out.join("selftest.md");
    std::fs::write(&path, table(&results, true))
        .map_err(io_err(format!("write {}", path.display())))?;
    Ok(results)
}

/// Exit code of a self-test: 1 when a bug went unnoticed, was reported as another kind,
/// or the control raised an alarm; 3 when a run gave no verdict; 0 otherwise.
pub fn exit_code(results: &[CaseResult]) -> u8 {
    use crate::run::exit;
    if results.iter().any(|r| {
        matches!(
            r.outcome,
            Outcome::Missed | Outcome::WrongKind | Outcome::FalseAlarm
        )
    }) {
        exit::VIOLATION
    } else if results.iter().any(|r| r.outcome == Outcome::Error) {
        exit::ENVIRONMENT
    } else {
        exit::VALID
    }
}

/// The table: planted bug, expected, reported, result, time (Markdown when `markdown`).
pub fn table(results: &[CaseResult], markdown: bool) -> String {
    let headers = ["planted bug", "expected", "reported", "result", "time"];
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|r| {
            [
                format!("{} ({})", r.case, r.bug),
                r.expected.clone(),
                r.reported.clone(),
                r.outcome.as_str().to_string(),
                format!("{:.1}s", r.seconds),
            ]
        })
        .collect();
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", headers.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
        for row in &rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        return out;
    }
    let mut width = headers.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&headers.map(String::from)));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    out
}

/// The failpoint build of the node: `explicit` when given (it must exist), else built from
/// the source tree this harness was compiled from, into `target/failpoints`. `log` gets
/// cargo's output.
pub fn failpoint_node_bin(explicit: Option<&Path>, log: &Path) -> Result<PathBuf, SelftestError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(SelftestError::NoFailpointBuild(format!(
                "{} does not exist",
                p.display()
            )))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .filter(|w| w.join("Cargo.toml").is_file() && w.join("node").is_dir())
        .ok_or_else(|| {
            SelftestError::NoFailpointBuild(
                "this raftbus was not built from a source tree that is still here; build one with \
                 `cargo build --release -p raftbus-node --features failpoints --target-dir target/failpoints` \
                 and pass --node-bin target/failpoints/release/raftbus-node"
                    .into(),
            )
        })?;
    let target_dir = workspace.join("target").join("failpoints");
    let inv = Invocation {
        program: PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
        args: vec![
            "build".into(),
            "--release".into(),
            "-p".into(),
            "raftbus-node".into(),
            "--features".into(),
            "failpoints".into(),
            "--manifest-path".into(),
            workspace.join("Cargo.toml").display().to_string(),
            "--target-dir".into(),
            target_dir.display().to_string(),
        ],
    };
    let built = run_logged(&inv, log, Duration::from_secs(1800))
        .map_err(io_err(format!("run {}", inv.command_line())))?;
    let bin = target_dir.join("release").join("raftbus-node");
    if built.code != Some(0) || !bin.is_file() {
        return Err(SelftestError::NoFailpointBuild(format!(
            "`{}` {} (see {})",
            inv.command_line(),
            built.describe(),
            log.display()
        )));
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(verdict: Verdict, kinds: &[(&str, u64)]) -> RunVerdict {
        RunVerdict {
            verdict,
            violations: kinds
                .iter()
                .map(|(k, n)| ViolationReport {
                    kind: k.to_string(),
                    property: String::new(),
                    count: *n,
                    examples: Vec::new(),
                })
                .collect(),
            unchecked: Vec::new(),
        }
    }

    fn case(name: &str) -> &'static Case {
        CASES.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_planted_bug_counts_as_caught_only_as_its_own_kind() {
        let fsync = case("ack-before-fsync");
        let lost = summary(
            Verdict::Invalid,
            &[("lost_tail", 3), ("ack_id_mismatch", 9)],
        );
        assert_eq!(judge(fsync, Some(&lost), "").0, Outcome::Caught);
        let other = summary(Verdict::Invalid, &[("duplicated", 2)]);
        assert_eq!(judge(fsync, Some(&other), "").0, Outcome::WrongKind);
        let valid = summary(Verdict::Valid, &[]);
        assert_eq!(judge(fsync, Some(&valid), "").0, Outcome::Missed);
        assert_eq!(judge(fsync, None, "crashed").0, Outcome::Error);
        let unknown = summary(Verdict::Unknown, &[]);
        assert_eq!(judge(fsync, Some(&unknown), "").0, Outcome::Error);
    }

    #[test]
    fn the_control_must_be_valid() {
        let control = case("control");
        assert_eq!(
            judge(control, Some(&summary(Verdict::Valid, &[])), "").0,
            Outcome::Clean
        );
        assert_eq!(
            judge(
                control,
                Some(&summary(Verdict::Invalid, &[("lost_tail", 1)])),
                ""
            )
            .0,
            Outcome::FalseAlarm
        );
    }

    #[test]
    fn one_miss_fails_the_selftest() {
        let row = |outcome| CaseResult {
            case: "x".into(),
            bug: "y".into(),
            expected: "lost".into(),
            reported: "valid".into(),
            outcome,
            seconds: 1.0,
            dir: PathBuf::new(),
            command: String::new(),
        };
        assert_eq!(exit_code(&[row(Outcome::Caught), row(Outcome::Caught)]), 0);
        assert_eq!(exit_code(&[row(Outcome::Caught), row(Outcome::Missed)]), 1);
        assert_eq!(
            exit_code(&[row(Outcome::Error), row(Outcome::WrongKind)]),
            1
        );
        assert_eq!(exit_code(&[row(Outcome::Caught), row(Outcome::Error)]), 3);
        let t = table(&[row(Outcome::Missed)], false);
        assert!(t.lines().nth(1).unwrap().contains("MISSED"), "{t}");
    }

    #[test]
    fn every_case_scenario_is_a_valid_bus_scenario_and_unknown_cases_are_refused() {
        for c in CASES {
            let s = crate::scenario::Scenario::from_toml(c.scenario, c.name)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(s.name, format!("selftest-{}", c.name));
        }
        assert_eq!(
            CASES.last().unwrap().kinds.len(),
            0,
            "the control runs last"
        );
        assert!(select(&["no-such".into()]).is_err());
        assert_eq!(select(&["control".into()]).unwrap().len(), 1);
    }
}
