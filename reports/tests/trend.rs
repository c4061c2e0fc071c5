use raftbus_reports::model::Target;
use raftbus_reports::synthetic::SyntheticRun;
use raftbus_reports::{render_run, trend, ReportError};

use crate::util::{bus_run, lost_violation, redis_run};

#[test]
fn orders_runs_by_time_and_links_reports() {
    let root = tempfile::tempdir().unwrap();
    let nightly = root.path().join("nightly");
    // Directory names sort opposite to start times.
    let runs = [
        ("c-first", 1_700_000_000u64, 900.0, false),
        ("b-second", 1_700_086_400, 950.0, true),
        ("a-third", 1_700_172_800, 1400.0, false),
    ];
    for (name, started_at, base, bad) in runs {
        let dir = nightly.join(name);
        let cpu = bus_run().cpu_s_per_1k.unwrap();
        SyntheticRun {
            started_at,
            base_latency_us: base,
            // The third run spends half as much CPU again per message.
            cpu_s_per_1k: Some(if name == "a-third" { cpu * 1.5 } else { cpu }),
            violations: if bad { vec![lost_violation()] } else { vec![] },
            ..bus_run()
        }
        .write(&dir)
        .unwrap();
        render_run(&dir).unwrap();
    }
    // A `both` dir counts as two runs, and one run without a rendered report.
    let both = root.path().join("weekly/2024-w1");
    SyntheticRun {
        started_at: 1_700_050_000,
        ..bus_run()
    }
    .write(&both.join("bus"))
    .unwrap();
    SyntheticRun {
        started_at: 1_700_050_000,
        ..redis_run()
    }
    .write(&both.join("redis"))
    .unwrap();

    let t = trend(root.path()).unwrap();
    assert_eq!(t.runs.len(), 5);
    let order: Vec<&str> = t.runs.iter().map(|r| r.rel.as_str()).collect();
    assert_eq!(
        order,
        vec![
            "nightly/c-first",
            "weekly/2024-w1/bus",
            "weekly/2024-w1/redis",
            "nightly/b-second",
            "nightly/a-third"
        ]
    );
    assert_eq!(t.groups.len(), 2, "one scenario on two targets");
    let bus = t.groups.iter().find(|g| g.target == "bus").unwrap();
    assert_eq!(bus.runs.len(), 4);
    assert!(t
        .groups
        .iter()
        .any(|g| g.target == "redis" && g.runs.len() == 1));
    assert!(t
        .runs
        .iter()
        .all(|r| r.summary.target == Target::Bus || r.rel.ends_with("redis")));

    let html = std::fs::read_to_string(&t.index_path).unwrap();
    assert_eq!(t.index_path, root.path().join("index.html"));
    let first = html
        .find("href=\"nightly/c-first/report.html\"")
        .expect("link 1");
    let second = html
        .find("href=\"nightly/b-second/report.html\"")
        .expect("link 2");
    let third = html
        .find("href=\"nightly/a-third/report.html\"")
        .expect("link 3");
    assert!(first < second && second < third, "links in time order");
    assert!(
        html.contains("href=\"weekly/2024-w1/bus/summary.json\""),
        "unrendered run links its summary"
    );
    assert!(html.contains("INVALID"));
    assert!(html.contains("<svg"), "trend charts are inline");
    assert!(!html.contains("http://") && !html.contains("https://"));
    // p99 vs previous: the third run is much slower than the second.
    let p99 = |rel: &str| {
        t.runs
            .iter()
            .find(|r| r.rel == rel)
            .unwrap()
            .summary
            .latency_us
            .publish_ack
            .p99 as f64
    };
    let (prev, last) = (p99("nightly/b-second"), p99("nightly/a-third"));
    let expected = format!("<td>{:+.1}%</td>", (last - prev) / prev * 100.0);
    assert!((last - prev) / prev > 0.3);
    assert!(html.contains(&expected), "p99 delta {expected} shown");
    // CPU per 1k acked and its change against the previous run.
    assert!(html.contains("CPU / 1k acked"));
    assert!(
        html.contains("<td>60.0 ms</td><td>+50.0%</td>"),
        "CPU delta shown"
    );
}

#[test]
fn empty_root_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("x/y")).unwrap();
    assert!(matches!(trend(root.path()), Err(ReportError::NoRuns(_))));
}

#[test]
fn broken_summary_is_skipped_not_fatal() {
    let root = tempfile::tempdir().unwrap();
    bus_run().write(&root.path().join("ok")).unwrap();
    std::fs::create_dir_all(root.path().join("broken")).unwrap();
    std::fs::write(root.path().join("broken/summary.json"), "{not json").unwrap();
    let t = trend(root.path()).unwrap();
    assert_eq!(t.runs.len(), 1);
    assert_eq!(t.skipped.len(), 1);
    let html = std::fs::read_to_string(t.index_path).unwrap();
    assert!(html.contains("Skipped"));
}
