//! The flusher: one thread that owns every write to the log directory.
//!
//! All write IO (segment appends, truncation, purge, vote and committed updates) goes through one
//! queue and is applied in order, which is the serialization openraft requires. Appends are
//! group-committed: the thread takes everything queued since its last sync, writes it, calls
//! `sync_data` once and only then completes the callbacks of that batch, in order.
//!
//! With `fsync = "never"` (`LogStoreConfig::fsync` false) the batch's `sync_data` and the
//! directory sync of new segments are skipped: appends are reported durable once written to
//! the page cache. That is the known-bad setting a power loss is tested against; votes,
//! truncation and purge stay synced, and the committed log id is not persisted at all (it
//! could point past what survives).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::types::{LogId, Vote};

use super::meta::{self, Meta};
use super::segment::segment_path;
use super::Shared;

/// Called once the data of an append is durable, or with the error that prevented it.
pub(super) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Answer to an operation the caller waits for; the error is the failure reason.
pub(super) type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

pub(super) enum Op {
    /// Write encoded records into a segment.
    Write(WriteOp),
    /// Complete `Done` once everything queued before it is durable (an empty append).
    Barrier(Done),
    /// Delete the segments (highest first), then cut `(segment, new length)`.
    Truncate {
        delete: Vec<u64>,
        cut: Option<(u64, u64)>,
        reply: Reply,
    },
    /// Durably record `purged` in the meta file, then delete the segments.
    Purge {
        purged: LogId,
        delete: Vec<u64>,
        reply: Reply,
    },
    /// Durably record the vote.
    Vote { vote: Vote, reply: Reply },
    /// Record the committed log id; persisted lazily (at most every `committed_interval`).
    Committed(Option<LogId>),
}

pub(super) struct WriteOp {
    /// Entries cached under this sequence number may leave the cache once it is flushed.
    pub seq: u64,
    /// First index of the target segment.
    pub segment: u64,
    /// The segment file is new: create it (replacing any stale file of the same name).
    pub create: bool,
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub entries: u64,
    pub done: Option<Done>,
}

struct Pending {
    seq: Option<u64>,
    entries: u64,
    done: Option<Done>,
}

pub(super) struct Flusher {
    dir: PathBuf,
    shared: Arc<Shared>,
    meta: Meta,
    /// The segment currently written to, by first index.
    active: Option<(u64, File)>,
    /// Bytes of `active` that exist in the file (records, then zeros written ahead).
    active_len: u64,
    /// How far ahead of the last record zeros are written ([`super::LogStoreConfig::zero_ahead_bytes`]).
    zero_ahead: u64,
    /// `active` has writes that are not yet synced.
    dirty: bool,
    /// A file was created in the directory since the last directory sync.
    dir_dirty: bool,
    pending: Vec<Pending>,
    committed_dirty: bool,
    last_meta_write: Instant,
    committed_interval: Duration,
    max_batch_ops: usize,
    /// `false`: appends are reported durable without `sync_data` (`fsync = "never"`).
    fsync: bool,
    failed: Option<String>,
}

impl Flusher {
    pub fn new(
        dir: PathBuf,
        shared: Arc<Shared>,
        meta: Meta,
        committed_interval: Duration,
        max_batch_ops: usize,
        fsync: bool,
        zero_ahead: u64,
    ) -> Self {
        Flusher {
            dir,
            shared,
            meta,
            active: None,
            active_len: 0,
            zero_ahead,
            dirty: false,
            dir_dirty: false,
            pending: Vec::new(),
            committed_dirty: false,
            last_meta_write: Instant::now(),
            committed_interval,
            max_batch_ops: max_batch_ops.max(1),
            fsync,
            failed: None,
        }
    }

    /// Runs until every sender is dropped, then makes everything queued durable and returns.
    pub fn run(mut self, rx: Receiver<Op>) {
        loop {
            let first = if self.committed_dirty {
                let wait = self
                    .committed_interval
                    .saturating_sub(self.last_meta_write.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(op) => Some(op),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => break,
                }
            };
            #[cfg(test)]
            let shared = self.shared.clone();
            #[cfg(test)]
            let _gate = shared.test_gate.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(op) = first {
                self.handle(op);
                // Group commit: everything queued meanwhile shares the next sync.
                for op in rx.try_iter().take(self.max_batch_ops) {
                    self.handle(op);
                }
                self.sync_pending();
            }
            if self.committed_dirty && self.last_meta_write.elapsed() >= self.committed_interval {
                self.persist_meta("committed");
            }
        }
        self.sync_pending();
        if self.committed_dirty {
            self.persist_meta("committed");
        }
        tracing::debug!(dir = %self.dir.display(), "log flusher stopped");
    }

    fn handle(&mut self, op: Op) {
        match op {
            Op::Write(mut write) => {
                if let Some(reason) = self.failed.clone() {
                    complete(write.done, Err(&reason));
                    return;
                }
                if let Err(e) = self.write(&mut write) {
                    self.fail(format!("cannot write log segment {}: {e}", write.segment));
                    let reason = self.failed.clone().unwrap_or_default();
                    complete(write.done, Err(&reason));
                    return;
                }
                self.pending.push(Pending {
                    seq: Some(write.seq),
                    entries: write.entries,
                    done: write.done,
                });
            }
            Op::Barrier(done) => {
                if let Some(reason) = &self.failed {
                    complete(Some(done), Err(reason));
                    return;
                }
                self.pending.push(Pending {
                    seq: None,
                    entries: 0,
                    done: Some(done),
                });
            }
            Op::Truncate { delete, cut, reply } => {
                self.sync_pending();
                let result = self.checked("truncate", |f| f.truncate(&delete, cut));
                let _ = reply.send(result);
            }
            Op::Purge {
                purged,
                delete,
                reply,
            } => {
                self.sync_pending();
                let result = self.checked("purge", |f| f.purge(purged, &delete));
                let _ = reply.send(result);
            }
            Op::Vote { vote, reply } => {
                self.sync_pending();
                let result = self.checked("save vote", |f| {
                    crate::failpoint::point!("log.vote_write", |msg| Err(io::Error::other(msg)));
                    f.meta.vote = Some(vote);
                    f.write_meta()
                });
                let _ = reply.send(result);
            }
            Op::Committed(committed) => {
                // Without fsync the log may lose entries the committed id covers, and a node
                // whose durable committed id is past its log cannot start: keep it in memory.
                if self.failed.is_none() && self.fsync() {
                    self.meta.committed = committed;
                    self.committed_dirty = true;
                }
            }
        }
    }

    /// Runs `f` unless the flusher already failed; an io error fails the flusher.
    fn checked(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Self) -> io::Result<()>,
    ) -> Result<(), String> {
        if let Some(reason) = &self.failed {
            return Err(reason.clone());
        }
        f(self).map_err(|e| {
            self.fail(format!("cannot {what}: {e}"));
            self.failed.clone().unwrap_or_default()
        })
    }

    fn write(&mut self, write: &mut WriteOp) -> io::Result<()> {
        // `sleep(ms)` here holds this node's new entries out of even the page cache, so a
        // SIGKILL meanwhile loses them on this node (a test of acknowledgement without the
        // leader's own copy).
        crate::failpoint::point!("log.before_write", |msg| Err(io::Error::other(msg)));
        if self.active.as_ref().map(|(segment, _)| *segment) != Some(write.segment) {
            // A new segment gets no byte before the previous one is durable, so a torn
            // record can only ever be at the end of the last segment.
            self.sync_active()?;
            let path = segment_path(&self.dir, write.segment);
            let file = if write.create {
                self.dir_dirty = true;
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)?
            } else {
                OpenOptions::new().write(true).open(&path)?
            };
            self.active_len = file.metadata()?.len();
            self.active = Some((write.segment, file));
        }
        if let Some((_, file)) = &self.active {
            // Nothing of this segment waits for a sync: say so in the first record, so that
            // recovery can tell damage to synced records from a torn last round.
            if !self.dirty && write.bytes.len() as u64 >= super::segment::HEADER_LEN {
                super::segment::mark_synced_before(&mut write.bytes);
            }
            file.write_all_at(&write.bytes, write.offset)?;
            let end = write.offset + write.bytes.len() as u64;
            self.active_len = self.active_len.max(end);
            // The zeros share this batch's sync: one journal commit per `zero_ahead` bytes
            // of log instead of one per batch. Recovery reads an all-zero tail as unused
            // space (`segment::scan_segment`).
            if self.zero_ahead > 0 && self.active_len < end + self.zero_ahead / 2 {
                // Page by page: one large write gets large page-cache folios, and a small
                // append into one then dirties the whole folio, which /proc/<pid>/io
                // counts as written (measured: 180 KB per 2 KiB append and sync, while
                // the device wrote 6 KB); with pages both say about 6 KB.
                const PAGE: [u8; 4096] = [0; 4096];
                let until = self.active_len + self.zero_ahead;
                while self.active_len < until {
                    file.write_all_at(&PAGE, self.active_len)?;
                    self.active_len += PAGE.len() as u64;
                }
            }
            self.dirty = true;
        }
        Ok(())
    }

    /// Whether writes are fsynced before they count as durable (`fsync = "always"`, unless
    /// the planted bug `bug.ack_before_fsync` is armed in a failpoint build).
    fn fsync(&self) -> bool {
        #[cfg(feature = "failpoints")]
        if crate::failpoint::planted(crate::failpoint::Bug::AckBeforeFsync) {
            return false;
        }
        self.fsync
    }

    fn sync_active(&mut self) -> io::Result<()> {
        if let (true, Some((_, file))) = (self.dirty, &self.active) {
            if self.fsync() {
                crate::failpoint::point!("log.before_fsync", |msg| Err(io::Error::other(msg)));
                file.sync_data()?;
                self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                crate::failpoint::point!("log.after_fsync", |msg| Err(io::Error::other(msg)));
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Makes all pending writes durable and completes their callbacks in order.
    fn sync_pending(&mut self) {
        if self.failed.is_some() || (self.pending.is_empty() && !self.dirty && !self.dir_dirty) {
            return;
        }
        let synced = self.sync_active().and_then(|()| {
            if self.dir_dirty {
                if self.fsync() {
                    meta::sync_dir(&self.dir)?;
                }
                self.dir_dirty = false;
            }
            Ok(())
        });
        if let Err(e) = synced {
            self.fail(format!("cannot sync log segment: {e}"));
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        if let Some(seq) = pending.iter().filter_map(|p| p.seq).max() {
            self.shared.flushed_seq.fetch_max(seq, Ordering::AcqRel);
        }
        let entries: u64 = pending.iter().map(|p| p.entries).sum();
        self.shared
            .entries_flushed
            .fetch_add(entries, Ordering::Relaxed);
        for p in pending {
            complete(p.done, Ok(()));
        }
    }

    fn truncate(&mut self, delete: &[u64], cut: Option<(u64, u64)>) -> io::Result<()> {
        // Tail segments go first and their removal is made durable before the cut, so a
        // crash in between never leaves a hole in the log.
        self.delete_segments(delete)?;
        if let Some((segment, len)) = cut {
            let opened;
            let file = match &self.active {
                Some((active, file)) if *active == segment => file,
                _ => {
                    opened = OpenOptions::new()
                        .write(true)
                        .open(segment_path(&self.dir, segment))?;
                    &opened
                }
            };
            file.set_len(len)?;
            file.sync_data()?;
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            if self.active.as_ref().map(|(active, _)| *active) == Some(segment) {
                self.active_len = len;
            }
        }
        Ok(())
    }

    fn purge(&mut self, purged: LogId, delete: &[u64]) -> io::Result<()> {
        let started = Instant::now();
        // The purge point is durable before any file goes, so recovery knows why they are gone.
        self.meta.last_purged = Some(purged);
        self.write_meta()?;
        self.delete_segments(delete)?;
        tracing::info!(
            index = purged.index,
            segments = delete.len(),
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "purged log"
        );
        Ok(())
    }

    fn delete_segments(&mut self, segments: &[u64]) -> io::Result<()> {
        for &segment in segments {
            if self.active.as_ref().map(|(active, _)| *active) == Some(segment) {
                self.active = None;
                self.dirty = false;
            }
            remove_if_exists(&segment_path(&self.dir, segment))?;
        }
        if !segments.is_empty() {
            meta::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn write_meta(&mut self) -> io::Result<()> {
        meta::store(&self.dir, &self.meta)?;
        self.committed_dirty = false;
        self.last_meta_write = Instant::now();
        Ok(())
    }

    fn persist_meta(&mut self, what: &str) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.write_meta() {
            self.fail(format!("cannot persist {what}: {e}"));
        }
    }

    /// After an io error nothing is known about what reached the disk: fail everything pending
    /// and everything that comes later.
    fn fail(&mut self, reason: String) {
        if self.failed.is_none() {
            tracing::error!(dir = %self.dir.display(), %reason, "log store failed");
            let _ = self.shared.failed.set(reason.clone());
            self.failed = Some(reason);
        }
        let reason = self.failed.clone().unwrap_or_default();
        for p in std::mem::take(&mut self.pending) {
            complete(p.done, Err(&reason));
        }
    }
}

fn complete(done: Option<Done>, result: Result<(), &String>) {
    if let Some(done) = done {
        done(result.map_err(|reason| io::Error::other(reason.clone())));
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
