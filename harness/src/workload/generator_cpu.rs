//! The load generator's own CPU, and the machine's, over the measured window.
//!
//! Send lag says the generator fell behind its schedule, not why. Two readings of
//! `/proc/self/task/*/stat` (this process's threads: the servers the harness started are
//! other processes and not in it) and of `/proc/stat` (the whole machine), one at the end of
//! the warmup and one at the end of the schedule, say whether the generator saturated its
//! CPUs or one thread, or the machine's CPUs were saturated by everything on it together.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use raftbus_reports::model::GeneratorCpu;

use crate::record::Clock;
use crate::target::cost::clock_ticks_per_s;

/// CPU ticks (`utime + stime`, fields 14-15) and name of one thread from the text of its
/// `stat` (the name, field 2, is in parentheses and may hold both).
pub fn parse_thread_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // `fields` starts at field 3 (state): field N is at index N - 3.
    let num = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((name, num(14)? + num(15)?))
}

/// Idle ticks (idle + I/O wait) of all CPUs and the number of CPUs from the text of
/// `/proc/stat`.
///
/// Only the idle time is used: on a tickless kernel it is measured at each entry to and exit
/// from idle, while the busy fields are sampled at the timer tick, and a CPU that wakes for
/// bursts shorter than a tick (a server doing one fsync per request) is charged almost
/// nothing. Measured here: 27 busy ticks of 1,328 in an 8 s window on 2 CPUs while the root
/// cgroup's `cpuacct.usage` counted 273; the 272 ticks missing from 1,600 were that work. So
/// busy is the window's CPU time minus idle, which also counts steal (not ours to use).
pub fn parse_proc_stat(text: &str) -> Option<(u64, u32)> {
    let mut lines = text.lines();
    let all: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait ...
    if all.len() < 5 {
        return None;
    }
    let idle = all[3] + all[4];
    let cpus = lines
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    Some((idle, cpus.max(1)))
}

/// Microseconds in which some runnable task waited for a CPU, from the text of
/// `/proc/pressure/cpu` (the `total=` of its `some` line).
pub fn parse_cpu_pressure(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total=")?.parse().ok())
}

/// One reading: per-thread ticks by tid, the machine's `(idle ticks, cpus)` and its CPU
/// pressure total (µs).
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub threads: HashMap<u32, (String, u64)>,
    pub machine: Option<(u64, u32)>,
    pub pressure_us: Option<u64>,
}

/// Reads this process's threads and the machine under `proc_root`.
pub fn read(proc_root: &Path) -> Reading {
    let mut threads = HashMap::new();
    if let Ok(dir) = std::fs::read_dir(proc_root.join("self/task")) {
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(t) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_thread_stat)
            {
                threads.insert(tid, t);
            }
        }
    }
    let machine = std::fs::read_to_string(proc_root.join("stat"))
        .ok()
        .as_deref()
        .and_then(parse_proc_stat);
    let pressure_us = std::fs::read_to_string(proc_root.join("pressure/cpu"))
        .ok()
        .as_deref()
        .and_then(parse_cpu_pressure);
    Reading {
        threads,
        machine,
        pressure_us,
    }
}

/// The figures between two readings `window` apart. A thread that started in between
/// counts from zero; one that ended in between is lost (the harness's long-lived threads
/// are the runtime's workers and the recorder). `None` without the machine's figures.
pub fn between(
    before: &Reading,
    after: &Reading,
    window: Duration,
    ticks_per_s: u64,
) -> Option<GeneratorCpu> {
    let ((b_idle, _), (a_idle, cpus)) = (before.machine?, after.machine?);
    let per_s = ticks_per_s.max(1) as f64;
    let window_s = window.as_secs_f64();
    let mut cpu_ticks = 0u64;
    let mut busiest = (String::new(), 0u64);
    for (tid, (name, ticks)) in &after.threads {
        let earlier = before.threads.get(tid).map_or(0, |t| t.1);
        let used = ticks.saturating_sub(earlier);
        cpu_ticks += used;
        if used > busiest.1 {
            busiest = (name.clone(), used);
        }
    }
    let capacity_ticks = window_s * per_s * f64::from(cpus);
    Some(GeneratorCpu {
        window_s,
        cpu_s: cpu_ticks as f64 / per_s,
        busiest_thread: busiest.0,
        busiest_thread_share: if window_s > 0.0 {
            (busiest.1 as f64 / per_s / window_s).min(1.0)
        } else {
            0.0
        },
        cpus,
        machine_busy: if capacity_ticks > 0.0 {
            (1.0 - a_idle.saturating_sub(b_idle) as f64 / capacity_ticks).clamp(0.0, 1.0)
        } else {
            0.0
        },
        cpu_pressure: match (before.pressure_us, after.pressure_us) {
            (Some(b), Some(a)) if window_s > 0.0 => {
                Some((a.saturating_sub(b) as f64 / 1e6 / window_s).min(1.0))
            }
            _ => None,
        },
    })
}

/// Waits for the load's time 0, reads at `warmup` and at `duration` (the measured window),
/// and returns the figures. Run beside the workload; it ends when the schedule does.
pub async fn measure(clock: Clock, warmup: Duration, duration: Duration) -> Option<GeneratorCpu> {
    let start = loop {
        if let Some(start) = clock.start() {
            break start;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let from = if warmup < duration {
        warmup
    } else {
        Duration::ZERO
    };
    tokio::time::sleep_until((start + from).into()).await;
    let proc_root = Path::new("/proc");
    let before = read(proc_root);
    let at = std::time::Instant::now();
    tokio::time::sleep_until((start + duration).into()).await;
    let after = read(proc_root);
    between(&before, &after, at.elapsed(), clock_ticks_per_s())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1\n";

    #[test]
    fn thread_names_may_hold_spaces_and_parentheses() {
        let text = "42 (tokio (rt) w) S 1 1 1 0 -1 0 0 0 0 0 30 12 0 0 20 0 1 0 5 0 0";
        assert_eq!(
            parse_thread_stat(text),
            Some(("tokio (rt) w".to_string(), 42))
        );
    }

    #[test]
    fn the_machine_counts_idle_and_iowait_as_not_busy() {
        assert_eq!(parse_proc_stat(STAT), Some((850, 2)));
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    fn reading(threads: &[(u32, &str, u64)], idle: u64) -> Reading {
        Reading {
            threads: threads
                .iter()
                .map(|(tid, name, t)| (*tid, (name.to_string(), *t)))
                .collect(),
            machine: Some((idle, 2)),
            pressure_us: None,
        }
    }

    #[test]
    fn a_window_sums_threads_and_names_the_busiest() {
        let before = reading(&[(1, "main", 10), (2, "worker", 100)], 9_000);
        // Thread 3 started inside the window: all of its ticks count.
        let after = reading(
            &[(1, "main", 10), (2, "worker", 190), (3, "recorder", 40)],
            9_020,
        );
        let g = between(&before, &after, Duration::from_secs(2), 100).unwrap();
        assert_eq!(g.cpu_s, 1.3);
        assert_eq!(g.busiest_thread, "worker");
        assert!((g.busiest_thread_share - 0.45).abs() < 1e-9);
        assert!((g.machine_busy - 0.95).abs() < 1e-9);
        assert_eq!(g.cpus, 2);
        assert!((g.cpus_used() - 0.65).abs() < 1e-9);
        assert!(
            g.why_behind().contains("compete for the CPUs"),
            "{}",
            g.why_behind()
        );
    }

    #[test]
    fn the_reason_names_what_saturated() {
        let g = |cpu_s: f64, thread: f64, machine: f64| GeneratorCpu {
            window_s: 10.0,
            cpu_s,
            busiest_thread: "recorder".into(),
            busiest_thread_share: thread,
            cpus: 2,
            machine_busy: machine,
            cpu_pressure: None,
        };
        assert!(g(19.0, 0.95, 0.99).why_behind().contains("1.90 of 2 CPUs"));
        assert!(g(9.5, 0.95, 0.6).why_behind().contains("thread recorder"));
        assert!(g(5.0, 0.5, 0.97).why_behind().contains("this machine's"));
        assert!(g(2.0, 0.2, 0.3)
            .why_behind()
            .contains("no CPU was saturated"));
        // Below saturation on average, yet tasks queued for a CPU: contention.
        let queued = GeneratorCpu {
            cpu_pressure: Some(0.3),
            ..g(3.0, 0.2, 0.75)
        };
        assert!(
            queued.why_behind().contains("compete for the CPUs"),
            "{}",
            queued.why_behind()
        );
    }

    #[test]
    fn cpu_pressure_is_the_some_total() {
        let text = "some avg10=20.83 avg60=13.84 avg300=3.92 total=2542904091\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_cpu_pressure(text), Some(2_542_904_091));
        assert_eq!(parse_cpu_pressure("full total=3\n"), None);
    }

    #[test]
    fn this_process_and_machine_can_be_read() {
        let r = read(Path::new("/proc"));
        assert!(!r.threads.is_empty(), "no threads read");
        let (idle, cpus) = r.machine.expect("/proc/stat");
        assert!(idle > 0 && cpus >= 1);
    }
}
