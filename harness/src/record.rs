//! Recording: one thread that receives every history [`Event`], appends it to
//! `history.jsonl`, and turns it into latency histograms and per-second counters.
//!
//! - Tasks send events through a bounded channel ([`Recorder::record`] waits when it is
//!   full, which shows up as send lag rather than as unbounded memory).
//! - Latency is measured from each message's *intended* send time: the thread remembers
//!   intended times in a fixed-size ring per publisher, indexed by sequence number.
//! - Per-second histograms go to `latency.hlog` (tags [`tags`]), binned by completion
//!   second but holding only messages intended in the measured window, so the log adds up
//!   to exactly the summary's totals; per-second counters and percentiles go to
//!   `timeseries.json` rows for the whole run, warmup included.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use raftbus_reports::hlog::HlogWriter;
use raftbus_reports::model::{tags, Latency, Percentiles, SecondRow, Throughput, HISTORY_FILE};
use tokio::sync::mpsc;

use crate::history::{Event, MsgId, Outcome};

/// Histogram bounds: 1 µs .. 60 s, 3 significant digits.
const HIST_LOW_US: u64 = 1;
const HIST_HIGH_US: u64 = 60_000_000;
const HIST_SIGFIG: u8 = 3;
/// Events queued between tasks and the recorder thread.
const CHANNEL_CAPACITY: usize = 64 * 1024;
/// A second's histograms are closed once events are this many seconds newer.
const OPEN_SECONDS: u64 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG).expect("valid bounds")
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("latency log: {0}")]
    Hlog(#[from] raftbus_reports::ReportError),
    #[error("the recorder thread panicked")]
    Panicked,
}

/// Counters the progress display reads while the run goes.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub invoked: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub indeterminate: AtomicU64,
    pub delivered: AtomicU64,
}

/// The run's time base: history times are microseconds since `start`. It is fixed once,
/// when the load begins; events before that (subscribers connecting) get time 0.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<OnceLock<(Instant, f64)>>);

impl Clock {
    pub fn new() -> Clock {
        Clock::default()
    }

    /// Fixes time 0 at `at` (a no-op if already started); returns the start.
    pub fn start_at(&self, at: Instant) -> Instant {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let delta = at.saturating_duration_since(Instant::now()).as_secs_f64()
            - Instant::now().saturating_duration_since(at).as_secs_f64();
        self.0.get_or_init(|| (at, unix + delta)).0
    }

    pub fn start(&self) -> Option<Instant> {
        self.0.get().map(|s| s.0)
    }

    /// Unix seconds of time 0, if started.
    pub fn start_unix_s(&self) -> Option<f64> {
        self.0.get().map(|s| s.1)
    }

    /// Microseconds since time 0 (0 before the start).
    pub fn now_us(&self) -> u64 {
        match self.0.get() {
            Some((start, _)) => Instant::now().saturating_duration_since(*start).as_micros() as u64,
            None => 0,
        }
    }

    /// Microseconds from time 0 to `t` (0 before the start).
    pub fn us_at(&self, t: Instant) -> u64 {
        match self.0.get() {
            Some((start, _)) => t.saturating_duration_since(*start).as_micros() as u64,
            None => 0,
        }
    }
}

/// A cheap handle for tasks to record events.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    live: Arc<LiveStats>,
}

impl Recorder {
    /// Queues an event; waits while the recorder is behind.
    pub async fn record(&self, event: Event) {
        if self.tx.send(event).await.is_err() {
            tracing::error!("recorder is gone; event dropped");
        }
    }

    /// For non-async callers (never from inside the runtime).
    pub fn record_blocking(&self, event: Event) {
        if self.tx.blocking_send(event).is_err() {
            tracing::error!("recorder is gone; event dropped");
        }
    }

    pub fn live(&self) -> &Arc<LiveStats> {
        &self.live
    }
}

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Results directory (`history.jsonl`, `latency.hlog` go here).
    pub dir: PathBuf,
    /// The run's time base (its start goes into the hlog header).
    pub clock: Clock,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub publishers: usize,
    /// Highest rate one publisher reaches; sizes the intended-time rings.
    pub peak_rate_per_publisher: f64,
}

/// What the recorder learnt, returned when it finishes.
#[derive(Debug, Clone, Default)]
pub struct RecordOutput {
    pub rows: Vec<SecondRow>,
    pub latency: Latency,
    pub throughput: Throughput,
    pub events: u64,
    /// Acks or deliveries whose intended time had left the ring (not in latency stats).
    pub untimed: u64,
}

pub struct RecorderHandle {
    thread: std::thread::JoinHandle<Result<RecordOutput, RecordError>>,
}

impl RecorderHandle {
    /// Waits until every [`Recorder`] clone is dropped and the thread has flushed.
    pub async fn finish(self) -> Result<RecordOutput, RecordError> {
        tokio::task::spawn_blocking(move || self.thread.join())
            .await
            .map_err(|_| RecordError::Panicked)?
            .map_err(|_| RecordError::Panicked)?
    }
}

/// Creates `history.jsonl` and `latency.hlog` and starts the recorder thread.
pub fn start(cfg: RecorderConfig) -> Result<(Recorder, RecorderHandle), RecordError> {
    let history_path = cfg.dir.join(HISTORY_FILE);
    let file = File::create(&history_path).map_err(|source| RecordError::Io {
        path: history_path.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let live = Arc::new(LiveStats::default());
    let mut state = State::new(&cfg, BufWriter::with_capacity(1 << 20, file), live.clone());
    let thread = std::thread::Builder::new()
        .name("raftbus-recorder".into())
        .spawn(move || state.run(rx, history_path))
        .map_err(|source| RecordError::Io {
            path: cfg.dir.clone(),
            source,
        })?;
    Ok((Recorder { tx, live }, RecorderHandle { thread }))
}

/// Intended send times of recent messages of one publisher, by sequence number.
struct Ring {
    slots: Vec<(u64, u64)>,
    mask: u64,
}

impl Ring {
    fn new(size: usize) -> Ring {
        let size = size.next_power_of_two();
        Ring {
            // (sequence + 1, intended µs); 0 marks an empty slot.
            slots: vec![(0, 0); size],
            mask: size as u64 - 1,
        }
    }

    fn put(&mut self, seq: u64, intended_us: u64) {
        self.slots[(seq & self.mask) as usize] = (seq + 1, intended_us);
    }

    fn get(&self, seq: u64) -> Option<u64> {
        let (s, t) = self.slots[(seq & self.mask) as usize];
        (s == seq + 1).then_some(t)
    }
}

/// One second's latencies, by completion time.
struct SecondHistograms {
    ack: Histogram<u64>,
    e2e: Histogram<u64>,
    lag: Histogram<u64>,
}

impl SecondHistograms {
    fn new() -> SecondHistograms {
        SecondHistograms {
            ack: new_histogram(),
            e2e: new_histogram(),
            lag: new_histogram(),
        }
    }
}

struct OpenSecond {
    /// Every message, for the time-series row.
    all: SecondHistograms,
    /// Messages intended in the measured window, for the hlog.
    measured: SecondHistograms,
}

struct State {
    out: BufWriter<File>,
    hlog: Option<HlogWriter>,
    hlog_path: PathBuf,
    clock: Clock,
    live: Arc<LiveStats>,
    warmup_us: u64,
    end_us: u64,
    warmup_s: f64,
    duration_s: f64,
    rings: Vec<Ring>,
    ring_size: usize,
    open: BTreeMap<u64, OpenSecond>,
    newest_second: u64,
    rows: Vec<SecondRow>,
    total_ack: Histogram<u64>,
    /// Every measured publish at its outcome (see the module docs).
    total_all: Histogram<u64>,
    /// Measured publishes not completed yet: intended time by message.
    outstanding: HashMap<MsgId, u64>,
    /// Measured publishes whose latency is only a lower bound (unknown or unanswered).
    censored: u64,
    /// The newest event time seen, for publishes still unanswered at the end.
    last_us: u64,
    total_e2e: Histogram<u64>,
    /// Queue mode: publish to the XACK that finished it in a group.
    total_consumed: Histogram<u64>,
    total_lag: Histogram<u64>,
    /// Successful reads of the read workload sent in the measured window, send to reply.
    total_read: Histogram<u64>,
    measured_offered: u64,
    measured_acked: u64,
    events: u64,
    untimed: u64,
}

fn sec(us: u64) -> u64 {
    us / 1_000_000
}

impl State {
    fn new(cfg: &RecorderConfig, out: BufWriter<File>, live: Arc<LiveStats>) -> State {
        // Enough for a minute of backlog per publisher at its peak rate, within bounds.
        let ring_size = ((cfg.peak_rate_per_publisher * 60.0) as usize).clamp(1 << 12, 1 << 21);
        State {
            out,
            hlog: None,
            hlog_path: cfg.dir.join(raftbus_reports::model::HLOG_FILE),
            clock: cfg.clock.clone(),
            live,
            warmup_us: (cfg.warmup_s * 1e6) as u64,
            end_us: (cfg.duration_s * 1e6) as u64,
            warmup_s: cfg.warmup_s,
            duration_s: cfg.duration_s,
            rings: (0..cfg.publishers).map(|_| Ring::new(ring_size)).collect(),
            ring_size,
            open: BTreeMap::new(),
            newest_second: 0,
            rows: Vec::new(),
            total_ack: new_histogram(),
            total_all: new_histogram(),
            outstanding: HashMap::new(),
            censored: 0,
            last_us: 0,
            total_e2e: new_histogram(),
            total_consumed: new_histogram(),
            total_lag: new_histogram(),
            total_read: new_histogram(),
            measured_offered: 0,
            measured_acked: 0,
            events: 0,
            untimed: 0,
        }
    }

    fn run(
        &mut self,
        mut rx: mpsc::Receiver<Event>,
        history_path: PathBuf,
    ) -> Result<RecordOutput, RecordError> {
        let io_err = |source| RecordError::Io {
            path: history_path.clone(),
            source,
        };
        while let Some(event) = rx.blocking_recv() {
            serde_json::to_writer(&mut self.out, &event).map_err(|e| io_err(e.into()))?;
            self.out.write_all(b"\n").map_err(io_err)?;
            self.events += 1;
            self.account(&event)?;
        }
        self.out.flush().map_err(io_err)?;
        self.out.get_ref().sync_data().map_err(io_err)?;
        self.close_seconds_before(u64::MAX)?;
        self.hlog()?;
        if let Some(h) = self.hlog.take() {
            h.finish()?;
        }
        tracing::debug!(
            ring_size = self.ring_size,
            events = self.events,
            "recorder finished"
        );
        let window = (self.duration_s - self.warmup_s).max(1e-9);
        for (_, intended) in std::mem::take(&mut self.outstanding) {
            self.censored += 1;
            self.total_all
                .saturating_record(self.last_us.saturating_sub(intended));
        }
        Ok(RecordOutput {
            rows: std::mem::take(&mut self.rows),
            latency: Latency {
                publish_ack: percentiles(&self.total_ack),
                publish_all: percentiles(&self.total_all),
                publish_censored: self.censored,
                end_to_end: percentiles(&self.total_e2e),
                consumed: percentiles(&self.total_consumed),
                send_lag: percentiles(&self.total_lag),
                read: percentiles(&self.total_read),
            },
            throughput: Throughput {
                offered_per_s: self.measured_offered as f64 / window,
                achieved_per_s: self.measured_acked as f64 / window,
            },
            events: self.events,
            untimed: self.untimed,
        })
    }

    /// The hlog writer, created once the run's start time is known.
    fn hlog(&mut self) -> Result<&mut HlogWriter, RecordError> {
        if self.hlog.is_none() {
            let start = self.clock.start_unix_s().unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            });
            self.hlog = Some(HlogWriter::create(&self.hlog_path, start)?);
        }
        Ok(self.hlog.as_mut().expect("created above"))
    }

    fn row(&mut self, second: u64) -> &mut SecondRow {
        let i = second as usize;
        if self.rows.len() <= i {
            let from = self.rows.len() as u64;
            self.rows.extend((from..=second).map(|t_s| SecondRow {
                t_s,
                ..SecondRow::default()
            }));
        }
        &mut self.rows[i]
    }

    /// The open histograms for `second`, or the oldest open one for late events.
    fn open_second(&mut self, second: u64) -> &mut OpenSecond {
        let oldest = self.open.keys().next().copied();
        let key = match oldest {
            Some(o) if second < o => o,
            _ => second,
        };
        self.open.entry(key).or_insert_with(|| OpenSecond {
            all: SecondHistograms::new(),
            measured: SecondHistograms::new(),
        })
    }

    fn intended(&self, msg: MsgId) -> Option<u64> {
        let p = crate::history::publisher_of(msg) as usize;
        let seq = msg & ((1 << 40) - 1);
        self.rings.get(p)?.get(seq)
    }

    fn measured(&self, intended_us: u64) -> bool {
        intended_us >= self.warmup_us && intended_us < self.end_us
    }

    /// One delivery at `t_us`; its end-to-end latency counts when `first` (a subscriber's
    /// delivery, a group's first delivery).
    fn delivered(&mut self, t_us: u64, msg: Option<MsgId>, first: bool) {
        self.row(sec(t_us)).delivered += 1;
        self.live.delivered.fetch_add(1, Ordering::Relaxed);
        let Some(msg) = msg.filter(|_| first) else {
            return;
        };
        match self.intended(msg) {
            Some(intended) => {
                let lat = t_us.saturating_sub(intended);
                let measured = self.measured(intended);
                let open = self.open_second(sec(t_us));
                open.all.e2e.saturating_record(lat);
                if measured {
                    open.measured.e2e.saturating_record(lat);
                    self.total_e2e.saturating_record(lat);
                }
            }
            None => self.untimed += 1,
        }
    }

    fn account(&mut self, event: &Event) -> Result<(), RecordError> {
        let now_second = match *event {
            Event::Invoke {
                intended_us,
                t_us,
                msg,
                ..
            } => {
                let p = crate::history::publisher_of(msg) as usize;
                if let Some(ring) = self.rings.get_mut(p) {
                    ring.put(msg & ((1 << 40) - 1), intended_us);
                }
                self.live.invoked.fetch_add(1, Ordering::Relaxed);
                self.row(sec(intended_us)).offered += 1;
                let lag = t_us.saturating_sub(intended_us);
                let measured = self.measured(intended_us);
                let open = self.open_second(sec(t_us));
                open.all.lag.saturating_record(lag);
                if measured {
                    open.measured.lag.saturating_record(lag);
                    self.measured_offered += 1;
                    self.total_lag.saturating_record(lag);
                    self.outstanding.insert(msg, intended_us);
                }
                self.last_us = self.last_us.max(t_us);
                sec(t_us)
            }
            Event::Complete {
                t_us, msg, outcome, ..
            } => {
                let row = self.row(sec(t_us));
                match outcome {
                    Outcome::Ok => row.acked += 1,
                    Outcome::Fail => row.failed += 1,
                    Outcome::Info => row.indeterminate += 1,
                }
                let counter = match outcome {
                    Outcome::Ok => &self.live.acked,
                    Outcome::Fail => &self.live.failed,
                    Outcome::Info => &self.live.indeterminate,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.last_us = self.last_us.max(t_us);
                if let Some(intended) = self.outstanding.remove(&msg) {
                    self.total_all
                        .saturating_record(t_us.saturating_sub(intended));
                    if outcome == Outcome::Info {
                        self.censored += 1;
                    }
                }
                if outcome == Outcome::Ok {
                    match self.intended(msg) {
                        Some(intended) => {
                            let lat = t_us.saturating_sub(intended);
                            let measured = self.measured(intended);
                            let open = self.open_second(sec(t_us));
                            open.all.ack.saturating_record(lat);
                            if measured {
                                open.measured.ack.saturating_record(lat);
                                self.measured_acked += 1;
                                self.total_ack.saturating_record(lat);
                            }
                        }
                        None => self.untimed += 1,
                    }
                }
                sec(t_us)
            }
            Event::Deliver { t_us, msg, .. } => {
                self.delivered(t_us, msg, true);
                sec(t_us)
            }
            Event::Take {
                t_us,
                claimed,
                ref entries,
                ..
            } => {
                // A claim is a redelivery: counted, but end-to-end is the first delivery.
                for e in entries {
                    self.delivered(t_us, e.msg, !claimed);
                }
                sec(t_us)
            }
            Event::Settle {
                t_us,
                msg: Some(msg),
                removed: Some(true),
                ..
            } => {
                if let Some(intended) = self.intended(msg) {
                    if self.measured(intended) {
                        self.total_consumed
                            .saturating_record(t_us.saturating_sub(intended));
                    }
                }
                return Ok(());
            }
            Event::Settle { .. } | Event::ConsumerCrash { .. } | Event::GroupState { .. } => {
                return Ok(())
            }
            Event::SubscriberUp { t_us, .. } | Event::SubscriberDown { t_us, .. } => sec(t_us),
            Event::Read {
                invoke_us,
                t_us,
                ok,
                ..
            } => {
                if ok && self.measured(invoke_us) {
                    self.total_read
                        .saturating_record(t_us.saturating_sub(invoke_us));
                }
                return Ok(());
            }
            Event::Fault { .. }
            | Event::Final { .. }
            | Event::FinalRead { .. }
            | Event::Retired { .. } => return Ok(()),
        };
        if now_second > self.newest_second {
            self.newest_second = now_second;
            if now_second >= OPEN_SECONDS {
                self.close_seconds_before(now_second - OPEN_SECONDS)?;
            }
        }
        Ok(())
    }

    /// Closes every open second before `limit`: fills its row's percentiles and, from the
    /// end of warmup on, writes its hlog intervals of measured messages.
    fn close_seconds_before(&mut self, limit: u64) -> Result<(), RecordError> {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= limit {
                break;
            }
            let (second, open) = entry.remove_entry();
            let h = &open.all;
            let row = self.row(second);
            row.ack_p50_us = quantile(&h.ack, 0.5);
            row.ack_p99_us = quantile(&h.ack, 0.99);
            row.ack_max_us = h.ack.max();
            row.e2e_p50_us = quantile(&h.e2e, 0.5);
            row.e2e_p99_us = quantile(&h.e2e, 0.99);
            row.e2e_max_us = h.e2e.max();
            let start = second as f64;
            if start + 1.0 > self.warmup_s {
                let hlog = self.hlog()?;
                let m = &open.measured;
                for (tag, hist) in [
                    (tags::PUBLISH_ACK, &m.ack),
                    (tags::END_TO_END, &m.e2e),
                    (tags::SEND_LAG, &m.lag),
                ] {
                    hlog.write_interval(tag, start, 1.0, hist)?;
                }
            }
        }
        Ok(())
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// Reads a `history.jsonl` back (for tests and tools).
pub fn read_history(path: &Path) -> std::io::Result<Vec<Event>> {
    use std::io::BufRead;
    let f = std::io::BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    for line in f.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(std::io::Error::other)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::msg_id;

    /// A recorder for one publisher writing into `dir`.
    fn recorder(dir: &Path, warmup_s: f64, duration_s: f64) -> (Recorder, RecorderHandle) {
        start(RecorderConfig {
            dir: dir.to_path_buf(),
            clock: Clock::new(),
            warmup_s,
            duration_s,
            publishers: 1,
            peak_rate_per_publisher: 10.0,
        })
        .unwrap()
    }

    /// Records message `seq` of publisher 0: intended, sent, and acknowledged at these times.
    async fn publish_acked(
        rec: &Recorder,
        seq: u64,
        intended_us: u64,
        sent_us: u64,
        acked_us: u64,
    ) {
        let msg = msg_id(0, seq);
        rec.record(Event::Invoke {
            intended_us,
            t_us: sent_us,
            msg,
            channel: "ch0".into(),
            node: "n1".into(),
        })
        .await;
        rec.record(Event::Complete {
            t_us: acked_us,
            msg,
            outcome: Outcome::Ok,
            id: Some(format!("{seq}-0")),
            error: None,
        })
        .await;
    }

    #[test]
    fn ring_forgets_old_sequences() {
        let mut r = Ring::new(4);
        r.put(1, 100);
        assert_eq!(r.get(1), Some(100));
        assert_eq!(r.get(5), None);
        r.put(5, 500);
        assert_eq!(r.get(1), None);
        assert_eq!(r.get(5), Some(500));
        assert_eq!(r.get(0), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn latencies_come_from_intended_times() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, handle) = recorder(dir.path(), 1.0, 3.0);
        // Message 1 is in the warmup, message 2 in the measured window.
        for (seq, intended, sent, acked, delivered) in [
            (1u64, 500_000u64, 501_000u64, 510_000u64, 520_000u64),
            (2, 1_500_000, 1_700_000, 1_800_000, 2_100_000),
        ] {
            let msg = msg_id(0, seq);
            publish_acked(&rec, seq, intended, sent, acked).await;
            rec.record(Event::Deliver {
                t_us: delivered,
                subscriber: 0,
                node: "n1".into(),
                channel: "ch0".into(),
                msg: Some(msg),
                id: Some(format!("{seq}-0")),
                intact: true,
            })
            .await;
        }
        drop(rec);
        let out = handle.finish().await.unwrap();
        assert_eq!(out.events, 6);
        assert_eq!(out.latency.publish_ack.count, 1);
        // 1.8 s - 1.5 s, within histogram precision.
        assert!((299_000..=301_000).contains(&out.latency.publish_ack.max));
        assert!((599_000..=601_000).contains(&out.latency.end_to_end.max));
        assert!((199_000..=201_000).contains(&out.latency.send_lag.max));
        assert_eq!(out.throughput.offered_per_s, 0.5);
        assert_eq!(out.throughput.achieved_per_s, 0.5);
        assert_eq!(out.rows[0].offered, 1);
        assert_eq!(out.rows[1].acked, 1);
        assert_eq!(out.rows[2].delivered, 1);
        let events = read_history(&dir.path().join(HISTORY_FILE)).unwrap();
        assert_eq!(events.len(), 6);
        let hlog = raftbus_reports::hlog::Hlog::read(&dir.path().join("latency.hlog")).unwrap();
        assert!(hlog.tags().iter().any(|t| t == tags::PUBLISH_ACK));
    }

    /// Acks that straddle the window edges: a warmup message acked after warmup stays out
    /// of the hlog, a measured one acked after the end is in it, so the hlog adds up to
    /// the summary while the time-series rows count both.
    #[tokio::test(flavor = "multi_thread")]
    async fn hlog_holds_exactly_the_measured_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, handle) = recorder(dir.path(), 1.0, 3.0);
        for (seq, intended, acked) in [
            (1u64, 900_000u64, 1_400_000u64), // warmup, acked in the window
            (2, 1_200_000, 1_300_000),        // measured
            (3, 2_900_000, 3_600_000),        // measured, acked after the end
            (4, 3_100_000, 3_200_000),        // after the end: drain traffic
        ] {
            publish_acked(&rec, seq, intended, intended, acked).await;
        }
        drop(rec);
        let out = handle.finish().await.unwrap();
        assert_eq!(out.latency.publish_ack.count, 2);
        let merged = raftbus_reports::hlog::read_hlog(&dir.path().join("latency.hlog")).unwrap();
        assert_eq!(merged[tags::PUBLISH_ACK].len(), 2);
        assert_eq!(merged[tags::SEND_LAG].len(), 2);
        // 700 ms for message 3, within histogram precision.
        assert!((699_000..=701_000).contains(&merged[tags::PUBLISH_ACK].max()));
        let acked_rows: u64 = out.rows.iter().map(|r| r.acked).sum();
        assert_eq!(acked_rows, 4);
        assert_eq!(out.rows[1].acked, 2);
        assert_eq!(out.rows[3].acked, 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn failed_and_unanswered_publishes_count_in_the_all_latency() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, handle) = start(RecorderConfig {
            dir: dir.path().to_path_buf(),
            clock: Clock::new(),
            warmup_s: 0.0,
            duration_s: 10.0,
            publishers: 1,
            peak_rate_per_publisher: 10.0,
        })
        .unwrap();
        // 1 acked after 10 ms, 2 failed after 20 ms, 3 timed out after 5 s, 4 never
        // answered before the last event at 8 s.
        let outcomes = [
            (1u64, Some((Outcome::Ok, 10_000u64))),
            (2, Some((Outcome::Fail, 20_000))),
            (3, Some((Outcome::Info, 5_000_000))),
            (4, None),
        ];
        for (seq, outcome) in outcomes {
            let intended = seq * 100_000;
            rec.record(Event::Invoke {
                intended_us: intended,
                t_us: intended,
                msg: msg_id(0, seq),
                channel: "ch0".into(),
                node: "n1".into(),
            })
            .await;
            if let Some((outcome, after)) = outcome {
                rec.record(Event::Complete {
                    t_us: intended + after,
                    msg: msg_id(0, seq),
                    outcome,
                    id: None,
                    error: None,
                })
                .await;
            }
        }
        rec.record(Event::Invoke {
            intended_us: 8_000_000,
            t_us: 8_000_000,
            msg: msg_id(0, 5),
            channel: "ch0".into(),
            node: "n1".into(),
        })
        .await;
        rec.record(Event::Complete {
            t_us: 8_000_000,
            msg: msg_id(0, 5),
            outcome: Outcome::Ok,
            id: None,
            error: None,
        })
        .await;
        drop(rec);
        let out = handle.finish().await.unwrap();
        let l = &out.latency;
        assert_eq!(l.publish_ack.count, 2);
        assert_eq!(l.publish_all.count, 5);
        // The timeout and the unanswered one are censored, the failure is not.
        assert_eq!(l.publish_censored, 2);
        // Unanswered since 0.4 s, the last event at 8 s: at least 7.6 s.
        assert!(
            (7_590_000..=7_610_000).contains(&l.publish_all.max),
            "{l:?}"
        );
        assert!(l.publish_ack.max < 20_000, "{l:?}");
    }
}
