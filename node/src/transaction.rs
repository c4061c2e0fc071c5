//! MULTI/EXEC and every replicated write beyond plain appends.
//!
//! An [`Exec`] is one Raft entry holding commands ([`Op`]) and the proposing node's clock.
//! It is applied in one go, in order, under the state lock: no other entry interleaves and
//! every node computes the same replies. A transaction is all or nothing as the log is:
//! either the entry commits and every command in it runs, or none does. Within it, a
//! command that fails at run time (`-NOGROUP`, ...) answers its error and the others still
//! run, as in Redis (there is no rollback).
//!
//! Commands outside MULTI that are not plain appends (XTRIM, XDEL, DEL, consumer groups)
//! go the same way as a one-command [`Exec`]. PUBLISH and XADD outside MULTI keep the
//! batched append path. Reads ([`Query`]) evaluate against this node's replica outside a
//! transaction and at apply time inside one.
//!
//! Replies are [`Value`]s: a serializable subset of RESP so a leader can send them back to
//! the follower that forwarded the transaction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::bus::{Bus, WriteError};
use crate::command::{eq_ignore_case, integer, CommandError, StreamId};
use crate::groups::{self, GroupOp, GroupQuery};
use crate::network::{ForwardError, PeerRequest, PeerResponse};
use crate::resp::{Frame, Protocol};
use crate::server::glob_match;
use crate::state_machine::{Channel, StreamEntry, Streams};
use crate::types::{Append, Raft, Request, Response};

/// A reply, as applying computes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Ok,
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    NullArray,
    Array(Vec<Value>),
    /// A RESP3 map; a flat key/value array in RESP2 (XINFO).
    Map(Vec<(Value, Value)>),
    /// A RESP3 map; an array of `[key, value]` pairs in RESP2 (XREAD-style replies).
    Pairs(Vec<(Value, Value)>),
}

impl Value {
    pub fn bulk(b: impl AsRef<[u8]>) -> Value {
        Value::Bulk(b.as_ref().to_vec())
    }

    pub fn id(id: StreamId) -> Value {
        Value::Bulk(id.to_string().into_bytes())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    pub fn into_frame(self, proto: Protocol) -> Frame {
        let pair = |(k, v): (Value, Value)| (k.into_frame(proto), v.into_frame(proto));
        match self {
            Value::Ok => Frame::ok(),
            Value::Simple(s) => Frame::Simple(s),
            Value::Error(e) => Frame::Error(e),
            Value::Int(n) => Frame::Integer(n),
            Value::Bulk(b) => Frame::Bulk(Bytes::from(b)),
            Value::Null => Frame::Null,
            Value::NullArray => Frame::NullArray,
            Value::Array(items) => {
                Frame::Array(items.into_iter().map(|v| v.into_frame(proto)).collect())
            }
            Value::Map(pairs) => Frame::Map(pairs.into_iter().map(pair).collect()),
            Value::Pairs(pairs) => match proto {
                Protocol::Resp3 => Frame::Map(pairs.into_iter().map(pair).collect()),
                Protocol::Resp2 => Frame::Array(
                    pairs
                        .into_iter()
                        .map(|(k, v)| Frame::Array(vec![k.into_frame(proto), v.into_frame(proto)]))
                        .collect(),
                ),
            },
        }
    }
}

/// `[id, [field, value, ...]]`
pub fn entry_value(e: &StreamEntry) -> Value {
    let mut fields = Vec::with_capacity(e.fields.len() * 2);
    for (f, v) in e.fields.iter() {
        fields.push(Value::bulk(f));
        fields.push(Value::bulk(v));
    }
    Value::Array(vec![
        Value::id(StreamId::from_offset(e.offset)),
        Value::Array(fields),
    ])
}

/// One log entry of commands, applied together in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// The proposing node's clock (ms since the Unix epoch): the time of every delivery,
    /// claim and idle check in this entry.
    pub now_ms: u64,
    pub ops: Vec<Op>,
}

/// One command of an [`Exec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// PUBLISH (reply: the offset) or XADD (reply: the ID; with NOMKSTREAM a null when
    /// the key does not exist).
    Append {
        append: Append,
        xadd: bool,
        nomkstream: bool,
    },
    XTrim {
        key: String,
        to: TrimTo,
    },
    XDel {
        key: String,
        ids: Vec<StreamId>,
    },
    /// DEL and UNLINK.
    Del(Vec<String>),
    Group(GroupOp),
    Read(Query),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrimTo {
    MaxLen(u64),
    MinId(StreamId),
}

/// A read that may also run inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Ping(Option<Vec<u8>>),
    Echo(Vec<u8>),
    XLen(String),
    XRange {
        key: String,
        start: StreamId,
        end: StreamId,
        count: Option<u64>,
        rev: bool,
    },
    Exists(Vec<String>),
    Type(String),
    /// KEYS pattern
    Keys(Vec<u8>),
    /// SCAN: the bus answers every match in one page (cursor 0).
    Scan {
        pattern: Option<Vec<u8>>,
        /// `TYPE t`: only `stream` matches anything.
        streams_only: bool,
    },
    Group(GroupQuery),
}

impl Op {
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Read(_))
    }
}

/// The wall clock in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Applies an entry's commands in order. `append` appends and announces (the state
/// machine's own append, so subscribers see transaction appends like any other).
pub(crate) fn apply(
    streams: &mut Streams,
    exec: Exec,
    append: &mut dyn FnMut(&mut Streams, Append) -> u64,
) -> Vec<Value> {
    let now = exec.now_ms;
    exec.ops
        .into_iter()
        .map(|op| apply_op(streams, op, now, append))
        .collect()
}

fn exists(streams: &Streams, key: &str) -> bool {
    streams.get(key).is_some_and(|c| c.exists)
}

fn apply_op(
    streams: &mut Streams,
    op: Op,
    now_ms: u64,
    append: &mut dyn FnMut(&mut Streams, Append) -> u64,
) -> Value {
    match op {
        Op::Append {
            append: a,
            xadd,
            nomkstream,
        } => {
            if nomkstream && !exists(streams, &a.channel) {
                return Value::Null;
            }
            let offset = append(streams, a);
            if xadd {
                Value::id(StreamId::from_offset(offset))
            } else {
                Value::Int(offset as i64)
            }
        }
        Op::XTrim { key, to } => {
            let Some(ch) = streams.get_mut(key.as_str()).filter(|c| c.exists) else {
                return Value::Int(0);
            };
            let before = ch.entries.len();
            match to {
                TrimTo::MaxLen(n) => ch.trim(n, u64::MAX),
                TrimTo::MinId(min) => {
                    while ch
                        .entries
                        .front()
                        .is_some_and(|e| StreamId::from_offset(e.offset) < min)
                    {
                        let old = ch.entries.pop_front().expect("checked");
                        ch.bytes -= old.bytes();
                    }
                }
            }
            Value::Int((before - ch.entries.len()) as i64)
        }
        Op::XDel { key, ids } => {
            let Some(ch) = streams.get_mut(key.as_str()).filter(|c| c.exists) else {
                return Value::Int(0);
            };
            let mut deleted = 0;
            for id in ids {
                if id.seq != 0 {
                    continue;
                }
                let i = ch.entries.partition_point(|e| e.offset < id.ms);
                if ch.entries.get(i).is_some_and(|e| e.offset == id.ms) {
                    let old = ch.entries.remove(i).expect("present");
                    ch.bytes -= old.bytes();
                    ch.max_deleted = ch.max_deleted.max(old.offset);
                    deleted += 1;
                }
            }
            Value::Int(deleted)
        }
        Op::Del(keys) => {
            let mut n = 0;
            for key in keys {
                if let Some(ch) = streams.get_mut(key.as_str()).filter(|c| c.exists) {
                    // A tombstone keeps the last offset: IDs are never reused.
                    *ch = Channel {
                        last_offset: ch.last_offset,
                        ..Channel::default()
                    };
                    n += 1;
                }
            }
            Value::Int(n)
        }
        Op::Group(g) => groups::apply(streams, g, now_ms),
        Op::Read(q) => query(streams, &q, now_ms),
    }
}

/// Evaluates a read; `now_ms` is the evaluator's clock (idle times).
pub(crate) fn query(streams: &Streams, q: &Query, now_ms: u64) -> Value {
    match q {
        Query::Ping(None) => Value::Simple("PONG".into()),
        Query::Ping(Some(m)) | Query::Echo(m) => Value::bulk(m),
        Query::XLen(key) => Value::Int(
            streams
                .get(key.as_str())
                .filter(|c| c.exists)
                .map_or(0, |c| c.entries.len() as i64),
        ),
        Query::XRange {
            key,
            start,
            end,
            count,
            rev,
        } => {
            let Some(ch) = streams.get(key.as_str()).filter(|c| c.exists) else {
                return Value::Array(vec![]);
            };
            if *count == Some(0) {
                return Value::NullArray;
            }
            let limit = count.map_or(usize::MAX, |c| c as usize);
            let inside = |e: &&StreamEntry| {
                let id = StreamId::from_offset(e.offset);
                id >= *start && id <= *end
            };
            let list: Vec<Value> = if *rev {
                ch.entries
                    .iter()
                    .rev()
                    .filter(inside)
                    .take(limit)
                    .map(entry_value)
                    .collect()
            } else {
                ch.entries
                    .iter()
                    .filter(inside)
                    .take(limit)
                    .map(entry_value)
                    .collect()
            };
            Value::Array(list)
        }
        Query::Exists(keys) => {
            Value::Int(keys.iter().filter(|k| exists(streams, k)).count() as i64)
        }
        Query::Type(key) => Value::Simple(
            if exists(streams, key) {
                "stream"
            } else {
                "none"
            }
            .into(),
        ),
        Query::Keys(pattern) => Value::Array(
            streams
                .iter()
                .filter(|(name, c)| c.exists && glob_match(pattern, name.as_bytes()))
                .map(|(name, _)| Value::bulk(name.as_bytes()))
                .collect(),
        ),
        Query::Scan {
            pattern,
            streams_only,
        } => {
            let keys = if *streams_only {
                streams
                    .iter()
                    .filter(|(name, c)| {
                        c.exists
                            && pattern
                                .as_ref()
                                .is_none_or(|p| glob_match(p, name.as_bytes()))
                    })
                    .map(|(name, _)| Value::bulk(name.as_bytes()))
                    .collect()
            } else {
                Vec::new()
            };
            Value::Array(vec![Value::bulk("0"), Value::Array(keys)])
        }
        Query::Group(g) => groups::query(streams, g, now_ms),
    }
}

/// Proposes `exec` on this node, which must lead; `NotLeader` when it does not (nothing
/// was appended then).
pub async fn propose_here(raft: &Raft, exec: Exec) -> Result<Vec<Value>, ForwardError> {
    use openraft::error::{ClientWriteError, RaftError};
    match raft.client_write(Request::Exec(exec)).await {
        Ok(resp) => match resp.data {
            Response::Exec(values) => Ok(values),
            other => Err(ForwardError::Unknown(format!(
                "unexpected apply result {other:?}"
            ))),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ForwardError::NotLeader {
                leader: f.leader_id,
            })
        }
        Err(e) => Err(ForwardError::Unknown(e.to_string())),
    }
}

const RETRY_DELAY: Duration = Duration::from_millis(20);

/// Replicates `ops` as one entry (proposed here when this node leads, forwarded to the
/// leader otherwise, retried while no leader takes it) and returns one reply per op, once
/// the entry is committed on a majority and applied.
pub async fn exec(bus: &Bus, ops: Vec<Op>) -> Result<Vec<Value>, WriteError> {
    let exec = Exec {
        now_ms: now_ms(),
        ops,
    };
    let deadline = Instant::now() + bus.settings.write_timeout();
    let mut last = String::from("no leader elected");
    loop {
        let outcome = match bus.leader() {
            None => Err(ForwardError::NotLeader { leader: None }),
            Some(leader) if leader == bus.id => {
                match tokio::time::timeout_at(deadline, propose_here(&bus.raft, exec.clone())).await
                {
                    Ok(r) => r,
                    Err(_) => Err(ForwardError::Unknown(
                        "not committed before the write timeout".into(),
                    )),
                }
            }
            Some(leader) => match bus.peers().get(leader) {
                None => Err(ForwardError::Rejected(format!(
                    "leader {leader} is not a known peer"
                ))),
                Some(peer) => {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    match peer
                        .start_call(PeerRequest::Exec(exec.clone()), timeout)
                        .await
                    {
                        // Nothing was sent: safe to try again.
                        Err(e) => {
                            last = e.to_string();
                            Err(ForwardError::NotLeader { leader: None })
                        }
                        Ok(wait) => match wait.await {
                            Ok(PeerResponse::Exec(r)) => r,
                            Ok(_) => Err(ForwardError::Unknown(format!(
                                "unexpected reply from leader {leader}"
                            ))),
                            Err(e) => Err(ForwardError::Unknown(e.to_string())),
                        },
                    }
                }
            },
        };
        match outcome {
            Ok(values) => return Ok(values),
            Err(ForwardError::NotLeader { leader }) => {
                if let Some(l) = leader {
                    last = format!("node {l} is the leader now");
                }
                if Instant::now() + RETRY_DELAY >= deadline {
                    return Err(WriteError::NotCommitted(format!(
                        "no leader took the write in time: {last}"
                    )));
                }
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Err(ForwardError::Unknown(reason)) => return Err(WriteError::Unknown(reason)),
            Err(ForwardError::Rejected(reason)) => return Err(WriteError::NotCommitted(reason)),
        }
    }
}

/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]` (`~` trims exactly; LIMIT is
/// accepted and ignored).
pub fn parse_xtrim(rest: &[Bytes]) -> Result<Op, CommandError> {
    let key = String::from_utf8_lossy(&rest[0]).into_owned();
    let maxlen = eq_ignore_case(&rest[1], "maxlen");
    if !maxlen && !eq_ignore_case(&rest[1], "minid") {
        return Err(CommandError::Syntax);
    }
    let mut i = 2;
    let mut approx = false;
    if rest
        .get(i)
        .is_some_and(|a| &a[..] == b"~" || &a[..] == b"=")
    {
        approx = &rest[i][..] == b"~";
        i += 1;
    }
    let Some(threshold) = rest.get(i) else {
        return Err(CommandError::Syntax);
    };
    let to = if maxlen {
        let n = integer(threshold)?;
        TrimTo::MaxLen(u64::try_from(n).map_err(|_| CommandError::NegativeMaxlen)?)
    } else {
        TrimTo::MinId(StreamId::parse_strict(threshold, 0)?)
    };
    i += 1;
    while i < rest.len() {
        if eq_ignore_case(&rest[i], "limit") && i + 1 < rest.len() {
            let n = integer(&rest[i + 1])?;
            if n < 0 {
                return Err(CommandError::NegativeLimit);
            }
            if !approx {
                return Err(CommandError::LimitWithoutApprox);
            }
            i += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(Op::XTrim { key, to })
}

/// `XDEL key id [id ...]`
pub fn parse_xdel(rest: &[Bytes]) -> Result<Op, CommandError> {
    let ids = rest[1..]
        .iter()
        .map(|id| StreamId::parse_strict(id, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Op::XDel {
        key: String::from_utf8_lossy(&rest[0]).into_owned(),
        ids,
    })
}

pub fn keys(rest: &[Bytes]) -> Vec<String> {
    rest.iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
pub fn parse_scan(rest: &[Bytes]) -> Result<Query, CommandError> {
    if crate::resp::parse_integer(&rest[0]).is_none_or(|c| c < 0) {
        return Err(CommandError::InvalidCursor);
    }
    let mut pattern = None;
    let mut streams_only = true;
    let mut i = 1;
    while i < rest.len() {
        if i + 1 >= rest.len() {
            return Err(CommandError::Syntax);
        }
        let value = &rest[i + 1];
        if eq_ignore_case(&rest[i], "match") {
            pattern = Some(value.to_vec());
        } else if eq_ignore_case(&rest[i], "count") {
            if integer(value)? < 1 {
                return Err(CommandError::Syntax);
            }
        } else if eq_ignore_case(&rest[i], "type") {
            streams_only = eq_ignore_case(value, "stream");
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    Ok(Query::Scan {
        pattern,
        streams_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{Claim, GroupStart, ReadGroup};
    use std::sync::Arc;

    fn append_to(streams: &mut Streams, a: Append) -> u64 {
        let ch = streams.entry(Arc::from(a.channel.as_str())).or_default();
        ch.exists = true;
        ch.last_offset += 1;
        let e = StreamEntry {
            offset: ch.last_offset,
            fields: a.fields,
        };
        ch.bytes += e.bytes();
        ch.entries.push_back(e);
        ch.last_offset
    }

    fn run(streams: &mut Streams, now_ms: u64, ops: Vec<Op>) -> Vec<Value> {
        apply(streams, Exec { now_ms, ops }, &mut append_to)
    }

    fn xadd(key: &str) -> Op {
        Op::Append {
            append: Append {
                channel: key.into(),
                fields: Arc::new(vec![(b"f".to_vec(), b"v".to_vec())]),
                max_len: None,
            },
            xadd: true,
            nomkstream: false,
        }
    }

    fn read(consumer: &str, from: Option<StreamId>) -> Op {
        Op::Group(GroupOp::ReadGroup(ReadGroup {
            group: "g".into(),
            consumer: consumer.into(),
            count: None,
            noack: false,
            streams: vec![("s".into(), from)],
        }))
    }

    #[test]
    fn a_group_delivers_each_entry_once_and_claims_move_ownership() {
        let mut s = Streams::new();
        let create = Op::Group(GroupOp::Create {
            key: "s".into(),
            group: "g".into(),
            start: GroupStart::Id(StreamId::MIN),
            mkstream: true,
            entries_read: None,
        });
        let r = run(
            &mut s,
            1000,
            vec![create.clone(), create, xadd("s"), xadd("s")],
        );
        assert_eq!(r[0], Value::Ok);
        assert!(matches!(&r[1], Value::Error(e) if e.starts_with("BUSYGROUP")));
        let r = run(&mut s, 2000, vec![read("a", None), read("b", None)]);
        assert!(matches!(&r[0], Value::Pairs(p) if p.len() == 1));
        assert_eq!(r[1], Value::NullArray);
        let g = &s.get("s").unwrap().groups.0["g"];
        assert_eq!(g.pel.len(), 2);
        assert!(g
            .pel
            .values()
            .all(|p| p.consumer == "a" && p.delivered_ms == 2000));
        assert_eq!(g.entries_read, Some(2));

        // Too recent to claim at 2500 with min-idle 1000; claimable at 3000.
        let claim = |now: u64| {
            run(
                &mut s.clone(),
                now,
                vec![Op::Group(GroupOp::Claim(Claim {
                    key: "s".into(),
                    group: "g".into(),
                    consumer: "b".into(),
                    min_idle: 1000,
                    ids: vec![StreamId::from_offset(1)],
                    idle: None,
                    time: None,
                    retry_count: None,
                    force: false,
                    justid: true,
                    lastid: None,
                }))],
            )
        };
        assert_eq!(claim(2500), vec![Value::Array(vec![])]);
        assert_eq!(
            claim(3000),
            vec![Value::Array(vec![Value::id(StreamId::from_offset(1))])]
        );
        let r = run(
            &mut s,
            3000,
            vec![
                Op::Group(GroupOp::Ack {
                    key: "s".into(),
                    group: "g".into(),
                    ids: vec![StreamId::from_offset(1), StreamId::from_offset(7)],
                }),
                read("a", Some(StreamId::MIN)),
            ],
        );
        assert_eq!(r[0], Value::Int(1));
        let Value::Pairs(p) = &r[1] else {
            panic!("{r:?}")
        };
        assert!(matches!(&p[0].1, Value::Array(l) if l.len() == 1));
        assert_eq!(s.get("s").unwrap().groups.0["g"].pel[&2].count, 2);
    }

    #[test]
    fn del_keeps_offsets_and_xdel_marks_the_stream() {
        let mut s = Streams::new();
        run(&mut s, 0, vec![xadd("s"), xadd("s"), xadd("s")]);
        let r = run(
            &mut s,
            0,
            vec![
                Op::XDel {
                    key: "s".into(),
                    ids: vec![StreamId::from_offset(2)],
                },
                Op::XTrim {
                    key: "s".into(),
                    to: TrimTo::MaxLen(1),
                },
                Op::Del(vec!["s".into(), "t".into()]),
                Op::Read(Query::Exists(vec!["s".into()])),
                xadd("s"),
            ],
        );
        assert_eq!(
            r,
            vec![
                Value::Int(1),
                Value::Int(1),
                Value::Int(1),
                Value::Int(0),
                Value::id(StreamId::from_offset(4))
            ]
        );
    }
}
