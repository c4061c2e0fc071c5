//! `raftbus hosts heal`: removes whatever a crashed `--hosts` run left on the hosts, and
//! only that. Also run at the start of every `--hosts` run.
//!
//! On each host, in one SSH command:
//! - processes: every pid file under `<root>/runs/*/pids/` of a run directory carrying the
//!   `.raftbus-run` marker, and every process the state file recorded, is killed (`SIGKILL`
//!   to its process group) only while its start time in `/proc/<pid>/stat` still matches
//!   the recorded one, so a recycled pid is never touched;
//! - the nftables table `inet raftbus` (raftbus's own, nothing else);
//! - a root qdisc on the inventory interface only if its handle is raftbus's `5242:`;
//! - mounts under `<root>/runs/`: the lazy filesystems of runs with disk faults, whose
//!   `raftbus lazyfs serve` died with the run (detached with `umount -l`).
//!
//! Stale ssh masters of this inventory on the control host are closed too. Run
//! directories stay (logs and data of the crashed run, for debugging).

use std::collections::BTreeMap;

use raftbus_faults::remote::net::{clear_qdisc_script, delete_table_script};
use raftbus_faults::remote::quote;

use super::state::{unfinished, StateRecord};
use super::{Fleet, HostsError};

/// The marker file every remote run directory holds.
pub const RUN_MARKER: &str = ".raftbus-run";

/// What heal did on one host.
#[derive(Debug, Clone, Default)]
pub struct HostHeal {
    pub host: String,
    /// One line per thing removed (`killed ...`, `deleted nft table ...`, ...).
    pub removed: Vec<String>,
    /// Processes still running after the kill (should be empty).
    pub still_running: Vec<String>,
}

/// What heal did.
#[derive(Debug, Clone, Default)]
pub struct HealReport {
    pub hosts: Vec<HostHeal>,
    /// Stale ssh masters closed on the control host.
    pub masters_closed: usize,
}

impl HealReport {
    pub fn is_clean(&self) -> bool {
        self.hosts.iter().all(|h| h.still_running.is_empty())
    }

    /// Lines for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for h in &self.hosts {
            if h.removed.is_empty() && h.still_running.is_empty() {
                out.push(format!("{}: nothing to heal", h.host));
            }
            for r in &h.removed {
                out.push(format!("{}: {r}", h.host));
            }
            for r in &h.still_running {
                out.push(format!("{}: STILL RUNNING {r}", h.host));
            }
        }
        if self.masters_closed > 0 {
            out.push(format!(
                "control host: closed {} stale ssh master connection(s)",
                self.masters_closed
            ));
        }
        out
    }
}

/// The heal script of one host; `recorded` are `pgid pgid_start pid pid_start` lines from
/// the state file.
fn script(root: &str, recorded: &[String]) -> String {
    let root = quote(root);
    let recorded = recorded.join("\n");
    format!(
        r#"root={root}
same() {{ p=$1; t=$2; s=$(cat /proc/$p/stat 2>/dev/null) || return 1; s=${{s##*) }}; set -- $s; [ "${{20}}" = "$t" ] && [ "$1" != Z ]; }}
end() {{ if same "$1" "$2" || same "$3" "$4"; then kill -s KILL -- "-$1" 2>/dev/null; kill -s KILL "$3" 2>/dev/null; echo "removed killed process group $1 (server pid $3) $5"; fi; }}
for f in "$root"/runs/*/pids/*.pid; do
  [ -f "$f" ] || continue
  [ -f "${{f%/pids/*}}/{RUN_MARKER}" ] || continue
  read a b c d < "$f" || continue
  end "$a" "$b" "$c" "$d" "$f"
done
while read a b c d; do [ -n "$d" ] && end "$a" "$b" "$c" "$d" "(from the state file)"; done <<'RAFTBUS_RECORDED'
{recorded}
RAFTBUS_RECORDED
sleep 0.3
for f in "$root"/runs/*/pids/*.pid; do
  [ -f "$f" ] || continue
  read a b c d < "$f" || continue
  if same "$c" "$d"; then echo "running pid $c ($f)"; fi
done
awk -v r="$root/runs/" 'index($2, r) == 1 {{print $2}}' /proc/mounts | while read m; do umount -l "$m" && echo "removed mount $m"; done
"#
    )
}

/// Heals every host of `fleet`; empties the state file when all are clean.
pub fn heal(fleet: &Fleet) -> Result<HealReport, HostsError> {
    let records = fleet.state.records();
    let mut recorded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in unfinished(&records) {
        if let StateRecord::Process {
            host,
            pgid,
            pgid_start,
            pid,
            pid_start,
            ..
        } = r
        {
            recorded
                .entry(host.clone())
                .or_default()
                .push(format!("{pgid} {pgid_start} {pid} {pid_start}"));
        }
    }
    let mut report = HealReport {
        masters_closed: fleet.stale_masters_closed,
        ..HealReport::default()
    };
    for h in &fleet.hosts {
        let root = h.spec.root.to_string_lossy().into_owned();
        let procs = script(&root, recorded.get(&h.spec.name).map_or(&[][..], |v| v));
        let out = h
            .remote
            .change(&h.remote.as_root(&procs))
            .map_err(|source| HostsError::Remote {
                host: h.spec.name.clone(),
                source,
            })?;
        let net = format!(
            "if nft list table inet raftbus >/dev/null 2>&1; then {} && echo 'removed nft table inet raftbus'; fi\n\
             if tc qdisc show dev {iface} | grep -q ' 5242: root'; then {} && echo 'removed qdisc 5242: on {iface}'; fi",
            delete_table_script(),
            clear_qdisc_script(&h.spec.interface),
            iface = h.spec.interface,
        );
        let out_net =
            h.remote
                .change(&h.remote.as_root(&net))
                .map_err(|source| HostsError::Remote {
                    host: h.spec.name.clone(),
                    source,
                })?;
        let mut hh = HostHeal {
            host: h.spec.name.clone(),
            ..HostHeal::default()
        };
        for line in out.lines().chain(out_net.lines()) {
            if let Some(r) = line.strip_prefix("removed ") {
                hh.removed.push(r.to_string());
            } else if let Some(r) = line.strip_prefix("running ") {
                hh.still_running.push(r.to_string());
            }
        }
        tracing::info!(host = %h.spec.name, removed = hh.removed.len(), "healed");
        report.hosts.push(hh);
    }
    if report.is_clean() {
        if let Err(e) = fleet.state.clear() {
            tracing::warn!(error = %e, "cannot empty the hosts state file");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script against a fake root on this machine: it kills only the process whose
    /// start time matches, and leaves a process whose pid file lies about it.
    #[test]
    fn the_script_kills_only_recorded_processes() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs/r1");
        std::fs::create_dir_all(run.join("pids")).unwrap();
        std::fs::write(run.join(RUN_MARKER), "r1\n").unwrap();
        let spawn = || {
            let mut c = std::process::Command::new("setsid");
            c.args(["sleep", "30"]);
            c.spawn().unwrap()
        };
        let mut ours = spawn();
        let mut other = spawn();
        let ticks = |pid: u32| {
            raftbus_faults::remote::process::stat_start_time(
                &std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap(),
            )
            .unwrap()
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (o, t) = (ours.id(), ticks(ours.id()));
        std::fs::write(run.join("pids/n1.pid"), format!("{o} {t} {o} {t}\n")).unwrap();
        let x = other.id();
        std::fs::write(
            run.join("pids/n2.pid"),
            format!("{x} {} {x} {}\n", ticks(x) + 1, ticks(x) + 1),
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&dir.path().to_string_lossy(), &[]))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("killed process group {o}")),
            "{text}"
        );
        assert!(!text.contains(&format!("group {x}")), "{text}");
        assert!(!ours.wait().unwrap().success());
        assert!(
            other.try_wait().unwrap().is_none(),
            "the other process was killed"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
