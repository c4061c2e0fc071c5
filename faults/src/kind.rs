//! Fault names as used on the CLI and in scenario files (`kind = "partition"`,
//! `mode = "isolate-leader"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name used on the CLI and in scenario files.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                match s.trim() {
                    $($text => Ok($name::$variant),)*
                    other => Err(Error::Invalid(format!(
                        "unknown {} {other:?}, expected one of: {}",
                        stringify!($name),
                        [$($text),*].join(", ")
                    ))),
                }
            }
        }
    };
}

named_enum! {
    /// The kinds of fault (`--faults kill,pause,partition`).
    FaultKind {
        /// SIGKILL the process group, later restart it.
        Kill => "kill",
        /// SIGSTOP, later SIGCONT.
        Pause => "pause",
        /// SIGTERM, later restart.
        Terminate => "terminate",
        /// Rolling restart: terminate and restart nodes one after another.
        Restart => "restart",
        /// Network partition (see [`PartitionMode`]).
        Partition => "partition",
        /// Random packet loss.
        Loss => "loss",
        /// Delay and jitter (userspace proxy, or netem where present).
        Delay => "delay",
        /// Bandwidth limit (tc tbf).
        Bandwidth => "bandwidth",
        /// Power loss: SIGKILL, drop every unsynced write and directory change of the node's
        /// lazy filesystem, restart.
        PowerLoss => "power-loss",
        /// As power-loss, but the newest unsynced write survives as a prefix.
        TornWrite => "torn-write",
        /// While the node is down, flip bits in (or truncate) one of its data files; restart.
        Corrupt => "corrupt",
        /// Arm a named failpoint (or planted bug) inside a failpoint build of the node
        /// through its admin command; disarm it.
        Failpoint => "failpoint",
        /// Queue mode: a consumer of a group takes a batch and dies holding it
        /// unacknowledged; it comes back under a new name when the fault heals, and what
        /// it held is redelivered only by a claim.
        ConsumerCrash => "consumer-crash",
    }
}

named_enum! {
    /// How a partition cuts the cluster.
    PartitionMode {
        /// Random halves: a minority and a majority.
        Halves => "halves",
        /// The current leader alone.
        IsolateLeader => "isolate-leader",
        /// A chosen (or random) node alone.
        Isolate => "isolate",
        /// Each node sees a different majority.
        MajoritiesRing => "majorities-ring",
        /// Two halves joined only through one node.
        Bridge => "bridge",
        /// One direction only.
        OneWay => "one-way",
        /// The load generator cut from nodes that still talk among themselves.
        Client => "client",
    }
}

impl FaultKind {
    /// Parse a comma-separated list (`kill,pause,partition`).
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, Error> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect()
    }

    /// Whether the fault acts on processes (as opposed to the network).
    pub fn is_process(&self) -> bool {
        matches!(
            self,
            FaultKind::Kill | FaultKind::Pause | FaultKind::Terminate | FaultKind::Restart
        )
    }

    /// Whether the fault acts on a node's disk (its process is killed and restarted too).
    pub fn is_disk(&self) -> bool {
        matches!(
            self,
            FaultKind::PowerLoss | FaultKind::TornWrite | FaultKind::Corrupt
        )
    }

    /// Whether the fault acts on the harness's own clients rather than on a server.
    pub fn is_client(&self) -> bool {
        matches!(self, FaultKind::ConsumerCrash)
    }

    /// Whether the fault needs the lazy filesystem mounted under the node's data dir
    /// (`corrupt` works on a plain directory).
    pub fn needs_lazy_fs(&self) -> bool {
        matches!(self, FaultKind::PowerLoss | FaultKind::TornWrite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(k.to_string().parse::<FaultKind>().unwrap(), *k);
        }
        for m in PartitionMode::ALL {
            assert_eq!(m.to_string().parse::<PartitionMode>().unwrap(), *m);
        }
        assert_eq!(
            "isolate-leader".parse::<PartitionMode>().unwrap(),
            PartitionMode::IsolateLeader
        );
    }

    #[test]
    fn unknown_names_are_rejected_with_the_choices() {
        let e = "explode".parse::<FaultKind>().unwrap_err().to_string();
        assert!(e.contains("explode") && e.contains("partition"), "{e}");
        assert!(FaultKind::parse_list("kill,bogus").is_err());
        assert_eq!(
            FaultKind::parse_list("kill, pause,partition").unwrap(),
            vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Partition]
        );
    }

    #[test]
    fn serde_uses_the_cli_names() {
        #[derive(Deserialize, Serialize)]
        struct Step {
            kind: FaultKind,
            mode: PartitionMode,
        }
        let s: Step =
            serde_json::from_str(r#"{"kind":"partition","mode":"majorities-ring"}"#).unwrap();
        assert_eq!(s.kind, FaultKind::Partition);
        assert_eq!(s.mode, PartitionMode::MajoritiesRing);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"kind":"partition","mode":"majorities-ring"}"#
        );
    }
}
