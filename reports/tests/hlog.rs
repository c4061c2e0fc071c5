use hdrhistogram::Histogram;
use raftbus_reports::hlog::{read_hlog, Hlog, HlogWriter};
use raftbus_reports::model::tags;

#[test]
fn intervals_round_trip_with_counts_and_max() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latency.hlog");
    let mut w = HlogWriter::create(&path, 1_750_000_000.5).unwrap();
    let mut expected_count = 0u64;
    let mut expected_max = 0u64;
    for sec in 0..20u64 {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for i in 0..(100 + sec) {
            h.record(200 + i * 7 + sec * 50).unwrap();
        }
        expected_count += h.len();
        expected_max = expected_max.max(h.max());
        w.write_interval(tags::PUBLISH_ACK, sec as f64, 1.0, &h)
            .unwrap();
        let mut lag = Histogram::<u64>::new(3).unwrap();
        lag.record(10 + sec).unwrap();
        w.write_interval(tags::SEND_LAG, sec as f64, 1.0, &lag)
            .unwrap();
    }
    w.finish().unwrap();

    let merged = read_hlog(&path).unwrap();
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[tags::PUBLISH_ACK].len(), expected_count);
    assert_eq!(merged[tags::PUBLISH_ACK].max(), expected_max);
    assert_eq!(merged[tags::SEND_LAG].len(), 20);

    let log = Hlog::read(&path).unwrap();
    let acks: Vec<_> = log.intervals_of(tags::PUBLISH_ACK).collect();
    assert_eq!(acks.len(), 20);
    for (sec, iv) in acks.iter().enumerate() {
        assert!(
            (iv.start_s - sec as f64).abs() < 1e-3,
            "interval {sec} at {}",
            iv.start_s
        );
        assert!((iv.duration_s - 1.0).abs() < 1e-9);
        assert_eq!(iv.count, 100 + sec as u64);
        assert_eq!(iv.histogram().unwrap().len(), 100 + sec as u64);
    }
    // Warmup exclusion drops the first 5 intervals.
    let after = log.merged_from(5.0).unwrap();
    assert_eq!(after[tags::SEND_LAG].len(), 15);
    let after = Hlog::read_from(&path, 5.0).unwrap();
    assert_eq!(after.merged[tags::SEND_LAG].len(), 15);
    assert_eq!(
        after.merged[tags::PUBLISH_ACK].len(),
        expected_count - (100..105).sum::<u64>()
    );
}

#[test]
fn file_has_the_standard_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latency.hlog");
    let mut w = HlogWriter::create(&path, 1_750_000_000.0).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    h.record(1500).unwrap();
    w.write_interval(tags::END_TO_END, 0.0, 1.0, &h).unwrap();
    w.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines
        .iter()
        .any(|l| l.starts_with("#[StartTime: 1750000000.000 ")));
    let legend = lines
        .iter()
        .position(|l| *l == "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")
        .expect("legend line");
    let data = lines[legend + 1];
    let fields: Vec<&str> = data.split(',').collect();
    assert_eq!(fields[0], "Tag=end_to_end");
    assert_eq!(fields[1], "0.000");
    assert_eq!(fields[2], "1.000");
    assert_eq!(fields[3], "1500.000");
    assert!(
        fields[4].starts_with("HISTF"),
        "V2 deflate histograms start with HISTF"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_hlog(&dir.path().join("nope.hlog")).unwrap_err();
    assert!(err.to_string().contains("nope.hlog"), "{err}");
}
