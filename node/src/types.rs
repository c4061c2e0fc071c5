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
    /// Shared: every copy of the append (proposal, log cache, AppendEntries, the applied
    /// stream entry) holds the same bytes.
    #[serde(with = "crate::wire_bytes::shared_pairs")]
    pub fields: crate::state_machine::Fields,
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
        #[serde(with = "crate::wire_bytes::pairs")]
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
        AsyncRuntime = openraft::TokioRuntime,
);

/// The leader part of a log id and of a vote: `(term, node id)`, several leaders per term
/// allowed (openraft's default "advanced" leader id).
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, NodeId>;
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type EntryPayload = openraft::EntryPayload<Request, NodeId, openraft::BasicNode>;
pub type LogId = openraft::LogId<LeaderId>;
pub type Vote = openraft::Vote<LeaderId>;
pub type StoredMembership = openraft::StoredMembership<LeaderId, NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<LeaderId, NodeId, openraft::BasicNode>;
/// A snapshot whose data is the serialized state, in memory.
pub type Snapshot = openraft::Snapshot<LeaderId, NodeId, openraft::BasicNode, SnapshotData>;
pub type SnapshotData = Cursor<Vec<u8>>;

/// Short form for openraft's logs: never the payload bytes.
impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Append { channel, .. } => write!(f, "append to {channel}"),
            Request::Batch(appends) => write!(f, "batch of {} appends", appends.len()),
            Request::Exec(exec) => write!(f, "exec of {} commands", exec.ops.len()),
        }
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Appended { offset } => write!(f, "appended at {offset}"),
            Response::Batch(offsets) => write!(f, "batch of {} appended", offsets.len()),
            Response::Exec(replies) => write!(f, "exec of {} replies", replies.len()),
            Response::None => f.write_str("none"),
        }
    }
}
