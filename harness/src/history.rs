//! The operation history of one run: every publish invoke/complete, every delivery,
//! every read of the read workload, subscriber connection changes, fault windows, and
//! each node's final streams.
//!
//! Stored as `history.jsonl`, one [`Event`] per line, streamed while the run goes, so
//! memory stays bounded. Times are microseconds since the run started (monotonic clock).

use serde::{Deserialize, Serialize};

/// A message id: unique per run, never reused, even for a publish that is indeterminate.
/// The high 24 bits are the publisher, the low 40 bits its sequence number.
pub type MsgId = u64;

pub fn msg_id(publisher: u32, seq: u64) -> MsgId {
    ((publisher as u64) << 40) | (seq & ((1 << 40) - 1))
}

pub fn publisher_of(msg: MsgId) -> u32 {
    (msg >> 40) as u32
}

/// The `SubscriberDown` reason of a subscriber stopped because the run ended: it was still
/// connected, so everything up to then was owed to it.
pub const RUN_FINISHED: &str = "run finished";

/// How a publish ended, in Jepsen's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged: the target promised the message is stored.
    Ok,
    /// Definitely not applied (the target said so before doing anything).
    Fail,
    /// Unknown: timeout or connection lost. May or may not have been applied.
    Info,
}

/// The command a [`Event::Read`] used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadOp {
    /// `XRANGE ch <from> + COUNT n`: entries from the newest id any earlier read saw.
    XRange,
    /// `XREVRANGE ch + - COUNT 1`: the newest entry.
    XRevRange,
    /// `XLEN ch`: the number of entries.
    XLen,
}

impl ReadOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadOp::XRange => "XRANGE",
            ReadOp::XRevRange => "XREVRANGE",
            ReadOp::XLen => "XLEN",
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One entry handed to a queue consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenEntry {
    pub id: String,
    /// `None` when the payload is not a harness message.
    pub msg: Option<MsgId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// A publish was sent.
    Invoke {
        /// When the schedule wanted it sent.
        intended_us: u64,
        /// When it was actually sent.
        t_us: u64,
        msg: MsgId,
        channel: String,
        /// Node name the publisher talked to, e.g. `n2` or `redis`.
        node: String,
    },
    /// A publish completed.
    Complete {
        t_us: u64,
        msg: MsgId,
        outcome: Outcome,
        /// The stream entry id for XADD (e.g. `17-0`), the reply integer for PUBLISH.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A subscriber received a message.
    Deliver {
        t_us: u64,
        subscriber: u32,
        node: String,
        channel: String,
        /// `None` when the payload could not be parsed as a harness message.
        msg: Option<MsgId>,
        /// Stream entry id (stream mode only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Whether the payload's checksum matched.
        intact: bool,
    },
    /// A subscriber (re)connected and subscribed; deliveries may follow.
    SubscriberUp {
        t_us: u64,
        subscriber: u32,
        node: String,
    },
    /// A subscriber lost its connection; it will try to reconnect.
    SubscriberDown {
        t_us: u64,
        subscriber: u32,
        node: String,
        reason: String,
    },
    /// A fault window.
    Fault {
        start_us: u64,
        end_us: u64,
        kind: String,
        detail: String,
        targets: Vec<String>,
    },
    /// How reading one node's final streams ended, recorded for every node after its
    /// `Final` entries: a node that could not be read is never taken for one that agrees,
    /// and a node that was read and holds nothing is data.
    FinalRead {
        node: String,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A node the run expects to be gone at the end, and why: it refused to start after a
    /// `corrupt` fault damaged its data, which is what the bus promises to do. A failed
    /// final read of it is excused (reported), not a reason for an `unknown` verdict.
    Retired { node: String, reason: String },
    /// A read of one channel by the read workload (one event per read, written when it
    /// completed). Only what staleness needs is kept: the newest id returned and how many
    /// entries (or, for XLEN, the length), not the entries.
    Read {
        /// When the read was sent.
        invoke_us: u64,
        /// When its reply (or error) arrived.
        t_us: u64,
        node: String,
        channel: String,
        op: ReadOp,
        ok: bool,
        /// XRANGE only: the start id it asked from (inclusive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// The newest entry id returned (XRANGE, XREVRANGE); `None` when none was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last: Option<String>,
        /// Entries returned, or the stream length for XLEN.
        #[serde(default)]
        count: u64,
        /// The reply stopped at its COUNT limit: the node may hold newer entries.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Queue mode: entries one call handed to a consumer of a group: `XREADGROUP ... >`
    /// (`claimed` false, first deliveries) or `XAUTOCLAIM` of entries pending longer than
    /// the claim idle time (`claimed` true, redeliveries).
    Take {
        invoke_us: u64,
        t_us: u64,
        group: String,
        consumer: String,
        node: String,
        channel: String,
        claimed: bool,
        /// A claim's `min-idle-time`: entries idle less than this must not be handed over.
        #[serde(default, skip_serializing_if = "is_zero")]
        min_idle_us: u64,
        entries: Vec<TakenEntry>,
    },
    /// Queue mode: `XACK channel group id` of one taken entry. `removed`: the reply
    /// (`Some(true)`: it left the PEL; `Some(false)`: it was not pending); `None`: no reply.
    Settle {
        invoke_us: u64,
        t_us: u64,
        group: String,
        consumer: String,
        node: String,
        channel: String,
        id: String,
        msg: Option<MsgId>,
        removed: Option<bool>,
    },
    /// Queue mode: a consumer crashed (the `consumer-crash` fault) holding these taken,
    /// unacknowledged entries; it comes back under a new name when the fault heals.
    ConsumerCrash {
        t_us: u64,
        group: String,
        consumer: String,
        abandoned: Vec<TakenEntry>,
    },
    /// Queue mode: one group's state on one node after the load (`XINFO GROUPS`).
    GroupState {
        node: String,
        channel: String,
        group: String,
        ok: bool,
        #[serde(default)]
        pending: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_delivered: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// One entry of a node's final stream, read after the load stopped (XRANGE).
    Final {
        node: String,
        channel: String,
        id: String,
        msg: Option<MsgId>,
        intact: bool,
    },
}
