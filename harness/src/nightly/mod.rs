//! `raftbus nightly`: run a suite of scenarios that fits a time budget, rerun failures
//! once with the same seed, compare with the previous night, and write what CI shows.
//!
//! - [`suite`] — the suite file (`harness/suites/*.toml`) as validated data.
//! - [`plan`] — the planner: budget → durations, faults filtered by what the machine can do.
//! - [`exec`] — one harness command as a logged child process with a deadline.
//! - [`results`] — attempts, how they are judged, flaky/reproducible, regression findings.
//! - [`night`] — night directory names (`YYYY-MM-DD` UTC) and the previous night.
//! - [`junit`] — `ROOT/<night>/junit.xml`, one test case per scenario.
//! - [`latest`] — `ROOT/latest.md`, the summary for a CI comment.
//!
//! [`run_nightly`] is the entry point. Each scenario runs as its own `raftbus bench|chaos|check`
//! process (a fresh process builds its own lab and makes the rerun command exact), into
//! `ROOT/<night>/<scenario>/`, with its output in `nightly.log` there.
//!
//! Exit codes ([`NightlyOutcome::exit_code`]): 0 every scenario valid and no gated
//! regression; 1 a correctness violation (bus runs, or Redis runs whose scenario does not
//! expect violations); 3 an environment problem; 4 a performance regression beyond the
//! threshold against the previous night. When several apply, the lowest-numbered
//! non-zero one of 1, 3, 4 wins in that order. Errors before anything runs
//! ([`NightlyError`]) map to 2 (bad suite, budget too small) or 3.
//!
//! JUnit policy: a violation is a `<failure>` whether or not the rerun reproduces it (the
//! recorded history proves it; the `reproduced` property says which); an environment
//! error is an `<error>`; an error followed by a clean rerun passes with a `flaky`
//! property and a note; a gated regression is a `<failure type="regression">`.

pub mod coverage;
pub mod exec;
pub mod junit;
pub mod latest;
pub mod night;
pub mod plan;
pub mod results;
pub mod suite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raftbus_faults::{Capabilities, FaultKind};
use raftbus_reports::model::{Summary, Target};

use self::exec::{run_logged, Invocation};
use self::plan::{Plan, PlanError, PlannedScenario};
use self::results::{
    final_status, judge_check, judge_runs, night_exit_code, performance_findings, Attempt,
    AttemptVerdict, RegressionCheck, ScenarioResult, Status,
};
use self::suite::{Suite, SuiteCommand, SuiteError};
use crate::scenario::TargetKind;

/// The file a scenario's child output goes to, in its results directory.
pub const LOG_FILE: &str = "nightly.log";
/// The scenario file nightly writes for a bench/chaos scenario, in its results directory.
pub const INPUT_FILE: &str = "nightly-input.toml";
pub const JUNIT_FILE: &str = "junit.xml";
pub const LATEST_FILE: &str = "latest.md";
/// The copy of `latest.md` kept in each night's directory.
pub const NIGHT_SUMMARY_FILE: &str = "summary.md";
/// Suffix of a rerun's results directory (`ROOT/<night>/<scenario>.rerun/`).
pub const RERUN_SUFFIX: &str = ".rerun";
/// Suffix of the results directory in the rerun command printed for people.
pub const REPRO_SUFFIX: &str = ".repro";

/// How to run a night.
#[derive(Debug, Clone)]
pub struct NightlyOptions {
    /// Total wall time to plan for (reruns of failures come on top).
    pub budget: Duration,
    /// ROOT: nights go to `ROOT/<night>/`, plus `ROOT/index.html` and `ROOT/latest.md`.
    pub out_root: PathBuf,
    /// A suite file; `None` uses the built-in `harness/suites/nightly.toml`.
    pub suite: Option<PathBuf>,
    /// The `raftbus` binary each scenario runs as (normally `std::env::current_exe()`).
    pub raftbus_bin: PathBuf,
    /// Passed on as `--node-bin`; by default `raftbus-node` next to `raftbus_bin`.
    pub node_bin: Option<PathBuf>,
    /// Passed on as `--hosts` to bench and chaos scenarios: run them on these hosts.
    pub hosts: Option<PathBuf>,
    /// Relative worsening of p99 or throughput that counts as a regression.
    pub threshold: f64,
    /// What the machine supports; `None` probes it when the suite has chaos scenarios.
    pub capabilities: Option<Capabilities>,
    /// A failpoint build of the node, for `selftest` scenarios and chaos with `failpoint`
    /// faults; by default built from the source tree (see [`crate::selftest`]).
    pub failpoint_node_bin: Option<PathBuf>,
}

impl NightlyOptions {
    pub fn new(budget: Duration, out_root: PathBuf, raftbus_bin: PathBuf) -> NightlyOptions {
        NightlyOptions {
            budget,
            out_root,
            suite: None,
            raftbus_bin,
            node_bin: None,
            hosts: None,
            threshold: raftbus_reports::DEFAULT_THRESHOLD,
            capabilities: None,
            failpoint_node_bin: None,
        }
    }
}

/// Everything a night found, as written to junit.xml and latest.md.
#[derive(Debug, Clone)]
pub struct NightReport {
    pub root: PathBuf,
    /// The night directory's name under ROOT.
    pub night: String,
    pub suite: String,
    pub suite_source: String,
    pub started_unix: i64,
    pub elapsed: Duration,
    pub threshold: f64,
    pub hostname: String,
    pub plan: Plan,
    pub results: Vec<ScenarioResult>,
    pub exit_code: u8,
    /// Why `ROOT/index.html` could not be written, if it could not.
    pub trend_error: Option<String>,
}

/// What [`run_nightly`] produced.
#[derive(Debug, Clone)]
pub struct NightlyOutcome {
    /// 0 valid, 1 violation, 3 environment, 4 regression.
    pub exit_code: u8,
    pub night_dir: PathBuf,
    pub junit_path: PathBuf,
    pub latest_path: PathBuf,
    /// `ROOT/index.html`, when the trend view could be written.
    pub index_path: Option<PathBuf>,
    pub report: NightReport,
}

#[derive(Debug, thiserror::Error)]
pub enum NightlyError {
    #[error(transparent)]
    Suite(#[from] SuiteError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Usage(String),
    #[error("environment: {0}")]
    Environment(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl NightlyError {
    /// 2 for a bad suite, budget or option; 3 for the environment.
    pub fn exit_code(&self) -> u8 {
        use crate::run::exit;
        match self {
            NightlyError::Suite(_) | NightlyError::Plan(_) | NightlyError::Usage(_) => exit::USAGE,
            NightlyError::Environment(_) | NightlyError::Io { .. } => exit::ENVIRONMENT,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NightlyError {
    let what = what.into();
    move |source| NightlyError::Io { what, source }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Loads the suite, plans it (printing the plan), runs every scenario, reruns failures,
/// compares with the previous night, and writes junit.xml, latest.md and index.html.
/// Blocks until the night is over; call it from a blocking context.
pub fn run_nightly(
    opts: &NightlyOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<NightlyOutcome, NightlyError> {
    let started = Instant::now();
    let started_unix = unix_now();
    if !opts.threshold.is_finite() || !(0.0..=10.0).contains(&opts.threshold) {
        return Err(NightlyError::Usage(format!(
            "threshold must be between 0 and 10 (a fraction, 0.1 = 10%), got {}",
            opts.threshold
        )));
    }
    let suite = match &opts.suite {
        Some(path) => Suite::load(path)?,
        None => Suite::default_suite(),
    };
    let has_chaos = suite
        .scenarios
        .iter()
        .any(|s| s.command == SuiteCommand::Chaos);
    let caps = match (&opts.capabilities, has_chaos) {
        (Some(c), _) => Some(c.clone()),
        (None, true) => Some(raftbus_faults::probe()),
        (None, false) => None,
    };
    // With --hosts the faults act on the hosts: plan against what every host offers.
    let hosts = match (&opts.hosts, has_chaos) {
        (Some(path), true) => {
            progress(&format!("probing the hosts of {}", path.display()));
            Some(
                tokio::task::block_in_place(|| crate::hosts::check::fault_context(path))
                    .map_err(|e| NightlyError::Environment(e.to_string()))?,
            )
        }
        _ => None,
    };
    let support: Option<&dyn plan::FaultSupport> = match (&hosts, &caps) {
        (Some(h), _) => Some(h),
        (None, Some(c)) => Some(c),
        (None, None) => None,
    };
    let plan = plan::plan(&suite, opts.budget, support)?;
    for line in plan.describe() {
        progress(&line);
    }
    check_environment(opts, &plan)?;

    let root = &opts.out_root;
    std::fs::create_dir_all(root).map_err(io_err(format!("create {}", root.display())))?;
    let root = root
        .canonicalize()
        .map_err(io_err(format!("resolve {}", root.display())))?;
    let night = night::night_name(&root, started_unix);
    let night_dir = root.join(&night);
    std::fs::create_dir_all(&night_dir)
        .map_err(io_err(format!("create {}", night_dir.display())))?;
    progress(&format!(
        "night {night}: results in {}",
        night_dir.display()
    ));

    // The failpoint build, once, when a scenario needs it.
    let failpoint_node = if plan.scenarios.iter().any(needs_failpoint_build) {
        progress("locating the failpoint build of raftbus-node (selftest, failpoint faults)");
        let built = crate::selftest::failpoint_node_bin(
            opts.failpoint_node_bin.as_deref(),
            &night_dir.join("failpoint-build.log"),
        )
        .map_err(|e| NightlyError::Environment(e.to_string()))?;
        progress(&format!("failpoint build: {}", built.display()));
        Some(built)
    } else {
        None
    };
    let ctx = Ctx {
        opts,
        suite: &suite,
        root: &root,
        night: &night,
        night_dir: &night_dir,
        failpoint_node,
    };
    let total = plan.scenarios.len();
    let mut results = Vec::new();
    for (i, p) in plan.scenarios.iter().enumerate() {
        let tag = format!("[{}/{}] {}", i + 1, total, p.name);
        let result = ctx.run_scenario(p, &tag, progress)?;
        progress(&format!("{tag}: {}", result_line(&result)));
        results.push(result);
    }
    for s in &plan.skipped {
        results.push(ScenarioResult {
            name: s.name.clone(),
            command: suite
                .scenarios
                .iter()
                .find(|x| x.name == s.name)
                .map(|x| x.command.as_str().to_string())
                .unwrap_or_default(),
            target: String::new(),
            seed: None,
            plan: None,
            status: Status::Skipped,
            flaky: false,
            reproduced: None,
            first: None,
            rerun: None,
            regression: None,
            notes: Vec::new(),
            skip_reason: Some(s.reason.clone()),
        });
    }

    let exit_code = night_exit_code(&results);
    let (index_path, trend_error) = match raftbus_reports::trend(&root) {
        Ok(t) => (Some(t.index_path), None),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the trend view");
            (None, Some(e.to_string()))
        }
    };
    let report = NightReport {
        root: root.clone(),
        night: night.clone(),
        suite: suite.name.clone(),
        suite_source: suite.source.clone(),
        started_unix,
        elapsed: started.elapsed(),
        threshold: opts.threshold,
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        plan,
        results,
        exit_code,
        trend_error,
    };
    let junit_path = night_dir.join(JUNIT_FILE);
    std::fs::write(&junit_path, junit::render(&report))
        .map_err(io_err(format!("write {}", junit_path.display())))?;
    let markdown = latest::render(&report);
    let latest_path = root.join(LATEST_FILE);
    std::fs::write(&latest_path, &markdown)
        .map_err(io_err(format!("write {}", latest_path.display())))?;
    let night_summary = night_dir.join(NIGHT_SUMMARY_FILE);
    std::fs::write(&night_summary, latest::render_for_night(&report))
        .map_err(io_err(format!("write {}", night_summary.display())))?;
    progress(&format!(
        "night {night}: exit {exit_code} ({}) in {}; junit {}, summary {}{}",
        exit_meaning(exit_code),
        humantime::format_duration(Duration::from_secs(report.elapsed.as_secs())),
        junit_path.display(),
        latest_path.display(),
        index_path
            .as_ref()
            .map(|p| format!(", trend {}", p.display()))
            .unwrap_or_default()
    ));
    Ok(NightlyOutcome {
        exit_code,
        night_dir,
        junit_path,
        latest_path,
        index_path,
        report,
    })
}

/// What a night exit code means, in a few words.
pub fn exit_meaning(code: u8) -> &'static str {
    match code {
        0 => "all valid, no regression",
        1 => "correctness violation",
        2 => "bad usage or suite",
        3 => "environment problem",
        4 => "performance regression",
        _ => "unknown",
    }
}

fn node_bin(opts: &NightlyOptions) -> PathBuf {
    opts.node_bin.clone().unwrap_or_else(|| {
        opts.raftbus_bin
            .parent()
            .unwrap_or(Path::new("."))
            .join("raftbus-node")
    })
}

/// Fails early, with exit 3, when a planned run cannot possibly start.
fn check_environment(opts: &NightlyOptions, plan: &Plan) -> Result<(), NightlyError> {
    if !opts.raftbus_bin.is_file() {
        return Err(NightlyError::Environment(format!(
            "the raftbus binary {} does not exist",
            opts.raftbus_bin.display()
        )));
    }
    let targets: Vec<TargetKind> = plan.scenarios.iter().filter_map(|p| p.target).collect();
    let redis = targets
        .iter()
        .any(|t| matches!(t, TargetKind::Redis | TargetKind::Both));
    let bus = targets
        .iter()
        .any(|t| matches!(t, TargetKind::Bus | TargetKind::Both));
    if redis && !on_path("redis-server") {
        return Err(NightlyError::Environment(
            "redis-server is not on PATH and the suite has Redis runs (apt-get install redis-server)"
                .to_string(),
        ));
    }
    let node = node_bin(opts);
    if bus && !node.is_file() {
        return Err(NightlyError::Environment(format!(
            "the node binary {} does not exist and the suite has bus runs (cargo build -p raftbus-node)",
            node.display()
        )));
    }
    for p in &plan.scenarios {
        if let Some(dir) = &p.check_dir {
            if !dir.join(raftbus_reports::model::HISTORY_FILE).is_file() {
                return Err(NightlyError::Environment(format!(
                    "scenario {}: {} has no {}",
                    p.name,
                    dir.display(),
                    raftbus_reports::model::HISTORY_FILE
                )));
            }
        }
    }
    Ok(())
}

/// Whether `p` runs against a failpoint build of the node.
fn needs_failpoint_build(p: &PlannedScenario) -> bool {
    p.command == SuiteCommand::Selftest || p.faults.contains(&FaultKind::Failpoint)
}

struct Ctx<'a> {
    opts: &'a NightlyOptions,
    suite: &'a Suite,
    root: &'a Path,
    night: &'a str,
    night_dir: &'a Path,
    failpoint_node: Option<PathBuf>,
}

impl Ctx<'_> {
    fn run_scenario(
        &self,
        p: &PlannedScenario,
        tag: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ScenarioResult, NightlyError> {
        let dir = self.night_dir.join(&p.name);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        // TOML integers are signed 64-bit: seeds stay below 2^63.
        let seed = (p.command != SuiteCommand::Check).then(|| rand::random::<u64>() >> 1);
        let mut notes = Vec::new();
        let input = dir.join(INPUT_FILE);
        if let Some(scenario) = &p.scenario {
            std::fs::write(&input, scenario.to_toml())
                .map_err(io_err(format!("write {}", input.display())))?;
        }
        for (k, why) in &p.dropped_faults {
            notes.push(format!("fault {k} not injected: {why}"));
        }
        let what = match (p.duration(), seed) {
            (Some(d), Some(seed)) => format!(
                "{} {} for {}, seed {seed}",
                p.command.as_str(),
                p.target_label(),
                humantime::format_duration(d)
            ),
            (None, Some(seed)) if p.command == SuiteCommand::Selftest => {
                format!("selftest, seed {seed}")
            }
            _ => format!(
                "check {}",
                p.check_dir.as_deref().unwrap_or(Path::new("?")).display()
            ),
        };
        progress(&format!("{tag}: {what} → {}", dir.display()));

        let first = self.attempt(p, &dir, &input, seed)?;
        let rerun = if first.verdict == AttemptVerdict::Valid {
            None
        } else {
            let rerun_dir = self.night_dir.join(format!("{}{RERUN_SUFFIX}", p.name));
            progress(&format!(
                "{tag}: {}; rerunning once{} → {}",
                results::attempt_word(&first.verdict),
                if seed.is_some() {
                    " with the same seed"
                } else {
                    ""
                },
                rerun_dir.display()
            ));
            std::fs::create_dir_all(&rerun_dir)
                .map_err(io_err(format!("create {}", rerun_dir.display())))?;
            Some(self.attempt(p, &rerun_dir, &input, seed)?)
        };
        let (status, flaky, reproduced) =
            final_status(&first.verdict, rerun.as_ref().map(|r| &r.verdict));
        let mut result = ScenarioResult {
            name: p.name.clone(),
            command: p.command.as_str().to_string(),
            target: p.target_label().to_string(),
            seed,
            plan: Some(p.clone()),
            status,
            flaky,
            reproduced,
            first: Some(first),
            rerun,
            regression: None,
            notes,
            skip_reason: None,
        };
        if let Some(a) = result.reported_attempt() {
            let injected = a.faults_injected();
            let missing: Vec<&str> = p
                .faults
                .iter()
                .map(FaultKind::as_str)
                .filter(|k| !injected.contains(*k))
                .collect();
            if p.command == SuiteCommand::Chaos
                && !missing.is_empty()
                && !matches!(a.verdict, AttemptVerdict::Error(_))
                && !a.targets.is_empty()
            {
                result.notes.push(format!(
                    "fault kinds planned but not injected in this run: {}",
                    missing.join(", ")
                ));
            }
        }
        if status == Status::Passed
            && !matches!(p.command, SuiteCommand::Check | SuiteCommand::Selftest)
        {
            result.regression = self.compare_previous(p, &result);
            if let Some(r) = &result.regression {
                if r.deltas.is_empty() {
                    result.notes.push(format!(
                        "could not compare with {} (see the log)",
                        r.previous.display()
                    ));
                }
            }
        }
        Ok(result)
    }

    /// Runs `p` once into `dir`.
    fn attempt(
        &self,
        p: &PlannedScenario,
        dir: &Path,
        input: &Path,
        seed: Option<u64>,
    ) -> Result<Attempt, NightlyError> {
        let repro_dir = self.night_dir.join(format!("{}{REPRO_SUFFIX}", p.name));
        let mut repro_args: Vec<String> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let expected_dirs: Vec<(Target, PathBuf)> = match p.command {
            SuiteCommand::Check => {
                let check_dir = p.check_dir.clone().expect("check scenarios have a dir");
                args.extend([
                    "check".to_string(),
                    check_dir.display().to_string(),
                    "--max-examples".to_string(),
                    "5".to_string(),
                ]);
                Vec::new()
            }
            SuiteCommand::Selftest => {
                let seed = seed.expect("selftests have a seed").to_string();
                let node = self
                    .failpoint_node
                    .as_ref()
                    .expect("located before the night started");
                for (out, list) in [(dir, &mut args), (repro_dir.as_path(), &mut repro_args)] {
                    list.extend([
                        "selftest".to_string(),
                        "--seed".to_string(),
                        seed.clone(),
                        "--node-bin".to_string(),
                        node.display().to_string(),
                        "--out".to_string(),
                        out.display().to_string(),
                    ]);
                }
                Vec::new()
            }
            SuiteCommand::Bench | SuiteCommand::Chaos => {
                let seed = seed.expect("bench and chaos have a seed").to_string();
                for (out, list) in [(dir, &mut args), (repro_dir.as_path(), &mut repro_args)] {
                    list.extend([
                        p.command.as_str().to_string(),
                        "--scenario".to_string(),
                        input.display().to_string(),
                        "--seed".to_string(),
                        seed.clone(),
                        "--out".to_string(),
                        out.display().to_string(),
                    ]);
                }
                let mut extra = Vec::new();
                let node = match &self.failpoint_node {
                    Some(fp) if needs_failpoint_build(p) => Some(fp),
                    _ => self.opts.node_bin.as_ref(),
                };
                if let Some(node) = node {
                    extra.extend(["--node-bin".to_string(), node.display().to_string()]);
                }
                if let Some(hosts) = &self.opts.hosts {
                    extra.extend(["--hosts".to_string(), hosts.display().to_string()]);
                }
                if p.command == SuiteCommand::Chaos {
                    let kinds: Vec<&str> = p.faults.iter().map(FaultKind::as_str).collect();
                    extra.extend(["--faults".to_string(), kinds.join(",")]);
                    for (flag, value) in [("--interval", p.interval), ("--recovery", p.recovery)] {
                        if let Some(v) = value {
                            extra.extend([
                                flag.to_string(),
                                humantime::format_duration(v).to_string(),
                            ]);
                        }
                    }
                }
                args.extend(extra.iter().cloned());
                repro_args.extend(extra);
                match p.target {
                    Some(TargetKind::Both) => vec![
                        (Target::Bus, dir.join("bus")),
                        (Target::Redis, dir.join("redis")),
                    ],
                    Some(TargetKind::Redis) => vec![(Target::Redis, dir.to_path_buf())],
                    _ => vec![(Target::Bus, dir.to_path_buf())],
                }
            }
        };
        let inv = Invocation {
            program: self.opts.raftbus_bin.clone(),
            args,
        };
        let command = inv.command_line();
        let rerun_command = if repro_args.is_empty() {
            command.clone()
        } else {
            Invocation {
                program: self.opts.raftbus_bin.clone(),
                args: repro_args,
            }
            .command_line()
        };
        let log = dir.join(LOG_FILE);
        // Generous: a stuck run must not eat the whole night, a slow one must finish.
        let deadline = p.estimate * 3 + Duration::from_secs(120);
        let started = Instant::now();
        let child = match run_logged(&inv, &log, deadline) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Attempt {
                    dir: dir.to_path_buf(),
                    command,
                    rerun_command,
                    child: None,
                    targets: Vec::new(),
                    verdict: AttemptVerdict::Error(format!(
                        "cannot start {}: {e}",
                        self.opts.raftbus_bin.display()
                    )),
                    violations: Vec::new(),
                    expected_violations: Vec::new(),
                    elapsed: started.elapsed(),
                })
            }
        };
        let (targets, verdict, violations, expected_violations) = match p.command {
            SuiteCommand::Check => {
                let checked = p.check_dir.as_deref().and_then(|d| Summary::read(d).ok());
                let expected = checked
                    .is_some_and(|s| s.target == Target::Redis && p.redis_violations_expected);
                let (v, found, exp) = judge_check(&child, expected);
                (Vec::new(), v, found, exp)
            }
            SuiteCommand::Selftest => {
                let (v, found) = results::judge_selftest(&child);
                (Vec::new(), v, found, Vec::new())
            }
            _ => judge_runs(&child, &expected_dirs, p.redis_violations_expected),
        };
        let verdict = match verdict {
            AttemptVerdict::Error(e) => match last_output_line(&log) {
                Some(line) => AttemptVerdict::Error(format!("{e}: {line}")),
                None => AttemptVerdict::Error(e),
            },
            v => v,
        };
        Ok(Attempt {
            dir: dir.to_path_buf(),
            command,
            rerun_command,
            targets,
            verdict,
            violations,
            expected_violations,
            elapsed: child.elapsed,
            child: Some(child),
        })
    }

    /// Compares the reported attempt with the previous night's run of the same scenario.
    fn compare_previous(
        &self,
        p: &PlannedScenario,
        result: &ScenarioResult,
    ) -> Option<RegressionCheck> {
        let current = result.reported_attempt()?.dir.clone();
        let previous = night::previous_results(self.root, self.night, &p.name)?;
        let comparison = match raftbus_reports::compare(&previous, &current, self.opts.threshold) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(scenario = %p.name, error = %e, "cannot compare with the previous night");
                return Some(RegressionCheck {
                    previous,
                    deltas: Vec::new(),
                    findings: Vec::new(),
                    noise: BTreeMap::new(),
                    gated: p.gate_performance,
                    report: None,
                });
            }
        };
        let deltas: Vec<_> = comparison
            .runs
            .iter()
            .flat_map(|r| r.metrics.iter().map(|m| (r.label.clone(), m.clone())))
            .collect();
        let noise: BTreeMap<String, f64> = comparison
            .runs
            .iter()
            .filter_map(|r| {
                let n = [&r.a_dir, &r.b_dir]
                    .into_iter()
                    .filter_map(|d| results::p99_noise(d))
                    .fold(None, |acc: Option<f64>, n| {
                        Some(acc.map_or(n, |a| a.max(n)))
                    })?;
                Some((r.label.clone(), n))
            })
            .collect();
        let min_delta_us = self.suite.regression.min_latency_delta.as_secs_f64() * 1e6;
        let findings = performance_findings(&deltas, self.opts.threshold, min_delta_us, &noise);
        let report_path = current.join("compare.md");
        let report = match std::fs::write(&report_path, comparison.to_markdown()) {
            Ok(()) => Some(report_path),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write compare.md");
                None
            }
        };
        Some(RegressionCheck {
            previous,
            deltas,
            findings,
            noise,
            gated: p.gate_performance,
            report,
        })
    }
}

/// The child's last line of output in `log` (not nightly's own `#` footer), trimmed.
fn last_output_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("# ") && !l.starts_with("$ "))?;
    let mut line: String = line.chars().take(300).collect();
    if line.len() < text.len() && line.chars().count() == 300 {
        line.push('…');
    }
    Some(line)
}

/// The progress line for a finished scenario.
fn result_line(r: &ScenarioResult) -> String {
    let mut parts = vec![r.status.word().to_string()];
    if r.status == Status::Violation {
        parts.push(r.violation_summary());
    }
    if r.status == Status::Error {
        if let Some(AttemptVerdict::Error(e)) = r.failing_attempt().map(|a| &a.verdict) {
            parts.push(e.clone());
        }
    }
    if let Some(a) = r.reported_attempt() {
        for t in &a.targets {
            let l = &t.summary.latency_us;
            parts.push(format!(
                "{} ack p99 {}, {:.0}/s",
                results::target_label(t.target),
                results::fmt_us(l.publish_ack.p99 as f64),
                t.summary.throughput.achieved_per_s
            ));
        }
        if !a.expected_violations.is_empty() {
            let v: Vec<String> = a
                .expected_violations
                .iter()
                .map(|v| format!("{} {}", v.kind, v.count))
                .collect();
            parts.push(format!("expected: {}", v.join(", ")));
        }
    }
    if let Some(note) = r.rerun_note() {
        parts.push(note);
    }
    if let Some(c) = &r.regression {
        if c.regressed() {
            parts.push(format!(
                "{}: {}",
                if c.gated {
                    "REGRESSION"
                } else {
                    "slower (not gated)"
                },
                c.findings.join("; ")
            ));
        } else {
            parts.push("no regression vs previous night".to_string());
        }
    }
    if matches!(r.status, Status::Violation | Status::Error) {
        if let Some(cmd) = r.rerun_command() {
            parts.push(format!("rerun: {cmd}"));
        }
    }
    parts.push(format!("{:.0}s", r.total_elapsed().as_secs_f64()));
    parts.join(" — ")
}
