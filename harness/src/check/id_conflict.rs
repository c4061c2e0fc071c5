//! One stream id holding two different messages: across nodes' final streams, across
//! deliveries, and against the id a publish was acknowledged with (stream mode). Each
//! conflicting (channel, id) counts once, as kind `id_conflict`, into `Checks::diverged`.

use super::index::{IdMap, IndexedHistory, StreamId};
use super::{Findings, Invariant, Kind, Place, Violation};
use crate::history::MsgId;

pub(crate) struct IdConflict;

#[derive(Debug, Clone, Copy)]
enum Where {
    Final(usize),
    Delivery(usize, usize),
    Ack(usize),
}

fn place(h: &IndexedHistory, w: Where) -> Place {
    match w {
        Where::Final(k) => Place::Final {
            node: h.node(h.final_nodes[k]).to_owned(),
        },
        Where::Delivery(s, i) => {
            let sub = &h.subscribers[s];
            let d = &sub.deliveries[i];
            Place::Delivery {
                subscriber: sub.id,
                node: h.node(d.node).to_owned(),
                t_us: d.t_us,
            }
        }
        Where::Ack(i) => {
            let m = &h.messages[i];
            Place::Ack {
                node: h.node(m.node).to_owned(),
                t_us: m.complete_us,
            }
        }
    }
}

struct Slot {
    msg: Option<MsgId>,
    at: Where,
    conflicted: bool,
}

impl Invariant for IdConflict {
    fn name(&self) -> &'static str {
        "id_conflict"
    }

    fn property(&self) -> &'static str {
        "one stream id holds one message everywhere"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let mut slots: IdMap<(u32, StreamId), Slot> = IdMap::default();
        let mut see =
            |out: &mut Findings, channel: u32, id: StreamId, msg: Option<MsgId>, at: Where| {
                let slot = slots.entry((channel, id)).or_insert(Slot {
                    msg,
                    at,
                    conflicted: false,
                });
                if slot.msg != msg && !slot.conflicted {
                    slot.conflicted = true;
                    let first = (slot.msg, slot.at);
                    out.report_with(Kind::IdConflict, || Violation::IdConflict {
                        channel: h.channel(channel).to_owned(),
                        id,
                        first: (first.0, place(h, first.1)),
                        second: (msg, place(h, at)),
                    });
                }
            };
        for k in 0..h.final_nodes.len() {
            for c in 0..h.channels.len() as u32 {
                for e in h.final_stream(k, c) {
                    if let Some(id) = e.id {
                        see(out, c, id, e.msg, Where::Final(k));
                    }
                }
            }
        }
        for (i, m) in h.messages.iter().enumerate() {
            if let Some(id) = m.ack_id {
                see(out, m.channel, id, Some(m.msg), Where::Ack(i));
            }
        }
        for (s, sub) in h.subscribers.iter().enumerate() {
            for (i, d) in sub.deliveries.iter().enumerate() {
                if let Some(id) = d.id {
                    see(out, d.channel, id, d.msg, Where::Delivery(s, i));
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
    fn consistent_ids_have_no_conflict() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        // The same id on another channel is another entry.
        h.acked(3, "d", "1-0");
        h.finals_everywhere();
        h.sub_up(1, "n2");
        h.deliver(1, "n2", 1, "1-0");
        h.deliver(1, "n2", 3, "1-0");
        let f = run_one(&IdConflict, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn one_id_two_messages_is_found_across_nodes_and_acks() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.acked(3, "c", "3-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_entry("n1", "c", "2-0", 2);
        h.final_entry("n2", "c", "1-0", 1);
        // n2 holds message 3 at 2-0: conflicts with n1 (and with the ack of 2, but the
        // id counts once).
        h.final_entry("n2", "c", "2-0", 3);
        let f = run_one(&IdConflict, h);
        assert_eq!(
            f.count(Kind::IdConflict),
            1,
            "{:?}",
            f.examples(Kind::IdConflict)
        );
        let ex = &f.examples(Kind::IdConflict)[0];
        let want = format!(
            "id 2-0 on c holds msg {} in final stream of n1 but msg {} in final stream of n2",
            H::hex(2),
            H::hex(3)
        );
        assert!(ex.contains(&want), "{ex}");
    }

    #[test]
    fn an_acknowledged_id_holding_another_message_is_a_conflict() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "1-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.sub_up(4, "n1");
        h.deliver(4, "n1", 1, "1-0");
        let f = run_one(&IdConflict, h);
        assert_eq!(f.count(Kind::IdConflict), 1);
        let ex = &f.examples(Kind::IdConflict)[0];
        assert!(
            ex.contains(&format!("but msg {} in ack from n1", H::hex(2))),
            "{ex}"
        );
    }
}
