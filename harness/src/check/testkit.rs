//! A small builder to write histories concisely in tests.
//!
//! Message `n` is `msg_id(1, n)`; every event advances a clock by 1 ms unless the test
//! sets it with [`H::at`].

use std::collections::HashMap;

use raftbus_reports::model::Mode;

use super::index::{IndexBuilder, IndexedHistory};
use super::promise::Promise;
use super::{Findings, Invariant, Kind};
use crate::history::{msg_id, Event, MsgId, Outcome};

pub(crate) struct H {
    pub mode: Mode,
    /// Judged by the bus's promise unless a test says otherwise.
    pub promise: Promise,
    nodes: Vec<String>,
    events: Vec<Event>,
    t_us: u64,
    channel_of: HashMap<MsgId, String>,
    /// Acknowledged messages with their ids, in completion order.
    acked: Vec<(MsgId, String)>,
}

impl H {
    pub fn stream(nodes: &[&str]) -> Self {
        Self::new(Mode::Stream, nodes)
    }

    pub fn pubsub(nodes: &[&str]) -> Self {
        Self::new(Mode::Pubsub, nodes)
    }

    pub fn queue(nodes: &[&str]) -> Self {
        Self::new(Mode::Queue, nodes)
    }

    /// A call that handed `entries` (id, message n) of `channel` to `consumer` of `group`,
    /// sent at `sent_ms` and answered at `reply_ms`; a claim when `min_idle_ms` is set.
    pub fn take(
        &mut self,
        (group, consumer, channel): (&str, &str, &str),
        (sent_ms, reply_ms): (u64, u64),
        min_idle_ms: Option<u64>,
        entries: &[(&str, u64)],
    ) {
        self.push(Event::Take {
            invoke_us: sent_ms * 1000,
            t_us: reply_ms * 1000,
            group: group.into(),
            consumer: consumer.into(),
            node: self.nodes[0].clone(),
            channel: channel.into(),
            claimed: min_idle_ms.is_some(),
            min_idle_us: min_idle_ms.unwrap_or(0) * 1000,
            entries: entries
                .iter()
                .map(|(id, n)| crate::history::TakenEntry {
                    id: id.to_string(),
                    msg: Some(Self::msg(*n)),
                })
                .collect(),
        });
    }

    /// `XACK` of one entry, answered at `reply_ms` with `removed`.
    pub fn settle(
        &mut self,
        (group, consumer, channel): (&str, &str, &str),
        reply_ms: u64,
        (id, n): (&str, u64),
        removed: Option<bool>,
    ) {
        self.push(Event::Settle {
            invoke_us: reply_ms * 1000 - 500,
            t_us: reply_ms * 1000,
            group: group.into(),
            consumer: consumer.into(),
            node: self.nodes[0].clone(),
            channel: channel.into(),
            id: id.into(),
            msg: Some(Self::msg(n)),
            removed,
        });
    }

    /// A group's state on `node` at the end.
    pub fn group_state(
        &mut self,
        node: &str,
        (channel, group): (&str, &str),
        pending: u64,
        last: Option<&str>,
    ) {
        self.push(Event::GroupState {
            node: node.into(),
            channel: channel.into(),
            group: group.into(),
            ok: true,
            pending,
            last_delivered: last.map(String::from),
            error: None,
        });
    }

    fn new(mode: Mode, nodes: &[&str]) -> Self {
        Self {
            mode,
            promise: Promise::strict(mode),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            events: Vec::new(),
            t_us: 0,
            channel_of: HashMap::new(),
            acked: Vec::new(),
        }
    }

    pub fn msg(n: u64) -> MsgId {
        msg_id(1, n)
    }

    pub fn hex(n: u64) -> String {
        format!("{:016x}", Self::msg(n))
    }

    /// Sets the clock to `ms` milliseconds.
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.t_us = ms * 1000;
        self
    }

    fn tick(&mut self) -> u64 {
        self.t_us += 1000;
        self.t_us
    }

    pub fn push(&mut self, e: Event) {
        self.events.push(e);
    }

    pub fn invoke(&mut self, n: u64, channel: &str) {
        let t = self.tick();
        self.channel_of.insert(Self::msg(n), channel.to_owned());
        let node = self.nodes[0].clone();
        self.push(Event::Invoke {
            intended_us: t,
            t_us: t,
            msg: Self::msg(n),
            channel: channel.to_owned(),
            node,
        });
    }

    pub fn complete(&mut self, n: u64, outcome: Outcome, id: Option<&str>) {
        let t = self.tick();
        if outcome == Outcome::Ok {
            self.acked
                .push((Self::msg(n), id.unwrap_or_default().to_owned()));
        }
        self.push(Event::Complete {
            t_us: t,
            msg: Self::msg(n),
            outcome,
            id: id.map(str::to_owned),
            error: None,
        });
    }

    pub fn acked(&mut self, n: u64, channel: &str, id: &str) {
        self.invoke(n, channel);
        self.complete(n, Outcome::Ok, Some(id));
    }

    pub fn failed(&mut self, n: u64, channel: &str) {
        self.invoke(n, channel);
        self.complete(n, Outcome::Fail, None);
    }

    pub fn indeterminate(&mut self, n: u64, channel: &str) {
        self.invoke(n, channel);
        self.complete(n, Outcome::Info, None);
    }

    pub fn final_raw(
        &mut self,
        node: &str,
        channel: &str,
        id: &str,
        msg: Option<MsgId>,
        intact: bool,
    ) {
        self.push(Event::Final {
            node: node.to_owned(),
            channel: channel.to_owned(),
            id: id.to_owned(),
            msg,
            intact,
        });
    }

    /// Records how reading `node`'s final streams ended.
    pub fn final_read(&mut self, node: &str, ok: bool) {
        self.push(Event::FinalRead {
            node: node.to_owned(),
            ok,
            error: (!ok).then(|| "connection refused".to_owned()),
        });
    }

    pub fn retired(&mut self, node: &str, reason: &str) {
        self.push(Event::Retired {
            node: node.to_owned(),
            reason: reason.to_owned(),
        });
    }

    pub fn final_entry(&mut self, node: &str, channel: &str, id: &str, n: u64) {
        self.final_raw(node, channel, id, Some(Self::msg(n)), true);
    }

    /// Every acknowledged message, in completion order, in every node's final stream.
    pub fn finals_everywhere(&mut self) {
        let acked = self.acked.clone();
        for node in self.nodes.clone() {
            for (msg, id) in &acked {
                let channel = self.channel_of[msg].clone();
                self.final_raw(&node, &channel, id, Some(*msg), true);
            }
        }
    }

    pub fn sub_up(&mut self, sub: u32, node: &str) {
        let t = self.tick();
        self.push(Event::SubscriberUp {
            t_us: t,
            subscriber: sub,
            node: node.to_owned(),
        });
    }

    pub fn sub_down(&mut self, sub: u32, node: &str) {
        let t = self.tick();
        self.push(Event::SubscriberDown {
            t_us: t,
            subscriber: sub,
            node: node.to_owned(),
            reason: "test".to_owned(),
        });
    }

    /// Subscriber `sub` loses its session on `from` and comes up on `to` (failover).
    pub fn move_sub(&mut self, sub: u32, from: &str, to: &str) {
        self.sub_down(sub, from);
        self.sub_up(sub, to);
    }

    pub fn deliver_raw(
        &mut self,
        sub: u32,
        node: &str,
        channel: &str,
        msg: Option<MsgId>,
        id: Option<&str>,
        intact: bool,
    ) {
        let t = self.tick();
        self.push(Event::Deliver {
            t_us: t,
            subscriber: sub,
            node: node.to_owned(),
            channel: channel.to_owned(),
            msg,
            id: id.map(str::to_owned),
            intact,
        });
    }

    /// Stream-mode delivery of message `n` with entry id `id`.
    pub fn deliver(&mut self, sub: u32, node: &str, n: u64, id: &str) {
        let channel = self.channel_of[&Self::msg(n)].clone();
        self.deliver_raw(sub, node, &channel, Some(Self::msg(n)), Some(id), true);
    }

    /// Pub/sub delivery of message `n`.
    pub fn deliver_ps(&mut self, sub: u32, node: &str, n: u64) {
        let channel = self.channel_of[&Self::msg(n)].clone();
        self.deliver_raw(sub, node, &channel, Some(Self::msg(n)), None, true);
    }

    pub fn fault(&mut self, kind: &str, start_ms: u64, end_ms: u64) {
        self.push(Event::Fault {
            start_us: start_ms * 1000,
            end_us: end_ms * 1000,
            kind: kind.to_owned(),
            detail: String::new(),
            targets: vec![self.nodes[0].clone()],
        });
    }

    pub fn events(self) -> Vec<Event> {
        self.events
    }

    /// The indexed view of the history, as the invariants see it.
    pub fn index(self) -> IndexedHistory {
        let mut builder = IndexBuilder::new(self.mode, self.promise);
        for e in self.events {
            builder.push(e);
        }
        builder.finish()
    }
}

/// Runs one invariant over a built history.
pub(crate) fn run_one(invariant: &dyn Invariant, h: H) -> Findings {
    let index = h.index();
    let mut out = Findings::new(10);
    invariant.check(&index, &mut out);
    out
}

impl Findings {
    pub(crate) fn examples(&self, kind: Kind) -> &[String] {
        &self.tallies[kind as usize].examples
    }

    pub(crate) fn gaps(&self) -> u64 {
        self.at_most_once_gaps
    }

    pub(crate) fn total(&self) -> u64 {
        self.tallies.iter().map(|t| t.count).sum()
    }
}
