//! Integration tests of raftbus-faults. One binary with its own runner (see `util.rs` for why
//! lab tests re-execute this binary).

mod bandwidth;
mod delay;
mod disk;
mod heal;
mod lab;
mod loss;
mod partition;
mod process;
mod util;

use libtest_mimic::{Arguments, Failed, Trial};
use util::{Kind, Test};

const TESTS: &[Test] = &[
    Test {
        name: "lab::probe_reports_capabilities",
        kind: Kind::Plain(lab::probe_reports_capabilities),
    },
    Test {
        name: "lab::hosts_and_lab_connect",
        kind: Kind::InLab(lab::hosts_and_lab_connect),
    },
    Test {
        name: "lab::host_keeps_address_across_process_restart",
        kind: Kind::InLab(lab::host_keeps_address_across_process_restart),
    },
    Test {
        name: "lab::teardown_leaves_nothing",
        kind: Kind::Plain(lab::teardown_leaves_nothing),
    },
    Test {
        name: "lab::teardown_child",
        kind: Kind::ChildOnly(lab::teardown_child),
    },
    Test {
        name: "lab::rootless_lab",
        kind: Kind::Plain(lab::rootless_lab),
    },
    Test {
        name: "lab::rootless_child",
        kind: Kind::ChildOnly(lab::rootless_child),
    },
    Test {
        name: "partition::isolate_cuts_new_and_established",
        kind: Kind::InLab(partition::isolate_cuts_new_and_established),
    },
    Test {
        name: "partition::one_way_blocks_one_direction",
        kind: Kind::InLab(partition::one_way_blocks_one_direction),
    },
    Test {
        name: "partition::client_partition_keeps_nodes_talking",
        kind: Kind::InLab(partition::client_partition_keeps_nodes_talking),
    },
    Test {
        name: "loss::half_the_datagrams_are_lost",
        kind: Kind::InLab(loss::half_the_datagrams_are_lost),
    },
    Test {
        name: "bandwidth::one_megabyte_at_one_megabit",
        kind: Kind::InLab(bandwidth::one_megabyte_at_one_megabit),
    },
    Test {
        name: "delay::proxy_adds_round_trip_delay",
        kind: Kind::Plain(delay::proxy_adds_round_trip_delay),
    },
    Test {
        name: "delay::jitter_keeps_byte_order",
        kind: Kind::Plain(delay::jitter_keeps_byte_order),
    },
    Test {
        name: "delay::blackhole_holds_and_reset_closes",
        kind: Kind::Plain(delay::blackhole_holds_and_reset_closes),
    },
    Test {
        name: "delay::kernel_delay_where_netem_exists",
        kind: Kind::InLab(delay::kernel_delay_where_netem_exists),
    },
    Test {
        name: "process::pause_resume_kill",
        kind: Kind::Plain(process::pause_resume_kill),
    },
    Test {
        name: "process::journal_restarts_killed_and_resumes_paused",
        kind: Kind::Plain(process::journal_restarts_killed_and_resumes_paused),
    },
    Test {
        name: "disk::unsynced_write_is_gone_after_drop",
        kind: Kind::InLab(disk::unsynced_write_is_gone_after_drop),
    },
    Test {
        name: "disk::synced_write_survives_drop",
        kind: Kind::InLab(disk::synced_write_survives_drop),
    },
    Test {
        name: "disk::create_without_dir_fsync_is_gone",
        kind: Kind::InLab(disk::create_without_dir_fsync_is_gone),
    },
    Test {
        name: "disk::torn_write_leaves_a_prefix",
        kind: Kind::InLab(disk::torn_write_leaves_a_prefix),
    },
    Test {
        name: "disk::killed_child_leaves_no_mount",
        kind: Kind::Plain(disk::killed_child_leaves_no_mount),
    },
    Test {
        name: "disk::mount_and_die_child",
        kind: Kind::ChildOnly(disk::mount_and_die_child),
    },
    Test {
        name: "heal::heal_all_removes_every_fault",
        kind: Kind::InLab(heal::heal_all_removes_every_fault),
    },
];

fn main() {
    if let Some(code) = util::child_main(TESTS) {
        std::process::exit(code);
    }
    let args = Arguments::from_args();
    let trials = TESTS
        .iter()
        .filter_map(|t| {
            let name = t.name;
            match t.kind {
                Kind::Plain(f) => Some(Trial::test(name, move || f().map_err(failed))),
                Kind::InLab(_) => Some(Trial::test(name, move || {
                    util::lab_trial(name).map_err(failed)
                })),
                Kind::ChildOnly(_) => None,
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn failed(e: anyhow::Error) -> Failed {
    format!("{e:#}").into()
}
