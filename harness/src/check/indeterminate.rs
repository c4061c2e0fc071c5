//! Publishes that did not succeed: an indeterminate (`info`, or never completed) or failed
//! publish may be applied at most once, so appearing twice in one node's final stream is
//! `indeterminate_duplicated` (per message, into `Checks::duplicated`); a failed publish
//! must not be applied at all, so finding it in a final stream or a delivery is
//! `failed_but_committed` (per message).

use super::duplicated::{ids_in_final, repeats_in_finals};
use super::index::{IdSet, IndexedHistory, Status, NONE};
use super::{Findings, Invariant, Kind, Violation};

pub(crate) struct Indeterminate;

impl Invariant for Indeterminate {
    fn name(&self) -> &'static str {
        "indeterminate"
    }

    fn property(&self) -> &'static str {
        "an unacknowledged publish is applied at most once, a failed one never"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let mut seen: IdSet<u32> = IdSet::default();
        for (k, channel, idx) in repeats_in_finals(h) {
            let m = &h.messages[idx as usize];
            let unacked = m.status.is_indeterminate() || m.status == Status::Fail;
            if !unacked || !seen.insert(idx) {
                continue;
            }
            out.report_with(Kind::IndeterminateDuplicated, || {
                Violation::IndeterminateDuplicated {
                    msg: m.msg,
                    outcome: m.status.label(),
                    node: h.node(h.final_nodes[k]).to_owned(),
                    ids: ids_in_final(h, k, channel, idx),
                }
            });
        }

        for (idx, m) in h.messages.iter().enumerate() {
            let idx = idx as u32;
            if m.status != Status::Fail {
                continue;
            }
            let present = m.first_delivery_us != u64::MAX || h.in_any_final(idx);
            if !present {
                continue;
            }
            out.report_with(Kind::FailedButCommitted, || {
                let mut found_in: Vec<String> = (0..h.final_nodes.len())
                    .filter(|&k| h.first_pos(idx, k) != NONE)
                    .map(|k| {
                        let pos = h.first_pos(idx, k) as usize;
                        let id = h.final_stream(k, m.channel)[pos].id;
                        let id = id.map_or_else(|| "?".to_owned(), |i| i.to_string());
                        format!("{} at {id}", h.node(h.final_nodes[k]))
                    })
                    .collect();
                found_in.extend(
                    h.subscribers
                        .iter()
                        .filter(|s| s.got(idx))
                        .map(|s| format!("deliveries to sub {}", s.id)),
                );
                Violation::FailedButCommitted {
                    msg: m.msg,
                    failed_us: m.complete_us,
                    error_node: h.node(m.node).to_owned(),
                    found_in,
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;

    #[test]
    fn indeterminate_zero_or_one_times_is_fine() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.indeterminate(2, "c");
        h.indeterminate(3, "c");
        h.invoke(4, "c"); // never completed
        h.failed(5, "c");
        h.finals_everywhere();
        h.final_entry("n1", "c", "2-0", 2);
        h.final_entry("n2", "c", "2-0", 2);
        h.final_entry("n1", "c", "3-0", 4);
        let f = run_one(&Indeterminate, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn indeterminate_twice_is_a_duplicate() {
        let mut h = H::stream(&["n1"]);
        h.indeterminate(2, "c");
        h.invoke(4, "c");
        h.final_entry("n1", "c", "1-0", 2);
        h.final_entry("n1", "c", "2-0", 2);
        h.final_entry("n1", "c", "3-0", 4);
        h.final_entry("n1", "c", "4-0", 4);
        h.final_entry("n1", "c", "5-0", 4);
        let f = run_one(&Indeterminate, h);
        assert_eq!(f.count(Kind::IndeterminateDuplicated), 2);
        let ex = f.examples(Kind::IndeterminateDuplicated).join("\n");
        assert!(
            ex.contains(&format!(
                "msg {} (outcome info) appears 2 times in the final stream of n1 at 1-0, 2-0",
                H::hex(2)
            )),
            "{ex}"
        );
        assert!(
            ex.contains(&format!(
                "msg {} (outcome pending) appears 3 times",
                H::hex(4)
            )),
            "{ex}"
        );
    }

    #[test]
    fn an_acknowledged_duplicate_is_not_an_indeterminate_one_but_a_failed_one_is() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.failed(2, "c");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_entry("n1", "c", "2-0", 1);
        h.final_entry("n1", "c", "3-0", 2);
        h.final_entry("n1", "c", "4-0", 2);
        let f = run_one(&Indeterminate, h);
        assert_eq!(f.count(Kind::IndeterminateDuplicated), 1);
        assert!(f.examples(Kind::IndeterminateDuplicated)[0].contains(&H::hex(2)));
    }

    #[test]
    fn a_failed_publish_only_delivered_is_failed_but_committed() {
        let mut h = H::stream(&["n1"]);
        h.failed(5, "c");
        h.final_read("n1", true);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 5, "1-0");
        let f = run_one(&Indeterminate, h);
        assert_eq!(f.count(Kind::FailedButCommitted), 1);
    }

    #[test]
    fn failed_but_present_is_failed_but_committed() {
        let mut h = H::stream(&["n1", "n2"]);
        h.failed(5, "c");
        h.failed(6, "c");
        h.final_entry("n2", "c", "1-0", 5);
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 5, "1-0");
        let f = run_one(&Indeterminate, h);
        assert_eq!(f.count(Kind::FailedButCommitted), 1);
        let ex = &f.examples(Kind::FailedButCommitted)[0];
        assert!(
            ex.contains(&format!("msg {} failed at", H::hex(5)))
                && ex.contains("n2 at 1-0, deliveries to sub 1"),
            "{ex}"
        );
    }
}
