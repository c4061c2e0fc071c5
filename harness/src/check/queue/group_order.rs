//! A group's first deliveries follow the stream: each `XREADGROUP >` reply holds entries in
//! increasing id order, and a read sent after another read's reply arrived gets only
//! entries newer than everything that reply held. (Claims redeliver old entries; they are
//! not first deliveries.)

use std::collections::BTreeMap;

use super::super::index::{IndexedHistory, StreamId};
use super::super::{Findings, Invariant, Kind, Violation};
use super::{QueueViolation, TakeRec};

pub(crate) struct GroupOrder;

impl Invariant for GroupOrder {
    fn name(&self) -> &'static str {
        "queue/group_order"
    }

    fn property(&self) -> &'static str {
        Kind::GroupOrder.property()
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let q = &h.queue;
        let mut per_stream: BTreeMap<(u32, u32), Vec<&TakeRec>> = BTreeMap::new();
        for t in q.takes.iter().filter(|t| !t.claimed && !t.ids.is_empty()) {
            per_stream.entry((t.group, t.channel)).or_default().push(t);
        }
        for ((group, channel), takes) in per_stream {
            let report = |out: &mut Findings, t: &TakeRec, id, after: (StreamId, &TakeRec)| {
                out.report_with(Kind::GroupOrder, || {
                    Violation::Queue(QueueViolation::GroupOrder {
                        group: q.groups.name(group).to_owned(),
                        channel: h.channel(channel).to_owned(),
                        id,
                        consumer: q.consumers.name(t.consumer).to_owned(),
                        sent_us: t.invoke_us,
                        after: after.0,
                        after_consumer: q.consumers.name(after.1.consumer).to_owned(),
                        after_us: after.1.t_us,
                    })
                });
            };
            for t in &takes {
                if let Some(w) = t.ids.windows(2).find(|w| w[1] <= w[0]) {
                    report(out, t, w[1], (w[0], t));
                }
            }
            let mut by_reply: Vec<&TakeRec> = takes.clone();
            by_reply.sort_by_key(|t| t.t_us);
            let mut by_send = takes;
            by_send.sort_by_key(|t| t.invoke_us);
            // The newest id handed out by replies that arrived before the current send.
            let mut newest: Option<(StreamId, &TakeRec)> = None;
            let mut next = 0;
            for t in by_send {
                while next < by_reply.len() && by_reply[next].t_us < t.invoke_us {
                    let r = by_reply[next];
                    let top = *r.ids.iter().max().expect("non-empty");
                    if newest.is_none_or(|(n, _)| top > n) {
                        newest = Some((top, r));
                    }
                    next += 1;
                }
                if let Some((n, from)) = newest {
                    let oldest = *t.ids.iter().min().expect("non-empty");
                    if oldest <= n {
                        report(out, t, oldest, (n, from));
                    }
                }
            }
        }
    }
}
