//! A process on a remote host, signalled over SSH: `kill -s SIG -- -PGID`, but only while
//! the group leader is still the process that was started (its start time in
//! `/proc/<pid>/stat` is checked first), so a recycled pid is never signalled.

use nix::sys::signal::Signal;

use super::ssh::Remote;
use crate::error::Result;
use crate::process::{parse_stat_state, ProcState};

/// A remote process group started by the harness (see the harness's remote spawner): the
/// group leader (a small `sh` that waits for the server and records its exit status) and
/// the server itself, each with its start time in clock ticks since boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteProcess {
    remote: Remote,
    /// Process group (and session) id: the wrapper's pid.
    pub pgid: u32,
    /// Start time of the group leader.
    pub pgid_start: u64,
    /// The server's pid.
    pub pid: u32,
    /// Start time of the server.
    pub pid_start: u64,
}

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` text.
pub fn stat_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A `sh` test that is true while `pid` is the process that started at `ticks`.
pub fn same_process_test(pid: u32, ticks: u64) -> String {
    format!(
        "{{ s=$(cat /proc/{pid}/stat 2>/dev/null) && s=${{s##*) }} && set -- $s && [ \"${{20}}\" = {ticks} ] && [ \"$1\" != Z ]; }}"
    )
}

impl RemoteProcess {
    /// A handle on a group started remotely.
    pub fn new(remote: Remote, pgid: u32, pgid_start: u64, pid: u32, pid_start: u64) -> Self {
        RemoteProcess {
            remote,
            pgid,
            pgid_start,
            pid,
            pid_start,
        }
    }

    /// The host.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The shell command that sends `sig` to the group (what the journal shows).
    pub fn signal_command(&self, sig: Signal) -> String {
        let name = sig.as_str().trim_start_matches("SIG");
        format!(
            "{} && kill -s {name} -- -{} || true",
            same_process_test(self.pgid, self.pgid_start),
            self.pgid
        )
    }

    /// Sends `sig` to the whole group; a group that is gone already is not an error.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        self.remote.change(&self.signal_command(sig)).map(drop)
    }

    /// The server's state; [`ProcState::Gone`] once it exited (or its pid was reused).
    pub fn state(&self) -> ProcState {
        let script = format!("cat /proc/{}/stat 2>/dev/null || true", self.pid);
        match self.remote.query(&script) {
            Ok(stat) if stat.trim().is_empty() => ProcState::Gone,
            Ok(stat) => {
                if stat_start_time(&stat) != Some(self.pid_start) {
                    return ProcState::Gone;
                }
                parse_stat_state(&stat).unwrap_or(ProcState::Other('?'))
            }
            Err(e) => {
                tracing::warn!(host = %self.remote.name(), pid = self.pid, error = %e, "cannot read a remote process state");
                ProcState::Other('?')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22() {
        let stat = "4242 (raftbus node) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 9 0 777123 12345 678";
        assert_eq!(stat_start_time(stat), Some(777123));
        assert_eq!(stat_start_time("garbage"), None);
    }

    #[test]
    fn identity_test_matches_only_the_same_start_time() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let ticks = stat_start_time(&stat).unwrap();
        let run = |script: String| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .status()
                .unwrap()
                .success()
        };
        assert!(run(same_process_test(me, ticks)));
        assert!(!run(same_process_test(me, ticks + 1)));
        assert!(!run(same_process_test(u32::MAX / 2, ticks)));
    }
}
