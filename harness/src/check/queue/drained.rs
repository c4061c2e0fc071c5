//! At the end, after the consumers caught up, no group holds pending entries on any node:
//! everything handed out was acknowledged, or claimed and then acknowledged.

use super::super::index::IndexedHistory;
use super::super::{Findings, Invariant, Kind, Violation};
use super::QueueViolation;

pub(crate) struct Drained;

impl Invariant for Drained {
    fn name(&self) -> &'static str {
        "queue/drained"
    }

    fn property(&self) -> &'static str {
        Kind::PendingAtEnd.property()
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let q = &h.queue;
        for s in q.states.iter().filter(|s| s.pending > 0) {
            out.report_with(Kind::PendingAtEnd, || {
                Violation::Queue(QueueViolation::PendingAtEnd {
                    node: h.node(s.node).to_owned(),
                    channel: h.channel(s.channel).to_owned(),
                    group: q.groups.name(s.group).to_owned(),
                    pending: s.pending,
                })
            });
        }
    }
}
