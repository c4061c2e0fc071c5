//! Subscribers agree on order: two subscribers (on any nodes) must not see two common
//! messages of one channel in opposite orders. Compared pairwise (first deliveries only),
//! which is linear in deliveries per pair of subscribers. Each message found out of order
//! counts once, as kind `disagreement`, into `Checks::reordered`.

use super::index::{IdSet, IndexedHistory, NONE};
use super::{Findings, Invariant, Kind, Violation};

pub(crate) struct SubscriberAgreement;

impl Invariant for SubscriberAgreement {
    fn name(&self) -> &'static str {
        "subscriber_agreement"
    }

    fn property(&self) -> &'static str {
        "all subscribers see the common messages of a channel in the same order"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let n_msgs = h.messages.len();
        // Per subscriber: position of each message among its first deliveries.
        let positions: Vec<Vec<u32>> = h
            .subscribers
            .iter()
            .map(|sub| {
                let mut pos = vec![NONE; n_msgs];
                for (i, d) in sub.deliveries.iter().enumerate() {
                    if d.msg_idx != NONE && !d.repeat {
                        pos[d.msg_idx as usize] = i as u32;
                    }
                }
                pos
            })
            .collect();
        let mut flagged: IdSet<u32> = IdSet::default();
        // Per channel: the highest position in `b` seen so far and its message.
        let mut high: Vec<(u32, u32)> = vec![(0, NONE); h.channels.len()];
        for (a, sub_a) in h.subscribers.iter().enumerate() {
            for (b, sub_b) in h.subscribers.iter().enumerate().skip(a + 1) {
                high.fill((0, NONE));
                let pos_b = &positions[b];
                for d in &sub_a.deliveries {
                    if d.msg_idx == NONE || d.repeat {
                        continue;
                    }
                    let p = pos_b[d.msg_idx as usize];
                    if p == NONE {
                        continue;
                    }
                    let slot = &mut high[d.channel as usize];
                    if slot.1 == NONE || p > slot.0 {
                        *slot = (p, d.msg_idx);
                    } else if flagged.insert(d.msg_idx) {
                        let before = slot.1;
                        out.report_with(Kind::Disagreement, || Violation::Disagreement {
                            channel: h.channel(d.channel).to_owned(),
                            a: h.messages[before as usize].msg,
                            b: h.messages[d.msg_idx as usize].msg,
                            sub_ab: sub_a.id,
                            sub_ba: sub_b.id,
                        });
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

    #[test]
    fn same_order_with_gaps_agrees() {
        let mut h = H::pubsub(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.sub_up(2, "n2");
        for n in 1..=4 {
            h.acked(n, "c", "1");
        }
        h.acked(5, "d", "1");
        for n in [1, 2, 3, 5, 4] {
            h.deliver_ps(1, "n1", n);
        }
        // Other channel interleaved differently: not a disagreement.
        for n in [5, 1, 3, 4] {
            h.deliver_ps(2, "n2", n);
        }
        let f = run_one(&SubscriberAgreement, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn a_subscriber_that_moves_still_agrees_and_still_disagrees() {
        // Sub 2 sees 1..4 in order on n2; sub 1 moves from n1 to n2 after 1 and then sees
        // 2, 3, 4 in order, or (swapped) 2, 4, 3.
        for swapped in [false, true] {
            let mut h = H::pubsub(&["n1", "n2"]);
            h.sub_up(1, "n1");
            h.sub_up(2, "n2");
            for n in 1..=4 {
                h.acked(n, "c", "1");
                h.deliver_ps(2, "n2", n);
            }
            h.deliver_ps(1, "n1", 1);
            h.move_sub(1, "n1", "n2");
            let after = if swapped { [2, 4, 3] } else { [2, 3, 4] };
            for n in after {
                h.deliver_ps(1, "n2", n);
            }
            let f = run_one(&SubscriberAgreement, h);
            assert_eq!(f.count(Kind::Disagreement), u64::from(swapped));
            assert_eq!(f.total(), u64::from(swapped));
        }
    }

    #[test]
    fn opposite_orders_disagree() {
        let mut h = H::pubsub(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.sub_up(2, "n2");
        h.sub_up(3, "n2");
        for n in 1..=3 {
            h.acked(n, "c", "1");
        }
        for n in [1, 2, 3] {
            h.deliver_ps(1, "n1", n);
        }
        for n in [1, 3, 2] {
            h.deliver_ps(2, "n2", n);
            h.deliver_ps(3, "n2", n);
        }
        let f = run_one(&SubscriberAgreement, h);
        assert_eq!(f.count(Kind::Disagreement), 1);
        let ex = &f.examples(Kind::Disagreement)[0];
        let want = format!(
            "on c sub 1 saw msg {} before msg {} but sub 2 saw them the other way",
            H::hex(2),
            H::hex(3)
        );
        assert!(ex.contains(&want), "{ex}");
    }

    #[test]
    fn repeats_and_unknown_messages_do_not_count_as_an_order() {
        let mut h = H::pubsub(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.sub_up(2, "n2");
        h.acked(1, "c", "1");
        h.acked(2, "c", "1");
        // Sub 1 gets 1 and 2, then 1 again and a payload nobody published; sub 2 gets
        // the same first deliveries, with the repeat and the unknown payload elsewhere.
        h.deliver_ps(1, "n1", 1);
        h.deliver_ps(1, "n1", 2);
        h.deliver_ps(1, "n1", 1);
        h.deliver_raw(1, "n1", "c", None, None, true);
        h.deliver_ps(2, "n2", 1);
        h.deliver_raw(2, "n2", "c", None, None, true);
        h.deliver_ps(2, "n2", 2);
        h.deliver_ps(2, "n2", 1);
        let f = run_one(&SubscriberAgreement, h);
        assert_eq!(f.total(), 0);
    }
}
