//! Every acknowledged message is finished by every group: some consumer of the group
//! XACKed it (or sent an XACK that went unanswered, which may have removed it; the
//! `drained` check sees what stayed pending).

use super::super::index::{IndexedHistory, Status};
use super::super::{Findings, Invariant, Kind, Violation};
use super::QueueViolation;

pub(crate) struct Consumed;

impl Invariant for Consumed {
    fn name(&self) -> &'static str {
        "queue/consumed"
    }

    fn property(&self) -> &'static str {
        Kind::Unconsumed.property()
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let q = &h.queue;
        for group in 0..q.groups.len() as u32 {
            for m in h.messages.iter().filter(|m| m.status == Status::Ok) {
                if q.settled_msgs.contains(&(group, m.msg)) {
                    continue;
                }
                out.report_with(Kind::Unconsumed, || {
                    let taken = q
                        .deliveries
                        .iter()
                        .filter(|((g, c, _), _)| *g == group && *c == m.channel)
                        .flat_map(|(_, d)| d)
                        .filter(|d| d.msg == Some(m.msg))
                        .count();
                    Violation::Queue(QueueViolation::Unconsumed {
                        group: q.groups.name(group).to_owned(),
                        msg: m.msg,
                        channel: h.channel(m.channel).to_owned(),
                        acked_us: m.complete_us,
                        taken,
                    })
                });
            }
        }
    }
}
