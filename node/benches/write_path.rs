//! The write path of one node without a cluster: pipelined XADDs decoded and parsed, turned
//! into log entries, appended to the durable log (fsync on and off) and applied to the
//! state machine, per 100 messages. Either as one batch entry (what the bus proposes under
//! load: group commit) or as one entry per message. What a commit costs beyond this is
//! replication.
//!
//! `cargo bench -p raftbus-node --bench write_path`

use std::sync::mpsc;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use raftbus_node::command::Command;
use raftbus_node::log_store::{LogStore, LogStoreConfig};
use raftbus_node::resp::{Limits, RequestDecoder};
use raftbus_node::server::xadd_append;
use raftbus_node::state_machine::{Retention, StateMachine};
use raftbus_node::types::{Append, Entry, EntryPayload, LeaderId, LogId, Request};

const MESSAGES: usize = 100;
const PAYLOAD: usize = 100;

/// `MESSAGES` pipelined `XADD chN * m <payload>` commands over 8 channels.
fn pipeline() -> Vec<u8> {
    let payload = vec![b'x'; PAYLOAD];
    let mut out = Vec::new();
    for i in 0..MESSAGES {
        let channel = format!("ch{}", i % 8);
        let args: [&[u8]; 5] = [b"XADD", channel.as_bytes(), b"*", b"m", &payload];
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// What a connection does with the bytes: decode, parse, build the appends.
fn appends(input: &[u8]) -> Vec<Append> {
    let mut buf = BytesMut::from(input);
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut out = Vec::with_capacity(MESSAGES);
    while let Some(args) = decoder.decode(&mut buf).expect("valid input") {
        match Command::parse(&args).expect("valid command") {
            Command::XAdd(x) => out.push(xadd_append(x).expect("valid XADD")),
            other => panic!("not an XADD: {other:?}"),
        }
    }
    out
}

fn entry(index: u64, request: Request) -> Entry {
    Entry {
        log_id: LogId::new(
            LeaderId {
                term: 1,
                node_id: 1,
            },
            index,
        ),
        payload: EntryPayload::Normal(request),
    }
}

fn write_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let input = pipeline();
    let mut group = c.benchmark_group("write_path");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    for fsync in [false, true] {
        for batched in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let log = LogStore::open_with(
                &dir.path().join("log"),
                LogStoreConfig {
                    fsync,
                    ..LogStoreConfig::default()
                },
            )
            .unwrap();
            let retention = Retention {
                max_entries: 100_000,
                max_bytes: u64::MAX,
            };
            let (mut sm, shared) =
                StateMachine::open(&dir.path().join("sm"), retention, 1 << 16).unwrap();
            let (_rx, _) = shared.subscribe_at();
            let mut next = 1u64;
            let name = format!(
                "xadd_{MESSAGES}x{PAYLOAD}B_{}_fsync_{}",
                if batched { "one_entry" } else { "entry_each" },
                if fsync { "on" } else { "off" }
            );
            group.bench_function(name, |b| {
                b.iter_batched(
                    || input.clone(),
                    |bytes| {
                        let appends = appends(&bytes);
                        let entries: Vec<Entry> = if batched {
                            next += 1;
                            vec![entry(next - 1, Request::Batch(appends))]
                        } else {
                            appends
                                .into_iter()
                                .map(|a| {
                                    next += 1;
                                    entry(
                                        next - 1,
                                        Request::Append {
                                            channel: a.channel,
                                            fields: a.fields.to_vec(),
                                            max_len: a.max_len,
                                        },
                                    )
                                })
                                .collect()
                        };
                        let (durable, wait) = mpsc::channel();
                        log.append_entries(entries.clone(), move |r| {
                            let _ = durable.send(r);
                        })
                        .unwrap();
                        wait.recv().unwrap().unwrap();
                        rt.block_on(sm.apply_entries(entries)).unwrap()
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, write_path);
criterion_main!(benches);
