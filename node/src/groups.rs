//! Consumer groups: each group's cursor (last-delivered ID), its pending entries list (PEL:
//! owner, delivery count, last delivery time) and its consumers, as replicated state.
//!
//! Everything that changes a group (XGROUP, XREADGROUP, XACK, XCLAIM, XAUTOCLAIM) is a
//! [`GroupOp`] applied from the Raft log inside a [`crate::transaction::Exec`], so every
//! node holds the same groups and snapshots carry them. Times are the proposing node's
//! clock as carried in the entry (`now_ms`), never read while applying; idle times in
//! replies are measured against the clock of whoever evaluates (the entry's time while
//! applying, the serving node's clock for XPENDING and XINFO reads).
//!
//! Reply shapes and error texts follow Redis 7.2.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::{eq_ignore_case, integer, CommandError, StreamId};
use crate::state_machine::{Channel, StreamEntry, Streams};
use crate::transaction::{entry_value, Value};

/// The groups of one stream, by name (Redis lists them in name order too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups(pub(crate) BTreeMap<String, Group>);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The last ID delivered with `>`.
    pub last_id: StreamId,
    /// Redis's `entries-read` counter; `None` where Redis has none (shown as nil).
    pub entries_read: Option<u64>,
    /// Pending entries by offset (bus IDs are `<offset>-0`).
    pub pel: BTreeMap<u64, Pending>,
    pub consumers: BTreeMap<String, Consumer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub consumer: String,
    /// When it was last delivered (ms since the Unix epoch, proposer's clock).
    pub delivered_ms: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    /// Last attempted interaction (Redis's seen-time).
    pub seen_ms: u64,
    /// Last successful interaction (Redis 7.2's active-time), if any.
    pub active_ms: Option<u64>,
}

/// Where a group starts or is moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupStart {
    /// `$`: the stream's last ID at apply time.
    Last,
    Id(StreamId),
}

/// A replicated change to the groups of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupOp {
    Create {
        key: String,
        group: String,
        start: GroupStart,
        mkstream: bool,
        entries_read: Option<u64>,
    },
    SetId {
        key: String,
        group: String,
        start: GroupStart,
        entries_read: Option<u64>,
    },
    Destroy {
        key: String,
        group: String,
    },
    CreateConsumer {
        key: String,
        group: String,
        consumer: String,
    },
    DelConsumer {
        key: String,
        group: String,
        consumer: String,
    },
    ReadGroup(ReadGroup),
    Ack {
        key: String,
        group: String,
        ids: Vec<StreamId>,
    },
    Claim(Claim),
    AutoClaim(AutoClaim),
}

/// `XREADGROUP GROUP g c [COUNT n] [NOACK] STREAMS key ... id ...` (BLOCK is the server's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadGroup {
    pub group: String,
    pub consumer: String,
    pub count: Option<u64>,
    pub noack: bool,
    /// `None`: `>` (new entries); `Some(id)`: the consumer's pending entries after `id`.
    pub streams: Vec<(String, Option<StreamId>)>,
}

/// `XCLAIM key group consumer min-idle-time id ... [IDLE ms] [TIME ms] [RETRYCOUNT n]
/// [FORCE] [JUSTID] [LASTID id]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub key: String,
    pub group: String,
    pub consumer: String,
    pub min_idle: u64,
    pub ids: Vec<StreamId>,
    pub idle: Option<u64>,
    pub time: Option<u64>,
    pub retry_count: Option<u64>,
    pub force: bool,
    pub justid: bool,
    pub lastid: Option<StreamId>,
}

/// `XAUTOCLAIM key group consumer min-idle-time start [COUNT n] [JUSTID]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoClaim {
    pub key: String,
    pub group: String,
    pub consumer: String,
    pub min_idle: u64,
    pub start: StreamId,
    pub count: u64,
    pub justid: bool,
}

/// Reads of group state (served from the replica, or inside a transaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupQuery {
    /// `XPENDING key group`
    PendingSummary {
        key: String,
        group: String,
    },
    /// `XPENDING key group [IDLE ms] start end count [consumer]`
    Pending {
        key: String,
        group: String,
        idle: Option<u64>,
        start: StreamId,
        end: StreamId,
        count: u64,
        consumer: Option<String>,
    },
    InfoStream {
        key: String,
    },
    InfoGroups {
        key: String,
    },
    InfoConsumers {
        key: String,
        group: String,
    },
}

fn no_key_err() -> Value {
    Value::Error("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.".into())
}

fn no_group_err(key: &str, group: &str) -> Value {
    Value::Error(format!(
        "NOGROUP No such consumer group '{group}' for key name '{key}'"
    ))
}

fn no_key_or_group(key: &str, group: &str) -> Value {
    Value::Error(format!(
        "NOGROUP No such key '{key}' or consumer group '{group}'"
    ))
}

/// A live stream's entries and one of its groups, or Redis's NOGROUP reply.
fn entries_and_group<'a>(
    streams: &'a mut Streams,
    key: &str,
    group: &str,
) -> Result<(&'a VecDeque<StreamEntry>, &'a mut Group), Value> {
    let Some(Channel {
        entries, groups, ..
    }) = live_mut(streams, key)
    else {
        return Err(no_key_or_group(key, group));
    };
    match groups.0.get_mut(group) {
        Some(g) => Ok((entries, g)),
        None => Err(no_key_or_group(key, group)),
    }
}

/// The entry at `offset`, unless trimmed or deleted.
fn entry_at(entries: &VecDeque<StreamEntry>, offset: u64) -> Option<&StreamEntry> {
    let i = entries.partition_point(|e| e.offset < offset);
    entries.get(i).filter(|e| e.offset == offset)
}

fn live<'a>(streams: &'a Streams, key: &str) -> Option<&'a Channel> {
    streams.get(key).filter(|c| c.exists)
}

fn live_mut<'a>(streams: &'a mut Streams, key: &str) -> Option<&'a mut Channel> {
    streams.get_mut(key).filter(|c| c.exists)
}

impl Channel {
    pub(crate) fn last_id(&self) -> StreamId {
        StreamId::from_offset(self.last_offset)
    }

    fn first_id(&self) -> StreamId {
        self.entries
            .front()
            .map_or(StreamId::MIN, |e| StreamId::from_offset(e.offset))
    }

    /// Redis's `streamRangeHasTombstones(s, start, NULL)`.
    fn has_tombstones_after(&self, start: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted == 0 {
            return false;
        }
        let max_deleted = StreamId::from_offset(self.max_deleted);
        if self.first_id() > max_deleted {
            return false;
        }
        start <= max_deleted
    }

    /// Redis's `streamEstimateDistanceFromFirstEverEntry`.
    fn estimate_entries_read(&self, id: StreamId) -> Option<u64> {
        estimate(
            self.entries.front().map(|e| e.offset),
            self.entries.len() as u64,
            self.last_offset,
            self.max_deleted,
            id,
        )
    }

    fn lag(&self, g: &Group) -> Option<u64> {
        if self.last_offset == 0 {
            return Some(0);
        }
        if let Some(read) = g.entries_read {
            if !self.has_tombstones_after(g.last_id) {
                return Some(self.last_offset.saturating_sub(read));
            }
        }
        self.estimate_entries_read(g.last_id)
            .map(|read| self.last_offset.saturating_sub(read))
    }
}

/// The group an XGROUP subcommand names, or its Redis error.
fn group_mut<'a>(streams: &'a mut Streams, key: &str, group: &str) -> Result<&'a mut Group, Value> {
    let ch = live_mut(streams, key).ok_or_else(no_key_err)?;
    ch.groups
        .0
        .get_mut(group)
        .ok_or_else(|| no_group_err(key, group))
}

fn resolve(ch: &Channel, start: GroupStart) -> StreamId {
    match start {
        GroupStart::Last => ch.last_id(),
        GroupStart::Id(id) => id,
    }
}

/// Applies one group change; `now_ms` is the proposer's clock from the log entry.
pub(crate) fn apply(streams: &mut Streams, op: GroupOp, now_ms: u64) -> Value {
    match op {
        GroupOp::Create {
            key,
            group,
            start,
            mkstream,
            entries_read,
        } => {
            if live(streams, &key).is_none() {
                if !mkstream {
                    return no_key_err();
                }
                let ch = streams.entry(key.as_str().into()).or_default();
                ch.exists = true;
            }
            let ch = live_mut(streams, &key).expect("the stream exists");
            if ch.groups.0.contains_key(&group) {
                return Value::Error("BUSYGROUP Consumer Group name already exists".into());
            }
            let last_id = resolve(ch, start);
            ch.groups.0.insert(
                group,
                Group {
                    last_id,
                    entries_read,
                    ..Group::default()
                },
            );
            Value::Ok
        }
        GroupOp::SetId {
            key,
            group,
            start,
            entries_read,
        } => {
            let Some(ch) = live_mut(streams, &key) else {
                return no_key_err();
            };
            let id = resolve(ch, start);
            let Some(g) = ch.groups.0.get_mut(&group) else {
                return no_group_err(&key, &group);
            };
            g.last_id = id;
            g.entries_read = entries_read;
            Value::Ok
        }
        GroupOp::Destroy { key, group } => {
            let Some(ch) = live_mut(streams, &key) else {
                return no_key_err();
            };
            Value::Int(i64::from(ch.groups.0.remove(&group).is_some()))
        }
        GroupOp::CreateConsumer {
            key,
            group,
            consumer,
        } => {
            let g = match group_mut(streams, &key, &group) {
                Ok(g) => g,
                Err(e) => return e,
            };
            if g.consumers.contains_key(&consumer) {
                return Value::Int(0);
            }
            g.consumers.insert(
                consumer,
                Consumer {
                    seen_ms: now_ms,
                    active_ms: None,
                },
            );
            Value::Int(1)
        }
        GroupOp::DelConsumer {
            key,
            group,
            consumer,
        } => {
            let g = match group_mut(streams, &key, &group) {
                Ok(g) => g,
                Err(e) => return e,
            };
            if g.consumers.remove(&consumer).is_none() {
                return Value::Int(0);
            }
            let before = g.pel.len();
            g.pel.retain(|_, p| p.consumer != consumer);
            Value::Int((before - g.pel.len()) as i64)
        }
        GroupOp::ReadGroup(r) => read_group(streams, r, now_ms),
        GroupOp::Ack { key, group, ids } => {
            let Some(g) = live_mut(streams, &key).and_then(|c| c.groups.0.get_mut(&group)) else {
                return Value::Int(0);
            };
            let acked = ids
                .iter()
                .filter(|id| id.seq == 0 && g.pel.remove(&id.ms).is_some())
                .count();
            Value::Int(acked as i64)
        }
        GroupOp::Claim(c) => claim(streams, c, now_ms),
        GroupOp::AutoClaim(a) => auto_claim(streams, a, now_ms),
    }
}

fn touch(g: &mut Group, consumer: &str, now_ms: u64) {
    g.consumers
        .entry(consumer.to_string())
        .or_insert_with(|| Consumer {
            seen_ms: now_ms,
            active_ms: None,
        })
        .seen_ms = now_ms;
}

fn read_group(streams: &mut Streams, r: ReadGroup, now_ms: u64) -> Value {
    // Every stream and group must exist before anything changes.
    for (key, _) in &r.streams {
        if live(streams, key).is_none_or(|c| !c.groups.0.contains_key(&r.group)) {
            return Value::Error(format!(
                "NOGROUP No such key '{key}' or consumer group '{}' in XREADGROUP with GROUP option",
                r.group
            ));
        }
    }
    let limit = r
        .count
        .filter(|c| *c > 0)
        .map_or(usize::MAX, |c| c as usize);
    let mut found = Vec::new();
    for (key, from) in &r.streams {
        let ch = live_mut(streams, key).expect("checked above");
        let Channel {
            entries,
            groups,
            last_offset,
            max_deleted,
            ..
        } = ch;
        let g = groups.0.get_mut(&r.group).expect("checked above");
        // As Redis: `>` with nothing new leaves the consumer alone (not even created).
        let first_new = entries.partition_point(|e| StreamId::from_offset(e.offset) <= g.last_id);
        if from.is_some() || first_new < entries.len() {
            touch(g, &r.consumer, now_ms);
        }
        let mut list = Vec::new();
        let delivered;
        match from {
            None => {
                let start =
                    entries.partition_point(|e| StreamId::from_offset(e.offset) <= g.last_id);
                for e in entries.range(start..).take(limit) {
                    let id = StreamId::from_offset(e.offset);
                    // Redis's entries-read bookkeeping (see streamReplyWithRange).
                    let tombstones = *max_deleted != 0
                        && entries.front().is_some_and(|f| f.offset <= *max_deleted)
                        && id <= StreamId::from_offset(*max_deleted);
                    g.entries_read = match g.entries_read {
                        Some(n) if !tombstones => Some(n + 1),
                        _ if *last_offset > 0 => estimate(
                            entries.front().map(|f| f.offset),
                            entries.len() as u64,
                            *last_offset,
                            *max_deleted,
                            id,
                        ),
                        other => other,
                    };
                    g.last_id = id;
                    if !r.noack {
                        g.pel.insert(
                            e.offset,
                            Pending {
                                consumer: r.consumer.clone(),
                                delivered_ms: now_ms,
                                count: 1,
                            },
                        );
                    }
                    list.push(entry_value(e));
                }
                delivered = !list.is_empty();
                if delivered {
                    found.push((Value::bulk(key), Value::Array(list)));
                }
            }
            Some(after) => {
                let mine: Vec<u64> = g
                    .pel
                    .iter()
                    .filter(|(o, p)| {
                        StreamId::from_offset(**o) > *after && p.consumer == r.consumer
                    })
                    .map(|(o, _)| *o)
                    .take(limit)
                    .collect();
                for offset in mine {
                    let p = g.pel.get_mut(&offset).expect("listed above");
                    p.delivered_ms = now_ms;
                    p.count += 1;
                    match entry_at(entries, offset) {
                        Some(e) => list.push(entry_value(e)),
                        None => list.push(Value::Array(vec![
                            Value::id(StreamId::from_offset(offset)),
                            Value::Null,
                        ])),
                    }
                }
                delivered = !list.is_empty();
                found.push((Value::bulk(key), Value::Array(list)));
            }
        }
        if delivered {
            g.consumers
                .get_mut(&r.consumer)
                .expect("touched above")
                .active_ms = Some(now_ms);
        }
    }
    if found.is_empty() {
        Value::NullArray
    } else {
        Value::Pairs(found)
    }
}

/// Redis's `streamEstimateDistanceFromFirstEverEntry` on a stream's figures: its first
/// retained offset, length, newest offset and newest XDEL'd offset.
fn estimate(
    first: Option<u64>,
    len: u64,
    last_offset: u64,
    max_deleted: u64,
    id: StreamId,
) -> Option<u64> {
    let added = last_offset;
    if added == 0 {
        return Some(0);
    }
    let last = StreamId::from_offset(last_offset);
    if (len == 0 && id <= last) || id == last {
        return Some(added);
    }
    if id > last {
        return None;
    }
    let first = StreamId::from_offset(first.unwrap_or(0));
    if max_deleted == 0 || StreamId::from_offset(max_deleted) < first {
        if id < first {
            return Some(added - len);
        }
        if id == first {
            return Some(added - len + 1);
        }
    }
    None
}

fn idle_of(p: &Pending, now_ms: u64) -> u64 {
    now_ms.saturating_sub(p.delivered_ms)
}

fn claim(streams: &mut Streams, c: Claim, now_ms: u64) -> Value {
    let (entries, g) = match entries_and_group(streams, &c.key, &c.group) {
        Ok(found) => found,
        Err(nogroup) => return nogroup,
    };
    if let Some(last) = c.lastid {
        if last > g.last_id {
            g.last_id = last;
        }
    }
    let delivered_ms = match (c.time, c.idle) {
        // A time in the future is clamped to now, as Redis does.
        (Some(t), _) => t.min(now_ms),
        (None, Some(idle)) => now_ms.saturating_sub(idle),
        (None, None) => now_ms,
    };
    touch(g, &c.consumer, now_ms);
    let mut out = Vec::new();
    for id in &c.ids {
        if id.seq != 0 {
            continue;
        }
        let offset = id.ms;
        let entry = entry_at(entries, offset);
        let p = match g.pel.entry(offset) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) if c.force && entry.is_some() => v
                .insert(Pending {
                    consumer: c.consumer.clone(),
                    delivered_ms: now_ms,
                    count: 0,
                }),
            std::collections::btree_map::Entry::Vacant(_) => continue,
        };
        if c.min_idle > 0 && idle_of(p, now_ms) < c.min_idle {
            continue;
        }
        let Some(entry) = entry else {
            // Deleted from the stream: Redis drops it from the PEL and does not return it.
            g.pel.remove(&offset);
            continue;
        };
        p.consumer.clone_from(&c.consumer);
        p.delivered_ms = delivered_ms;
        if let Some(n) = c.retry_count {
            p.count = n;
        } else if !c.justid {
            p.count += 1;
        }
        out.push(if c.justid {
            Value::id(*id)
        } else {
            entry_value(entry)
        });
    }
    if !out.is_empty() {
        g.consumers
            .get_mut(&c.consumer)
            .expect("touched above")
            .active_ms = Some(now_ms);
    }
    Value::Array(out)
}

fn auto_claim(streams: &mut Streams, a: AutoClaim, now_ms: u64) -> Value {
    let (entries, g) = match entries_and_group(streams, &a.key, &a.group) {
        Ok(found) => found,
        Err(nogroup) => return nogroup,
    };
    touch(g, &a.consumer, now_ms);
    let mut attempts = a.count.saturating_mul(10);
    let mut count = a.count;
    let from = if a.start.seq == 0 {
        a.start.ms
    } else {
        a.start.ms.saturating_add(1)
    };
    let candidates: Vec<u64> = g.pel.range(from..).map(|(o, _)| *o).collect();
    let mut next = StreamId::MIN;
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut iter = candidates.into_iter();
    for offset in iter.by_ref() {
        if attempts == 0 || count == 0 {
            next = StreamId::from_offset(offset);
            break;
        }
        attempts -= 1;
        let p = g.pel.get_mut(&offset).expect("listed above");
        if a.min_idle > 0 && idle_of(p, now_ms) < a.min_idle {
            continue;
        }
        let Some(entry) = entry_at(entries, offset) else {
            g.pel.remove(&offset);
            deleted.push(Value::id(StreamId::from_offset(offset)));
            continue;
        };
        p.consumer.clone_from(&a.consumer);
        p.delivered_ms = now_ms;
        if !a.justid {
            p.count += 1;
        }
        claimed.push(if a.justid {
            Value::id(StreamId::from_offset(offset))
        } else {
            entry_value(entry)
        });
        count -= 1;
    }
    if next == StreamId::MIN {
        // Stopped on the limits exactly at the end, or scanned everything.
        if let Some(o) = iter.next() {
            next = StreamId::from_offset(o);
        }
    }
    if !claimed.is_empty() {
        g.consumers
            .get_mut(&a.consumer)
            .expect("touched above")
            .active_ms = Some(now_ms);
    }
    Value::Array(vec![
        Value::id(next),
        Value::Array(claimed),
        Value::Array(deleted),
    ])
}

/// Evaluates a read of group state; `now_ms` is the evaluator's clock.
pub(crate) fn query(streams: &Streams, q: &GroupQuery, now_ms: u64) -> Value {
    match q {
        GroupQuery::PendingSummary { key, group } => {
            let Some(g) = live(streams, key).and_then(|c| c.groups.0.get(group)) else {
                return no_key_or_group(key, group);
            };
            if g.pel.is_empty() {
                return Value::Array(vec![
                    Value::Int(0),
                    Value::Null,
                    Value::Null,
                    Value::NullArray,
                ]);
            }
            let mut per: BTreeMap<&str, u64> = BTreeMap::new();
            for p in g.pel.values() {
                *per.entry(p.consumer.as_str()).or_default() += 1;
            }
            let first = *g.pel.keys().next().expect("not empty");
            let last = *g.pel.keys().next_back().expect("not empty");
            Value::Array(vec![
                Value::Int(g.pel.len() as i64),
                Value::id(StreamId::from_offset(first)),
                Value::id(StreamId::from_offset(last)),
                Value::Array(
                    per.into_iter()
                        .map(|(c, n)| {
                            Value::Array(vec![Value::bulk(c), Value::bulk(n.to_string())])
                        })
                        .collect(),
                ),
            ])
        }
        GroupQuery::Pending {
            key,
            group,
            idle,
            start,
            end,
            count,
            consumer,
        } => {
            let Some(g) = live(streams, key).and_then(|c| c.groups.0.get(group)) else {
                return no_key_or_group(key, group);
            };
            let list = g
                .pel
                .iter()
                .filter(|(o, _)| {
                    let id = StreamId::from_offset(**o);
                    id >= *start && id <= *end
                })
                .filter(|(_, p)| consumer.as_ref().is_none_or(|c| *c == p.consumer))
                .filter(|(_, p)| idle.is_none_or(|min| idle_of(p, now_ms) >= min))
                .take(*count as usize)
                .map(|(o, p)| {
                    Value::Array(vec![
                        Value::id(StreamId::from_offset(*o)),
                        Value::bulk(&p.consumer),
                        Value::Int(idle_of(p, now_ms) as i64),
                        Value::Int(p.count as i64),
                    ])
                })
                .collect();
            Value::Array(list)
        }
        GroupQuery::InfoStream { key } => {
            let Some(ch) = live(streams, key) else {
                return Value::Error("ERR no such key".into());
            };
            let pair = |k: &str, v: Value| (Value::bulk(k), v);
            Value::Map(vec![
                pair("length", Value::Int(ch.entries.len() as i64)),
                // The bus has no radix tree; these are what Redis shows for a small stream.
                pair(
                    "radix-tree-keys",
                    Value::Int(i64::from(!ch.entries.is_empty())),
                ),
                pair(
                    "radix-tree-nodes",
                    Value::Int(if ch.entries.is_empty() { 1 } else { 2 }),
                ),
                pair("last-generated-id", Value::id(ch.last_id())),
                pair(
                    "max-deleted-entry-id",
                    Value::id(StreamId::from_offset(ch.max_deleted)),
                ),
                pair("entries-added", Value::Int(ch.last_offset as i64)),
                pair("recorded-first-entry-id", Value::id(ch.first_id())),
                pair("groups", Value::Int(ch.groups.0.len() as i64)),
                pair(
                    "first-entry",
                    ch.entries.front().map_or(Value::Null, entry_value),
                ),
                pair(
                    "last-entry",
                    ch.entries.back().map_or(Value::Null, entry_value),
                ),
            ])
        }
        GroupQuery::InfoGroups { key } => {
            let Some(ch) = live(streams, key) else {
                return Value::Error("ERR no such key".into());
            };
            let pair = |k: &str, v: Value| (Value::bulk(k), v);
            Value::Array(
                ch.groups
                    .0
                    .iter()
                    .map(|(name, g)| {
                        Value::Map(vec![
                            pair("name", Value::bulk(name)),
                            pair("consumers", Value::Int(g.consumers.len() as i64)),
                            pair("pending", Value::Int(g.pel.len() as i64)),
                            pair("last-delivered-id", Value::id(g.last_id)),
                            pair(
                                "entries-read",
                                g.entries_read.map_or(Value::Null, |n| Value::Int(n as i64)),
                            ),
                            pair(
                                "lag",
                                ch.lag(g).map_or(Value::Null, |n| Value::Int(n as i64)),
                            ),
                        ])
                    })
                    .collect(),
            )
        }
        GroupQuery::InfoConsumers { key, group } => {
            let Some(ch) = live(streams, key) else {
                return Value::Error("ERR no such key".into());
            };
            let Some(g) = ch.groups.0.get(group) else {
                return no_group_err(key, group);
            };
            let pair = |k: &str, v: Value| (Value::bulk(k), v);
            Value::Array(
                g.consumers
                    .iter()
                    .map(|(name, c)| {
                        let pending = g.pel.values().filter(|p| p.consumer == *name).count();
                        Value::Map(vec![
                            pair("name", Value::bulk(name)),
                            pair("pending", Value::Int(pending as i64)),
                            pair("idle", Value::Int(now_ms.saturating_sub(c.seen_ms) as i64)),
                            pair(
                                "inactive",
                                Value::Int(
                                    c.active_ms.map_or(-1, |a| now_ms.saturating_sub(a) as i64),
                                ),
                            ),
                        ])
                    })
                    .collect(),
            )
        }
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn non_negative(arg: &Bytes) -> Result<u64, CommandError> {
    u64::try_from(integer(arg)?).map_err(|_| CommandError::NotAnInteger)
}

fn group_start(arg: &Bytes) -> Result<GroupStart, CommandError> {
    if &arg[..] == b"$" {
        Ok(GroupStart::Last)
    } else {
        StreamId::parse_strict(arg, 0).map(GroupStart::Id)
    }
}

/// `ENTRIESREAD n` after the fixed arguments of XGROUP CREATE/SETID.
fn entries_read_opt(
    opts: &[Bytes],
    allow_mkstream: bool,
) -> Result<(bool, Option<u64>), CommandError> {
    let mut mkstream = false;
    let mut entries_read = None;
    let mut i = 0;
    while i < opts.len() {
        if allow_mkstream && eq_ignore_case(&opts[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if eq_ignore_case(&opts[i], "entriesread") && i + 1 < opts.len() {
            let n = integer(&opts[i + 1])?;
            if n < -1 {
                return Err(CommandError::Custom(
                    "ERR value for ENTRIESREAD must be positive or -1".into(),
                ));
            }
            entries_read = u64::try_from(n).ok();
            i += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok((mkstream, entries_read))
}

/// `XGROUP <sub> ...`; `args` starts at the key.
pub fn parse_xgroup(sub: &str, args: &[Bytes]) -> Result<GroupOp, CommandError> {
    let key = text(&args[0]);
    let group = text(&args[1]);
    Ok(match sub {
        "create" => {
            let (mkstream, entries_read) = entries_read_opt(&args[3..], true)?;
            GroupOp::Create {
                key,
                group,
                start: group_start(&args[2])?,
                mkstream,
                entries_read,
            }
        }
        "setid" => {
            let (_, entries_read) = entries_read_opt(&args[3..], false)?;
            GroupOp::SetId {
                key,
                group,
                start: group_start(&args[2])?,
                entries_read,
            }
        }
        "destroy" => GroupOp::Destroy { key, group },
        "createconsumer" => GroupOp::CreateConsumer {
            key,
            group,
            consumer: text(&args[2]),
        },
        _ => GroupOp::DelConsumer {
            key,
            group,
            consumer: text(&args[2]),
        },
    })
}

/// `XINFO <sub> ...`; `args` starts at the key.
pub fn parse_xinfo(sub: &str, args: &[Bytes]) -> Result<GroupQuery, CommandError> {
    let key = text(&args[0]);
    Ok(match sub {
        "stream" => {
            if args.len() > 1 {
                return Err(CommandError::NotSupported("XINFO STREAM FULL".into()));
            }
            GroupQuery::InfoStream { key }
        }
        "groups" => GroupQuery::InfoGroups { key },
        _ => GroupQuery::InfoConsumers {
            key,
            group: text(&args[1]),
        },
    })
}

/// `XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS key ... id ...`, and BLOCK.
pub fn parse_xreadgroup(rest: &[Bytes]) -> Result<(ReadGroup, Option<u64>), CommandError> {
    let mut group = None;
    let mut count = None;
    let mut block = None;
    let mut noack = false;
    let mut i = 0;
    let streams_at = loop {
        let Some(opt) = rest.get(i) else {
            return Err(CommandError::Syntax);
        };
        let more = rest.len() - i - 1;
        if eq_ignore_case(opt, "group") && more >= 2 {
            group = Some((text(&rest[i + 1]), text(&rest[i + 2])));
            i += 3;
        } else if eq_ignore_case(opt, "block") && more >= 1 {
            let ms =
                crate::resp::parse_integer(&rest[i + 1]).ok_or(CommandError::TimeoutNotInteger)?;
            block = Some(u64::try_from(ms).map_err(|_| CommandError::NegativeTimeout)?);
            i += 2;
        } else if eq_ignore_case(opt, "count") && more >= 1 {
            count = u64::try_from(integer(&rest[i + 1])?)
                .ok()
                .filter(|&n| n > 0);
            i += 2;
        } else if eq_ignore_case(opt, "noack") {
            noack = true;
            i += 1;
        } else if eq_ignore_case(opt, "streams") && more >= 1 {
            break i + 1;
        } else {
            return Err(CommandError::Syntax);
        }
    };
    let Some((group, consumer)) = group else {
        return Err(CommandError::Custom(
            "ERR Missing GROUP option for XREADGROUP".into(),
        ));
    };
    let list = &rest[streams_at..];
    if list.len() % 2 != 0 {
        return Err(CommandError::UnbalancedStreams("xreadgroup"));
    }
    let (keys, ids) = list.split_at(list.len() / 2);
    let streams = keys
        .iter()
        .zip(ids)
        .map(|(key, id)| {
            let from = match &id[..] {
                b">" => None,
                b"$" => return Err(CommandError::Custom("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.".into())),
                _ => Some(StreamId::parse(id, 0)?),
            };
            Ok((text(key), from))
        })
        .collect::<Result<Vec<_>, CommandError>>()?;
    Ok((
        ReadGroup {
            group,
            consumer,
            count,
            noack,
            streams,
        },
        block,
    ))
}

/// `XACK key group id [id ...]`
pub fn parse_xack(rest: &[Bytes]) -> Result<GroupOp, CommandError> {
    let ids = rest[2..]
        .iter()
        .map(|id| StreamId::parse_strict(id, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GroupOp::Ack {
        key: text(&rest[0]),
        group: text(&rest[1]),
        ids,
    })
}

/// `XPENDING key group [[IDLE min-idle-time] start end count [consumer]]`
pub fn parse_xpending(rest: &[Bytes]) -> Result<GroupQuery, CommandError> {
    let key = text(&rest[0]);
    let group = text(&rest[1]);
    let mut opts = &rest[2..];
    if opts.is_empty() {
        return Ok(GroupQuery::PendingSummary { key, group });
    }
    let mut idle = None;
    if eq_ignore_case(&opts[0], "idle") {
        if opts.len() < 2 {
            return Err(CommandError::Syntax);
        }
        idle = Some(non_negative(&opts[1])?);
        opts = &opts[2..];
    }
    if opts.len() < 3 || opts.len() > 4 {
        return Err(CommandError::Syntax);
    }
    let bound = |arg: &Bytes, seq: u64| -> Result<StreamId, CommandError> {
        match arg.strip_prefix(b"(") {
            Some(id) if !id.is_empty() => {
                let id = StreamId::parse_strict(id, seq)?;
                if seq == 0 {
                    id.next().ok_or(CommandError::InvalidIntervalStart)
                } else {
                    id.prev().ok_or(CommandError::InvalidIntervalEnd)
                }
            }
            _ => StreamId::parse(arg, seq),
        }
    };
    let start = bound(&opts[0], 0)?;
    let end = bound(&opts[1], u64::MAX)?;
    let count = integer(&opts[2])?.max(0) as u64;
    Ok(GroupQuery::Pending {
        key,
        group,
        idle,
        start,
        end,
        count,
        consumer: opts.get(3).map(text),
    })
}

/// `XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME ms]
/// [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID id]`
pub fn parse_xclaim(rest: &[Bytes]) -> Result<GroupOp, CommandError> {
    let min_idle = integer(&rest[3])
        .map_err(|_| CommandError::Custom("ERR Invalid min-idle-time argument for XCLAIM".into()))?
        .max(0) as u64;
    let mut ids = Vec::new();
    let mut i = 4;
    while i < rest.len() {
        match StreamId::parse_strict(&rest[i], 0) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        i += 1;
    }
    let mut claim = Claim {
        key: text(&rest[0]),
        group: text(&rest[1]),
        consumer: text(&rest[2]),
        min_idle,
        ids,
        idle: None,
        time: None,
        retry_count: None,
        force: false,
        justid: false,
        lastid: None,
    };
    while i < rest.len() {
        let more = rest.len() - i - 1;
        let opt = &rest[i];
        if eq_ignore_case(opt, "force") {
            claim.force = true;
            i += 1;
        } else if eq_ignore_case(opt, "justid") {
            claim.justid = true;
            i += 1;
        } else if eq_ignore_case(opt, "idle") && more >= 1 {
            claim.idle = Some(
                integer(&rest[i + 1])
                    .map_err(|_| {
                        CommandError::Custom("ERR Invalid IDLE option argument for XCLAIM".into())
                    })?
                    .max(0) as u64,
            );
            i += 2;
        } else if eq_ignore_case(opt, "time") && more >= 1 {
            let t = integer(&rest[i + 1]).map_err(|_| {
                CommandError::Custom("ERR Invalid TIME option argument for XCLAIM".into())
            })?;
            claim.time = Some(t.max(0) as u64);
            i += 2;
        } else if eq_ignore_case(opt, "retrycount") && more >= 1 {
            claim.retry_count = Some(
                integer(&rest[i + 1])
                    .map_err(|_| {
                        CommandError::Custom(
                            "ERR Invalid RETRYCOUNT option argument for XCLAIM".into(),
                        )
                    })?
                    .max(0) as u64,
            );
            i += 2;
        } else if eq_ignore_case(opt, "lastid") && more >= 1 {
            claim.lastid = Some(StreamId::parse_strict(&rest[i + 1], 0)?);
            i += 2;
        } else {
            return Err(CommandError::Custom(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    Ok(GroupOp::Claim(claim))
}

/// `XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]`
pub fn parse_xautoclaim(rest: &[Bytes]) -> Result<GroupOp, CommandError> {
    let min_idle = integer(&rest[3])
        .map_err(|_| {
            CommandError::Custom("ERR Invalid min-idle-time argument for XAUTOCLAIM".into())
        })?
        .max(0) as u64;
    let start = StreamId::parse(&rest[4], 0)?;
    let mut count = 100;
    let mut justid = false;
    let mut i = 5;
    while i < rest.len() {
        if eq_ignore_case(&rest[i], "justid") {
            justid = true;
            i += 1;
        } else if eq_ignore_case(&rest[i], "count") && i + 1 < rest.len() {
            let n = integer(&rest[i + 1])?;
            if !(1..=i64::MAX / 10).contains(&n) {
                return Err(CommandError::Custom("ERR COUNT must be > 0".into()));
            }
            count = n as u64;
            i += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(GroupOp::AutoClaim(AutoClaim {
        key: text(&rest[0]),
        group: text(&rest[1]),
        consumer: text(&rest[2]),
        min_idle,
        start,
        count,
        justid,
    }))
}
