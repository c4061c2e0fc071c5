//! One server process: started from a fixed command line, killed as a process group.
//!
//! The chaos work drives nodes through [`ServerProcess::kill`], [`ServerProcess::restart`]
//! (same flags, same data dir, same ports), [`ServerProcess::pause`] and
//! [`ServerProcess::resume`]. Each start begins a lifetime of its [`CostMeter`]; the
//! process is sampled right before the harness kills or stops it, and by
//! [`ServerProcess::sample_cost`] in between.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use raftbus_faults::{DiskControl, LazyMount, ProcessHandle};

use super::cost::CostMeter;
use super::spawner::{MountedElsewhere, Spawner};
use super::TargetError;

/// Everything needed to (re)start a server the same way.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Node name, e.g. `n1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// stdout and stderr go here (appended across restarts).
    pub log: PathBuf,
    pub data_dir: PathBuf,
    /// Environment variables set for a server started on this machine (not on a remote host).
    pub env: Vec<(OsString, OsString)>,
}

/// The lazy filesystem writes back changes older than this, as the kernel's flusher does
/// (Linux waits 30 s; shorter here so that runs of a minute see it): a power loss loses what
/// is younger and was not fsynced.
pub const LAZY_FS_WRITEBACK: Duration = Duration::from_secs(5);

/// A lazy filesystem under a server's data dir: mounted by the harness, or by the spawner
/// where the server runs.
enum Mounted {
    Here(LazyMount),
    Elsewhere(MountedElsewhere),
}

pub struct ServerProcess {
    spec: ProcessSpec,
    spawner: Arc<dyn Spawner>,
    child: Option<Running>,
    paused: bool,
    /// The lazy filesystem over `spec.data_dir`, when the spawner asks for one.
    mount: Option<Mounted>,
    /// CPU, memory, disk writes and fsyncs of every lifetime.
    cost: CostMeter,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("name", &self.spec.name)
            .field("pid", &self.pid())
            .field("paused", &self.paused)
            .finish()
    }
}

impl ServerProcess {
    /// Starts the process.
    pub fn start(spec: ProcessSpec, spawner: Arc<dyn Spawner>) -> Result<Self, TargetError> {
        let mut p = ServerProcess {
            spec,
            spawner,
            child: None,
            paused: false,
            mount: None,
            cost: CostMeter::default(),
        };
        p.mount_lazy_fs()?;
        p.spawn()?;
        Ok(p)
    }

    /// Mounts the lazy filesystem over the (empty) data dir when the spawner wants one.
    fn mount_lazy_fs(&mut self) -> Result<(), TargetError> {
        if let Some(m) = self
            .spawner
            .mount_lazy_fs_elsewhere(&self.spec.name, &self.spec.data_dir)?
        {
            self.mount = Some(Mounted::Elsewhere(m));
            return Ok(());
        }
        let Some(backing) = self.spawner.lazy_fs_backing(&self.spec.name) else {
            return Ok(());
        };
        for d in [&backing, &self.spec.data_dir] {
            std::fs::create_dir_all(d).map_err(|source| TargetError::Io {
                what: format!("create {}", d.display()),
                source,
            })?;
        }
        let mount = LazyMount::mount_with(&backing, &self.spec.data_dir, Some(LAZY_FS_WRITEBACK))
            .map_err(|e| TargetError::Disk(format!("{}: {e}", self.spec.name)))?;
        self.mount = Some(Mounted::Here(mount));
        Ok(())
    }

    /// The lazy filesystem's control handle (power loss, torn write), if mounted.
    pub fn disk(&self) -> Option<DiskControl> {
        self.mount.as_ref().map(|m| match m {
            Mounted::Here(m) => m.control(),
            Mounted::Elsewhere(m) => m.control.clone(),
        })
    }

    /// Where the durable state lives: the lazy filesystem's backing dir, else the data dir
    /// (paths on the server's host).
    pub fn durable_dir(&self) -> PathBuf {
        self.disk()
            .map_or_else(|| self.spec.data_dir.clone(), |d| d.backing().to_path_buf())
    }

    fn spawn(&mut self) -> Result<(), TargetError> {
        let running = self.spawner.start(&self.spec)?;
        tracing::debug!(node = %self.spec.name, pid = running.id(), "started");
        self.cost.started(running.id());
        self.child = Some(running);
        self.paused = false;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    /// The process id while it runs (it is also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Running::id)
    }

    /// How the fault journal signals it, while it runs.
    pub fn handle(&self) -> Option<ProcessHandle> {
        self.child.as_ref().map(Running::handle)
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn signal_group(&self, sig: Signal) -> Result<(), TargetError> {
        let Some(child) = &self.child else {
            return Err(TargetError::NotRunning(self.spec.name.clone()));
        };
        child.signal_group(sig).map_err(|source| TargetError::Io {
            what: format!("send {sig} to {}", self.spec.name),
            source,
        })
    }

    /// If the process ended on its own, its exit status (the child is reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_exit()?;
        self.child = None;
        Some(status)
    }

    /// Samples the running process's `/proc` figures into its current lifetime.
    pub fn sample_cost(&mut self) {
        match &self.child {
            Some(Running::Local(c)) => self.cost.sample(c.id()),
            Some(Running::Remote(r)) => {
                if let Some(sample) = r.sample() {
                    self.cost.observe(r.pid(), sample);
                }
            }
            None => {}
        }
    }

    /// Records the fsync count the process reported while it ran as `pid`.
    pub fn observe_fsyncs(&mut self, pid: u32, fsyncs: u64) {
        self.cost.observe_fsyncs(pid, fsyncs);
    }

    /// What the process cost so far, over its lifetimes.
    pub fn cost(&self) -> &CostMeter {
        &self.cost
    }

    /// SIGKILL to the whole process group, then reap. Idempotent.
    pub fn kill(&mut self) {
        // Its counters die with it: the last sample of this lifetime (a process already
        // killed by someone else is a zombie until reaped, and still has its CPU times).
        self.sample_cost();
        if let Some(child) = self.child.take() {
            child.kill_and_reap();
            tracing::debug!(node = %self.spec.name, "killed");
        }
        self.paused = false;
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        // The final figures (final RSS) are those before stopping.
        self.sample_cost();
        if self.paused {
            let _ = self.signal_group(Signal::SIGCONT);
        }
        if self.signal_group(Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// Kills it if it runs, then starts it again with the same flags, data dir and ports.
    pub fn restart(&mut self) -> Result<(), TargetError> {
        self.kill();
        self.spawn()
    }

    /// SIGSTOP to the process group (a GC-pause stand-in).
    pub fn pause(&mut self) -> Result<(), TargetError> {
        self.signal_group(Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT to the process group.
    pub fn resume(&mut self) -> Result<(), TargetError> {
        self.signal_group(Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        match self.spawner.remote_log_tail(&self.spec, lines) {
            Some(tail) => tail,
            None => log_tail(&self.spec.log, lines),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        // Only once nothing uses it.
        let unmounted = match self.mount.take() {
            None => Ok(()),
            Some(Mounted::Here(mut m)) => m.unmount().map_err(|e| e.to_string()),
            Some(Mounted::Elsewhere(m)) => (m.unmount)().map_err(|e| e.to_string()),
        };
        if let Err(e) = unmounted {
            tracing::warn!(node = %self.spec.name, error = %e, "unmounting the lazy filesystem failed");
        }
    }
}

/// Starts `spec` on this machine through `spawner` (the [`Spawner::start`] of local
/// spawners): its data dir and log are local paths, stdout and stderr go to the log.
pub fn start_local<S: Spawner + ?Sized>(
    spawner: &S,
    spec: &ProcessSpec,
) -> Result<Running, TargetError> {
    std::fs::create_dir_all(&spec.data_dir).map_err(|source| TargetError::Io {
        what: format!("create {}", spec.data_dir.display()),
        source,
    })?;
    if let Some(parent) = spec.log.parent() {
        std::fs::create_dir_all(parent).map_err(|source| TargetError::Io {
            what: format!("create {}", parent.display()),
            source,
        })?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|source| TargetError::Io {
            what: format!("open {}", spec.log.display()),
            source,
        })?;
    let log2 = log.try_clone().map_err(|source| TargetError::Io {
        what: "duplicate log handle".into(),
        source,
    })?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let child = spawner
        .spawn(&spec.name, cmd)
        .map_err(|source| TargetError::Spawn {
            program: spec.program.display().to_string(),
            source,
        })?;
    Ok(Running::Local(child))
}

/// A started server: a child of the harness, or a process group on a remote host.
#[derive(Debug)]
pub enum Running {
    Local(Child),
    Remote(super::remote::RemoteChild),
}

impl Running {
    /// The server's pid (locally also its process group id).
    pub fn id(&self) -> u32 {
        match self {
            Running::Local(c) => c.id(),
            Running::Remote(r) => r.pid(),
        }
    }

    /// How the fault journal signals it.
    pub fn handle(&self) -> ProcessHandle {
        match self {
            Running::Local(c) => ProcessHandle::group(c.id()),
            Running::Remote(r) => r.handle(),
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        match self {
            Running::Local(c) => c.try_wait().ok().flatten(),
            Running::Remote(r) => r.exited(),
        }
    }

    fn signal_group(&self, sig: Signal) -> std::io::Result<()> {
        match self {
            Running::Local(c) => {
                killpg(Pid::from_raw(c.id() as i32), sig).map_err(std::io::Error::from)
            }
            Running::Remote(r) => r.signal(sig),
        }
    }

    /// SIGKILL to the group, then wait until it is gone.
    fn kill_and_reap(self) {
        match self {
            Running::Local(mut child) => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::Remote(r) => r.kill_and_wait(),
        }
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB).
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
