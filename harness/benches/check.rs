//! How long checking takes, on clean synthetic histories of 100k publishes (3 nodes,
//! one subscriber per node, 8 channels), from events and from a `history.jsonl` file.
//! The 1,000,000-publish timing is an ignored test in `check::synthetic`.

use std::io::{BufWriter, Write};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raftbus::check::synthetic::{clean_history, SyntheticSpec};
use raftbus::check::{check_events, check_file, CheckOptions};
use raftbus_reports::model::{Mode, Verdict};

fn bench_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    for mode in [Mode::Stream, Mode::Pubsub] {
        let spec = SyntheticSpec::new(100_000, mode);
        let opts = CheckOptions::new(mode);
        group.throughput(Throughput::Elements(spec.events()));
        group.bench_with_input(
            BenchmarkId::new("events_100k", format!("{mode:?}")),
            &spec,
            |b, spec| {
                b.iter(|| {
                    let outcome = check_events(clean_history(spec), &opts);
                    assert_eq!(outcome.verdict, Verdict::Valid);
                })
            },
        );

        let file = tempfile::NamedTempFile::new().expect("temp file");
        let mut out = BufWriter::new(file.as_file());
        for event in clean_history(&spec) {
            serde_json::to_writer(&mut out, &event).expect("write history");
            out.write_all(b"\n").expect("write history");
        }
        out.flush().expect("write history");
        drop(out);
        group.bench_with_input(
            BenchmarkId::new("file_100k", format!("{mode:?}")),
            &spec,
            |b, _| {
                b.iter(|| {
                    let outcome = check_file(file.path(), &opts).expect("check file");
                    assert_eq!(outcome.verdict, Verdict::Valid);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
