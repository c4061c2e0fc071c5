//! Failpoints and planted bugs, for testing the harness (cargo feature `failpoints`).
//!
//! The default build has none of this: [`point!`] expands to nothing, every planted-bug hook
//! is behind `#[cfg(feature = "failpoints")]`, the `fail` crate is not linked and the admin
//! command `RAFTBUS.FAILPOINT` is an unknown command.
//!
//! # Named points
//!
//! Armed with the `fail` crate's action strings: `off`, `return`, `return(msg)`, `panic`,
//! `panic(msg)`, `sleep(ms)`, `delay(ms)` (busy), `pause`, `print`, with `N%` (probability)
//! and `N*` (count) prefixes and `->` chains, e.g. `20%return`, `3*sleep(500)->off`.
//! `return` makes the point fail the way an I/O error would there; `panic` crashes the node
//! process (it aborts), as a crash at that point would.
//!
//! | name | where | `return` means |
//! |---|---|---|
//! | `log.before_write` | the log writing an append's records to its segment file (before the page cache has them) | the write fails (the log store fails) |
//! | `log.before_fsync` / `log.after_fsync` | the log's group-commit fsync | the fsync fails (the log store fails) |
//! | `log.vote_write` | storing the vote | the vote write fails |
//! | `sm.before_apply` / `sm.after_apply` | applying committed entries | apply fails (Raft stops) |
//! | `sm.snapshot_build` / `sm.snapshot_install` | building / installing a snapshot | it fails |
//! | `bus.forward` | a follower forwarding writes to the leader | the send fails (retried) |
//! | `net.send` | a peer RPC being sent | not sent (the peer looks unreachable) |
//! | `net.receive` | a peer request arriving | the connection is dropped |
//!
//! # Planted bugs
//!
//! Deliberately wrong behaviours that real buses have shipped, armed like points (with
//! `return`, or `return(N)` to misbehave on every N-th occasion only). The harness's
//! self-test (`raftbus selftest`) plants each and requires the checkers to report it.
//!
//! | name | wrong behaviour | what a checker must see |
//! |---|---|---|
//! | `bug.ack_before_commit` | the leader acknowledges once the write is proposed, before a majority has it | lost writes when that leader is cut off |
//! | `bug.ack_before_fsync` | the log reports writes durable without fsync | lost writes after a power loss |
//! | `bug.drop_forwarded` | a follower acknowledges a write without forwarding it | lost writes |
//! | `bug.apply_twice` | the first batch of each new leader's term is applied twice | duplicated messages |
//! | `bug.skip_delivery` | this node's fan-out drops an entry | a subscriber that skips |
//! | `bug.reorder_delivery` | this node's fan-out swaps two entries | a subscriber that goes backwards |
//! | `bug.stale_read` | a leader answers a linearizable read from its own state, without confirming with a quorum that it still leads | stale reads from a cut-off or paused old leader |
//!
//! Acknowledgements that never reached the state machine carry the offset the entry would
//! have had on a healthy leader (the next offset of its channel), as a real bug would.
//!
//! # The admin command
//!
//! ```text
//! RAFTBUS.FAILPOINT <token> SET <name> <actions>   +OK
//! RAFTBUS.FAILPOINT <token> OFF <name>             +OK
//! RAFTBUS.FAILPOINT <token> LIST                   armed points, "name=actions"
//! RAFTBUS.FAILPOINT <token> NAMES                  every known point and bug
//! ```
//!
//! `<token>` is the node's `--admin-token` (or `--admin-token-file`, or
//! `RAFTBUS_ADMIN_TOKEN`), else its cluster secret; a node with neither refuses the command.
//! At start, `--failpoints "name=actions;name=actions"` (or `FAILPOINTS`) arms points before
//! anything runs.

#[cfg(feature = "failpoints")]
pub use enabled::*;

/// Evaluates a named failpoint: `point!("log.before_fsync", |msg| Err(...))` returns the
/// expression from the enclosing function when the point's action is `return` (`msg` is
/// its argument, or a default naming the point); panics and sleeps happen inside. Expands to
/// nothing without the `failpoints` feature.
#[cfg(feature = "failpoints")]
macro_rules! point {
    ($name:literal, |$msg:ident| $on_return:expr) => {
        if let Some($msg) = $crate::failpoint::fired($name) {
            return $on_return;
        }
    };
}

#[cfg(not(feature = "failpoints"))]
macro_rules! point {
    ($($ignored:tt)*) => {};
}

pub(crate) use point;

/// Every named point, with what it is for (for `NAMES` and validation).
pub const POINTS: &[(&str, &str)] = &[
    (
        "log.before_write",
        "before the log writes an append's records to its segment file",
    ),
    ("log.before_fsync", "before the log's group-commit fsync"),
    ("log.after_fsync", "after the log's group-commit fsync"),
    ("log.vote_write", "storing the vote"),
    ("sm.before_apply", "before applying committed entries"),
    ("sm.after_apply", "after applying committed entries"),
    ("sm.snapshot_build", "building a snapshot"),
    (
        "sm.snapshot_install",
        "installing a snapshot from the leader",
    ),
    ("bus.forward", "a follower forwarding writes to the leader"),
    ("net.send", "sending a peer RPC"),
    ("net.receive", "receiving a peer request"),
];

/// The planted bugs (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    AckBeforeCommit,
    AckBeforeFsync,
    DropForwarded,
    ApplyTwice,
    SkipDelivery,
    ReorderDelivery,
    StaleRead,
}

impl Bug {
    pub const ALL: &'static [Bug] = &[
        Bug::AckBeforeCommit,
        Bug::AckBeforeFsync,
        Bug::DropForwarded,
        Bug::ApplyTwice,
        Bug::SkipDelivery,
        Bug::ReorderDelivery,
        Bug::StaleRead,
    ];

    /// The failpoint name that arms it.
    pub const fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeCommit => "bug.ack_before_commit",
            Bug::AckBeforeFsync => "bug.ack_before_fsync",
            Bug::DropForwarded => "bug.drop_forwarded",
            Bug::ApplyTwice => "bug.apply_twice",
            Bug::SkipDelivery => "bug.skip_delivery",
            Bug::ReorderDelivery => "bug.reorder_delivery",
            Bug::StaleRead => "bug.stale_read",
        }
    }

    /// What goes wrong, in one line.
    pub const fn describe(self) -> &'static str {
        match self {
            Bug::AckBeforeCommit => "acknowledge a write once proposed, before commit",
            Bug::AckBeforeFsync => "report log writes durable without fsync",
            Bug::DropForwarded => "acknowledge a forwarded write without forwarding it",
            Bug::ApplyTwice => "apply the first batch of a new term twice",
            Bug::SkipDelivery => "drop an entry from this node's subscriber fan-out",
            Bug::ReorderDelivery => "swap two entries in this node's subscriber fan-out",
            Bug::StaleRead => "serve a linearizable read on the leader without a quorum check",
        }
    }
}

/// Whether `name` is a known point or planted bug.
pub fn is_known(name: &str) -> bool {
    POINTS.iter().any(|(n, _)| *n == name) || Bug::ALL.iter().any(|b| b.name() == name)
}

#[cfg(feature = "failpoints")]
mod enabled {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    use bytes::Bytes;
    use tokio::sync::broadcast;

    use super::{is_known, Bug, POINTS};
    use crate::resp::Frame;
    use crate::state_machine::{Committed, SharedState};
    use crate::types::Append;

    /// The admin command's name.
    pub const ADMIN_COMMAND: &str = "RAFTBUS.FAILPOINT";

    #[derive(Debug, thiserror::Error)]
    pub enum FailpointError {
        #[error("unknown failpoint {name:?} (RAFTBUS.FAILPOINT <token> NAMES lists them)")]
        Unknown { name: String },
        #[error("failpoint {name}: bad actions {actions:?}: {reason}")]
        BadActions {
            name: String,
            actions: String,
            reason: String,
        },
        #[error("FAILPOINTS entry {0:?}: expected name=actions")]
        BadEntry(String),
        #[error("cannot read the admin token file {path}: {source}")]
        TokenFile {
            path: String,
            source: std::io::Error,
        },
    }

    static ADMIN_TOKEN: OnceLock<Option<String>> = OnceLock::new();
    /// Per bug: how often it was asked, for `return(N)` (every N-th occasion).
    static OCCASIONS: [AtomicU64; Bug::ALL.len()] = [const { AtomicU64::new(0) }; Bug::ALL.len()];
    /// Per channel: the next offset a not-yet-applied acknowledgement would claim.
    static PREDICTED: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    /// The term of the last applied batch (0: none yet), for `bug.apply_twice`.
    static LAST_TERM: AtomicU64 = AtomicU64::new(0);
    /// An announcement held back by `bug.reorder_delivery`.
    static HELD: Mutex<Option<Committed>> = Mutex::new(None);

    /// Sets the admin token (once per process), makes a failpoint's `panic` crash the
    /// whole process (see [`crash_on_failpoint_panic`]) and arms `armed`
    /// (`name=actions;name=actions`, from `--failpoints` or `FAILPOINTS`).
    pub fn init(admin_token: Option<String>, armed: Option<&str>) -> Result<(), FailpointError> {
        let _ = ADMIN_TOKEN.set(admin_token.filter(|t| !t.is_empty()));
        crash_on_failpoint_panic();
        if let Some(spec) = armed {
            for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                let (name, actions) = entry
                    .split_once('=')
                    .ok_or_else(|| FailpointError::BadEntry(entry.to_string()))?;
                set(name.trim(), actions.trim())?;
            }
        }
        tracing::warn!(
            admin = ADMIN_TOKEN.get().is_some_and(Option::is_some),
            "failpoint build: named failpoints and planted bugs can be armed"
        );
        Ok(())
    }

    /// A panic raised by a failpoint's `panic` action aborts the process, as a crash at that
    /// point would; otherwise it would end only the task or thread it hit (tokio catches
    /// panics in tasks) and leave a half-dead node running. Other panics keep their default
    /// behaviour.
    fn crash_on_failpoint_panic() {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            // The fail crate raises it from its own source file.
            let from_fail = info
                .location()
                .is_some_and(|l| l.file().contains("/fail-") || l.file().contains("/fail/"));
            if from_fail {
                eprintln!("raftbus-node: a failpoint panicked; aborting the process");
                std::process::abort();
            }
        }));
    }

    /// The token from `--admin-token`, else the file `--admin-token-file`, else `fallback`
    /// (the cluster secret).
    pub fn resolve_token(
        token: Option<String>,
        file: Option<&std::path::Path>,
        fallback: Option<String>,
    ) -> Result<Option<String>, FailpointError> {
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            return Ok(Some(t));
        }
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| FailpointError::TokenFile {
                    path: path.display().to_string(),
                    source,
                })?;
            return Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()));
        }
        Ok(fallback)
    }

    /// Arms `name` with `actions`.
    pub fn set(name: &str, actions: &str) -> Result<(), FailpointError> {
        if !is_known(name) {
            return Err(FailpointError::Unknown { name: name.into() });
        }
        fail::cfg(name, actions).map_err(|reason| FailpointError::BadActions {
            name: name.into(),
            actions: actions.into(),
            reason,
        })?;
        if let Some(bug) = Bug::ALL.iter().find(|b| b.name() == name) {
            OCCASIONS[*bug as usize].store(0, Ordering::Relaxed);
        }
        tracing::warn!(name, actions, "failpoint armed");
        Ok(())
    }

    /// Disarms `name`.
    pub fn remove(name: &str) -> Result<(), FailpointError> {
        if !is_known(name) {
            return Err(FailpointError::Unknown { name: name.into() });
        }
        fail::remove(name);
        tracing::warn!(name, "failpoint disarmed");
        Ok(())
    }

    /// Evaluates point `name`: panics and sleeps happen here; `Some(message)` when its
    /// action is `return` (the argument, or a message naming the point).
    pub fn fired(name: &'static str) -> Option<String> {
        fail::eval(name, |arg| {
            tracing::warn!(name, "failpoint fired");
            arg.unwrap_or_else(|| format!("failpoint {name}"))
        })
    }

    /// Whether planted bug `bug` misbehaves on this occasion: armed with `return` (every
    /// time) or `return(N)` (every N-th time it is asked).
    pub fn planted(bug: Bug) -> bool {
        let Some(arg) = fail::eval(bug.name(), |arg| arg) else {
            return false;
        };
        let every = arg
            .and_then(|a| a.trim().parse::<u64>().ok())
            .unwrap_or(1)
            .max(1);
        let n = OCCASIONS[bug as usize].fetch_add(1, Ordering::Relaxed) + 1;
        n % every == 0
    }

    /// The offsets a healthy leader would give these appends, for acknowledgements of
    /// writes that never reach the state machine (`bug.ack_before_commit`,
    /// `bug.drop_forwarded`).
    pub fn predict_offsets<'a>(
        state: &SharedState,
        appends: impl IntoIterator<Item = &'a Append>,
    ) -> Vec<u64> {
        let mut guard = PREDICTED.lock().unwrap_or_else(|p| p.into_inner());
        let next = guard.get_or_insert_with(HashMap::new);
        appends
            .into_iter()
            .map(|a| {
                let applied_next = state.last_offset(&a.channel) + 1;
                let slot = next.entry(a.channel.clone()).or_insert(applied_next);
                let offset = (*slot).max(applied_next);
                *slot = offset + 1;
                offset
            })
            .collect()
    }

    /// `bug.apply_twice`: whether the batch of a normal entry of `term` is to be applied a
    /// second time (the first batch after a leader change, when armed).
    pub fn apply_twice(term: u64) -> bool {
        let previous = LAST_TERM.swap(term, Ordering::Relaxed);
        previous != 0 && previous != term && planted(Bug::ApplyTwice)
    }

    /// Hands an applied entry to this node's subscribers, unless `bug.skip_delivery` drops
    /// it or `bug.reorder_delivery` holds it back until after the next one of its channel
    /// (order is promised per channel: released after another channel's entry, it would be
    /// no reordering at all, and a workload that writes its channels in turn never saw one).
    pub fn announce(tx: &broadcast::Sender<Committed>, committed: Committed) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if planted(Bug::SkipDelivery) {
            tracing::warn!(index = committed.index, channel = %committed.channel, "planted bug: subscriber fan-out dropped an entry");
            return;
        }
        if held.is_none() && planted(Bug::ReorderDelivery) {
            tracing::warn!(index = committed.index, channel = %committed.channel, "planted bug: subscriber fan-out holds an entry back");
            *held = Some(committed);
            return;
        }
        let release = held
            .as_ref()
            .is_some_and(|late| late.channel == committed.channel);
        // No receivers is fine: nobody subscribed on this node.
        let _ = tx.send(committed);
        if release {
            if let Some(late) = held.take() {
                let _ = tx.send(late);
            }
        }
    }

    /// Runs `RAFTBUS.FAILPOINT` when `args` is one; `None` for every other command.
    /// `authenticated`: the connection passed AUTH (or no password is set).
    pub fn admin_command(args: &[Bytes], authenticated: bool) -> Option<Frame> {
        let name = args.first()?;
        if !name.eq_ignore_ascii_case(ADMIN_COMMAND.as_bytes()) {
            return None;
        }
        Some(run_admin(&args[1..], authenticated))
    }

    fn run_admin(args: &[Bytes], authenticated: bool) -> Frame {
        if !authenticated {
            return Frame::error("NOAUTH Authentication required.");
        }
        let Some(expected) = ADMIN_TOKEN.get().and_then(Option::as_deref) else {
            return Frame::error(
                "ERR failpoint admin is disabled: start the node with --admin-token, --admin-token-file or --cluster-secret",
            );
        };
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let Some(token) = args.first() else {
            return wrong_arity();
        };
        if !constant_time_eq(expected.as_bytes(), token) {
            tracing::warn!("RAFTBUS.FAILPOINT refused: wrong admin token");
            return Frame::error("NOPERM wrong admin token");
        }
        let sub = args.get(1).map(|s| text(s).to_ascii_lowercase());
        let result = match (sub.as_deref(), &args[2.min(args.len())..]) {
            (Some("set"), [name, actions]) => {
                set(&text(name), &text(actions)).map(|()| Frame::ok())
            }
            (Some("off"), [name]) => remove(&text(name)).map(|()| Frame::ok()),
            (Some("list"), []) => Ok(Frame::Array(
                fail::list()
                    .into_iter()
                    .map(|(n, a)| Frame::bulk(format!("{n}={a}")))
                    .collect(),
            )),
            (Some("names"), []) => Ok(Frame::Array(
                POINTS
                    .iter()
                    .map(|(n, what)| Frame::bulk(format!("{n}: {what}")))
                    .chain(
                        Bug::ALL
                            .iter()
                            .map(|b| Frame::bulk(format!("{}: {}", b.name(), b.describe()))),
                    )
                    .collect(),
            )),
            _ => return wrong_arity(),
        };
        result.unwrap_or_else(|e| Frame::error(format!("ERR {e}")))
    }

    fn wrong_arity() -> Frame {
        Frame::error(
            "ERR usage: RAFTBUS.FAILPOINT <token> SET <name> <actions> | OFF <name> | LIST | NAMES",
        )
    }

    fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Tests that arm `bug.reorder_delivery` share its process-wide state: one at a time.
        static REORDER_ARMED: Mutex<()> = Mutex::new(());

        #[test]
        fn every_nth_occasion() {
            let _one = REORDER_ARMED.lock().unwrap_or_else(|e| e.into_inner());
            fail::cfg(Bug::ReorderDelivery.name(), "return(3)").unwrap();
            OCCASIONS[Bug::ReorderDelivery as usize].store(0, Ordering::Relaxed);
            let fired: Vec<bool> = (0..6).map(|_| planted(Bug::ReorderDelivery)).collect();
            fail::remove(Bug::ReorderDelivery.name());
            assert_eq!(fired, [false, false, true, false, false, true]);
            assert!(!planted(Bug::ReorderDelivery));
        }

        #[test]
        fn reorder_delivery_swaps_two_entries_of_one_channel() {
            let _one = REORDER_ARMED.lock().unwrap_or_else(|e| e.into_inner());
            let (tx, mut rx) = broadcast::channel(8);
            let at = |index: u64, channel: &str| Committed {
                index,
                channel: channel.into(),
                event: crate::state_machine::ChannelEvent::Trimmed {
                    first: index,
                    last: index,
                },
            };
            fail::cfg(Bug::ReorderDelivery.name(), "return(1)").unwrap();
            OCCASIONS[Bug::ReorderDelivery as usize].store(0, Ordering::Relaxed);
            announce(&tx, at(1, "a"));
            // Another channel's entry passes; the held one waits for its own channel.
            announce(&tx, at(2, "b"));
            fail::remove(Bug::ReorderDelivery.name());
            announce(&tx, at(3, "a"));
            let seen: Vec<(u64, String)> = std::iter::from_fn(|| rx.try_recv().ok())
                .map(|c| (c.index, c.channel.to_string()))
                .collect();
            assert_eq!(
                seen,
                [(2, "b".into()), (3, "a".into()), (1, "a".into())],
                "channel a goes backwards"
            );
        }

        #[test]
        fn unknown_names_and_bad_actions_are_refused() {
            assert!(matches!(
                set("log.no_such_point", "return"),
                Err(FailpointError::Unknown { .. })
            ));
            assert!(matches!(
                set("net.send", "explode"),
                Err(FailpointError::BadActions { .. })
            ));
        }

        #[test]
        fn the_admin_command_wants_the_token() {
            let _ = ADMIN_TOKEN.set(Some("s3cret".into()));
            let args = |a: &[&str]| -> Vec<Bytes> {
                a.iter().map(|s| Bytes::from(s.to_string())).collect()
            };
            let wrong = admin_command(&args(&["raftbus.failpoint", "nope", "LIST"]), true).unwrap();
            assert!(matches!(wrong, Frame::Error(e) if e.starts_with("NOPERM")));
            let noauth =
                admin_command(&args(&["RAFTBUS.FAILPOINT", "s3cret", "LIST"]), false).unwrap();
            assert!(matches!(noauth, Frame::Error(e) if e.starts_with("NOAUTH")));
            let set = admin_command(
                &args(&[
                    "RAFTBUS.FAILPOINT",
                    "s3cret",
                    "SET",
                    "sm.snapshot_build",
                    "off",
                ]),
                true,
            )
            .unwrap();
            assert_eq!(set, Frame::ok());
            assert!(admin_command(&args(&["PING"]), true).is_none());
        }
    }
}
