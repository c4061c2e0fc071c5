//! Synthetic results directories: plausible runs written through the real model and hlog
//! writer, for tests, benchmarks and trying the reports without a cluster.
//!
//! Values are deterministic for a given seed. Inside fault windows latency rises and part
//! of the load fails, so the charts have something to show.

use std::path::Path;

use hdrhistogram::Histogram;

use crate::error::ReportError;
use crate::hlog::HlogWriter;
use crate::model::{
    tags, Checks, Cost, Environment, FaultWindow, Latency, Mode, Percentiles, ProcessCost,
    Recovery, SecondRow, Summary, Target, Throughput, TimeSeries, Verdict, ViolationReport,
    Workload, HLOG_FILE, SUMMARY_SCHEMA,
};

/// Parameters of a synthetic run.
#[derive(Debug, Clone)]
pub struct SyntheticRun {
    pub name: String,
    pub target: Target,
    pub target_detail: String,
    pub seed: u64,
    pub started_at: u64,
    /// Whole run, warmup included.
    pub duration_s: u64,
    pub warmup_s: u64,
    /// Offered publishes per second.
    pub rate: u64,
    /// Histogram samples recorded per second and metric (a sample of the load).
    pub samples_per_s: u64,
    /// Median publish→ack latency outside faults.
    pub base_latency_us: f64,
    /// Fraction of the offered load achieved outside faults.
    pub achieved_fraction: f64,
    pub faults: Vec<FaultWindow>,
    pub violations: Vec<ViolationReport>,
    /// CPU seconds the target spends per 1,000 acknowledged messages; `None`: the run has
    /// no cost figures (as results written before they were measured).
    pub cpu_s_per_1k: Option<f64>,
    /// Peak RSS of each server process, bytes.
    pub peak_rss_bytes: u64,
}

impl Default for SyntheticRun {
    fn default() -> Self {
        SyntheticRun {
            name: "synthetic".to_string(),
            target: Target::Bus,
            target_detail: String::new(),
            seed: 1,
            started_at: 1_700_000_000,
            duration_s: 60,
            warmup_s: 5,
            rate: 2000,
            samples_per_s: 400,
            base_latency_us: 900.0,
            achieved_fraction: 1.0,
            faults: Vec::new(),
            violations: Vec::new(),
            cpu_s_per_1k: Some(0.04),
            peak_rss_bytes: 24 << 20,
        }
    }
}

/// SplitMix64: small, seedable, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, v: f64) {
    h.saturating_record(v.max(1.0) as u64);
}

impl SyntheticRun {
    /// Plausible cost figures: the bus's three nodes share the work and each fsyncs; Redis
    /// is one process that does not report fsyncs.
    fn cost(&self, cpu_s_per_1k: f64, acked: u64) -> Cost {
        let (names, role): (Vec<&str>, &str) = match self.target {
            Target::Bus => (vec!["n1", "n2", "n3"], "bus node"),
            Target::Redis => (vec!["n1"], "redis-server"),
        };
        let share = names.len() as f64;
        let processes = names
            .iter()
            .map(|n| ProcessCost {
                name: n.to_string(),
                role: role.to_string(),
                lifetimes: 1,
                cpu_s: cpu_s_per_1k * acked as f64 / 1000.0 / share,
                peak_rss_bytes: self.peak_rss_bytes,
                final_rss_bytes: self.peak_rss_bytes * 9 / 10,
                write_bytes: Some(acked * 4096 / 8),
                fsyncs: (self.target == Target::Bus).then_some(acked / 8),
                unsampled_lifetimes: 0,
            })
            .collect();
        let mut cost = crate::cost::tally(processes, acked);
        cost.clock_ticks_per_s = 100;
        cost.sample_interval_s = 1.0;
        if self.target == Target::Redis {
            cost.fsyncs_absent = crate::cost::REDIS_FSYNCS_ABSENT.to_string();
        }
        cost
    }

    /// Writes `summary.json`, `timeseries.json` and `latency.hlog` into `dir` (created if
    /// needed) and returns the summary.
    pub fn write(&self, dir: &Path) -> Result<Summary, ReportError> {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        let mut rng = Rng(self.seed ^ 0x5eed);
        let mut hlog = HlogWriter::create(&dir.join(HLOG_FILE), self.started_at as f64)?;
        let (mut all_ack, mut all_e2e, mut all_lag) = (new_hist(), new_hist(), new_hist());
        let mut rows = Vec::new();
        let mut checks = Checks::default();
        let in_fault = |t: f64| {
            self.faults
                .iter()
                .any(|f| t + 1.0 > f.start_s && t < f.end_s)
        };
        for t in 0..self.duration_s {
            let tf = t as f64;
            let faulty = in_fault(tf);
            let (mult, frac) = if faulty {
                (18.0, 0.35 * self.achieved_fraction)
            } else {
                (1.0, self.achieved_fraction)
            };
            let (mut ack, mut e2e, mut lag) = (new_hist(), new_hist(), new_hist());
            for _ in 0..self.samples_per_s {
                let a = self.base_latency_us * mult * (0.45 * rng.normal()).exp();
                record(&mut ack, a);
                record(&mut e2e, a * 1.3 + 150.0 * rng.unit());
                record(&mut lag, 5.0 + 40.0 * rng.unit());
            }
            if rng.unit() < 0.1 {
                // An occasional outlier, so max and p99.9 differ.
                record(&mut ack, self.base_latency_us * mult * 30.0);
            }
            hlog.write_interval(tags::PUBLISH_ACK, tf, 1.0, &ack)?;
            hlog.write_interval(tags::END_TO_END, tf, 1.0, &e2e)?;
            hlog.write_interval(tags::SEND_LAG, tf, 1.0, &lag)?;
            let offered = self.rate;
            let acked = (offered as f64 * frac) as u64;
            let failed = if faulty { (offered - acked) * 2 / 3 } else { 0 };
            let indeterminate = if faulty { offered - acked - failed } else { 0 };
            let delivered = acked * 3;
            rows.push(SecondRow {
                t_s: t,
                offered,
                acked,
                failed,
                indeterminate,
                delivered,
                ack_p50_us: ack.value_at_quantile(0.5),
                ack_p99_us: ack.value_at_quantile(0.99),
                ack_max_us: ack.max(),
                e2e_p50_us: e2e.value_at_quantile(0.5),
                e2e_p99_us: e2e.value_at_quantile(0.99),
                e2e_max_us: e2e.max(),
            });
            if t >= self.warmup_s {
                all_ack.add(&ack).expect("same bounds");
                all_e2e.add(&e2e).expect("same bounds");
                all_lag.add(&lag).expect("same bounds");
                checks.acked += acked;
                checks.failed += failed;
                checks.indeterminate += indeterminate;
                checks.delivered += delivered;
            }
        }
        hlog.finish()?;
        for v in &self.violations {
            match v.kind.as_str() {
                "lost" => {
                    checks.lost += v.count;
                    checks.lost_mid_stream += v.count;
                }
                "duplicated" => checks.duplicated += v.count,
                "reordered" => checks.reordered += v.count,
                "diverged" => checks.diverged += v.count,
                _ => checks.phantom += v.count,
            }
        }
        checks.violations = self.violations.clone();
        let measured = (self.duration_s.saturating_sub(self.warmup_s)).max(1) as f64;
        let mut summary = Summary {
            schema: SUMMARY_SCHEMA.to_string(),
            name: self.name.clone(),
            target: self.target,
            target_detail: self.target_detail.clone(),
            seed: self.seed,
            verdict: if self.violations.is_empty() {
                Verdict::Valid
            } else {
                Verdict::Invalid
            },
            started_at: self.started_at,
            rerun: format!(
                "raftbus chaos --scenario scenarios/{}.toml --seed {} --target {}",
                self.name,
                self.seed,
                crate::run::target_name(self.target)
            ),
            workload: Workload {
                rate: self.rate as f64,
                duration_s: (self.duration_s - self.warmup_s.min(self.duration_s)) as f64,
                warmup_s: self.warmup_s as f64,
                size: 100,
                mode: Mode::Stream,
                channels: 8,
                publishers: 4,
                subscribers_per_node: 1,
                nodes: 3,
            },
            throughput: Throughput {
                offered_per_s: self.rate as f64,
                achieved_per_s: checks.acked as f64 / measured,
            },
            latency_us: Latency {
                publish_ack: percentiles(&all_ack),
                // Synthetic runs have no failed publishes to time.
                publish_all: percentiles(&all_ack),
                publish_censored: 0,
                end_to_end: percentiles(&all_e2e),
                consumed: Default::default(),
                send_lag: percentiles(&all_lag),
                read: Default::default(),
            },
            checks,
            faults: self.faults.clone(),
            recovery: self
                .faults
                .iter()
                .map(|f| Recovery {
                    kind: f.kind.clone(),
                    healed_at_s: f.end_s,
                    first_ok_after_s: Some(0.2 + rng.unit()),
                    started_at_s: f.start_s,
                    first_ok_after_start_s: Some(1.0 + rng.unit()),
                    availability: Some(0.5 + rng.unit() / 2.0),
                    unavailable_s: rng.unit() * (f.end_s - f.start_s),
                    lost: 0,
                })
                .collect(),
            environment: Environment {
                network: "namespaces".to_string(),
                kernel: "6.18.0".to_string(),
                cpus: 2,
                hostname: "synthetic".to_string(),
                harness_version: env!("CARGO_PKG_VERSION").to_string(),
                target_version: match self.target {
                    Target::Bus => format!("raftbus-node {}", env!("CARGO_PKG_VERSION")),
                    Target::Redis => "redis-server 7.0.15".to_string(),
                },
                notes: vec!["netem: unavailable, userspace delay used".to_string()],
            },
            cost: None,
            generator: None,
        };
        summary.cost = self
            .cpu_s_per_1k
            .map(|k| self.cost(k, summary.checks.acked));
        summary.write(dir)?;
        TimeSeries {
            warmup_s: self.warmup_s as f64,
            rows,
            extra: Default::default(),
        }
        .write(dir)?;
        Ok(summary)
    }
}
