//! Phantom and corrupted messages: an entry in a final stream, or a delivery, whose
//! payload names a message that was never published on that channel (or is not a harness
//! payload at all) is a phantom; one whose checksum fails is corrupted (and only that).
//! Each distinct message counts once per kind (keyed by message id, or by channel and
//! stream id for foreign payloads), however many nodes and subscribers hold it.

use super::index::{IdSet, IndexedHistory, StreamId, NONE};
use super::{Findings, Invariant, Kind, Place, Violation};
use crate::history::MsgId;

pub(crate) struct Phantom;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Msg(u32, MsgId),
    Entry(u32, StreamId),
    Unique(u64),
}

struct Seen {
    phantom: IdSet<Key>,
    corrupted: IdSet<Key>,
    unique: u64,
}

impl Seen {
    fn key(&mut self, channel: u32, msg: Option<MsgId>, id: Option<StreamId>) -> Key {
        match (msg, id) {
            (Some(m), _) => Key::Msg(channel, m),
            (None, Some(id)) => Key::Entry(channel, id),
            (None, None) => {
                self.unique += 1;
                Key::Unique(self.unique)
            }
        }
    }
}

/// Checks one occurrence; `place` is only built for examples.
#[allow(clippy::too_many_arguments)]
fn occurrence(
    h: &IndexedHistory,
    out: &mut Findings,
    seen: &mut Seen,
    channel: u32,
    msg: Option<MsgId>,
    id: Option<StreamId>,
    msg_idx: u32,
    intact: bool,
    place: impl FnOnce() -> Place,
) {
    if !intact {
        let key = seen.key(channel, msg, id);
        if seen.corrupted.insert(key) {
            out.report_with(Kind::Corrupted, || Violation::Corrupted {
                place: place(),
                channel: h.channel(channel).to_owned(),
                id,
                msg,
            });
        }
    } else if msg_idx == NONE {
        let key = seen.key(channel, msg, id);
        if seen.phantom.insert(key) {
            out.report_with(Kind::Phantom, || Violation::Phantom {
                place: place(),
                channel: h.channel(channel).to_owned(),
                id,
                msg,
                published_on: msg
                    .and_then(|m| h.msg_index.get(&m))
                    .map(|&i| h.channel(h.messages[i as usize].channel).to_owned()),
            });
        }
    }
}

impl Invariant for Phantom {
    fn name(&self) -> &'static str {
        "phantom"
    }

    fn property(&self) -> &'static str {
        "every stored or delivered message was published on its channel and is intact"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let mut seen = Seen {
            phantom: IdSet::default(),
            corrupted: IdSet::default(),
            unique: 0,
        };
        for (k, &node) in h.final_nodes.iter().enumerate() {
            for c in 0..h.channels.len() as u32 {
                for e in h.final_stream(k, c) {
                    occurrence(
                        h,
                        out,
                        &mut seen,
                        c,
                        e.msg,
                        e.id,
                        e.msg_idx,
                        e.intact,
                        || Place::Final {
                            node: h.node(node).to_owned(),
                        },
                    );
                }
            }
        }
        for sub in &h.subscribers {
            for d in &sub.deliveries {
                occurrence(
                    h,
                    out,
                    &mut seen,
                    d.channel,
                    d.msg,
                    d.id,
                    d.msg_idx,
                    d.intact,
                    || Place::Delivery {
                        subscriber: sub.id,
                        node: h.node(d.node).to_owned(),
                        t_us: d.t_us,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;

    #[test]
    fn clean_history_has_no_phantoms() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.finals_everywhere();
        h.sub_up(1, "n1");
        h.deliver(1, "n1", 1, "1-0");
        let f = run_one(&Phantom, h);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn never_published_foreign_and_wrong_channel_are_phantoms() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "d", "1-0");
        h.finals_everywhere();
        // Never invoked, on both nodes and in a delivery: one phantom.
        h.final_entry("n1", "c", "2-0", 99);
        h.final_entry("n2", "c", "2-0", 99);
        h.sub_up(1, "n1");
        h.deliver_raw(1, "n1", "c", Some(H::msg(99)), Some("2-0"), true);
        // A foreign payload.
        h.final_raw("n1", "c", "3-0", None, true);
        // Message 2 belongs to channel d.
        h.final_entry("n2", "c", "4-0", 2);
        let f = run_one(&Phantom, h);
        assert_eq!(f.count(Kind::Phantom), 3);
        assert_eq!(f.count(Kind::Corrupted), 0);
        let ex = f.examples(Kind::Phantom).join("\n");
        assert!(
            ex.contains(&format!(
                "msg {} at 2-0 on c in final stream of n1 was never published",
                H::hex(99)
            )),
            "{ex}"
        );
        assert!(ex.contains("a foreign payload at 3-0"), "{ex}");
        assert!(
            ex.contains(&format!(
                "msg {} at 4-0 on c in final stream of n2 was published on d",
                H::hex(2)
            )),
            "{ex}"
        );
    }

    #[test]
    fn each_foreign_pubsub_message_is_its_own_phantom() {
        // Neither a harness message id nor a stream id to tell them apart: two foreign
        // messages are two phantoms, not one.
        let mut h = H::pubsub(&["n1"]);
        h.sub_up(1, "n1");
        h.deliver_raw(1, "n1", "c", None, None, true);
        h.deliver_raw(1, "n1", "c", None, None, true);
        let f = run_one(&Phantom, h);
        assert_eq!(f.count(Kind::Phantom), 2);
    }

    #[test]
    fn corrupted_payload_is_counted_as_corrupted_not_phantom() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.final_raw("n1", "c", "1-0", Some(H::msg(1)), false);
        h.sub_up(3, "n1");
        h.deliver_raw(3, "n1", "c", Some(H::msg(1)), Some("1-0"), false);
        let f = run_one(&Phantom, h);
        assert_eq!(f.count(Kind::Corrupted), 1);
        assert_eq!(f.count(Kind::Phantom), 0);
        assert!(f.examples(Kind::Corrupted)[0].contains(&H::hex(1)));
    }
}
