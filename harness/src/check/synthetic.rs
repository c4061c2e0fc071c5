//! Clean synthetic histories of any size, generated lazily, for benchmarks and tests.
//!
//! Publishes are spread round-robin over channels and publishers, every 10 µs, each
//! acknowledged after a varying latency (so completions overlap), delivered to every
//! subscriber in stream order, and present once in every node's final stream.

use raftbus_reports::model::Mode;

use crate::history::{msg_id, Event, Outcome};

/// The shape of a synthetic history.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    /// Publishes.
    pub ops: u64,
    pub nodes: usize,
    pub subscribers_per_node: usize,
    pub channels: usize,
    pub publishers: u32,
    pub mode: Mode,
}

impl SyntheticSpec {
    pub fn new(ops: u64, mode: Mode) -> Self {
        Self {
            ops,
            nodes: 3,
            subscribers_per_node: 1,
            channels: 8,
            publishers: 4,
            mode,
        }
    }

    /// Events the history will hold.
    pub fn events(&self) -> u64 {
        let subs = (self.nodes * self.subscribers_per_node) as u64;
        let finals = match self.mode {
            Mode::Stream | Mode::Queue => self.nodes as u64 * self.ops,
            Mode::Pubsub => 0,
        };
        subs + self.ops * (2 + subs) + finals
    }
}

fn node(n: usize) -> String {
    format!("n{}", n + 1)
}

fn channel(c: u64) -> String {
    format!("ch{c}")
}

/// Generates a history with no anomaly, lazily.
pub fn clean_history(spec: &SyntheticSpec) -> impl Iterator<Item = Event> {
    let spec = spec.clone();
    let channels = spec.channels.max(1) as u64;
    let publishers = u64::from(spec.publishers.max(1));
    let subs = spec.nodes * spec.subscribers_per_node;
    let msg = move |i: u64| msg_id((i % publishers) as u32, i / publishers);
    // Entry id of publish `i`: its sequence number within its channel.
    let entry_id = move |i: u64| format!("{}-0", i / channels + 1);
    let mode = spec.mode;
    let nodes = spec.nodes;
    let per_node = spec.subscribers_per_node.max(1);

    let ups = (0..subs).map(move |s| Event::SubscriberUp {
        t_us: 0,
        subscriber: s as u32,
        node: node(s / per_node),
    });
    let ops = (0..spec.ops).flat_map(move |i| {
        let t = 1_000 + i * 10;
        let latency = 300 + (i.wrapping_mul(7919) % 2_000);
        let c = i % channels;
        let id = match mode {
            Mode::Stream | Mode::Queue => Some(entry_id(i)),
            Mode::Pubsub => Some(subs.to_string()),
        };
        let mut events = Vec::with_capacity(2 + subs);
        events.push(Event::Invoke {
            intended_us: t,
            t_us: t,
            msg: msg(i),
            channel: channel(c),
            node: node((i % nodes.max(1) as u64) as usize),
        });
        events.push(Event::Complete {
            t_us: t + latency,
            msg: msg(i),
            outcome: Outcome::Ok,
            id,
            error: None,
        });
        for s in 0..subs {
            events.push(Event::Deliver {
                t_us: t + latency + 50,
                subscriber: s as u32,
                node: node(s / per_node),
                channel: channel(c),
                msg: Some(msg(i)),
                id: mode.stores().then(|| entry_id(i)),
                intact: true,
            });
        }
        events
    });
    let n_ops = spec.ops;
    let finals = (0..if mode.stores() { nodes } else { 0 }).flat_map(move |n| {
        (0..channels).flat_map(move |c| {
            (c..n_ops)
                .step_by(channels as usize)
                .map(move |i| Event::Final {
                    node: node(n),
                    channel: channel(c),
                    id: entry_id(i),
                    msg: Some(msg(i)),
                    intact: true,
                })
        })
    });
    ups.chain(ops).chain(finals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_events, CheckOptions};
    use raftbus_reports::model::Verdict;

    #[test]
    fn synthetic_histories_are_clean_and_sized_as_announced() {
        for mode in [Mode::Stream, Mode::Pubsub] {
            let spec = SyntheticSpec::new(5_000, mode);
            assert_eq!(clean_history(&spec).count() as u64, spec.events());
            let outcome = check_events(clean_history(&spec), &CheckOptions::new(mode));
            assert_eq!(outcome.checks.violations, vec![], "{mode:?}");
            assert_eq!(outcome.verdict, Verdict::Valid);
            assert_eq!(outcome.checks.acked, 5_000);
            assert_eq!(outcome.checks.delivered, 15_000);
        }
    }

    #[test]
    fn a_small_synthetic_history_is_exactly_as_described() {
        let spec = SyntheticSpec {
            ops: 3,
            nodes: 3,
            subscribers_per_node: 2,
            channels: 2,
            publishers: 2,
            mode: Mode::Stream,
        };
        let sub_nodes = ["n1", "n1", "n2", "n2", "n3", "n3"];
        let mut want: Vec<Event> = (0..6)
            .map(|s| Event::SubscriberUp {
                t_us: 0,
                subscriber: s,
                node: sub_nodes[s as usize].to_owned(),
            })
            .collect();
        // Publish i: invoked at 1 ms + 10 µs·i by publisher i % 2 (sequence i / 2) via
        // node i % 3, on channel i % 2, acknowledged after 300 + (7919·i mod 2000) µs with
        // the i/2+1-th id of its channel, delivered to everyone 50 µs later.
        let publishes = [
            (1_000, 1_300, msg_id(0, 0), "ch0", "n1", "1-0"),
            (1_010, 3_229, msg_id(1, 0), "ch1", "n2", "1-0"),
            (1_020, 3_158, msg_id(0, 1), "ch0", "n3", "2-0"),
        ];
        for (t, acked, msg, channel, node, id) in publishes {
            want.push(Event::Invoke {
                intended_us: t,
                t_us: t,
                msg,
                channel: channel.to_owned(),
                node: node.to_owned(),
            });
            want.push(Event::Complete {
                t_us: acked,
                msg,
                outcome: Outcome::Ok,
                id: Some(id.to_owned()),
                error: None,
            });
            for (s, sub_node) in sub_nodes.iter().enumerate() {
                want.push(Event::Deliver {
                    t_us: acked + 50,
                    subscriber: s as u32,
                    node: (*sub_node).to_owned(),
                    channel: channel.to_owned(),
                    msg: Some(msg),
                    id: Some(id.to_owned()),
                    intact: true,
                });
            }
        }
        for node in ["n1", "n2", "n3"] {
            for (channel, id, msg) in [
                ("ch0", "1-0", msg_id(0, 0)),
                ("ch0", "2-0", msg_id(0, 1)),
                ("ch1", "1-0", msg_id(1, 0)),
            ] {
                want.push(Event::Final {
                    node: node.to_owned(),
                    channel: channel.to_owned(),
                    id: id.to_owned(),
                    msg: Some(msg),
                    intact: true,
                });
            }
        }
        let got: Vec<Event> = clean_history(&spec).collect();
        assert_eq!(got, want);
        assert_eq!(spec.events(), 39);

        // Pub/sub: the PUBLISH reply counts the receivers, deliveries carry no id, and
        // there are no final streams.
        let spec = SyntheticSpec {
            mode: Mode::Pubsub,
            ..spec
        };
        let got: Vec<Event> = clean_history(&spec).collect();
        assert_eq!(got.len() as u64, spec.events());
        assert_eq!(spec.events(), 6 + 3 * 8);
        assert!(matches!(&got[7], Event::Complete { id: Some(id), .. } if id == "6"));
        assert!(matches!(&got[8], Event::Deliver { id: None, .. }));
        assert!(!got.iter().any(|e| matches!(e, Event::Final { .. })));
    }

    /// Run with `cargo test -p raftbus --release -- --ignored million --nocapture`.
    #[test]
    #[ignore = "takes a while in debug builds; reports timing"]
    fn check_a_million_operation_history() {
        for mode in [Mode::Stream, Mode::Pubsub] {
            let spec = SyntheticSpec::new(1_000_000, mode);
            let started = std::time::Instant::now();
            let generated = clean_history(&spec).count() as u64;
            let generating = started.elapsed();
            let started = std::time::Instant::now();
            let outcome = check_events(clean_history(&spec), &CheckOptions::new(mode));
            let total = started.elapsed();
            assert_eq!(outcome.verdict, Verdict::Valid);
            assert_eq!(generated, spec.events());
            println!(
                "{mode:?}: {} publishes, {} events: generated and checked in {:.2?} (generating alone {:.2?})",
                spec.ops,
                spec.events(),
                total,
                generating
            );
        }
    }
}
