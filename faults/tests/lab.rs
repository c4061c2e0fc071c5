use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use anyhow::{ensure, Context};
use raftbus_faults::{probe, process, Lab, LabMode, NamespaceSupport};

use crate::util::{self, connect, echo_roundtrip, echo_server, PATIENT, SHORT};

pub fn probe_reports_capabilities() -> anyhow::Result<()> {
    let before = util::our_traces_here()?;
    let caps = probe();
    println!("{caps:#?}");
    let expected_ns = if nix::unistd::geteuid().is_root() {
        NamespaceSupport::Root
    } else {
        NamespaceSupport::Rootless
    };
    if caps.namespaces != expected_ns || !caps.full_lab() || !caps.tbf {
        util::missing_capability(&format!("probe found {:?}", caps.notes))?;
        return Ok(());
    }
    ensure!(caps.tc, "tc should be reported when tbf works");
    ensure!(
        caps.notes.iter().any(|n| n.starts_with("netem: ")),
        "netem presence must be reported either way: {:?}",
        caps.notes
    );
    ensure!(
        util::our_traces_here()? == before,
        "probe changed the caller's namespace"
    );
    Ok(())
}

pub fn hosts_and_lab_connect(lab: &Lab) -> anyhow::Result<()> {
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    ensure!(n1.addr() != n2.addr(), "hosts share an address");
    ensure!(n1.lab_iface() == Some("vh-n1"));
    ensure!(lab.lab_addr() == Ipv4Addr::new(198, 18, 0, 1));
    let s1 = echo_server(&n1, 7000)?;
    let s2 = echo_server(&n2, 7000)?;
    // Host to host, both ways.
    let mut c = connect(Some(&n2), s1, PATIENT).context("n2 -> n1")?;
    ensure!(
        echo_roundtrip(&mut c, b"hello n1", PATIENT)?,
        "n2 -> n1 echo"
    );
    ensure!(
        c.local_addr()?.ip() == n2.addr(),
        "connection did not come from n2's address"
    );
    let mut c = connect(Some(&n1), s2, PATIENT).context("n1 -> n2")?;
    ensure!(
        echo_roundtrip(&mut c, b"hello n2", PATIENT)?,
        "n1 -> n2 echo"
    );
    // The lab (load generator) to both.
    for s in [s1, s2] {
        let mut c = connect(None, s, PATIENT).with_context(|| format!("lab -> {s}"))?;
        ensure!(
            echo_roundtrip(&mut c, b"from the lab", PATIENT)?,
            "lab -> {s} echo"
        );
        ensure!(c.local_addr()?.ip() == lab.lab_addr());
    }
    Ok(())
}

pub fn host_keeps_address_across_process_restart(lab: &Lab) -> anyhow::Result<()> {
    let n1 = lab.add_host("n1")?;
    for round in 0..2 {
        // A process in the host sees the host's address on eth0.
        let out = n1
            .command("ip")?
            .args(["-4", "-o", "addr", "show", "dev", "eth0"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            text.contains(&format!("{}/16", n1.addr())),
            "round {round}: eth0 has no {}: {text}",
            n1.addr()
        );
        let mut child = n1.command("sleep")?.arg("100").spawn()?;
        let h = raftbus_faults::ProcessHandle::group(child.id());
        ensure!(
            nix::unistd::getpgid(Some(h.pid()))? == h.pid(),
            "host commands lead their own process group"
        );
        h.kill()?;
        child.wait()?;
    }
    Ok(())
}

pub fn teardown_child(lab: &Lab) -> anyhow::Result<()> {
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    lab.net()
        .partition(&raftbus_faults::Partition::isolate("n1", &["n2"]))?;
    let holders: Vec<_> = [&n1, &n2]
        .iter()
        .map(|h| h.holder_pid().expect("holder"))
        .collect();
    for p in &holders {
        ensure!(!process::state(*p).is_gone(), "holder {p} not running");
    }
    lab.teardown()?;
    lab.teardown()?; // idempotent
    for p in &holders {
        let s = process::state(*p);
        ensure!(
            s == raftbus_faults::ProcState::Gone,
            "holder {p} still there after teardown: {s}"
        );
    }
    let left = util::our_traces_here()?;
    ensure!(
        left.is_empty(),
        "teardown left in the lab namespace: {left:?}"
    );
    println!(
        "holders: {}",
        holders
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

pub fn teardown_leaves_nothing() -> anyhow::Result<()> {
    let before = util::our_traces_here()?;
    let out = util::run_child("lab::teardown_child", |_| {})?;
    util::child_result("lab::teardown_child", &out)?;
    if out.status.code() == Some(util::SKIP_CODE) {
        return Ok(());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let holders: Vec<i32> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("holders: "))
        .context("child did not report its holders")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    ensure!(holders.len() == 2);
    for p in holders {
        let s = process::state(nix::unistd::Pid::from_raw(p));
        ensure!(s.is_gone(), "holder {p} survived the lab: {s}");
    }
    let after = util::our_traces_here()?;
    ensure!(
        after == before,
        "host namespace changed: before {before:?}, after {after:?}"
    );
    ensure!(
        after.is_empty(),
        "lab objects in the host namespace: {after:?}"
    );
    Ok(())
}

/// The rootless path: as root, run the lab child as `nobody` (euid != 0), so `Lab::enter`
/// must go through a user namespace. The binary is copied to a world-readable directory so
/// that `nobody` can execute it wherever the target directory is.
pub fn rootless_lab() -> anyhow::Result<()> {
    let name = "lab::rootless_child";
    let out = if nix::unistd::geteuid().is_root() {
        let dir = tempfile::tempdir()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let exe = dir.path().join("faults-tests");
        std::fs::copy(std::env::current_exe()?, &exe)?;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.env(util::CHILD_ENV, name).current_dir("/");
        // std drops supplementary groups itself when root changes uid.
        cmd.uid(65534).gid(65534);
        cmd.output()?
    } else {
        util::run_child(name, |_| {})?
    };
    util::child_result(name, &out)
}

pub fn rootless_child(lab: &Lab) -> anyhow::Result<()> {
    ensure!(
        *lab.mode() == LabMode::Namespaces { rootless: true },
        "expected a rootless lab, got {:?}",
        lab.mode()
    );
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    let s1 = echo_server(&n1, 7000)?;
    let mut c = connect(Some(&n2), s1, PATIENT)?;
    ensure!(echo_roundtrip(&mut c, b"rootless", PATIENT)?);
    lab.net()
        .partition(&raftbus_faults::Partition::isolate("n1", &["n2"]))?;
    ensure!(
        connect(Some(&n2), s1, SHORT).is_err(),
        "rootless partition did not cut n2 -> n1"
    );
    lab.net().heal()?;
    ensure!(connect(Some(&n2), s1, Duration::from_secs(2)).is_ok());
    Ok(())
}
