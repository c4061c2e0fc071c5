//! Network faults in the namespace lab: partitions and packet loss through one nftables
//! table (`bridge raftbus`) in the lab namespace, bandwidth limits through `tc tbf`, and a
//! userspace [`DelayProxy`] for delay and jitter (this kernel has no netem).

mod partition;
mod proxy;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use partition::{Endpoint, Partition};
pub use proxy::{DelayProxy, ProxyControl, ProxySettings};

use crate::error::{Error, Result};
use crate::lab::{is_absent, LabMode, Shared, State, NFT_TABLE};
use crate::sys;

/// Identifies one applied partition, for [`NetControl::repair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u64);

/// A bandwidth limit (token bucket) applied to both directions of a host's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Rate in kbit/s (1000 bit/s).
    pub rate_kbit: u64,
    /// Bucket size in bytes (at least one MTU).
    pub burst_bytes: u32,
    /// Longest a packet may wait in the queue, in milliseconds (sets the queue length).
    pub latency_ms: u32,
}

impl Bandwidth {
    /// `rate_kbit` kbit/s with a 16 KiB burst (or 20 ms worth, if larger) and 200 ms of queue.
    pub fn kbit(rate_kbit: u64) -> Self {
        let per_20ms = rate_kbit.saturating_mul(1000) / 8 / 50;
        Bandwidth {
            rate_kbit: rate_kbit.max(1),
            burst_bytes: per_20ms.clamp(16 * 1024, 16 * 1024 * 1024) as u32,
            latency_ms: 200,
        }
    }

    /// `rate_mbit` Mbit/s, see [`Bandwidth::kbit`].
    pub fn mbit(rate_mbit: u64) -> Self {
        Bandwidth::kbit(rate_mbit.saturating_mul(1000))
    }

    fn tc_args(&self, dev: &str) -> Vec<String> {
        ["qdisc", "replace", "dev", dev, "root", "tbf", "rate"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                format!("{}kbit", self.rate_kbit),
                "burst".into(),
                self.burst_bytes.to_string(),
                "latency".into(),
                format!("{}ms", self.latency_ms),
            ])
            .collect()
    }
}

/// What the lab's network should look like; rendered as a whole into the nft table.
#[derive(Debug, Default)]
pub(crate) struct NetState {
    partitions: BTreeMap<PartitionId, Partition>,
    next_partition: u64,
    loss: BTreeMap<String, u8>,
    bandwidth: BTreeMap<String, Bandwidth>,
    delay: BTreeMap<String, (Duration, Duration)>,
}

impl NetState {
    fn union(&self) -> Partition {
        let mut all = Partition::new();
        for p in self.partitions.values() {
            all.union(p);
        }
        all
    }

    /// The whole table as one `nft -f` script: declare, flush and refill in one transaction,
    /// so a change is atomic and nothing is ever half-applied.
    fn render(&self) -> String {
        let t = NFT_TABLE;
        let mut s = format!(
            "table bridge {t} {{\n\
             \tchain forward {{ type filter hook forward priority filter; policy accept; }}\n\
             \tchain input {{ type filter hook input priority filter; policy accept; }}\n\
             \tchain output {{ type filter hook output priority filter; policy accept; }}\n\
             }}\n\
             flush table bridge {t}\n"
        );
        // ARP passes so that a one-way cut does not also break the other direction.
        const IP_ONLY: &str = "ether type != arp";
        for (src, dst) in self.union().blocked() {
            let _ = match (src, dst) {
                (Endpoint::Host(a), Endpoint::Host(b)) => writeln!(
                    s,
                    "add rule bridge {t} forward iifname \"vh-{a}\" oifname \"vh-{b}\" {IP_ONLY} counter drop comment \"partition {a}->{b}\""
                ),
                (Endpoint::Host(a), Endpoint::Client) => writeln!(
                    s,
                    "add rule bridge {t} input iifname \"vh-{a}\" {IP_ONLY} counter drop comment \"partition {a}->client\""
                ),
                (Endpoint::Client, Endpoint::Host(b)) => writeln!(
                    s,
                    "add rule bridge {t} output oifname \"vh-{b}\" {IP_ONLY} counter drop comment \"partition client->{b}\""
                ),
                (Endpoint::Client, Endpoint::Client) => Ok(()),
            };
        }
        for (host, pct) in &self.loss {
            let rule = format!("{IP_ONLY} numgen random mod 100 < {pct} counter drop comment \"loss {host} {pct}%\"");
            let _ = writeln!(
                s,
                "add rule bridge {t} forward iifname \"vh-{host}\" {rule}"
            );
            let _ = writeln!(
                s,
                "add rule bridge {t} forward oifname \"vh-{host}\" {rule}"
            );
            let _ = writeln!(s, "add rule bridge {t} input iifname \"vh-{host}\" {rule}");
            let _ = writeln!(s, "add rule bridge {t} output oifname \"vh-{host}\" {rule}");
        }
        s
    }
}

/// Applies and undoes network faults in the namespace lab. Cheap to clone; get one from
/// [`crate::Lab::net`]. Every method has a named inverse:
///
/// | fault | inverse |
/// |---|---|
/// | [`partition`](Self::partition) | [`repair`](Self::repair) one, [`heal`](Self::heal) all |
/// | [`set_loss`](Self::set_loss) | [`clear_loss`](Self::clear_loss) |
/// | [`limit_bandwidth`](Self::limit_bandwidth) | [`clear_bandwidth`](Self::clear_bandwidth) |
/// | [`set_delay`](Self::set_delay) (netem kernels only) | [`clear_delay`](Self::clear_delay) |
/// | any | [`clear_all`](Self::clear_all) |
#[derive(Debug, Clone)]
pub struct NetControl(Backend);

#[derive(Debug, Clone)]
enum Backend {
    Lab(LabNet),
    Remote(crate::remote::RemoteNet),
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $m:ident($($a:expr),*)) => {
        match &$self.0 {
            Backend::Lab(n) => n.$m($($a),*),
            Backend::Remote(n) => n.$m($($a),*),
        }
    };
}

impl NetControl {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        NetControl(Backend::Lab(LabNet { shared }))
    }

    /// Network faults on remote hosts (`--hosts`) instead of the lab.
    pub fn remote(net: crate::remote::RemoteNet) -> Self {
        NetControl(Backend::Remote(net))
    }

    /// Whether kernel-level network faults work (namespace lab or every remote host with
    /// nftables).
    pub fn available(&self) -> bool {
        dispatch!(self, available())
    }

    /// Apply `partition` on top of those already applied.
    pub fn partition(&self, partition: &Partition) -> Result<PartitionId> {
        dispatch!(self, partition(partition))
    }

    /// Undo one partition (inverse of [`NetControl::partition`]); pairs also blocked by
    /// another applied partition stay blocked.
    pub fn repair(&self, id: PartitionId) -> Result<()> {
        dispatch!(self, repair(id))
    }

    /// Remove every partition.
    pub fn heal(&self) -> Result<()> {
        dispatch!(self, heal())
    }

    /// The union of all applied partitions.
    pub fn current_partition(&self) -> Partition {
        dispatch!(self, current_partition())
    }

    /// Drop `percent`% of the packets entering or leaving `host` (random, per packet).
    pub fn set_loss(&self, host: &str, percent: u8) -> Result<()> {
        dispatch!(self, set_loss(host, percent))
    }

    /// Inverse of [`NetControl::set_loss`].
    pub fn clear_loss(&self, host: &str) -> Result<()> {
        dispatch!(self, clear_loss(host))
    }

    /// Limit `host`'s link to `bw` (the lab: both directions; remote hosts: egress).
    pub fn limit_bandwidth(&self, host: &str, bw: Bandwidth) -> Result<()> {
        dispatch!(self, limit_bandwidth(host, bw))
    }

    /// Inverse of [`NetControl::limit_bandwidth`].
    pub fn clear_bandwidth(&self, host: &str) -> Result<()> {
        dispatch!(self, clear_bandwidth(host))
    }

    /// Kernel delay with netem (only where the kernel has it).
    pub fn set_delay(&self, host: &str, delay: Duration, jitter: Duration) -> Result<()> {
        dispatch!(self, set_delay(host, delay, jitter))
    }

    /// Inverse of [`NetControl::set_delay`].
    pub fn clear_delay(&self, host: &str) -> Result<()> {
        dispatch!(self, clear_delay(host))
    }

    /// Remove every partition, loss, bandwidth and delay fault.
    pub fn clear_all(&self) -> Result<()> {
        dispatch!(self, clear_all())
    }

    /// The nft table(s) as the kernel has them, for reports and tests.
    pub fn ruleset(&self) -> Result<String> {
        dispatch!(self, ruleset())
    }

    /// The qdiscs on `host`'s link.
    pub fn qdiscs(&self, host: &str) -> Result<String> {
        dispatch!(self, qdiscs(host))
    }
}

/// The lab backend of [`NetControl`].
#[derive(Debug, Clone)]
struct LabNet {
    shared: Arc<Shared>,
}

impl LabNet {
    fn usable(&self, what: &str) -> Result<()> {
        match &self.shared.mode {
            LabMode::Loopback { .. } => Err(Error::Unsupported(what.to_owned())),
            LabMode::Namespaces { .. } if !self.shared.caps.nftables && what != "bandwidth" => Err(
                Error::Unsupported(format!("{what} (nftables is not available)")),
            ),
            LabMode::Namespaces { .. } => Ok(()),
        }
    }

    /// Whether kernel-level network faults work (namespace lab with nftables).
    pub fn available(&self) -> bool {
        self.shared.mode.is_namespaced() && self.shared.caps.nftables
    }

    /// Apply `partition` on top of those already applied.
    pub fn partition(&self, partition: &Partition) -> Result<PartitionId> {
        self.usable("partition")?;
        let mut state = self.shared.lock();
        live(&state)?;
        for e in partition.endpoints() {
            if let Endpoint::Host(h) = e {
                state.host(h)?;
            }
        }
        let id = PartitionId(state.net.next_partition);
        state.net.next_partition += 1;
        state.net.partitions.insert(id, partition.clone());
        if let Err(e) = commit(&state) {
            state.net.partitions.remove(&id);
            return Err(e);
        }
        tracing::info!(partition = %partition, id = id.0, "partition applied");
        Ok(id)
    }

    /// Undo one partition (inverse of [`NetControl::partition`]); pairs also blocked by
    /// another applied partition stay blocked.
    pub fn repair(&self, id: PartitionId) -> Result<()> {
        self.usable("partition")?;
        let mut state = self.shared.lock();
        live(&state)?;
        if let Some(p) = state.net.partitions.remove(&id) {
            commit(&state)?;
            tracing::info!(partition = %p, id = id.0, "partition repaired");
        }
        Ok(())
    }

    /// Remove every partition.
    pub fn heal(&self) -> Result<()> {
        self.usable("partition")?;
        let mut state = self.shared.lock();
        live(&state)?;
        state.net.partitions.clear();
        commit(&state)?;
        tracing::info!("partitions healed");
        Ok(())
    }

    /// The union of all applied partitions.
    pub fn current_partition(&self) -> Partition {
        self.shared.lock().net.union()
    }

    /// Drop `percent`% of the IP packets entering or leaving `host` (random, per packet).
    pub fn set_loss(&self, host: &str, percent: u8) -> Result<()> {
        self.usable("loss")?;
        if percent > 100 {
            return Err(Error::Invalid(format!("loss of {percent}%")));
        }
        let mut state = self.shared.lock();
        live(&state)?;
        state.host(host)?;
        let old = state.net.loss.insert(host.to_owned(), percent);
        if let Err(e) = commit(&state) {
            match old {
                Some(p) => state.net.loss.insert(host.to_owned(), p),
                None => state.net.loss.remove(host),
            };
            return Err(e);
        }
        tracing::info!(host, percent, "packet loss applied");
        Ok(())
    }

    /// Inverse of [`NetControl::set_loss`].
    pub fn clear_loss(&self, host: &str) -> Result<()> {
        self.usable("loss")?;
        let mut state = self.shared.lock();
        live(&state)?;
        if state.net.loss.remove(host).is_some() {
            commit(&state)?;
            tracing::info!(host, "packet loss cleared");
        }
        Ok(())
    }

    /// Limit `host`'s link to `bw` in both directions: a `tbf` qdisc on the lab side of its
    /// veth (traffic to the host) and on `eth0` inside the host (traffic from it).
    pub fn limit_bandwidth(&self, host: &str, bw: Bandwidth) -> Result<()> {
        self.usable("bandwidth")?;
        if !self.shared.caps.tbf {
            return Err(Error::Unsupported(
                "bandwidth (the tbf qdisc is not available)".into(),
            ));
        }
        let mut state = self.shared.lock();
        live(&state)?;
        let h = state.host(host)?.clone();
        if state.net.delay.contains_key(host) {
            return Err(Error::Invalid(format!(
                "{host} has a netem delay: one root qdisc per link, clear it first"
            )));
        }
        let (iface, holder) = lab_ports(&h)?;
        run_tc(&bw.tc_args(&iface), None)?;
        if let Err(e) = run_tc(&bw.tc_args("eth0"), Some(holder)) {
            let _ = run_tc(&del_args(&iface), None);
            return Err(e);
        }
        state.net.bandwidth.insert(host.to_owned(), bw);
        tracing::info!(host, rate_kbit = bw.rate_kbit, "bandwidth limited");
        Ok(())
    }

    /// Inverse of [`NetControl::limit_bandwidth`].
    pub fn clear_bandwidth(&self, host: &str) -> Result<()> {
        self.usable("bandwidth")?;
        let mut state = self.shared.lock();
        live(&state)?;
        if !state.net.bandwidth.contains_key(host) {
            return Ok(());
        }
        let h = state.host(host)?.clone();
        clear_qdiscs(&h)?;
        state.net.bandwidth.remove(host);
        tracing::info!(host, "bandwidth limit cleared");
        Ok(())
    }

    /// Delay every packet to and from `host` by `delay ± jitter` with the kernel's `netem`
    /// qdisc (on both ends of its link, so a round trip with any peer grows by twice
    /// `delay`). Only where [`crate::Capabilities::netem`] is true; otherwise use a
    /// [`DelayProxy`]. A link has one root qdisc, so this excludes a bandwidth limit.
    pub fn set_delay(&self, host: &str, delay: Duration, jitter: Duration) -> Result<()> {
        self.usable("delay")?;
        if !self.shared.caps.netem {
            return Err(Error::Unsupported(
                "kernel delay (no netem qdisc: use the userspace DelayProxy)".into(),
            ));
        }
        let mut state = self.shared.lock();
        live(&state)?;
        let h = state.host(host)?.clone();
        if state.net.bandwidth.contains_key(host) {
            return Err(Error::Invalid(format!(
                "{host} has a bandwidth limit: one root qdisc per link, clear it first"
            )));
        }
        let (iface, holder) = lab_ports(&h)?;
        let args = |dev: &str| -> Vec<String> {
            let mut a: Vec<String> = ["qdisc", "replace", "dev", dev, "root", "netem", "delay"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            a.push(format!("{}us", delay.as_micros()));
            if !jitter.is_zero() {
                a.push(format!("{}us", jitter.as_micros()));
            }
            a
        };
        run_tc(&args(&iface), None)?;
        if let Err(e) = run_tc(&args("eth0"), Some(holder)) {
            let _ = run_tc(&del_args(&iface), None);
            return Err(e);
        }
        state.net.delay.insert(host.to_owned(), (delay, jitter));
        tracing::info!(host, ?delay, ?jitter, "netem delay applied");
        Ok(())
    }

    /// Inverse of [`NetControl::set_delay`].
    pub fn clear_delay(&self, host: &str) -> Result<()> {
        self.usable("delay")?;
        let mut state = self.shared.lock();
        live(&state)?;
        if !state.net.delay.contains_key(host) {
            return Ok(());
        }
        let h = state.host(host)?.clone();
        clear_qdiscs(&h)?;
        state.net.delay.remove(host);
        tracing::info!(host, "netem delay cleared");
        Ok(())
    }

    /// Remove every partition, loss, bandwidth and delay fault.
    pub fn clear_all(&self) -> Result<()> {
        if !self.shared.mode.is_namespaced() {
            return Ok(());
        }
        let mut state = self.shared.lock();
        if state.torn_down {
            return Ok(());
        }
        let mut first_err = None;
        let shaped: Vec<String> = std::mem::take(&mut state.net.bandwidth)
            .into_keys()
            .chain(std::mem::take(&mut state.net.delay).into_keys())
            .collect();
        for host in shaped {
            if let Ok(h) = state.host(&host) {
                if let Err(e) = clear_qdiscs(&h.clone()) {
                    first_err.get_or_insert(e);
                }
            }
        }
        state.net.partitions.clear();
        state.net.loss.clear();
        if self.shared.caps.nftables {
            if let Err(e) = commit(&state) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The nft table as the kernel has it (`nft list table bridge raftbus`), for reports and
    /// tests.
    pub fn ruleset(&self) -> Result<String> {
        self.usable("nft ruleset")?;
        sys::run_tool("nft", &["list", "table", "bridge", NFT_TABLE], None, None)
    }

    /// The qdiscs on `host`'s link, lab side then host side (`tc qdisc show`).
    pub fn qdiscs(&self, host: &str) -> Result<String> {
        self.usable("bandwidth")?;
        let h = self.shared.lock().host(host)?.clone();
        let (iface, holder) = lab_ports(&h)?;
        let mut out = sys::run_tool("tc", &["qdisc", "show", "dev", &iface], None, None)?;
        out.push_str(&sys::run_tool(
            "tc",
            &["qdisc", "show", "dev", "eth0"],
            None,
            Some(holder),
        )?);
        Ok(out)
    }
}

fn live(state: &State) -> Result<()> {
    if state.torn_down {
        Err(Error::TornDown)
    } else {
        Ok(())
    }
}

fn commit(state: &State) -> Result<()> {
    let script = state.net.render();
    tracing::debug!(%script, "updating nft table");
    sys::run_tool("nft", &["-f", "-"], Some(&script), None).map(drop)
}

fn lab_ports(h: &crate::lab::Host) -> Result<(String, nix::unistd::Pid)> {
    match (h.lab_iface(), h.holder_pid()) {
        (Some(i), Some(p)) => Ok((i.to_owned(), p)),
        _ => Err(Error::Unsupported(format!(
            "network faults on {}",
            h.name()
        ))),
    }
}

fn del_args(dev: &str) -> Vec<String> {
    ["qdisc", "del", "dev", dev, "root"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn run_tc(args: &[String], netns_of: Option<nix::unistd::Pid>) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sys::run_tool("tc", &args, None, netns_of).map(drop)
}

fn clear_qdiscs(h: &crate::lab::Host) -> Result<()> {
    let (iface, holder) = lab_ports(h)?;
    let mut first_err = None;
    for (dev, ns) in [(iface.as_str(), None), ("eth0", Some(holder))] {
        if let Err(e) = run_tc(&del_args(dev), ns) {
            if !is_absent(&e) {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_one_transaction_with_directed_rules() {
        let mut st = NetState::default();
        st.partitions
            .insert(PartitionId(0), Partition::one_way(&["n1"], &["n2"]));
        st.partitions
            .insert(PartitionId(1), Partition::client(&["n3"]));
        st.loss.insert("n4".into(), 30);
        let s = st.render();
        assert!(s.starts_with("table bridge raftbus {"));
        assert!(s.contains("flush table bridge raftbus\n"));
        assert!(s.contains(
            "forward iifname \"vh-n1\" oifname \"vh-n2\" ether type != arp counter drop"
        ));
        assert!(!s.contains("iifname \"vh-n2\" oifname \"vh-n1\""));
        assert!(s.contains("input iifname \"vh-n3\""));
        assert!(s.contains("output oifname \"vh-n3\""));
        assert_eq!(s.matches("numgen random mod 100 < 30").count(), 4);
        assert!(
            !s.contains("ct state"),
            "no established-accept rule may precede the drops"
        );
    }

    #[test]
    fn empty_state_renders_empty_chains() {
        let s = NetState::default().render();
        assert!(!s.contains("add rule"));
        assert!(s.contains("chain forward"));
    }

    #[test]
    fn bandwidth_defaults() {
        let b = Bandwidth::mbit(1);
        assert_eq!(b.rate_kbit, 1000);
        assert_eq!(b.burst_bytes, 16 * 1024);
        let b = Bandwidth::mbit(1000);
        assert_eq!(b.burst_bytes, 2_500_000);
        assert_eq!(
            b.tc_args("vh-n1").join(" "),
            "qdisc replace dev vh-n1 root tbf rate 1000000kbit burst 2500000 latency 200ms"
        );
    }
}
