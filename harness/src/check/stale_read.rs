//! Stale reads: a read that began after message m was acknowledged (m's ack completed
//! before the read was sent) includes m, i.e. its result reaches at least m's position.
//!
//! Each successful read is reduced to the first stream id it did not reach:
//! - XRANGE/XREVRANGE that returned entries: just after the newest id returned;
//! - XRANGE from `f` that returned nothing: `f` (the node holds nothing at or after it);
//! - XREVRANGE that returned nothing, or XLEN 0: the start of the stream;
//! - XLEN n: just after the n-th entry of the channel's longest final stream (entries are
//!   never trimmed in a run, so a node holding n entries holds that prefix).
//!
//! A message's position is its acknowledged id (or, without one, its id in a final
//! stream). A read is stale when some message of its channel acknowledged before it began
//! sits at or after that first id; how stale is the number of such messages (entries
//! behind) and how long the longest-acknowledged of them had been acknowledged when the
//! read began (ms behind). A truncated reply and XLEN without a final stream are not
//! judged; failed reads (errors, timeouts, `-TRYAGAIN`) are counted, never stale.
//!
//! Per fault window, a read counts from the window's start until 5 s (`AFTER_HEAL_US`) after its
//! end (the label says so): a node that was paused or cut off serves its old view right
//! after the heal too, until it has caught up. Reads in no such span are one more group.
//!
//! Judged against the target's promise: a violation where reads are promised linearizable
//! (the bus with `read_consistency = "linearizable"`), an anomaly otherwise. Per channel:
//! acknowledgements and reads are swept in time order, with Fenwick trees over the
//! channel's acknowledged ids for counts and earliest ack times, so `O((acks + reads) log
//! acks)`.

use raftbus_reports::model::{StaleGroup, StaleReads};

use super::index::{IndexedHistory, ReadRec, StreamId, NONE};
use super::{Findings, Invariant, Kind, Violation};
use crate::history::ReadOp;

pub(crate) struct StaleRead;

/// How long after a fault heals its reads still count as in its window.
pub(crate) const AFTER_HEAL_US: u64 = 5_000_000;

/// Prefix sums and prefix minima over ranks `0..n`.
struct Fenwick {
    count: Vec<u64>,
    /// (ack time, message index) minimum; `(u64::MAX, NONE)` when empty.
    min: Vec<(u64, u32)>,
}

impl Fenwick {
    fn new(n: usize) -> Self {
        Self {
            count: vec![0; n + 1],
            min: vec![(u64::MAX, NONE); n + 1],
        }
    }

    fn add(&mut self, rank: usize, value: (u64, u32)) {
        let mut i = rank + 1;
        while i < self.count.len() {
            self.count[i] += 1;
            self.min[i] = self.min[i].min(value);
            i += i & i.wrapping_neg();
        }
    }

    /// Count and minimum over ranks `0..=rank`.
    fn prefix(&self, rank: usize) -> (u64, (u64, u32)) {
        let (mut count, mut min) = (0, (u64::MAX, NONE));
        let mut i = rank + 1;
        while i > 0 {
            count += self.count[i];
            min = min.min(self.min[i]);
            i -= i & i.wrapping_neg();
        }
        (count, min)
    }
}

fn after(id: StreamId) -> StreamId {
    match id.seq.checked_add(1) {
        Some(seq) => StreamId { ms: id.ms, seq },
        None => StreamId {
            ms: id.ms.saturating_add(1),
            seq: 0,
        },
    }
}

/// The first id the read did not reach, and what it returned; `None`: not judged.
fn reach(h: &IndexedHistory, r: &ReadRec) -> Option<(StreamId, String)> {
    match r.op {
        ReadOp::XRange | ReadOp::XRevRange if r.truncated => None,
        ReadOp::XRange | ReadOp::XRevRange => match (r.last, r.from) {
            (Some(last), _) => Some((after(last), format!("newest {last}"))),
            (None, Some(from)) => Some((from, format!("nothing from {from}"))),
            (None, None) => Some((StreamId::default(), "nothing".to_owned())),
        },
        ReadOp::XLen => {
            if r.count == 0 {
                return Some((StreamId::default(), "length 0".to_owned()));
            }
            let k = (0..h.final_nodes.len()).max_by_key(|&k| h.final_stream(k, r.channel).len())?;
            let stream = h.final_stream(k, r.channel);
            let returned = format!("length {}", r.count);
            match stream.get(r.count as usize - 1) {
                Some(e) => Some((after(e.id?), returned)),
                // Longer than any final stream: it reaches everything.
                None => Some((
                    StreamId {
                        ms: u64::MAX,
                        seq: u64::MAX,
                    },
                    returned,
                )),
            }
        }
    }
}

/// Where a message sits in its channel: its acknowledged id, else its final-stream id.
fn position(h: &IndexedHistory, idx: u32) -> Option<StreamId> {
    let m = &h.messages[idx as usize];
    m.ack_id.or_else(|| {
        (0..h.final_nodes.len()).find_map(|k| {
            let pos = h.first_pos(idx, k);
            (pos != NONE).then(|| h.final_stream(k, m.channel)[pos as usize].id)?
        })
    })
}

fn group(label: String) -> StaleGroup {
    StaleGroup {
        label,
        ..StaleGroup::default()
    }
}

fn tally(g: &mut StaleGroup, ok: bool, stale: Option<(u64, f64)>) {
    g.reads += 1;
    if !ok {
        g.failed += 1;
    }
    if let Some((entries, ms)) = stale {
        g.stale += 1;
        g.max_entries_behind = g.max_entries_behind.max(entries);
        g.max_ms_behind = g.max_ms_behind.max(ms);
    }
}

impl Invariant for StaleRead {
    fn name(&self) -> &'static str {
        "stale_read"
    }

    fn property(&self) -> &'static str {
        "a read that began after a message was acknowledged includes it"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        if h.reads.is_empty() {
            return;
        }
        let n_channels = h.channels.len();
        // Acknowledged messages per channel: (ack time, position, message index).
        let mut acks: Vec<Vec<(u64, StreamId, u32)>> = vec![Vec::new(); n_channels];
        for (idx, m) in h.messages.iter().enumerate() {
            if !m.is_acked() {
                continue;
            }
            if let Some(pos) = position(h, idx as u32) {
                acks[m.channel as usize].push((m.complete_us, pos, idx as u32));
            }
        }
        // Reads per channel, in start order.
        let mut reads: Vec<Vec<usize>> = vec![Vec::new(); n_channels];
        for (i, r) in h.reads.iter().enumerate() {
            reads[r.channel as usize].push(i);
        }
        // Per read: Some((entries behind, oldest missed)) when stale.
        let mut verdicts: Vec<Option<(u64, u32)>> = vec![None; h.reads.len()];
        let mut unjudged = 0;
        for c in 0..n_channels {
            let acked = &mut acks[c];
            acked.sort_unstable();
            let mut ids: Vec<StreamId> = acked.iter().map(|a| a.1).collect();
            ids.sort_unstable();
            ids.dedup();
            // Reversed ranks, so "at or after an id" is a prefix.
            let rank = |id: StreamId| ids.len() - 1 - ids.partition_point(|x| *x < id);
            let mut tree = Fenwick::new(ids.len());
            let order = &mut reads[c];
            order.sort_by_key(|&i| h.reads[i].invoke_us);
            let mut next_ack = 0;
            for &i in order.iter() {
                let r = &h.reads[i];
                while next_ack < acked.len() && acked[next_ack].0 < r.invoke_us {
                    let (t, pos, idx) = acked[next_ack];
                    tree.add(rank(pos), (t, idx));
                    next_ack += 1;
                }
                if !r.ok {
                    continue;
                }
                let Some((first_missing, _)) = reach(h, r) else {
                    unjudged += 1;
                    continue;
                };
                let from = ids.partition_point(|x| *x < first_missing);
                if from == ids.len() {
                    continue;
                }
                let (behind, (_, oldest)) = tree.prefix(ids.len() - 1 - from);
                if behind > 0 {
                    verdicts[i] = Some((behind, oldest));
                }
            }
        }

        let mut report = StaleReads {
            consistency: h.promise.reads_label().to_owned(),
            promised: h.promise.linearizable_reads,
            unjudged,
            ..StaleReads::default()
        };
        let mut nodes: Vec<StaleGroup> = (0..h.nodes.len() as u32)
            .map(|n| group(h.node(n).to_owned()))
            .collect();
        let mut windows: Vec<StaleGroup> = h
            .faults
            .iter()
            .map(|f| {
                group(format!(
                    "{} {:.1}-{:.1}s (+{}s after heal)",
                    f.kind,
                    f.start_us as f64 / 1e6,
                    f.end_us as f64 / 1e6,
                    AFTER_HEAL_US / 1_000_000
                ))
            })
            .collect();
        let mut outside = group("outside fault windows".to_owned());
        for (i, r) in h.reads.iter().enumerate() {
            let stale = verdicts[i].map(|(behind, oldest)| {
                let acked_us = h.messages[oldest as usize].complete_us;
                (behind, r.invoke_us.saturating_sub(acked_us) as f64 / 1000.0)
            });
            report.reads += 1;
            if !r.ok {
                report.failed += 1;
            }
            if let Some((behind, ms)) = stale {
                report.stale += 1;
                report.max_entries_behind = report.max_entries_behind.max(behind);
                report.max_ms_behind = report.max_ms_behind.max(ms);
            }
            tally(&mut nodes[r.node as usize], r.ok, stale);
            let mut inside = false;
            for (f, g) in h.faults.iter().zip(windows.iter_mut()) {
                if f.start_us <= r.invoke_us && r.invoke_us < f.end_us.saturating_add(AFTER_HEAL_US)
                {
                    tally(g, r.ok, stale);
                    inside = true;
                }
            }
            if !inside {
                tally(&mut outside, r.ok, stale);
            }
            if let Some((behind, oldest)) = verdicts[i] {
                out.judge(h.promise.linearizable_reads, Kind::StaleRead, || {
                    let m = &h.messages[oldest as usize];
                    Violation::StaleRead {
                        node: h.node(r.node).to_owned(),
                        channel: h.channel(r.channel).to_owned(),
                        op: r.op.as_str(),
                        invoke_us: r.invoke_us,
                        returned: reach(h, r).map(|x| x.1).unwrap_or_default(),
                        entries_behind: behind,
                        oldest_missed: (
                            m.msg,
                            position(h, oldest).unwrap_or_default(),
                            m.complete_us,
                        ),
                    }
                });
            }
        }
        nodes.retain(|g| g.reads > 0);
        windows.push(outside);
        windows.retain(|g| g.reads > 0);
        report.per_node = nodes;
        report.per_window = windows;
        out.set_stale_reads(report);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;
    use crate::history::{Event, Outcome};

    fn read(h: &mut H, at_ms: u64, node: &str, op: ReadOp, last: Option<&str>, count: u64) {
        h.push(Event::Read {
            invoke_us: at_ms * 1000,
            t_us: at_ms * 1000 + 500,
            node: node.to_owned(),
            channel: "c".to_owned(),
            op,
            ok: true,
            from: (op == ReadOp::XRange).then(|| "1-0".to_owned()),
            last: last.map(str::to_owned),
            count,
            truncated: false,
            error: None,
        });
    }

    /// A read of channel `c` on `node` that got an error.
    fn failed_read(h: &mut H, at_ms: u64, node: &str) {
        h.push(Event::Read {
            invoke_us: at_ms * 1000,
            t_us: at_ms * 1000 + 500,
            node: node.to_owned(),
            channel: "c".to_owned(),
            op: ReadOp::XLen,
            ok: false,
            from: None,
            last: None,
            count: 0,
            truncated: false,
            error: Some("TRYAGAIN no quorum".to_owned()),
        });
    }

    fn stale_group(label: &str, reads: u64, failed: u64) -> StaleGroup {
        StaleGroup {
            label: label.to_owned(),
            reads,
            failed,
            ..StaleGroup::default()
        }
    }

    /// Messages 1..=3 acknowledged at 2, 4 and 6 ms with ids 1-0..3-0, in every final
    /// stream of n1 and n2.
    fn three_acked() -> H {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        h.acked(2, "c", "2-0");
        h.acked(3, "c", "3-0");
        h.finals_everywhere();
        h
    }

    #[test]
    fn a_read_that_misses_an_acknowledged_entry_is_caught() {
        let mut h = three_acked();
        // Began at 10 ms, after all three acks, but its node only had 1-0.
        read(&mut h, 10, "n2", ReadOp::XRevRange, Some("1-0"), 1);
        h.fault("pause", 8, 12);
        let found = run_one(&StaleRead, h);
        assert_eq!(found.count(Kind::StaleRead), 1);
        let ex = &found.examples(Kind::StaleRead)[0];
        assert!(ex.contains("XREVRANGE c on n2"), "{ex}");
        assert!(ex.contains("2 acknowledged entries behind"), "{ex}");
        assert!(ex.contains(&H::hex(2)), "{ex}");
        let r = &found.stale_reads;
        assert_eq!((r.reads, r.stale, r.max_entries_behind), (1, 1, 2));
        // Message 2 was acked at 4 ms, the read began at 10 ms.
        assert_eq!(r.max_ms_behind, 6.0);
        assert_eq!(r.per_node[0].label, "n2");
        assert_eq!(r.per_window[0].label, "pause 0.0-0.0s (+5s after heal)");
        assert_eq!(r.per_window[0].stale, 1);
    }

    #[test]
    fn reads_that_reach_every_earlier_ack_are_fine_and_concurrent_acks_are_not_owed() {
        let mut h = three_acked();
        read(&mut h, 10, "n1", ReadOp::XRevRange, Some("3-0"), 1);
        read(&mut h, 10, "n1", ReadOp::XRange, Some("3-0"), 3);
        read(&mut h, 10, "n2", ReadOp::XLen, None, 3);
        // Began at 5 ms, before message 3's ack (6 ms) completed: 2-0 is enough.
        read(&mut h, 5, "n2", ReadOp::XRevRange, Some("2-0"), 1);
        let found = run_one(&StaleRead, h);
        assert_eq!(found.count(Kind::StaleRead), 0, "{:?}", found.stale_reads);
        assert_eq!(found.stale_reads.reads, 4);
    }

    #[test]
    fn a_short_xlen_and_an_empty_range_are_stale_too() {
        let mut h = three_acked();
        read(&mut h, 10, "n1", ReadOp::XLen, None, 2);
        // XRANGE from 1-0 that returned nothing: the node lacks 1-0..3-0.
        read(&mut h, 11, "n2", ReadOp::XRange, None, 0);
        let found = run_one(&StaleRead, h);
        assert_eq!(found.count(Kind::StaleRead), 2);
        assert_eq!(found.stale_reads.max_entries_behind, 3);
    }

    #[test]
    fn failed_and_truncated_reads_are_not_stale() {
        let mut h = three_acked();
        h.push(Event::Read {
            invoke_us: 10_000,
            t_us: 2_010_000,
            node: "n1".into(),
            channel: "c".into(),
            op: ReadOp::XLen,
            ok: false,
            from: None,
            last: None,
            count: 0,
            truncated: false,
            error: Some("TRYAGAIN no quorum".into()),
        });
        h.push(Event::Read {
            invoke_us: 10_000,
            t_us: 10_500,
            node: "n1".into(),
            channel: "c".into(),
            op: ReadOp::XRange,
            ok: true,
            from: Some("0-0".into()),
            last: Some("1-0".into()),
            count: 1000,
            truncated: true,
            error: None,
        });
        let found = run_one(&StaleRead, h);
        assert_eq!(found.count(Kind::StaleRead), 0);
        let r = &found.stale_reads;
        assert_eq!((r.reads, r.failed, r.unjudged), (2, 1, 1));
    }

    #[test]
    fn local_reads_make_stale_reads_anomalies_not_violations() {
        let mut h = three_acked();
        h.promise = h.promise.with_linearizable_reads(false);
        read(&mut h, 10, "n2", ReadOp::XRevRange, Some("1-0"), 1);
        let found = run_one(&StaleRead, h);
        assert_eq!(found.count(Kind::StaleRead), 0);
        assert_eq!(found.anomaly_count(Kind::StaleRead), 1);
        assert!(!found.stale_reads.promised);
    }

    #[test]
    fn an_ack_completing_exactly_when_the_read_begins_is_not_owed() {
        let mut h = three_acked();
        // Message 3's ack completed at 6 ms: a read sent at 6 ms need not include it, one
        // sent at 7 ms must.
        read(&mut h, 6, "n2", ReadOp::XRevRange, Some("2-0"), 1);
        read(&mut h, 7, "n2", ReadOp::XRevRange, Some("2-0"), 1);
        let found = run_one(&StaleRead, h);
        assert_eq!(found.count(Kind::StaleRead), 1);
        let ex = &found.examples(Kind::StaleRead)[0];
        assert!(ex.contains("on n2 at 7.0ms"), "{ex}");
        assert!(ex.contains("1 acknowledged entries behind"), "{ex}");
        let r = &found.stale_reads;
        assert_eq!((r.reads, r.stale, r.max_entries_behind), (2, 1, 1));
        assert_eq!(r.max_ms_behind, 1.0);
    }

    #[test]
    fn an_acknowledgement_without_an_id_is_placed_by_its_final_stream_id() {
        let mut h = H::stream(&["n1", "n2"]);
        h.acked(1, "c", "1-0");
        // Acknowledged at 4 ms, but the reply carried no entry id.
        h.invoke(2, "c");
        h.complete(2, Outcome::Ok, None);
        for node in ["n1", "n2"] {
            h.final_entry(node, "c", "1-0", 1);
            h.final_entry(node, "c", "2-0", 2);
        }
        read(&mut h, 10, "n2", ReadOp::XRevRange, Some("1-0"), 1);
        let found = run_one(&StaleRead, h);
        assert_eq!(found.count(Kind::StaleRead), 1);
        let ex = &found.examples(Kind::StaleRead)[0];
        assert!(
            ex.contains(&format!(
                "missing msg {} (id 2-0) acked at 4.0ms",
                H::hex(2)
            )),
            "{ex}"
        );
        assert_eq!(found.stale_reads.max_entries_behind, 1);
    }

    #[test]
    fn a_read_counts_in_a_fault_window_from_its_start_until_five_seconds_after_the_heal() {
        let mut h = H::stream(&["n1", "n2"]);
        // Paused from 100 to 200 ms: reads from 100 ms until before 5200 ms are in it.
        h.fault("pause", 100, 200);
        // A later fault no read falls in is not listed.
        h.fault("kill", 20_000, 21_000);
        read(&mut h, 99, "n1", ReadOp::XLen, None, 0);
        read(&mut h, 100, "n1", ReadOp::XLen, None, 0);
        failed_read(&mut h, 5_199, "n1");
        read(&mut h, 5_200, "n2", ReadOp::XLen, None, 0);
        failed_read(&mut h, 6_000, "n1");
        read(&mut h, 7_000, "n1", ReadOp::XLen, None, 0);
        let found = run_one(&StaleRead, h);
        let r = &found.stale_reads;
        assert_eq!((r.reads, r.failed, r.stale), (6, 2, 0));
        assert_eq!(
            r.per_window,
            vec![
                stale_group("pause 0.1-0.2s (+5s after heal)", 2, 1),
                stale_group("outside fault windows", 4, 1),
            ]
        );
        assert_eq!(
            r.per_node,
            vec![stale_group("n1", 5, 2), stale_group("n2", 1, 0)]
        );
    }

    #[test]
    fn the_report_states_what_reads_are_promised() {
        let mut h = three_acked();
        read(&mut h, 10, "n1", ReadOp::XRevRange, Some("3-0"), 1);
        let found = run_one(&StaleRead, h);
        assert!(found.stale_reads.promised);
        assert_eq!(
            found.stale_reads.consistency,
            "linearizable (read index): stale reads are violations"
        );

        let mut h = three_acked();
        h.promise = h.promise.with_linearizable_reads(false);
        read(&mut h, 10, "n1", ReadOp::XRevRange, Some("3-0"), 1);
        let found = run_one(&StaleRead, h);
        assert!(!found.stale_reads.promised);
        assert_eq!(
            found.stale_reads.consistency,
            "no recency promise (a node's own replica): stale reads are anomalies"
        );
    }
}
