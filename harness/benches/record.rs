//! How fast the history is recorded: 20k publishes (invoke + ack + one delivery on each of
//! 3 nodes, 100k events) through the recorder (channel, `history.jsonl`, per-second
//! histograms, `latency.hlog`), and the JSON-lines encoding alone.

use std::io::Write;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use raftbus::history::{msg_id, Event, Outcome};
use raftbus::record::{self, Clock, RecorderConfig};

const PUBLISHES: u64 = 20_000;
const PUBLISHERS: u32 = 4;
const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// Offered rate the synthetic times follow (per second, all publishers).
const RATE: u64 = 10_000;

/// A clean history: publishes at RATE, acked after 800 µs, delivered after 1 ms.
fn events() -> Vec<Event> {
    let mut out = Vec::with_capacity(PUBLISHES as usize * (2 + NODES.len()));
    for i in 0..PUBLISHES {
        let publisher = (i % PUBLISHERS as u64) as u32;
        let seq = i / PUBLISHERS as u64;
        let msg = msg_id(publisher, seq);
        let intended_us = i * 1_000_000 / RATE;
        let channel = format!("ch{}", i % 8);
        out.push(Event::Invoke {
            intended_us,
            t_us: intended_us + 5,
            msg,
            channel: channel.clone(),
            node: NODES[(i % 3) as usize].to_string(),
        });
        out.push(Event::Complete {
            t_us: intended_us + 800,
            msg,
            outcome: Outcome::Ok,
            id: Some(format!("{i}-0")),
            error: None,
        });
        for (s, node) in NODES.iter().enumerate() {
            out.push(Event::Deliver {
                t_us: intended_us + 1000 + s as u64,
                subscriber: s as u32,
                node: node.to_string(),
                channel: channel.clone(),
                msg: Some(msg),
                id: Some(format!("{i}-0")),
                intact: true,
            });
        }
    }
    out
}

fn bench_record(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let template = events();
    let mut group = c.benchmark_group("record");
    group.sample_size(10);
    group.throughput(Throughput::Elements(template.len() as u64));

    group.bench_function("recorder_100k_events", |b| {
        b.iter_batched(
            || (template.clone(), tempfile::tempdir().expect("temp dir")),
            |(events, dir)| {
                let clock = Clock::new();
                clock.start_at(Instant::now());
                let (recorder, handle) = record::start(RecorderConfig {
                    dir: dir.path().to_path_buf(),
                    clock,
                    warmup_s: 0.0,
                    duration_s: PUBLISHES as f64 / RATE as f64,
                    publishers: PUBLISHERS as usize,
                    peak_rate_per_publisher: RATE as f64 / PUBLISHERS as f64,
                })
                .expect("start recorder");
                for e in events {
                    recorder.record_blocking(e);
                }
                drop(recorder);
                let out = rt.block_on(handle.finish()).expect("finish recorder");
                assert_eq!(out.events, template.len() as u64);
                assert_eq!(out.latency.publish_ack.count, PUBLISHES);
                dir
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("jsonl_encode_100k_events", |b| {
        let mut buf = Vec::with_capacity(32 << 20);
        b.iter(|| {
            buf.clear();
            for e in &template {
                serde_json::to_writer(&mut buf, e).expect("encode");
                buf.push(b'\n');
            }
            std::hint::black_box(buf.len())
        })
    });

    group.bench_function("jsonl_decode_100k_events", |b| {
        let mut text = Vec::new();
        for e in &template {
            serde_json::to_writer(&mut text, e).expect("encode");
            text.write_all(b"\n").expect("encode");
        }
        b.iter(|| {
            let mut n = 0;
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let event: Event = serde_json::from_slice(line).expect("decode");
                std::hint::black_box(&event);
                n += 1;
            }
            assert_eq!(n, template.len());
        })
    });
    group.finish();
}

criterion_group!(benches, bench_record);
criterion_main!(benches);
