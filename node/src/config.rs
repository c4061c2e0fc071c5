//! Node configuration: command-line flags (who and where this node is) plus an optional
//! TOML file (how it behaves), validated before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state_machine::Retention;
use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --peers entry '{entry}': expected ID=HOST:PORT")]
    PeerSyntax { entry: String },
    #[error("--peers lists node {0} twice")]
    DuplicatePeer(NodeId),
    #[error("--peers does not list this node's --id {0}")]
    SelfMissing(NodeId),
    #[error("--raft-listen {listen} differs from this node's address {peer} in --peers")]
    RaftAddrMismatch {
        listen: SocketAddr,
        peer: SocketAddr,
    },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Parses `1=127.0.0.1:7401,2=127.0.0.1:7402`.
pub fn parse_peers(spec: &str) -> Result<BTreeMap<NodeId, SocketAddr>, ConfigError> {
    let mut peers = BTreeMap::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ConfigError::PeerSyntax {
            entry: entry.to_string(),
        };
        let (id, addr) = entry.split_once('=').ok_or_else(bad)?;
        let id: NodeId = id.trim().parse().map_err(|_| bad())?;
        let addr: SocketAddr = addr.trim().parse().map_err(|_| bad())?;
        if peers.insert(id, addr).is_some() {
            return Err(ConfigError::DuplicatePeer(id));
        }
    }
    Ok(peers)
}

/// Limits on client input. Defaults follow Redis where Redis has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputLimits {
    /// Largest bulk string a client may send, in bytes.
    pub max_bulk_len: usize,
    /// Most elements in one command.
    pub max_array_len: usize,
    /// Longest inline (telnet-style) command line.
    pub max_inline_len: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_bulk_len: 4 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// When the Raft log is fsynced (`fsync = "always" | "never"` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Every group-committed batch of appends is fsynced (`fdatasync`) before it counts as
    /// written, so an acknowledged message is on disk on a majority: it survives a power
    /// loss of every node. The default.
    #[default]
    Always,
    /// Appends count as written once they are in the operating system's page cache. Faster,
    /// and survives `kill -9`, but a power loss of a majority loses acknowledged messages.
    /// Known-bad: for measuring what fsync costs, and as the configuration that the
    /// harness's `power-loss` fault must catch. Votes and the log's meta file stay synced.
    Never,
}

impl FsyncPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Never => "never",
        }
    }
}

/// How XRANGE, XREVRANGE, XLEN and XREAD are served (`read_consistency = "local" |
/// "linearizable"` in the config file). INFO reports it as `read_consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// From this node's applied replica as it is: fast and available while this node is
    /// cut off, but a follower that is behind (or an old leader that was partitioned or
    /// paused) may answer without entries other clients already had acknowledged. The
    /// default.
    #[default]
    Local,
    /// Read index first: the leader confirms its leadership with a quorum and names its
    /// commit index (a follower asks the leader over the peer network), this node waits
    /// until it has applied that far, then serves from its replica. A read sees every
    /// write acknowledged before it began; a node that cannot reach a quorum-confirmed
    /// leader within `write_timeout_ms` answers `-TRYAGAIN` instead of serving.
    Linearizable,
}

impl ReadConsistency {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadConsistency::Local => "local",
            ReadConsistency::Linearizable => "linearizable",
        }
    }
}

/// How the kernel schedules the node's threads (`cpu_scheduling = "batch" | "normal"` in
/// the config file). INFO reports it as `cpu_scheduling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuScheduling {
    /// `SCHED_BATCH`: a thread that wakes does not preempt the one running. A write wakes
    /// the flusher, the peers and the client in turn; on a small machine each of those
    /// wakes otherwise preempted the leader's runtime thread (0.22 involuntary switches
    /// per request under `redis-benchmark -c 50`, 0.02 with batch). The default.
    #[default]
    Batch,
    /// The kernel's default policy (`SCHED_OTHER`).
    Normal,
}

impl CpuScheduling {
    pub fn as_str(self) -> &'static str {
        match self {
            CpuScheduling::Batch => "batch",
            CpuScheduling::Normal => "normal",
        }
    }
}

/// Everything a node can be tuned with through `--config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Config file format version; only 1 exists.
    pub version: u32,
    pub retention: Retention,
    pub limits: InputLimits,
    /// Committed entries a subscriber may lag behind before it is disconnected.
    pub subscriber_backlog: usize,
    /// Build a snapshot (and purge the log before it) about every this many applied log
    /// entries; the nodes take turns, each at its own phase (`snapshot_schedule`).
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot, for followers that are a little behind.
    pub keep_after_snapshot: u64,
    /// Also the time one AppendEntries may take (openraft uses it as the RPC timeout).
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How long a client write may wait for commit before the reply says the outcome is
    /// unknown.
    pub write_timeout_ms: u64,
    /// Client password (`AUTH`); none by default.
    pub requirepass: Option<String>,
    /// Most pipelined commands in flight per client connection.
    pub max_pipeline: usize,
    /// Raft proposals in flight at once. Appends that arrive meanwhile wait and go out
    /// together as the next batch, so fewer means larger batches (fewer fsyncs per
    /// message) and more means less queueing at low load.
    pub max_inflight_batches: usize,
    /// Durability of the Raft log: `always` (default) or `never` (known-bad, see
    /// [`FsyncPolicy`]). INFO reports it as `log_fsync`.
    pub fsync: FsyncPolicy,
    /// How reads are served: `local` (default) or `linearizable` (see
    /// [`ReadConsistency`]). INFO reports it as `read_consistency`.
    pub read_consistency: ReadConsistency,
    /// Scheduling policy of every thread of the node: `batch` (default) or `normal` (see
    /// [`CpuScheduling`]).
    pub cpu_scheduling: CpuScheduling,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            version: 1,
            retention: Retention::default(),
            limits: InputLimits::default(),
            subscriber_backlog: 65_536,
            snapshot_every: 20_000,
            keep_after_snapshot: 2_000,
            heartbeat_ms: 150,
            election_timeout_min_ms: 750,
            election_timeout_max_ms: 1_500,
            write_timeout_ms: 5_000,
            requirepass: None,
            max_pipeline: 10_000,
            max_inflight_batches: 2,
            fsync: FsyncPolicy::Always,
            read_consistency: ReadConsistency::Local,
            cpu_scheduling: CpuScheduling::Batch,
        }
    }
}

impl NodeSettings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let settings: NodeSettings =
            toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.version != 1 {
            return fail("version must be 1");
        }
        if self.retention.max_entries == 0 || self.retention.max_bytes == 0 {
            return fail("retention.max_entries and retention.max_bytes must be > 0");
        }
        if self.limits.max_bulk_len < 1024 || self.limits.max_array_len < 16 {
            return fail("limits.max_bulk_len must be >= 1024 and limits.max_array_len >= 16");
        }
        if self.subscriber_backlog < 16 {
            return fail("subscriber_backlog must be >= 16");
        }
        if self.snapshot_every == 0 {
            return fail("snapshot_every must be > 0");
        }
        if self.heartbeat_ms == 0 || self.election_timeout_min_ms <= self.heartbeat_ms * 2 {
            return fail("election_timeout_min_ms must be more than twice heartbeat_ms");
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return fail("election_timeout_max_ms must be greater than election_timeout_min_ms");
        }
        if self.write_timeout_ms == 0 || self.max_pipeline == 0 || self.max_inflight_batches == 0 {
            return fail("write_timeout_ms, max_pipeline and max_inflight_batches must be > 0");
        }
        Ok(())
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub raft_listen: SocketAddr,
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub data_dir: PathBuf,
    pub cluster_secret: Option<String>,
    pub settings: NodeSettings,
}

impl NodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(own) = self.peers.get(&self.id) else {
            return Err(ConfigError::SelfMissing(self.id));
        };
        // Binding 0.0.0.0 while advertising a concrete address is fine; a different port
        // is a mistake that would make peers talk to someone else.
        if own.port() != self.raft_listen.port()
            || (!self.raft_listen.ip().is_unspecified() && own.ip() != self.raft_listen.ip())
        {
            return Err(ConfigError::RaftAddrMismatch {
                listen: self.raft_listen,
                peer: *own,
            });
        }
        self.settings.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject_mistakes() {
        let p = parse_peers("1=127.0.0.1:7401, 2=127.0.0.1:7402").unwrap();
        assert_eq!(p.len(), 2);
        assert!(matches!(
            parse_peers("1:127.0.0.1:1"),
            Err(ConfigError::PeerSyntax { .. })
        ));
        assert!(matches!(
            parse_peers("1=127.0.0.1:1,1=127.0.0.1:2"),
            Err(ConfigError::DuplicatePeer(1))
        ));
    }

    #[test]
    fn settings_file_rejects_unknown_fields_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "snapshot_every = 10\n[retention]\nmax_entries = 5\nmax_bytes = 100\n",
        )
        .unwrap();
        let s = NodeSettings::load(&path).unwrap();
        assert_eq!(s.snapshot_every, 10);
        assert_eq!(s.retention.max_entries, 5);

        std::fs::write(&path, "snapshot_evry = 10\n").unwrap();
        let err = NodeSettings::load(&path).unwrap_err().to_string();
        assert!(err.contains("snapshot_evry"), "{err}");

        std::fs::write(&path, "heartbeat_ms = 400\n").unwrap();
        assert!(NodeSettings::load(&path).is_err());

        assert_eq!(NodeSettings::default().fsync, FsyncPolicy::Always);
        std::fs::write(&path, "fsync = \"never\"\n").unwrap();
        assert_eq!(NodeSettings::load(&path).unwrap().fsync, FsyncPolicy::Never);
        std::fs::write(&path, "fsync = \"sometimes\"\n").unwrap();
        let err = NodeSettings::load(&path).unwrap_err().to_string();
        assert!(err.contains("sometimes"), "{err}");

        assert_eq!(
            NodeSettings::default().read_consistency,
            ReadConsistency::Local
        );
        std::fs::write(&path, "read_consistency = \"linearizable\"\n").unwrap();
        assert_eq!(
            NodeSettings::load(&path).unwrap().read_consistency,
            ReadConsistency::Linearizable
        );
        std::fs::write(&path, "read_consistency = \"eventual\"\n").unwrap();
        let err = NodeSettings::load(&path).unwrap_err().to_string();
        assert!(err.contains("eventual"), "{err}");

        assert_eq!(NodeSettings::default().cpu_scheduling, CpuScheduling::Batch);
        std::fs::write(&path, "cpu_scheduling = \"normal\"\n").unwrap();
        assert_eq!(
            NodeSettings::load(&path).unwrap().cpu_scheduling,
            CpuScheduling::Normal
        );
        std::fs::write(&path, "cpu_scheduling = \"realtime\"\n").unwrap();
        let err = NodeSettings::load(&path).unwrap_err().to_string();
        assert!(err.contains("realtime"), "{err}");
    }
}
