//! The acknowledged id holds the acknowledged message: a publish acknowledged with id `X`
//! must be stored at `X` in every final stream that holds it (stream mode, where the reply
//! is an entry id). A target that acknowledges one position and stores the message at
//! another lies to every consumer that reads from the id it was given. A different message
//! at `X` is an `id_conflict`; this is the message itself somewhere else. Counted once per
//! message, as kind `ack_id_mismatch`, into `Checks::diverged`.

use super::index::{IndexedHistory, NONE};
use super::{Findings, Invariant, Kind, Violation};

pub(crate) struct AckPosition;

impl Invariant for AckPosition {
    fn name(&self) -> &'static str {
        "ack_position"
    }

    fn property(&self) -> &'static str {
        "an acknowledged message is stored at the id it was acknowledged with"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        for (idx, m) in h.messages.iter().enumerate() {
            let Some(ack_id) = m.ack_id.filter(|_| m.is_acked()) else {
                continue;
            };
            let elsewhere = (0..h.final_nodes.len()).find_map(|k| {
                let pos = h.first_pos(idx as u32, k);
                if pos == NONE {
                    return None;
                }
                let stored = h.final_stream(k, m.channel)[pos as usize].id;
                (stored != Some(ack_id)).then_some((k, stored))
            });
            if let Some((k, stored_at)) = elsewhere {
                out.report_with(Kind::AckIdMismatch, || Violation::AckIdMismatch {
                    msg: m.msg,
                    channel: h.channel(m.channel).to_owned(),
                    ack_id,
                    node: h.node(h.final_nodes[k]).to_owned(),
                    stored_at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;

    #[test]
    fn a_message_stored_at_another_id_than_acknowledged_is_caught() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_entry("n1", "c", "2-0", 2);
        // n2 holds both, but 2 one place further on (an entry lost before it).
        h.final_entry("n2", "c", "1-0", 1);
        h.final_entry("n2", "c", "3-0", 2);
        let f = run_one(&AckPosition, h);
        assert_eq!(f.count(Kind::AckIdMismatch), 1);
        assert_eq!(
            f.examples(Kind::AckIdMismatch)[0],
            format!(
                "msg {} on c was acknowledged as 2-0 but the final stream of n2 holds it at 3-0",
                H::hex(2)
            )
        );
    }

    #[test]
    fn messages_where_they_were_acknowledged_pass() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.indeterminate(3, "c");
        h.finals_everywhere();
        // An indeterminate publish has no acknowledged id to hold.
        h.final_entry("n1", "c", "3-0", 3);
        let f = run_one(&AckPosition, h);
        assert_eq!(f.total(), 0);
    }
}
