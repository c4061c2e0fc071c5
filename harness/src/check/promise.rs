//! What each target promises, per mode. The checkers judge a target against its own
//! promise: breaking it is a violation; an anomaly that the promise allows (Redis pub/sub
//! is at most once) is reported beside the violations as an anomaly, so a comparison
//! still shows what the weaker system dropped.
//!
//! | target, mode | stores acknowledged publishes | connected subscriber misses nothing |
//! |---|---|---|
//! | bus, stream | yes (final streams) | yes, and nothing across a resume by ID |
//! | bus, pub/sub | yes (PUBLISH appends to the stream) | yes, from its confirmed SUBSCRIBE on |
//! | Redis, stream | yes (the XADD reply is an entry id) | yes, and nothing across a resume by ID |
//! | Redis, pub/sub | no: PUBLISH counts receivers, nothing is stored | no: at most once |
//! | bus / Redis, queue | yes | consumers: every group gets every entry at least once, in order (`queue/*` checks) |
//!
//! Reads (the read workload's XRANGE/XREVRANGE/XLEN) are promised to see every entry
//! acknowledged before they began only by the bus with `read_consistency =
//! "linearizable"`; the bus's default `local` reads and reads from Redis (primary or
//! asynchronous replica) promise no recency, so their stale reads are anomalies.
//!
//! Duplicates, reordering, phantom or corrupted messages and diverged replicas break every
//! promise. Losing an acknowledged entry breaks every promise that stores it, whatever the
//! persistence setting (the acknowledgement said it was stored).

use raftbus_reports::model::{Mode, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promise {
    /// Every acknowledged publish is in the final streams.
    pub stores_acked: bool,
    /// A subscriber that stays connected receives every entry committed meanwhile.
    pub connected_gap_free: bool,
    /// A short description for reports.
    pub label: &'static str,
    /// A read sees every entry acknowledged before it began (no stale reads).
    pub linearizable_reads: bool,
}

impl Promise {
    pub fn of(target: Target, mode: Mode) -> Promise {
        match (target, mode) {
            (Target::Bus, Mode::Stream) => Promise {
                stores_acked: true,
                connected_gap_free: true,
                label: "bus streams: acknowledged = stored on a majority; ordered, gap-free delivery and resume",
                linearizable_reads: false,
            },
            (Target::Bus, Mode::Pubsub) => Promise {
                stores_acked: true,
                connected_gap_free: true,
                label: "bus pub/sub: acknowledged = stored on a majority; a connected subscriber gets every entry once, in order",
                linearizable_reads: false,
            },
            (Target::Redis, Mode::Stream) => Promise {
                stores_acked: true,
                connected_gap_free: true,
                label: "redis streams: an acknowledged XADD is stored; readers resume by ID without gaps",
                linearizable_reads: false,
            },
            (Target::Bus, Mode::Queue) => Promise {
                stores_acked: true,
                connected_gap_free: true,
                label: "bus consumer groups: acknowledged = stored on a majority; every group gets every entry, in order, at least once; XACK and claims are replicated",
                linearizable_reads: false,
            },
            (Target::Redis, Mode::Queue) => Promise {
                stores_acked: true,
                connected_gap_free: true,
                label: "redis consumer groups: an acknowledged XADD is stored; every group gets every entry, in order, at least once (the PEL keeps what was not acknowledged)",
                linearizable_reads: false,
            },
            (Target::Redis, Mode::Pubsub) => Promise {
                stores_acked: false,
                connected_gap_free: false,
                label: "redis pub/sub: at most once; nothing is stored, misses are anomalies",
                linearizable_reads: false,
            },
        }
    }

    /// The same promise, with reads promised linearizable (the bus with
    /// `read_consistency = "linearizable"`) or not.
    pub fn with_linearizable_reads(self, linearizable: bool) -> Promise {
        Promise {
            linearizable_reads: linearizable,
            ..self
        }
    }

    /// What reads promise, for reports.
    pub fn reads_label(&self) -> &'static str {
        if self.linearizable_reads {
            "linearizable (read index): stale reads are violations"
        } else {
            "no recency promise (a node's own replica): stale reads are anomalies"
        }
    }

    /// The strictest promise (the bus's), for histories whose target is not known.
    pub fn strict(mode: Mode) -> Promise {
        Promise::of(Target::Bus, mode).with_linearizable_reads(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reads_label_says_which_promise() {
        let bus = Promise::of(Target::Bus, Mode::Stream);
        assert!(bus
            .with_linearizable_reads(true)
            .reads_label()
            .starts_with("linearizable"));
        assert!(bus
            .with_linearizable_reads(false)
            .reads_label()
            .starts_with("no recency promise"));
    }
}
