//! RESP micro-benchmarks: parsing pipelined client commands and encoding replies.
//!
//! `cargo bench -p raftbus-node --bench resp`

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use raftbus_node::command::{Command, StreamId};
use raftbus_node::resp::{encode, parse_request, Frame, Limits, Protocol, RequestDecoder};

const BATCH: usize = 1000;
const PAYLOAD: usize = 100;

fn bulk_array(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn pipeline(command: &[&[u8]]) -> Vec<u8> {
    let payload = vec![b'x'; PAYLOAD];
    let mut out = Vec::new();
    for _ in 0..BATCH {
        let mut args = command.to_vec();
        args.push(&payload);
        bulk_array(&args, &mut out);
    }
    out
}

fn bench_parse(c: &mut Criterion) {
    let xadd = pipeline(&[b"XADD", b"ch", b"*", b"m"]);
    let publish = pipeline(&[b"PUBLISH", b"ch"]);
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse");
    for (name, input) in [("xadd", &xadd), ("publish", &publish)] {
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("{name}_x1000_decoder"), |b| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |mut buf| {
                    let mut decoder = RequestDecoder::new(limits);
                    let mut n = 0;
                    while let Some(args) = decoder.decode(&mut buf).expect("valid input") {
                        n += args.len();
                    }
                    black_box(n)
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("{name}_x1000_stateless"), |b| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |mut buf| {
                    let mut n = 0;
                    while let Some(args) = parse_request(&mut buf, &limits).expect("valid input") {
                        n += args.len();
                    }
                    black_box(n)
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("{name}_x1000_decoder_and_command"), |b| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |mut buf| {
                    let mut decoder = RequestDecoder::new(limits);
                    let mut writes = 0;
                    while let Some(args) = decoder.decode(&mut buf).expect("valid input") {
                        writes +=
                            usize::from(Command::parse(&args).expect("valid command").is_write());
                    }
                    black_box(writes)
                },
                BatchSize::SmallInput,
            )
        });
    }
    // The same XADD pipeline arriving in 16-byte reads.
    group.bench_function("xadd_x1000_decoder_16b_reads", |b| {
        b.iter(|| {
            let mut decoder = RequestDecoder::new(limits);
            let mut buf = BytesMut::with_capacity(4096);
            let mut n = 0;
            for chunk in xadd.chunks(16) {
                buf.extend_from_slice(chunk);
                while let Some(args) = decoder.decode(&mut buf).expect("valid input") {
                    n += args.len();
                }
            }
            black_box(n)
        })
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let ids: Vec<Frame> = (1..=BATCH as u64)
        .map(|o| {
            Frame::Bulk(Bytes::from(
                StreamId::from_offset(1_000_000 + o).to_string(),
            ))
        })
        .collect();
    let pushes: Vec<Frame> = (0..BATCH)
        .map(|_| {
            Frame::Push(vec![
                Frame::bulk("message"),
                Frame::bulk("ch"),
                Frame::Bulk(payload.clone()),
            ])
        })
        .collect();
    let xread = Frame::Array(vec![Frame::Array(vec![
        Frame::bulk("ch"),
        Frame::Array(
            (1..=BATCH as u64)
                .map(|o| {
                    Frame::Array(vec![
                        Frame::Bulk(Bytes::from(StreamId::from_offset(o).to_string())),
                        Frame::Array(vec![Frame::bulk("m"), Frame::Bulk(payload.clone())]),
                    ])
                })
                .collect(),
        ),
    ])]);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("xadd_id_replies_x1000", |b| {
        let mut out = BytesMut::with_capacity(16 * 1024);
        b.iter(|| {
            out.clear();
            for f in &ids {
                encode(f, Protocol::Resp2, &mut out);
            }
            black_box(out.len())
        })
    });
    for proto in [Protocol::Resp2, Protocol::Resp3] {
        group.bench_function(
            format!("pubsub_messages_x1000_resp{}", proto.version()),
            |b| {
                let mut out = BytesMut::with_capacity(160 * 1024);
                b.iter(|| {
                    out.clear();
                    for f in &pushes {
                        encode(f, proto, &mut out);
                    }
                    black_box(out.len())
                })
            },
        );
    }
    group.bench_function("xread_reply_1000_entries", |b| {
        let mut out = BytesMut::with_capacity(160 * 1024);
        b.iter(|| {
            out.clear();
            encode(&xread, Protocol::Resp2, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_encode);
criterion_main!(benches);
