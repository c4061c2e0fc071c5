//! raftbus-node: a message bus whose nodes share one Raft-replicated log and speak RESP.
//!
//! Start at [`node::run`]. The pieces, from the wire inwards:
//! - [`server`] — client connections: RESP in, commands executed, replies and pushes out.
//! - [`resp`] — RESP2/RESP3 frames: an incremental parser with size limits, and encoding.
//! - [`command`] — client commands parsed from frames, with Redis-style arity errors.
//! - [`bus`] — what connections call: replicated appends (forwarded to the leader from a
//!   follower) and local reads.
//! - [`read_index`] — the read index for linearizable reads and subscriptions, served
//!   only after a quorum confirmed the leader.
//! - [`network`] — Raft RPC and write forwarding between nodes over TCP, with the cluster
//!   secret handshake.
//! - [`transaction`] — MULTI/EXEC and every write beyond plain appends (XTRIM, XDEL, DEL,
//!   consumer groups) as one replicated entry, and the reads that share their logic.
//! - [`groups`] — consumer groups: cursors, pending entries lists, XREADGROUP, XACK,
//!   XCLAIM, XAUTOCLAIM, XPENDING, XINFO.
//! - [`state_machine`] — the applied state: a stream per channel, retention, snapshots,
//!   fan-out to subscribers.
//! - [`log_store`] — the durable Raft log: segment files, checksums, group commit, vote file.
//! - [`wire_bytes`] — byte strings encoded as such (serde's default is one call per byte).
//! - [`rates`] — instantaneous rates of counters for INFO (fsyncs and entries per second).
//! - [`background`] — bulk work (snapshots) on a lower-priority thread.
//! - [`snapshot_schedule`] — when each node snapshots: in turns, not all at once.
//! - [`durable_file`] — atomic whole-file replacement (write, fsync, rename, fsync dir).
//! - [`config`] — flags plus the validated TOML settings file.
//! - [`node`] — wiring and the one-time cluster bootstrap.
//! - [`shutdown`] — shutdown as a value.
//! - [`failpoint`] — named failpoints and planted bugs for testing the harness (cargo
//!   feature `failpoints` only; the default build has none).
//! - [`types`] — the Raft type configuration.
pub mod background;
pub mod bus;
pub mod command;
pub mod config;
pub mod durable_file;
pub mod failpoint;
pub mod groups;
pub mod log_store;
pub mod network;
pub mod node;
pub mod rates;
pub mod read_index;
pub mod resp;
pub mod server;
pub mod shutdown;
pub mod snapshot_schedule;
pub mod state_machine;
pub mod transaction;
pub mod types;
pub mod wire_bytes;
