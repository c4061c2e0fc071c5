//! Subscribers: one dedicated connection each, named `rb-sub-<n>`, reading every channel.
//!
//! - Stream mode: `XREAD COUNT 1000 BLOCK 1000 STREAMS ch0.. id0..`, from `0-0`, resuming
//!   from the last id received per channel after a reconnect, on whichever node it
//!   reconnects to, so nothing may be missed.
//! - Pub/sub mode: `SUBSCRIBE ch0..`, resubscribing after a reconnect; what is published
//!   while disconnected is an at-most-once gap.
//!
//! Where the next session goes follows the client policy, as for publishers
//! ([`crate::scenario::ClientPolicy`]). `sticky`: the node it started on (its home), always.
//! `failover` (the default): when a session ends — connect failure, broken connection, an
//! error reply, no XREAD reply within the block time plus `client.stall` (stream mode), or
//! no message and no pong within `client.stall` of a PING (pub/sub mode) — the next
//! session goes to the next server round-robin (bus: another node; Redis: another server,
//! replicas included, since all serve XREAD and SUBSCRIBE). Either way it reconnects
//! after a backoff doubling from 50 ms to at most 1 s. Pub/sub silence alone says nothing
//! about a stall, so a quiet pub/sub connection is PINGed, and one that stays silent after
//! the PING counts as stalled.
//!
//! Connection changes are recorded as `SubscriberUp` / `SubscriberDown` events, and every
//! event names the node the subscriber is connected to at that moment.

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
use crate::scenario::{ClientOptions, ClientPolicy};
use crate::target::check_client_addr;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The XREAD block time.
const BLOCK: Duration = Duration::from_secs(1);
/// Sticky: longest a reply may take beyond the XREAD block time before the connection is
/// considered dead (failover uses `client.stall` instead).
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
    /// Sessions that came up on another node than the one before.
    pub moves: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    pub id: u32,
    /// Every server it may connect to.
    pub endpoints: Vec<(String, SocketAddr)>,
    /// Index into `endpoints` of the node it starts on.
    pub home: usize,
    pub mode: Mode,
    pub channels: usize,
    pub client: ClientOptions,
}

impl SubscriberSpec {
    /// The endpoint of the next session after `ended` sessions ended.
    fn endpoint(&self, ended: usize) -> &(String, SocketAddr) {
        super::next_endpoint(&self.endpoints, self.home, self.client.policy, ended)
    }

    /// How long an XREAD reply may take before the session is given up.
    fn read_timeout(&self) -> Duration {
        BLOCK
            + match self.client.policy {
                ClientPolicy::Sticky => READ_GRACE,
                ClientPolicy::Failover => self.client.stall,
            }
    }
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
            moves: AtomicU64::new(0),
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
        // Sessions (or connect attempts) that ended so far.
        let mut ended = 0usize;
        // The node of the last session that came up.
        let mut last_up: Option<String> = None;
        while !*stop.borrow() {
            let (node, addr) = spec.endpoint(ended);
            let reason = tokio::select! {
                r = self.session(node, *addr, &channels, &clock, &recorder, &mut last_up) => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            };
            if self.progress.connected.swap(false, Ordering::Relaxed) {
                attempt = 0;
                recorder
                    .record(Event::SubscriberDown {
                        t_us: clock.now_us(),
                        subscriber: spec.id,
                        node: node.clone(),
                        reason: reason.clone().unwrap_or_else(|| RUN_FINISHED.into()),
                    })
                    .await;
            }
            let Some(reason) = reason else { break };
            tracing::debug!(subscriber = spec.id, %node, %reason, "subscriber disconnected");
            ended += 1;
            attempt += 1;
            let delay = super::reconnect_delay(attempt);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }

    /// One connection's life to `node`; returns why it ended.
    async fn session(
        &self,
        node: &str,
        addr: SocketAddr,
        channels: &[String],
        clock: &Clock,
        recorder: &Recorder,
        last_up: &mut Option<String>,
    ) -> String {
        let spec = &self.spec;
        if let Err(e) = check_client_addr(addr) {
            return e.to_string();
        }
        let mut conn = match RespConn::connect(addr, CONNECT_TIMEOUT).await {
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
        if last_up.as_deref().is_some_and(|n| n != node) {
            self.progress.moves.fetch_add(1, Ordering::Relaxed);
            tracing::info!(subscriber = spec.id, from = last_up.as_deref().unwrap_or(""), to = %node, "subscriber moved");
        }
        *last_up = Some(node.to_string());
        recorder
            .record(Event::SubscriberUp {
                t_us: clock.now_us(),
                subscriber: spec.id,
                node: node.to_string(),
            })
            .await;
        match spec.mode {
            // Queue mode runs consumers, not subscribers; read as a stream subscriber would.
            Mode::Stream | Mode::Queue => {
                self.read_streams(&mut conn, node, channels, clock, recorder)
                    .await
            }
            Mode::Pubsub => self.read_messages(&mut conn, node, clock, recorder).await,
        }
    }

    async fn deliver(
        &self,
        node: &str,
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
                node: node.to_string(),
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
        node: &str,
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
            let block = BLOCK.as_millis().to_string();
            let mut args: Vec<&str> = vec!["XREAD", "COUNT", "1000", "BLOCK", &block, "STREAMS"];
            args.extend(channels.iter().map(String::as_str));
            args.extend(ids.iter().map(String::as_str));
            let timeout = self.spec.read_timeout();
            let reply = tokio::time::timeout(timeout, conn.call(&args)).await;
            let value = match reply {
                Err(_) => {
                    return format!("no XREAD reply within {}ms", timeout.as_millis());
                }
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
                        node,
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

    /// Pub/sub loop; returns the reason it ended. Under `failover`, a connection quiet for
    /// `client.stall` gets a PING; no message and no pong within another `client.stall`
    /// ends the session (a paused or cut-off server is silent, not idle).
    async fn read_messages(
        &self,
        conn: &mut RespConn,
        node: &str,
        clock: &Clock,
        recorder: &Recorder,
    ) -> String {
        let (rx, tx) = conn.halves();
        let stall = match self.spec.client.policy {
            ClientPolicy::Sticky => None,
            ClientPolicy::Failover => Some(self.spec.client.stall),
        };
        // When the last PING went out unanswered (nothing heard since).
        let mut ping_sent: Option<tokio::time::Instant> = None;
        loop {
            let value = {
                let read = rx.read();
                tokio::pin!(read);
                loop {
                    let Some(stall) = stall else {
                        break read.await;
                    };
                    let deadline = ping_sent.unwrap_or_else(tokio::time::Instant::now) + stall;
                    tokio::select! {
                        v = &mut read => break v,
                        _ = tokio::time::sleep_until(deadline) => {
                            if ping_sent.is_some() {
                                return format!(
                                    "nothing heard within {}ms of a PING",
                                    stall.as_millis()
                                );
                            }
                            if let Err(e) = tx.send(&["PING"]).await {
                                return format!("PING: {e}");
                            }
                            ping_sent = Some(tokio::time::Instant::now());
                        }
                    }
                }
            };
            ping_sent = None;
            let value = match value {
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
                self.deliver(node, clock, recorder, &channel, None, parts[2].as_bytes())
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: ClientPolicy) -> SubscriberSpec {
        let addr: SocketAddr = "198.18.0.1:6379".parse().unwrap();
        SubscriberSpec {
            id: 0,
            endpoints: ["n1", "n2", "n3"]
                .iter()
                .map(|n| (n.to_string(), addr))
                .collect(),
            home: 1,
            mode: Mode::Stream,
            channels: 1,
            client: ClientOptions {
                policy,
                stall: Duration::from_millis(500),
            },
        }
    }

    /// A fake pub/sub server: confirms CLIENT SETNAME and SUBSCRIBE, answers PING only if
    /// `pongs`; a silent one is what a paused or cut-off server looks like.
    async fn fake_pubsub_server(pongs: bool) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    let mut answered = 0;
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        // Commands by keyword, in arrival order; ours are one per write.
                        let text = String::from_utf8_lossy(&seen).to_ascii_uppercase();
                        let words: Vec<&str> = text
                            .split("\r\n")
                            .filter(|w| ["SETNAME", "SUBSCRIBE", "PING"].contains(w))
                            .collect();
                        for w in &words[answered..] {
                            let reply: &[u8] = match *w {
                                "SETNAME" => b"+OK\r\n",
                                "SUBSCRIBE" => b"*3\r\n$9\r\nsubscribe\r\n$3\r\nch0\r\n:1\r\n",
                                _ if pongs => b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
                                _ => b"",
                            };
                            if sock.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                        answered = words.len();
                    }
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn failover_pubsub_subscriber_leaves_a_silent_server_and_stays_on_one_that_pongs() {
        let silent = fake_pubsub_server(false).await;
        let ponging = fake_pubsub_server(true).await;
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        clock.start_at(std::time::Instant::now());
        let (recorder, handle) = crate::record::start(crate::record::RecorderConfig {
            dir: dir.path().to_path_buf(),
            clock: clock.clone(),
            warmup_s: 0.0,
            duration_s: 2.0,
            publishers: 1,
            peak_rate_per_publisher: 10.0,
        })
        .unwrap();
        let run = |id, policy| {
            let sub = Subscriber::new(SubscriberSpec {
                id,
                endpoints: vec![("n1".into(), silent), ("n2".into(), ponging)],
                home: 0,
                mode: Mode::Pubsub,
                client: ClientOptions {
                    policy,
                    stall: Duration::from_millis(150),
                },
                ..spec(policy)
            });
            let progress = sub.progress();
            let (stop_tx, stop_rx) = watch::channel(false);
            let task = tokio::spawn(sub.run(clock.clone(), recorder.clone(), stop_rx));
            (progress, stop_tx, task)
        };
        let (failover, failover_stop, failover_task) = run(0, ClientPolicy::Failover);
        let (sticky, sticky_stop, sticky_task) = run(1, ClientPolicy::Sticky);
        // Long enough for many PING rounds on the server that answers them.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        failover_stop.send(true).unwrap();
        sticky_stop.send(true).unwrap();
        failover_task.await.unwrap();
        sticky_task.await.unwrap();
        drop(recorder);
        handle.finish().await.unwrap();
        assert_eq!(
            failover.moves.load(Ordering::Relaxed),
            1,
            "failover moved once"
        );
        assert_eq!(sticky.moves.load(Ordering::Relaxed), 0, "sticky stays");
        let history = dir.path().join(raftbus_reports::model::HISTORY_FILE);
        let downs: Vec<(u32, String, String)> = crate::record::read_history(&history)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Event::SubscriberDown {
                    subscriber,
                    node,
                    reason,
                    ..
                } => Some((subscriber, node, reason)),
                _ => None,
            })
            .collect();
        // Failover: down on n1 for the unanswered PING, then only at the end, on n2.
        // Sticky: only at the end, still on n1.
        assert_eq!(downs.len(), 3, "{downs:?}");
        assert!(
            downs.contains(&(
                0,
                "n1".into(),
                "nothing heard within 150ms of a PING".into()
            )),
            "{downs:?}"
        );
        assert!(
            downs.contains(&(0, "n2".into(), RUN_FINISHED.into())),
            "{downs:?}"
        );
        assert!(
            downs.contains(&(1, "n1".into(), RUN_FINISHED.into())),
            "{downs:?}"
        );
    }

    #[test]
    fn failover_goes_round_robin_from_home_and_sticky_stays() {
        let s = spec(ClientPolicy::Failover);
        let nodes: Vec<&str> = (0..4).map(|e| s.endpoint(e).0.as_str()).collect();
        assert_eq!(nodes, ["n2", "n3", "n1", "n2"]);
        assert_eq!(s.read_timeout(), BLOCK + Duration::from_millis(500));
        let s = spec(ClientPolicy::Sticky);
        assert!((0..4).all(|e| s.endpoint(e).0 == "n2"));
        assert_eq!(s.read_timeout(), BLOCK + READ_GRACE);
    }
}
