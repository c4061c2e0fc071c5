//! `raftbus chaos`: faults really happen, the summary says so, and nothing is left behind
//! (no server processes, no interfaces, namespaces or nftables tables in the host
//! namespace) after a normal end, Ctrl-C, or SIGKILL of the harness itself.
//!
//! These need network namespaces (root, or unprivileged user namespaces); without them
//! they fail loudly unless `RAFTBUS_ALLOW_SKIP=1`.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftbus_reports::model::{Summary, Verdict};

use crate::util;

pub(crate) use util::require_lab;

pub(crate) fn chaos_args<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["chaos", "--out", dir];
    for (flag, value) in [
        ("--rate", "200"),
        ("--duration", "25s"),
        ("--warmup", "2s"),
        ("--interval", "5s"),
        ("--recovery", "5s"),
        ("--publishers", "2"),
        ("--channels", "2"),
        ("--seed", "7"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// Everything a chaos summary must hold whatever the target did.
fn assert_faults_recorded(dir: &Path, expected: &[&str]) -> Summary {
    let s = util::summary(dir);
    for kind in expected {
        assert!(
            s.faults.iter().any(|f| f.kind == *kind),
            "no {kind} fault in summary.json: {:?}",
            s.faults
        );
    }
    for f in &s.faults {
        assert!(f.end_s > f.start_s, "empty window {f:?}");
        assert!(!f.targets.is_empty(), "no targets {f:?}");
    }
    // One recovery entry per fault window, and the history has the windows too.
    assert_eq!(s.recovery.len(), s.faults.len(), "{:?}", s.recovery);
    let windows = util::history(dir)
        .into_iter()
        .filter(|e| matches!(e, raftbus::history::Event::Fault { .. }))
        .count();
    assert_eq!(windows, s.faults.len());
    assert!(
        s.environment
            .notes
            .iter()
            .any(|n| n.contains("chaos schedule")),
        "{:?}",
        s.environment.notes
    );
    s
}

#[test]
fn bus_survives_kill_pause_partition() {
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let out = util::run(&chaos_args(d, &["--faults", "kill,pause,partition"]));
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let s = assert_faults_recorded(&dir, &["kill", "pause", "partition"]);
    assert_eq!(s.verdict, Verdict::Valid);
    assert!(
        s.environment.network.ends_with("namespaces"),
        "{}",
        s.environment.network
    );
    assert!(
        s.recovery.iter().all(|r| r.first_ok_after_s.is_some()),
        "the bus did not recover after every heal: {:?}",
        s.recovery
    );
    assert_eq!(s.checks.lost, 0);
    let again = tmp.path().join("again");
    let bad = util::run(&[
        "chaos",
        "--scenario",
        dir.join("scenario.toml").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--duration",
        "12s",
    ]);
    // Too short for the same mix: refused up front, as a usage error naming the minimum.
    assert_eq!(bad.status.code(), Some(2), "{}", util::stderr(&bad));
    assert!(
        util::stderr(&bad).contains("--duration"),
        "{}",
        util::stderr(&bad)
    );
}

#[test]
fn bus_delay_loss_bandwidth_and_rolling_restart() {
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let out = util::run(&chaos_args(
        d,
        &[
            "--faults",
            "delay,loss,bandwidth,restart",
            "--duration",
            "40s",
            "--interval",
            "6s",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let s = assert_faults_recorded(&dir, &["delay", "loss", "bandwidth", "restart"]);
    assert_eq!(s.verdict, Verdict::Valid);
    assert!(
        s.environment.notes.iter().any(|n| n.contains("userspace")),
        "{:?}",
        s.environment.notes
    );
    let restart = s.faults.iter().find(|f| f.kind == "restart").unwrap();
    assert_eq!(
        restart.targets.len(),
        3,
        "every node restarted: {restart:?}"
    );
}

#[test]
fn loopback_lab_partitions_through_proxies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let out = util::raftbus()
        .args(chaos_args(d, &["--faults", "partition,kill"]))
        .env("RAFTBUS_LAB", "loopback")
        .output()
        .unwrap();
    let stderr = util::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = assert_faults_recorded(&dir, &["partition", "kill"]);
    assert_eq!(s.environment.network, "loopback");
    assert!(
        s.environment.notes.iter().any(|n| n.contains("loopback")),
        "{:?}",
        s.environment.notes
    );
    // Loss needs nftables: refused with the environment exit code.
    let out = util::raftbus()
        .args(chaos_args(
            tmp.path().join("loss").to_str().unwrap(),
            &["--faults", "loss"],
        ))
        .env("RAFTBUS_LAB", "loopback")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", util::stderr(&out));
}

#[test]
fn redis_primary_kill_runs_to_completion() {
    util::require_redis();
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let out = util::run(&chaos_args(
        d,
        &[
            "--target",
            "redis",
            "--redis-persistence",
            "everysec",
            "--redis-replicas",
            "1",
            "--faults",
            "kill,partition",
        ],
    ));
    // Redis may lose acknowledged writes: 1 (violation) is as fine as 0, a crash is not.
    let code = out.status.code();
    assert!(matches!(code, Some(0) | Some(1)), "{}", util::stderr(&out));
    let s = assert_faults_recorded(&dir, &["kill", "partition"]);
    assert_eq!(code == Some(1), s.verdict == Verdict::Invalid);
    if s.checks.lost > 0 {
        assert!(s.checks.violations.iter().any(|v| v.count > 0));
    }
}

/// Pids of the direct children of `pid` (node servers, redis, lab holders).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            out.push(p);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

fn output_of(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes whose command line mentions `dir` (servers started for that run).
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let out = output_of("pgrep", &["-a", "-f", dir.to_str().unwrap()]);
    out.lines()
        .filter(|l| !l.contains("pgrep"))
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .is_some_and(alive)
        })
        .map(str::to_string)
        .collect()
}

/// Starts a chaos run with stderr in a file and waits until a fault is applied.
pub(crate) fn start_and_wait_for_fault(dir: &Path, extra: &[&str]) -> (Child, std::path::PathBuf) {
    let log = dir.with_extension("stderr");
    let d = dir.to_str().unwrap();
    let mut extra = extra.to_vec();
    extra.extend(["--duration", "60s"]);
    let args = chaos_args(d, &extra);
    let mut child = util::raftbus()
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&log) {
            let _ = f.read_to_string(&mut text);
        }
        if text.contains("fault applied") {
            return (child, log);
        }
        if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no fault applied within 60s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_host_namespace_clean() {
    let links = output_of("ip", &["-o", "link", "show"]);
    for line in links.lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        assert!(
            name != "rb0" && !name.starts_with("vh-") && !name.starts_with("vp-"),
            "lab interface left in the host namespace: {line}"
        );
    }
    let tables = output_of("nft", &["list", "tables"]);
    assert!(
        !tables.lines().any(|l| l.trim() == "table bridge raftbus"),
        "nft table left in the host namespace:\n{tables}"
    );
    let netns = output_of("ip", &["netns", "list"]);
    assert!(
        !netns
            .lines()
            .any(|l| l.contains("raftbus") || l.starts_with("rb")),
        "named netns left behind:\n{netns}"
    );
}

pub(crate) fn wait_gone(pids: &[u32], dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        let named = processes_mentioning(dir);
        if left.is_empty() && named.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind: pids {left:?}, by command line {named:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_heals_and_leaves_nothing_behind() {
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (mut child, log) = start_and_wait_for_fault(&dir, &["--faults", "pause,partition"]);
    let pid = child.id();
    let spawned = children(pid);
    assert!(
        !processes_mentioning(&dir).is_empty(),
        "no node processes found for the run"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("fault healed"),
        "no heal on Ctrl-C:\n{stderr}"
    );
    wait_gone(&spawned, &dir);
    assert_host_namespace_clean();
}

#[test]
fn sigkill_of_the_harness_leaves_nothing_behind() {
    util::require_redis();
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (mut child, _log) = start_and_wait_for_fault(
        &dir,
        &[
            "--target",
            "redis",
            "--redis-replicas",
            "1",
            "--faults",
            "pause,partition",
        ],
    );
    let spawned = children(child.id());
    let servers = output_of("pgrep", &["-a", "-x", "redis-server"]);
    let ours: Vec<&str> = servers
        .lines()
        .filter(|l| {
            l.contains(dir.to_str().unwrap())
                || spawned.iter().any(|p| l.starts_with(&format!("{p} ")))
        })
        .collect();
    assert!(!ours.is_empty(), "no redis-server of this run: {servers}");
    child.kill().unwrap();
    child.wait().unwrap();
    wait_gone(&spawned, &dir);
    // pgrep also lists zombies waiting for init to reap them: only running ones count.
    let servers = output_of("pgrep", &["-x", "redis-server"]);
    for p in servers.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        assert!(
            !(spawned.contains(&p) && alive(p)),
            "redis-server {p} survived"
        );
    }
    assert_host_namespace_clean();
}
