//! The durable Raft log: append-only segment files with checksums, group commit and a vote file.
//!
//! Layout of the log directory:
//!
//! - `log-<first index, 20 digits>.seg` — segments of `[len u32][crc32 u32][bincode(Entry)]`
//!   records (see [`segment`]), rolled once a segment reaches
//!   [`LogStoreConfig::segment_bytes`].
//! - `meta.json` — vote, committed log id and last purged log id, replaced atomically.
//!
//! [`LogStore`] keeps an in-memory index (log index → segment, offset, length) and a bounded
//! cache of the most recent entries, so replication reads of the tail never touch the disk.
//! All writes go through one flusher thread ([`flusher`]) that group-commits appends: one
//! `sync_data` covers every append queued since the previous one, and an append's callback runs
//! only after its data is durable.
//!
//! On open, a damaged record in the last write round of the last segment (a torn write from
//! a crash: until a sync, writes reach the disk in any order, so a lost record may have later
//! ones of the same round behind it) ends the log: the file is truncated there and a
//! warning says how many bytes were dropped. A damaged record anywhere else — in a sealed
//! segment, or in the last one with a valid record behind it that was written after a sync
//! (marked so, see [`segment`]) — is damage to synced data: [`LogStore::open`] refuses to
//! start (the node exits with the error naming the file and byte), so it never serves it.
//! Damage to a last round that had been synced is indistinguishable from a torn one and is
//! cut too; that takes a failing disk and a crash in the same moments.

mod flusher;
mod meta;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::Serialize;

use crate::types::{Entry, LogId, TypeConfig, Vote};

use flusher::{Done, Flusher, Op, WriteOp};
use segment::{Loc, HEADER_LEN};

/// The leader part of a log id; consecutive entries usually share it.
type LeaderId = crate::types::LeaderId;

/// Tuning of a [`LogStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStoreConfig {
    /// A segment is rolled once it holds at least this many bytes.
    pub segment_bytes: u64,
    /// At most this many recent entries are kept in memory (unflushed entries always are).
    pub cache_entries: usize,
    /// At most this many bytes of recent records are kept in memory.
    pub cache_bytes: usize,
    /// `limited_get_log_entries` returns about this many record bytes at most (at least one entry).
    pub read_batch_bytes: u64,
    /// The committed log id is written to disk at most this often (it only speeds up restart).
    pub committed_persist_interval: Duration,
    /// At most this many queued operations share one sync.
    pub max_batch_ops: usize,
    /// Whether appends are fsynced before they are reported durable. `false` is the
    /// known-bad setting that `fsync = "never"` selects (see [`crate::config::FsyncPolicy`]).
    pub fsync: bool,
    /// Zeros are written this far ahead of the end of the active segment (0: none). An
    /// append into space that already holds data needs no file-size change, so its
    /// `fdatasync` writes the data alone instead of also committing the file system journal.
    pub zero_ahead_bytes: u64,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        LogStoreConfig {
            segment_bytes: 64 << 20,
            cache_entries: 16 * 1024,
            cache_bytes: 64 << 20,
            read_batch_bytes: 4 << 20,
            committed_persist_interval: Duration::from_millis(100),
            max_batch_ops: 8 * 1024,
            fsync: true,
            zero_ahead_bytes: 1 << 20,
        }
    }
}

/// Counters for INFO and for watching group commit work (`entries_flushed / fsyncs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    /// Index of the first entry present, if any.
    pub first_index: Option<u64>,
    /// Index of the last entry present, if any.
    pub last_index: Option<u64>,
    /// Index of the last purged entry, if any.
    pub last_purged_index: Option<u64>,
    /// Number of segment files.
    pub segments: usize,
    /// Bytes in segment files.
    pub bytes: u64,
    /// Entries held in the in-memory cache.
    pub cached_entries: usize,
    /// `sync_data` calls on segment files since open.
    pub fsyncs: u64,
    /// Entries made durable since open.
    pub entries_flushed: u64,
    /// Whether appends are fsynced (`fsync = "always"`).
    pub fsync: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("log store io error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("corrupt log segment {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("inconsistent log directory {dir}: {reason}")]
    Inconsistent { dir: PathBuf, reason: String },
    #[error("bad meta file {path}: {reason}")]
    Meta { path: PathBuf, reason: String },
    #[error("cannot encode log entry {index}: {reason}")]
    Encode { index: u64, reason: String },
    #[error("log entry {index} is too large: {len} bytes")]
    EntryTooLarge { index: u64, len: usize },
    #[error("log entry {got} does not follow the log: expected index {expected}")]
    NotContiguous { expected: u64, got: u64 },
    #[error("cannot truncate at index {index}: entries up to {purged} are purged")]
    TruncatePurged { index: u64, purged: u64 },
    #[error("log store stopped after an io failure: {0}")]
    Failed(String),
    #[error("log store flusher is gone")]
    Closed,
}

impl LogStoreError {
    fn io(path: &Path, source: io::Error) -> Self {
        LogStoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The durable Raft log of a node. Cheap to clone; clones share one log (the clone is also the
/// openraft log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    config: LogStoreConfig,
    tx: Option<Sender<Op>>,
    flusher: Option<JoinHandle<()>>,
}

/// State shared with the flusher thread.
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Every write op with a sequence number up to this one is durable.
    flushed_seq: AtomicU64,
    fsyncs: AtomicU64,
    entries_flushed: AtomicU64,
    failed: OnceLock<String>,
    /// Held by tests to stop the flusher between batches.
    #[cfg(test)]
    test_gate: Mutex<()>,
}

/// The logical view of the log, updated synchronously by the API. The files catch up as the
/// flusher works through its queue.
struct State {
    segments: VecDeque<SegMeta>,
    /// `(first index, leader)` runs covering the present entries.
    leaders: VecDeque<(u64, LeaderId)>,
    /// The most recent entries, contiguous, ending at the last entry.
    cache: VecDeque<Cached>,
    cache_bytes: usize,
    last_log_id: Option<LogId>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    next_seq: u64,
    total_bytes: u64,
}

struct SegMeta {
    first_index: u64,
    locs: Vec<Loc>,
    size: u64,
    reader: Option<Arc<File>>,
}

struct Cached {
    entry: Entry,
    seq: u64,
    bytes: usize,
}

/// Records to read from one segment: `locs[k]` holds index `first_index + k`.
struct DiskRun {
    file: Arc<File>,
    path: PathBuf,
    first_index: u64,
    locs: Vec<Loc>,
}

impl State {
    /// Index of the first present entry.
    fn first_index(&self) -> Option<u64> {
        let last = self.last_log_id?.index;
        let first = self
            .last_purged
            .map_or(0, |p| p.index + 1)
            .max(self.segments.front()?.first_index);
        (first <= last).then_some(first)
    }

    /// Index the next appended entry must have, unless the log is brand new.
    fn next_index(&self) -> Option<u64> {
        self.last_log_id.or(self.last_purged).map(|id| id.index + 1)
    }

    fn loc(&self, index: u64) -> Option<(usize, Loc)> {
        let pos = self
            .segments
            .partition_point(|s| s.first_index <= index)
            .checked_sub(1)?;
        let seg = &self.segments[pos];
        let loc = *seg
            .locs
            .get(usize::try_from(index - seg.first_index).ok()?)?;
        Some((pos, loc))
    }

    fn leader_at(&self, index: u64) -> Option<LeaderId> {
        let pos = self
            .leaders
            .partition_point(|(first, _)| *first <= index)
            .checked_sub(1)?;
        Some(self.leaders[pos].1)
    }

    fn cache_first(&self) -> Option<u64> {
        self.cache.front().map(|c| c.entry.log_id.index)
    }

    fn evict(&mut self, config: &LogStoreConfig, flushed_seq: u64) {
        while self.cache.len() > config.cache_entries || self.cache_bytes > config.cache_bytes {
            match self.cache.front() {
                Some(front) if front.seq <= flushed_seq => {
                    self.cache_bytes -= front.bytes;
                    self.cache.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Clamps `[start, end)` to the present entries and, with a limit, to about `limit` bytes.
    fn clamp(&self, start: u64, end: u64, byte_limit: Option<u64>) -> (u64, u64) {
        let (Some(first), Some(last)) = (self.first_index(), self.last_log_id) else {
            return (0, 0);
        };
        let lo = start.max(first);
        let mut hi = end.min(last.index.saturating_add(1));
        if let (Some(limit), true) = (byte_limit, lo < hi) {
            let mut bytes = 0;
            for index in lo..hi {
                bytes += self.loc(index).map_or(0, |(_, loc)| loc.record_len());
                if bytes >= limit {
                    hi = index + 1;
                    break;
                }
            }
        }
        (lo, hi)
    }

    /// Splits a read into disk runs and cloned cached entries.
    fn plan_read(
        &mut self,
        dir: &Path,
        lo: u64,
        hi: u64,
    ) -> Result<(Vec<DiskRun>, Vec<Entry>), LogStoreError> {
        if lo >= hi {
            return Ok((Vec::new(), Vec::new()));
        }
        let cache_first = self.cache_first().unwrap_or(hi).clamp(lo, hi);
        let mut runs = Vec::new();
        let mut index = lo;
        while index < cache_first {
            let Some((pos, _)) = self.loc(index) else {
                return Err(LogStoreError::Inconsistent {
                    dir: dir.to_path_buf(),
                    reason: format!("no location for present index {index}"),
                });
            };
            let seg = &mut self.segments[pos];
            let seg_end = seg.first_index + seg.locs.len() as u64;
            let run_end = cache_first.min(seg_end);
            let path = segment::segment_path(dir, seg.first_index);
            let file = match &seg.reader {
                Some(file) => file.clone(),
                None => {
                    let file =
                        Arc::new(File::open(&path).map_err(|e| LogStoreError::io(&path, e))?);
                    seg.reader = Some(file.clone());
                    file
                }
            };
            let from = (index - seg.first_index) as usize;
            let to = (run_end - seg.first_index) as usize;
            runs.push(DiskRun {
                file,
                path,
                first_index: index,
                locs: seg.locs[from..to].to_vec(),
            });
            index = run_end;
        }
        let cached = match self.cache_first() {
            Some(first) => (cache_first..hi)
                .map(|index| self.cache[(index - first) as usize].entry.clone())
                .collect(),
            None => Vec::new(),
        };
        Ok((runs, cached))
    }
}

/// Reads the records of `runs` from disk, checking crc, decoding and checking indexes.
fn read_runs(runs: Vec<DiskRun>) -> Result<Vec<Entry>, LogStoreError> {
    let mut entries = Vec::new();
    for run in runs {
        let (Some(first), Some(last)) = (run.locs.first(), run.locs.last()) else {
            continue;
        };
        let start = first.offset;
        let mut buf = vec![0u8; (last.offset + last.record_len() - start) as usize];
        run.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| LogStoreError::io(&run.path, e))?;
        for (k, loc) in run.locs.iter().enumerate() {
            let corrupt = |reason: String| LogStoreError::Corrupt {
                path: run.path.clone(),
                offset: loc.offset,
                reason,
            };
            let at = (loc.offset - start) as usize;
            let payload = segment::check_record(&buf[at..at + loc.record_len() as usize])
                .map_err(|p| corrupt(p.to_string()))?
                .payload;
            let entry = segment::decode_payload(payload).map_err(corrupt)?;
            let want = run.first_index + k as u64;
            if entry.log_id.index != want {
                return Err(corrupt(format!(
                    "record holds index {} where index {want} belongs",
                    entry.log_id.index
                )));
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn range_to_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// What [`recover`] found in the directory.
struct Recovered {
    segments: VecDeque<SegMeta>,
    leaders: VecDeque<(u64, LeaderId)>,
    last_log_id: Option<LogId>,
    /// `sync_data` calls on segment files made while recovering.
    fsyncs: u64,
}

/// Scans every segment, truncates a torn tail of the last one and checks the log is one
/// contiguous run that starts right after the purged prefix.
fn recover(dir: &Path, last_purged: Option<LogId>) -> Result<Recovered, LogStoreError> {
    let inconsistent = |reason: String| LogStoreError::Inconsistent {
        dir: dir.to_path_buf(),
        reason,
    };
    let mut found = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| LogStoreError::io(dir, e))? {
        let item = item.map_err(|e| LogStoreError::io(dir, e))?;
        let name = item.file_name();
        if let Some(first) = name.to_str().and_then(segment::parse_segment_name) {
            found.push(first);
        }
    }
    found.sort_unstable();

    let purged_next = last_purged.map_or(0, |p| p.index + 1);
    let mut dir_changed = false;
    // A segment followed by one that starts at or before the purge point holds only purged
    // entries: a purge was interrupted before it deleted it.
    let mut keep = Vec::with_capacity(found.len());
    for (k, &first) in found.iter().enumerate() {
        if found.get(k + 1).is_some_and(|&next| next <= purged_next) {
            let path = segment::segment_path(dir, first);
            fs::remove_file(&path).map_err(|e| LogStoreError::io(&path, e))?;
            tracing::info!(path = %path.display(), "removed fully purged log segment");
            dir_changed = true;
        } else {
            keep.push(first);
        }
    }

    let mut segments: VecDeque<SegMeta> = VecDeque::new();
    let mut leaders: VecDeque<(u64, LeaderId)> = VecDeque::new();
    let mut last_log_id = None;
    let mut fsyncs = 0;
    let count = keep.len();
    for (k, first) in keep.into_iter().enumerate() {
        let path = segment::segment_path(dir, first);
        let is_last = k + 1 == count;
        let scan = segment::scan_segment(&path, first)?;
        // (An empty last segment is removed below; there is nothing to sync.)
        if is_last && scan.problem.is_none() && !scan.locs.is_empty() {
            // What a crash left in the page cache is read as log, and answered to the
            // leader as stored: make it so before anything else. The first record written
            // after this claims everything before it is synced (`segment`).
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.sync_data())
                .map_err(|e| LogStoreError::io(&path, e))?;
            fsyncs += 1;
        }
        if let Some((offset, problem)) = &scan.problem {
            if !is_last {
                return Err(LogStoreError::Corrupt {
                    path,
                    offset: *offset,
                    reason: format!("{problem} inside a sealed segment, refusing to start"),
                });
            }
            if let Some(later) = scan.later_round {
                return Err(LogStoreError::Corrupt {
                    path,
                    offset: *offset,
                    reason: format!(
                        "{problem} in the middle of the log (a valid record of index {} follows at byte {}, written after everything before it was synced), refusing to start",
                        later.index, later.offset
                    ),
                });
            }
            // Valid records behind the damage, none written after a sync: all of it is the
            // last write round, which the crash caught before its sync made it whole.
            tracing::warn!(
                path = %path.display(),
                offset,
                dropped_bytes = scan.file_len - scan.valid_len,
                reason = %problem,
                unsynced_valid_records_from = scan.valid_after.map(|f| f.index),
                "torn tail in the last log segment, truncating"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| LogStoreError::io(&path, e))?;
            file.set_len(scan.valid_len)
                .and_then(|()| file.sync_data())
                .map_err(|e| LogStoreError::io(&path, e))?;
            fsyncs += 1;
        }
        if scan.locs.is_empty() {
            if is_last {
                tracing::warn!(path = %path.display(), "removed empty last log segment");
                fs::remove_file(&path).map_err(|e| LogStoreError::io(&path, e))?;
                dir_changed = true;
                continue;
            }
            return Err(LogStoreError::Corrupt {
                path,
                offset: 0,
                reason: "sealed segment holds no entries".to_string(),
            });
        }
        if let Some(prev) = segments.back() {
            let expected = prev.first_index + prev.locs.len() as u64;
            if first != expected {
                return Err(inconsistent(format!(
                    "segment {first} follows a segment that ends before index {expected}"
                )));
            }
        }
        for (index, leader) in scan.leaders {
            if leaders.back().map(|(_, l)| *l) != Some(leader) {
                leaders.push_back((index, leader));
            }
        }
        last_log_id = scan.last_log_id;
        segments.push_back(SegMeta {
            first_index: first,
            locs: scan.locs,
            size: scan.valid_len,
            reader: None,
        });
    }

    if let Some(purged) = last_purged {
        if let Some(front) = segments.front() {
            if front.first_index > purged.index + 1 {
                return Err(inconsistent(format!(
                    "entries up to {} are purged but the first segment starts at {}",
                    purged.index, front.first_index
                )));
            }
        }
        while let Some(front) = segments.front() {
            if front.first_index + front.locs.len() as u64 > purged_next {
                break;
            }
            let path = segment::segment_path(dir, front.first_index);
            fs::remove_file(&path).map_err(|e| LogStoreError::io(&path, e))?;
            tracing::info!(path = %path.display(), "removed fully purged log segment");
            dir_changed = true;
            segments.pop_front();
        }
        if last_log_id.is_some_and(|id: LogId| id.index <= purged.index) {
            last_log_id = None;
        }
        trim_leaders(&mut leaders, purged_next, last_log_id.is_none());
    }
    if dir_changed {
        meta::sync_dir(dir).map_err(|e| LogStoreError::io(dir, e))?;
    }
    Ok(Recovered {
        segments,
        leaders,
        last_log_id,
        fsyncs,
    })
}

/// Drops leader runs that cover only indexes below `first`.
fn trim_leaders(leaders: &mut VecDeque<(u64, LeaderId)>, first: u64, empty: bool) {
    if empty {
        leaders.clear();
        return;
    }
    while leaders.len() >= 2 && leaders[1].0 <= first {
        leaders.pop_front();
    }
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir` with the default configuration.
    pub fn open(dir: &Path) -> Result<LogStore, LogStoreError> {
        LogStore::open_with(dir, LogStoreConfig::default())
    }

    /// Opens (creating if needed) the log in `dir`, recovering from a crash.
    pub fn open_with(dir: &Path, config: LogStoreConfig) -> Result<LogStore, LogStoreError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| LogStoreError::io(dir, e))?;
            // The new directory's own entry must survive a crash, or so would nothing in it.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                meta::sync_dir(parent).map_err(|e| LogStoreError::io(parent, e))?;
            }
        }
        let meta = meta::load(dir)?;
        let recovered = recover(dir, meta.last_purged)?;
        let recovery_fsyncs = recovered.fsyncs;
        let total_bytes = recovered.segments.iter().map(|s| s.size).sum();
        let state = State {
            segments: recovered.segments,
            leaders: recovered.leaders,
            cache: VecDeque::new(),
            cache_bytes: 0,
            last_log_id: recovered.last_log_id,
            last_purged: meta.last_purged,
            vote: meta.vote,
            committed: meta.committed,
            next_seq: 1,
            total_bytes,
        };
        tracing::info!(
            dir = %dir.display(),
            first_index = ?state.first_index(),
            last_log_id = ?state.last_log_id,
            last_purged = ?state.last_purged,
            segments = state.segments.len(),
            "opened raft log"
        );
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            flushed_seq: AtomicU64::new(0),
            fsyncs: AtomicU64::new(recovery_fsyncs),
            entries_flushed: AtomicU64::new(0),
            failed: OnceLock::new(),
            #[cfg(test)]
            test_gate: Mutex::new(()),
        });
        let (tx, rx) = mpsc::channel();
        let flusher = Flusher::new(
            dir.to_path_buf(),
            shared.clone(),
            meta,
            config.committed_persist_interval,
            config.max_batch_ops,
            config.fsync,
            config.zero_ahead_bytes,
        );
        let handle = thread::Builder::new()
            .name("raft-log-flusher".to_string())
            .spawn(move || flusher.run(rx))
            .map_err(|e| LogStoreError::io(dir, e))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                shared,
                config,
                tx: Some(tx),
                flusher: Some(handle),
            }),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    pub fn stats(&self) -> LogStats {
        let shared = &self.inner.shared;
        let state = self.lock();
        LogStats {
            first_index: state.first_index(),
            last_index: state.last_log_id.map(|id| id.index),
            last_purged_index: state.last_purged.map(|id| id.index),
            segments: state.segments.len(),
            bytes: state.total_bytes,
            cached_entries: state.cache.len(),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            entries_flushed: shared.entries_flushed.load(Ordering::Relaxed),
            fsync: self.inner.config.fsync,
        }
    }

    /// Appends `entries` and calls `on_durable` once they are on disk (or failed to get there).
    ///
    /// The entries are readable as soon as this returns. Callbacks run on the flusher thread, in
    /// append order; many appends share one `sync_data`.
    pub fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        on_durable: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> Result<(), LogStoreError> {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let done: Done = Box::new(on_durable);
        let mut state = self.lock();
        self.check_failed()?;
        if entries.is_empty() {
            return self.send(Op::Barrier(done));
        }
        let mut expected = state.next_index();
        for entry in &entries {
            let got = entry.log_id.index;
            if let Some(expected) = expected.filter(|e| *e != got) {
                return Err(LogStoreError::NotContiguous { expected, got });
            }
            expected = Some(got + 1);
        }
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            let mut record = Vec::new();
            segment::encode_record(entry, &mut record)?;
            records.push(record);
        }

        let segment_bytes = self.inner.config.segment_bytes;
        let mut ops: Vec<WriteOp> = Vec::new();
        for (entry, record) in entries.into_iter().zip(records) {
            let index = entry.log_id.index;
            let roll = state
                .segments
                .back()
                .is_none_or(|s| s.size >= segment_bytes && !s.locs.is_empty());
            if roll {
                state.segments.push_back(SegMeta {
                    first_index: index,
                    locs: Vec::new(),
                    size: 0,
                    reader: None,
                });
            }
            let rec_len = record.len() as u64;
            let seg = state
                .segments
                .back_mut()
                .expect("a segment was just ensured");
            let loc = Loc {
                offset: seg.size,
                len: (rec_len - HEADER_LEN) as u32,
            };
            seg.locs.push(loc);
            seg.size += rec_len;
            let segment = seg.first_index;
            match ops.last_mut() {
                Some(op) if op.segment == segment => {
                    op.bytes.extend_from_slice(&record);
                    op.entries += 1;
                }
                _ => {
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    ops.push(WriteOp {
                        seq,
                        segment,
                        create: roll,
                        offset: loc.offset,
                        bytes: record,
                        entries: 1,
                        done: None,
                    });
                }
            }
            let seq = ops.last().map_or(0, |op| op.seq);
            state.total_bytes += rec_len;
            if state.leaders.back().map(|(_, l)| *l) != Some(entry.log_id.leader_id) {
                state.leaders.push_back((index, entry.log_id.leader_id));
            }
            state.last_log_id = Some(entry.log_id);
            state.cache_bytes += rec_len as usize;
            state.cache.push_back(Cached {
                entry,
                seq,
                bytes: rec_len as usize,
            });
        }
        if let Some(last) = ops.last_mut() {
            last.done = Some(done);
        }
        for op in ops {
            self.send(Op::Write(op))?;
        }
        let flushed = self.inner.shared.flushed_seq.load(Ordering::Acquire);
        state.evict(&self.inner.config, flushed);
        Ok(())
    }

    /// Deletes every entry with index `>= index`; returns once that is durable.
    pub async fn truncate_from(&self, index: u64) -> Result<(), LogStoreError> {
        let reply = {
            let mut state = self.lock();
            self.check_failed()?;
            let Some(last) = state.last_log_id else {
                return Ok(());
            };
            if index > last.index {
                return Ok(());
            }
            if let Some(purged) = state.last_purged.filter(|p| index <= p.index) {
                return Err(LogStoreError::TruncatePurged {
                    index,
                    purged: purged.index,
                });
            }
            let first = state.first_index();
            let mut delete = Vec::new();
            let mut cut = None;
            while let Some(back) = state.segments.back_mut() {
                if back.first_index >= index {
                    let size = back.size;
                    delete.push(back.first_index);
                    state.segments.pop_back();
                    state.total_bytes -= size;
                    continue;
                }
                let keep = (index - back.first_index) as usize;
                if keep < back.locs.len() {
                    let new_size = back.locs[keep].offset;
                    let dropped = back.size - new_size;
                    back.locs.truncate(keep);
                    back.size = new_size;
                    cut = Some((back.first_index, new_size));
                    state.total_bytes -= dropped;
                }
                break;
            }
            while state
                .leaders
                .back()
                .is_some_and(|(first, _)| *first >= index)
            {
                state.leaders.pop_back();
            }
            while let Some(back) = state.cache.back() {
                if back.entry.log_id.index < index {
                    break;
                }
                state.cache_bytes -= back.bytes;
                state.cache.pop_back();
            }
            state.last_log_id = match (index.checked_sub(1), first) {
                (Some(prev), Some(first)) if prev >= first => state
                    .leader_at(prev)
                    .map(|leader_id| LogId::new(leader_id, prev)),
                _ => None,
            };
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.send(Op::Truncate { delete, cut, reply })?;
            rx
        };
        reply
            .await
            .map_err(|_| LogStoreError::Closed)?
            .map_err(LogStoreError::Failed)
    }

    /// [`Self::start_purge`], then waits until the purge is durable: what tests check files
    /// and reopened stores against (openraft's purge does not wait).
    #[cfg(test)]
    pub async fn purge_upto(&self, upto: LogId) -> Result<(), LogStoreError> {
        let Some(reply) = self.start_purge(upto)? else {
            return Ok(());
        };
        reply
            .await
            .map_err(|_| LogStoreError::Closed)?
            .map_err(LogStoreError::Failed)
    }

    /// Deletes every entry with index `<= upto.index` and remembers `upto` as the last purged
    /// log id. Whole segments are deleted; a segment that still holds later entries stays
    /// until those are purged too. Reads and the log state forget the entries at once, and
    /// the flusher makes the purge durable in queue order; the receiver (`None`: nothing to
    /// purge) tells when it is. A purge that is not yet durable when the node
    /// dies only leaves entries the snapshot already covers, and the flusher records the
    /// purge point before it deletes any segment, so the log never has a hole.
    pub fn start_purge(
        &self,
        upto: LogId,
    ) -> Result<Option<tokio::sync::oneshot::Receiver<Result<(), String>>>, LogStoreError> {
        let mut state = self.lock();
        self.check_failed()?;
        if state.last_purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(None);
        }
        state.last_purged = Some(upto);
        let next = upto.index + 1;
        let mut delete = Vec::new();
        while let Some(front) = state.segments.front() {
            if front.first_index + front.locs.len() as u64 > next {
                break;
            }
            let size = front.size;
            delete.push(front.first_index);
            state.segments.pop_front();
            state.total_bytes -= size;
        }
        if state.last_log_id.is_some_and(|id| id.index <= upto.index) {
            state.last_log_id = None;
        }
        let empty = state.last_log_id.is_none();
        trim_leaders(&mut state.leaders, next, empty);
        // The purged entries leave with the cache's old buffer, to be freed after the lock
        // (which appends need): moving them into a new collection here page-faulted
        // megabytes under the lock, and freeing them here cost glibc's malloc tens of ms.
        let purged = state
            .cache
            .partition_point(|c| c.entry.log_id.index <= upto.index);
        state.cache_bytes -= state.cache.range(..purged).map(|c| c.bytes).sum::<usize>();
        let kept = state.cache.split_off(purged);
        let forgotten = std::mem::replace(&mut state.cache, kept);
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Purge {
            purged: upto,
            delete,
            reply,
        })?;
        drop(state);
        drop(forgotten);
        Ok(Some(rx))
    }

    /// Durably stores the vote (after everything queued before it).
    pub async fn store_vote(&self, vote: Vote) -> Result<(), LogStoreError> {
        let reply = {
            let mut state = self.lock();
            self.check_failed()?;
            state.vote = Some(vote);
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.send(Op::Vote { vote, reply })?;
            rx
        };
        reply
            .await
            .map_err(|_| LogStoreError::Closed)?
            .map_err(LogStoreError::Failed)
    }

    pub fn vote(&self) -> Option<Vote> {
        self.lock().vote
    }

    /// Records the committed log id; it reaches the disk within
    /// [`LogStoreConfig::committed_persist_interval`], after the entries it covers.
    pub fn store_committed(&self, committed: Option<LogId>) -> Result<(), LogStoreError> {
        let mut state = self.lock();
        self.check_failed()?;
        state.committed = committed;
        self.send(Op::Committed(committed))
    }

    pub fn committed(&self) -> Option<LogId> {
        self.lock().committed
    }

    /// `(last purged log id, last log id)`; the latter falls back to the former when the log
    /// holds no entries.
    pub fn log_state(&self) -> (Option<LogId>, Option<LogId>) {
        let state = self.lock();
        (state.last_purged, state.last_log_id.or(state.last_purged))
    }

    /// Reads the present entries in `range`, blocking on disk reads. Prefer the async
    /// [`RaftLogReader`] methods from async code.
    pub fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, LogStoreError> {
        let (start, end) = range_to_bounds(&range);
        let (runs, cached) = self.plan(start, end, None)?;
        let mut entries = read_runs(runs)?;
        entries.extend(cached);
        Ok(entries)
    }

    async fn read_entries(
        &self,
        start: u64,
        end: u64,
        byte_limit: Option<u64>,
    ) -> Result<Vec<Entry>, LogStoreError> {
        let (runs, cached) = self.plan(start, end, byte_limit)?;
        if runs.is_empty() {
            return Ok(cached);
        }
        let mut entries = tokio::task::spawn_blocking(move || read_runs(runs))
            .await
            .map_err(|e| LogStoreError::Failed(format!("log read task failed: {e}")))??;
        entries.extend(cached);
        Ok(entries)
    }

    fn plan(
        &self,
        start: u64,
        end: u64,
        byte_limit: Option<u64>,
    ) -> Result<(Vec<DiskRun>, Vec<Entry>), LogStoreError> {
        let mut state = self.lock();
        let (lo, hi) = state.clamp(start, end, byte_limit);
        state.plan_read(&self.inner.shared.dir, lo, hi)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only mutated in short sections that do not panic midway; a poisoned
        // lock still holds a consistent state.
        self.inner
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn check_failed(&self) -> Result<(), LogStoreError> {
        match self.inner.shared.failed.get() {
            Some(reason) => Err(LogStoreError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    fn send(&self, op: Op) -> Result<(), LogStoreError> {
        self.inner
            .tx
            .as_ref()
            .ok_or(LogStoreError::Closed)?
            .send(op)
            .map_err(|_| LogStoreError::Closed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the flusher make everything durable and exit; wait for it so
        // the directory can be reopened right away.
        drop(self.tx.take());
        if let Some(handle) = self.flusher.take() {
            if handle.thread().id() != thread::current().id() && handle.join().is_err() {
                tracing::error!("log flusher thread panicked");
            }
        }
    }
}

fn storage_err(e: LogStoreError) -> io::Error {
    match e {
        LogStoreError::Io { source, path } => io::Error::new(
            source.kind(),
            format!("log store io error on {}: {source}", path.display()),
        ),
        other => io::Error::other(other.to_string()),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_bounds(&range);
        self.read_entries(start, end, None)
            .await
            .map_err(storage_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.vote())
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        let limit = self.inner.config.read_batch_bytes;
        self.read_entries(start, end, Some(limit))
            .await
            .map_err(storage_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let (last_purged_log_id, last_log_id) = self.log_state();
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.store_vote(*vote).await.map_err(storage_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.store_committed(committed).map_err(storage_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.committed())
    }

    /// Queues the entries for the flusher and returns at once; `callback` runs on the
    /// flusher thread once they are durable (after `sync_data`), or with the error that
    /// stopped them.
    ///
    /// # Why an acknowledged write is still fsynced on a majority
    ///
    /// openraft 0.10 does not wait for this callback before it replicates (0.9 did, which
    /// put the leader's fsync in series with the followers'). That is safe because the
    /// callback is still the only way an entry counts as stored anywhere:
    ///
    /// - On the leader, `RaftCore` moves its *own* matching log id only on the
    ///   `LocalIO` notification the callback sends (`handle_local_io` →
    ///   `update_local_progress`); until then the leader is simply not one of the voters
    ///   that hold the entry.
    /// - On a follower, the AppendEntries reply is a `Command::Respond` conditioned on
    ///   `IOFlushed` of that append (`Engine::handle_append_entries`), so a follower's
    ///   "success" — the only thing that moves its matching on the leader — comes after its
    ///   fsync.
    /// - An entry is committed only when the quorum of matching log ids reaches it
    ///   (`ReplicationHandler::update_matching` → `try_commit_quorum_accepted`), and the bus
    ///   acknowledges a write only after it is committed and applied on the leader
    ///   (`bus::Router::propose`).
    ///
    /// So acknowledged ⇒ committed ⇒ a majority of voters ran `sync_data` over it; the
    /// leader may or may not be one of them. The leader may *apply* an entry before its own
    /// copy is durable (it reads it from the in-memory cache, which keeps every unflushed
    /// entry), which is fine: a crash loses only the leader's copy, the new leader comes from
    /// the majority that has it. The committed log id this store persists lags the flushed
    /// log (it is written after the sync of the batch it arrived with, see the flusher module), so a
    /// restarted leader never claims a commit beyond its durable log. The test
    /// `failpoints::killing_the_leader_before_its_own_log_write_loses_no_acknowledged_write`
    /// kills a leader whose log writes are stalled while acknowledgements continue.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_entries(entries, move |result| callback.io_completed(result))
            .map_err(storage_err)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.truncate_from(from).await.map_err(storage_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // openraft runs this on its core task and handles nothing else until it returns;
        // waiting for the flusher's fsyncs here held every write for 20-100 ms after each
        // snapshot. Not waiting is safe (see `start_purge`); a failed purge fails the
        // flusher, and the next append reports it.
        self.start_purge(log_id).map(drop).map_err(storage_err)
    }
}
