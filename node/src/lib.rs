//! raftbus-node: a message bus whose nodes share one Raft-replicated log and speak RESP.
//!
//! - [`types`] — the Raft type configuration: [`types::Request`] and [`types::Response`].
//! - [`resp`] — RESP2/RESP3 frames: an incremental parser with size limits, and encoding.
//! - [`command`] — client commands parsed from frames, with Redis-style arity errors.
//! - [`log_store`] — the durable Raft log: segment files, checksums, group commit, vote file.
pub mod command;
pub mod log_store;
pub mod resp;
pub mod types;
