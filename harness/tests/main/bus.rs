//! `raftbus bench --target both`: the bus cluster, then Redis, same workload and seed.
//!
//! Needs `raftbus-node` next to `raftbus` (`cargo test --workspace` builds it; otherwise
//! `cargo build -p raftbus-node` first).

use std::collections::BTreeSet;

use raftbus::history::Event;
use raftbus_reports::model::{Target, Verdict};

use crate::util::{history, require_redis, run, summary};

fn node_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_raftbus"))
        .parent()
        .unwrap()
        .join("raftbus-node");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p raftbus-node` (or test with --workspace)",
        bin.display()
    );
    bin
}

#[test]
fn both_targets_run_the_same_workload() {
    require_redis();
    let bin = node_bin();
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "bench",
        "--target",
        "both",
        "--nodes",
        "3",
        "--rate",
        "300",
        "--duration",
        "4s",
        "--warmup",
        "1s",
        "--seed",
        "7",
        "--node-bin",
        bin.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let bus = summary(&dir.path().join("bus"));
    let redis = summary(&dir.path().join("redis"));
    assert_eq!((bus.target, redis.target), (Target::Bus, Target::Redis));
    assert_eq!(bus.seed, redis.seed);
    for s in [&bus, &redis] {
        assert_eq!(s.verdict, Verdict::Valid, "{:?}", s.checks);
        assert!(s.checks.acked > 0);
        assert!(s.latency_us.publish_ack.count > 0);
    }
    assert_eq!(bus.workload.nodes, 3);
    let events = history(&dir.path().join("bus"));
    let final_nodes: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Final { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(final_nodes, BTreeSet::from(["n1", "n2", "n3"]));
    let publish_nodes: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Invoke { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert!(publish_nodes.len() >= 2, "publishers spread over nodes");
    assert!(dir.path().join("report.html").is_file());
}
