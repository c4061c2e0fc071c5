//! The suite file: which scenarios a night runs, as validated data.
//!
//! ```toml
//! version = 1
//! name = "nightly"
//!
//! [plan]                      # optional: how the planner estimates per-run overhead
//! run_overhead = "15s"        # startup, drain, final reads, checking, report
//! overhead_fraction = 0.1     # plus this fraction of the run's duration
//!
//! [regression]                # optional
//! min_latency_delta = "2ms"   # p99 changes smaller than this never count as regressions
//!
//! [workload]                  # optional: defaults for every scenario below
//! rate = 1000
//! warmup = "3s"
//!
//! [[scenario]]
//! name = "bench"
//! command = "bench"           # bench | chaos | check
//! target = "both"             # bus | redis | both
//! share = 1.0                 # of the budget (or `duration = "30s"`, fixed)
//!
//! [[scenario]]
//! name = "chaos-process"
//! command = "chaos"
//! faults = ["kill", "pause"]  # filtered by what the machine supports
//! interval = "6s"
//! share = 1.0
//!
//! [[scenario]]
//! name = "archived"
//! command = "check"           # re-verify an archived results directory
//! dir = "archive/2024-05-01"  # relative to the suite file
//! ```
//!
//! Unknown fields are errors; [`Suite::validate`] names the scenario and field at fault.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftbus_faults::FaultKind;
use raftbus_reports::model::Mode;
use serde::{Deserialize, Deserializer};

use crate::scenario::{RedisPersistence, Scenario, TargetKind};

/// The only suite layout this harness understands.
pub const SUITE_VERSION: u32 = 1;

/// The suite shipped in the repository and built into the binary (`harness/suites/nightly.toml`).
pub const DEFAULT_SUITE: &str = include_str!("../../suites/nightly.toml");
/// Where [`DEFAULT_SUITE`] lives in the repository, for messages.
pub const DEFAULT_SUITE_PATH: &str = "harness/suites/nightly.toml";

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read suite {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("suite {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("invalid suite {path}: {message}")]
    Invalid { path: String, message: String },
}

/// What a scenario asks the harness to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuiteCommand {
    /// `raftbus bench`: fault-free load.
    Bench,
    /// `raftbus chaos`: load plus a seeded fault mix.
    Chaos,
    /// `raftbus check DIR`: re-verify an archived results directory.
    Check,
    /// `raftbus selftest`: planted bugs in a failpoint build of the node, each of which
    /// the checkers must report as its violation kind (a miss fails the night).
    Selftest,
}

impl SuiteCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteCommand::Bench => "bench",
            SuiteCommand::Chaos => "chaos",
            SuiteCommand::Check => "check",
            SuiteCommand::Selftest => "selftest",
        }
    }
}

/// Planner settings (`[plan]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    /// Fixed cost of one run besides its load: startup, drain, final reads, check, report.
    #[serde(default = "default_run_overhead", deserialize_with = "de_duration")]
    pub run_overhead: Duration,
    /// Further cost of a run, as a fraction of its load duration.
    #[serde(default = "default_overhead_fraction")]
    pub overhead_fraction: f64,
}

fn default_run_overhead() -> Duration {
    Duration::from_secs(15)
}
fn default_overhead_fraction() -> f64 {
    0.10
}

impl Default for PlanSettings {
    fn default() -> Self {
        PlanSettings {
            run_overhead: default_run_overhead(),
            overhead_fraction: default_overhead_fraction(),
        }
    }
}

/// Regression settings (`[regression]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionSettings {
    /// A p99 latency change smaller than this is noise, whatever its percentage.
    #[serde(
        default = "default_min_latency_delta",
        deserialize_with = "de_duration"
    )]
    pub min_latency_delta: Duration,
}

fn default_min_latency_delta() -> Duration {
    Duration::from_millis(2)
}

impl Default for RegressionSettings {
    fn default() -> Self {
        RegressionSettings {
            min_latency_delta: default_min_latency_delta(),
        }
    }
}

/// Workload fields a scenario may set; unset ones come from the suite's `[workload]`,
/// then from the harness defaults ([`Scenario::default`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFields {
    pub nodes: Option<usize>,
    pub rate: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub warmup: Option<Duration>,
    pub size: Option<usize>,
    pub channels: Option<usize>,
    pub publishers: Option<usize>,
    pub subscribers_per_node: Option<usize>,
    pub mode: Option<Mode>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub request_timeout: Option<Duration>,
    pub redis_persistence: Option<RedisPersistence>,
    pub redis_replicas: Option<usize>,
    /// Redis Sentinels (0 or 3) that fail the primary over: Redis as teams deploy it.
    pub redis_sentinels: Option<usize>,
}

impl WorkloadFields {
    /// `self` where set, else `base`.
    fn or(&self, base: &WorkloadFields) -> WorkloadFields {
        WorkloadFields {
            nodes: self.nodes.or(base.nodes),
            rate: self.rate.or(base.rate),
            warmup: self.warmup.or(base.warmup),
            size: self.size.or(base.size),
            channels: self.channels.or(base.channels),
            publishers: self.publishers.or(base.publishers),
            subscribers_per_node: self.subscribers_per_node.or(base.subscribers_per_node),
            mode: self.mode.or(base.mode),
            request_timeout: self.request_timeout.or(base.request_timeout),
            redis_persistence: self.redis_persistence.or(base.redis_persistence),
            redis_replicas: self.redis_replicas.or(base.redis_replicas),
            redis_sentinels: self.redis_sentinels.or(base.redis_sentinels),
        }
    }

    /// Applies the set fields to a harness scenario.
    fn apply(&self, s: &mut Scenario) {
        if let Some(v) = self.nodes {
            s.nodes = v;
        }
        if let Some(v) = self.rate {
            s.rate = v;
        }
        if let Some(v) = self.warmup {
            s.warmup = v;
        }
        if let Some(v) = self.size {
            s.size = v;
        }
        if let Some(v) = self.channels {
            s.channels = v;
        }
        if let Some(v) = self.publishers {
            s.publishers = v;
        }
        if let Some(v) = self.subscribers_per_node {
            s.subscribers_per_node = v;
        }
        if let Some(v) = self.mode {
            s.mode = v;
        }
        if let Some(v) = self.request_timeout {
            s.request_timeout = v;
        }
        if let Some(v) = self.redis_persistence {
            s.redis.persistence = v;
        }
        if let Some(v) = self.redis_replicas {
            s.redis.replicas = v;
        }
        if let Some(v) = self.redis_sentinels {
            s.redis.sentinels = v;
        }
    }
}

/// One `[[scenario]]` of a suite.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteScenario {
    /// Directory name under the night and the scenario name in reports and trends.
    pub name: String,
    pub command: SuiteCommand,
    /// Not allowed for `check` (the archived run says what it drove).
    pub target: Option<TargetKind>,
    /// Relative weight when the planner splits the budget (exclusive with `duration`).
    pub share: Option<f64>,
    /// A fixed load duration, warmup included (exclusive with `share`).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub duration: Option<Duration>,
    /// The shortest duration worth running; below it the budget is too small [default: 10s].
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_duration: Option<Duration>,
    /// Budget beyond this goes to the other scenarios.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_duration: Option<Duration>,
    /// Chaos: the fault kinds to mix; those the machine cannot inject are dropped.
    #[serde(default)]
    pub faults: Vec<FaultKind>,
    /// Chaos: time between fault starts (shortened so every kind fits the duration).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// Chaos: quiet time with load after the last fault [default: 10s, at most a quarter
    /// of the run after warmup].
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub recovery: Option<Duration>,
    /// Violations in this scenario's Redis runs are expected: reported, not failures.
    /// Defaults to true for Redis; bus runs may never violate.
    pub expect_violations: Option<bool>,
    /// Whether a latency/throughput regression against the previous night fails the
    /// night [default: true for bench, false for chaos and check].
    pub gate_performance: Option<bool>,
    /// Check: the results directory to re-verify (relative to the suite file).
    pub dir: Option<PathBuf>,

    // Workload fields (see [`WorkloadFields`]).
    pub nodes: Option<usize>,
    pub rate: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub warmup: Option<Duration>,
    pub size: Option<usize>,
    pub channels: Option<usize>,
    pub publishers: Option<usize>,
    pub subscribers_per_node: Option<usize>,
    pub mode: Option<Mode>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub request_timeout: Option<Duration>,
    pub redis_persistence: Option<RedisPersistence>,
    pub redis_replicas: Option<usize>,
    pub redis_sentinels: Option<usize>,
}

/// The default shortest load duration of a budget-shared scenario.
pub const DEFAULT_MIN_DURATION: Duration = Duration::from_secs(10);

impl SuiteScenario {
    fn workload_fields(&self) -> WorkloadFields {
        WorkloadFields {
            nodes: self.nodes,
            rate: self.rate,
            warmup: self.warmup,
            size: self.size,
            channels: self.channels,
            publishers: self.publishers,
            subscribers_per_node: self.subscribers_per_node,
            mode: self.mode,
            request_timeout: self.request_timeout,
            redis_persistence: self.redis_persistence,
            redis_replicas: self.redis_replicas,
            redis_sentinels: self.redis_sentinels,
        }
    }

    /// The target, `bus` when unset.
    pub fn target_kind(&self) -> TargetKind {
        self.target.unwrap_or(TargetKind::Bus)
    }

    /// How many target runs one execution makes (`both` runs the bus, then Redis).
    pub fn target_runs(&self) -> u32 {
        match (self.command, self.target_kind()) {
            (SuiteCommand::Check | SuiteCommand::Selftest, _) => 1,
            (_, TargetKind::Both) => 2,
            _ => 1,
        }
    }

    pub fn runs_redis(&self) -> bool {
        !self.is_fixed() && matches!(self.target_kind(), TargetKind::Redis | TargetKind::Both)
    }

    /// A check or a selftest: a fixed cost, no load of its own to plan.
    pub fn is_fixed(&self) -> bool {
        matches!(self.command, SuiteCommand::Check | SuiteCommand::Selftest)
    }

    pub fn runs_bus(&self) -> bool {
        !self.is_fixed() && matches!(self.target_kind(), TargetKind::Bus | TargetKind::Both)
    }

    /// Whether violations of this scenario's Redis runs are expected.
    pub fn redis_violations_expected(&self) -> bool {
        self.expect_violations.unwrap_or(true)
    }

    pub fn gates_performance(&self) -> bool {
        self.gate_performance
            .unwrap_or(self.command == SuiteCommand::Bench)
    }

    pub fn min_duration(&self) -> Duration {
        self.min_duration.unwrap_or(DEFAULT_MIN_DURATION)
    }
}

/// A parsed suite file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Layout version; must be 1.
    pub version: u32,
    /// The JUnit test suite name (`classname` of every test case).
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub plan: PlanSettings,
    #[serde(default)]
    pub regression: RegressionSettings,
    /// Defaults for every scenario's workload fields.
    #[serde(default)]
    pub workload: WorkloadFields,
    #[serde(rename = "scenario", default)]
    pub scenarios: Vec<SuiteScenario>,
    /// Where the suite came from, for messages (not part of the file).
    #[serde(skip)]
    pub source: String,
    /// The directory `check` scenarios' `dir` is relative to (not part of the file).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

impl Suite {
    /// Parses suite text; `source` names it in errors and `base_dir` anchors `check` dirs.
    /// The suite is validated.
    pub fn parse(text: &str, source: &str, base_dir: &Path) -> Result<Suite, SuiteError> {
        let mut suite: Suite = toml::from_str(text).map_err(|e| SuiteError::Parse {
            path: source.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        suite.source = source.to_string();
        suite.base_dir = base_dir.to_path_buf();
        suite.validate()?;
        Ok(suite)
    }

    /// Reads and validates a suite file.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Suite::parse(&text, &path.display().to_string(), base)
    }

    /// The suite built into the binary; `check` dirs in it are relative to the working
    /// directory.
    pub fn default_suite() -> Suite {
        Suite::parse(DEFAULT_SUITE, DEFAULT_SUITE_PATH, Path::new("."))
            .expect("the shipped default suite is valid")
    }

    fn invalid(&self, message: impl Into<String>) -> SuiteError {
        SuiteError::Invalid {
            path: self.source.clone(),
            message: message.into(),
        }
    }

    /// Checks every field; the error names the scenario and the field.
    pub fn validate(&self) -> Result<(), SuiteError> {
        if self.version != SUITE_VERSION {
            return Err(self.invalid(format!(
                "`version` must be {SUITE_VERSION}, got {}",
                self.version
            )));
        }
        if !valid_name(&self.name) {
            return Err(self.invalid(format!(
                "`name` must be 1-64 letters, digits, '-', '_' or '.', got {:?}",
                self.name
            )));
        }
        let f = self.plan.overhead_fraction;
        if !f.is_finite() || !(0.0..=10.0).contains(&f) {
            return Err(self.invalid(format!(
                "`plan.overhead_fraction` must be between 0 and 10, got {f}"
            )));
        }
        if self.scenarios.is_empty() {
            return Err(self.invalid("no [[scenario]] entries"));
        }
        let mut names = HashSet::new();
        for s in &self.scenarios {
            if !valid_name(&s.name) {
                return Err(self.invalid(format!(
                    "scenario name {:?}: must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'",
                    s.name
                )));
            }
            if !names.insert(s.name.as_str()) {
                return Err(self.invalid(format!("scenario name {:?} appears twice", s.name)));
            }
            self.validate_scenario(s)
                .map_err(|m| self.invalid(format!("scenario {:?}: {m}", s.name)))?;
        }
        Ok(())
    }

    fn validate_scenario(&self, s: &SuiteScenario) -> Result<(), String> {
        let workload_set = s.workload_fields() != WorkloadFields::default();
        match s.command {
            SuiteCommand::Check => {
                if s.dir.is_none() {
                    return Err("`dir` is required for command = \"check\"".into());
                }
                let extra = [
                    (s.target.is_some(), "target"),
                    (s.share.is_some(), "share"),
                    (s.duration.is_some(), "duration"),
                    (s.min_duration.is_some(), "min_duration"),
                    (s.max_duration.is_some(), "max_duration"),
                    (!s.faults.is_empty(), "faults"),
                    (s.interval.is_some(), "interval"),
                    (s.recovery.is_some(), "recovery"),
                    (workload_set, "workload fields"),
                ];
                if let Some((_, field)) = extra.iter().find(|(set, _)| *set) {
                    return Err(format!(
                        "`{field}` does not apply to command = \"check\" (it re-checks a saved run)"
                    ));
                }
                return Ok(());
            }
            SuiteCommand::Selftest => {
                let extra = [
                    (s.target.is_some(), "target"),
                    (s.share.is_some(), "share"),
                    (s.duration.is_some(), "duration"),
                    (s.min_duration.is_some(), "min_duration"),
                    (s.max_duration.is_some(), "max_duration"),
                    (!s.faults.is_empty(), "faults"),
                    (s.interval.is_some(), "interval"),
                    (s.recovery.is_some(), "recovery"),
                    (s.dir.is_some(), "dir"),
                    (workload_set, "workload fields"),
                ];
                if let Some((_, field)) = extra.iter().find(|(set, _)| *set) {
                    return Err(format!(
                        "`{field}` does not apply to command = \"selftest\" (its cases are fixed)"
                    ));
                }
                return Ok(());
            }
            SuiteCommand::Bench => {
                if !s.faults.is_empty() || s.interval.is_some() {
                    return Err("`faults` and `interval` apply to command = \"chaos\" only".into());
                }
            }
            SuiteCommand::Chaos => {
                if s.faults.is_empty() {
                    return Err("`faults` must list at least one fault kind for chaos".into());
                }
                let mut seen = HashSet::new();
                for k in &s.faults {
                    if !seen.insert(k) {
                        return Err(format!("fault {k} is listed twice"));
                    }
                }
                if s.interval.is_some_and(|i| i.is_zero()) {
                    return Err("`interval` must be positive".into());
                }
            }
        }
        if s.dir.is_some() {
            return Err("`dir` applies to command = \"check\" only".into());
        }
        if s.expect_violations == Some(true) && !s.runs_redis() {
            return Err(
                "`expect_violations` applies to Redis runs only: bus runs may never violate".into(),
            );
        }
        match (s.share, s.duration) {
            (Some(_), Some(_)) => return Err("set `share` or `duration`, not both".into()),
            (None, None) => return Err("set `share` (of the budget) or a fixed `duration`".into()),
            (Some(share), None) if !share.is_finite() || share <= 0.0 => {
                return Err(format!("`share` must be a positive number, got {share}"));
            }
            (None, Some(d)) if d.is_zero() => return Err("`duration` must be positive".into()),
            _ => {}
        }
        if let (Some(min), Some(max)) = (s.min_duration, s.max_duration) {
            if min > max {
                return Err("`min_duration` is longer than `max_duration`".into());
            }
        }
        if s.min_duration.is_some_and(|d| d.is_zero()) {
            return Err("`min_duration` must be positive".into());
        }
        // The harness's own validation, at the shortest duration the planner may pick.
        let probe_duration = s.duration.unwrap_or_else(|| s.min_duration());
        let scenario = self.harness_scenario(s, probe_duration);
        scenario.validate().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The harness scenario a bench/chaos entry runs at `duration`: workload fields from
    /// the entry, then `[workload]`, then harness defaults; warmup at most a quarter of the
    /// duration.
    pub fn harness_scenario(&self, s: &SuiteScenario, duration: Duration) -> Scenario {
        let mut scenario = Scenario {
            name: s.name.clone(),
            target: s.target_kind(),
            ..Scenario::default()
        };
        s.workload_fields().or(&self.workload).apply(&mut scenario);
        scenario.duration = duration;
        let max_warmup = Duration::from_millis((duration.as_millis() / 4) as u64);
        scenario.warmup = scenario.warmup.min(max_warmup);
        scenario
    }

    /// Where a `check` entry's directory is.
    pub fn check_dir(&self, s: &SuiteScenario) -> Option<PathBuf> {
        s.dir.as_ref().map(|d| {
            if d.is_absolute() {
                d.clone()
            } else {
                self.base_dir.join(d)
            }
        })
    }
}

fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|e| {
        E::custom(format!(
            "bad duration {text:?}: {e} (examples: 30s, 2m, 1500ms)"
        ))
    })
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| parse_duration(&t)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Suite, SuiteError> {
        Suite::parse(text, "test.toml", Path::new("/suites"))
    }

    const MINIMAL: &str = r#"
version = 1
name = "t"
[[scenario]]
name = "b"
command = "bench"
share = 1.0
"#;

    #[test]
    fn shipped_suites_are_valid() {
        let suite = Suite::default_suite();
        assert_eq!(suite.name, "nightly");
        let cmds: Vec<SuiteCommand> = suite.scenarios.iter().map(|s| s.command).collect();
        assert!(cmds.contains(&SuiteCommand::Bench));
        assert!(cmds.contains(&SuiteCommand::Chaos));
        // A fault-free bench of both targets at the same rate.
        assert!(suite
            .scenarios
            .iter()
            .any(|s| s.command == SuiteCommand::Bench && s.target_kind() == TargetKind::Both));
        // Chaos on Redis, for contrast, with violations expected.
        assert!(suite
            .scenarios
            .iter()
            .any(|s| s.command == SuiteCommand::Chaos
                && s.target_kind() == TargetKind::Redis
                && s.redis_violations_expected()));
        // Every fault kind appears in some bus chaos scenario.
        for k in FaultKind::ALL {
            assert!(
                suite
                    .scenarios
                    .iter()
                    .any(|s| s.runs_bus() && s.faults.contains(k)),
                "fault {k} is not covered by the default suite"
            );
        }
        let smoke =
            Suite::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/smoke.toml")).unwrap();
        assert_eq!(smoke.name, "smoke");
    }

    #[test]
    fn minimal_suite_takes_defaults() {
        let suite = parse(MINIMAL).unwrap();
        let s = &suite.scenarios[0];
        assert_eq!(s.target_kind(), TargetKind::Bus);
        assert!(s.gates_performance());
        assert_eq!(suite.plan, PlanSettings::default());
        let h = suite.harness_scenario(s, Duration::from_secs(8));
        assert_eq!(h.name, "b");
        assert_eq!(h.duration, Duration::from_secs(8));
        // The default 5 s warmup is cut to a quarter of the duration.
        assert_eq!(h.warmup, Duration::from_secs(2));
    }

    #[test]
    fn workload_defaults_and_overrides() {
        let suite = parse(
            r#"
version = 1
name = "t"
[workload]
rate = 700
channels = 3
[[scenario]]
name = "b"
command = "bench"
target = "both"
duration = "20s"
rate = 900
redis_persistence = "always"
redis_replicas = 2
redis_sentinels = 3
"#,
        )
        .unwrap();
        let s = &suite.scenarios[0];
        assert_eq!(s.target_runs(), 2);
        let h = suite.harness_scenario(s, Duration::from_secs(20));
        assert_eq!(h.rate, 900.0);
        assert_eq!(h.channels, 3);
        assert_eq!(h.redis.persistence, RedisPersistence::Always);
        assert_eq!((h.redis.replicas, h.redis.sentinels), (2, 3));
        assert_eq!(h.target, TargetKind::Both);
    }

    #[test]
    fn sentinels_without_replicas_are_refused_by_the_harness_validation() {
        let err = parse(
            "version = 1\nname = \"t\"\n[[scenario]]\nname = \"r\"\ncommand = \"chaos\"\ntarget = \"redis\"\nshare = 1.0\nfaults = [\"kill\"]\nredis_sentinels = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("replica"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "version = 2\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\n",
                "`version`",
            ),
            ("version = 1\nname = \"t\"\n", "no [[scenario]]"),
            (
                "version = 1\nname = \"t\"\nbudget = 3\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\n",
                "budget",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\nfautls = [\"kill\"]\n",
                "fautls",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"chaos\"\nshare = 1.0\n",
                "`faults` must list",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"chaos\"\nshare = 1.0\nfaults = [\"explode\"]\n",
                "explode",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\n",
                "`share`",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\nduration = \"5s\"\n",
                "not both",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\nexpect_violations = true\n",
                "bus runs may never violate",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"check\"\n",
                "`dir` is required",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"check\"\ndir = \"x\"\nrate = 5\n",
                "workload fields",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\nrate = -1\n",
                "`rate`",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nduration = \"soon\"\n",
                "bad duration",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"../b\"\ncommand = \"bench\"\nshare = 1.0\n",
                "scenario name",
            ),
            (
                "version = 1\nname = \"t\"\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\n[[scenario]]\nname = \"b\"\ncommand = \"bench\"\nshare = 1.0\n",
                "appears twice",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(needle).to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
            assert!(err.contains("test.toml"), "{err}");
        }
    }

    #[test]
    fn check_dir_is_relative_to_the_suite_file() {
        let suite = parse(
            "version = 1\nname = \"t\"\n[[scenario]]\nname = \"old\"\ncommand = \"check\"\ndir = \"archive/run1\"\n",
        )
        .unwrap();
        let s = &suite.scenarios[0];
        assert_eq!(
            suite.check_dir(s).unwrap(),
            PathBuf::from("/suites/archive/run1")
        );
        assert!(!s.gates_performance());
        assert!(!s.runs_bus() && !s.runs_redis());
    }

    #[test]
    fn redis_violations_are_expected_by_default() {
        let suite = parse(
            "version = 1\nname = \"t\"\n[[scenario]]\nname = \"r\"\ncommand = \"chaos\"\ntarget = \"redis\"\nfaults = [\"kill\"]\nshare = 1.0\n[[scenario]]\nname = \"s\"\ncommand = \"chaos\"\ntarget = \"redis\"\nfaults = [\"kill\"]\nshare = 1.0\nexpect_violations = false\n",
        )
        .unwrap();
        assert!(suite.scenarios[0].redis_violations_expected());
        assert!(!suite.scenarios[1].redis_violations_expected());
        assert!(!suite.scenarios[0].gates_performance());
    }
}
