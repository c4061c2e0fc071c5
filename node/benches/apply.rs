//! Applying committed entries to the state machine: the per-entry cost every node pays.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use raftbus_node::state_machine::{Retention, StateMachine};
use raftbus_node::types::{Entry, EntryPayload, LeaderId, LogId, Request};

fn batch(start: u64, n: u64, channels: u64) -> Vec<Entry> {
    (start..start + n)
        .map(|i| Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                i,
            ),
            payload: EntryPayload::Normal(Request::Append {
                channel: format!("ch{}", i % channels),
                fields: vec![(b"m".to_vec(), vec![b'x'; 100])],
                max_len: None,
            }),
        })
        .collect()
}

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        max_entries: 100_000,
        max_bytes: u64::MAX,
    };
    let (mut sm, shared) = StateMachine::open(dir.path(), retention, 1 << 16).unwrap();
    // A subscriber is attached, as on a node serving pub/sub.
    let (_rx, _) = shared.subscribe_at();
    let mut next = 1u64;
    let mut group = c.benchmark_group("state_machine");
    for size in [1u64, 100] {
        group.throughput(Throughput::Elements(size));
        group.bench_function(format!("apply_{size}_entries_100B_8_channels"), |b| {
            b.iter_batched(
                || {
                    let entries = batch(next, size, 8);
                    next += size;
                    entries
                },
                |entries| rt.block_on(sm.apply_entries(entries)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
