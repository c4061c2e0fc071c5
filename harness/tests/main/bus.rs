//! `raftbus bench --target both`: the bus cluster, then Redis, same workload and seed.
//!
//! Needs `raftbus-node` next to `raftbus` (`cargo test --workspace` builds it; otherwise
//! `cargo build -p raftbus-node` first).

use std::collections::BTreeSet;

use raftbus::history::Event;
use raftbus_reports::model::{Summary, Target, Verdict};

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
    assert_cost(&bus, &redis);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("Cost of a message"), "{md}");
    assert!(md.contains("not reported by Redis"), "{md}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("id=\"cost\""));
    assert!(dir.path().join("cost_bars.png").is_file());
}

/// Both targets measured what their processes cost, the figures hang together, and the
/// fsyncs Redis does not report are absent rather than zero.
fn assert_cost(bus: &Summary, redis: &Summary) {
    for s in [bus, redis] {
        let c = s.cost.as_ref().expect("cost measured");
        assert_eq!(c.acked, s.checks.acked);
        assert!(!c.processes.is_empty());
        assert!(c.clock_ticks_per_s > 0);
        for p in &c.processes {
            assert!(p.lifetimes >= 1, "{p:?}");
            assert_eq!(p.unsampled_lifetimes, 0, "{p:?}");
            assert!(p.cpu_s > 0.0, "{p:?}");
            assert!(p.final_rss_bytes > 0, "{p:?}");
            assert!(p.peak_rss_bytes >= p.final_rss_bytes, "{p:?}");
            assert!(p.write_bytes.is_some(), "{p:?}");
        }
        let t = &c.total;
        assert!(t.cpu_s > 0.0);
        assert!(t.peak_rss_bytes >= t.final_rss_bytes && t.final_rss_bytes > 0.0);
        let k = c.per_1k_acked.as_ref().expect("acked > 0");
        let per_1k = |total: f64| total / c.acked as f64 * 1000.0;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(k.cpu_s, per_1k(t.cpu_s)), "{k:?} vs {t:?}");
        assert!(close(k.peak_rss_bytes, per_1k(t.peak_rss_bytes)));
        assert!(close(k.final_rss_bytes, per_1k(t.final_rss_bytes)));
        assert!(close(
            k.write_bytes.unwrap(),
            per_1k(t.write_bytes.unwrap())
        ));
    }
    let bc = bus.cost.as_ref().unwrap();
    assert_eq!(bc.processes.len(), 3);
    assert!(
        bc.processes.iter().all(|p| p.fsyncs.unwrap_or(0) > 0),
        "{bc:?}"
    );
    let fsyncs = bc.total.fsyncs.expect("the bus reports fsyncs");
    assert!(fsyncs > 0.0);
    let k = bc.per_1k_acked.as_ref().unwrap();
    assert!((k.fsyncs.unwrap() - fsyncs / bc.acked as f64 * 1000.0).abs() < 1e-6);
    let rc = redis.cost.as_ref().unwrap();
    assert!(rc.processes.iter().all(|p| p.fsyncs.is_none()), "{rc:?}");
    assert_eq!(rc.total.fsyncs, None);
    assert_eq!(rc.per_1k_acked.as_ref().unwrap().fsyncs, None);
    assert_eq!(rc.fsyncs_absent, "not reported by Redis");
}
