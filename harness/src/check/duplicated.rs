//! Duplicates: an acknowledged message twice in one node's final stream, or any message
//! delivered twice to the same subscriber (also when a resume re-delivers an id the
//! subscriber already had). Each message counts once per kind. Duplicates of
//! indeterminate or failed publishes in final streams are `indeterminate.rs`'s.

use super::index::{IdSet, IndexedHistory, Status, StreamId, NONE};
use super::{Findings, Invariant, Kind, Violation};

pub(crate) struct Duplicated;

/// Every repeated occurrence in a final stream: `(final node k, channel, msg_idx)`.
pub(super) fn repeats_in_finals(
    h: &IndexedHistory,
) -> impl Iterator<Item = (usize, u32, u32)> + '_ {
    (0..h.final_nodes.len()).flat_map(move |k| {
        (0..h.channels.len() as u32).flat_map(move |c| {
            h.final_stream(k, c)
                .iter()
                .enumerate()
                .filter(move |(pos, e)| {
                    e.msg_idx != NONE && h.first_pos(e.msg_idx, k) != *pos as u32
                })
                .map(move |(_, e)| (k, c, e.msg_idx))
        })
    })
}

/// The ids at which a message occurs in the final stream of `final_nodes[k]`.
pub(super) fn ids_in_final(
    h: &IndexedHistory,
    k: usize,
    channel: u32,
    msg_idx: u32,
) -> Vec<Option<StreamId>> {
    h.final_stream(k, channel)
        .iter()
        .filter(|e| e.msg_idx == msg_idx)
        .map(|e| e.id)
        .collect()
}

impl Invariant for Duplicated {
    fn name(&self) -> &'static str {
        "duplicated"
    }

    fn property(&self) -> &'static str {
        "each message is stored once per node and delivered once per subscriber"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let mut seen: IdSet<u32> = IdSet::default();
        for (k, channel, idx) in repeats_in_finals(h) {
            let m = &h.messages[idx as usize];
            if m.status != Status::Ok || !seen.insert(idx) {
                continue;
            }
            out.report_with(Kind::Duplicated, || Violation::Duplicated {
                msg: m.msg,
                node: h.node(h.final_nodes[k]).to_owned(),
                ids: ids_in_final(h, k, channel, idx),
            });
        }

        let mut seen: IdSet<u32> = IdSet::default();
        for sub in &h.subscribers {
            for (i, d) in sub.deliveries.iter().enumerate() {
                if !d.repeat || !seen.insert(d.msg_idx) {
                    continue;
                }
                out.report_with(Kind::DuplicatedDelivery, || {
                    let first = sub.deliveries[..i]
                        .iter()
                        .find(|p| p.msg_idx == d.msg_idx)
                        .unwrap_or(d);
                    Violation::DuplicatedDelivery {
                        msg: h.messages[d.msg_idx as usize].msg,
                        subscriber: sub.id,
                        node: h.node(d.node).to_owned(),
                        first: (first.t_us, first.id),
                        again: (d.t_us, d.id),
                        after_resume: first.session != d.session,
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;

    /// Two acknowledged entries, in both nodes' final streams.
    fn two_acked() -> H {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.finals_everywhere();
        h
    }

    #[test]
    fn clean_history_has_no_duplicates() {
        let mut h = two_acked();
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        h.deliver(1, "n1", 2, "2-0");
        let f = run_one(&Duplicated, h);
        assert_eq!(f.count(Kind::Duplicated), 0);
        assert_eq!(f.count(Kind::DuplicatedDelivery), 0);
    }

    #[test]
    fn a_move_that_resumes_by_id_is_no_duplicate_but_a_redelivery_is() {
        for redeliver in [false, true] {
            let mut h = two_acked();
            h.sub_up(1, "n1");
            h.deliver(1, "n1", 1, "1-0");
            h.move_sub(1, "n1", "n2");
            if redeliver {
                // The new node hands it 1-0 again.
                h.deliver(1, "n2", 1, "1-0");
            }
            h.deliver(1, "n2", 2, "2-0");
            let f = run_one(&Duplicated, h);
            assert_eq!(f.count(Kind::DuplicatedDelivery), u64::from(redeliver));
            if redeliver {
                let ex = &f.examples(Kind::DuplicatedDelivery)[0];
                assert!(ex.contains("to sub 1 via n2"), "{ex}");
            }
        }
    }

    #[test]
    fn duplicate_in_a_final_stream_counts_once() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        for node in ["n1", "n2"] {
            h.final_entry(node, "c", "1-0", 1);
            h.final_entry(node, "c", "2-0", 2);
            h.final_entry(node, "c", "3-0", 1);
        }
        let f = run_one(&Duplicated, h);
        assert_eq!(f.count(Kind::Duplicated), 1);
        let ex = f.examples(Kind::Duplicated);
        assert!(ex[0].contains(&H::hex(1)), "{ex:?}");
        assert!(ex[0].contains("1-0, 3-0"), "{ex:?}");
    }

    #[test]
    fn a_duplicate_on_one_node_only_counts() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.finals_everywhere();
        h.final_entry("n2", "c", "2-0", 1);
        let f = run_one(&Duplicated, h);
        assert_eq!(f.count(Kind::Duplicated), 1);
        assert!(f.examples(Kind::Duplicated)[0].contains("final stream of n2"));
    }

    #[test]
    fn a_duplicate_delivery_names_the_first_delivery_of_that_message() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.finals_everywhere();
        h.sub_up(1, "n1");
        h.at(100);
        h.deliver(1, "n1", 1, "1-0"); // at 101 ms
        h.at(200);
        h.deliver(1, "n1", 2, "2-0"); // at 201 ms
        h.at(300);
        h.deliver(1, "n1", 2, "2-0"); // at 301 ms
        let f = run_one(&Duplicated, h);
        let ex = &f.examples(Kind::DuplicatedDelivery)[0];
        assert!(
            ex.contains("at 201.0ms (id 2-0) and again at 301.0ms (id 2-0) in one session"),
            "{ex}"
        );
    }

    #[test]
    fn duplicate_delivery_after_resume_is_reported_as_such() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.finals_everywhere();
        h.sub_up(7, "n1");
        h.deliver(7, "n1", 1, "1-0");
        h.deliver(7, "n1", 2, "2-0");
        h.sub_down(7, "n1");
        h.sub_up(7, "n1");
        h.deliver(7, "n1", 2, "2-0");
        // The same message again in one session, to another subscriber.
        h.sub_up(8, "n1");
        h.deliver(8, "n1", 1, "1-0");
        h.deliver(8, "n1", 1, "1-0");
        let f = run_one(&Duplicated, h);
        assert_eq!(f.count(Kind::Duplicated), 0);
        assert_eq!(f.count(Kind::DuplicatedDelivery), 2);
        let ex = f.examples(Kind::DuplicatedDelivery);
        assert!(
            ex.iter().any(|e| e.contains(&H::hex(2))
                && e.contains("sub 7")
                && e.contains("after a resume")),
            "{ex:?}"
        );
        assert!(
            ex.iter().any(|e| e.contains(&H::hex(1))
                && e.contains("sub 8")
                && e.contains("in one session")),
            "{ex:?}"
        );
    }
}
