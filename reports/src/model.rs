//! The results directory, as data: what the harness writes and what reports read.
//!
//! One run writes, under its directory `DIR`:
//! - `summary.json`    — [`Summary`]: verdict, workload, throughput, latency, checks, faults.
//! - `scenario.toml`   — the resolved scenario (owned by the harness).
//! - `timeseries.json` — [`TimeSeries`]: one [`SecondRow`] per second of the run.
//! - `latency.hlog`    — HdrHistogram interval log, one tag per metric (see [`tags`]).
//! - `history.jsonl`   — the operation history (owned by the harness).
//! - `report.html`, `summary.md`, `*.png`, `*.svg` — written by this crate.
//!
//! For `--target both`, `DIR/bus/` and `DIR/redis/` each hold one run and `DIR/` holds
//! the side-by-side report.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Version of the `summary.json` layout; bump on incompatible change.
pub const SUMMARY_SCHEMA: &str = "raftbus.summary.v1";

pub const SUMMARY_FILE: &str = "summary.json";
pub const TIMESERIES_FILE: &str = "timeseries.json";
pub const HLOG_FILE: &str = "latency.hlog";
pub const HISTORY_FILE: &str = "history.jsonl";
pub const SCENARIO_FILE: &str = "scenario.toml";
/// A capacity sweep's results, at the root of its directory (steps are runs below it).
pub const SWEEP_FILE: &str = "sweep.json";

/// Tags used in `latency.hlog`, one per metric.
pub mod tags {
    /// Intended send time to acknowledgement, per publish.
    pub const PUBLISH_ACK: &str = "publish_ack";
    /// Intended send time to delivery at a subscriber, over all subscribers.
    pub const END_TO_END: &str = "end_to_end";
    /// How late the generator actually sent, compared to its schedule.
    pub const SEND_LAG: &str = "send_lag";
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid results file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check held.
    Valid,
    /// At least one correctness violation.
    Invalid,
    /// The run could not be checked (for example it was aborted).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Bus,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// XADD + XREAD BLOCK subscribers that resume by ID.
    Stream,
    /// PUBLISH + SUBSCRIBE; at-most-once while disconnected.
    Pubsub,
    /// XADD + consumer groups: XREADGROUP, XACK, XAUTOCLAIM of what a crashed consumer
    /// left pending; each message to one consumer of each group, at least once.
    Queue,
}

impl Mode {
    /// Whether publishes are XADD (stream and queue modes) rather than PUBLISH.
    pub fn stores(self) -> bool {
        !matches!(self, Mode::Pubsub)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Offered publishes per second, all publishers together.
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Payload bytes per message.
    pub size: usize,
    pub mode: Mode,
    pub channels: usize,
    pub publishers: usize,
    pub subscribers_per_node: usize,
    pub nodes: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Acknowledged publishes only, from intended send time to the acknowledgement.
    pub publish_ack: Percentiles,
    /// Every scheduled publish of the measured window, at the time its client learnt the
    /// outcome: acknowledged, failed, timed out, or still unanswered at the end.
    #[serde(default)]
    pub publish_all: Percentiles,
    /// Of `publish_all`: outcomes unknown (timeout, lost connection) or never answered,
    /// whose true latency is at least the value recorded.
    #[serde(default)]
    pub publish_censored: u64,
    /// Publish to delivery: to a subscriber, or in queue mode the first delivery to a
    /// consumer of a group.
    pub end_to_end: Percentiles,
    /// Queue mode: publish to the XACK that finished the message in a group, from the
    /// intended send time.
    #[serde(default)]
    pub consumed: Percentiles,
    /// Generator lag behind its schedule; large values mean the generator, not the
    /// target, was the bottleneck.
    #[serde(default)]
    pub send_lag: Percentiles,
    /// Successful reads of the read workload (XRANGE/XREVRANGE/XLEN) sent in the measured
    /// window, from send to reply.
    #[serde(default)]
    pub read: Percentiles,
}

/// Counts from the checker. `lost`..`realtime_violations` are violations; the rest
/// describe the history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub acked: u64,
    pub failed: u64,
    pub indeterminate: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Of `lost`: missing with acknowledged messages after them on the same channel.
    pub lost_mid_stream: u64,
    /// Of `lost`: missing after the last surviving acknowledged message.
    pub lost_tail: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub phantom: u64,
    pub corrupted: u64,
    pub diverged: u64,
    pub realtime_violations: u64,
    /// Writes reported failed that were found committed.
    pub failed_but_committed: u64,
    /// Faults after whose heal no publish succeeded again.
    #[serde(default)]
    pub never_recovered: u64,
    /// Pub/sub deliveries missed while a subscriber was disconnected; not violations.
    pub at_most_once_gaps: u64,
    /// One entry per violated invariant, with examples.
    pub violations: Vec<ViolationReport>,
    /// Properties broken within what the target promises (e.g. what Redis pub/sub, at
    /// most once, dropped from a connected subscriber): shown beside the violations, not
    /// counted as them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<ViolationReport>,
    /// The promise the target was judged against.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub promise: String,
    /// Why part of the run could not be checked (the verdict is then `unknown` unless a
    /// violation was found), e.g. a node whose final streams could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<String>,
    /// The read workload judged for staleness (empty when the run read nothing).
    #[serde(default, skip_serializing_if = "StaleReads::is_empty")]
    pub stale_reads: StaleReads,
    /// Nodes the run expected to be gone at the end (one that refused to start on damaged
    /// data), with why: not read, yet no reason for `unknown`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excused: Vec<String>,
    /// Queue mode: what the consumer groups did (empty otherwise).
    #[serde(default, skip_serializing_if = "QueueFigures::is_empty")]
    pub queue: QueueFigures,
}

/// What the consumer groups of a queue-mode run did. At-least-once redelivery (a claim of
/// what a crashed or silent consumer left pending) is a figure here, not a violation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueFigures {
    pub groups: u64,
    /// Entries handed to consumers (XREADGROUP `>` and claims), all groups together.
    pub taken: u64,
    /// Of `taken`: handed out again by XAUTOCLAIM after their holder went idle.
    pub redelivered: u64,
    /// (group, message) pairs finished with an XACK that removed them from the PEL.
    pub consumed: u64,
    /// Consumers crashed by the `consumer-crash` fault.
    pub crashes: u64,
    /// Pending entries left at the end, per node and group (`node/channel/group: n`), when
    /// any were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_at_end: Vec<String>,
}

impl QueueFigures {
    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }
}

/// Stale reads: reads that missed entries acknowledged before they began. Examples are in
/// the `stale_read` entry of `violations` (reads promised linearizable) or `anomalies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaleReads {
    /// What the target promises for reads, e.g. `linearizable (read index)`.
    pub consistency: String,
    /// Whether a stale read breaks the promise (a violation) or is an anomaly within it.
    pub promised: bool,
    /// All reads, failed ones included.
    pub reads: u64,
    /// Reads that got an error or no reply (a refusal is not stale).
    pub failed: u64,
    /// Successful reads that could not be judged (a truncated reply, or an XLEN without a
    /// final stream to place it in).
    pub unjudged: u64,
    pub stale: u64,
    /// Most acknowledged entries one read missed.
    pub max_entries_behind: u64,
    /// Longest time an entry one read missed had already been acknowledged, in ms.
    pub max_ms_behind: f64,
    pub per_node: Vec<StaleGroup>,
    /// Per fault window (by the read's start), then one group for reads outside them.
    pub per_window: Vec<StaleGroup>,
}

impl StaleReads {
    pub fn is_empty(&self) -> bool {
        self.reads == 0
    }
}

/// Stale-read figures of one node or one fault window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaleGroup {
    /// A node name, or a fault window such as `pause n1 6.0-10.0s`.
    pub label: String,
    pub reads: u64,
    pub failed: u64,
    pub stale: u64,
    pub max_entries_behind: u64,
    pub max_ms_behind: f64,
}

/// One violated invariant: its name, what it protects, how often, and examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationReport {
    /// Short stable name, e.g. `lost`, `duplicated`, `diverged`.
    pub kind: String,
    /// The property that was broken, in one sentence.
    pub property: String,
    pub count: u64,
    /// Up to ten concrete examples (message ids, offsets, nodes, times).
    pub examples: Vec<String>,
}

/// One fault window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// e.g. `kill`, `pause`, `partition`, `loss`, `delay`, `bandwidth`.
    pub kind: String,
    /// Free-form detail, e.g. `isolate-leader`, `30%`.
    #[serde(default)]
    pub detail: String,
    /// Node names the fault hit, e.g. `n1`.
    pub targets: Vec<String>,
    /// Seconds since the start of the run (warmup included).
    pub start_s: f64,
    pub end_s: f64,
}

/// Recovery after one fault healed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    pub kind: String,
    pub healed_at_s: f64,
    /// Seconds from heal to the first successful publish; `None` if none came.
    pub first_ok_after_s: Option<f64>,
    /// When the fault started (seconds since the start of the run).
    #[serde(default)]
    pub started_at_s: f64,
    /// Seconds from the fault's start to the first acknowledgement of a publish sent at
    /// or after it; `None` if none came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ok_after_start_s: Option<f64>,
    /// Fraction of the publishes sent during the window that were acknowledged (within
    /// the request timeout, since a later reply counts as no reply); `None`: none sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<f64>,
    /// Seconds from the window's start until the first acknowledgement after its end
    /// during which no write was acknowledged (gaps of more than 250 ms between
    /// acknowledgements).
    #[serde(default)]
    pub unavailable_s: f64,
    /// Acknowledged writes lost, attributed to this window: the window that was on when
    /// they were acknowledged, else the next to start, else the last.
    #[serde(default)]
    pub lost: u64,
}

/// What the harness could use on this machine, shown in reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// `namespaces` (root), `rootless-namespaces`, or `loopback`.
    pub network: String,
    pub kernel: String,
    pub cpus: usize,
    pub hostname: String,
    pub harness_version: String,
    /// e.g. `redis-server 7.0.15`.
    #[serde(default)]
    pub target_version: String,
    /// Capability notes, e.g. `netem: unavailable, userspace delay used`.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    /// Scenario name.
    pub name: String,
    pub target: Target,
    /// Details of the target, e.g. `appendfsync always, 1 replica`.
    #[serde(default)]
    pub target_detail: String,
    pub seed: u64,
    pub verdict: Verdict,
    /// Unix seconds when the run started.
    pub started_at: u64,
    /// The exact command that reruns this scenario.
    pub rerun: String,
    pub workload: Workload,
    pub throughput: Throughput,
    pub latency_us: Latency,
    pub checks: Checks,
    pub faults: Vec<FaultWindow>,
    pub recovery: Vec<Recovery>,
    pub environment: Environment,
    /// What the target's server processes cost (CPU, memory, disk writes, fsyncs); absent
    /// in results written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// What the harness itself and the machine it runs on used while the load was
    /// measured; absent in results written before it was measured, or where `/proc` could
    /// not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorCpu>,
}

/// The harness's own CPU (load generator, subscribers, recorder: the process's threads, not
/// the servers it started) and the machine's, over the measured window (warmup to the end of
/// the schedule). With the send lag it tells a slow target from a generator, or a machine,
/// that could not keep up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorCpu {
    /// Length of the window, seconds.
    pub window_s: f64,
    /// User + system CPU seconds of the harness process's threads.
    pub cpu_s: f64,
    /// The harness thread that used the most CPU, by name, and its share of one CPU.
    pub busiest_thread: String,
    pub busiest_thread_share: f64,
    /// CPUs of this machine (`/proc/stat`).
    pub cpus: u32,
    /// Share of this machine's CPU time that was busy (not idle or waiting for I/O), 0-1:
    /// the generator, the target's servers when they run here, and everything else.
    pub machine_busy: f64,
    /// Share of the window in which some runnable task on the machine waited for a CPU
    /// (`/proc/pressure/cpu`, "some"), 0-1; `None` where the kernel has no PSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure: Option<f64>,
}

/// A CPU or thread counts as saturated from this busy share on.
pub const SATURATED: f64 = 0.9;
/// The machine's CPUs are contended when runnable tasks waited for one this share of the
/// time: the generator's sends then wait behind the target's threads for a CPU.
pub const CONTENDED: f64 = 0.2;

impl GeneratorCpu {
    /// CPUs the harness used on average over the window.
    pub fn cpus_used(&self) -> f64 {
        if self.window_s > 0.0 {
            self.cpu_s / self.window_s
        } else {
            0.0
        }
    }

    /// One line: what the harness and the machine used.
    pub fn describe(&self) -> String {
        format!(
            "harness {:.2} of {} CPUs (busiest thread {} {:.0}%), machine {:.0}% busy{}, over {:.1}s",
            self.cpus_used(),
            self.cpus,
            self.busiest_thread,
            100.0 * self.busiest_thread_share,
            100.0 * self.machine_busy,
            self.pressure_text(),
            self.window_s
        )
    }

    fn pressure_text(&self) -> String {
        self.cpu_pressure
            .map(|p| format!(", tasks waiting for a CPU {:.0}% of the time", 100.0 * p))
            .unwrap_or_default()
    }

    /// The machine's CPUs were saturated or contended (see [`CONTENDED`]).
    pub fn machine_contended(&self) -> bool {
        self.machine_busy >= SATURATED || self.cpu_pressure.is_some_and(|p| p >= CONTENDED)
    }

    /// Why a generator that fell behind its schedule did: it saturated (all CPUs, or one
    /// thread), the machine's CPUs were saturated by everything on it together, or neither.
    pub fn why_behind(&self) -> String {
        let used = self.cpus_used();
        if used >= SATURATED * self.cpus as f64 {
            format!(
                "the harness used {used:.2} of {} CPUs: the generator saturated, the limit is the generator's",
                self.cpus
            )
        } else if self.busiest_thread_share >= SATURATED {
            format!(
                "the harness thread {} was {:.0}% busy: the generator saturated one thread, the limit is the generator's",
                self.busiest_thread,
                100.0 * self.busiest_thread_share
            )
        } else if self.machine_contended() {
            format!(
                "the machine's {} CPUs were {:.0}% busy{}, the harness using {used:.2} of them: generator and target compete for the CPUs, the limit is this machine's",
                self.cpus,
                100.0 * self.machine_busy,
                self.pressure_text()
            )
        } else {
            format!(
                "no CPU was saturated or contended (harness {used:.2} of {} CPUs, machine {:.0}% busy{}): the lag is the generator's own scheduling",
                self.cpus,
                100.0 * self.machine_busy,
                self.pressure_text()
            )
        }
    }
}

/// What the target's server processes (bus nodes; redis-server and Sentinels) cost over
/// the run, in total and per 1,000 acknowledged messages. The harness's own load
/// generator is not counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// The acknowledged messages the per-1k figures divide by (`checks.acked`).
    pub acked: u64,
    /// `sysconf(_SC_CLK_TCK)`: the resolution of the CPU figures.
    pub clock_ticks_per_s: u64,
    /// Seconds between the periodic samples that keep the figures of processes which die.
    pub sample_interval_s: f64,
    pub processes: Vec<ProcessCost>,
    /// Over every process: CPU, writes and fsyncs summed; peak RSS the sum of each
    /// process's peak (an upper bound: the peaks need not coincide); final RSS summed.
    pub total: CostFigures,
    /// `total / acked * 1000`; `None` when nothing was acknowledged.
    pub per_1k_acked: Option<CostFigures>,
    /// Why `fsyncs` is absent, e.g. `not reported by Redis`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fsyncs_absent: String,
    /// How the figures were taken and what they leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Cost figures, in total or per 1,000 acknowledged messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostFigures {
    /// User + system CPU seconds (`/proc/<pid>/stat`, reaped children included).
    pub cpu_s: f64,
    /// `VmHWM`, bytes.
    pub peak_rss_bytes: f64,
    /// `VmRSS` at the end of the run, before the process was stopped, bytes.
    pub final_rss_bytes: f64,
    /// `/proc/<pid>/io` `write_bytes`: what the process caused to be sent to storage.
    /// `None` when it could not be read.
    pub write_bytes: Option<f64>,
    /// fsyncs the target reports itself (the bus: `log_fsyncs`); `None`: not reported.
    pub fsyncs: Option<f64>,
}

/// One server process over all of its lifetimes (a fault may kill and restart it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessCost {
    /// `n1`.., `s1`.. for Sentinels.
    pub name: String,
    /// `bus node`, `redis-server`, `sentinel`.
    pub role: String,
    /// How many times it was started.
    pub lifetimes: u32,
    /// Summed over the lifetimes.
    pub cpu_s: f64,
    /// The highest of the lifetimes.
    pub peak_rss_bytes: u64,
    /// The last sample of the last lifetime.
    pub final_rss_bytes: u64,
    /// Summed over the lifetimes; `None` when `/proc/<pid>/io` could not be read.
    pub write_bytes: Option<u64>,
    /// Summed over the lifetimes; `None` when the process does not report fsyncs.
    pub fsyncs: Option<u64>,
    /// Lifetimes too short to be sampled even once (their cost is missing).
    #[serde(default)]
    pub unsampled_lifetimes: u32,
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds since the start of the run (warmup included).
    pub t_s: u64,
    pub offered: u64,
    pub acked: u64,
    pub failed: u64,
    pub indeterminate: u64,
    pub delivered: u64,
    pub ack_p50_us: u64,
    pub ack_p99_us: u64,
    pub ack_max_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_max_us: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    /// Seconds excluded from statistics at the start.
    pub warmup_s: f64,
    pub rows: Vec<SecondRow>,
    /// Extra named series, e.g. per-node delivery counts.
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<u64>>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ModelError::Parse {
        path: path.display().to_string(),
        source,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value).expect("results model serializes");
    std::fs::write(path, text).map_err(|source| ModelError::Write {
        path: path.display().to_string(),
        source,
    })
}

impl Summary {
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        read_json(&dir.join(SUMMARY_FILE))
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        write_json(&dir.join(SUMMARY_FILE), self)
    }
}

impl TimeSeries {
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        read_json(&dir.join(TIMESERIES_FILE))
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        write_json(&dir.join(TIMESERIES_FILE), self)
    }
}

/// A capacity sweep (`raftbus sweep`): per target configuration, open-loop steps of rising
/// offered rate, each a full run in its own directory, until the latency objective breaks
/// or the target falls behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub schema: String,
    pub name: String,
    pub seed: u64,
    pub started_at: u64,
    /// The objective, e.g. `p99 <= 10ms`, over every scheduled publish (`publish_all`).
    pub slo: String,
    /// The percentile the objective is on (0.99 for `p99`) and its bound.
    pub slo_quantile: f64,
    pub slo_us: u64,
    /// Measured seconds per step.
    pub step_s: f64,
    pub rerun: String,
    pub curves: Vec<SweepCurve>,
}

/// One target configuration's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepCurve {
    /// e.g. `bus (3 nodes, local reads)` or `redis (appendfsync always)`.
    pub label: String,
    pub target: Target,
    pub steps: Vec<SweepStep>,
    /// The highest offered rate whose step held the objective and kept up (`None`: not
    /// even the first).
    pub max_rate_within_slo: Option<f64>,
    /// Why the sweep of this curve ended (objective broken, fell behind, the generator
    /// fell behind, a violation, or the last rate reached).
    pub stopped: String,
}

/// One step: a run at one offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
    /// Every scheduled publish (the objective is judged on this).
    pub publish_all: Percentiles,
    /// Acknowledged publishes only.
    pub publish_ack: Percentiles,
    pub send_lag: Percentiles,
    pub verdict: Verdict,
    /// The objective held and the target kept up with the offered rate.
    pub within_slo: bool,
    /// The generator, not the target, was behind its schedule.
    pub generator_behind: bool,
    /// The step's results directory, relative to the sweep's.
    pub dir: String,
}

impl Sweep {
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        read_json(&dir.join(SWEEP_FILE))
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        write_json(&dir.join(SWEEP_FILE), self)
    }
}
