//! Real-time order: on one channel, if A was acknowledged before B was invoked, A precedes
//! B. Checked on the longest final stream of each channel (ties: the first node by name),
//! or, without final streams, on every subscriber's deliveries. Linear: walk the sequence
//! from its end keeping the earliest acknowledgement of the suffix. Each B found after
//! such an A counts once.

use super::index::{IdSet, IndexedHistory, StreamId, NONE};
use super::{Findings, Invariant, Kind, Violation};

pub(crate) struct Realtime;

/// Walks one sequence of `(msg_idx, id)` backwards; calls `found(earlier, later)` per
/// violating `later`.
fn walk(
    h: &IndexedHistory,
    seq: impl DoubleEndedIterator<Item = (u32, Option<StreamId>)>,
    mut found: impl FnMut((u32, Option<StreamId>), (u32, Option<StreamId>)),
) {
    let mut min: Option<(u64, u32, Option<StreamId>)> = None;
    for (idx, id) in seq.rev() {
        let m = &h.messages[idx as usize];
        if let Some((acked, a_idx, a_id)) = min {
            if acked < m.invoke_us {
                found((a_idx, a_id), (idx, id));
            }
        }
        if m.is_acked() && min.is_none_or(|(t, _, _)| m.complete_us < t) {
            min = Some((m.complete_us, idx, id));
        }
    }
}

fn report(
    h: &IndexedHistory,
    out: &mut Findings,
    channel: u32,
    seen_in: &dyn Fn() -> String,
    a: (u32, Option<StreamId>),
    b: (u32, Option<StreamId>),
) {
    out.report_with(Kind::Realtime, || {
        let (ma, mb) = (&h.messages[a.0 as usize], &h.messages[b.0 as usize]);
        Violation::Realtime {
            channel: h.channel(channel).to_owned(),
            seen_in: seen_in(),
            earlier: ma.msg,
            earlier_acked_us: ma.complete_us,
            earlier_id: a.1,
            later: mb.msg,
            later_invoked_us: mb.invoke_us,
            later_id: b.1,
        }
    });
}

impl Invariant for Realtime {
    fn name(&self) -> &'static str {
        "realtime"
    }

    fn property(&self) -> &'static str {
        "a message acknowledged before another was published precedes it"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        if h.has_finals() {
            for c in 0..h.channels.len() as u32 {
                let Some(k) = (0..h.final_nodes.len())
                    .rev()
                    .max_by_key(|&k| h.final_stream(k, c).len())
                else {
                    continue;
                };
                let stream = h.final_stream(k, c);
                let seq = stream.iter().enumerate().filter_map(|(pos, e)| {
                    (e.msg_idx != NONE && h.first_pos(e.msg_idx, k) == pos as u32)
                        .then_some((e.msg_idx, e.id))
                });
                let node = h.node(h.final_nodes[k]);
                let mut found = Vec::new();
                walk(h, seq, |a, b| found.push((a, b)));
                for (a, b) in found {
                    report(h, out, c, &|| format!("final stream of {node}"), a, b);
                }
            }
            return;
        }
        let mut flagged: IdSet<u32> = IdSet::default();
        for sub in &h.subscribers {
            for c in 0..h.channels.len() as u32 {
                let seq = sub
                    .deliveries
                    .iter()
                    .filter(|d| d.channel == c && d.msg_idx != NONE && !d.repeat)
                    .map(|d| (d.msg_idx, d.id));
                let mut found = Vec::new();
                walk(h, seq, |a, b| found.push((a, b)));
                for (a, b) in found {
                    if flagged.insert(b.0) {
                        report(h, out, c, &|| format!("deliveries to sub {}", sub.id), a, b);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;
    use crate::history::Outcome;

    #[test]
    fn concurrent_publishes_may_commit_in_any_order() {
        let mut h = H::stream(&["n1", "n2"]);
        // 1 and 2 overlap, so either order is fine; 3 starts after both were acked.
        h.invoke(1, "c");
        h.invoke(2, "c");
        h.complete(2, Outcome::Ok, Some("1-0"));
        h.complete(1, Outcome::Ok, Some("2-0"));
        h.acked(3, "c", "3-0");
        h.finals_everywhere();
        let f = run_one(&Realtime, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn acked_before_invoke_but_later_in_stream_is_a_violation() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "2-0");
        h.acked(2, "c", "1-0");
        h.acked(3, "c", "3-0");
        h.final_entry("n1", "c", "1-0", 2);
        h.final_entry("n1", "c", "2-0", 1);
        h.final_entry("n1", "c", "3-0", 3);
        let f = run_one(&Realtime, h);
        assert_eq!(f.count(Kind::Realtime), 1);
        let ex = &f.examples(Kind::Realtime)[0];
        let want = format!("on c in final stream of n1: msg {} (id 2-0) acked at 2.0ms comes after msg {} (id 1-0) invoked later at 3.0ms", H::hex(1), H::hex(2));
        assert!(ex.contains(&want), "{ex}");
    }

    #[test]
    fn an_ack_at_the_very_time_of_the_next_invoke_is_concurrent() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "2-0"); // acked at 2 ms
        h.at(1);
        h.invoke(2, "c"); // invoked at 2 ms
        h.complete(2, Outcome::Ok, Some("1-0"));
        h.final_entry("n1", "c", "1-0", 2);
        h.final_entry("n1", "c", "2-0", 1);
        assert_eq!(run_one(&Realtime, h).total(), 0);
    }

    #[test]
    fn only_acknowledged_messages_order_later_ones() {
        // 1 completed (info) before 2 was invoked, and is stored after it: 1 was never
        // acknowledged, so nothing was promised about its place.
        let mut h = H::stream(&["n1"]);
        h.indeterminate(1, "c");
        h.acked(2, "c", "1-0");
        h.final_entry("n1", "c", "1-0", 2);
        h.final_entry("n1", "c", "2-0", 1);
        assert_eq!(run_one(&Realtime, h).total(), 0);
    }

    #[test]
    fn deliveries_are_ordered_per_channel_and_repeats_do_not_count() {
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.acked(1, "d", "1");
        h.acked(2, "c", "1");
        // Another channel's earlier message after this one: no order between channels.
        h.deliver_ps(1, "n1", 2);
        h.deliver_ps(1, "n1", 1);
        // A repeat of 1 after a later message is a duplicate, not a reordering.
        h.acked(3, "d", "1");
        h.deliver_ps(1, "n1", 3);
        h.deliver_ps(1, "n1", 1);
        assert_eq!(run_one(&Realtime, h).total(), 0);
    }

    #[test]
    fn pubsub_uses_deliveries() {
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1");
        h.acked(2, "c", "1");
        h.deliver_ps(1, "n1", 2);
        h.deliver_ps(1, "n1", 1);
        let f = run_one(&Realtime, h);
        assert_eq!(f.count(Kind::Realtime), 1);
        assert!(f.examples(Kind::Realtime)[0].contains("deliveries to sub 1"));
    }
}
