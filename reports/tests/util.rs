//! Synthetic results directories and file checks shared by the tests.

use std::path::Path;

use raftbus_reports::model::{FaultWindow, Summary, Target, ViolationReport};
use raftbus_reports::synthetic::SyntheticRun;

pub fn faults() -> Vec<FaultWindow> {
    vec![
        FaultWindow {
            kind: "kill".to_string(),
            detail: "leader".to_string(),
            targets: vec!["n1".to_string()],
            start_s: 12.0,
            end_s: 18.0,
        },
        FaultWindow {
            kind: "partition".to_string(),
            detail: "isolate-leader".to_string(),
            targets: vec!["n2".to_string()],
            start_s: 26.0,
            end_s: 33.0,
        },
    ]
}

/// A 40-second bus run with two fault windows.
pub fn bus_run() -> SyntheticRun {
    SyntheticRun {
        name: "chaos-mix".to_string(),
        duration_s: 40,
        warmup_s: 5,
        rate: 1000,
        samples_per_s: 300,
        faults: faults(),
        ..SyntheticRun::default()
    }
}

pub fn redis_run() -> SyntheticRun {
    SyntheticRun {
        target: Target::Redis,
        target_detail: "appendfsync always".to_string(),
        base_latency_us: 300.0,
        ..bus_run()
    }
}

pub fn write_single(dir: &Path) -> Summary {
    bus_run().write(dir).expect("synthetic run written")
}

pub fn write_both(dir: &Path) {
    bus_run().write(&dir.join("bus")).expect("bus run written");
    redis_run()
        .write(&dir.join("redis"))
        .expect("redis run written");
}

pub fn lost_violation() -> ViolationReport {
    ViolationReport {
        kind: "lost".to_string(),
        property: "every acknowledged message is delivered".to_string(),
        count: 3,
        examples: vec![
            "msg p1-00042 acked at offset 1207 on n1, never delivered".to_string(),
            "msg p2-00017 acked at offset 1210 on n3, never delivered".to_string(),
        ],
    }
}

/// Checks the PNG signature and decodes the image; returns its size.
pub fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("png readable");
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let decoder = png::Decoder::new(bytes.as_slice());
    let mut reader = decoder.read_info().expect("png header decodes");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png pixels decode");
    (info.width, info.height)
}

/// Decodes a PNG to RGB(A) bytes and returns the variance of its luminance.
pub fn png_luma_variance(path: &Path) -> f64 {
    let bytes = std::fs::read(path).expect("png readable");
    let mut decoder = png::Decoder::new(bytes.as_slice());
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("png header decodes");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png pixels decode");
    let channels = info.color_type.samples();
    let lumas: Vec<f64> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|px| {
            if channels >= 3 {
                0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2])
            } else {
                f64::from(px[0])
            }
        })
        .collect();
    let mean = lumas.iter().sum::<f64>() / lumas.len() as f64;
    lumas.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lumas.len() as f64
}

/// A cheap well-formedness check for SVG: one root element, balanced tags.
pub fn assert_svg_well_formed(text: &str) {
    let t = text.trim();
    assert!(t.starts_with("<svg"), "svg must start with <svg");
    assert!(t.ends_with("</svg>"), "svg must end with </svg>");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unterminated tag") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("closing tag without opening");
            assert_eq!(open, name.trim(), "mismatched svg tags");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            stack.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed svg tags: {stack:?}");
}
