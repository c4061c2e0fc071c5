//! Replicas converge: at the end of a run every node that reported a final stream must
//! hold the same stream (same ids, same messages, same length) for each channel. Lagging
//! replicas count too (the harness reads final streams after the load stops and the
//! nodes' stream ends agree or stop moving, see `workload::converge`; for Redis with
//! async replication, divergence is what it is). Each
//! (channel, node pair) that differs counts once, naming the first differing entry.

use super::index::{FinalEntry, IndexedHistory};
use super::{Findings, Invariant, Kind, Violation};

pub(crate) struct Divergence;

fn same(a: &FinalEntry, b: &FinalEntry) -> bool {
    a.id == b.id && a.msg == b.msg
}

impl Invariant for Divergence {
    fn name(&self) -> &'static str {
        "divergence"
    }

    fn property(&self) -> &'static str {
        "all nodes end with the same stream for each channel"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let n = h.final_nodes.len();
        for c in 0..h.channels.len() as u32 {
            for ka in 0..n {
                for kb in ka + 1..n {
                    let (sa, sb) = (h.final_stream(ka, c), h.final_stream(kb, c));
                    let first_diff = sa
                        .iter()
                        .zip(sb)
                        .position(|(x, y)| !same(x, y))
                        .or((sa.len() != sb.len()).then(|| sa.len().min(sb.len())));
                    let Some(index) = first_diff else { continue };
                    let at =
                        |s: &[FinalEntry]| s.get(index).map(|e| (e.id.unwrap_or_default(), e.msg));
                    out.report_with(Kind::Diverged, || Violation::Diverged {
                        channel: h.channel(c).to_owned(),
                        node_a: h.node(h.final_nodes[ka]).to_owned(),
                        node_b: h.node(h.final_nodes[kb]).to_owned(),
                        index,
                        a_has: at(sa),
                        b_has: at(sb),
                        len_a: sa.len(),
                        len_b: sb.len(),
                    });
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
    fn identical_streams_do_not_diverge() {
        let mut h = H::stream(&["n1", "n2", "n3"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "d", "1-0");
        h.finals_everywhere();
        let f = run_one(&Divergence, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn a_missing_entry_and_a_different_entry_diverge() {
        let mut h = H::stream(&["n1", "n2", "n3"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.acked(3, "c", "3-0");
        for node in ["n1", "n2"] {
            for n in 1..=3 {
                h.final_entry(node, "c", &format!("{n}-0"), n);
            }
        }
        // n3 lacks 2-0 (so 3-0 sits where 2-0 should be).
        h.final_entry("n3", "c", "1-0", 1);
        h.final_entry("n3", "c", "3-0", 3);
        let f = run_one(&Divergence, h);
        // n1/n3 and n2/n3.
        assert_eq!(f.count(Kind::Diverged), 2);
        let ex = f.examples(Kind::Diverged).join("\n");
        let want = format!("c: n1 and n3 differ at entry 1: n1 has msg {} at 2-0, n3 has msg {} at 3-0 (lengths 3 vs 2)", H::hex(2), H::hex(3));
        assert!(ex.contains(&want), "{ex}");
    }

    #[test]
    fn the_same_id_with_another_message_or_another_id_diverges() {
        for (id_b, msg_b) in [("1-0", 2), ("5-0", 1)] {
            let mut h = H::stream(&["n1", "n2"]);
            h.acked(1, "c", "1-0");
            h.acked(2, "c", "2-0");
            h.final_entry("n1", "c", "1-0", 1);
            h.final_entry("n2", "c", id_b, msg_b);
            let f = run_one(&Divergence, h);
            assert_eq!(f.count(Kind::Diverged), 1, "n2 has {msg_b} at {id_b}");
        }
    }

    #[test]
    fn a_shorter_stream_diverges_at_its_end() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_entry("n1", "c", "2-0", 2);
        h.final_entry("n2", "c", "1-0", 1);
        let f = run_one(&Divergence, h);
        assert_eq!(f.count(Kind::Diverged), 1);
        assert!(f.examples(Kind::Diverged)[0].contains("n2 has nothing (lengths 2 vs 1)"));
    }
}
