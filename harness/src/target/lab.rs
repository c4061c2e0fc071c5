//! The lab spawner: each server in its own network namespace behind the lab bridge.
//!
//! `main` enters the lab ([`raftbus_faults::Lab::enter`]) before the runtime starts, for
//! the commands that run servers. Each node name becomes a lab host (`n1` →
//! 198.18.1.1, ...) whose namespace outlives the node's process, so a killed and
//! restarted node keeps its address. The harness (load generator, proxies) stays in the
//! lab namespace itself at 198.18.0.1. When namespaces are not available the lab runs in
//! loopback mode: hosts are 127.0.0.1 and the notes say why.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use raftbus_faults::{Host, Lab, LabMode};

use super::spawner::{spawn_in_own_group, Spawner};
use super::TargetError;

/// Servers in lab hosts; see the module docs.
pub struct LabSpawner {
    lab: Arc<Lab>,
    hosts: Mutex<BTreeMap<String, Host>>,
    /// With a lazy filesystem: the directory holding each node's backing dir.
    lazy_fs: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for LabSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabSpawner")
            .field("mode", self.lab.mode())
            .finish_non_exhaustive()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Lab hosts are kept by holder processes tied (`PR_SET_PDEATHSIG`) to the thread that
/// created them, so they are created on one thread that lives as long as the process.
fn on_lab_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    static THREAD: OnceLock<Mutex<std_mpsc::Sender<Job>>> = OnceLock::new();
    let sender = THREAD.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("raftbus-lab".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .expect("spawn the lab thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = std_mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = reply_tx.send(f());
    });
    sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(job)
        .map_err(|_| io::Error::other("the lab thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the lab thread is gone"))
}

impl LabSpawner {
    /// A spawner whose hosts `names` exist (created now if the lab has not got them yet;
    /// `--target both` reuses them for the second target).
    pub fn new(lab: Arc<Lab>, names: &[String]) -> Result<Self, TargetError> {
        let spawner = LabSpawner {
            lab,
            hosts: Mutex::new(BTreeMap::new()),
            lazy_fs: None,
        };
        for name in names {
            spawner.ensure(name).map_err(|source| TargetError::Io {
                what: format!("create lab host {name}"),
                source,
            })?;
        }
        Ok(spawner)
    }

    pub fn lab(&self) -> &Arc<Lab> {
        &self.lab
    }

    /// Every server's data dir becomes a lazy filesystem backed by `root/<name>` (mounted in
    /// the lab's private mount namespace when the server first starts, unmounted when its
    /// process handle is dropped).
    pub fn with_lazy_fs(mut self, root: std::path::PathBuf) -> Self {
        self.lazy_fs = Some(root);
        self
    }

    fn ensure(&self, name: &str) -> io::Result<Host> {
        if let Some(h) = self
            .hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(h.clone());
        }
        let host = match self.lab.host(name) {
            Some(h) => h,
            None => {
                let lab = self.lab.clone();
                let owned = name.to_string();
                on_lab_thread(move || lab.add_host(&owned))?.map_err(io::Error::other)?
            }
        };
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), host.clone());
        Ok(host)
    }
}

impl Spawner for LabSpawner {
    fn host(&self, name: &str) -> IpAddr {
        match self.ensure(name) {
            Ok(h) => IpAddr::V4(h.addr()),
            Err(e) => {
                // The unspecified address is refused by `check_client_addr`, which then
                // reports the node; the cause is logged here.
                tracing::error!(node = name, error = %e, "no lab host");
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        }
    }

    fn free_port(&self, name: &str) -> io::Result<u16> {
        let host = self.ensure(name)?;
        let addr = host.addr();
        host.run_in(move || {
            let l = TcpListener::bind(SocketAddr::new(IpAddr::V4(addr), 0))?;
            Ok(l.local_addr()?.port())
        })
        .map_err(io::Error::other)?
    }

    fn spawn(&self, name: &str, mut cmd: Command) -> io::Result<Child> {
        let host = self.ensure(name)?;
        host.configure(&mut cmd).map_err(io::Error::other)?;
        spawn_in_own_group(cmd)
    }

    fn network(&self) -> &'static str {
        match self.lab.mode() {
            LabMode::Namespaces { rootless: false } => "namespaces",
            LabMode::Namespaces { rootless: true } => "rootless-namespaces",
            LabMode::Loopback { .. } => "loopback",
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match self.lab.mode() {
            LabMode::Namespaces { rootless } => notes.push(format!(
                "lab: each server in its own network namespace behind bridge rb0 (198.18.0.0/16){}",
                if *rootless {
                    ", rootless through a user namespace"
                } else {
                    ""
                }
            )),
            LabMode::Loopback { reason } => notes.push(format!(
                "lab: loopback ports, no namespaces ({reason}); network faults only through userspace proxies"
            )),
        }
        let caps = self.lab.capabilities();
        if self.lab.mode().is_namespaced() {
            let yes_no = |b: bool| if b { "yes" } else { "no" };
            notes.push(format!(
                "capabilities: nftables {} (partitions, loss), tbf {} (bandwidth), netem {} (kernel delay)",
                yes_no(caps.nftables),
                yes_no(caps.tbf),
                yes_no(caps.netem)
            ));
        }
        notes.extend(caps.notes.iter().map(|n| format!("lab: {n}")));
        if let Some(root) = &self.lazy_fs {
            notes.push(format!(
                "disk: each server's data dir is a lazy FUSE filesystem (writes held in memory until fsync, directory changes until the directory's fsync, written back once older than {}s as the kernel's flusher would), backed by {}/<node>",
                super::process::LAZY_FS_WRITEBACK.as_secs(),
                root.display()
            ));
        }
        notes
    }

    fn lazy_fs_backing(&self, name: &str) -> Option<std::path::PathBuf> {
        self.lazy_fs.as_ref().map(|root| root.join(name))
    }
}

/// The spawner for one target: lab hosts when `main` entered a lab, loopback otherwise.
pub fn spawner_for(
    lab: Option<&Arc<Lab>>,
    names: &[String],
) -> Result<Arc<dyn Spawner>, TargetError> {
    spawner_with_disk(lab, names, None)
}

/// Like [`spawner_for`]; with `lazy_fs`, each server's data dir is a lazy filesystem backed
/// by `lazy_fs/<name>`, which needs the namespace lab (its private mount namespace).
pub fn spawner_with_disk(
    lab: Option<&Arc<Lab>>,
    names: &[String],
    lazy_fs: Option<std::path::PathBuf>,
) -> Result<Arc<dyn Spawner>, TargetError> {
    Ok(match (lab, lazy_fs) {
        (Some(lab), Some(root)) if lab.mode().is_namespaced() => {
            Arc::new(LabSpawner::new(lab.clone(), names)?.with_lazy_fs(root))
        }
        (_, Some(_)) => {
            return Err(TargetError::Disk(
                "the lazy filesystem is mounted only inside the namespace lab (its private mount namespace)"
                    .into(),
            ))
        }
        (Some(lab), None) => Arc::new(LabSpawner::new(lab.clone(), names)?),
        (None, None) => Arc::new(super::LoopbackSpawner),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_lab_hosts_run_on_localhost() {
        let lab = Arc::new(Lab::loopback("unit test"));
        let names = vec!["n1".to_string(), "n2".to_string()];
        let spawner = LabSpawner::new(lab.clone(), &names).unwrap();
        assert_eq!(spawner.host("n1"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(spawner.free_port("n2").unwrap() > 0);
        assert_eq!(spawner.network(), "loopback");
        assert!(spawner.notes()[0].contains("unit test"));
        // A second spawner on the same lab reuses the hosts.
        let again = LabSpawner::new(lab.clone(), &names).unwrap();
        assert_eq!(again.host("n2"), spawner.host("n2"));
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = spawner.spawn("n1", cmd).unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert_eq!(nix::unistd::getpgid(Some(pid)).unwrap(), pid);
        nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(!child.wait().unwrap().success());
    }
}
