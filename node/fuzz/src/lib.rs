//! The RESP modules of raftbus-node, compiled on their own for fuzzing.
#[path = "../../src/command.rs"]
pub mod command;
#[path = "../../src/resp.rs"]
pub mod resp;
