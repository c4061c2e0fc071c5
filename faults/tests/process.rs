use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use raftbus_faults::{Fault, FaultKind, Journal, Lab, ProcState, ProcessHandle};

/// Poll until `pred` holds for the process state (signals are asynchronous).
fn wait_state(h: &ProcessHandle, pred: impl Fn(ProcState) -> bool) -> anyhow::Result<ProcState> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = h.state();
        if pred(s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("process {} stuck in state {s}", h.pid());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn pause_resume_kill() -> anyhow::Result<()> {
    let lab = Lab::loopback("process test");
    let host = lab.add_host("n1")?;
    let mut child = host.command("sleep")?.arg("100").spawn()?;
    let h = ProcessHandle::group(child.id());
    h.pause()?;
    wait_state(&h, |s| s == ProcState::Stopped)?;
    h.resume()?;
    wait_state(&h, |s| s != ProcState::Stopped)?;
    h.kill()?;
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    ensure!(status.signal() == Some(9), "expected SIGKILL, got {status}");
    ensure!(h.state() == ProcState::Gone, "reaped process still visible");
    // Signalling a process that is gone is not an error.
    h.kill()?;
    Ok(())
}

pub fn journal_restarts_killed_and_resumes_paused() -> anyhow::Result<()> {
    let lab = Lab::loopback("journal test");
    let host = lab.add_host("n1")?;
    let mut killed = host.command("sleep")?.arg("100").spawn()?;
    let mut paused = host.command("sleep")?.arg("100").spawn()?;
    let paused_h = ProcessHandle::group(paused.id());

    let restarted: Arc<Mutex<Vec<(String, std::process::Child)>>> = Arc::default();
    let mut journal = Journal::new(None);
    {
        let restarted = restarted.clone();
        let host = host.clone();
        journal.set_restarter(move |name: &str| {
            let child = host.command("sleep")?.arg("100").spawn()?;
            let h = ProcessHandle::group(child.id());
            restarted.lock().unwrap().push((name.to_owned(), child));
            Ok(h)
        });
    }
    let k = journal.apply(Fault::Kill {
        host: "n1".into(),
        process: ProcessHandle::group(killed.id()),
    })?;
    let p = journal.apply(Fault::Pause {
        host: "n2".into(),
        process: paused_h.clone(),
    })?;
    killed.wait()?;
    wait_state(&paused_h, |s| s == ProcState::Stopped)?;
    ensure!(journal.active().count() == 2);
    let entry = &journal.entries()[0];
    ensure!(entry.kind == FaultKind::Kill && entry.targets == ["n1"]);

    let results = journal.heal_all();
    ensure!(
        results.len() == 2 && results.iter().all(|r| r.is_ok()),
        "{results:?}"
    );
    // Newest first.
    ensure!(matches!(results[0], Ok(id) if id == p) && matches!(results[1], Ok(id) if id == k));
    wait_state(&paused_h, |s| s != ProcState::Stopped)?;
    ensure!(journal.is_clean());
    ensure!(journal.entries().iter().all(|e| e.end_s.is_some()));
    let mut restarted = restarted.lock().unwrap();
    ensure!(
        restarted.len() == 1 && restarted[0].0 == "n1",
        "restarter calls: {}",
        restarted.len()
    );
    for (_, c) in restarted.iter_mut() {
        ProcessHandle::group(c.id()).kill()?;
        c.wait()?;
    }
    paused_h.kill()?;
    paused.wait()?;
    // The records serialize for the run's history.
    let json = serde_json::to_string(journal.entries())?;
    ensure!(
        json.contains(r#""kind":"kill""#) && json.contains(r#""kind":"pause""#),
        "{json}"
    );
    Ok(())
}
