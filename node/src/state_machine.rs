//! The replicated state: one ordered stream per channel, with retention, snapshots, and
//! live fan-out of every applied entry to this node's subscribers.
//!
//! The state lives in memory behind [`SharedState`]; durability comes from the Raft log
//! plus snapshot files. On start the latest snapshot is loaded and openraft re-applies the
//! committed log after it, so applying must be deterministic: it depends only on the
//! entries and on [`Retention`], which every node must be configured with alike.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::durable_file;
use crate::groups::Groups;
use crate::transaction;
use crate::types::{
    Entry, EntryPayload, LogId, Request, Response, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use crate::wire_bytes::{PairsBuf, PairsRef};

/// Field/value pairs of one entry, owned.
pub type FieldPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A stream entry's field/value pairs. PUBLISH stores one pair `("message", payload)`.
pub type Fields = Arc<FieldPairs>;

/// How much of each channel a node keeps. Older entries are trimmed when either bound is
/// exceeded; their offsets are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// At most this many entries per channel.
    pub max_entries: u64,
    /// At most this many payload bytes per channel.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_entries: 1_000_000,
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// One committed entry of a channel, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// 1-based, monotonic within the channel; the entry id is `<offset>-0`.
    pub offset: u64,
    pub fields: Fields,
}

impl StreamEntry {
    pub(crate) fn bytes(&self) -> u64 {
        self.fields
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

/// What this node announces to its subscribers, in the order it applies the log.
///
/// Announcements are sent while the state lock is held, so a receiver taken together with
/// the applied index ([`SharedState::subscribe_at`]) gets exactly the announcements of
/// everything applied after that index: nothing earlier, nothing twice.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The Raft log index this node applied it at; for entries that arrived in a snapshot,
    /// the snapshot's last index.
    pub index: u64,
    pub channel: Arc<str>,
    pub event: ChannelEvent,
}

#[derive(Debug, Clone)]
pub enum ChannelEvent {
    /// A new entry of the channel.
    Entry(StreamEntry),
    /// Entries `first..=last` of the channel were committed but trimmed (retention,
    /// MAXLEN) before this node saw them: it caught up by snapshot and cannot deliver
    /// them. Subscribers of the channel must be told, not silently skipped.
    Trimmed { first: u64, last: u64 },
}

/// One channel's stream. After `DEL` the channel stays as a tombstone (`exists` false,
/// no entries, no groups) so that its offsets are never reused.
#[derive(Debug, Default, Clone)]
pub(crate) struct Channel {
    /// The offset of the newest entry ever appended (0: none yet). Also the number of
    /// entries ever added (Redis's `entries-added`).
    pub(crate) last_offset: u64,
    pub(crate) entries: VecDeque<StreamEntry>,
    pub(crate) bytes: u64,
    /// Whether the key exists (false after `DEL`/`UNLINK`, true again on the next append
    /// or `XGROUP CREATE ... MKSTREAM`).
    pub(crate) exists: bool,
    /// The offset of the newest entry removed by `XDEL` (0: none).
    pub(crate) max_deleted: u64,
    /// Consumer groups (see [`crate::groups`]).
    pub(crate) groups: Groups,
}

impl Channel {
    pub(crate) fn trim(&mut self, max_entries: u64, max_bytes: u64) {
        while self.entries.len() as u64 > max_entries || self.bytes > max_bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.bytes(),
                None => break,
            }
        }
    }
}

/// Every channel by name, as the apply logic of [`crate::transaction`] sees it.
pub(crate) type Streams = BTreeMap<Arc<str>, Channel>;

#[derive(Debug, Default)]
struct BusState {
    channels: Streams,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Per-channel figures for INFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    pub name: String,
    pub len: u64,
    pub first_offset: u64,
    pub last_offset: u64,
    pub bytes: u64,
}

/// Read access to the state for client connections, shared with the state machine.
#[derive(Debug)]
pub struct SharedState {
    state: RwLock<BusState>,
    committed_tx: broadcast::Sender<Committed>,
    /// Bumped after every applied batch; blocked XREADs wait on it.
    applied_tx: watch::Sender<u64>,
}

impl SharedState {
    fn new(fanout_capacity: usize) -> Arc<Self> {
        let (committed_tx, _) = broadcast::channel(fanout_capacity.max(16));
        let (applied_tx, _) = watch::channel(0);
        Arc::new(SharedState {
            state: RwLock::new(BusState::default()),
            committed_tx,
            applied_tx,
        })
    }

    /// A receiver of every announcement after the applied index returned with it, in log
    /// order. A receiver that falls behind by more than the fan-out capacity gets `Lagged`
    /// and must be disconnected.
    pub fn subscribe_at(&self) -> (broadcast::Receiver<Committed>, u64) {
        // Under the lock that apply holds while it announces: the pair is consistent.
        let state = self.state.read().expect("state lock poisoned");
        (self.committed_tx.subscribe(), index_of(state.last_applied))
    }

    /// The index of the last applied log entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        index_of(self.state.read().expect("state lock poisoned").last_applied)
    }

    /// Waits until this node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut applied = self.applied_watch();
        while self.applied_index() < index {
            if applied.changed().await.is_err() {
                // The state machine is gone (shutdown): nothing more will be applied.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Changes whenever new entries were applied.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Entries of `channel` with `from <= offset <= to`, at most `limit`.
    pub fn range(&self, channel: &str, from: u64, to: u64, limit: usize) -> Vec<StreamEntry> {
        let state = self.state.read().expect("state lock poisoned");
        let Some(ch) = state.channels.get(channel) else {
            return Vec::new();
        };
        let start = ch.entries.partition_point(|e| e.offset < from);
        ch.entries
            .range(start..)
            .take_while(|e| e.offset <= to)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Entries of `channel` with `offset <= to`, newest first, at most `limit`.
    pub fn range_rev(&self, channel: &str, from: u64, to: u64, limit: usize) -> Vec<StreamEntry> {
        let state = self.state.read().expect("state lock poisoned");
        let Some(ch) = state.channels.get(channel) else {
            return Vec::new();
        };
        let end = ch.entries.partition_point(|e| e.offset <= to);
        ch.entries
            .range(..end)
            .rev()
            .take_while(|e| e.offset >= from)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Number of retained entries in `channel`.
    pub fn len(&self, channel: &str) -> u64 {
        let state = self.state.read().expect("state lock poisoned");
        state
            .channels
            .get(channel)
            .map_or(0, |c| c.entries.len() as u64)
    }

    /// The newest offset ever appended to `channel` (0 when none).
    pub fn last_offset(&self, channel: &str) -> u64 {
        let state = self.state.read().expect("state lock poisoned");
        state.channels.get(channel).map_or(0, |c| c.last_offset)
    }

    pub fn channel_count(&self) -> usize {
        self.state
            .read()
            .expect("state lock poisoned")
            .channels
            .values()
            .filter(|c| c.exists)
            .count()
    }

    /// Runs a read of the streams and their consumer groups under the state lock (XINFO,
    /// XPENDING, EXISTS, ...; see [`crate::transaction::Query`]).
    pub(crate) fn query<R>(&self, f: impl FnOnce(&Streams) -> R) -> R {
        f(&self.state.read().expect("state lock poisoned").channels)
    }

    pub fn channel_stats(&self) -> Vec<ChannelStats> {
        let state = self.state.read().expect("state lock poisoned");
        state
            .channels
            .iter()
            .filter(|(_, ch)| ch.exists)
            .map(|(name, ch)| ChannelStats {
                name: name.to_string(),
                len: ch.entries.len() as u64,
                first_offset: ch.entries.front().map_or(0, |e| e.offset),
                last_offset: ch.last_offset,
                bytes: ch.bytes,
            })
            .collect()
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.state.read().expect("state lock poisoned").last_applied
    }
}

/// The snapshot body, as written. Entries are stored owned; see [`SnapshotView`] for the
/// borrowed form used while writing.
#[derive(Debug, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    channels: Vec<SnapshotChannel>,
    /// One per channel, in the same order: key existence, XDEL mark, consumer groups.
    extras: Vec<ChannelExtra>,
}

/// The snapshot body written before consumer groups existed (no `extras`).
#[derive(Debug, Deserialize)]
struct LegacySnapshotBody {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    channels: Vec<SnapshotChannel>,
}

/// The per-channel state besides its entries.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChannelExtra {
    exists: bool,
    max_deleted: u64,
    groups: Groups,
}

impl SnapshotBody {
    fn decode(data: &[u8]) -> Result<SnapshotBody, bincode::Error> {
        bincode::deserialize(data).or_else(|e| match bincode::deserialize(data) {
            Ok(LegacySnapshotBody {
                last_applied,
                membership,
                channels,
            }) => Ok(SnapshotBody {
                last_applied,
                membership,
                extras: channels
                    .iter()
                    .map(|_| ChannelExtra {
                        exists: true,
                        ..ChannelExtra::default()
                    })
                    .collect(),
                channels,
            }),
            Err(_) => Err(e),
        })
    }
}

#[derive(Debug, Deserialize)]
struct SnapshotChannel {
    name: String,
    last_offset: u64,
    entries: Vec<(u64, PairsBuf)>,
}

#[derive(Serialize)]
struct SnapshotView<'a> {
    last_applied: Option<LogId>,
    membership: &'a StoredMembership,
    channels: Vec<SnapshotChannelView<'a>>,
    extras: &'a [ChannelExtra],
}

#[derive(Serialize)]
struct SnapshotChannelView<'a> {
    name: &'a str,
    last_offset: u64,
    entries: Vec<(u64, PairsRef<'a>)>,
}

/// A snapshot file: metadata plus the body bytes.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    #[serde(with = "crate::wire_bytes::bytes")]
    data: Vec<u8>,
}

impl StoredSnapshot {
    /// The bytes bincode writes for this snapshot before `data`: the metadata and the
    /// length of `data`. Written ahead of `data` they make the file without copying the
    /// body into a second buffer of its size.
    fn frame_head(&self) -> Result<Vec<u8>, bincode::Error> {
        let mut head = bincode::serialize(&self.meta)?;
        head.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        Ok(head)
    }
}

const SNAPSHOT_FILE: &str = "snapshot.bin";

fn index_of(log_id: Option<LogId>) -> u64 {
    log_id.map_or(0, |l| l.index)
}

/// The snapshot file on disk, shared by snapshot builds and installs, which openraft may
/// run at the same time: whoever holds the lock writes, and only a newer snapshot replaces
/// the file (a slow build must not put older state back over an installed snapshot after
/// the log was purged).
#[derive(Debug, Default)]
struct SnapshotFile {
    /// The last log id of the snapshot in the file (`None`: no file yet).
    last_log_id: Option<LogId>,
}

type SnapshotSlot = Arc<tokio::sync::Mutex<SnapshotFile>>;

/// Writes `stored` as the snapshot file unless the file already holds a snapshot at least
/// as new. Returns whether it was written, and the snapshot back.
async fn store_snapshot(
    slot: &SnapshotSlot,
    dir: &Path,
    stored: StoredSnapshot,
) -> Result<(bool, StoredSnapshot), io::Error> {
    let mut file = slot.lock().await;
    if file.last_log_id.is_some() && file.last_log_id >= stored.meta.last_log_id {
        return Ok((false, stored));
    }
    let path = dir.join(SNAPSHOT_FILE);
    // Framed and written off the async workers.
    let stored = crate::background::run("rb-snap-store", move || {
        let head = stored.frame_head().map_err(io_err)?;
        durable_file::write_atomic_parts(&path, &[&head, &stored.data]).map(|()| stored)
    })
    .await??;
    file.last_log_id = stored.meta.last_log_id;
    Ok((true, stored))
}

/// Test hook: a snapshot build waits here after serializing, before it stores the file.
#[cfg(test)]
type BuildGate = Option<Arc<tokio::sync::Semaphore>>;

/// The state machine given to openraft.
pub struct StateMachine {
    shared: Arc<SharedState>,
    retention: Retention,
    dir: PathBuf,
    snapshot_file: SnapshotSlot,
    #[cfg(test)]
    build_gate: BuildGate,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachine {
    /// Opens the state machine in `dir`, restoring the latest snapshot if there is one.
    pub fn open(
        dir: &Path,
        retention: Retention,
        fanout_capacity: usize,
    ) -> Result<(Self, Arc<SharedState>), io::Error> {
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let shared = SharedState::new(fanout_capacity);
        durable_file::remove_temps(&dir.join(SNAPSHOT_FILE)).map_err(io_err)?;
        let mut sm = StateMachine {
            shared: shared.clone(),
            retention,
            dir: dir.to_path_buf(),
            snapshot_file: SnapshotSlot::default(),
            #[cfg(test)]
            build_gate: None,
        };
        if let Some(stored) = sm.read_snapshot_file()? {
            sm.snapshot_file = Arc::new(tokio::sync::Mutex::new(SnapshotFile {
                last_log_id: stored.meta.last_log_id,
            }));
            sm.restore(&stored.data, false)?;
            tracing::info!(
                last_applied = ?stored.meta.last_log_id,
                "restored state from snapshot"
            );
        }
        Ok((sm, shared))
    }

    fn read_snapshot_file(&self) -> Result<Option<StoredSnapshot>, io::Error> {
        let path = self.dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => bincode::deserialize(&bytes).map(Some).map_err(io_err),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Replaces the whole state with a snapshot body. With `announce`, what is new to this
    /// node is handed to local subscribers: entries it had not applied, in offset order per
    /// channel, and a [`ChannelEvent::Trimmed`] for those the snapshot no longer holds.
    fn restore(&mut self, data: &[u8], announce: bool) -> Result<(), io::Error> {
        let body = SnapshotBody::decode(data).map_err(io_err)?;
        self.restore_body(body, announce)
    }

    fn restore_body(&mut self, body: SnapshotBody, announce: bool) -> Result<(), io::Error> {
        let index = index_of(body.last_applied);
        let mut state = self.shared.state.write().expect("state lock poisoned");
        let mut channels = BTreeMap::new();
        let mut extras = body.extras.into_iter();
        for ch in body.channels {
            let name: Arc<str> = Arc::from(ch.name.as_str());
            let known = state.channels.get(&name).map_or(0, |c| c.last_offset);
            let extra = extras.next().unwrap_or_default();
            let mut channel = Channel {
                last_offset: ch.last_offset,
                exists: extra.exists,
                max_deleted: extra.max_deleted,
                groups: extra.groups,
                ..Channel::default()
            };
            // Offsets after `known` that the snapshot no longer holds (retention, MAXLEN,
            // XTRIM, XDEL, DEL) cannot be delivered here: say so, range by range.
            let gap = |first: u64, last: u64| {
                let _ = self.shared.committed_tx.send(Committed {
                    index,
                    channel: name.clone(),
                    event: ChannelEvent::Trimmed { first, last },
                });
            };
            let mut expected = known + 1;
            for (offset, PairsBuf(fields)) in ch.entries {
                let entry = StreamEntry {
                    offset,
                    fields: Arc::new(fields),
                };
                channel.bytes += entry.bytes();
                if announce && offset > known {
                    if offset > expected {
                        gap(expected, offset - 1);
                    }
                    expected = offset + 1;
                    let _ = self.shared.committed_tx.send(Committed {
                        index,
                        channel: name.clone(),
                        event: ChannelEvent::Entry(entry.clone()),
                    });
                }
                channel.entries.push_back(entry);
            }
            if announce && ch.last_offset >= expected {
                gap(expected, ch.last_offset);
            }
            channels.insert(name, channel);
        }
        state.channels = channels;
        state.last_applied = body.last_applied;
        state.membership = body.membership;
        drop(state);
        self.shared.applied_tx.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Appends to a channel and announces the entry (under the caller's state lock).
    fn apply_append(
        &self,
        channels: &mut Streams,
        index: u64,
        channel: String,
        fields: Fields,
        max_len: Option<u64>,
    ) -> u64 {
        let name: Arc<str> = match channels.get_key_value(channel.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(channel.as_str()),
        };
        let ch = channels.entry(name.clone()).or_default();
        ch.exists = true;
        ch.last_offset += 1;
        let entry = StreamEntry {
            offset: ch.last_offset,
            fields,
        };
        ch.bytes += entry.bytes();
        ch.entries.push_back(entry.clone());
        let max_entries = max_len.unwrap_or(u64::MAX).min(self.retention.max_entries);
        ch.trim(max_entries, self.retention.max_bytes);
        let offset = ch.last_offset;
        let committed = Committed {
            index,
            channel: name,
            event: ChannelEvent::Entry(entry),
        };
        #[cfg(feature = "failpoints")]
        crate::failpoint::announce(&self.shared.committed_tx, committed);
        // No receivers is fine: nobody subscribed on this node.
        #[cfg(not(feature = "failpoints"))]
        let _ = self.shared.committed_tx.send(committed);
        offset
    }
}

impl StateMachine {
    /// Applies committed entries in order; one response per entry.
    pub async fn apply_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<Response>, io::Error> {
        crate::failpoint::point!("sm.before_apply", |msg| Err(io_err(msg)));
        let mut replies = Vec::new();
        {
            let mut state = self.shared.state.write().expect("state lock poisoned");
            for entry in entries {
                let index = entry.log_id.index;
                state.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => replies.push(Response::None),
                    EntryPayload::Membership(m) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), m);
                        replies.push(Response::None);
                    }
                    EntryPayload::Normal(Request::Append {
                        channel,
                        fields,
                        max_len,
                    }) => {
                        let offset = self.apply_append(
                            &mut state.channels,
                            index,
                            channel,
                            Arc::new(fields),
                            max_len,
                        );
                        replies.push(Response::Appended { offset });
                    }
                    EntryPayload::Normal(Request::Batch(appends)) => {
                        #[cfg(feature = "failpoints")]
                        let again = crate::failpoint::apply_twice(entry.log_id.leader_id.term)
                            .then(|| appends.clone());
                        let mut offsets = Vec::with_capacity(appends.len());
                        for a in appends {
                            offsets.push(self.apply_append(
                                &mut state.channels,
                                index,
                                a.channel,
                                a.fields,
                                a.max_len,
                            ));
                        }
                        #[cfg(feature = "failpoints")]
                        if let Some(again) = again {
                            tracing::warn!(index, "planted bug: applying a batch a second time");
                            for a in again {
                                self.apply_append(
                                    &mut state.channels,
                                    index,
                                    a.channel,
                                    a.fields,
                                    a.max_len,
                                );
                            }
                        }
                        replies.push(Response::Batch(offsets));
                    }
                    EntryPayload::Normal(Request::Exec(exec)) => {
                        let values = transaction::apply(&mut state.channels, exec, &mut |s, a| {
                            self.apply_append(s, index, a.channel, a.fields, a.max_len)
                        });
                        replies.push(Response::Exec(values));
                    }
                }
            }
        }
        self.shared.applied_tx.send_modify(|n| *n += 1);
        crate::failpoint::point!("sm.after_apply", |msg| Err(io_err(msg)));
        Ok(replies)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.shared.state.read().expect("state lock poisoned");
        Ok((state.last_applied, state.membership.clone()))
    }

    /// Takes every entry openraft hands over in this call, applies them under one state
    /// lock, then answers the waiting proposers (on the leader).
    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            batch.push(entry);
            responders.push(responder);
        }
        let replies = self.apply_entries(batch).await?;
        for (responder, reply) in responders.into_iter().zip(replies) {
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
            file: self.snapshot_file.clone(),
            #[cfg(test)]
            gate: self.build_gate.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        crate::failpoint::point!("sm.snapshot_install", |msg| Err(io_err(msg)));
        let data = snapshot.into_inner();
        // Decoding every entry is CPU work: off the async workers, but at normal priority
        // (unlike the build): a node catching up must not wait for an idle CPU.
        let (data, body) = tokio::task::spawn_blocking(move || {
            let body = SnapshotBody::decode(&data);
            (data, body)
        })
        .await
        .map_err(io_err)?;
        self.restore_body(body.map_err(io_err)?, true)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        if !store_snapshot(&self.snapshot_file, &self.dir, stored)
            .await?
            .0
        {
            tracing::warn!(last_log_id = ?meta.last_log_id, "installed snapshot is not newer than the stored one; file kept");
        }
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.read_snapshot_file()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Cursor::new(s.data),
        }))
    }
}

/// Builds a snapshot of the current state and stores it in the data dir.
pub struct SnapshotBuilder {
    shared: Arc<SharedState>,
    dir: PathBuf,
    file: SnapshotSlot,
    #[cfg(test)]
    gate: BuildGate,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        crate::failpoint::point!("sm.snapshot_build", |msg| Err(io_err(msg)));
        let started = std::time::Instant::now();
        // Copy the Arc'd entries under the lock, serialize outside it, so applying is
        // blocked only for the copy.
        let (last_applied, membership, channels, extras) = {
            let state = self.shared.state.read().expect("state lock poisoned");
            let channels: Vec<(Arc<str>, u64, Vec<StreamEntry>)> = state
                .channels
                .iter()
                .map(|(name, ch)| {
                    (
                        name.clone(),
                        ch.last_offset,
                        ch.entries.iter().cloned().collect(),
                    )
                })
                .collect();
            let extras: Vec<ChannelExtra> = state
                .channels
                .values()
                .map(|ch| ChannelExtra {
                    exists: ch.exists,
                    max_deleted: ch.max_deleted,
                    groups: ch.groups.clone(),
                })
                .collect();
            (
                state.last_applied,
                state.membership.clone(),
                channels,
                extras,
            )
        };
        // Serializing every entry is CPU work of its own: done off the async workers and at
        // a lower priority (crate::background), so the write path keeps flowing meanwhile.
        let copied = started.elapsed();
        let snapshot_membership = membership.clone();
        let data = crate::background::run("rb-snap-encode", move || {
            let view = SnapshotView {
                last_applied,
                membership: &snapshot_membership,
                channels: channels
                    .iter()
                    .map(|(name, last_offset, entries)| SnapshotChannelView {
                        name,
                        last_offset: *last_offset,
                        entries: entries
                            .iter()
                            .map(|e| (e.offset, PairsRef(e.fields.as_slice())))
                            .collect(),
                    })
                    .collect(),
                extras: &extras,
            };
            bincode::serialize(&view)
        })
        .await?
        .map_err(io_err)?;
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
        };
        let stored = StoredSnapshot { meta, data };
        let encoded = started.elapsed();
        #[cfg(test)]
        if let Some(gate) = &self.gate {
            let _ = gate.acquire().await;
        }
        let (stored_now, stored) = store_snapshot(&self.file, &self.dir, stored).await?;
        if stored_now {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            tracing::info!(
                last_log_id = ?stored.meta.last_log_id,
                bytes = stored.data.len(),
                copy_ms = ms(copied),
                encode_ms = ms(encoded - copied),
                store_ms = ms(started.elapsed() - encoded),
                "built snapshot"
            );
        } else {
            // openraft ignores a built snapshot older than the one it has.
            tracing::info!(last_log_id = ?stored.meta.last_log_id, "built snapshot superseded by a newer one; not stored");
        }
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Cursor::new(stored.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EntryPayload, LeaderId};

    fn append(index: u64, channel: &str, msg: &str) -> Entry {
        Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                index,
            ),
            payload: EntryPayload::Normal(Request::Append {
                channel: channel.into(),
                fields: vec![(b"message".to_vec(), msg.as_bytes().to_vec())],
                max_len: None,
            }),
        }
    }

    #[tokio::test]
    async fn offsets_are_per_channel_and_retention_trims_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_entries: 2,
            max_bytes: u64::MAX,
        };
        let (mut sm, shared) = StateMachine::open(dir.path(), retention, 64).unwrap();
        let replies = sm
            .apply_entries(vec![
                append(1, "a", "x"),
                append(2, "b", "y"),
                append(3, "a", "z"),
                append(4, "a", "w"),
            ])
            .await
            .unwrap();
        assert_eq!(
            replies,
            vec![
                Response::Appended { offset: 1 },
                Response::Appended { offset: 1 },
                Response::Appended { offset: 2 },
                Response::Appended { offset: 3 },
            ]
        );
        let a = shared.range("a", 0, u64::MAX, 10);
        assert_eq!(a.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(shared.len("a"), 2);
        assert_eq!(shared.last_offset("a"), 3);
        assert_eq!(shared.range_rev("a", 0, u64::MAX, 1)[0].offset, 3);
    }

    #[test]
    fn the_frame_head_and_the_data_are_what_bincode_writes_for_the_whole_snapshot() {
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(
                    LeaderId {
                        term: 3,
                        node_id: 2,
                    },
                    41,
                )),
                last_membership: Default::default(),
            },
            data: (0..=255u8).cycle().take(1000).collect(),
        };
        let mut framed = stored.frame_head().unwrap();
        framed.extend_from_slice(&stored.data);
        assert_eq!(framed, bincode::serialize(&stored).unwrap());
        let back: StoredSnapshot = bincode::deserialize(&framed).unwrap();
        assert_eq!(back.data, stored.data);
        assert_eq!(back.meta, stored.meta);
    }

    #[tokio::test]
    async fn snapshot_round_trip_restores_state_and_announces_new_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _shared) = StateMachine::open(dir.path(), Retention::default(), 64).unwrap();
        sm.apply_entries(vec![append(1, "a", "x"), append(2, "a", "y")])
            .await
            .unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        let snap = builder.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.unwrap().index, 2);

        // A node that had only the first entry installs the snapshot: it announces the second.
        let other = tempfile::tempdir().unwrap();
        let (mut sm2, shared2) =
            StateMachine::open(other.path(), Retention::default(), 64).unwrap();
        sm2.apply_entries(vec![append(1, "a", "x")]).await.unwrap();
        let (mut rx, at) = shared2.subscribe_at();
        assert_eq!(at, 1);
        sm2.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!(got.index, 2);
        assert!(matches!(got.event, ChannelEvent::Entry(ref e) if e.offset == 2));
        assert!(rx.try_recv().is_err());
        assert_eq!(shared2.len("a"), 2);

        // Reopening from disk restores the snapshot.
        drop(sm2);
        let (_sm3, shared3) = StateMachine::open(other.path(), Retention::default(), 64).unwrap();
        assert_eq!(shared3.len("a"), 2);
        assert_eq!(shared3.last_applied().unwrap().index, 2);
    }

    fn offsets(rx: &mut broadcast::Receiver<Committed>) -> Vec<(u64, u64)> {
        let mut got = Vec::new();
        while let Ok(c) = rx.try_recv() {
            match c.event {
                ChannelEvent::Entry(e) => got.push((c.index, e.offset)),
                ChannelEvent::Trimmed { first, last } => panic!("unexpected gap {first}..{last}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn a_receiver_gets_exactly_what_is_applied_after_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, shared) = StateMachine::open(dir.path(), Retention::default(), 64).unwrap();
        let (mut before, at0) = shared.subscribe_at();
        assert_eq!(at0, 0);
        sm.apply_entries(vec![append(1, "a", "x"), append(2, "a", "y")])
            .await
            .unwrap();
        let (mut after, at2) = shared.subscribe_at();
        assert_eq!(at2, 2);
        sm.apply_entries(vec![append(3, "a", "z")]).await.unwrap();
        assert_eq!(offsets(&mut before), vec![(1, 1), (2, 2), (3, 3)]);
        assert_eq!(offsets(&mut after), vec![(3, 3)]);
    }

    #[tokio::test]
    async fn snapshot_install_reports_entries_trimmed_before_they_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_entries: 2,
            max_bytes: u64::MAX,
        };
        let (mut leader, _) = StateMachine::open(dir.path(), retention, 64).unwrap();
        let writes: Vec<Entry> = (1..=5).map(|i| append(i, "a", "m")).collect();
        leader.apply_entries(writes).await.unwrap();
        let snap = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

        // A follower that has offset 1 only: 2 and 3 were trimmed, 4 and 5 are in the snapshot.
        let other = tempfile::tempdir().unwrap();
        let (mut follower, shared) = StateMachine::open(other.path(), retention, 64).unwrap();
        follower
            .apply_entries(vec![append(1, "a", "m")])
            .await
            .unwrap();
        let (mut rx, _) = shared.subscribe_at();
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let first = rx.try_recv().unwrap();
        assert!(matches!(
            first.event,
            ChannelEvent::Trimmed { first: 2, last: 3 }
        ));
        assert_eq!(offsets(&mut rx), vec![(5, 4), (5, 5)]);
    }

    #[tokio::test]
    async fn a_slow_snapshot_build_never_replaces_a_newer_installed_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _) = StateMachine::open(dir.path(), Retention::default(), 64).unwrap();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        sm.build_gate = Some(gate.clone());
        sm.apply_entries(vec![append(1, "a", "x"), append(2, "a", "y")])
            .await
            .unwrap();
        // The build copies the state at index 2, then waits at the gate before storing.
        let mut slow = sm.get_snapshot_builder().await;
        let build = tokio::spawn(async move { slow.build_snapshot().await.unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;

        // Meanwhile the leader sends a snapshot at index 4, which is installed.
        let leader_dir = tempfile::tempdir().unwrap();
        let (mut leader, _) =
            StateMachine::open(leader_dir.path(), Retention::default(), 64).unwrap();
        let writes: Vec<Entry> = (1..=4).map(|i| append(i, "a", "m")).collect();
        leader.apply_entries(writes).await.unwrap();
        let newer = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        sm.install_snapshot(&newer.meta, newer.snapshot)
            .await
            .unwrap();

        gate.add_permits(1);
        let older = build.await.unwrap();
        assert_eq!(older.meta.last_log_id.unwrap().index, 2);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id.unwrap().index, 4);
        drop(sm);
        let (_reopened, shared) = StateMachine::open(dir.path(), Retention::default(), 64).unwrap();
        assert_eq!(shared.last_applied().unwrap().index, 4);
        assert_eq!(shared.len("a"), 4);
        // Only the snapshot file is left: no temp file of either writer.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![SNAPSHOT_FILE.to_string()]);
    }
}
