//! The command line, as clap-derive data. `main.rs` parses it and hands it to
//! [`crate::run::run`]; nothing here does any work.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use raftbus_reports::model::Mode;

use raftbus_faults::FaultKind;

use crate::chaos::ChaosOptions;
use crate::scenario::{RedisPersistence, Scenario, TargetKind};

#[derive(Debug, Parser)]
#[command(
    name = "raftbus",
    version,
    about = "Launch the raftbus cluster or Redis, push open-loop load, check and report",
    long_about = "Launch the raftbus cluster or Redis, push open-loop load, record latency and \
                  a full operation history, and check it for lost, duplicated or reordered \
                  messages.\n\nExit codes: 0 all checks hold, 1 a correctness violation, \
                  2 bad usage or scenario, 3 environment problem, 4 performance regression."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a benchmark: start the target, push load, check the history, write DIR
    Bench(Box<BenchArgs>),
    /// Run a benchmark while a nemesis injects faults (kill, pause, partition, ...), then a
    /// quiet recovery phase; the checks then say what survived
    Chaos(Box<ChaosArgs>),
    /// Write report.html, summary.md and charts for a results directory
    Report {
        /// A results directory (a single run, or a `--target both` pair)
        dir: PathBuf,
    },
    /// Compare two results directories; exits 4 when B regressed beyond the threshold
    Compare {
        /// The baseline results directory
        a: PathBuf,
        /// The results directory compared against the baseline
        b: PathBuf,
        /// Relative worsening of p99 latency or throughput that counts as a regression
        #[arg(long, default_value_t = raftbus_reports::DEFAULT_THRESHOLD)]
        threshold: f64,
    },
    /// The newcomer's main job: a short chaos run of a 3-node bus and of Redis under the same
    /// load and the same faults (a leader kill, a partition, a pause), then the report
    Demo(DemoArgs),
    /// Run a suite of bench and chaos scenarios that fits a time budget, compare with the
    /// previous night under ROOT, write ROOT/index.html, ROOT/latest.md and JUnit XML
    Nightly(NightlyArgs),
    /// Find every run under ROOT and write ROOT/index.html with trend charts
    Trend {
        /// A directory holding results directories (e.g. `results/`)
        root: PathBuf,
    },
    /// Prove the harness catches broken buses: short chaos runs against a failpoint build of
    /// the node with planted bugs (ack before commit, ack before fsync, a dropped forwarded
    /// write, an entry applied twice, a subscriber that skips or reorders, a leader serving
    /// linearizable reads without a quorum check), each of which must be reported as the
    /// right violation, plus a control run that must be VALID; exits 1 when one is missed
    Selftest(SelftestArgs),
    /// Find each target's capacity: open-loop steps of rising offered rate, each a full
    /// bench run, until the latency objective breaks or the target falls behind; writes
    /// DIR/sweep.json, DIR/report.html with latency and throughput against offered rate
    Sweep(Box<SweepArgs>),
    /// Manage the machines of a `--hosts` inventory: check them, heal what a crashed run
    /// left, or stand up stand-in hosts (sshd in lab namespaces) for tests and docs
    Hosts(HostsArgs),
    /// Internal, run on `--hosts` machines by the harness: serve a lazy filesystem over a
    /// server's data dir and answer disk faults (power loss, torn write, corrupt)
    #[command(hide = true)]
    Lazyfs(LazyfsArgs),
    /// Re-run the checks on a results directory's history.jsonl
    Check {
        /// A results directory written by `raftbus bench`
        dir: PathBuf,
        /// How many examples to show per violated invariant
        #[arg(long, default_value_t = 10)]
        max_examples: usize,
    },
}

/// Payload delivery style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// XADD + XREAD BLOCK subscribers that resume by ID (no message may be missed)
    Stream,
    /// PUBLISH + SUBSCRIBE (what a disconnected subscriber misses is an at-most-once gap)
    Pubsub,
    /// XADD + consumer groups (XREADGROUP, XACK, XAUTOCLAIM): every message to one
    /// consumer of every group, at least once
    Queue,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Stream => Mode::Stream,
            ModeArg::Pubsub => Mode::Pubsub,
            ModeArg::Queue => Mode::Queue,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 2m, 1500ms)"))
}

/// Options of `raftbus bench`. Flags left out take their value from `--scenario FILE`,
/// or else the defaults shown.
#[derive(Debug, Clone, Default, Args)]
pub struct BenchArgs {
    /// What to drive: the bus cluster, Redis, or both in turn with the same seed [default: bus]
    #[arg(long, value_enum)]
    pub target: Option<TargetKind>,
    /// Number of bus nodes [default: 3]
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Offered publishes per second, all publishers together (open loop) [default: 10000]
    #[arg(long)]
    pub rate: Option<f64>,
    /// Run length including warmup, e.g. 30s, 2m [default: 30s]
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Leading time excluded from latency/throughput statistics (still checked) [default: 5s]
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Payload bytes per message, at least 29 (the id + checksum header) [default: 100]
    #[arg(long)]
    pub size: Option<usize>,
    /// Number of channels (ch0..chN-1) messages are spread over [default: 8]
    #[arg(long)]
    pub channels: Option<usize>,
    /// Publisher connections; the rate is split evenly between them [default: 4]
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Subscriber connections on every node, each reading all channels [default: 1]
    #[arg(long)]
    pub subscribers_per_node: Option<usize>,
    /// stream: XADD/XREAD resume by ID; pubsub: PUBLISH/SUBSCRIBE; queue: consumer groups [default: stream]
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Queue mode: consumer groups, each reading every channel [default: 2]
    #[arg(long)]
    pub groups: Option<usize>,
    /// Queue mode: consumers per group, spread over the nodes [default: 3]
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Queue mode: XAUTOCLAIM entries pending this long (what a crashed consumer held) [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    pub claim_idle: Option<Duration>,
    /// Scenario file (TOML, version = 1); flags given here override its values
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Seed for the run (phases, channel choice); random when absent, always printed
    #[arg(long)]
    pub seed: Option<u64>,
    /// Results directory [default: results/<unix-time>-<scenario name>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The raftbus-node binary [default: next to this executable]
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Run the servers on the machines of this inventory over SSH instead of the local lab
    /// (clients stay here); see `raftbus hosts --help`
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Redis durability: none (no AOF), everysec or always (appendfsync) [default: always, the
    /// bus's durability class]
    #[arg(long, value_enum)]
    pub redis_persistence: Option<RedisPersistence>,
    /// Redis replicas (0 to 4); subscribers read from the replicas too [default: 0]
    #[arg(long)]
    pub redis_replicas: Option<usize>,
    /// Redis Sentinels (0 or 3) that fail the primary over; clients find the primary
    /// through them [default: 0]
    #[arg(long)]
    pub redis_sentinels: Option<usize>,
    /// Redis `min-replicas-to-write` (0: off) [default: 0]
    #[arg(long)]
    pub redis_min_replicas: Option<usize>,
    /// `WAIT <n> <redis.wait_timeout>` after every Redis write (0: no WAIT) [default: 0]
    #[arg(long)]
    pub redis_wait: Option<usize>,
    /// Clients under faults: sticky (stay on their node) or failover (move on; publishers:
    /// bus to another node, Redis to the primary Sentinel names; subscribers: to another
    /// server, resuming by id) [default: failover]
    #[arg(long, value_enum)]
    pub client_policy: Option<crate::scenario::ClientPolicy>,
    /// Bus nodes' log durability: always (fsync before ack) or never (known-bad: acked once
    /// in the page cache, lost on power loss) [default: always]
    #[arg(long, value_enum)]
    pub bus_fsync: Option<crate::scenario::BusFsync>,
    /// Bus nodes' reads: local (from the node's replica, may be stale) or linearizable
    /// (read index first; stale reads are then violations) [default: local]
    #[arg(long, value_enum)]
    pub bus_read_consistency: Option<crate::scenario::BusReadConsistency>,
    /// Reads per second (XRANGE/XREVRANGE/XLEN on random nodes), checked for stale reads;
    /// 0 turns them off [default: 50 in stream mode, 0 in pub/sub mode]
    #[arg(long)]
    pub read_rate: Option<f64>,
    /// Mount the lazy filesystem (writes held in memory until fsync) under every server's
    /// data dir even without a disk fault, e.g. to measure its overhead
    #[arg(long)]
    pub lazy_fs: bool,
    /// A publish with no reply after this long is recorded as indeterminate [default: 5s]
    #[arg(long, value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Test hook: at this time, kill every subscriber connection (CLIENT KILL) once
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub debug_kill_subscribers_at: Option<Duration>,
}

/// Options of `raftbus demo`; the experiment itself is fixed (`harness/scenarios/demo.toml`).
#[derive(Debug, Clone, Default, Args)]
pub struct DemoArgs {
    /// Results directory [default: results/<unix-time>-demo]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed for the load and the fault targets [default: random, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// The raftbus-node binary [default: next to this executable]
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
}

/// Options of `raftbus nightly`.
#[derive(Debug, Clone, Args)]
pub struct NightlyArgs {
    /// Wall-clock budget for the whole suite; durations are planned to fit it
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    pub budget: Duration,
    /// Root of all nights: each night goes to ROOT/<date>/, the trend to ROOT/index.html
    #[arg(long, value_name = "ROOT", default_value = "nightly-results")]
    pub out: PathBuf,
    /// Suite file [default: the shipped harness/suites/nightly.toml]
    #[arg(long, value_name = "FILE")]
    pub suite: Option<PathBuf>,
    /// Relative worsening of p99 or throughput against the previous night that fails the
    /// night with exit 4
    #[arg(long, default_value_t = raftbus_reports::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// The raftbus-node binary [default: next to this executable]
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// A failpoint build of raftbus-node, for the selftest and failpoint faults [default:
    /// built from this source tree into target/failpoints]
    #[arg(long, value_name = "PATH")]
    pub failpoint_node_bin: Option<PathBuf>,
    /// Run the bench and chaos scenarios on the machines of this inventory over SSH
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
}

/// Options of `raftbus selftest`.
#[derive(Debug, Clone, Default, Args)]
pub struct SelftestArgs {
    /// A failpoint build of raftbus-node [default: built from this source tree with
    /// `cargo build --release -p raftbus-node --features failpoints --target-dir target/failpoints`]
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Results directory: one run per case, plus selftest.md and selftest.json
    /// [default: results/<time>-selftest]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of every case's run [default: random, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only these cases (comma-separated): ack-before-commit, ack-before-fsync,
    /// drop-forwarded, apply-twice, skip-delivery, reorder-delivery, stale-read,
    /// control
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub only: Vec<String>,
}

/// Options of `raftbus chaos`: everything `bench` takes, plus the nemesis.
#[derive(Debug, Clone, Default, Args)]
pub struct ChaosArgs {
    #[command(flatten)]
    pub bench: BenchArgs,
    /// Fault kinds mixed by the seed, each at least once: kill, pause, terminate, restart,
    /// partition, loss, delay, bandwidth, power-loss, torn-write, corrupt, failpoint (needs a
    /// failpoint build as --node-bin) [default: kill,pause,partition unless the scenario
    /// has [chaos] or [[fault]] entries]
    #[arg(long, value_name = "LIST", value_delimiter = ',', num_args = 1.., value_parser = parse_fault_kind)]
    pub faults: Option<Vec<FaultKind>>,
    /// One fault (about half) and one quiet gap (the other half) per interval [default: 10s]
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Quiet phase after the last fault, load still running [default: 10s]
    #[arg(long, value_parser = parse_duration)]
    pub recovery: Option<Duration>,
}

fn parse_fault_kind(s: &str) -> Result<FaultKind, String> {
    s.parse().map_err(|e: raftbus_faults::Error| e.to_string())
}

impl ChaosArgs {
    /// The bench flags over `base`, then the nemesis flags. Without `--faults`, a scenario
    /// that has no faults gets `kill,pause,partition`.
    pub fn apply(&self, base: Scenario) -> Scenario {
        let mut s = self.bench.apply(base);
        if s.name == Scenario::default().name {
            s.name = "chaos".into();
        }
        let flags_given =
            self.faults.is_some() || self.interval.is_some() || self.recovery.is_some();
        if s.chaos.is_none() && (flags_given || s.faults.is_empty()) {
            s.chaos = Some(ChaosOptions::default());
        }
        if let Some(chaos) = s.chaos.as_mut() {
            if let Some(f) = &self.faults {
                chaos.faults = f.clone();
            }
            if chaos.faults.is_empty() && s.faults.is_empty() {
                chaos.faults = vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Partition];
            }
            if let Some(i) = self.interval {
                chaos.interval = i;
            }
            if let Some(r) = self.recovery {
                chaos.recovery = r;
            }
        }
        s
    }
}

/// `raftbus hosts ...`.
#[derive(Debug, Clone, Args)]
pub struct HostsArgs {
    #[command(subcommand)]
    pub command: HostsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum HostsCommand {
    /// Connect to every host and report kernel, disk, which fault kinds work, and the RTT
    /// between hosts
    Check {
        /// The inventory
        #[arg(long, value_name = "FILE")]
        hosts: PathBuf,
    },
    /// Remove what a crashed run left on the hosts: its processes (by recorded pid and
    /// start time), the nftables table `inet raftbus`, raftbus's qdiscs; nothing else
    Heal {
        /// The inventory
        #[arg(long, value_name = "FILE")]
        hosts: PathBuf,
    },
    /// Stand-in hosts for trying `--hosts` on one machine: sshd in lab namespaces
    /// (198.18.1.N) with keys made for the occasion; writes DIR/hosts.toml, runs COMMAND
    /// inside the lab (where 198.18.1.N is reachable), then tears everything down
    Lab {
        /// Where keys, sshd configs, host roots and hosts.toml go
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// How many hosts
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// The command to run inside the lab (e.g. `raftbus chaos --hosts DIR/hosts.toml`)
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct LazyfsArgs {
    #[command(subcommand)]
    pub command: LazyfsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LazyfsCommand {
    /// Mount a lazy filesystem backed by BACKING at MOUNT and answer requests on CONTROL
    /// until SIGTERM, SIGINT or SIGHUP; then unmount
    Serve {
        #[arg(long)]
        backing: PathBuf,
        #[arg(long)]
        mount: PathBuf,
        /// A unix socket path
        #[arg(long)]
        control: PathBuf,
    },
    /// Ask the server behind CONTROL: drop-unsynced, tear-last-write KEEP, write-back or
    /// stats; prints its JSON answer
    Ctl {
        control: PathBuf,
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Damage the largest file under DIR (the node must be down), as the `corrupt` fault
    Corrupt {
        #[arg(long)]
        dir: PathBuf,
        /// flip-bits or truncate
        #[arg(long)]
        mode: String,
        #[arg(long)]
        seed: u64,
    },
}

impl Command {
    /// Commands that start servers, and so run inside the lab (entered in `main`). With
    /// `--hosts` the servers run elsewhere and the harness stays in its own namespace.
    pub fn uses_lab(&self) -> bool {
        match self {
            Command::Bench(a) => a.hosts.is_none(),
            Command::Chaos(a) => a.bench.hosts.is_none(),
            Command::Demo(_) => true,
            Command::Hosts(a) => matches!(a.command, HostsCommand::Lab { .. }),
            _ => false,
        }
    }
}

impl BenchArgs {
    /// Applies the flags that were given on top of `base`.
    pub fn apply(&self, base: Scenario) -> Scenario {
        let mut s = base;
        if let Some(v) = self.target {
            s.target = v;
        }
        if let Some(v) = self.nodes {
            s.nodes = v;
        }
        if let Some(v) = self.rate {
            s.rate = v;
        }
        if let Some(v) = self.duration {
            s.duration = v;
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
            s.mode = v.into();
        }
        if let Some(v) = self.groups {
            s.queue.groups = v;
        }
        if let Some(v) = self.consumers {
            s.queue.consumers = v;
        }
        if let Some(v) = self.claim_idle {
            s.queue.claim_idle = v;
        }
        if let Some(v) = self.seed {
            s.seed = Some(v);
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
        if let Some(v) = self.redis_min_replicas {
            s.redis.min_replicas_to_write = v;
        }
        if let Some(v) = self.redis_wait {
            s.redis.wait_replicas = v;
        }
        if let Some(v) = self.client_policy {
            s.client.policy = v;
        }
        if let Some(v) = self.bus_fsync {
            s.bus.fsync = v;
        }
        if let Some(v) = self.bus_read_consistency {
            s.bus.read_consistency = v;
        }
        if let Some(v) = self.read_rate {
            s.read_rate = Some(v);
        }
        if self.lazy_fs {
            s.lazy_fs = true;
        }
        if let Some(v) = self.request_timeout {
            s.request_timeout = v;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_scenario_values() {
        let cli = Cli::try_parse_from([
            "raftbus",
            "bench",
            "--target",
            "redis",
            "--rate",
            "500",
            "--duration",
            "2m",
            "--mode",
            "pubsub",
        ])
        .unwrap();
        let Command::Bench(args) = cli.command else {
            panic!("not bench")
        };
        let base = Scenario {
            rate: 7.0,
            channels: 3,
            ..Scenario::default()
        };
        let s = args.apply(base);
        assert!(args.scenario.is_none());
        assert_eq!(s.target, TargetKind::Redis);
        assert_eq!(s.rate, 500.0);
        assert_eq!(s.duration, Duration::from_secs(120));
        assert_eq!(s.mode, Mode::Pubsub);
        assert_eq!(s.channels, 3);
    }

    #[test]
    fn chaos_flags_become_the_scenario_nemesis() {
        let cli = Cli::try_parse_from([
            "raftbus",
            "chaos",
            "--faults",
            "kill,partition",
            "--interval",
            "6s",
            "--duration",
            "40s",
        ])
        .unwrap();
        let Command::Chaos(args) = cli.command else {
            panic!("not chaos")
        };
        let s = args.apply(Scenario::default());
        let chaos = s.chaos.expect("chaos options");
        assert_eq!(chaos.faults, vec![FaultKind::Kill, FaultKind::Partition]);
        assert_eq!(chaos.interval, Duration::from_secs(6));
        assert_eq!(s.duration, Duration::from_secs(40));
        // No flags: the default mix.
        let Command::Chaos(args) = Cli::try_parse_from(["raftbus", "chaos"]).unwrap().command
        else {
            panic!("not chaos")
        };
        let s = args.apply(Scenario::default());
        assert_eq!(s.chaos.unwrap().faults.len(), 3);
        assert!(Cli::try_parse_from(["raftbus", "chaos", "--faults", "explode"]).is_err());
    }

    #[test]
    fn bad_duration_is_a_usage_error() {
        let err = Cli::try_parse_from(["raftbus", "bench", "--duration", "soon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}

/// `raftbus sweep`: the bench flags, plus the steps and the objective.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub bench: BenchArgs,
    /// Offered rates (publishes per second), rising; one step each until the objective
    /// breaks
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,5000,10000,20000,50000"
    )]
    pub rates: Vec<f64>,
    /// The latency objective over every scheduled publish, PERCENTILE=DURATION with
    /// PERCENTILE one of p50, p90, p99, p999
    #[arg(long, default_value = "p99=10ms")]
    pub slo: crate::sweep::Slo,
    /// Measured time per step (after the warmup); `--duration` does not apply to a sweep
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub step: Duration,
    /// Redis persistence settings to sweep, one curve each (default: the scenario's)
    #[arg(long, value_delimiter = ',', value_enum, value_name = "LIST")]
    pub redis_configs: Vec<RedisPersistence>,
}
