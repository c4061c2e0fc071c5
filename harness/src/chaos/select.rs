//! Target selectors by role, resolved at the moment a fault starts.
//!
//! The bus: the leader is found with `INFO replication` (`role:leader`, `leader_id:`) on
//! every node that answers. Redis: the primary is the one a majority of the Sentinels
//! name (without Sentinel: the first server), replicas the other servers, and `sentinel`
//! picks one Sentinel.
//! Random choices (which follower, which minority) use the fault's own seeded RNG over the
//! sorted candidates, so the same seed picks the same role-relative targets.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use raftbus_reports::model::Target;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::ChaosError;
use crate::target::bus::parse_raft_info;
use crate::target::info_field;

/// Which nodes a fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Selector {
    /// The bus leader at fault start (Redis: the primary).
    Leader,
    /// One node that is not the leader (Redis: a replica).
    Follower,
    /// `(n-1)/2` nodes, at least one.
    Minority,
    /// `n/2+1` nodes.
    Majority,
    /// Every node.
    All,
    /// Redis: the primary (the bus: the leader).
    Primary,
    /// Redis: one replica (the bus: a follower).
    Replica,
    /// Redis: one Sentinel.
    Sentinel,
    /// These nodes by name.
    Named(Vec<String>),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Selector::Leader => "leader",
            Selector::Follower => "follower",
            Selector::Minority => "minority",
            Selector::Majority => "majority",
            Selector::All => "all",
            Selector::Primary => "primary",
            Selector::Replica => "replica",
            Selector::Sentinel => "sentinel",
            Selector::Named(names) => return f.write_str(&names.join(",")),
        };
        f.write_str(s)
    }
}

impl FromStr for Selector {
    type Err = ChaosError;

    fn from_str(s: &str) -> Result<Self, ChaosError> {
        Ok(match s.trim() {
            "leader" => Selector::Leader,
            "follower" => Selector::Follower,
            "minority" => Selector::Minority,
            "majority" => Selector::Majority,
            "all" => Selector::All,
            "primary" => Selector::Primary,
            "replica" => Selector::Replica,
            "sentinel" => Selector::Sentinel,
            other => {
                let names: Vec<String> = other
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                let valid = !names.is_empty()
                    && names.iter().all(|n| {
                        n.len() > 1
                            && (n.starts_with('n') || n.starts_with('s'))
                            && n[1..].bytes().all(|b| b.is_ascii_digit())
                    });
                if !valid {
                    return Err(ChaosError::BadSelector(other.to_string()));
                }
                Selector::Named(names)
            }
        })
    }
}

impl TryFrom<String> for Selector {
    type Error = ChaosError;

    fn try_from(s: String) -> Result<Self, ChaosError> {
        s.parse()
    }
}

impl From<Selector> for String {
    fn from(s: Selector) -> String {
        s.to_string()
    }
}

/// Who is who at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// Every node, in index order (`n1`, `n2`, ...).
    pub nodes: Vec<String>,
    /// The bus leader (Redis: the primary); `None` when no node claims leadership.
    pub leader: Option<String>,
    /// Redis Sentinels (`s1`..), empty without Sentinel.
    pub sentinels: Vec<String>,
}

impl Roles {
    fn others(&self, leader: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.as_str() != leader)
            .cloned()
            .collect()
    }

    fn pick<R: Rng + ?Sized>(list: &[String], rng: &mut R) -> Option<String> {
        list.choose(rng).cloned()
    }

    /// These roles without the nodes in `gone` (those that refused to start after earlier
    /// damage): every fault then chooses among nodes that still run.
    pub fn without(&self, gone: &std::collections::BTreeSet<String>) -> Roles {
        Roles {
            nodes: self
                .nodes
                .iter()
                .filter(|n| !gone.contains(*n))
                .cloned()
                .collect(),
            leader: self.leader.clone().filter(|l| !gone.contains(l)),
            sentinels: self.sentinels.clone(),
        }
    }

    /// The leader, or (when there is none) a node chosen by `rng`.
    pub fn leader_or_any<R: Rng + ?Sized>(&self, rng: &mut R) -> String {
        self.leader
            .clone()
            .or_else(|| Self::pick(&self.nodes, rng))
            .unwrap_or_else(|| "n1".into())
    }

    /// The nodes `selector` names now. Never empty.
    pub fn resolve<R: Rng + ?Sized>(
        &self,
        selector: &Selector,
        rng: &mut R,
    ) -> Result<Vec<String>, ChaosError> {
        let fail = |reason: String| ChaosError::Resolve {
            selector: selector.to_string(),
            reason,
        };
        let n = self.nodes.len();
        if n == 0 {
            return Err(fail("no nodes".into()));
        }
        let mut shuffled = self.nodes.clone();
        let out = match selector {
            Selector::Leader | Selector::Primary => vec![self.leader_or_any(rng)],
            Selector::Follower | Selector::Replica => {
                let leader = self.leader_or_any(rng);
                let others = self.others(&leader);
                match Self::pick(&others, rng) {
                    Some(f) => vec![f],
                    None => return Err(fail(format!("{leader} is the only node"))),
                }
            }
            Selector::Minority => {
                shuffled.shuffle(rng);
                shuffled.truncate(((n - 1) / 2).max(1));
                shuffled
            }
            Selector::Majority => {
                shuffled.shuffle(rng);
                shuffled.truncate(n / 2 + 1);
                shuffled
            }
            Selector::All => shuffled,
            Selector::Sentinel => match Self::pick(&self.sentinels, rng) {
                Some(s) => vec![s],
                None => return Err(fail("this run has no Sentinels".into())),
            },
            Selector::Named(names) => {
                if let Some(unknown) = names
                    .iter()
                    .find(|x| !self.nodes.contains(x) && !self.sentinels.contains(x))
                {
                    return Err(fail(format!(
                        "{unknown} is not one of {}",
                        self.nodes.join(",")
                    )));
                }
                names.clone()
            }
        };
        let mut out = out;
        out.sort_by_key(|name| node_index(name));
        out.dedup();
        Ok(out)
    }
}

/// `n3` → 3 (unknown names sort last).
pub fn node_index(name: &str) -> usize {
    name.strip_prefix('n')
        .and_then(|i| i.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Asks every node who leads, within `timeout` per node. Nodes that do not answer (killed,
/// paused, cut off) are skipped. Among nodes that claim `role:leader`, the one with the
/// highest term wins; with none, the leader most answering nodes name.
pub async fn find_roles(
    target: Target,
    endpoints: &[(String, SocketAddr)],
    sentinels: &[(String, SocketAddr)],
    timeout: Duration,
) -> Roles {
    let nodes: Vec<String> = endpoints.iter().map(|(n, _)| n.clone()).collect();
    let sentinel_names: Vec<String> = sentinels.iter().map(|(n, _)| n.clone()).collect();
    if target == Target::Redis {
        let leader = if sentinels.is_empty() {
            nodes.first().cloned()
        } else {
            let addrs: Vec<SocketAddr> = sentinels.iter().map(|(_, a)| *a).collect();
            crate::workload::discover::majority_primary(&addrs, timeout)
                .await
                .and_then(|p| endpoints.iter().find(|(_, a)| *a == p))
                .map(|(n, _)| n.clone())
        };
        return Roles {
            leader,
            nodes,
            sentinels: sentinel_names,
        };
    }
    let answers = futures::future::join_all(endpoints.iter().map(|(name, addr)| async move {
        let text = tokio::time::timeout(timeout, crate::target::info(name, *addr, "replication"))
            .await
            .ok()?
            .ok()?;
        Some((name.clone(), text))
    }))
    .await;
    let mut claims: Vec<(u64, String)> = Vec::new();
    let mut votes: std::collections::BTreeMap<u64, usize> = Default::default();
    for (name, text) in answers.into_iter().flatten() {
        let ri = parse_raft_info(&text);
        if ri.is_leader || info_field(&text, "role") == Some("leader") {
            claims.push((ri.term.unwrap_or(0), name.clone()));
        }
        if let Some(id) = ri.leader_id {
            *votes.entry(id).or_default() += 1;
        }
    }
    claims.sort();
    let leader = claims.pop().map(|(_, name)| name).or_else(|| {
        votes
            .iter()
            .max_by_key(|(id, count)| (**count, std::cmp::Reverse(**id)))
            .map(|(id, _)| format!("n{id}"))
            .filter(|n| nodes.contains(n))
    });
    Roles {
        nodes,
        leader,
        sentinels: sentinel_names,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn roles(n: usize, leader: Option<&str>) -> Roles {
        Roles {
            nodes: (1..=n).map(|i| format!("n{i}")).collect(),
            leader: leader.map(str::to_string),
            sentinels: Vec::new(),
        }
    }

    #[test]
    fn selectors_parse_and_print() {
        for s in [
            "leader", "follower", "minority", "majority", "all", "primary", "replica", "sentinel",
            "n1,n3", "s2",
        ] {
            let sel: Selector = s.parse().unwrap();
            assert_eq!(sel.to_string(), s);
        }
        assert!("n1,bogus".parse::<Selector>().is_err());
        assert!("".parse::<Selector>().is_err());
        assert!("n".parse::<Selector>().is_err());
    }

    #[test]
    fn roles_resolve_relative_to_the_leader() {
        let r = roles(5, Some("n3"));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(r.resolve(&Selector::Leader, &mut rng).unwrap(), ["n3"]);
        for _ in 0..20 {
            let f = r.resolve(&Selector::Follower, &mut rng).unwrap();
            assert_eq!(f.len(), 1);
            assert_ne!(f[0], "n3");
        }
        assert_eq!(r.resolve(&Selector::Minority, &mut rng).unwrap().len(), 2);
        assert_eq!(r.resolve(&Selector::Majority, &mut rng).unwrap().len(), 3);
        assert_eq!(r.resolve(&Selector::All, &mut rng).unwrap().len(), 5);
        let named = Selector::Named(vec!["n4".into(), "n2".into()]);
        assert_eq!(r.resolve(&named, &mut rng).unwrap(), ["n2", "n4"]);
        let unknown = Selector::Named(vec!["n9".into()]);
        assert!(r.resolve(&unknown, &mut rng).is_err());
        assert!(r.resolve(&Selector::Sentinel, &mut rng).is_err());
        let with_sentinels = Roles {
            sentinels: vec!["s1".into(), "s2".into(), "s3".into()],
            ..r.clone()
        };
        let s = with_sentinels
            .resolve(&Selector::Sentinel, &mut rng)
            .unwrap();
        assert!(s.len() == 1 && s[0].starts_with('s'), "{s:?}");
        // A single node has no follower.
        assert!(roles(1, Some("n1"))
            .resolve(&Selector::Follower, &mut rng)
            .is_err());
    }

    #[test]
    fn same_seed_same_choices() {
        let r = roles(5, Some("n2"));
        let pick = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..5)
                .map(|_| r.resolve(&Selector::Minority, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(7), pick(7));
        assert_ne!(pick(7), pick(8));
    }

    #[test]
    fn nodes_that_are_gone_are_never_chosen() {
        let gone: std::collections::BTreeSet<String> = ["n2".to_string()].into();
        let live = roles(3, Some("n1")).without(&gone);
        assert_eq!(live.nodes, ["n1", "n3"]);
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for sel in [
                Selector::Follower,
                Selector::Minority,
                Selector::Majority,
                Selector::All,
            ] {
                let chosen = live.resolve(&sel, &mut rng).unwrap();
                assert!(!chosen.contains(&"n2".to_string()), "{sel}: {chosen:?}");
            }
            assert_eq!(live.resolve(&Selector::Follower, &mut rng).unwrap(), ["n3"]);
        }
        // A gone node is never the leader either.
        assert_eq!(roles(3, Some("n2")).without(&gone).leader, None);
    }

    #[test]
    fn no_leader_falls_back_to_a_seeded_node() {
        let r = roles(3, None);
        let mut a = ChaCha8Rng::seed_from_u64(3);
        let mut b = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(
            r.resolve(&Selector::Leader, &mut a).unwrap(),
            r.resolve(&Selector::Leader, &mut b).unwrap()
        );
    }
}
