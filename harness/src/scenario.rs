//! The scenario: what one run measures, as validated data.
//!
//! A scenario file (`--scenario FILE`, TOML) describes the experiment; command-line flags
//! override its values. The resolved scenario is written to `DIR/scenario.toml`, so a run
//! is reproducible from that file alone (it includes the seed).
//!
//! ```toml
//! version = 1
//! name = "steady-10k"
//! target = "bus"
//! nodes = 3
//! rate = 10000
//! duration = "30s"
//! warmup = "5s"
//! mode = "stream"     # or "pubsub", or "queue" (consumer groups)
//!
//! # queue mode: consumer groups over every channel
//! [queue]
//! groups = 2
//! consumers = 3       # per group, spread over the nodes
//! claim_idle = "2s"   # XAUTOCLAIM what was pending this long
//!
//! [[step]]
//! at = "10s"
//! rate = 5000
//!
//! # reads per second (XRANGE/XREVRANGE/XLEN on random nodes), checked for staleness;
//! # default 50 in stream mode, 0 in pub/sub mode
//! read_rate = 50
//!
//! # bus node settings (DIR/node.toml); "never" is the known-bad durability setting,
//! # "linearizable" reads go through the read index (stale reads become violations)
//! [bus]
//! fsync = "always"
//! read_consistency = "local"
//!
//! # faults: a seeded mix (what `raftbus chaos --faults` writes) ...
//! [chaos]
//! faults = ["kill", "pause", "partition"]
//! interval = "10s"
//! recovery = "10s"
//!
//! # ... or an explicit timeline (not both)
//! # [[fault]]
//! # at = "10s"
//! # duration = "5s"
//! # kind = "partition"
//! # mode = "isolate-leader"
//! ```

use std::path::Path;
use std::time::Duration;

use raftbus_reports::model::Mode;
use serde::{Deserialize, Serialize};

use crate::payload::HEADER_LEN;

/// The only scenario layout this harness understands.
pub const SCENARIO_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("invalid scenario: field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot write scenario {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Which system a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A raftbus cluster of `nodes` raftbus-node processes.
    Bus,
    /// redis-server (plus an optional replica), the baseline.
    Redis,
    /// The bus, then Redis, with the same workload and seed.
    Both,
}

/// Redis durability, mapped to `--appendonly` / `--appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RedisPersistence {
    /// No AOF, no snapshots: the speed bound.
    None,
    /// AOF with an fsync every second.
    Everysec,
    /// AOF with an fsync before every reply: the durability-equivalent bound.
    Always,
}

impl RedisPersistence {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisPersistence::None => "none",
            RedisPersistence::Everysec => "everysec",
            RedisPersistence::Always => "always",
        }
    }
}

/// Redis baseline options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisOptions {
    #[serde(default = "default_persistence")]
    pub persistence: RedisPersistence,
    /// Asynchronous replicas (`replicaof` in their config files), 0 to 4.
    #[serde(default)]
    pub replicas: usize,
    /// Sentinels (`redis-server --sentinel`) watching the primary, each in its own lab
    /// host (`s1`..): 0 (no failover) or 3. They need at least one replica.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sentinels: usize,
    /// Sentinel `down-after-milliseconds`: how long the primary must be unreachable
    /// before a Sentinel thinks it is down.
    #[serde(default = "default_down_after", with = "humantime_serde_str")]
    pub down_after: Duration,
    /// Sentinel `failover-timeout`.
    #[serde(default = "default_failover_timeout", with = "humantime_serde_str")]
    pub failover_timeout: Duration,
    /// `min-replicas-to-write`: the primary refuses writes (`-NOREPLICAS`) with fewer
    /// replicas that acknowledged replication within `min_replicas_max_lag`. 0: off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_replicas_to_write: usize,
    /// `min-replicas-max-lag` (whole seconds).
    #[serde(default = "default_min_replicas_max_lag", with = "humantime_serde_str")]
    pub min_replicas_max_lag: Duration,
    /// `WAIT numreplicas timeout` after every write: the publish counts as acknowledged
    /// only when this many replicas confirmed it; fewer within `wait_timeout` leaves it
    /// indeterminate. 0: no WAIT.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_replicas: usize,
    #[serde(default = "default_wait_timeout", with = "humantime_serde_str")]
    pub wait_timeout: Duration,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn default_down_after() -> Duration {
    Duration::from_secs(2)
}
fn default_failover_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_min_replicas_max_lag() -> Duration {
    Duration::from_secs(10)
}
fn default_wait_timeout() -> Duration {
    Duration::from_secs(1)
}

/// What a client (publisher or subscriber) does when its node stops answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientPolicy {
    /// Stay on the node it started on, reconnecting to it (the naive client).
    Sticky,
    /// Move on a broken connection, a stall or a not-the-primary error, with a bounded
    /// backoff: publishers on the bus to another node, on Redis to the primary Sentinel
    /// names; subscribers to the next server, resuming by id in stream mode.
    #[default]
    Failover,
}

impl ClientPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientPolicy::Sticky => "sticky",
            ClientPolicy::Failover => "failover",
        }
    }
}

/// How clients behave (`[client]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientOptions {
    #[serde(default)]
    pub policy: ClientPolicy,
    /// Failover: a connection whose oldest outstanding request waited this long is
    /// abandoned for new requests (those in flight still wait for `request_timeout`); a
    /// stream subscriber leaves a node whose XREAD is this late beyond its block time; a
    /// pub/sub subscriber PINGs a connection quiet this long and leaves it if the PING
    /// goes unanswered as long again.
    #[serde(default = "default_stall", with = "humantime_serde_str")]
    pub stall: Duration,
}

fn default_stall() -> Duration {
    Duration::from_secs(1)
}

/// Queue mode's consumer groups (`[queue]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueOptions {
    /// Consumer groups, each reading every channel (`g0`, `g1`, ...).
    #[serde(default = "default_groups")]
    pub groups: usize,
    /// Consumers per group, spread over the nodes.
    #[serde(default = "default_consumers")]
    pub consumers: usize,
    /// A pending entry idle this long may be claimed (XAUTOCLAIM) by another consumer of
    /// its group: what a crashed consumer held is redelivered after it.
    #[serde(default = "default_claim_idle", with = "humantime_serde_str")]
    pub claim_idle: Duration,
    /// COUNT of each XREADGROUP and XAUTOCLAIM.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_groups() -> usize {
    2
}
fn default_consumers() -> usize {
    3
}
fn default_claim_idle() -> Duration {
    Duration::from_secs(2)
}
fn default_batch() -> usize {
    100
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            groups: default_groups(),
            consumers: default_consumers(),
            claim_idle: default_claim_idle(),
            batch: default_batch(),
        }
    }
}

impl QueueOptions {
    fn validate(&self) -> Result<(), ScenarioError> {
        if !(1..=16).contains(&self.groups) {
            return Err(invalid(
                "queue.groups",
                format!("must be between 1 and 16, got {}", self.groups),
            ));
        }
        if !(1..=64).contains(&self.consumers) {
            return Err(invalid(
                "queue.consumers",
                format!("must be between 1 and 64, got {}", self.consumers),
            ));
        }
        if self.claim_idle < Duration::from_millis(100) {
            return Err(invalid("queue.claim_idle", "must be at least 100ms"));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(invalid(
                "queue.batch",
                format!("must be between 1 and 10000, got {}", self.batch),
            ));
        }
        Ok(())
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            policy: ClientPolicy::default(),
            stall: default_stall(),
        }
    }
}

/// The same durability class as the bus: acknowledged means fsynced.
fn default_persistence() -> RedisPersistence {
    RedisPersistence::Always
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            persistence: default_persistence(),
            replicas: 0,
            sentinels: 0,
            down_after: default_down_after(),
            failover_timeout: default_failover_timeout(),
            min_replicas_to_write: 0,
            min_replicas_max_lag: default_min_replicas_max_lag(),
            wait_replicas: 0,
            wait_timeout: default_wait_timeout(),
        }
    }
}

impl RedisOptions {
    /// Checks the Redis table; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.replicas > 4 {
            return Err(invalid(
                "redis.replicas",
                format!("must be between 0 and 4, got {}", self.replicas),
            ));
        }
        if !matches!(self.sentinels, 0 | 3) {
            return Err(invalid(
                "redis.sentinels",
                format!("must be 0 or 3, got {}", self.sentinels),
            ));
        }
        if self.sentinels > 0 && self.replicas == 0 {
            return Err(invalid(
                "redis.sentinels",
                "Sentinel needs at least one replica to promote",
            ));
        }
        if self.down_after < Duration::from_millis(100) {
            return Err(invalid("redis.down_after", "must be at least 100ms"));
        }
        if self.failover_timeout < Duration::from_secs(1) {
            return Err(invalid("redis.failover_timeout", "must be at least 1s"));
        }
        if self.min_replicas_to_write > self.replicas {
            return Err(invalid(
                "redis.min_replicas_to_write",
                format!(
                    "{} is more than the {} replicas: every write would be refused",
                    self.min_replicas_to_write, self.replicas
                ),
            ));
        }
        if self.min_replicas_max_lag < Duration::from_secs(1) {
            return Err(invalid("redis.min_replicas_max_lag", "must be at least 1s"));
        }
        if self.wait_replicas > self.replicas {
            return Err(invalid(
                "redis.wait_replicas",
                format!(
                    "{} is more than the {} replicas",
                    self.wait_replicas, self.replicas
                ),
            ));
        }
        if self.wait_replicas > 0 && self.wait_timeout.is_zero() {
            return Err(invalid("redis.wait_timeout", "must be positive"));
        }
        Ok(())
    }
}

/// When bus nodes fsync their Raft log (the node's `fsync` setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BusFsync {
    /// Every batch is fsynced before it is acknowledged (the default, the bus's promise).
    #[default]
    Always,
    /// Known-bad: acknowledged once in the page cache; a power loss of a majority loses
    /// acknowledged messages. For measuring what fsync costs and testing the harness.
    Never,
}

impl BusFsync {
    pub fn as_str(self) -> &'static str {
        match self {
            BusFsync::Always => "always",
            BusFsync::Never => "never",
        }
    }
}

/// How bus nodes serve reads (the node's `read_consistency` setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BusReadConsistency {
    /// From the node's own replica as it is (the node's default): stale reads are allowed,
    /// and reported as anomalies.
    #[default]
    Local,
    /// Read index first: a read sees every write acknowledged before it; stale reads are
    /// violations.
    Linearizable,
}

impl BusReadConsistency {
    pub fn as_str(self) -> &'static str {
        match self {
            BusReadConsistency::Local => "local",
            BusReadConsistency::Linearizable => "linearizable",
        }
    }
}

/// Bus node options (`[bus]`), written to `DIR/node.toml`, which every node reads through
/// `--config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusOptions {
    #[serde(default)]
    pub fsync: BusFsync,
    #[serde(default)]
    pub read_consistency: BusReadConsistency,
    /// Failpoints armed in every node from its start (`"bug.apply_twice=return;net.send=5%return"`),
    /// passed as `--failpoints`, not through `node.toml`; needs a failpoint build of the node
    /// (`--node-bin`). For planted bugs that must be on before a fault strikes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failpoints: Option<String>,
}

impl BusOptions {
    /// The node config file for these options.
    pub fn node_toml(&self) -> String {
        format!(
            "# written by the raftbus harness from the scenario's [bus] table\nfsync = \"{}\"\nread_consistency = \"{}\"\n",
            self.fsync.as_str(),
            self.read_consistency.as_str()
        )
    }
}

/// Reads per second of the read workload when the scenario does not say: modest, so that
/// chaos runs check stale reads without the reads weighing on the publish figures. Stream
/// mode only; pub/sub runs read nothing by default (Redis pub/sub stores nothing).
pub const DEFAULT_READ_RATE: f64 = 50.0;
const MAX_READ_RATE: f64 = 100_000.0;

/// From time `at` on, the total offered rate is `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(with = "humantime_serde_str")]
    pub at: Duration,
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Layout version; must be 1.
    pub version: u32,
    /// Short name, used in the results directory name and in reports.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_target")]
    pub target: TargetKind,
    /// Bus cluster size (Redis uses one primary plus `redis.replicas`).
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// Offered publishes per second, all publishers together.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Total run length, warmup included.
    #[serde(default = "default_duration", with = "humantime_serde_str")]
    pub duration: Duration,
    /// Leading part of the run excluded from statistics (still checked).
    #[serde(default = "default_warmup", with = "humantime_serde_str")]
    pub warmup: Duration,
    /// Payload bytes per message.
    #[serde(default = "default_size")]
    pub size: usize,
    #[serde(default = "default_channels")]
    pub channels: usize,
    #[serde(default = "default_publishers")]
    pub publishers: usize,
    #[serde(default = "default_subscribers")]
    pub subscribers_per_node: usize,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Seed for everything random in the run; chosen at random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A publish without a reply after this long is indeterminate.
    #[serde(default = "default_request_timeout", with = "humantime_serde_str")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub redis: RedisOptions,
    /// Client behaviour under faults (both targets).
    #[serde(default)]
    pub client: ClientOptions,
    /// Queue mode's consumer groups.
    #[serde(default)]
    pub queue: QueueOptions,
    /// Bus node settings.
    #[serde(default)]
    pub bus: BusOptions,
    /// Mount the lazy filesystem (writes in memory until fsync) under every server's data
    /// dir even without a disk fault in the schedule, e.g. to measure its overhead. Runs
    /// whose schedule has power-loss or torn-write get it anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lazy_fs: bool,
    /// Reads per second (XRANGE/XREVRANGE/XLEN against random nodes, all readers
    /// together); 0 turns the read workload off. Default: [`DEFAULT_READ_RATE`] in stream
    /// mode, 0 in pub/sub mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_rate: Option<f64>,
    /// Load steps: from `at` on, the offered rate is `rate`.
    #[serde(default, rename = "step", skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// A seeded fault mix (`raftbus chaos --faults ...` writes it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<crate::chaos::ChaosOptions>,
    /// An explicit fault timeline (`[[fault]] at = "10s", duration = "5s", kind = ...`).
    #[serde(default, rename = "fault", skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::chaos::FaultStep>,
}

fn default_name() -> String {
    "bench".to_string()
}
fn default_target() -> TargetKind {
    TargetKind::Bus
}
fn default_nodes() -> usize {
    3
}
fn default_rate() -> f64 {
    10_000.0
}
fn default_duration() -> Duration {
    Duration::from_secs(30)
}
fn default_warmup() -> Duration {
    Duration::from_secs(5)
}
fn default_size() -> usize {
    100
}
fn default_channels() -> usize {
    8
}
fn default_publishers() -> usize {
    4
}
fn default_subscribers() -> usize {
    1
}
fn default_mode() -> Mode {
    Mode::Stream
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            version: SCENARIO_VERSION,
            name: default_name(),
            target: default_target(),
            nodes: default_nodes(),
            rate: default_rate(),
            duration: default_duration(),
            warmup: default_warmup(),
            size: default_size(),
            channels: default_channels(),
            publishers: default_publishers(),
            subscribers_per_node: default_subscribers(),
            mode: default_mode(),
            seed: None,
            request_timeout: default_request_timeout(),
            redis: RedisOptions::default(),
            client: ClientOptions::default(),
            queue: QueueOptions::default(),
            bus: BusOptions::default(),
            lazy_fs: false,
            read_rate: None,
            steps: Vec::new(),
            chaos: None,
            faults: Vec::new(),
        }
    }
}

/// Upper bounds that keep a typo from exhausting the machine.
const MAX_NODES: usize = 9;
const MAX_CHANNELS: usize = 4096;
const MAX_PUBLISHERS: usize = 1024;
const MAX_SUBSCRIBERS_PER_NODE: usize = 256;
const MAX_SIZE: usize = 16 * 1024 * 1024;
const MAX_RATE: f64 = 10_000_000.0;

impl Scenario {
    /// Parses a scenario file; it is not validated yet.
    pub fn from_toml(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::from_toml(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("scenario serializes to toml")
    }

    pub fn write(&self, dir: &Path) -> Result<(), ScenarioError> {
        let path = dir.join(raftbus_reports::model::SCENARIO_FILE);
        std::fs::write(&path, self.to_toml()).map_err(|source| ScenarioError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.version != SCENARIO_VERSION {
            return Err(invalid(
                "version",
                format!("must be {SCENARIO_VERSION}, got {}", self.version),
            ));
        }
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "name",
                format!(
                    "must be non-empty and use only letters, digits, '-', '_' or '.', got {:?}",
                    self.name
                ),
            ));
        }
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(invalid(
                "nodes",
                format!("must be between 1 and {MAX_NODES}, got {}", self.nodes),
            ));
        }
        check_rate("rate", self.rate)?;
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be positive"));
        }
        if self.warmup >= self.duration {
            return Err(invalid(
                "warmup",
                format!(
                    "must be shorter than duration ({} >= {})",
                    humantime::format_duration(self.warmup),
                    humantime::format_duration(self.duration)
                ),
            ));
        }
        if self.size < HEADER_LEN || self.size > MAX_SIZE {
            return Err(invalid(
                "size",
                format!(
                    "must be between {HEADER_LEN} (the message header) and {MAX_SIZE} bytes, got {}",
                    self.size
                ),
            ));
        }
        if self.channels == 0 || self.channels > MAX_CHANNELS {
            return Err(invalid(
                "channels",
                format!(
                    "must be between 1 and {MAX_CHANNELS}, got {}",
                    self.channels
                ),
            ));
        }
        if self.publishers == 0 || self.publishers > MAX_PUBLISHERS {
            return Err(invalid(
                "publishers",
                format!(
                    "must be between 1 and {MAX_PUBLISHERS}, got {}",
                    self.publishers
                ),
            ));
        }
        if self.subscribers_per_node > MAX_SUBSCRIBERS_PER_NODE {
            return Err(invalid(
                "subscribers_per_node",
                format!(
                    "must be at most {MAX_SUBSCRIBERS_PER_NODE}, got {}",
                    self.subscribers_per_node
                ),
            ));
        }
        if self.seed.is_some_and(|seed| seed > i64::MAX as u64) {
            return Err(invalid(
                "seed",
                format!("must be below 2^63, got {}", self.seed.unwrap_or(0)),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be positive"));
        }
        self.redis.validate()?;
        self.queue.validate()?;
        if self.target == TargetKind::Redis && self.bus.failpoints.is_some() {
            return Err(invalid(
                "bus.failpoints",
                "failpoints exist only in the bus's failpoint build; this scenario targets redis",
            ));
        }
        if self.client.stall.is_zero() {
            return Err(invalid("client.stall", "must be positive"));
        }
        if let Some(r) = self.read_rate {
            if !r.is_finite() || !(0.0..=MAX_READ_RATE).contains(&r) {
                return Err(invalid(
                    "read_rate",
                    format!("must be between 0 and {MAX_READ_RATE} reads per second, got {r}"),
                ));
            }
        }
        let mut previous = Duration::ZERO;
        for step in &self.steps {
            check_rate("step.rate", step.rate)?;
            if step.at >= self.duration {
                return Err(invalid(
                    "step.at",
                    format!(
                        "{} is not before the end of the run ({})",
                        humantime::format_duration(step.at),
                        humantime::format_duration(self.duration)
                    ),
                ));
            }
            if step.at < previous {
                return Err(invalid(
                    "step.at",
                    "steps must be in increasing order of `at`",
                ));
            }
            previous = step.at;
        }
        if let Some(chaos) = &self.chaos {
            if !chaos.faults.is_empty() && !self.faults.is_empty() {
                return Err(invalid(
                    "fault",
                    "give either a seeded fault mix ([chaos] faults, --faults) or an explicit [[fault]] timeline, not both",
                ));
            }
            if chaos.interval.is_zero() {
                return Err(invalid("chaos.interval", "must be positive"));
            }
            if chaos.recovery >= self.duration {
                return Err(invalid("chaos.recovery", "must be shorter than duration"));
            }
            if chaos.recovery < crate::chaos::MIN_RECOVERY {
                return Err(invalid(
                    "chaos.recovery",
                    format!(
                        "must be at least {} so that a target that never recovers is caught",
                        humantime::format_duration(crate::chaos::MIN_RECOVERY)
                    ),
                ));
            }
        }
        for f in &self.faults {
            if f.at + f.duration > self.duration {
                return Err(invalid(
                    "fault.at",
                    format!(
                        "the {} fault at {} ends after the run ({})",
                        f.kind,
                        humantime::format_duration(f.at),
                        humantime::format_duration(self.duration)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the run injects faults.
    pub fn has_faults(&self) -> bool {
        !self.faults.is_empty() || self.chaos.as_ref().is_some_and(|c| !c.faults.is_empty())
    }

    /// Offered total rate at `t` seconds since the start.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut rate = self.rate;
        for step in &self.steps {
            if step.at.as_secs_f64() <= t {
                rate = step.rate;
            } else {
                break;
            }
        }
        rate
    }

    /// Reads per second of the read workload (see [`Scenario::read_rate`]).
    pub fn reads_per_s(&self) -> f64 {
        self.read_rate.unwrap_or(match self.mode {
            Mode::Stream => DEFAULT_READ_RATE,
            Mode::Pubsub | Mode::Queue => 0.0,
        })
    }

    /// Highest total rate at any time of the run.
    pub fn peak_rate(&self) -> f64 {
        self.steps.iter().map(|s| s.rate).fold(self.rate, f64::max)
    }

    /// How many server processes the run starts.
    pub fn server_count(&self, target: TargetKind) -> usize {
        match target {
            TargetKind::Redis => 1 + self.redis.replicas,
            _ => self.nodes,
        }
    }
}

fn check_rate(field: &'static str, rate: f64) -> Result<(), ScenarioError> {
    if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
        return Err(invalid(
            field,
            format!(
                "must be a positive number of messages per second up to {MAX_RATE}, got {rate}"
            ),
        ));
    }
    Ok(())
}

/// Durations as humantime strings (`"30s"`, `"2m"`) in TOML.
mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let s = Scenario {
            seed: Some(7),
            steps: vec![Step {
                at: Duration::from_secs(10),
                rate: 5000.0,
            }],
            ..Scenario::default()
        };
        s.validate().unwrap();
        let back = Scenario::from_toml(&s.to_toml(), "x").unwrap();
        assert_eq!(back, s);
        assert_eq!(back.rate_at(0.0), 10_000.0);
        assert_eq!(back.rate_at(10.0), 5000.0);
        assert_eq!(back.peak_rate(), 10_000.0);
    }

    #[test]
    fn reads_default_by_mode_and_read_consistency_reaches_the_node_config() {
        let s = Scenario::default();
        assert_eq!(s.reads_per_s(), DEFAULT_READ_RATE);
        let pubsub = Scenario {
            mode: Mode::Pubsub,
            ..Scenario::default()
        };
        assert_eq!(pubsub.reads_per_s(), 0.0);
        assert!(s.bus.node_toml().contains("read_consistency = \"local\""));
        let s = Scenario::from_toml(
            "version = 1\nread_rate = 0\n[bus]\nread_consistency = \"linearizable\"\n",
            "f",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.reads_per_s(), 0.0);
        assert!(s
            .bus
            .node_toml()
            .contains("read_consistency = \"linearizable\""));
        let bad = Scenario::from_toml("version = 1\nread_rate = -1.0\n", "f").unwrap();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("read_rate"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let err = Scenario::from_toml("version = 1\nrat = 5\n", "f.toml").unwrap_err();
        assert!(err.to_string().contains("rat"), "{err}");
        let s = Scenario::from_toml("version = 1\nrate = -5.0\n", "f.toml").unwrap();
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains("`rate`"), "{err}");
        let s = Scenario::from_toml("version = 2\n", "f.toml").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("`version`"));
        let s =
            Scenario::from_toml("version = 1\nduration = \"5s\"\nwarmup = \"5s\"\n", "f").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("`warmup`"));
        let err = Scenario::from_toml("version = 1\nduration = \"soon\"\n", "f").unwrap_err();
        assert!(err.to_string().contains("duration"), "{err}");
        // Failpoints on a Redis target would be silently ignored: refused instead.
        let fp = "version = 1\ntarget = \"redis\"\n[bus]\nfailpoints = \"net.send=return\"\n";
        let s = Scenario::from_toml(fp, "f").unwrap();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bus.failpoints"));
        let s = Scenario::from_toml(&fp.replace("redis", "both"), "f").unwrap();
        s.validate().unwrap();
    }
}
