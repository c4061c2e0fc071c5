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

#[test]
fn flags_a_cpu_per_1k_regression_beyond_the_threshold_only() {
    let root = tempfile::tempdir().unwrap();
    let cpu = bus_run().cpu_s_per_1k.unwrap();
    let a = write(&root.path().join("a"), bus_run());
    let worse = write(
        &root.path().join("worse"),
        SyntheticRun {
            cpu_s_per_1k: Some(cpu * 1.3),
            ..bus_run()
        },
    );
    let c = compare(&a, &worse, DEFAULT_THRESHOLD).unwrap();
    assert!(c.regressed, "{}", c.to_text());
    let m = c.runs[0]
        .metrics
        .iter()
        .find(|m| m.name == "CPU / 1k acked")
        .expect("cost metrics compared");
    assert!(m.gating);
    assert!((m.change().unwrap() - 0.3).abs() < 1e-6, "{m:?}");
    assert!(c.runs[0]
        .regressions
        .iter()
        .any(|r| r.contains("CPU / 1k acked")));
    assert!(c.to_text().contains("REGRESSED"));

    // 5% more CPU is within the 10% threshold, and beyond a 1% one.
    let slightly = write(
        &root.path().join("slightly"),
        SyntheticRun {
            cpu_s_per_1k: Some(cpu * 1.05),
            ..bus_run()
        },
    );
    let c = compare(&a, &slightly, DEFAULT_THRESHOLD).unwrap();
    assert!(!c.regressed, "{}", c.to_text());
    assert!(compare(&a, &slightly, 0.01).unwrap().regressed);

    // Less CPU is no regression.
    let better = write(
        &root.path().join("better"),
        SyntheticRun {
            cpu_s_per_1k: Some(cpu * 0.5),
            ..bus_run()
        },
    );
    assert!(!compare(&a, &better, DEFAULT_THRESHOLD).unwrap().regressed);
}

#[test]
fn flags_a_peak_rss_regression() {
    let root = tempfile::tempdir().unwrap();
    let a = write(&root.path().join("a"), bus_run());
    let b = write(
        &root.path().join("b"),
        SyntheticRun {
            peak_rss_bytes: bus_run().peak_rss_bytes * 2,
            ..bus_run()
        },
    );
    let c = compare(&a, &b, DEFAULT_THRESHOLD).unwrap();
    assert!(c.regressed, "{}", c.to_text());
    assert!(c.runs[0].regressions.iter().any(|r| r.contains("peak RSS")));
}

#[test]
fn runs_without_cost_compare_without_it() {
    let root = tempfile::tempdir().unwrap();
    let a = write(
        &root.path().join("a"),
        SyntheticRun {
            cpu_s_per_1k: None,
            ..bus_run()
        },
    );
    let b = write(
        &root.path().join("b"),
        SyntheticRun {
            cpu_s_per_1k: Some(1.0),
            ..bus_run()
        },
    );
    let c = compare(&a, &b, DEFAULT_THRESHOLD).unwrap();
    assert!(!c.regressed, "{}", c.to_text());
    assert!(!c.runs[0].metrics.iter().any(|m| m.name.contains("CPU")));
}
