//! The indexed view of a history that every invariant reads.
//!
//! Built in one streaming pass over the events ([`IndexBuilder::push`]) and one finishing
//! pass ([`IndexBuilder::finish`]) that resolves message ids to dense indices, so the
//! invariants can use arrays and bitsets instead of maps. Memory is proportional to the
//! number of messages, final-stream entries and deliveries; no event is kept as a whole.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use raftbus_reports::model::Mode;

use super::promise::Promise;
use super::queue::QueueHistory;
use crate::history::{Event, MsgId, Outcome, ReadOp, RUN_FINISHED};

/// "No index": a message that was never invoked, an absent position, an unknown session.
pub(crate) const NONE: u32 = u32::MAX;

/// A fast hasher for integer keys (message ids are structured, so mix the bits).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet<K> = std::collections::HashSet<K, BuildHasherDefault<IdHasher>>;

/// A Redis stream entry id, `<ms>-<seq>`; a bare integer parses as `<n>-0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once('-') {
            Some((ms, seq)) => Some(Self {
                ms: ms.parse().ok()?,
                seq: seq.parse().ok()?,
            }),
            None => Some(Self {
                ms: text.parse().ok()?,
                seq: 0,
            }),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// How a publish ended, with "never completed" kept apart from an explicit `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Fail,
    Info,
    /// Invoked, no completion recorded: as unknown as `Info`.
    Pending,
}

impl Status {
    pub(crate) fn is_indeterminate(self) -> bool {
        matches!(self, Status::Info | Status::Pending)
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::Info => "info",
            Status::Pending => "pending",
        }
    }
}

/// One invoked message.
#[derive(Debug, Clone)]
pub(crate) struct MsgRec {
    pub msg: MsgId,
    pub channel: u32,
    /// The node the publisher talked to.
    pub node: u32,
    pub invoke_us: u64,
    /// `u64::MAX` when no completion was recorded.
    pub complete_us: u64,
    pub status: Status,
    /// The entry id the target acknowledged with (stream mode only).
    pub ack_id: Option<StreamId>,
    /// First delivery to any subscriber; `u64::MAX` if never delivered.
    pub first_delivery_us: u64,
}

impl MsgRec {
    pub(crate) fn is_acked(&self) -> bool {
        self.status == Status::Ok
    }

    /// The earliest time the message is known to exist at the target: its
    /// acknowledgement or its first delivery. `u64::MAX` if neither happened.
    pub(crate) fn known_at(&self) -> u64 {
        let acked = if self.is_acked() {
            self.complete_us
        } else {
            u64::MAX
        };
        acked.min(self.first_delivery_us)
    }
}

/// One entry of a node's final stream.
#[derive(Debug, Clone)]
pub(crate) struct FinalEntry {
    pub id: Option<StreamId>,
    /// The message id named by the payload; `None` for a foreign payload.
    pub msg: Option<MsgId>,
    /// Dense index of the message, [`NONE`] if it was never invoked on this channel.
    pub msg_idx: u32,
    pub intact: bool,
}

/// One delivery to a subscriber.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub t_us: u64,
    pub msg: Option<MsgId>,
    pub id: Option<StreamId>,
    /// Dense index of the message, [`NONE`] if it was never invoked on this channel.
    pub msg_idx: u32,
    pub channel: u32,
    pub node: u32,
    /// Index into the subscriber's sessions.
    pub session: u32,
    pub intact: bool,
    /// The subscriber had already received this message before.
    pub repeat: bool,
}

/// A connected period of a subscriber, from `SubscriberUp` to `SubscriberDown`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    pub up_us: u64,
    /// `u64::MAX` while still connected at the end of the run (also when it was closed
    /// only because the run finished).
    pub down_us: u64,
    pub node: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct SubscriberRec {
    pub id: u32,
    pub sessions: Vec<Session>,
    pub deliveries: Vec<Delivery>,
    /// Bitset over message indices: which messages this subscriber received.
    pub got: Vec<u64>,
}

impl SubscriberRec {
    pub(crate) fn got(&self, msg_idx: u32) -> bool {
        msg_idx != NONE && self.got[msg_idx as usize / 64] & (1 << (msg_idx % 64)) != 0
    }

    /// The session that was connected at time `t_us`, if any.
    pub(crate) fn session_at(&self, t_us: u64) -> Option<usize> {
        let after = self.sessions.partition_point(|s| s.up_us <= t_us);
        let idx = after.checked_sub(1)?;
        (self.sessions[idx].down_us > t_us).then_some(idx)
    }
}

/// One read of the read workload.
#[derive(Debug, Clone)]
pub(crate) struct ReadRec {
    pub invoke_us: u64,
    pub node: u32,
    pub channel: u32,
    pub op: ReadOp,
    pub ok: bool,
    pub from: Option<StreamId>,
    pub last: Option<StreamId>,
    pub count: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct FaultRec {
    pub start_us: u64,
    pub end_us: u64,
    pub kind: String,
}

/// Interns node and channel names as dense `u32`s.
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }

    pub(crate) fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("?", String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// The whole history, indexed for the invariants.
#[derive(Debug)]
pub(crate) struct IndexedHistory {
    pub mode: Mode,
    pub promise: Promise,
    /// Nodes whose final streams could not be read, with why; they are not final nodes.
    pub unreadable: Vec<(String, String)>,
    /// Unreadable nodes the run expected to be gone ([`Event::Retired`]), with why.
    pub excused: Vec<(String, String)>,
    /// What is wrong with the history itself (completions without an invoke, message ids
    /// invoked twice): the verdict cannot be trusted.
    pub malformed: Vec<String>,
    pub nodes: Interner,
    pub channels: Interner,
    /// Invoked messages, in invoke order of the history.
    pub messages: Vec<MsgRec>,
    pub msg_index: IdMap<MsgId, u32>,
    /// Nodes whose final streams were read (a `FinalRead` that succeeded, or for older
    /// histories at least one `Final` event), ordered by name.
    pub final_nodes: Vec<u32>,
    /// Final streams, `[k * channels + c]` for `final_nodes[k]` and channel `c`, in the
    /// order the node returned them.
    pub finals: Vec<Vec<FinalEntry>>,
    /// `[msg_idx * final_nodes.len() + k]`: first position of the message in the final
    /// stream of `final_nodes[k]` for the message's channel, [`NONE`] if absent.
    pub first_pos: Vec<u32>,
    /// Subscribers ordered by id.
    pub subscribers: Vec<SubscriberRec>,
    pub faults: Vec<FaultRec>,
    /// Reads of the read workload, in history order.
    pub reads: Vec<ReadRec>,
    /// Times of successful completions, sorted.
    pub ok_completions: Vec<u64>,
    pub last_invoke_us: u64,
    pub delivered: u64,
    /// Queue mode: the consumer groups.
    pub queue: QueueHistory,
}

impl IndexedHistory {
    pub(crate) fn node(&self, i: u32) -> &str {
        self.nodes.name(i)
    }

    pub(crate) fn channel(&self, i: u32) -> &str {
        self.channels.name(i)
    }

    pub(crate) fn has_finals(&self) -> bool {
        !self.final_nodes.is_empty()
    }

    pub(crate) fn final_stream(&self, k: usize, channel: u32) -> &[FinalEntry] {
        &self.finals[k * self.channels.len() + channel as usize]
    }

    pub(crate) fn first_pos(&self, msg_idx: u32, k: usize) -> u32 {
        self.first_pos[msg_idx as usize * self.final_nodes.len() + k]
    }

    /// Whether the message is in at least one final stream.
    pub(crate) fn in_any_final(&self, msg_idx: u32) -> bool {
        let n = self.final_nodes.len();
        let base = msg_idx as usize * n;
        self.first_pos[base..base + n].iter().any(|&p| p != NONE)
    }

    /// Names of the final nodes lacking the message.
    pub(crate) fn missing_on(&self, msg_idx: u32) -> Vec<String> {
        (0..self.final_nodes.len())
            .filter(|&k| self.first_pos(msg_idx, k) == NONE)
            .map(|k| self.node(self.final_nodes[k]).to_owned())
            .collect()
    }
}

/// Pending completion seen before its invoke.
#[derive(Debug, Clone)]
struct EarlyCompletion {
    t_us: u64,
    outcome: Outcome,
    id: Option<String>,
}

#[derive(Debug, Default)]
struct SubBuild {
    sessions: Vec<Session>,
    deliveries: Vec<Delivery>,
    connected: bool,
}

/// Accumulates events into an [`IndexedHistory`].
#[derive(Debug)]
pub(crate) struct IndexBuilder {
    mode: Mode,
    promise: Promise,
    /// `FinalRead` outcomes per node: `None` read, `Some(why)` failed.
    final_reads: HashMap<u32, Option<String>>,
    /// Nodes the run expects to be gone at the end, with why.
    retired: HashMap<u32, String>,
    nodes: Interner,
    channels: Interner,
    messages: Vec<MsgRec>,
    msg_index: IdMap<MsgId, u32>,
    early: IdMap<MsgId, EarlyCompletion>,
    finals: HashMap<(u32, u32), Vec<FinalEntry>>,
    subs: IdMap<u32, SubBuild>,
    faults: Vec<FaultRec>,
    reads: Vec<ReadRec>,
    last_invoke_us: u64,
    delivered: u64,
    reused_ids: u64,
    queue: QueueHistory,
}

impl IndexBuilder {
    pub(crate) fn new(mode: Mode, promise: Promise) -> Self {
        Self {
            mode,
            promise,
            final_reads: HashMap::new(),
            retired: HashMap::new(),
            nodes: Interner::default(),
            channels: Interner::default(),
            messages: Vec::new(),
            msg_index: IdMap::default(),
            early: IdMap::default(),
            finals: HashMap::new(),
            subs: IdMap::default(),
            faults: Vec::new(),
            reads: Vec::new(),
            last_invoke_us: 0,
            delivered: 0,
            reused_ids: 0,
            queue: QueueHistory::default(),
        }
    }

    fn ack_id(&self, outcome: Outcome, id: Option<&str>) -> Option<StreamId> {
        // In pub/sub mode the PUBLISH reply is a receiver count, not an entry id.
        match (self.mode, outcome) {
            (Mode::Stream | Mode::Queue, Outcome::Ok) => id.and_then(StreamId::parse),
            _ => None,
        }
    }

    fn complete(&mut self, idx: u32, t_us: u64, outcome: Outcome, id: Option<&str>) {
        let ack_id = self.ack_id(outcome, id);
        let rec = &mut self.messages[idx as usize];
        if rec.status != Status::Pending {
            return;
        }
        rec.complete_us = t_us;
        rec.status = match outcome {
            Outcome::Ok => Status::Ok,
            Outcome::Fail => Status::Fail,
            Outcome::Info => Status::Info,
        };
        rec.ack_id = ack_id;
    }

    pub(crate) fn push(&mut self, event: Event) {
        match event {
            Event::Invoke {
                t_us,
                msg,
                channel,
                node,
                ..
            } => {
                self.last_invoke_us = self.last_invoke_us.max(t_us);
                if self.msg_index.contains_key(&msg) {
                    self.reused_ids += 1;
                    return;
                }
                let idx = self.messages.len() as u32;
                let channel = self.channels.intern(&channel);
                let node = self.nodes.intern(&node);
                self.messages.push(MsgRec {
                    msg,
                    channel,
                    node,
                    invoke_us: t_us,
                    complete_us: u64::MAX,
                    status: Status::Pending,
                    ack_id: None,
                    first_delivery_us: u64::MAX,
                });
                self.msg_index.insert(msg, idx);
                if let Some(c) = self.early.remove(&msg) {
                    self.complete(idx, c.t_us, c.outcome, c.id.as_deref());
                }
            }
            Event::Complete {
                t_us,
                msg,
                outcome,
                id,
                ..
            } => match self.msg_index.get(&msg) {
                Some(&idx) => self.complete(idx, t_us, outcome, id.as_deref()),
                None => {
                    self.early
                        .entry(msg)
                        .or_insert(EarlyCompletion { t_us, outcome, id });
                }
            },
            Event::Deliver {
                t_us,
                subscriber,
                node,
                channel,
                msg,
                id,
                intact,
            } => {
                self.delivered += 1;
                let node = self.nodes.intern(&node);
                let channel = self.channels.intern(&channel);
                let sub = self.subs.entry(subscriber).or_default();
                if !sub.connected {
                    // A delivery outside any session: the history did not record the
                    // (re)connection; open an implicit session here.
                    let up_us = if sub.sessions.is_empty() { 0 } else { t_us };
                    sub.sessions.push(Session {
                        up_us,
                        down_us: u64::MAX,
                        node,
                    });
                    sub.connected = true;
                }
                let session = (sub.sessions.len() - 1) as u32;
                sub.deliveries.push(Delivery {
                    t_us,
                    msg,
                    id: id.as_deref().and_then(StreamId::parse),
                    msg_idx: NONE,
                    channel,
                    node,
                    session,
                    intact,
                    repeat: false,
                });
            }
            Event::SubscriberUp {
                t_us,
                subscriber,
                node,
            } => {
                let node = self.nodes.intern(&node);
                let sub = self.subs.entry(subscriber).or_default();
                if sub.connected {
                    if let Some(last) = sub.sessions.last_mut() {
                        last.down_us = t_us;
                    }
                }
                sub.sessions.push(Session {
                    up_us: t_us,
                    down_us: u64::MAX,
                    node,
                });
                sub.connected = true;
            }
            Event::SubscriberDown {
                t_us,
                subscriber,
                reason,
                ..
            } => {
                let sub = self.subs.entry(subscriber).or_default();
                if sub.connected {
                    if let Some(last) = sub.sessions.last_mut() {
                        // Stopped by the end of the run: connected until the end.
                        if reason != RUN_FINISHED {
                            last.down_us = t_us;
                        }
                    }
                    sub.connected = false;
                }
            }
            Event::FinalRead { node, ok, error } => {
                let node = self.nodes.intern(&node);
                let outcome = if ok {
                    None
                } else {
                    Some(error.unwrap_or_else(|| "no reason recorded".to_owned()))
                };
                self.final_reads.insert(node, outcome);
            }
            Event::Take {
                invoke_us,
                t_us,
                group,
                consumer,
                channel,
                claimed,
                min_idle_us,
                entries,
                ..
            } => {
                self.delivered += entries.len() as u64;
                let channel = self.channels.intern(&channel);
                self.queue.take(
                    (invoke_us, t_us),
                    &group,
                    &consumer,
                    channel,
                    (claimed, min_idle_us),
                    &entries,
                );
            }
            Event::Settle {
                t_us,
                group,
                consumer,
                channel,
                id,
                msg,
                removed,
                ..
            } => {
                let channel = self.channels.intern(&channel);
                self.queue
                    .settle(t_us, &group, &consumer, channel, (&id, msg), removed);
            }
            Event::ConsumerCrash { .. } => self.queue.crashes += 1,
            Event::GroupState {
                node,
                channel,
                group,
                ok,
                pending,
                last_delivered,
                error,
            } => {
                let node = self.nodes.intern(&node);
                let channel = self.channels.intern(&channel);
                let read = match ok {
                    true => Ok((pending, last_delivered.as_deref())),
                    false => Err(error.unwrap_or_else(|| "not read".into())),
                };
                self.queue.state(node, channel, &group, read);
            }
            Event::Retired { node, reason } => {
                let node = self.nodes.intern(&node);
                self.retired.insert(node, reason);
            }
            Event::Fault {
                start_us,
                end_us,
                kind,
                ..
            } => self.faults.push(FaultRec {
                start_us,
                end_us,
                kind,
            }),
            Event::Read {
                invoke_us,
                node,
                channel,
                op,
                ok,
                from,
                last,
                count,
                truncated,
                ..
            } => {
                let node = self.nodes.intern(&node);
                let channel = self.channels.intern(&channel);
                self.reads.push(ReadRec {
                    invoke_us,
                    node,
                    channel,
                    op,
                    ok,
                    from: from.as_deref().and_then(StreamId::parse),
                    last: last.as_deref().and_then(StreamId::parse),
                    count,
                    truncated,
                });
            }
            Event::Final {
                node,
                channel,
                id,
                msg,
                intact,
            } => {
                let node = self.nodes.intern(&node);
                let channel = self.channels.intern(&channel);
                self.finals
                    .entry((node, channel))
                    .or_default()
                    .push(FinalEntry {
                        id: StreamId::parse(&id),
                        msg,
                        msg_idx: NONE,
                        intact,
                    });
            }
        }
    }

    /// Resolves a payload's message id to a dense index, if it was invoked on `channel`.
    fn resolve(index: &IdMap<MsgId, u32>, messages: &[MsgRec], msg: Option<MsgId>, ch: u32) -> u32 {
        match msg.and_then(|m| index.get(&m)) {
            Some(&idx) if messages[idx as usize].channel == ch => idx,
            _ => NONE,
        }
    }

    pub(crate) fn finish(self) -> IndexedHistory {
        let Self {
            mode,
            promise,
            final_reads,
            retired,
            nodes,
            channels,
            mut messages,
            msg_index,
            early,
            finals,
            subs,
            mut faults,
            reads,
            last_invoke_us,
            delivered,
            reused_ids,
            mut queue,
        } = self;
        // A history the harness itself got wrong cannot vouch for anything: said, and the
        // verdict becomes unknown.
        let mut malformed = Vec::new();
        if !early.is_empty() {
            malformed.push(format!(
                "{} completions without an invoke were ignored",
                early.len()
            ));
        }
        if reused_ids > 0 {
            malformed.push(format!(
                "{reused_ids} message ids were invoked twice; only the first invoke counts"
            ));
        }
        let n_channels = channels.len();
        let n_msgs = messages.len();

        // A node that was read is a final node even with nothing in it; one whose read
        // failed is not, whatever partial entries it returned.
        // A node the run expected to be gone (it refused to start on damaged data) is
        // excused, with why; any other unreadable node leaves the run unchecked.
        let mut unreadable: Vec<(String, String)> = Vec::new();
        let mut excused: Vec<(String, String)> = Vec::new();
        for (&n, why) in &final_reads {
            let Some(why) = why else { continue };
            let name = nodes.name(n).to_owned();
            match retired.get(&n) {
                Some(reason) => {
                    excused.push((name, format!("{reason}; its final read failed ({why})")))
                }
                None => unreadable.push((name, why.clone())),
            }
        }
        unreadable.sort();
        excused.sort();
        let mut final_nodes: Vec<u32> = finals
            .keys()
            .map(|&(n, _)| n)
            .chain(
                final_reads
                    .iter()
                    .filter(|(_, w)| w.is_none())
                    .map(|(&n, _)| n),
            )
            .filter(|n| !matches!(final_reads.get(n), Some(Some(_))))
            .collect();
        final_nodes.sort_unstable_by(|&a, &b| nodes.name(a).cmp(nodes.name(b)));
        final_nodes.dedup();
        let n_final = final_nodes.len();
        let mut final_vec: Vec<Vec<FinalEntry>> = vec![Vec::new(); n_final * n_channels];
        for ((node, channel), entries) in finals {
            let Some(k) = final_nodes.iter().position(|&n| n == node) else {
                continue;
            };
            final_vec[k * n_channels + channel as usize] = entries;
        }
        let mut first_pos = vec![NONE; n_msgs * n_final];
        for k in 0..n_final {
            for c in 0..n_channels {
                let stream = &mut final_vec[k * n_channels + c];
                for (pos, entry) in stream.iter_mut().enumerate() {
                    entry.msg_idx = Self::resolve(&msg_index, &messages, entry.msg, c as u32);
                    if entry.msg_idx != NONE {
                        let slot = &mut first_pos[entry.msg_idx as usize * n_final + k];
                        if *slot == NONE {
                            *slot = pos as u32;
                        }
                    }
                }
            }
        }

        let mut sub_ids: Vec<u32> = subs.keys().copied().collect();
        sub_ids.sort_unstable();
        let mut subs = subs;
        let mut subscribers = Vec::with_capacity(sub_ids.len());
        for id in sub_ids {
            let SubBuild {
                sessions,
                mut deliveries,
                ..
            } = subs.remove(&id).unwrap_or_default();
            let mut got = vec![0u64; n_msgs.div_ceil(64)];
            for d in &mut deliveries {
                d.msg_idx = Self::resolve(&msg_index, &messages, d.msg, d.channel);
                if d.msg_idx == NONE {
                    continue;
                }
                let (word, bit) = (d.msg_idx as usize / 64, 1u64 << (d.msg_idx % 64));
                d.repeat = got[word] & bit != 0;
                got[word] |= bit;
                let rec = &mut messages[d.msg_idx as usize];
                rec.first_delivery_us = rec.first_delivery_us.min(d.t_us);
            }
            subscribers.push(SubscriberRec {
                id,
                sessions,
                deliveries,
                got,
            });
        }

        let mut ok_completions: Vec<u64> = messages
            .iter()
            .filter(|m| m.is_acked())
            .map(|m| m.complete_us)
            .collect();
        ok_completions.sort_unstable();
        faults.sort_by_key(|f| (f.start_us, f.end_us));
        queue.finish();

        IndexedHistory {
            mode,
            promise,
            unreadable,
            excused,
            malformed,
            nodes,
            channels,
            messages,
            msg_index,
            final_nodes,
            finals: final_vec,
            first_pos,
            subscribers,
            faults,
            reads,
            ok_completions,
            last_invoke_us,
            delivered,
            queue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct values among the low 10 bits of the hashes of `keys` (1,024 buckets).
    fn buckets<K: std::hash::Hash>(keys: impl Iterator<Item = K>) -> usize {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        keys.map(|k| build.hash_one(k) & 1023)
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    #[test]
    fn a_message_is_known_from_its_ack_or_first_delivery_whichever_is_first() {
        let rec = |status, complete_us, first_delivery_us| MsgRec {
            msg: 1,
            channel: 0,
            node: 0,
            invoke_us: 10,
            complete_us,
            status,
            ack_id: None,
            first_delivery_us,
        };
        assert_eq!(rec(Status::Ok, 50, u64::MAX).known_at(), 50);
        assert_eq!(rec(Status::Ok, 50, 30).known_at(), 30);
        assert_eq!(rec(Status::Ok, 50, 70).known_at(), 50);
        // An unacknowledged publish is known only once delivered.
        assert_eq!(rec(Status::Info, 50, 70).known_at(), 70);
        assert_eq!(rec(Status::Info, 50, u64::MAX).known_at(), u64::MAX);
    }

    #[test]
    fn the_session_at_a_time_is_the_one_connected_then() {
        let session = |up_us, down_us| Session {
            up_us,
            down_us,
            node: 0,
        };
        let sub = SubscriberRec {
            id: 1,
            sessions: vec![session(10, 20), session(30, u64::MAX)],
            deliveries: Vec::new(),
            got: Vec::new(),
        };
        assert_eq!(sub.session_at(5), None);
        assert_eq!(sub.session_at(10), Some(0));
        assert_eq!(sub.session_at(19), Some(0));
        // Down at 20: not connected at 20 itself, nor until the next session is up.
        assert_eq!(sub.session_at(20), None);
        assert_eq!(sub.session_at(25), None);
        assert_eq!(sub.session_at(30), Some(1));
        assert_eq!(sub.session_at(1_000_000), Some(1));
    }

    #[test]
    fn id_hasher_spreads_structured_keys() {
        // 4,096 keys into 1,024 buckets: a good hash fills nearly all; a broken one
        // (constant, ignoring its input) fills one. The checks' speed on long runs
        // depends on it, not their verdicts.
        let msg_ids = (0..4u64).flat_map(|p| (0..1024u64).map(move |s| (p << 40) | s));
        assert!(buckets(msg_ids) > 900);
        assert!(buckets(0..4096u32) > 900);
        assert!(buckets((0..4096).map(|n| format!("ch{n}"))) > 900);
        let ids = (0..4096u64).map(|n| StreamId {
            ms: n / 4,
            seq: n % 4,
        });
        assert!(buckets(ids) > 900);
    }
}
