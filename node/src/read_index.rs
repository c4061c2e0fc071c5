//! The read index, and the one invariant it rests on: a leader serves it only after a
//! quorum of voters, asked after the read began, said it still holds their vote.
//!
//! openraft's own ReadIndex (`get_read_log_id`) counts the acknowledgements of its
//! replication stream as proof of leadership, stamped with the time a request was sent.
//! In 0.10.0-alpha.37 an answer to one AppendEntries drains every later queued request that
//! ends at the same log id, and is credited with the newest one's send time
//! (`InflightAppendQueue::drain_acked`). An entry-less request (a commit-index update) sent
//! after a read began thus "confirms" the leader with an answer the follower sent before
//! that. A leader whose followers had just been stopped served a linearizable read that way
//! (CI, test `reads::a_cut_off_leader_refuses_linearizable_reads`). So the read index takes
//! openraft's answer for the index only, and confirms the leadership itself: one
//! [`PeerRequest::ConfirmLeader`] to every other voter, sent once the read began (side by
//! side with openraft's round), for the leader id the index then turns out to be under.
//!
//! Why that suffices: a voter that answers "my vote is for you, term T" has never voted in a
//! later term (votes only grow). If a majority answers so after the read began, no leader of
//! a later term existed before then (it needs a majority, and two majorities share a
//! voter). So every write acknowledged before the read began was committed in term T or
//! earlier, and lies at or below this leader's read index (its commit index, at least its
//! first entry of term T).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::async_runtime::WatchReceiver;

use crate::network::{PeerRequest, PeerResponse, Peers};
use crate::types::{LeaderId, NodeId, Raft};

/// How long a leader waits for the voters' confirmations. A quorum that has not answered
/// by then is not counted as confirming; the reader retries until its own deadline.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// The read index on this node as leader: its commit index (at least its first entry of
/// the term), and a quorum of voters that still hold this leader's vote, asked after the
/// read began (no lease is trusted). The two run side by side, one round trip in all; the
/// confirmation counts only if it was for the leader id the index was taken under. Fails
/// when this node is not, or no longer, the leader.
pub(crate) async fn on_leader(raft: &Raft, peers: &Peers) -> Result<u64, String> {
    let believed = raft.metrics().borrow_watched().vote.leader_id;
    let index = async {
        raft.get_read_log_id(openraft::ReadPolicy::ReadIndex)
            .await
            .map_err(|e| e.to_string())
    };
    let (read, confirmed) = tokio::join!(index, confirm(raft, peers, believed));
    let (read, _) = read?;
    confirmed?;
    // The read index is this leader's own entry (its first of the term or a later one),
    // so its leader id is the one this leader held when it took the index.
    if *read.committed_leader_id() != believed {
        return Err(format!(
            "leadership changed while the read index was taken ({believed} confirmed, index under {})",
            read.committed_leader_id()
        ));
    }
    Ok(read.index())
}

/// Asks every other voter whether it still holds `leader`'s vote; succeeds once those that
/// do, with this node, form a quorum of every configuration (both halves of a joint one).
async fn confirm(raft: &Raft, peers: &Peers, leader: LeaderId) -> Result<(), String> {
    let (me, configs) = {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        (
            m.id,
            m.membership_config.membership().get_joint_config().clone(),
        )
    };
    let mut confirmed = BTreeSet::from([me]);
    if has_quorum(&configs, &confirmed) {
        return Ok(());
    }
    let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
    let mut answers: FuturesUnordered<_> = voters
        .into_iter()
        .filter(|id| *id != me)
        .map(|id| async move {
            let Some(peer) = peers.get(id) else {
                return (id, Err(format!("voter {id} is not a known peer")));
            };
            let reply = peer
                .call(PeerRequest::ConfirmLeader(leader), CONFIRM_TIMEOUT)
                .await;
            let answer = match reply {
                Ok(PeerResponse::ConfirmLeader(held)) => held,
                Ok(_) => Err(format!("unexpected reply from {id}")),
                Err(e) => Err(e.to_string()),
            };
            (id, answer)
        })
        .collect();
    let mut refusals = Vec::new();
    while let Some((id, answer)) = answers.next().await {
        match answer {
            Ok(true) => {
                confirmed.insert(id);
                if has_quorum(&configs, &confirmed) {
                    return Ok(());
                }
            }
            Ok(false) => refusals.push(format!("node {id} follows another leader")),
            Err(e) => refusals.push(e),
        }
    }
    Err(format!(
        "leadership not confirmed by a quorum ({})",
        refusals.join("; ")
    ))
}

/// A voter's answer to [`PeerRequest::ConfirmLeader`]: whether its vote is still for
/// `leader` (the same term and node). Read inside Raft, so it is never behind a vote this
/// node has granted.
pub(crate) async fn holds_vote_for(raft: &Raft, leader: LeaderId) -> Result<bool, String> {
    raft.with_raft_state(move |state| state.vote_ref().leader_id == leader)
        .await
        .map_err(|e| e.to_string())
}

/// Whether `confirmed` holds a majority of every configuration in `configs`.
fn has_quorum(configs: &[BTreeSet<NodeId>], confirmed: &BTreeSet<NodeId>) -> bool {
    configs.iter().all(|voters| {
        let present = voters.intersection(confirmed).count();
        present * 2 > voters.len()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_majority_of_three_is_two() {
        let configs = [set(&[1, 2, 3])];
        assert!(!has_quorum(&configs, &set(&[1])));
        assert!(has_quorum(&configs, &set(&[1, 3])));
        assert!(has_quorum(&configs, &set(&[1, 2, 3])));
    }

    #[test]
    fn half_of_an_even_configuration_is_not_a_majority() {
        let configs = [set(&[1, 2, 3, 4])];
        assert!(!has_quorum(&configs, &set(&[1, 2])));
        assert!(has_quorum(&configs, &set(&[1, 2, 4])));
    }

    #[test]
    fn a_joint_configuration_needs_a_majority_of_each_half() {
        let configs = [set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!has_quorum(&configs, &set(&[1, 2])), "old half only");
        assert!(!has_quorum(&configs, &set(&[3, 4, 5])), "new half only");
        assert!(has_quorum(&configs, &set(&[1, 3, 4])));
    }

    #[test]
    fn nodes_outside_the_configuration_do_not_count() {
        let configs = [set(&[1, 2, 3])];
        assert!(!has_quorum(&configs, &set(&[1, 7, 8])));
    }

    #[test]
    fn a_single_voter_confirms_itself() {
        assert!(has_quorum(&[set(&[1])], &set(&[1])));
    }
}
