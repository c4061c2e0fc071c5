//! Where server processes run and which address they get.
//!
//! A [`Spawner`] turns a prepared [`std::process::Command`] into a running child in the
//! node's environment and says which host address the node listens on. Today the only one
//! is [`LoopbackSpawner`] (every node on 127.0.0.1); a lab spawner will later run each
//! node inside its own network namespace with an address from 198.18.0.0/15.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, OnceLock};

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::process::{start_local, Running};
use super::{ProcessSpec, TargetError};

/// A lazy filesystem a spawner mounted where its server runs (a remote host): the handle
/// the disk faults act through, and its inverse.
pub struct MountedElsewhere {
    pub control: raftbus_faults::DiskControl,
    /// Unmounts it; call once nothing uses it.
    pub unmount: Box<dyn FnOnce() -> Result<(), TargetError> + Send>,
}

impl std::fmt::Debug for MountedElsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountedElsewhere")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

pub trait Spawner: Send + Sync + 'static {
    /// The host address node `name` listens on; clients connect to it.
    fn host(&self, name: &str) -> IpAddr;
    /// A port that is free on `host(name)` right now (it may be taken before use:
    /// callers retry on "address in use").
    fn free_port(&self, name: &str) -> io::Result<u16>;
    /// Starts `cmd` for node `name`, in its own process group, dying with the harness.
    fn spawn(&self, name: &str, cmd: Command) -> io::Result<Child>;
    /// How the harness reaches the nodes, for `summary.environment.network`.
    fn network(&self) -> &'static str;
    /// Notes for the report about this network.
    fn notes(&self) -> Vec<String>;
    /// Where node `name`'s durable data lives when its data dir is to be a lazy filesystem
    /// (power-loss faults): the backing directory. `None`: a plain data dir.
    fn lazy_fs_backing(&self, _name: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// Mounts a lazy filesystem over server `name`'s data dir `data_dir` (the path the
    /// server sees) where the server runs, for spawners whose servers run elsewhere (the
    /// remote spawner, on runs with disk faults). `None`: nothing mounted here; local
    /// spawners mount through [`Spawner::lazy_fs_backing`].
    fn mount_lazy_fs_elsewhere(
        &self,
        _name: &str,
        _data_dir: &Path,
    ) -> Result<Option<MountedElsewhere>, TargetError> {
        Ok(None)
    }
    /// Starts the server `spec` describes. Local spawners start it here through
    /// [`Spawner::spawn`]; the remote spawner starts it on its host over SSH.
    fn start(&self, spec: &ProcessSpec) -> Result<Running, TargetError> {
        start_local(self, spec)
    }
    /// The path server `name` sees for `local`, a path under the run directory (locally the
    /// same path; remotely the same place under the host's run directory).
    fn server_path(&self, _name: &str, local: &Path) -> PathBuf {
        local.to_path_buf()
    }
    /// Makes the local file `local` (under the run directory) readable by server `name` and
    /// returns the path it sees (remotely: uploaded).
    fn provide_file(&self, _name: &str, local: &Path) -> Result<PathBuf, TargetError> {
        Ok(local.to_path_buf())
    }
    /// The binary server `name` runs, given this machine's copy (remotely: uploaded once,
    /// checksum-verified).
    fn program(&self, _name: &str, local: &Path) -> Result<PathBuf, TargetError> {
        Ok(local.to_path_buf())
    }
    /// A program server `name` finds on its `PATH` (e.g. `redis-server`).
    fn program_on_path(&self, _name: &str, program: &str) -> Result<PathBuf, TargetError> {
        super::find_on_path(program).ok_or_else(|| TargetError::MissingBinary {
            name: program.into(),
            hint: format!(
                "it must be on PATH; install it with `sudo apt-get install -y {}`",
                if program == "redis-server" {
                    "redis-server"
                } else {
                    program
                }
            ),
        })
    }
    /// What `program --version` prints where server `name` runs.
    fn version_text(&self, _name: &str, program: &Path) -> String {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
    /// The last `lines` lines of a remote server's log (`None`: the log is local).
    fn remote_log_tail(&self, _spec: &ProcessSpec, _lines: usize) -> Option<String> {
        None
    }
    /// Removes what a failed startup attempt of `names` left outside the run directory.
    fn clear_attempt(&self, _names: &[String]) {}
    /// After the servers stopped: bring what lives elsewhere home (remote logs into
    /// `logs/`) and remove it there when `valid` (server data is kept only to debug a
    /// failed run). Returns notes for the report.
    fn finish(&self, _valid: bool) -> Vec<String> {
        Vec::new()
    }
}

/// Every node on 127.0.0.1, ports from the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackSpawner;

impl Spawner for LoopbackSpawner {
    fn host(&self, _name: &str) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn free_port(&self, _name: &str) -> io::Result<u16> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        Ok(listener.local_addr()?.port())
    }

    fn spawn(&self, _name: &str, cmd: Command) -> io::Result<Child> {
        spawn_in_own_group(cmd)
    }

    fn network(&self) -> &'static str {
        "loopback"
    }

    fn notes(&self) -> Vec<String> {
        vec!["network: loopback ports, no lab namespaces (network faults unavailable)".into()]
    }
}

/// The addresses of the hosts of a `--hosts` inventory, which clients may talk to too.
fn inventory_addrs() -> &'static Mutex<Vec<IpAddr>> {
    static ADDRS: OnceLock<Mutex<Vec<IpAddr>>> = OnceLock::new();
    ADDRS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Allows clients to talk to the hosts of the inventory a run drives (`--hosts`).
pub fn allow_inventory_addrs(addrs: &[IpAddr]) {
    let mut a = inventory_addrs().lock().unwrap_or_else(|p| p.into_inner());
    for addr in addrs {
        if !a.contains(addr) {
            a.push(*addr);
        }
    }
}

/// Refuses any address a client must never talk to: only loopback, the lab range
/// 198.18.0.0/15 and the hosts of the inventory of a `--hosts` run are allowed.
pub fn check_client_addr(addr: SocketAddr) -> Result<(), super::TargetError> {
    if inventory_addrs()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&addr.ip())
    {
        return Ok(());
    }
    let ok = match addr.ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback() || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(v6) => v6.is_loopback(),
    };
    if ok {
        Ok(())
    } else {
        Err(super::TargetError::AddressNotAllowed(addr))
    }
}

type SpawnRequest = (Command, std_mpsc::Sender<io::Result<Child>>);

/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
/// process. Tokio's blocking threads come and go, so every child is forked from one
/// launcher thread that lives as long as the harness process.
fn launcher() -> &'static Mutex<std_mpsc::Sender<SpawnRequest>> {
    static LAUNCHER: OnceLock<Mutex<std_mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("raftbus-launcher".into())
            .spawn(move || {
                // The sender lives in a static, so this loop never ends before the process.
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the launcher thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` in a new process group with `PR_SET_PDEATHSIG(SIGKILL)`.
pub fn spawn_in_own_group(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (setpgid, prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
                .map_err(io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The harness may have died between fork and prctl.
            if nix::unistd::getppid().as_raw() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = std_mpsc::channel();
    launcher()
        .lock()
        .expect("launcher lock")
        .send((cmd, tx))
        .map_err(|_| io::Error::other("launcher thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("launcher thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_lab_addresses_are_allowed() {
        for ok in [
            "127.0.0.1:1",
            "127.3.2.1:5",
            "198.18.0.5:6379",
            "198.19.255.1:1",
            "[::1]:1",
        ] {
            assert!(check_client_addr(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1:1",
            "198.20.0.1:1",
            "8.8.8.8:53",
            "[2001:db8::1]:1",
        ] {
            assert!(check_client_addr(bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn children_get_their_own_process_group() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = spawn_in_own_group(cmd).unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let pgid = nix::unistd::getpgid(Some(pid)).unwrap();
        assert_eq!(pgid, pid);
        nix::sys::signal::killpg(pgid, Signal::SIGKILL).unwrap();
        assert!(!child.wait().unwrap().success());
    }
}
