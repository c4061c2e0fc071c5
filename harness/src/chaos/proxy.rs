//! Delay proxies on the bus's peer links.
//!
//! There is no `netem` on this kernel, so delay is a userspace stage: one
//! [`DelayProxy`] per ordered pair of nodes (`n1->n2` carries the connections `n1` opens
//! to `n2`), running in the harness (the lab namespace, on the bridge address; or on
//! loopback). Each node gets its own `--peers` list: its own entry is its real Raft
//! address, every other entry the proxy of that pair. A delay fault on a node sets the
//! delay of every proxy that touches it. Partitions between nodes also blackhole the
//! proxies of the blocked pairs, since traffic through a proxy crosses the lab, not the
//! host-to-host path the nftables rules cut.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use raftbus_faults::{DelayProxy, ProxyControl};

/// The proxies of every ordered pair of nodes.
#[derive(Debug)]
pub struct PeerProxies {
    listen: IpAddr,
    seed: u64,
    pairs: BTreeMap<(String, String), DelayProxy>,
}

impl PeerProxies {
    /// Proxies will listen on `listen` (the lab's bridge address or 127.0.0.1); `seed`
    /// drives their jitter.
    pub fn new(listen: IpAddr, seed: u64) -> Self {
        PeerProxies {
            listen,
            seed,
            pairs: BTreeMap::new(),
        }
    }

    /// Starts a proxy for every ordered pair of `names` (replacing any earlier ones) and
    /// returns each node's `--peers` value: `id=addr` with its own real address and the
    /// proxies for the others.
    pub async fn build(
        &mut self,
        names: &[String],
        raft: &[SocketAddr],
    ) -> io::Result<Vec<String>> {
        self.pairs.clear();
        let mut peers = Vec::with_capacity(names.len());
        for (i, from) in names.iter().enumerate() {
            let mut entries = Vec::with_capacity(names.len());
            for (j, to) in names.iter().enumerate() {
                if i == j {
                    entries.push(format!("{}={}", j + 1, raft[j]));
                    continue;
                }
                let seed = self.seed ^ ((i as u64) << 32 | j as u64);
                let proxy = DelayProxy::start(SocketAddr::new(self.listen, 0), raft[j], seed)
                    .await
                    .map_err(|e| io::Error::other(format!("delay proxy {from}->{to}: {e}")))?;
                entries.push(format!("{}={}", j + 1, proxy.local_addr()));
                self.pairs.insert((from.clone(), to.clone()), proxy);
            }
            peers.push(entries.join(","));
        }
        tracing::info!(pairs = self.pairs.len(), listen = %self.listen, "peer delay proxies started");
        Ok(peers)
    }

    /// Controls of every pair, keyed `(from, to)`.
    pub fn controls(&self) -> BTreeMap<(String, String), ProxyControl> {
        self.pairs
            .iter()
            .map(|(k, p)| (k.clone(), p.control()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test]
    async fn every_pair_gets_a_proxy_and_own_entries_stay_real() {
        let mut servers = Vec::new();
        let mut raft = Vec::new();
        for _ in 0..3 {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            raft.push(l.local_addr().unwrap());
            servers.push(l);
        }
        let names: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
        let mut proxies = PeerProxies::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        let peers = proxies.build(&names, &raft).await.unwrap();
        assert_eq!(proxies.len(), 6);
        for (i, p) in peers.iter().enumerate() {
            let own = format!("{}={}", i + 1, raft[i]);
            assert!(p.split(',').any(|e| e == own), "{p}");
            // The other entries point at proxies, not at the real addresses.
            for (j, r) in raft.iter().enumerate() {
                if j != i {
                    assert!(!p.contains(&r.to_string()), "{p}");
                }
            }
        }
        // n1's entry for n2 reaches n2's listener through the n1->n2 proxy, delayed.
        let controls = proxies.controls();
        let ctl = &controls[&("n1".to_string(), "n2".to_string())];
        assert_eq!(ctl.upstream(), raft[1]);
        ctl.set_delay(Duration::from_millis(150), Duration::ZERO);
        let mut c = TcpStream::connect(ctl.local_addr()).await.unwrap();
        let (mut s, _) = servers[1].accept().await.unwrap();
        let t = std::time::Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert!(
            t.elapsed() >= Duration::from_millis(140),
            "delay not applied"
        );
    }
}
