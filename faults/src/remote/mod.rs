//! Faults on remote hosts, over SSH: the same catalogue and the same named inverses as in
//! the lab, for `raftbus ... --hosts hosts.toml`.
//!
//! - [`ssh`] — [`Remote`]: one host through the system OpenSSH client (the `openssh` crate,
//!   a multiplexed master per host), strict host-key checking, no passwords.
//! - [`log`] — [`CommandLog`]: every command that changes a host, journaled locally before
//!   and after it runs.
//! - [`process`] — [`RemoteProcess`]: signals to a remote process group (kill, pause/resume,
//!   terminate), only while its start time still matches.
//! - [`net`] — [`RemoteNet`]: partitions and loss through a table `inet raftbus` per host,
//!   bandwidth (`tbf`) and delay (`netem`, where the kernel has it) as a root qdisc with
//!   raftbus's handle `5242:`.
//! - [`probe`] — [`HostFacts`]: kernel, disk, the control host's address, which fault tools
//!   work; [`probe::rtt_ms`] between hosts.
//!
//! | fault | inverse |
//! |---|---|
//! | [`RemoteProcess::signal`] `STOP` | `CONT` |
//! | [`RemoteProcess::signal`] `KILL`, `TERM` | the harness restarts the server remotely |
//! | [`RemoteNet::partition`] | [`RemoteNet::repair`], [`RemoteNet::heal`] |
//! | [`RemoteNet::set_loss`] | [`RemoteNet::clear_loss`] |
//! | [`RemoteNet::limit_bandwidth`] | [`RemoteNet::clear_bandwidth`] |
//! | [`RemoteNet::set_delay`] (netem hosts only) | [`RemoteNet::clear_delay`] |
//! | all of them | [`RemoteNet::clear_all`]; after a crash, [`net::delete_table_script`] and [`net::clear_qdisc_script`] |
//!
//! - [`disk`] — [`RemoteDisk`]: the lazy filesystem served on the host by `raftbus lazyfs
//!   serve`, reached through `raftbus lazyfs ctl`, behind the same [`crate::DiskControl`]
//!   (power-loss, torn-write, corrupt) as in the lab; hosts need `/dev/fuse` and root.

pub mod disk;
pub mod log;
pub mod net;
pub mod probe;
pub mod process;
pub mod ssh;

pub use disk::RemoteDisk;
pub use log::{CommandLog, CommandRecord};
pub use net::{RemoteNet, RemoteNetCaps, RemoteNode};
pub use probe::HostFacts;
pub use process::RemoteProcess;
pub use ssh::{close_stale_masters, quote, Remote, SshTarget};
