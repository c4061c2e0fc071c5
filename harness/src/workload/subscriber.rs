//! Subscribers: one dedicated connection each, named `rb-sub-<n>`, reading every channel.
//!
//! - Stream mode: `XREAD COUNT 1000 BLOCK 1000 STREAMS ch0.. id0..`, from `0-0`, resuming
//!   from the last id received after a reconnect, so nothing may be missed.
//! - Pub/sub mode: `SUBSCRIBE ch0..`, resubscribing after a reconnect; what is published
//!   while disconnected is an at-most-once gap.
//!
//! Connection changes are recorded as `SubscriberUp` / `SubscriberDown` events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftbus_reports::model::Mode;
use tokio::sync::watch;

use super::resp::{parse_xread, EntryId, RespConn, Value};
use crate::history::{Event, RUN_FINISHED};
use crate::payload::{self, Decoded};
use crate::record::{Clock, Recorder};
use crate::target::check_client_addr;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a reply may take beyond the XREAD block time before the connection is
/// considered dead.
const READ_GRACE: Duration = Duration::from_secs(10);

/// The client name prefix of subscriber connections (used to find and kill them).
pub const CLIENT_NAME_PREFIX: &str = "rb-sub-";

/// What a subscriber has seen so far, for drain decisions and progress.
#[derive(Debug)]
pub struct SubscriberProgress {
    /// Last stream id received per channel (stream mode).
    pub last_ids: Mutex<Vec<EntryId>>,
    pub delivered: AtomicU64,
    pub connected: AtomicBool,
}

#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    pub id: u32,
    pub node: String,
    pub addr: SocketAddr,
    pub mode: Mode,
    pub channels: usize,
}

pub struct Subscriber {
    spec: SubscriberSpec,
    progress: Arc<SubscriberProgress>,
}

impl Subscriber {
    pub fn new(spec: SubscriberSpec) -> Subscriber {
        let progress = Arc::new(SubscriberProgress {
            last_ids: Mutex::new(vec![EntryId::default(); spec.channels]),
            delivered: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        });
        Subscriber { spec, progress }
    }

    pub fn progress(&self) -> Arc<SubscriberProgress> {
        self.progress.clone()
    }

    /// Runs until `stop` turns true, reconnecting with backoff.
    pub async fn run(self, clock: Clock, recorder: Recorder, mut stop: watch::Receiver<bool>) {
        let spec = &self.spec;
        let channels: Vec<String> = (0..spec.channels).map(|c| format!("ch{c}")).collect();
        let mut attempt = 0u32;
        while !*stop.borrow() {
            let reason = tokio::select! {
                r = self.session(&channels, &clock, &recorder) => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            };
            if self.progress.connected.swap(false, Ordering::Relaxed) {
                attempt = 0;
                recorder
                    .record(Event::SubscriberDown {
                        t_us: clock.now_us(),
                        subscriber: spec.id,
                        node: spec.node.clone(),
                        reason: reason.clone().unwrap_or_else(|| RUN_FINISHED.into()),
                    })
                    .await;
            }
            let Some(reason) = reason else { break };
            tracing::debug!(subscriber = spec.id, node = %spec.node, %reason, "subscriber disconnected");
            attempt += 1;
            let delay = BACKOFF_MIN
                .saturating_mul(1 << attempt.min(5))
                .min(BACKOFF_MAX);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }

    /// One connection's life; returns why it ended.
    async fn session(&self, channels: &[String], clock: &Clock, recorder: &Recorder) -> String {
        let spec = &self.spec;
        if let Err(e) = check_client_addr(spec.addr) {
            return e.to_string();
        }
        let mut conn = match RespConn::connect(spec.addr, CONNECT_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => return format!("connect: {e}"),
        };
        let name = format!("{CLIENT_NAME_PREFIX}{}", spec.id);
        match conn.call(&["CLIENT", "SETNAME", &name]).await {
            Ok(Value::Error(e)) => tracing::debug!(%e, "CLIENT SETNAME refused"),
            Ok(_) => {}
            Err(e) => return format!("client setname: {e}"),
        }
        if spec.mode == Mode::Pubsub {
            let mut args = vec!["SUBSCRIBE".to_string()];
            args.extend(channels.iter().cloned());
            if let Err(e) = conn.send(&args).await {
                return format!("subscribe: {e}");
            }
            for _ in channels {
                match conn.read().await {
                    Ok(Value::Array(a))
                        if a.first().and_then(Value::as_str) == Some("subscribe") => {}
                    Ok(other) => return format!("unexpected SUBSCRIBE reply {other:?}"),
                    Err(e) => return format!("subscribe: {e}"),
                }
            }
        }
        self.progress.connected.store(true, Ordering::Relaxed);
        recorder
            .record(Event::SubscriberUp {
                t_us: clock.now_us(),
                subscriber: spec.id,
                node: spec.node.clone(),
            })
            .await;
        match spec.mode {
            Mode::Stream => {
                self.read_streams(&mut conn, channels, clock, recorder)
                    .await
            }
            Mode::Pubsub => self.read_messages(&mut conn, clock, recorder).await,
        }
    }

    async fn deliver(
        &self,
        clock: &Clock,
        recorder: &Recorder,
        channel: &str,
        id: Option<String>,
        payload: Option<&[u8]>,
    ) {
        let (msg, intact) = match payload.map(payload::decode) {
            Some(Decoded::Intact(m)) => (Some(m), true),
            Some(Decoded::Corrupt(m)) => (Some(m), false),
            Some(Decoded::Foreign) | None => (None, false),
        };
        self.progress.delivered.fetch_add(1, Ordering::Relaxed);
        recorder
            .record(Event::Deliver {
                t_us: clock.now_us(),
                subscriber: self.spec.id,
                node: self.spec.node.clone(),
                channel: channel.to_string(),
                msg,
                id,
                intact,
            })
            .await;
    }

    /// XREAD loop; returns the reason it ended.
    async fn read_streams(
        &self,
        conn: &mut RespConn,
        channels: &[String],
        clock: &Clock,
        recorder: &Recorder,
    ) -> String {
        loop {
            let ids: Vec<String> = self
                .progress
                .last_ids
                .lock()
                .expect("progress lock")
                .iter()
                .map(|i| i.to_string())
                .collect();
            let mut args: Vec<&str> = vec!["XREAD", "COUNT", "1000", "BLOCK", "1000", "STREAMS"];
            args.extend(channels.iter().map(String::as_str));
            args.extend(ids.iter().map(String::as_str));
            let reply =
                tokio::time::timeout(Duration::from_secs(1) + READ_GRACE, conn.call(&args)).await;
            let value = match reply {
                Err(_) => return "XREAD reply timed out".into(),
                Ok(Err(e)) => return format!("XREAD: {e}"),
                Ok(Ok(Value::Error(e))) => return format!("XREAD error: {e}"),
                Ok(Ok(v)) => v,
            };
            let streams = match parse_xread(&value) {
                Ok(s) => s,
                Err(e) => return format!("XREAD reply: {e}"),
            };
            for (channel, entries) in streams {
                let Some(index) = channels.iter().position(|c| *c == channel) else {
                    continue;
                };
                for entry in entries {
                    if let Some(id) = EntryId::parse(&entry.id) {
                        let mut last = self.progress.last_ids.lock().expect("progress lock");
                        if id > last[index] {
                            last[index] = id;
                        }
                    }
                    self.deliver(
                        clock,
                        recorder,
                        &channel,
                        Some(entry.id),
                        entry.payload.as_deref(),
                    )
                    .await;
                }
            }
        }
    }

    /// Pub/sub loop; returns the reason it ended.
    async fn read_messages(
        &self,
        conn: &mut RespConn,
        clock: &Clock,
        recorder: &Recorder,
    ) -> String {
        loop {
            let value = match conn.read().await {
                Ok(v) => v,
                Err(e) => return format!("read: {e}"),
            };
            let Value::Array(parts) = value else {
                if let Value::Error(e) = value {
                    return format!("server error: {e}");
                }
                continue;
            };
            if parts.len() == 3 && parts[0].as_str() == Some("message") {
                let channel = parts[1].as_str().unwrap_or("").to_string();
                self.deliver(clock, recorder, &channel, None, parts[2].as_bytes())
                    .await;
            }
        }
    }
}
