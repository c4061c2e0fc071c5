//! Chaos: the nemesis that injects faults while the load runs.
//!
//! - [`select`] — target selectors by role (`leader`, `follower`, `minority`, `majority`,
//!   `all`, `primary`, `replica`, named nodes) and finding the roles at fault start.
//! - [`schedule`] — the fault timeline: seeded from `--faults` and `--interval`, or
//!   explicit `[[fault]]` entries of the scenario file; validated against what the lab can do.
//! - [`proxy`] — userspace delay proxies on every peer link of the bus (no netem here), so
//!   delay can be switched on at runtime; they also stand in for partitions on loopback.
//! - [`attribution`] — which fault window lost the lost messages (for the notes).
//! - [`nemesis`] — the driver: applies each fault through a [`raftbus_faults::Journal`],
//!   heals it at the end of its window (and everything on stop, error, Ctrl-C or panic),
//!   records [`crate::history::Event::Fault`] windows. Disk faults (power-loss, torn-write,
//!   corrupt) act on the lazy filesystem the target mounts under each data dir.
//!
//! Same seed and scenario ⇒ same faults, kinds, times and targets-by-role: every random
//! choice comes from a ChaCha RNG seeded from the run seed and the fault's index, never
//! from what the cluster happened to do.

pub mod attribution;
pub mod nemesis;
pub mod proxy;
pub mod schedule;
pub mod select;

use std::time::Duration;

use raftbus_faults::FaultKind;
use serde::{Deserialize, Serialize};

pub use nemesis::{Nemesis, NemesisOutput, NetworkFacilities};
pub use proxy::PeerProxies;
pub use schedule::{FaultStep, HostsPlan, PlanContext, Schedule};
pub use select::{Roles, Selector};

/// Default `--interval`: one fault on and one quiet gap per interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default `--recovery`: the quiet phase after the schedule, load still running.
pub const DEFAULT_RECOVERY: Duration = Duration::from_secs(10);
/// The shortest recovery phase a schedule may leave after its last heal: longer than the
/// checker's grace before `never_recovered` (see `check/availability.rs`), so a target
/// that never recovers is caught whatever the seed or the timeline.
pub const MIN_RECOVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{0}")]
    Schedule(String),
    #[error("{kind} is not available here: {reason}")]
    Unavailable { kind: FaultKind, reason: String },
    #[error("target selector {0:?}: expected leader, follower, minority, majority, all, primary, replica or node names like n1,n2")]
    BadSelector(String),
    #[error("cannot resolve target {selector}: {reason}")]
    Resolve { selector: String, reason: String },
    #[error("fault {kind}: {message}")]
    Apply { kind: FaultKind, message: String },
    #[error("delay proxy: {0}")]
    Proxy(String),
}

/// The seeded nemesis of a scenario (`[chaos]`, or `raftbus chaos --faults ...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosOptions {
    /// Fault kinds mixed by the seed; each appears at least once.
    pub faults: Vec<FaultKind>,
    /// One fault (about half of it) and one quiet gap (the other half) per interval.
    #[serde(default = "default_interval", with = "duration_str")]
    pub interval: Duration,
    /// Quiet phase after the schedule, with load still running.
    #[serde(default = "default_recovery", with = "duration_str")]
    pub recovery: Duration,
}

fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}

fn default_recovery() -> Duration {
    DEFAULT_RECOVERY
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            faults: Vec::new(),
            interval: DEFAULT_INTERVAL,
            recovery: DEFAULT_RECOVERY,
        }
    }
}

/// Durations as humantime strings (`"10s"`) in TOML.
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}")))
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// Seconds with one decimal, for schedules and notes.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
