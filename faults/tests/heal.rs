use std::time::Duration;

use anyhow::ensure;
use raftbus_faults::{
    Bandwidth, Fault, Journal, Lab, Partition, PartitionMode, ProcState, ProcessHandle,
};

pub fn heal_all_removes_every_fault(lab: &Lab) -> anyhow::Result<()> {
    let n1 = lab.add_host("n1")?;
    let _n2 = lab.add_host("n2")?;
    let _n3 = lab.add_host("n3")?;
    let mut child = n1.command("sleep")?.arg("100").spawn()?;
    let proc1 = ProcessHandle::group(child.id());
    let net = lab.net();
    let mut journal = Journal::new(Some(net.clone()));
    journal.apply(Fault::Partition {
        mode: Some(PartitionMode::Isolate),
        partition: Partition::isolate("n1", &["n2", "n3"]),
    })?;
    journal.apply(Fault::Partition {
        mode: Some(PartitionMode::Client),
        partition: Partition::client(&["n2"]),
    })?;
    journal.apply(Fault::Loss {
        host: "n3".into(),
        percent: 20,
    })?;
    if lab.capabilities().tbf {
        journal.apply(Fault::Bandwidth {
            host: "n2".into(),
            limit: Bandwidth::mbit(10),
        })?;
    }
    journal.apply(Fault::Pause {
        host: "n1".into(),
        process: proc1.clone(),
    })?;
    let rules = net.ruleset()?;
    ensure!(
        rules.matches("drop").count() >= 4 + 2 + 4,
        "rules missing: {rules}"
    );
    ensure!(
        proc1.state() == ProcState::Stopped || {
            std::thread::sleep(Duration::from_millis(200));
            proc1.state() == ProcState::Stopped
        }
    );

    for r in journal.heal_all() {
        r?;
    }
    ensure!(journal.is_clean());
    let rules = net.ruleset()?;
    ensure!(
        !rules.contains("drop"),
        "rules left after heal_all: {rules}"
    );
    ensure!(
        rules.contains("chain forward"),
        "the table itself stays until teardown"
    );
    for h in ["n1", "n2", "n3"] {
        let q = net.qdiscs(h)?;
        ensure!(
            !q.contains("tbf") && !q.contains("netem"),
            "qdisc left on {h}: {q}"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    ensure!(
        proc1.state() != ProcState::Stopped,
        "process still paused after heal_all"
    );
    proc1.kill()?;
    child.wait()?;
    Ok(())
}
