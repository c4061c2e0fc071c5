//! The queue invariants against small histories: each catches its bug and passes the
//! at-least-once behaviour that is allowed.

use super::super::testkit::{run_one, H};
use super::super::{check_events, CheckOptions, Kind};
use super::{consumed, double_delivery, drained, group_agreement, group_order, redelivery};
use crate::history::Event;
use raftbus_reports::model::{Mode, Verdict};

const G0A: (&str, &str, &str) = ("g0", "c0", "ch0");
const G0B: (&str, &str, &str) = ("g0", "c1", "ch0");

/// Messages 1..=3 acked on ch0 as 1-0, 2-0, 3-0.
fn three_acked() -> H {
    let mut h = H::queue(&["n1", "n2"]);
    for n in 1..=3 {
        h.acked(n, "ch0", &format!("{n}-0"));
    }
    h
}

#[test]
fn every_acked_message_must_be_xacked_by_every_group() {
    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("1-0", 1), ("2-0", 2), ("3-0", 3)]);
    h.settle(G0A, 12, ("1-0", 1), Some(true));
    // Unanswered: it may have been removed; the drained check sees what stayed.
    h.settle(G0A, 12, ("2-0", 2), None);
    // Not pending any more (someone else acked it? nobody did): does not count.
    h.settle(G0A, 12, ("3-0", 3), Some(false));
    h.take(("g1", "c0", "ch0"), (10, 11), None, &[("1-0", 1)]);
    h.settle(("g1", "c0", "ch0"), 12, ("1-0", 1), Some(true));
    let out = run_one(&consumed::Consumed, h);
    assert_eq!(
        out.count(Kind::Unconsumed),
        3,
        "{:?}",
        out.examples(Kind::Unconsumed)
    );
    let ex = out.examples(Kind::Unconsumed).join("\n");
    assert!(ex.contains(&H::hex(3)) && ex.contains("group g0"), "{ex}");
    assert!(ex.contains(&H::hex(2)) && ex.contains("group g1"), "{ex}");
}

#[test]
fn a_claim_before_the_holder_was_idle_long_enough_is_a_double_delivery() {
    let mut h = three_acked();
    h.take(G0A, (100, 101), None, &[("1-0", 1)]);
    // Claimed 500 ms after c0 got it, with min-idle 2 s: early.
    h.take(G0B, (590, 600), Some(2000), &[("1-0", 1)]);
    let out = run_one(&double_delivery::DoubleDelivery, h);
    assert_eq!(out.count(Kind::EarlyClaim), 1);
    assert!(out.examples(Kind::EarlyClaim)[0].contains("c1's claim"));

    // After the idle time (and by the holder itself, any time) it is a redelivery.
    let mut h = three_acked();
    h.take(G0A, (100, 101), None, &[("1-0", 1), ("2-0", 2)]);
    h.take(G0A, (300, 301), Some(2000), &[("2-0", 2)]);
    h.take(G0B, (2200, 2201), Some(2000), &[("1-0", 1)]);
    let out = run_one(&double_delivery::DoubleDelivery, h);
    assert_eq!(out.total(), 0);
}

#[test]
fn xreadgroup_must_not_hand_an_entry_out_twice_and_an_acked_entry_is_never_claimed() {
    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("1-0", 1)]);
    h.take(G0B, (20, 21), None, &[("1-0", 1)]);
    let out = run_one(&redelivery::Redelivery, h);
    assert_eq!(out.count(Kind::RedeliveredAsNew), 1);
    assert_eq!(out.count(Kind::ClaimedAfterAck), 0);

    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("1-0", 1)]);
    h.settle(G0A, 12, ("1-0", 1), Some(true));
    h.take(G0B, (3000, 3001), Some(2000), &[("1-0", 1)]);
    let out = run_one(&redelivery::Redelivery, h);
    assert_eq!(out.count(Kind::ClaimedAfterAck), 1);
    assert_eq!(out.count(Kind::RedeliveredAsNew), 0);

    // A claim of an entry whose XACK is not known to have removed it is fine.
    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("1-0", 1)]);
    h.settle(G0A, 12, ("1-0", 1), None);
    h.take(G0B, (3000, 3001), Some(2000), &[("1-0", 1)]);
    h.settle(G0B, 3002, ("1-0", 1), Some(true));
    assert_eq!(run_one(&redelivery::Redelivery, h).total(), 0);
}

#[test]
fn first_deliveries_follow_the_stream() {
    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("2-0", 2), ("3-0", 3)]);
    // Sent after c0's reply, yet gets an older entry as new.
    h.take(G0B, (20, 21), None, &[("1-0", 1)]);
    let out = run_one(&group_order::GroupOrder, h);
    assert_eq!(out.count(Kind::GroupOrder), 1);
    assert!(out.examples(Kind::GroupOrder)[0].contains("after c0 had got 3-0"));

    // Within one reply, ids must rise.
    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("2-0", 2), ("1-0", 1)]);
    assert_eq!(
        run_one(&group_order::GroupOrder, h).count(Kind::GroupOrder),
        1
    );

    // Concurrent reads may complete in any order; claims are not first deliveries.
    let mut h = three_acked();
    h.take(G0A, (10, 30), None, &[("2-0", 2)]);
    h.take(G0B, (12, 20), None, &[("1-0", 1)]);
    h.take(G0A, (40, 41), None, &[("3-0", 3)]);
    h.take(G0B, (3000, 3001), Some(2000), &[("1-0", 1)]);
    assert_eq!(run_one(&group_order::GroupOrder, h).total(), 0);
}

#[test]
fn pending_entries_at_the_end_and_disagreeing_nodes_are_caught() {
    let mut h = three_acked();
    h.group_state("n1", ("ch0", "g0"), 0, Some("3-0"));
    h.group_state("n2", ("ch0", "g0"), 2, Some("3-0"));
    let out = run_one(&drained::Drained, h);
    assert_eq!(out.count(Kind::PendingAtEnd), 1);
    assert!(out.examples(Kind::PendingAtEnd)[0].contains("on n2"));

    let mut h = three_acked();
    h.group_state("n1", ("ch0", "g0"), 0, Some("3-0"));
    h.group_state("n2", ("ch0", "g0"), 0, Some("2-0"));
    h.group_state("n1", ("ch0", "g1"), 0, Some("3-0"));
    h.group_state("n2", ("ch0", "g1"), 0, Some("3-0"));
    let out = run_one(&group_agreement::GroupAgreement, h);
    assert_eq!(out.count(Kind::GroupDiverged), 1);
    assert!(out.examples(Kind::GroupDiverged)[0].contains("group g0"));
}

#[test]
fn a_clean_queue_run_with_a_crash_and_a_claim_is_valid_and_counted() {
    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("1-0", 1), ("2-0", 2)]);
    h.settle(G0A, 12, ("1-0", 1), Some(true));
    h.push(Event::ConsumerCrash {
        t_us: 13_000,
        group: "g0".into(),
        consumer: "c0".into(),
        abandoned: vec![],
    });
    h.take(G0B, (20, 21), None, &[("3-0", 3)]);
    h.settle(G0B, 22, ("3-0", 3), Some(true));
    h.take(G0B, (2100, 2101), Some(2000), &[("2-0", 2)]);
    h.settle(G0B, 2102, ("2-0", 2), Some(true));
    h.finals_everywhere();
    for node in ["n1", "n2"] {
        h.final_read(node, true);
        h.group_state(node, ("ch0", "g0"), 0, Some("3-0"));
    }
    let out = check_events(h.events(), &CheckOptions::new(Mode::Queue));
    assert_eq!(out.verdict, Verdict::Valid, "{:?}", out.checks.violations);
    let q = &out.checks.queue;
    assert_eq!(
        (q.groups, q.taken, q.redelivered, q.consumed, q.crashes),
        (1, 4, 1, 3, 1)
    );
}

#[test]
fn unreadable_group_state_leaves_the_verdict_unknown() {
    let mut h = three_acked();
    h.take(G0A, (10, 11), None, &[("1-0", 1), ("2-0", 2), ("3-0", 3)]);
    for (id, n) in [("1-0", 1), ("2-0", 2), ("3-0", 3)] {
        h.settle(G0A, 12, (id, n), Some(true));
    }
    h.finals_everywhere();
    h.final_read("n1", true);
    h.final_read("n2", true);
    h.group_state("n1", ("ch0", "g0"), 0, Some("3-0"));
    h.push(Event::GroupState {
        node: "n2".into(),
        channel: "ch0".into(),
        group: "g0".into(),
        ok: false,
        pending: 0,
        last_delivered: None,
        error: Some("ERR unknown command".into()),
    });
    let out = check_events(h.events(), &CheckOptions::new(Mode::Queue));
    assert_eq!(out.verdict, Verdict::Unknown, "{:?}", out.checks);
    assert!(out.checks.unchecked[0].contains("consumer groups of n2"));
}
