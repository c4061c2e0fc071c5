//! The planner: which scenarios run tonight, for how long, with which faults.
//!
//! Every target run costs its load duration plus an overhead estimate
//! (`plan.run_overhead + plan.overhead_fraction × duration`); a `check` costs one
//! `run_overhead`. Fixed-duration scenarios are taken as they are; the rest of the budget
//! is split between `share` scenarios in proportion to their shares (a scenario that
//! reaches its `max_duration` gives the remainder back to the others). If a shared
//! scenario would fall below its `min_duration`, the budget is too small and the planner
//! says how much is needed.
//!
//! Fault kinds the machine cannot inject are dropped from chaos scenarios (with the
//! reason); a chaos scenario left with no fault kind is skipped. The plan's
//! [`Coverage`] names every (target, mode, fault kind) the night owes but will not run.

use std::path::PathBuf;
use std::time::Duration;

use raftbus_faults::{Capabilities, FaultKind};

use super::coverage::{coverage, Coverage};
use super::suite::{Suite, SuiteCommand, SuiteScenario};
use crate::scenario::{Scenario, TargetKind};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "budget {budget} is too small for suite {suite}: it needs at least {needed} \
         ({reason}); raise --budget or choose a smaller --suite"
    )]
    BudgetTooSmall {
        suite: String,
        budget: String,
        needed: String,
        reason: String,
    },
    #[error("suite {suite} has nothing this machine can run: {reason}")]
    NothingToRun { suite: String, reason: String },
}

/// `raftbus chaos` defaults, used when the suite does not say.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_RECOVERY: Duration = Duration::from_secs(10);

/// A fault kind the machine cannot inject, and why.
type Dropped = (FaultKind, String);

/// One scenario as it will run.
#[derive(Debug, Clone)]
pub struct PlannedScenario {
    pub name: String,
    pub command: SuiteCommand,
    /// `None` for `check`.
    pub target: Option<TargetKind>,
    /// The resolved harness scenario (bench and chaos), at its planned duration.
    pub scenario: Option<Scenario>,
    /// Chaos: the fault kinds that will be injected.
    pub faults: Vec<FaultKind>,
    /// Chaos: fault kinds the machine cannot inject, with the reason.
    pub dropped_faults: Vec<(FaultKind, String)>,
    /// Chaos: time between fault starts, after fitting every kind into the run.
    pub interval: Option<Duration>,
    /// Chaos: quiet time with load after the last fault.
    pub recovery: Option<Duration>,
    /// Check: the directory to re-verify.
    pub check_dir: Option<PathBuf>,
    /// Estimated wall time, overhead included, all target runs together.
    pub estimate: Duration,
    /// Redis violations are expected (reported, not failures).
    pub redis_violations_expected: bool,
    /// Performance regressions against the previous night fail the night.
    pub gate_performance: bool,
}

impl PlannedScenario {
    /// The load duration of one target run (`None` for check).
    pub fn duration(&self) -> Option<Duration> {
        self.scenario.as_ref().map(|s| s.duration)
    }

    /// `bus`, `redis`, `both`, or `-` for check.
    pub fn target_label(&self) -> &'static str {
        match self.target {
            Some(TargetKind::Bus) => "bus",
            Some(TargetKind::Redis) => "redis",
            Some(TargetKind::Both) => "both",
            None => "-",
        }
    }
}

/// A scenario that will not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedScenario {
    pub name: String,
    pub reason: String,
}

/// What a night will run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub suite: String,
    pub suite_source: String,
    pub budget: Duration,
    pub scenarios: Vec<PlannedScenario>,
    pub skipped: Vec<SkippedScenario>,
    /// Sum of the scenario estimates.
    pub estimate: Duration,
    /// What the night covers and what it owes but leaves out.
    pub coverage: Coverage,
}

/// Whether this machine can inject `kind`, and if not, why.
/// What the night's servers can be given: this machine's lab ([`Capabilities`]) or, with
/// `--hosts`, the inventory's hosts ([`crate::chaos::PlanContext`]).
pub trait FaultSupport {
    /// `Ok` when `kind` can be injected; otherwise why not.
    fn support(&self, kind: FaultKind) -> Result<(), String>;
}

impl FaultSupport for Capabilities {
    fn support(&self, kind: FaultKind) -> Result<(), String> {
        fault_support(kind, self)
    }
}

impl FaultSupport for crate::chaos::PlanContext {
    fn support(&self, kind: FaultKind) -> Result<(), String> {
        self.supports(kind)
            .map_err(|e| format!("on the hosts: {e}"))
    }
}

pub fn fault_support(kind: FaultKind, caps: &Capabilities) -> Result<(), String> {
    let lab = caps.namespaces.available() && caps.links;
    match kind {
        FaultKind::Kill | FaultKind::Pause | FaultKind::Terminate | FaultKind::Restart => Ok(()),
        // The harness crashes its own queue consumers.
        FaultKind::ConsumerCrash => Ok(()),
        // The userspace delay proxy needs nothing from the kernel.
        FaultKind::Delay => Ok(()),
        FaultKind::Partition | FaultKind::Loss => {
            if !lab {
                Err("needs network namespaces with veth links (not available)".into())
            } else if !caps.nftables {
                Err("needs nftables with bridge tables (not available)".into())
            } else {
                Ok(())
            }
        }
        FaultKind::Bandwidth => {
            if !lab {
                Err("needs network namespaces with veth links (not available)".into())
            } else if !(caps.tc && caps.tbf) {
                Err("needs tc with the tbf qdisc (not available)".into())
            } else {
                Ok(())
            }
        }
        // Corrupt damages a file of a stopped node: no kernel feature needed.
        FaultKind::Corrupt => Ok(()),
        // Armed through the node's admin command (the scenario names a failpoint build).
        FaultKind::Failpoint => Ok(()),
        FaultKind::PowerLoss | FaultKind::TornWrite => {
            if !caps.namespaces.available() {
                Err("needs the lab's private mount namespace (no namespaces here)".into())
            } else if !caps.fuse {
                Err("needs FUSE in the lab (not available)".into())
            } else {
                Ok(())
            }
        }
    }
}

fn fmt_d(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Plans `suite` into `budget`. `caps` filters fault kinds; `None` keeps them all.
pub fn plan(
    suite: &Suite,
    budget: Duration,
    caps: Option<&dyn FaultSupport>,
) -> Result<Plan, PlanError> {
    let overhead = secs(suite.plan.run_overhead);
    let frac = suite.plan.overhead_fraction;
    let mut skipped = Vec::new();
    // Scenarios that will run, with their supported and dropped faults.
    let mut runnable: Vec<(&SuiteScenario, Vec<FaultKind>, Vec<Dropped>)> = Vec::new();
    for s in &suite.scenarios {
        let (mut ok, mut dropped) = (Vec::new(), Vec::new());
        for &k in &s.faults {
            match caps.map(|c| c.support(k)).unwrap_or(Ok(())) {
                Ok(()) => ok.push(k),
                Err(why) => dropped.push((k, why)),
            }
        }
        if s.command == SuiteCommand::Chaos && ok.is_empty() {
            let why: Vec<String> = dropped.iter().map(|(k, w)| format!("{k} {w}")).collect();
            skipped.push(SkippedScenario {
                name: s.name.clone(),
                reason: format!(
                    "no fault kind it lists can be injected here: {}",
                    why.join("; ")
                ),
            });
            continue;
        }
        runnable.push((s, ok, dropped));
    }
    if runnable.is_empty() {
        return Err(PlanError::NothingToRun {
            suite: suite.name.clone(),
            reason: skipped
                .iter()
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }

    // Fixed costs, and what remains for shared scenarios' load.
    let mut fixed_cost = 0.0;
    for (s, _, _) in &runnable {
        let runs = s.target_runs() as f64;
        fixed_cost += match (s.command, s.duration) {
            (SuiteCommand::Check, _) => overhead,
            (SuiteCommand::Selftest, _) => secs(selftest_estimate(suite)),
            (_, Some(d)) => runs * (overhead + (1.0 + frac) * secs(d)),
            (_, None) => runs * overhead,
        };
    }
    let shared: Vec<usize> = runnable
        .iter()
        .enumerate()
        .filter(|(_, (s, _, _))| !s.is_fixed() && s.duration.is_none())
        .map(|(i, _)| i)
        .collect();
    let mut durations: Vec<Option<f64>> = runnable
        .iter()
        .map(|(s, _, _)| s.duration.map(secs))
        .collect();
    let budget_s = secs(budget);
    let mut available = budget_s - fixed_cost;
    let mut free: Vec<usize> = shared.clone();
    // Water-filling: share the load time; scenarios at their maximum give the rest back.
    loop {
        let weight: f64 = free
            .iter()
            .map(|&i| runnable[i].0.target_runs() as f64 * runnable[i].0.share.unwrap_or(0.0))
            .sum();
        if free.is_empty() || weight <= 0.0 {
            break;
        }
        let unit = available.max(0.0) / ((1.0 + frac) * weight);
        let capped: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&i| {
                let s = runnable[i].0;
                s.max_duration
                    .is_some_and(|m| s.share.unwrap_or(0.0) * unit > secs(m))
            })
            .collect();
        if capped.is_empty() {
            for &i in &free {
                durations[i] = Some(runnable[i].0.share.unwrap_or(0.0) * unit);
            }
            break;
        }
        for i in capped {
            let s = runnable[i].0;
            let m = secs(s.max_duration.expect("capped"));
            durations[i] = Some(m);
            available -= s.target_runs() as f64 * (1.0 + frac) * m;
            free.retain(|&j| j != i);
        }
    }

    // Every shared scenario must reach its minimum.
    let short: Vec<String> = shared
        .iter()
        .filter(|&&i| durations[i].unwrap_or(0.0) < secs(runnable[i].0.min_duration()))
        .map(|&i| {
            format!(
                "{} would get {:.0}s, below its minimum {}",
                runnable[i].0.name,
                durations[i].unwrap_or(0.0).max(0.0),
                fmt_d(runnable[i].0.min_duration())
            )
        })
        .collect();
    if budget_s < fixed_cost || !short.is_empty() {
        let needed = minimal_budget(suite, &runnable.iter().map(|r| r.0).collect::<Vec<_>>());
        let reason = if short.is_empty() {
            format!("fixed-duration scenarios and overheads alone take {fixed_cost:.0}s")
        } else {
            short.join("; ")
        };
        return Err(PlanError::BudgetTooSmall {
            suite: suite.name.clone(),
            budget: fmt_d(budget),
            needed: fmt_d(Duration::from_secs_f64(needed.ceil())),
            reason,
        });
    }

    let mut scenarios = Vec::new();
    for (i, (s, ok, dropped)) in runnable.iter().enumerate() {
        let runs = s.target_runs() as f64;
        if s.command == SuiteCommand::Selftest {
            scenarios.push(PlannedScenario {
                name: s.name.clone(),
                command: s.command,
                target: None,
                scenario: None,
                faults: Vec::new(),
                dropped_faults: Vec::new(),
                interval: None,
                recovery: None,
                check_dir: None,
                estimate: selftest_estimate(suite),
                redis_violations_expected: false,
                gate_performance: false,
            });
            continue;
        }
        if s.command == SuiteCommand::Check {
            scenarios.push(PlannedScenario {
                name: s.name.clone(),
                command: s.command,
                target: None,
                scenario: None,
                faults: Vec::new(),
                dropped_faults: Vec::new(),
                interval: None,
                recovery: None,
                check_dir: suite.check_dir(s),
                estimate: suite.plan.run_overhead,
                redis_violations_expected: s.redis_violations_expected(),
                gate_performance: s.gates_performance(),
            });
            continue;
        }
        // Whole seconds, rounded down so the plan stays inside the budget.
        let d = Duration::from_secs((durations[i].unwrap_or(0.0).floor() as u64).max(1));
        let scenario = suite.harness_scenario(s, d);
        // Chaos: warmup, one interval per fault kind (each appears at least once), then
        // the recovery phase, all inside the run.
        let active = d.saturating_sub(scenario.warmup).as_secs();
        let recovery = (s.command == SuiteCommand::Chaos).then(|| {
            let wanted = s.recovery.unwrap_or(DEFAULT_RECOVERY);
            wanted
                .min(Duration::from_secs(active / 4))
                .max(crate::chaos::MIN_RECOVERY)
        });
        let interval = recovery.map(|recovery| {
            let wanted = s.interval.unwrap_or(DEFAULT_INTERVAL);
            // `raftbus chaos` draws each fault window and gap within ±20% of half an
            // interval: k kinds are sure to fit when k × 1.2 × interval fits.
            let room = active.saturating_sub(recovery.as_secs()) as f64 / (1.2 * ok.len() as f64);
            wanted.min(Duration::from_secs((room.floor() as u64).max(1)))
        });
        let estimate = Duration::from_secs_f64(runs * (overhead + (1.0 + frac) * secs(d)));
        scenarios.push(PlannedScenario {
            name: s.name.clone(),
            command: s.command,
            target: Some(s.target_kind()),
            scenario: Some(scenario),
            faults: ok.clone(),
            dropped_faults: dropped.clone(),
            interval,
            recovery,
            check_dir: None,
            estimate,
            redis_violations_expected: s.redis_violations_expected(),
            gate_performance: s.gates_performance(),
        });
    }
    let estimate = scenarios.iter().map(|p| p.estimate).sum();
    let coverage = coverage(&scenarios, caps);
    Ok(Plan {
        suite: suite.name.clone(),
        suite_source: suite.source.clone(),
        budget,
        scenarios,
        skipped,
        estimate,
        coverage,
    })
}

/// What `raftbus selftest` takes: every case's run plus the per-run overhead.
pub fn selftest_estimate(suite: &Suite) -> Duration {
    let overhead = secs(suite.plan.run_overhead);
    let frac = suite.plan.overhead_fraction;
    Duration::from_secs_f64(
        crate::selftest::case_durations()
            .iter()
            .map(|d| overhead + (1.0 + frac) * secs(*d))
            .sum(),
    )
}

/// The smallest budget at which every shared scenario reaches its minimum duration.
fn minimal_budget(suite: &Suite, runnable: &[&SuiteScenario]) -> f64 {
    let overhead = secs(suite.plan.run_overhead);
    let frac = suite.plan.overhead_fraction;
    // The share unit that lifts every scenario to its minimum.
    let unit = runnable
        .iter()
        .filter(|s| !s.is_fixed() && s.duration.is_none())
        .map(|s| secs(s.min_duration()) / s.share.unwrap_or(1.0))
        .fold(0.0, f64::max);
    runnable
        .iter()
        .map(|s| {
            let runs = s.target_runs() as f64;
            match (s.command, s.duration) {
                (SuiteCommand::Check, _) => overhead,
                (SuiteCommand::Selftest, _) => secs(selftest_estimate(suite)),
                (_, Some(d)) => runs * (overhead + (1.0 + frac) * secs(d)),
                (_, None) => {
                    let mut d = s.share.unwrap_or(1.0) * unit;
                    if let Some(m) = s.max_duration {
                        d = d.min(secs(m));
                    }
                    runs * (overhead + (1.0 + frac) * d)
                }
            }
        })
        .sum()
}

impl Plan {
    /// The plan as lines for the terminal, before anything runs.
    pub fn describe(&self) -> Vec<String> {
        let runs: u32 = self
            .scenarios
            .iter()
            .map(|p| match p.target {
                Some(TargetKind::Both) => 2,
                _ => 1,
            })
            .sum();
        let mut lines = vec![format!(
            "plan: suite {} ({}), budget {}: {} scenario(s), {} run(s), estimated {}",
            self.suite,
            self.suite_source,
            fmt_d(self.budget),
            self.scenarios.len(),
            runs,
            fmt_d(self.estimate)
        )];
        let width = self
            .scenarios
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(0);
        for (i, p) in self.scenarios.iter().enumerate() {
            let what = match (&p.scenario, &p.check_dir) {
                (Some(s), _) => {
                    let mut t = format!(
                        "{} at {}/s for {} (warmup {})",
                        p.target_label(),
                        s.rate,
                        fmt_d(s.duration),
                        fmt_d(s.warmup)
                    );
                    if p.target == Some(TargetKind::Both) {
                        t.push_str(" each");
                    }
                    if !p.faults.is_empty() {
                        let kinds: Vec<&str> = p.faults.iter().map(|k| k.as_str()).collect();
                        t.push_str(&format!(
                            ", faults {} every {}, recovery {}",
                            kinds.join(","),
                            fmt_d(p.interval.unwrap_or_default()),
                            fmt_d(p.recovery.unwrap_or_default())
                        ));
                    }
                    t
                }
                (None, Some(dir)) => format!("re-check {}", dir.display()),
                (None, None) if p.command == SuiteCommand::Selftest => format!(
                    "{} planted bugs and a control run against a failpoint build",
                    crate::selftest::CASES.len() - 1
                ),
                (None, None) => String::new(),
            };
            lines.push(format!(
                "  {:>2}. {:<width$}  {:<5}  {}  (~{})",
                i + 1,
                p.name,
                p.command.as_str(),
                what,
                fmt_d(p.estimate)
            ));
            for (k, why) in &p.dropped_faults {
                lines.push(format!("      fault {k} dropped: {why}"));
            }
        }
        for s in &self.skipped {
            lines.push(format!("  skipped {}: {}", s.name, s.reason));
        }
        lines.push("coverage (chaos runs per target and mode):".to_string());
        lines.extend(self.coverage.lines().into_iter().map(|l| format!("  {l}")));
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use raftbus_faults::NamespaceSupport;

    use super::*;

    fn suite(text: &str) -> Suite {
        Suite::parse(text, "t.toml", Path::new(".")).unwrap()
    }

    fn caps(nft: bool, tbf: bool) -> Capabilities {
        Capabilities {
            namespaces: NamespaceSupport::Root,
            links: true,
            nftables: nft,
            tc: true,
            tbf,
            netem: false,
            fuse: true,
            notes: Vec::new(),
        }
    }

    #[test]
    fn disk_faults_follow_the_fuse_capability() {
        let mut c = caps(true, true);
        assert!(fault_support(FaultKind::PowerLoss, &c).is_ok());
        c.fuse = false;
        let e = fault_support(FaultKind::TornWrite, &c).unwrap_err();
        assert!(e.contains("FUSE"), "{e}");
        assert!(fault_support(FaultKind::Corrupt, &c).is_ok());
    }

    const SUITE: &str = r#"
version = 1
name = "t"
[plan]
run_overhead = "10s"
overhead_fraction = 0.0
[[scenario]]
name = "bench"
command = "bench"
target = "both"
share = 1.0
[[scenario]]
name = "chaos-net"
command = "chaos"
faults = ["partition", "bandwidth", "delay"]
interval = "10s"
share = 2.0
[[scenario]]
name = "fixed"
command = "bench"
target = "redis"
duration = "7s"
"#;

    #[test]
    fn shares_split_what_overheads_leave() {
        let s = suite(SUITE);
        // Overheads: bench 2×10 + chaos 10 + fixed (10 + 7) = 47 s; 300 - 47 = 253 s of
        // load split 2 (bench: share 1 × 2 runs) : 2 (chaos) → 63.25 s per unit.
        let p = plan(&s, Duration::from_secs(300), Some(&caps(true, true))).unwrap();
        assert_eq!(p.scenarios.len(), 3);
        assert_eq!(p.scenarios[0].duration(), Some(Duration::from_secs(63)));
        assert_eq!(p.scenarios[1].duration(), Some(Duration::from_secs(126)));
        assert_eq!(p.scenarios[2].duration(), Some(Duration::from_secs(7)));
        assert!(p.estimate <= Duration::from_secs(300), "{:?}", p.estimate);
        assert!(p.estimate >= Duration::from_secs(295), "{:?}", p.estimate);
        // The interval leaves room for all three kinds.
        assert_eq!(p.scenarios[1].interval, Some(Duration::from_secs(10)));
        let text = p.describe().join("\n");
        assert!(text.contains("chaos-net"), "{text}");
        assert!(text.contains("partition,bandwidth,delay"), "{text}");
    }

    #[test]
    fn unsupported_faults_are_dropped_with_a_reason() {
        let s = suite(SUITE);
        let p = plan(&s, Duration::from_secs(300), Some(&caps(false, false))).unwrap();
        let chaos = &p.scenarios[1];
        assert_eq!(chaos.faults, vec![FaultKind::Delay]);
        assert_eq!(chaos.dropped_faults.len(), 2);
        assert!(chaos.dropped_faults[0].1.contains("nftables"));
        assert!(chaos.dropped_faults[1].1.contains("tbf"));
        let text = p.describe().join("\n");
        assert!(text.contains("fault partition dropped"), "{text}");
    }

    #[test]
    fn a_chaos_scenario_without_any_supported_fault_is_skipped() {
        let s = suite(&SUITE.replace("\"partition\", \"bandwidth\", \"delay\"", "\"loss\""));
        let p = plan(&s, Duration::from_secs(300), Some(&caps(false, true))).unwrap();
        assert_eq!(p.scenarios.len(), 2);
        assert_eq!(p.skipped.len(), 1);
        assert!(p.skipped[0].reason.contains("loss"));
        // Its budget went to the others: 300 - 37 = 263 s over 2 units.
        assert_eq!(p.scenarios[0].duration(), Some(Duration::from_secs(131)));
    }

    #[test]
    fn interval_shrinks_to_fit_every_kind() {
        let s = suite(SUITE);
        let p = plan(&s, Duration::from_secs(100), Some(&caps(true, true))).unwrap();
        let chaos = &p.scenarios[1];
        // 100 - 47 = 53 s → unit 13.25 → chaos 26 s; after the 5 s warmup, recovery is
        // cut to a quarter (5 s) and 16 s remain for 3 kinds at up to 1.2 intervals: 4 s.
        assert_eq!(chaos.duration(), Some(Duration::from_secs(26)));
        assert_eq!(chaos.recovery, Some(Duration::from_secs(5)));
        assert_eq!(chaos.interval, Some(Duration::from_secs(4)));
    }

    #[test]
    fn too_small_a_budget_says_what_is_needed() {
        let s = suite(SUITE);
        let err = plan(&s, Duration::from_secs(60), Some(&caps(true, true))).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PlanError::BudgetTooSmall { .. }));
        // Minimums are 10 s; at the share unit that gives bench 10 s, chaos (share 2)
        // gets 20 s: bench 2×(10+10) + chaos (10+20) + fixed 17 = 87 s.
        assert!(text.contains("needs at least 1m 27s"), "{text}");
        assert!(text.contains("below its minimum"), "{text}");
        assert!(plan(&s, Duration::from_secs(87), Some(&caps(true, true))).is_ok());
        assert!(plan(&s, Duration::from_secs(86), Some(&caps(true, true))).is_err());
        let err = plan(&s, Duration::from_secs(10), Some(&caps(true, true))).unwrap_err();
        assert!(err.to_string().contains("budget 10s is too small"), "{err}");
    }

    #[test]
    fn max_duration_gives_the_rest_back() {
        let text = SUITE.replace(
            "interval = \"10s\"\nshare = 2.0",
            "interval = \"10s\"\nshare = 2.0\nmax_duration = \"20s\"",
        );
        let s = suite(&text);
        let p = plan(&s, Duration::from_secs(300), Some(&caps(true, true))).unwrap();
        assert_eq!(p.scenarios[1].duration(), Some(Duration::from_secs(20)));
        // 253 - 20 = 233 s for bench's two runs.
        assert_eq!(p.scenarios[0].duration(), Some(Duration::from_secs(116)));
    }

    #[test]
    fn checks_cost_one_overhead() {
        let s = suite(
            "version = 1\nname = \"t\"\n[[scenario]]\nname = \"old\"\ncommand = \"check\"\ndir = \"x\"\n",
        );
        let p = plan(&s, Duration::from_secs(20), None).unwrap();
        assert_eq!(p.scenarios[0].estimate, Duration::from_secs(15));
        assert_eq!(p.scenarios[0].check_dir, Some(PathBuf::from("./x")));
        assert!(plan(&s, Duration::from_secs(5), None).is_err());
    }

    #[test]
    fn default_suite_fits_eighteen_minutes_but_not_one() {
        // The self-test's fixed cases take about 4 of them (estimated with the suite's
        // per-run overhead); the default --budget is 20m.
        let s = Suite::default_suite();
        let p = plan(&s, Duration::from_secs(1080), Some(&caps(true, true))).unwrap();
        assert_eq!(p.scenarios.len(), s.scenarios.len());
        assert!(p.estimate <= Duration::from_secs(1080));
        let selftest = p.scenarios.iter().find(|p| p.name == "selftest").unwrap();
        assert_eq!(selftest.estimate, selftest_estimate(&s));
        assert!(plan(&s, Duration::from_secs(60), Some(&caps(true, true))).is_err());
    }

    #[test]
    fn default_suite_covers_every_fault_kind_in_every_mode_for_the_bus() {
        use raftbus_reports::model::Mode;
        let s = Suite::default_suite();
        let p = plan(&s, Duration::from_secs(1200), Some(&caps(true, true))).unwrap();
        for mode in [Mode::Stream, Mode::Pubsub, Mode::Queue] {
            let row = p
                .coverage
                .rows
                .iter()
                .find(|r| r.target == "bus" && r.mode == mode)
                .unwrap();
            let owed: Vec<FaultKind> = FaultKind::ALL
                .iter()
                .copied()
                .filter(|k| !crate::nightly::coverage::mode_cannot(mode, *k))
                .collect();
            assert_eq!(row.covered, owed, "{row:?}");
            assert!(row.missing.is_empty(), "{row:?}");
        }
        // Redis runs in every mode too, for contrast.
        for mode in [Mode::Stream, Mode::Pubsub, Mode::Queue] {
            let row = p
                .coverage
                .rows
                .iter()
                .find(|r| r.target == "redis" && r.mode == mode)
                .unwrap();
            assert!(!row.covered.is_empty(), "{row:?}");
        }
    }

    #[test]
    fn what_the_night_leaves_out_is_named_with_the_reason() {
        // SUITE runs no pub/sub and cannot inject partitions without nftables.
        let s = suite(SUITE);
        let p = plan(&s, Duration::from_secs(300), Some(&caps(false, true))).unwrap();
        let text = p.describe().join("\n");
        assert!(
            text.contains(
                "bus pubsub: no chaos run; NOT COVERED: kill (no scenario of the suite injects it)"
            ),
            "{text}"
        );
        assert!(
            text.contains("partition (this machine cannot inject it: needs nftables"),
            "{text}"
        );
        let stream = &p.coverage.rows[0];
        assert_eq!(stream.covered, vec![FaultKind::Delay, FaultKind::Bandwidth]);
    }
}
