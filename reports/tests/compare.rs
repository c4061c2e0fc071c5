use std::path::Path;

use raftbus_reports::synthetic::SyntheticRun;
use raftbus_reports::{compare, ReportError, DEFAULT_THRESHOLD};

use crate::util::{bus_run, lost_violation, write_both};

fn write(dir: &Path, run: SyntheticRun) -> std::path::PathBuf {
    run.write(dir).unwrap();
    dir.to_path_buf()
}

#[test]
fn flags_a_50_percent_p99_regression() {
    let root = tempfile::tempdir().unwrap();
    let a = write(&root.path().join("a"), bus_run());
    let b = write(
        &root.path().join("b"),
        SyntheticRun {
            base_latency_us: bus_run().base_latency_us * 1.5,
            ..bus_run()
        },
    );
    let c = compare(&a, &b, DEFAULT_THRESHOLD).unwrap();
    assert!(c.regressed, "{}", c.to_text());
    let p99 = c.runs[0]
        .metrics
        .iter()
        .find(|m| m.name == "ack p99")
        .unwrap();
    let change = p99.change().unwrap();
    assert!((0.45..0.55).contains(&change), "p99 change {change}");
    assert!(c.runs[0].regressions.iter().any(|r| r.contains("ack p99")));
    assert!(c.to_text().contains("REGRESSED"));
    assert!(c.to_markdown().contains("regression"));
}

#[test]
fn ignores_a_2_percent_change() {
    let root = tempfile::tempdir().unwrap();
    let a = write(&root.path().join("a"), bus_run());
    let b = write(
        &root.path().join("b"),
        SyntheticRun {
            base_latency_us: bus_run().base_latency_us * 1.02,
            ..bus_run()
        },
    );
    let c = compare(&a, &b, DEFAULT_THRESHOLD).unwrap();
    assert!(!c.regressed, "{}", c.to_text());
    assert!(c.runs[0].regressions.is_empty());
    assert!(!c.runs[0].noise.is_empty(), "a noise note is always given");
    assert!(c.to_text().contains("no regression"));
    // The same 2% is a regression under a 1% threshold.
    assert!(compare(&a, &b, 0.01).unwrap().regressed);
}

#[test]
fn faster_is_not_a_regression() {
    let root = tempfile::tempdir().unwrap();
    let a = write(&root.path().join("a"), bus_run());
    let b = write(
        &root.path().join("b"),
        SyntheticRun {
            base_latency_us: bus_run().base_latency_us * 0.5,
            ..bus_run()
        },
    );
    assert!(!compare(&a, &b, DEFAULT_THRESHOLD).unwrap().regressed);
}

#[test]
fn flags_a_throughput_drop() {
    let root = tempfile::tempdir().unwrap();
    let a = write(&root.path().join("a"), bus_run());
    let b = write(
        &root.path().join("b"),
        SyntheticRun {
            achieved_fraction: 0.7,
            ..bus_run()
        },
    );
    let c = compare(&a, &b, DEFAULT_THRESHOLD).unwrap();
    assert!(c.regressed);
    assert!(c.runs[0]
        .regressions
        .iter()
        .any(|r| r.contains("throughput")));
}

#[test]
fn flags_a_new_violation() {
    let root = tempfile::tempdir().unwrap();
    let a = write(&root.path().join("a"), bus_run());
    let b = write(
        &root.path().join("b"),
        SyntheticRun {
            violations: vec![lost_violation()],
            ..bus_run()
        },
    );
    let c = compare(&a, &b, DEFAULT_THRESHOLD).unwrap();
    assert!(c.regressed);
    assert_eq!(
        c.runs[0].regressions,
        vec!["new correctness violation: lost (3)".to_string()]
    );
}

#[test]
fn both_dirs_compare_per_target() {
    let root = tempfile::tempdir().unwrap();
    write_both(&root.path().join("a"));
    write_both(&root.path().join("b"));
    let c = compare(&root.path().join("a"), &root.path().join("b"), 0.1).unwrap();
    let labels: Vec<&str> = c.runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, vec!["bus", "redis"]);
    assert!(!c.regressed, "identical runs: {}", c.to_text());
}

#[test]
fn rejects_a_bad_threshold() {
    let root = tempfile::tempdir().unwrap();
    let a = write(&root.path().join("a"), bus_run());
    assert!(matches!(
        compare(&a, &a, -0.5),
        Err(ReportError::InvalidThreshold(_))
    ));
    assert!(compare(&a, &a, f64::NAN).is_err());
}
