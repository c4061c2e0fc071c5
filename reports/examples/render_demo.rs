//! Writes synthetic results (a 10-minute bus run with two faults, and a bus-vs-redis pair),
//! renders their reports and prints how long rendering took.
//!
//! `cargo run -p raftbus-reports --release --example render_demo -- OUT_DIR`

use std::path::PathBuf;
use std::time::Instant;

use raftbus_reports::model::{FaultWindow, Target};
use raftbus_reports::plot::latency_over_time::LatencyOverTime;
use raftbus_reports::plot::{render, render_svg_string, PlotContext};
use raftbus_reports::run::RunData;
use raftbus_reports::synthetic::SyntheticRun;
use raftbus_reports::{render_run, trend};

fn faults() -> Vec<FaultWindow> {
    vec![
        FaultWindow {
            kind: "kill".to_string(),
            detail: "leader".to_string(),
            targets: vec!["n1".to_string()],
            start_s: 120.0,
            end_s: 150.0,
        },
        FaultWindow {
            kind: "partition".to_string(),
            detail: "isolate-leader".to_string(),
            targets: vec!["n2".to_string()],
            start_s: 330.0,
            end_s: 380.0,
        },
    ]
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/render_demo".to_string()),
    );
    let single = out.join("single");
    let run = SyntheticRun {
        name: "chaos-kill-partition".to_string(),
        duration_s: 610,
        warmup_s: 10,
        rate: 10_000,
        samples_per_s: 1000,
        faults: faults(),
        ..SyntheticRun::default()
    };
    let t = Instant::now();
    run.write(&single)?;
    println!("wrote synthetic 10-minute run in {:?}", t.elapsed());

    for attempt in ["first", "second"] {
        let t = Instant::now();
        let rep = render_run(&single)?;
        println!(
            "rendered single run (610 rows, 610 intervals x 3 tags), {attempt} time, in {:?}: {}",
            t.elapsed(),
            rep.html.display()
        );
    }

    // Where the time goes.
    let t = Instant::now();
    let data = RunData::load(&single)?;
    println!(
        "  load (summary, timeseries, hlog decode): {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let hlog = raftbus_reports::hlog::Hlog::read(&single.join("latency.hlog"))?;
    println!(
        "  hlog alone: {} intervals decoded and merged in {:?}",
        hlog.intervals.len(),
        t.elapsed()
    );
    let ctx = PlotContext::new(&out.join("phases"));
    std::fs::create_dir_all(&ctx.out_dir)?;
    let rows = data.latency_rows();
    let chart = LatencyOverTime {
        label: data.label(),
        rows: &rows,
        faults: &data.summary.faults,
        warmup_s: data.warmup_s(),
    };
    let t = Instant::now();
    let svg = render_svg_string(&ctx, &chart)?;
    println!(
        "  latency chart as SVG ({} bytes): {:?}",
        svg.len(),
        t.elapsed()
    );
    let t = Instant::now();
    render(&ctx, &chart)?;
    println!("  latency chart as SVG + PNG: {:?}", t.elapsed());

    let t = Instant::now();
    let series = data.spectrum("");
    println!(
        "  spectrum series ({} curves): {:?}",
        series.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let _ = data.latency_rows();
    let _ = data.throughput_rows();
    println!("  per-second rows: {:?}", t.elapsed());

    let both = out.join("both");
    SyntheticRun {
        name: "bench-baseline".to_string(),
        ..run.clone()
    }
    .write(&both.join("bus"))?;
    SyntheticRun {
        name: "bench-baseline".to_string(),
        target: Target::Redis,
        target_detail: "appendfsync always".to_string(),
        base_latency_us: 250.0,
        ..run
    }
    .write(&both.join("redis"))?;
    let t = Instant::now();
    let rep = render_run(&both)?;
    println!(
        "rendered bus-vs-redis pair in {:?}: {}",
        t.elapsed(),
        rep.html.display()
    );

    // A trend root: five nightly runs of one scenario, the fourth one invalid and slower.
    let nightly = out.join("trend");
    for night in 0..5u64 {
        let dir = nightly.join(format!("night-{night}"));
        SyntheticRun {
            name: "nightly-chaos".to_string(),
            started_at: 1_700_000_000 + night * 86_400,
            seed: 100 + night,
            duration_s: 60,
            base_latency_us: if night == 3 {
                1400.0
            } else {
                900.0 + 20.0 * night as f64
            },
            violations: if night == 3 {
                vec![raftbus_reports::model::ViolationReport {
                    kind: "lost".to_string(),
                    property: "every acknowledged message is delivered".to_string(),
                    count: 2,
                    examples: vec!["msg p1-7 acked at offset 88, never delivered".to_string()],
                }]
            } else {
                Vec::new()
            },
            faults: faults()
                .into_iter()
                .map(|mut f| {
                    f.start_s /= 10.0;
                    f.end_s /= 10.0;
                    f
                })
                .collect(),
            ..SyntheticRun::default()
        }
        .write(&dir)?;
        render_run(&dir)?;
    }
    let t = Instant::now();
    let tr = trend(&nightly)?;
    println!(
        "trend over {} runs in {:?}: {}",
        tr.runs.len(),
        t.elapsed(),
        tr.index_path.display()
    );
    Ok(())
}
