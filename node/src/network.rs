//! Raft RPC between nodes over TCP.
//!
//! Frames are length-delimited; each carries a bincode-encoded [`Envelope`] with a request
//! id, so one connection per peer pair carries many concurrent calls (Raft RPCs and writes
//! forwarded to the leader). A connection starts with a [`PeerRequest::Hello`] that names
//! the caller and presents the cluster secret; a server with a secret refuses peers that do
//! not present it. Lost connections are re-established on the next call, with backoff.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::bus::Bus;
use crate::shutdown::Shutdown;
use crate::types::{Append, NodeId, Raft, TypeConfig};

/// Largest frame between peers; snapshot chunks are sized well below it.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Hello {
        from: NodeId,
        secret: Option<String>,
    },
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Client appends that arrived at a follower, to be proposed by the leader in this
    /// order.
    Forward(Vec<Append>),
    /// A transaction or consumer-group command that arrived at a follower, for the leader
    /// to propose as one entry.
    Exec(crate::transaction::Exec),
    /// A follower asks the leader for the cluster's read index (the log index up to which
    /// everything committed so far lies), confirmed by a quorum.
    ReadIndex,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Welcome,
    Refused(String),
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// One result per forwarded append, in order: its offset, or why it was not stored.
    Forwarded(Vec<Result<u64, ForwardError>>),
    /// The replies of a forwarded [`PeerRequest::Exec`], or why it was not applied.
    Exec(Result<Vec<crate::transaction::Value>, ForwardError>),
    /// The leader's read index, or why it could not confirm one (e.g. not the leader).
    ReadIndex(Result<u64, String>),
}

/// Why a forwarded write was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader; nothing was proposed.
    #[error("not the leader (leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The write may or may not have been committed.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Not committed, and not worth retrying here (deadline passed, raft stopped).
    #[error("not stored: {0}")]
    Rejected(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    id: u64,
    body: T,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot connect to node {target} at {addr}: {source}")]
    Connect {
        target: NodeId,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("node {target} refused the connection: {reason}")]
    Refused { target: NodeId, reason: String },
    #[error("node {target} is in reconnect backoff after: {last}")]
    Backoff { target: NodeId, last: String },
    #[error("connection to node {target} lost")]
    Lost { target: NodeId },
    #[error("connection to node {target} closed before the request was sent")]
    NotSent { target: NodeId },
    #[error("call to node {target} timed out after {after:?}")]
    Timeout { target: NodeId, after: Duration },
    #[error("bad frame from node {target}: {reason}")]
    Codec { target: NodeId, reason: String },
    #[error("node {target} answered with an unexpected message")]
    Unexpected { target: NodeId },
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<PeerResponse>>>>;

/// One live connection: a writer queue and the calls waiting for their replies.
struct Conn {
    tx: mpsc::Sender<Bytes>,
    pending: Pending,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

struct Backoff {
    until: Instant,
    delay: Duration,
    last: String,
}

/// A reusable, self-reconnecting client to one peer.
pub struct PeerClient {
    me: NodeId,
    target: NodeId,
    addr: SocketAddr,
    secret: Option<String>,
    next_id: AtomicU64,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    backoff: Mutex<Option<Backoff>>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

impl PeerClient {
    pub fn new(me: NodeId, target: NodeId, addr: SocketAddr, secret: Option<String>) -> Self {
        PeerClient {
            me,
            target,
            addr,
            secret,
            next_id: AtomicU64::new(1),
            conn: tokio::sync::Mutex::new(None),
            backoff: Mutex::new(None),
        }
    }

    pub fn target(&self) -> NodeId {
        self.target
    }

    async fn connection(&self) -> Result<Arc<Conn>, PeerError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.alive.load(Ordering::Acquire) {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        if let Some(b) = self.backoff.lock().expect("backoff lock").as_ref() {
            if Instant::now() < b.until {
                return Err(PeerError::Backoff {
                    target: self.target,
                    last: b.last.clone(),
                });
            }
        }
        match self.connect().await {
            Ok(conn) => {
                *self.backoff.lock().expect("backoff lock") = None;
                let conn = Arc::new(conn);
                *slot = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                let mut b = self.backoff.lock().expect("backoff lock");
                let delay = b
                    .as_ref()
                    .map_or(BACKOFF_MIN, |b| (b.delay * 2).min(BACKOFF_MAX));
                *b = Some(Backoff {
                    until: Instant::now() + delay,
                    delay,
                    last: e.to_string(),
                });
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<Conn, PeerError> {
        let connect_err = |source| PeerError::Connect {
            target: self.target,
            addr: self.addr,
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| {
                connect_err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })?
            .map_err(connect_err)?;
        stream.set_nodelay(true).ok();
        let mut framed = Framed::new(stream, codec());
        let hello = encode(&Envelope {
            id: 0,
            body: PeerRequest::Hello {
                from: self.me,
                secret: self.secret.clone(),
            },
        });
        framed.send(hello).await.map_err(connect_err)?;
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, framed.next())
            .await
            .map_err(|_| PeerError::Timeout {
                target: self.target,
                after: CONNECT_TIMEOUT,
            })?;
        let reply: Envelope<PeerResponse> = match reply {
            Some(Ok(bytes)) => decode(&bytes).map_err(|reason| PeerError::Codec {
                target: self.target,
                reason,
            })?,
            Some(Err(e)) => return Err(connect_err(e)),
            None => {
                return Err(PeerError::Lost {
                    target: self.target,
                })
            }
        };
        match reply.body {
            PeerResponse::Welcome => {}
            PeerResponse::Refused(reason) => {
                return Err(PeerError::Refused {
                    target: self.target,
                    reason,
                })
            }
            _ => {
                return Err(PeerError::Unexpected {
                    target: self.target,
                })
            }
        }

        let (mut sink, mut stream) = framed.split();
        let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
        let pending: Pending = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let target = self.target;
        {
            let alive = alive.clone();
            tokio::spawn(async move {
                while let Some(frame) = rx.recv().await {
                    if sink.send(frame).await.is_err() {
                        break;
                    }
                }
                alive.store(false, Ordering::Release);
            });
        }
        {
            let pending = pending.clone();
            let alive = alive.clone();
            tokio::spawn(async move {
                while let Some(Ok(bytes)) = stream.next().await {
                    match decode::<Envelope<PeerResponse>>(&bytes) {
                        Ok(env) => {
                            let waiter = pending.lock().expect("pending lock").remove(&env.id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(env.body);
                            }
                        }
                        Err(reason) => {
                            tracing::warn!(target_node = target, %reason, "bad frame from peer");
                            break;
                        }
                    }
                }
                alive.store(false, Ordering::Release);
                // Dropping the waiters tells every in-flight call that the connection is gone.
                pending.lock().expect("pending lock").clear();
            });
        }
        tracing::debug!(target_node = self.target, addr = %self.addr, "connected to peer");
        Ok(Conn { tx, pending, alive })
    }

    /// Sends one request and waits for its reply, at most `timeout`.
    pub async fn call(
        &self,
        body: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, PeerError> {
        self.start_call(body, timeout).await?.await
    }

    /// Puts one request on the wire and returns the wait for its reply. Requests started
    /// one after another are sent in that order. An error from here means nothing was sent.
    pub async fn start_call(
        &self,
        body: PeerRequest,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<PeerResponse, PeerError>>, PeerError> {
        crate::failpoint::point!("net.send", |_msg| Err(PeerError::NotSent {
            target: self.target
        }));
        let conn = self.connection().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().expect("pending lock").insert(id, tx);
        let frame = encode(&Envelope { id, body });
        if conn.tx.send(frame).await.is_err() {
            conn.pending.lock().expect("pending lock").remove(&id);
            conn.alive.store(false, Ordering::Release);
            return Err(PeerError::NotSent {
                target: self.target,
            });
        }
        let target = self.target;
        Ok(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(PeerError::Lost { target }),
                Err(_) => {
                    conn.pending.lock().expect("pending lock").remove(&id);
                    Err(PeerError::Timeout {
                        target,
                        after: timeout,
                    })
                }
            }
        })
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(bincode::serialize(value).expect("peer messages serialize"))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    bincode::deserialize(bytes).map_err(|e| e.to_string())
}

/// The peers of this node, one reusable client each.
#[derive(Clone)]
pub struct Peers {
    clients: Arc<HashMap<NodeId, Arc<PeerClient>>>,
}

impl Peers {
    pub fn new(
        me: NodeId,
        peers: &std::collections::BTreeMap<NodeId, SocketAddr>,
        secret: Option<String>,
    ) -> Self {
        let clients = peers
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, addr)| {
                (
                    *id,
                    Arc::new(PeerClient::new(me, *id, *addr, secret.clone())),
                )
            })
            .collect();
        Peers {
            clients: Arc::new(clients),
        }
    }

    pub fn get(&self, id: NodeId) -> Option<Arc<PeerClient>> {
        self.clients.get(&id).cloned()
    }
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            client: self.get(target),
        }
    }
}

/// openraft's handle to one peer; all handles to a peer share its connection.
pub struct PeerNetwork {
    target: NodeId,
    client: Option<Arc<PeerClient>>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerNetwork {
    async fn call<E: std::error::Error>(
        &self,
        body: PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerResponse, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let Some(client) = &self.client else {
            let e = std::io::Error::other(format!("node {} is not in --peers", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let ttl = option.hard_ttl();
        client.call(body, ttl).await.map_err(|e| match e {
            PeerError::Timeout { .. } => RPCError::Timeout(Timeout {
                action: openraft::RPCTypes::AppendEntries,
                id: 0,
                target: self.target,
                timeout: ttl,
            }),
            PeerError::Connect { .. }
            | PeerError::Backoff { .. }
            | PeerError::Refused { .. }
            | PeerError::NotSent { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        })
    }

    fn unexpected<E: std::error::Error>(
        &self,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        RPCError::Network(NetworkError::new(&PeerError::Unexpected {
            target: self.target,
        }))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(PeerRequest::AppendEntries(rpc), &option).await? {
            PeerResponse::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .call(PeerRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            PeerResponse::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(PeerRequest::Vote(rpc), &option).await? {
            PeerResponse::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }
}

/// Compares secrets in time independent of where they differ.
fn secrets_match(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves Raft RPCs and forwarded writes on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    bus: Bus,
    secret: Option<String>,
    mut shutdown: Shutdown,
) {
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "raft accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => return,
        };
        stream.set_nodelay(true).ok();
        let bus = bus.clone();
        let secret = secret.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(reason) = serve_peer(stream, bus, secret, shutdown).await {
                tracing::warn!(%remote, %reason, "peer connection closed");
            }
        });
    }
}

async fn serve_peer(
    stream: TcpStream,
    bus: Bus,
    secret: Option<String>,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let mut framed = Framed::new(stream, codec());
    let first = match framed.next().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Ok(()),
    };
    let hello: Envelope<PeerRequest> = decode(&first)?;
    let from = match (hello.body, secret.as_deref()) {
        (
            PeerRequest::Hello {
                from,
                secret: given,
            },
            expected,
        ) => {
            let ok = match (expected, given.as_deref()) {
                (None, _) => true,
                (Some(e), Some(g)) => secrets_match(e, g),
                (Some(_), None) => false,
            };
            if !ok {
                let reply = encode(&Envelope {
                    id: 0,
                    body: PeerResponse::Refused("wrong or missing cluster secret".into()),
                });
                let _ = framed.send(reply).await;
                return Err(format!(
                    "refused peer claiming to be node {from}: wrong or missing cluster secret"
                ));
            }
            from
        }
        _ => return Err("peer did not start with a hello".into()),
    };
    framed
        .send(encode(&Envelope {
            id: 0,
            body: PeerResponse::Welcome,
        }))
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(from, "peer connected");

    let (mut sink, mut stream) = framed.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    loop {
        let bytes = tokio::select! {
            next = stream.next() => match next {
                Some(Ok(bytes)) => bytes,
                Some(Err(e)) => { writer.abort(); return Err(e.to_string()); }
                None => break,
            },
            _ = shutdown.recv() => break,
        };
        let env: Envelope<PeerRequest> = decode(&bytes)?;
        crate::failpoint::point!("net.receive", |msg| {
            writer.abort();
            Err(format!("{msg}: peer connection dropped"))
        });
        let tx = tx.clone();
        let body = match env.body {
            PeerRequest::Forward(appends) => appends,
            other => {
                let raft = bus.raft.clone();
                tokio::spawn(async move {
                    let body = handle(&raft, other).await;
                    let _ = tx.send(encode(&Envelope { id: env.id, body })).await;
                });
                continue;
            }
        };
        {
            let appends = body;
            // Queued here, in arrival order, so one client's pipelined writes keep their
            // order on the leader.
            let waits = bus.submit_forwarded(appends);
            tokio::spawn(async move {
                let mut results = Vec::with_capacity(waits.len());
                for w in waits {
                    results.push(
                        w.await.unwrap_or_else(|_| {
                            Err(ForwardError::Unknown("leader shut down".into()))
                        }),
                    );
                }
                let body = PeerResponse::Forwarded(results);
                let _ = tx.send(encode(&Envelope { id: env.id, body })).await;
            });
        }
    }
    writer.abort();
    Ok(())
}

async fn handle(raft: &Raft, req: PeerRequest) -> PeerResponse {
    match req {
        PeerRequest::Hello { .. } => PeerResponse::Refused("hello sent twice".into()),
        PeerRequest::AppendEntries(r) => PeerResponse::AppendEntries(raft.append_entries(r).await),
        PeerRequest::Vote(r) => PeerResponse::Vote(raft.vote(r).await),
        PeerRequest::InstallSnapshot(r) => {
            PeerResponse::InstallSnapshot(raft.install_snapshot(r).await)
        }
        PeerRequest::Forward(_) => PeerResponse::Refused("forwards are queued, not handled".into()),
        PeerRequest::Exec(exec) => {
            PeerResponse::Exec(crate::transaction::propose_here(raft, exec).await)
        }
        PeerRequest::ReadIndex => PeerResponse::ReadIndex(
            raft.get_read_log_id()
                .await
                .map(|(read, _)| read.map_or(0, |l| l.index))
                .map_err(|e| e.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comparison() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("abc", "ab"));
    }

    #[test]
    fn envelopes_round_trip_through_bincode() {
        let env = Envelope {
            id: 7,
            body: PeerResponse::Forwarded(vec![
                Ok(3),
                Err(ForwardError::NotLeader { leader: Some(2) }),
            ]),
        };
        let back: Envelope<PeerResponse> = decode(&encode(&env)).unwrap();
        assert_eq!(back.id, 7);
        match back.body {
            PeerResponse::Forwarded(r) => {
                assert_eq!(
                    r,
                    vec![Ok(3), Err(ForwardError::NotLeader { leader: Some(2) })]
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
