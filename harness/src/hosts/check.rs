//! `raftbus hosts check|heal|lab`, and how a `--hosts` run starts: load the inventory,
//! connect, heal what an earlier run left, measure the RTT, say per host which fault kinds
//! work, and plan faults against what every host offers.

use std::path::Path;
use std::sync::Arc;

use raftbus_faults::remote::CommandLog;
use raftbus_faults::Lab;
use raftbus_reports::model::Target;

use super::{fault_support, heal, Fleet, HostsError, Inventory};
use crate::chaos::{HostsPlan, PlanContext};
use crate::cli::{HostsArgs, HostsCommand};
use crate::run::{exit, RunError};

/// The local journal of every remote command of a run, in its results directory.
pub const COMMANDS_FILE: &str = "hosts-commands.jsonl";

/// `raftbus hosts ...`.
pub fn command(args: HostsArgs, lab: Option<Arc<Lab>>) -> Result<u8, RunError> {
    match args.command {
        HostsCommand::Check { hosts } => {
            let inv = Inventory::load(&hosts).map_err(HostsError::from)?;
            let mut fleet =
                tokio::task::block_in_place(|| Fleet::connect(inv, CommandLog::none()))?;
            tokio::task::block_in_place(|| fleet.measure_rtt());
            for line in fleet.topology_notes() {
                println!("{line}");
            }
            raftbus_faults::remote::close_stale_masters(&super::control_dir(&fleet.inventory));
            for h in &fleet.hosts {
                for n in &h.facts.notes {
                    println!("host {}: {n}", h.spec.name);
                }
                if h.facts.client_addr.is_none() {
                    println!(
                        "host {}: SSH_CONNECTION is not set, client partitions cannot match the control host",
                        h.spec.name
                    );
                }
            }
            Ok(exit::VALID)
        }
        HostsCommand::Heal { hosts } => {
            let inv = Inventory::load(&hosts).map_err(HostsError::from)?;
            let log = CommandLog::to_file(&inv.state_dir().join(COMMANDS_FILE)).map_err(|e| {
                HostsError::Host {
                    host: "control".into(),
                    message: e.to_string(),
                }
            })?;
            let fleet = tokio::task::block_in_place(|| Fleet::connect(inv, log))?;
            let report = tokio::task::block_in_place(|| heal::heal(&fleet))?;
            for line in report.lines() {
                println!("{line}");
            }
            raftbus_faults::remote::close_stale_masters(&super::control_dir(&fleet.inventory));
            Ok(if report.is_clean() {
                exit::VALID
            } else {
                exit::ENVIRONMENT
            })
        }
        HostsCommand::Lab {
            dir,
            count,
            command,
        } => {
            let lab = lab.ok_or_else(|| HostsError::Lab("no lab was entered".into()))?;
            tokio::task::block_in_place(|| super::lab::run(&lab, &dir, count, &command))
                .map_err(RunError::from)
        }
    }
}

/// The start of a `--hosts` run: inventory, connections (remote commands journaled in
/// `DIR/hosts-commands.jsonl`), heal, RTT; prints what each host offers.
pub fn connect_for_run(path: &Path, dir: &Path) -> Result<Fleet, RunError> {
    let inv = Inventory::load(path).map_err(HostsError::from)?;
    let log = CommandLog::to_file(&dir.join(COMMANDS_FILE)).map_err(|e| HostsError::Host {
        host: "control".into(),
        message: e.to_string(),
    })?;
    let mut fleet = Fleet::connect(inv, log)?;
    let report = heal::heal(&fleet)?;
    for line in report.lines() {
        eprintln!("raftbus: hosts heal before the run: {line}");
    }
    if !report.is_clean() {
        return Err(HostsError::Host {
            host: "inventory".into(),
            message: format!(
                "processes of an earlier run are still running after heal: {}",
                report.lines().join("; ")
            ),
        }
        .into());
    }
    fleet.measure_rtt();
    for h in &fleet.hosts {
        eprintln!(
            "raftbus: host {} ({}, kernel {}): {}",
            h.spec.name,
            h.spec.address,
            h.facts.kernel,
            fault_support(&h.spec, &h.facts).join(", ")
        );
    }
    Ok(fleet)
}

/// After a run failed or was interrupted: heal now, say what was done.
pub fn heal_after_error(fleet: &Fleet) {
    match tokio::task::block_in_place(|| heal::heal(fleet)) {
        Ok(r) => {
            for line in r.lines() {
                eprintln!("raftbus: hosts heal after the run: {line}");
            }
        }
        Err(e) => eprintln!(
            "raftbus: healing the hosts failed ({e}); run `raftbus hosts heal --hosts {}`",
            fleet.inventory.path.display()
        ),
    }
}

/// Why the hosts cannot serve lazy filesystems (disk faults), or empty when all can: each
/// needs `/dev/fuse`, and a root login, since the server (as root) must use the mount that
/// `raftbus lazyfs serve` holds.
fn disk_lacking(fleet: &Fleet) -> String {
    let why: Vec<String> = fleet
        .hosts
        .iter()
        .filter_map(|h| {
            super::disk_unavailable(&h.spec, &h.facts).map(|w| format!("{}: {w}", h.spec.name))
        })
        .collect();
    why.join("; ")
}

/// What the hosts of the inventory at `path` offer the nemesis, for planning a night of
/// `--hosts` runs (connects, probes, disconnects; changes nothing).
pub fn fault_context(path: &Path) -> Result<PlanContext, RunError> {
    let inv = Inventory::load(path).map_err(HostsError::from)?;
    let fleet = Fleet::connect(inv, CommandLog::none())?;
    let mut ctx = plan_context(Target::Bus, fleet.hosts.len(), &fleet);
    // Consumer crashes are the harness's own clients: a night's queue runs have them.
    ctx.queue = true;
    raftbus_faults::remote::close_stale_masters(&super::control_dir(&fleet.inventory));
    Ok(ctx)
}

/// What the hosts offer the nemesis: a fault kind is available only when every host has
/// what it needs.
pub fn plan_context(target: Target, nodes: usize, fleet: &Fleet) -> PlanContext {
    let lacking = |ok: &dyn Fn(&raftbus_faults::remote::HostFacts) -> bool, what: &str| {
        let missing: Vec<&str> = fleet
            .hosts
            .iter()
            .filter(|h| !ok(&h.facts))
            .map(|h| h.spec.name.as_str())
            .collect();
        if missing.is_empty() {
            String::new()
        } else {
            format!("no {what} on {}", missing.join(","))
        }
    };
    let net_reason = lacking(&|f| f.nftables, "nftables inet table");
    let tbf_reason = lacking(&|f| f.tbf, "tbf qdisc");
    let netem_reason = lacking(&|f| f.netem, "netem qdisc");
    let disk_reason = disk_lacking(fleet);
    PlanContext {
        target,
        nodes,
        kernel_net: net_reason.is_empty(),
        tbf: tbf_reason.is_empty(),
        net_reason,
        disk: disk_reason.is_empty(),
        disk_reason,
        queue: false,
        hosts: Some(HostsPlan {
            netem: netem_reason.is_empty(),
            netem_reason,
        }),
    }
}
