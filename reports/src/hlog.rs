//! HdrHistogram interval logs (`latency.hlog`): writing during a run, reading for reports.
//!
//! The file is a standard interval log, as written by the Java `HistogramLogWriter` and read
//! by `HistogramLogProcessor` or HdrHistogram's online plotter:
//!
//! ```text
//! #[Logged with raftbus-reports 0.1.0]
//! #[Histogram log format version 1.3]
//! #[values are microseconds]
//! #[StartTime: 1700000000.000 (seconds since epoch)]
//! #[BaseTime: 1700000000.000 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! Tag=publish_ack,0.000,1.000,1523.000,HISTFAAAA...
//! ```
//!
//! Interval timestamps are seconds since `BaseTime`, which is the run's start, so they read
//! the same as the `t_s` column of `timeseries.json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::error::ReportError;

/// The column legend line of the interval log format.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// Seconds in a year: the Java reader's threshold to tell delta timestamps from absolute ones.
const YEAR_S: f64 = 365.25 * 24.0 * 3600.0;

/// Appends interval histograms to a `latency.hlog` file.
///
/// One call to [`HlogWriter::write_interval`] per interval per tag. Intervals should be
/// written in time order (standard readers expect it).
pub struct HlogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl std::fmt::Debug for HlogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlogWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HlogWriter {
    /// Creates the file and writes the header; `start_unix_s` is the run's start (Unix seconds).
    pub fn create(path: &Path, start_unix_s: f64) -> Result<HlogWriter, ReportError> {
        if !start_unix_s.is_finite() || start_unix_s < 0.0 {
            return Err(ReportError::Hlog {
                path: path.to_path_buf(),
                reason: format!("start time {start_unix_s} is not a valid unix time"),
            });
        }
        let file = File::create(path).map_err(|e| ReportError::io(path, e))?;
        let mut out = BufWriter::new(file);
        let mut serializer = V2DeflateSerializer::new();
        let start = UNIX_EPOCH + Duration::from_secs_f64(start_unix_s);
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "[Logged with raftbus-reports {}]",
                env!("CARGO_PKG_VERSION")
            ))
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[values are microseconds]")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| ReportError::io(path, e))?;
        writeln!(out, "{LEGEND}").map_err(|e| ReportError::io(path, e))?;
        Ok(HlogWriter {
            path: path.to_path_buf(),
            out,
            serializer,
        })
    }

    /// Appends one interval for one tag; `start_s` is seconds since the run start.
    pub fn write_interval(
        &mut self,
        tag: &str,
        start_s: f64,
        duration_s: f64,
        hist: &Histogram<u64>,
    ) -> Result<(), ReportError> {
        let tag_value = match Tag::new(tag) {
            Some(t) if !tag.is_empty() => t,
            _ => return Err(ReportError::InvalidTag(tag.to_string())),
        };
        let start = seconds(start_s).ok_or_else(|| self.bad(format!("bad start {start_s}")))?;
        let duration =
            seconds(duration_s).ok_or_else(|| self.bad(format!("bad duration {duration_s}")))?;
        // A writer with no headers writes nothing until asked, so a fresh one per interval
        // lets this struct own the file and the serializer.
        let mut writer = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| ReportError::io(&self.path, e))?;
        writer
            .write_histogram(hist, start, duration, Some(tag_value))
            .map_err(|e| ReportError::HistogramEncode {
                tag: tag.to_string(),
                reason: e.to_string(),
            })
    }

    /// Flushes and closes.
    pub fn finish(mut self) -> Result<(), ReportError> {
        self.out
            .flush()
            .map_err(|e| ReportError::io(&self.path, e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| ReportError::io(&self.path, e))
    }

    fn bad(&self, reason: String) -> ReportError {
        ReportError::Hlog {
            path: self.path.clone(),
            reason,
        }
    }
}

fn seconds(s: f64) -> Option<Duration> {
    if s.is_finite() && s >= 0.0 {
        Duration::try_from_secs_f64(s).ok()
    } else {
        None
    }
}

/// One interval read back from a log: where it sits in time and its key statistics.
///
/// The decoded histogram is not kept (a 10-minute run has thousands of intervals, each
/// decoding to hundreds of kilobytes); [`HlogInterval::histogram`] decodes it again.
#[derive(Debug, Clone)]
pub struct HlogInterval {
    /// The interval's tag; empty for untagged intervals.
    pub tag: String,
    /// Seconds since the log's start time (the run start for logs this crate writes).
    pub start_s: f64,
    pub duration_s: f64,
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    encoded: String,
}

impl HlogInterval {
    /// Decodes this interval's histogram.
    pub fn histogram(&self) -> Result<Histogram<u64>, String> {
        decode(&self.encoded, self.start_s)
    }
}

fn decode(encoded: &str, at: f64) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("interval at {at}: bad base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("interval at {at}: bad histogram: {e:?}"))
}

/// Adds `src` into `acc`, whatever their value ranges.
fn merge_into(merged: &mut BTreeMap<String, Histogram<u64>>, tag: &str, src: Histogram<u64>) {
    match merged.get_mut(tag) {
        Some(acc) => {
            // The accumulator auto-resizes, so this only fails on a precision mismatch.
            if acc.add(&src).is_err() {
                for v in src.iter_recorded() {
                    let _ = acc.record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
        }
        None => {
            let mut acc = src;
            acc.auto(true);
            merged.insert(tag.to_string(), acc);
        }
    }
}

/// A whole interval log, decoded.
#[derive(Debug, Clone, Default)]
pub struct Hlog {
    /// `StartTime` header in Unix seconds, when present.
    pub start_unix_s: Option<f64>,
    /// Every interval, in file order.
    pub intervals: Vec<HlogInterval>,
    /// Per tag, every interval starting at or after `merged_from_s`, merged.
    pub merged: BTreeMap<String, Histogram<u64>>,
    pub merged_from_s: f64,
}

impl Hlog {
    /// Reads and decodes an interval log, merging every interval per tag.
    pub fn read(path: &Path) -> Result<Hlog, ReportError> {
        Self::read_from(path, f64::NEG_INFINITY)
    }

    /// Reads and decodes an interval log, merging per tag the intervals that start at or
    /// after `from_s` (to leave out the warmup).
    pub fn read_from(path: &Path, from_s: f64) -> Result<Hlog, ReportError> {
        let bytes = std::fs::read(path).map_err(|e| ReportError::io(path, e))?;
        Self::parse_from(&bytes, from_s).map_err(|reason| ReportError::Hlog {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Decodes an interval log held in memory, merging every interval.
    pub fn parse(bytes: &[u8]) -> Result<Hlog, String> {
        Self::parse_from(bytes, f64::NEG_INFINITY)
    }

    /// Decodes an interval log held in memory, merging intervals from `from_s` on.
    pub fn parse_from(bytes: &[u8], from_s: f64) -> Result<Hlog, String> {
        let mut start_time: Option<f64> = None;
        let mut base_time: Option<f64> = None;
        let mut raw = Vec::new();
        for entry in IntervalLogIterator::new(bytes) {
            match entry.map_err(|e| format!("{e:?}"))? {
                LogEntry::StartTime(d) => start_time = Some(d.as_secs_f64()),
                LogEntry::BaseTime(d) => base_time = Some(d.as_secs_f64()),
                LogEntry::Interval(iv) => raw.push((
                    iv.tag().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    iv.start_timestamp().as_secs_f64(),
                    iv.duration().as_secs_f64(),
                    iv.encoded_histogram(),
                )),
            }
        }
        // Same interpretation as the Java reader: with a BaseTime, timestamps are deltas from
        // it; with only a StartTime, timestamps far below it are deltas; otherwise absolute.
        let first_ts = raw.first().map(|r| r.1).unwrap_or(0.0);
        let base = match (base_time, start_time) {
            (Some(b), _) => b,
            (None, Some(s)) if first_ts < s - YEAR_S => s,
            _ => 0.0,
        };
        let origin = start_time.or(base_time).unwrap_or(base + first_ts);
        let mut intervals = Vec::with_capacity(raw.len());
        let mut merged = BTreeMap::new();
        for (tag, ts, duration_s, encoded) in raw {
            let start_s = base + ts - origin;
            let hist = decode(encoded, ts)?;
            let (count, p50, p90, p99, p999, max) = if hist.is_empty() {
                (0, 0, 0, 0, 0, 0)
            } else {
                (
                    hist.len(),
                    hist.value_at_quantile(0.5),
                    hist.value_at_quantile(0.9),
                    hist.value_at_quantile(0.99),
                    hist.value_at_quantile(0.999),
                    hist.max(),
                )
            };
            if start_s + 1e-9 >= from_s {
                merge_into(&mut merged, &tag, hist);
            }
            intervals.push(HlogInterval {
                tag,
                start_s,
                duration_s,
                count,
                p50,
                p90,
                p99,
                p999,
                max,
                encoded: encoded.to_string(),
            });
        }
        Ok(Hlog {
            start_unix_s: start_time,
            intervals,
            merged,
            merged_from_s: from_s,
        })
    }

    /// The distinct tags, sorted.
    pub fn tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self.intervals.iter().map(|i| i.tag.clone()).collect();
        tags.sort();
        tags.dedup();
        tags
    }

    /// The intervals of one tag, in file order.
    pub fn intervals_of<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a HlogInterval> {
        self.intervals.iter().filter(move |i| i.tag == tag)
    }

    /// Merges per tag the intervals starting at or after `from_s`, decoding them again.
    pub fn merged_from(&self, from_s: f64) -> Result<BTreeMap<String, Histogram<u64>>, String> {
        let mut merged = BTreeMap::new();
        for iv in self.intervals.iter().filter(|i| i.start_s + 1e-9 >= from_s) {
            merge_into(&mut merged, &iv.tag, iv.histogram()?);
        }
        Ok(merged)
    }
}

/// Reads an interval log and merges its intervals per tag.
pub fn read_hlog(path: &Path) -> Result<BTreeMap<String, Histogram<u64>>, ReportError> {
    Ok(Hlog::read(path)?.merged)
}

/// Unix seconds now, for callers that start a log at "now".
pub fn unix_now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    #[test]
    fn header_is_standard_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.hlog");
        let mut w = HlogWriter::create(&path, 1_700_000_000.25).unwrap();
        w.write_interval("publish_ack", 0.0, 1.0, &hist(&[100, 200, 300]))
            .unwrap();
        w.write_interval("end_to_end", 0.0, 1.0, &hist(&[400]))
            .unwrap();
        w.write_interval("publish_ack", 1.0, 1.0, &hist(&[5000]))
            .unwrap();
        w.finish().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#[StartTime: 1700000000.250 (seconds since epoch)]"));
        assert!(text.contains("#[BaseTime: 1700000000.250 (seconds since epoch)]"));
        assert!(text.contains(LEGEND));
        assert!(
            text.contains("\nTag=publish_ack,1.000,1.000,5003.000,HISTF"),
            "{text}"
        );

        let log = Hlog::read(&path).unwrap();
        assert_eq!(log.intervals.len(), 3);
        assert_eq!(log.start_unix_s, Some(1_700_000_000.25));
        assert!((log.intervals[2].start_s - 1.0).abs() < 1e-6);
        let merged = &log.merged;
        assert_eq!(merged["publish_ack"].len(), 4);
        assert_eq!(
            merged["publish_ack"].max(),
            merged["publish_ack"].highest_equivalent(5000)
        );
        assert_eq!(merged["end_to_end"].len(), 1);
        assert_eq!(log.merged_from(1.0).unwrap()["publish_ack"].len(), 1);
        let from = Hlog::read_from(&path, 1.0).unwrap();
        assert_eq!(from.merged["publish_ack"].len(), 1);
        assert!(!from.merged.contains_key("end_to_end"));
        assert_eq!(from.intervals.len(), 3);
        assert_eq!(from.intervals[0].count, 3);
        assert_eq!(from.intervals[0].histogram().unwrap().len(), 3);
    }

    #[test]
    fn rejects_bad_tags_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HlogWriter::create(&dir.path().join("x.hlog"), 10.0).unwrap();
        assert!(matches!(
            w.write_interval("a b", 0.0, 1.0, &hist(&[1])),
            Err(ReportError::InvalidTag(_))
        ));
        assert!(matches!(
            w.write_interval("", 0.0, 1.0, &hist(&[1])),
            Err(ReportError::InvalidTag(_))
        ));
        assert!(w.write_interval("a", -1.0, 1.0, &hist(&[1])).is_err());
        assert!(w.write_interval("a", f64::NAN, 1.0, &hist(&[1])).is_err());
    }

    #[test]
    fn reads_absolute_timestamps_without_headers() {
        // A log as written by a tool that uses absolute Unix timestamps and no headers.
        let mut buf = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut buf, &mut ser)
            .unwrap();
        for i in 0..3u64 {
            w.write_histogram(
                &hist(&[10 * (i + 1)]),
                Duration::from_secs(1_600_000_000 + i),
                Duration::from_secs(1),
                None,
            )
            .unwrap();
        }
        let log = Hlog::parse(&buf).unwrap();
        let starts: Vec<f64> = log.intervals.iter().map(|i| i.start_s).collect();
        assert_eq!(starts, vec![0.0, 1.0, 2.0]);
        assert_eq!(log.tags(), vec![String::new()]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Hlog::parse(b"Tag=a,0.0,1.0,1.0,notbase64!!\n").is_err());
    }
}
