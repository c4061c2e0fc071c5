//! The workload: open-loop publishers, subscribers on every node, then drain and read
//! each node's final streams.
//!
//! - [`publisher`] — the open-loop schedule and the outcome of each publish.
//! - [`pacer`] — precise wake-ups at the schedule's send times (tokio's timer is 1 ms).
//! - [`subscriber`] — XREAD / SUBSCRIBE subscribers, `subscribers_per_node` started on
//!   each node, that reconnect as the client policy says (failover: to the next node) and
//!   resume by id.
//! - [`consumer`] — queue mode: consumer groups (XREADGROUP, XACK, XAUTOCLAIM), and the
//!   `consumer-crash` switch.
//! - [`reader`] — open-loop XRANGE / XREVRANGE / XLEN reads on random nodes (stale reads).
//! - [`resp`] — a minimal RESP client for connections the harness fully controls.
//! - [`discover`] — the Redis primary through Sentinel; settling before the final reads.
//! - [`converge`] — waiting, before the final reads, until the replicas hold the same ends.
//! - [`generator_cpu`] — the harness's own CPU and the machine's over the measured window.
//! - [`progress`] — the progress display.

pub mod consumer;
pub mod converge;
pub mod discover;
pub mod generator_cpu;
pub mod pacer;
pub mod progress;
pub mod publisher;
pub mod reader;
pub mod resp;
pub mod subscriber;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raftbus_reports::model::{Mode, Target};
use tokio::sync::watch;

use crate::history::Event;
use crate::payload::{self, Decoded};
use crate::record::{Clock, Recorder};
use crate::scenario::{ClientPolicy, Scenario};
use crate::target::check_client_addr;
use consumer::{group_name, Consumer, ConsumerSpec, QueueControl};
use publisher::{Publisher, PublisherSpec};
use resp::{parse_entries, EntryId, RespConn, Value};
use subscriber::{Subscriber, SubscriberProgress, SubscriberSpec, CLIENT_NAME_PREFIX};

/// The server a client's next session goes to after `ended` sessions ended (or failed to
/// connect): `sticky`, always its home; `failover`, round-robin from its home.
pub(crate) fn next_endpoint(
    endpoints: &[(String, SocketAddr)],
    home: usize,
    policy: ClientPolicy,
    ended: usize,
) -> &(String, SocketAddr) {
    let moves = match policy {
        ClientPolicy::Sticky => 0,
        ClientPolicy::Failover => ended,
    };
    &endpoints[(home + moves) % endpoints.len()]
}

/// How long a client waits before its next connection attempt after `attempt` failed ones:
/// doubling from 50 ms, at most 1 s.
pub(crate) fn reconnect_delay(attempt: u32) -> Duration {
    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(1);
    MIN.saturating_mul(1 << attempt.min(5)).min(MAX)
}

/// Where a writing client's next session goes: under `failover` with Sentinels, the primary
/// they name (asking from Sentinel `first` on); otherwise [`next_endpoint`] from `home`.
pub(crate) async fn write_endpoint(
    endpoints: &[(String, SocketAddr)],
    servers: &[(String, SocketAddr)],
    sentinels: &[SocketAddr],
    (home, policy, ended): (usize, ClientPolicy, usize),
    first: usize,
) -> Result<(String, SocketAddr), String> {
    if policy == ClientPolicy::Failover && !sentinels.is_empty() {
        let addr = discover::discover(sentinels, first, discover::CLIENT_CONNECT_TIMEOUT)
            .await
            .map_err(|e| format!("no primary from sentinel: {e}"))?;
        let name = servers
            .iter()
            .find(|(_, a)| *a == addr)
            .map(|(n, _)| n.clone())
            .ok_or_else(|| format!("sentinel names {addr}, which is none of the servers"))?;
        Ok((name, addr))
    } else {
        Ok(next_endpoint(endpoints, home, policy, ended).clone())
    }
}

/// How long subscribers get to connect before the clock starts.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long subscribers get to catch up after the load stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pub/sub has no end marker: drained once no delivery arrived for this long.
const PUBSUB_QUIET: Duration = Duration::from_secs(1);
/// How long Redis servers get, after the load, to become replicas of the primary Sentinel
/// names and catch up, before the final reads.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Page size of the final XRANGE reads.
const FINAL_PAGE: usize = 10_000;
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("publisher {index} cannot connect: {message}")]
    Connect { index: u32, message: String },
    #[error("cannot create the consumer groups: {message}")]
    Groups { message: String },
}

/// Everything a load run needs to know.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The resolved scenario.
    pub scenario: Arc<Scenario>,
    pub seed: u64,
    pub target: Target,
    /// Nodes publishers may talk to.
    pub publish_endpoints: Vec<(String, SocketAddr)>,
    /// Every node: subscribers start on each (and fail over among them), final streams are
    /// read from each.
    pub endpoints: Vec<(String, SocketAddr)>,
    /// Redis Sentinels (empty: no Sentinel): publishers ask them for the primary.
    pub sentinels: Vec<(String, SocketAddr)>,
    /// Test hook: kill every subscriber connection at this time.
    pub kill_subscribers_at: Option<Duration>,
    /// Queue mode: the consumers' shared state (the nemesis crashes consumers through it).
    pub queue: Option<Arc<QueueControl>>,
    /// Label of the progress display.
    pub label: String,
}

impl LoadPlan {
    fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(|(_, a)| *a).collect()
    }
}

/// What happened besides the recorded events.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub subscribers: usize,
    /// Whether every subscriber caught up before the drain timeout.
    pub drained: bool,
    /// Stream entries read from the nodes' final streams, all nodes together.
    pub final_entries: u64,
    /// Nodes whose final streams could not be read.
    pub final_unreadable: Vec<String>,
    /// Subscriber sessions that came up on another node than the one before (failover),
    /// all subscribers together.
    pub subscriber_moves: u64,
    /// Subscriber connections killed by the test hook (`None`: the hook did not run).
    pub killed_subscribers: Option<usize>,
    /// The read workload.
    pub reads: reader::ReaderReport,
    /// Redis with Sentinel: why the servers had not settled on one primary before the
    /// final reads (`None`: settled, or no Sentinel).
    pub unsettled: Option<String>,
    /// Why the nodes' stream ends still differed when the final reads began (`None`:
    /// they agreed).
    pub unconverged: Option<String>,
}

/// Runs the workload against the endpoints; every event goes to `recorder`.
pub async fn run(
    plan: &LoadPlan,
    clock: &Clock,
    recorder: Recorder,
) -> Result<LoadReport, LoadError> {
    let s = plan.scenario.clone();
    let mut report = LoadReport::default();

    // Subscribers first, so they see everything from the first message on.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subs = Vec::new();
    let mut progress: Vec<Arc<SubscriberProgress>> = Vec::new();
    let mut next_id = 0u32;
    let subscribers_per_node = match s.mode {
        Mode::Queue => 0,
        Mode::Stream | Mode::Pubsub => s.subscribers_per_node,
    };
    for home in 0..plan.endpoints.len() {
        for _ in 0..subscribers_per_node {
            let sub = Subscriber::new(SubscriberSpec {
                id: next_id,
                endpoints: plan.endpoints.clone(),
                home,
                mode: s.mode,
                channels: s.channels,
                client: s.client.clone(),
            });
            next_id += 1;
            progress.push(sub.progress());
            subs.push(tokio::spawn(sub.run(
                clock.clone(),
                recorder.clone(),
                stop_rx.clone(),
            )));
        }
    }
    report.subscribers = subs.len();

    let mut publishers = Vec::new();
    for index in 0..s.publishers as u32 {
        let spec = PublisherSpec {
            index,
            endpoints: plan.publish_endpoints.clone(),
            sentinels: plan.sentinel_addrs(),
            servers: plan.endpoints.clone(),
            scenario: s.clone(),
            target: plan.target,
            seed: plan.seed,
        };
        match Publisher::connect(spec).await {
            Ok(p) => publishers.push(p),
            Err(message) => {
                // Stop the subscribers so every recorder handle is released.
                let _ = stop_tx.send(true);
                for sub in subs {
                    let _ = sub.await;
                }
                return Err(LoadError::Connect { index, message });
            }
        }
    }

    let mut consumers = Vec::new();
    if let Some(control) = &plan.queue {
        if let Err(message) = create_groups(plan).await {
            let _ = stop_tx.send(true);
            for sub in subs {
                let _ = sub.await;
            }
            return Err(LoadError::Groups { message });
        }
        for group in 0..s.queue.groups {
            for index in 0..s.queue.consumers {
                let c = Consumer::new(
                    ConsumerSpec {
                        group,
                        index,
                        endpoints: plan.publish_endpoints.clone(),
                        servers: plan.endpoints.clone(),
                        sentinels: plan.sentinel_addrs(),
                        scenario: s.clone(),
                    },
                    control.clone(),
                );
                consumers.push(tokio::spawn(c.run(
                    clock.clone(),
                    recorder.clone(),
                    stop_rx.clone(),
                )));
            }
        }
    }

    let deadline = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
    while !progress.iter().all(|p| p.connected.load(Ordering::Relaxed)) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("not every subscriber connected before the load started");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Time 0: the schedule starts now.
    let start = clock.start_at(std::time::Instant::now() + Duration::from_millis(10));
    let start = tokio::time::Instant::from_std(start);
    tracing::info!(
        rate = s.rate,
        publishers = s.publishers,
        subscribers = report.subscribers,
        "load started"
    );
    let (progress_stop_tx, progress_stop_rx) = watch::channel(false);
    let progress_task = tokio::spawn(progress::show(
        recorder.live().clone(),
        clock.clone(),
        s.duration,
        plan.label.clone(),
        progress_stop_rx,
    ));
    let killer = plan.kill_subscribers_at.map(|at| {
        let endpoints = plan.endpoints.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start + at).await;
            let mut killed = 0;
            for (node, addr) in &endpoints {
                match kill_subscribers(*addr).await {
                    Ok(n) => killed += n,
                    Err(e) => tracing::warn!(%node, error = %e, "cannot kill subscribers"),
                }
            }
            tracing::info!(killed, "killed subscriber connections (test hook)");
            killed
        })
    });
    let mut tasks = Vec::new();
    for p in publishers {
        tasks.push(tokio::spawn(p.run(clock.clone(), start, recorder.clone())));
    }
    let reads = tokio::spawn(reader::run(
        reader::ReaderSpec {
            endpoints: plan.endpoints.clone(),
            channels: s.channels,
            rate: s.reads_per_s(),
            seed: plan.seed,
            timeout: s.request_timeout,
            duration: s.duration,
        },
        clock.clone(),
        start,
        recorder.clone(),
    ));
    for t in tasks {
        let _ = t.await;
    }
    report.reads = reads.await.unwrap_or_default();
    if let Some(k) = killer {
        if k.is_finished() {
            report.killed_subscribers = Some(k.await.unwrap_or(0));
        } else {
            k.abort();
        }
    }
    if !plan.sentinels.is_empty() {
        match discover::settle(&plan.endpoints, &plan.sentinel_addrs(), SETTLE_TIMEOUT).await {
            Ok(primary) => tracing::info!(%primary, "redis settled on one primary"),
            Err(why) => {
                tracing::warn!(%why, "redis did not settle before the final reads");
                report.unsettled = Some(why);
            }
        }
    }
    // Subscribers drain up to the ends the nodes agree on, and the final reads see them.
    let (ends, converged) = converge::wait(&plan.endpoints, s.channels, SETTLE_TIMEOUT).await;
    match converged {
        Ok(took) => tracing::info!(took = ?took, "replicas agree on the stream ends"),
        Err(why) => {
            tracing::warn!(%why, "replicas had not converged before the final reads");
            report.unconverged = Some(why);
        }
    }
    tracing::info!("load stopped, draining subscribers");

    report.drained = match s.mode {
        Mode::Stream => drain_streams(&converge::furthest(&ends, s.channels), &progress).await,
        Mode::Pubsub => drain_quiet(&progress).await,
        Mode::Queue => drain_groups(plan).await,
    };
    if !report.drained {
        tracing::warn!(
            "subscribers did not catch up within {}s",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    let _ = stop_tx.send(true);
    for sub in subs {
        let _ = sub.await;
    }
    for c in consumers {
        let _ = c.await;
    }
    report.subscriber_moves = progress
        .iter()
        .map(|p| p.moves.load(Ordering::Relaxed))
        .sum();
    let _ = progress_stop_tx.send(true);
    let _ = progress_task.await;

    for (node, addr) in &plan.endpoints {
        let read = read_final(node, *addr, s.channels, &recorder).await;
        let error = match read {
            Ok(n) => {
                report.final_entries += n;
                None
            }
            Err(e) => {
                tracing::warn!(%node, error = %e, "cannot read final streams");
                report.final_unreadable.push(node.clone());
                Some(e.to_string())
            }
        };
        recorder
            .record(Event::FinalRead {
                node: node.clone(),
                ok: error.is_none(),
                error,
            })
            .await;
        if s.mode == Mode::Queue {
            record_group_states(node, *addr, &s, &recorder).await;
        }
    }
    Ok(report)
}

/// `XGROUP CREATE chN gM 0 MKSTREAM` for every channel and group, where writes go (a
/// group that exists already is fine).
async fn create_groups(plan: &LoadPlan) -> Result<(), String> {
    let s = &plan.scenario;
    let addr = match plan.sentinels.is_empty() {
        true => plan.publish_endpoints.first().map(|(_, a)| *a),
        false => discover::discover(&plan.sentinel_addrs(), 0, ADMIN_TIMEOUT)
            .await
            .ok(),
    }
    .ok_or("no server to create the consumer groups on")?;
    let mut conn = admin(addr).await.map_err(|e| e.to_string())?;
    for c in 0..s.channels {
        for g in 0..s.queue.groups {
            let args = [
                "XGROUP",
                "CREATE",
                &format!("ch{c}"),
                &group_name(g),
                "0",
                "MKSTREAM",
            ]
            .map(String::from);
            // Retried briefly: a bus that has just elected its leader may still refuse.
            let mut tries = 0;
            loop {
                match call(&mut conn, &args).await {
                    Ok(Value::Error(e)) if e.starts_with("BUSYGROUP") => break,
                    Ok(Value::Error(e)) if tries < 50 => {
                        tracing::debug!(%e, "XGROUP CREATE refused, retrying");
                    }
                    Ok(Value::Error(e)) => return Err(format!("XGROUP CREATE: {e}")),
                    Ok(_) => break,
                    Err(e) => return Err(format!("XGROUP CREATE: {e}")),
                }
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

/// One group as `XINFO GROUPS` reports it.
struct GroupInfo {
    name: String,
    pending: u64,
    last_delivered: Option<String>,
}

async fn xinfo_groups(conn: &mut RespConn, channel: &str) -> std::io::Result<Vec<GroupInfo>> {
    let args = ["XINFO", "GROUPS", channel].map(String::from);
    let reply = call(conn, &args).await?;
    let groups = match &reply {
        Value::Array(a) => a,
        Value::Error(e) => return Err(std::io::Error::other(e.clone())),
        other => return Err(std::io::Error::other(format!("XINFO GROUPS: {other:?}"))),
    };
    Ok(groups
        .iter()
        .filter_map(|g| {
            let fields = g.as_array()?;
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0].as_str() == Some(name))
                    .and_then(|kv| kv.get(1))
            };
            Some(GroupInfo {
                name: field("name")?.as_str()?.to_string(),
                pending: match field("pending")? {
                    Value::Int(n) => *n as u64,
                    _ => return None,
                },
                last_delivered: field("last-delivered-id")
                    .and_then(Value::as_str)
                    .map(String::from),
            })
        })
        .collect())
}

/// Waits until every group has taken each channel's last entry and has nothing pending,
/// where writes go. Claims take `claim_idle` to come around, so they get that long twice.
async fn drain_groups(plan: &LoadPlan) -> bool {
    let s = &plan.scenario;
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT + s.queue.claim_idle * 2;
    loop {
        let addr = match plan.sentinels.is_empty() {
            true => plan.publish_endpoints.first().map(|(_, a)| *a),
            false => discover::discover(&plan.sentinel_addrs(), 0, ADMIN_TIMEOUT)
                .await
                .ok(),
        };
        if let Some(addr) = addr {
            if groups_drained(addr, s).await.unwrap_or(false) {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn groups_drained(addr: SocketAddr, s: &Scenario) -> std::io::Result<bool> {
    let mut conn = admin(addr).await?;
    let ends = last_ids(&mut conn, s.channels).await?;
    for (c, end) in ends.iter().enumerate() {
        let groups = xinfo_groups(&mut conn, &format!("ch{c}")).await?;
        for g in 0..s.queue.groups {
            let name = group_name(g);
            let Some(info) = groups.iter().find(|i| i.name == name) else {
                return Ok(false);
            };
            let delivered = info
                .last_delivered
                .as_deref()
                .and_then(EntryId::parse)
                .unwrap_or_default();
            if info.pending > 0 || delivered < *end {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Records each group's state on one node (`GroupState`), readable or not.
async fn record_group_states(node: &str, addr: SocketAddr, s: &Scenario, recorder: &Recorder) {
    let mut conn = match admin(addr).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(%node, error = %e, "cannot read consumer groups");
            None
        }
    };
    for c in 0..s.channels {
        let channel = format!("ch{c}");
        let infos = match conn.as_mut() {
            Some(conn) => xinfo_groups(conn, &channel)
                .await
                .map_err(|e| e.to_string()),
            None => Err("cannot connect".to_string()),
        };
        for g in 0..s.queue.groups {
            let group = group_name(g);
            let read = match &infos {
                Ok(list) => list
                    .iter()
                    .find(|i| i.name == group)
                    .map(|i| (i.pending, i.last_delivered.clone()))
                    .ok_or_else(|| "the group does not exist there".to_string()),
                Err(e) => Err(e.clone()),
            };
            let (pending, last_delivered) = read.as_ref().cloned().unwrap_or_default();
            recorder
                .record(Event::GroupState {
                    node: node.to_string(),
                    channel: channel.clone(),
                    group,
                    ok: read.is_ok(),
                    pending,
                    last_delivered,
                    error: read.err(),
                })
                .await;
        }
    }
}

/// Waits until every subscriber, wherever it is connected now, has received each
/// channel's `target` (the furthest end any node reported, see [`converge::furthest`]).
async fn drain_streams(target: &[EntryId], progress: &[Arc<SubscriberProgress>]) -> bool {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        let caught_up = progress.iter().all(|p| {
            let last = p.last_ids.lock().expect("progress lock");
            last.iter().zip(target).all(|(l, t)| l >= t)
        });
        if caught_up {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no subscriber received anything for [`PUBSUB_QUIET`].
async fn drain_quiet(progress: &[Arc<SubscriberProgress>]) -> bool {
    let total = || -> u64 {
        progress
            .iter()
            .map(|p| p.delivered.load(Ordering::Relaxed))
            .sum()
    };
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let mut last = total();
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = tokio::time::Instant::now();
        let t = total();
        if t != last {
            last = t;
            quiet_since = now;
        } else if now - quiet_since >= PUBSUB_QUIET {
            return true;
        }
        if now >= deadline {
            return false;
        }
    }
}

async fn admin(addr: SocketAddr) -> std::io::Result<RespConn> {
    check_client_addr(addr).map_err(std::io::Error::other)?;
    RespConn::connect(addr, ADMIN_TIMEOUT).await
}

async fn call(conn: &mut RespConn, args: &[String]) -> std::io::Result<Value> {
    match tokio::time::timeout(ADMIN_TIMEOUT, conn.call(args)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{} timed out", args[0]),
        )),
    }
}

/// The last entry id of each channel on one node (`0-0` for an empty stream).
async fn last_ids(conn: &mut RespConn, channels: usize) -> std::io::Result<Vec<EntryId>> {
    let mut out = Vec::with_capacity(channels);
    for c in 0..channels {
        let args = ["XREVRANGE", &format!("ch{c}"), "+", "-", "COUNT", "1"].map(String::from);
        let entries = parse_entries(&call(conn, &args).await?)?;
        out.push(
            entries
                .first()
                .and_then(|e| EntryId::parse(&e.id))
                .unwrap_or_default(),
        );
    }
    Ok(out)
}

/// Reads every channel of one node with XRANGE in pages and records `Final` events.
async fn read_final(
    node: &str,
    addr: SocketAddr,
    channels: usize,
    recorder: &Recorder,
) -> std::io::Result<u64> {
    let mut conn = admin(addr).await?;
    let mut total = 0;
    for c in 0..channels {
        let channel = format!("ch{c}");
        let mut from = "-".to_string();
        loop {
            let args = [
                "XRANGE".to_string(),
                channel.clone(),
                from.clone(),
                "+".into(),
                "COUNT".into(),
                FINAL_PAGE.to_string(),
            ];
            let entries = parse_entries(&call(&mut conn, &args).await?)?;
            let n = entries.len();
            let mut last = None;
            for e in entries {
                let (msg, intact) = match e.payload.as_deref().map(payload::decode) {
                    Some(Decoded::Intact(m)) => (Some(m), true),
                    Some(Decoded::Corrupt(m)) => (Some(m), false),
                    _ => (None, false),
                };
                last = EntryId::parse(&e.id);
                recorder
                    .record(Event::Final {
                        node: node.to_string(),
                        channel: channel.clone(),
                        id: e.id,
                        msg,
                        intact,
                    })
                    .await;
                total += 1;
            }
            match last {
                Some(id) if n == FINAL_PAGE => from = id.next().to_string(),
                _ => break,
            }
        }
    }
    Ok(total)
}

/// Kills every connection named `rb-sub-*` on one server; returns how many.
pub async fn kill_subscribers(addr: SocketAddr) -> std::io::Result<usize> {
    let mut conn = admin(addr).await?;
    let list = call(&mut conn, &["CLIENT".into(), "LIST".into()]).await?;
    let text = list.as_str().unwrap_or("").to_string();
    let mut killed = 0;
    for line in text.lines() {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        if field("name").is_some_and(|n| n.starts_with(CLIENT_NAME_PREFIX)) {
            if let Some(id) = field("id") {
                let args = ["CLIENT", "KILL", "ID", id].map(String::from);
                if let Value::Int(n) = call(&mut conn, &args).await? {
                    killed += n as usize;
                }
            }
        }
    }
    Ok(killed)
}
