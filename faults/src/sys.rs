//! Low-level helpers: confining spawned processes and running the `ip`, `nft` and `tc` tools.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// What a confined child does in `pre_exec`, before it runs its program.
#[derive(Debug, Default)]
pub(crate) struct Confine {
    /// Join this network namespace (an open `/proc/PID/ns/net`).
    pub netns: Option<File>,
    /// Create a fresh network namespace (the holder processes).
    pub new_netns: bool,
}

/// Put `cmd` in its own process group, tie its life to the calling thread with
/// `PR_SET_PDEATHSIG(SIGKILL)` and optionally move it into a network namespace.
///
/// Linux delivers the parent-death signal when the *thread* that forked the child exits, so
/// spawn confined commands from a long-lived thread (the main thread or a runtime worker),
/// never from a short-lived one such as tokio's `spawn_blocking` pool.
pub(crate) fn confine(cmd: &mut Command, confine: Confine) {
    let parent = std::process::id();
    let Confine { netns, new_netns } = confine;
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // (setns, unshare, setpgid, prctl, getppid) and touches no locks and no allocator, so it
    // is async-signal-safe. The netns file was opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(ns) = &netns {
                nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
            }
            if new_netns {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
            }
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL))?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::other(
                    "parent exited before the child was confined",
                ));
            }
            Ok(())
        });
    }
}

/// Open the network namespace of `pid` for [`Confine::netns`].
pub(crate) fn open_netns(pid: Pid) -> Result<File> {
    let path = format!("/proc/{pid}/ns/net");
    File::open(&path).map_err(|e| Error::io(format!("opening {path}"), e))
}

/// Run a tool to completion; `netns_of` runs it inside the network namespace of that pid.
/// Returns stdout on success.
pub(crate) fn run_tool(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
    netns_of: Option<Pid>,
) -> Result<String> {
    let line = command_line(program, args, netns_of);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let netns = netns_of.map(open_netns).transpose()?;
    confine(
        &mut cmd,
        Confine {
            netns,
            new_netns: false,
        },
    );
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        command: line.clone(),
        source,
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| Error::io(format!("writing stdin of `{line}`"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("waiting for `{line}`"), e))?;
    if out.status.success() {
        tracing::trace!(command = %line, "ran");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn command_line(program: &str, args: &[&str], netns_of: Option<Pid>) -> String {
    let mut line = String::new();
    if let Some(pid) = netns_of {
        line.push_str(&format!("[netns of {pid}] "));
    }
    line.push_str(program);
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    line
}

/// Number of threads of the current process, from `/proc/self/status`.
pub(crate) fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Bring the loopback interface of the current network namespace up (SIOCSIFFLAGS), without
/// depending on the `ip` tool.
pub(crate) fn loopback_up() -> Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed, correctly sized `ifreq` whose name is a
    // NUL-terminated "lo"; the socket is closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(Error::io(
                "socket for SIOCSIFFLAGS",
                std::io::Error::last_os_error(),
            ));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(Error::io("bringing lo up", err));
        }
    }
    Ok(())
}
