//! Every node ends with the same state of every group (pending count and last delivered
//! id): consumer-group state is replicated like the streams.

use std::collections::BTreeMap;

use super::super::index::IndexedHistory;
use super::super::{Findings, Invariant, Kind, Violation};
use super::{GroupStateRec, QueueViolation};

pub(crate) struct GroupAgreement;

impl Invariant for GroupAgreement {
    fn name(&self) -> &'static str {
        "queue/group_agreement"
    }

    fn property(&self) -> &'static str {
        Kind::GroupDiverged.property()
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let q = &h.queue;
        let mut per_group: BTreeMap<(u32, u32), Vec<&GroupStateRec>> = BTreeMap::new();
        for s in &q.states {
            per_group.entry((s.channel, s.group)).or_default().push(s);
        }
        for ((channel, group), states) in per_group {
            let first = states[0];
            if let Some(other) = states[1..]
                .iter()
                .find(|s| (s.pending, s.last_delivered) != (first.pending, first.last_delivered))
            {
                out.report_with(Kind::GroupDiverged, || {
                    Violation::Queue(QueueViolation::GroupDiverged {
                        channel: h.channel(channel).to_owned(),
                        group: q.groups.name(group).to_owned(),
                        node_a: h.node(first.node).to_owned(),
                        a: (first.pending, first.last_delivered),
                        node_b: h.node(other.node).to_owned(),
                        b: (other.pending, other.last_delivered),
                    })
                });
            }
        }
    }
}
