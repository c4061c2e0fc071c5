//! Targets: the server processes a run drives, the bus cluster or Redis.
//!
//! - [`spawner`] — where processes run and which address they get.
//! - [`lab`] — the lab spawner: each server in its own network namespace (198.18.1.N).
//! - [`process`] — one server process: start, kill, restart, pause, resume, log tail; with a
//!   lazy-filesystem spawner its data dir is mounted before the first start (power loss).
//! - [`bus`] — a raftbus cluster of `raftbus-node` processes, ready once it has a leader.
//! - [`redis`] — `redis-server` (plus replicas), the baseline.
//! - [`sentinel`] — Redis Sentinels (`s1`..) that fail the primary over.
//! - [`remote`] — the remote spawner: each server on an inventory host, started over SSH
//!   under a per-run directory (`--hosts`).
//! - [`cost`] — what each server process costs (CPU, RSS, disk writes, fsyncs), sampled
//!   from `/proc` over every lifetime.
//!
//! A [`Cluster`] owns its processes: dropping it kills them all (process groups, SIGKILL),
//! and each process also dies with the harness through `PR_SET_PDEATHSIG`.

pub mod bus;
pub mod cost;
pub mod lab;
pub mod process;
pub mod redis;
pub mod remote;
pub mod sentinel;
pub mod spawner;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use raftbus_reports::model::Target;

pub use process::{ProcessSpec, ServerProcess};
pub use spawner::{check_client_addr, LoopbackSpawner, Spawner};

/// Under a run's directory: the lazy filesystems' backing dirs (`disk/<node>`), i.e. what
/// is durable, while `data/<node>` is where they are mounted.
pub const DISK_DIR: &str = "disk";
/// How many log lines an error shows per node.
const TAIL_LINES: usize = 15;
/// Startup attempts with fresh ports when one was taken meanwhile.
const START_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{name} not found: {hint}")]
    MissingBinary { name: String, hint: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("node {0} is not running")]
    NotRunning(String),
    #[error(
        "refusing to connect to {0}: only loopback and the lab range 198.18.0.0/15 are allowed"
    )]
    AddressNotAllowed(SocketAddr),
    #[error("node {node} exited during startup ({status}); last log lines:\n{tail}")]
    Exited {
        node: String,
        status: String,
        tail: String,
    },
    #[error("ports stayed in use after {attempts} attempts; last log lines:\n{tail}")]
    PortsInUse { attempts: usize, tail: String },
    #[error("{what} not ready after {}s; last log lines:\n{tails}", timeout.as_secs())]
    StartTimeout {
        what: String,
        timeout: Duration,
        tails: String,
    },
    #[error("node {node}: {message}")]
    Client { node: String, message: String },
    #[error("lazy filesystem: {0}")]
    Disk(String),
    #[error("host {host}: {message}")]
    Remote { host: String, message: String },
}

/// One server of a cluster.
#[derive(Debug)]
pub struct Node {
    /// `n1`..`nN`.
    pub name: String,
    /// Where clients (publishers, subscribers) connect.
    pub addr: SocketAddr,
    /// The process; use it to kill, restart, pause, resume.
    pub process: ServerProcess,
}

/// A running target: its servers, and which of them accept publishes.
pub struct Cluster {
    pub target: Target,
    /// e.g. `appendfsync always, 1 replica` or `3 nodes`.
    pub detail: String,
    /// e.g. `redis-server 7.0.15`.
    pub version: String,
    nodes: Vec<Node>,
    /// Indices into `nodes` of the servers that accept writes.
    writable: Vec<usize>,
    /// Redis Sentinels (empty for the bus and for Redis without failover).
    sentinels: Vec<Node>,
    spawner: std::sync::Arc<dyn Spawner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("target", &self.target)
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl Cluster {
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// A server or a Sentinel by name.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes
            .iter_mut()
            .chain(self.sentinels.iter_mut())
            .find(|n| n.name == name)
    }

    /// `(name, addr)` of the Redis Sentinels (empty without Sentinel).
    pub fn sentinel_endpoints(&self) -> Vec<(String, SocketAddr)> {
        self.sentinels
            .iter()
            .map(|n| (n.name.clone(), n.addr))
            .collect()
    }

    /// `(name, addr)` of the servers publishers talk to (bus: all; Redis: the primary).
    pub fn publish_endpoints(&self) -> Vec<(String, SocketAddr)> {
        self.writable
            .iter()
            .map(|&i| (self.nodes[i].name.clone(), self.nodes[i].addr))
            .collect()
    }

    /// `(name, addr)` of every server; subscribers connect to each.
    pub fn endpoints(&self) -> Vec<(String, SocketAddr)> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), n.addr))
            .collect()
    }

    pub fn network(&self) -> &'static str {
        self.spawner.network()
    }

    /// Where the servers run (for [`Spawner::finish`] once the cluster is gone).
    pub fn spawner(&self) -> std::sync::Arc<dyn Spawner> {
        self.spawner.clone()
    }

    pub fn network_notes(&self) -> Vec<String> {
        self.spawner.notes()
    }

    /// Errors if a node that should run has exited.
    pub fn check_alive(&mut self) -> Result<(), TargetError> {
        for node in self.nodes.iter_mut().chain(self.sentinels.iter_mut()) {
            if let Some(status) = node.process.exited() {
                return Err(TargetError::Exited {
                    node: node.name.clone(),
                    status: status.to_string(),
                    tail: node.process.log_tail(TAIL_LINES),
                });
            }
        }
        Ok(())
    }

    /// Samples every server's and Sentinel's `/proc` figures.
    pub fn sample_cost(&mut self) {
        for node in self.nodes.iter_mut().chain(self.sentinels.iter_mut()) {
            node.process.sample_cost();
        }
    }

    /// The running servers that report fsyncs (bus nodes; Redis does not), to ask.
    pub fn fsync_probes(&self) -> Vec<cost::FsyncProbe> {
        if self.target != Target::Bus {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|n| !n.process.is_paused())
            .filter_map(|n| {
                Some(cost::FsyncProbe {
                    name: n.name.clone(),
                    pid: n.process.pid()?,
                    addr: n.addr,
                })
            })
            .collect()
    }

    /// Records the fsync count node `name` reported while it ran as `pid`.
    pub fn observe_fsyncs(&mut self, name: &str, pid: u32, fsyncs: u64) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name == name) {
            n.process.observe_fsyncs(pid, fsyncs);
        }
    }

    /// What every server and Sentinel cost so far, over all of its lifetimes.
    pub fn process_costs(&self) -> Vec<raftbus_reports::model::ProcessCost> {
        let ticks = cost::clock_ticks_per_s();
        let role = match self.target {
            Target::Bus => "bus node",
            Target::Redis => "redis-server",
        };
        let fsyncs = self.target == Target::Bus;
        self.nodes
            .iter()
            .map(|n| n.process.cost().figures(&n.name, role, ticks, fsyncs))
            .chain(
                self.sentinels
                    .iter()
                    .map(|n| n.process.cost().figures(&n.name, "sentinel", ticks, false)),
            )
            .collect()
    }

    /// Stops every server (SIGTERM with a short grace, then SIGKILL).
    pub fn shutdown(&mut self) {
        for node in self.sentinels.iter_mut().chain(self.nodes.iter_mut()) {
            node.process.terminate(Duration::from_secs(3));
        }
    }
}

/// Finds `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Whether a log says the process could not bind its port.
fn says_address_in_use(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("address already in use") || l.contains("addrinuse") || l.contains("address in use")
}

fn tails(procs: &[&ServerProcess]) -> String {
    procs
        .iter()
        .map(|p| {
            format!(
                "--- {} ({})\n{}",
                p.name(),
                p.spec().log.display(),
                p.log_tail(TAIL_LINES)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn exit_text(status: ExitStatus) -> String {
    status.to_string()
}

/// The outcome of waiting for started processes: ready, port clash (retry), or fatal.
enum Startup {
    Ready,
    PortClash(String),
}

/// Checks every process: a clash on a port means retry, any other exit is fatal.
fn startup_exits(procs: &mut [&mut ServerProcess]) -> Result<Option<Startup>, TargetError> {
    for p in procs.iter_mut() {
        if let Some(status) = p.exited() {
            let tail = p.log_tail(TAIL_LINES);
            if says_address_in_use(&tail) {
                return Ok(Some(Startup::PortClash(tail)));
            }
            return Err(TargetError::Exited {
                node: p.name().to_string(),
                status: exit_text(status),
                tail,
            });
        }
    }
    Ok(None)
}

/// Polls `probe` until it says ready, watching for processes that exit meanwhile.
async fn wait_ready<F, Fut>(
    procs: &mut [ServerProcess],
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<Startup, TargetError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut refs: Vec<&mut ServerProcess> = procs.iter_mut().collect();
        if let Some(outcome) = startup_exits(&mut refs)? {
            return Ok(outcome);
        }
        if probe().await {
            return Ok(Startup::Ready);
        }
        if tokio::time::Instant::now() >= deadline {
            let refs: Vec<&ServerProcess> = procs.iter().collect();
            return Err(TargetError::StartTimeout {
                what: what.to_string(),
                timeout,
                tails: tails(&refs),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a server's config file `conf_dir/NAME.conf` here and hands it to the spawner,
/// which copies it to the server's host when that is another machine; returns the path the
/// server is started with.
fn provide_config(
    spawner: &dyn Spawner,
    conf_dir: &Path,
    name: &str,
    text: &str,
) -> Result<PathBuf, TargetError> {
    let io = |what: String| move |source| TargetError::Io { what, source };
    std::fs::create_dir_all(conf_dir).map_err(io(format!("create {}", conf_dir.display())))?;
    let conf = conf_dir.join(format!("{name}.conf"));
    std::fs::write(&conf, text).map_err(io(format!("write {}", conf.display())))?;
    spawner.provide_file(name, &conf)
}

/// Removes what a failed startup attempt left, so the next one starts clean.
fn clear_attempt(dir: &Path, names: &[String]) {
    for name in names {
        let _ = std::fs::remove_dir_all(dir.join("data").join(name));
        let _ = std::fs::remove_dir_all(dir.join(DISK_DIR).join(name));
        let _ = std::fs::remove_file(dir.join("logs").join(format!("{name}.log")));
    }
}

/// Opens a client connection to a node, refusing non-lab addresses; replies time out
/// after `timeout` too.
pub async fn connect(
    node: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<::redis::aio::MultiplexedConnection, TargetError> {
    connect_with(node, addr, timeout, Some(timeout)).await
}

/// Like [`connect`], with a separate reply timeout (`None`: the caller times requests).
pub async fn connect_with(
    node: &str,
    addr: SocketAddr,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
) -> Result<::redis::aio::MultiplexedConnection, TargetError> {
    check_client_addr(addr)?;
    let client =
        ::redis::Client::open(format!("redis://{addr}/")).map_err(|e| TargetError::Client {
            node: node.to_string(),
            message: e.to_string(),
        })?;
    let mut config = ::redis::AsyncConnectionConfig::new().set_connection_timeout(connect_timeout);
    if let Some(t) = response_timeout {
        config = config.set_response_timeout(t);
    }
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| TargetError::Client {
            node: node.to_string(),
            message: e.to_string(),
        })
}

/// Runs `INFO <section>` on a node and returns the text.
pub async fn info(node: &str, addr: SocketAddr, section: &str) -> Result<String, TargetError> {
    let mut conn = connect(node, addr, Duration::from_secs(2)).await?;
    ::redis::cmd("INFO")
        .arg(section)
        .query_async::<String>(&mut conn)
        .await
        .map_err(|e| TargetError::Client {
            node: node.to_string(),
            message: e.to_string(),
        })
}

/// `key:value` lines of an INFO reply.
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_port_clashes() {
        let info = "# Replication\r\nrole:leader\r\nleader_id:\r\nterm:3\r\n";
        assert_eq!(info_field(info, "role"), Some("leader"));
        assert_eq!(info_field(info, "leader_id"), Some(""));
        assert_eq!(info_field(info, "term"), Some("3"));
        assert_eq!(info_field(info, "nope"), None);
        assert!(says_address_in_use(
            "Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use"
        ));
        assert!(!says_address_in_use("ready to accept connections"));
    }
}
