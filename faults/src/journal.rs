//! The fault journal: applies faults, records what was applied to which targets and when,
//! and can always undo everything still applied (at the end of a run, on Ctrl-C, on panic,
//! on drop).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use crate::disk::{CorruptMode, DiskControl};
use crate::error::{Error, Result};
use crate::failpoint::FailpointAdmin;
use crate::kind::{FaultKind, PartitionMode};
use crate::net::{Bandwidth, NetControl, Partition, PartitionId, ProxyControl};
use crate::process::{ProcessHandle, Restarter};

/// Identifies one applied fault in a [`Journal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FaultId(pub u64);

impl fmt::Display for FaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A fault to apply, with what is needed to apply and undo it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// SIGKILL `host`'s process group; undone by restarting it through the [`Restarter`].
    Kill {
        /// Host name (for the restarter and the record).
        host: String,
        /// Its process.
        process: ProcessHandle,
    },
    /// SIGSTOP; undone by SIGCONT.
    Pause {
        /// Host name.
        host: String,
        /// Its process.
        process: ProcessHandle,
    },
    /// SIGTERM; undone by restarting through the [`Restarter`].
    Terminate {
        /// Host name.
        host: String,
        /// Its process.
        process: ProcessHandle,
    },
    /// A network partition in the lab; undone by repairing it.
    Partition {
        /// How the harness chose it (for the record).
        mode: Option<PartitionMode>,
        /// The blocked pairs.
        partition: Partition,
    },
    /// Random packet loss on a host's link; undone by clearing it.
    Loss {
        /// Host name.
        host: String,
        /// Percent of packets dropped, 0 to 100.
        percent: u8,
    },
    /// A bandwidth limit on a host's link; undone by removing the qdiscs.
    Bandwidth {
        /// Host name.
        host: String,
        /// The limit.
        limit: Bandwidth,
    },
    /// Delay and jitter through a [`crate::DelayProxy`]; undone by clearing the proxy.
    Delay {
        /// What the proxy stands for (e.g. the node behind it), for the record.
        target: String,
        /// The proxy.
        proxy: ProxyControl,
        /// Added delay per direction.
        delay: Duration,
        /// Jitter around it.
        jitter: Duration,
    },
    /// Kernel delay through netem on a host's link (only where the kernel has netem);
    /// undone by removing the qdiscs.
    KernelDelay {
        /// Host name.
        host: String,
        /// Added delay per direction.
        delay: Duration,
        /// Jitter around it.
        jitter: Duration,
    },
    /// A proxy that forwards nothing (a partition in loopback mode); undone by lifting it.
    Blackhole {
        /// What the proxy stands for.
        target: String,
        /// The proxy.
        proxy: ProxyControl,
    },
    /// Power loss of a host: SIGKILL its process group, wait until it is gone, drop every
    /// unsynced write and directory change of its lazy filesystem (with `torn`, the newest
    /// unsynced write survives as that fraction of a prefix); undone by restarting it.
    PowerLoss {
        /// Host name.
        host: String,
        /// Its process.
        process: ProcessHandle,
        /// Its lazy filesystem.
        disk: DiskControl,
        /// `Some(keep)`: a torn write keeping `keep` (0 to 1) of the newest unsynced write.
        torn: Option<f64>,
    },
    /// SIGKILL, then damage the largest data file under `dir` (after writing back what its
    /// lazy filesystem holds, as the page cache of a killed process would be); undone by
    /// restarting the node, which must detect the damage.
    Corrupt {
        /// Host name.
        host: String,
        /// Its process.
        process: ProcessHandle,
        /// The durable directory: the lazy filesystem's backing dir, or the data dir.
        dir: PathBuf,
        /// The lazy filesystem over it, if mounted.
        disk: Option<DiskControl>,
        /// How.
        mode: CorruptMode,
        /// Seeds the choice of offset and bits.
        seed: u64,
    },
    /// Arm failpoint `name` with `actions` inside the node behind `admin`; undone by
    /// disarming it.
    Failpoint {
        /// Host name.
        host: String,
        /// The node's admin command.
        admin: FailpointAdmin,
        /// The failpoint or planted bug, e.g. `log.before_fsync`, `bug.apply_twice`.
        name: String,
        /// The fail crate's action string, e.g. `return`, `sleep(200)`.
        actions: String,
    },
}

impl Fault {
    /// The kind, as named on the CLI.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Terminate { .. } => FaultKind::Terminate,
            Fault::Partition { .. } | Fault::Blackhole { .. } => FaultKind::Partition,
            Fault::Loss { .. } => FaultKind::Loss,
            Fault::Bandwidth { .. } => FaultKind::Bandwidth,
            Fault::Delay { .. } | Fault::KernelDelay { .. } => FaultKind::Delay,
            Fault::PowerLoss { torn: None, .. } => FaultKind::PowerLoss,
            Fault::PowerLoss { torn: Some(_), .. } => FaultKind::TornWrite,
            Fault::Corrupt { .. } => FaultKind::Corrupt,
            Fault::Failpoint { .. } => FaultKind::Failpoint,
        }
    }

    /// The hosts (or proxy targets) it acts on.
    pub fn targets(&self) -> Vec<String> {
        match self {
            Fault::Kill { host, .. }
            | Fault::Pause { host, .. }
            | Fault::Terminate { host, .. }
            | Fault::Loss { host, .. }
            | Fault::Bandwidth { host, .. }
            | Fault::KernelDelay { host, .. }
            | Fault::PowerLoss { host, .. }
            | Fault::Corrupt { host, .. }
            | Fault::Failpoint { host, .. } => vec![host.clone()],
            Fault::Delay { target, .. } | Fault::Blackhole { target, .. } => vec![target.clone()],
            Fault::Partition { partition, .. } => partition
                .endpoints()
                .iter()
                .map(|e| e.to_string())
                .collect(),
        }
    }

    fn detail(&self) -> String {
        match self {
            Fault::Kill { process, .. } => process.describe(Signal::SIGKILL),
            Fault::Pause { process, .. } => process.describe(Signal::SIGSTOP),
            Fault::Terminate { process, .. } => process.describe(Signal::SIGTERM),
            Fault::Partition { partition, .. } => format!("blocked {partition}"),
            Fault::Loss { percent, .. } => format!("{percent}% packet loss"),
            Fault::Bandwidth { limit, .. } => format!("{} kbit/s", limit.rate_kbit),
            Fault::Delay { delay, jitter, .. } => format!("proxy delay {delay:?} ± {jitter:?}"),
            Fault::KernelDelay { delay, jitter, .. } => {
                format!("netem delay {delay:?} ± {jitter:?}")
            }
            Fault::Blackhole { proxy, .. } => format!("proxy to {} blackholed", proxy.upstream()),
            Fault::PowerLoss { process, torn, .. } => match torn {
                None => format!("SIGKILL pid {}, power loss", process.pid()),
                Some(_) => format!(
                    "SIGKILL pid {}, power loss with a torn write",
                    process.pid()
                ),
            },
            Fault::Corrupt { process, mode, .. } => {
                format!("SIGKILL pid {}, corrupt ({mode})", process.pid())
            }
            Fault::Failpoint { name, actions, .. } => format!("failpoint {name}={actions}"),
        }
    }
}

/// How long a killed process gets to be gone before a disk fault acts on its files.
const GONE_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until a SIGKILLed process is gone (a zombie counts), then a moment more for FUSE
/// requests it left in flight.
fn wait_gone(process: &ProcessHandle) -> Result<()> {
    let deadline = Instant::now() + GONE_TIMEOUT;
    while !process.state().is_gone() {
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "pid {} still running {}s after SIGKILL",
                process.pid(),
                GONE_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// The record of one applied fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Its id.
    pub id: FaultId,
    /// Kind.
    pub kind: FaultKind,
    /// Partition mode, for partitions chosen by mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<PartitionMode>,
    /// Hosts it acted on.
    pub targets: Vec<String>,
    /// What exactly was done.
    pub detail: String,
    /// Wall-clock time it was applied.
    pub applied_at: SystemTime,
    /// Seconds since the journal was created when it was applied.
    pub start_s: f64,
    /// Seconds since the journal was created when it was healed; `None` while active.
    pub end_s: Option<f64>,
    /// The last error while undoing it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heal_error: Option<String>,
}

impl JournalEntry {
    /// Still applied.
    pub fn is_active(&self) -> bool {
        self.end_s.is_none()
    }
}

#[derive(Debug)]
enum Undo {
    Resume(ProcessHandle),
    Restart(String),
    Repair(PartitionId),
    ClearLoss(String),
    ClearBandwidth(String),
    ClearDelay(String),
    ClearProxy(ProxyControl),
    Unblackhole(ProxyControl),
    Disarm(FailpointAdmin, String),
}

/// Applies faults and remembers how to undo each; see the module docs.
///
/// Dropping a journal heals everything still applied unless
/// [`Journal::set_heal_on_drop`]`(false)`. To heal on panic or Ctrl-C, share it as
/// `Arc<Mutex<Journal>>` and use [`heal_on_panic`] / call [`Journal::heal_all`] from the
/// signal handler task.
pub struct Journal {
    net: Option<NetControl>,
    restarter: Option<Box<dyn Restarter>>,
    entries: Vec<JournalEntry>,
    undo: BTreeMap<FaultId, Undo>,
    started: Instant,
    next: u64,
    heal_on_drop: bool,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("entries", &self.entries)
            .field("restarter", &self.restarter.is_some())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// A journal applying network faults through `net` (none in loopback mode: then only
    /// process and proxy faults can be applied).
    pub fn new(net: Option<NetControl>) -> Self {
        Journal {
            net,
            restarter: None,
            entries: Vec::new(),
            undo: BTreeMap::new(),
            started: Instant::now(),
            next: 0,
            heal_on_drop: true,
        }
    }

    /// Register how to restart a host's process (needed for kill and terminate faults).
    pub fn set_restarter(&mut self, restarter: impl Restarter + 'static) {
        self.restarter = Some(Box::new(restarter));
    }

    /// Whether dropping the journal heals what is still applied (default true).
    pub fn set_heal_on_drop(&mut self, on: bool) {
        self.heal_on_drop = on;
    }

    fn net(&self, what: &str) -> Result<&NetControl> {
        self.net
            .as_ref()
            .ok_or_else(|| Error::Unsupported(what.to_owned()))
    }

    /// Apply `fault` and record it.
    pub fn apply(&mut self, fault: Fault) -> Result<FaultId> {
        // What a disk fault did, appended to the entry's detail.
        let mut outcome: Option<String> = None;
        let undo = match &fault {
            Fault::PowerLoss {
                host,
                process,
                disk,
                torn,
            } => {
                if self.restarter.is_none() {
                    return Err(Error::NoRestarter(host.clone()));
                }
                process.kill()?;
                let dropped = wait_gone(process).and_then(|()| match torn {
                    None => disk.drop_unsynced(),
                    Some(keep) => disk.tear_last_write(*keep),
                });
                match dropped {
                    Ok(report) => outcome = Some(report.to_string()),
                    Err(e) => return Err(self.restart_after_failed_disk_fault(host, e)),
                }
                Undo::Restart(host.clone())
            }
            Fault::Corrupt {
                host,
                process,
                dir,
                disk,
                mode,
                seed,
            } => {
                if self.restarter.is_none() {
                    return Err(Error::NoRestarter(host.clone()));
                }
                process.kill()?;
                let damaged = wait_gone(process).and_then(|()| match disk {
                    Some(disk) => disk.corrupt(*mode, *seed),
                    None => crate::disk::corrupt_seeded(dir, *mode, *seed),
                });
                match damaged {
                    Ok(report) => outcome = Some(report.to_string()),
                    Err(e) => return Err(self.restart_after_failed_disk_fault(host, e)),
                }
                Undo::Restart(host.clone())
            }
            Fault::Kill { host, process } | Fault::Terminate { host, process } => {
                if self.restarter.is_none() {
                    return Err(Error::NoRestarter(host.clone()));
                }
                if matches!(fault, Fault::Kill { .. }) {
                    process.kill()?;
                } else {
                    // A paused process cannot act on SIGTERM.
                    process.resume()?;
                    process.terminate()?;
                }
                Undo::Restart(host.clone())
            }
            Fault::Pause { process, .. } => {
                process.pause()?;
                Undo::Resume(process.clone())
            }
            Fault::Partition { partition, .. } => {
                Undo::Repair(self.net("partition")?.partition(partition)?)
            }
            Fault::Loss { host, percent } => {
                self.net("loss")?.set_loss(host, *percent)?;
                Undo::ClearLoss(host.clone())
            }
            Fault::Bandwidth { host, limit } => {
                self.net("bandwidth")?.limit_bandwidth(host, *limit)?;
                Undo::ClearBandwidth(host.clone())
            }
            Fault::KernelDelay {
                host,
                delay,
                jitter,
            } => {
                self.net("delay")?.set_delay(host, *delay, *jitter)?;
                Undo::ClearDelay(host.clone())
            }
            Fault::Delay {
                proxy,
                delay,
                jitter,
                ..
            } => {
                proxy.set_delay(*delay, *jitter);
                Undo::ClearProxy(proxy.clone())
            }
            Fault::Blackhole { proxy, .. } => {
                proxy.set_blackhole(true);
                Undo::Unblackhole(proxy.clone())
            }
            Fault::Failpoint {
                admin,
                name,
                actions,
                ..
            } => {
                admin.arm(name, actions)?;
                Undo::Disarm(admin.clone(), name.clone())
            }
        };
        let id = FaultId(self.next);
        self.next += 1;
        let entry = JournalEntry {
            id,
            kind: fault.kind(),
            mode: match &fault {
                Fault::Partition { mode, .. } => *mode,
                _ => None,
            },
            targets: fault.targets(),
            detail: match outcome {
                Some(o) => format!("{}: {o}", fault.detail()),
                None => fault.detail(),
            },
            applied_at: SystemTime::now(),
            start_s: self.started.elapsed().as_secs_f64(),
            end_s: None,
            heal_error: None,
        };
        tracing::info!(id = id.0, kind = %entry.kind, targets = ?entry.targets, detail = %entry.detail, "fault applied");
        self.entries.push(entry);
        self.undo.insert(id, undo);
        Ok(id)
    }

    /// A disk fault killed the process but could not act on its files: restart it so the
    /// step leaves nothing applied, and report the disk error.
    fn restart_after_failed_disk_fault(&mut self, host: &str, e: Error) -> Error {
        if let Some(r) = self.restarter.as_mut() {
            if let Err(re) = r.restart(host) {
                tracing::error!(host, error = %re, "restart after a failed disk fault failed");
            }
        }
        e
    }

    /// Undo one fault through its named inverse. On error it stays active (and can be healed
    /// again later).
    pub fn heal(&mut self, id: FaultId) -> Result<()> {
        let undo = self.undo.remove(&id).ok_or(Error::NotActive(id.0))?;
        let result = self.run_undo(&undo);
        let end_s = self.started.elapsed().as_secs_f64();
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.id == id)
            .expect("every undo action has an entry");
        match result {
            Ok(()) => {
                entry.end_s = Some(end_s);
                entry.heal_error = None;
                tracing::info!(id = id.0, kind = %entry.kind, targets = ?entry.targets, "fault healed");
                Ok(())
            }
            Err(e) => {
                entry.heal_error = Some(e.to_string());
                tracing::warn!(id = id.0, kind = %entry.kind, error = %e, "healing fault failed");
                self.undo.insert(id, undo);
                Err(e)
            }
        }
    }

    fn run_undo(&mut self, undo: &Undo) -> Result<()> {
        let net_result = |r: Result<()>| match r {
            // A torn-down lab took its faults with it.
            Err(Error::TornDown) => Ok(()),
            other => other,
        };
        match undo {
            Undo::Resume(p) => p.resume(),
            Undo::Restart(host) => {
                let restarter = self
                    .restarter
                    .as_mut()
                    .ok_or_else(|| Error::NoRestarter(host.clone()))?;
                restarter
                    .restart(host)
                    .map(drop)
                    .map_err(|e| Error::Restart {
                        host: host.clone(),
                        message: e.to_string(),
                    })
            }
            Undo::Repair(pid) => net_result(self.net("partition")?.repair(*pid)),
            Undo::ClearLoss(h) => net_result(self.net("loss")?.clear_loss(h)),
            Undo::ClearBandwidth(h) => net_result(self.net("bandwidth")?.clear_bandwidth(h)),
            Undo::ClearDelay(h) => net_result(self.net("delay")?.clear_delay(h)),
            Undo::ClearProxy(p) => {
                // Only the delay: a blackhole on the same proxy is another fault.
                p.set_delay(Duration::ZERO, Duration::ZERO);
                Ok(())
            }
            Undo::Unblackhole(p) => {
                p.set_blackhole(false);
                Ok(())
            }
            Undo::Disarm(admin, name) => admin.disarm(name),
        }
    }

    /// Undo everything still applied, newest first. Returns one result per fault that was
    /// active; failed ones stay active.
    pub fn heal_all(&mut self) -> Vec<Result<FaultId>> {
        let ids: Vec<FaultId> = self.undo.keys().rev().copied().collect();
        ids.into_iter()
            .map(|id| self.heal(id).map(|()| id))
            .collect()
    }

    /// Every fault ever applied, in order.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// Faults still applied.
    pub fn active(&self) -> impl Iterator<Item = &JournalEntry> {
        self.entries.iter().filter(|e| e.is_active())
    }

    /// Nothing is applied.
    pub fn is_clean(&self) -> bool {
        self.undo.is_empty()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.heal_on_drop && !self.undo.is_empty() {
            for r in self.heal_all() {
                if let Err(e) = r {
                    tracing::error!(error = %e, "fault left applied at drop");
                }
            }
        }
    }
}

/// Install a panic hook (chained before the previous one) that heals everything in
/// `journal`. The lock is only tried, so a panic while the journal is locked does not
/// deadlock; the lab's teardown still removes network faults then.
pub fn heal_on_panic(journal: Arc<Mutex<Journal>>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut j) = journal.try_lock() {
            for r in j.heal_all() {
                if let Err(e) = r {
                    tracing::error!(error = %e, "could not heal fault during panic");
                }
            }
        }
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_faults_need_a_lab() {
        let mut j = Journal::new(None);
        let r = j.apply(Fault::Loss {
            host: "n1".into(),
            percent: 10,
        });
        assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
        assert!(j.is_clean());
        assert!(j.entries().is_empty());
    }

    #[test]
    fn kill_needs_a_restarter() {
        let mut j = Journal::new(None);
        let r = j.apply(Fault::Kill {
            host: "n1".into(),
            process: ProcessHandle::single(u32::MAX / 2),
        });
        assert!(matches!(r, Err(Error::NoRestarter(_))), "{r:?}");
    }

    #[test]
    fn heal_of_unknown_id_fails() {
        let mut j = Journal::new(None);
        assert!(matches!(j.heal(FaultId(3)), Err(Error::NotActive(3))));
        assert!(j.heal_all().is_empty());
    }
}
