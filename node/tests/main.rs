//! Integration tests that spawn real `raftbus-node` processes on loopback.
mod bad_input;
mod basics;
mod clients;
mod compat;
mod crash;
mod failpoints;
mod groups;
mod reads;
mod snapshot;
mod subscribe;
mod util;
