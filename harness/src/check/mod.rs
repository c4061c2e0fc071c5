//! History checkers: read a run's `history.jsonl`, build one indexed view of it
//! (`index.rs`), then run one invariant per file over that view.
//!
//! Each invariant reports [`Violation`]s; every variant documents the property it
//! protects and renders as a short example with message ids (16 hex digits, as in
//! payloads), stream ids, nodes, subscriber numbers and times in milliseconds. The
//! [`Checks`] counters are sums over violation kinds:
//!
//! | counter | kinds |
//! |---|---|
//! | `lost` (= `lost_mid_stream` + `lost_tail`) | `lost_mid_stream`, `lost_tail` |
//! | `duplicated` | `duplicated`, `duplicated_delivery`, `indeterminate_duplicated` |
//! | `reordered` | `reordered`, `skipped`, `disagreement` |
//! | `phantom` / `corrupted` | `phantom` / `corrupted` |
//! | `diverged` | `diverged` (per channel and node pair), `id_conflict` (per channel and id) |
//! | `realtime_violations` | `realtime` |
//! | `failed_but_committed` | `failed_but_committed` |
//! | `never_recovered` | `never_recovered` |
//! | `stale_reads.stale` | `stale_read` (a violation only where reads are promised linearizable) |
//! | (queue mode, in `violations` only) | `unconsumed`, `early_claim`, `redelivered_as_new`, `claimed_after_ack`, `group_order`, `pending_at_end`, `group_diverged` |
//!
//! A message is counted once per kind (not once per node or subscriber), except where a
//! kind is defined per place: `reordered` counts deliveries that went backwards,
//! `skipped` and `at_most_once_gaps` count (subscriber, message) pairs.
//!
//! Assumptions about the history: every subscriber subscribes to every channel; each
//! subscriber's events appear in the order it saw them, each naming the node of the session
//! it happened in (a failover subscriber moves between nodes: in stream mode its deliveries
//! form one sequence per channel across its sessions, in pub/sub each session is owed what
//! was committed while it was up); nodes that report a final stream report it for every
//! channel (a missing channel is an empty stream).
//!
//! Checking is linear in the history size except for a few sorts (`O(n log n)`), plus
//! per-pair work over subscribers and nodes (a handful each).

mod ack_position;
mod availability;
mod divergence;
mod duplicated;
mod id_conflict;
mod indeterminate;
mod index;
mod lost;
mod phantom;
pub mod promise;
pub mod queue;
mod realtime;
mod stale_read;
mod subscriber_agreement;
mod subscriber_order;
pub mod synthetic;
#[cfg(test)]
mod testkit;

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use raftbus_reports::model::{
    Checks, Mode, Recovery, StaleReads, Target, Verdict, ViolationReport,
};

use crate::history::{Event, MsgId};
pub use index::StreamId;
use index::{IndexBuilder, IndexedHistory};
pub use promise::Promise;

/// How to check a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Stream mode checks final streams and gap-free resume; pub/sub mode allows
    /// at-most-once gaps while a subscriber is disconnected.
    pub mode: Mode,
    /// What the target promises in this mode; see [`promise`].
    pub promise: Promise,
    /// Examples kept per violation kind.
    pub max_examples: usize,
}

impl CheckOptions {
    /// Judged by the strictest promise (the bus's).
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            promise: Promise::strict(mode),
            max_examples: 10,
        }
    }

    /// Judged by what `target` promises in `mode`.
    pub fn for_target(target: Target, mode: Mode) -> Self {
        Self {
            promise: Promise::of(target, mode),
            ..Self::new(mode)
        }
    }
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self::new(Mode::Stream)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot open history {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read history {path} at line {line}: {source}")]
    Read {
        path: PathBuf,
        line: u64,
        source: std::io::Error,
    },
    #[error("{path} line {line} is not a history event: {source}")]
    Parse {
        path: PathBuf,
        line: u64,
        source: serde_json::Error,
    },
}

/// What checking a history found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub checks: Checks,
    pub verdict: Verdict,
    /// Per fault window, in start order: time from its end to the first acknowledged
    /// publish.
    pub recovery: Vec<Recovery>,
}

/// Checks a `history.jsonl` file, reading it line by line (blank lines are skipped).
pub fn check_file(path: &Path, opts: &CheckOptions) -> Result<CheckOutcome, CheckError> {
    let file = File::open(path).map_err(|source| CheckError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut builder = IndexBuilder::new(opts.mode, opts.promise);
    let mut line = String::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        line_no += 1;
        let n = reader
            .read_line(&mut line)
            .map_err(|source| CheckError::Read {
                path: path.to_owned(),
                line: line_no,
                source,
            })?;
        if n == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line).map_err(|source| CheckError::Parse {
            path: path.to_owned(),
            line: line_no,
            source,
        })?;
        builder.push(event);
    }
    Ok(run(&builder.finish(), opts))
}

/// Checks a history given as events.
pub fn check_events(events: impl IntoIterator<Item = Event>, opts: &CheckOptions) -> CheckOutcome {
    let mut builder = IndexBuilder::new(opts.mode, opts.promise);
    for event in events {
        builder.push(event);
    }
    run(&builder.finish(), opts)
}

/// One checked property.
pub(crate) trait Invariant {
    fn name(&self) -> &'static str;
    /// The property, in one sentence.
    fn property(&self) -> &'static str;
    fn check(&self, h: &IndexedHistory, out: &mut Findings);
}

fn invariants() -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(lost::Lost),
        Box::new(duplicated::Duplicated),
        Box::new(phantom::Phantom),
        Box::new(id_conflict::IdConflict),
        Box::new(ack_position::AckPosition),
        Box::new(subscriber_order::SubscriberOrder),
        Box::new(subscriber_agreement::SubscriberAgreement),
        Box::new(divergence::Divergence),
        Box::new(realtime::Realtime),
        Box::new(indeterminate::Indeterminate),
        Box::new(availability::Availability),
        Box::new(stale_read::StaleRead),
        Box::new(queue::consumed::Consumed),
        Box::new(queue::double_delivery::DoubleDelivery),
        Box::new(queue::redelivery::Redelivery),
        Box::new(queue::group_order::GroupOrder),
        Box::new(queue::drained::Drained),
        Box::new(queue::group_agreement::GroupAgreement),
    ]
}

fn run(h: &IndexedHistory, opts: &CheckOptions) -> CheckOutcome {
    let mut out = Findings::new(opts.max_examples);
    for invariant in invariants() {
        let started = std::time::Instant::now();
        invariant.check(h, &mut out);
        tracing::debug!(
            invariant = invariant.name(),
            property = invariant.property(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "invariant checked"
        );
    }
    out.into_outcome(h)
}

/// The `Checks` counter a violation kind adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Lost,
    Duplicated,
    Reordered,
    Phantom,
    Corrupted,
    Diverged,
    Realtime,
    FailedButCommitted,
    NeverRecovered,
    /// Counted in `Checks::stale_reads` by the invariant itself.
    StaleRead,
    /// Queue mode: counted only in `Checks::violations` (by kind).
    Queue,
}

/// Violation kinds, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    LostMidStream,
    LostTail,
    Duplicated,
    DuplicatedDelivery,
    IndeterminateDuplicated,
    Phantom,
    Corrupted,
    IdConflict,
    AckIdMismatch,
    Reordered,
    Skipped,
    Disagreement,
    Diverged,
    Realtime,
    FailedButCommitted,
    NeverRecovered,
    StaleRead,
    Unconsumed,
    EarlyClaim,
    RedeliveredAsNew,
    ClaimedAfterAck,
    GroupOrder,
    PendingAtEnd,
    GroupDiverged,
}

impl Kind {
    const ALL: [Kind; 24] = [
        Kind::LostMidStream,
        Kind::LostTail,
        Kind::Duplicated,
        Kind::DuplicatedDelivery,
        Kind::IndeterminateDuplicated,
        Kind::Phantom,
        Kind::Corrupted,
        Kind::IdConflict,
        Kind::AckIdMismatch,
        Kind::Reordered,
        Kind::Skipped,
        Kind::Disagreement,
        Kind::Diverged,
        Kind::Realtime,
        Kind::FailedButCommitted,
        Kind::NeverRecovered,
        Kind::StaleRead,
        Kind::Unconsumed,
        Kind::EarlyClaim,
        Kind::RedeliveredAsNew,
        Kind::ClaimedAfterAck,
        Kind::GroupOrder,
        Kind::PendingAtEnd,
        Kind::GroupDiverged,
    ];

    /// The stable name used as `ViolationReport::kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LostMidStream => "lost_mid_stream",
            Kind::LostTail => "lost_tail",
            Kind::Duplicated => "duplicated",
            Kind::DuplicatedDelivery => "duplicated_delivery",
            Kind::IndeterminateDuplicated => "indeterminate_duplicated",
            Kind::Phantom => "phantom",
            Kind::Corrupted => "corrupted",
            Kind::IdConflict => "id_conflict",
            Kind::AckIdMismatch => "ack_id_mismatch",
            Kind::Reordered => "reordered",
            Kind::Skipped => "skipped",
            Kind::Disagreement => "disagreement",
            Kind::Diverged => "diverged",
            Kind::Realtime => "realtime",
            Kind::FailedButCommitted => "failed_but_committed",
            Kind::NeverRecovered => "never_recovered",
            Kind::StaleRead => "stale_read",
            Kind::Unconsumed => "unconsumed",
            Kind::EarlyClaim => "early_claim",
            Kind::RedeliveredAsNew => "redelivered_as_new",
            Kind::ClaimedAfterAck => "claimed_after_ack",
            Kind::GroupOrder => "group_order",
            Kind::PendingAtEnd => "pending_at_end",
            Kind::GroupDiverged => "group_diverged",
        }
    }

    /// The property a violation of this kind breaks.
    pub fn property(self) -> &'static str {
        match self {
            Kind::LostMidStream => "an acknowledged message survives; here a later acknowledged message of the same channel survived but this one did not",
            Kind::LostTail => "an acknowledged message survives; here nothing acknowledged later on the channel survived either",
            Kind::Duplicated => "an acknowledged message appears at most once in each node's final stream",
            Kind::DuplicatedDelivery => "a subscriber receives each message at most once, also across reconnects and resumes",
            Kind::IndeterminateDuplicated => "an indeterminate or failed publish is applied at most once",
            Kind::Phantom => "every stored or delivered message was published, on that channel",
            Kind::Corrupted => "every stored or delivered payload matches its checksum",
            Kind::IdConflict => "one stream id holds one message, on every node, in every delivery and in the acknowledgement",
            Kind::AckIdMismatch => "the id a publish was acknowledged with is where that message is stored, in every final stream that holds it",
            Kind::Reordered => "a subscriber receives a channel's entries in strictly increasing id order",
            Kind::Skipped => "a subscriber misses no entry of a channel it is owed: while connected, across a resume, up to the end of the final stream",
            Kind::Disagreement => "all subscribers see the common messages of a channel in the same order",
            Kind::Diverged => "at the end of a run all nodes hold the same stream for each channel",
            Kind::Realtime => "a message acknowledged before another was published precedes it",
            Kind::FailedButCommitted => "a publish reported as failed is not applied",
            Kind::NeverRecovered => "after the last fault heals, publishes succeed again",
            Kind::StaleRead => "a read that began after a message was acknowledged includes it",
            Kind::Unconsumed => "every acknowledged message is eventually consumed and XACKed by every group",
            Kind::EarlyClaim => "an entry is with one consumer at a time: another may claim it only after its holder was idle for the claim's min-idle-time",
            Kind::RedeliveredAsNew => "XREADGROUP > hands each entry to a group once; redelivery happens only by claiming a pending entry",
            Kind::ClaimedAfterAck => "an entry removed from the PEL by XACK is never claimed again",
            Kind::GroupOrder => "a group's first deliveries follow the stream's order",
            Kind::PendingAtEnd => "the PEL drains: no group holds pending entries at the end, on any node",
            Kind::GroupDiverged => "every node ends with the same state of every consumer group",
        }
    }

    fn counter(self) -> Counter {
        match self {
            Kind::LostMidStream | Kind::LostTail => Counter::Lost,
            Kind::Duplicated | Kind::DuplicatedDelivery | Kind::IndeterminateDuplicated => {
                Counter::Duplicated
            }
            Kind::Phantom => Counter::Phantom,
            Kind::Corrupted => Counter::Corrupted,
            Kind::IdConflict | Kind::AckIdMismatch | Kind::Diverged => Counter::Diverged,
            Kind::Reordered | Kind::Skipped | Kind::Disagreement => Counter::Reordered,
            Kind::Realtime => Counter::Realtime,
            Kind::FailedButCommitted => Counter::FailedButCommitted,
            Kind::NeverRecovered => Counter::NeverRecovered,
            Kind::StaleRead => Counter::StaleRead,
            Kind::RedeliveredAsNew | Kind::EarlyClaim | Kind::ClaimedAfterAck => {
                Counter::Duplicated
            }
            Kind::GroupOrder => Counter::Reordered,
            Kind::GroupDiverged => Counter::Diverged,
            Kind::Unconsumed | Kind::PendingAtEnd => Counter::Queue,
        }
    }
}

/// Formats a message id as in payloads.
pub(crate) struct Hex(pub MsgId);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Formats microseconds as milliseconds.
pub(crate) struct Ms(pub u64);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}ms", self.0 as f64 / 1000.0)
    }
}

fn opt_id(id: &Option<StreamId>) -> String {
    id.map_or_else(|| "no id".to_owned(), |i| i.to_string())
}

fn opt_msg(msg: &Option<MsgId>) -> String {
    msg.map_or_else(
        || "a foreign payload".to_owned(),
        |m| format!("msg {}", Hex(m)),
    )
}

/// Where an entry was seen: a node's final stream, a delivery, or an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Final {
        node: String,
    },
    Delivery {
        subscriber: u32,
        node: String,
        t_us: u64,
    },
    Ack {
        node: String,
        t_us: u64,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Final { node } => write!(f, "final stream of {node}"),
            Place::Delivery {
                subscriber,
                node,
                t_us,
            } => write!(
                f,
                "delivery to sub {subscriber} via {node} at {}",
                Ms(*t_us)
            ),
            Place::Ack { node, t_us } => write!(f, "ack from {node} at {}", Ms(*t_us)),
        }
    }
}

/// A broken property, with what is needed to show one concrete example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Acknowledged messages survive: an acked message is absent from every node's final
    /// stream (stream mode) or was delivered to no subscriber that stayed connected from
    /// its invoke to the end (pub/sub), while a later acked message of the channel survived.
    LostMidStream {
        msg: MsgId,
        channel: String,
        acked_us: u64,
        node: String,
        ack_id: Option<StreamId>,
        missing_on: Vec<String>,
        /// The first acknowledged message invoked after it that survived, with its id.
        next_surviving: (MsgId, Option<StreamId>),
    },
    /// Acknowledged messages survive: as `LostMidStream`, but nothing acknowledged later
    /// on the channel survived.
    LostTail {
        msg: MsgId,
        channel: String,
        acked_us: u64,
        node: String,
        ack_id: Option<StreamId>,
        missing_on: Vec<String>,
    },
    /// An acknowledged message appears at most once in each node's final stream.
    Duplicated {
        msg: MsgId,
        node: String,
        ids: Vec<Option<StreamId>>,
    },
    /// A subscriber receives each message at most once (a resume that re-delivers an
    /// already received id is a duplicate).
    DuplicatedDelivery {
        msg: MsgId,
        subscriber: u32,
        node: String,
        first: (u64, Option<StreamId>),
        again: (u64, Option<StreamId>),
        after_resume: bool,
    },
    /// An indeterminate or failed publish is applied at most once.
    IndeterminateDuplicated {
        msg: MsgId,
        outcome: &'static str,
        node: String,
        ids: Vec<Option<StreamId>>,
    },
    /// Every stored or delivered message was published, on that channel.
    Phantom {
        place: Place,
        channel: String,
        id: Option<StreamId>,
        msg: Option<MsgId>,
        /// The channel it was published on, when it was published elsewhere.
        published_on: Option<String>,
    },
    /// Every stored or delivered payload matches its checksum.
    Corrupted {
        place: Place,
        channel: String,
        id: Option<StreamId>,
        msg: Option<MsgId>,
    },
    /// One stream id holds one message everywhere.
    IdConflict {
        channel: String,
        id: StreamId,
        first: (Option<MsgId>, Place),
        second: (Option<MsgId>, Place),
    },
    /// The acknowledged id holds the acknowledged message: a final stream has the message
    /// at another id than the one its publish was acknowledged with.
    AckIdMismatch {
        msg: MsgId,
        channel: String,
        ack_id: StreamId,
        node: String,
        stored_at: Option<StreamId>,
    },
    /// A subscriber receives a channel's entries in strictly increasing id order.
    Reordered {
        subscriber: u32,
        node: String,
        channel: String,
        msg: Option<MsgId>,
        id: StreamId,
        after: StreamId,
        t_us: u64,
    },
    /// A subscriber misses nothing while connected (pub/sub and stream), nor across a
    /// resume (stream).
    Skipped {
        subscriber: u32,
        node: String,
        channel: String,
        missed: Option<MsgId>,
        missed_id: Option<StreamId>,
        /// What proves it should have been received: the delivery after the gap.
        evidence: String,
    },
    /// All subscribers see the common messages of a channel in the same order.
    Disagreement {
        channel: String,
        a: MsgId,
        b: MsgId,
        /// Saw `a` before `b`.
        sub_ab: u32,
        /// Saw `b` before `a`.
        sub_ba: u32,
    },
    /// All nodes end with the same stream for each channel.
    Diverged {
        channel: String,
        node_a: String,
        node_b: String,
        /// Position of the first difference.
        index: usize,
        a_has: Option<(StreamId, Option<MsgId>)>,
        b_has: Option<(StreamId, Option<MsgId>)>,
        len_a: usize,
        len_b: usize,
    },
    /// A message acknowledged before another was published precedes it.
    Realtime {
        channel: String,
        /// Where the order was observed: a node or a subscriber.
        seen_in: String,
        earlier: MsgId,
        earlier_acked_us: u64,
        earlier_id: Option<StreamId>,
        later: MsgId,
        later_invoked_us: u64,
        later_id: Option<StreamId>,
    },
    /// A publish reported as failed is not applied.
    FailedButCommitted {
        msg: MsgId,
        failed_us: u64,
        error_node: String,
        found_in: Vec<String>,
    },
    /// After the last fault heals, publishes succeed again.
    NeverRecovered {
        kind: String,
        healed_us: u64,
        last_invoke_us: u64,
    },
    /// A read that began after a message was acknowledged includes it: here a read
    /// missed acknowledged entries.
    StaleRead {
        node: String,
        channel: String,
        op: &'static str,
        invoke_us: u64,
        /// What the read returned, e.g. `newest 17-0` or `length 12`.
        returned: String,
        /// Acknowledged entries (before the read began) that it did not reach.
        entries_behind: u64,
        /// The longest-acknowledged entry it missed: message, id, ack time.
        oldest_missed: (MsgId, StreamId, u64),
    },
    /// A consumer-group property (queue mode); see [`queue`].
    Queue(queue::QueueViolation),
}

impl Violation {
    pub fn kind(&self) -> Kind {
        match self {
            Violation::LostMidStream { .. } => Kind::LostMidStream,
            Violation::LostTail { .. } => Kind::LostTail,
            Violation::Duplicated { .. } => Kind::Duplicated,
            Violation::DuplicatedDelivery { .. } => Kind::DuplicatedDelivery,
            Violation::IndeterminateDuplicated { .. } => Kind::IndeterminateDuplicated,
            Violation::Phantom { .. } => Kind::Phantom,
            Violation::Corrupted { .. } => Kind::Corrupted,
            Violation::IdConflict { .. } => Kind::IdConflict,
            Violation::AckIdMismatch { .. } => Kind::AckIdMismatch,
            Violation::Reordered { .. } => Kind::Reordered,
            Violation::Skipped { .. } => Kind::Skipped,
            Violation::Disagreement { .. } => Kind::Disagreement,
            Violation::Diverged { .. } => Kind::Diverged,
            Violation::Realtime { .. } => Kind::Realtime,
            Violation::FailedButCommitted { .. } => Kind::FailedButCommitted,
            Violation::NeverRecovered { .. } => Kind::NeverRecovered,
            Violation::StaleRead { .. } => Kind::StaleRead,
            Violation::Queue(q) => q.kind(),
        }
    }
}

fn ids_list(ids: &[Option<StreamId>]) -> String {
    ids.iter().map(opt_id).collect::<Vec<_>>().join(", ")
}

fn entry_text(e: &Option<(StreamId, Option<MsgId>)>) -> String {
    match e {
        Some((id, msg)) => format!("{} at {id}", opt_msg(msg)),
        None => "nothing".to_owned(),
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Queue(q) => q.fmt(f),
            Violation::LostMidStream {
                msg,
                channel,
                acked_us,
                node,
                ack_id,
                missing_on,
                next_surviving,
            } => write!(
                f,
                "msg {} on {channel} acked at {} on {node} (id {}) missing on {}; next surviving: {} at {}",
                Hex(*msg),
                Ms(*acked_us),
                opt_id(ack_id),
                missing_on.join(","),
                Hex(next_surviving.0),
                opt_id(&next_surviving.1),
            ),
            Violation::LostTail {
                msg,
                channel,
                acked_us,
                node,
                ack_id,
                missing_on,
            } => write!(
                f,
                "msg {} on {channel} acked at {} on {node} (id {}) missing on {}; nothing acked later on {channel} survived",
                Hex(*msg),
                Ms(*acked_us),
                opt_id(ack_id),
                missing_on.join(","),
            ),
            Violation::Duplicated { msg, node, ids } => write!(
                f,
                "msg {} appears {} times in the final stream of {node} at {}",
                Hex(*msg),
                ids.len(),
                ids_list(ids)
            ),
            Violation::DuplicatedDelivery {
                msg,
                subscriber,
                node,
                first,
                again,
                after_resume,
            } => write!(
                f,
                "msg {} delivered twice to sub {subscriber} via {node}: at {} (id {}) and again at {} (id {}){}",
                Hex(*msg),
                Ms(first.0),
                opt_id(&first.1),
                Ms(again.0),
                opt_id(&again.1),
                if *after_resume { " after a resume" } else { " in one session" }
            ),
            Violation::IndeterminateDuplicated {
                msg,
                outcome,
                node,
                ids,
            } => write!(
                f,
                "msg {} (outcome {outcome}) appears {} times in the final stream of {node} at {}",
                Hex(*msg),
                ids.len(),
                ids_list(ids)
            ),
            Violation::Phantom {
                place,
                channel,
                id,
                msg,
                published_on,
            } => {
                write!(f, "{} at {} on {channel} in {place} ", opt_msg(msg), opt_id(id))?;
                match published_on {
                    Some(other) => write!(f, "was published on {other}"),
                    None if msg.is_some() => write!(f, "was never published"),
                    None => write!(f, "is not a harness message"),
                }
            }
            Violation::Corrupted {
                place,
                channel,
                id,
                msg,
            } => write!(
                f,
                "{} at {} on {channel} in {place} fails its checksum",
                opt_msg(msg),
                opt_id(id)
            ),
            Violation::IdConflict {
                channel,
                id,
                first,
                second,
            } => write!(
                f,
                "id {id} on {channel} holds {} in {} but {} in {}",
                opt_msg(&first.0),
                first.1,
                opt_msg(&second.0),
                second.1
            ),
            Violation::AckIdMismatch {
                msg,
                channel,
                ack_id,
                node,
                stored_at,
            } => write!(
                f,
                "msg {} on {channel} was acknowledged as {ack_id} but the final stream of {node} holds it at {}",
                Hex(*msg),
                opt_id(stored_at)
            ),
            Violation::Reordered {
                subscriber,
                node,
                channel,
                msg,
                id,
                after,
                t_us,
            } => write!(
                f,
                "sub {subscriber} via {node} got {} at {id} on {channel} at {} after {after}",
                opt_msg(msg),
                Ms(*t_us)
            ),
            Violation::Skipped {
                subscriber,
                node,
                channel,
                missed,
                missed_id,
                evidence,
            } => write!(
                f,
                "sub {subscriber} via {node} missed {} (id {}) on {channel}; {evidence}",
                opt_msg(missed),
                opt_id(missed_id)
            ),
            Violation::Disagreement {
                channel,
                a,
                b,
                sub_ab,
                sub_ba,
            } => write!(
                f,
                "on {channel} sub {sub_ab} saw msg {} before msg {} but sub {sub_ba} saw them the other way",
                Hex(*a),
                Hex(*b)
            ),
            Violation::Diverged {
                channel,
                node_a,
                node_b,
                index,
                a_has,
                b_has,
                len_a,
                len_b,
            } => write!(
                f,
                "{channel}: {node_a} and {node_b} differ at entry {index}: {node_a} has {}, {node_b} has {} (lengths {len_a} vs {len_b})",
                entry_text(a_has),
                entry_text(b_has)
            ),
            Violation::Realtime {
                channel,
                seen_in,
                earlier,
                earlier_acked_us,
                earlier_id,
                later,
                later_invoked_us,
                later_id,
            } => write!(
                f,
                "on {channel} in {seen_in}: msg {} (id {}) acked at {} comes after msg {} (id {}) invoked later at {}",
                Hex(*earlier),
                opt_id(earlier_id),
                Ms(*earlier_acked_us),
                Hex(*later),
                opt_id(later_id),
                Ms(*later_invoked_us)
            ),
            Violation::FailedButCommitted {
                msg,
                failed_us,
                error_node,
                found_in,
            } => write!(
                f,
                "msg {} failed at {} on {error_node} but is in {}",
                Hex(*msg),
                Ms(*failed_us),
                found_in.join(", ")
            ),
            Violation::NeverRecovered {
                kind,
                healed_us,
                last_invoke_us,
            } => write!(
                f,
                "no publish succeeded after the {kind} fault healed at {} although publishes went on until {}",
                Ms(*healed_us),
                Ms(*last_invoke_us)
            ),
            Violation::StaleRead {
                node,
                channel,
                op,
                invoke_us,
                returned,
                entries_behind,
                oldest_missed: (msg, id, acked_us),
            } => write!(
                f,
                "{op} {channel} on {node} at {} returned {returned}: {entries_behind} acknowledged entries behind, missing msg {} (id {id}) acked at {}, {} before the read",
                Ms(*invoke_us),
                Hex(*msg),
                Ms(*acked_us),
                Ms(invoke_us.saturating_sub(*acked_us))
            ),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct KindTally {
    count: u64,
    examples: Vec<String>,
}

/// What the invariants found, aggregated per kind with a few examples.
#[derive(Debug)]
pub(crate) struct Findings {
    max_examples: usize,
    tallies: [KindTally; Kind::ALL.len()],
    /// Broken properties that the target's promise allows (see [`promise`]).
    anomalies: [KindTally; Kind::ALL.len()],
    at_most_once_gaps: u64,
    recovery: Vec<Recovery>,
    stale_reads: StaleReads,
}

impl Findings {
    fn new(max_examples: usize) -> Self {
        Self {
            max_examples,
            tallies: Default::default(),
            anomalies: Default::default(),
            at_most_once_gaps: 0,
            recovery: Vec::new(),
            stale_reads: StaleReads::default(),
        }
    }

    /// Counts one violation of `kind`; builds its example only if one is still wanted.
    pub(crate) fn report_with(&mut self, kind: Kind, example: impl FnOnce() -> Violation) {
        Self::tally(&mut self.tallies, self.max_examples, kind, example);
    }

    /// Counts one anomaly of `kind` that the target's promise allows: reported beside
    /// the violations, not as one.
    pub(crate) fn anomaly_with(&mut self, kind: Kind, example: impl FnOnce() -> Violation) {
        Self::tally(&mut self.anomalies, self.max_examples, kind, example);
    }

    /// A violation when `promised`, otherwise an anomaly.
    pub(crate) fn judge(
        &mut self,
        promised: bool,
        kind: Kind,
        example: impl FnOnce() -> Violation,
    ) {
        if promised {
            self.report_with(kind, example);
        } else {
            self.anomaly_with(kind, example);
        }
    }

    fn tally(
        tallies: &mut [KindTally; Kind::ALL.len()],
        max_examples: usize,
        kind: Kind,
        example: impl FnOnce() -> Violation,
    ) {
        let tally = &mut tallies[kind as usize];
        tally.count += 1;
        if tally.examples.len() < max_examples {
            let v = example();
            debug_assert_eq!(v.kind(), kind);
            tally.examples.push(v.to_string());
        }
    }

    pub(crate) fn at_most_once_gap(&mut self) {
        self.at_most_once_gaps += 1;
    }

    pub(crate) fn set_recovery(&mut self, recovery: Vec<Recovery>) {
        self.recovery = recovery;
    }

    pub(crate) fn set_stale_reads(&mut self, stale_reads: StaleReads) {
        self.stale_reads = stale_reads;
    }

    #[cfg(test)]
    pub(crate) fn count(&self, kind: Kind) -> u64 {
        self.tallies[kind as usize].count
    }

    #[cfg(test)]
    pub(crate) fn anomaly_count(&self, kind: Kind) -> u64 {
        self.anomalies[kind as usize].count
    }

    fn into_outcome(self, h: &IndexedHistory) -> CheckOutcome {
        let mut checks = Checks {
            delivered: h.delivered,
            at_most_once_gaps: self.at_most_once_gaps,
            ..Checks::default()
        };
        for m in &h.messages {
            match m.status {
                index::Status::Ok => checks.acked += 1,
                index::Status::Fail => checks.failed += 1,
                index::Status::Info | index::Status::Pending => checks.indeterminate += 1,
            }
        }
        for (kind, tally) in Kind::ALL.into_iter().zip(self.tallies) {
            if tally.count == 0 {
                continue;
            }
            let n = tally.count;
            match kind {
                Kind::LostMidStream => checks.lost_mid_stream += n,
                Kind::LostTail => checks.lost_tail += n,
                _ => {}
            }
            match kind.counter() {
                Counter::Lost => checks.lost += n,
                Counter::Duplicated => checks.duplicated += n,
                Counter::Reordered => checks.reordered += n,
                Counter::Phantom => checks.phantom += n,
                Counter::Corrupted => checks.corrupted += n,
                Counter::Diverged => checks.diverged += n,
                Counter::Realtime => checks.realtime_violations += n,
                Counter::FailedButCommitted => checks.failed_but_committed += n,
                Counter::NeverRecovered => checks.never_recovered += n,
                Counter::StaleRead | Counter::Queue => {}
            }
            checks.violations.push(ViolationReport {
                kind: kind.name().to_owned(),
                property: kind.property().to_owned(),
                count: n,
                examples: tally.examples,
            });
        }
        for (kind, tally) in Kind::ALL.into_iter().zip(self.anomalies) {
            if tally.count > 0 {
                checks.anomalies.push(ViolationReport {
                    kind: kind.name().to_owned(),
                    property: kind.property().to_owned(),
                    count: tally.count,
                    examples: tally.examples,
                });
            }
        }
        checks.promise = h.promise.label.to_owned();
        checks.stale_reads = self.stale_reads;
        checks.unchecked = h
            .unreadable
            .iter()
            .map(|(node, why)| {
                format!(
                    "the final streams of {node} could not be read ({why}): loss, divergence and completeness are not checked against it"
                )
            })
            .collect();
        checks.unchecked.extend(
            h.malformed
                .iter()
                .map(|why| format!("the history is malformed: {why}")),
        );
        if !h.queue.is_empty() {
            checks.queue = h.queue.figures(&h.nodes, &h.channels);
        }
        checks.unchecked.extend(
            h.queue
                .unreadable
                .iter()
                .filter(|(node, _)| {
                    let name = h.node(*node);
                    !h.excused.iter().any(|(n, _)| n == name)
                        && !h.unreadable.iter().any(|(n, _)| n == name)
                })
                .map(|(node, why)| {
                    format!(
                        "the consumer groups of {} could not be read ({why}): their end state is not checked against it",
                        h.node(*node)
                    )
                }),
        );
        checks.excused = h
            .excused
            .iter()
            .map(|(node, why)| format!("{node} is expected to be gone: {why}"))
            .collect();
        let verdict = if !checks.violations.is_empty() {
            Verdict::Invalid
        } else if !checks.unchecked.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Valid
        };
        CheckOutcome {
            checks,
            verdict,
            recovery: self.recovery,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::testkit::H;
    use super::*;

    fn anomalous() -> H {
        let mut h = H::stream(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.acked(3, "c", "3-0");
        h.failed(4, "c");
        h.indeterminate(5, "c");
        for node in ["n1", "n2"] {
            h.final_entry(node, "c", "1-0", 1);
            h.final_entry(node, "c", "3-0", 3);
        }
        h.deliver(1, "n1", 1, "1-0");
        h.deliver(1, "n1", 3, "3-0");
        h.deliver(1, "n1", 3, "3-0");
        h
    }

    #[test]
    fn outcome_counts_and_verdict() {
        let outcome = check_events(anomalous().events(), &CheckOptions::default());
        let c = &outcome.checks;
        assert_eq!(
            (c.acked, c.failed, c.indeterminate, c.delivered),
            (3, 1, 1, 3)
        );
        assert_eq!((c.lost, c.lost_mid_stream, c.lost_tail), (1, 1, 0));
        assert_eq!(c.duplicated, 1);
        assert_eq!(c.reordered, 0);
        assert_eq!(outcome.verdict, Verdict::Invalid);
        let kinds: Vec<&str> = c.violations.iter().map(|v| v.kind.as_str()).collect();
        assert_eq!(kinds, ["lost_mid_stream", "duplicated_delivery"]);
        assert!(c
            .violations
            .iter()
            .all(|v| v.count == v.examples.len() as u64));
    }

    #[test]
    fn every_kind_is_counted_under_its_own_counter() {
        // Two of each, so a counter that multiplies or subtracts instead of adding shows.
        for kind in Kind::ALL {
            let mut findings = Findings::new(0);
            for _ in 0..2 {
                findings.report_with(kind, || unreachable!("no examples are kept"));
                findings.at_most_once_gap();
            }
            let c = findings.into_outcome(&H::stream(&["n1"]).index()).checks;
            let counters = [
                (Counter::Lost, c.lost),
                (Counter::Duplicated, c.duplicated),
                (Counter::Reordered, c.reordered),
                (Counter::Phantom, c.phantom),
                (Counter::Corrupted, c.corrupted),
                (Counter::Diverged, c.diverged),
                (Counter::Realtime, c.realtime_violations),
                (Counter::FailedButCommitted, c.failed_but_committed),
                (Counter::NeverRecovered, c.never_recovered),
            ];
            for (counter, value) in counters {
                let want = if counter == kind.counter() { 2 } else { 0 };
                assert_eq!(value, want, "{kind:?} under {counter:?}");
            }
            let (mid, tail) = match kind {
                Kind::LostMidStream => (2, 0),
                Kind::LostTail => (0, 2),
                _ => (0, 0),
            };
            assert_eq!((c.lost_mid_stream, c.lost_tail), (mid, tail), "{kind:?}");
            assert_eq!(c.at_most_once_gaps, 2);
            assert_eq!(c.violations.len(), 1);
            assert_eq!(c.violations[0].kind, kind.name());
            assert_eq!(c.violations[0].property, kind.property());
            assert_eq!(c.violations[0].count, 2);
        }
    }

    #[test]
    fn every_invariant_is_named_after_its_file_and_states_a_property() {
        // One invariant per file: its name is the file's (below check/), so a log line leads
        // to the code.
        let names: Vec<&str> = invariants().iter().map(|i| i.name()).collect();
        assert_eq!(
            names,
            [
                "lost",
                "duplicated",
                "phantom",
                "id_conflict",
                "ack_position",
                "subscriber_order",
                "subscriber_agreement",
                "divergence",
                "realtime",
                "indeterminate",
                "availability",
                "stale_read",
                "queue/consumed",
                "queue/double_delivery",
                "queue/redelivery",
                "queue/group_order",
                "queue/drained",
                "queue/group_agreement",
            ]
        );
        let properties: std::collections::BTreeSet<&str> =
            invariants().iter().map(|i| i.property()).collect();
        assert_eq!(properties.len(), names.len());
        assert!(properties.iter().all(|p| p.split_whitespace().count() >= 5));
    }

    #[test]
    fn every_kind_states_its_own_property() {
        let properties: std::collections::BTreeSet<&str> =
            Kind::ALL.iter().map(|k| k.property()).collect();
        assert_eq!(properties.len(), Kind::ALL.len());
        assert!(properties.iter().all(|p| p.split_whitespace().count() >= 5));
    }

    #[test]
    fn a_phantom_says_whether_it_is_a_harness_message() {
        let phantom = |msg| Violation::Phantom {
            place: Place::Final { node: "n1".into() },
            channel: "c".into(),
            id: None,
            msg,
            published_on: None,
        };
        assert!(phantom(Some(7))
            .to_string()
            .ends_with("was never published"));
        assert!(phantom(None)
            .to_string()
            .ends_with("is not a harness message"));
    }

    #[test]
    fn examples_are_capped_but_counts_are_not() {
        let mut h = H::stream(&["n1"]);
        for n in 1..=25 {
            h.acked(n, "c", &format!("{n}-0"));
        }
        h.final_entry("n1", "c", "26-0", 26);
        let opts = CheckOptions {
            max_examples: 3,
            ..CheckOptions::new(Mode::Stream)
        };
        let outcome = check_events(h.events(), &opts);
        let lost = &outcome.checks.violations[0];
        assert_eq!((lost.kind.as_str(), lost.count), ("lost_tail", 25));
        assert_eq!(lost.examples.len(), 3);
        assert_eq!(outcome.checks.phantom, 1);
    }

    #[test]
    fn check_file_round_trips_and_matches_check_events() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for e in anomalous().events() {
            writeln!(file, "{}", serde_json::to_string(&e).unwrap()).unwrap();
        }
        writeln!(file).unwrap();
        file.flush().unwrap();
        let opts = CheckOptions::default();
        let from_file = check_file(file.path(), &opts).unwrap();
        assert_eq!(from_file, check_events(anomalous().events(), &opts));
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let events = anomalous().events();
        writeln!(file, "{}", serde_json::to_string(&events[0]).unwrap()).unwrap();
        writeln!(file, "{}", serde_json::to_string(&events[1]).unwrap()).unwrap();
        writeln!(file, "{{\"ev\":\"invoke\",\"t_us\":1}}").unwrap();
        file.flush().unwrap();
        let err = check_file(file.path(), &CheckOptions::default()).unwrap_err();
        assert!(matches!(err, CheckError::Parse { line: 3, .. }), "{err:?}");
        assert!(
            err.to_string().contains("line 3 is not a history event"),
            "{err}"
        );

        let missing = check_file(
            Path::new("/nonexistent/history.jsonl"),
            &CheckOptions::default(),
        );
        assert!(matches!(missing, Err(CheckError::Open { .. })));
    }

    #[test]
    fn a_node_that_could_not_be_read_makes_the_verdict_unknown() {
        let mut h = H::stream(&["n1", "n2"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1-0");
        h.deliver(1, "n1", 1, "1-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_read("n1", true);
        // n2 answered part of its read, then failed: it must not count as agreeing.
        h.final_entry("n2", "c", "1-0", 1);
        h.final_read("n2", false);
        let outcome = check_events(h.events(), &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Unknown);
        assert_eq!(outcome.checks.unchecked.len(), 1);
        assert!(
            outcome.checks.unchecked[0].contains("final streams of n2 could not be read"),
            "{:?}",
            outcome.checks.unchecked
        );
    }

    #[test]
    fn a_node_expected_gone_is_excused_and_only_that_node() {
        let mut h = H::stream(&["n1", "n2", "n3"]);
        h.sub_up(1, "n1");
        h.acked(1, "c", "1-0");
        h.deliver(1, "n1", 1, "1-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_read("n1", true);
        h.retired("n2", "n2 refused to start: corrupt log segment");
        h.final_read("n2", false);
        let mut events = h.events();
        let outcome = check_events(events.clone(), &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Valid, "{:?}", outcome.checks);
        assert!(outcome.checks.unchecked.is_empty());
        assert_eq!(outcome.checks.excused.len(), 1);
        assert!(outcome.checks.excused[0].contains("n2 is expected to be gone"));
        // Another unreadable node is still unknown: the excuse names one node.
        events.push(Event::FinalRead {
            node: "n3".into(),
            ok: false,
            error: Some("refused".into()),
        });
        let outcome = check_events(events, &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Unknown);
        // And a retired node that was read is data like any other: losing there counts.
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_read("n1", true);
        h.retired("n2", "refused");
        h.final_read("n2", true);
        let outcome = check_events(h.events(), &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Invalid, "{:?}", outcome.checks);
    }

    #[test]
    fn a_malformed_history_makes_the_verdict_unknown() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_read("n1", true);
        let clean = h.events();
        let outcome = check_events(clean.clone(), &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Valid, "{:?}", outcome.checks);
        // The same message id invoked again.
        let mut twice = clean.clone();
        twice.insert(1, clean[0].clone());
        let outcome = check_events(twice, &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Unknown);
        assert_eq!(
            outcome.checks.unchecked,
            ["the history is malformed: 1 message ids were invoked twice; only the first invoke counts"]
        );
        // A completion of a message never invoked.
        let mut orphan = clean;
        let mut stray = orphan[1].clone();
        if let Event::Complete { msg, .. } = &mut stray {
            *msg += 1000;
        }
        orphan.push(stray);
        let outcome = check_events(orphan, &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Unknown);
        assert_eq!(
            outcome.checks.unchecked,
            ["the history is malformed: 1 completions without an invoke were ignored"]
        );
    }

    #[test]
    fn a_node_read_empty_is_data_not_absence() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.final_entry("n1", "c", "1-0", 1);
        h.final_read("n1", true);
        h.final_read("n2", true);
        let outcome = check_events(h.events(), &CheckOptions::default());
        assert_eq!(outcome.verdict, Verdict::Invalid);
        assert_eq!(
            outcome.checks.diverged, 1,
            "{:?}",
            outcome.checks.violations
        );
    }

    #[test]
    fn redis_pubsub_is_judged_by_its_at_most_once_promise() {
        // Nothing stored, nothing delivered: on the bus a violation, on Redis an anomaly.
        let build = || {
            let mut h = H::pubsub(&["n1"]);
            h.sub_up(1, "n1");
            h.acked(1, "c", "1");
            h.acked(2, "c", "1");
            h.deliver_ps(1, "n1", 2);
            h.final_read("n1", true);
            h.events()
        };
        let bus = check_events(
            build(),
            &CheckOptions::for_target(Target::Bus, Mode::Pubsub),
        );
        assert_eq!(bus.verdict, Verdict::Invalid);
        let redis = check_events(
            build(),
            &CheckOptions::for_target(Target::Redis, Mode::Pubsub),
        );
        assert_eq!(redis.verdict, Verdict::Valid, "{:?}", redis.checks);
        let kinds: Vec<&str> = redis
            .checks
            .anomalies
            .iter()
            .map(|a| a.kind.as_str())
            .collect();
        assert_eq!(kinds, ["lost_mid_stream", "skipped"]);
        assert!(redis.checks.promise.contains("at most once"));
    }
}
