//! Real hosts over SSH (`--hosts hosts.toml`): the servers run on the inventory's machines,
//! every client (publishers, subscribers, readers) stays on this control host, so latency is
//! measured on one clock.
//!
//! - [`inventory`] — `hosts.toml` as validated data.
//! - [`state`] — the per-inventory state file: what runs changed where, for heal.
//! - [`heal`] — `raftbus hosts heal`, also run at the start of every `--hosts` run: removes
//!   what a crashed run left (its processes, the `inet raftbus` tables, raftbus's qdiscs).
//! - [`check`] — `raftbus hosts check`: connect, report kernel, disk, capabilities, RTT.
//! - [`lazyfs`] — `raftbus lazyfs`, run on the hosts: serves the lazy filesystem under a
//!   server's data dir and answers the disk faults.
//! - [`lab`] — `raftbus hosts lab`: stand-in hosts for tests and docs, `sshd` in lab
//!   namespaces with keys made for the occasion, and the matching `hosts.toml`.
//!
//! [`Fleet`] is the connected inventory: one [`Remote`] per host (the system OpenSSH
//! client, multiplexed, strict host keys), what each host offers ([`HostFacts`]), and the
//! RTT between hosts measured when it connected. The remote spawner
//! ([`crate::target::remote`]) starts servers through it and the fault journal reaches the
//! hosts through [`raftbus_faults::remote`].

pub mod check;
pub mod heal;
pub mod inventory;
pub mod lab;
pub mod lazyfs;
pub mod state;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use raftbus_faults::remote::{probe, CommandLog, HostFacts, Remote, RemoteNet, SshTarget};

pub use inventory::{HostSpec, Inventory, InventoryError};
pub use state::{StateFile, StateRecord};

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("host {host}: {source}")]
    Remote {
        host: String,
        source: raftbus_faults::Error,
    },
    #[error("host {host}: {message}")]
    Host { host: String, message: String },
    #[error("the inventory has {have} hosts, the run needs {need}: {why}")]
    TooFew {
        have: usize,
        need: usize,
        why: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("hosts lab: {0}")]
    Lab(String),
}

/// One connected host.
#[derive(Debug, Clone)]
pub struct FleetHost {
    pub spec: HostSpec,
    pub remote: Remote,
    pub facts: HostFacts,
}

/// Round-trip time between two hosts.
#[derive(Debug, Clone)]
pub struct Rtt {
    pub from: String,
    pub to: String,
    /// Milliseconds, or why it could not be measured.
    pub ms: Result<f64, String>,
}

/// The connected inventory; see the module docs.
#[derive(Debug)]
pub struct Fleet {
    pub inventory: Inventory,
    pub hosts: Vec<FleetHost>,
    pub rtt: Vec<Rtt>,
    pub state: Arc<StateFile>,
    /// Stale ssh masters (of a killed harness) closed before connecting.
    pub stale_masters_closed: usize,
}

/// Where the ssh control sockets of `inventory` live: a short path (sockets are limited to
/// 108 bytes) derived from the inventory's state directory, so heal finds stale ones.
pub fn control_dir(inventory: &Inventory) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    inventory.state_dir().hash(&mut h);
    std::env::temp_dir().join(format!("raftbus-ssh-{:08x}", h.finish() as u32))
}

impl Fleet {
    /// Connects to every host (in parallel) and probes it; commands that change a host go
    /// to `log`.
    pub fn connect(inventory: Inventory, log: CommandLog) -> Result<Fleet, HostsError> {
        let state_dir = inventory.state_dir();
        let state = Arc::new(
            StateFile::open(&state_dir).map_err(|source| HostsError::Io {
                what: format!("open the hosts state in {}", state_dir.display()),
                source,
            })?,
        );
        let control = control_dir(&inventory);
        // Masters a killed harness left behind; ours are made below, in the same place.
        let stale_masters_closed = raftbus_faults::remote::close_stale_masters(&control);
        let results: Vec<Result<FleetHost, HostsError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = inventory
                .hosts
                .iter()
                .map(|spec| {
                    let target = SshTarget {
                        name: spec.name.clone(),
                        address: spec.address.to_string(),
                        user: spec.user.clone(),
                        port: spec.port,
                        identity: spec.identity.clone(),
                        config: inventory.ssh_config.clone(),
                        known_hosts: inventory.known_hosts.clone(),
                        control_dir: control.clone(),
                        connect_timeout: inventory.connect_timeout,
                        sudo: spec.sudo,
                    };
                    let log = log.clone();
                    scope.spawn(move || connect_one(spec, &target, log))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(HostsError::Lab("a connect thread panicked".into()))
                    })
                })
                .collect()
        });
        let hosts = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        crate::target::spawner::allow_inventory_addrs(
            &hosts.iter().map(|h| h.spec.address).collect::<Vec<_>>(),
        );
        Ok(Fleet {
            inventory,
            hosts,
            rtt: Vec::new(),
            state,
            stale_masters_closed,
        })
    }

    /// Measures the RTT between every ordered pair of hosts (`ping` from one to the other).
    pub fn measure_rtt(&mut self) {
        let mut out = Vec::new();
        for a in &self.hosts {
            for b in &self.hosts {
                if a.spec.name == b.spec.name {
                    continue;
                }
                let ms = if a.facts.ping {
                    probe::rtt_ms(&a.remote, &b.spec.address)
                } else {
                    Err(format!("ping is not installed on {}", a.spec.name))
                };
                out.push(Rtt {
                    from: a.spec.name.clone(),
                    to: b.spec.name.clone(),
                    ms,
                });
            }
        }
        self.rtt = out;
    }

    /// A network fault controller over these hosts (nodes are added by the spawner).
    pub fn net(&self) -> RemoteNet {
        let net = RemoteNet::new();
        for h in &self.hosts {
            // Without SSH_CONNECTION the client address is unknown: client partitions
            // then match no address on that host, and the notes say so.
            let client = h
                .facts
                .client_addr
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            net.add_host(&h.remote, client, h.facts.net_caps());
        }
        net
    }

    /// The topology, one line per host and one for the RTTs, for the report's notes.
    pub fn topology_notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "hosts: {} machines over ssh from {} (clients stay on the control host)",
            self.hosts.len(),
            self.inventory.path.display()
        )];
        for h in &self.hosts {
            notes.push(format!(
                "host {}: {} ({}), kernel {}, disk {} ({} free) under {}, faults: {}",
                h.spec.name,
                h.spec.address,
                h.spec.interface,
                h.facts.kernel,
                if h.facts.disk.is_empty() {
                    "unknown"
                } else {
                    &h.facts.disk
                },
                h.facts
                    .disk_free_kib
                    .map_or_else(|| "?".into(), |k| format!("{} MiB", k / 1024)),
                h.spec.root.display(),
                fault_support(&h.spec, &h.facts).join(", ")
            ));
        }
        if !self.rtt.is_empty() {
            let pairs: Vec<String> = self
                .rtt
                .iter()
                .map(|r| match &r.ms {
                    Ok(ms) => format!("{}->{} {ms:.3} ms", r.from, r.to),
                    Err(e) => format!("{}->{} not measured ({e})", r.from, r.to),
                })
                .collect();
            notes.push(format!(
                "rtt between hosts at start (ping): {}",
                pairs.join(", ")
            ));
        }
        notes
    }
}

/// Why host `spec` cannot serve a lazy filesystem (power-loss, torn-write, corrupt), if it
/// cannot.
pub fn disk_unavailable(spec: &HostSpec, f: &HostFacts) -> Option<String> {
    if !f.fuse_device {
        Some("no /dev/fuse".into())
    } else if spec.user != "root" {
        Some(format!(
            "the ssh user is {}, not root (the servers must use the FUSE mount root holds)",
            spec.user
        ))
    } else {
        None
    }
}

/// What one host offers, per fault kind, as `kind yes|no (why)`.
pub fn fault_support(spec: &HostSpec, f: &HostFacts) -> Vec<String> {
    let yn = |ok: bool, why: &str| {
        if ok {
            "yes".to_string()
        } else {
            format!("no ({why})")
        }
    };
    vec![
        "kill/pause/terminate/restart yes (signals over ssh)".to_string(),
        format!(
            "partition/loss {}",
            yn(f.nftables, "nftables inet table cannot be loaded")
        ),
        format!("bandwidth {}", yn(f.tbf, "no tbf qdisc")),
        format!("delay {}", yn(f.netem, "this kernel has no netem")),
        match disk_unavailable(spec, f) {
            None => {
                "power-loss/torn-write/corrupt yes (raftbus lazyfs serve on the host)".to_string()
            }
            Some(why) => format!("power-loss/torn-write/corrupt no ({why})"),
        },
    ]
}

fn connect_one(
    spec: &HostSpec,
    target: &SshTarget,
    log: CommandLog,
) -> Result<FleetHost, HostsError> {
    let remote = Remote::connect(target, log).map_err(|source| HostsError::Remote {
        host: spec.name.clone(),
        source,
    })?;
    let facts =
        probe::probe(&remote, &spec.root, &spec.interface, &spec.address).map_err(|source| {
            HostsError::Remote {
                host: spec.name.clone(),
                source,
            }
        })?;
    if !facts.iface_ok {
        return Err(HostsError::Host {
            host: spec.name.clone(),
            message: format!(
                "interface {} does not carry {} (check `interface` and `address` in the inventory)",
                spec.interface, spec.address
            ),
        });
    }
    Ok(FleetHost {
        spec: spec.clone(),
        remote,
        facts,
    })
}
