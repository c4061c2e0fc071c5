//! Failover with real processes: Redis with Sentinel follows a primary kill, loses
//! acknowledged writes in a split brain, bus publishers leave a paused leader, and bus
//! subscribers leave a killed node and resume by id elsewhere.
//!
//! Like the other chaos tests these need the namespace lab (and redis-server); without
//! them they fail loudly unless `RAFTBUS_ALLOW_SKIP=1`.

use std::collections::BTreeMap;
use std::path::Path;

use raftbus::history::Event;
use raftbus_reports::model::{Summary, Verdict};

use crate::util;

use util::require_lab;

/// Writes `body` (after a common header) as a scenario and runs `raftbus chaos` on it.
fn chaos(dir: &Path, body: &str, extra: &[&str]) -> std::process::Output {
    let scenario = dir.with_extension("toml");
    let text = format!("version = 1\nrate = 200\nwarmup = \"2s\"\nchannels = 2\nseed = 11\n{body}");
    std::fs::write(&scenario, text).unwrap();
    let mut args = vec![
        "chaos",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    util::run(&args)
}

/// Server processes of this run still alive (they must all be reaped).
fn leftovers(dir: &Path) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-a", "-f", dir.to_str().unwrap()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_string)
        .collect()
}

/// The node each publish was sent to, by publisher, in order.
fn nodes_by_publisher(dir: &Path) -> BTreeMap<u64, Vec<(u64, String)>> {
    let mut out: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    for e in util::history(dir) {
        if let Event::Invoke {
            msg, t_us, node, ..
        } = e
        {
            out.entry(msg >> 40).or_default().push((t_us, node));
        }
    }
    out
}

const REDIS_SENTINEL: &str = "target = \"redis\"\npublishers = 2\n[redis]\npersistence = \"always\"\nreplicas = 2\nsentinels = 3\ndown_after = \"1s\"\nfailover_timeout = \"2s\"\n";

#[test]
fn redis_sentinel_promotes_a_replica_and_publishers_follow() {
    util::require_redis();
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kill");
    let body = format!(
        "name = \"sentinel-kill\"\nduration = \"16s\"\n{REDIS_SENTINEL}[[fault]]\nat = \"4s\"\nduration = \"6s\"\nkind = \"kill\"\ntarget = \"primary\"\n"
    );
    let out = chaos(&dir, &body, &[]);
    let code = out.status.code();
    // Redis may lose the writes it had not replicated at the kill: 1 is as fine as 0.
    assert!(matches!(code, Some(0) | Some(1)), "{}", util::stderr(&out));
    let s = util::summary(&dir);
    assert!(
        s.target_detail.contains("3 sentinels"),
        "{}",
        s.target_detail
    );
    assert_eq!(s.faults.len(), 1);
    assert_eq!(s.faults[0].targets, ["n1"]);
    // Writes resumed while n1 was still dead: a replica was promoted and publishers found it.
    let r = &s.recovery[0];
    let resumed = r.first_ok_after_start_s.expect("writes resumed");
    assert!(
        resumed < s.faults[0].end_s - s.faults[0].start_s,
        "no acknowledged write before the old primary came back: {r:?}"
    );
    let moved = nodes_by_publisher(&dir)
        .values()
        .all(|sent| sent.iter().any(|(_, n)| n != "n1"));
    assert!(moved, "every publisher should have moved off n1");
    // The subscriber on the killed primary resumed by id on a replica (or the new primary).
    let fault = &s.faults[0];
    assert_subscriber_moved_off(
        &dir,
        "n1",
        ((fault.start_s * 1e6) as u64, (fault.end_s * 1e6) as u64),
    );
    for name in ["n1", "n2", "n3", "s1", "s2", "s3"] {
        assert!(
            dir.join("logs").join(format!("{name}.log")).is_file(),
            "{name}"
        );
    }
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

#[test]
fn redis_split_brain_loses_acknowledged_writes() {
    util::require_redis();
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("split");
    let body = format!(
        "name = \"sentinel-split\"\nduration = \"18s\"\n{REDIS_SENTINEL}[[fault]]\nat = \"4s\"\nduration = \"7s\"\nkind = \"partition\"\nmode = \"isolate-leader\"\n"
    );
    let out = chaos(&dir, &body, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", util::stderr(&out));
    let s = util::summary(&dir);
    assert_eq!(s.verdict, Verdict::Invalid);
    assert!(s.checks.lost > 0);
    // The loss is counted under the partition, and the table says so.
    assert_eq!(s.recovery[0].lost, s.checks.lost);
    // The clients were never cut off: the old primary kept acknowledging.
    assert!(
        s.recovery[0].availability.unwrap_or(0.0) > 0.5,
        "{:?}",
        s.recovery
    );
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("Durability and availability"), "{md}");
    assert!(md.contains("| partition: lost |"), "{md}");
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

/// Runs the scenario under `policy`, asserts it came out valid (exit 0), and returns its
/// summary and its first fault window in microseconds.
fn valid_run(dir: &Path, body: &str, policy: &str) -> (Summary, (u64, u64)) {
    let out = chaos(dir, body, &["--client-policy", policy]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let s = util::summary(dir);
    let window = (
        (s.faults[0].start_s * 1e6) as u64,
        (s.faults[0].end_s * 1e6) as u64,
    );
    (s, window)
}

#[test]
fn bus_publishers_leave_a_paused_leader_unless_sticky() {
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // One publisher and one subscriber start on each node, so one of each starts on the
    // leader. Pub/sub: a paused node is silent, and only a PING tells it from an idle one.
    let body = "name = \"bus-pause\"\ntarget = \"bus\"\nmode = \"pubsub\"\npublishers = 3\nduration = \"14s\"\n[[fault]]\nat = \"4s\"\nduration = \"5s\"\nkind = \"pause\"\ntarget = \"leader\"\n";
    for policy in ["failover", "sticky"] {
        let dir = tmp.path().join(policy);
        let (s, (start_us, end_us)) = valid_run(&dir, body, policy);
        assert_eq!(s.checks.lost, 0);
        let paused = s.faults[0].targets[0].clone();
        let sent_by = nodes_by_publisher(&dir);
        assert!(sent_by.values().any(|sent| sent[0].1 == paused));
        for (publisher, sent) in sent_by {
            let first = &sent[0].1;
            let during: Vec<&String> = sent
                .iter()
                .filter(|(t, _)| (start_us..end_us).contains(t))
                .map(|(_, n)| n)
                .collect();
            if policy == "sticky" {
                assert!(
                    sent.iter().all(|(_, n)| n == first),
                    "sticky publisher {publisher} changed node"
                );
            } else if first == &paused {
                assert!(
                    during.iter().any(|n| **n != paused),
                    "publisher {publisher} stayed on the paused leader {paused}"
                );
            }
        }
        if policy == "failover" {
            assert_subscriber_moved_off(&dir, &paused, (start_us, end_us));
        } else {
            assert_eq!(subscriber_moves_note(&s), "0");
        }
    }
}

/// Per subscriber, in order: `(t_us, node, up)` for each `SubscriberUp` (`up`) and each
/// delivery (not `up`).
fn subscriber_nodes(dir: &Path) -> BTreeMap<u32, Vec<(u64, String, bool)>> {
    let mut out: BTreeMap<u32, Vec<(u64, String, bool)>> = BTreeMap::new();
    for e in util::history(dir) {
        match e {
            Event::SubscriberUp {
                t_us,
                subscriber,
                node,
            } => out.entry(subscriber).or_default().push((t_us, node, true)),
            Event::Deliver {
                t_us,
                subscriber,
                node,
                ..
            } => out.entry(subscriber).or_default().push((t_us, node, false)),
            _ => {}
        }
    }
    out
}

/// Asserts the subscriber that started on `node` came up elsewhere during the fault window
/// and delivered there, and that none of its events name `node` from half a second into the
/// window on (it was dead, paused or cut off). Returns that subscriber.
fn assert_subscriber_moved_off(dir: &Path, node: &str, (start_us, end_us): (u64, u64)) -> u32 {
    let by_sub = subscriber_nodes(dir);
    let (sub, events) = by_sub
        .iter()
        .find(|(_, ev)| ev[0].1 == node)
        .unwrap_or_else(|| panic!("no subscriber started on {node}: {by_sub:?}"));
    let elsewhere = |up: bool| {
        events
            .iter()
            .any(|(t, n, u)| *u == up && n != node && (start_us..end_us).contains(t))
    };
    // Its sessions, and per node the first and last delivery, keep a failure readable.
    let ups: Vec<_> = events.iter().filter(|e| e.2).collect();
    let mut spans: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (t, n, _) in events.iter().filter(|e| !e.2) {
        let span = spans.entry(n.as_str()).or_insert((*t, *t));
        span.1 = *t;
    }
    assert!(
        elsewhere(true),
        "subscriber {sub} did not move off {node} during {start_us}..{end_us} µs: sessions \
         {ups:?}, deliveries by node {spans:?}"
    );
    assert!(
        elsewhere(false),
        "subscriber {sub} delivered nothing after moving off {node}"
    );
    let gone = start_us + 500_000..end_us;
    assert!(
        !events.iter().any(|(t, n, _)| n == node && gone.contains(t)),
        "events of subscriber {sub} name {node} during its fault"
    );
    *sub
}

/// The count in the report's "subscriber moves" note.
fn subscriber_moves_note(s: &Summary) -> String {
    s.environment
        .notes
        .iter()
        .find_map(|n| n.split_once("subscriber moves to another node: "))
        .map(|(_, rest)| rest.to_string())
        .expect("a note counts the subscriber moves")
}

#[test]
fn bus_subscribers_leave_a_killed_node_and_resume_unless_sticky() {
    if !require_lab() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let body = "name = \"bus-sub-kill\"\ntarget = \"bus\"\nmode = \"stream\"\npublishers = 2\nsubscribers_per_node = 1\nduration = \"16s\"\n[[fault]]\nat = \"4s\"\nduration = \"6s\"\nkind = \"kill\"\ntarget = \"n2\"\n";
    for policy in ["failover", "sticky"] {
        let dir = tmp.path().join(policy);
        // Resuming by id on another node (or the same one after its restart) misses
        // nothing, repeats nothing: valid.
        let (s, (start_us, end_us)) = valid_run(&dir, body, policy);
        assert_eq!(s.faults[0].targets, ["n2"]);
        assert_eq!(s.checks.reordered, 0);
        assert_eq!(s.checks.duplicated, 0);
        let by_sub = subscriber_nodes(&dir);
        assert_eq!(by_sub.len(), 3);
        if policy == "sticky" {
            for (sub, ev) in &by_sub {
                assert!(
                    ev.iter().all(|(_, n, _)| *n == ev[0].1),
                    "sticky subscriber {sub} changed node"
                );
            }
            assert_eq!(subscriber_moves_note(&s), "0");
            continue;
        }
        assert_subscriber_moved_off(&dir, "n2", (start_us, end_us));
        assert_ne!(subscriber_moves_note(&s), "0");
    }
}
