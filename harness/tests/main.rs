//! Integration tests: the real `raftbus` binary against real `redis-server` processes.
//!
//! One test binary; the modules live in `tests/main/` so cargo does not build each as
//! its own test target.

#[path = "main/bench.rs"]
mod bench;
#[path = "main/bus.rs"]
mod bus;
#[path = "main/chaos.rs"]
mod chaos;
#[path = "main/check.rs"]
mod check;
#[path = "main/disk.rs"]
mod disk;
#[path = "main/errors.rs"]
mod errors;
#[path = "main/failover.rs"]
mod failover;
#[path = "main/hosts.rs"]
mod hosts;
#[path = "main/nightly.rs"]
mod nightly;
#[path = "main/queue.rs"]
mod queue;
#[path = "main/selftest.rs"]
mod selftest;
#[path = "main/sweep.rs"]
mod sweep;
#[path = "main/target.rs"]
mod target;
#[path = "main/util.rs"]
mod util;
