//! `raftbus sweep` against Redis: steps rise until the objective breaks, the capacity and
//! the reason are recorded, every step is a full run with its own report.

use raftbus_reports::model::{Sweep, Verdict};

use crate::util;

fn sweep(dir: &std::path::Path, slo: &str) -> std::process::Output {
    util::require_redis();
    let d = dir.to_str().unwrap();
    util::run(&[
        "sweep",
        "--target",
        "redis",
        "--rates",
        "200,400",
        "--step",
        "2s",
        "--warmup",
        "1s",
        "--publishers",
        "2",
        "--slo",
        slo,
        "--seed",
        "5",
        "--out",
        d,
    ])
}

#[test]
fn steps_rise_until_the_objective_breaks_and_each_step_is_a_full_run() {
    let tmp = tempfile::tempdir().unwrap();
    // A bound no step can miss: every rate holds.
    let easy = tmp.path().join("easy");
    let out = sweep(&easy, "p99=5s");
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let s = Sweep::read(&easy).expect("sweep.json");
    assert_eq!(s.slo, "p99 <= 5s");
    assert_eq!(s.curves.len(), 1);
    let c = &s.curves[0];
    assert!(c.label.starts_with("redis"), "{}", c.label);
    assert_eq!(c.steps.len(), 2);
    assert_eq!(c.max_rate_within_slo, Some(400.0));
    assert!(c.stopped.contains("every rate given held"), "{}", c.stopped);
    for (step, rate) in c.steps.iter().zip([200.0, 400.0]) {
        assert!((step.offered_per_s - rate).abs() < rate * 0.05, "{step:?}");
        assert!(step.within_slo && step.verdict == Verdict::Valid);
        assert!(step.publish_all.count > 0);
        let run = easy.join(&step.dir);
        let summary = util::summary(&run);
        assert_eq!(summary.latency_us.publish_all, step.publish_all);
        assert!(run.join("report.html").is_file(), "{}", run.display());
    }
    let html = std::fs::read_to_string(easy.join("report.html")).unwrap();
    assert!(html.contains("Capacity") && html.contains("<svg"));
    assert!(easy.join("sweep.png").is_file());
    assert!(std::fs::read_to_string(easy.join("summary.md"))
        .unwrap()
        .contains("400/s"));
    // `raftbus report` re-renders a sweep directory.
    let out = util::run(&["report", easy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));

    // A bound no step can meet: the first step breaks it and the sweep stops there.
    let hard = tmp.path().join("hard");
    let out = sweep(&hard, "p50=1us");
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    let c = &Sweep::read(&hard).unwrap().curves[0];
    assert_eq!(c.steps.len(), 1);
    assert_eq!(c.max_rate_within_slo, None);
    // Broken by the target's latency, or (a bound finer than the generator's timer) by
    // the generator's own lag, which the sweep then names.
    assert!(c.stopped.contains("p50 "), "{}", c.stopped);
}

#[test]
fn sweep_rejects_a_fixed_rate_or_length_and_falling_rates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    for args in [
        vec!["sweep", "--rate", "100", "--out", d],
        vec!["sweep", "--duration", "5s", "--out", d],
        vec!["sweep", "--rates", "400,200", "--out", d],
        vec!["sweep", "--slo", "p98=1ms", "--out", d],
    ] {
        let out = util::run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            util::stderr(&out)
        );
    }
    assert!(!tmp.path().join("sweep.json").exists());
}
