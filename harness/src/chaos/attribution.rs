//! Which fault lost the lost messages: each lost example was acknowledged at some time, and
//! the first fault window that starts after that acknowledgement is the one that took it
//! (nothing before it could have: the message was there when it was acknowledged).

use raftbus_reports::model::{FaultWindow, ViolationReport};

/// Violation kinds that count lost acknowledged messages.
const LOST_KINDS: &[&str] = &["lost_mid_stream", "lost_tail"];

/// The acknowledgement time, in seconds, of a lost-message example
/// (`"... acked at 1234.5ms on n1 ..."`).
fn acked_s(example: &str) -> Option<f64> {
    let rest = example.split_once("acked at ")?.1;
    let ms = rest.split_once("ms")?.0;
    ms.trim().parse::<f64>().ok().map(|ms| ms / 1000.0)
}

/// Counts every lost message (all of them must be among the examples) under the fault
/// that took it: `Recovery::lost`. A message acknowledged while a fault was on belongs to
/// that fault (a cut-off primary acknowledging writes it will lose); otherwise to the
/// first fault that started after its acknowledgement (nothing before could have taken
/// it); after the last fault started, to the last one (its after-effects, such as an old
/// primary that Sentinel demotes only `failover-timeout` after the heal).
pub fn lost_per_window(
    violations: &[ViolationReport],
    recovery: &mut [raftbus_reports::model::Recovery],
) {
    for r in recovery.iter_mut() {
        r.lost = 0;
    }
    let mut order: Vec<usize> = (0..recovery.len()).collect();
    order.sort_by(|&a, &b| {
        recovery[a]
            .started_at_s
            .total_cmp(&recovery[b].started_at_s)
    });
    for v in violations
        .iter()
        .filter(|v| LOST_KINDS.contains(&v.kind.as_str()))
    {
        for t in v.examples.iter().filter_map(|e| acked_s(e)) {
            let inside = order
                .iter()
                .copied()
                .find(|&i| recovery[i].started_at_s <= t && t <= recovery[i].healed_at_s);
            let next = || {
                order
                    .iter()
                    .copied()
                    .find(|&i| recovery[i].started_at_s >= t)
            };
            if let Some(i) = inside.or_else(next).or_else(|| order.last().copied()) {
                recovery[i].lost += 1;
            }
        }
    }
}

/// One line per fault window that lost examples, naming the fault; plus a line for
/// examples acknowledged after the last fault started (lost without a fault).
pub fn attribute_losses(violations: &[ViolationReport], windows: &[FaultWindow]) -> Vec<String> {
    let mut per_window: Vec<(usize, f64, f64)> = Vec::new(); // (count, first ack, last ack)
    per_window.resize(windows.len(), (0, f64::MAX, 0.0));
    let mut unattributed = 0usize;
    let mut total = 0u64;
    let mut examples = 0usize;
    for v in violations
        .iter()
        .filter(|v| LOST_KINDS.contains(&v.kind.as_str()))
    {
        total += v.count;
        for t in v.examples.iter().filter_map(|e| acked_s(e)) {
            examples += 1;
            match windows.iter().position(|w| w.start_s >= t) {
                Some(i) => {
                    let w = &mut per_window[i];
                    w.0 += 1;
                    w.1 = w.1.min(t);
                    w.2 = w.2.max(t);
                }
                None => unattributed += 1,
            }
        }
    }
    let mut out = Vec::new();
    for (w, (n, first, last)) in windows.iter().zip(&per_window) {
        if *n > 0 {
            out.push(format!(
                "loss attribution: {n} of {examples} lost examples (of {total} lost) were acknowledged at {first:.2}s–{last:.2}s, before {} on {} at {:.2}s–{:.2}s ({}) took them",
                w.kind,
                w.targets.join(","),
                w.start_s,
                w.end_s,
                w.detail
            ));
        }
    }
    if unattributed > 0 {
        out.push(format!(
            "loss attribution: {unattributed} of {examples} lost examples were acknowledged after the last fault started"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kind: &str, start_s: f64) -> FaultWindow {
        FaultWindow {
            kind: kind.into(),
            detail: "all".into(),
            targets: vec!["n1".into()],
            start_s,
            end_s: start_s + 2.0,
        }
    }

    #[test]
    fn losses_go_to_the_next_fault_after_their_ack() {
        let lost = ViolationReport {
            kind: "lost_tail".into(),
            property: "p".into(),
            count: 40,
            examples: vec![
                "msg 0x1 on ch0 acked at 4100.0ms on n1 (id 3-0) missing on n1; nothing".into(),
                "msg 0x2 on ch1 acked at 4900.5ms on n1 (id 4-0) missing on n1; nothing".into(),
                "msg 0x3 on ch1 acked at 9100.0ms on n1 (id 9-0) missing on n1; nothing".into(),
            ],
        };
        let windows = [window("kill", 1.0), window("power-loss", 5.0)];
        let notes = attribute_losses(&[lost], &windows);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("2 of 3") && notes[0].contains("before power-loss"),
            "{}",
            notes[0]
        );
        assert!(notes[1].contains("1 of 3") && notes[1].contains("after the last fault"));
    }

    #[test]
    fn lost_counts_go_to_the_fault_that_was_on_or_came_next() {
        let rec = |kind: &str, start: f64, end: f64| raftbus_reports::model::Recovery {
            kind: kind.into(),
            healed_at_s: end,
            first_ok_after_s: None,
            started_at_s: start,
            first_ok_after_start_s: None,
            availability: None,
            unavailable_s: 0.0,
            lost: 0,
        };
        let lost = ViolationReport {
            kind: "lost_mid_stream".into(),
            property: "p".into(),
            count: 4,
            examples: [1900.0, 2500.0, 7000.0, 30000.0]
                .iter()
                .map(|ms| format!("msg 0x1 on ch0 acked at {ms}ms on n1 (id 3-0) missing"))
                .collect(),
        };
        let mut recovery = vec![rec("kill", 2.0, 4.0), rec("partition", 10.0, 16.0)];
        lost_per_window(&[lost], &mut recovery);
        // 1.9 s: before the kill; 2.5 s: during it; 7 s: before the partition; 30 s:
        // after the last fault, its after-effect.
        assert_eq!(recovery[0].lost, 2);
        assert_eq!(recovery[1].lost, 2);
    }

    #[test]
    fn the_example_format_of_the_lost_checker_parses() {
        let v = crate::check::Violation::LostTail {
            msg: 7,
            channel: "ch0".into(),
            acked_us: 1_234_567,
            node: "n1".into(),
            ack_id: None,
            missing_on: vec!["n1".into()],
        };
        let t = acked_s(&v.to_string()).expect("parses");
        assert!((t - 1.2346).abs() < 1e-9, "{t}");
    }
}
