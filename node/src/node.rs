//! Starting and stopping one node: storage, Raft, the peer listener, the client listener,
//! and the one-time cluster bootstrap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::BasicNode;
use tokio::net::TcpListener;

use crate::bus::Bus;
use crate::config::NodeConfig;
use crate::log_store::LogStore;
use crate::network::{self, Peers, MAX_FRAME};
use crate::server;
use crate::shutdown::{self, Shutdown};
use crate::snapshot_schedule::{self, SnapshotSchedule};
use crate::state_machine::StateMachine;
use crate::types::Raft;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open the data dir {path}: {reason}")]
    Storage { path: String, reason: String },
    #[error("raft: {0}")]
    Raft(String),
}

/// Runs a node until `stop` fires, then shuts down gracefully: stop accepting clients,
/// stop Raft, and let the log flush what it has.
pub async fn run(config: NodeConfig, mut stop: Shutdown) -> Result<(), NodeError> {
    config.validate()?;
    let settings = Arc::new(config.settings.clone());

    if config.cluster_secret.is_none() {
        tracing::warn!("no --cluster-secret: peer connections are unauthenticated");
    }

    // Bind first: a port in use is the most common start-up mistake, and it should be
    // reported before any state is touched.
    let client_listener = bind(config.listen, "client --listen").await?;
    let raft_listener = bind(config.raft_listen, "peer --raft-listen").await?;

    let storage_err = |path: &std::path::Path, reason: String| NodeError::Storage {
        path: path.display().to_string(),
        reason,
    };
    let log_dir = config.data_dir.join("log");
    let sm_dir = config.data_dir.join("state");
    let log_config = crate::log_store::LogStoreConfig {
        fsync: settings.fsync == crate::config::FsyncPolicy::Always,
        ..Default::default()
    };
    if settings.fsync == crate::config::FsyncPolicy::Never {
        tracing::warn!(
            "fsync = \"never\": acknowledged writes can be lost when a majority loses power"
        );
    }
    let log_store = LogStore::open_with(&log_dir, log_config)
        .map_err(|e| storage_err(&log_dir, e.to_string()))?;
    let (state_machine, shared) =
        StateMachine::open(&sm_dir, settings.retention, settings.subscriber_backlog)
            .map_err(|e| storage_err(&sm_dir, e.to_string()))?;

    let raft_config = openraft::Config {
        cluster_name: "raftbus".into(),
        heartbeat_interval: settings.heartbeat_ms,
        election_timeout_min: settings.election_timeout_min_ms,
        election_timeout_max: settings.election_timeout_max_ms,
        // Periodic snapshots come from `snapshot_schedule`, which staggers them across nodes.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: settings.keep_after_snapshot,
        // openraft gives an AppendEntries exactly one heartbeat interval to come back, so
        // one request must stay small enough to be sent, fsynced and answered in that time
        // even when a follower catches up: few entries (each a batch of appends).
        max_payload_entries: 16,
        snapshot_max_chunk_size: (MAX_FRAME / 16) as u64,
        install_snapshot_timeout: 5_000,
        // A restarted leader must win a new term before it writes. The leader replicates
        // entries before its own log write, so after a crash its log may lack entries a
        // follower holds under its term; resuming that term (0.10's default) reuses those
        // log ids with other contents and the nodes diverge. Test:
        // failpoints::a_restarted_leader_never_reuses_the_log_ids_a_follower_holds;
        // docs/incidents/2026-12-03-queue-power-loss.
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let position = config
        .peers
        .keys()
        .position(|&id| id == config.id)
        .unwrap_or(0);
    let schedule = SnapshotSchedule::new(settings.snapshot_every, position, config.peers.len());
    let peers = Peers::new(config.id, &config.peers, config.cluster_secret.clone());
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config),
        peers.clone(),
        log_store.clone(),
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let (trigger, tasks_stop) = shutdown::channel();
    let bus = Bus::new(
        config.id,
        raft.clone(),
        shared,
        settings,
        log_store,
        peers,
        tasks_stop.clone(),
    );
    let raft_server = tokio::spawn(network::serve(
        raft_listener,
        bus.clone(),
        config.cluster_secret.clone(),
        tasks_stop.clone(),
    ));

    let snapshots = tokio::spawn(snapshot_schedule::run(
        raft.clone(),
        schedule,
        tasks_stop.clone(),
    ));

    bootstrap_if_first(&config, &raft).await?;

    let clients = tokio::spawn(server::serve(client_listener, bus, tasks_stop.clone()));
    tracing::info!(
        listen = %config.listen,
        raft_listen = %config.raft_listen,
        data_dir = %config.data_dir.display(),
        "node started"
    );

    stop.recv().await;
    tracing::info!("shutting down");
    trigger.fire();
    let _ = clients.await;
    let _ = raft_server.await;
    let _ = snapshots.await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not stop cleanly");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, what: &'static str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Listen { addr, what, source })
}

/// The node with the lowest id initialises the cluster, once, when it has no Raft state.
/// Every other node waits to be contacted; restarts find state and skip this.
async fn bootstrap_if_first(config: &NodeConfig, raft: &Raft) -> Result<(), NodeError> {
    let lowest = *config
        .peers
        .keys()
        .next()
        .expect("validated: peers has this node");
    if config.id != lowest {
        return Ok(());
    }
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    let members: BTreeMap<_, _> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.to_string())))
        .collect();
    tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initializing the cluster");
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        // Another start already did it (for example a restart that raced a vote).
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => Ok(()),
        Err(e) => Err(NodeError::Raft(e.to_string())),
    }
}

/// Waits until some node is leader, as seen by this node; for tests and tools.
pub async fn wait_for_leader(raft: &Raft, timeout: Duration) -> Option<u64> {
    let mut metrics = raft.metrics();
    tokio::time::timeout(timeout, async {
        loop {
            if let Some(l) = metrics.borrow_watched().current_leader {
                return l;
            }
            if metrics.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
    .await
    .ok()
}
