//! What the commands do: resolve the scenario, start the target, run the workload,
//! check the history, write the results directory, and pick the exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use raftbus_reports::model::{
    Environment, Mode, Summary, Target, TimeSeries, Verdict, Workload, HISTORY_FILE, SUMMARY_SCHEMA,
};

use raftbus_faults::{FaultKind, Lab};
use tokio::sync::watch;

use crate::chaos::{ChaosError, Nemesis, NetworkFacilities, PeerProxies, PlanContext, Schedule};
use crate::check::{check_file, CheckError, CheckOptions};
use crate::cli::{BenchArgs, ChaosArgs, Cli, Command, DemoArgs, NightlyArgs};
use crate::record::{self, Clock, RecordError, RecorderConfig};
use crate::scenario::{Scenario, ScenarioError, TargetKind};
use crate::target::{self, TargetError};
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
    #[error("chaos: {0}")]
    Chaos(#[from] ChaosError),
    #[error("hosts: {0}")]
    Hosts(#[from] crate::hosts::HostsError),
    /// `raftbus lazyfs` on a host.
    #[error("lazyfs: {0}")]
    Lazyfs(String),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Scenario(_) | RunError::Usage(_) => exit::USAGE,
            RunError::Interrupted => exit::INTERRUPTED,
            RunError::Check(CheckError::Parse { .. }) => exit::USAGE,
            RunError::Chaos(ChaosError::Schedule(_) | ChaosError::BadSelector(_)) => exit::USAGE,
            RunError::Hosts(crate::hosts::HostsError::Inventory(_)) => exit::USAGE,
            _ => exit::ENVIRONMENT,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Runs one command; `Ok` carries the exit code (0 valid, 1 violation). `lab` is the lab
/// `main` entered for commands that start servers (`None`: plain loopback).
pub async fn run(cli: Cli, lab: Option<Arc<Lab>>) -> Result<u8, RunError> {
    match cli.command {
        Command::Bench(args) => {
            let scenario = resolve_scenario(&args)?;
            bench(scenario, *args, lab, "bench").await
        }
        Command::Chaos(args) => {
            let scenario = resolve_chaos_scenario(&args)?;
            bench(scenario, args.bench, lab, "chaos").await
        }
        Command::Demo(args) => demo(args, lab).await,
        Command::Nightly(args) => nightly(args),
        Command::Selftest(args) => selftest(args),
        Command::Sweep(args) if args.bench.hosts.is_some() => Err(RunError::Usage(
            "raftbus sweep does not run on --hosts yet; use bench or chaos".into(),
        )),
        Command::Sweep(args) => crate::sweep::run_sweep(*args, lab).await,
        Command::Check { dir, max_examples } => check(&dir, max_examples),
        Command::Hosts(args) => crate::hosts::check::command(args, lab),
        Command::Lazyfs(args) => crate::hosts::lazyfs::command(args.command).await,
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

/// The fixed experiment behind `raftbus demo`.
const DEMO_SCENARIO: &str = include_str!("../scenarios/demo.toml");

/// `raftbus demo`: the shipped demo scenario as a chaos run of the bus and Redis. Without
/// redis-server it still runs the bus half and says how to add the Redis half.
async fn demo(args: DemoArgs, lab: Option<Arc<Lab>>) -> Result<u8, RunError> {
    let mut scenario = Scenario::from_toml(DEMO_SCENARIO, "harness/scenarios/demo.toml")?;
    if target::redis::find_redis_server().is_err() {
        scenario.target = TargetKind::Bus;
        eprintln!(
            "raftbus: redis-server is not on PATH, so the demo runs the bus half only; \
             add the Redis half with: sudo apt-get install -y redis-server"
        );
    }
    scenario.seed = args.seed;
    let scenario = validated_with_seed(scenario)?;
    let bench_args = BenchArgs {
        out: args.out,
        node_bin: args.node_bin,
        ..BenchArgs::default()
    };
    // The rerun command is a plain chaos run of the written scenario.
    let summaries = run_targets(scenario, bench_args, lab, "chaos").await?;
    // The demo is there to show where Redis loses acknowledged writes: its violations are
    // the finding, reported above; the exit code is the bus's verdict.
    for s in summaries.iter().filter(|s| s.target == Target::Redis) {
        if s.verdict == Verdict::Invalid {
            println!(
                "demo     redis broke its promise as expected of it here ({} acked writes lost); the exit code is the bus's verdict",
                s.checks.lost
            );
        }
    }
    Ok(summaries
        .iter()
        .filter(|s| s.target == Target::Bus)
        .map(verdict_code)
        .max()
        .unwrap_or(exit::VALID))
}

/// `raftbus nightly`: each scenario runs as a child `raftbus` process (its own lab).
fn nightly(args: NightlyArgs) -> Result<u8, RunError> {
    let exe = std::env::current_exe().map_err(io_err("find the raftbus executable"))?;
    let mut opts = crate::nightly::NightlyOptions::new(args.budget, args.out, exe);
    opts.suite = args.suite;
    opts.threshold = args.threshold;
    opts.node_bin = args.node_bin;
    opts.hosts = args.hosts;
    opts.failpoint_node_bin = args.failpoint_node_bin;
    let outcome = tokio::task::block_in_place(|| {
        crate::nightly::run_nightly(&opts, &mut |line| eprintln!("nightly: {line}"))
    });
    match outcome {
        Ok(o) => {
            println!("junit   {}", o.junit_path.display());
            println!("latest  {}", o.latest_path.display());
            if let Some(index) = &o.index_path {
                println!("index   {}", index.display());
            }
            Ok(o.exit_code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(e.exit_code())
        }
    }
}

/// `raftbus selftest`: each case runs as a child `raftbus chaos` process (its own lab).
fn selftest(args: crate::cli::SelftestArgs) -> Result<u8, RunError> {
    use crate::selftest;
    let exe = std::env::current_exe().map_err(io_err("find the raftbus executable"))?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(format!("{}-selftest", unix_now())));
    std::fs::create_dir_all(&out).map_err(io_err(format!("create {}", out.display())))?;
    let out = out
        .canonicalize()
        .map_err(io_err(format!("resolve {}", out.display())))?;
    // TOML integers are signed 64-bit: seeds stay below 2^63.
    let seed = args.seed.unwrap_or_else(|| rand::random::<u64>() >> 1);
    let outcome = tokio::task::block_in_place(|| {
        selftest::select(&args.only)?;
        if args.node_bin.is_none() {
            eprintln!("selftest: building the failpoint node (cargo build --release -p raftbus-node --features failpoints --target-dir target/failpoints)");
        }
        let node_bin =
            selftest::failpoint_node_bin(args.node_bin.as_deref(), &out.join("build.log"))?;
        eprintln!(
            "selftest: seed {seed}, node {}, results in {}",
            node_bin.display(),
            out.display()
        );
        let opts = selftest::SelftestOptions {
            raftbus_bin: exe,
            node_bin,
            out: out.clone(),
            seed,
            only: args.only.clone(),
        };
        selftest::run(&opts, &mut |line| eprintln!("selftest: {line}"))
    });
    match outcome {
        Ok(results) => {
            print!("{}", selftest::table(&results, false));
            let code = selftest::exit_code(&results);
            println!(
                "selftest {} (seed {seed}); table {}",
                match code {
                    exit::VALID => "passed: every planted bug caught as its kind, control valid",
                    exit::VIOLATION => "FAILED: a planted bug went unnoticed or was misreported",
                    _ => "inconclusive: a run gave no verdict",
                },
                out.join("selftest.md").display()
            );
            Ok(code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(match e {
                selftest::SelftestError::UnknownCase(..) => exit::USAGE,
                _ => exit::ENVIRONMENT,
            })
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Flags over the scenario file over defaults, validated, with a seed.
pub fn resolve_scenario(args: &BenchArgs) -> Result<Scenario, RunError> {
    let base = base_scenario(args.scenario.as_deref())?;
    validated_with_seed(args.apply(base))
}

/// Like [`resolve_scenario`], with the nemesis flags of `raftbus chaos`.
pub fn resolve_chaos_scenario(args: &ChaosArgs) -> Result<Scenario, RunError> {
    let base = base_scenario(args.bench.scenario.as_deref())?;
    validated_with_seed(args.apply(base))
}

/// The scenario file, or the defaults when none is given.
fn base_scenario(path: Option<&Path>) -> Result<Scenario, RunError> {
    Ok(match path {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    })
}

/// Validates `s` and gives it a random seed when it has none.
fn validated_with_seed(mut s: Scenario) -> Result<Scenario, RunError> {
    s.validate()?;
    if s.seed.is_none() {
        // TOML integers are signed 64-bit: seeds stay below 2^63.
        s.seed = Some(rand::random::<u64>() >> 1);
    }
    Ok(s)
}

async fn bench(
    scenario: Scenario,
    args: BenchArgs,
    lab: Option<Arc<Lab>>,
    command: &str,
) -> Result<u8, RunError> {
    let summaries = run_targets(scenario, args, lab, command).await?;
    Ok(summaries
        .iter()
        .map(verdict_code)
        .max()
        .unwrap_or(exit::VALID))
}

pub(crate) fn verdict_code(s: &Summary) -> u8 {
    match s.verdict {
        Verdict::Valid => exit::VALID,
        Verdict::Invalid => exit::VIOLATION,
        Verdict::Unknown => exit::ENVIRONMENT,
    }
}

/// Runs every target of the scenario in turn, prints and renders; the summaries, in order.
async fn run_targets(
    scenario: Scenario,
    args: BenchArgs,
    lab: Option<Arc<Lab>>,
    command: &str,
) -> Result<Vec<Summary>, RunError> {
    let seed = scenario.seed.expect("resolved");
    // A broken inventory is bad usage: say so before a results directory exists.
    if let Some(path) = &args.hosts {
        crate::hosts::inventory::Inventory::load(path).map_err(crate::hosts::HostsError::from)?;
    }
    let dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("{}-{}", unix_now(), scenario.name))
    });
    std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(io_err(format!("resolve {}", dir.display())))?;
    scenario.write(&dir)?;
    let mut rerun = format!(
        "raftbus {command} --scenario {} --seed {seed}",
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
    let fleet = match &args.hosts {
        Some(path) => Some(Arc::new(tokio::task::block_in_place(|| {
            crate::hosts::check::connect_for_run(path, &dir)
        })?)),
        None => None,
    };
    if let Some(f) = &fleet {
        rerun.push_str(&format!(" --hosts {}", f.inventory.path.display()));
    }
    let mut summaries = Vec::new();
    for (target, tdir) in targets {
        std::fs::create_dir_all(&tdir).map_err(io_err(format!("create {}", tdir.display())))?;
        if tdir != dir {
            scenario.write(&tdir)?;
        }
        let work = bench_one(
            &scenario,
            &args,
            target,
            &tdir,
            &rerun,
            lab.as_ref(),
            fleet.as_ref(),
        );
        let result = tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("raftbus: interrupted; servers stopped, results in {} are incomplete", tdir.display());
                Err(RunError::Interrupted)
            }
        };
        let summary = match result {
            Ok(s) => s,
            Err(e) => {
                // Whatever the run left on the hosts goes now, not at the next run.
                if let Some(f) = &fleet {
                    crate::hosts::check::heal_after_error(f);
                    raftbus_faults::remote::close_stale_masters(&crate::hosts::control_dir(
                        &f.inventory,
                    ));
                }
                return Err(e);
            }
        };
        print_summary(&summary, &tdir);
        summaries.push(summary);
    }
    if let Some(f) = &fleet {
        // The ssh masters of this run (they would otherwise persist).
        raftbus_faults::remote::close_stale_masters(&crate::hosts::control_dir(&f.inventory));
    }
    if summaries.len() > 1 {
        print_side_by_side(&summaries);
    }
    if summaries.iter().any(|s| !s.recovery.is_empty()) {
        let refs: Vec<&Summary> = summaries.iter().collect();
        println!("\ndurability and availability per fault kind (acked lost / seconds without an acknowledged write):");
        print!(
            "{}",
            raftbus_reports::durability::text(&raftbus_reports::durability::rows(&refs))
        );
    }
    let refs: Vec<&Summary> = summaries.iter().collect();
    let cost = raftbus_reports::cost::text(&refs);
    if !cost.is_empty() {
        println!("\ncost of a message (the target's server processes, whole run):");
        print!("{cost}");
    }
    // A report that cannot be drawn does not change what the run found.
    match raftbus_reports::render_run(&dir) {
        Ok(r) => println!("report   {}", r.html.display()),
        Err(e) => tracing::warn!(error = %e, "cannot render the report"),
    }
    Ok(summaries)
}

/// One target: start it, load it, check, write the results into `dir`.
pub(crate) async fn bench_one(
    s: &Scenario,
    args: &BenchArgs,
    target: Target,
    dir: &Path,
    rerun: &str,
    lab: Option<&Arc<Lab>>,
    fleet: Option<&Arc<crate::hosts::Fleet>>,
) -> Result<Summary, RunError> {
    let seed = s.seed.expect("resolved");
    let started_at = unix_now();
    for sub in ["logs", "data"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io_err(format!("create {sub} dir")))?;
    }
    let kind = match target {
        Target::Bus => TargetKind::Bus,
        Target::Redis => TargetKind::Redis,
    };
    let names: Vec<String> = (1..=s.server_count(kind))
        .map(|i| format!("n{i}"))
        .collect();
    let mut ctx = match fleet {
        Some(f) => crate::hosts::check::plan_context(target, names.len(), f),
        None => plan_context(target, names.len(), lab),
    };
    ctx.queue = s.mode == Mode::Queue;
    let schedule = if s.has_faults() {
        let schedule = Schedule::plan(
            seed,
            s.chaos.as_ref(),
            &s.faults,
            s.warmup,
            s.duration,
            &ctx,
        )?;
        eprintln!(
            "raftbus: fault schedule for {} (seed {seed}), then {} quiet:\n{schedule}",
            format!("{target:?}").to_lowercase(),
            humantime::format_duration(schedule.recovery)
        );
        Some(schedule)
    } else {
        None
    };
    // The lazy filesystem under every data dir: for power-loss and torn-write, or on request.
    // On hosts corrupt acts through the host's lazy filesystem server as well.
    let lazy_fs = s.lazy_fs
        || schedule.as_ref().is_some_and(|sch| {
            sch.kinds()
                .iter()
                .any(|k| k.needs_lazy_fs() || (fleet.is_some() && *k == FaultKind::Corrupt))
        });
    if lazy_fs && !ctx.disk {
        return Err(TargetError::Disk(format!(
            "lazy_fs requested but unavailable: {}",
            ctx.disk_reason
        ))
        .into());
    }
    if target == Target::Bus {
        let path = dir.join(target::bus::NODE_CONFIG_FILE);
        std::fs::write(&path, s.bus.node_toml())
            .map_err(io_err(format!("write {}", path.display())))?;
        if s.bus.failpoints.is_some()
            || schedule
                .as_ref()
                .is_some_and(|sch| sch.kinds().contains(&FaultKind::Failpoint))
        {
            let program = target::bus::find_node_bin(args.node_bin.as_deref())?;
            target::bus::prepare_failpoints(dir, &program, s.bus.failpoints.as_deref())?;
        }
    }
    // Delay needs the peer links behind proxies; so do partitions without nftables.
    let needs_proxies = target == Target::Bus
        && fleet.is_none()
        && schedule.as_ref().is_some_and(|sch| {
            sch.steps.iter().any(|st| {
                st.kind == FaultKind::Delay || (st.kind == FaultKind::Partition && !ctx.kernel_net)
            })
        });
    let mut proxies = needs_proxies.then(|| {
        let listen = lab.map_or(std::net::Ipv4Addr::LOCALHOST, |l| l.lab_addr());
        PeerProxies::new(std::net::IpAddr::V4(listen), seed)
    });
    let mut remote_net = None;
    let spawner: Arc<dyn target::Spawner> = match fleet {
        Some(f) => {
            let mut servers = names.clone();
            if target == Target::Redis {
                servers.extend((1..=s.redis.sentinels).map(|i| format!("s{i}")));
            }
            let run = format!(
                "{}-{}-{}",
                unix_now(),
                s.name,
                format!("{target:?}").to_lowercase()
            );
            let remote = target::remote::RemoteSpawner::new(f.clone(), &servers, dir, run)?
                .with_lazy_fs(if lazy_fs { &names } else { &[] });
            remote_net = Some(remote.net());
            Arc::new(remote)
        }
        None => target::lab::spawner_with_disk(
            lab,
            &names,
            lazy_fs.then(|| dir.join(target::DISK_DIR)),
        )?,
    };
    let cluster = match target {
        Target::Bus => {
            target::bus::start_with(
                dir,
                s.nodes,
                args.node_bin.as_deref(),
                spawner.clone(),
                proxies.as_mut(),
            )
            .await?
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
        sentinels: cluster.sentinel_endpoints(),
        kill_subscribers_at: args.debug_kill_subscribers_at,
        queue: (s.mode == Mode::Queue)
            .then(|| workload::consumer::QueueControl::new(s.queue.groups, s.queue.consumers)),
        label: format!("{target:?}").to_lowercase(),
    };
    let shared = Arc::new(std::sync::Mutex::new(cluster));
    let nemesis = schedule.clone().map(|sch| {
        let facilities = NetworkFacilities {
            net: match &remote_net {
                Some(n) => Some(raftbus_faults::NetControl::remote(n.clone())),
                None => lab.filter(|l| l.mode().is_namespaced()).map(|l| l.net()),
            },
            proxies: proxies
                .as_ref()
                .map(PeerProxies::controls)
                .unwrap_or_default(),
            kernel_delay: remote_net.is_some(),
        };
        Nemesis::new(
            sch,
            seed,
            shared.clone(),
            facilities,
            clock.clone(),
            recorder.clone(),
        )
        .with_queue(plan.queue.clone())
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_cost = stop_rx.clone();
    let load_work = async {
        let cpu_window = tokio::spawn(workload::generator_cpu::measure(
            clock.clone(),
            s.warmup,
            s.duration,
        ));
        let r = workload::run(&plan, &clock, recorder).await;
        // The window ends with the schedule, before the drain: normally done by now.
        let generator = if cpu_window.is_finished() {
            cpu_window.await.ok().flatten()
        } else {
            cpu_window.abort();
            None
        };
        // The load is over (or failed): the nemesis heals and stops.
        let _ = stop_tx.send(true);
        (r, generator)
    };
    let nemesis_work = async move {
        match nemesis {
            Some(n) => Some(n.run(stop_rx).await),
            None => None,
        }
    };
    // CPU, memory and disk writes die with a process: sample them (and the bus's fsyncs)
    // every second, so that each lifetime a fault ends keeps its last figures.
    let sampler = target::cost::sample_periodically(shared.clone(), stop_rx_cost);
    let ((load, generator), faults, ()) = tokio::join!(load_work, nemesis_work, sampler);
    let mut cluster = Arc::try_unwrap(shared)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| {
            unreachable!("the nemesis holds no reference to the cluster once done")
        });
    // The recorder finishes once every task holding a clone is gone.
    let output = handle.finish().await?;
    let load = load?;
    let mut notes = cluster.network_notes();
    let mut windows = Vec::new();
    if let (Some(schedule), Some(faults)) = (&schedule, faults) {
        notes.push(format!(
            "chaos schedule (seed {seed}{}): {}",
            if schedule.explicit { ", explicit" } else { "" },
            schedule.one_line()
        ));
        if proxies.is_some() {
            notes.push(
                "delay: userspace TCP proxies on every peer link (this kernel has no netem); \
                 partitions also blackhole the proxies of blocked pairs"
                    .into(),
            );
        }
        for kind in schedule.kinds() {
            if !faults.windows.iter().any(|w| w.kind == kind.as_str()) {
                notes.push(format!("scheduled fault kind {kind} was never applied"));
            }
        }
        if faults.stopped_early {
            notes.push("the nemesis stopped before the end of its schedule".into());
        }
        notes.extend(faults.notes);
        windows = faults.windows;
    }
    if target == Target::Bus {
        notes.push(format!(
            "bus: read_consistency = \"{}\"",
            s.bus.read_consistency.as_str()
        ));
    }
    if load.reads.skipped > 0 {
        notes.push(format!(
            "read workload: {} of {} scheduled reads skipped ({} already in flight)",
            load.reads.skipped,
            load.reads.sent + load.reads.skipped,
            workload::reader::MAX_IN_FLIGHT
        ));
    }
    if target == Target::Bus && s.bus.fsync == crate::scenario::BusFsync::Never {
        notes.push("bus: fsync = \"never\" (known-bad: appends acknowledged without fsync)".into());
    }
    drop(proxies);
    if let Err(e) = cluster.check_alive() {
        tracing::warn!(error = %e, "a node died during the run");
        notes.push(format!("a node died during the run: {e}"));
    }
    if !load.drained {
        notes.push("subscribers did not catch up within the drain timeout".into());
    }
    if let Some(why) = &load.unsettled {
        notes.push(format!(
            "redis had not settled on one primary before the final reads: {why}"
        ));
    }
    if let Some(why) = &load.unconverged {
        notes.push(format!(
            "the nodes had not converged before the final reads: {why}"
        ));
    }
    if target == Target::Redis && s.redis.sentinels > 0 {
        notes.push(format!(
            "redis: clients find the primary through {} Sentinels (SENTINEL get-master-addr-by-name, confirmed with ROLE)",
            s.redis.sentinels
        ));
    }
    notes.push(format!(
        "clients: policy {} (stall {}ms); an unanswered publish stays indeterminate and is never resent; subscriber moves to another node: {}",
        s.client.policy.as_str(),
        s.client.stall.as_millis(),
        load.subscriber_moves
    ));
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
    // The last fsync counts; stopping samples the /proc figures right before each stop.
    target::cost::final_fsyncs(&mut cluster).await;
    // Stopping waits (briefly) for each process; keep that off the async workers.
    tokio::task::block_in_place(|| cluster.shutdown());
    let process_costs = cluster.process_costs();
    let network = cluster.network().to_string();
    let (version, mut detail, node_count) = (
        cluster.version.clone(),
        cluster.detail.clone(),
        cluster.nodes().len(),
    );
    if target == Target::Bus {
        detail.push_str(&format!(", {} reads", s.bus.read_consistency.as_str()));
    }
    let servers_spawner = cluster.spawner();
    drop(cluster);

    let mut outcome = check_file(&dir.join(HISTORY_FILE), &check_options(target, s))?;
    if outcome.checks.lost > 0 {
        notes.extend(crate::chaos::attribution::attribute_losses(
            &outcome.checks.violations,
            &windows,
        ));
        // Every lost message, to count each under the fault that took it.
        let all = check_file(
            &dir.join(HISTORY_FILE),
            &CheckOptions {
                max_examples: outcome.checks.lost as usize + 1,
                ..CheckOptions::for_target(target, s.mode)
            },
        )?;
        crate::chaos::attribution::lost_per_window(&all.checks.violations, &mut outcome.recovery);
    }
    let mut cost_notes = Vec::new();
    if lazy_fs {
        cost_notes.push(
            "data dirs are lazy FUSE filesystems: write_bytes counts what reached the page cache, \
             which FUSE writes may bypass, so disk writes can read low"
                .to_string(),
        );
    }
    let cost = target::cost::summarize(target, process_costs, outcome.checks.acked, cost_notes);
    // Remote logs come home (and remote run directories go, when the run was valid).
    notes.extend(tokio::task::block_in_place(|| {
        servers_spawner.finish(outcome.verdict == Verdict::Valid)
    }));
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
        faults: windows,
        recovery: outcome.recovery,
        environment: environment(network, version, notes),
        cost: Some(cost),
        generator,
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
        let _ = std::fs::remove_dir_all(dir.join(target::DISK_DIR));
    }
    Ok(summary)
}

/// How a run of `target` under scenario `s` is judged: the target's promise, with reads
/// promised linearizable only by the bus with `read_consistency = "linearizable"`.
fn check_options(target: Target, s: &Scenario) -> CheckOptions {
    let mut opts = CheckOptions::for_target(target, s.mode);
    opts.promise = opts.promise.with_linearizable_reads(
        target == Target::Bus
            && s.bus.read_consistency == crate::scenario::BusReadConsistency::Linearizable,
    );
    opts
}

/// What the lab offers this target's nemesis.
fn plan_context(target: Target, nodes: usize, lab: Option<&Arc<Lab>>) -> PlanContext {
    let (disk, disk_reason) = match lab {
        Some(lab) if lab.mode().is_namespaced() && lab.capabilities().fuse => (true, String::new()),
        Some(lab) if lab.mode().is_namespaced() => (
            false,
            lab.capabilities()
                .notes
                .iter()
                .find(|n| n.starts_with("fuse:"))
                .cloned()
                .unwrap_or_else(|| "FUSE is not usable in the lab".into()),
        ),
        Some(_) => (
            false,
            "the lab runs in loopback mode (no private mount namespace)".into(),
        ),
        None => (false, "no lab".into()),
    };
    let (kernel_net, tbf, net_reason) = match lab {
        Some(lab) => match lab.mode() {
            raftbus_faults::LabMode::Namespaces { .. } => {
                let caps = lab.capabilities();
                let reason = if caps.nftables {
                    String::new()
                } else {
                    "nftables is not usable in the lab".to_string()
                };
                (caps.nftables, caps.tbf, reason)
            }
            raftbus_faults::LabMode::Loopback { reason } => {
                (false, false, format!("loopback lab: {reason}"))
            }
        },
        None => (false, false, "no lab".to_string()),
    };
    PlanContext {
        target,
        nodes,
        kernel_net,
        tbf,
        net_reason,
        disk,
        disk_reason,
        queue: false,
        hosts: None,
    }
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
        ("publish (all)", &l.publish_all),
        ("publish→ack", &l.publish_ack),
        ("end-to-end", &l.end_to_end),
        ("publish→xack", &l.consumed),
        ("send lag", &l.send_lag),
    ] {
        // publish→XACK exists in queue mode only.
        if name == "publish→xack" && s.workload.mode != Mode::Queue {
            continue;
        }
        println!(
            "  {name:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.count, p.p50, p.p90, p.p99, p.p999, p.max
        );
    }
    if let Some(g) = &s.generator {
        println!("  generator  {}", g.describe());
        if l.send_lag.p99 > 10_000 {
            println!("  generator  behind its schedule: {}", g.why_behind());
        }
    }
    if l.publish_censored > 0 {
        println!(
            "  publish (all): every scheduled publish at its outcome; {} timed out or unanswered (at least that long)",
            l.publish_censored
        );
    }
    if !s.faults.is_empty() {
        let mut kinds: Vec<&str> = s.faults.iter().map(|f| f.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let counts: Vec<String> = kinds
            .iter()
            .map(|k| format!("{k}×{}", s.faults.iter().filter(|f| f.kind == *k).count()))
            .collect();
        println!("  faults  {}", counts.join("  "));
        let recovered: Vec<f64> = s
            .recovery
            .iter()
            .filter_map(|r| r.first_ok_after_s)
            .collect();
        let never = s.recovery.len() - recovered.len();
        if !recovered.is_empty() {
            println!(
                "  recovery  first ok publish after heal: max {:.2}s, mean {:.2}s{}",
                recovered.iter().cloned().fold(0.0, f64::max),
                recovered.iter().sum::<f64>() / recovered.len() as f64,
                if never > 0 {
                    format!(", {never} heal(s) never followed by one")
                } else {
                    String::new()
                }
            );
        }
    }
    for r in &s.recovery {
        println!(
            "  window  {} at {:.1}s: availability {}, unavailable {:.1}s, first ack after start {}, after heal {}, acked lost {}",
            r.kind,
            r.started_at_s,
            r.availability
                .map_or("–".to_string(), |a| format!("{:.0}%", a * 100.0)),
            r.unavailable_s,
            r.first_ok_after_start_s
                .map_or("never".to_string(), |t| format!("{t:.2}s")),
            r.first_ok_after_s
                .map_or("never".to_string(), |t| format!("{t:.2}s")),
            r.lost
        );
    }
    for w in s
        .faults
        .iter()
        .filter(|w| matches!(w.kind.as_str(), "power-loss" | "torn-write" | "corrupt"))
    {
        println!("  fault   {} at {:.1}s: {}", w.kind, w.start_s, w.detail);
    }
    for n in s.environment.notes.iter().filter(|n| {
        n.starts_with("loss attribution:")
            || n.starts_with("corrupt at")
            || n.starts_with("a node died")
            || n.contains("was not applied")
            || n.contains("was never applied")
    }) {
        println!("  note    {n}");
    }
    println!(
        "  checks  acked {}  failed {}  indeterminate {}  delivered {}",
        c.acked, c.failed, c.indeterminate, c.delivered
    );
    println!(
        "          lost {}  duplicated {}  reordered {}  phantom {}  corrupted {}  diverged {}  realtime {}  at-most-once gaps {}",
        c.lost, c.duplicated, c.reordered, c.phantom, c.corrupted, c.diverged, c.realtime_violations, c.at_most_once_gaps
    );
    if !c.queue.is_empty() {
        let q = &c.queue;
        println!(
            "  queue   {} groups: taken {}  redelivered by claims {} (at least once, not violations)  consumed {}  consumer crashes {}{}",
            q.groups,
            q.taken,
            q.redelivered,
            q.consumed,
            q.crashes,
            if q.pending_at_end.is_empty() {
                String::new()
            } else {
                format!("  pending at the end: {}", q.pending_at_end.join(", "))
            }
        );
        if s.workload.mode == Mode::Queue {
            println!("          end-to-end is publish → first delivery to a group; publish→xack is publish → the XACK that finished it");
        }
    }
    for v in &c.violations {
        println!("  violation {} ({}): {}", v.kind, v.count, v.property);
        for e in v.examples.iter().take(3) {
            println!("    e.g. {e}");
        }
    }
    print_stale_reads(c, l, "  ");
    print_beside_violations(c, "  ");
    println!("  results  {}", dir.display());
    if s.verdict != Verdict::Valid {
        println!("  rerun    {}", s.rerun);
    }
}

/// The read workload's staleness and latency, when the run read anything.
fn print_stale_reads(
    c: &raftbus_reports::model::Checks,
    l: &raftbus_reports::model::Latency,
    indent: &str,
) {
    let r = &c.stale_reads;
    if r.is_empty() {
        return;
    }
    println!(
        "{indent}reads   {} ({}): {} stale, {} failed, {} unjudged; worst {} entries / {:.1} ms behind",
        r.reads, r.consistency, r.stale, r.failed, r.unjudged, r.max_entries_behind, r.max_ms_behind
    );
    if l.read.count > 0 {
        println!(
            "{indent}        latency µs p50 {} p90 {} p99 {} max {}",
            l.read.p50, l.read.p90, l.read.p99, l.read.max
        );
    }
    for g in r
        .per_window
        .iter()
        .chain(&r.per_node)
        .filter(|g| g.stale > 0)
    {
        println!(
            "{indent}        {}: {} of {} stale, worst {} entries / {:.1} ms",
            g.label, g.stale, g.reads, g.max_entries_behind, g.max_ms_behind
        );
    }
}

/// What was not checked, and the anomalies the target's promise allows.
fn print_beside_violations(c: &raftbus_reports::model::Checks, indent: &str) {
    for why in &c.unchecked {
        println!("{indent}not checked: {why}");
    }
    for why in &c.excused {
        println!("{indent}not read: {why}");
    }
    for a in &c.anomalies {
        println!(
            "{indent}anomaly {} ({}) within the promise ({}): {}",
            a.kind, a.count, c.promise, a.property
        );
        if let Some(e) = a.examples.first() {
            println!("{indent}  e.g. {e}");
        }
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
            "stale reads",
            Box::new(|s| {
                let r = &s.checks.stale_reads;
                format!("{}/{}", r.stale, r.reads)
            }),
        ),
        (
            "read p99 µs",
            Box::new(|s| s.latency_us.read.p99.to_string()),
        ),
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
    let scenario = Scenario::load(&dir.join(raftbus_reports::model::SCENARIO_FILE)).ok();
    let (mode, target) = match Summary::read(dir) {
        Ok(s) => (s.workload.mode, Some(s.target)),
        Err(_) => match Scenario::load(&dir.join(raftbus_reports::model::SCENARIO_FILE)) {
            Ok(s) => (s.mode, None),
            Err(_) => {
                tracing::warn!("no summary.json or scenario.toml; assuming stream mode");
                (Mode::Stream, None)
            }
        },
    };
    let opts = match (target, &scenario) {
        (Some(t), Some(s)) => check_options(t, s),
        (Some(t), None) => CheckOptions::for_target(t, mode),
        (None, _) => {
            tracing::warn!("target unknown (no summary.json): judging by the bus's promise");
            CheckOptions::new(mode)
        }
    };
    let outcome = check_file(
        &dir.join(HISTORY_FILE),
        &CheckOptions {
            max_examples,
            ..opts
        },
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
    print_stale_reads(c, &Default::default(), "");
    print_beside_violations(c, "");
    Ok(match outcome.verdict {
        Verdict::Valid => exit::VALID,
        Verdict::Invalid => exit::VIOLATION,
        Verdict::Unknown => exit::ENVIRONMENT,
    })
}
