//! The read workload: open-loop reads of the streams beside the publishers, for the
//! stale-read check (`check/stale_read.rs`).
//!
//! At `read_rate` per second (seeded schedule) a read goes to a random node (every bus
//! node; for Redis the primary and its replicas), on a random channel, as one of
//! - `XREVRANGE ch + - COUNT 1` — the newest entry;
//! - `XRANGE ch <from> + COUNT 1000` — from the newest id any earlier read returned for the
//!   channel (so replies stay small), which shows where this node's stream ends;
//! - `XLEN ch` — how many entries the node holds.
//!
//! Each read is recorded as one [`Event::Read`] with its send and reply times, the node,
//! and what it returned in compact form (newest id, count), never the entries. Reads run
//! concurrently on pooled connections (one per read in flight, at most [`MAX_IN_FLIGHT`]);
//! a tick that finds them all busy is skipped and counted, so a paused node cannot build
//! an unbounded backlog. A read without a reply after the request timeout is recorded as
//! failed and its connection dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::resp::{parse_entries, EntryId, RespConn, Value};
use crate::history::{Event, ReadOp};
use crate::record::{Clock, Recorder};
use crate::target::check_client_addr;

/// Most reads outstanding at once, all nodes together.
pub const MAX_IN_FLIGHT: usize = 64;
/// Page size of the XRANGE reads.
const XRANGE_COUNT: usize = 1000;

/// What the read workload needs.
#[derive(Debug, Clone)]
pub struct ReaderSpec {
    /// Nodes reads go to, chosen at random per read.
    pub endpoints: Vec<(String, SocketAddr)>,
    pub channels: usize,
    /// Reads per second, all nodes together.
    pub rate: f64,
    pub seed: u64,
    /// A read with no reply after this long failed.
    pub timeout: Duration,
    /// Reads are scheduled from the start until this long after it.
    pub duration: Duration,
}

/// How the read workload went, besides the recorded events.
#[derive(Debug, Clone, Default)]
pub struct ReaderReport {
    pub sent: u64,
    /// Ticks skipped because [`MAX_IN_FLIGHT`] reads were outstanding.
    pub skipped: u64,
}

struct Shared {
    pools: Vec<Mutex<Vec<RespConn>>>,
    /// Per channel: the newest id any read returned (the next XRANGE starts there).
    newest: Mutex<Vec<EntryId>>,
    in_flight: AtomicUsize,
    skipped: AtomicU64,
}

/// Runs the read schedule from `start` for `spec.duration`, then waits for the reads still
/// outstanding (each bounded by the timeout).
pub async fn run(
    spec: ReaderSpec,
    clock: Clock,
    start: Instant,
    recorder: Recorder,
) -> ReaderReport {
    let mut report = ReaderReport::default();
    if spec.rate <= 0.0 || spec.endpoints.is_empty() || spec.channels == 0 {
        return report;
    }
    let shared = Arc::new(Shared {
        pools: spec
            .endpoints
            .iter()
            .map(|_| Mutex::new(Vec::new()))
            .collect(),
        newest: Mutex::new(vec![EntryId::default(); spec.channels]),
        in_flight: AtomicUsize::new(0),
        skipped: AtomicU64::new(0),
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5EAD_5EAD_0000_0001);
    let interval = Duration::from_secs_f64(1.0 / spec.rate);
    let end = start + spec.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = start + interval.mul_f64(rng.gen::<f64>());
    while next < end {
        tokio::time::sleep_until(next).await;
        next += interval;
        while tasks.try_join_next().is_some() {}
        if shared.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let node = rng.gen_range(0..spec.endpoints.len());
        let channel = rng.gen_range(0..spec.channels);
        let op = match rng.gen_range(0..3) {
            0 => ReadOp::XRange,
            1 => ReadOp::XRevRange,
            _ => ReadOp::XLen,
        };
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        report.sent += 1;
        let read = Read {
            shared: shared.clone(),
            node,
            name: spec.endpoints[node].0.clone(),
            addr: spec.endpoints[node].1,
            channel,
            op,
            timeout: spec.timeout,
        };
        let (clock, recorder) = (clock.clone(), recorder.clone());
        tasks.spawn(async move {
            let event = read.run(&clock).await;
            recorder.record(event).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    report.skipped = shared.skipped.load(Ordering::Relaxed);
    report
}

/// One scheduled read.
struct Read {
    shared: Arc<Shared>,
    node: usize,
    name: String,
    addr: SocketAddr,
    channel: usize,
    op: ReadOp,
    timeout: Duration,
}

/// What a reply said, in the compact form the history keeps.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    last: Option<EntryId>,
    count: u64,
    truncated: bool,
}

impl Read {
    async fn run(self, clock: &Clock) -> Event {
        let channel = format!("ch{}", self.channel);
        let from = (self.op == ReadOp::XRange).then(|| {
            let newest = self.shared.newest.lock().expect("reader lock");
            newest[self.channel]
        });
        let args: Vec<String> = match self.op {
            ReadOp::XRange => vec![
                "XRANGE".into(),
                channel.clone(),
                from.unwrap_or_default().to_string(),
                "+".into(),
                "COUNT".into(),
                XRANGE_COUNT.to_string(),
            ],
            ReadOp::XRevRange => ["XREVRANGE", &channel, "+", "-", "COUNT", "1"]
                .map(String::from)
                .to_vec(),
            ReadOp::XLen => vec!["XLEN".into(), channel.clone()],
        };
        let pooled = self.shared.pools[self.node]
            .lock()
            .expect("reader pool lock")
            .pop();
        let mut invoke_us = clock.now_us();
        let result = tokio::time::timeout(self.timeout, async {
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    check_client_addr(self.addr).map_err(std::io::Error::other)?;
                    let c = RespConn::connect(self.addr, self.timeout).await?;
                    // The read starts once it can be sent.
                    invoke_us = clock.now_us();
                    c
                }
            };
            let reply = conn.call(&args).await?;
            Ok::<_, std::io::Error>((conn, reply))
        })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply within {:?}", self.timeout),
            ))
        });
        let t_us = clock.now_us();
        let outcome = result.and_then(|(conn, reply)| {
            let seen = interpret(self.op, &reply)?;
            self.shared.pools[self.node]
                .lock()
                .expect("reader pool lock")
                .push(conn);
            Ok(seen)
        });
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        let (ok, seen, error) = match outcome {
            Ok(seen) => {
                if let Some(last) = seen.last {
                    let mut newest = self.shared.newest.lock().expect("reader lock");
                    let n = &mut newest[self.channel];
                    *n = (*n).max(last);
                }
                (true, seen, None)
            }
            Err(e) => (false, Seen::default(), Some(e.to_string())),
        };
        Event::Read {
            invoke_us,
            t_us,
            node: self.name,
            channel,
            op: self.op,
            ok,
            from: from.map(|f| f.to_string()),
            last: seen.last.map(|l| l.to_string()),
            count: seen.count,
            truncated: seen.truncated,
            error,
        }
    }
}

/// Reads a reply as what the history keeps; an error reply is an error.
fn interpret(op: ReadOp, reply: &Value) -> std::io::Result<Seen> {
    match (op, reply) {
        (_, Value::Error(e)) => Err(std::io::Error::other(e.clone())),
        (ReadOp::XLen, Value::Int(n)) => Ok(Seen {
            last: None,
            count: (*n).max(0) as u64,
            truncated: false,
        }),
        (ReadOp::XLen, other) => Err(std::io::Error::other(format!(
            "XLEN replied {other:?}, not an integer"
        ))),
        (ReadOp::XRange | ReadOp::XRevRange, v) => {
            let entries = parse_entries(v)?;
            let last = entries.iter().filter_map(|e| EntryId::parse(&e.id)).max();
            let limit = if op == ReadOp::XRange {
                XRANGE_COUNT
            } else {
                1
            };
            Ok(Seen {
                last,
                count: entries.len() as u64,
                truncated: op == ReadOp::XRange && entries.len() >= limit,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Value {
        Value::Array(vec![
            Value::Bulk(id.as_bytes().to_vec()),
            Value::Array(vec![Value::Bulk(b"m".to_vec()), Value::Bulk(b"x".to_vec())]),
        ])
    }

    #[test]
    fn replies_become_compact_read_results() {
        let range = Value::Array(vec![entry("4-0"), entry("7-0")]);
        assert_eq!(
            interpret(ReadOp::XRange, &range).unwrap(),
            Seen {
                last: Some(EntryId(7, 0)),
                count: 2,
                truncated: false
            }
        );
        assert_eq!(
            interpret(ReadOp::XRevRange, &Value::Array(vec![])).unwrap(),
            Seen::default()
        );
        assert_eq!(interpret(ReadOp::XLen, &Value::Int(12)).unwrap().count, 12);
        let err = interpret(ReadOp::XLen, &Value::Error("TRYAGAIN no leader".into()));
        assert!(err.unwrap_err().to_string().contains("TRYAGAIN"));
        assert!(interpret(ReadOp::XLen, &Value::Nil).is_err());
    }
}
