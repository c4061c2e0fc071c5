//! Open-loop publishers.
//!
//! Publisher `i` sends its `k`-th message at intended time `phase_i + sum of 1/rate_i`,
//! whatever happened to earlier ones: each request is its own task on a pipelined
//! (multiplexed) connection, with a timeout. Latency is taken from the intended time, so
//! a slow target cannot hide behind a slow generator (no coordinated omission).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftbus_reports::model::{Mode, Target};
use rand::{Rng, SeedableRng};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::history::{msg_id, Event, Outcome};
use crate::payload;
use crate::record::{Clock, Recorder};
use crate::scenario::Scenario;
use crate::target::connect_with;

/// How long the loop sleeps at most, so connection changes are noticed quickly.
const MAX_IDLE: Duration = Duration::from_millis(20);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything one publisher needs.
#[derive(Clone)]
pub struct PublisherSpec {
    pub index: u32,
    /// Nodes it may talk to, tried round-robin starting at `index`.
    pub endpoints: Vec<(String, SocketAddr)>,
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

/// The outcome of one request's reply.
fn outcome_of(
    target: Target,
    reply: Result<Result<redis::Value, redis::RedisError>, tokio::time::error::Elapsed>,
) -> (Outcome, Option<String>, Option<String>, bool) {
    match reply {
        Err(_) => (Outcome::Info, None, Some("timeout".into()), false),
        Ok(Ok(value)) => {
            let id = match value {
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                redis::Value::SimpleString(s) => Some(s),
                redis::Value::Int(i) => Some(i.to_string()),
                other => Some(format!("{other:?}")),
            };
            (Outcome::Ok, id, None, false)
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            match e.code() {
                Some(code) if !e.is_io_error() => {
                    let outcome = classify_server_error(target, code, e.detail().unwrap_or(""));
                    (outcome, None, Some(text), false)
                }
                // A slow reply says nothing about the pipelined connection's health.
                _ if e.is_timeout() => (Outcome::Info, None, Some(text), false),
                _ => (Outcome::Info, None, Some(text), true),
            }
        }
    }
}

struct Conn {
    node: String,
    generation: u64,
    mc: MultiplexedConnection,
}

/// Connects to endpoint `attempt % n` (publisher `index` starts at its own offset).
async fn connect_to(spec: &PublisherSpec, attempt: usize, generation: u64) -> Result<Conn, String> {
    let n = spec.endpoints.len();
    let (node, addr) = &spec.endpoints[(spec.index as usize + attempt) % n];
    // No reply timeout inside the client: each request has its own (the scenario's).
    connect_with(node, *addr, CONNECT_TIMEOUT, None)
        .await
        .map(|mc| Conn {
            node: node.clone(),
            generation,
            mc,
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
        let mut connecting: Option<tokio::task::JoinHandle<Result<Conn, String>>> = None;
        let mut in_flight = JoinSet::new();
        let mut seq = 0u64;

        while next_t < duration {
            // Connection upkeep: drop a broken connection, start or collect a reconnect.
            if conn
                .as_ref()
                .is_some_and(|c| broken.load(Ordering::Relaxed) == c.generation)
            {
                let c = conn.take().expect("checked");
                tracing::info!(publisher = spec.index, node = %c.node, "publisher connection lost");
                attempt += 1;
            }
            if conn.is_none() {
                match connecting.take() {
                    Some(h) if h.is_finished() => match h.await {
                        Ok(Ok(c)) => {
                            tracing::info!(publisher = spec.index, node = %c.node, "publisher reconnected");
                            conn = Some(c);
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(publisher = spec.index, error = %e, "reconnect failed");
                            attempt += 1;
                        }
                        Err(_) => attempt += 1,
                    },
                    Some(h) => connecting = Some(h),
                    None => {
                        generation += 1;
                        let delay = BACKOFF_MIN
                            .saturating_mul(1 << attempt.min(5))
                            .min(BACKOFF_MAX);
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

            // Send everything that is due.
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(start).as_secs_f64();
            while next_t <= elapsed && next_t < duration {
                seq += 1;
                let msg = msg_id(spec.index, seq);
                let intended_us = (next_t * 1e6) as u64;
                let ch = channels[channel].clone();
                channel = (channel + 1) % channels.len();
                next_t += publishers / s.rate_at(next_t);
                let node = conn.as_ref().map(|c| c.node.clone()).unwrap_or_else(|| {
                    spec.endpoints[(spec.index as usize + attempt) % spec.endpoints.len()]
                        .0
                        .clone()
                });
                recorder
                    .record(Event::Invoke {
                        intended_us,
                        t_us: clock.now_us(),
                        msg,
                        channel: ch.clone(),
                        node,
                    })
                    .await;
                let Some(c) = conn.as_ref() else {
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
                    continue;
                };
                let mut cmd = match s.mode {
                    Mode::Stream => {
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
                let (recorder, clock, broken, target) =
                    (recorder.clone(), clock.clone(), broken.clone(), spec.target);
                in_flight.spawn(async move {
                    let reply =
                        tokio::time::timeout(timeout, cmd.query_async::<redis::Value>(&mut mc))
                            .await;
                    let t_us = clock.now_us();
                    let (outcome, id, error, conn_broken) = outcome_of(target, reply);
                    if conn_broken {
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
            if next_t >= duration {
                break;
            }
            let wake = (start + Duration::from_secs_f64(next_t)).min(Instant::now() + MAX_IDLE);
            tokio::time::sleep_until(wake).await;
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
