//! Queue mode (`--mode queue`) end to end, on both targets: consumer groups get every
//! acknowledged message, a crashed consumer's entries are claimed by the others after the
//! idle time (counted as redeliveries, not violations), the PEL drains and every node ends
//! with the same group state.

use raftbus::history::Event;
use raftbus_reports::model::{Summary, Verdict};

use crate::chaos::{chaos_args, require_lab};
use crate::util;

fn queue_run(target: &str) -> Option<(Summary, Vec<Event>)> {
    if !require_lab() {
        return None;
    }
    if target == "redis" {
        util::require_redis();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let out = util::run(&chaos_args(
        d,
        &[
            "--target",
            target,
            "--mode",
            "queue",
            "--faults",
            "consumer-crash,kill",
            "--duration",
            "30s",
            "--claim-idle",
            "1s",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    Some((util::summary(&dir), util::history(&dir)))
}

fn assert_queue_kept_its_promise(s: &Summary, events: &[Event]) {
    assert_eq!(s.verdict, Verdict::Valid, "{:?}", s.checks.violations);
    let q = &s.checks.queue;
    assert_eq!(q.groups, 2, "{q:?}");
    let crash_faults = s
        .faults
        .iter()
        .filter(|f| f.kind == "consumer-crash")
        .count();
    assert!(crash_faults > 0, "{:?}", s.faults);
    assert_eq!(q.crashes as usize, crash_faults, "{q:?}");
    // Every acknowledged message finished by both groups is the `unconsumed` check, part
    // of the verdict; an XACK whose count was partial leaves its entries' fate unknown,
    // so `consumed` (entries known removed) may fall a little short of 2 x acked.
    assert!(
        q.consumed > s.checks.acked,
        "{q:?} acked {}",
        s.checks.acked
    );
    assert!(!s.checks.violations.iter().any(|v| v.kind == "unconsumed"));
    assert!(q.pending_at_end.is_empty(), "{q:?}");
    // What the crashed consumer held came back through a claim, by another consumer.
    let abandoned: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::ConsumerCrash {
                group, abandoned, ..
            } => Some(abandoned.iter().map(move |a| (group.clone(), a.id.clone()))),
            _ => None,
        })
        .flatten()
        .collect();
    for (group, id) in &abandoned {
        assert!(
            events.iter().any(|e| matches!(e,
                Event::Take { group: g, claimed: true, entries, .. }
                    if g == group && entries.iter().any(|t| &t.id == id))),
            "abandoned {group}/{id} was never claimed"
        );
    }
    assert!(q.redelivered as usize >= abandoned.len(), "{q:?}");
    // Group state read on every node, all equal.
    let states = events
        .iter()
        .filter(|e| matches!(e, Event::GroupState { ok: true, .. }))
        .count();
    let servers = events
        .iter()
        .filter(|e| matches!(e, Event::FinalRead { .. }))
        .count();
    assert!(servers > 0);
    assert_eq!(states, servers * 2 * 2, "servers x 2 channels x 2 groups");
    assert!(s.latency_us.consumed.count > 0);
}

#[test]
fn bus_queue_survives_consumer_crash_and_kill() {
    if let Some((s, events)) = queue_run("bus") {
        assert_queue_kept_its_promise(&s, &events);
    }
}

#[test]
fn redis_queue_survives_consumer_crash_and_kill() {
    if let Some((s, events)) = queue_run("redis") {
        assert_queue_kept_its_promise(&s, &events);
    }
}
