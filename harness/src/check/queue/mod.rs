//! Queue mode: what the consumer groups did, indexed, and the invariants over it, one per
//! file.
//!
//! - [`consumed`] — every acknowledged message is finished (XACKed) by every group.
//! - [`double_delivery`] — an entry moves to another consumer only after its holder was
//!   idle for the claim's `min-idle-time`.
//! - [`redelivery`] — every redelivery is a claim of an entry still pending: `>` never
//!   hands an entry out twice, and an XACKed entry is never claimed again.
//! - [`group_order`] — a group's first deliveries follow the stream's order.
//! - [`drained`] — no group has entries pending at the end, on any node.
//! - [`group_agreement`] — every node ends with the same state of every group.
//!
//! At-least-once redelivery (claims of what a crashed or slow consumer held) is a figure
//! ([`QueueFigures`]), not a violation. Entries are keyed by (group, channel, stream id):
//! the id is what XACK and XAUTOCLAIM name, and a foreign payload has no message id.

pub(crate) mod consumed;
pub(crate) mod double_delivery;
pub(crate) mod drained;
pub(crate) mod group_agreement;
pub(crate) mod group_order;
pub(crate) mod redelivery;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use raftbus_reports::model::QueueFigures;

use super::index::{Interner, StreamId};
use super::{Hex, Kind, Ms};
use crate::history::{MsgId, TakenEntry};

/// One entry handed to a consumer by one call.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub invoke_us: u64,
    pub t_us: u64,
    pub consumer: u32,
    pub claimed: bool,
    pub min_idle_us: u64,
    pub msg: Option<MsgId>,
}

/// One call that handed entries out (`XREADGROUP >` or `XAUTOCLAIM`).
#[derive(Debug, Clone)]
pub(crate) struct TakeRec {
    pub invoke_us: u64,
    pub t_us: u64,
    pub group: u32,
    pub consumer: u32,
    pub channel: u32,
    pub claimed: bool,
    /// Ids in reply order (entries whose id does not parse are left out).
    pub ids: Vec<StreamId>,
}

/// One XACK.
#[derive(Debug, Clone)]
pub(crate) struct SettleRec {
    pub t_us: u64,
    pub consumer: u32,
    pub removed: Option<bool>,
}

/// A group's state on one node at the end.
#[derive(Debug, Clone)]
pub(crate) struct GroupStateRec {
    pub node: u32,
    pub channel: u32,
    pub group: u32,
    pub pending: u64,
    pub last_delivered: Option<StreamId>,
}

type EntryKey = (u32, u32, StreamId);

/// The queue part of a history.
#[derive(Debug, Default)]
pub(crate) struct QueueHistory {
    pub groups: Interner,
    pub consumers: Interner,
    /// Calls that handed entries out, in history order.
    pub takes: Vec<TakeRec>,
    /// Per (group, channel, id): its deliveries, ordered by invoke time.
    pub deliveries: HashMap<EntryKey, Vec<Delivery>>,
    /// Per (group, channel, id): its XACKs, in history order.
    pub settles: HashMap<EntryKey, Vec<SettleRec>>,
    /// (group, message) pairs with an XACK that removed the entry or went unanswered
    /// (it may have): finished, as far as the client knows.
    pub settled_msgs: BTreeSet<(u32, MsgId)>,
    pub crashes: u64,
    pub states: Vec<GroupStateRec>,
    /// Nodes whose group state could not be read, with why.
    pub unreadable: Vec<(u32, String)>,
}

impl QueueHistory {
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.len() == 0
    }

    pub(crate) fn take(
        &mut self,
        (invoke_us, t_us): (u64, u64),
        group: &str,
        consumer: &str,
        channel: u32,
        (claimed, min_idle_us): (bool, u64),
        entries: &[TakenEntry],
    ) {
        let group = self.groups.intern(group);
        let consumer = self.consumers.intern(consumer);
        let mut ids = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(id) = StreamId::parse(&e.id) else {
                continue;
            };
            ids.push(id);
            self.deliveries
                .entry((group, channel, id))
                .or_default()
                .push(Delivery {
                    invoke_us,
                    t_us,
                    consumer,
                    claimed,
                    min_idle_us,
                    msg: e.msg,
                });
        }
        self.takes.push(TakeRec {
            invoke_us,
            t_us,
            group,
            consumer,
            channel,
            claimed,
            ids,
        });
    }

    pub(crate) fn settle(
        &mut self,
        t_us: u64,
        group: &str,
        consumer: &str,
        channel: u32,
        (id, msg): (&str, Option<MsgId>),
        removed: Option<bool>,
    ) {
        let group = self.groups.intern(group);
        let consumer = self.consumers.intern(consumer);
        if removed != Some(false) {
            if let Some(m) = msg {
                self.settled_msgs.insert((group, m));
            }
        }
        if let Some(id) = StreamId::parse(id) {
            self.settles
                .entry((group, channel, id))
                .or_default()
                .push(SettleRec {
                    t_us,
                    consumer,
                    removed,
                });
        }
    }

    pub(crate) fn state(
        &mut self,
        node: u32,
        channel: u32,
        group: &str,
        read: Result<(u64, Option<&str>), String>,
    ) {
        let group = self.groups.intern(group);
        match read {
            Ok((pending, last)) => self.states.push(GroupStateRec {
                node,
                channel,
                group,
                pending,
                last_delivered: last.and_then(StreamId::parse),
            }),
            Err(why) => {
                if !self.unreadable.iter().any(|(n, _)| *n == node) {
                    self.unreadable.push((node, why));
                }
            }
        }
    }

    /// Sorts what the invariants expect sorted.
    pub(crate) fn finish(&mut self) {
        for d in self.deliveries.values_mut() {
            d.sort_by_key(|d| d.invoke_us);
        }
    }

    pub(crate) fn figures(&self, nodes: &Interner, channels: &Interner) -> QueueFigures {
        let taken: u64 = self.takes.iter().map(|t| t.ids.len() as u64).sum();
        let redelivered = self
            .takes
            .iter()
            .filter(|t| t.claimed)
            .map(|t| t.ids.len() as u64)
            .sum();
        let consumed = self
            .settles
            .values()
            .filter(|s| s.iter().any(|s| s.removed == Some(true)))
            .count() as u64;
        QueueFigures {
            groups: self.groups.len() as u64,
            taken,
            redelivered,
            consumed,
            crashes: self.crashes,
            pending_at_end: self
                .states
                .iter()
                .filter(|s| s.pending > 0)
                .map(|s| {
                    format!(
                        "{}/{}/{}: {}",
                        nodes.name(s.node),
                        channels.name(s.channel),
                        self.groups.name(s.group),
                        s.pending
                    )
                })
                .collect(),
        }
    }
}

fn opt_msg(m: &Option<MsgId>) -> String {
    m.map_or_else(|| "a foreign payload".into(), |m| format!("msg {}", Hex(m)))
}

fn opt_id(id: &Option<StreamId>) -> String {
    id.map_or_else(|| "none".into(), |i| i.to_string())
}

/// A broken queue property, with one concrete example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueViolation {
    /// An acknowledged message was never finished (XACKed) by a group.
    Unconsumed {
        group: String,
        msg: MsgId,
        channel: String,
        acked_us: u64,
        /// How often the group handed it out.
        taken: usize,
    },
    /// An entry moved to another consumer before its holder was idle for the claim's
    /// `min-idle-time`.
    EarlyClaim {
        group: String,
        channel: String,
        id: StreamId,
        msg: Option<MsgId>,
        holder: String,
        /// When the holder's call that got it was sent.
        held_since_us: u64,
        claimer: String,
        /// When the claim's reply arrived: the holder was idle at most this minus
        /// `held_since_us`.
        claimed_us: u64,
        min_idle_us: u64,
    },
    /// `XREADGROUP >` handed out an entry the group had handed out before.
    RedeliveredAsNew {
        group: String,
        channel: String,
        id: StreamId,
        msg: Option<MsgId>,
        first: (String, u64),
        again: (String, u64),
    },
    /// A claim handed out an entry whose XACK had already removed it from the PEL.
    ClaimedAfterAck {
        group: String,
        channel: String,
        id: StreamId,
        msg: Option<MsgId>,
        acked_by: String,
        acked_us: u64,
        claimer: String,
        claim_sent_us: u64,
    },
    /// A group's first deliveries went backwards: an entry older than one already handed
    /// out (before this call was sent).
    GroupOrder {
        group: String,
        channel: String,
        id: StreamId,
        consumer: String,
        sent_us: u64,
        after: StreamId,
        after_consumer: String,
        after_us: u64,
    },
    /// Entries still pending in a group at the end.
    PendingAtEnd {
        node: String,
        channel: String,
        group: String,
        pending: u64,
    },
    /// Nodes end with different states of one group.
    GroupDiverged {
        channel: String,
        group: String,
        node_a: String,
        a: (u64, Option<StreamId>),
        node_b: String,
        b: (u64, Option<StreamId>),
    },
}

impl QueueViolation {
    pub fn kind(&self) -> Kind {
        match self {
            QueueViolation::Unconsumed { .. } => Kind::Unconsumed,
            QueueViolation::EarlyClaim { .. } => Kind::EarlyClaim,
            QueueViolation::RedeliveredAsNew { .. } => Kind::RedeliveredAsNew,
            QueueViolation::ClaimedAfterAck { .. } => Kind::ClaimedAfterAck,
            QueueViolation::GroupOrder { .. } => Kind::GroupOrder,
            QueueViolation::PendingAtEnd { .. } => Kind::PendingAtEnd,
            QueueViolation::GroupDiverged { .. } => Kind::GroupDiverged,
        }
    }
}

impl fmt::Display for QueueViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueViolation::Unconsumed {
                group,
                msg,
                channel,
                acked_us,
                taken,
            } => write!(
                f,
                "msg {} on {channel}, acked at {}, was never XACKed by group {group} (handed out {taken} times)",
                Hex(*msg),
                Ms(*acked_us)
            ),
            QueueViolation::EarlyClaim {
                group,
                channel,
                id,
                msg,
                holder,
                held_since_us,
                claimer,
                claimed_us,
                min_idle_us,
            } => write!(
                f,
                "{} (id {id}) on {channel} in group {group}: {holder} got it at {} at the earliest, {claimer}'s claim had it by {}, idle at most {} < min-idle {}",
                opt_msg(msg),
                Ms(*held_since_us),
                Ms(*claimed_us),
                Ms(claimed_us.saturating_sub(*held_since_us)),
                Ms(*min_idle_us)
            ),
            QueueViolation::RedeliveredAsNew {
                group,
                channel,
                id,
                msg,
                first,
                again,
            } => write!(
                f,
                "{} (id {id}) on {channel}: group {group} handed it out as new to {} at {} and again to {} at {}",
                opt_msg(msg),
                first.0,
                Ms(first.1),
                again.0,
                Ms(again.1)
            ),
            QueueViolation::ClaimedAfterAck {
                group,
                channel,
                id,
                msg,
                acked_by,
                acked_us,
                claimer,
                claim_sent_us,
            } => write!(
                f,
                "{} (id {id}) on {channel} in group {group}: XACKed by {acked_by} at {}, yet claimed by {claimer} with a claim sent at {}",
                opt_msg(msg),
                Ms(*acked_us),
                Ms(*claim_sent_us)
            ),
            QueueViolation::GroupOrder {
                group,
                channel,
                id,
                consumer,
                sent_us,
                after,
                after_consumer,
                after_us,
            } => write!(
                f,
                "group {group} on {channel}: {consumer}'s read sent at {} got {id} as new, after {after_consumer} had got {after} by {}",
                Ms(*sent_us),
                Ms(*after_us)
            ),
            QueueViolation::PendingAtEnd {
                node,
                channel,
                group,
                pending,
            } => write!(
                f,
                "group {group} on {channel} has {pending} entries pending at the end on {node}"
            ),
            QueueViolation::GroupDiverged {
                channel,
                group,
                node_a,
                a,
                node_b,
                b,
            } => write!(
                f,
                "group {group} on {channel}: {node_a} ends with {} pending, last delivered {}; {node_b} with {} pending, last delivered {}",
                a.0,
                opt_id(&a.1),
                b.0,
                opt_id(&b.1)
            ),
        }
    }
}

#[cfg(test)]
mod tests;
