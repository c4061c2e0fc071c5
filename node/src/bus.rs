//! The bus as client connections see it: replicated appends (batched, proposed here when
//! this node leads, forwarded to the leader otherwise) and INFO.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{NodeSettings, ReadConsistency};
use crate::log_store::LogStore;
use crate::network::{ForwardError, PeerRequest, PeerResponse, Peers};
use crate::rates::RateWindow;
use crate::server::ServerStats;
use crate::shutdown::Shutdown;
use crate::state_machine::SharedState;
use crate::types::{Append, NodeId, Raft, Request, Response};

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

/// Why this node could not learn the cluster's commit point (no leader reachable, or the
/// leader could not confirm its leadership with a quorum in time). Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TRYAGAIN {0}")]
pub struct ReadIndexError(pub String);

/// Where a queued append came from, which decides what may be done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client of this node: propose it here, or forward it to the leader.
    Client,
    /// Forwarded by a follower: propose it here or answer "not leader"; never forward
    /// again (the follower retries).
    Peer,
}

/// One append waiting for the router.
struct Op {
    append: Append,
    origin: Origin,
    deadline: Instant,
    /// Set once the append may have reached a leader's log; from then on a failure is
    /// "outcome unknown" and the append is never sent again.
    maybe_sent: bool,
    last_reason: String,
    reply: oneshot::Sender<Result<u64, ForwardError>>,
}

impl Op {
    fn finish(self, result: Result<u64, ForwardError>) {
        let _ = self.reply.send(result);
    }

    /// Gives up at the deadline: "unknown" if the append may be in a leader's log,
    /// otherwise "not stored".
    fn fail(self) {
        let reason = self.last_reason.clone();
        let err = if self.maybe_sent {
            ForwardError::Unknown(reason)
        } else {
            ForwardError::Rejected(reason)
        };
        let _ = self.reply.send(Err(err));
    }
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
    queue: mpsc::UnboundedSender<Op>,
    proposed: Arc<Proposed>,
    /// Recent rates of fsyncs, flushed entries and proposed messages, for INFO.
    rates: Arc<Mutex<RateWindow<3>>>,
}

/// What this node proposed as leader: Raft entries of client appends, and the appends in them.
#[derive(Debug, Default)]
struct Proposed {
    batches: AtomicU64,
    messages: AtomicU64,
}

/// Most appends in one Raft entry, by count and by payload bytes (at least one append), so
/// a follower catching up gets AppendEntries it can store within one heartbeat.
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How long to wait before retrying while no leader is known or reachable.
const RETRY_DELAY: Duration = Duration::from_millis(20);
/// How long a forwarded batch keeps its in-flight slot while the leader's reply is out.
/// Held, the slot makes the next batch wait and grow (one forward per several writes);
/// released after this, a leader that died cannot stall later writes for longer.
const FORWARD_SLOT_HOLD: Duration = Duration::from_millis(10);

impl Bus {
    /// Creates the bus and starts its write router, which lives until `shutdown`.
    pub fn new(
        id: NodeId,
        raft: Raft,
        state: Arc<SharedState>,
        settings: Arc<NodeSettings>,
        log: LogStore,
        peers: Peers,
        shutdown: Shutdown,
    ) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let inflight = settings.max_inflight_batches;
        let proposed = Arc::new(Proposed::default());
        let rates = Arc::new(Mutex::new(RateWindow::default()));
        {
            let (log, proposed) = (log.clone(), proposed.clone());
            crate::rates::spawn_sampler(
                rates.clone(),
                move || {
                    let l = log.stats();
                    let messages = proposed.messages.load(Ordering::Relaxed);
                    [l.fsyncs, l.entries_flushed, messages]
                },
                shutdown.clone(),
            );
        }
        let router = Router {
            id,
            raft: raft.clone(),
            peers: peers.clone(),
            queue: queue.clone(),
            proposed: proposed.clone(),
            #[cfg(feature = "failpoints")]
            state: state.clone(),
        };
        tokio::spawn(router.run(rx, inflight, shutdown));
        Bus {
            id,
            raft,
            state,
            settings,
            server_stats: Arc::default(),
            log,
            peers,
            queue,
            proposed,
            rates,
        }
    }

    /// The cluster's read index: a log index at or after every entry committed anywhere
    /// before this call, confirmed by the leader with a quorum (asked over the peer
    /// network when this node follows). Retried while no leader answers, until `deadline`.
    pub async fn read_index(&self, deadline: Instant) -> Result<u64, ReadIndexError> {
        let mut last = String::from("no leader elected");
        loop {
            let attempt = async {
                match self.leader() {
                    None => Err(String::from("no leader elected")),
                    #[cfg(feature = "failpoints")]
                    Some(leader)
                        if leader == self.id
                            && crate::failpoint::planted(crate::failpoint::Bug::StaleRead) =>
                    {
                        Ok(self.state.applied_index())
                    }
                    Some(leader) if leader == self.id => self.leader_read_index().await,
                    Some(leader) => {
                        let peer = self
                            .peers
                            .get(leader)
                            .ok_or_else(|| format!("leader {leader} is not a known peer"))?;
                        let timeout = deadline.saturating_duration_since(Instant::now());
                        // A paused or cut-off leader never answers: once this node hears
                        // of another leader, ask that one instead of waiting out the
                        // deadline (reads and subscribes would stall past a failover).
                        tokio::select! {
                            reply = peer.call(PeerRequest::ReadIndex, timeout) => match reply {
                                Ok(PeerResponse::ReadIndex(result)) => result,
                                Ok(_) => Err(format!("unexpected read-index reply from {leader}")),
                                Err(e) => Err(e.to_string()),
                            },
                            () = self.leader_replaced(leader) => {
                                Err(format!("leader {leader} was replaced while asked"))
                            }
                        }
                    }
                }
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(index)) => return Ok(index),
                Ok(Err(reason)) => last = reason,
                Err(_) => {}
            }
            if Instant::now() + RETRY_DELAY >= deadline {
                return Err(ReadIndexError(format!(
                    "the cluster's commit point could not be confirmed: {last}"
                )));
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    /// The read index on this node as leader, confirmed with a quorum (see
    /// [`crate::read_index`]). Fails when this node is not, or no longer, the leader.
    pub(crate) async fn leader_read_index(&self) -> Result<u64, String> {
        crate::read_index::on_leader(&self.raft, &self.peers).await
    }

    /// Waits until this node has applied everything committed in the cluster before the
    /// call: the read index, then the local apply up to it. Returns the read index.
    pub async fn catch_up(&self, deadline: Instant) -> Result<u64, ReadIndexError> {
        let index = self.read_index(deadline).await?;
        match tokio::time::timeout_at(deadline, self.state.wait_applied(index)).await {
            Ok(()) => Ok(index),
            Err(_) => Err(ReadIndexError(format!(
                "this node has applied {} of the cluster's {index} entries and is still catching up",
                self.state.applied_index()
            ))),
        }
    }

    /// Resolves once this node's view of the leader is no longer `leader`.
    async fn leader_replaced(&self, leader: NodeId) {
        let mut metrics = self.raft.metrics();
        loop {
            let replaced = metrics
                .borrow_watched()
                .current_leader
                .is_some_and(|l| l != leader);
            if replaced {
                return;
            }
            if metrics.changed().await.is_err() {
                // Raft is shutting down: the call's own timeout decides.
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The clients of the other nodes (for [`crate::transaction::exec`]).
    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    fn enqueue(
        &self,
        append: Append,
        origin: Origin,
    ) -> oneshot::Receiver<Result<u64, ForwardError>> {
        let (reply, rx) = oneshot::channel();
        let op = Op {
            append,
            origin,
            deadline: Instant::now() + self.settings.write_timeout(),
            maybe_sent: false,
            last_reason: String::from("no leader elected"),
            reply,
        };
        // If the router is gone the node is shutting down; the dropped sender tells the
        // waiter so.
        let _ = self.queue.send(op);
        rx
    }

    /// Queues a client append now (so pipelined writes keep their order) and returns the
    /// wait for its offset, which comes once the entry is committed on a majority with
    /// fsync and applied on the leader.
    pub fn append(
        &self,
        append: Append,
    ) -> impl std::future::Future<Output = Result<u64, WriteError>> {
        let rx = self.enqueue(append, Origin::Client);
        async move {
            match rx.await {
                Ok(Ok(offset)) => Ok(offset),
                Ok(Err(ForwardError::Unknown(reason))) => Err(WriteError::Unknown(reason)),
                Ok(Err(ForwardError::NotLeader { .. })) => Err(WriteError::NotCommitted(
                    "no leader took the write in time".into(),
                )),
                Ok(Err(ForwardError::Rejected(reason))) => Err(WriteError::NotCommitted(reason)),
                Err(_) => Err(WriteError::NotCommitted("node is shutting down".into())),
            }
        }
    }

    /// Queues appends forwarded by a follower, in order.
    pub fn submit_forwarded(
        &self,
        appends: Vec<Append>,
    ) -> Vec<oneshot::Receiver<Result<u64, ForwardError>>> {
        appends
            .into_iter()
            .map(|a| self.enqueue(a, Origin::Peer))
            .collect()
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
        let m = self.raft.metrics().borrow_watched().clone();
        let idx = |l: Option<u64>| l.map_or(String::from("0"), |i| i.to_string());
        if want("server") {
            let stats = &self.server_stats;
            let _ = write!(
                out,
                "# Server\r\nredis_version:7.2.0\r\nraftbus_version:{}\r\nredis_mode:standalone\r\n\
                 node_id:{}\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\ncpu_scheduling:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                self.id,
                std::process::id(),
                stats.uptime().as_secs(),
                self.settings.cpu_scheduling.as_str()
            );
        }
        if want("clients") {
            let s = &self.server_stats;
            let _ = write!(
                out,
                "# Clients\r\nconnected_clients:{}\r\ntotal_connections_received:{}\r\n\
                 slow_subscribers_disconnected:{}\r\nprotocol_errors:{}\r\n\r\n",
                s.connected.load(std::sync::atomic::Ordering::Relaxed),
                s.total_connections
                    .load(std::sync::atomic::Ordering::Relaxed),
                s.slow_subscribers_dropped
                    .load(std::sync::atomic::Ordering::Relaxed),
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
                 read_consistency:{}\r\nreads:{}\r\n\
                 publish_reply:entry offset\r\n\r\n",
                m.current_leader.map_or(String::new(), |l| l.to_string()),
                m.current_term,
                idx(self.log.committed().map(|l| l.index)),
                idx(m.last_applied.map(|l| l.index)),
                idx(m.last_log_index),
                idx(m.snapshot.map(|l| l.index)),
                idx(m.purged.map(|l| l.index)),
                members.join(","),
                self.settings.read_consistency.as_str(),
                match self.settings.read_consistency {
                    ReadConsistency::Local =>
                        "local replica (XRANGE, XREVRANGE, XLEN and XREAD serve this node's applied state)",
                    ReadConsistency::Linearizable =>
                        "read index (XRANGE, XREVRANGE, XLEN and XREAD wait until this node has applied the leader's quorum-confirmed commit index)",
                },
            );
        }
        if want("persistence") {
            let l = self.log.stats();
            let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            let [fsyncs_per_sec, entries_per_sec, messages_per_sec] = self
                .rates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .per_second();
            let batches = self.proposed.batches.load(Ordering::Relaxed);
            let messages = self.proposed.messages.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "# Persistence\r\nlog_fsync:{}\r\nlog_segments:{}\r\nlog_bytes:{}\r\nlog_fsyncs:{}\r\n\
                 log_entries_flushed:{}\r\nlog_cached_entries:{}\r\n\
                 log_entries_per_fsync:{:.2}\r\ninstantaneous_log_fsyncs_per_sec:{:.0}\r\n\
                 instantaneous_log_entries_per_sec:{:.0}\r\n\
                 proposed_batches:{}\r\nproposed_messages:{}\r\nproposed_messages_per_batch:{:.2}\r\n\
                 instantaneous_proposed_messages_per_sec:{:.0}\r\n\r\n",
                if l.fsync { "always" } else { "never" },
                l.segments,
                l.bytes,
                l.fsyncs,
                l.entries_flushed,
                l.cached_entries,
                ratio(l.entries_flushed, l.fsyncs),
                fsyncs_per_sec,
                entries_per_sec,
                batches,
                messages,
                ratio(messages, batches),
                messages_per_sec,
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
}

/// Turns queued appends into Raft proposals: batches whatever has queued up while earlier
/// proposals are in flight (group commit), proposes them here when this node leads, and
/// forwards them to the leader otherwise. Appends that certainly were not proposed are
/// retried until their deadline.
#[derive(Clone)]
struct Router {
    id: NodeId,
    raft: Raft,
    peers: Peers,
    queue: mpsc::UnboundedSender<Op>,
    proposed: Arc<Proposed>,
    /// For the offsets that planted bugs acknowledge with (failpoint builds).
    #[cfg(feature = "failpoints")]
    state: Arc<SharedState>,
}

impl Router {
    async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<Op>,
        max_inflight: usize,
        mut shutdown: Shutdown,
    ) {
        let inflight = Arc::new(Semaphore::new(max_inflight));
        loop {
            let permit = tokio::select! {
                p = inflight.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = shutdown.recv() => return,
            };
            let first = tokio::select! {
                op = rx.recv() => match op { Some(op) => op, None => return },
                _ = shutdown.recv() => return,
            };
            let mut bytes = first.append.size();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.append.size();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            let (live, expired): (Vec<Op>, Vec<Op>) =
                batch.into_iter().partition(|op| op.deadline > now);
            expired.into_iter().for_each(Op::fail);
            if live.is_empty() {
                continue;
            }
            let leader = self.raft.metrics().borrow_watched().current_leader;
            match leader {
                Some(leader) if leader == self.id => self.propose(live, permit).await,
                Some(leader) => {
                    let (mine, peers): (Vec<Op>, Vec<Op>) =
                        live.into_iter().partition(|op| op.origin == Origin::Client);
                    for op in peers {
                        op.finish(Err(ForwardError::NotLeader {
                            leader: Some(leader),
                        }));
                    }
                    if !mine.is_empty() {
                        self.forward(leader, mine, permit).await;
                    }
                }
                None => self.retry_later(live, "no leader elected".into()),
            }
        }
    }

    fn retry_later(&self, ops: Vec<Op>, reason: String) {
        let queue = self.queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RETRY_DELAY).await;
            for mut op in ops {
                op.last_reason.clone_from(&reason);
                if let Err(mpsc::error::SendError(op)) = queue.send(op) {
                    op.fail();
                }
            }
        });
    }

    async fn propose(&self, mut ops: Vec<Op>, permit: OwnedSemaphorePermit) {
        use openraft::error::ClientWriteError;
        let request = Request::Batch(ops.iter().map(|op| op.append.clone()).collect());
        let (responder, waiting) = openraft::impls::ProgressResponder::complete_only();
        match self.raft.client_write_ff(request, Some(responder)).await {
            Ok(()) => {}
            Err(fatal) => {
                for op in ops {
                    op.finish(Err(ForwardError::Rejected(format!(
                        "raft stopped: {fatal}"
                    ))));
                }
                return;
            }
        }
        for op in &mut ops {
            op.maybe_sent = true;
        }
        self.proposed.batches.fetch_add(1, Ordering::Relaxed);
        self.proposed
            .messages
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        #[cfg(feature = "failpoints")]
        if crate::failpoint::planted(crate::failpoint::Bug::AckBeforeCommit) {
            self.acknowledge_unwritten(ops, "proposed, not committed");
            drop(permit);
            tokio::spawn(waiting);
            return;
        }
        let queue_retry = self.clone();
        // A proposal on a deposed or cut-off leader may stay unresolved for as long as the
        // fault lasts; past the latest deadline its appends are answered "unknown" and its
        // in-flight slot is freed so later writes are not stuck behind it.
        let give_up = ops
            .iter()
            .map(|op| op.deadline)
            .max()
            .unwrap_or_else(Instant::now);
        tokio::spawn(async move {
            let result = match tokio::time::timeout_at(give_up, waiting).await {
                Ok(result) => result,
                Err(_) => {
                    drop(permit);
                    for op in ops {
                        op.finish(Err(ForwardError::Unknown(
                            "not committed before the write timeout".into(),
                        )));
                    }
                    return;
                }
            };
            drop(permit);
            match result {
                Ok(Ok(resp)) => match resp.data {
                    Response::Batch(offsets) if offsets.len() == ops.len() => {
                        for (op, offset) in ops.into_iter().zip(offsets) {
                            op.finish(Ok(offset));
                        }
                    }
                    other => {
                        for op in ops {
                            op.finish(Err(ForwardError::Unknown(format!(
                                "unexpected apply result {other:?}"
                            ))));
                        }
                    }
                },
                // The entry was never appended, or was truncated away: not committed, so it
                // is safe to try again with the next leader.
                Ok(Err(ClientWriteError::ForwardToLeader(_))) => {
                    for op in &mut ops {
                        op.maybe_sent = false;
                    }
                    queue_retry.retry_later(ops, "leadership changed".into());
                }
                Ok(Err(e)) => {
                    for op in ops {
                        op.finish(Err(ForwardError::Unknown(e.to_string())));
                    }
                }
                Err(_) => {
                    for op in ops {
                        op.finish(Err(ForwardError::Unknown("raft dropped the write".into())));
                    }
                }
            }
        });
    }

    /// Planted bugs: acknowledges `ops` with the offsets a healthy leader would give them,
    /// although they are not (or not yet) committed.
    #[cfg(feature = "failpoints")]
    fn acknowledge_unwritten(&self, ops: Vec<Op>, why: &str) {
        let offsets =
            crate::failpoint::predict_offsets(&self.state, ops.iter().map(|op| &op.append));
        tracing::warn!(count = ops.len(), why, "planted bug: acknowledging writes");
        for (op, offset) in ops.into_iter().zip(offsets) {
            op.finish(Ok(offset));
        }
    }

    async fn forward(&self, leader: NodeId, mut ops: Vec<Op>, permit: OwnedSemaphorePermit) {
        crate::failpoint::point!("bus.forward", |msg| {
            drop(permit);
            self.retry_later(ops, msg)
        });
        #[cfg(feature = "failpoints")]
        if crate::failpoint::planted(crate::failpoint::Bug::DropForwarded) {
            drop(permit);
            self.acknowledge_unwritten(ops, "dropped instead of forwarded");
            return;
        }
        let Some(peer) = self.peers.get(leader) else {
            for op in ops {
                op.finish(Err(ForwardError::Rejected(format!(
                    "leader {leader} is not a known peer"
                ))));
            }
            return;
        };
        let timeout = ops
            .iter()
            .map(|op| op.deadline.saturating_duration_since(Instant::now()))
            .max()
            .unwrap_or_default();
        let appends = ops.iter().map(|op| op.append.clone()).collect();
        let waiting = match peer
            .start_call(PeerRequest::Forward(appends), timeout)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                // Nothing left this node: safe to try again.
                drop(permit);
                self.retry_later(ops, e.to_string());
                return;
            }
        };
        for op in &mut ops {
            op.maybe_sent = true;
        }
        let retry = self.clone();
        tokio::spawn(async move {
            let mut waiting = std::pin::pin!(waiting);
            let mut slot = Some(permit);
            let reply = tokio::select! {
                reply = &mut waiting => reply,
                _ = tokio::time::sleep(FORWARD_SLOT_HOLD) => {
                    slot = None;
                    waiting.await
                }
            };
            drop(slot);
            match reply {
                Ok(PeerResponse::Forwarded(results)) if results.len() == ops.len() => {
                    let mut again = Vec::new();
                    for (mut op, result) in ops.into_iter().zip(results) {
                        match result {
                            Err(ForwardError::NotLeader { .. }) => {
                                op.maybe_sent = false;
                                again.push(op);
                            }
                            other => op.finish(other),
                        }
                    }
                    if !again.is_empty() {
                        retry.retry_later(again, format!("node {leader} is no longer the leader"));
                    }
                }
                Ok(_) => {
                    for op in ops {
                        op.finish(Err(ForwardError::Unknown(format!(
                            "unexpected reply from leader {leader}"
                        ))));
                    }
                }
                Err(e) => {
                    for op in ops {
                        op.finish(Err(ForwardError::Unknown(e.to_string())));
                    }
                }
            }
        });
    }
}
