//! The nemesis: drives a [`Schedule`] against a running cluster while the load runs.
//!
//! For each step: wait for its start (relative to the run clock), find the roles (who
//! leads now), resolve the targets with the step's seeded RNG, apply the fault through the
//! [`Journal`], wait for the end of the window, heal it through its named inverse, and
//! record the window as a history [`Event::Fault`] and a summary [`FaultWindow`]. A
//! rolling restart terminates and restarts each node in turn, waiting for the cluster to
//! be whole again before the next. Disk faults (power-loss, torn-write) SIGKILL every
//! target first and only then drop each node's unsynced data, so "all" is one coordinated
//! power failure; after a `corrupt` heals, the restarted nodes are watched and whether
//! each refused to start (with its log line) goes into the window and the notes. On stop (the load ended early, Ctrl-C drops the
//! future), everything still applied is healed: by [`Nemesis::run`] itself, by the
//! journal's drop, and on panic by the hook [`raftbus_faults::heal_on_panic`] installs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raftbus_faults::{
    heal_on_panic, Bandwidth, Endpoint, Fault, FaultId, FaultKind, Journal, NetControl, Partition,
    PartitionMode, ProcessHandle, ProxyControl,
};
use raftbus_reports::model::{FaultWindow, Target};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use super::schedule::{FaultStep, Schedule};
use super::select::{find_roles, Roles};
use super::{secs, ChaosError};
use crate::history::Event;
use crate::record::{Clock, Recorder};
use crate::target::Cluster;
use crate::workload::consumer::QueueControl;

/// How long a node gets to answer "who leads" at fault start.
const ROLE_TIMEOUT: Duration = Duration::from_millis(700);
/// How long to wait for some node to claim leadership before choosing by seed.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// Rolling restart: how long a node gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// Rolling restart: how long the cluster gets to be whole again after each restart.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// What one node did after its data was corrupted.
#[derive(Debug, Clone)]
pub(crate) struct CorruptOutcome {
    pub host: String,
    /// It exited instead of serving (the log line is in `text`).
    pub refused: bool,
    pub text: String,
}

/// After `corrupt`: how long a restarted node is watched for refusing to start.
const CORRUPT_WATCH: Duration = Duration::from_secs(5);

/// How network faults reach the cluster.
#[derive(Debug, Clone, Default)]
pub struct NetworkFacilities {
    /// Kernel faults (nftables partitions and loss, tbf) in the namespace lab.
    pub net: Option<NetControl>,
    /// The bus's peer-link proxies, keyed `(from, to)` (when delay is scheduled, or for
    /// partitions on loopback).
    pub proxies: BTreeMap<(String, String), ProxyControl>,
    /// Delay through netem on the targets' links (remote hosts whose kernel has netem)
    /// instead of the proxies.
    pub kernel_delay: bool,
}

/// What the nemesis did.
#[derive(Debug, Clone, Default)]
pub struct NemesisOutput {
    /// Every fault window, in order.
    pub windows: Vec<FaultWindow>,
    /// Faults that could not be applied or healed, for the summary notes.
    pub notes: Vec<String>,
    /// Whether it stopped before the end of its schedule.
    pub stopped_early: bool,
}

/// The fault driver of one run; see the module docs.
pub struct Nemesis {
    schedule: Schedule,
    seed: u64,
    target: Target,
    endpoints: Vec<(String, SocketAddr)>,
    /// Redis Sentinels (empty without Sentinel).
    sentinels: Vec<(String, SocketAddr)>,
    cluster: Arc<Mutex<Cluster>>,
    journal: Arc<Mutex<Journal>>,
    proxies: BTreeMap<(String, String), ProxyControl>,
    net_available: bool,
    kernel_delay: bool,
    clock: Clock,
    recorder: Recorder,
    /// Nodes that refused to start after `corrupt` damaged their data: gone for the rest of
    /// the run, so they count against the minority later `corrupt` faults may damage.
    retired: Mutex<BTreeSet<String>>,
    /// Queue mode: the consumers `consumer-crash` crashes.
    queue: Option<Arc<QueueControl>>,
}

/// One applied step, until it is healed.
struct Applied {
    ids: Vec<FaultId>,
    targets: Vec<String>,
    detail: String,
    /// Consumer slots crashed by `consumer-crash`, revived at the heal.
    crashed: Vec<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Nemesis {
    /// A nemesis for `cluster`. The journal restarts killed or terminated nodes through the
    /// cluster (same flags, data dir and address) and heals on panic.
    pub fn new(
        schedule: Schedule,
        seed: u64,
        cluster: Arc<Mutex<Cluster>>,
        facilities: NetworkFacilities,
        clock: Clock,
        recorder: Recorder,
    ) -> Self {
        let (target, endpoints, sentinels) = {
            let c = lock(&cluster);
            (c.target, c.endpoints(), c.sentinel_endpoints())
        };
        let net_available = facilities.net.as_ref().is_some_and(NetControl::available);
        let kernel_delay = facilities.kernel_delay;
        let mut journal = Journal::new(facilities.net);
        let weak = Arc::downgrade(&cluster);
        journal.set_restarter(
            move |host: &str| -> Result<ProcessHandle, Box<dyn std::error::Error + Send + Sync>> {
                let cluster = weak.upgrade().ok_or("the cluster is gone")?;
                let mut c = lock(&cluster);
                let node = c
                    .node_mut(host)
                    .ok_or_else(|| format!("no node named {host}"))?;
                node.process.restart()?;
                let handle = node.process.handle().ok_or("not running after restart")?;
                tracing::info!(node = host, pid = %handle.pid(), "node restarted");
                Ok(handle)
            },
        );
        let journal = Arc::new(Mutex::new(journal));
        heal_on_panic(journal.clone());
        Nemesis {
            schedule,
            seed,
            target,
            endpoints,
            sentinels,
            cluster,
            journal,
            proxies: facilities.proxies,
            net_available,
            kernel_delay,
            clock,
            recorder,
            retired: Mutex::new(BTreeSet::new()),
            queue: None,
        }
    }

    /// Queue mode: the consumers that `consumer-crash` faults crash.
    pub fn with_queue(mut self, queue: Option<Arc<QueueControl>>) -> Self {
        self.queue = queue;
        self
    }

    /// Runs the schedule until its end or until `stop` turns true; heals everything before
    /// returning.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> NemesisOutput {
        // Dropping this future (Ctrl-C drops the whole run) heals too.
        let _guard = HealOnDrop(self.journal.clone());
        let mut out = NemesisOutput::default();
        let start = loop {
            if let Some(s) = self.clock.start() {
                break Instant::from_std(s);
            }
            if *stop.borrow() {
                out.stopped_early = true;
                return out;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        for (index, step) in self.schedule.steps.iter().enumerate() {
            if !wait_until(start + step.at, &mut stop).await {
                out.stopped_early = true;
                break;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(
                self.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            // Nodes that refused to start after earlier damage are down for good: every fault
            // chooses among the others (a kill of a "follower" must hit a running one).
            let roles = self.alive(&self.roles().await);
            tracing::info!(step = %step, leader = ?roles.leader, "fault starting");
            let began = std::time::Instant::now();
            let result = if step.kind == FaultKind::Restart {
                self.rolling_restart(&roles, &mut stop).await
            } else {
                match self.apply(step, &roles, &mut rng) {
                    Ok(applied) => {
                        // The full planned length, even when role finding made it late.
                        let completed = wait_until(Instant::now() + step.duration, &mut stop).await;
                        out.stopped_early |= !completed;
                        if let Some(q) = &self.queue {
                            for slot in &applied.crashed {
                                q.revive(*slot);
                            }
                        }
                        for id in applied.ids.iter().rev() {
                            if let Err(e) = lock(&self.journal).heal(*id) {
                                out.notes.push(format!(
                                    "healing {} at {} failed: {e}",
                                    step.kind,
                                    secs(began.duration_since(start.into_std()))
                                ));
                            }
                        }
                        let mut applied = applied;
                        if step.kind == FaultKind::Failpoint {
                            let crashed = self.restart_crashed(&applied.targets);
                            for c in &crashed {
                                out.notes.push(format!(
                                    "failpoint at {}: {c}",
                                    secs(began.duration_since(start.into_std()))
                                ));
                            }
                            if !crashed.is_empty() {
                                applied.detail =
                                    format!("{}; then {}", applied.detail, crashed.join("; "));
                            }
                        }
                        if step.kind == FaultKind::Corrupt {
                            let outcome = self.corrupt_outcome(&applied.targets).await;
                            let at = secs(began.duration_since(start.into_std()));
                            for o in &outcome {
                                out.notes.push(format!("corrupt at {at}: {}", o.text));
                                if o.refused {
                                    lock(&self.retired).insert(o.host.clone());
                                    // Refusing damaged data is the promise kept: the
                                    // checks expect this node to be gone at the end.
                                    self.recorder
                                        .record(Event::Retired {
                                            node: o.host.clone(),
                                            reason: format!("corrupt at {at}: {}", o.text),
                                        })
                                        .await;
                                }
                            }
                            let texts: Vec<&str> =
                                outcome.iter().map(|o| o.text.as_str()).collect();
                            applied.detail =
                                format!("{}; then {}", applied.detail, texts.join("; "));
                        }
                        Ok(applied)
                    }
                    Err(e) => Err(e),
                }
            };
            let ended = std::time::Instant::now();
            match result {
                Ok(applied) => {
                    let (start_us, end_us) = (self.clock.us_at(began), self.clock.us_at(ended));
                    tracing::info!(kind = %step.kind, targets = ?applied.targets, "fault healed");
                    self.recorder
                        .record(Event::Fault {
                            start_us,
                            end_us,
                            kind: step.kind.to_string(),
                            detail: applied.detail.clone(),
                            targets: applied.targets.clone(),
                        })
                        .await;
                    out.windows.push(FaultWindow {
                        kind: step.kind.to_string(),
                        detail: applied.detail,
                        targets: applied.targets,
                        start_s: start_us as f64 / 1e6,
                        end_s: end_us as f64 / 1e6,
                    });
                }
                Err(e) => {
                    tracing::warn!(kind = %step.kind, error = %e, "fault not applied");
                    out.notes.push(format!(
                        "fault {} planned at {} was not applied: {e}",
                        step.kind,
                        secs(step.at)
                    ));
                }
            }
            if *stop.borrow() {
                out.stopped_early = true;
                break;
            }
        }
        for r in lock(&self.journal).heal_all() {
            if let Err(e) = r {
                out.notes.push(format!("final heal failed: {e}"));
            }
        }
        out
    }

    /// Who leads now; for the bus, waits a little for a leader to exist.
    async fn roles(&self) -> Roles {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let roles =
                find_roles(self.target, &self.endpoints, &self.sentinels, ROLE_TIMEOUT).await;
            if roles.leader.is_some() || Instant::now() >= deadline {
                if roles.leader.is_none() {
                    tracing::warn!("no leader at fault start; role targets fall back to the seed");
                }
                return roles;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How the journal signals `node`'s process (locally or over SSH).
    fn handle_of(&self, node: &str) -> Result<ProcessHandle, ChaosError> {
        let mut c = lock(&self.cluster);
        let n = c.node_mut(node).ok_or_else(|| ChaosError::Resolve {
            selector: node.to_string(),
            reason: "no such node".into(),
        })?;
        n.process.handle().ok_or_else(|| ChaosError::Resolve {
            selector: node.to_string(),
            reason: "its process is not running".into(),
        })
    }

    /// `roles` without the nodes that refused to start after earlier damage.
    fn alive(&self, roles: &Roles) -> Roles {
        roles.without(&lock(&self.retired))
    }

    /// The node's process (on its host), its lazy filesystem (if mounted) and its durable
    /// directory.
    fn disk_of(
        &self,
        node: &str,
    ) -> Result<
        (
            ProcessHandle,
            Option<raftbus_faults::DiskControl>,
            std::path::PathBuf,
        ),
        ChaosError,
    > {
        let process = self.handle_of(node)?;
        let mut c = lock(&self.cluster);
        let n = c.node_mut(node).ok_or_else(|| ChaosError::Resolve {
            selector: node.to_string(),
            reason: "no such node".into(),
        })?;
        Ok((process, n.process.disk(), n.process.durable_dir()))
    }

    /// How to reach `node`'s failpoint admin command: its client address and the token
    /// file the harness started it with (see [`crate::target::bus::ADMIN_TOKEN_FILE`]).
    fn failpoint_admin(&self, node: &str) -> Result<raftbus_faults::FailpointAdmin, ChaosError> {
        let unresolved = |reason: String| ChaosError::Resolve {
            selector: node.to_string(),
            reason,
        };
        let addr = self
            .endpoints
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, a)| *a)
            .ok_or_else(|| unresolved("no such node".into()))?;
        let mut c = lock(&self.cluster);
        let n = c
            .node_mut(node)
            .ok_or_else(|| unresolved("no such node".into()))?;
        let token = crate::target::bus::admin_token_of(n.process.spec())
            .map_err(|e| unresolved(e.to_string()))?;
        Ok(raftbus_faults::FailpointAdmin::new(addr, token))
    }

    /// After a failpoint healed: restarts each target whose process exited meanwhile (a
    /// `panic` action), as an operator's supervisor would, and says so.
    fn restart_crashed(&self, targets: &[String]) -> Vec<String> {
        let mut notes = Vec::new();
        let mut c = lock(&self.cluster);
        for host in targets {
            let Some(n) = c.node_mut(host) else { continue };
            let Some(status) = n.process.exited() else {
                continue;
            };
            let restarted = match n.process.restart() {
                Ok(()) => "restarted".to_string(),
                Err(e) => format!("restart failed: {e}"),
            };
            tracing::info!(node = %host, %status, "node exited while a failpoint was armed");
            notes.push(format!("{host} exited ({status}); {restarted}"));
        }
        notes
    }

    /// What the journal recorded a fault did (the part after the signal), for the window.
    /// Applies `fault` to `host` through the journal and says what it did there, as
    /// `host: outcome` (the journal's detail after its first `: `), for disk faults.
    fn apply_described(
        &self,
        ids: &mut Vec<FaultId>,
        host: &str,
        fault: Fault,
    ) -> Result<String, ChaosError> {
        self.journal_apply(ids, fault)?;
        let id = *ids.last().expect("just applied");
        let j = lock(&self.journal);
        let outcome = j
            .entries()
            .iter()
            .find(|e| e.id == id)
            .map_or_else(String::new, |e| {
                e.detail
                    .split_once(": ")
                    .map_or(e.detail.clone(), |(_, o)| o.to_string())
            });
        Ok(format!("{host}: {outcome}"))
    }

    /// After a `corrupt` fault healed (its nodes restarted): did each node keep running, or
    /// refuse to start, and with which log line.
    pub(crate) async fn corrupt_outcome(&self, targets: &[String]) -> Vec<CorruptOutcome> {
        let deadline = Instant::now() + CORRUPT_WATCH;
        let mut out: BTreeMap<String, CorruptOutcome> = BTreeMap::new();
        loop {
            {
                let mut c = lock(&self.cluster);
                for host in targets {
                    if out.contains_key(host) {
                        continue;
                    }
                    let Some(n) = c.node_mut(host) else { continue };
                    if let Some(status) = n.process.exited() {
                        let tail = n.process.log_tail(40);
                        let line = tail
                            .lines()
                            .rev()
                            .find(|l| {
                                let l = l.to_ascii_lowercase();
                                l.contains("refusing to start")
                                    || l.contains("corrupt")
                                    || l.contains("bad file format")
                            })
                            .or_else(|| tail.lines().last())
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        out.insert(
                            host.clone(),
                            CorruptOutcome {
                                host: host.clone(),
                                refused: true,
                                text: format!("{host} refused to start ({status}): {line}"),
                            },
                        );
                    }
                }
            }
            if out.len() == targets.len() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        targets
            .iter()
            .map(|h| {
                out.remove(h).unwrap_or_else(|| CorruptOutcome {
                    host: h.clone(),
                    refused: false,
                    text: format!(
                        "{h} restarted and kept running for {}s after the damage",
                        CORRUPT_WATCH.as_secs()
                    ),
                })
            })
            .collect()
    }

    fn journal_apply(&self, ids: &mut Vec<FaultId>, fault: Fault) -> Result<(), ChaosError> {
        let kind = fault.kind();
        match lock(&self.journal).apply(fault) {
            Ok(id) => {
                ids.push(id);
                Ok(())
            }
            Err(e) => {
                // Undo what this step applied so far: a step is all or nothing.
                for id in ids.drain(..).rev() {
                    let _ = lock(&self.journal).heal(id);
                }
                Err(ChaosError::Apply {
                    kind,
                    message: e.to_string(),
                })
            }
        }
    }

    /// Applies one step (not a rolling restart) to the live `roles`.
    fn apply(
        &self,
        step: &FaultStep,
        roles: &Roles,
        rng: &mut ChaCha8Rng,
    ) -> Result<Applied, ChaosError> {
        let selector = step.target.clone().unwrap_or(super::Selector::All);
        let mut ids = Vec::new();
        let mut crashed = Vec::new();
        let mut detail = match step.detail() {
            d if d.is_empty() => selector.to_string(),
            d => format!("{selector} {d}"),
        };
        let targets = match step.kind {
            FaultKind::Kill | FaultKind::Pause | FaultKind::Terminate => {
                let targets = roles.resolve(&selector, rng)?;
                for host in &targets {
                    let process = self.handle_of(host)?;
                    let host = host.clone();
                    let fault = match step.kind {
                        FaultKind::Kill => Fault::Kill { host, process },
                        FaultKind::Pause => Fault::Pause { host, process },
                        _ => Fault::Terminate { host, process },
                    };
                    self.journal_apply(&mut ids, fault)?;
                }
                targets
            }
            FaultKind::Partition => {
                let mode = step.mode.unwrap_or(PartitionMode::Halves);
                let partition = build_partition(mode, &selector, roles, rng)?;
                self.partition(&mut ids, mode, &partition)?;
                detail = format!("{mode} ({selector}): blocked {partition}");
                partition
                    .endpoints()
                    .iter()
                    .map(|e| e.to_string())
                    .collect()
            }
            FaultKind::Loss => {
                let targets = roles.resolve(&selector, rng)?;
                let percent = step.percent.unwrap_or(20);
                for host in &targets {
                    self.journal_apply(
                        &mut ids,
                        Fault::Loss {
                            host: host.clone(),
                            percent,
                        },
                    )?;
                }
                targets
            }
            FaultKind::Bandwidth => {
                let targets = roles.resolve(&selector, rng)?;
                let limit = Bandwidth::kbit(step.rate_kbit.unwrap_or(1000));
                for host in &targets {
                    self.journal_apply(
                        &mut ids,
                        Fault::Bandwidth {
                            host: host.clone(),
                            limit,
                        },
                    )?;
                }
                targets
            }
            FaultKind::Delay => {
                let targets = roles.resolve(&selector, rng)?;
                let delay = step.delay.unwrap_or(Duration::from_millis(100));
                let jitter = step.jitter.unwrap_or_default();
                if self.kernel_delay {
                    for host in &targets {
                        self.journal_apply(
                            &mut ids,
                            Fault::KernelDelay {
                                host: host.clone(),
                                delay,
                                jitter,
                            },
                        )?;
                    }
                    return Ok(Applied {
                        ids,
                        detail: format!("{detail} (netem on the egress of {})", targets.join(",")),
                        targets,
                        crashed,
                    });
                }
                let pairs: BTreeSet<&(String, String)> = self
                    .proxies
                    .keys()
                    .filter(|(a, b)| targets.contains(a) || targets.contains(b))
                    .collect();
                if pairs.is_empty() {
                    return Err(ChaosError::Apply {
                        kind: FaultKind::Delay,
                        message: "no delay proxies on the peer links of this run".into(),
                    });
                }
                for pair in pairs {
                    self.journal_apply(
                        &mut ids,
                        Fault::Delay {
                            target: format!("{}->{}", pair.0, pair.1),
                            proxy: self.proxies[pair].clone(),
                            delay,
                            jitter,
                        },
                    )?;
                }
                detail = format!(
                    "{detail} (userspace proxy on every peer link of {})",
                    targets.join(",")
                );
                targets
            }
            FaultKind::PowerLoss | FaultKind::TornWrite => {
                let targets = roles.resolve(&selector, rng)?;
                let mut nodes = Vec::new();
                for host in &targets {
                    let (process, disk, _) = self.disk_of(host)?;
                    let disk = disk.ok_or_else(|| ChaosError::Apply {
                        kind: step.kind,
                        message: format!("{host} has no lazy filesystem under its data dir"),
                    })?;
                    nodes.push((host.clone(), process, disk));
                }
                // One instant for all of them: every process dies before any disk drops.
                for (_, process, _) in &nodes {
                    let _ = process.kill();
                }
                let mut outcomes = Vec::new();
                for (host, process, disk) in nodes {
                    let torn = (step.kind == FaultKind::TornWrite).then(|| rng.gen_range(0.1..0.9));
                    outcomes.push(self.apply_described(
                        &mut ids,
                        &host,
                        Fault::PowerLoss {
                            host: host.clone(),
                            process,
                            disk,
                            torn,
                        },
                    )?);
                }
                detail = format!("{detail}; {}", outcomes.join("; "));
                targets
            }
            FaultKind::Corrupt => {
                // Never let the damaged nodes together become more than a minority.
                let retired = lock(&self.retired).clone();
                // The live roles plus the retired nodes: the whole cluster.
                let cluster_size = roles.nodes.len() + retired.len();
                let minority = (cluster_size.saturating_sub(1) / 2).max(1);
                let targets = roles.resolve(&selector, rng)?;
                if retired.len() + targets.len() > minority {
                    return Err(ChaosError::Apply {
                        kind: step.kind,
                        message: format!(
                            "{} already refused to start after earlier damage; damaging {} too would leave more than a minority of {} nodes damaged",
                            retired.iter().cloned().collect::<Vec<_>>().join(","),
                            targets.join(","),
                            cluster_size
                        ),
                    });
                }
                let mode = step
                    .corrupt
                    .unwrap_or(raftbus_faults::CorruptMode::FlipBits);
                let mut outcomes = Vec::new();
                for host in &targets {
                    let (process, disk, dir) = self.disk_of(host)?;
                    outcomes.push(self.apply_described(
                        &mut ids,
                        host,
                        Fault::Corrupt {
                            host: host.clone(),
                            process,
                            dir,
                            disk,
                            mode,
                            seed: rng.gen(),
                        },
                    )?);
                }
                detail = format!("{detail}; {}", outcomes.join("; "));
                targets
            }
            FaultKind::Failpoint => {
                let targets = roles.resolve(&selector, rng)?;
                let name = step.failpoint.clone().unwrap_or_default();
                let actions = step
                    .actions
                    .clone()
                    .unwrap_or_else(|| super::schedule::DEFAULT_FAILPOINT_ACTIONS.to_string());
                for host in &targets {
                    let admin = self.failpoint_admin(host)?;
                    self.journal_apply(
                        &mut ids,
                        Fault::Failpoint {
                            host: host.clone(),
                            admin,
                            name: name.clone(),
                            actions: actions.clone(),
                        },
                    )?;
                }
                targets
            }
            FaultKind::ConsumerCrash => {
                let queue = self.queue.as_ref().ok_or_else(|| ChaosError::Unavailable {
                    kind: step.kind,
                    reason: "no queue consumers run (queue mode only)".into(),
                })?;
                let up = queue.up();
                let (slot, label) =
                    up.choose(rng)
                        .cloned()
                        .ok_or_else(|| ChaosError::Unavailable {
                            kind: step.kind,
                            reason: "every consumer is down already".into(),
                        })?;
                queue.crash(slot);
                crashed.push(slot);
                detail = format!("consumer {label}");
                vec![label]
            }
            FaultKind::Restart => unreachable!("rolling restarts are driven step by step"),
        };
        Ok(Applied {
            ids,
            targets,
            detail,
            crashed,
        })
    }

    /// nftables where the lab has it, plus a blackhole on the proxy of every blocked pair.
    fn partition(
        &self,
        ids: &mut Vec<FaultId>,
        mode: PartitionMode,
        partition: &Partition,
    ) -> Result<(), ChaosError> {
        let kernel = self.net_available;
        if kernel {
            self.journal_apply(
                ids,
                Fault::Partition {
                    mode: Some(mode),
                    partition: partition.clone(),
                },
            )?;
        }
        let mut proxied = 0;
        for (src, dst) in partition.blocked() {
            if let (Endpoint::Host(a), Endpoint::Host(b)) = (src, dst) {
                if let Some(proxy) = self.proxies.get(&(a.clone(), b.clone())) {
                    self.journal_apply(
                        ids,
                        Fault::Blackhole {
                            target: format!("{a}->{b}"),
                            proxy: proxy.clone(),
                        },
                    )?;
                    proxied += 1;
                }
            }
        }
        if !kernel && proxied == 0 {
            return Err(ChaosError::Apply {
                kind: FaultKind::Partition,
                message: "neither nftables nor peer proxies can cut these links".into(),
            });
        }
        Ok(())
    }

    /// Terminates and restarts every node in turn (followers first, the leader last),
    /// waiting after each for the cluster to be whole again.
    async fn rolling_restart(
        &self,
        roles: &Roles,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Applied, ChaosError> {
        let mut order: Vec<String> = roles
            .nodes
            .iter()
            .filter(|n| Some(*n) != roles.leader.as_ref())
            .cloned()
            .collect();
        order.extend(roles.leader.clone());
        let mut done = Vec::new();
        for host in &order {
            if *stop.borrow() {
                break;
            }
            let process = self.handle_of(host)?;
            let mut ids = Vec::new();
            self.journal_apply(
                &mut ids,
                Fault::Terminate {
                    host: host.clone(),
                    process: process.clone(),
                },
            )?;
            let deadline = Instant::now() + TERM_GRACE;
            while !process.state().is_gone() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The inverse restarts it (killing it first if SIGTERM was not enough).
            lock(&self.journal)
                .heal(ids[0])
                .map_err(|e| ChaosError::Apply {
                    kind: FaultKind::Restart,
                    message: format!("restarting {host}: {e}"),
                })?;
            done.push(host.clone());
            if !self.wait_whole(stop).await {
                tracing::warn!(node = %host, "cluster not whole again after restart");
                return Ok(Applied {
                    ids: Vec::new(),
                    targets: done,
                    detail: format!(
                        "rolling restart stopped: cluster not whole {}s after restarting {host}",
                        REJOIN_TIMEOUT.as_secs()
                    ),
                    crashed: Vec::new(),
                });
            }
        }
        Ok(Applied {
            ids: Vec::new(),
            detail: format!("rolling restart, order {}", order.join(",")),
            targets: done,
            crashed: Vec::new(),
        })
    }

    /// Bus: every node answers and they agree on a leader. Redis: every server answers.
    async fn wait_whole(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let deadline = Instant::now() + REJOIN_TIMEOUT;
        while Instant::now() < deadline && !*stop.borrow() {
            // Nodes that refused to start stay down: whole means every other one is back.
            let gone = lock(&self.retired).clone();
            let whole = match self.target {
                Target::Bus => crate::target::bus::leader(&self.endpoints, &gone)
                    .await
                    .is_some(),
                Target::Redis => {
                    let mut all = true;
                    for (name, addr) in self.endpoints.iter().filter(|(n, _)| !gone.contains(n)) {
                        all &= tokio::time::timeout(
                            ROLE_TIMEOUT,
                            crate::target::info(name, *addr, "replication"),
                        )
                        .await
                        .is_ok_and(|r| r.is_ok());
                    }
                    all
                }
            };
            if whole {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// Heals everything still applied when dropped (the journal itself may live on in the
/// panic hook, so its own drop would not run).
struct HealOnDrop(Arc<Mutex<Journal>>);

impl Drop for HealOnDrop {
    fn drop(&mut self) {
        if let Ok(mut journal) = self.0.try_lock() {
            for r in journal.heal_all() {
                if let Err(e) = r {
                    tracing::error!(error = %e, "fault left applied");
                }
            }
        }
    }
}

/// Sleeps until `at`; false when `stop` turned true first.
async fn wait_until(at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep_until(at) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// The blocked pairs of `mode`, relative to the roles now.
fn build_partition(
    mode: PartitionMode,
    selector: &super::Selector,
    roles: &Roles,
    rng: &mut ChaCha8Rng,
) -> Result<Partition, ChaosError> {
    let nodes = &roles.nodes;
    let with_sentinels: Vec<String> = nodes.iter().chain(&roles.sentinels).cloned().collect();
    let others = |of: &[String]| -> Vec<String> {
        nodes.iter().filter(|n| !of.contains(n)).cloned().collect()
    };
    let first = |rng: &mut ChaCha8Rng| -> Result<String, ChaosError> {
        Ok(roles.resolve(selector, rng)?.remove(0))
    };
    let p = match mode {
        PartitionMode::Halves => Partition::random_halves(nodes, rng),
        // With Sentinel, "isolated" means from the Sentinels too (but not from the
        // clients): the split-brain case, where the old primary keeps taking writes.
        PartitionMode::IsolateLeader => {
            let leader = roles.leader_or_any(rng);
            Partition::isolate(&leader, &with_sentinels)
        }
        PartitionMode::Isolate => {
            let node = first(rng)?;
            Partition::isolate(&node, &with_sentinels)
        }
        PartitionMode::MajoritiesRing => {
            let mut ring = nodes.clone();
            ring.shuffle(rng);
            Partition::majorities_ring(&ring).map_err(|e| ChaosError::Apply {
                kind: FaultKind::Partition,
                message: e.to_string(),
            })?
        }
        PartitionMode::Bridge => {
            let mid = first(rng)?;
            let mut rest = others(std::slice::from_ref(&mid));
            rest.shuffle(rng);
            let (a, b) = rest.split_at(rest.len() / 2);
            Partition::bridge(a, &mid, b)
        }
        PartitionMode::OneWay => {
            let from = roles.resolve(selector, rng)?;
            Partition::one_way(&from, &others(&from))
        }
        PartitionMode::Client => Partition::client(&roles.resolve(selector, rng)?),
    };
    if p.is_empty() {
        return Err(ChaosError::Apply {
            kind: FaultKind::Partition,
            message: format!("{mode} blocks nothing among {}", nodes.join(",")),
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(n: usize, leader: &str) -> Roles {
        Roles {
            nodes: (1..=n).map(|i| format!("n{i}")).collect(),
            leader: Some(leader.into()),
            sentinels: Vec::new(),
        }
    }

    #[test]
    fn partitions_follow_the_roles() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let r = roles(3, "n2");
        let sel = super::super::Selector::Leader;
        let p = build_partition(PartitionMode::IsolateLeader, &sel, &r, &mut rng).unwrap();
        let n = |s: &str| Endpoint::host(s);
        assert!(p.is_blocked(&n("n2"), &n("n1")) && p.is_blocked(&n("n3"), &n("n2")));
        assert!(!p.is_blocked(&n("n1"), &n("n3")));
        let p = build_partition(PartitionMode::OneWay, &sel, &r, &mut rng).unwrap();
        assert!(p.is_blocked(&n("n2"), &n("n1")) && !p.is_blocked(&n("n1"), &n("n2")));
        let p = build_partition(PartitionMode::Client, &sel, &r, &mut rng).unwrap();
        assert!(p.is_blocked(&Endpoint::Client, &n("n2")));
        let p = build_partition(PartitionMode::Bridge, &sel, &r, &mut rng).unwrap();
        // The leader bridges n1 and n3.
        assert!(p.is_blocked(&n("n1"), &n("n3")) && !p.is_blocked(&n("n1"), &n("n2")));
        assert!(build_partition(PartitionMode::MajoritiesRing, &sel, &r, &mut rng).is_err());
        let p = build_partition(PartitionMode::Halves, &sel, &r, &mut rng).unwrap();
        assert_eq!(p.blocked().count(), 4);
    }
}
