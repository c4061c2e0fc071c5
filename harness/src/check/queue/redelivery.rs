//! Every redelivery is accounted for by a claim of an entry still pending: `XREADGROUP >`
//! hands each entry of a stream to a group once (a second time means the group's cursor
//! went back), and an entry whose XACK removed it from the PEL is never claimed again.
//! Claims of what a crashed or slow consumer held are at-least-once redelivery, counted
//! as a figure.

use super::super::index::IndexedHistory;
use super::super::{Findings, Invariant, Kind, Violation};
use super::QueueViolation;

pub(crate) struct Redelivery;

impl Invariant for Redelivery {
    fn name(&self) -> &'static str {
        "queue/redelivery"
    }

    fn property(&self) -> &'static str {
        Kind::RedeliveredAsNew.property()
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let q = &h.queue;
        for (key @ &(group, channel, id), deliveries) in &q.deliveries {
            let mut new = deliveries.iter().filter(|d| !d.claimed);
            if let (Some(first), Some(again)) = (new.next(), new.next()) {
                out.report_with(Kind::RedeliveredAsNew, || {
                    Violation::Queue(QueueViolation::RedeliveredAsNew {
                        group: q.groups.name(group).to_owned(),
                        channel: h.channel(channel).to_owned(),
                        id,
                        msg: again.msg,
                        first: (q.consumers.name(first.consumer).to_owned(), first.t_us),
                        again: (q.consumers.name(again.consumer).to_owned(), again.t_us),
                    })
                });
            }
            let Some(acked) = q.settles.get(key).and_then(|s| {
                s.iter()
                    .filter(|s| s.removed == Some(true))
                    .min_by_key(|s| s.t_us)
            }) else {
                continue;
            };
            if let Some(claim) = deliveries
                .iter()
                .find(|d| d.claimed && d.invoke_us > acked.t_us)
            {
                out.report_with(Kind::ClaimedAfterAck, || {
                    Violation::Queue(QueueViolation::ClaimedAfterAck {
                        group: q.groups.name(group).to_owned(),
                        channel: h.channel(channel).to_owned(),
                        id,
                        msg: claim.msg,
                        acked_by: q.consumers.name(acked.consumer).to_owned(),
                        acked_us: acked.t_us,
                        claimer: q.consumers.name(claim.consumer).to_owned(),
                        claim_sent_us: claim.invoke_us,
                    })
                });
            }
        }
    }
}
