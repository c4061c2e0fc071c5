//! Network faults on remote hosts: one nftables table `inet raftbus` per host for
//! partitions and loss, and a root qdisc with handle `5242:` on the inventory interface for
//! bandwidth (`tbf`) and, where the kernel has it, delay (`netem`).
//!
//! Every rule matches only the other inventory hosts' addresses (and the control host's, as
//! the host sees it in `SSH_CONNECTION`) *and* the run's ports (the set `@ports`), so SSH
//! and everything else on the host keep working. As in the lab, the table is rendered as a
//! whole and loaded in one `nft -f` transaction per host; a blocked pair `a -> b` drops on
//! both ends (output of `a`, input of `b`). Nothing else on the host is touched: removing
//! the table and a qdisc whose handle is `5242:` undoes it all, which is what
//! `raftbus hosts heal` does after a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::ssh::Remote;
use crate::error::{Error, Result};
use crate::net::{Bandwidth, Endpoint, Partition, PartitionId};

/// The table raftbus owns on every host (family `inet`).
pub const REMOTE_NFT_TABLE: &str = "raftbus";
/// The handle of every root qdisc raftbus adds (`0x5242`, "RB"); heal removes only these.
pub const QDISC_HANDLE: &str = "5242:";

/// Where one server runs.
#[derive(Debug, Clone)]
pub struct RemoteNode {
    /// Server name (`n1`, `s1`): the name partitions use.
    pub name: String,
    /// Its host.
    pub remote: Remote,
    /// The host's address facing the other hosts.
    pub addr: IpAddr,
    /// The interface with that address (bandwidth and delay qdiscs go there).
    pub iface: String,
}

/// What a remote host's kernel offers (from the host probe).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteNetCaps {
    /// nftables with the `inet` family.
    pub nftables: bool,
    /// The `tbf` qdisc.
    pub tbf: bool,
    /// The `netem` qdisc.
    pub netem: bool,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Bandwidth(Bandwidth),
    Delay(Duration, Duration),
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<String, RemoteNode>,
    /// Per host name: the control host's address as that host sees it.
    client: BTreeMap<String, IpAddr>,
    caps: BTreeMap<String, RemoteNetCaps>,
    ports: BTreeSet<u16>,
    partitions: BTreeMap<PartitionId, Partition>,
    next: u64,
    loss: BTreeMap<String, u8>,
    shaped: BTreeMap<String, Shape>,
    /// Per host name: the script last loaded (the table exists there).
    loaded: BTreeMap<String, String>,
}

/// Network faults on the hosts of an inventory; see the module docs. Cheap to clone; wrap it
/// with [`crate::NetControl::remote`] to hand it to a [`crate::Journal`].
#[derive(Debug, Clone, Default)]
pub struct RemoteNet {
    state: Arc<Mutex<State>>,
}

fn family(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

impl RemoteNet {
    /// No nodes yet.
    pub fn new() -> Self {
        RemoteNet::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Declares a host: the control host's address as it sees it, and what it can do.
    pub fn add_host(&self, remote: &Remote, client: IpAddr, caps: RemoteNetCaps) {
        let mut st = self.lock();
        st.client.insert(remote.name().to_string(), client);
        st.caps.insert(remote.name().to_string(), caps);
    }

    /// Declares where server `node.name` runs.
    pub fn add_node(&self, node: RemoteNode) {
        self.lock().nodes.insert(node.name.clone(), node);
    }

    /// The run's ports: only traffic to or from them is ever dropped.
    pub fn set_ports(&self, ports: impl IntoIterator<Item = u16>) {
        self.lock().ports = ports.into_iter().collect();
    }

    /// Whether every host has nftables.
    pub fn available(&self) -> bool {
        let st = self.lock();
        !st.caps.is_empty() && st.caps.values().all(|c| c.nftables)
    }

    fn node<'a>(st: &'a State, name: &str) -> Result<&'a RemoteNode> {
        st.nodes
            .get(name)
            .ok_or_else(|| Error::UnknownHost(name.to_string()))
    }

    fn need(st: &State, host: &str, what: &str, ok: impl Fn(&RemoteNetCaps) -> bool) -> Result<()> {
        match st.caps.get(host) {
            Some(c) if ok(c) => Ok(()),
            _ => Err(Error::Unsupported(format!("{what} on host {host}"))),
        }
    }

    /// The hosts this run's nodes are on, by name.
    fn hosts(st: &State) -> BTreeMap<String, Remote> {
        st.nodes
            .values()
            .map(|n| (n.remote.name().to_string(), n.remote.clone()))
            .collect()
    }

    /// The nft script of host `host` for the current state.
    fn render(st: &State, host: &str) -> String {
        let t = REMOTE_NFT_TABLE;
        let mut s = format!(
            "table inet {t} {{\n\
             \tset ports {{ type inet_service; }}\n\
             \tchain input {{ type filter hook input priority filter; policy accept; }}\n\
             \tchain output {{ type filter hook output priority filter; policy accept; }}\n\
             }}\n\
             flush table inet {t}\n"
        );
        if !st.ports.is_empty() {
            let ports: Vec<String> = st.ports.iter().map(u16::to_string).collect();
            let _ = writeln!(s, "add element inet {t} ports {{ {} }}", ports.join(", "));
        }
        let on_host = |n: &str| st.nodes.get(n).is_some_and(|x| x.remote.name() == host);
        let addr_of = |e: &Endpoint| -> Option<IpAddr> {
            match e {
                Endpoint::Host(n) => st.nodes.get(n).map(|x| x.addr),
                Endpoint::Client => st.client.get(host).copied(),
            }
        };
        let mut union = Partition::new();
        for p in st.partitions.values() {
            union.union(p);
        }
        // Drops on `chain` of packets whose `way` address is `a` to or from the run's ports.
        let rule = |s: &mut String, chain: &str, way: &str, a: &IpAddr, tail: &str| {
            for dir in ["dport", "sport"] {
                let _ = writeln!(
                    s,
                    "add rule inet {t} {chain} {} {way} {a} tcp {dir} @ports {tail}",
                    family(a)
                );
            }
        };
        for (src, dst) in union.blocked() {
            let tail = format!("counter drop comment \"partition {src}->{dst}\"");
            if let (Endpoint::Host(d), Some(a)) = (dst, addr_of(src)) {
                if on_host(d) {
                    rule(&mut s, "input", "saddr", &a, &tail);
                }
            }
            if let (Endpoint::Host(x), Some(a)) = (src, addr_of(dst)) {
                if on_host(x) {
                    rule(&mut s, "output", "daddr", &a, &tail);
                }
            }
        }
        for (node, pct) in &st.loss {
            if !on_host(node) {
                continue;
            }
            let mut peers: BTreeSet<IpAddr> = st
                .nodes
                .values()
                .filter(|x| x.remote.name() != host)
                .map(|x| x.addr)
                .collect();
            peers.extend(st.client.get(host));
            for a in peers {
                let tail = format!(
                    "numgen random mod 100 < {pct} counter drop comment \"loss {node} {pct}%\""
                );
                rule(&mut s, "input", "saddr", &a, &tail);
                rule(&mut s, "output", "daddr", &a, &tail);
            }
        }
        s
    }

    /// Loads the table on every host whose script changed.
    fn commit(st: &mut State) -> Result<()> {
        let hosts = Self::hosts(st);
        for (name, remote) in hosts {
            let script = Self::render(st, &name);
            if st.loaded.get(&name) == Some(&script) {
                continue;
            }
            remote.change(
                &remote.as_root(&format!("nft -f - <<'RAFTBUS_NFT'\n{script}RAFTBUS_NFT")),
            )?;
            st.loaded.insert(name, script);
        }
        Ok(())
    }

    /// Applies `partition` on top of those already applied.
    pub fn partition(&self, partition: &Partition) -> Result<PartitionId> {
        let mut st = self.lock();
        for e in partition.endpoints() {
            if let Endpoint::Host(h) = e {
                let host = Self::node(&st, h)?.remote.name().to_string();
                Self::need(&st, &host, "partition (nftables)", |c| c.nftables)?;
            }
        }
        let id = PartitionId(st.next);
        st.next += 1;
        st.partitions.insert(id, partition.clone());
        if let Err(e) = Self::commit(&mut st) {
            st.partitions.remove(&id);
            return Err(e);
        }
        tracing::info!(partition = %partition, id = id.0, "remote partition applied");
        Ok(id)
    }

    /// Inverse of [`RemoteNet::partition`].
    pub fn repair(&self, id: PartitionId) -> Result<()> {
        let mut st = self.lock();
        if st.partitions.remove(&id).is_some() {
            Self::commit(&mut st)?;
        }
        Ok(())
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<()> {
        let mut st = self.lock();
        st.partitions.clear();
        Self::commit(&mut st)
    }

    /// The union of the applied partitions.
    pub fn current_partition(&self) -> Partition {
        let st = self.lock();
        let mut all = Partition::new();
        for p in st.partitions.values() {
            all.union(p);
        }
        all
    }

    /// Drops `percent`% of the run's packets between `node`'s host and the others.
    pub fn set_loss(&self, node: &str, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(Error::Invalid(format!("loss of {percent}%")));
        }
        let mut st = self.lock();
        let host = Self::node(&st, node)?.remote.name().to_string();
        Self::need(&st, &host, "loss (nftables)", |c| c.nftables)?;
        let old = st.loss.insert(node.to_string(), percent);
        if let Err(e) = Self::commit(&mut st) {
            match old {
                Some(p) => st.loss.insert(node.to_string(), p),
                None => st.loss.remove(node),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Inverse of [`RemoteNet::set_loss`].
    pub fn clear_loss(&self, node: &str) -> Result<()> {
        let mut st = self.lock();
        if st.loss.remove(node).is_some() {
            Self::commit(&mut st)?;
        }
        Ok(())
    }

    fn shape(&self, node: &str, shape: Shape) -> Result<()> {
        let mut st = self.lock();
        let n = Self::node(&st, node)?.clone();
        let host = n.remote.name().to_string();
        let qdisc = match shape {
            Shape::Bandwidth(bw) => {
                Self::need(&st, &host, "bandwidth (tbf)", |c| c.tbf)?;
                format!(
                    "tbf rate {}kbit burst {} latency {}ms",
                    bw.rate_kbit, bw.burst_bytes, bw.latency_ms
                )
            }
            Shape::Delay(d, j) => {
                Self::need(&st, &host, "kernel delay (netem)", |c| c.netem)?;
                let mut q = format!("netem delay {}us", d.as_micros());
                if !j.is_zero() {
                    let _ = write!(q, " {}us", j.as_micros());
                }
                q
            }
        };
        if st.shaped.contains_key(node) {
            return Err(Error::Invalid(format!(
                "{node} has a bandwidth limit or delay already: one root qdisc per link"
            )));
        }
        n.remote.change(&n.remote.as_root(&format!(
            "tc qdisc add dev {} root handle {QDISC_HANDLE} {qdisc}",
            n.iface
        )))?;
        st.shaped.insert(node.to_string(), shape);
        Ok(())
    }

    fn unshape(&self, node: &str) -> Result<()> {
        let mut st = self.lock();
        if !st.shaped.contains_key(node) {
            return Ok(());
        }
        let n = Self::node(&st, node)?.clone();
        n.remote
            .change(&n.remote.as_root(&clear_qdisc_script(&n.iface)))?;
        st.shaped.remove(node);
        Ok(())
    }

    /// Limits what leaves `node`'s host on its interface (egress).
    pub fn limit_bandwidth(&self, node: &str, bw: Bandwidth) -> Result<()> {
        self.shape(node, Shape::Bandwidth(bw))
    }

    /// Inverse of [`RemoteNet::limit_bandwidth`].
    pub fn clear_bandwidth(&self, node: &str) -> Result<()> {
        self.unshape(node)
    }

    /// Delays what leaves `node`'s host (netem hosts only).
    pub fn set_delay(&self, node: &str, delay: Duration, jitter: Duration) -> Result<()> {
        self.shape(node, Shape::Delay(delay, jitter))
    }

    /// Inverse of [`RemoteNet::set_delay`].
    pub fn clear_delay(&self, node: &str) -> Result<()> {
        self.unshape(node)
    }

    /// Removes every fault: the qdiscs it added and the table on every host it loaded one.
    pub fn clear_all(&self) -> Result<()> {
        let shaped: Vec<String> = self.lock().shaped.keys().cloned().collect();
        let mut first_err = None;
        for node in shaped {
            if let Err(e) = self.unshape(&node) {
                first_err.get_or_insert(e);
            }
        }
        let mut st = self.lock();
        st.partitions.clear();
        st.loss.clear();
        let hosts = Self::hosts(&st);
        for (name, remote) in hosts {
            if st.loaded.contains_key(&name) {
                match remote.change(&remote.as_root(&delete_table_script())) {
                    Ok(_) => {
                        st.loaded.remove(&name);
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// `nft list table inet raftbus` on every host that has it.
    pub fn ruleset(&self) -> Result<String> {
        let st = self.lock();
        let mut out = String::new();
        let hosts = Self::hosts(&st);
        for (name, remote) in hosts {
            let _ = writeln!(out, "# {name}");
            out.push_str(&remote.query(&remote.as_root(&format!(
                "nft list table inet {REMOTE_NFT_TABLE} 2>/dev/null || true"
            )))?);
        }
        Ok(out)
    }

    /// `tc qdisc show` on `node`'s interface.
    pub fn qdiscs(&self, node: &str) -> Result<String> {
        let n = Self::node(&self.lock(), node)?.clone();
        n.remote
            .query(&n.remote.as_root(&format!("tc qdisc show dev {}", n.iface)))
    }
}

/// Deletes the raftbus table if it exists (nothing else).
pub fn delete_table_script() -> String {
    format!(
        "if nft list table inet {t} >/dev/null 2>&1; then nft delete table inet {t}; fi",
        t = REMOTE_NFT_TABLE
    )
}

/// Deletes the root qdisc of `iface` only if its handle is raftbus's.
pub fn clear_qdisc_script(iface: &str) -> String {
    format!(
        "if tc qdisc show dev {iface} | grep -q ' {QDISC_HANDLE} root'; then tc qdisc del dev {iface} root handle {QDISC_HANDLE}; fi"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_touch_only_what_raftbus_owns() {
        assert!(delete_table_script().contains("nft delete table inet raftbus"));
        let q = clear_qdisc_script("eth0");
        assert!(q.contains("grep -q ' 5242: root'"), "{q}");
        assert!(q.contains("tc qdisc del dev eth0 root handle 5242:"));
    }
}
