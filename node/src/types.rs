//! The Raft type configuration: what a log entry carries and what applying it returns.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// Node ids are small integers given on the command line (`--id`).
pub type NodeId = u64;

/// One message to append to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    pub channel: String,
    /// For XADD: the field/value pairs; for PUBLISH: a single `("message", payload)` pair.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// XADD MAXLEN: trim the channel to at most this many entries after appending.
    pub max_len: Option<u64>,
}

impl Append {
    /// Payload bytes: channel name plus every field and value.
    pub fn size(&self) -> usize {
        self.channel.len()
            + self
                .fields
                .iter()
                .map(|(f, v)| f.len() + v.len())
                .sum::<usize>()
    }
}

/// A replicated command. Only appends go through Raft; reads are served locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Append one message to a channel's stream (PUBLISH and XADD both end here).
    Append {
        channel: String,
        /// For XADD: the field/value pairs; for PUBLISH: a single `("message", payload)` pair.
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        /// XADD MAXLEN: trim the channel to at most this many entries after appending.
        max_len: Option<u64>,
    },
    /// Many client appends in one log entry: they share one replication round and one
    /// fsync (group commit), and get consecutive offsets in this order.
    Batch(Vec<Append>),
    /// A transaction (MULTI/EXEC) or one command beyond appends (consumer groups, XTRIM,
    /// XDEL, DEL): applied in one go, in order, with the proposer's clock (see
    /// [`crate::transaction`]).
    Exec(crate::transaction::Exec),
}

/// The result of applying a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The entry's offset within its channel (1-based, monotonic, never reused).
    Appended { offset: u64 },
    /// One offset per append of a [`Request::Batch`], in order.
    Batch(Vec<u64>),
    /// One reply per command of a [`Request::Exec`], in order.
    Exec(Vec<crate::transaction::Value>),
    /// Membership and blank entries apply to nothing.
    None,
}

openraft::declare_raft_types!(
    /// Type configuration of the raftbus Raft group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
