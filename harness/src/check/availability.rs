//! Availability during and after faults: for each fault window, the fraction of the
//! publishes sent inside it that were acknowledged (a reply after the request timeout
//! counts as none: the publish is indeterminate), the unavailable seconds (from the
//! window's start until the first acknowledgement after its end, the time covered by gaps
//! of more than [`GAP_US`] between acknowledgements), the time from its start to the
//! first acknowledgement of a publish sent at or after the start, and the time from its
//! end (the heal) to the first acknowledged publish at or after it, returned as the
//! recovery list. If no
//! publish succeeded after the last heal although publishes went on for more than
//! [`GRACE_US`] after it, that is `never_recovered` (a violation with no `Checks` counter).

use raftbus_reports::model::Recovery;

use super::index::IndexedHistory;
use super::{Findings, Invariant, Kind, Violation};

/// How long publishes must go on after the last heal before "no success" is a violation.
/// Every chaos schedule leaves more than this after its last heal
/// ([`crate::chaos::MIN_RECOVERY`]), so the check can always fire.
pub const GRACE_US: u64 = 4_000_000;
/// A pause between two acknowledgements longer than this counts as unavailable time
/// (at the rates runs use, acknowledgements come every few milliseconds).
pub const GAP_US: u64 = 250_000;

pub(crate) struct Availability;

impl Invariant for Availability {
    fn name(&self) -> &'static str {
        "availability"
    }

    fn property(&self) -> &'static str {
        "publishes succeed again after faults heal"
    }

    fn check(&self, h: &IndexedHistory, out: &mut Findings) {
        let first_ok_after = |t_us: u64| {
            let i = h.ok_completions.partition_point(|&t| t < t_us);
            h.ok_completions.get(i).map(|&ok| ok - t_us)
        };
        let recovery = h
            .faults
            .iter()
            .map(|f| {
                let window = window_stats(h, f.start_us, f.end_us);
                Recovery {
                    kind: f.kind.clone(),
                    healed_at_s: f.end_us as f64 / 1e6,
                    first_ok_after_s: first_ok_after(f.end_us).map(|us| us as f64 / 1e6),
                    started_at_s: f.start_us as f64 / 1e6,
                    first_ok_after_start_s: window.first_ok_us.map(|us| us as f64 / 1e6),
                    availability: window.availability(),
                    unavailable_s: unavailable_us(&h.ok_completions, f.start_us, f.end_us) as f64
                        / 1e6,
                    // Attributed by the harness once every lost message is known.
                    lost: 0,
                }
            })
            .collect();
        out.set_recovery(recovery);
        let Some(last) = h.faults.iter().max_by_key(|f| f.end_us) else {
            return;
        };
        if first_ok_after(last.end_us).is_none()
            && h.last_invoke_us > last.end_us.saturating_add(GRACE_US)
        {
            out.report_with(Kind::NeverRecovered, || Violation::NeverRecovered {
                kind: last.kind.clone(),
                healed_us: last.end_us,
                last_invoke_us: h.last_invoke_us,
            });
        }
    }
}

/// Time in `[start, first ack after end]` not covered by acknowledgements less than
/// [`GAP_US`] apart (`acks` sorted). With no ack after the end, up to the last ack seen
/// (or `end`).
fn unavailable_us(acks: &[u64], start: u64, end: u64) -> u64 {
    let from = acks.partition_point(|&t| t < start);
    let mut total = 0;
    let mut prev = start;
    for &t in &acks[from..] {
        if t - prev > GAP_US {
            total += t - prev;
        }
        prev = t;
        if t >= end {
            return total;
        }
    }
    if end > prev && end - prev > GAP_US {
        total += end - prev;
    }
    total
}

/// Publishes sent inside one fault window.
struct WindowStats {
    sent: u64,
    acked: u64,
    /// From the window's start to the first ack of a publish sent at or after it.
    first_ok_us: Option<u64>,
}

impl WindowStats {
    fn availability(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.acked as f64 / self.sent as f64)
    }
}

fn window_stats(h: &IndexedHistory, start_us: u64, end_us: u64) -> WindowStats {
    let mut w = WindowStats {
        sent: 0,
        acked: 0,
        first_ok_us: None,
    };
    let mut first_ok = u64::MAX;
    for m in &h.messages {
        if m.invoke_us < start_us {
            continue;
        }
        if m.is_acked() {
            first_ok = first_ok.min(m.complete_us);
        }
        if m.invoke_us < end_us {
            w.sent += 1;
            w.acked += u64::from(m.is_acked());
        }
    }
    w.first_ok_us = (first_ok != u64::MAX).then(|| first_ok - start_us);
    w
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{run_one, H};
    use super::*;

    #[test]
    fn recovery_is_measured_from_the_heal() {
        let mut h = H::stream(&["n1"]);
        h.fault("kill", 0, 2);
        h.at(4);
        h.acked(1, "c", "1-0"); // acked at 6 ms
        let index = h.index();
        let mut out = Findings::new(10);
        Availability.check(&index, &mut out);
        assert_eq!(out.total(), 0);
        assert_eq!(out.recovery.len(), 1);
        assert_eq!(out.recovery[0].kind, "kill");
        let after = out.recovery[0].first_ok_after_s.expect("recovered");
        assert!((after - 0.004).abs() < 1e-9, "{after}");
    }

    #[test]
    fn unavailable_time_is_the_gaps_between_acks_until_the_first_after_the_heal() {
        let s = 1_000_000;
        // Acks at 0.1 s, then nothing until 3.1 s, then every 0.1 s; fault 0–2 s.
        let acks: Vec<u64> = [100_000, 3_100_000, 3_200_000].to_vec();
        assert_eq!(unavailable_us(&acks, 0, 2 * s), 3_000_000);
        // No ack at all after the start: the whole window.
        assert_eq!(unavailable_us(&[], 0, 2 * s), 2 * s);
        // Steady acks: nothing.
        let steady: Vec<u64> = (0..50).map(|i| i * 100_000).collect();
        assert_eq!(unavailable_us(&steady, 0, 2 * s), 0);
    }

    #[test]
    fn unavailable_time_boundaries() {
        // A gap of exactly GAP_US is not unavailable; one microsecond more is.
        assert_eq!(unavailable_us(&[0, GAP_US, 2 * GAP_US], 0, 400_000), 0);
        assert_eq!(
            unavailable_us(&[0, GAP_US + 1, 2 * GAP_US + 2], 0, 400_000),
            2 * GAP_US + 2
        );
        // No ack after the end: the tail counts only when longer than GAP_US...
        assert_eq!(unavailable_us(&[0], 0, GAP_US), 0);
        assert_eq!(unavailable_us(&[0, 200_000], 0, 300_000), 0);
        // ...and then from the last ack, not from the start.
        assert_eq!(unavailable_us(&[100_000], 0, 1_000_000), 900_000);
        // An ack at the very start of an instant fault: nothing unavailable.
        assert_eq!(unavailable_us(&[500_000, 1_500_000], 500_000, 500_000), 0);
    }

    #[test]
    fn window_times_are_reported_in_seconds() {
        let mut h = H::stream(&["n1"]);
        h.fault("pause", 5, 100);
        h.at(9);
        h.acked(1, "c", "1-0"); // sent at 10 ms, acked at 11 ms
        h.at(399);
        h.acked(2, "c", "2-0"); // sent at 400 ms, acked at 401 ms
        let f = run_one(&Availability, h);
        let r = &f.recovery[0];
        assert!((r.started_at_s - 0.005).abs() < 1e-9, "{r:?}");
        assert!((r.healed_at_s - 0.1).abs() < 1e-9, "{r:?}");
        // From the last ack inside (11 ms) to the first after the heal (401 ms).
        assert!((r.unavailable_s - 0.39).abs() < 1e-9, "{r:?}");
        assert!((r.first_ok_after_s.unwrap() - 0.301).abs() < 1e-9, "{r:?}");
        // From the start (5 ms) to the first ack of a publish sent inside (11 ms).
        assert!(
            (r.first_ok_after_start_s.unwrap() - 0.006).abs() < 1e-9,
            "{r:?}"
        );
    }

    #[test]
    fn a_window_counts_publishes_sent_from_its_start_up_to_not_including_its_end() {
        let mut h = H::stream(&["n1"]);
        h.fault("partition", 10, 20);
        h.at(9);
        h.failed(1, "c"); // sent at 10 ms, the start: inside
        h.at(19);
        h.acked(2, "c", "1-0"); // sent at 20 ms, the end: outside
        let f = run_one(&Availability, h);
        assert_eq!(f.recovery[0].availability, Some(0.0));
        // A window in which nothing was sent has no availability figure.
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.fault("pause", 50, 60);
        let f = run_one(&Availability, h);
        assert_eq!(f.recovery[0].availability, None);
    }

    #[test]
    fn an_ack_at_the_heal_itself_is_recovery_at_once() {
        let mut h = H::stream(&["n1"]);
        h.fault("kill", 0, 2);
        h.at(0);
        h.acked(1, "c", "1-0"); // acked at 2 ms, the heal
        let f = run_one(&Availability, h);
        assert_eq!(f.recovery[0].first_ok_after_s, Some(0.0));
    }

    #[test]
    fn never_recovered_needs_publishes_past_the_grace() {
        // The last publish exactly GRACE_US after the heal is not yet past it.
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.fault("partition", 5, 100);
        h.at(100 + GRACE_US / 1000 - 1);
        h.failed(2, "c"); // sent at heal + GRACE_US
        assert_eq!(run_one(&Availability, h).total(), 0);
    }

    #[test]
    fn availability_counts_publishes_sent_inside_the_window() {
        let mut h = H::stream(&["n1"]);
        h.fault("partition", 0, 10);
        h.at(1);
        h.failed(1, "c");
        h.at(2);
        h.failed(2, "c");
        h.at(3);
        h.acked(3, "c", "1-0");
        h.at(4);
        h.acked(4, "c", "2-0");
        let index = h.index();
        let mut out = Findings::new(10);
        Availability.check(&index, &mut out);
        let r = &out.recovery[0];
        assert_eq!(r.availability, Some(0.5));
        // Acks 1 ms apart: no gap counts.
        assert_eq!(r.unavailable_s, 0.0);
        let first = r.first_ok_after_start_s.expect("acked inside");
        // Publish 3 was sent at 4 ms and acknowledged at 5 ms.
        assert!((first - 0.005).abs() < 1e-9, "{first}");
    }

    #[test]
    fn no_success_long_after_the_last_heal_never_recovered() {
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.fault("partition", 5, 100);
        // Still failing less than 4 s after the heal is not yet a violation...
        h.at(4_000);
        h.failed(2, "c");
        let f = run_one(&Availability, h);
        assert_eq!(f.total(), 0);

        // ...but more than 4 s after it is.
        let mut h = H::stream(&["n1"]);
        h.acked(1, "c", "1-0");
        h.fault("partition", 5, 100);
        h.at(4_200);
        h.failed(2, "c");
        let f = run_one(&Availability, h);
        assert_eq!(f.count(Kind::NeverRecovered), 1);
        let ex = &f.examples(Kind::NeverRecovered)[0];
        assert!(ex.contains("partition fault healed at 100.0ms"), "{ex}");
    }
}
