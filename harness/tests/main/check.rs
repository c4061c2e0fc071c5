//! `raftbus check DIR` re-runs the checkers: 0 on a clean history, 1 once an
//! acknowledged message is missing from a node's final stream.

use raftbus::history::{Event, Outcome};

use crate::util::{bench_redis, run};

#[test]
fn check_rechecks_and_detects_a_removed_final_entry() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_redis(dir.path(), &["--duration", "3s", "--rate", "200"]);
    assert_eq!(out.status.code(), Some(0));
    let d = dir.path().to_str().unwrap();
    assert_eq!(run(&["check", d]).status.code(), Some(0));

    // Drop the Final line of one acknowledged message in the middle of its stream.
    let path = dir.path().join("history.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let acked: std::collections::HashSet<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Complete {
                msg,
                outcome: Outcome::Ok,
                ..
            } => Some(*msg),
            _ => None,
        })
        .collect();
    let finals: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Final { msg: Some(m), .. } if acked.contains(m)))
        .map(|(i, _)| i)
        .collect();
    assert!(finals.len() > 10);
    let victim = finals[finals.len() / 2];
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();

    let out = run(&["check", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lost"));
}
