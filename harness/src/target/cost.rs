//! What a server process costs, over every lifetime it had: CPU seconds, peak and final
//! RSS and bytes written to storage from `/proc/<pid>/{stat,status,io}`, and fsyncs from
//! what the process itself reports (the bus's `INFO persistence` `log_fsyncs`).
//!
//! A process that dies takes its counters with it, and a fault may kill and restart it
//! several times, so the harness samples periodically (and right before it stops a
//! process itself) and keeps the last sample of each lifetime. The figures of a process
//! are then: CPU and write bytes summed over its lifetimes, peak RSS the maximum over
//! them, final RSS from the last sample of the last lifetime, fsyncs summed.
//!
//! Within one lifetime the counters only grow, so a sample never lowers them: a zombie's
//! `/proc` entry (killed, not yet reaped) still has its CPU times but no memory lines.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raftbus_reports::model::{Cost, ProcessCost, Target};
use tokio::sync::watch;

use super::Cluster;

/// One reading of `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// `starttime` (field 22 of `stat`): tells a lifetime from a reused pid.
    pub start_time: u64,
    /// `utime + stime + cutime + cstime` (fields 14-17 of `stat`), in clock ticks: the
    /// process's threads and the children it reaped (Redis's AOF-rewrite forks).
    pub cpu_ticks: u64,
    /// `VmHWM` of `status`, in bytes; absent for a zombie.
    pub peak_rss_bytes: Option<u64>,
    /// `VmRSS` of `status`, in bytes; absent for a zombie.
    pub rss_bytes: Option<u64>,
    /// `write_bytes` of `io` (what it caused to be sent to storage, reaped children
    /// included); absent when `io` cannot be read.
    pub write_bytes: Option<u64>,
}

/// `(start_time, cpu_ticks)` from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may hold spaces and parentheses, so
/// fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let cpu = num(14)? + num(15)? + num(16)? + num(17)?;
    Some((num(22)?, cpu))
}

/// `(VmHWM, VmRSS)` in bytes from the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> (Option<u64>, Option<u64>) {
    let kb = |key: &str| {
        text.lines().find_map(|line| {
            let v = line.strip_prefix(key)?.strip_prefix(':')?.trim();
            let n = v.strip_suffix("kB").unwrap_or(v).trim();
            n.parse::<u64>().ok().map(|k| k * 1024)
        })
    };
    (kb("VmHWM"), kb("VmRSS"))
}

/// `write_bytes` from the text of `/proc/<pid>/io`.
pub fn parse_io(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix("write_bytes:")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Reads `/proc/<pid>`; `None` once the process is gone (reaped).
pub fn sample(pid: u32) -> Option<ProcSample> {
    sample_in(Path::new("/proc"), pid)
}

/// [`sample`] under another proc root (tests).
pub fn sample_in(proc_root: &Path, pid: u32) -> Option<ProcSample> {
    let dir = proc_root.join(pid.to_string());
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    sample_from(
        &read("stat")?,
        read("status").as_deref(),
        read("io").as_deref(),
    )
}

/// A sample from the texts of `stat`, `status` and `io` (read here or on a remote host).
pub fn sample_from(stat: &str, status: Option<&str>, io: Option<&str>) -> Option<ProcSample> {
    let (start_time, cpu_ticks) = parse_stat(stat)?;
    let (peak_rss_bytes, rss_bytes) = status.map(parse_status).unwrap_or_default();
    Some(ProcSample {
        start_time,
        cpu_ticks,
        peak_rss_bytes,
        rss_bytes,
        write_bytes: io.and_then(parse_io),
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `stat`'s CPU times.
pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// One lifetime of a process: from a start to its death.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub pid: u32,
    /// From the first sample; later samples of another start time are another process.
    pub start_time: Option<u64>,
    pub cpu_ticks: u64,
    pub peak_rss_bytes: u64,
    /// From the latest sample that had it.
    pub rss_bytes: u64,
    pub write_bytes: u64,
    /// Whether `io` could be read at least once.
    pub io_read: bool,
    /// The latest count the process reported itself (`None`: never asked or never answered).
    pub fsyncs: Option<u64>,
    pub samples: u64,
}

/// Every lifetime of one server process, and the figures they add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostMeter {
    lifetimes: Vec<Lifetime>,
}

impl CostMeter {
    /// A new lifetime begins: the process was (re)started as `pid`.
    pub fn started(&mut self, pid: u32) {
        self.lifetimes.push(Lifetime {
            pid,
            ..Lifetime::default()
        });
    }

    pub fn lifetimes(&self) -> &[Lifetime] {
        &self.lifetimes
    }

    /// The current lifetime if it is `pid`'s.
    fn current(&mut self, pid: u32) -> Option<&mut Lifetime> {
        self.lifetimes.last_mut().filter(|l| l.pid == pid)
    }

    /// Records a sample of `pid` into its lifetime (ignored when `pid` is not the current
    /// lifetime's, or is another process under a reused pid).
    pub fn observe(&mut self, pid: u32, s: ProcSample) {
        let Some(l) = self.current(pid) else {
            return;
        };
        match l.start_time {
            Some(t) if t != s.start_time => return,
            Some(_) => {}
            None => l.start_time = Some(s.start_time),
        }
        l.samples += 1;
        l.cpu_ticks = l.cpu_ticks.max(s.cpu_ticks);
        if let Some(p) = s.peak_rss_bytes {
            l.peak_rss_bytes = l.peak_rss_bytes.max(p);
        }
        if let Some(r) = s.rss_bytes {
            l.rss_bytes = r;
            l.peak_rss_bytes = l.peak_rss_bytes.max(r);
        }
        if let Some(w) = s.write_bytes {
            l.write_bytes = l.write_bytes.max(w);
            l.io_read = true;
        }
    }

    /// Reads `/proc/<pid>` and records it.
    pub fn sample(&mut self, pid: u32) {
        if let Some(s) = sample(pid) {
            self.observe(pid, s);
        }
    }

    /// Records the fsync count `pid` reported (its own counter, reset by a restart).
    pub fn observe_fsyncs(&mut self, pid: u32, fsyncs: u64) {
        if let Some(l) = self.current(pid) {
            l.fsyncs = Some(l.fsyncs.unwrap_or(0).max(fsyncs));
        }
    }

    /// The figures over every lifetime. `fsyncs_reported`: whether this kind of process
    /// reports fsyncs at all (the bus does, Redis does not): then lifetimes that never
    /// answered count as zero; otherwise the figure is absent.
    pub fn figures(
        &self,
        name: &str,
        role: &str,
        ticks_per_s: u64,
        fsyncs_reported: bool,
    ) -> ProcessCost {
        let ticks: u64 = self.lifetimes.iter().map(|l| l.cpu_ticks).sum();
        ProcessCost {
            name: name.to_string(),
            role: role.to_string(),
            lifetimes: self.lifetimes.len() as u32,
            cpu_s: ticks as f64 / ticks_per_s.max(1) as f64,
            peak_rss_bytes: self
                .lifetimes
                .iter()
                .map(|l| l.peak_rss_bytes)
                .max()
                .unwrap_or(0),
            final_rss_bytes: self.lifetimes.last().map_or(0, |l| l.rss_bytes),
            write_bytes: self
                .lifetimes
                .iter()
                .any(|l| l.io_read)
                .then(|| self.lifetimes.iter().map(|l| l.write_bytes).sum()),
            fsyncs: fsyncs_reported.then(|| self.lifetimes.iter().filter_map(|l| l.fsyncs).sum()),
            unsampled_lifetimes: self.lifetimes.iter().filter(|l| l.samples == 0).count() as u32,
        }
    }
}

/// How often [`sample_periodically`] samples every process.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one `INFO persistence` may take before the sample goes without it.
const INFO_TIMEOUT: Duration = Duration::from_millis(1500);

/// The `log_fsyncs` field of a bus node's `INFO persistence`.
pub fn parse_log_fsyncs(info: &str) -> Option<u64> {
    super::info_field(info, "log_fsyncs").and_then(|v| v.parse().ok())
}

/// Asks each `(name, pid, addr)` for its fsync count, concurrently; answers that time out
/// (a paused or partitioned node) are left out.
pub async fn probe_fsyncs(probes: Vec<FsyncProbe>) -> Vec<(FsyncProbe, u64)> {
    let asks = probes.into_iter().map(|p| async move {
        let text = tokio::time::timeout(INFO_TIMEOUT, super::info(&p.name, p.addr, "persistence"))
            .await
            .ok()?
            .ok()?;
        parse_log_fsyncs(&text).map(|n| (p, n))
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// A process to ask for its fsync count: the answer belongs to lifetime `pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsyncProbe {
    pub name: String,
    pub pid: u32,
    pub addr: SocketAddr,
}

fn lock(c: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Samples every process of `cluster` each [`SAMPLE_INTERVAL`] (its `/proc` figures, and
/// the fsyncs the bus reports) until `stop` turns true, so that a process that dies keeps
/// the figures of its lifetime.
pub async fn sample_periodically(cluster: Arc<Mutex<Cluster>>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
        let probes = {
            let mut c = lock(&cluster);
            c.sample_cost();
            c.fsync_probes()
        };
        let answers = probe_fsyncs(probes).await;
        let mut c = lock(&cluster);
        for (p, n) in answers {
            c.observe_fsyncs(&p.name, p.pid, n);
        }
    }
}

/// Asks the running bus nodes for their fsync counts once more, right before they stop.
pub async fn final_fsyncs(cluster: &mut Cluster) {
    for (p, n) in probe_fsyncs(cluster.fsync_probes()).await {
        cluster.observe_fsyncs(&p.name, p.pid, n);
    }
}

/// The run's cost: `processes` added up and divided by the acknowledged messages.
pub fn summarize(
    target: Target,
    processes: Vec<ProcessCost>,
    acked: u64,
    mut notes: Vec<String>,
) -> Cost {
    let unsampled: Vec<String> = processes
        .iter()
        .filter(|p| p.unsampled_lifetimes > 0)
        .map(|p| format!("{} ({})", p.name, p.unsampled_lifetimes))
        .collect();
    if !unsampled.is_empty() {
        notes.push(format!(
            "lifetimes too short to be sampled, whose cost is missing: {}",
            unsampled.join(", ")
        ));
    }
    let mut cost = raftbus_reports::cost::tally(processes, acked);
    cost.clock_ticks_per_s = clock_ticks_per_s();
    cost.sample_interval_s = SAMPLE_INTERVAL.as_secs_f64();
    if target == Target::Redis {
        cost.fsyncs_absent = raftbus_reports::cost::REDIS_FSYNCS_ABSENT.to_string();
        notes.push(
            "Redis 7.0's INFO has no fsync count (appendfsync decides how often it fsyncs)"
                .to_string(),
        );
    }
    cost.notes = notes;
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `/proc/<pid>/stat` line of redis-server, with a command name that has a
    /// space and a parenthesis in it.
    const STAT: &str = "4242 (redis-server ) x) S 1 4242 4242 0 -1 4194560 1510 0 0 0 \
                        250 75 10 5 20 0 5 0 987654 77000000 2300 18446744073709551615 \
                        1 1 0 0 0 0 0 4097 17642 0 0 0 17 1 0 0 0 0 0\n";
    const STATUS: &str = "Name:\tredis-server\nUmask:\t0022\nState:\tS (sleeping)\n\
                          VmPeak:\t  120000 kB\nVmSize:\t  118000 kB\nVmHWM:\t    9216 kB\n\
                          VmRSS:\t    8192 kB\nThreads:\t5\n";
    const ZOMBIE_STATUS: &str = "Name:\traftbus-node\nState:\tZ (zombie)\nThreads:\t1\n";
    const IO: &str = "rchar: 6976\nwchar: 123456\nsyscr: 10\nsyscw: 40\nread_bytes: 0\n\
                      write_bytes: 40960\ncancelled_write_bytes: 4096\n";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // utime 250 + stime 75 + cutime 10 + cstime 5; starttime 987654.
        assert_eq!(parse_stat(STAT), Some((987_654, 340)));
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_bus_reports_its_fsyncs_in_info() {
        let info = "# Persistence\r\nlog_fsync:always\r\nlog_segments:1\r\nlog_bytes:9\r\n\
                    log_fsyncs:1234\r\nlog_entries_flushed:5000\r\n\r\n";
        assert_eq!(parse_log_fsyncs(info), Some(1234));
        assert_eq!(parse_log_fsyncs("# Persistence\r\naof_enabled:1\r\n"), None);
    }

    #[test]
    fn status_and_io_are_parsed_in_bytes() {
        assert_eq!(parse_status(STATUS), (Some(9216 * 1024), Some(8192 * 1024)));
        assert_eq!(parse_status(ZOMBIE_STATUS), (None, None));
        assert_eq!(parse_io(IO), Some(40_960));
        assert_eq!(parse_io("rchar: 1\n"), None);
    }

    #[test]
    fn a_fixture_proc_tree_is_sampled() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("4242");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), STAT).unwrap();
        std::fs::write(dir.join("status"), STATUS).unwrap();
        std::fs::write(dir.join("io"), IO).unwrap();
        assert_eq!(
            sample_in(root.path(), 4242),
            Some(ProcSample {
                start_time: 987_654,
                cpu_ticks: 340,
                peak_rss_bytes: Some(9216 * 1024),
                rss_bytes: Some(8192 * 1024),
                write_bytes: Some(40_960),
            })
        );
        std::fs::remove_file(dir.join("io")).unwrap();
        assert_eq!(sample_in(root.path(), 4242).unwrap().write_bytes, None);
        assert_eq!(sample_in(root.path(), 4243), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_bytes.unwrap() > 0);
        assert!(s.peak_rss_bytes.unwrap() >= s.rss_bytes.unwrap());
        assert!(clock_ticks_per_s() > 0);
    }

    fn s(start: u64, cpu: u64, hwm: u64, rss: u64, wb: u64) -> ProcSample {
        ProcSample {
            start_time: start,
            cpu_ticks: cpu,
            peak_rss_bytes: Some(hwm),
            rss_bytes: Some(rss),
            write_bytes: Some(wb),
        }
    }

    #[test]
    fn restarts_sum_cpu_and_writes_and_max_the_peak() {
        let mut m = CostMeter::default();
        m.started(10);
        m.observe(10, s(1, 100, 50, 40, 1000));
        m.observe(10, s(1, 300, 80, 60, 5000));
        m.observe_fsyncs(10, 7);
        // Killed: the zombie has its CPU times but no memory lines, and never lowers.
        m.observe(
            10,
            ProcSample {
                start_time: 1,
                cpu_ticks: 310,
                peak_rss_bytes: None,
                rss_bytes: None,
                write_bytes: Some(0),
            },
        );
        m.started(20);
        m.observe(20, s(9, 50, 30, 25, 700));
        m.observe_fsyncs(20, 3);
        // A sample of the dead lifetime arriving late is not this lifetime's.
        m.observe(10, s(1, 999, 999, 999, 999));
        m.observe_fsyncs(10, 100);
        let f = m.figures("n1", "bus node", 100, true);
        assert_eq!(f.lifetimes, 2);
        assert!((f.cpu_s - 3.6).abs() < 1e-9, "{}", f.cpu_s);
        assert_eq!(f.peak_rss_bytes, 80);
        assert_eq!(f.final_rss_bytes, 25);
        assert_eq!(f.write_bytes, Some(5700));
        assert_eq!(f.fsyncs, Some(10));
        assert_eq!(f.unsampled_lifetimes, 0);
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let mut m = CostMeter::default();
        m.started(10);
        m.observe(10, s(1, 100, 50, 40, 1000));
        m.observe(10, s(2, 5000, 5000, 5000, 5000));
        let f = m.figures("n1", "redis-server", 100, false);
        assert!((f.cpu_s - 1.0).abs() < 1e-9);
        assert_eq!(f.peak_rss_bytes, 50);
        assert_eq!(f.fsyncs, None);
    }

    #[test]
    fn a_lifetime_never_sampled_is_counted() {
        let mut m = CostMeter::default();
        m.started(10);
        m.observe(10, s(1, 100, 50, 40, 1000));
        m.started(11);
        let f = m.figures("n1", "bus node", 100, true);
        assert_eq!(f.unsampled_lifetimes, 1);
        assert_eq!(f.final_rss_bytes, 0);
        assert_eq!(f.fsyncs, Some(0));
        assert_eq!(
            CostMeter::default()
                .figures("x", "y", 100, false)
                .write_bytes,
            None
        );
    }
}
