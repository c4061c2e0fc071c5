//! What one subscriber saw, against what it should have seen.
//!
//! Stream mode: per channel, a subscriber's delivered ids strictly increase; a delivery at
//! or below the last id is `reordered` (counted per delivery; a re-delivery of a message
//! it already had is a duplicate, see `duplicated.rs`). A stream subscriber reads from
//! `0-0` and resumes by id, also after moving to another node, so it owes every entry of
//! the final stream of the node it read from: between two consecutive delivered ids (the
//! node of the later one), before the first (the node of the first) and after the last
//! (the node of its last session: a subscriber that stops, or never delivers, misses the
//! rest). Each one it never received is `skipped` (per subscriber and entry), attributed
//! to that node.
//!
//! Pub/sub mode: a message that exists (acknowledged, or delivered to someone) and that a
//! subscriber never received is `skipped` when that subscriber was connected, in one
//! session (on whichever node; the miss is attributed to that session's node), from before the message was invoked until either after it received a message
//! of the same channel invoked after the first was known to exist (acknowledged or
//! delivered), or the end of the run. If the subscriber was disconnected at any time
//! between the invoke and that moment, the miss is an at-most-once gap (counted, not a
//! violation). Where the target promises only at most once (Redis pub/sub), a miss while
//! connected is an anomaly, not a violation.
//! `skipped` and `reordered` both add to `Checks::reordered`.

use super::index::{IndexedHistory, Status, StreamId, SubscriberRec, NONE};
use super::{Findings, Hex, Invariant, Kind, Ms, Violation};
use raftbus_reports::model::Mode;

pub(crate) struct SubscriberOrder;

impl Invariant for SubscriberOrder {
    fn name(&self) -> &'static str {
        "subscriber_order"
    }

    fn property(&self) -> &'static str {
        "a subscriber sees each channel in order and misses nothing it is promised"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        match h.mode {
            // Queue mode has no subscribers; consumers are checked by `queue/*`.
            Mode::Stream | Mode::Queue => check_stream(h, out),
            Mode::Pubsub => check_pubsub(h, out),
        }
    }
}

fn check_stream(h: &IndexedHistory, out: &mut Findings) {
    let n_channels = h.channels.len();
    // Final node index per node, and each final stream's positions sorted by id.
    let mut final_k = vec![None; h.nodes.len()];
    for (k, &n) in h.final_nodes.iter().enumerate() {
        final_k[n as usize] = Some(k);
    }
    let sorted: Vec<Vec<u32>> = (0..h.final_nodes.len() * n_channels)
        .map(|i| {
            let stream = &h.finals[i];
            let mut pos: Vec<u32> = (0..stream.len() as u32)
                .filter(|&p| stream[p as usize].id.is_some())
                .collect();
            pos.sort_by_key(|&p| stream[p as usize].id);
            pos
        })
        .collect();

    for sub in &h.subscribers {
        let mut last: Vec<Option<(StreamId, usize)>> = vec![None; n_channels];
        for (i, d) in sub.deliveries.iter().enumerate() {
            let Some(id) = d.id else { continue };
            if d.repeat {
                continue;
            }
            let c = d.channel as usize;
            let Some((prev, prev_i)) = last[c] else {
                last[c] = Some((id, i));
                continue;
            };
            if id <= prev {
                out.report_with(Kind::Reordered, || Violation::Reordered {
                    subscriber: sub.id,
                    node: h.node(d.node).to_owned(),
                    channel: h.channel(d.channel).to_owned(),
                    msg: d.msg,
                    id,
                    after: prev,
                    t_us: d.t_us,
                });
                continue;
            }
            last[c] = Some((id, i));
            let Some(k) = final_k[d.node as usize] else {
                continue;
            };
            let stream = h.final_stream(k, d.channel);
            let order = &sorted[k * n_channels + c];
            let from = order.partition_point(|&p| stream[p as usize].id <= Some(prev));
            let to = order.partition_point(|&p| stream[p as usize].id < Some(id));
            for &p in order.get(from..to).unwrap_or_default() {
                let e = &stream[p as usize];
                if e.msg_idx != NONE && sub.got(e.msg_idx) {
                    continue;
                }
                out.report_with(Kind::Skipped, || {
                    let before = &sub.deliveries[prev_i];
                    let resumed = if before.node != d.node {
                        format!(" after a move from {}", h.node(before.node))
                    } else if before.session != d.session {
                        " after a resume".to_owned()
                    } else {
                        String::new()
                    };
                    Violation::Skipped {
                        subscriber: sub.id,
                        node: h.node(d.node).to_owned(),
                        channel: h.channel(d.channel).to_owned(),
                        missed: e.msg,
                        missed_id: e.id,
                        evidence: format!("it got {prev} then {id} at {}{resumed}", Ms(d.t_us),),
                    }
                });
            }
        }
        owed_to_the_end(h, sub, &final_k, &sorted, out);
    }
}

/// Which entries of a final stream a subscriber owes outside the span it delivered.
#[derive(Clone, Copy)]
enum Owed {
    /// It delivered nothing on the channel.
    All,
    /// Those before its first delivery.
    Before(StreamId),
    /// Those after its last delivery.
    After(StreamId),
}

/// The entries of the final stream that a stream subscriber owes before its first and
/// after its last delivery on each channel (those in between are checked per gap). What
/// precedes its first delivery is judged against the node that delivered it; what follows
/// its last against the node of its last session (where it was reading at the end; the
/// node of its last delivery if that one has no final stream).
fn owed_to_the_end(
    h: &IndexedHistory,
    sub: &SubscriberRec,
    final_k: &[Option<usize>],
    sorted: &[Vec<u32>],
    out: &mut Findings,
) {
    let n_channels = h.channels.len();
    let end_node = sub.sessions.last().map(|s| s.node);
    for c in 0..n_channels {
        let delivered = sub
            .deliveries
            .iter()
            .filter(|d| d.channel as usize == c && !d.repeat)
            .filter_map(|d| d.id.map(|id| (id, d)));
        // (first id, its node, last id, its node, its time)
        let mut span: Option<(StreamId, u32, StreamId, u32, u64)> = None;
        for (id, d) in delivered {
            span = Some(match span {
                None => (id, d.node, id, d.node, d.t_us),
                Some((first, first_node, last, ..)) if id > last => {
                    (first, first_node, id, d.node, d.t_us)
                }
                Some(s) => s,
            });
        }
        let readable = |n: u32| final_k[n as usize].map(|k| (n, k));
        // Where what it owes is looked up: `(node, final index, which entries)`.
        let mut lookups: Vec<(u32, usize, Owed)> = Vec::new();
        match span {
            None => {
                // Nothing received: it owes the whole final stream of its last node.
                if let Some((n, k)) = end_node.and_then(readable) {
                    lookups.push((n, k, Owed::All));
                }
            }
            Some((first, first_node, last, last_node, _)) => {
                if let Some((n, k)) = readable(first_node) {
                    lookups.push((n, k, Owed::Before(first)));
                }
                let tail = end_node.and_then(readable).or_else(|| readable(last_node));
                if let Some((n, k)) = tail {
                    lookups.push((n, k, Owed::After(last)));
                }
            }
        }
        for (node, k, owed) in lookups {
            let stream = h.final_stream(k, c as u32);
            for &p in &sorted[k * n_channels + c] {
                let e = &stream[p as usize];
                let (Some(id), true) = (e.id, e.msg_idx != NONE) else {
                    continue;
                };
                let is_owed = match owed {
                    Owed::All => true,
                    Owed::Before(first) => id < first,
                    Owed::After(last) => id > last,
                };
                if !is_owed || sub.got(e.msg_idx) {
                    continue;
                }
                out.report_with(Kind::Skipped, || Violation::Skipped {
                    subscriber: sub.id,
                    node: h.node(node).to_owned(),
                    channel: h.channel(c as u32).to_owned(),
                    missed: e.msg,
                    missed_id: e.id,
                    evidence: match owed {
                        Owed::All => format!(
                            "it received nothing on the channel, and the final stream of {} holds {id}",
                            h.node(node)
                        ),
                        Owed::After(last) => format!(
                            "it received nothing after {last} (at {}) although the final stream of {} goes on to {id}",
                            Ms(span.map_or(0, |s| s.4)),
                            h.node(node)
                        ),
                        Owed::Before(first) => format!(
                            "it read from 0-0 but its first delivery on the channel was {first}"
                        ),
                    },
                });
            }
        }
    }
}

/// Per session and channel: the latest-invoked message delivered in that session.
fn latest_per_session(h: &IndexedHistory, sub: &SubscriberRec) -> Vec<(u64, u32)> {
    let n_channels = h.channels.len();
    let mut latest = vec![(0u64, NONE); sub.sessions.len() * n_channels];
    for d in &sub.deliveries {
        if d.msg_idx == NONE || d.session == NONE {
            continue;
        }
        let invoked = h.messages[d.msg_idx as usize].invoke_us;
        let slot = &mut latest[d.session as usize * n_channels + d.channel as usize];
        if slot.1 == NONE || invoked > slot.0 {
            *slot = (invoked, d.msg_idx);
        }
    }
    latest
}

fn check_pubsub(h: &IndexedHistory, out: &mut Findings) {
    let n_channels = h.channels.len();
    let latest: Vec<Vec<(u64, u32)>> = h
        .subscribers
        .iter()
        .map(|s| latest_per_session(h, s))
        .collect();
    for (idx, m) in h.messages.iter().enumerate() {
        let idx = idx as u32;
        if m.status == Status::Fail {
            continue;
        }
        let known = m.known_at();
        if known == u64::MAX {
            continue;
        }
        for (s, sub) in h.subscribers.iter().enumerate() {
            if sub.got(idx) {
                continue;
            }
            let session = sub.session_at(m.invoke_us);
            let Some(si) = session.filter(|&si| sub.sessions[si].down_us > known) else {
                out.at_most_once_gap();
                continue;
            };
            let (later_invoked, later_idx) = latest[s][si * n_channels + m.channel as usize];
            let promised = h.promise.connected_gap_free;
            if later_idx != NONE && later_invoked > known {
                out.judge(promised, Kind::Skipped, || {
                    let later = &h.messages[later_idx as usize];
                    let got_at = sub
                        .deliveries
                        .iter()
                        .find(|d| d.msg_idx == later_idx)
                        .map_or(0, |d| d.t_us);
                    Violation::Skipped {
                        subscriber: sub.id,
                        node: h.node(sub.sessions[si].node).to_owned(),
                        channel: h.channel(m.channel).to_owned(),
                        missed: Some(m.msg),
                        missed_id: None,
                        evidence: format!(
                            "invoked at {} and known at {} while it was connected since {}; it got msg {} invoked later at {} at {}",
                            Ms(m.invoke_us),
                            Ms(known),
                            Ms(sub.sessions[si].up_us),
                            Hex(later.msg),
                            Ms(later.invoke_us),
                            Ms(got_at)
                        ),
                    }
                });
            } else if sub.sessions[si].down_us != u64::MAX {
                // Missed, then disconnected before anything later arrived.
                out.at_most_once_gap();
            } else {
                // Connected from before the invoke to the end of the run: owed.
                out.judge(promised, Kind::Skipped, || Violation::Skipped {
                    subscriber: sub.id,
                    node: h.node(sub.sessions[si].node).to_owned(),
                    channel: h.channel(m.channel).to_owned(),
                    missed: Some(m.msg),
                    missed_id: None,
                    evidence: format!(
                        "invoked at {} and known at {} while it was connected from {} to the end of the run",
                        Ms(m.invoke_us),
                        Ms(known),
                        Ms(sub.sessions[si].up_us)
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;
    use crate::history::Outcome;

    fn three_acked_stream() -> H {
        three_acked_on(&["n1"])
    }

    #[test]
    fn in_order_stream_is_clean_also_across_a_resume() {
        let mut h = three_acked_stream();
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.sub_down(1, "n1");
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 2, "2-0");
        h.deliver(1, "n1", 3, "3-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn going_backwards_is_reordered() {
        let mut h = three_acked_stream();
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.deliver(1, "n1", 3, "3-0");
        h.deliver(1, "n1", 2, "2-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Reordered), 1);
        // 2 arrived (late), so it was not skipped.
        assert_eq!(f.count(Kind::Skipped), 0);
        let ex = &f.examples(Kind::Reordered)[0];
        assert!(
            ex.contains(&format!("got msg {} at 2-0 on c", H::hex(2))) && ex.contains("after 3-0"),
            "{ex}"
        );
    }

    #[test]
    fn a_gap_in_stream_mode_is_skipped_also_after_resume() {
        let mut h = three_acked_stream();
        h.acked(4, "c", "4-0");
        h.final_entry("n1", "c", "4-0", 4);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.deliver(1, "n1", 3, "3-0");
        h.sub_down(1, "n1");
        h.sub_up(2, "n1");
        h.deliver(2, "n1", 1, "1-0");
        h.deliver(2, "n1", 2, "2-0");
        h.deliver(2, "n1", 3, "3-0");
        h.sub_up(1, "n1");
        h.at(100);
        h.deliver(1, "n1", 4, "4-0");
        h.deliver(2, "n1", 4, "4-0");
        // Subscriber 1 never got 2-0; subscriber 2 got everything.
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 1);
        assert_eq!(f.count(Kind::Reordered), 0);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.contains(&format!("sub 1 via n1 missed msg {} (id 2-0)", H::hex(2))),
            "{ex}"
        );

        let mut h = three_acked_stream();
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.sub_down(1, "n1");
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 3, "3-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 1);
        assert!(f.examples(Kind::Skipped)[0].contains("after a resume"));
    }

    fn three_acked_on(nodes: &[&str]) -> H {
        let mut h = H::stream(nodes);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.acked(3, "c", "3-0");
        h.finals_everywhere();
        h
    }

    #[test]
    fn a_stream_subscriber_that_moves_node_and_resumes_by_id_is_clean() {
        let mut h = three_acked_on(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.move_sub(1, "n1", "n2");
        h.deliver(1, "n2", 2, "2-0");
        h.deliver(1, "n2", 3, "3-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.total(), 0, "{:?}", f.examples(Kind::Skipped));
    }

    #[test]
    fn a_skip_after_a_move_is_caught_on_the_new_node() {
        let mut h = three_acked_on(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.move_sub(1, "n1", "n2");
        h.deliver(1, "n2", 3, "3-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 1);
        assert_eq!(f.count(Kind::Reordered), 0);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.contains(&format!("sub 1 via n2 missed msg {} (id 2-0)", H::hex(2)))
                && ex.contains("after a move from n1"),
            "{ex}"
        );
    }

    #[test]
    fn after_a_move_the_rest_is_owed_by_the_node_it_ended_on() {
        // Moved to n2 and received nothing more: 2-0 and 3-0 are owed, by n2.
        let mut h = three_acked_on(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.move_sub(1, "n1", "n2");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 2);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.contains("sub 1 via n2 missed") && ex.contains("final stream of n2"),
            "{ex}"
        );

        // Going back to an earlier id on the new node is still reordered.
        let mut h = three_acked_on(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.deliver(1, "n1", 3, "3-0");
        h.move_sub(1, "n1", "n2");
        h.deliver(1, "n2", 2, "2-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Reordered), 1);
        assert!(f.examples(Kind::Reordered)[0].contains("sub 1 via n2 got"));
    }

    #[test]
    fn a_pubsub_subscriber_that_moves_is_owed_what_each_session_saw_committed() {
        let mut h = H::pubsub(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1");
        h.deliver_ps(1, "n1", 1);
        h.sub_down(1, "n1");
        // Published between the sessions: an at-most-once gap.
        h.acked(2, "c", "1");
        h.sub_up(1, "n2");
        h.acked(3, "c", "1");
        h.acked(4, "c", "1");
        h.deliver_ps(1, "n2", 4);
        // 3 was committed while the n2 session was up and a later message arrived: skipped,
        // and attributed to n2, where it happened.
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.gaps(), 1);
        assert_eq!(f.count(Kind::Skipped), 1);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.contains(&format!("sub 1 via n2 missed msg {}", H::hex(3))),
            "{ex}"
        );

        // The same moves without the miss are clean.
        let mut h = H::pubsub(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1");
        h.deliver_ps(1, "n1", 1);
        h.move_sub(1, "n1", "n2");
        h.acked(3, "c", "1");
        h.deliver_ps(1, "n2", 3);
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.total(), 0);
        assert_eq!(f.gaps(), 0);
    }

    #[test]
    fn pubsub_miss_while_disconnected_is_an_at_most_once_gap() {
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1");
        h.deliver_ps(1, "n1", 1);
        h.sub_down(1, "n1");
        h.acked(2, "c", "1");
        h.sub_up(1, "n1");
        h.acked(3, "c", "1");
        h.deliver_ps(1, "n1", 3);
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.total(), 0);
        assert_eq!(f.gaps(), 1);
    }

    #[test]
    fn pubsub_miss_while_connected_is_skipped() {
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1");
        h.deliver_ps(1, "n1", 1);
        h.acked(2, "c", "1");
        h.acked(3, "c", "1");
        h.deliver_ps(1, "n1", 3);
        // Every subscriber subscribes to every channel: 4 on d is owed too, since the
        // subscriber stayed connected to the end.
        h.acked(4, "d", "1");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 2);
        assert_eq!(f.gaps(), 0);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.contains(&format!("missed msg {}", H::hex(2))) && ex.contains(&H::hex(3)),
            "{ex}"
        );
    }

    #[test]
    fn a_stream_subscriber_that_stops_or_never_delivers_is_caught() {
        // Stops after the first entry: 2-0 and 3-0 are owed.
        let mut h = three_acked_stream();
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 2);
        assert!(
            f.examples(Kind::Skipped)[0].contains("it received nothing after 1-0"),
            "{:?}",
            f.examples(Kind::Skipped)
        );

        // Never delivers anything: all three.
        let mut h = three_acked_stream();
        h.sub_up(1, "n1");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 3);
        assert!(f.examples(Kind::Skipped)[0].contains("it received nothing on the channel"));

        // Starts late (not from 0-0): the first entry is owed.
        let mut h = three_acked_stream();
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 2, "2-0");
        h.deliver(1, "n1", 3, "3-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 1);
        assert!(f.examples(Kind::Skipped)[0].contains("its first delivery on the channel was 2-0"));
    }

    #[test]
    fn a_pubsub_subscriber_connected_to_the_end_is_owed_everything() {
        // The bus's fan-out delivers nothing: every message is skipped.
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1");
        h.acked(2, "c", "2");
        h.push(crate::history::Event::SubscriberDown {
            t_us: 10_000,
            subscriber: 1,
            node: "n1".into(),
            reason: crate::history::RUN_FINISHED.into(),
        });
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 2);
        assert!(f.examples(Kind::Skipped)[0].contains("to the end of the run"));
    }

    #[test]
    fn redis_pubsub_misses_while_connected_are_anomalies_not_violations() {
        use raftbus_reports::model::{Mode, Target};
        let mut h = H::pubsub(&["redis"]);
        h.promise = crate::check::Promise::of(Target::Redis, Mode::Pubsub);
        h.sub_up(1, "redis");
        h.acked(1, "c", "1");
        h.acked(2, "c", "1");
        h.deliver_ps(1, "redis", 2);
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 0);
        assert_eq!(f.anomaly_count(Kind::Skipped), 1);
    }

    #[test]
    fn each_stream_subscriber_is_held_to_its_own_node_and_channel() {
        // Channel c (interned first) and d; n2's final stream of d is longer than n1's.
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "9-0");
        h.acked(2, "d", "1-0");
        h.acked(3, "d", "2-0");
        h.acked(4, "d", "3-0");
        h.acked(5, "d", "4-0");
        for node in ["n1", "n2"] {
            h.final_entry(node, "c", "9-0", 1);
            h.final_entry(node, "d", "1-0", 2);
        }
        h.final_entry("n2", "d", "2-0", 3);
        h.final_entry("n2", "d", "3-0", 4);
        h.final_entry("n2", "d", "4-0", 5);
        h.sub_up(1, "n2");
        h.deliver(1, "n2", 1, "9-0");
        h.deliver(1, "n2", 2, "1-0");
        h.at(100);
        h.deliver(1, "n2", 4, "3-0");
        // On d it skipped 2-0 and stopped before 4-0 of n2's stream; c (up to 9-0) says
        // nothing about d.
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 2, "{:?}", f.examples(Kind::Skipped));
        assert_eq!(f.count(Kind::Reordered), 0);
        let ex = f.examples(Kind::Skipped);
        assert!(
            ex[0].contains(&format!(
                "sub 1 via n2 missed msg {} (id 2-0) on d",
                H::hex(3)
            )) && ex[0].contains("it got 1-0 then 3-0 at 101.0ms"),
            "{ex:?}"
        );
        assert!(
            ex[1].contains(&format!("missed msg {} (id 4-0) on d", H::hex(5)))
                && ex[1].contains("it received nothing after 3-0 (at 101.0ms) although the final stream of n2 goes on to 4-0"),
            "{ex:?}"
        );
    }

    #[test]
    fn a_late_delivery_below_the_highest_id_does_not_shrink_what_was_reached() {
        let mut h = three_acked_stream();
        h.acked(4, "c", "4-0");
        h.final_entry("n1", "c", "4-0", 4);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.deliver(1, "n1", 4, "4-0");
        h.deliver(1, "n1", 2, "2-0");
        // 3-0 is missed once, in the gap from 1-0 to 4-0; 2-0 came late (reordered).
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Reordered), 1);
        assert_eq!(f.count(Kind::Skipped), 1, "{:?}", f.examples(Kind::Skipped));
        assert!(f.examples(Kind::Skipped)[0].contains("it got 1-0 then 4-0"));
    }

    #[test]
    fn the_end_of_what_it_read_is_when_it_first_reached_its_highest_id() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.acked(3, "c", "5-0");
        h.acked(4, "c", "3-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_entry("n1", "c", "2-0", 2);
        h.final_entry("n1", "c", "3-0", 4);
        h.sub_up(1, "n1");
        h.at(100);
        h.deliver(1, "n1", 1, "1-0");
        h.deliver(1, "n1", 2, "2-0");
        // Another message under the same id, later.
        h.at(200);
        h.deliver(1, "n1", 3, "2-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Reordered), 1);
        assert_eq!(f.count(Kind::Skipped), 1);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.contains("it received nothing after 2-0 (at 102.0ms) although the final stream of n1 goes on to 3-0"),
            "{ex}"
        );
    }

    #[test]
    fn an_entry_at_a_delivered_id_is_not_owed_even_if_it_holds_another_message() {
        // The final stream holds 1, 2 and 3 at 1-0..3-0, but the subscriber got 4 at 1-0
        // and 5 at 3-0 (an id conflict, not a gap): it reached every id.
        let mut h = three_acked_stream();
        h.acked(4, "c", "1-0");
        h.acked(5, "c", "3-0");
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 4, "1-0");
        h.deliver(1, "n1", 2, "2-0");
        h.deliver(1, "n1", 5, "3-0");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.total(), 0, "{:?}", f.examples(Kind::Skipped));
    }

    #[test]
    fn a_pubsub_miss_names_the_latest_invoked_message_of_its_session_and_channel() {
        let mut h = H::pubsub(&["n1"]);
        h.acked(1, "c", "1");
        h.sub_up(1, "n1");
        h.deliver_ps(1, "n1", 1);
        h.sub_down(1, "n1");
        h.sub_up(1, "n1");
        // Second session (from 6 ms), channel d: 2 is missed, 3 (invoked later) arrives.
        h.acked(2, "d", "1");
        h.acked(3, "d", "1");
        h.deliver_ps(1, "n1", 3);
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 1);
        assert_eq!(f.gaps(), 0);
        let ex = &f.examples(Kind::Skipped)[0];
        let want = format!(
            "sub 1 via n1 missed msg {} (id no id) on d; invoked at 7.0ms and known at 8.0ms while it was connected since 6.0ms; it got msg {} invoked later at 9.0ms at 11.0ms",
            H::hex(2),
            H::hex(3)
        );
        assert_eq!(ex, &want);
    }

    #[test]
    fn a_pubsub_miss_is_judged_by_the_latest_invoked_not_the_last_delivered() {
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1");
        h.acked(2, "c", "1");
        h.acked(3, "c", "1");
        // 3 (invoked after 2 was acknowledged) arrives before 1; 2 never does.
        h.deliver_ps(1, "n1", 3);
        h.deliver_ps(1, "n1", 1);
        // An unknown payload says nothing.
        h.deliver_raw(1, "n1", "c", None, None, true);
        h.sub_down(1, "n1");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 1);
        assert_eq!(f.gaps(), 0);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.contains(&format!(
                "it got msg {} invoked later at 6.0ms at 8.0ms",
                H::hex(3)
            )),
            "{ex}"
        );
    }

    #[test]
    fn a_pubsub_miss_followed_only_by_earlier_or_simultaneous_invokes_is_a_gap() {
        // 2 is acknowledged at 5 ms; the session got only 1 (invoked before) and ended.
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.invoke(1, "c");
        h.invoke(2, "c");
        h.complete(1, Outcome::Ok, Some("1"));
        h.complete(2, Outcome::Ok, Some("1"));
        h.deliver_ps(1, "n1", 1);
        h.sub_down(1, "n1");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!((f.total(), f.gaps()), (0, 1));

        // 3 is invoked exactly when 2's ack completed (3 ms): not later than 2 was known.
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.invoke(2, "c");
        h.complete(2, Outcome::Ok, Some("1"));
        h.at(2);
        h.invoke(3, "c");
        h.complete(3, Outcome::Ok, Some("1"));
        h.deliver_ps(1, "n1", 3);
        h.sub_down(1, "n1");
        let f = run_one(&SubscriberOrder, h);
        assert_eq!((f.total(), f.gaps()), (0, 1));
    }

    #[test]
    fn of_messages_invoked_at_the_same_instant_the_first_delivered_is_named() {
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        // 2 is acknowledged at 3 ms and never arrives; 3 and 4 are both invoked at 4 ms.
        h.acked(2, "c", "1");
        h.at(3);
        h.invoke(3, "c");
        h.at(3);
        h.invoke(4, "c");
        h.complete(3, Outcome::Ok, Some("1"));
        h.complete(4, Outcome::Ok, Some("1"));
        h.deliver_ps(1, "n1", 4);
        h.deliver_ps(1, "n1", 3);
        let f = run_one(&SubscriberOrder, h);
        assert_eq!(f.count(Kind::Skipped), 1);
        let ex = &f.examples(Kind::Skipped)[0];
        assert!(
            ex.ends_with(&format!(
                "it got msg {} invoked later at 4.0ms at 7.0ms",
                H::hex(4)
            )),
            "{ex}"
        );
    }
}
