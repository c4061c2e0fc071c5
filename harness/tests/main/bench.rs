//! `raftbus bench` against Redis: results, checks, and subscriber disconnects.

use std::collections::{BTreeMap, BTreeSet};

use raftbus::history::{Event, Outcome};
use raftbus_reports::hlog::Hlog;
use raftbus_reports::model::{tags, Mode, TimeSeries, Verdict};

use crate::util::{bench_redis, history, summary};

#[test]
fn stream_run_is_valid_and_fully_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_redis(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(dir.path());
    assert_eq!(s.verdict, Verdict::Valid);
    assert_eq!(s.seed, 42);
    assert!(s.rerun.contains("--seed 42"), "{}", s.rerun);
    assert_eq!(s.workload.mode, Mode::Stream);
    assert!(s.environment.target_version.starts_with("redis-server "));
    // The lab where namespaces work, loopback ports elsewhere.
    assert!(
        ["namespaces", "rootless-namespaces", "loopback"].contains(&s.environment.network.as_str()),
        "{}",
        s.environment.network
    );
    // Open loop at 500/s over the 4 s measured window.
    assert!(
        (s.throughput.offered_per_s - 500.0).abs() < 10.0,
        "{:?}",
        s.throughput
    );
    let ratio = s.throughput.achieved_per_s / s.throughput.offered_per_s;
    assert!((0.98..=1.0001).contains(&ratio), "{:?}", s.throughput);
    let l = &s.latency_us;
    assert!(l.publish_ack.count >= 1900, "{:?}", l.publish_ack);
    assert!(l.publish_ack.p50 > 0 && l.publish_ack.p50 <= l.publish_ack.p99);
    assert!(l.publish_ack.p99 <= l.publish_ack.max);
    assert!(
        l.end_to_end.count >= l.publish_ack.count,
        "{:?}",
        l.end_to_end
    );
    assert!(l.send_lag.count > 0);
    assert_eq!(s.checks.lost + s.checks.duplicated + s.checks.reordered, 0);
    assert_eq!(s.checks.indeterminate + s.checks.failed, 0);

    let hlog = Hlog::read(&dir.path().join("latency.hlog")).expect("hlog parses");
    for tag in [tags::PUBLISH_ACK, tags::END_TO_END, tags::SEND_LAG] {
        assert!(hlog.tags().iter().any(|t| t == tag), "missing tag {tag}");
    }
    let merged = raftbus_reports::hlog::read_hlog(&dir.path().join("latency.hlog")).unwrap();
    // The hlog holds exactly the measured messages, binned by completion second.
    assert_eq!(merged[tags::PUBLISH_ACK].len(), l.publish_ack.count);
    assert_eq!(merged[tags::END_TO_END].len(), l.end_to_end.count);
    assert_eq!(merged[tags::SEND_LAG].len(), l.send_lag.count);

    let ts = TimeSeries::read(dir.path()).unwrap();
    assert!(ts.rows.len() >= 5, "{} rows", ts.rows.len());
    assert_eq!(
        ts.rows.iter().map(|r| r.offered).sum::<u64>(),
        s.checks.acked
    );

    // Every acknowledged message is in the final stream, once, with its XADD id.
    let events = history(dir.path());
    let mut acked = BTreeMap::new();
    let mut finals = BTreeMap::new();
    for e in &events {
        match e {
            Event::Complete {
                msg,
                outcome: Outcome::Ok,
                id,
                ..
            } => {
                acked.insert(*msg, id.clone().unwrap());
            }
            Event::Final {
                msg: Some(m), id, ..
            } => {
                assert!(
                    finals.insert(*m, id.clone()).is_none(),
                    "duplicate final {m}"
                );
            }
            _ => {}
        }
    }
    assert_eq!(acked.len() as u64, s.checks.acked);
    assert_eq!(acked, finals);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::SubscriberUp { .. })));
    // The read workload (on by default in stream mode) is recorded and judged: one
    // primary never serves a stale read.
    let reads = events
        .iter()
        .filter(|e| matches!(e, Event::Read { ok: true, .. }))
        .count() as u64;
    let r = &s.checks.stale_reads;
    assert!(reads > 0 && r.reads == reads, "{reads} reads vs {r:?}");
    assert_eq!((r.stale, r.failed), (0, 0), "{r:?}");
    assert!(l.read.count > 0, "{:?}", l.read);
    std::fs::read_to_string(dir.path().join("scenario.toml")).expect("resolved scenario");
    assert!(dir.path().join("logs/n1.log").is_file());
}

/// Counts SubscriberDown events caused by a lost connection (not the end of the run).
fn disconnects(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::SubscriberDown { reason, .. } if reason != "run finished"))
        .count()
}

#[test]
fn pubsub_subscribers_killed_mid_run_show_at_most_once_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_redis(
        dir.path(),
        &["--mode", "pubsub", "--debug-kill-subscribers-at", "2500ms"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "gaps are not violations in pub/sub"
    );
    let s = summary(dir.path());
    assert_eq!(s.verdict, Verdict::Valid);
    assert!(s.checks.at_most_once_gaps > 0, "{:?}", s.checks);
    assert_eq!(s.checks.lost, 0);
    let events = history(dir.path());
    assert!(disconnects(&events) >= 1, "the kill was observed");
    let ups = events
        .iter()
        .filter(|e| matches!(e, Event::SubscriberUp { .. }))
        .count();
    assert!(ups >= 2, "the subscriber reconnected");
}

#[test]
fn stream_subscribers_killed_mid_run_miss_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_redis(
        dir.path(),
        &[
            "--mode",
            "stream",
            "--subscribers-per-node",
            "2",
            "--debug-kill-subscribers-at",
            "2500ms",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let s = summary(dir.path());
    assert_eq!(s.verdict, Verdict::Valid);
    assert_eq!(s.checks.lost, 0);
    assert_eq!(s.checks.at_most_once_gaps, 0);
    assert_eq!(s.checks.reordered, 0);
    let events = history(dir.path());
    assert!(disconnects(&events) >= 2, "both subscribers were killed");
    // Each subscriber received every acknowledged message exactly once.
    let mut per_sub: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut deliveries = 0u64;
    for e in &events {
        if let Event::Deliver {
            subscriber,
            msg: Some(m),
            ..
        } = e
        {
            per_sub.entry(*subscriber).or_default().insert(*m);
            deliveries += 1;
        }
    }
    assert_eq!(per_sub.len(), 2);
    for (sub, msgs) in &per_sub {
        assert_eq!(msgs.len() as u64, s.checks.acked, "subscriber {sub}");
    }
    assert_eq!(deliveries, 2 * s.checks.acked, "no duplicate deliveries");
}

#[test]
fn replica_subscribers_and_final_streams_cover_both_servers() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_redis(dir.path(), &["--redis-replicas", "1", "--rate", "200"]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(dir.path());
    assert_eq!(s.verdict, Verdict::Valid);
    assert_eq!(s.workload.nodes, 2);
    assert!(s.target_detail.contains("1 replica"), "{}", s.target_detail);
    let events = history(dir.path());
    let nodes: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Final { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(nodes, BTreeSet::from(["n1", "n2"]));
    let delivering: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Deliver { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(delivering, BTreeSet::from(["n1", "n2"]));
}
