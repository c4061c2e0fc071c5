//! Queue consumers (queue mode): `queue.groups` consumer groups (`g0`, `g1`, ...), each
//! reading every channel, `queue.consumers` consumers per group.
//!
//! A consumer loops: every `claim_idle / 2` it takes over, with `XAUTOCLAIM`, what any
//! consumer of its group left pending longer than `claim_idle` (what a crashed consumer
//! held); otherwise `XREADGROUP GROUP g c COUNT n BLOCK .. STREAMS ch.. > ..` for new
//! entries. It "processes" what it took at once and acknowledges what one call took with
//! one `XACK`. Every call is recorded (`Take`, `Settle`) with its invoke and reply times,
//! so the checks can tell a justified redelivery from a double delivery.
//!
//! XREADGROUP and XAUTOCLAIM change the group, so consumers talk where writes go: on the
//! bus any node (followers forward), on Redis the primary (the one Sentinel names). A call
//! without a reply ends the session (its entries, if any were handed out, stay pending and
//! are claimed later by someone); the next session goes where the client policy says.
//!
//! The `consumer-crash` fault ([`QueueControl::crash`]) makes a consumer take one more
//! batch and drop it unacknowledged, as a process dying mid-work would; it stays down
//! until the fault heals and then comes back under a new name (`c1.2`: consumer 1, second
//! life), so what it held is reachable only by a claim.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::resp::{parse_entries, parse_xread, RespConn, StreamEntry, Value};
use crate::history::{Event, TakenEntry};
use crate::payload::{self, Decoded};
use crate::record::{Clock, Recorder};
use crate::scenario::Scenario;
use crate::target::check_client_addr;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// XREADGROUP's block time: short, so claims and crashes are not held up.
const BLOCK: Duration = Duration::from_millis(200);

/// The client name prefix of consumer connections.
pub const CLIENT_NAME_PREFIX: &str = "rb-con-";

/// The name of group `g`.
pub fn group_name(g: usize) -> String {
    format!("g{g}")
}

/// Shared between the consumers, the nemesis (crashes) and the drain.
#[derive(Debug)]
pub struct QueueControl {
    /// `[group * consumers + index]`: crashed and not yet back.
    down: Vec<AtomicBool>,
    /// `[group * consumers + index]`: a crash the consumer has not carried out yet (it
    /// crashes at its next step even if the fault healed meanwhile).
    crash_due: Vec<AtomicBool>,
    /// Crashes applied so far.
    pub crashes: AtomicU64,
    /// Entries acknowledged (XACK removed them), all consumers.
    pub consumed: AtomicU64,
    /// Entries taken by any call, all consumers.
    pub taken: AtomicU64,
    /// Of `taken`: by XAUTOCLAIM.
    pub redelivered: AtomicU64,
    consumers: usize,
}

impl QueueControl {
    pub fn new(groups: usize, consumers: usize) -> Arc<QueueControl> {
        Arc::new(QueueControl {
            down: (0..groups * consumers)
                .map(|_| AtomicBool::new(false))
                .collect(),
            crash_due: (0..groups * consumers)
                .map(|_| AtomicBool::new(false))
                .collect(),
            crashes: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            consumers,
        })
    }

    /// Consumers, as (slot, `g0/c1`), that are up now.
    pub fn up(&self) -> Vec<(usize, String)> {
        (0..self.down.len())
            .filter(|&i| !self.down[i].load(Ordering::Relaxed))
            .map(|i| (i, self.label(i)))
            .collect()
    }

    pub fn label(&self, slot: usize) -> String {
        format!(
            "{}/c{}",
            group_name(slot / self.consumers),
            slot % self.consumers
        )
    }

    /// Crashes consumer `slot`: it drops what it takes next and stays down until
    /// [`QueueControl::revive`].
    pub fn crash(&self, slot: usize) {
        self.down[slot].store(true, Ordering::Relaxed);
        self.crash_due[slot].store(true, Ordering::Relaxed);
        self.crashes.fetch_add(1, Ordering::Relaxed);
    }

    /// The named inverse of [`QueueControl::crash`]: the consumer comes back (new name).
    pub fn revive(&self, slot: usize) {
        self.down[slot].store(false, Ordering::Relaxed);
    }

    fn is_down(&self, slot: usize) -> bool {
        self.down[slot].load(Ordering::Relaxed)
    }

    /// Whether consumer `slot` must crash now (once per crash).
    fn take_crash(&self, slot: usize) -> bool {
        self.crash_due[slot].swap(false, Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub group: usize,
    pub index: usize,
    /// Where it may connect (the servers that take writes), in failover order.
    pub endpoints: Vec<(String, SocketAddr)>,
    /// Every server, to name the primary Sentinel reports.
    pub servers: Vec<(String, SocketAddr)>,
    /// Redis Sentinels (empty: none).
    pub sentinels: Vec<SocketAddr>,
    pub scenario: Arc<Scenario>,
}

impl ConsumerSpec {
    fn slot(&self) -> usize {
        self.group * self.scenario.queue.consumers + self.index
    }
}

/// Why a session ended: the connection failed, or the consumer crashed.
enum End {
    Failed(String),
    Crashed,
    /// The run is over; the session finished the call it was in first.
    Stopped,
}

pub struct Consumer {
    spec: ConsumerSpec,
    control: Arc<QueueControl>,
    channels: Vec<String>,
    group: String,
}

impl Consumer {
    pub fn new(spec: ConsumerSpec, control: Arc<QueueControl>) -> Consumer {
        let channels = (0..spec.scenario.channels)
            .map(|c| format!("ch{c}"))
            .collect();
        let group = group_name(spec.group);
        Consumer {
            spec,
            control,
            channels,
            group,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, clock: Clock, recorder: Recorder, mut stop: watch::Receiver<bool>) {
        let slot = self.spec.slot();
        let mut life = 1u32;
        let mut ended = 0usize;
        let mut attempt = 0u32;
        while !*stop.borrow() {
            let name = if life == 1 {
                format!("c{}", self.spec.index)
            } else {
                format!("c{}.{life}", self.spec.index)
            };
            // Not raced against `stop`: a cancelled XACK would go unrecorded although the
            // node applied it, and the drain stops consumers as soon as a node shows every
            // group settled, which is exactly then. The session checks `stop` between calls
            // (a read blocks at most `BLOCK`).
            let end = self.session(&name, ended, &clock, &recorder, &stop).await;
            match end {
                End::Stopped => break,
                End::Crashed => {
                    // Down until the fault heals, then a new life under a new name.
                    while self.control.is_down(slot) && !*stop.borrow() {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                            _ = stop.wait_for(|s| *s) => {}
                        }
                    }
                    life += 1;
                    attempt = 0;
                }
                End::Failed(reason) => {
                    tracing::debug!(group = %self.group, consumer = %name, %reason, "consumer session ended");
                    ended += 1;
                    attempt += 1;
                    let delay = super::reconnect_delay(attempt);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        }
    }

    async fn connect(&self, ended: usize) -> Result<(String, RespConn), String> {
        let spec = &self.spec;
        let policy = spec.scenario.client.policy;
        let (node, addr) = super::write_endpoint(
            &spec.endpoints,
            &spec.servers,
            &spec.sentinels,
            (spec.slot(), policy, ended),
            ended,
        )
        .await?;
        check_client_addr(addr).map_err(|e| e.to_string())?;
        let conn = RespConn::connect(addr, CONNECT_TIMEOUT)
            .await
            .map_err(|e| format!("connect {node}: {e}"))?;
        Ok((node, conn))
    }

    async fn session(
        &self,
        name: &str,
        ended: usize,
        clock: &Clock,
        recorder: &Recorder,
        stop: &watch::Receiver<bool>,
    ) -> End {
        let (node, mut conn) = match self.connect(ended).await {
            Ok(c) => c,
            Err(e) => return End::Failed(e),
        };
        let client_name = format!("{CLIENT_NAME_PREFIX}{}-{name}", self.group);
        if let Err(e) = conn.call(&["CLIENT", "SETNAME", &client_name]).await {
            return End::Failed(format!("client setname: {e}"));
        }
        let q = &self.spec.scenario.queue;
        let claim_every = q.claim_idle / 2;
        let mut last_claim = Instant::now();
        let session = Session {
            consumer: self,
            name,
            node: &node,
            clock,
            recorder,
        };
        let slot = self.spec.slot();
        loop {
            if *stop.borrow() {
                return End::Stopped;
            }
            if self.control.take_crash(slot) {
                session.crash(&mut conn).await;
                return End::Crashed;
            }
            if last_claim.elapsed() >= claim_every {
                last_claim = Instant::now();
                for channel in &self.channels {
                    if let Err(e) = session.claim(&mut conn, channel).await {
                        return End::Failed(e);
                    }
                    if self.control.take_crash(slot) {
                        session.crash(&mut conn).await;
                        return End::Crashed;
                    }
                }
            }
            match session.read_new(&mut conn).await {
                Ok(taken) => {
                    for (channel, entries) in taken {
                        if let Err(e) = session.settle(&mut conn, &channel, &entries).await {
                            return End::Failed(e);
                        }
                    }
                }
                Err(e) => return End::Failed(e),
            }
        }
    }
}

/// One connection's life: the calls it makes and records.
struct Session<'a> {
    consumer: &'a Consumer,
    name: &'a str,
    node: &'a str,
    clock: &'a Clock,
    recorder: &'a Recorder,
}

impl Session<'_> {
    fn timeout(&self) -> Duration {
        self.consumer.spec.scenario.request_timeout
    }

    async fn call(&self, conn: &mut RespConn, args: &[String]) -> Result<Value, String> {
        match tokio::time::timeout(self.timeout(), conn.call(args)).await {
            Ok(Ok(Value::Error(e))) => Err(format!("{}: {e}", args[0])),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{}: {e}", args[0])),
            Err(_) => Err(format!("{} timed out", args[0])),
        }
    }

    async fn record_take(
        &self,
        invoke_us: u64,
        channel: &str,
        claimed: bool,
        entries: &[StreamEntry],
    ) -> Vec<TakenEntry> {
        let taken: Vec<TakenEntry> = entries
            .iter()
            .map(|e| TakenEntry {
                id: e.id.clone(),
                msg: match e.payload.as_deref().map(payload::decode) {
                    Some(Decoded::Intact(m)) | Some(Decoded::Corrupt(m)) => Some(m),
                    _ => None,
                },
            })
            .collect();
        let control = &self.consumer.control;
        control
            .taken
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        if claimed {
            control
                .redelivered
                .fetch_add(taken.len() as u64, Ordering::Relaxed);
        }
        self.recorder
            .record(Event::Take {
                invoke_us,
                t_us: self.clock.now_us(),
                group: self.consumer.group.clone(),
                consumer: self.name.to_string(),
                node: self.node.to_string(),
                channel: channel.to_string(),
                claimed,
                min_idle_us: if claimed {
                    self.consumer.spec.scenario.queue.claim_idle.as_micros() as u64
                } else {
                    0
                },
                entries: taken.clone(),
            })
            .await;
        taken
    }

    /// `XREADGROUP ... >` over every channel; what it took, per channel.
    async fn read_new(
        &self,
        conn: &mut RespConn,
    ) -> Result<Vec<(String, Vec<TakenEntry>)>, String> {
        let c = self.consumer;
        let mut args: Vec<String> = [
            "XREADGROUP",
            "GROUP",
            &c.group,
            self.name,
            "COUNT",
            &c.spec.scenario.queue.batch.to_string(),
            "BLOCK",
            &BLOCK.as_millis().to_string(),
            "STREAMS",
        ]
        .map(String::from)
        .to_vec();
        args.extend(c.channels.iter().cloned());
        args.extend(c.channels.iter().map(|_| ">".to_string()));
        let invoke_us = self.clock.now_us();
        let reply = match tokio::time::timeout(self.timeout() + BLOCK, conn.call(&args)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(format!("XREADGROUP: {e}")),
            Err(_) => return Err("XREADGROUP timed out".into()),
        };
        let streams = parse_xread(&reply).map_err(|e| format!("XREADGROUP: {e}"))?;
        let mut out = Vec::new();
        for (channel, entries) in streams {
            if entries.is_empty() {
                continue;
            }
            let taken = self.record_take(invoke_us, &channel, false, &entries).await;
            out.push((channel, taken));
        }
        Ok(out)
    }

    /// `XAUTOCLAIM` of one channel, from `0-0` until the cursor comes back to `0-0`;
    /// settles what it claimed.
    async fn claim(&self, conn: &mut RespConn, channel: &str) -> Result<(), String> {
        let c = self.consumer;
        let q = &c.spec.scenario.queue;
        let mut cursor = "0-0".to_string();
        // Bounded: a stream churning faster than we claim must not hold the consumer.
        for _ in 0..16 {
            let args = [
                "XAUTOCLAIM".to_string(),
                channel.to_string(),
                c.group.clone(),
                self.name.to_string(),
                q.claim_idle.as_millis().to_string(),
                cursor.clone(),
                "COUNT".into(),
                q.batch.to_string(),
            ];
            let invoke_us = self.clock.now_us();
            let reply = self.call(conn, &args).await?;
            let parts = reply
                .as_array()
                .filter(|p| p.len() >= 2)
                .ok_or_else(|| format!("unexpected XAUTOCLAIM reply {reply:?}"))?;
            let next = parts[0]
                .as_str()
                .ok_or_else(|| format!("XAUTOCLAIM cursor {:?}", parts[0]))?
                .to_string();
            let entries = parse_entries(&parts[1]).map_err(|e| format!("XAUTOCLAIM: {e}"))?;
            if !entries.is_empty() {
                let taken = self.record_take(invoke_us, channel, true, &entries).await;
                self.settle(conn, channel, &taken).await?;
            }
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        Ok(())
    }

    /// One `XACK channel group id...` for the entries of one call, as a queue worker
    /// would; one `Settle` per entry. The reply counts the entries it removed: all or none
    /// tell each entry's fate, a count in between does not (then each is unknown).
    async fn settle(
        &self,
        conn: &mut RespConn,
        channel: &str,
        entries: &[TakenEntry],
    ) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let c = self.consumer;
        let mut args = vec!["XACK".to_string(), channel.to_string(), c.group.clone()];
        args.extend(entries.iter().map(|e| e.id.clone()));
        let invoke_us = self.clock.now_us();
        let reply = self.call(conn, &args).await;
        let t_us = self.clock.now_us();
        let removed = match &reply {
            Ok(Value::Int(n)) if *n as usize == entries.len() => Some(true),
            Ok(Value::Int(0)) => Some(false),
            _ => None,
        };
        if let Ok(Value::Int(n)) = &reply {
            c.control.consumed.fetch_add(*n as u64, Ordering::Relaxed);
        }
        for e in entries {
            self.recorder
                .record(Event::Settle {
                    invoke_us,
                    t_us,
                    group: c.group.clone(),
                    consumer: self.name.to_string(),
                    node: self.node.to_string(),
                    channel: channel.to_string(),
                    id: e.id.clone(),
                    msg: e.msg,
                    removed,
                })
                .await;
        }
        match reply {
            Ok(Value::Int(_)) => Ok(()),
            Ok(other) => Err(format!("unexpected XACK reply {other:?}")),
            Err(e) => Err(e),
        }
    }

    /// The crash: take one more batch and drop it unacknowledged, then close.
    async fn crash(&self, conn: &mut RespConn) {
        let abandoned = match self.read_new(conn).await {
            Ok(taken) => taken.into_iter().flat_map(|(_, e)| e).collect(),
            Err(_) => Vec::new(),
        };
        tracing::info!(group = %self.consumer.group, consumer = self.name, abandoned = abandoned.len(), "consumer crashed");
        self.recorder
            .record(Event::ConsumerCrash {
                t_us: self.clock.now_us(),
                group: self.consumer.group.clone(),
                consumer: self.name.to_string(),
                abandoned,
            })
            .await;
    }
}
