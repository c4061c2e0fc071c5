//! Process faults through signals: kill, pause/resume, terminate. Restarting is the
//! harness's job, reached through the [`Restarter`] callback.

use std::fmt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::remote::RemoteProcess;

/// A process the harness started (it owns the `Child` and reaps it; we only signal it).
///
/// Processes started through [`crate::Host::command`] lead their own process group, so the
/// signals go to the whole group and reach anything the process spawned. A handle made by
/// [`ProcessHandle::remote`] signals a group on another host over SSH instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessHandle {
    pid: i32,
    group: bool,
    remote: Option<std::sync::Arc<RemoteProcess>>,
}

impl ProcessHandle {
    /// A process that leads its own process group (pgid == pid); signals go to the group.
    pub fn group(pid: u32) -> Self {
        ProcessHandle {
            pid: pid as i32,
            group: true,
            remote: None,
        }
    }

    /// A process group on a remote host; signals go over SSH (see [`RemoteProcess`]).
    pub fn remote(process: RemoteProcess) -> Self {
        ProcessHandle {
            pid: process.pid as i32,
            group: true,
            remote: Some(std::sync::Arc::new(process)),
        }
    }

    /// What sending `sig` does, for the journal: `SIGKILL pid 42`, or the remote command.
    pub fn describe(&self, sig: Signal) -> String {
        match &self.remote {
            None => format!("{sig} pid {}", self.pid),
            Some(r) => format!("ssh {}: {}", r.remote().name(), r.signal_command(sig)),
        }
    }

    /// A single process; signals go to it alone.
    pub fn single(pid: u32) -> Self {
        ProcessHandle {
            pid: pid as i32,
            group: false,
            remote: None,
        }
    }

    /// The pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.pid)
    }

    /// Send `sig` to the process (group). A process that is gone already is not an error.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        if let Some(r) = &self.remote {
            return r.signal(sig);
        }
        let pid = self.pid();
        let r = if self.group {
            killpg(pid, sig)
        } else {
            kill(pid, sig)
        };
        match r {
            Ok(()) | Err(Errno::ESRCH) => {
                tracing::debug!(%pid, signal = %sig, group = self.group, "signalled");
                Ok(())
            }
            Err(e) => Err(Error::sys("kill", e)),
        }
    }

    /// SIGKILL. Inverse: restart through a [`Restarter`].
    pub fn kill(&self) -> Result<()> {
        self.signal(Signal::SIGKILL)
    }

    /// SIGSTOP (a GC-pause stand-in). Inverse: [`ProcessHandle::resume`].
    pub fn pause(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT, the inverse of [`ProcessHandle::pause`].
    pub fn resume(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// SIGTERM (graceful stop). Inverse: restart through a [`Restarter`].
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// The process's scheduler state.
    pub fn state(&self) -> ProcState {
        if let Some(r) = &self.remote {
            return r.state();
        }
        state(self.pid())
    }

    /// SIGTERM, wait up to `grace` for the process to exit (or become a zombie), then
    /// SIGKILL. Returns whether it stopped within the grace period. The caller still reaps it.
    pub fn terminate_and_wait(&self, grace: Duration) -> Result<bool> {
        // A stopped process cannot handle SIGTERM.
        self.resume()?;
        self.terminate()?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.state().is_gone() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()?;
        Ok(false)
    }
}

/// A process's state, from the third field of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcState {
    /// `R`
    Running,
    /// `S`
    Sleeping,
    /// `D`
    DiskSleep,
    /// `T`: stopped by a signal (paused).
    Stopped,
    /// `t`
    TracingStop,
    /// `Z`: exited, not reaped yet.
    Zombie,
    /// `X`
    Dead,
    /// `I`
    Idle,
    /// Any other letter.
    Other(char),
    /// No such process.
    Gone,
}

impl ProcState {
    /// Exited (zombie, dead or reaped).
    pub fn is_gone(&self) -> bool {
        matches!(self, ProcState::Zombie | ProcState::Dead | ProcState::Gone)
    }

    fn from_letter(c: char) -> Self {
        match c {
            'R' => ProcState::Running,
            'S' => ProcState::Sleeping,
            'D' => ProcState::DiskSleep,
            'T' => ProcState::Stopped,
            't' => ProcState::TracingStop,
            'Z' => ProcState::Zombie,
            'X' | 'x' => ProcState::Dead,
            'I' => ProcState::Idle,
            other => ProcState::Other(other),
        }
    }
}

impl fmt::Display for ProcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self {
            ProcState::Running => 'R',
            ProcState::Sleeping => 'S',
            ProcState::DiskSleep => 'D',
            ProcState::Stopped => 'T',
            ProcState::TracingStop => 't',
            ProcState::Zombie => 'Z',
            ProcState::Dead => 'X',
            ProcState::Idle => 'I',
            ProcState::Other(c) => *c,
            ProcState::Gone => return f.write_str("gone"),
        };
        write!(f, "{c}")
    }
}

/// Read the state of `pid` from `/proc/<pid>/stat`.
pub fn state(pid: Pid) -> ProcState {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat_state(&stat).unwrap_or(ProcState::Other('?')),
        Err(_) => ProcState::Gone,
    }
}

pub(crate) fn parse_stat_state(stat: &str) -> Option<ProcState> {
    // "pid (comm) S ...": comm may contain spaces and parentheses, so split at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next().map(ProcState::from_letter)
}

/// Restarts the process of a host; implemented by the harness, which knows how to start a
/// node. Used to undo kill and terminate faults.
pub trait Restarter: Send {
    /// Start `host`'s process again and return its handle.
    fn restart(
        &mut self,
        host: &str,
    ) -> std::result::Result<ProcessHandle, Box<dyn std::error::Error + Send + Sync>>;
}

impl<F> Restarter for F
where
    F: FnMut(&str) -> std::result::Result<ProcessHandle, Box<dyn std::error::Error + Send + Sync>>
        + Send,
{
    fn restart(
        &mut self,
        host: &str,
    ) -> std::result::Result<ProcessHandle, Box<dyn std::error::Error + Send + Sync>> {
        self(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        assert_eq!(
            parse_stat_state("123 (sleep) S 1 123 123 0 -1"),
            Some(ProcState::Sleeping)
        );
        assert_eq!(
            parse_stat_state("123 (a) b (c) T 1 2 3"),
            Some(ProcState::Stopped)
        );
        assert_eq!(parse_stat_state("garbage"), None);
    }

    #[test]
    fn own_process_is_running_and_missing_is_gone() {
        let me = state(Pid::this());
        assert!(
            matches!(me, ProcState::Running | ProcState::Sleeping),
            "{me}"
        );
        // pid_max is at most 2^22, so this pid cannot exist.
        assert_eq!(state(Pid::from_raw(i32::MAX)), ProcState::Gone);
    }
}
