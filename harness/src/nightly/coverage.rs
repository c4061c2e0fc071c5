//! What a night covers, against what it owes: the bus in every mode under every fault kind,
//! Redis in every mode for contrast, and the self-test (`raftbus selftest`: the planted bugs
//! of a failpoint build, each of which the checkers must catch). Whatever the plan leaves out, because the machine
//! cannot inject it or because no scenario of the suite asks for it, is named with the
//! reason, printed with the plan and listed in `latest.md` — never dropped in silence.

use std::collections::BTreeSet;

use raftbus_faults::FaultKind;
use raftbus_reports::model::Mode;

use super::plan::{FaultSupport, PlannedScenario};
use super::suite::SuiteCommand;
use crate::scenario::TargetKind;

/// Every mode, in report order.
pub const MODES: [Mode; 3] = [Mode::Stream, Mode::Pubsub, Mode::Queue];

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Stream => "stream",
        Mode::Pubsub => "pubsub",
        Mode::Queue => "queue",
    }
}

/// One (target, mode) the nightly owes a chaos run, and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageRow {
    pub target: &'static str,
    pub mode: Mode,
    /// Fault kinds injected tonight in at least one chaos run of this target and mode.
    pub covered: Vec<FaultKind>,
    /// Fault kinds owed but not injected, with the reason.
    pub missing: Vec<(FaultKind, String)>,
}

impl CoverageRow {
    pub fn label(&self) -> String {
        format!("{} {}", self.target, mode_name(self.mode))
    }
}

/// The night's coverage, one row per target and mode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coverage {
    pub rows: Vec<CoverageRow>,
    /// The suite's `selftest` scenarios; none is a gap: the checkers go unproven tonight.
    pub selftests: Vec<String>,
}

impl Coverage {
    /// Rows with something missing.
    pub fn gaps(&self) -> impl Iterator<Item = &CoverageRow> {
        self.rows.iter().filter(|r| !r.missing.is_empty())
    }

    /// The self-test line: which scenario proves the checkers, or that none does.
    pub fn selftest_line(&self) -> String {
        let cases: Vec<&str> = crate::selftest::CASES
            .iter()
            .filter(|c| !c.kinds.is_empty())
            .map(|c| c.name)
            .collect();
        if self.selftests.is_empty() {
            format!(
                "selftest: NOT COVERED (no selftest scenario in the suite): planted bugs {} unchecked",
                cases.join(",")
            )
        } else {
            format!(
                "selftest: planted bugs {} plus a control run ({})",
                cases.join(","),
                self.selftests.join(", ")
            )
        }
    }

    /// One line per row, then the self-test line, for the terminal and for `latest.md`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                let covered: Vec<&str> = r.covered.iter().map(|k| k.as_str()).collect();
                let mut line = format!(
                    "{}: {}",
                    r.label(),
                    if covered.is_empty() {
                        "no chaos run".to_string()
                    } else {
                        covered.join(",")
                    }
                );
                if !r.missing.is_empty() {
                    let missing: Vec<String> = r
                        .missing
                        .iter()
                        .map(|(k, why)| format!("{k} ({why})"))
                        .collect();
                    line.push_str(&format!("; NOT COVERED: {}", missing.join("; ")));
                }
                line
            })
            .collect();
        lines.push(self.selftest_line());
        lines
    }
}

/// Every target owes every fault kind in every mode: the bus as the system under test,
/// Redis as the contrast. A kind the harness cannot inject into a target says why here.
fn target_cannot(target: TargetKind, kind: FaultKind) -> Option<&'static str> {
    match (target, kind) {
        (TargetKind::Redis, FaultKind::Delay) => Some(
            "the harness cannot inject it into Redis: the userspace delay stage sits on the bus's peer links only",
        ),
        (TargetKind::Redis, FaultKind::Failpoint) => Some(
            "failpoints live inside a failpoint build of the bus node; Redis has none",
        ),
        _ => None,
    }
}

/// Whether a kind has nothing to act on in a mode: consumer-crash crashes queue
/// consumers, which only queue mode runs.
pub fn mode_cannot(mode: Mode, kind: FaultKind) -> bool {
    matches!(
        (mode, kind),
        (Mode::Stream | Mode::Pubsub, FaultKind::ConsumerCrash)
    )
}

/// Coverage of `planned` chaos runs. `caps` explains kinds the machine cannot inject.
pub fn coverage(planned: &[PlannedScenario], caps: Option<&dyn FaultSupport>) -> Coverage {
    let mut rows = Vec::new();
    for (target, label) in [(TargetKind::Bus, "bus"), (TargetKind::Redis, "redis")] {
        for mode in MODES {
            let mut covered = BTreeSet::new();
            for p in planned {
                let Some(s) = &p.scenario else { continue };
                let runs_target = p.target == Some(target) || p.target == Some(TargetKind::Both);
                if p.command == SuiteCommand::Chaos && runs_target && s.mode == mode {
                    covered.extend(p.faults.iter().copied());
                }
            }
            // A kind with nothing to act on in this mode is not owed by it.
            let missing = FaultKind::ALL
                .iter()
                .filter(|k| !covered.contains(k) && !mode_cannot(mode, **k))
                .map(|&k| {
                    let why = match (target_cannot(target, k), caps.map(|c| c.support(k))) {
                        (Some(why), _) => why.to_string(),
                        (None, Some(Err(why))) => format!("this machine cannot inject it: {why}"),
                        _ => "no scenario of the suite injects it".to_string(),
                    };
                    (k, why)
                })
                .collect();
            rows.push(CoverageRow {
                target: label,
                mode,
                covered: covered.into_iter().collect(),
                missing,
            });
        }
    }
    let selftests = planned
        .iter()
        .filter(|p| p.command == SuiteCommand::Selftest)
        .map(|p| p.name.clone())
        .collect();
    Coverage { rows, selftests }
}
