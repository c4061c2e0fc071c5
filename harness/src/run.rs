//! What the commands do: resolve the scenario, start the target, run the workload,
//! check the history, write the results directory, and pick the exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use raftbus_reports::model::{
    Environment, Mode, Summary, Target, TimeSeries, Verdict, Workload, HISTORY_FILE, SUMMARY_SCHEMA,
};

use crate::check::{check_file, CheckError, CheckOptions};
use crate::cli::{BenchArgs, Cli, Command};
use crate::record::{self, Clock, RecordError, RecorderConfig};
use crate::scenario::{Scenario, ScenarioError, TargetKind};
use crate::target::{self, LoopbackSpawner, Spawner, TargetError};
use crate::workload::{self, LoadError, LoadPlan};

/// Exit codes of the CLI contract.
pub mod exit {
    pub const VALID: u8 = 0;
    pub const VIOLATION: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ENVIRONMENT: u8 = 3;
    pub const REGRESSION: u8 = 4;
    /// Interrupted by Ctrl-C (128 + SIGINT).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("recording failed: {0}")]
    Record(#[from] RecordError),
    #[error("checking failed: {0}")]
    Check(#[from] CheckError),
    #[error("results: {0}")]
    Model(#[from] raftbus_reports::model::ModelError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("report: {0}")]
    Report(#[from] raftbus_reports::ReportError),
    #[error("interrupted")]
    Interrupted,
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Scenario(_) | RunError::Usage(_) => exit::USAGE,
            RunError::Interrupted => exit::INTERRUPTED,
            RunError::Check(CheckError::Parse { .. }) => exit::USAGE,
            _ => exit::ENVIRONMENT,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Runs one command; `Ok` carries the exit code (0 valid, 1 violation).
pub async fn run(cli: Cli) -> Result<u8, RunError> {
    match cli.command {
        Command::Bench(args) => bench(*args).await,
        Command::Check { dir, max_examples } => check(&dir, max_examples),
        Command::Report { dir } => {
            let r = raftbus_reports::render_run(&dir)?;
            println!("report: {}", r.html.display());
            println!("summary: {}", r.markdown.display());
            Ok(exit::VALID)
        }
        Command::Compare { a, b, threshold } => {
            let c = raftbus_reports::compare(&a, &b, threshold)?;
            print!("{}", c.to_text());
            Ok(if c.regressed {
                exit::REGRESSION
            } else {
                exit::VALID
            })
        }
        Command::Trend { root } => {
            let t = raftbus_reports::trend(&root)?;
            println!("{} runs, index: {}", t.runs.len(), t.index_path.display());
            for (dir, why) in &t.skipped {
                eprintln!("skipped {}: {why}", dir.display());
            }
            Ok(exit::VALID)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Flags over the scenario file over defaults, validated, with a seed.
pub fn resolve_scenario(args: &BenchArgs) -> Result<Scenario, RunError> {
    let base = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    let mut s = args.apply(base);
    s.validate()?;
    if s.seed.is_none() {
        // TOML integers are signed 64-bit: seeds stay below 2^63.
        s.seed = Some(rand::random::<u64>() >> 1);
    }
    Ok(s)
}

async fn bench(args: BenchArgs) -> Result<u8, RunError> {
    let scenario = resolve_scenario(&args)?;
    let seed = scenario.seed.expect("resolved");
    let dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("{}-{}", unix_now(), scenario.name))
    });
    std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(io_err(format!("resolve {}", dir.display())))?;
    scenario.write(&dir)?;
    let mut rerun = format!(
        "raftbus bench --scenario {} --seed {seed}",
        dir.join(raftbus_reports::model::SCENARIO_FILE).display()
    );
    if let Some(bin) = &args.node_bin {
        rerun.push_str(&format!(" --node-bin {}", bin.display()));
    }
    eprintln!("raftbus: seed {seed}, results in {}", dir.display());
    eprintln!("raftbus: rerun with: {rerun}");

    let targets: Vec<(Target, PathBuf)> = match scenario.target {
        TargetKind::Bus => vec![(Target::Bus, dir.clone())],
        TargetKind::Redis => vec![(Target::Redis, dir.clone())],
        TargetKind::Both => vec![
            (Target::Bus, dir.join("bus")),
            (Target::Redis, dir.join("redis")),
        ],
    };
    let mut summaries = Vec::new();
    for (target, tdir) in targets {
        std::fs::create_dir_all(&tdir).map_err(io_err(format!("create {}", tdir.display())))?;
        if tdir != dir {
            scenario.write(&tdir)?;
        }
        let work = bench_one(&scenario, &args, target, &tdir, &rerun);
        let summary = tokio::select! {
            r = work => r?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("raftbus: interrupted; servers stopped, results in {} are incomplete", tdir.display());
                return Err(RunError::Interrupted);
            }
        };
        print_summary(&summary, &tdir);
        summaries.push(summary);
    }
    if summaries.len() > 1 {
        print_side_by_side(&summaries);
    }
    // A report that cannot be drawn does not change what the run found.
    match raftbus_reports::render_run(&dir) {
        Ok(r) => println!("report   {}", r.html.display()),
        Err(e) => tracing::warn!(error = %e, "cannot render the report"),
    }
    let code = summaries
        .iter()
        .map(|s| match s.verdict {
            Verdict::Valid => exit::VALID,
            Verdict::Invalid => exit::VIOLATION,
            Verdict::Unknown => exit::ENVIRONMENT,
        })
        .max()
        .unwrap_or(exit::VALID);
    Ok(code)
}

/// One target: start it, load it, check, write the results into `dir`.
async fn bench_one(
    s: &Scenario,
    args: &BenchArgs,
    target: Target,
    dir: &Path,
    rerun: &str,
) -> Result<Summary, RunError> {
    let seed = s.seed.expect("resolved");
    let started_at = unix_now();
    for sub in ["logs", "data"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io_err(format!("create {sub} dir")))?;
    }
    let spawner: Arc<dyn Spawner> = Arc::new(LoopbackSpawner);
    let mut cluster = match target {
        Target::Bus => {
            target::bus::start(dir, s.nodes, args.node_bin.as_deref(), spawner.clone()).await?
        }
        Target::Redis => target::redis::start(dir, &s.redis, spawner.clone()).await?,
    };
    let clock = Clock::new();
    let (recorder, handle) = record::start(RecorderConfig {
        dir: dir.to_path_buf(),
        clock: clock.clone(),
        warmup_s: s.warmup.as_secs_f64(),
        duration_s: s.duration.as_secs_f64(),
        publishers: s.publishers,
        peak_rate_per_publisher: s.peak_rate() / s.publishers as f64,
    })?;
    let plan = LoadPlan {
        scenario: Arc::new(s.clone()),
        seed,
        target,
        publish_endpoints: cluster.publish_endpoints(),
        endpoints: cluster.endpoints(),
        kill_subscribers_at: args.debug_kill_subscribers_at,
        label: format!("{target:?}").to_lowercase(),
    };
    let load = workload::run(&plan, &clock, recorder).await;
    // The recorder finishes once every task holding a clone is gone.
    let output = handle.finish().await?;
    let load = load?;
    let mut notes = cluster.network_notes();
    if let Err(e) = cluster.check_alive() {
        tracing::warn!(error = %e, "a node died during the run");
        notes.push(format!("a node died during the run: {e}"));
    }
    if !load.drained {
        notes.push("subscribers did not catch up within the drain timeout".into());
    }
    for node in &load.final_unreadable {
        notes.push(format!("final streams of {node} could not be read"));
    }
    if let Some(killed) = load.killed_subscribers {
        if killed == 0 {
            tracing::warn!("the subscriber kill hook found no subscriber connection to kill");
        }
        notes.push(format!("test hook killed {killed} subscriber connections"));
    }
    if output.untimed > 0 {
        notes.push(format!(
            "{} acks/deliveries arrived too late to be timed",
            output.untimed
        ));
    }
    // Stopping waits (briefly) for each process; keep that off the async workers.
    tokio::task::block_in_place(|| cluster.shutdown());
    let network = cluster.network().to_string();
    let (version, detail, node_count) = (
        cluster.version.clone(),
        cluster.detail.clone(),
        cluster.nodes().len(),
    );
    drop(cluster);

    let outcome = check_file(
        &dir.join(HISTORY_FILE),
        &CheckOptions {
            mode: s.mode,
            max_examples: 10,
        },
    )?;
    let summary = Summary {
        schema: SUMMARY_SCHEMA.to_string(),
        name: s.name.clone(),
        target,
        target_detail: detail,
        seed,
        verdict: outcome.verdict,
        started_at,
        rerun: rerun.to_string(),
        workload: Workload {
            rate: s.rate,
            duration_s: s.duration.as_secs_f64(),
            warmup_s: s.warmup.as_secs_f64(),
            size: s.size,
            mode: s.mode,
            channels: s.channels,
            publishers: s.publishers,
            subscribers_per_node: s.subscribers_per_node,
            nodes: node_count,
        },
        throughput: output.throughput,
        latency_us: output.latency,
        checks: outcome.checks,
        faults: Vec::new(),
        recovery: outcome.recovery,
        environment: environment(network, version, notes),
    };
    summary.write(dir)?;
    TimeSeries {
        warmup_s: s.warmup.as_secs_f64(),
        rows: output.rows,
        extra: Default::default(),
    }
    .write(dir)?;
    if summary.verdict == Verdict::Valid {
        // Server data (AOF, Raft logs) is only kept to debug a failed run.
        let _ = std::fs::remove_dir_all(dir.join("data"));
    }
    Ok(summary)
}

fn environment(network: String, target_version: String, notes: Vec<String>) -> Environment {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    Environment {
        network,
        kernel,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        target_version,
        notes,
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "VALID",
        Verdict::Invalid => "INVALID",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// The short result table on stdout.
pub fn print_summary(s: &Summary, dir: &Path) {
    let c = &s.checks;
    let l = &s.latency_us;
    println!(
        "{} {} ({}) — verdict {}",
        s.name,
        format!("{:?}", s.target).to_lowercase(),
        s.target_detail,
        verdict_word(s.verdict)
    );
    println!(
        "  throughput  offered {:.0}/s  achieved {:.0}/s",
        s.throughput.offered_per_s, s.throughput.achieved_per_s
    );
    println!("  latency µs        count      p50      p90      p99    p99.9      max");
    for (name, p) in [
        ("publish→ack", &l.publish_ack),
        ("end-to-end", &l.end_to_end),
        ("send lag", &l.send_lag),
    ] {
        println!(
            "  {name:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.count, p.p50, p.p90, p.p99, p.p999, p.max
        );
    }
    println!(
        "  checks  acked {}  failed {}  indeterminate {}  delivered {}",
        c.acked, c.failed, c.indeterminate, c.delivered
    );
    println!(
        "          lost {}  duplicated {}  reordered {}  phantom {}  corrupted {}  diverged {}  realtime {}  at-most-once gaps {}",
        c.lost, c.duplicated, c.reordered, c.phantom, c.corrupted, c.diverged, c.realtime_violations, c.at_most_once_gaps
    );
    for v in &c.violations {
        println!("  violation {} ({}): {}", v.kind, v.count, v.property);
        for e in v.examples.iter().take(3) {
            println!("    e.g. {e}");
        }
    }
    println!("  results  {}", dir.display());
    if s.verdict != Verdict::Valid {
        println!("  rerun    {}", s.rerun);
    }
}

fn print_side_by_side(summaries: &[Summary]) {
    let name = |s: &Summary| format!("{:?}", s.target).to_lowercase();
    println!();
    print!("{:<22}", "");
    for s in summaries {
        print!("{:>16}", name(s));
    }
    println!();
    type Cell = Box<dyn Fn(&Summary) -> String>;
    let rows: Vec<(&str, Cell)> = vec![
        ("verdict", Box::new(|s| verdict_word(s.verdict).to_string())),
        (
            "achieved /s",
            Box::new(|s| format!("{:.0}", s.throughput.achieved_per_s)),
        ),
        (
            "ack p50 µs",
            Box::new(|s| s.latency_us.publish_ack.p50.to_string()),
        ),
        (
            "ack p99 µs",
            Box::new(|s| s.latency_us.publish_ack.p99.to_string()),
        ),
        (
            "ack max µs",
            Box::new(|s| s.latency_us.publish_ack.max.to_string()),
        ),
        (
            "e2e p50 µs",
            Box::new(|s| s.latency_us.end_to_end.p50.to_string()),
        ),
        (
            "e2e p99 µs",
            Box::new(|s| s.latency_us.end_to_end.p99.to_string()),
        ),
        ("lost", Box::new(|s| s.checks.lost.to_string())),
        (
            "indeterminate",
            Box::new(|s| s.checks.indeterminate.to_string()),
        ),
    ];
    for (label, f) in rows {
        print!("{label:<22}");
        for s in summaries {
            print!("{:>16}", f(s));
        }
        println!();
    }
}

/// `raftbus check DIR`: re-runs the checkers on `DIR/history.jsonl`.
fn check(dir: &Path, max_examples: usize) -> Result<u8, RunError> {
    let mode = match Summary::read(dir) {
        Ok(s) => s.workload.mode,
        Err(_) => match Scenario::load(&dir.join(raftbus_reports::model::SCENARIO_FILE)) {
            Ok(s) => s.mode,
            Err(_) => {
                tracing::warn!("no summary.json or scenario.toml; assuming stream mode");
                Mode::Stream
            }
        },
    };
    let outcome = check_file(
        &dir.join(HISTORY_FILE),
        &CheckOptions { mode, max_examples },
    )?;
    let c = &outcome.checks;
    println!(
        "verdict {}: acked {} failed {} indeterminate {} delivered {} lost {} duplicated {} reordered {} phantom {} corrupted {} diverged {} realtime {} failed-but-committed {} at-most-once gaps {}",
        verdict_word(outcome.verdict),
        c.acked, c.failed, c.indeterminate, c.delivered, c.lost, c.duplicated, c.reordered,
        c.phantom, c.corrupted, c.diverged, c.realtime_violations, c.failed_but_committed,
        c.at_most_once_gaps
    );
    for v in &c.violations {
        println!("violation {} ({}): {}", v.kind, v.count, v.property);
        for e in &v.examples {
            println!("  {e}");
        }
    }
    Ok(match outcome.verdict {
        Verdict::Valid => exit::VALID,
        Verdict::Invalid => exit::VIOLATION,
        Verdict::Unknown => exit::ENVIRONMENT,
    })
}
