use std::fs::{self, OpenOptions};
use std::io::{Cursor, Write};

use futures::{FutureExt, Stream, StreamExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::{EntryResponder, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use tempfile::TempDir;

use super::segment::{segment_path, HEADER_LEN};
use super::*;
use crate::types::{
    EntryPayload, LeaderId, Request, Response, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership,
};

type StorageError = openraft::StorageError<TypeConfig>;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id: 0 }, index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Request::Append {
            channel: format!("ch{}", index % 3),
            fields: vec![(b"message".to_vec(), format!("payload-{index}").into_bytes())],
            max_len: None,
        }),
    }
}

fn entries(term: u64, range: std::ops::Range<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

/// Segments of a few entries each and a cache of a few entries, so most reads hit the disk.
fn tiny() -> LogStoreConfig {
    LogStoreConfig {
        segment_bytes: 200,
        cache_entries: 4,
        cache_bytes: 1 << 20,
        read_batch_bytes: 150,
        ..LogStoreConfig::default()
    }
}

/// One big segment holding the records and nothing else, so that the damage tests can cut
/// and flip bytes at offsets computed from the file length (no zeros written ahead).
fn big() -> LogStoreConfig {
    LogStoreConfig {
        cache_entries: 4,
        zero_ahead_bytes: 0,
        ..LogStoreConfig::default()
    }
}

/// One big segment with zeros written ahead of the records, as nodes run it.
fn zeroed_ahead() -> LogStoreConfig {
    LogStoreConfig {
        cache_entries: 4,
        zero_ahead_bytes: 4096,
        ..LogStoreConfig::default()
    }
}

async fn append(store: &LogStore, batch: Vec<Entry>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    store
        .append_entries(batch, move |r| {
            let _ = tx.send(r);
        })
        .expect("append accepted");
    rx.await.expect("callback called").expect("append durable");
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn segment_files(dir: &Path) -> Vec<u64> {
    let mut found: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| segment::parse_segment_name(e.unwrap().file_name().to_str()?))
        .collect();
    found.sort_unstable();
    found
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    segment_path(dir, *segment_files(dir).last().expect("a segment"))
}

#[test]
fn segment_names_round_trip() {
    assert_eq!(
        segment::segment_file_name(42),
        "log-00000000000000000042.seg"
    );
    assert_eq!(
        segment::parse_segment_name("log-00000000000000000042.seg"),
        Some(42)
    );
    assert_eq!(segment::parse_segment_name("log-42.seg"), None);
    assert_eq!(segment::parse_segment_name("meta.json"), None);
}

#[tokio::test]
async fn append_then_read_back_and_reopen() {
    let tmp = TempDir::new().unwrap();
    let mut store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    for chunk in entries(1, 0..50).chunks(7) {
        append(&store, chunk.to_vec()).await;
    }
    let stats = store.stats();
    assert!(stats.segments > 3, "tiny segments roll: {stats:?}");
    assert_eq!(stats.first_index, Some(0));
    assert_eq!(stats.last_index, Some(49));
    assert!(stats.cached_entries <= 4, "cache is bounded: {stats:?}");

    async fn check(store: &mut LogStore) {
        let all = store.try_get_log_entries(0..50).await.unwrap();
        assert_eq!(all, entries(1, 0..50));
        let cases: Vec<(Vec<Entry>, Vec<u64>)> = vec![
            (
                store.try_get_log_entries(10..20).await.unwrap(),
                (10..20).collect(),
            ),
            (
                store.try_get_log_entries(..=5).await.unwrap(),
                (0..=5).collect(),
            ),
            (
                store.try_get_log_entries(45..).await.unwrap(),
                (45..50).collect(),
            ),
            (
                store.try_get_log_entries(48..100).await.unwrap(),
                vec![48, 49],
            ),
            (store.try_get_log_entries(60..70).await.unwrap(), vec![]),
            (store.try_get_log_entries(7..7).await.unwrap(), vec![]),
            (store.try_get_log_entries(49..=49).await.unwrap(), vec![49]),
        ];
        for (got, want) in cases {
            assert_eq!(indexes(&got), want);
        }
        let limited = store.limited_get_log_entries(3, 50).await.unwrap();
        assert!(
            !limited.is_empty() && limited.len() < 47,
            "{}",
            limited.len()
        );
        assert_eq!(limited, entries(1, 3..3 + limited.len() as u64));
        let one = store.limited_get_log_entries(49, 50).await.unwrap();
        assert_eq!(indexes(&one), vec![49]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 49)));
        assert_eq!(state.last_purged_log_id, None);
    }
    check(&mut store).await;
    assert_eq!(store.read_range(20..23).unwrap(), entries(1, 20..23));
    drop(store);

    let mut store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    check(&mut store).await;
    // The log continues where it ended, in the existing last segment.
    append(&store, entries(2, 50..53)).await;
    let mut reader = store.get_log_reader().await;
    assert_eq!(reader.try_get_log_entries(49..).await.unwrap().len(), 4);
}

#[tokio::test]
async fn rejects_gaps() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    append(&store, entries(1, 5..8)).await;
    let err = store.append_entries(vec![entry(1, 9)], |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            LogStoreError::NotContiguous {
                expected: 8,
                got: 9
            }
        ),
        "{err}"
    );
    assert_eq!(store.stats().last_index, Some(7));
}

#[tokio::test]
async fn openraft_append_path_is_durable_and_readable() {
    let tmp = TempDir::new().unwrap();
    {
        let mut store = LogStore::open_with(tmp.path(), tiny()).unwrap();
        store.blocking_append(entries(1, 0..10)).await.unwrap();
        store.blocking_append(entries(2, 10..12)).await.unwrap();
    }
    let mut store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    let mut want = entries(1, 0..10);
    want.extend(entries(2, 10..12));
    assert_eq!(store.try_get_log_entries(..).await.unwrap(), want);
}

#[tokio::test]
async fn torn_tail_cut_mid_record_is_dropped() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), big()).unwrap();
    append(&store, entries(1, 0..10)).await;
    drop(store);

    let path = last_segment(tmp.path());
    let full = fs::metadata(&path).unwrap().len();
    let record_len = (full / 10) as usize; // records of equal size here
    assert_eq!(full % 10, 0);
    let cut = full - 5;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let mut store = LogStore::open_with(tmp.path(), big()).unwrap();
    assert_eq!(store.stats().last_index, Some(8));
    assert_eq!(fs::metadata(&path).unwrap().len(), full - record_len as u64);
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(1, 0..9)
    );
    assert!(store.try_get_log_entries(9..10).await.unwrap().is_empty());

    // Appending works again and survives another reopen.
    append(&store, entries(2, 9..12)).await;
    drop(store);
    let mut store = LogStore::open_with(tmp.path(), big()).unwrap();
    let mut want = entries(1, 0..9);
    want.extend(entries(2, 9..12));
    assert_eq!(store.try_get_log_entries(..).await.unwrap(), want);
}

/// Ten equal-size entries written with zeros ahead; returns the segment and the record bytes.
async fn ten_entries_zeroed_ahead(tmp: &TempDir) -> (std::path::PathBuf, u64) {
    let store = LogStore::open_with(tmp.path(), zeroed_ahead()).unwrap();
    one_round_each(&store, 0..10).await;
    let records = store.stats().bytes;
    drop(store);
    (last_segment(tmp.path()), records)
}

#[tokio::test]
async fn zeros_written_ahead_are_unused_space_across_reopens() {
    let tmp = TempDir::new().unwrap();
    let (path, records) = ten_entries_zeroed_ahead(&tmp).await;
    let file_len = fs::metadata(&path).unwrap().len();
    assert!(
        file_len >= records + 2048,
        "zeros ahead: file {file_len} B, records {records} B"
    );
    assert!(fs::read(&path).unwrap()[records as usize..]
        .iter()
        .all(|&b| b == 0));

    // Reopened: nothing dropped or truncated, and appends go on where the records end.
    let store = LogStore::open_with(tmp.path(), zeroed_ahead()).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), file_len);
    assert_eq!(store.stats().last_index, Some(9));
    append(&store, entries(2, 10..40)).await;
    drop(store);
    let mut store = LogStore::open_with(tmp.path(), zeroed_ahead()).unwrap();
    let mut want = entries(1, 0..10);
    want.extend(entries(2, 10..40));
    assert_eq!(store.try_get_log_entries(..).await.unwrap(), want);

    // Truncation cuts the zeros too; later appends write zeros ahead again.
    store.truncate_after(Some(log_id(2, 19))).await.unwrap();
    append(&store, entries(3, 20..25)).await;
    drop(store);
    let mut store = LogStore::open_with(tmp.path(), zeroed_ahead()).unwrap();
    let mut want = entries(1, 0..10);
    want.extend(entries(2, 10..20));
    want.extend(entries(3, 20..25));
    assert_eq!(store.try_get_log_entries(..).await.unwrap(), want);
    assert!(fs::metadata(&path).unwrap().len() > store.stats().bytes);
}

#[tokio::test]
async fn a_torn_record_before_zeros_written_ahead_is_dropped() {
    let tmp = TempDir::new().unwrap();
    let (path, records) = ten_entries_zeroed_ahead(&tmp).await;
    // The last record's second half never reached the disk: zeros from there on.
    let record_len = records / 10;
    let mut data = fs::read(&path).unwrap();
    let torn_from = (records - record_len / 2) as usize;
    data[torn_from..].fill(0);
    fs::write(&path, &data).unwrap();

    let mut store = LogStore::open_with(tmp.path(), zeroed_ahead()).unwrap();
    assert_eq!(store.stats().last_index, Some(8));
    assert_eq!(fs::metadata(&path).unwrap().len(), records - record_len);
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(1, 0..9)
    );
}

#[tokio::test]
async fn a_zeroed_record_with_records_after_it_refuses_to_open() {
    let tmp = TempDir::new().unwrap();
    let (path, records) = ten_entries_zeroed_ahead(&tmp).await;
    // Record 4 was lost in place (zeros); record 5, written after record 4 was synced, is
    // intact: not a torn tail.
    let record_len = (records / 10) as usize;
    let mut data = fs::read(&path).unwrap();
    data[4 * record_len..5 * record_len].fill(0);
    fs::write(&path, &data).unwrap();
    let err = LogStore::open_with(tmp.path(), zeroed_ahead())
        .err()
        .expect("refuses to open");
    assert!(err.to_string().contains("middle of the log"), "{err}");
}

#[tokio::test]
async fn torn_tail_garbage_and_short_header_are_dropped() {
    for garbage in [vec![0xffu8; 13], vec![0u8; 3], vec![0u8; 64], {
        // A plausible header whose payload never made it.
        let mut v = 100u32.to_le_bytes().to_vec();
        v.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        v
    }] {
        let tmp = TempDir::new().unwrap();
        let store = LogStore::open_with(tmp.path(), big()).unwrap();
        append(&store, entries(1, 0..10)).await;
        drop(store);
        let path = last_segment(tmp.path());
        let good = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&garbage)
            .unwrap();

        let mut store = LogStore::open_with(tmp.path(), big()).unwrap();
        // Zeros read as space written ahead, which stays; anything else is cut off.
        let kept = if garbage.iter().all(|&b| b == 0) {
            good + garbage.len() as u64
        } else {
            good
        };
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            kept,
            "garbage {garbage:?}"
        );
        assert_eq!(
            store.try_get_log_entries(..).await.unwrap(),
            entries(1, 0..10)
        );
        append(&store, entries(1, 10..11)).await;
        assert_eq!(store.stats().last_index, Some(10));
    }
}

fn flip_byte(path: &Path, offset: u64) {
    let mut data = fs::read(path).unwrap();
    data[offset as usize] ^= 0x5a;
    fs::write(path, data).unwrap();
}

#[tokio::test]
async fn crc_flip_in_last_record_drops_it() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), big()).unwrap();
    append(&store, entries(1, 0..10)).await;
    drop(store);
    let path = last_segment(tmp.path());
    let len = fs::metadata(&path).unwrap().len();
    flip_byte(&path, len - 2);

    let mut store = LogStore::open_with(tmp.path(), big()).unwrap();
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(1, 0..9)
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), len / 10 * 9);
}

#[tokio::test]
async fn crc_flip_in_sealed_segment_refuses_to_open() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    append(&store, entries(1, 0..30)).await;
    drop(store);
    let segments = segment_files(tmp.path());
    assert!(segments.len() >= 3);
    let sealed = segment_path(tmp.path(), segments[1]);
    // Inside the payload of the first record of a middle segment.
    flip_byte(&sealed, HEADER_LEN + 3);

    let err = LogStore::open_with(tmp.path(), tiny())
        .err()
        .expect("open must fail");
    assert!(matches!(err, LogStoreError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("crc mismatch") && msg.contains("sealed"),
        "{msg}"
    );
    // Nothing was "repaired" away.
    assert_eq!(segment_files(tmp.path()), segments);
}

#[tokio::test]
async fn corruption_in_the_middle_of_the_last_segment_refuses_to_open() {
    // One flip in a payload, one in a length field: both leave valid records behind them
    // that were written after a sync, so neither may be mistaken for a torn tail (which would
    // silently drop entries 3..10).
    for (what, at) in [("payload", HEADER_LEN + 5), ("length field", 1)] {
        let tmp = TempDir::new().unwrap();
        let store = LogStore::open_with(tmp.path(), big()).unwrap();
        one_round_each(&store, 0..10).await;
        drop(store);
        let path = last_segment(tmp.path());
        let len = fs::metadata(&path).unwrap().len();
        let record = len / 10;
        flip_byte(&path, 3 * record + at);
        let err = LogStore::open_with(tmp.path(), big())
            .err()
            .unwrap_or_else(|| panic!("open must fail after a flip in a {what}"));
        let msg = err.to_string();
        assert!(matches!(err, LogStoreError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("middle of the log") && msg.contains("index 4"),
            "{what}: {msg}"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            len,
            "{what}: the log was cut"
        );
    }
}

#[test]
fn the_index_sits_where_the_corruption_scan_looks_for_it() {
    let mut buf = Vec::new();
    segment::encode_record(&entry(7, 0x0102_0304_0506), &mut buf).unwrap();
    let at = HEADER_LEN as usize + 16;
    assert_eq!(
        u64::from_le_bytes(buf[at..at + 8].try_into().unwrap()),
        0x0102_0304_0506
    );
    let found = segment::find_valid_record_after(&buf, 0, 0x0102_0304_0505).expect("found");
    assert_eq!((found.offset, found.index), (0, 0x0102_0304_0506));
    assert_eq!(found.record_len, buf.len() as u64);
    assert!(!found.synced_before, "encoded records carry no mark");
}

/// Appends `range` one entry per sync, so every record is its own write round.
async fn one_round_each(store: &LogStore, range: std::ops::Range<u64>) {
    for e in entries(1, range) {
        append(store, vec![e]).await;
    }
}

/// Whether each record of the file carries the written-after-a-sync mark, in order.
fn marks(path: &Path, count: usize) -> Vec<bool> {
    let data = fs::read(path).unwrap();
    let mut pos = 0;
    let mut out = Vec::new();
    for _ in 0..count {
        let record = segment::check_record(&data[pos..]).expect("valid record");
        out.push(record.synced_before);
        pos += HEADER_LEN as usize + record.payload.len();
    }
    out
}

#[tokio::test]
async fn the_first_record_after_each_sync_is_marked_and_no_other() {
    let tmp = TempDir::new().unwrap();
    let mut store = LogStore::open_with(tmp.path(), big()).unwrap();
    one_round_each(&store, 0..3).await;
    append(&store, entries(1, 3..6)).await;
    drop(store);
    let path = last_segment(tmp.path());
    assert_eq!(
        marks(&path, 6),
        [true, true, true, true, false, false],
        "three rounds of one record, then one round of three"
    );
    // Marked or not, every record reads back.
    store = LogStore::open_with(tmp.path(), big()).unwrap();
    assert_eq!(
        store.try_get_log_entries(0..6).await.unwrap(),
        entries(1, 0..6)
    );
}

#[tokio::test]
async fn opening_syncs_what_a_crash_left_in_the_page_cache() {
    // After a SIGKILL the page cache still holds writes that were never synced; reopening
    // reads them as log, so it must make them durable before it serves or extends them.
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), big()).unwrap();
    assert_eq!(store.stats().fsyncs, 0, "an empty log has nothing to sync");
    append(&store, entries(1, 0..3)).await;
    drop(store);
    let store = LogStore::open_with(tmp.path(), big()).unwrap();
    assert_eq!(
        store.stats().fsyncs,
        1,
        "the last segment is synced at open"
    );
}

#[tokio::test]
async fn damage_in_the_last_write_round_is_a_torn_tail_even_with_valid_records_after_it() {
    // Until a sync, writes reach the disk in any order: a power loss can lose one record of
    // the last round and keep a later one. Nothing of that round was acknowledged as
    // durable, so the log ends before the damage (zeros: a lost write; a flip: the residue
    // of a half-written sector).
    for (what, zero) in [("zeroed", true), ("flipped", false)] {
        let tmp = TempDir::new().unwrap();
        let store = LogStore::open_with(tmp.path(), big()).unwrap();
        one_round_each(&store, 0..5).await;
        let synced = store.stats().bytes;
        append(&store, entries(1, 5..10)).await;
        drop(store);
        let path = last_segment(tmp.path());
        let len = fs::metadata(&path).unwrap().len();
        let record = len / 10;
        // Record 6 is the second of the last round.
        if zero {
            let mut data = fs::read(&path).unwrap();
            data[(6 * record) as usize..(7 * record) as usize].fill(0);
            fs::write(&path, &data).unwrap();
        } else {
            flip_byte(&path, 6 * record + HEADER_LEN + 5);
        }
        let mut store = LogStore::open_with(tmp.path(), big())
            .unwrap_or_else(|e| panic!("{what}: a torn last round must not stop the node: {e}"));
        assert_eq!(store.stats().last_index, Some(5), "{what}");
        assert_eq!(
            store.try_get_log_entries(0..6).await.unwrap(),
            entries(1, 0..6),
            "{what}"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            synced + record,
            "{what}: cut right before the damage"
        );
    }
}

#[tokio::test]
async fn damage_before_a_later_round_refuses_to_open_even_when_the_last_round_is_torn() {
    // Record 3 was synced: record 4 was written after a sync, so a power loss cannot explain
    // the damage. Later damage in the last round does not change that.
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), big()).unwrap();
    one_round_each(&store, 0..5).await;
    append(&store, entries(1, 5..10)).await;
    drop(store);
    let path = last_segment(tmp.path());
    let len = fs::metadata(&path).unwrap().len();
    let record = len / 10;
    flip_byte(&path, 3 * record + HEADER_LEN + 5);
    flip_byte(&path, 8 * record + HEADER_LEN + 5);
    let err = LogStore::open_with(tmp.path(), big())
        .err()
        .expect("refuses to open");
    let msg = err.to_string();
    assert!(
        msg.contains("middle of the log") && msg.contains("index 4"),
        "{msg}"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), len, "the log was cut");
}

#[tokio::test]
async fn fsync_never_skips_the_syncs_but_keeps_the_entries() {
    let tmp = TempDir::new().unwrap();
    let config = LogStoreConfig {
        fsync: false,
        ..big()
    };
    let mut store = LogStore::open_with(tmp.path(), config.clone()).unwrap();
    append(&store, entries(1, 0..10)).await;
    let stats = store.stats();
    assert_eq!((stats.fsyncs, stats.fsync), (0, false));
    assert_eq!(stats.entries_flushed, 10);
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(1, 0..10)
    );
    drop(store);
    let store = LogStore::open_with(tmp.path(), big()).unwrap();
    assert_eq!(store.stats().last_index, Some(9));
    assert!(store.stats().fsync);
}

#[tokio::test]
async fn missing_middle_segment_refuses_to_open() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    append(&store, entries(1, 0..30)).await;
    drop(store);
    let segments = segment_files(tmp.path());
    fs::remove_file(segment_path(tmp.path(), segments[1])).unwrap();
    let err = LogStore::open_with(tmp.path(), tiny())
        .err()
        .expect("open must fail");
    assert!(matches!(err, LogStoreError::Inconsistent { .. }), "{err}");
}

#[tokio::test]
async fn truncate_and_purge_across_segments() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut store = LogStore::open_with(dir, tiny()).unwrap();
    append(&store, entries(1, 0..30)).await;
    let before = segment_files(dir);
    assert!(before.len() >= 5, "{before:?}");

    // Truncate in the middle of a segment: later segments go, that one is cut.
    store.truncate_after(Some(log_id(1, 13))).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 13)));
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(1, 0..14)
    );
    let after_truncate = segment_files(dir);
    assert!(
        after_truncate.iter().all(|&first| first <= 13),
        "{after_truncate:?}"
    );

    // Conflicting entries of a new term replace the truncated ones.
    append(&store, entries(2, 14..20)).await;

    // Truncate exactly at a segment boundary: that segment file is deleted.
    let boundary = *segment_files(dir)
        .iter()
        .find(|&&f| f > 14 && f <= 19)
        .unwrap();
    store
        .truncate_after(Some(log_id(2, boundary - 1)))
        .await
        .unwrap();
    assert!(!segment_files(dir).contains(&boundary));
    assert_eq!(store.stats().last_index, Some(boundary - 1));
    append(&store, entries(3, boundary..20)).await;

    // Purge: whole segments below the purge point go, the one holding 8 stays.
    store.purge_upto(log_id(1, 7)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 7)));
    assert_eq!(state.last_log_id, Some(log_id(3, 19)));
    let files = segment_files(dir);
    assert!(
        files[0] <= 8 && files.get(1).is_none_or(|&f| f > 8),
        "{files:?}"
    );
    assert_eq!(store.stats().first_index, Some(8));
    let got = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(indexes(&got), (8..20).collect::<Vec<_>>());

    let mut want = entries(1, 8..14);
    want.extend(entries(2, 14..boundary));
    want.extend(entries(3, boundary..20));
    assert_eq!(got, want);
    drop(store);

    // The same state after reopening.
    let mut store = LogStore::open_with(dir, tiny()).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 7)));
    assert_eq!(state.last_log_id, Some(log_id(3, 19)));
    assert_eq!(store.try_get_log_entries(..).await.unwrap(), want);
    assert_eq!(store.try_get_log_entries(0..8).await.unwrap(), vec![]);

    // Purge past the end (a snapshot was installed): the log is empty but remembers the id.
    store.purge_upto(log_id(4, 40)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(4, 40)));
    assert_eq!(state.last_log_id, Some(log_id(4, 40)));
    assert!(segment_files(dir).is_empty());
    assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
    drop(store);

    let mut store = LogStore::open_with(dir, tiny()).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(4, 40)));
    assert_eq!(state.last_log_id, Some(log_id(4, 40)));
    assert!(store.append_entries(vec![entry(4, 40)], |_| {}).is_err());
    append(&store, entries(4, 41..45)).await;
    drop(store);
    let mut store = LogStore::open_with(dir, tiny()).unwrap();
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(4, 41..45)
    );
    assert_eq!(store.stats().first_index, Some(41));
}

#[tokio::test]
async fn truncate_everything_then_start_again() {
    let tmp = TempDir::new().unwrap();
    let mut store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    append(&store, entries(1, 0..12)).await;
    store.truncate_after(None).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
    assert!(segment_files(tmp.path()).is_empty());
    append(&store, entries(2, 0..3)).await;
    drop(store);
    let mut store = LogStore::open_with(tmp.path(), tiny()).unwrap();
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(2, 0..3)
    );
}

#[tokio::test]
async fn interrupted_purge_is_finished_on_open() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let store = LogStore::open_with(dir, tiny()).unwrap();
    append(&store, entries(1, 0..30)).await;
    let before = segment_files(dir);
    store.purge_upto(log_id(1, 12)).await.unwrap();
    drop(store);
    // Simulate a crash after the meta file was written but before segments were deleted:
    // put back a copy of the first deleted segment (content is irrelevant, it is purged).
    let removed = before[0];
    assert!(!segment_files(dir).contains(&removed));
    fs::write(segment_path(dir, removed), b"stale").unwrap();

    let mut store = LogStore::open_with(dir, tiny()).unwrap();
    assert!(!segment_files(dir).contains(&removed));
    let got = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(got, entries(1, 13..30));
}

#[tokio::test]
async fn vote_and_committed_survive_reopen() {
    let tmp = TempDir::new().unwrap();
    let vote = Vote::new(7, 3);
    {
        let mut store = LogStore::open(tmp.path()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), None);
        assert_eq!(store.read_committed().await.unwrap(), None);
        store.blocking_append(entries(7, 0..5)).await.unwrap();
        store.save_vote(&Vote::new(6, 1)).await.unwrap();
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(log_id(7, 4))).await.unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    }
    // A crash while writing the meta file leaves a temp file behind.
    let leftover = crate::durable_file::unique_temp_path(&tmp.path().join(meta::META_FILE));
    fs::write(&leftover, b"{\"half").unwrap();
    let mut store = LogStore::open(tmp.path()).unwrap();
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(7, 4)));
    assert!(!leftover.exists());
}

#[tokio::test]
async fn corrupt_meta_file_refuses_to_open() {
    let tmp = TempDir::new().unwrap();
    fs::write(tmp.path().join(meta::META_FILE), b"{not json").unwrap();
    let err = LogStore::open(tmp.path()).err().expect("open must fail");
    assert!(matches!(err, LogStoreError::Meta { .. }), "{err}");
}

#[tokio::test]
async fn raft_purge_returns_before_the_flusher_and_is_durable_after() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut store = LogStore::open_with(dir, tiny()).unwrap();
    append(&store, entries(1, 0..30)).await;
    {
        // openraft's core waits on this call: it must not wait for the flusher.
        let shared = store.inner.shared.clone();
        let _gate = shared.test_gate.lock().unwrap();
        store
            .purge(log_id(1, 12))
            .now_or_never()
            .expect("purge waited for the blocked flusher")
            .unwrap();
        assert_eq!(store.stats().first_index, Some(13));
        assert_eq!(
            indexes(&store.read_range(..).unwrap()),
            (13..30).collect::<Vec<_>>()
        );
    }
    drop(store);
    let mut store = LogStore::open_with(dir, tiny()).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 12)));
    assert_eq!(
        store.try_get_log_entries(..).await.unwrap(),
        entries(1, 13..30)
    );
}

#[tokio::test]
async fn group_commit_shares_fsyncs_and_completes_in_order() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open_with(tmp.path(), big()).unwrap();
    let appends = 500u64;
    let completed = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    {
        // Stop the flusher between batches while the appends are issued.
        let _gate = store.inner.shared.test_gate.lock().unwrap();
        for i in 0..appends {
            let completed = completed.clone();
            let tx = tx.clone();
            store
                .append_entries(vec![entry(1, i)], move |r| {
                    completed.lock().unwrap().push((i, r.is_ok()));
                    let _ = tx.send(());
                })
                .unwrap();
        }
        // Readable before durable.
        assert_eq!(store.read_range(..).unwrap().len(), appends as usize);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            completed.lock().unwrap().is_empty(),
            "completed before the sync"
        );
    }
    for _ in 0..appends {
        rx.recv().await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(
        completed,
        (0..appends).map(|i| (i, true)).collect::<Vec<_>>()
    );
    let stats = store.stats();
    assert_eq!(stats.entries_flushed, appends);
    // One segment, and the flusher was held while all appends queued up: they share one or
    // two syncs (the first append may be taken off the queue before the gate is reached).
    assert_eq!(stats.segments, 1);
    assert!(stats.fsyncs <= 2, "{stats:?}");
    assert!(stats.fsyncs < appends, "{stats:?}");
}

#[tokio::test]
async fn group_commit_under_free_running_appends() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open(tmp.path()).unwrap();
    let appends = 2000u64;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..appends {
        let tx = tx.clone();
        store
            .append_entries(vec![entry(1, i)], move |r| {
                let _ = tx.send((i, r.is_ok()));
            })
            .unwrap();
    }
    for want in 0..appends {
        assert_eq!(rx.recv().await.unwrap(), (want, true));
    }
    let stats = store.stats();
    assert_eq!(stats.entries_flushed, appends);
    assert!(stats.fsyncs < appends, "{stats:?}");
}

#[tokio::test]
async fn empty_append_completes_after_earlier_appends() {
    let tmp = TempDir::new().unwrap();
    let store = LogStore::open(tmp.path()).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let o = order.clone();
    store
        .append_entries(entries(1, 0..3), move |_| o.lock().unwrap().push("entries"))
        .unwrap();
    let o = order.clone();
    store
        .append_entries(Vec::new(), move |_| {
            o.lock().unwrap().push("empty");
            let _ = tx.send(());
        })
        .unwrap();
    rx.await.unwrap();
    assert_eq!(*order.lock().unwrap(), vec!["entries", "empty"]);
}

// ---- openraft's storage suite, with a minimal in-memory state machine ----

#[derive(Default)]
struct SmState {
    applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    snapshots_built: u64,
}

#[derive(Clone, Default)]
struct MemSm(Arc<Mutex<SmState>>);

impl RaftSnapshotBuilder<TypeConfig> for MemSm {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let mut sm = self.0.lock().unwrap();
        sm.snapshots_built += 1;
        let data = serde_json::to_vec(&(sm.applied, &sm.membership)).unwrap();
        let meta = SnapshotMeta {
            last_log_id: sm.applied,
            last_membership: sm.membership.clone(),
        };
        sm.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemSm {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = MemSm;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let sm = self.0.lock().unwrap();
        Ok((sm.applied, sm.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let response = {
                let mut sm = self.0.lock().unwrap();
                sm.applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Membership(m) => {
                        sm.membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::None
                    }
                    EntryPayload::Normal(_) => Response::Appended {
                        offset: entry.log_id.index,
                    },
                    EntryPayload::Blank => Response::None,
                }
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let (applied, membership): (Option<LogId>, StoredMembership) =
            serde_json::from_slice(&data).unwrap();
        let mut sm = self.0.lock().unwrap();
        sm.applied = applied;
        sm.membership = membership;
        sm.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let sm = self.0.lock().unwrap();
        Ok(sm.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Cursor::new(data.clone()),
        }))
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, MemSm, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, MemSm), StorageError> {
        let tmp = TempDir::new().unwrap();
        let store = LogStore::open_with(tmp.path(), tiny()).unwrap();
        Ok((tmp, store, MemSm::default()))
    }
}

/// Like openraft's `run_fut`: each suite test gets a clean runtime.
fn run_suite_test<E: std::fmt::Display>(test: impl std::future::Future<Output = Result<(), E>>) {
    if let Err(e) = tokio::runtime::Runtime::new().unwrap().block_on(test) {
        panic!("storage suite test failed: {e}");
    }
}

type RaftSuite = Suite<TypeConfig, LogStore, MemSm, Builder, TempDir>;

/// Runs one test of openraft's storage suite on a fresh store and state machine.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_suite_test(async {
                    let (_dir, store, sm) = Builder.build().await.map_err(|e| e.to_string())?;
                    RaftSuite::$name(store, sm).await.map_err(|e| e.to_string())
                });
            }
        )*
    };
}

/// Every test of `Suite::test_store` but `get_initial_state_membership_from_log_and_sm`: it
/// appends index 1 below the purge point (2) and then index 3 after it, leaving holes that this
/// store rejects by design (`LogStoreError::NotContiguous`); openraft itself never does that.
mod openraft_suite {
    use super::*;

    suite_tests!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_membership_from_empty_log_and_sm,
        get_initial_state_membership_from_sm_inlog_is_smaller,
        get_initial_state_membership_from_log_insm_is_smaller,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_inverted_log_order,
        get_initial_state_conflict_at_same_index,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        leader_bounded_stream,
        entries_stream,
        try_get_log_entry,
        log_reader_reads_new_entries,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_after_11,
        delete_logs_after_5,
        delete_logs_after_0,
        delete_logs_after_none,
        append_to_log,
        snapshot_meta,
        snapshot_meta_optional,
        apply_single,
        apply_multiple,
    );

    #[test]
    fn transfer_snapshot() {
        run_suite_test(RaftSuite::transfer_snapshot(&Builder));
    }
}
