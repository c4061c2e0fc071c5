//! The fault timeline: seeded from `--faults`/`--interval`, or explicit `[[fault]]`
//! entries, always completed and validated before the run starts.
//!
//! Seeded: from the end of warmup to `duration - recovery`, each step is a quiet gap of
//! about half an interval then a fault of about half an interval (each ±20%, drawn from
//! the seed). Kinds are drawn from a shuffled bag that is refilled when empty, so every
//! listed kind appears once before any appears twice; if the window does not fit one fault
//! of each kind, planning fails and names the minimum duration.

use std::fmt;
use std::time::Duration;

use raftbus_faults::{FaultKind, PartitionMode};
use raftbus_reports::model::Target;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::select::Selector;
use super::{duration_str, secs, ChaosError, ChaosOptions};

/// One fault of the timeline (`[[fault]]` in a scenario file). Parameters left out are
/// chosen from the seed when the schedule is planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultStep {
    /// Start, since the start of the load (warmup included).
    #[serde(with = "duration_str")]
    pub at: Duration,
    /// How long the fault stays on (a rolling restart takes as long as it takes).
    #[serde(with = "duration_str")]
    pub duration: Duration,
    pub kind: FaultKind,
    /// Which nodes, by role at fault start (`leader`, `follower`, `minority`, `n1,n2`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Selector>,
    /// Partitions: how to cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PartitionMode>,
    /// Loss: percent of packets dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// Bandwidth: the limit in kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_kbit: Option<u64>,
    /// Delay: added per direction.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_str::option"
    )]
    pub delay: Option<Duration>,
    /// Delay: jitter around it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_str::option"
    )]
    pub jitter: Option<Duration>,
    /// Corrupt: `flip-bits` (default) or `truncate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<raftbus_faults::CorruptMode>,
    /// Failpoint: the node's named failpoint or planted bug (`net.send`, `bug.apply_twice`;
    /// see raftbus-node's `failpoint` module). Needs a failpoint build (`--node-bin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failpoint: Option<String>,
    /// Failpoint: the fail crate's action string (`return`, `sleep(200)`, `20%panic`);
    /// default `return`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<String>,
}

impl FaultStep {
    /// A step with every parameter left to the seed.
    pub fn new(at: Duration, duration: Duration, kind: FaultKind) -> Self {
        FaultStep {
            at,
            duration,
            kind,
            target: None,
            mode: None,
            percent: None,
            rate_kbit: None,
            delay: None,
            jitter: None,
            corrupt: None,
            failpoint: None,
            actions: None,
        }
    }

    /// When the window is planned to end.
    pub fn end(&self) -> Duration {
        self.at + self.duration
    }

    /// What the fault does beyond its kind, for reports (`isolate-leader`, `30%`, ...).
    pub fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.mode {
            parts.push(m.to_string());
        }
        if let Some(p) = self.percent {
            parts.push(format!("{p}%"));
        }
        if let Some(r) = self.rate_kbit {
            parts.push(format!("{r} kbit/s"));
        }
        if let Some(d) = self.delay {
            let j = self.jitter.unwrap_or_default();
            parts.push(format!("{}ms ± {}ms", d.as_millis(), j.as_millis()));
        }
        if let Some(c) = self.corrupt {
            parts.push(c.to_string());
        }
        if let Some(name) = &self.failpoint {
            parts.push(format!(
                "{name}={}",
                self.actions.as_deref().unwrap_or(DEFAULT_FAILPOINT_ACTIONS)
            ));
        }
        parts.join(" ")
    }
}

impl fmt::Display for FaultStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7} for {:>5}  {}",
            secs(self.at),
            secs(self.duration),
            self.kind
        )?;
        if let Some(t) = &self.target {
            write!(f, " {t}")?;
        }
        let detail = self.detail();
        if !detail.is_empty() {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

/// What a `failpoint` step without `actions` does.
pub const DEFAULT_FAILPOINT_ACTIONS: &str = "return";

/// What a seeded `failpoint` fault arms: points a correct bus must survive (slow disks,
/// lost peer messages, failed forwards), never a planted bug.
pub const SURVIVABLE_FAILPOINTS: &[(&str, &str)] = &[
    ("net.send", "20%return"),
    ("net.receive", "5%return"),
    ("bus.forward", "30%return"),
    ("log.before_fsync", "20%sleep(50)"),
    ("sm.before_apply", "10%sleep(20)"),
];

/// What the run offers, which decides the faults that can be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContext {
    pub target: Target,
    /// Bus nodes, or Redis servers (primary + replicas).
    pub nodes: usize,
    /// Partitions and loss through nftables in the namespace lab.
    pub kernel_net: bool,
    /// Bandwidth limits through tc tbf.
    pub tbf: bool,
    /// Why kernel network faults are not available, when they are not.
    pub net_reason: String,
    /// The lazy filesystem (FUSE in the lab's mount namespace) can be mounted under the
    /// servers' data dirs: power-loss and torn-write.
    pub disk: bool,
    /// Why it cannot, when it cannot.
    pub disk_reason: String,
    /// Queue mode: consumer groups run, so consumers can crash.
    pub queue: bool,
    /// `--hosts` runs: the servers are on remote hosts.
    pub hosts: Option<HostsPlan>,
}

/// What the remote hosts of a `--hosts` run offer beyond the lab's figures above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsPlan {
    /// Every host has netem (delay through the kernel).
    pub netem: bool,
    /// Which hosts lack it, when some do.
    pub netem_reason: String,
}

impl PlanContext {
    /// Peer links go through delay proxies (the bus only).
    fn proxies(&self) -> bool {
        self.target == Target::Bus && self.nodes > 1
    }

    /// `Ok` when `kind` can be injected here.
    pub fn supports(&self, kind: FaultKind) -> Result<(), ChaosError> {
        let unavailable = |reason: String| Err(ChaosError::Unavailable { kind, reason });
        if let Some(h) = &self.hosts {
            match kind {
                FaultKind::Delay if !h.netem => {
                    return unavailable(format!(
                        "delay on remote hosts needs netem on every host ({})",
                        h.netem_reason
                    ))
                }
                FaultKind::Delay => return Ok(()),
                FaultKind::Failpoint => {
                    return unavailable(
                        "failpoint faults read the node's admin token on the control host; not available with --hosts"
                            .into(),
                    )
                }
                // On hosts corrupt also goes through the host's lazy filesystem server.
                FaultKind::PowerLoss | FaultKind::TornWrite | FaultKind::Corrupt if !self.disk => {
                    return unavailable(format!("{kind}: {}", self.disk_reason))
                }
                _ => {}
            }
        }
        match kind {
            FaultKind::Kill | FaultKind::Pause | FaultKind::Terminate | FaultKind::Restart => {
                Ok(())
            }
            FaultKind::Partition => {
                if self.nodes < 2 && !self.kernel_net {
                    unavailable(format!(
                        "a single server can only be cut from the client, which needs the namespace lab ({})",
                        self.net_reason
                    ))
                } else if !self.kernel_net && !self.proxies() {
                    unavailable(format!(
                        "no nftables lab ({}) and only bus peer links run through proxies",
                        self.net_reason
                    ))
                } else {
                    Ok(())
                }
            }
            FaultKind::Loss if !self.kernel_net => {
                unavailable(format!("packet loss needs the nftables lab ({})", self.net_reason))
            }
            FaultKind::Bandwidth if !self.kernel_net || !self.tbf => unavailable(format!(
                "bandwidth limits need the namespace lab with the tbf qdisc ({})",
                if self.kernel_net {
                    "tbf is missing"
                } else {
                    &self.net_reason
                }
            )),
            FaultKind::Delay if !self.proxies() => unavailable(
                "no netem on this kernel; the userspace delay proxies sit on the bus's peer links only"
                    .into(),
            ),
            FaultKind::Loss | FaultKind::Bandwidth | FaultKind::Delay => Ok(()),
            FaultKind::PowerLoss | FaultKind::TornWrite if !self.disk => unavailable(format!(
                "{kind} needs the lazy filesystem (FUSE in the lab's mount namespace): {}",
                self.disk_reason
            )),
            FaultKind::PowerLoss | FaultKind::TornWrite | FaultKind::Corrupt => Ok(()),
            FaultKind::Failpoint if self.target != Target::Bus => unavailable(
                "failpoints live inside a failpoint build of the bus node, not in Redis".into(),
            ),
            FaultKind::Failpoint => Ok(()),
            FaultKind::ConsumerCrash if !self.queue => unavailable(
                "consumer-crash crashes queue consumers, which only queue mode (--mode queue) runs"
                    .into(),
            ),
            FaultKind::ConsumerCrash => Ok(()),
        }
    }

    /// Partition modes that make sense for this cluster.
    pub fn partition_modes(&self) -> Vec<PartitionMode> {
        PartitionMode::ALL
            .iter()
            .copied()
            .filter(|m| self.supports_mode(*m).is_ok())
            .collect()
    }

    fn supports_mode(&self, mode: PartitionMode) -> Result<(), String> {
        let n = self.nodes;
        let need = |min: usize| {
            if n >= min {
                Ok(())
            } else {
                Err(format!(
                    "{mode} needs at least {min} nodes, the run has {n}"
                ))
            }
        };
        match mode {
            PartitionMode::Client if !self.kernel_net => Err(format!(
                "a client-side partition needs the nftables lab ({})",
                self.net_reason
            )),
            PartitionMode::Client => Ok(()),
            PartitionMode::MajoritiesRing => need(4),
            PartitionMode::Bridge => need(3),
            PartitionMode::Halves
            | PartitionMode::IsolateLeader
            | PartitionMode::Isolate
            | PartitionMode::OneWay => need(2),
        }
    }

    fn is_redis(&self) -> bool {
        self.target == Target::Redis
    }
}

/// The planned faults of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub steps: Vec<FaultStep>,
    /// Quiet phase after the last fault.
    pub recovery: Duration,
    /// Whether the steps came from the scenario's `[[fault]]` entries.
    pub explicit: bool,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "  {s}")?;
        }
        Ok(())
    }
}

impl Schedule {
    /// One line for `summary.environment.notes`.
    pub fn one_line(&self) -> String {
        self.steps
            .iter()
            .map(|s| {
                let mut t = format!("{} {}", secs(s.at), s.kind);
                if let Some(sel) = &s.target {
                    t.push(' ');
                    t.push_str(&sel.to_string());
                }
                let d = s.detail();
                if !d.is_empty() {
                    t.push_str(&format!(" ({d})"));
                }
                t.push_str(&format!(" for {}", secs(s.duration)));
                t
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Kinds that appear at least once.
    pub fn kinds(&self) -> Vec<FaultKind> {
        let mut k: Vec<FaultKind> = self.steps.iter().map(|s| s.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    /// The seeded mix of `opts.faults` between `warmup` and `duration - opts.recovery`, or,
    /// when `explicit` is not empty, those steps (completed from the seed). Fails with a
    /// clear message when a kind is unavailable or the duration is too short.
    pub fn plan(
        seed: u64,
        opts: Option<&ChaosOptions>,
        explicit: &[FaultStep],
        warmup: Duration,
        duration: Duration,
        ctx: &PlanContext,
    ) -> Result<Schedule, ChaosError> {
        let kinds = opts.map(|o| o.faults.clone()).unwrap_or_default();
        if !kinds.is_empty() && !explicit.is_empty() {
            return Err(ChaosError::Schedule(
                "both a seeded fault mix ([chaos] faults / --faults) and an explicit [[fault]] timeline were given; use one"
                    .into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6368_616f_735f_7363);
        let (steps, recovery) = if explicit.is_empty() {
            let opts = opts.cloned().unwrap_or_default();
            let mut steps = seeded(&mut rng, &kinds, &opts, warmup, duration)?;
            // A seeded mix with power losses always holds a coordinated one: the first
            // power-loss (else the first torn-write) hits every node at once.
            let first = [FaultKind::PowerLoss, FaultKind::TornWrite]
                .iter()
                .find_map(|k| steps.iter().position(|s| s.kind == *k));
            if let Some(i) = first {
                steps[i].target = Some(Selector::All);
            }
            (steps, opts.recovery)
        } else {
            let last_end = explicit
                .iter()
                .map(FaultStep::end)
                .max()
                .unwrap_or_default();
            (explicit.to_vec(), duration.saturating_sub(last_end))
        };
        let mut out = Vec::with_capacity(steps.len());
        for step in steps {
            ctx.supports(step.kind)?;
            out.push(complete(step, &mut rng, ctx)?);
        }
        validate(&out, duration)?;
        Ok(Schedule {
            steps: out,
            recovery,
            explicit: !explicit.is_empty(),
        })
    }
}

fn seeded(
    rng: &mut ChaCha8Rng,
    kinds: &[FaultKind],
    opts: &ChaosOptions,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<FaultStep>, ChaosError> {
    let mut kinds = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    if opts.interval < Duration::from_millis(200) {
        return Err(ChaosError::Schedule(format!(
            "interval {} is too short (at least 200ms)",
            secs(opts.interval)
        )));
    }
    let end = duration.saturating_sub(opts.recovery);
    let half = opts.interval / 2;
    let mut steps = Vec::new();
    let mut bag: Vec<FaultKind> = Vec::new();
    let mut t = warmup;
    loop {
        let gap = half.mul_f64(rng.gen_range(0.8..=1.2));
        let len = half.mul_f64(rng.gen_range(0.8..=1.2));
        if t + gap + len > end {
            break;
        }
        if bag.is_empty() {
            bag = kinds.clone();
            bag.shuffle(rng);
        }
        let kind = bag.pop().expect("refilled");
        steps.push(FaultStep::new(round_ms(t + gap), round_ms(len), kind));
        t += gap + len;
    }
    if steps.len() < kinds.len() {
        let needed = warmup + opts.recovery + opts.interval.mul_f64(1.2 * kinds.len() as f64);
        let needed = Duration::from_secs(needed.as_secs_f64().ceil() as u64);
        return Err(ChaosError::Schedule(format!(
            "{} fault kinds do not fit: between warmup ({}) and the recovery phase ({}) there is room for {} at --interval {}; use --duration {} or more, or a shorter --interval",
            kinds.len(),
            secs(warmup),
            secs(opts.recovery),
            steps.len(),
            secs(opts.interval),
            humantime::format_duration(needed)
        )));
    }
    Ok(steps)
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Fills what the step leaves to the seed: target, partition mode and parameters.
fn complete(
    mut s: FaultStep,
    rng: &mut ChaCha8Rng,
    ctx: &PlanContext,
) -> Result<FaultStep, ChaosError> {
    let bad =
        |message: String| ChaosError::Schedule(format!("[[fault]] at {}: {message}", secs(s.at)));
    let choose = |rng: &mut ChaCha8Rng, options: &[Selector]| -> Selector {
        options.choose(rng).cloned().unwrap_or(Selector::All)
    };
    let redis = ctx.is_redis();
    let has_replica = ctx.nodes > 1;
    if s.mode.is_some() && s.kind != FaultKind::Partition {
        return Err(bad(format!("`mode` is for partitions, not {}", s.kind)));
    }
    if s.corrupt.is_some() && s.kind != FaultKind::Corrupt {
        return Err(bad(format!(
            "`corrupt` is for corrupt faults, not {}",
            s.kind
        )));
    }
    if (s.failpoint.is_some() || s.actions.is_some()) && s.kind != FaultKind::Failpoint {
        return Err(bad(format!(
            "`failpoint` and `actions` are for failpoint faults, not {}",
            s.kind
        )));
    }
    match s.kind {
        FaultKind::Failpoint => {
            if s.failpoint.is_none() {
                let (name, actions) = SURVIVABLE_FAILPOINTS
                    .choose(rng)
                    .copied()
                    .unwrap_or(SURVIVABLE_FAILPOINTS[0]);
                s.failpoint = Some(name.to_string());
                s.actions.get_or_insert_with(|| actions.to_string());
            }
            if s.failpoint.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err(bad("`failpoint` names no failpoint".into()));
            }
            s.actions
                .get_or_insert_with(|| DEFAULT_FAILPOINT_ACTIONS.to_string());
            if s.target.is_none() {
                s.target = Some(choose(rng, &[Selector::Leader, Selector::Follower]));
            }
        }
        FaultKind::PowerLoss | FaultKind::TornWrite => {
            if s.target.is_none() {
                let options: &[Selector] = match (redis, has_replica) {
                    (true, true) => &[Selector::All, Selector::Primary, Selector::Replica],
                    (true, false) => &[Selector::All],
                    (false, _) => &[
                        Selector::All,
                        Selector::Leader,
                        Selector::Follower,
                        Selector::Minority,
                        Selector::Majority,
                    ],
                };
                s.target = Some(choose(rng, options));
            }
        }
        FaultKind::Corrupt => {
            // A minority only: the others still hold every acknowledged entry.
            let minority = ((ctx.nodes.saturating_sub(1)) / 2).max(1);
            match &s.target {
                None => {
                    let options: &[Selector] = match (redis, has_replica) {
                        (true, true) => &[Selector::Replica],
                        (true, false) => &[Selector::Primary],
                        (false, _) => &[Selector::Follower, Selector::Leader, Selector::Minority],
                    };
                    s.target = Some(choose(rng, options));
                }
                Some(Selector::All | Selector::Majority) if ctx.nodes > 1 => {
                    return Err(bad(format!(
                        "corrupt acts on a minority of nodes only, not {}",
                        s.target.as_ref().expect("matched")
                    )))
                }
                Some(Selector::Named(names)) if names.len() > minority => {
                    return Err(bad(format!(
                        "corrupt acts on a minority of nodes only: at most {minority} of {}, not {}",
                        ctx.nodes,
                        names.join(",")
                    )))
                }
                Some(_) => {}
            }
            s.corrupt
                .get_or_insert(raftbus_faults::CorruptMode::FlipBits);
        }
        FaultKind::Kill | FaultKind::Pause | FaultKind::Terminate => {
            if s.target.is_none() {
                let options: &[Selector] = match (redis, has_replica) {
                    (true, true) => &[Selector::Primary, Selector::Primary, Selector::Replica],
                    (true, false) => &[Selector::Primary],
                    (false, true) if s.kind == FaultKind::Kill => {
                        &[Selector::Leader, Selector::Follower, Selector::Minority]
                    }
                    (false, true) => &[Selector::Leader, Selector::Follower],
                    (false, false) => &[Selector::All],
                };
                s.target = Some(choose(rng, options));
            }
        }
        FaultKind::Restart => {
            s.target.get_or_insert(Selector::All);
        }
        FaultKind::ConsumerCrash => {
            if s.target.is_some() {
                return Err(bad(
                    "consumer-crash picks a consumer at random; `target` names servers".into(),
                ));
            }
        }
        FaultKind::Partition => {
            let modes = ctx.partition_modes();
            let mode = match s.mode {
                Some(m) => {
                    ctx.supports_mode(m).map_err(bad)?;
                    m
                }
                None => *modes
                    .choose(rng)
                    .ok_or_else(|| bad("no partition mode fits this cluster".into()))?,
            };
            s.mode = Some(mode);
            if s.target.is_none() {
                let options: &[Selector] = match mode {
                    PartitionMode::Isolate | PartitionMode::OneWay | PartitionMode::Bridge => {
                        &[Selector::Follower, Selector::Leader]
                    }
                    PartitionMode::Client if redis => &[Selector::Primary],
                    PartitionMode::Client => &[Selector::Leader, Selector::Minority],
                    PartitionMode::IsolateLeader => &[Selector::Leader],
                    PartitionMode::Halves | PartitionMode::MajoritiesRing => &[Selector::All],
                };
                s.target = Some(choose(rng, options));
            }
        }
        FaultKind::Loss => {
            let p = *s.percent.get_or_insert_with(|| rng.gen_range(10..=40));
            if p > 100 {
                return Err(bad(format!("loss of {p}%")));
            }
            if s.target.is_none() {
                let options: &[Selector] = if redis {
                    &[Selector::Primary, Selector::All]
                } else {
                    &[Selector::Leader, Selector::Follower, Selector::All]
                };
                s.target = Some(choose(rng, options));
            }
        }
        FaultKind::Bandwidth => {
            let r = *s
                .rate_kbit
                .get_or_insert_with(|| *[256u64, 1000, 4000].choose(rng).expect("non-empty"));
            if r == 0 {
                return Err(bad("rate_kbit must be positive".into()));
            }
            if s.target.is_none() {
                let options: &[Selector] = if redis {
                    &[Selector::Primary]
                } else {
                    &[Selector::Leader, Selector::All]
                };
                s.target = Some(choose(rng, options));
            }
        }
        FaultKind::Delay => {
            let d = *s
                .delay
                .get_or_insert_with(|| Duration::from_millis(rng.gen_range(20..=200)));
            s.jitter.get_or_insert(d / 4);
            if s.target.is_none() {
                s.target = Some(choose(
                    rng,
                    &[Selector::Leader, Selector::Follower, Selector::All],
                ));
            }
        }
    }
    Ok(s)
}

fn validate(steps: &[FaultStep], duration: Duration) -> Result<(), ChaosError> {
    let mut previous_end = Duration::ZERO;
    for s in steps {
        let at = secs(s.at);
        if s.duration.is_zero() {
            return Err(ChaosError::Schedule(format!(
                "[[fault]] at {at}: duration must be positive"
            )));
        }
        if s.end() > duration {
            return Err(ChaosError::Schedule(format!(
                "[[fault]] at {at}: ends at {}, after the run ({})",
                secs(s.end()),
                secs(duration)
            )));
        }
        if s.at < previous_end {
            return Err(ChaosError::Schedule(format!(
                "[[fault]] at {at}: starts before the previous fault ends ({}); faults run one after another, in order of `at`",
                secs(previous_end)
            )));
        }
        previous_end = s.end();
    }
    if !steps.is_empty() && duration.saturating_sub(previous_end) < super::MIN_RECOVERY {
        return Err(ChaosError::Schedule(format!(
            "the last fault ends at {}, leaving less than the {} recovery phase before the run ends at {}: a target that never recovers could not be told apart",
            secs(previous_end),
            secs(super::MIN_RECOVERY),
            secs(duration)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(nodes: usize, kernel_net: bool) -> PlanContext {
        PlanContext {
            target: Target::Bus,
            nodes,
            kernel_net,
            tbf: kernel_net,
            net_reason: "test".into(),
            disk: kernel_net,
            disk_reason: "test".into(),
            queue: false,
            hosts: None,
        }
    }

    fn opts(kinds: &[FaultKind], interval_s: u64, recovery_s: u64) -> ChaosOptions {
        ChaosOptions {
            faults: kinds.to_vec(),
            interval: Duration::from_secs(interval_s),
            recovery: Duration::from_secs(recovery_s),
        }
    }

    const KPP: &[FaultKind] = &[FaultKind::Kill, FaultKind::Pause, FaultKind::Partition];

    #[test]
    fn seeded_schedule_is_deterministic_and_covers_every_kind() {
        let o = opts(KPP, 10, 10);
        let plan = |seed| {
            Schedule::plan(
                seed,
                Some(&o),
                &[],
                Duration::from_secs(5),
                Duration::from_secs(60),
                &bus(3, true),
            )
            .unwrap()
        };
        let a = plan(7);
        assert_eq!(a, plan(7));
        assert_ne!(a.steps, plan(8).steps);
        assert_eq!(a.kinds(), KPP.to_vec().tap_sort());
        for s in &a.steps {
            assert!(s.at >= Duration::from_secs(5));
            assert!(s.end() <= Duration::from_secs(50), "{s}");
            assert!(s.target.is_some(), "{s}");
            assert_eq!(s.mode.is_some(), s.kind == FaultKind::Partition, "{s}");
        }
        for w in a.steps.windows(2) {
            assert!(w[0].end() <= w[1].at);
        }
    }

    trait TapSort {
        fn tap_sort(self) -> Self;
    }
    impl TapSort for Vec<FaultKind> {
        fn tap_sort(mut self) -> Self {
            self.sort();
            self
        }
    }

    #[test]
    fn too_short_runs_name_the_minimum_duration() {
        let o = opts(KPP, 10, 10);
        let e = Schedule::plan(
            1,
            Some(&o),
            &[],
            Duration::from_secs(5),
            Duration::from_secs(30),
            &bus(3, true),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--duration 51s"), "{e}");
    }

    #[test]
    fn unavailable_kinds_are_refused() {
        let o = opts(&[FaultKind::Loss], 5, 5);
        let e = Schedule::plan(
            1,
            Some(&o),
            &[],
            Duration::from_secs(1),
            Duration::from_secs(30),
            &bus(3, false),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ChaosError::Unavailable {
                    kind: FaultKind::Loss,
                    ..
                }
            ),
            "{e}"
        );
        let redis = PlanContext {
            target: Target::Redis,
            ..bus(2, true)
        };
        let o = opts(&[FaultKind::Delay], 5, 5);
        assert!(Schedule::plan(
            1,
            Some(&o),
            &[],
            Duration::from_secs(1),
            Duration::from_secs(30),
            &redis
        )
        .is_err());
        // Loopback bus: partitions through the peer proxies, but never client-side.
        let o = opts(&[FaultKind::Partition], 2, 5);
        let s = Schedule::plan(
            3,
            Some(&o),
            &[],
            Duration::from_secs(1),
            Duration::from_secs(60),
            &bus(3, false),
        )
        .unwrap();
        assert!(s
            .steps
            .iter()
            .all(|s| s.mode.is_some() && s.mode != Some(PartitionMode::Client)));
    }

    #[test]
    fn disk_faults_need_the_lazy_fs_and_power_loss_hits_everyone_once() {
        let kinds = [FaultKind::PowerLoss, FaultKind::TornWrite, FaultKind::Kill];
        let o = opts(&kinds, 6, 5);
        let no_disk = PlanContext {
            disk: false,
            ..bus(3, true)
        };
        let e = Schedule::plan(
            1,
            Some(&o),
            &[],
            Duration::from_secs(2),
            Duration::from_secs(40),
            &no_disk,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ChaosError::Unavailable {
                    kind: FaultKind::PowerLoss | FaultKind::TornWrite,
                    ..
                }
            ),
            "{e}"
        );
        // Corrupt needs no FUSE.
        let o_corrupt = opts(&[FaultKind::Corrupt], 6, 5);
        let s = Schedule::plan(
            1,
            Some(&o_corrupt),
            &[],
            Duration::from_secs(2),
            Duration::from_secs(20),
            &no_disk,
        )
        .unwrap();
        assert!(s
            .steps
            .iter()
            .all(|st| st.corrupt.is_some() && st.target != Some(Selector::All)));
        for seed in 0..20 {
            let s = Schedule::plan(
                seed,
                Some(&o),
                &[],
                Duration::from_secs(2),
                Duration::from_secs(40),
                &bus(3, true),
            )
            .unwrap();
            let first = s
                .steps
                .iter()
                .find(|st| st.kind == FaultKind::PowerLoss)
                .unwrap();
            assert_eq!(first.target, Some(Selector::All), "seed {seed}: {s}");
        }
    }

    #[test]
    fn corrupt_is_refused_on_a_majority() {
        let mut step = FaultStep::new(
            Duration::from_secs(5),
            Duration::from_secs(3),
            FaultKind::Corrupt,
        );
        step.target = Some(Selector::Majority);
        let plan = |step: &FaultStep| {
            Schedule::plan(
                1,
                None,
                std::slice::from_ref(step),
                Duration::ZERO,
                Duration::from_secs(20),
                &bus(3, true),
            )
        };
        assert!(plan(&step).unwrap_err().to_string().contains("minority"));
        step.target = Some(Selector::Named(vec!["n1".into(), "n2".into()]));
        assert!(plan(&step)
            .unwrap_err()
            .to_string()
            .contains("at most 1 of 3"));
        step.target = Some(Selector::Named(vec!["n2".into()]));
        let s = plan(&step).unwrap();
        assert_eq!(
            s.steps[0].corrupt,
            Some(raftbus_faults::CorruptMode::FlipBits)
        );
        let mut kill = FaultStep::new(
            Duration::from_secs(5),
            Duration::from_secs(3),
            FaultKind::Kill,
        );
        kill.corrupt = Some(raftbus_faults::CorruptMode::Truncate);
        assert!(plan(&kill)
            .unwrap_err()
            .to_string()
            .contains("`corrupt` is for"));
    }

    #[test]
    fn explicit_timeline_from_toml_is_completed_and_checked() {
        #[derive(Deserialize)]
        struct F {
            fault: Vec<FaultStep>,
        }
        let text = r#"
            [[fault]]
            at = "10s"
            duration = "5s"
            kind = "partition"
            mode = "isolate-leader"

            [[fault]]
            at = "20s"
            duration = "3s"
            kind = "kill"
            target = "n2"
        "#;
        let f: F = toml::from_str(text).unwrap();
        let s = Schedule::plan(
            9,
            None,
            &f.fault,
            Duration::from_secs(2),
            Duration::from_secs(30),
            &bus(3, true),
        )
        .unwrap();
        assert!(s.explicit);
        assert_eq!(s.steps[0].target, Some(Selector::Leader));
        assert_eq!(s.steps[1].target, Some(Selector::Named(vec!["n2".into()])));
        assert_eq!(s.recovery, Duration::from_secs(7));
        // Overlapping windows and windows past the end are refused.
        let mut bad = f.fault.clone();
        bad[1].at = Duration::from_secs(12);
        let e = Schedule::plan(
            9,
            None,
            &bad,
            Duration::ZERO,
            Duration::from_secs(30),
            &bus(3, true),
        );
        assert!(e.unwrap_err().to_string().contains("starts before"));
        let mut late = f.fault.clone();
        late[1].duration = Duration::from_secs(20);
        let e = Schedule::plan(
            9,
            None,
            &late,
            Duration::ZERO,
            Duration::from_secs(30),
            &bus(3, true),
        );
        assert!(e.unwrap_err().to_string().contains("after the run"));
        // Majorities-ring on three nodes cannot work.
        let mut ring = f.fault.clone();
        ring[0].mode = Some(PartitionMode::MajoritiesRing);
        let e = Schedule::plan(
            9,
            None,
            &ring,
            Duration::ZERO,
            Duration::from_secs(30),
            &bus(3, true),
        );
        assert!(e.unwrap_err().to_string().contains("at least 4"));
    }

    #[test]
    fn every_schedule_leaves_a_recovery_phase_that_can_catch_a_dead_target() {
        let kinds = [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition];
        let o = opts(&kinds, 4, 5);
        for seed in 0..200 {
            let s = Schedule::plan(
                seed,
                Some(&o),
                &[],
                Duration::from_secs(2),
                Duration::from_secs(30),
                &bus(3, true),
            )
            .unwrap();
            let last = s.steps.iter().map(FaultStep::end).max().unwrap();
            assert!(
                Duration::from_secs(30) - last >= super::super::MIN_RECOVERY,
                "seed {seed}: last fault ends at {last:?}"
            );
        }
        // A seeded mix asked for too short a recovery, and a timeline that ends too late,
        // are refused.
        let short = opts(&kinds, 4, 1);
        let e = Schedule::plan(
            7,
            Some(&short),
            &[],
            Duration::from_secs(2),
            Duration::from_secs(30),
            &bus(3, true),
        );
        assert!(e.is_err_and(|e| e.to_string().contains("recovery phase")));
        let late = vec![FaultStep::new(
            Duration::from_secs(20),
            Duration::from_secs(7),
            FaultKind::Kill,
        )];
        let e = Schedule::plan(
            7,
            None,
            &late,
            Duration::ZERO,
            Duration::from_secs(30),
            &bus(3, true),
        );
        assert!(e.is_err_and(|e| e.to_string().contains("recovery phase")));
    }
}
