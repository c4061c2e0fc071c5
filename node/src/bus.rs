//! The bus as client connections see it: replicated appends (proposed here when this node
//! leads, forwarded to the leader otherwise) and local reads of the applied state.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::NodeSettings;
use crate::log_store::LogStore;
use crate::network::{propose, ForwardError, PeerError, PeerRequest, PeerResponse, Peers};
use crate::server::ServerStats;
use crate::state_machine::SharedState;
use crate::types::{NodeId, Raft, Request, Response};

/// Why a write was not acknowledged. The two kinds matter to clients: only
/// [`WriteError::NotCommitted`] promises the message was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Definitely not committed (no leader could take it before the deadline).
    #[error("TRYAGAIN {0}")]
    NotCommitted(String),
    /// The write may or may not be committed (timeout or lost connection after sending).
    #[error("ERR outcome unknown: {0}")]
    Unknown(String),
}

/// Shared by every client connection of this node.
#[derive(Clone)]
pub struct Bus {
    pub id: NodeId,
    pub raft: Raft,
    pub state: Arc<SharedState>,
    pub settings: Arc<NodeSettings>,
    pub server_stats: Arc<ServerStats>,
    log: LogStore,
    peers: Peers,
}

/// How long to wait between attempts while no leader is known.
const LEADER_POLL: Duration = Duration::from_millis(20);

impl Bus {
    pub fn new(
        id: NodeId,
        raft: Raft,
        state: Arc<SharedState>,
        settings: Arc<NodeSettings>,
        log: LogStore,
        peers: Peers,
    ) -> Self {
        Bus {
            id,
            raft,
            state,
            settings,
            server_stats: Arc::default(),
            log,
            peers,
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    /// The INFO text for the requested sections (all when empty or `all`/`everything`).
    pub fn info(&self, sections: &[String]) -> String {
        use std::fmt::Write;
        let want = |name: &str| {
            sections.is_empty()
                || sections
                    .iter()
                    .any(|s| s == name || s == "all" || s == "everything" || s == "default")
        };
        let mut out = String::new();
        let m = self.raft.metrics().borrow().clone();
        let idx = |l: Option<u64>| l.map_or(String::from("0"), |i| i.to_string());
        if want("server") {
            let stats = &self.server_stats;
            let _ = write!(
                out,
                "# Server\r\nredis_version:7.2.0\r\nraftbus_version:{}\r\nredis_mode:standalone\r\n\
                 node_id:{}\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                self.id,
                std::process::id(),
                stats.uptime().as_secs()
            );
        }
        if want("clients") {
            let s = &self.server_stats;
            let _ = write!(
                out,
                "# Clients\r\nconnected_clients:{}\r\ntotal_connections_received:{}\r\n\
                 slow_subscribers_disconnected:{}\r\nprotocol_errors:{}\r\n\r\n",
                s.connected.load(std::sync::atomic::Ordering::Relaxed),
                s.total_connections.load(std::sync::atomic::Ordering::Relaxed),
                s.slow_subscribers_dropped.load(std::sync::atomic::Ordering::Relaxed),
                s.protocol_errors.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
        if want("replication") {
            let role = match m.state {
                openraft::ServerState::Leader => "leader",
                openraft::ServerState::Candidate => "candidate",
                openraft::ServerState::Learner => "learner",
                _ => "follower",
            };
            let members: Vec<String> = m
                .membership_config
                .membership()
                .voter_ids()
                .map(|id| id.to_string())
                .collect();
            let _ = write!(
                out,
                "# Replication\r\nrole:{role}\r\nleader_id:{}\r\nterm:{}\r\ncommit_index:{}\r\n\
                 applied_index:{}\r\nlast_log_index:{}\r\nsnapshot_index:{}\r\npurged_index:{}\r\n\
                 members:{}\r\nwrites:replicated, acknowledged after commit on a majority with fsync\r\n\
                 reads:local replica (XRANGE, XLEN and XREAD serve this node's applied state)\r\n\
                 publish_reply:entry offset\r\n\r\n",
                m.current_leader.map_or(String::new(), |l| l.to_string()),
                m.current_term,
                idx(self.log.committed().map(|l| l.index)),
                idx(m.last_applied.map(|l| l.index)),
                idx(m.last_log_index),
                idx(m.snapshot.map(|l| l.index)),
                idx(m.purged.map(|l| l.index)),
                members.join(","),
            );
        }
        if want("persistence") {
            let l = self.log.stats();
            let _ = write!(
                out,
                "# Persistence\r\nlog_segments:{}\r\nlog_bytes:{}\r\nlog_fsyncs:{}\r\n\
                 log_entries_flushed:{}\r\nlog_cached_entries:{}\r\n\r\n",
                l.segments, l.bytes, l.fsyncs, l.entries_flushed, l.cached_entries
            );
        }
        if want("streams") || want("keyspace") {
            let channels = self.state.channel_stats();
            let _ = write!(out, "# Streams\r\nchannels:{}\r\n", channels.len());
            for c in channels {
                let _ = write!(
                    out,
                    "stream_{}:len={},first={},last={},bytes={}\r\n",
                    c.name, c.len, c.first_offset, c.last_offset, c.bytes
                );
            }
            out.push_str("\r\n");
        }
        out
    }

    /// Appends through Raft and returns once the entry is committed and applied on the
    /// leader (which means durable on a majority). Retries only while it is certain that
    /// nothing was proposed.
    pub async fn append(&self, request: Request) -> Result<Response, WriteError> {
        let deadline = Instant::now() + self.settings.write_timeout();
        let mut maybe_sent = false;
        let mut last_reason = String::from("no leader elected");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(if maybe_sent {
                    WriteError::Unknown(last_reason)
                } else {
                    WriteError::NotCommitted(last_reason)
                });
            }
            match self.leader() {
                Some(leader) if leader == self.id => {
                    let attempt =
                        tokio::time::timeout(remaining, propose(&self.raft, request.clone())).await;
                    match attempt {
                        Ok(Ok(r)) => return Ok(r),
                        Ok(Err(ForwardError::NotLeader { .. })) => {
                            last_reason = "leadership changed".into();
                        }
                        Ok(Err(ForwardError::Unknown(e))) => return Err(WriteError::Unknown(e)),
                        Err(_) => {
                            return Err(WriteError::Unknown(format!(
                                "not committed within {:?}",
                                self.settings.write_timeout()
                            )))
                        }
                    }
                }
                Some(leader) => {
                    let Some(peer) = self.peers.get(leader) else {
                        return Err(WriteError::NotCommitted(format!(
                            "leader {leader} is not a known peer"
                        )));
                    };
                    match peer
                        .call(PeerRequest::Forward(request.clone()), remaining)
                        .await
                    {
                        Ok(PeerResponse::Forward(Ok(r))) => return Ok(r),
                        Ok(PeerResponse::Forward(Err(ForwardError::NotLeader { .. }))) => {
                            last_reason = format!("node {leader} is no longer the leader");
                        }
                        Ok(PeerResponse::Forward(Err(ForwardError::Unknown(e)))) => {
                            return Err(WriteError::Unknown(e))
                        }
                        Ok(_) => {
                            return Err(WriteError::Unknown(format!(
                                "unexpected reply from leader {leader}"
                            )))
                        }
                        Err(
                            e @ (PeerError::Connect { .. }
                            | PeerError::Backoff { .. }
                            | PeerError::Refused { .. }),
                        ) => {
                            // Nothing left this node: safe to try again.
                            last_reason = e.to_string();
                        }
                        Err(e) => {
                            maybe_sent = true;
                            last_reason = e.to_string();
                            if matches!(e, PeerError::Timeout { .. }) {
                                return Err(WriteError::Unknown(last_reason));
                            }
                        }
                    }
                }
                None => {}
            }
            // Wait for a leader change or a short poll, whichever comes first.
            let mut metrics = self.raft.metrics();
            let _ = tokio::time::timeout(LEADER_POLL, metrics.changed()).await;
            if maybe_sent {
                // A lost connection after sending: the write may be in the leader's log.
                // Retrying could store it twice, so the outcome is unknown.
                return Err(WriteError::Unknown(last_reason));
            }
        }
    }
}
