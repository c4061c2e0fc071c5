//! raftbus-faults: network and process faults through OS primitives, each with a named
//! inverse, and a journal that can always undo what was applied. The crate knows nothing of
//! the harness: it is handed process ids and lab hosts.
//!
//! # Module map
//!
//! | module | what it is for |
//! |---|---|
//! | [`lab`] | [`Lab::enter`] turns the (single-threaded) process into the *lab*: a private network and mount namespace (rootless through a user namespace when not root) with bridge `rb0` 198.18.0.1/16; [`Lab::add_host`] gives each node its own namespace and address 198.18.1.N, kept by a holder process; [`Host::command`] runs a program there. [`probe`] reports what works without entering. Falls back to [`LabMode::Loopback`]. |
//! | [`net`] | [`NetControl`]: partitions ([`Partition`]: halves, isolate, majorities ring, bridge, one-way, client) and packet loss through one atomic nftables table `bridge raftbus` in the lab, bandwidth through `tc tbf`; [`DelayProxy`]: userspace TCP delay/jitter/blackhole stage (this kernel has no netem). |
//! | [`process`] | [`ProcessHandle`]: SIGKILL / SIGSTOP / SIGCONT / SIGTERM to a process group; [`process::state`] reads `/proc/<pid>/stat`; the [`Restarter`] callback through which the harness restarts a node. |
//! | [`journal`] | [`Journal`]: apply a [`Fault`], record it ([`JournalEntry`]: kind, targets, start/end), heal one or [`Journal::heal_all`]; heals on drop and, with [`heal_on_panic`], on panic. |
//! | [`disk`] | [`LazyMount`]: a FUSE filesystem over a node's data dir that keeps writes in memory until fsync (directory changes until the directory's fsync); [`DiskControl::drop_unsynced`] (power loss), [`DiskControl::tear_last_write`] (torn write); [`corrupt()`] damages a data file of a node that is down. |
//! | [`remote`] | Faults on remote hosts over SSH (`--hosts`): [`remote::Remote`] (the system OpenSSH client, multiplexed, strict host keys), [`remote::RemoteProcess`] (signals over SSH), [`remote::RemoteNet`] (a table `inet raftbus` per host, qdiscs with handle `5242:`), [`remote::CommandLog`] (every remote change journaled), [`remote::probe`] (kernel, disk, capabilities, RTT). [`NetControl::remote`] and [`ProcessHandle::remote`] hand them to the same [`Journal`]. |
//! | [`failpoint`] | [`FailpointAdmin`]: arms and disarms a named failpoint inside a failpoint build of the node through its `RAFTBUS.FAILPOINT` admin command. |
//! | [`kind`] | [`FaultKind`] and [`PartitionMode`]: the names used on the CLI and in scenario files, with `FromStr`, `Display` and serde. |
//! | [`error`] | [`Error`], the crate's `thiserror` type. |
//!
//! # Testing
//!
//! `tests/main.rs` has its own runner (libtest-mimic): a test that needs a lab re-executes
//! the test binary with `RAFTBUS_FAULTS_CHILD=<test>`, and that child calls [`Lab::enter`]
//! while still single-threaded. Missing capabilities (no namespaces, nft, tc) fail loudly;
//! `RAFTBUS_ALLOW_SKIP=1` turns them into printed skips. The rootless path is tested by
//! running a lab child as uid 65534 when the tests run as root.
//!
//! # Named inverses
//!
//! | fault | inverse |
//! |---|---|
//! | [`ProcessHandle::pause`] | [`ProcessHandle::resume`] |
//! | [`ProcessHandle::kill`], [`ProcessHandle::terminate`] | [`Restarter::restart`] |
//! | [`NetControl::partition`] | [`NetControl::repair`], [`NetControl::heal`] |
//! | [`NetControl::set_loss`] | [`NetControl::clear_loss`] |
//! | [`NetControl::limit_bandwidth`] | [`NetControl::clear_bandwidth`] |
//! | [`NetControl::set_delay`] (netem kernels only) | [`NetControl::clear_delay`] |
//! | [`Fault::PowerLoss`] (kill + [`DiskControl::drop_unsynced`] or [`DiskControl::tear_last_write`]) | [`Restarter::restart`] |
//! | [`Fault::Corrupt`] (kill + [`corrupt()`]) | [`Restarter::restart`] (the node must detect the damage) |
//! | [`ProxyControl::set_delay`], [`ProxyControl::set_blackhole`] | [`ProxyControl::clear`] |
//! | [`FailpointAdmin::arm`] | [`FailpointAdmin::disarm`] |
//! | everything in a [`Journal`] | [`Journal::heal_all`]; [`Lab::teardown`] removes all network faults |
//!
//! # Usage
//!
//! ```no_run
//! use raftbus_faults::{Fault, Journal, Lab, Partition, ProcessHandle};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // First thing, before any thread or runtime exists.
//!     let lab = Lab::enter();
//!     let n1 = lab.add_host("n1")?;
//!     let n2 = lab.add_host("n2")?;
//!     let child = n1.command("sleep")?.arg("100").spawn()?;
//!     let mut journal = Journal::new(lab.mode().is_namespaced().then(|| lab.net()));
//!     journal.apply(Fault::Pause { host: "n1".into(), process: ProcessHandle::group(child.id()) })?;
//!     journal.apply(Fault::Partition {
//!         mode: None,
//!         partition: Partition::isolate(n1.name(), &[n2.name()]),
//!     })?;
//!     for r in journal.heal_all() {
//!         r?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Threads and parent-death signals
//!
//! Holders and host commands get `PR_SET_PDEATHSIG(SIGKILL)`, which Linux ties to the
//! *thread* that spawned them: spawn from the main thread or a runtime worker, never from a
//! short-lived thread (tokio's `spawn_blocking` pool), or the child is killed when that
//! thread retires.

pub mod disk;
pub mod error;
pub mod failpoint;
pub mod journal;
pub mod kind;
pub mod lab;
pub mod net;
pub mod process;
pub mod remote;
mod sys;

pub use disk::{
    corrupt, corrupt_seeded, CorruptMode, CorruptReport, DiskControl, DropReport, LazyMount,
};
pub use error::{Error, Result};
pub use failpoint::FailpointAdmin;
pub use journal::{heal_on_panic, Fault, FaultId, Journal, JournalEntry};
pub use kind::{FaultKind, PartitionMode};
pub use lab::{probe, Capabilities, Host, Lab, LabMode, NamespaceSupport};
pub use net::{
    Bandwidth, DelayProxy, Endpoint, NetControl, Partition, PartitionId, ProxyControl,
    ProxySettings,
};
pub use process::{ProcState, ProcessHandle, Restarter};
