//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::{Command, Output};

use raftbus::history::Event;
use raftbus_reports::model::Summary;

/// The `raftbus` binary under test.
pub fn raftbus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_raftbus"))
}

/// Fails the test with a clear message when redis-server is missing (CI installs it).
pub fn require_redis() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "redis-server is not on PATH; these tests need it: sudo apt-get install -y redis-server"
    );
}

/// Whether the namespace lab can run here; panics (or skips with RAFTBUS_ALLOW_SKIP=1).
pub fn require_lab() -> bool {
    let caps = raftbus_faults::probe();
    if caps.full_lab() {
        return true;
    }
    let why = caps.notes.join("; ");
    if std::env::var_os("RAFTBUS_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: the namespace lab is not available here: {why}");
        return false;
    }
    panic!("the namespace lab is not available ({why}); set RAFTBUS_ALLOW_SKIP=1 to skip");
}

/// Runs `raftbus` with `args` and returns its output, echoing stderr on failure paths.
pub fn run(args: &[&str]) -> Output {
    let out = raftbus().args(args).output().expect("run raftbus");
    eprintln!(
        "raftbus {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A short Redis bench into `dir`: 500/s for 5 s (1 s warmup), seed 42, unless `extra`
/// gives those flags itself.
pub fn bench_redis(dir: &Path, extra: &[&str]) -> Output {
    require_redis();
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["bench", "--target", "redis", "--out", dir];
    for (flag, value) in [
        ("--rate", "500"),
        ("--duration", "5s"),
        ("--warmup", "1s"),
        ("--seed", "42"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    run(&args)
}

pub fn summary(dir: &Path) -> Summary {
    Summary::read(dir).expect("summary.json")
}

pub fn history(dir: &Path) -> Vec<Event> {
    raftbus::record::read_history(&dir.join("history.jsonl")).expect("history.jsonl")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
