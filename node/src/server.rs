//! Client connections: RESP in, commands executed against the [`Bus`], replies and pub/sub
//! pushes out.
//!
//! Replies leave in request order, but commands do not wait for each other: a pipelined
//! batch of writes is proposed together and shares fsyncs (group commit). Reads are served
//! from this node's applied state (after a read index when linearizable, see below). A subscriber that falls more than
//! `subscriber_backlog` entries behind is disconnected (logged) instead of buffering
//! without bound.
//!
//! # Where a subscription starts
//!
//! `SUBSCRIBE` takes effect at a point in the log, not at whatever this node happens to be
//! re-applying: the node first learns the cluster's read index from the leader (everything
//! committed anywhere before the command lies at or below it), waits until it has applied
//! that far itself, and only then registers the channel and confirms. From the
//! confirmation on, the subscriber receives every entry this node applies, once, in log
//! order. So a node that is replaying its log after a restart, installing a snapshot or
//! catching up after a partition delays the confirmation until it has caught up, and never
//! replays old entries into a new subscription. If no leader confirms a read index within
//! the write timeout (the node is cut off, or no leader is elected), the command gets
//! `-TRYAGAIN` and nothing is subscribed. `XREAD ... $` is fixed the same way: `$` is the
//! channel's last entry at the cluster's read index, not this replica's.
//!
//! # Read consistency
//!
//! With `read_consistency = "local"` (the default) XRANGE, XREVRANGE, XLEN and XREAD
//! answer from this node's applied state as it is, so a lagging follower or a cut-off old
//! leader may miss entries acknowledged elsewhere. With `"linearizable"` each of them first
//! goes through the same read index as `SUBSCRIBE` (leader: quorum-confirmed commit index;
//! follower: asks the leader), waits until this node has applied that far, and only then
//! reads; a node that cannot get a read index within the write timeout answers
//! `-TRYAGAIN`, so a partitioned or paused old leader never serves an old view.
//!
//! Entries that retention trimmed before this node saw them (it caught up by snapshot)
//! cannot be delivered; their subscribers are disconnected with the same "lagged" reason
//! as a slow subscriber, so the gap is visible to them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch, Notify};

use crate::bus::{Bus, ReadIndexError, WriteError};
use crate::command::{
    ClientCommand, ClientFilter, Command, CommandError, CommandSubcommand, Hello, PubsubQuery,
    StreamId, TrimStrategy, XAdd, XAddId, XRange, XRead, XReadId, COMMANDS,
};
use crate::config::ReadConsistency;
use crate::groups::{GroupOp, ReadGroup};
use crate::resp::{encode, Frame, Limits, Protocol, RequestDecoder};
use crate::shutdown::Shutdown;
use crate::state_machine::{ChannelEvent, Committed, SharedState, StreamEntry};
use crate::transaction::{self, Op, Query, Value};
use crate::types::Append;

/// The version string clients see in HELLO and INFO; clients gate features on it.
const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// Counters shared by all connections, for INFO.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connected: AtomicUsize,
    pub total_connections: AtomicU64,
    pub slow_subscribers_dropped: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Every open client connection, for CLIENT LIST and CLIENT KILL.
    pub clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    started: std::sync::OnceLock<Instant>,
}

/// What CLIENT LIST shows of a connection, and the handle CLIENT KILL pulls.
#[derive(Debug)]
pub struct ClientInfo {
    id: u64,
    addr: String,
    laddr: String,
    created: Instant,
    name: Mutex<Option<Bytes>>,
    subscriptions: Mutex<SubscribedNames>,
    resp: AtomicI64,
    kill: Notify,
}

impl ClientInfo {
    /// One line of CLIENT LIST / CLIENT INFO, with Redis's field names (a subset).
    fn line(&self) -> String {
        let name = self
            .name
            .lock()
            .expect("client name lock")
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let (sub, psub) = self.subscription_counts();
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle=0 flags={} db=0 sub={} psub={} ssub=0 multi=-1 cmd=NULL user=default resp={}\n",
            self.id,
            self.addr,
            self.laddr,
            name,
            self.created.elapsed().as_secs(),
            if sub + psub > 0 { "P" } else { "N" },
            sub,
            psub,
            self.resp.load(Ordering::Relaxed),
        )
    }

    /// Channels and patterns subscribed to.
    fn subscription_counts(&self) -> (usize, usize) {
        let s = self.subscriptions.lock().expect("subscriptions lock");
        (s.channels.len(), s.patterns.len())
    }

    fn matches(&self, f: &ClientFilter, me: u64) -> bool {
        let (sub, psub) = self.subscription_counts();
        let pubsub = sub + psub > 0;
        f.ids.as_ref().is_none_or(|ids| ids.contains(&self.id))
            && f.addr.as_ref().is_none_or(|a| *a == self.addr)
            && f.laddr.as_ref().is_none_or(|a| *a == self.laddr)
            && f.pubsub.is_none_or(|p| p == pubsub)
            && !(f.skipme && self.id == me)
    }
}

impl ServerStats {
    pub fn uptime(&self) -> Duration {
        self.started.get().map_or(Duration::ZERO, |s| s.elapsed())
    }
}

/// Accepts client connections until shutdown.
pub async fn serve(listener: TcpListener, bus: Bus, mut shutdown: Shutdown) {
    let stats = bus.server_stats.clone();
    let _ = stats.started.set(Instant::now());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "client accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => return,
        };
        stream.set_nodelay(true).ok();
        let id = stats.total_connections.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Connection::new(id, stream, bus.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(conn.run(shutdown));
    }
}

/// A connection's subscriptions by name, as CLIENT LIST and PUBSUB see them.
#[derive(Debug, Default)]
struct SubscribedNames {
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
}

/// `PUBSUB` over this node's connections (each node answers for its own subscribers, as
/// the nodes of a Redis Cluster do).
fn pubsub_query(clients: &BTreeMap<u64, Arc<ClientInfo>>, q: PubsubQuery) -> Frame {
    let subscribed = || {
        clients
            .values()
            .map(|c| c.subscriptions.lock().expect("subscriptions lock"))
    };
    let bulks = |names: BTreeSet<Bytes>| Frame::Array(names.into_iter().map(Frame::Bulk).collect());
    match q {
        PubsubQuery::Channels(pattern) => bulks(
            subscribed()
                .flat_map(|s| s.channels.clone())
                .filter(|ch| pattern.as_ref().is_none_or(|p| glob_match(p, ch)))
                .collect(),
        ),
        PubsubQuery::NumSub(channels) => {
            let mut counts: BTreeMap<&Bytes, i64> = channels.iter().map(|ch| (ch, 0)).collect();
            for s in subscribed() {
                for ch in &s.channels {
                    if let Some(n) = counts.get_mut(ch) {
                        *n += 1;
                    }
                }
            }
            Frame::Array(
                channels
                    .iter()
                    .flat_map(|ch| [Frame::Bulk(ch.clone()), Frame::Integer(counts[ch])])
                    .collect(),
            )
        }
        PubsubQuery::NumPat => Frame::Integer(
            subscribed()
                .flat_map(|s| s.patterns.clone())
                .collect::<BTreeSet<_>>()
                .len() as i64,
        ),
        PubsubQuery::ShardChannels => Frame::Array(vec![]),
        PubsubQuery::ShardNumSub(channels) => Frame::Array(
            channels
                .into_iter()
                .flat_map(|ch| [Frame::Bulk(ch), Frame::Integer(0)])
                .collect(),
        ),
    }
}

/// What to do when a reply's turn comes.
enum Reply {
    Frame(Frame),
    Close(Frame),
    /// Register the subscriptions, then confirm them; `Err`: this node could not catch up
    /// with the cluster in time, nothing is subscribed.
    Subscribe {
        names: Vec<Bytes>,
        pattern: bool,
        ready: Result<(), ReadIndexError>,
    },
    /// Leave these subscriptions (all of the kind when empty), then confirm.
    Unsubscribe {
        names: Vec<Bytes>,
        pattern: bool,
    },
    /// `RESET`'s part that waits for the replies before it: leave every subscription
    /// without confirmations, switch to RESP2, then answer.
    Reset,
}

/// Subscribed channels or patterns, each with the applied index it took effect at: it
/// receives announcements after that index only.
type Subscriptions = BTreeMap<Bytes, u64>;

/// The append an `XADD` asks of the log: the bus assigns stream ids itself and trims by
/// `MAXLEN` only. (`NOMKSTREAM` is judged by the caller, against its replica.)
pub fn xadd_append(x: XAdd) -> Result<Append, Frame> {
    if x.id != XAddId::Auto {
        return Err(Frame::error(
            "ERR the bus assigns stream IDs (<offset>-0): use * as the ID",
        ));
    }
    let max_len = match x.trim.map(|t| t.strategy) {
        None => None,
        Some(TrimStrategy::MaxLen(n)) => Some(n),
        Some(TrimStrategy::MinId(_)) => {
            return Err(Frame::error("ERR XADD MINID is not supported by the bus"))
        }
    };
    Ok(Append {
        channel: key_str(&x.key),
        fields: Arc::new(
            x.fields
                .into_iter()
                .map(|(f, v)| (f.to_vec(), v.to_vec()))
                .collect(),
        ),
        max_len,
    })
}

struct Connection {
    id: u64,
    bus: Bus,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    decoder: RequestDecoder,
    inbuf: BytesMut,
    out: BytesMut,
    proto: Protocol,
    name: Option<Bytes>,
    authenticated: bool,
    channels: Subscriptions,
    patterns: Subscriptions,
    feed: Option<broadcast::Receiver<Committed>>,
    pending: FuturesOrdered<BoxFuture<'static, Reply>>,
    /// Commands queued since MULTI.
    multi: Option<Multi>,
    order: WriteOrder,
    /// Wrote since the last read: the next read first catches up with the cluster, so a
    /// client reading through a follower sees its own writes.
    wrote: bool,
    info: Arc<ClientInfo>,
}

/// A transaction being queued.
#[derive(Default)]
struct Multi {
    ops: Vec<Op>,
    /// A command failed to queue: EXEC answers EXECABORT.
    failed: bool,
}

/// Keeps one connection's writes in order across the two write paths: appends (batched
/// by the bus's router) and [`transaction::exec`] entries (proposed on their own).
#[derive(Default)]
struct WriteOrder {
    /// Appends handed to the router and not answered yet.
    inflight: Arc<watch::Sender<usize>>,
    /// Done-flag of the newest write that waits for the ones before it (an exec, or a
    /// write sent while one was outstanding).
    tail: Option<watch::Receiver<bool>>,
}

impl WriteOrder {
    /// The outstanding tail, if any (`None` once it is done).
    fn take_tail(&mut self) -> Option<watch::Receiver<bool>> {
        self.tail.take().filter(|t| !*t.borrow())
    }

    /// Whether a tail write is still outstanding.
    fn outstanding(&mut self) -> bool {
        self.tail = self.take_tail();
        self.tail.is_some()
    }

    /// Makes the next write the tail: returns what it must wait for first and the flag to
    /// raise when it is done.
    fn chain(&mut self) -> (Option<watch::Receiver<bool>>, watch::Sender<bool>) {
        let prev = self.take_tail();
        let (done, rx) = watch::channel(false);
        self.tail = Some(rx);
        (prev, done)
    }
}

/// Waits until a tail is done (or its connection dropped it).
async fn wait_done(tail: Option<watch::Receiver<bool>>) {
    if let Some(mut t) = tail {
        let _ = t.wait_for(|done| *done).await;
    }
}

/// Decrements the in-flight append count when the append is answered (or dropped).
struct Inflight(Arc<watch::Sender<usize>>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Connection {
    fn new(id: u64, stream: TcpStream, bus: Bus) -> Self {
        let limits = Limits {
            max_bulk_len: bus.settings.limits.max_bulk_len,
            max_array_len: bus.settings.limits.max_array_len,
            max_inline_len: bus.settings.limits.max_inline_len,
        };
        let info = Arc::new(ClientInfo {
            id,
            addr: stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            laddr: stream
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            created: Instant::now(),
            name: Mutex::new(None),
            subscriptions: Mutex::default(),
            resp: AtomicI64::new(2),
            kill: Notify::new(),
        });
        bus.server_stats
            .clients
            .lock()
            .expect("clients lock")
            .insert(id, info.clone());
        let (reader, writer) = stream.into_split();
        let authenticated = bus.settings.requirepass.is_none();
        Connection {
            id,
            bus,
            reader,
            writer,
            decoder: RequestDecoder::new(limits),
            inbuf: BytesMut::with_capacity(16 * 1024),
            out: BytesMut::with_capacity(16 * 1024),
            proto: Protocol::Resp2,
            name: None,
            authenticated,
            channels: Subscriptions::new(),
            patterns: Subscriptions::new(),
            feed: None,
            pending: FuturesOrdered::new(),
            multi: None,
            order: WriteOrder::default(),
            wrote: false,
            info,
        }
    }

    async fn run(mut self, mut shutdown: Shutdown) {
        let stats = self.bus.server_stats.clone();
        stats.connected.fetch_add(1, Ordering::Relaxed);
        let outcome = self.serve(&mut shutdown).await;
        stats.connected.fetch_sub(1, Ordering::Relaxed);
        stats.clients.lock().expect("clients lock").remove(&self.id);
        match outcome {
            Ok(()) => tracing::debug!(conn = self.id, "client disconnected"),
            Err(reason) => tracing::info!(conn = self.id, %reason, "client connection closed"),
        }
    }

    async fn serve(&mut self, shutdown: &mut Shutdown) -> Result<(), String> {
        let max_pipeline = self.bus.settings.max_pipeline;
        let mut closing = false;
        loop {
            // Turn buffered bytes into commands while the pipeline has room.
            while !closing && self.pending.len() < max_pipeline {
                match self.decoder.decode(&mut self.inbuf) {
                    Ok(Some(args)) => {
                        if let Some(reply) = self.dispatch(args) {
                            if self.queue(reply) {
                                closing = true;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.bus
                            .server_stats
                            .protocol_errors
                            .fetch_add(1, Ordering::Relaxed);
                        let frame = Frame::Error(format!("ERR {e}"));
                        if e.is_fatal() {
                            self.queue(Reply::Close(frame));
                            closing = true;
                        } else {
                            self.queue(Reply::Frame(frame));
                        }
                    }
                }
            }
            if !self.out.is_empty() {
                self.flush().await?;
            }
            if closing && self.pending.is_empty() {
                return Ok(());
            }

            let can_read = !closing && self.pending.len() < max_pipeline;
            tokio::select! {
                Some(reply) = self.pending.next(), if !self.pending.is_empty() => {
                    if self.write_reply(reply) {
                        self.flush().await?;
                        return Ok(());
                    }
                }
                read = self.reader.read_buf(&mut self.inbuf), if can_read => {
                    match read {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("read failed: {e}")),
                    }
                }
                committed = recv_feed(&mut self.feed) => {
                    match committed {
                        Ok(c) => self.push_message(&c)?,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            self.bus.server_stats.slow_subscribers_dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                conn = self.id,
                                missed,
                                backlog = self.bus.settings.subscriber_backlog,
                                "disconnecting subscriber: it fell behind its output bound"
                            );
                            return Err("subscriber output bound exceeded".into());
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                }
                _ = shutdown.recv() => return Ok(()),
                () = self.info.kill.notified() => {
                    if !self.out.is_empty() {
                        self.flush().await?;
                    }
                    return Err("killed by CLIENT KILL".into());
                }
            }
        }
    }

    /// Queues a reply behind earlier ones; returns true when the connection closes after it.
    fn queue(&mut self, reply: Reply) -> bool {
        if self.pending.is_empty() {
            self.write_reply(reply)
        } else {
            let close = matches!(reply, Reply::Close(_));
            self.pending
                .push_back(futures::future::ready(reply).boxed());
            close
        }
    }

    fn write_reply(&mut self, reply: Reply) -> bool {
        match reply {
            Reply::Frame(f) => {
                encode(&f, self.proto, &mut self.out);
                false
            }
            Reply::Close(f) => {
                encode(&f, self.proto, &mut self.out);
                true
            }
            Reply::Subscribe {
                names,
                pattern,
                ready,
            } => {
                match ready {
                    Ok(()) => self.register(names, pattern),
                    Err(e) => encode(&Frame::Error(e.to_string()), self.proto, &mut self.out),
                }
                false
            }
            Reply::Unsubscribe { names, pattern } => {
                self.leave(names, pattern);
                false
            }
            Reply::Reset => {
                self.channels.clear();
                self.patterns.clear();
                self.feed = None;
                self.publish_subscriptions();
                self.proto = Protocol::Resp2;
                self.info
                    .resp
                    .store(Protocol::Resp2.version(), Ordering::Relaxed);
                encode(&Frame::simple("RESET"), self.proto, &mut self.out);
                false
            }
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        let result = self.writer.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|e| format!("write failed: {e}"))
    }

    fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    /// Runs one command. Immediate results come back as `Some`; slow ones (writes, blocking
    /// reads) are queued in `pending` and `None` is returned.
    fn dispatch(&mut self, args: Vec<Bytes>) -> Option<Reply> {
        #[cfg(feature = "failpoints")]
        if let Some(frame) = crate::failpoint::admin_command(&args, self.authenticated) {
            return Some(Reply::Frame(frame));
        }
        let command = match Command::parse(&args) {
            Ok(c) => c,
            Err(e) => {
                if let Some(m) = &mut self.multi {
                    m.failed = true;
                }
                return Some(Reply::Frame(e.to_frame()));
            }
        };
        if !self.authenticated && !command.allowed_before_auth() {
            return Some(Reply::Frame(CommandError::NoAuth.to_frame()));
        }
        if self.subscribed() && self.proto == Protocol::Resp2 && !command.allowed_while_subscribed()
        {
            let e = CommandError::NotAllowedWhileSubscribed(crate::command::full_name(&args));
            return Some(Reply::Frame(e.to_frame()));
        }
        if let Some(m) = &mut self.multi {
            match command {
                // RESET ends the transaction rather than joining it, as in Redis.
                Command::Exec | Command::Discard | Command::Quit | Command::Reset => {}
                Command::Multi => {
                    return Some(Reply::Frame(Frame::error(
                        "ERR MULTI calls can not be nested",
                    )))
                }
                other => {
                    return Some(Reply::Frame(match queued_op(other) {
                        Ok(op) => {
                            m.ops.push(op);
                            Frame::simple("QUEUED")
                        }
                        Err(f) => {
                            m.failed = true;
                            f
                        }
                    }))
                }
            }
        }
        let frame = match command {
            Command::Ping(msg) => self.ping(msg),
            Command::Echo(msg) => Frame::Bulk(msg),
            Command::Hello(h) => self.hello(h),
            Command::Quit => return Some(Reply::Close(Frame::ok())),
            Command::Auth { username, password } => self.auth(username.as_ref(), &password),
            Command::Client(c) => self.client(c),
            Command::Select => Frame::ok(),
            Command::Pubsub(q) => {
                let clients = self.bus.server_stats.clients.lock().expect("clients lock");
                pubsub_query(&clients, q)
            }
            Command::Reset => {
                // What later commands are judged by changes now; what earlier replies are
                // encoded with changes when RESET's turn comes.
                self.multi = None;
                self.authenticated = self.bus.settings.requirepass.is_none();
                self.set_name(None);
                return Some(Reply::Reset);
            }
            Command::Publish { channel, message } => {
                self.spawn_write(publish_append(channel, message), |offset| {
                    Frame::Integer(offset as i64)
                });
                return None;
            }
            Command::Multi => {
                self.multi = Some(Multi::default());
                Frame::ok()
            }
            Command::Discard => match self.multi.take() {
                Some(_) => Frame::ok(),
                None => Frame::error("ERR DISCARD without MULTI"),
            },
            Command::Exec => return self.exec(),
            Command::Write(_, op) => {
                let proto = self.proto;
                self.spawn_exec(vec![op], move |r| match r {
                    Ok(mut values) => values.pop().unwrap_or(Value::Null).into_frame(proto),
                    Err(e) => Frame::Error(e.to_string()),
                });
                return None;
            }
            Command::Query(_, q) => {
                let proto = self.proto;
                return self.read(move |state| {
                    state
                        .query(|s| transaction::query(s, &q, transaction::now_ms()))
                        .into_frame(proto)
                });
            }
            Command::XReadGroup { read, block } => {
                self.xreadgroup(read, block);
                return None;
            }
            Command::Subscribe(chs) => return self.subscribe(chs, false),
            Command::PSubscribe(pats) => return self.subscribe(pats, true),
            Command::Unsubscribe(chs) => return self.unsubscribe(chs, false),
            Command::PUnsubscribe(pats) => return self.unsubscribe(pats, true),
            Command::XAdd(x) => match self.xadd(x) {
                Ok(()) => return None,
                Err(f) => f,
            },
            Command::XRead(x) => {
                let fut = xread(self.bus.clone(), x, self.proto);
                self.pending.push_back(fut.map(Reply::Frame).boxed());
                return None;
            }
            Command::XRange(r) => return self.read(move |state| xrange(state, &r)),
            Command::XLen(key) => {
                return self.read(move |state| Frame::Integer(state.len(&key_str(&key)) as i64))
            }
            Command::Info(sections) => Frame::Bulk(Bytes::from(self.bus.info(&sections))),
            Command::Command(sub) => command_info(sub),
            // The bus has no Redis configuration to show; an empty reply keeps tools such
            // as redis-benchmark going.
            Command::ConfigGet(_) => self.empty_map(),
            Command::DbSize => Frame::Integer(self.bus.state.channel_count() as i64),
        };
        Some(Reply::Frame(frame))
    }

    fn ping(&self, msg: Option<Bytes>) -> Frame {
        if self.subscribed() && self.proto == Protocol::Resp2 {
            return Frame::Array(vec![
                Frame::bulk(Bytes::from_static(b"pong")),
                Frame::Bulk(msg.unwrap_or_default()),
            ]);
        }
        match msg {
            Some(m) => Frame::Bulk(m),
            None => Frame::simple("PONG"),
        }
    }

    fn hello(&mut self, h: Hello) -> Frame {
        if let Some((user, pass)) = &h.auth {
            if let Err(e) = self.check_password(Some(user), pass) {
                return e.to_frame();
            }
            self.authenticated = true;
        }
        if !self.authenticated {
            return CommandError::NoAuth.to_frame();
        }
        if let Some(p) = h.protocol {
            self.proto = p;
            self.info.resp.store(p.version(), Ordering::Relaxed);
        }
        if let Some(name) = h.setname {
            self.set_name(Some(name));
        }
        let role = if self.bus.is_leader() {
            "master"
        } else {
            "replica"
        };
        let pair = |k: &'static str, v: Frame| (Frame::bulk(Bytes::from_static(k.as_bytes())), v);
        Frame::Map(vec![
            pair("server", Frame::bulk(Bytes::from_static(b"redis"))),
            pair(
                "version",
                Frame::bulk(Bytes::from_static(REDIS_COMPAT_VERSION.as_bytes())),
            ),
            pair("proto", Frame::Integer(self.proto.version())),
            pair("id", Frame::Integer(self.id as i64)),
            pair("mode", Frame::bulk(Bytes::from_static(b"standalone"))),
            pair("role", Frame::bulk(Bytes::from_static(role.as_bytes()))),
            pair("modules", Frame::Array(vec![])),
        ])
    }

    fn set_name(&mut self, name: Option<Bytes>) {
        self.name = name;
        self.info
            .name
            .lock()
            .expect("client name lock")
            .clone_from(&self.name);
    }

    /// Redis's rules for its one user, `default`: without `requirepass` it has no password,
    /// so the two-argument form (and HELLO AUTH) accepts any password for it, while the
    /// one-argument form is refused as a likely misconfiguration.
    fn check_password(&self, user: Option<&Bytes>, pass: &[u8]) -> Result<(), CommandError> {
        let user_ok = user.is_none_or(|u| u.as_ref() == b"default");
        match &self.bus.settings.requirepass {
            None if user.is_none() => Err(CommandError::NoPasswordConfigured),
            None if user_ok => Ok(()),
            Some(expected) if user_ok && expected.as_bytes() == pass => Ok(()),
            _ => Err(CommandError::WrongPass),
        }
    }

    fn auth(&mut self, user: Option<&Bytes>, pass: &[u8]) -> Frame {
        match self.check_password(user, pass) {
            Ok(()) => {
                self.authenticated = true;
                Frame::ok()
            }
            Err(e) => e.to_frame(),
        }
    }

    fn client(&mut self, c: ClientCommand) -> Frame {
        match c {
            ClientCommand::SetName(name) => {
                self.set_name((!name.is_empty()).then_some(name));
                Frame::ok()
            }
            ClientCommand::List(filter) => {
                let clients = self.bus.server_stats.clients.lock().expect("clients lock");
                let text: String = clients
                    .values()
                    .filter(|c| c.matches(&filter, u64::MAX))
                    .map(|c| c.line())
                    .collect();
                Frame::Bulk(Bytes::from(text))
            }
            ClientCommand::Kill { filter, legacy } => {
                let clients = self.bus.server_stats.clients.lock().expect("clients lock");
                let victims: Vec<&Arc<ClientInfo>> = clients
                    .values()
                    .filter(|c| c.matches(&filter, self.id))
                    .collect();
                for v in &victims {
                    v.kill.notify_one();
                }
                match (legacy, victims.len()) {
                    (true, 0) => Frame::error("ERR No such client"),
                    (true, _) => Frame::ok(),
                    (false, n) => Frame::Integer(n as i64),
                }
            }
            ClientCommand::GetName => self.name.clone().map_or(Frame::Null, Frame::Bulk),
            ClientCommand::Id => Frame::Integer(self.id as i64),
            ClientCommand::Info => Frame::Bulk(Bytes::from(self.info.line())),
            ClientCommand::SetInfo { .. } => Frame::ok(),
        }
    }

    fn empty_map(&self) -> Frame {
        match self.proto {
            Protocol::Resp3 => Frame::Map(vec![]),
            Protocol::Resp2 => Frame::Array(vec![]),
        }
    }

    /// Queues the append now, so pipelined writes keep their order, and the reply behind
    /// earlier ones.
    fn spawn_write(&mut self, request: Append, reply: fn(u64) -> Frame) {
        self.wrote = true;
        let answer = move |r: Result<u64, WriteError>| match r {
            Ok(offset) => Reply::Frame(reply(offset)),
            Err(e) => Reply::Frame(Frame::Error(e.to_string())),
        };
        if self.order.outstanding() {
            // An exec of this connection is outstanding: wait for it, keeping the order.
            let (prev, done) = self.order.chain();
            let bus = self.bus.clone();
            let fut = async move {
                wait_done(prev).await;
                let r = bus.append(request).await;
                let _ = done.send(true);
                answer(r)
            };
            self.pending.push_back(fut.boxed());
            return;
        }
        self.order.inflight.send_modify(|n| *n += 1);
        let inflight = Inflight(self.order.inflight.clone());
        let wait = self.bus.append(request);
        let fut = async move {
            let r = wait.await;
            drop(inflight);
            answer(r)
        };
        self.pending.push_back(fut.boxed());
    }

    /// Replicates `ops` as one entry after this connection's earlier writes, and queues
    /// the reply.
    fn spawn_exec(
        &mut self,
        ops: Vec<Op>,
        reply: impl FnOnce(Result<Vec<Value>, WriteError>) -> Frame + Send + 'static,
    ) {
        self.wrote = true;
        let (prev, done) = self.order.chain();
        let mut inflight = self.order.inflight.subscribe();
        let bus = self.bus.clone();
        let fut = async move {
            wait_done(prev).await;
            let _ = inflight.wait_for(|n| *n == 0).await;
            let r = transaction::exec(&bus, ops).await;
            let _ = done.send(true);
            Reply::Frame(reply(r))
        };
        self.pending.push_back(fut.boxed());
    }

    /// EXEC: the queued commands as one entry (reads only: served like any read).
    fn exec(&mut self) -> Option<Reply> {
        let Some(m) = self.multi.take() else {
            return Some(Reply::Frame(Frame::error("ERR EXEC without MULTI")));
        };
        if m.failed {
            return Some(Reply::Frame(Frame::error(
                "EXECABORT Transaction discarded because of previous errors.",
            )));
        }
        let proto = self.proto;
        if m.ops.iter().all(Op::is_read) {
            return self.read(move |state| {
                let now = transaction::now_ms();
                Frame::Array(
                    m.ops
                        .iter()
                        .map(|op| match op {
                            Op::Read(q) => state
                                .query(|s| transaction::query(s, q, now))
                                .into_frame(proto),
                            _ => unreachable!("only reads"),
                        })
                        .collect(),
                )
            });
        }
        self.spawn_exec(m.ops, move |r| match r {
            Ok(values) => Frame::Array(values.into_iter().map(|v| v.into_frame(proto)).collect()),
            Err(e) => Frame::Error(e.to_string()),
        });
        None
    }

    /// XREADGROUP: a replicated write; with BLOCK and nothing new, waits until one of the
    /// streams has entries after the group's cursor (or the group is gone) and tries again.
    fn xreadgroup(&mut self, read: ReadGroup, block: Option<u64>) {
        self.wrote = true;
        let (prev, done) = self.order.chain();
        let mut inflight = self.order.inflight.subscribe();
        let bus = self.bus.clone();
        let proto = self.proto;
        let fut = async move {
            wait_done(prev).await;
            let _ = inflight.wait_for(|n| *n == 0).await;
            let deadline = block
                .filter(|ms| *ms > 0)
                .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
            let only_new = read.streams.iter().all(|(_, from)| from.is_none());
            let mut applied = bus.state.applied_watch();
            let frame = loop {
                applied.borrow_and_update();
                let op = Op::Group(GroupOp::ReadGroup(read.clone()));
                let value = match transaction::exec(&bus, vec![op]).await {
                    Ok(mut v) => v.pop().unwrap_or(Value::NullArray),
                    Err(e) => break Frame::Error(e.to_string()),
                };
                if value != Value::NullArray || block.is_none() || !only_new {
                    break value.into_frame(proto);
                }
                // Wait for something to read here before proposing again.
                let ready = || {
                    bus.state.query(|s| {
                        read.streams.iter().any(|(key, _)| {
                            s.get(key.as_str()).filter(|c| c.exists).is_none_or(|c| {
                                c.groups
                                    .0
                                    .get(&read.group)
                                    .is_none_or(|g| c.last_id() > g.last_id)
                            })
                        })
                    })
                };
                let wait = async {
                    while !ready() {
                        if applied.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                };
                match deadline {
                    Some(d) => {
                        if tokio::time::timeout_at(d, wait).await.is_err() {
                            break Frame::NullArray;
                        }
                    }
                    None => wait.await,
                }
            };
            let _ = done.send(true);
            Reply::Frame(frame)
        };
        self.pending.push_back(fut.boxed());
    }

    fn xadd(&mut self, x: XAdd) -> Result<(), Frame> {
        let nomkstream = x.nomkstream;
        let request = xadd_append(x)?;
        let exists = self
            .bus
            .state
            .query(|s| s.get(request.channel.as_str()).is_some_and(|c| c.exists));
        if nomkstream && !exists {
            // Judged on this node's replica: the stream has never had an entry here.
            return Err(Frame::Null);
        }
        self.spawn_write(request, |offset| {
            Frame::Bulk(Bytes::from(StreamId::from_offset(offset).to_string()))
        });
        Ok(())
    }

    /// Serves a read of the replica (XRANGE, XREVRANGE, XLEN): right away with
    /// `read_consistency = "local"`; with `"linearizable"` queued behind earlier replies
    /// until this node has applied the cluster's read index, or answered `-TRYAGAIN` when
    /// no quorum-confirmed leader named one within the write timeout.
    fn read(
        &mut self,
        serve: impl FnOnce(&SharedState) -> Frame + Send + 'static,
    ) -> Option<Reply> {
        // A read pipelined behind this connection's own writes sees them (Redis does).
        let tail = self.order.take_tail();
        self.order.tail.clone_from(&tail);
        let writing = tail.is_some() || *self.order.inflight.borrow() > 0;
        let own_writes = std::mem::take(&mut self.wrote) && !self.bus.is_leader();
        if self.bus.settings.read_consistency == ReadConsistency::Local && !writing && !own_writes {
            return Some(Reply::Frame(serve(&self.bus.state)));
        }
        let local = self.bus.settings.read_consistency == ReadConsistency::Local && !own_writes;
        let mut inflight = self.order.inflight.subscribe();
        let bus = self.bus.clone();
        let deadline = tokio::time::Instant::now() + bus.settings.write_timeout();
        let fut = async move {
            wait_done(tail).await;
            let _ = inflight.wait_for(|n| *n == 0).await;
            if local {
                return Reply::Frame(serve(&bus.state));
            }
            match bus.catch_up(deadline).await {
                Ok(_) => Reply::Frame(serve(&bus.state)),
                Err(e) => Reply::Frame(Frame::Error(e.to_string())),
            }
        };
        self.pending.push_back(fut.boxed());
        None
    }

    /// Queues the subscription behind earlier replies; it takes effect once this node has
    /// caught up with the cluster (see the module docs).
    fn subscribe(&mut self, names: Vec<Bytes>, pattern: bool) -> Option<Reply> {
        let bus = self.bus.clone();
        let deadline = tokio::time::Instant::now() + bus.settings.write_timeout();
        let fut = async move {
            let ready = bus.catch_up(deadline).await.map(|_| ());
            if let Err(e) = &ready {
                tracing::info!(%e, "subscription refused");
            }
            Reply::Subscribe {
                names,
                pattern,
                ready,
            }
        };
        self.pending.push_back(fut.boxed());
        None
    }

    fn unsubscribe(&mut self, names: Vec<Bytes>, pattern: bool) -> Option<Reply> {
        Some(Reply::Unsubscribe { names, pattern })
    }

    fn confirm(&mut self, kind: &'static [u8], name: Frame) {
        let count = (self.channels.len() + self.patterns.len()) as i64;
        let frame = Frame::Push(vec![
            Frame::bulk(Bytes::from_static(kind)),
            name,
            Frame::Integer(count),
        ]);
        encode(&frame, self.proto, &mut self.out);
    }

    /// Registers subscriptions at this node's applied index and confirms each.
    fn register(&mut self, names: Vec<Bytes>, pattern: bool) {
        let start = match &self.feed {
            Some(_) => self.bus.state.applied_index(),
            None => {
                let (rx, at) = self.bus.state.subscribe_at();
                self.feed = Some(rx);
                at
            }
        };
        let kind: &'static [u8] = if pattern { b"psubscribe" } else { b"subscribe" };
        for name in names {
            let set = if pattern {
                &mut self.patterns
            } else {
                &mut self.channels
            };
            // Already subscribed: Redis confirms again; the subscription keeps its start.
            set.entry(name.clone()).or_insert(start);
            self.confirm(kind, Frame::Bulk(name));
        }
        self.publish_subscriptions();
    }

    /// Publishes this connection's subscriptions for CLIENT LIST and PUBSUB.
    fn publish_subscriptions(&self) {
        let mut s = self.info.subscriptions.lock().expect("subscriptions lock");
        s.channels = self.channels.keys().cloned().collect();
        s.patterns = self.patterns.keys().cloned().collect();
    }

    fn leave(&mut self, names: Vec<Bytes>, pattern: bool) {
        let kind: &'static [u8] = if pattern {
            b"punsubscribe"
        } else {
            b"unsubscribe"
        };
        let set = if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        };
        let names: Vec<Bytes> = if names.is_empty() {
            std::mem::take(set).into_keys().collect()
        } else {
            names
        };
        if names.is_empty() {
            // Nothing to leave: Redis still answers with one reply and a null name.
            self.confirm(kind, Frame::Null);
        }
        for name in names {
            if pattern {
                self.patterns.remove(&name);
            } else {
                self.channels.remove(&name);
            }
            self.confirm(kind, Frame::Bulk(name));
        }
        if !self.subscribed() {
            self.feed = None;
        }
        self.publish_subscriptions();
    }

    /// Hands an announcement to this subscriber if one of its subscriptions wants it;
    /// fails (and the connection closes) when entries it should get were trimmed away.
    fn push_message(&mut self, c: &Committed) -> Result<(), String> {
        let channel = c.channel.as_bytes();
        let wants_channel = self.channels.get(channel).is_some_and(|s| c.index > *s);
        let patterns: Vec<Bytes> = self
            .patterns
            .iter()
            .filter(|(p, s)| c.index > **s && glob_match(p, channel))
            .map(|(p, _)| p.clone())
            .collect();
        if !wants_channel && patterns.is_empty() {
            return Ok(());
        }
        let entry = match &c.event {
            ChannelEvent::Entry(e) => e,
            ChannelEvent::Trimmed { first, last } => {
                self.bus
                    .server_stats
                    .slow_subscribers_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    conn = self.id,
                    channel = %c.channel,
                    first,
                    last,
                    "disconnecting subscriber: entries were trimmed before this node could deliver them"
                );
                return Err(format!(
                    "subscriber lagged: entries {first}..{last} of {} were trimmed before delivery",
                    c.channel
                ));
            }
        };
        let payload = message_payload(entry);
        if wants_channel {
            let frame = Frame::Push(vec![
                Frame::bulk(Bytes::from_static(b"message")),
                Frame::Bulk(Bytes::copy_from_slice(channel)),
                Frame::Bulk(payload.clone()),
            ]);
            encode(&frame, self.proto, &mut self.out);
        }
        for pattern in patterns {
            let frame = Frame::Push(vec![
                Frame::bulk(Bytes::from_static(b"pmessage")),
                Frame::Bulk(pattern),
                Frame::Bulk(Bytes::copy_from_slice(channel)),
                Frame::Bulk(payload.clone()),
            ]);
            encode(&frame, self.proto, &mut self.out);
        }
        Ok(())
    }
}

async fn recv_feed(
    feed: &mut Option<broadcast::Receiver<Committed>>,
) -> Result<Committed, broadcast::error::RecvError> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn publish_append(channel: Bytes, message: Bytes) -> Append {
    Append {
        channel: String::from_utf8_lossy(&channel).into_owned(),
        fields: Arc::new(vec![(b"message".to_vec(), message.to_vec())]),
        max_len: None,
    }
}

/// A command queued inside MULTI, as it will run in the transaction's entry.
fn queued_op(command: Command) -> Result<Op, Frame> {
    Ok(match command {
        Command::Publish { channel, message } => Op::Append {
            append: publish_append(channel, message),
            xadd: false,
            nomkstream: false,
        },
        Command::XAdd(x) => {
            let nomkstream = x.nomkstream;
            Op::Append {
                append: xadd_append(x)?,
                xadd: true,
                nomkstream,
            }
        }
        Command::Write(_, op) => op,
        Command::Query(_, q) => Op::Read(q),
        // BLOCK means nothing inside MULTI, as in Redis.
        Command::XReadGroup { read, .. } => Op::Group(GroupOp::ReadGroup(read)),
        Command::XLen(key) => Op::Read(Query::XLen(key_str(&key))),
        Command::XRange(r) => Op::Read(Query::XRange {
            key: key_str(&r.key),
            start: r.start,
            end: r.end,
            count: r.count,
            rev: r.rev,
        }),
        Command::Ping(m) => Op::Read(Query::Ping(m.map(|b| b.to_vec()))),
        Command::Echo(m) => Op::Read(Query::Echo(m.to_vec())),
        other => {
            return Err(Frame::Error(format!(
                "ERR {} inside MULTI is not supported by raftbus",
                other.name().to_ascii_uppercase()
            )))
        }
    })
}

fn key_str(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// What a pub/sub subscriber receives for an entry: the value of its first field (the
/// message itself for PUBLISH, which stores `message <payload>`).
fn message_payload(entry: &StreamEntry) -> Bytes {
    entry
        .fields
        .first()
        .map(|(_, v)| Bytes::copy_from_slice(v))
        .unwrap_or_default()
}

fn entry_frame(e: &StreamEntry) -> Frame {
    let mut fields = Vec::with_capacity(e.fields.len() * 2);
    for (f, v) in e.fields.iter() {
        fields.push(Frame::Bulk(Bytes::copy_from_slice(f)));
        fields.push(Frame::Bulk(Bytes::copy_from_slice(v)));
    }
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(StreamId::from_offset(e.offset).to_string())),
        Frame::Array(fields),
    ])
}

/// Offsets `o` whose id `<o>-0` lies in `[start, end]`.
fn offset_bounds(start: StreamId, end: StreamId) -> (u64, u64) {
    let from = if start.seq == 0 {
        start.ms
    } else {
        start.ms.saturating_add(1)
    };
    (from, end.ms)
}

fn xrange(state: &SharedState, r: &XRange) -> Frame {
    let key = key_str(&r.key);
    if r.count == Some(0) {
        return if state.last_offset(&key) > 0 {
            Frame::NullArray
        } else {
            Frame::Array(vec![])
        };
    }
    let limit = r.count.map_or(usize::MAX, |c| c as usize);
    let (from, to) = offset_bounds(r.start, r.end);
    if from > to {
        return Frame::Array(vec![]);
    }
    let entries = if r.rev {
        state.range_rev(&key, from, to, limit)
    } else {
        state.range(&key, from, to, limit)
    };
    Frame::Array(entries.iter().map(entry_frame).collect())
}

/// XREAD: entries after the given ids; with BLOCK, waits until one stream has some.
async fn xread(bus: Bus, x: XRead, proto: Protocol) -> Frame {
    let state = &bus.state;
    // `$` means "after what the cluster has committed now", fixed at the time of the call:
    // a replica that is behind first catches up, so `$` is never an old position.
    // With linearizable reads every XREAD starts there too, so it sees every entry
    // acknowledged before it was sent.
    if bus.settings.read_consistency == ReadConsistency::Linearizable
        || x.streams.iter().any(|(_, id)| *id == XReadId::Last)
    {
        let deadline = tokio::time::Instant::now() + bus.settings.write_timeout();
        if let Err(e) = bus.catch_up(deadline).await {
            return Frame::Error(e.to_string());
        }
    }
    let streams: Vec<(String, u64)> = x
        .streams
        .iter()
        .map(|(key, id)| {
            let key = key_str(key);
            let after = match id {
                XReadId::Last => state.last_offset(&key),
                XReadId::After(id) => id.ms,
            };
            (key, after)
        })
        .collect();
    let limit = x.count.map_or(usize::MAX, |c| c as usize);
    let deadline = x
        .block
        .filter(|ms| *ms > 0)
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut applied = state.applied_watch();
    loop {
        applied.borrow_and_update();
        let mut found = Vec::new();
        for (key, after) in &streams {
            let entries = state.range(key, after.saturating_add(1), u64::MAX, limit);
            if !entries.is_empty() {
                let list = Frame::Array(entries.iter().map(entry_frame).collect());
                found.push((Frame::Bulk(Bytes::from(key.clone())), list));
            }
        }
        if !found.is_empty() {
            return match proto {
                Protocol::Resp3 => Frame::Map(found),
                Protocol::Resp2 => Frame::Array(
                    found
                        .into_iter()
                        .map(|(k, v)| Frame::Array(vec![k, v]))
                        .collect(),
                ),
            };
        }
        if x.block.is_none() {
            return Frame::NullArray;
        }
        let wait = applied.changed();
        match deadline {
            Some(d) => {
                if tokio::time::timeout_at(d, wait).await.is_err() {
                    return Frame::NullArray;
                }
            }
            None => {
                if wait.await.is_err() {
                    return Frame::NullArray;
                }
            }
        }
    }
}

fn command_info(sub: CommandSubcommand) -> Frame {
    match sub {
        CommandSubcommand::Count => Frame::Integer(COMMANDS.len() as i64),
        // Clients call these to discover commands; the bus answers with what it has.
        CommandSubcommand::All | CommandSubcommand::Docs(_) => Frame::Array(vec![]),
        CommandSubcommand::Info(names) => Frame::Array(
            names
                .iter()
                .map(|n| {
                    let lower = String::from_utf8_lossy(n).to_lowercase();
                    match COMMANDS.iter().find(|c| c.name == lower) {
                        Some(c) => Frame::Array(vec![
                            Frame::Bulk(Bytes::from_static(c.name.as_bytes())),
                            Frame::Integer(c.arity as i64),
                        ]),
                        None => Frame::Null,
                    }
                })
                .collect(),
        ),
    }
}

/// Redis glob patterns: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`, and `\` escapes.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index it covers to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match_class(pattern, p, text[t]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(c) => (*c == text[t]).then_some(p + 1),
            None => None,
        };
        match step {
            Some(next) => {
                p = next;
                t += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

/// Matches a `[...]` class starting at `pattern[open]`; returns the index after `]`.
fn match_class(pattern: &[u8], open: usize, c: u8) -> Option<usize> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    if i >= pattern.len() {
        // No closing bracket: Redis treats the rest literally; be strict instead.
        return None;
    }
    (matched != negate).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob_match(b"news.*", b"news.sport"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(!glob_match(b"h?llo", b"hllo"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-c]llo", b"hbllo"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
        assert!(glob_match(b"a\\*", b"a*"));
        assert!(!glob_match(b"a\\*", b"ab"));
    }

    #[test]
    fn ids_map_to_offsets() {
        assert_eq!(
            offset_bounds(StreamId::new(3, 0), StreamId::new(5, 0)),
            (3, 5)
        );
        // 3-1 excludes 3-0; 5-7 includes 5-0.
        assert_eq!(
            offset_bounds(StreamId::new(3, 1), StreamId::new(5, 7)),
            (4, 5)
        );
        assert_eq!(offset_bounds(StreamId::MIN, StreamId::MAX), (0, u64::MAX));
    }
}
