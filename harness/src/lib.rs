//! raftbus: the harness that launches the bus or Redis, loads it, faults it, checks it.
//!
//! - [`history`] — the operation history format (`history.jsonl`).
//! - [`payload`] — message payloads with id and checksum.
pub mod history;
pub mod payload;
