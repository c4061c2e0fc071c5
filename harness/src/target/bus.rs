//! The bus: `nodes` raftbus-node processes forming one Raft group, ready once every node
//! answers `INFO replication` and they agree on a leader.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raftbus_reports::model::Target;

use super::{
    clear_attempt, info, info_field, wait_ready, Cluster, Node, ProcessSpec, ServerProcess,
    Spawner, Startup, TargetError, START_ATTEMPTS,
};

/// A cluster without a leader after this long is an environment problem.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub const NODE_BIN: &str = "raftbus-node";
/// When `DIR/node.toml` exists, every node is started with `--config DIR/node.toml` (the
/// harness writes it from the scenario's `[bus]` table).
pub const NODE_CONFIG_FILE: &str = "node.toml";

/// When `DIR/admin.token` exists, every node is started with `--admin-token-file` naming
/// it: the token of the `RAFTBUS.FAILPOINT` admin command of a failpoint build (the harness
/// writes it, see [`prepare_failpoints`], for runs with failpoint faults).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// When `DIR/failpoints` exists, every node is started with `--failpoints` and its content
/// (the scenario's `[bus] failpoints`): armed from the start, restarts included.
pub const FAILPOINTS_FILE: &str = "failpoints";

/// For a run that arms failpoints: checks that `program` is a failpoint build of the node
/// (`cargo build -p raftbus-node --features failpoints`) and writes a fresh admin token to
/// `DIR/admin.token`, and `armed` (failpoints on from the start) to `DIR/failpoints`.
pub fn prepare_failpoints(
    dir: &Path,
    program: &Path,
    armed: Option<&str>,
) -> Result<(), TargetError> {
    let help = std::process::Command::new(program)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !help.contains("--admin-token-file") {
        return Err(TargetError::MissingBinary {
            name: format!("a failpoint build of {NODE_BIN}"),
            hint: format!(
                "{} has no failpoints; build one with `cargo build --release -p raftbus-node \
                 --features failpoints --target-dir target/failpoints` and pass \
                 --node-bin target/failpoints/release/{NODE_BIN}",
                program.display()
            ),
        });
    }
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| TargetError::Io {
            what: format!("write {}", path.display()),
            source,
        })
    };
    write(
        ADMIN_TOKEN_FILE,
        &format!("{:032x}", rand::random::<u128>()),
    )?;
    if let Some(spec) = armed {
        write(FAILPOINTS_FILE, spec)?;
    }
    Ok(())
}

/// The admin token a node was started with (`--admin-token-file` in its command line).
pub fn admin_token_of(spec: &super::ProcessSpec) -> Result<String, TargetError> {
    let path = spec
        .args
        .iter()
        .position(|a| a == "--admin-token-file")
        .and_then(|i| spec.args.get(i + 1))
        .ok_or_else(|| TargetError::Io {
            what: format!(
                "{} was started without an admin token (not a run with failpoint faults)",
                spec.name
            ),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|source| TargetError::Io {
            what: format!("read {}", Path::new(path).display()),
            source,
        })
}

/// `--node-bin PATH`, or `raftbus-node` next to the current executable.
pub fn find_node_bin(explicit: Option<&Path>) -> Result<PathBuf, TargetError> {
    let candidate = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(NODE_BIN)))
            .unwrap_or_else(|| PathBuf::from(NODE_BIN)),
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(TargetError::MissingBinary {
            name: NODE_BIN.into(),
            hint: format!(
                "no executable at {}; build it with `cargo build -p raftbus-node` \
                 (it must sit next to `raftbus`) or pass --node-bin PATH",
                candidate.display()
            ),
        })
    }
}

/// The version the node binary reports, best effort.
pub fn version(program: &Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{NODE_BIN} (unknown version)"))
}

/// Nodes that share this machine split its cores: each gets `cores / nodes` tokio workers
/// (at least one), unless `TOKIO_WORKER_THREADS` is set already. Every node defaults to a
/// worker per core; three nodes on 2 cores with 2 workers each measured 0.69-0.72 ms
/// single-client XADD p50 against 0.60-0.62 ms with one each, at the same closed-loop
/// throughput (the extra workers mostly wake each other). Nodes on their own hosts keep
/// the default: a remote spawner does not pass [`ProcessSpec::env`] on.
fn shared_machine_env(nodes: usize) -> Vec<(OsString, OsString)> {
    const WORKERS: &str = "TOKIO_WORKER_THREADS";
    if std::env::var_os(WORKERS).is_some() {
        return Vec::new();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (cores / nodes.max(1)).max(1);
    vec![(WORKERS.into(), workers.to_string().into())]
}

/// The exact node command line of the design contract.
fn args(
    id: usize,
    listen: SocketAddr,
    raft: SocketAddr,
    peers: &str,
    data_dir: &Path,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--id".into(),
        id.to_string().into(),
        "--listen".into(),
        listen.to_string().into(),
        "--raft-listen".into(),
        raft.to_string().into(),
        "--peers".into(),
        peers.into(),
        "--data-dir".into(),
    ];
    a.push(data_dir.as_os_str().to_owned());
    a
}

/// Starts `count` nodes under `dir` and waits for a leader.
pub async fn start(
    dir: &Path,
    count: usize,
    node_bin: Option<&Path>,
    spawner: Arc<dyn Spawner>,
) -> Result<Cluster, TargetError> {
    start_with(dir, count, node_bin, spawner, None).await
}

/// Like [`start`]; with `proxies`, every peer link runs through a delay proxy (each node's
/// `--peers` names the proxies for the others), so delay can be injected at runtime.
pub async fn start_with(
    dir: &Path,
    count: usize,
    node_bin: Option<&Path>,
    spawner: Arc<dyn Spawner>,
    mut proxies: Option<&mut crate::chaos::PeerProxies>,
) -> Result<Cluster, TargetError> {
    let program = find_node_bin(node_bin)?;
    let version = version(&program);
    let names: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
    let mut last_clash = String::new();
    for attempt in 1..=START_ATTEMPTS {
        clear_attempt(dir, &names);
        spawner.clear_attempt(&names);
        let mut client = Vec::new();
        let mut raft = Vec::new();
        for name in &names {
            let host = spawner.host(name);
            let pick = || {
                spawner.free_port(name).map_err(|source| TargetError::Io {
                    what: "pick a free port".into(),
                    source,
                })
            };
            let (p, r) = (pick()?, pick()?);
            let addr = SocketAddr::new(host, p);
            super::check_client_addr(addr)?;
            client.push(addr);
            raft.push(SocketAddr::new(host, r));
        }
        let peers = raft
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let peers_of: Vec<String> = match proxies.as_deref_mut() {
            Some(p) => p
                .build(&names, &raft)
                .await
                .map_err(|source| TargetError::Io {
                    what: "start the peer delay proxies".into(),
                    source,
                })?,
            None => vec![peers; names.len()],
        };
        let mut procs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let data_dir = spawner.server_path(name, &dir.join("data").join(name));
            let mut node_args = args(i + 1, client[i], raft[i], &peers_of[i], &data_dir);
            let node_config = dir.join(NODE_CONFIG_FILE);
            if node_config.is_file() {
                node_args.push("--config".into());
                node_args.push(spawner.provide_file(name, &node_config)?.into_os_string());
            }
            let admin_token = dir.join(ADMIN_TOKEN_FILE);
            if admin_token.is_file() {
                node_args.push("--admin-token-file".into());
                node_args.push(spawner.provide_file(name, &admin_token)?.into_os_string());
            }
            if let Ok(spec) = std::fs::read_to_string(dir.join(FAILPOINTS_FILE)) {
                node_args.push("--failpoints".into());
                node_args.push(spec.trim().into());
            }
            let spec = ProcessSpec {
                name: name.clone(),
                program: spawner.program(name, &program)?,
                args: node_args,
                log: dir.join("logs").join(format!("{name}.log")),
                data_dir,
                env: shared_machine_env(count),
            };
            procs.push(ServerProcess::start(spec, spawner.clone())?);
        }
        let probe: Vec<(String, SocketAddr)> =
            names.iter().cloned().zip(client.iter().copied()).collect();
        let outcome = wait_ready(&mut procs, "bus leader election", LEADER_TIMEOUT, || {
            let probe = probe.clone();
            async move { leader(&probe, &BTreeSet::new()).await.is_some() }
        })
        .await?;
        match outcome {
            Startup::Ready => {
                tracing::info!(%version, nodes = count, "bus ready");
                let nodes = procs
                    .into_iter()
                    .zip(client)
                    .map(|(process, addr)| Node {
                        name: process.name().to_string(),
                        addr,
                        process,
                    })
                    .collect();
                return Ok(Cluster {
                    target: Target::Bus,
                    detail: format!("{count} nodes"),
                    version,
                    nodes,
                    writable: (0..count).collect(),
                    sentinels: Vec::new(),
                    spawner,
                });
            }
            Startup::PortClash(tail) => {
                tracing::warn!(
                    attempt,
                    "bus port taken during startup, retrying with new ports"
                );
                last_clash = tail;
            }
        }
    }
    Err(TargetError::PortsInUse {
        attempts: START_ATTEMPTS,
        tail: last_clash,
    })
}

/// What one node says about leadership in `INFO replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftInfo {
    pub is_leader: bool,
    pub leader_id: Option<u64>,
    pub term: Option<u64>,
}

pub fn parse_raft_info(text: &str) -> RaftInfo {
    RaftInfo {
        is_leader: info_field(text, "role") == Some("leader"),
        leader_id: info_field(text, "leader_id").and_then(|v| v.parse().ok()),
        term: info_field(text, "term").and_then(|v| v.parse().ok()),
    }
}

/// The leader id when every node not in `gone` answers and all agree on one leader that
/// says so itself. `nodes` is the whole cluster in id order (`n1` first); `gone` names
/// nodes that are down for good (a node that refused to start on a corrupted log).
pub async fn leader(nodes: &[(String, SocketAddr)], gone: &BTreeSet<String>) -> Option<u64> {
    let mut agreed: Option<u64> = None;
    let mut leader_confirms = false;
    for (i, (name, addr)) in nodes.iter().enumerate() {
        if gone.contains(name) {
            continue;
        }
        let text = info(name, *addr, "replication").await.ok()?;
        let ri = parse_raft_info(&text);
        let id = ri.leader_id?;
        if agreed.is_some_and(|a| a != id) {
            return None;
        }
        agreed = Some(id);
        if ri.is_leader && id == (i + 1) as u64 {
            leader_confirms = true;
        }
    }
    agreed.filter(|_| leader_confirms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_info_is_parsed() {
        let t = "# Replication\r\nrole:follower\r\nleader_id:2\r\nterm:5\r\ncommit_index:9\r\n";
        assert_eq!(
            parse_raft_info(t),
            RaftInfo {
                is_leader: false,
                leader_id: Some(2),
                term: Some(5)
            }
        );
        let none = parse_raft_info("role:follower\nleader_id:\n");
        assert_eq!(none.leader_id, None);
    }

    #[test]
    fn nodes_on_one_machine_split_its_cores() {
        if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
            // A worker count set by the user is passed through untouched.
            let env = shared_machine_env(3);
            assert!(env.is_empty(), "{env:?}");
            return;
        }
        let cores = std::thread::available_parallelism().unwrap().get();
        let workers = |nodes| {
            let env = shared_machine_env(nodes);
            assert_eq!(env.len(), 1, "{env:?}");
            assert_eq!(env[0].0, "TOKIO_WORKER_THREADS");
            env[0].1.to_str().unwrap().parse::<usize>().unwrap()
        };
        assert_eq!(workers(1), cores);
        assert_eq!(workers(3), (cores / 3).max(1));
        assert_eq!(workers(cores * 2), 1);
    }

    #[test]
    fn missing_node_binary_is_explained() {
        let err = find_node_bin(Some(Path::new("/nonexistent/raftbus-node"))).unwrap_err();
        assert!(err.to_string().contains("--node-bin"), "{err}");
    }
}
