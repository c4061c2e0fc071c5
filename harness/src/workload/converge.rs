//! Before the final reads: wait until the replicas hold the same stream ends.
//!
//! A node restarted by the last fault, or a replica a little behind, is still catching up
//! when the load stops; reading it at once would report a lag as divergence. So the final
//! reads wait until every node answers with the same last entry id on every channel. They
//! stop waiting when the ends have not moved for [`QUIET`] (a true divergence, or a node
//! that stays down, does not resolve by waiting) or at the timeout; the divergence check
//! then judges what the nodes hold, and the run's notes say that they had not converged.
//! The ends last read are what the subscribers then drain to.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::resp::EntryId;

/// Ends unchanged for this long, without agreement: waiting longer will not help.
pub const QUIET: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);

/// What each node answered for its stream ends: `None` when it could not be read.
pub type Ends = Vec<(String, Option<Vec<EntryId>>)>;

/// Per channel, the furthest end any node answered (`0-0` where none did).
pub fn furthest(ends: &Ends, channels: usize) -> Vec<EntryId> {
    let mut out = vec![EntryId::default(); channels];
    for ids in ends.iter().filter_map(|(_, e)| e.as_ref()) {
        for (o, id) in out.iter_mut().zip(ids) {
            *o = (*o).max(*id);
        }
    }
    out
}

/// Whether every node answered and all answers are the same.
fn agree(ends: &Ends) -> bool {
    let mut answers = ends.iter().map(|(_, e)| e.as_ref());
    match answers.next() {
        Some(Some(first)) => answers.all(|e| e == Some(first)),
        Some(None) => false,
        None => true,
    }
}

/// Why the nodes disagree, for the run's notes.
fn describe(ends: &Ends) -> String {
    ends.iter()
        .map(|(node, e)| match e {
            None => format!("{node}: unreadable"),
            Some(ids) => format!(
                "{node}: {}",
                ids.iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Polls every node's stream ends until they agree; returns the ends last read and how
/// long that took, or `Err` naming the last disagreement (after [`QUIET`] without
/// change, or at `timeout`).
pub async fn wait(
    endpoints: &[(String, SocketAddr)],
    channels: usize,
    timeout: Duration,
) -> (Ends, Result<Duration, String>) {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last: Option<Ends> = None;
    let mut changed_at = start;
    loop {
        let mut ends = Ends::with_capacity(endpoints.len());
        for (node, addr) in endpoints {
            let read = match super::admin(*addr).await {
                Ok(mut conn) => super::last_ids(&mut conn, channels).await.ok(),
                Err(_) => None,
            };
            ends.push((node.clone(), read));
        }
        if agree(&ends) {
            return (ends, Ok(start.elapsed()));
        }
        let now = Instant::now();
        if last.as_ref() != Some(&ends) {
            changed_at = now;
        }
        if now.duration_since(changed_at) >= QUIET || now >= deadline {
            let why = format!(
                "stream ends still differ after {:.1}s: {}",
                start.elapsed().as_secs_f64(),
                describe(&ends)
            );
            return (ends, Err(why));
        }
        last = Some(ends);
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> EntryId {
        EntryId(ms, 0)
    }

    #[test]
    fn nodes_agree_only_when_every_one_answered_the_same() {
        let same: Ends = vec![
            ("n1".into(), Some(vec![id(5)])),
            ("n2".into(), Some(vec![id(5)])),
        ];
        assert!(agree(&same));
        let behind: Ends = vec![
            ("n1".into(), Some(vec![id(5)])),
            ("n2".into(), Some(vec![id(4)])),
        ];
        assert!(!agree(&behind));
        let down: Ends = vec![("n1".into(), Some(vec![id(5)])), ("n2".into(), None)];
        assert!(!agree(&down));
        let first_down: Ends = vec![("n1".into(), None), ("n2".into(), None)];
        assert!(!agree(&first_down));
        assert!(describe(&down).contains("n2: unreadable"));
    }

    #[test]
    fn the_furthest_end_of_each_channel_over_the_nodes_that_answered() {
        let ends: Ends = vec![
            ("n1".into(), Some(vec![id(5), id(2)])),
            ("n2".into(), None),
            ("n3".into(), Some(vec![id(4), id(7)])),
        ];
        assert_eq!(furthest(&ends, 2), vec![id(5), id(7)]);
        assert_eq!(furthest(&vec![("n1".into(), None)], 2), vec![id(0); 2]);
    }
}
