//! Lost acknowledged messages.
//!
//! With final streams (a target that stores what it acknowledges, see `promise.rs`): a
//! message is lost when it was acknowledged and is absent from every node's final stream. A message some nodes have and others lack is
//! divergence (see `divergence.rs`), not loss. Without final streams (Redis pub/sub, which
//! stores nothing, or a run whose final streams could not be read): a message is lost when
//! it was acknowledged and no subscriber that stayed connected from its invoke to the end
//! of the run received it (if there is no such subscriber, nothing can be said); that is a
//! violation where the target promises connected subscribers everything, an anomaly where
//! it promises at most once. Each lost message counts once, as mid-stream when an
//! acknowledged message of the same channel invoked after it survived, as tail otherwise.

use super::index::{IndexedHistory, MsgRec, NONE};
use super::{Findings, Invariant, Kind, Violation};

pub(crate) struct Lost;

impl Invariant for Lost {
    fn name(&self) -> &'static str {
        "lost"
    }

    fn property(&self) -> &'static str {
        "an acknowledged message is never lost"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let (lost, promised) = if by_finals(h) {
            (lost_in_finals(h), true)
        } else {
            (lost_in_deliveries(h), h.promise.connected_gap_free)
        };
        if lost.is_empty() {
            return;
        }
        // Surviving acknowledged messages per channel, sorted by invoke time.
        let mut surviving: Vec<Vec<(u64, u32)>> = vec![Vec::new(); h.channels.len()];
        for (idx, m) in h.messages.iter().enumerate() {
            let idx = idx as u32;
            if m.is_acked() && survives(h, idx, m) {
                surviving[m.channel as usize].push((m.invoke_us, idx));
            }
        }
        for s in &mut surviving {
            s.sort_unstable();
        }
        for (idx, missing_on) in lost {
            let m = &h.messages[idx as usize];
            let later = &surviving[m.channel as usize];
            let next = later.partition_point(|&(t, _)| t <= m.invoke_us);
            match later.get(next) {
                Some(&(_, next_idx)) => out.judge(promised, Kind::LostMidStream, || {
                    let n = &h.messages[next_idx as usize];
                    Violation::LostMidStream {
                        msg: m.msg,
                        channel: h.channel(m.channel).to_owned(),
                        acked_us: m.complete_us,
                        node: h.node(m.node).to_owned(),
                        ack_id: m.ack_id,
                        missing_on,
                        next_surviving: (n.msg, surviving_id(h, next_idx).or(n.ack_id)),
                    }
                }),
                None => out.judge(promised, Kind::LostTail, || Violation::LostTail {
                    msg: m.msg,
                    channel: h.channel(m.channel).to_owned(),
                    acked_us: m.complete_us,
                    node: h.node(m.node).to_owned(),
                    ack_id: m.ack_id,
                    missing_on,
                }),
            }
        }
    }
}

/// Whether loss is judged by the final streams (the target stores what it acknowledges).
fn by_finals(h: &IndexedHistory) -> bool {
    h.promise.stores_acked && h.has_finals()
}

fn survives(h: &IndexedHistory, idx: u32, m: &MsgRec) -> bool {
    if by_finals(h) {
        h.in_any_final(idx)
    } else {
        m.first_delivery_us != u64::MAX
    }
}

/// The id of a message in the first final stream that holds it.
fn surviving_id(h: &IndexedHistory, idx: u32) -> Option<super::StreamId> {
    let channel = h.messages[idx as usize].channel;
    (0..h.final_nodes.len()).find_map(|k| {
        let pos = h.first_pos(idx, k);
        (pos != NONE).then(|| h.final_stream(k, channel)[pos as usize].id)?
    })
}

fn lost_in_finals(h: &IndexedHistory) -> Vec<(u32, Vec<String>)> {
    h.messages
        .iter()
        .enumerate()
        .filter(|(idx, m)| m.is_acked() && !h.in_any_final(*idx as u32))
        .map(|(idx, _)| (idx as u32, h.missing_on(idx as u32)))
        .collect()
}

fn lost_in_deliveries(h: &IndexedHistory) -> Vec<(u32, Vec<String>)> {
    // Subscribers still connected at the end, with the start of that last session.
    let mut eligible: Vec<(u64, usize)> = h
        .subscribers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let last = s.sessions.last()?;
            (last.down_us == u64::MAX).then_some((last.up_us, i))
        })
        .collect();
    eligible.sort_unstable();
    let mut lost = Vec::new();
    for (idx, m) in h.messages.iter().enumerate() {
        if !m.is_acked() {
            continue;
        }
        let n = eligible.partition_point(|&(up, _)| up <= m.invoke_us);
        if n == 0 {
            continue;
        }
        let subs = &eligible[..n];
        if subs.iter().all(|&(_, s)| !h.subscribers[s].got(idx as u32)) {
            let names = subs
                .iter()
                .map(|&(_, s)| format!("sub {}", h.subscribers[s].id))
                .collect();
            lost.push((idx as u32, names));
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;

    #[test]
    fn surviving_and_unacknowledged_messages_are_not_lost() {
        let mut h = H::stream(&["n1", "n2", "n3"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "d", "1-0");
        h.finals_everywhere();
        h.indeterminate(3, "c");
        h.failed(4, "c");
        h.invoke(5, "c");
        // Acknowledged, but on one node only: divergence, not loss.
        h.acked(6, "c", "2-0");
        h.final_entry("n2", "c", "2-0", 6);
        let f = run_one(&Lost, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn lost_mid_stream_and_tail_are_told_apart() {
        let mut h = H::stream(&["n1", "n2", "n3"]);
        for n in 1..=4 {
            h.acked(n, "c", &format!("{n}-0"));
        }
        h.acked(5, "d", "1-0");
        for node in ["n1", "n2", "n3"] {
            h.final_entry(node, "c", "1-0", 1);
            h.final_entry(node, "c", "3-0", 3);
        }
        let f = run_one(&Lost, h);
        assert_eq!(f.count(Kind::LostMidStream), 1);
        // 4 on c and 5 on d: nothing acknowledged after them survived.
        assert_eq!(f.count(Kind::LostTail), 2);
        let mid = &f.examples(Kind::LostMidStream)[0];
        let want = format!(
            "msg {} on c acked at 4.0ms on n1 (id 2-0) missing on n1,n2,n3; next surviving: {} at 3-0",
            H::hex(2),
            H::hex(3)
        );
        assert_eq!(mid, &want);
        let tail = f.examples(Kind::LostTail).join("\n");
        assert!(tail.contains(&format!("msg {} on c", H::hex(4))), "{tail}");
        assert!(tail.contains(&format!("msg {} on d", H::hex(5))), "{tail}");
    }

    #[test]
    fn the_next_survivor_is_named_where_it_is_stored_not_where_it_was_acked() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        // Stored at another id than it was acknowledged with (itself a violation elsewhere).
        h.final_entry("n1", "c", "7-0", 2);
        let f = run_one(&Lost, h);
        let mid = &f.examples(Kind::LostMidStream)[0];
        assert!(
            mid.ends_with(&format!("next surviving: {} at 7-0", H::hex(2))),
            "{mid}"
        );
    }

    #[test]
    fn pubsub_lost_means_no_subscriber_connected_throughout_got_it() {
        let mut h = H::pubsub(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.sub_up(2, "n2");
        h.acked(1, "c", "2");
        h.deliver_ps(1, "n1", 1);
        h.deliver_ps(2, "n2", 1);
        // 2 reaches only subscriber 2, which then reconnects: it does not count.
        h.acked(2, "c", "1");
        h.deliver_ps(2, "n2", 2);
        h.sub_down(2, "n2");
        h.sub_up(2, "n2");
        h.acked(3, "c", "2");
        h.deliver_ps(1, "n1", 3);
        h.deliver_ps(2, "n2", 3);
        // 4 reaches nobody.
        h.acked(4, "c", "0");
        let f = run_one(&Lost, h);
        assert_eq!(f.count(Kind::LostMidStream), 1);
        assert_eq!(f.count(Kind::LostTail), 1);
        let mid = &f.examples(Kind::LostMidStream)[0];
        assert!(mid.starts_with(&format!("msg {} on c", H::hex(2))), "{mid}");
        assert!(mid.contains("missing on sub 1;"), "{mid}");
        let tail = &f.examples(Kind::LostTail)[0];
        assert!(
            tail.starts_with(&format!("msg {} on c", H::hex(4))),
            "{tail}"
        );
    }
}
