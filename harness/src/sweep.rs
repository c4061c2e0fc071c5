//! `raftbus sweep`: find the capacity of each target configuration. Open-loop steps of
//! rising offered rate, each a full bench run in its own directory, until a step breaks
//! the latency objective, falls behind the offered rate, shows a violation, or the load
//! generator itself falls behind its schedule (then the limit found is the generator's,
//! and the sweep says so rather than blaming the target).
//!
//! The objective is judged on every scheduled publish (`publish_all`: failures at their
//! time to failure, unanswered ones at least at the timeout), not on successes only.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use raftbus_faults::Lab;
use raftbus_reports::model::{
    Percentiles, Summary, Sweep, SweepCurve, SweepStep, Target, Verdict, SCENARIO_FILE,
};

use crate::cli::SweepArgs;
use crate::run::{bench_one, exit, io_err, unix_now, verdict_code, RunError};
use crate::scenario::{RedisPersistence, TargetKind};

/// A step keeps up when it achieves at least this fraction of its offered rate.
pub const KEEP_UP: f64 = 0.95;
/// The generator is behind when its send lag at the objective's percentile exceeds this
/// fraction of the objective's bound: the latency measured is then partly its own.
pub const GENERATOR_LAG_SHARE: f64 = 0.5;

/// A latency objective such as `p99=10ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// `p50`, `p90`, `p99` or `p999`.
    pub percentile: String,
    pub quantile: f64,
    pub bound: Duration,
}

impl Slo {
    pub fn bound_us(&self) -> u64 {
        self.bound.as_micros() as u64
    }

    /// The value of this objective's percentile.
    pub fn of(&self, p: &Percentiles) -> u64 {
        match self.percentile.as_str() {
            "p50" => p.p50,
            "p90" => p.p90,
            "p99" => p.p99,
            _ => p.p999,
        }
    }
}

impl std::fmt::Display for Slo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} <= {}",
            self.percentile,
            humantime::format_duration(self.bound)
        )
    }
}

impl FromStr for Slo {
    type Err = String;

    fn from_str(s: &str) -> Result<Slo, String> {
        let (p, bound) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected PERCENTILE=DURATION, e.g. p99=10ms"))?;
        let (percentile, quantile) = match p.trim() {
            "p50" => ("p50", 0.5),
            "p90" => ("p90", 0.9),
            "p99" => ("p99", 0.99),
            "p999" | "p99.9" => ("p999", 0.999),
            other => {
                return Err(format!(
                    "{other:?}: the percentile must be p50, p90, p99 or p999"
                ))
            }
        };
        let bound = humantime::parse_duration(bound.trim())
            .map_err(|e| format!("{bound:?}: {e} (e.g. 10ms)"))?;
        if bound.is_zero() {
            return Err("the latency bound must be positive".into());
        }
        Ok(Slo {
            percentile: percentile.into(),
            quantile,
            bound,
        })
    }
}

/// Checks the offered rates of a sweep: at least one, each positive, rising.
pub fn validate_rates(rates: &[f64]) -> Result<(), String> {
    if rates.is_empty() {
        return Err("--rates needs at least one rate".into());
    }
    if let Some(r) = rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        return Err(format!("--rates: {r} is not a positive rate"));
    }
    if rates.windows(2).any(|w| w[1] <= w[0]) {
        return Err(format!(
            "--rates must rise step by step: {}",
            rates
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    Ok(())
}

/// What one step showed, and why the sweep stops there if it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub within_slo: bool,
    pub generator_behind: bool,
    /// Why the sweep of this configuration stops after this step (`None`: go on).
    pub stop: Option<String>,
}

/// Judges one step's summary against the objective.
pub fn judge(s: &Summary, slo: &Slo) -> Judgement {
    let offered = s.throughput.offered_per_s;
    let rate = raftbus_reports::html::fmt_rate(offered);
    let latency = slo.of(&s.latency_us.publish_all);
    let lag = slo.of(&s.latency_us.send_lag);
    let fmt = |us: u64| raftbus_reports::plot::fmt_us(us as f64);
    let generator_behind = lag as f64 > slo.bound_us() as f64 * GENERATOR_LAG_SHARE;
    let keeps_up = s.throughput.achieved_per_s >= offered * KEEP_UP;
    let stop = if s.verdict != Verdict::Valid {
        Some(format!(
            "the checks did not hold at {rate} (verdict {:?}): see that step's report",
            s.verdict
        ))
    } else if generator_behind {
        // Without CPU figures (older results), the lag alone cannot say more.
        let why = s.generator.as_ref().map_or_else(
            || "the limit is the generator's, not the target's".to_string(),
            |g| g.why_behind(),
        );
        Some(format!(
            "the load generator fell behind its schedule at {rate} (send lag {} {}): {why}",
            slo.percentile,
            fmt(lag)
        ))
    } else if latency > slo.bound_us() {
        Some(format!(
            "{} {} > {} at {rate}",
            slo.percentile,
            fmt(latency),
            fmt(slo.bound_us())
        ))
    } else if !keeps_up {
        Some(format!(
            "fell behind at {rate}: achieved {}",
            raftbus_reports::html::fmt_rate(s.throughput.achieved_per_s)
        ))
    } else {
        None
    };
    Judgement {
        within_slo: stop.is_none(),
        generator_behind,
        stop,
    }
}

/// The step's record in `sweep.json`.
pub fn step(s: &Summary, j: &Judgement, dir: String) -> SweepStep {
    SweepStep {
        offered_per_s: s.throughput.offered_per_s,
        achieved_per_s: s.throughput.achieved_per_s,
        publish_all: s.latency_us.publish_all.clone(),
        publish_ack: s.latency_us.publish_ack.clone(),
        send_lag: s.latency_us.send_lag.clone(),
        verdict: s.verdict,
        within_slo: j.within_slo,
        generator_behind: j.generator_behind,
        dir,
    }
}

/// The highest offered rate of the steps that held, all of them before the first that did
/// not (a later lucky step does not count).
pub fn max_rate_within(steps: &[SweepStep]) -> Option<f64> {
    steps
        .iter()
        .take_while(|s| s.within_slo)
        .map(|s| s.offered_per_s)
        .last()
}

/// The `schema` of `sweep.json`.
pub const SWEEP_SCHEMA: &str = "raftbus.sweep/1";

/// One curve to sweep: a target, with Redis's persistence setting.
fn configurations(
    kind: TargetKind,
    redis_configs: &[RedisPersistence],
    scenario_persistence: RedisPersistence,
) -> Vec<(Target, Option<RedisPersistence>)> {
    let redis: Vec<(Target, Option<RedisPersistence>)> = if redis_configs.is_empty() {
        vec![(Target::Redis, Some(scenario_persistence))]
    } else {
        redis_configs
            .iter()
            .map(|p| (Target::Redis, Some(*p)))
            .collect()
    };
    match kind {
        TargetKind::Bus => vec![(Target::Bus, None)],
        TargetKind::Redis => redis,
        TargetKind::Both => std::iter::once((Target::Bus, None)).chain(redis).collect(),
    }
}

fn slug(target: Target, persistence: Option<RedisPersistence>) -> String {
    match (target, persistence) {
        (Target::Bus, _) | (_, None) => raftbus_reports::run::target_name(target).to_string(),
        (Target::Redis, Some(p)) => format!("redis-{}", p.as_str()),
    }
}

/// `raftbus sweep`: every configuration's steps, then `sweep.json` and its report.
pub async fn run_sweep(args: SweepArgs, lab: Option<Arc<Lab>>) -> Result<u8, RunError> {
    if args.bench.duration.is_some() || args.bench.rate.is_some() {
        return Err(RunError::Usage(
            "a sweep sets each step's rate (--rates) and length (--step, after --warmup); \
             --rate and --duration do not apply"
                .into(),
        ));
    }
    validate_rates(&args.rates).map_err(RunError::Usage)?;
    let base = crate::run::resolve_scenario(&args.bench)?;
    let seed = base.seed.expect("resolved");
    let dir = args.bench.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("{}-{}-sweep", unix_now(), base.name))
    });
    std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(io_err(format!("resolve {}", dir.display())))?;
    base.write(&dir)?;
    let rates: Vec<String> = args.rates.iter().map(|r| r.to_string()).collect();
    let mut rerun = format!(
        "raftbus sweep --scenario {} --seed {seed} --rates {} --slo {}={} --step {}",
        dir.join(SCENARIO_FILE).display(),
        rates.join(","),
        args.slo.percentile,
        humantime::format_duration(args.slo.bound),
        humantime::format_duration(args.step)
    );
    if !args.redis_configs.is_empty() {
        let list: Vec<&str> = args.redis_configs.iter().map(|p| p.as_str()).collect();
        rerun.push_str(&format!(" --redis-configs {}", list.join(",")));
    }
    if let Some(bin) = &args.bench.node_bin {
        rerun.push_str(&format!(" --node-bin {}", bin.display()));
    }
    eprintln!("raftbus: seed {seed}, sweep results in {}", dir.display());
    eprintln!("raftbus: rerun with: {rerun}");

    let started_at = unix_now();
    let mut curves = Vec::new();
    let mut code = exit::VALID;
    for (target, persistence) in
        configurations(base.target, &args.redis_configs, base.redis.persistence)
    {
        let name = slug(target, persistence);
        let mut steps = Vec::new();
        let mut label = name.clone();
        let mut stopped = None;
        for &rate in &args.rates {
            let mut s = base.clone();
            s.rate = rate;
            s.duration = s.warmup + args.step;
            s.name = format!("{}-{name}-{rate}", base.name);
            if let Some(p) = persistence {
                s.redis.persistence = p;
            }
            s.validate()?;
            let step_name = format!("{name}/rate-{rate}");
            let tdir = dir.join(&step_name);
            std::fs::create_dir_all(&tdir).map_err(io_err(format!("create {}", tdir.display())))?;
            s.write(&tdir)?;
            eprintln!(
                "raftbus: sweep {name}: {rate}/s for {}",
                humantime::format_duration(args.step)
            );
            let work = bench_one(&s, &args.bench, target, &tdir, &rerun, lab.as_ref(), None);
            let summary = tokio::select! {
                r = work => r?,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("raftbus: interrupted; servers stopped, sweep results in {} are incomplete", dir.display());
                    return Err(RunError::Interrupted);
                }
            };
            if let Err(e) = raftbus_reports::render_run(&tdir) {
                tracing::warn!(error = %e, dir = %tdir.display(), "cannot render the step's report");
            }
            code = code.max(verdict_code(&summary));
            label = if summary.target_detail.is_empty() {
                name.clone()
            } else {
                format!(
                    "{} ({})",
                    raftbus_reports::run::target_name(target),
                    summary.target_detail
                )
            };
            let j = judge(&summary, &args.slo);
            let p = &summary.latency_us.publish_all;
            eprintln!(
                "raftbus: sweep {name}: offered {:.0}/s achieved {:.0}/s, p50 {} p99 {} p99.9 {} — {}",
                summary.throughput.offered_per_s,
                summary.throughput.achieved_per_s,
                raftbus_reports::plot::fmt_us(p.p50 as f64),
                raftbus_reports::plot::fmt_us(p.p99 as f64),
                raftbus_reports::plot::fmt_us(p.p999 as f64),
                j.stop.as_deref().unwrap_or("holds")
            );
            steps.push(step(&summary, &j, step_name));
            if j.stop.is_some() {
                stopped = j.stop;
                break;
            }
        }
        curves.push(SweepCurve {
            label,
            target,
            max_rate_within_slo: max_rate_within(&steps),
            stopped: stopped.unwrap_or_else(|| {
                "every rate given held: add higher --rates to find the limit".into()
            }),
            steps,
        });
    }
    let sweep = Sweep {
        schema: SWEEP_SCHEMA.into(),
        name: base.name.clone(),
        seed,
        started_at,
        slo: args.slo.to_string(),
        slo_quantile: args.slo.quantile,
        slo_us: args.slo.bound_us(),
        step_s: args.step.as_secs_f64(),
        rerun,
        curves,
    };
    sweep.write(&dir)?;
    println!("\ncapacity within {} (every scheduled publish):", sweep.slo);
    for c in &sweep.curves {
        println!(
            "  {:<60} {:>12}   {}",
            c.label,
            c.max_rate_within_slo
                .map(raftbus_reports::html::fmt_rate)
                .unwrap_or_else(|| "none".into()),
            c.stopped
        );
    }
    match raftbus_reports::render_sweep(&dir) {
        Ok(r) => println!("report   {}", r.html.display()),
        Err(e) => tracing::warn!(error = %e, "cannot render the sweep report"),
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftbus_reports::model::{Latency, Throughput};

    fn summary(offered: f64, achieved: f64, p99_us: u64, lag_p99_us: u64) -> Summary {
        let dir = tempfile::tempdir().unwrap();
        let mut s = raftbus_reports::synthetic::SyntheticRun::default()
            .write(dir.path())
            .unwrap();
        s.verdict = Verdict::Valid;
        s.throughput = Throughput {
            offered_per_s: offered,
            achieved_per_s: achieved,
        };
        s.latency_us = Latency {
            publish_all: Percentiles {
                p99: p99_us,
                ..Percentiles::default()
            },
            send_lag: Percentiles {
                p99: lag_p99_us,
                ..Percentiles::default()
            },
            ..Latency::default()
        };
        s
    }

    fn p99_10ms() -> Slo {
        "p99=10ms".parse().unwrap()
    }

    #[test]
    fn objectives_parse_and_bad_ones_say_why() {
        let s = p99_10ms();
        assert_eq!((s.percentile.as_str(), s.quantile), ("p99", 0.99));
        assert_eq!(s.bound_us(), 10_000);
        assert_eq!(s.to_string(), "p99 <= 10ms");
        assert_eq!("p99.9=1s".parse::<Slo>().unwrap().percentile, "p999");
        assert!("p98=1ms".parse::<Slo>().unwrap_err().contains("p50, p90"));
        assert!("p99"
            .parse::<Slo>()
            .unwrap_err()
            .contains("PERCENTILE=DURATION"));
        assert!("p99=fast".parse::<Slo>().is_err());
        assert!("p99=0ms".parse::<Slo>().unwrap_err().contains("positive"));
    }

    #[test]
    fn rates_must_be_positive_and_rising() {
        assert!(validate_rates(&[1000.0, 2000.0]).is_ok());
        assert!(validate_rates(&[]).is_err());
        assert!(validate_rates(&[0.0]).is_err());
        assert!(validate_rates(&[2000.0, 1000.0])
            .unwrap_err()
            .contains("rise"));
        assert!(validate_rates(&[1000.0, 1000.0]).is_err());
    }

    #[test]
    fn a_step_holds_only_within_the_bound_keeping_up_and_valid() {
        let slo = p99_10ms();
        let ok = judge(&summary(1000.0, 999.0, 10_000, 100), &slo);
        assert!(ok.within_slo && ok.stop.is_none() && !ok.generator_behind);
        let slow = judge(&summary(1000.0, 999.0, 10_001, 100), &slo);
        assert!(!slow.within_slo);
        assert!(slow.stop.unwrap().starts_with("p99 "));
        let behind = judge(&summary(1000.0, 949.0, 1_000, 100), &slo);
        assert!(behind.stop.unwrap().starts_with("fell behind"));
        let just = judge(&summary(1000.0, 950.0, 1_000, 100), &slo);
        assert!(just.within_slo);
        let mut bad = summary(1000.0, 1000.0, 1_000, 100);
        bad.verdict = Verdict::Invalid;
        assert!(judge(&bad, &slo)
            .stop
            .unwrap()
            .contains("checks did not hold"));
    }

    #[test]
    fn a_lagging_generator_is_named_not_the_target() {
        let slo = p99_10ms();
        let j = judge(&summary(1000.0, 1000.0, 50_000, 5_001), &slo);
        assert!(j.generator_behind && !j.within_slo);
        assert!(j.stop.unwrap().contains("generator"));
        let j = judge(&summary(1000.0, 1000.0, 1_000, 5_000), &slo);
        assert!(!j.generator_behind && j.within_slo);
    }

    #[test]
    fn capacity_is_the_last_holding_step_before_the_first_break() {
        let slo = p99_10ms();
        let steps: Vec<SweepStep> = [
            (1000.0, 1_000),
            (2000.0, 2_000),
            (5000.0, 90_000),
            (9000.0, 1_000),
        ]
        .iter()
        .map(|&(r, p99)| {
            let s = summary(r, r, p99, 0);
            step(&s, &judge(&s, &slo), format!("rate-{r}"))
        })
        .collect();
        assert_eq!(max_rate_within(&steps), Some(2000.0));
        assert_eq!(max_rate_within(&steps[2..]), None);
        assert_eq!(max_rate_within(&[]), None);
    }
}
