//! Availability after faults: for each fault window, the time from its end (the heal) to
//! the first acknowledged publish at or after it, returned as the recovery list. If no
//! publish succeeded after the last heal although publishes went on for more than
//! [`GRACE_US`] after it, that is `never_recovered` (a violation with no `Checks` counter).

use raftbus_reports::model::Recovery;

use super::index::IndexedHistory;
use super::{Findings, Invariant, Kind, Violation};

/// How long publishes must go on after the last heal before "no success" is a violation.
/// Every chaos schedule leaves more than this after its last heal
/// ([`crate::chaos::MIN_RECOVERY`]), so the check can always fire.
pub const GRACE_US: u64 = 4_000_000;

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
            .map(|f| Recovery {
                kind: f.kind.clone(),
                healed_at_s: f.end_us as f64 / 1e6,
                first_ok_after_s: first_ok_after(f.end_us).map(|us| us as f64 / 1e6),
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
