//! raftbus-faults: network and process faults through OS primitives.
