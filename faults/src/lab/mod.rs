//! The lab: a private network namespace holding a bridge, one network namespace per host
//! attached to it by a veth pair, and the nftables table through which network faults are
//! applied.
//!
//! ```text
//!  lab namespace (the harness process itself, after Lab::enter)
//!  ┌──────────────────────────────────────────────────────────────┐
//!  │  load generator ── rb0 198.18.0.1/16 (bridge, nft table)     │
//!  │                     ├── vh-n1 ══ veth ══ eth0 198.18.1.1 [n1 netns, kept by a holder]
//!  │                     ├── vh-n2 ══ veth ══ eth0 198.18.1.2 [n2 netns]
//!  │                     └── ...                                  │
//!  └──────────────────────────────────────────────────────────────┘
//! ```
//!
//! Each host's namespace is kept alive by a *holder* process (`sleep infinity` started in a
//! fresh network namespace, in its own process group, with `PR_SET_PDEATHSIG(SIGKILL)`), so
//! a node keeps its address when its process is killed and restarted. Nothing is configured
//! in the host machine's own namespace: when the harness dies, every holder dies with it and
//! all namespaces vanish.

mod probe;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use probe::{probe, Capabilities, NamespaceSupport};

use crate::error::{Error, Result};
use crate::net::{NetControl, NetState};
use crate::sys::{self, Confine};

/// The bridge inside the lab namespace.
pub const BRIDGE: &str = "rb0";
/// The lab's own address on the bridge: where the load generator lives.
pub const LAB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Prefix length of the lab network 198.18.0.0/16 (inside 198.18.0.0/15, RFC 2544).
pub const LAB_PREFIX: u8 = 16;
/// The nftables table (family `bridge`) that holds all network faults.
pub const NFT_TABLE: &str = "raftbus";
/// Reserved endpoint name for the load generator in partitions; no host may use it.
pub const CLIENT_NAME: &str = "client";
/// Hosts per lab (addresses 198.18.1.1 to 198.18.1.250).
const MAX_HOSTS: usize = 250;

/// How the lab runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum LabMode {
    /// Each host in its own network namespace behind the lab bridge.
    Namespaces {
        /// Entered through a user namespace because we are not root.
        rootless: bool,
    },
    /// No namespaces: every host is 127.0.0.1 and only the userspace proxy can inject
    /// network faults.
    Loopback {
        /// Why the namespace lab is not used.
        reason: String,
    },
}

impl LabMode {
    /// Whether hosts have their own namespaces (and kernel network faults are possible).
    pub fn is_namespaced(&self) -> bool {
        matches!(self, LabMode::Namespaces { .. })
    }
}

/// One lab host: a network namespace with address `addr`, in which node processes run.
///
/// Cheap to clone; the namespace itself belongs to the [`Lab`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    name: String,
    addr: Ipv4Addr,
    lab_iface: Option<String>,
    holder: Option<Pid>,
}

impl Host {
    /// The host's name (`n1`, ...), used by partitions and the journal.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address: 198.18.1.N in the namespace lab, 127.0.0.1 in loopback mode.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// `addr:port`.
    pub fn socket_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.addr), port)
    }

    /// The lab-side veth on the bridge (`vh-<name>`); `None` in loopback mode.
    pub fn lab_iface(&self) -> Option<&str> {
        self.lab_iface.as_deref()
    }

    /// Pid of the holder process whose network namespace is this host's.
    pub fn holder_pid(&self) -> Option<Pid> {
        self.holder
    }

    /// A command that runs `program` in this host: in the host's network namespace, in its
    /// own process group (so [`crate::ProcessHandle::kill`] reaches everything it spawns), and
    /// killed when the spawning thread dies (`PR_SET_PDEATHSIG`). Convert it with
    /// `tokio::process::Command::from` for async use.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Result<Command> {
        let mut cmd = Command::new(program);
        self.configure(&mut cmd)?;
        Ok(cmd)
    }

    /// Run `f` on a fresh thread that has joined this host's network namespace, and return
    /// its result. Sockets created inside `f` belong to the host's namespace for their whole
    /// life and may be used from any thread afterwards (useful to open a connection *from*
    /// a node's address). In loopback mode `f` simply runs on the new thread.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let netns = self.holder.map(sys::open_netns).transpose()?;
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                if let Some(ns) = netns {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| Error::sys("setns", e))?;
                }
                Ok(f())
            });
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Apply [`Host::command`]'s confinement to an existing command.
    pub fn configure(&self, cmd: &mut Command) -> Result<()> {
        let netns = self.holder.map(sys::open_netns).transpose()?;
        sys::confine(
            cmd,
            Confine {
                netns,
                new_netns: false,
            },
        );
        Ok(())
    }
}

/// The lab. Create it with [`Lab::enter`] at the very start of `main`; drop it or call
/// [`Lab::teardown`] to remove everything it made.
#[derive(Debug)]
pub struct Lab {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) mode: LabMode,
    pub(crate) caps: Capabilities,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    hosts: BTreeMap<String, Slot>,
    next_index: usize,
    pub(crate) torn_down: bool,
    pub(crate) net: NetState,
}

#[derive(Debug)]
struct Slot {
    host: Host,
    holder: Option<Child>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    pub(crate) fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .get(name)
            .map(|s| &s.host)
            .ok_or_else(|| Error::UnknownHost(name.to_owned()))
    }
}

impl Lab {
    /// Move this process into a new network namespace that becomes the lab (and a private
    /// mount namespace, for the lazy filesystem's mounts), bring `lo` up and create the
    /// bridge `rb0` with 198.18.0.1/16.
    ///
    /// Must be called while the process is single-threaded (first thing in `main`, before any
    /// runtime or thread exists). As root this unshares `CLONE_NEWNET | CLONE_NEWNS`; otherwise
    /// it unshares `CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS` and maps root inside to the caller's uid/gid. When that
    /// is impossible the lab runs in [`LabMode::Loopback`] and says why; never fails.
    pub fn enter() -> Lab {
        match Self::try_enter() {
            Ok(lab) => lab,
            Err(reason) => {
                tracing::warn!(%reason, "namespace lab unavailable, using loopback");
                Lab::loopback(reason)
            }
        }
    }

    fn try_enter() -> std::result::Result<Lab, String> {
        match sys::thread_count() {
            Some(1) => {}
            Some(n) => {
                return Err(format!(
                    "the process has {n} threads; Lab::enter must run before any thread starts"
                ))
            }
            None => return Err("cannot read /proc/self/status".into()),
        }
        let rootless = !nix::unistd::geteuid().is_root();
        let ids = if rootless {
            Some(probe::IdMaps::current().map_err(|e| e.to_string())?)
        } else {
            None
        };
        probe::enter_namespaces(ids.as_ref()).map_err(|e| {
            if rootless {
                format!("unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) failed: {e}")
            } else {
                format!("unshare(CLONE_NEWNET | CLONE_NEWNS) failed: {e}")
            }
        })?;
        // From here on we are inside the new (empty) namespace: loopback still works there.
        sys::loopback_up().map_err(|e| e.to_string())?;
        let support = if rootless {
            NamespaceSupport::Rootless
        } else {
            NamespaceSupport::Root
        };
        let caps = probe::check_here(support);
        if !caps.links {
            return Err(format!(
                "cannot create bridge/veth links in the lab ({})",
                caps.notes.join("; ")
            ));
        }
        let cidr = format!("{LAB_ADDR}/{LAB_PREFIX}");
        let batch = format!(
            "link add {BRIDGE} type bridge\naddr add {cidr} dev {BRIDGE}\nlink set {BRIDGE} up\n"
        );
        sys::run_tool("ip", &["-batch", "-"], Some(&batch), None).map_err(|e| e.to_string())?;
        tracing::info!(rootless, bridge = BRIDGE, addr = %cidr, "entered the lab namespace");
        Ok(Lab::new(LabMode::Namespaces { rootless }, caps))
    }

    /// A lab without namespaces: hosts are 127.0.0.1 and network faults are only available
    /// through [`crate::DelayProxy`].
    pub fn loopback(reason: impl Into<String>) -> Lab {
        let reason = reason.into();
        let caps = Capabilities {
            namespaces: NamespaceSupport::Unavailable(reason.clone()),
            links: false,
            nftables: false,
            tc: false,
            tbf: false,
            netem: false,
            fuse: false,
            notes: vec![
                format!("loopback lab: {reason}"),
                "network faults only through the userspace proxy".into(),
                "fuse: no (the lazy filesystem is mounted only in the lab's private mount namespace)".into(),
            ],
        };
        Lab::new(LabMode::Loopback { reason }, caps)
    }

    fn new(mode: LabMode, caps: Capabilities) -> Lab {
        Lab {
            shared: Arc::new(Shared {
                mode,
                caps,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// How the lab runs.
    pub fn mode(&self) -> &LabMode {
        &self.shared.mode
    }

    /// What the lab can do (checked inside the lab when it was entered).
    pub fn capabilities(&self) -> &Capabilities {
        &self.shared.caps
    }

    /// Where hosts reach the load generator: 198.18.0.1, or 127.0.0.1 in loopback mode.
    pub fn lab_addr(&self) -> Ipv4Addr {
        match self.shared.mode {
            LabMode::Namespaces { .. } => LAB_ADDR,
            LabMode::Loopback { .. } => Ipv4Addr::LOCALHOST,
        }
    }

    /// The network fault controller (partitions, loss, bandwidth), cheap to clone and to hand
    /// to a [`crate::Journal`].
    pub fn net(&self) -> NetControl {
        NetControl::new(self.shared.clone())
    }

    /// Add a host named `name` (lowercase letters, digits and `-`, at most 12 characters, not
    /// `client`). In the namespace lab it gets its own namespace and the next address
    /// 198.18.1.N; in loopback mode it is 127.0.0.1.
    pub fn add_host(&self, name: &str) -> Result<Host> {
        validate_host_name(name)?;
        let mut state = self.shared.lock();
        if state.torn_down {
            return Err(Error::TornDown);
        }
        if state.hosts.contains_key(name) {
            return Err(Error::Invalid(format!("host {name:?} exists already")));
        }
        if state.hosts.len() >= MAX_HOSTS {
            return Err(Error::Invalid(format!("at most {MAX_HOSTS} hosts")));
        }
        state.next_index += 1;
        let index = state.next_index;
        let slot = match self.shared.mode {
            LabMode::Loopback { .. } => Slot {
                host: Host {
                    name: name.to_owned(),
                    addr: Ipv4Addr::LOCALHOST,
                    lab_iface: None,
                    holder: None,
                },
                holder: None,
            },
            LabMode::Namespaces { .. } => create_namespaced_host(name, index)?,
        };
        let host = slot.host.clone();
        state.hosts.insert(name.to_owned(), slot);
        tracing::info!(host = name, addr = %host.addr, "lab host added");
        Ok(host)
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<Host> {
        self.shared.lock().host(name).ok().cloned()
    }

    /// All hosts, by name.
    pub fn hosts(&self) -> Vec<Host> {
        self.shared
            .lock()
            .hosts
            .values()
            .map(|s| s.host.clone())
            .collect()
    }

    /// Remove every fault, kill the holders (their namespaces vanish with them), delete the
    /// nft table and the bridge. Idempotent; also run on drop.
    pub fn teardown(&self) -> Result<()> {
        let mut state = self.shared.lock();
        if state.torn_down {
            return Ok(());
        }
        state.torn_down = true;
        state.net = NetState::default();
        let mut first_err: Option<Error> = None;
        for (name, mut slot) in std::mem::take(&mut state.hosts) {
            // Delete the veth pair now: a namespace dies asynchronously after its last
            // process, and its links would linger for a moment.
            if let Some(iface) = slot.host.lab_iface() {
                if let Err(e) = sys::run_tool("ip", &["link", "del", iface], None, None) {
                    if !is_absent(&e) {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(mut holder) = slot.holder.take() {
                let pid = Pid::from_raw(holder.id() as i32);
                if let Err(e) = killpg(pid, Signal::SIGKILL) {
                    tracing::warn!(host = %name, %pid, error = %e, "killing holder failed");
                }
                if let Err(e) = holder.wait() {
                    tracing::warn!(host = %name, %pid, error = %e, "reaping holder failed");
                }
            }
        }
        if self.shared.mode.is_namespaced() {
            if self.shared.caps.nftables {
                if let Err(e) =
                    sys::run_tool("nft", &["delete", "table", "bridge", NFT_TABLE], None, None)
                {
                    if !is_absent(&e) {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Err(e) = sys::run_tool("ip", &["link", "del", BRIDGE], None, None) {
                if !is_absent(&e) {
                    first_err.get_or_insert(e);
                }
            }
        }
        tracing::info!("lab torn down");
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(error = %e, "lab teardown failed");
        }
    }
}

/// Whether a tool error says the thing to delete does not exist (idempotent deletes).
pub(crate) fn is_absent(e: &Error) -> bool {
    match e {
        Error::Command { stderr, .. } => {
            let s = stderr.to_ascii_lowercase();
            s.contains("no such file")
                || s.contains("cannot find device")
                || s.contains("does not exist")
                || s.contains("handle of zero")
        }
        _ => false,
    }
}

fn validate_host_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 12
        && name != CLIENT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "host name {name:?}: use 1-12 of [a-z0-9-], not {CLIENT_NAME:?}"
        )))
    }
}

/// Address of the `index`-th host (1-based): 198.18.1.index.
fn host_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, index as u8)
}

fn create_namespaced_host(name: &str, index: usize) -> Result<Slot> {
    let mut cmd = Command::new("sleep");
    cmd.arg("infinity")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    sys::confine(
        &mut cmd,
        Confine {
            netns: None,
            new_netns: true,
        },
    );
    let mut holder = cmd.spawn().map_err(|source| Error::Spawn {
        command: format!("holder for {name} (sleep infinity in a new netns)"),
        source,
    })?;
    let pid = Pid::from_raw(holder.id() as i32);
    let lab_iface = format!("vh-{name}");
    let peer = format!("vp-{name}");
    let addr = host_addr(index);
    let setup = || -> Result<()> {
        let lab_side = format!(
            "link add {lab_iface} type veth peer name {peer}\n\
             link set {peer} netns {pid}\n\
             link set {lab_iface} master {BRIDGE}\n\
             link set {lab_iface} up\n"
        );
        sys::run_tool("ip", &["-batch", "-"], Some(&lab_side), None)?;
        let host_side = format!(
            "link set lo up\n\
             link set {peer} name eth0\n\
             addr add {addr}/{LAB_PREFIX} dev eth0\n\
             link set eth0 up\n"
        );
        sys::run_tool("ip", &["-batch", "-"], Some(&host_side), Some(pid))?;
        wait_link_ready(&lab_iface, pid)
    };
    if let Err(e) = setup() {
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = holder.wait();
        let _ = sys::run_tool("ip", &["link", "del", &lab_iface], None, None);
        return Err(e);
    }
    Ok(Slot {
        host: Host {
            name: name.to_owned(),
            addr,
            lab_iface: Some(lab_iface),
            holder: Some(pid),
        },
        holder: Some(holder),
    })
}

/// Wait until both ends of a new host's veth are up and the bridge port forwards: the
/// kernel processes carrier changes asynchronously (link watch), and packets sent before
/// that are dropped, which would make a node's first connection attempts time out.
fn wait_link_ready(lab_iface: &str, holder: Pid) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let lab_side = sys::run_tool(
            "ip",
            &["-d", "-o", "link", "show", "dev", lab_iface],
            None,
            None,
        )?;
        let host_side = sys::run_tool(
            "ip",
            &["-o", "link", "show", "dev", "eth0"],
            None,
            Some(holder),
        )?;
        let ready = lab_side.contains("state UP")
            && lab_side.contains("state forwarding")
            && host_side.contains("state UP");
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "link {lab_iface} did not come up within 5s: {} / {}",
                lab_side.trim(),
                host_side.trim()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_checked() {
        for good in ["n1", "node-12", "a"] {
            assert!(validate_host_name(good).is_ok(), "{good}");
        }
        for bad in ["", "client", "N1", "n_1", "thirteen-char", "n 1"] {
            assert!(validate_host_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_lab_hosts_are_localhost() {
        let lab = Lab::loopback("test");
        let h = lab.add_host("n1").unwrap();
        assert_eq!(h.addr(), Ipv4Addr::LOCALHOST);
        assert!(h.lab_iface().is_none());
        assert!(lab.add_host("n1").is_err(), "duplicate host accepted");
        assert_eq!(lab.lab_addr(), Ipv4Addr::LOCALHOST);
        assert!(!lab.mode().is_namespaced());
        lab.teardown().unwrap();
        lab.teardown().unwrap();
        assert!(matches!(lab.add_host("n2"), Err(Error::TornDown)));
    }

    #[test]
    fn addresses_are_in_the_benchmark_range() {
        assert_eq!(host_addr(1), Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(host_addr(250), Ipv4Addr::new(198, 18, 1, 250));
    }
}
