//! `raftbus selftest` end to end: a planted bug in a failpoint build of the node is caught
//! as its violation kind, and a node binary without failpoints is refused, not trusted.
//!
//! The failpoint build is `RAFTBUS_FAILPOINT_NODE_BIN`, else the one `scripts/test.sh`
//! builds before the workspace tests (`target/failpoints/debug/raftbus-node`). These need
//! the namespace lab; without it, or without the build, they fail loudly unless
//! `RAFTBUS_ALLOW_SKIP=1`.

use std::path::{Path, PathBuf};

use crate::util;

fn skip_or_panic(why: &str) -> bool {
    if std::env::var_os("RAFTBUS_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: {why}");
        return false;
    }
    panic!("{why}; set RAFTBUS_ALLOW_SKIP=1 to skip");
}

fn require_lab() -> bool {
    let caps = raftbus_faults::probe();
    caps.full_lab()
        || skip_or_panic(&format!(
            "the namespace lab is not available ({})",
            caps.notes.join("; ")
        ))
}

fn failpoint_node() -> Option<PathBuf> {
    let path = std::env::var_os("RAFTBUS_FAILPOINT_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/failpoints/debug/raftbus-node")
        });
    if path.is_file() {
        return Some(path);
    }
    skip_or_panic(&format!(
        "no failpoint build of raftbus-node at {} (cargo build -p raftbus-node --features failpoints --target-dir target/failpoints, or RAFTBUS_FAILPOINT_NODE_BIN)",
        path.display()
    ));
    None
}

fn selftest_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("selftest.json")).expect("selftest.json");
    serde_json::from_str(&text).expect("selftest.json is json")
}

#[test]
fn selftest_catches_a_dropped_forwarded_write_as_lost() {
    if !require_lab() {
        return;
    }
    let Some(node) = failpoint_node() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("selftest");
    let out_str = out.to_str().unwrap();
    let node_str = node.to_str().unwrap();
    let run = util::run(&[
        "selftest",
        "--only",
        "drop-forwarded",
        "--seed",
        "3",
        "--node-bin",
        node_str,
        "--out",
        out_str,
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", util::stderr(&run));
    let rows = selftest_json(&out);
    let row = &rows[0];
    assert_eq!(row["case"], "drop-forwarded");
    assert_eq!(row["outcome"], "caught");
    let reported = row["reported"].as_str().unwrap();
    assert!(reported.contains("lost_"), "{reported}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("drop-forwarded") && stdout.contains("caught"),
        "{stdout}"
    );
}

#[test]
fn selftest_refuses_a_node_without_failpoints() {
    if !require_lab() {
        return;
    }
    let default_node = Path::new(env!("CARGO_BIN_EXE_raftbus"))
        .parent()
        .unwrap()
        .join("raftbus-node");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("selftest");
    let run = util::run(&[
        "selftest",
        "--only",
        "skip-delivery",
        "--seed",
        "3",
        "--node-bin",
        default_node.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(3),
        "no verdict is an environment problem"
    );
    assert_eq!(selftest_json(&out)[0]["outcome"], "error");
    let log = std::fs::read_to_string(out.join("skip-delivery/selftest.log")).unwrap();
    assert!(log.contains("has no failpoints"), "{log}");
}
