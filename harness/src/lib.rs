//! raftbus: the harness that launches the bus or Redis, loads it, faults it, checks it.
//!
//! - [`cli`] — the command line (clap derive); `main.rs` only parses and calls [`run`].
//! - [`run`] — what each command does, and the exit codes.
//! - [`scenario`] — the experiment as validated data (`scenario.toml`).
//! - [`target`] — server processes: the bus cluster or Redis, in the lab, on loopback, or on
//!   inventory hosts over SSH.
//! - [`hosts`] — `--hosts hosts.toml`: the inventory, connecting over SSH, heal after a
//!   crash, `raftbus hosts check|heal|lab`.
//! - [`workload`] — open-loop publishers, subscribers, drain and final stream reads.
//! - [`record`] — the history writer, latency histograms, per-second counters.
//! - [`chaos`] — the nemesis: seeded or explicit fault schedules, role targets, journal/heal.
//! - [`check`] — the history checkers: one invariant per file, counts and examples.
//! - [`history`] — the operation history format (`history.jsonl`).
//! - [`payload`] — message payloads with id and checksum.
//! - [`nightly`] — `raftbus nightly`: suites in a time budget, reruns, JUnit, latest.md, trend.
//! - [`sweep`] — `raftbus sweep`: objectives, step judgement and capacity of a sweep.
//! - [`selftest`] — `raftbus selftest`: planted bugs in a failpoint build of the node, each
//!   of which the checkers must report as the right violation.
pub mod chaos;
pub mod check;
pub mod cli;
pub mod history;
pub mod hosts;
pub mod nightly;
pub mod payload;
pub mod record;
pub mod run;
pub mod scenario;
pub mod selftest;
pub mod sweep;
pub mod target;
pub mod workload;
