//! No entry is with two consumers at once unless it was reclaimed: a claim may hand an
//! entry to another consumer only once its holder has been idle for the claim's
//! `min-idle-time`. The holder got it no earlier than its call was sent, and the claim
//! happened no later than its reply arrived, so reply minus send bounds the idle time
//! from above; below `min-idle-time`, the claim was early for sure.

use super::super::index::IndexedHistory;
use super::super::{Findings, Invariant, Kind, Violation};
use super::QueueViolation;

pub(crate) struct DoubleDelivery;

impl Invariant for DoubleDelivery {
    fn name(&self) -> &'static str {
        "queue/double_delivery"
    }

    fn property(&self) -> &'static str {
        Kind::EarlyClaim.property()
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let q = &h.queue;
        for (&(group, channel, id), deliveries) in &q.deliveries {
            for (i, claim) in deliveries.iter().enumerate() {
                if !claim.claimed {
                    continue;
                }
                // The latest delivery certainly before this claim: the holder's.
                let Some(held) = deliveries[..i]
                    .iter()
                    .rev()
                    .find(|d| d.t_us < claim.invoke_us)
                else {
                    continue;
                };
                if held.consumer == claim.consumer {
                    continue;
                }
                let idle_at_most = claim.t_us.saturating_sub(held.invoke_us);
                if idle_at_most < claim.min_idle_us {
                    out.report_with(Kind::EarlyClaim, || {
                        Violation::Queue(QueueViolation::EarlyClaim {
                            group: q.groups.name(group).to_owned(),
                            channel: h.channel(channel).to_owned(),
                            id,
                            msg: claim.msg,
                            holder: q.consumers.name(held.consumer).to_owned(),
                            held_since_us: held.invoke_us,
                            claimer: q.consumers.name(claim.consumer).to_owned(),
                            claimed_us: claim.t_us,
                            min_idle_us: claim.min_idle_us,
                        })
                    });
                }
            }
        }
    }
}
