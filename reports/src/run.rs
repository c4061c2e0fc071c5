//! One results directory loaded for reporting, and the series charts draw from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::error::ReportError;
use crate::hlog::Hlog;
use crate::model::{tags, Summary, Target, TimeSeries, HLOG_FILE, SUMMARY_FILE, TIMESERIES_FILE};
use crate::plot::latency_over_time::LatencyRow;
use crate::plot::percentile_spectrum::SpectrumSeries;
use crate::plot::throughput_over_time::ThroughputRow;

/// A run's files, read. Only `summary.json` is required; the others degrade the report
/// (with a warning shown in it) when missing or unreadable.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub summary: Summary,
    pub timeseries: Option<TimeSeries>,
    pub hlog: Option<Hlog>,
    /// Problems met while loading, shown in the report.
    pub warnings: Vec<String>,
}

/// How a directory is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `DIR/summary.json`.
    Single,
    /// `DIR/bus/summary.json` and/or `DIR/redis/summary.json`; the sub-directories found.
    Both(Vec<PathBuf>),
}

/// Finds out whether `dir` holds one run or a `--target both` pair.
pub fn layout(dir: &Path) -> Result<Layout, ReportError> {
    if dir.join(SUMMARY_FILE).is_file() {
        return Ok(Layout::Single);
    }
    let subs: Vec<PathBuf> = ["bus", "redis"]
        .iter()
        .map(|t| dir.join(t))
        .filter(|d| d.join(SUMMARY_FILE).is_file())
        .collect();
    if subs.is_empty() {
        Err(ReportError::NotAResultsDir(dir.to_path_buf()))
    } else {
        Ok(Layout::Both(subs))
    }
}

impl RunData {
    pub fn load(dir: &Path) -> Result<RunData, ReportError> {
        let summary = Summary::read(dir)?;
        let mut warnings = Vec::new();
        let mut warmup_s = summary.workload.warmup_s;
        let timeseries = if dir.join(TIMESERIES_FILE).is_file() {
            match TimeSeries::read(dir) {
                Ok(ts) => {
                    warmup_s = ts.warmup_s;
                    Some(ts)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "timeseries unreadable");
                    warnings.push(e.to_string());
                    None
                }
            }
        } else {
            warnings.push(format!("{TIMESERIES_FILE} is missing: no per-second data"));
            None
        };
        let hlog_path = dir.join(HLOG_FILE);
        let hlog = if hlog_path.is_file() {
            // The harness logs only measured messages, so the second the warmup ends in
            // belongs to the spectrum; earlier intervals (synthetic runs) do not.
            match Hlog::read_from(&hlog_path, warmup_s.floor()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "histogram log unreadable");
                    warnings.push(e.to_string());
                    None
                }
            }
        } else {
            warnings.push(format!(
                "{HLOG_FILE} is missing: the percentile spectrum uses summary percentiles"
            ));
            None
        };
        Ok(RunData {
            dir: dir.to_path_buf(),
            summary,
            timeseries,
            hlog,
            warnings,
        })
    }

    /// `bus`, or `redis (appendfsync always)`.
    pub fn label(&self) -> String {
        let t = target_name(self.summary.target);
        if self.summary.target_detail.is_empty() {
            t.to_string()
        } else {
            format!("{t} ({})", self.summary.target_detail)
        }
    }

    pub fn warmup_s(&self) -> f64 {
        self.timeseries
            .as_ref()
            .map(|t| t.warmup_s)
            .unwrap_or(self.summary.workload.warmup_s)
    }

    /// Per-second latency, from `timeseries.json`, or from the histogram log without it.
    pub fn latency_rows(&self) -> Vec<LatencyRow> {
        if let Some(ts) = self.timeseries.as_ref().filter(|t| !t.rows.is_empty()) {
            return ts
                .rows
                .iter()
                .map(|r| LatencyRow {
                    t_s: r.t_s as f64,
                    ack: [r.ack_p50_us, r.ack_p99_us, r.ack_max_us],
                    e2e: [r.e2e_p50_us, r.e2e_p99_us, r.e2e_max_us],
                })
                .collect();
        }
        let Some(hlog) = &self.hlog else {
            return Vec::new();
        };
        let mut rows: BTreeMap<u64, LatencyRow> = BTreeMap::new();
        for iv in &hlog.intervals {
            if iv.count == 0 {
                continue;
            }
            let sec = iv.start_s.max(0.0).floor() as u64;
            let row = rows.entry(sec).or_insert_with(|| LatencyRow {
                t_s: sec as f64,
                ..LatencyRow::default()
            });
            let v = [iv.p50, iv.p99, iv.max];
            if iv.tag == tags::PUBLISH_ACK {
                row.ack = v;
            } else if iv.tag == tags::END_TO_END {
                row.e2e = v;
            }
        }
        rows.into_values().collect()
    }

    pub fn throughput_rows(&self) -> Vec<ThroughputRow> {
        self.timeseries
            .as_ref()
            .map(|ts| {
                ts.rows
                    .iter()
                    .map(|r| ThroughputRow {
                        t_s: r.t_s as f64,
                        offered: r.offered,
                        acked: r.acked,
                        failed: r.failed,
                        indeterminate: r.indeterminate,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whole-run histograms per tag, warmup excluded.
    pub fn histograms(&self) -> Option<&BTreeMap<String, Histogram<u64>>> {
        self.hlog.as_ref().map(|h| &h.merged)
    }

    /// Spectrum curves for ack and deliver, labels prefixed with `prefix` when not empty.
    pub fn spectrum(&self, prefix: &str) -> Vec<SpectrumSeries> {
        let hists = self.histograms();
        let lat = &self.summary.latency_us;
        let name = |m: &str| {
            if prefix.is_empty() {
                m.to_string()
            } else {
                format!("{prefix} {m}")
            }
        };
        [
            (tags::PUBLISH_ACK, "publish→ack", &lat.publish_ack),
            (tags::END_TO_END, "publish→deliver", &lat.end_to_end),
        ]
        .into_iter()
        .map(
            |(tag, m, pct)| match hists.and_then(|h| h.get(tag)).filter(|h| !h.is_empty()) {
                Some(h) => SpectrumSeries::from_histogram(&name(m), h),
                None => SpectrumSeries::from_percentiles(&name(m), pct),
            },
        )
        .filter(|s| !s.points.is_empty())
        .collect()
    }
}

pub fn target_name(t: Target) -> &'static str {
    match t {
        Target::Bus => "bus",
        Target::Redis => "redis",
    }
}
