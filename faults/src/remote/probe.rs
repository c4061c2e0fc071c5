//! What a remote host is and offers, found over SSH in one round trip: kernel (`uname -r`),
//! the filesystem under its raftbus root (`df -PT`), the control host's address as the
//! host sees it (`SSH_CONNECTION`), and which fault tools work, each tried in a throwaway
//! network namespace (`unshare -n`) so the probe leaves nothing behind.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::net::RemoteNetCaps;
use super::ssh::{quote, Remote};
use crate::error::{Error, Result};

/// One host's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel: String,
    /// Filesystem type and device of the raftbus root, e.g. `ext4 on /dev/sda1`.
    pub disk: String,
    /// Free space there, as `df` says it (KiB).
    pub disk_free_kib: Option<u64>,
    /// The control host's address as this host sees it.
    pub client_addr: Option<IpAddr>,
    /// The interface has the inventory address.
    pub iface_ok: bool,
    /// nftables (`inet` family) works.
    pub nftables: bool,
    /// The `tbf` qdisc works.
    pub tbf: bool,
    /// The `netem` qdisc works.
    pub netem: bool,
    /// `/dev/fuse` exists.
    pub fuse_device: bool,
    /// `ping` is installed (RTT between hosts).
    pub ping: bool,
    /// Findings, for reports.
    pub notes: Vec<String>,
}

impl HostFacts {
    /// The network capabilities, for [`super::RemoteNet::add_host`].
    pub fn net_caps(&self) -> RemoteNetCaps {
        RemoteNetCaps {
            nftables: self.nftables,
            tbf: self.tbf,
            netem: self.netem,
        }
    }
}

/// The probe script; prints `key=value` lines.
fn script(root: &Path, iface: &str, addr: &IpAddr) -> String {
    let root = quote(&root.to_string_lossy());
    let iface = quote(iface);
    format!(
        r#"echo "kernel=$(uname -r)"
echo "ssh=$SSH_CONNECTION"
d={root}; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
df -PT "$d" 2>/dev/null | tail -n 1 | awk '{{print "df=" $2 " on " $1 " " $5}}'
if ip -o addr show dev {iface} 2>/dev/null | grep -qw '{addr}'; then echo iface=yes; else echo iface=no; fi
try() {{ if unshare -n sh -c "$1" >/dev/null 2>&1; then echo "$2=yes"; else echo "$2=no"; fi; }}
try 'printf "table inet raftbus_probe {{ chain c {{ type filter hook input priority 0; }}; }}\n" | nft -f -' nft
try 'ip link set lo up && tc qdisc add dev lo root tbf rate 1mbit burst 16k latency 50ms' tbf
try 'ip link set lo up && tc qdisc add dev lo root netem delay 1ms' netem
if [ -c /dev/fuse ]; then echo fuse=yes; else echo fuse=no; fi
if command -v ping >/dev/null 2>&1; then echo ping=yes; else echo ping=no; fi
"#
    )
}

fn parse(text: &str) -> HostFacts {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let yes = |k: &str| get(k) == "yes";
    let df = get("df");
    let mut parts: Vec<&str> = df.split(' ').collect();
    let free = parts.pop().and_then(|f| f.parse().ok());
    let mut notes = Vec::new();
    for (k, what) in [
        ("nft", "nftables (partition, loss)"),
        ("tbf", "tbf (bandwidth)"),
        ("netem", "netem (kernel delay)"),
    ] {
        if !yes(k) {
            notes.push(format!("{what}: unavailable"));
        }
    }
    HostFacts {
        kernel: get("kernel"),
        disk: parts.join(" "),
        disk_free_kib: free,
        client_addr: get("ssh")
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok()),
        iface_ok: yes("iface"),
        nftables: yes("nft"),
        tbf: yes("tbf"),
        netem: yes("netem"),
        fuse_device: yes("fuse"),
        ping: yes("ping"),
        notes,
    }
}

/// Probes `remote`: its raftbus root `root`, and `iface`, which should carry `addr`.
pub fn probe(remote: &Remote, root: &Path, iface: &str, addr: &IpAddr) -> Result<HostFacts> {
    let text = remote.query(&remote.as_root(&script(root, iface, addr)))?;
    let facts = parse(&text);
    if facts.kernel.is_empty() {
        return Err(Error::Ssh {
            host: remote.name().to_string(),
            message: format!("the host probe printed nothing useful: {}", text.trim()),
        });
    }
    Ok(facts)
}

/// Round-trip time from `from` to `to` in milliseconds (`ping -c 3`, the average), or why
/// it could not be measured.
pub fn rtt_ms(from: &Remote, to: &IpAddr) -> std::result::Result<f64, String> {
    let out = from
        .query(&format!("ping -n -q -c 3 -i 0.2 -W 2 {to}"))
        .map_err(|e| e.to_string())?;
    // rtt min/avg/max/mdev = 0.041/0.052/0.066/0.010 ms
    out.lines()
        .find_map(|l| l.split_once(" = ").filter(|(k, _)| k.contains("min/avg")))
        .and_then(|(_, v)| v.split('/').nth(1)?.parse().ok())
        .ok_or_else(|| format!("cannot read ping's output: {}", out.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_is_parsed() {
        let f = parse(
            "kernel=6.1.0\nssh=198.18.0.1 40000 198.18.1.1 22\ndf=ext4 on /dev/vda1 1234\niface=yes\nnft=yes\ntbf=yes\nnetem=no\nfuse=yes\nping=no\n",
        );
        assert_eq!(f.kernel, "6.1.0");
        assert_eq!(f.client_addr, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(f.disk, "ext4 on /dev/vda1");
        assert_eq!(f.disk_free_kib, Some(1234));
        assert!(f.nftables && f.tbf && !f.netem && f.iface_ok && f.fuse_device && !f.ping);
        assert_eq!(
            f.notes,
            vec!["netem (kernel delay): unavailable".to_string()]
        );
    }
}
