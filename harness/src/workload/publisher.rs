//! Open-loop publishers.
//!
//! Publisher `i` sends its `k`-th message at intended time `phase_i + sum of 1/rate_i`,
//! whatever happened to earlier ones: each request is its own task on a pipelined
//! (multiplexed) connection, with a timeout. Latency is taken from the intended time, so
//! a slow target cannot hide behind a slow generator (no coordinated omission).
//!
//! Under faults the client policy decides where the next request goes
//! ([`crate::scenario::ClientPolicy`]). `sticky`: the node it started on, reconnecting to
//! it after a broken connection. `failover` (the default): after a broken connection, a
//! connection whose oldest outstanding request has waited `client.stall` with no reply at
//! all for as long (silent, not merely slow), or (Redis) a
//! not-the-primary error (`READONLY`, `NOREPLICAS`, ...), new requests go elsewhere — the
//! bus: the next node; Redis with Sentinel: the primary the Sentinels name (confirmed with
//! `ROLE`) — after a backoff doubling from 50 ms to at most 1 s; publishes due meanwhile
//! wait for the new connection, up to the request timeout. Requests already sent keep
//! waiting for their own outcome; one without a reply stays indeterminate and is never
//! resent (a new message id is a new message).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftbus_reports::model::{Mode, Target};
use rand::{Rng, SeedableRng};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::history::{msg_id, Event, Outcome};
use crate::payload;
use crate::record::{Clock, Recorder};
use crate::scenario::{ClientPolicy, Scenario};
use crate::target::connect_with;

/// How long the loop sleeps at most, so connection changes are noticed quickly.
const MAX_IDLE: Duration = Duration::from_millis(20);
/// How often publishes held for a reconnect look for the new connection.
const HOLD_POLL: Duration = Duration::from_millis(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything one publisher needs.
#[derive(Clone)]
pub struct PublisherSpec {
    pub index: u32,
    /// Nodes it may talk to, tried round-robin starting at `index`.
    pub endpoints: Vec<(String, SocketAddr)>,
    /// Redis Sentinels to ask for the primary (empty: use `endpoints`).
    pub sentinels: Vec<SocketAddr>,
    /// Every server, to name the one Sentinel points at.
    pub servers: Vec<(String, SocketAddr)>,
    pub scenario: Arc<Scenario>,
    pub target: Target,
    pub seed: u64,
}

/// Whether a server error is definitely pre-commit (`fail`) or may hide a committed
/// write (`info`).
///
/// Redis rejects a write before doing anything, so every Redis error is `fail`. The bus
/// may report an error after the write was proposed (e.g. a forwarding failure), so only
/// errors that are pre-commit by construction are `fail`: unknown command, wrong arity,
/// syntax, and the not-leader / try-again / cluster-down family.
pub fn classify_server_error(target: Target, code: &str, detail: &str) -> Outcome {
    if target == Target::Redis {
        return Outcome::Fail;
    }
    let code = code.to_ascii_uppercase();
    let detail = detail.to_ascii_lowercase();
    let pre_commit_code = matches!(
        code.as_str(),
        "NOTLEADER" | "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "NOAUTH" | "WRONGTYPE" | "NOPERM"
    );
    let pre_commit_err = code == "ERR"
        && [
            "unknown command",
            "wrong number of arguments",
            "syntax error",
            "invalid",
        ]
        .iter()
        .any(|p| detail.starts_with(p));
    if pre_commit_code || pre_commit_err {
        Outcome::Fail
    } else {
        Outcome::Info
    }
}

/// What a reply says about the connection it came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// The server answered.
    Fine,
    /// No reply within the timeout: says nothing of the pipelined connection, but is not
    /// an answer either.
    Silent,
    /// The connection is gone: reconnect.
    Broken,
    /// Redis: this server is not (or cannot act as) the primary now: look for it again.
    NotPrimary,
}

/// The outcome of one request's reply.
fn outcome_of(
    target: Target,
    reply: Result<Result<redis::Value, redis::RedisError>, tokio::time::error::Elapsed>,
) -> (Outcome, Option<String>, Option<String>, Health) {
    match reply {
        Err(_) => (Outcome::Info, None, Some("timeout".into()), Health::Silent),
        Ok(Ok(value)) => (Outcome::Ok, Some(reply_text(value)), None, Health::Fine),
        Ok(Err(e)) => {
            let text = e.to_string();
            match e.code() {
                Some(code) if !e.is_io_error() => {
                    let outcome = classify_server_error(target, code, e.detail().unwrap_or(""));
                    let health = if not_the_primary(target, code) {
                        Health::NotPrimary
                    } else {
                        Health::Fine
                    };
                    (outcome, None, Some(text), health)
                }
                // A slow reply says nothing about the pipelined connection's health.
                _ if e.is_timeout() => (Outcome::Info, None, Some(text), Health::Silent),
                _ => (Outcome::Info, None, Some(text), Health::Broken),
            }
        }
    }
}

fn reply_text(value: redis::Value) -> String {
    match value {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::SimpleString(s) => s,
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// Redis errors that say "this server does not take writes as primary now": a failover
/// client looks for the primary again.
fn not_the_primary(target: Target, code: &str) -> bool {
    target == Target::Redis
        && matches!(
            code.to_ascii_uppercase().as_str(),
            "READONLY" | "NOREPLICAS" | "MASTERDOWN" | "LOADING"
        )
}

/// The outcome of an `XADD` + `WAIT n t` pipeline: acknowledged only when `n` replicas
/// confirmed; fewer leaves it indeterminate (the primary has it, a failover may drop it).
fn wait_outcome(
    want: usize,
    reply: Result<Result<Vec<redis::Value>, redis::RedisError>, tokio::time::error::Elapsed>,
) -> (Outcome, Option<String>, Option<String>, Health) {
    match reply {
        Ok(Ok(values)) => match <[redis::Value; 2]>::try_from(values) {
            Ok([id, redis::Value::Int(n)]) if n >= 0 && n as usize >= want => {
                (Outcome::Ok, Some(reply_text(id)), None, Health::Fine)
            }
            Ok([_, redis::Value::Int(n)]) => (
                Outcome::Info,
                None,
                Some(format!("WAIT confirmed {n} of {want} replicas")),
                Health::Fine,
            ),
            other => (
                Outcome::Info,
                None,
                Some(format!("unexpected XADD+WAIT reply {other:?}")),
                Health::Fine,
            ),
        },
        Ok(Err(e)) => outcome_of(Target::Redis, Ok(Err(e))),
        Err(elapsed) => outcome_of(Target::Redis, Err(elapsed)),
    }
}

struct Conn {
    node: String,
    generation: u64,
    mc: MultiplexedConnection,
    /// Send time of every request still waiting for its reply, by sequence number.
    pending: Arc<Mutex<BTreeMap<u64, Instant>>>,
    /// When the connection last answered anything (or, before any reply, came up).
    heard: Arc<Mutex<Instant>>,
}

impl Conn {
    /// How long the oldest outstanding request has waited.
    fn oldest_wait(&self, now: Instant) -> Duration {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .values()
            .next()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(*t))
    }

    /// Stalled: a request has waited `stall` and nothing at all was answered for as long.
    /// A node that answers slowly (a new leader working off a backlog) is not stalled;
    /// leaving it would send the publisher to a node that may be the dead one.
    fn stalled(&self, now: Instant, stall: Duration) -> bool {
        let heard = *self.heard.lock().unwrap_or_else(|p| p.into_inner());
        is_stalled(
            self.oldest_wait(now),
            now.saturating_duration_since(heard),
            stall,
        )
    }
}

/// The stall rule: a request outstanding for `stall`, and silence for as long.
fn is_stalled(oldest_wait: Duration, silent_for: Duration, stall: Duration) -> bool {
    oldest_wait >= stall && silent_for >= stall
}

/// Where the next connection goes: sticky, the publisher's own node; failover, the node
/// after `attempt` moves (bus) or the primary Sentinel names (Redis with Sentinel).
async fn connect_to(spec: &PublisherSpec, attempt: usize, generation: u64) -> Result<Conn, String> {
    let policy = spec.scenario.client.policy;
    let (node, addr) = super::write_endpoint(
        &spec.endpoints,
        &spec.servers,
        &spec.sentinels,
        (spec.index as usize, policy, attempt),
        spec.index as usize + attempt,
    )
    .await?;
    // No reply timeout inside the client: each request has its own (the scenario's).
    connect_with(&node, addr, CONNECT_TIMEOUT, None)
        .await
        .map(|mc| Conn {
            node,
            generation,
            mc,
            pending: Arc::default(),
            heard: Arc::new(Mutex::new(Instant::now())),
        })
        .map_err(|e| e.to_string())
}

/// A publisher ready to run: connected before the clock starts.
pub struct Publisher {
    spec: PublisherSpec,
    conn: Option<Conn>,
}

impl Publisher {
    pub async fn connect(spec: PublisherSpec) -> Result<Publisher, String> {
        let conn = connect_to(&spec, 0, 1).await?;
        Ok(Publisher {
            spec,
            conn: Some(conn),
        })
    }

    /// Runs the schedule from `start` to the end of the scenario, then waits for every
    /// outstanding request (each bounded by the request timeout).
    pub async fn run(self, clock: Clock, start: Instant, recorder: Recorder) {
        let Publisher { spec, mut conn } = self;
        let s = spec.scenario.clone();
        let publishers = s.publishers as f64;
        let duration = s.duration.as_secs_f64();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            spec.seed ^ (u64::from(spec.index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        // Seeded phase within the first interval, and a seeded first channel.
        let mut next_t = rng.gen::<f64>() * publishers / s.rate_at(0.0);
        let mut channel = rng.gen_range(0..s.channels);
        let channels: Vec<String> = (0..s.channels).map(|c| format!("ch{c}")).collect();
        let timeout = s.request_timeout;
        let broken = Arc::new(AtomicU64::new(0));
        let mut generation = 1u64;
        let mut attempt = 0usize;
        // Consecutive failed connects since the last good one: the backoff exponent.
        let mut failures = 0u32;
        let failover = s.client.policy == ClientPolicy::Failover;
        let wait = (spec.target == Target::Redis && s.redis.wait_replicas > 0)
            .then(|| (s.redis.wait_replicas, s.redis.wait_timeout));
        let mut connecting: Option<tokio::task::JoinHandle<Result<Conn, String>>> = None;
        let mut in_flight = JoinSet::new();
        let mut seq = 0u64;
        // Invoked publishes not sent yet: (seq, msg, channel, intended time in s).
        let mut held: VecDeque<(u64, u64, String, f64)> = VecDeque::new();

        while next_t < duration || !held.is_empty() {
            // Connection upkeep: drop a broken connection, start or collect a reconnect.
            if conn
                .as_ref()
                .is_some_and(|c| broken.load(Ordering::Relaxed) == c.generation)
            {
                let c = conn.take().expect("checked");
                tracing::info!(publisher = spec.index, node = %c.node, "publisher connection lost");
                attempt += 1;
            }
            if failover
                && conn
                    .as_ref()
                    .is_some_and(|c| c.stalled(Instant::now(), s.client.stall))
            {
                let c = conn.take().expect("checked");
                tracing::info!(publisher = spec.index, node = %c.node, "publisher leaves a stalled connection");
                attempt += 1;
            }
            if conn.is_none() {
                match connecting.take() {
                    Some(h) if h.is_finished() => match h.await {
                        Ok(Ok(c)) => {
                            tracing::info!(publisher = spec.index, node = %c.node, "publisher reconnected");
                            conn = Some(c);
                            failures = 0;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(publisher = spec.index, error = %e, "reconnect failed");
                            attempt += 1;
                            failures += 1;
                        }
                        Err(_) => {
                            attempt += 1;
                            failures += 1;
                        }
                    },
                    Some(h) => connecting = Some(h),
                    None => {
                        generation += 1;
                        let delay = super::reconnect_delay(failures);
                        let spec2 = spec.clone();
                        let (a, g) = (attempt, generation);
                        connecting = Some(tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            connect_to(&spec2, a, g).await
                        }));
                    }
                }
            }
            while in_flight.try_join_next().is_some() {}

            // Everything due is invoked now (at its scheduled time) and queued.
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(start).as_secs_f64();
            while next_t <= elapsed && next_t < duration {
                seq += 1;
                let msg = msg_id(spec.index, seq);
                let ch = channels[channel].clone();
                channel = (channel + 1) % channels.len();
                let node = conn.as_ref().map(|c| c.node.clone()).unwrap_or_else(|| {
                    let policy = spec.scenario.client.policy;
                    super::next_endpoint(&spec.endpoints, spec.index as usize, policy, attempt)
                        .0
                        .clone()
                });
                recorder
                    .record(Event::Invoke {
                        intended_us: (next_t * 1e6) as u64,
                        t_us: clock.now_us(),
                        msg,
                        channel: ch.clone(),
                        node,
                    })
                    .await;
                held.push_back((seq, msg, ch, next_t));
                next_t += publishers / s.rate_at(next_t);
            }
            // Without a connection they wait for the reconnect, each until it is a request
            // timeout late (its deadline); then it fails unsent.
            while let Some(&(_, msg, _, intended)) = held.front() {
                if conn.is_some() || elapsed - intended < timeout.as_secs_f64() {
                    break;
                }
                held.pop_front();
                // Never sent: definitely not applied.
                recorder
                    .record(Event::Complete {
                        t_us: clock.now_us(),
                        msg,
                        outcome: Outcome::Fail,
                        id: None,
                        error: Some("not connected".into()),
                    })
                    .await;
            }
            while let Some(c) = conn.as_ref() {
                let Some((seq, msg, ch, intended)) = held.pop_front() else {
                    break;
                };
                // What is left of its deadline (intended time + request timeout).
                let late = Duration::from_secs_f64((elapsed - intended).max(0.0));
                let Some(timeout) = timeout.checked_sub(late).filter(|t| !t.is_zero()) else {
                    recorder
                        .record(Event::Complete {
                            t_us: clock.now_us(),
                            msg,
                            outcome: Outcome::Fail,
                            id: None,
                            error: Some("not connected".into()),
                        })
                        .await;
                    continue;
                };
                let mut cmd = match s.mode {
                    Mode::Stream | Mode::Queue => {
                        let mut c = redis::cmd("XADD");
                        c.arg(&ch).arg("*").arg("m");
                        c
                    }
                    Mode::Pubsub => {
                        let mut c = redis::cmd("PUBLISH");
                        c.arg(&ch);
                        c
                    }
                };
                cmd.arg(payload::encode(msg, s.size));
                let mut mc = c.mc.clone();
                let gen = c.generation;
                let pending = c.pending.clone();
                let heard = c.heard.clone();
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(seq, Instant::now());
                let (recorder, clock, broken, target) =
                    (recorder.clone(), clock.clone(), broken.clone(), spec.target);
                in_flight.spawn(async move {
                    let (outcome, id, error, health) = match wait {
                        None => {
                            let r = tokio::time::timeout(
                                timeout,
                                cmd.query_async::<redis::Value>(&mut mc),
                            )
                            .await;
                            outcome_of(target, r)
                        }
                        Some((want, wait_timeout)) => {
                            let mut pipe = redis::pipe();
                            pipe.add_command(cmd)
                                .cmd("WAIT")
                                .arg(want)
                                .arg(wait_timeout.as_millis() as u64);
                            let r = tokio::time::timeout(
                                timeout,
                                pipe.query_async::<Vec<redis::Value>>(&mut mc),
                            )
                            .await;
                            wait_outcome(want, r)
                        }
                    };
                    pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&seq);
                    if matches!(health, Health::Fine | Health::NotPrimary) {
                        *heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    }
                    let t_us = clock.now_us();
                    if health == Health::Broken || (failover && health == Health::NotPrimary) {
                        broken.store(gen, Ordering::Relaxed);
                    }
                    recorder
                        .record(Event::Complete {
                            t_us,
                            msg,
                            outcome,
                            id,
                            error,
                        })
                        .await;
                });
            }
            let due = start + Duration::from_secs_f64(next_t);
            let now = Instant::now();
            // Publishes held for a reconnect are already due: poll for the connection.
            if !held.is_empty() {
                tokio::time::sleep_until(now + HOLD_POLL).await;
            } else if next_t >= duration {
                break;
            } else if due <= now + MAX_IDLE {
                // The next send time: precisely, or the generator's own lag shows up in
                // every latency (see `pacer`).
                super::pacer::sleep_until(due).await;
            } else {
                tokio::time::sleep_until(now + MAX_IDLE).await;
            }
        }
        if let Some(h) = connecting {
            h.abort();
        }
        while in_flight.join_next().await.is_some() {}
        tracing::debug!(publisher = spec.index, sent = seq, "publisher done");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_stalls_when_silent_not_when_slow() {
        let stall = Duration::from_secs(1);
        let ms = Duration::from_millis;
        // A new leader working off a backlog: old requests, fresh replies.
        assert!(!is_stalled(ms(1500), ms(10), stall));
        // A paused node: old requests and nothing heard.
        assert!(is_stalled(ms(1500), ms(1500), stall));
        assert!(is_stalled(stall, stall, stall));
        // Idle, nothing outstanding.
        assert!(!is_stalled(Duration::ZERO, ms(5000), stall));
    }

    #[test]
    fn only_pre_commit_bus_errors_fail() {
        assert_eq!(
            classify_server_error(Target::Redis, "ERR", "anything"),
            Outcome::Fail
        );
        assert_eq!(
            classify_server_error(Target::Bus, "NOTLEADER", ""),
            Outcome::Fail
        );
        assert_eq!(
            classify_server_error(Target::Bus, "ERR", "unknown command 'XADD'"),
            Outcome::Fail
        );
        assert_eq!(
            classify_server_error(Target::Bus, "ERR", "forwarding to leader failed"),
            Outcome::Info
        );
        assert_eq!(
            classify_server_error(Target::Bus, "TIMEOUT", ""),
            Outcome::Info
        );
    }
}
