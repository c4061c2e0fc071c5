//! Disk faults end to end: the lazy filesystem under real servers makes fsync visible.
//! Redis `everysec` loses acknowledged writes in a coordinated power failure and `always`
//! does not; the bus loses nothing with its fsync on and loses acknowledged messages with
//! it off; a corrupted data file is never served; no mount outlives the harness.
//!
//! These need the namespace lab and FUSE; without them they fail loudly unless
//! `RAFTBUS_ALLOW_SKIP=1`.

use std::path::Path;

use raftbus_reports::model::{Summary, Verdict};

use crate::chaos::{chaos_args, children, require_lab, start_and_wait_for_fault, wait_gone};
use crate::util;

/// Whether FUSE mounts work here (the lab's probe says); panics unless skipping is allowed.
fn require_fuse() -> bool {
    let caps = raftbus_faults::probe();
    if caps.fuse {
        return true;
    }
    let why = caps.notes.join("; ");
    if std::env::var_os("RAFTBUS_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: the lazy filesystem is not available here: {why}");
        return false;
    }
    panic!("the lazy filesystem is not available ({why}); set RAFTBUS_ALLOW_SKIP=1 to skip");
}

/// A short disk-fault chaos run: one coordinated power failure of every node (a seeded
/// single-kind mix always targets all nodes once).
fn power_loss_run(dir: &Path, extra: &[&str]) -> (Option<i32>, Summary) {
    let d = dir.to_str().unwrap();
    let mut args = vec![
        "--faults",
        "power-loss",
        "--rate",
        "2000",
        "--duration",
        "14s",
        "--interval",
        "4s",
    ];
    args.extend_from_slice(extra);
    let out = util::run(&chaos_args(d, &args));
    let s = util::summary(dir);
    let all = s
        .faults
        .iter()
        .any(|f| f.kind == "power-loss" && f.detail.starts_with("all;"));
    assert!(all, "no power failure of all nodes: {:?}", s.faults);
    (out.status.code(), s)
}

fn attribution_names(s: &Summary, kind: &str) -> bool {
    s.environment
        .notes
        .iter()
        .any(|n| n.starts_with("loss attribution:") && n.contains(kind))
}

/// No FUSE mount under `dir` is left in the host's mount table.
fn assert_no_mount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let prefix = dir.to_str().unwrap();
    for line in mounts.lines() {
        let point = line.split_whitespace().nth(1).unwrap_or("");
        assert!(
            !point.starts_with(prefix),
            "mount left behind by the run: {line}"
        );
    }
}

#[test]
fn redis_everysec_loses_acked_writes_in_a_power_failure_and_always_does_not() {
    util::require_redis();
    if !require_lab() || !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let everysec = tmp.path().join("everysec");
    let (code, s) = power_loss_run(
        &everysec,
        &["--target", "redis", "--redis-persistence", "everysec"],
    );
    assert_eq!(code, Some(1), "{:?}", s.checks);
    assert_eq!(s.verdict, Verdict::Invalid);
    assert!(s.checks.lost > 0, "{:?}", s.checks);
    assert!(
        attribution_names(&s, "power-loss"),
        "the report does not name the fault that lost them: {:?}",
        s.environment.notes
    );
    assert_no_mount_under(&everysec);

    let always = tmp.path().join("always");
    let (code, s) = power_loss_run(
        &always,
        &["--target", "redis", "--redis-persistence", "always"],
    );
    assert_eq!(s.checks.lost, 0, "{:?}", s.checks);
    assert_eq!(code, Some(0), "{:?}", s.checks);
    assert_no_mount_under(&always);
}

#[test]
fn bus_loses_nothing_with_fsync_and_loses_acked_messages_without() {
    if !require_lab() || !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let synced = tmp.path().join("always");
    let (code, s) = power_loss_run(&synced, &["--bus-fsync", "always"]);
    assert_eq!(code, Some(0), "{:?}", s.checks);
    assert_eq!(s.checks.lost, 0);
    assert_eq!(s.checks.diverged, 0);

    let unsynced = tmp.path().join("never");
    let (code, s) = power_loss_run(&unsynced, &["--bus-fsync", "never"]);
    assert_eq!(code, Some(1), "{:?}", s.checks);
    assert!(s.checks.lost > 0, "{:?}", s.checks);
    assert!(
        s.environment.notes.iter().any(|n| n.contains("fsync")),
        "the known-bad setting is not in the report: {:?}",
        s.environment.notes
    );
    assert_no_mount_under(&unsynced);
}

#[test]
fn sigkill_of_the_harness_leaves_no_lazy_mount() {
    if !require_lab() || !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (mut child, _log) = start_and_wait_for_fault(&dir, &["--faults", "power-loss"]);
    let spawned = children(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    wait_gone(&spawned, &dir);
    assert_no_mount_under(&dir);
}

#[test]
fn a_corrupted_node_refuses_to_start_and_nothing_corrupt_is_served() {
    if !require_lab() || !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let out = util::run(&chaos_args(
        d,
        &[
            "--faults",
            "corrupt",
            "--rate",
            "1000",
            "--duration",
            "16s",
            "--interval",
            "4s",
        ],
    ));
    let s = util::summary(&dir);
    let window = s.faults.iter().find(|f| f.kind == "corrupt").unwrap();
    assert_eq!(window.targets.len(), 1, "a minority only: {window:?}");
    let node = &window.targets[0];
    // The bus detects the damage by checksum and refuses to start; the report says so,
    // and the verdict stands on the other nodes instead of becoming unknown.
    assert!(
        window.detail.contains("refused to start") && window.detail.contains("corrupt"),
        "{}",
        window.detail
    );
    assert!(
        s.checks
            .excused
            .iter()
            .any(|e| e.starts_with(node.as_str())),
        "{:?}",
        s.checks
    );
    // Damaged nodes stay down, so a later `corrupt` may not add to them past a minority:
    // it is refused, with a note, and the cluster keeps its majority.
    assert_eq!(s.checks.excused.len(), 1, "{:?}", s.checks.excused);
    assert_eq!(
        s.faults.iter().filter(|f| f.kind == "corrupt").count(),
        1,
        "{:?}",
        s.faults
    );
    assert_eq!(s.checks.corrupted, 0);
    assert_eq!(s.checks.lost, 0);
    assert_eq!(out.status.code(), Some(0), "{:?}", s.checks);
    assert_eq!(s.verdict, Verdict::Valid);
    assert_no_mount_under(&dir);
}

/// A rolling restart after a node refused to start (its log corrupted) restarts the nodes
/// that are up and ends once they are whole again, instead of waiting for the one that
/// stays down until the run ends.
#[test]
fn a_rolling_restart_after_a_corrupted_node_restarts_the_others_and_ends() {
    if !require_lab() || !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let scenario = tmp.path().join("corrupt-restart.toml");
    std::fs::write(
        &scenario,
        "version = 1\nname = \"corrupt-restart\"\ntarget = \"bus\"\nrate = 500\nwarmup = \"2s\"\n\
         channels = 2\nseed = 5\nduration = \"26s\"\n\
         [[fault]]\nat = \"3s\"\nduration = \"2s\"\nkind = \"corrupt\"\ntarget = \"n3\"\n\
         [[fault]]\nat = \"8s\"\nduration = \"10s\"\nkind = \"restart\"\n",
    )
    .unwrap();
    let out = util::run(&[
        "chaos",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let s = util::summary(&dir);
    assert_eq!(s.checks.excused.len(), 1, "n3 stays down: {:?}", s.checks);
    let restart = s.faults.iter().find(|f| f.kind == "restart").unwrap();
    let mut targets = restart.targets.clone();
    targets.sort();
    assert_eq!(targets, ["n1", "n2"], "{restart:?}");
    assert!(!restart.detail.contains("stopped"), "{}", restart.detail);
    assert!(
        restart.end_s < 20.0,
        "the restart ended with the cluster whole, not with the run: {restart:?}"
    );
    let recovery = s.recovery.iter().find(|r| r.kind == "restart").unwrap();
    assert!(recovery.first_ok_after_s.is_some(), "{recovery:?}");
}
