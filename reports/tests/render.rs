use raftbus_reports::model::{Summary, Verdict};
use raftbus_reports::{render_run, ReportError};

use crate::util::{
    assert_svg_well_formed, bus_run, lost_violation, png_size, write_both, write_single,
};

const SECTIONS: [&str; 10] = [
    "Verdict",
    "Rerun",
    "Workload",
    "Checks",
    "Latency",
    "Throughput",
    "Charts",
    "Faults",
    "Recovery",
    "Environment",
];

fn assert_no_network_refs(html: &str) {
    for needle in [
        "http://",
        "https://",
        "src=\"//",
        "href=\"//",
        "<script",
        "@import",
        "url(",
    ] {
        assert!(
            !html.contains(needle),
            "report must be self-contained, found {needle:?}"
        );
    }
}

#[test]
fn single_run_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let summary = write_single(dir.path());
    let rep = render_run(dir.path()).unwrap();
    assert!(rep.html.is_file());
    assert!(rep.markdown.is_file());
    assert!(rep.runs.is_empty());
    for stem in [
        "latency_over_time",
        "throughput_over_time",
        "percentile_spectrum",
    ] {
        let png = dir.path().join(format!("{stem}.png"));
        let svg = dir.path().join(format!("{stem}.svg"));
        assert!(
            rep.charts.contains(&png) && rep.charts.contains(&svg),
            "{stem}"
        );
        let (w, h) = png_size(&png);
        assert_eq!(w, 1200, "{stem} width");
        assert!(h >= 600, "{stem} height {h}");
        let text = std::fs::read_to_string(&svg).unwrap();
        assert_svg_well_formed(&text);
        assert!(text.contains("<text"), "{stem} has text");
    }
    assert_eq!(
        png_size(&dir.path().join("latency_over_time.png")),
        (1200, 860)
    );

    // Fault bands are labelled in the time charts.
    for stem in ["latency_over_time", "throughput_over_time"] {
        let svg = std::fs::read_to_string(dir.path().join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("kill leader n1"), "{stem} kill label");
        assert!(
            svg.contains("partition isolate-leader n2"),
            "{stem} partition label"
        );
        assert!(svg.contains("warmup"), "{stem} warmup label");
    }

    let html = std::fs::read_to_string(&rep.html).unwrap();
    for s in SECTIONS {
        assert!(
            html.contains(&format!("\">{s}</h2>")),
            "missing section {s}"
        );
    }
    assert!(html.contains(&summary.rerun), "rerun command");
    assert!(html.contains("class=\"verdict valid\">VALID"), "verdict");
    assert!(html.contains("kill leader n1") && html.contains("partition isolate-leader n2"));
    assert!(html.contains("<svg"), "charts are inlined");
    assert!(html.contains("href=\"latency_over_time.png\""));
    assert_no_network_refs(&html);

    let md = std::fs::read_to_string(&rep.markdown).unwrap();
    assert!(md.contains("VALID"));
    assert!(md.contains("| publish → ack |"));
    assert!(md.contains(&summary.rerun));
}

#[test]
fn data_text_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    write_single(dir.path());
    let mut s = Summary::read(dir.path()).unwrap();
    s.name = "<script>alert('x')</script>".to_string();
    s.rerun = "raftbus chaos --scenario 'a&b.toml' --seed 7 \"<img src=x>\"".to_string();
    s.faults[0].detail = "<b>leader</b>".to_string();
    s.environment
        .notes
        .push("<iframe src=\"https://evil.example\">".to_string());
    s.write(dir.path()).unwrap();
    let rep = render_run(dir.path()).unwrap();
    let html = std::fs::read_to_string(rep.html).unwrap();
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("&#39;a&amp;b.toml&#39;"));
    assert!(!html.contains("<img src=x>"));
    assert!(!html.contains("<b>leader</b>"));
    assert!(!html.contains("<iframe"));
    assert!(!html.contains("src=\"https://"), "no network resource");
}

#[test]
fn invalid_run_shows_violations_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    let summary = raftbus_reports::synthetic::SyntheticRun {
        violations: vec![lost_violation()],
        ..bus_run()
    }
    .write(dir.path())
    .unwrap();
    assert_eq!(summary.verdict, Verdict::Invalid);
    let rep = render_run(dir.path()).unwrap();
    let html = std::fs::read_to_string(rep.html).unwrap();
    assert!(html.contains("class=\"verdict invalid\">INVALID"));
    assert!(html.contains("msg p1-00042 acked at offset 1207 on n1, never delivered"));
    assert!(html.contains("every acknowledged message is delivered"));
    assert!(html.contains("pill bad\">violated"));
    // lost mid-stream is a breakdown of lost: counted once in the key numbers.
    assert!(html.contains("<b>3</b><span>violations</span>"));
    let md = std::fs::read_to_string(rep.markdown).unwrap();
    assert!(md.contains("INVALID"));
    assert!(md.contains("| lost | 3 |"));
}

#[test]
fn both_dir_gets_a_comparison_and_per_target_reports() {
    let dir = tempfile::tempdir().unwrap();
    write_both(dir.path());
    let rep = render_run(dir.path()).unwrap();
    assert_eq!(rep.runs.len(), 2);
    for t in ["bus", "redis"] {
        assert!(
            dir.path().join(t).join("report.html").is_file(),
            "{t} report"
        );
        assert!(dir.path().join(t).join("latency_over_time.png").is_file());
    }
    let (w, h) = png_size(&dir.path().join("comparison_bars.png"));
    assert_eq!((w, h), (1200, 620));
    let overlay = std::fs::read_to_string(dir.path().join("percentile_spectrum.svg")).unwrap();
    assert_svg_well_formed(&overlay);
    for label in [
        "bus publish→ack",
        "redis publish→ack",
        "bus publish→deliver",
    ] {
        assert!(overlay.contains(label), "overlay has {label}");
    }
    let html = std::fs::read_to_string(&rep.html).unwrap();
    assert!(html.contains("href=\"bus/report.html\""));
    assert!(html.contains("href=\"redis/report.html\""));
    assert!(html.contains("redis (appendfsync always)"));
    for s in [
        "Verdict",
        "Rerun",
        "Latency",
        "Throughput",
        "Checks",
        "Charts",
        "Environment",
    ] {
        assert!(
            html.contains(&format!("\">{s}</h2>")),
            "missing section {s}"
        );
    }
    assert!(html.contains("kill leader n1"));
    assert_no_network_refs(&html);
    let md = std::fs::read_to_string(&rep.markdown).unwrap();
    assert!(
        md.contains("| | bus | redis (appendfsync always) |\n"),
        "{md}"
    );
    // The cost of a message: a table and bars, Redis's fsyncs absent in words.
    assert!(html.contains("\">Cost of a message</h2>"));
    assert!(md.contains("#### Cost of a message"), "{md}");
    assert!(md.contains("not reported by Redis"), "{md}");
    assert_eq!(png_size(&dir.path().join("cost_bars.png")), (1200, 420));
    let bars = std::fs::read_to_string(dir.path().join("cost_bars.svg")).unwrap();
    assert_svg_well_formed(&bars);
    assert!(bars.contains("by Redis"));
}

#[test]
fn results_without_cost_still_load_and_render() {
    let dir = tempfile::tempdir().unwrap();
    write_single(dir.path());
    // A summary.json written before cost was measured has no `cost` field.
    let path = dir.path().join("summary.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(json.as_object_mut().unwrap().remove("cost").is_some());
    std::fs::write(&path, json.to_string()).unwrap();
    let s = raftbus_reports::model::Summary::read(dir.path()).unwrap();
    assert!(s.cost.is_none());
    let rep = render_run(dir.path()).unwrap();
    let html = std::fs::read_to_string(rep.html).unwrap();
    assert!(!html.contains("Cost of a message"));
}

#[test]
fn summary_alone_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    write_single(dir.path());
    std::fs::remove_file(dir.path().join("timeseries.json")).unwrap();
    std::fs::remove_file(dir.path().join("latency.hlog")).unwrap();
    let rep = render_run(dir.path()).unwrap();
    let html = std::fs::read_to_string(rep.html).unwrap();
    assert!(html.contains("Incomplete data"));
    assert!(html.contains("timeseries.json is missing"));
    // The spectrum falls back to the summary's percentiles.
    assert!(dir.path().join("percentile_spectrum.png").is_file());
    assert!(!dir.path().join("latency_over_time.png").exists());
}

#[test]
fn hlog_alone_gives_latency_over_time() {
    let dir = tempfile::tempdir().unwrap();
    write_single(dir.path());
    std::fs::remove_file(dir.path().join("timeseries.json")).unwrap();
    render_run(dir.path()).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("latency_over_time.svg")).unwrap();
    assert!(svg.contains("kill leader n1"));
    assert!(!dir.path().join("throughput_over_time.png").exists());
}

#[test]
fn not_a_results_dir() {
    let dir = tempfile::tempdir().unwrap();
    let err = render_run(dir.path()).unwrap_err();
    assert!(matches!(err, ReportError::NotAResultsDir(_)), "{err}");
}
