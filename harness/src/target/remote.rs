//! The remote spawner: each server on an inventory host, started over SSH (`--hosts`).
//!
//! Server `n1` runs on the first host, `n2` on the second, ...; Sentinels on the hosts after
//! the Redis servers. Under the host's root each run has its own directory
//! `<root>/runs/<run>/` holding the marker `.raftbus-run`, `data/`, `logs/`, the config files
//! the harness uploads, and `pids/<server>.pid` (`pgid start pid start`), which the start
//! script writes itself, so `raftbus hosts heal` finds every process even when the harness
//! died before recording it. The node binary is uploaded once to `<root>/bin/` and its
//! sha256 checked; an identical one already there is reused.
//!
//! A server is started by `setsid sh -c '<server> & ...; wait; echo $? > pids/<server>.status'`:
//! the `sh` leads a process group of its own (signals reach the server through it) and
//! records the exit status; stdout and stderr go to `logs/<server>.log`, fetched into the
//! local `logs/` when the run ends.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use raftbus_faults::remote::process::{same_process_test, stat_start_time};
use raftbus_faults::remote::{quote, Remote, RemoteDisk, RemoteNet, RemoteNode, RemoteProcess};
use raftbus_faults::{DiskControl, ProcessHandle};
use rand::Rng;

use super::cost::ProcSample;
use super::process::Running;
use super::spawner::{MountedElsewhere, Spawner};
use super::{ProcessSpec, TargetError};
use crate::hosts::heal::RUN_MARKER;
use crate::hosts::{Fleet, FleetHost, StateRecord};

/// Ports handed out to remote servers.
const PORT_RANGE: std::ops::Range<u16> = 20000..60000;
/// How long a killed remote process gets to be gone.
const GONE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a remote lazy filesystem gets to come up.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);

fn remote_err(host: &str, e: raftbus_faults::Error) -> TargetError {
    TargetError::Remote {
        host: host.to_string(),
        message: e.to_string(),
    }
}

/// A server running on a remote host.
#[derive(Debug)]
pub struct RemoteChild {
    process: RemoteProcess,
    /// `pids/<server>.status` on the host.
    status: PathBuf,
    name: String,
}

impl RemoteChild {
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    pub fn handle(&self) -> ProcessHandle {
        ProcessHandle::remote(self.process.clone())
    }

    fn remote(&self) -> &Remote {
        self.process.remote()
    }

    /// Its exit status once it ended (from the status file its wrapper writes; a group
    /// killed by a signal has none, and reads as killed by SIGKILL).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let p = &self.process;
        let script = format!(
            "if {}; then echo running; elif [ -f {st} ]; then cat {st}; elif {}; then echo running; else echo killed; fi",
            same_process_test(p.pid, p.pid_start),
            same_process_test(p.pgid, p.pgid_start),
            st = quote(&self.status.to_string_lossy()),
        );
        match self.remote().query(&script) {
            Ok(out) => match out.trim() {
                "running" => None,
                "killed" => Some(ExitStatus::from_raw(libc_sigkill())),
                code => {
                    let c: i32 = code.parse().ok()?;
                    Some(if c > 128 {
                        ExitStatus::from_raw(c - 128)
                    } else {
                        ExitStatus::from_raw(c << 8)
                    })
                }
            },
            Err(e) => {
                tracing::warn!(node = %self.name, error = %e, "cannot ask whether a remote server runs");
                None
            }
        }
    }

    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        self.process.signal(sig).map_err(io::Error::other)
    }

    /// SIGKILL to the group, then wait until the server is gone.
    pub fn kill_and_wait(self) {
        if let Err(e) = self.process.signal(Signal::SIGKILL) {
            tracing::warn!(node = %self.name, error = %e, "cannot kill a remote server");
            return;
        }
        let deadline = Instant::now() + GONE_TIMEOUT;
        while !self.process.state().is_gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU, memory and disk writes from the host's `/proc/<pid>`.
    pub fn sample(&self) -> Option<ProcSample> {
        let pid = self.process.pid;
        let out = self
            .remote()
            .query(&format!(
                "cat /proc/{pid}/stat 2>/dev/null && echo @@ && cat /proc/{pid}/status 2>/dev/null; echo @@; cat /proc/{pid}/io 2>/dev/null; true"
            ))
            .ok()?;
        let mut parts = out.split("@@\n");
        let stat = parts.next()?;
        if stat_start_time(stat) != Some(self.process.pid_start) {
            return None;
        }
        super::cost::sample_from(stat, parts.next(), parts.next())
    }
}

/// Stops a remote `raftbus lazyfs serve` (SIGTERM: it unmounts), and detaches the mount
/// if it is still there (a server that could not unmount, or was killed).
fn unmount_remote(
    mut serve: RemoteChild,
    remote: &Remote,
    mountpoint: &Path,
) -> Result<(), TargetError> {
    if serve.signal(Signal::SIGTERM).is_ok() {
        let deadline = Instant::now() + GONE_TIMEOUT;
        while serve.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    serve.kill_and_wait();
    let m = quote(&mountpoint.to_string_lossy());
    remote
        .change(&remote.as_root(&format!(
            "if awk -v m={m} '$2 == m {{f=1}} END {{exit !f}}' /proc/mounts; then umount -l {m} && echo detached; fi"
        )))
        .map(|_| ())
        .map_err(|e| remote_err(remote.name(), e))
}

fn libc_sigkill() -> i32 {
    Signal::SIGKILL as i32
}

/// Servers on inventory hosts; see the module docs.
pub struct RemoteSpawner {
    fleet: Arc<Fleet>,
    /// Server name → index into the fleet's hosts.
    placement: BTreeMap<String, usize>,
    /// The local results directory of this target (paths under it map to the run dir).
    local_dir: PathBuf,
    run: String,
    net: RemoteNet,
    ports: Mutex<BTreeMap<usize, BTreeSet<u16>>>,
    uploaded: Mutex<BTreeMap<(usize, PathBuf), PathBuf>>,
    /// Every process started, with the index of its host.
    started: Mutex<BTreeMap<String, (usize, ProcessSpec)>>,
    run_dirs: Mutex<BTreeSet<usize>>,
    /// The servers whose data dir is a lazy filesystem served on their host (disk faults).
    lazy_fs: BTreeSet<String>,
}

impl std::fmt::Debug for RemoteSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSpawner")
            .field("run", &self.run)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl RemoteSpawner {
    /// A spawner placing `servers` (in order) on the fleet's hosts, one server per host.
    pub fn new(
        fleet: Arc<Fleet>,
        servers: &[String],
        local_dir: &Path,
        run: String,
    ) -> Result<RemoteSpawner, TargetError> {
        if servers.len() > fleet.hosts.len() {
            return Err(TargetError::Remote {
                host: "inventory".into(),
                message: format!(
                    "the run has {} servers ({}) and the inventory {} hosts: one server per host (partitions and loss act on host addresses)",
                    servers.len(),
                    servers.join(","),
                    fleet.hosts.len()
                ),
            });
        }
        let placement: BTreeMap<String, usize> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        let net = fleet.net();
        for (server, &i) in &placement {
            let h = &fleet.hosts[i];
            net.add_node(RemoteNode {
                name: server.clone(),
                remote: h.remote.clone(),
                addr: h.spec.address,
                iface: h.spec.interface.clone(),
            });
        }
        Ok(RemoteSpawner {
            fleet,
            placement,
            local_dir: local_dir.to_path_buf(),
            run,
            net,
            ports: Mutex::default(),
            uploaded: Mutex::default(),
            started: Mutex::default(),
            run_dirs: Mutex::default(),
            lazy_fs: BTreeSet::new(),
        })
    }

    /// The data dirs of `servers` become lazy filesystems served on their hosts by the
    /// uploaded `raftbus lazyfs serve` (power-loss, torn-write and corrupt faults).
    pub fn with_lazy_fs(mut self, servers: &[String]) -> Self {
        self.lazy_fs = servers.iter().cloned().collect();
        self
    }

    /// Uploads this binary to the host of `name`, starts `raftbus lazyfs serve` there over
    /// the server's (remote) `data_dir`, and waits until it answers on its control socket.
    fn mount_remote(&self, name: &str, data_dir: &Path) -> Result<MountedElsewhere, TargetError> {
        let i = self.host_index(name);
        let h = &self.fleet.hosts[i];
        let exe = std::env::current_exe().map_err(|source| TargetError::Io {
            what: "find the raftbus binary to upload".into(),
            source,
        })?;
        let program = self.program(name, &exe)?;
        let backing = self.server_path_on(i, &self.local_dir.join(super::DISK_DIR).join(name));
        let control = self
            .run_dir(i)
            .join("pids")
            .join(format!("lazyfs-{name}.sock"));
        let spec = ProcessSpec {
            name: format!("lazyfs-{name}"),
            program: program.clone(),
            args: [
                "lazyfs".as_ref(),
                "serve".as_ref(),
                "--backing".as_ref(),
                backing.as_os_str(),
                "--mount".as_ref(),
                data_dir.as_os_str(),
                "--control".as_ref(),
                control.as_os_str(),
            ]
            .into_iter()
            .map(std::ffi::OsStr::to_os_string)
            .collect(),
            log: self
                .local_dir
                .join("logs")
                .join(format!("lazyfs-{name}.log")),
            data_dir: backing.clone(),
            env: Vec::new(),
        };
        let mut serve = self.start_on(i, &spec)?;
        let socket = quote(&control.to_string_lossy());
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            let ready = h
                .remote
                .query(&format!("if [ -S {socket} ]; then echo ready; fi"))
                .map_err(|e| remote_err(&h.spec.name, e))?;
            if ready.trim() == "ready" {
                break;
            }
            let failed = serve.exited().map(|st| format!("exited ({st})"));
            let failed = failed.or_else(|| {
                (Instant::now() > deadline)
                    .then(|| format!("no control socket after {MOUNT_TIMEOUT:?}"))
            });
            if let Some(why) = failed {
                let tail = self.remote_log_tail(&spec, 20).unwrap_or_default();
                serve.kill_and_wait();
                return Err(TargetError::Disk(format!(
                    "{name}: the lazy filesystem on {} {why}: {tail}",
                    h.spec.name
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!(node = %name, host = %h.spec.name, "lazy filesystem served remotely");
        let control =
            DiskControl::remote(RemoteDisk::new(h.remote.clone(), program, control, backing));
        let remote = h.remote.clone();
        let mountpoint = data_dir.to_path_buf();
        let unmount = move || unmount_remote(serve, &remote, &mountpoint);
        Ok(MountedElsewhere {
            control,
            unmount: Box::new(unmount),
        })
    }

    /// The network fault controller over the hosts this run uses.
    pub fn net(&self) -> RemoteNet {
        self.net.clone()
    }

    fn host_index(&self, name: &str) -> usize {
        // Only names of this run reach the spawner (see `new`).
        self.placement.get(name).copied().unwrap_or(0)
    }

    fn host(&self, name: &str) -> &FleetHost {
        &self.fleet.hosts[self.host_index(name)]
    }

    fn run_dir(&self, i: usize) -> PathBuf {
        self.fleet.hosts[i].spec.root.join("runs").join(&self.run)
    }

    /// Creates the run directory (with its marker) on the host of `name`, once.
    fn ensure_run_dir(&self, name: &str) -> Result<PathBuf, TargetError> {
        self.ensure_run_dir_on(self.host_index(name))
    }

    /// Creates the run directory (with its marker) on host `i`, once.
    fn ensure_run_dir_on(&self, i: usize) -> Result<PathBuf, TargetError> {
        let dir = self.run_dir(i);
        let mut made = self.run_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if made.contains(&i) {
            return Ok(dir);
        }
        let h = &self.fleet.hosts[i];
        let d = quote(&dir.to_string_lossy());
        h.remote
            .change(&format!(
                "mkdir -p {d}/pids {d}/logs {d}/data && echo {run} > {d}/{RUN_MARKER}",
                run = quote(&self.run)
            ))
            .map_err(|e| remote_err(&h.spec.name, e))?;
        self.fleet.state.append(&StateRecord::RunDir {
            run: self.run.clone(),
            host: h.spec.name.clone(),
            dir: dir.clone(),
        });
        made.insert(i);
        Ok(dir)
    }

    /// Starts `spec` on host `i` (see the module docs); its paths are local paths under the
    /// run directory, mapped to the host's run directory.
    fn start_on(&self, i: usize, spec: &ProcessSpec) -> Result<RemoteChild, TargetError> {
        let h = &self.fleet.hosts[i];
        let dir = self.ensure_run_dir_on(i)?;
        let name = &spec.name;
        let log = self.server_path_on(i, &spec.log);
        let mut server = vec![quote(&spec.program.to_string_lossy())];
        server.extend(spec.args.iter().map(|a| quote(&a.to_string_lossy())));
        let inner = format!(
            "{} >>{} 2>&1 </dev/null & echo \"$$ $!\" > pids/{name}.ids; wait $!; echo $? > pids/{name}.status",
            server.join(" "),
            quote(&log.to_string_lossy())
        );
        let script = format!(
            "set -e; cd {d}; mkdir -p {data} \"$(dirname {log})\"; rm -f pids/{name}.ids pids/{name}.status pids/{name}.pid\n\
             setsid sh -c {inner} >/dev/null 2>&1 </dev/null &\n\
             i=0; while [ ! -s pids/{name}.ids ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done\n\
             read g p < pids/{name}.ids\n\
             st() {{ s=$(cat /proc/$1/stat 2>/dev/null) || {{ echo 0; return; }}; s=${{s##*) }}; set -- $s; echo ${{20}}; }}\n\
             echo \"$g $(st $g) $p $(st $p)\" > pids/{name}.pid; cat pids/{name}.pid",
            d = quote(&dir.to_string_lossy()),
            data = quote(&spec.data_dir.to_string_lossy()),
            log = quote(&log.to_string_lossy()),
            inner = quote(&inner),
        );
        let out = h
            .remote
            .change(&script)
            .map_err(|e| remote_err(&h.spec.name, e))?;
        let nums: Vec<u64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [pgid, pgid_start, pid, pid_start] = nums[..] else {
            return Err(TargetError::Remote {
                host: h.spec.name.clone(),
                message: format!("starting {name} printed {:?}, not its pids", out.trim()),
            });
        };
        self.fleet.state.append(&StateRecord::Process {
            run: self.run.clone(),
            host: h.spec.name.clone(),
            server: name.clone(),
            pgid: pgid as u32,
            pgid_start,
            pid: pid as u32,
            pid_start,
        });
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), (i, spec.clone()));
        tracing::info!(node = %name, host = %h.spec.name, pid, pgid, "started remotely");
        Ok(RemoteChild {
            process: RemoteProcess::new(
                h.remote.clone(),
                pgid as u32,
                pgid_start,
                pid as u32,
                pid_start,
            ),
            status: dir.join("pids").join(format!("{name}.status")),
            name: name.clone(),
        })
    }

    /// Where the local path `local` (under the run directory) is on host `i`.
    fn server_path_on(&self, i: usize, local: &Path) -> PathBuf {
        let dir = self.run_dir(i);
        match local.strip_prefix(&self.local_dir) {
            Ok(rel) => dir.join(rel),
            Err(_) => dir.join(local.file_name().unwrap_or_default()),
        }
    }

    fn sha256_local(path: &Path) -> Result<String, TargetError> {
        let out = Command::new("sha256sum")
            .arg(path)
            .output()
            .map_err(|source| TargetError::Io {
                what: "run sha256sum".into(),
                source,
            })?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .filter(|s| s.len() == 64)
            .map(str::to_string)
            .ok_or_else(|| TargetError::Io {
                what: format!("sha256sum {}", path.display()),
                source: io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            })
    }
}

impl Spawner for RemoteSpawner {
    fn host(&self, name: &str) -> IpAddr {
        self.host(name).spec.address
    }

    fn free_port(&self, name: &str) -> io::Result<u16> {
        let i = self.host_index(name);
        let h = &self.fleet.hosts[i];
        let listening = h
            .remote
            .query("ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://'")
            .map_err(io::Error::other)?;
        let busy: BTreeSet<u16> = listening
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        let given = ports.entry(i).or_default();
        let mut rng = rand::thread_rng();
        for _ in 0..1000 {
            let p = rng.gen_range(PORT_RANGE);
            if !busy.contains(&p) && given.insert(p) {
                let all: Vec<u16> = ports.values().flatten().copied().collect();
                self.net.set_ports(all);
                return Ok(p);
            }
        }
        Err(io::Error::other(format!(
            "no free port on {} in {PORT_RANGE:?}",
            h.spec.name
        )))
    }

    fn spawn(&self, name: &str, _cmd: Command) -> io::Result<Child> {
        Err(io::Error::other(format!(
            "{name} runs on a remote host: it is started through Spawner::start"
        )))
    }

    fn network(&self) -> &'static str {
        "ssh-hosts"
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.fleet.topology_notes();
        let placed: Vec<String> = self
            .placement
            .iter()
            .map(|(s, &i)| format!("{s} on {}", self.fleet.hosts[i].spec.name))
            .collect();
        notes.push(format!(
            "placement: {}; run directory {} on each host",
            placed.join(", "),
            Path::new("<root>/runs").join(&self.run).display()
        ));
        notes.push(
            "network faults on the hosts: table inet raftbus (partition, loss), root qdisc 5242: (bandwidth, netem delay); every remote command is in hosts-commands.jsonl"
                .into(),
        );
        notes
    }

    fn start(&self, spec: &ProcessSpec) -> Result<Running, TargetError> {
        self.start_on(self.host_index(&spec.name), spec)
            .map(Running::Remote)
    }

    fn mount_lazy_fs_elsewhere(
        &self,
        name: &str,
        data_dir: &Path,
    ) -> Result<Option<MountedElsewhere>, TargetError> {
        if !self.lazy_fs.contains(name) {
            return Ok(None);
        }
        self.mount_remote(name, data_dir).map(Some)
    }

    fn server_path(&self, name: &str, local: &Path) -> PathBuf {
        self.server_path_on(self.host_index(name), local)
    }

    fn provide_file(&self, name: &str, local: &Path) -> Result<PathBuf, TargetError> {
        self.ensure_run_dir(name)?;
        let data = std::fs::read(local).map_err(|source| TargetError::Io {
            what: format!("read {}", local.display()),
            source,
        })?;
        let path = self.server_path(name, local);
        let h = self.host(name);
        h.remote
            .upload(Arc::new(data), &path, 0o644)
            .map_err(|e| remote_err(&h.spec.name, e))?;
        Ok(path)
    }

    fn program(&self, name: &str, local: &Path) -> Result<PathBuf, TargetError> {
        let i = self.host_index(name);
        let key = (i, local.to_path_buf());
        if let Some(p) = self
            .uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let h = &self.fleet.hosts[i];
        let sha = Self::sha256_local(local)?;
        let remote_path = h
            .spec
            .root
            .join("bin")
            .join(local.file_name().unwrap_or_default());
        let q = quote(&remote_path.to_string_lossy());
        let there = h
            .remote
            .query(&format!("sha256sum {q} 2>/dev/null | cut -d' ' -f1; true"))
            .map_err(|e| remote_err(&h.spec.name, e))?;
        if there.trim() == sha {
            tracing::info!(host = %h.spec.name, path = %remote_path.display(), "node binary already there");
        } else {
            let data = std::fs::read(local).map_err(|source| TargetError::Io {
                what: format!("read {}", local.display()),
                source,
            })?;
            h.remote
                .upload(Arc::new(data), &remote_path, 0o755)
                .map_err(|e| remote_err(&h.spec.name, e))?;
            let now = h
                .remote
                .query(&format!("sha256sum {q} | cut -d' ' -f1"))
                .map_err(|e| remote_err(&h.spec.name, e))?;
            if now.trim() != sha {
                return Err(TargetError::Remote {
                    host: h.spec.name.clone(),
                    message: format!(
                        "uploaded {} but its sha256 there is {:?}, not {sha}",
                        remote_path.display(),
                        now.trim()
                    ),
                });
            }
            tracing::info!(host = %h.spec.name, path = %remote_path.display(), %sha, "node binary uploaded");
        }
        self.uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, remote_path.clone());
        Ok(remote_path)
    }

    fn program_on_path(&self, name: &str, program: &str) -> Result<PathBuf, TargetError> {
        let h = self.host(name);
        let out = h
            .remote
            .query(&format!("command -v {} || true", quote(program)))
            .map_err(|e| remote_err(&h.spec.name, e))?;
        let path = out.trim();
        if path.starts_with('/') {
            Ok(PathBuf::from(path))
        } else {
            Err(TargetError::MissingBinary {
                name: format!("{program} on host {}", h.spec.name),
                hint: format!(
                    "it must be on the PATH of {}@{}; install it there (Debian: `sudo apt-get install -y {program}`)",
                    h.spec.user, h.spec.address
                ),
            })
        }
    }

    fn version_text(&self, name: &str, program: &Path) -> String {
        let h = self.host(name);
        h.remote
            .query(&format!(
                "{} --version 2>/dev/null || true",
                quote(&program.to_string_lossy())
            ))
            .unwrap_or_default()
    }

    fn remote_log_tail(&self, spec: &ProcessSpec, lines: usize) -> Option<String> {
        let i = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&spec.name)
            .map_or_else(|| self.host_index(&spec.name), |(i, _)| *i);
        let h = &self.fleet.hosts[i];
        let log = self.server_path_on(i, &spec.log);
        Some(
            h.remote
                .query(&format!(
                    "tail -n {lines} {} 2>/dev/null || true",
                    quote(&log.to_string_lossy())
                ))
                .unwrap_or_else(|e| format!("(cannot read the log on {}: {e})", h.spec.name))
                .trim_end()
                .to_string(),
        )
    }

    fn clear_attempt(&self, names: &[String]) {
        for name in names {
            if !self.placement.contains_key(name) {
                continue;
            }
            let i = self.host_index(name);
            if !self
                .run_dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&i)
            {
                continue;
            }
            let d = quote(&self.run_dir(i).to_string_lossy());
            let h = &self.fleet.hosts[i];
            if let Err(e) = h.remote.change(&format!(
                "rm -rf {d}/data/{name} {d}/logs/{name}.log {d}/pids/{name}.ids {d}/pids/{name}.pid {d}/pids/{name}.status"
            )) {
                tracing::warn!(host = %h.spec.name, error = %e, "cannot clear a failed startup attempt");
            }
        }
    }

    fn finish(&self, valid: bool) -> Vec<String> {
        let mut notes = Vec::new();
        if let Err(e) = self.net.clear_all() {
            notes.push(format!(
                "removing the network faults from the hosts failed: {e}"
            ));
        }
        let started = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut fetched = Vec::new();
        for (name, (i, spec)) in &started {
            let h = &self.fleet.hosts[*i];
            let remote_log = self.server_path_on(*i, &spec.log);
            match h.remote.query(&format!(
                "cat {} 2>/dev/null || true",
                quote(&remote_log.to_string_lossy())
            )) {
                Ok(text) => {
                    if let Some(parent) = spec.log.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    match std::fs::write(&spec.log, text) {
                        Ok(()) => fetched.push(format!("{name} from {}", h.spec.name)),
                        Err(e) => notes.push(format!("cannot write {}: {e}", spec.log.display())),
                    }
                }
                Err(e) => notes.push(format!(
                    "cannot fetch the log of {name} from {}: {e}",
                    h.spec.name
                )),
            }
        }
        if !fetched.is_empty() {
            notes.push(format!("logs fetched into logs/: {}", fetched.join(", ")));
        }
        let dirs: Vec<usize> = self
            .run_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if valid {
            for i in &dirs {
                let h = &self.fleet.hosts[*i];
                let d = quote(&self.run_dir(*i).to_string_lossy());
                if let Err(e) = h.remote.change(&format!("rm -rf {d}")) {
                    notes.push(format!(
                        "cannot remove the run directory on {}: {e}",
                        h.spec.name
                    ));
                }
            }
        } else if !dirs.is_empty() {
            notes.push(format!(
                "run directories kept on the hosts for debugging: {}",
                Path::new("<root>/runs").join(&self.run).display()
            ));
        }
        self.fleet.state.append(&StateRecord::Finished {
            run: self.run.clone(),
        });
        notes
    }
}

impl Drop for RemoteSpawner {
    fn drop(&mut self) {
        // A run that ended early (error, Ctrl-C) removes its network faults too.
        if let Err(e) = self.net.clear_all() {
            tracing::warn!(error = %e, "removing network faults from the hosts failed");
        }
    }
}
