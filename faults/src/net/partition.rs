//! The partition model: a set of directed blocked pairs between endpoints.

use std::collections::BTreeSet;
use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lab::CLIENT_NAME;

/// One end of a link: a lab host, or the load generator (the lab's bridge address).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    /// A lab host by name.
    Host(String),
    /// The load generator / clients at 198.18.0.1.
    Client,
}

impl Endpoint {
    /// A host endpoint.
    pub fn host(name: impl Into<String>) -> Self {
        Endpoint::Host(name.into())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Host(h) => f.write_str(h),
            Endpoint::Client => f.write_str(CLIENT_NAME),
        }
    }
}

/// A network partition: packets from `src` to `dst` are dropped for every blocked
/// `(src, dst)` pair. Established TCP connections across a blocked pair stall too (there is
/// no "accept established" rule). Its named inverse is [`crate::NetControl::heal`] (or
/// [`crate::NetControl::repair`] for this partition only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    blocked: BTreeSet<(Endpoint, Endpoint)>,
}

impl Partition {
    /// No blocked pairs.
    pub fn new() -> Self {
        Partition::default()
    }

    /// Block `src -> dst` (one direction).
    pub fn block(&mut self, src: Endpoint, dst: Endpoint) -> &mut Self {
        if src != dst {
            self.blocked.insert((src, dst));
        }
        self
    }

    /// Block both directions between `a` and `b`.
    pub fn block_both(&mut self, a: Endpoint, b: Endpoint) -> &mut Self {
        self.block(a.clone(), b.clone());
        self.block(b, a)
    }

    /// Two groups that cannot reach each other (either direction); each group stays
    /// connected inside.
    pub fn halves<S: AsRef<str>>(a: &[S], b: &[S]) -> Self {
        let mut p = Partition::new();
        for x in a {
            for y in b {
                p.block_both(Endpoint::host(x.as_ref()), Endpoint::host(y.as_ref()));
            }
        }
        p
    }

    /// Random halves: shuffle `nodes` with `rng` and cut into a minority and a majority.
    pub fn random_halves<S: AsRef<str>, R: Rng + ?Sized>(nodes: &[S], rng: &mut R) -> Self {
        let mut names: Vec<&str> = nodes.iter().map(|s| s.as_ref()).collect();
        names.shuffle(rng);
        let (minority, majority) = names.split_at(names.len() / 2);
        Partition::halves(minority, majority)
    }

    /// `node` cut off from every one of `others`.
    pub fn isolate<S: AsRef<str>>(node: &str, others: &[S]) -> Self {
        let others: Vec<&str> = others
            .iter()
            .map(|s| s.as_ref())
            .filter(|o| *o != node)
            .collect();
        Partition::halves(&[node], &others)
    }

    /// Each node sees a majority (itself and its ring neighbours) but no two nodes see the
    /// same majority; for 5 nodes, node i talks only to i-1 and i+1. Needs at least 4 nodes:
    /// with 3, symmetric links cannot give each node a different majority.
    pub fn majorities_ring<S: AsRef<str>>(nodes: &[S]) -> Result<Self> {
        let n = nodes.len();
        if n < 4 {
            return Err(Error::Invalid(format!(
                "majorities-ring needs at least 4 nodes, got {n}"
            )));
        }
        // A majority is n/2+1 nodes: itself plus `reach` neighbours on each side.
        let reach = (n / 2).div_ceil(2);
        let mut p = Partition::new();
        for i in 0..n {
            for j in 0..n {
                let d = i.abs_diff(j);
                let ring_distance = d.min(n - d);
                if ring_distance > reach {
                    p.block(
                        Endpoint::host(nodes[i].as_ref()),
                        Endpoint::host(nodes[j].as_ref()),
                    );
                }
            }
        }
        Ok(p)
    }

    /// Groups `a` and `b` cannot reach each other, but `mid` reaches both (the bridge node).
    pub fn bridge<S: AsRef<str>>(a: &[S], mid: &str, b: &[S]) -> Self {
        let a: Vec<&str> = a.iter().map(|s| s.as_ref()).filter(|x| *x != mid).collect();
        let b: Vec<&str> = b.iter().map(|s| s.as_ref()).filter(|x| *x != mid).collect();
        Partition::halves(&a, &b)
    }

    /// Packets from every `from` to every `to` are dropped; the reverse direction works.
    pub fn one_way<S: AsRef<str>>(from: &[S], to: &[S]) -> Self {
        let mut p = Partition::new();
        for x in from {
            for y in to {
                p.block(Endpoint::host(x.as_ref()), Endpoint::host(y.as_ref()));
            }
        }
        p
    }

    /// Client-side partition: the load generator cannot reach `nodes` (nor they it) while
    /// the nodes keep talking to each other.
    pub fn client<S: AsRef<str>>(nodes: &[S]) -> Self {
        let mut p = Partition::new();
        for x in nodes {
            p.block_both(Endpoint::Client, Endpoint::host(x.as_ref()));
        }
        p
    }

    /// Add every blocked pair of `other`.
    pub fn union(&mut self, other: &Partition) -> &mut Self {
        self.blocked.extend(other.blocked.iter().cloned());
        self
    }

    /// Whether `src -> dst` is blocked.
    pub fn is_blocked(&self, src: &Endpoint, dst: &Endpoint) -> bool {
        self.blocked.contains(&(src.clone(), dst.clone()))
    }

    /// The blocked pairs.
    pub fn blocked(&self) -> impl Iterator<Item = &(Endpoint, Endpoint)> {
        self.blocked.iter()
    }

    /// Whether nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty()
    }

    /// Every endpoint named in a blocked pair, for the journal's target list.
    pub fn endpoints(&self) -> BTreeSet<&Endpoint> {
        self.blocked.iter().flat_map(|(a, b)| [a, b]).collect()
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.blocked.is_empty() {
            return f.write_str("(none)");
        }
        let mut parts = Vec::new();
        for (a, b) in &self.blocked {
            // A symmetric pair is printed once, as a<->b.
            if !self.is_blocked(b, a) {
                parts.push(format!("{a}->{b}"));
            } else if a < b {
                parts.push(format!("{a}<->{b}"));
            }
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn h(s: &str) -> Endpoint {
        Endpoint::host(s)
    }

    fn reachable(p: &Partition, nodes: &[&str], i: usize) -> usize {
        nodes
            .iter()
            .filter(|other| **other == nodes[i] || !p.is_blocked(&h(nodes[i]), &h(other)))
            .count()
    }

    #[test]
    fn halves_block_both_directions_only_across() {
        let p = Partition::halves(&["n1", "n2"], &["n3"]);
        assert!(p.is_blocked(&h("n1"), &h("n3")));
        assert!(p.is_blocked(&h("n3"), &h("n2")));
        assert!(!p.is_blocked(&h("n1"), &h("n2")));
        assert_eq!(p.blocked().count(), 4);
    }

    #[test]
    fn isolate_ignores_self_in_others() {
        let p = Partition::isolate("n1", &["n1", "n2", "n3"]);
        assert_eq!(p.blocked().count(), 4);
        assert!(p.is_blocked(&h("n2"), &h("n1")));
        assert!(!p.is_blocked(&h("n2"), &h("n3")));
    }

    #[test]
    fn majorities_ring_of_five_is_the_neighbour_ring() {
        let nodes = ["n1", "n2", "n3", "n4", "n5"];
        let p = Partition::majorities_ring(&nodes).unwrap();
        for i in 0..5 {
            assert_eq!(
                reachable(&p, &nodes, i),
                3,
                "node {i} should see a majority"
            );
            let prev = nodes[(i + 4) % 5];
            let next = nodes[(i + 1) % 5];
            assert!(!p.is_blocked(&h(nodes[i]), &h(prev)));
            assert!(!p.is_blocked(&h(nodes[i]), &h(next)));
        }
        // No two nodes see the same majority.
        let views: BTreeSet<Vec<&str>> = (0..5)
            .map(|i| {
                nodes
                    .iter()
                    .copied()
                    .filter(|o| *o == nodes[i] || !p.is_blocked(&h(nodes[i]), &h(o)))
                    .collect()
            })
            .collect();
        assert_eq!(views.len(), 5);
    }

    #[test]
    fn majorities_ring_needs_four_nodes() {
        assert!(Partition::majorities_ring(&["a", "b", "c"]).is_err());
        let nodes = ["a", "b", "c", "d"];
        let p = Partition::majorities_ring(&nodes).unwrap();
        for i in 0..4 {
            assert_eq!(reachable(&p, &nodes, i), 3);
        }
    }

    #[test]
    fn bridge_node_reaches_both_sides() {
        let p = Partition::bridge(&["n1", "n2"], "n3", &["n4", "n5"]);
        assert!(p.is_blocked(&h("n1"), &h("n4")));
        assert!(!p.is_blocked(&h("n3"), &h("n1")));
        assert!(!p.is_blocked(&h("n5"), &h("n3")));
    }

    #[test]
    fn one_way_and_client() {
        let p = Partition::one_way(&["a"], &["b"]);
        assert!(p.is_blocked(&h("a"), &h("b")));
        assert!(!p.is_blocked(&h("b"), &h("a")));
        assert_eq!(p.to_string(), "a->b");
        let c = Partition::client(&["n1"]);
        assert!(c.is_blocked(&Endpoint::Client, &h("n1")));
        assert!(c.is_blocked(&h("n1"), &Endpoint::Client));
        assert_eq!(c.to_string(), "n1<->client");
    }

    #[test]
    fn random_halves_is_seeded_and_splits_minority() {
        let nodes = ["n1", "n2", "n3", "n4", "n5"];
        let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let a = Partition::random_halves(&nodes, &mut r1);
        assert_eq!(a, Partition::random_halves(&nodes, &mut r2));
        // 2 x 3 nodes, both directions.
        assert_eq!(a.blocked().count(), 12);
    }
}
