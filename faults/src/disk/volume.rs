//! The lazy volume: what the FUSE filesystem serves, without any FUSE in it (so its rules can
//! be tested directly).
//!
//! - **Data.** A write lands in the volume's memory ([`FileData`]: dirty 4 KiB pages, the
//!   volatile size, a pending truncation) and reads see it; `fsync`/`fdatasync` of that file
//!   writes it to the backing file and syncs the backing file. [`Volume::drop_unsynced`]
//!   forgets every dirty page.
//! - **Names.** create, mkdir, unlink, rmdir and rename are applied to the backing directory at
//!   once, so the backing tree always mirrors what processes see, and each is recorded in an
//!   ordered undo log (a removed file is moved to a trash directory so it can come back).
//!   `fsync` of a directory makes every logged change up to the last one that touched that
//!   directory durable (a prefix, as a journalling filesystem commits it). A power loss undoes
//!   the rest, newest first. This is stricter than LazyFS, which does not model directories.
//! - **Torn writes.** [`Volume::tear_last_write`] is a power loss in which the newest unsynced
//!   write reached the backing file only in part (a prefix of it). A disk writes whole
//!   sectors, from what the page cache holds when it writes them: the bytes of that sector
//!   before the write (earlier unsynced writes included) reach the disk with it. Other
//!   unsynced writes are lost, so a hole can precede it, but never inside one sector.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Hidden directory at the backing root holding removed files until a power loss brings them
/// back (or the volume is unmounted). Never visible through the mount.
pub const TRASH: &str = ".raftbus-lazyfs-trash";
/// Bytes per dirty page.
pub(crate) const PAGE: u64 = 4096;
/// Bytes per disk sector: the unit a disk writes (see [`Volume::tear_last_write`]).
pub(crate) const SECTOR: u64 = 512;
/// Inode number of the root directory.
pub(crate) const ROOT: u64 = 1;

/// What a power loss dropped, for the journal and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropReport {
    /// Files that had unsynced data.
    pub files: usize,
    /// Unsynced bytes (dirty pages) forgotten.
    pub bytes: u64,
    /// Directory changes (create, rename, unlink, ...) undone.
    pub namespace_ops: usize,
    /// The torn write, for [`Volume::tear_last_write`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn: Option<TornWrite>,
}

impl std::fmt::Display for DropReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped {} unsynced bytes in {} files and {} unsynced directory changes",
            self.bytes, self.files, self.namespace_ops
        )?;
        if let Some(t) = &self.torn {
            write!(
                f,
                "; tore the last write to {} at byte {}: {} of {} bytes kept",
                t.path, t.offset, t.kept, t.len
            )?;
        }
        Ok(())
    }
}

/// The last unsynced write of a file, kept only as a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornWrite {
    /// Path inside the volume.
    pub path: String,
    /// Offset of the write.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// Bytes of it that reached the backing file.
    pub kept: u64,
}

/// Counters, for tests and notes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStats {
    /// Writes received.
    pub writes: u64,
    /// File fsyncs that wrote data through.
    pub file_syncs: u64,
    /// Directory fsyncs.
    pub dir_syncs: u64,
    /// Power losses (drops).
    pub drops: u64,
}

/// Unsynced state of one regular file.
#[derive(Debug)]
struct FileData {
    /// Dirty pages, each holding the file's current content for that page.
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Size as processes see it.
    size: u64,
    /// Size of the backing file.
    durable_size: u64,
    /// Backing bytes from here on are hidden (a truncation not synced yet).
    cut: Option<u64>,
    /// The newest write: global sequence number, offset, bytes.
    last_write: Option<(u64, u64, Vec<u8>)>,
    /// When the oldest unsynced change of this file was made.
    dirty_since: std::time::Instant,
}

impl FileData {
    fn visible_backing(&self) -> u64 {
        self.cut
            .map_or(self.durable_size, |c| c.min(self.durable_size))
    }

    fn dirty_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }
}

/// One logged directory change and how to undo it.
#[derive(Debug, Clone)]
enum NsOp {
    Created {
        path: PathBuf,
        dir: bool,
    },
    Removed {
        path: PathBuf,
        trash: PathBuf,
    },
    Renamed {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
    },
}

#[derive(Debug)]
struct Logged {
    op: NsOp,
    /// Inodes of the directories it changed.
    dirs: Vec<u64>,
    at: std::time::Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Other,
}

#[derive(Debug)]
struct Inode {
    /// Path relative to the backing root; `None` once its creation was undone.
    path: Option<PathBuf>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Volume {
    backing: PathBuf,
    inodes: HashMap<u64, Inode>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    data: HashMap<u64, FileData>,
    files: HashMap<u64, File>,
    log: Vec<Logged>,
    trash_seq: u64,
    write_seq: u64,
    stats: VolumeStats,
}

/// `errno`-carrying result of volume operations.
pub type VResult<T> = Result<T, io::Error>;

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Volume {
    /// A volume over the existing directory `backing`. A trash directory left by an earlier
    /// session is emptied (its files were removed before that session ended).
    pub fn new(backing: &Path) -> io::Result<Volume> {
        let backing = backing.canonicalize()?;
        let trash = backing.join(TRASH);
        if trash.exists() {
            fs::remove_dir_all(&trash)?;
        }
        fs::create_dir(&trash)?;
        let mut v = Volume {
            backing,
            inodes: HashMap::new(),
            by_path: HashMap::new(),
            next_ino: ROOT + 1,
            data: HashMap::new(),
            files: HashMap::new(),
            log: Vec::new(),
            trash_seq: 0,
            write_seq: 0,
            stats: VolumeStats::default(),
        };
        v.inodes.insert(
            ROOT,
            Inode {
                path: Some(PathBuf::new()),
            },
        );
        v.by_path.insert(PathBuf::new(), ROOT);
        Ok(v)
    }

    /// The backing directory.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Counters.
    pub fn stats(&self) -> VolumeStats {
        self.stats
    }

    /// Unsynced bytes (dirty pages) held in memory.
    pub fn dirty_bytes(&self) -> u64 {
        self.data.values().map(FileData::dirty_bytes).sum()
    }

    /// Directory changes not yet made durable.
    pub fn pending_namespace_ops(&self) -> usize {
        self.log.len()
    }

    /// Removes the trash directory (at unmount).
    pub fn clear_trash(&mut self) -> io::Result<()> {
        let trash = self.backing.join(TRASH);
        match fs::remove_dir_all(&trash) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) fn path_of(&self, ino: u64) -> VResult<PathBuf> {
        self.inodes
            .get(&ino)
            .and_then(|i| i.path.clone())
            .ok_or_else(|| errno(libc::ESTALE))
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    /// The inode of `rel`, assigned on first sight.
    pub(crate) fn ino_for(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.by_path.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                path: Some(rel.to_path_buf()),
            },
        );
        self.by_path.insert(rel.to_path_buf(), ino);
        ino
    }

    /// Path of `name` in directory `parent`, refusing the trash and odd names.
    pub(crate) fn child(&self, parent: u64, name: &OsStr) -> VResult<PathBuf> {
        let dir = self.path_of(parent)?;
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/')
        {
            return Err(errno(libc::EINVAL));
        }
        if dir.as_os_str().is_empty() && name == TRASH {
            return Err(errno(libc::ENOENT));
        }
        Ok(dir.join(name))
    }

    /// `lstat` of the backing path, with the volatile size of a dirty file.
    pub(crate) fn stat(&self, ino: u64) -> VResult<(fs::Metadata, Option<u64>)> {
        let path = self.path_of(ino)?;
        let meta = fs::symlink_metadata(self.full(&path))?;
        Ok((meta, self.data.get(&ino).map(|d| d.size)))
    }

    pub(crate) fn kind_of(meta: &fs::Metadata) -> Kind {
        if meta.is_dir() {
            Kind::Dir
        } else if meta.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }

    /// Names in a directory (the trash hidden), sorted, with their inodes and kinds.
    pub(crate) fn list(&mut self, ino: u64) -> VResult<Vec<(u64, Kind, std::ffi::OsString)>> {
        let dir = self.path_of(ino)?;
        let mut names = Vec::new();
        for item in fs::read_dir(self.full(&dir))? {
            let item = item?;
            let name = item.file_name();
            if dir.as_os_str().is_empty() && name == TRASH {
                continue;
            }
            let ft = item.file_type()?;
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else {
                Kind::Other
            };
            names.push((name, kind));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(names
            .into_iter()
            .map(|(name, kind)| (self.ino_for(&dir.join(&name)), kind, name))
            .collect())
    }

    fn record(&mut self, op: NsOp, dirs: Vec<u64>) {
        self.log.push(Logged {
            op,
            dirs,
            at: std::time::Instant::now(),
        });
    }

    /// Creates a regular file (`O_EXCL` semantics) and returns its inode.
    pub fn create_file(&mut self, parent: u64, name: &OsStr, mode: u32) -> VResult<u64> {
        let rel = self.child(parent, name)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(self.full(&rel))?;
        let ino = self.fresh_ino(&rel);
        self.record(
            NsOp::Created {
                path: rel,
                dir: false,
            },
            vec![parent],
        );
        Ok(ino)
    }

    /// Creates a directory.
    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> VResult<u64> {
        let rel = self.child(parent, name)?;
        fs::create_dir(self.full(&rel))?;
        fs::set_permissions(self.full(&rel), fs::Permissions::from_mode(mode & 0o7777))?;
        let ino = self.fresh_ino(&rel);
        self.record(
            NsOp::Created {
                path: rel,
                dir: true,
            },
            vec![parent],
        );
        Ok(ino)
    }

    /// A new name always gets a new inode (an old inode of the same path is gone).
    fn fresh_ino(&mut self, rel: &Path) -> u64 {
        if let Some(old) = self.by_path.remove(rel) {
            self.forget_ino(old);
        }
        self.ino_for(rel)
    }

    fn forget_ino(&mut self, ino: u64) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.path = None;
        }
        self.data.remove(&ino);
        self.files.remove(&ino);
    }

    fn trash_path(&mut self) -> PathBuf {
        self.trash_seq += 1;
        Path::new(TRASH).join(format!("{}", self.trash_seq))
    }

    /// Moves the inode table entries of `from` (and everything below it) to `to`.
    fn move_paths(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (p, ino) in moved {
            self.by_path.remove(&p);
            let rest = p.strip_prefix(from).expect("filtered by prefix");
            let np = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            if let Some(i) = self.inodes.get_mut(&ino) {
                i.path = Some(np.clone());
            }
            self.by_path.insert(np, ino);
        }
    }

    /// Removes a file (`dir == false`) or an empty directory, keeping it in the trash.
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> VResult<()> {
        let rel = self.child(parent, name)?;
        let full = self.full(&rel);
        let meta = fs::symlink_metadata(&full)?;
        if dir {
            if !meta.is_dir() {
                return Err(errno(libc::ENOTDIR));
            }
            if fs::read_dir(&full)?.next().is_some() {
                return Err(errno(libc::ENOTEMPTY));
            }
        } else if meta.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        let trash = self.trash_path();
        fs::rename(&full, self.full(&trash))?;
        self.move_paths(&rel, &trash);
        self.record(NsOp::Removed { path: rel, trash }, vec![parent]);
        Ok(())
    }

    /// rename(2), with `RENAME_NOREPLACE` when `noreplace`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> VResult<()> {
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        let from_meta = fs::symlink_metadata(self.full(&from))?;
        if from == to {
            return Ok(());
        }
        if to.starts_with(&from) {
            return Err(errno(libc::EINVAL));
        }
        let replaced = match fs::symlink_metadata(self.full(&to)) {
            Ok(_) if noreplace => return Err(errno(libc::EEXIST)),
            Ok(meta) => {
                if meta.is_dir() != from_meta.is_dir() {
                    return Err(errno(if meta.is_dir() {
                        libc::EISDIR
                    } else {
                        libc::ENOTDIR
                    }));
                }
                if meta.is_dir() && fs::read_dir(self.full(&to))?.next().is_some() {
                    return Err(errno(libc::ENOTEMPTY));
                }
                let trash = self.trash_path();
                fs::rename(self.full(&to), self.full(&trash))?;
                self.move_paths(&to, &trash);
                Some(trash)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Err(e) = fs::rename(self.full(&from), self.full(&to)) {
            if let Some(trash) = &replaced {
                let _ = fs::rename(self.full(trash), self.full(&to));
                self.move_paths(trash, &to);
            }
            return Err(e);
        }
        self.move_paths(&from, &to);
        let mut dirs = vec![parent];
        if new_parent != parent {
            dirs.push(new_parent);
        }
        self.record(NsOp::Renamed { from, to, replaced }, dirs);
        Ok(())
    }

    fn backing_file(&mut self, ino: u64) -> VResult<&File> {
        if !self.files.contains_key(&ino) {
            let path = self.path_of(ino)?;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.full(&path))?;
            self.files.insert(ino, f);
        }
        Ok(&self.files[&ino])
    }

    fn data_mut(&mut self, ino: u64) -> VResult<&mut FileData> {
        if !self.data.contains_key(&ino) {
            let len = self.backing_file(ino)?.metadata()?.len();
            self.data.insert(
                ino,
                FileData {
                    pages: BTreeMap::new(),
                    size: len,
                    durable_size: len,
                    cut: None,
                    last_write: None,
                    dirty_since: std::time::Instant::now(),
                },
            );
        }
        Ok(self.data.get_mut(&ino).expect("inserted"))
    }

    /// The current size of a file (volatile if dirty).
    pub fn size(&mut self, ino: u64) -> VResult<u64> {
        match self.data.get(&ino) {
            Some(d) => Ok(d.size),
            None => Ok(self.backing_file(ino)?.metadata()?.len()),
        }
    }

    /// Reads up to `len` bytes at `offset`, unsynced data included.
    pub fn read(&mut self, ino: u64, offset: u64, len: u64) -> VResult<Vec<u8>> {
        let (size, visible) = match self.data.get(&ino) {
            Some(d) => (d.size, d.visible_backing()),
            None => {
                let len = self.backing_file(ino)?.metadata()?.len();
                (len, len)
            }
        };
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let end = size.min(offset.saturating_add(len));
        let mut buf = vec![0u8; (end - offset) as usize];
        let from_backing = visible.min(end);
        if from_backing > offset {
            read_full_at(
                self.backing_file(ino)?,
                &mut buf[..(from_backing - offset) as usize],
                offset,
            )?;
        }
        if let Some(d) = self.data.get(&ino) {
            for (&page, bytes) in d.pages.range(offset / PAGE..=(end - 1) / PAGE) {
                let pstart = page * PAGE;
                let lo = pstart.max(offset);
                let hi = (pstart + PAGE).min(end);
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&bytes[(lo - pstart) as usize..(hi - pstart) as usize]);
            }
        }
        Ok(buf)
    }

    /// Writes `bytes` at `offset` into memory; returns the bytes written.
    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> VResult<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        self.data_mut(ino)?;
        let end = offset
            .checked_add(bytes.len() as u64)
            .ok_or_else(|| errno(libc::EFBIG))?;
        for page in offset / PAGE..=(end - 1) / PAGE {
            if !self.data[&ino].pages.contains_key(&page) {
                let visible = self.data[&ino].visible_backing();
                let mut buf = vec![0u8; PAGE as usize].into_boxed_slice();
                let pstart = page * PAGE;
                let upto = visible.min(pstart + PAGE);
                if upto > pstart {
                    read_full_at(
                        self.backing_file(ino)?,
                        &mut buf[..(upto - pstart) as usize],
                        pstart,
                    )?;
                }
                self.data_mut(ino)?.pages.insert(page, buf);
            }
            let d = self.data_mut(ino)?;
            let pstart = page * PAGE;
            let lo = pstart.max(offset);
            let hi = (pstart + PAGE).min(end);
            let dst = d.pages.get_mut(&page).expect("materialized");
            dst[(lo - pstart) as usize..(hi - pstart) as usize]
                .copy_from_slice(&bytes[(lo - offset) as usize..(hi - offset) as usize]);
        }
        self.write_seq += 1;
        let seq = self.write_seq;
        let d = self.data_mut(ino)?;
        d.size = d.size.max(end);
        d.last_write = Some((seq, offset, bytes.to_vec()));
        self.stats.writes += 1;
        Ok(bytes.len())
    }

    /// Sets the size (in memory until the next fsync).
    pub fn truncate(&mut self, ino: u64, len: u64) -> VResult<()> {
        let d = self.data_mut(ino)?;
        d.size = len;
        d.cut = Some(d.cut.map_or(len, |c| c.min(len)));
        d.last_write = None;
        let first_gone = len.div_ceil(PAGE);
        d.pages.retain(|&p, _| p < first_gone);
        if len % PAGE != 0 {
            if let Some(page) = d.pages.get_mut(&(len / PAGE)) {
                page[(len % PAGE) as usize..].fill(0);
            }
        }
        Ok(())
    }

    /// fsync/fdatasync: writes the file's unsynced data to the backing file and syncs it.
    pub fn sync_file(&mut self, ino: u64) -> VResult<()> {
        let Some(d) = self.data.remove(&ino) else {
            // Nothing unsynced; still sync what the backing file has.
            if self.path_of(ino).is_ok() {
                self.backing_file(ino)?.sync_data()?;
            }
            return Ok(());
        };
        let result = (|| -> VResult<()> {
            let file = self.backing_file(ino)?;
            if let Some(cut) = d.cut {
                if cut < d.durable_size {
                    file.set_len(cut)?;
                }
            }
            for (&page, bytes) in &d.pages {
                let pstart = page * PAGE;
                if pstart >= d.size {
                    continue;
                }
                let n = PAGE.min(d.size - pstart) as usize;
                file.write_all_at(&bytes[..n], pstart)?;
            }
            file.set_len(d.size)?;
            file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.stats.file_syncs += 1;
                Ok(())
            }
            Err(e) => {
                // Keep the data: the fsync failed, nothing is known to be durable.
                self.data.insert(ino, d);
                Err(e)
            }
        }
    }

    /// fsync of a directory: every logged change up to the last one that touched it is
    /// durable.
    pub fn sync_dir(&mut self, ino: u64) -> VResult<()> {
        let path = self.path_of(ino)?;
        File::open(self.full(&path))?.sync_all()?;
        if let Some(last) = self.log.iter().rposition(|l| l.dirs.contains(&ino)) {
            self.log.drain(..=last);
        }
        self.stats.dir_syncs += 1;
        Ok(())
    }

    /// Makes everything durable: every dirty file is synced and every directory change
    /// committed (what the kernel eventually does with a killed process's page cache).
    pub fn write_back(&mut self) -> io::Result<()> {
        let dirty: Vec<u64> = self.data.keys().copied().collect();
        for ino in dirty {
            self.sync_file(ino)?;
        }
        self.log.clear();
        Ok(())
    }

    /// Background writeback, as the kernel's flusher does with old dirty pages: every file
    /// whose oldest unsynced change is older than `age` is synced, and the directory changes
    /// older than `age` are committed (a prefix of the log). Returns the files written.
    pub fn write_back_older_than(&mut self, age: std::time::Duration) -> io::Result<usize> {
        let old: Vec<u64> = self
            .data
            .iter()
            .filter(|(_, d)| d.dirty_since.elapsed() >= age)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in &old {
            self.sync_file(*ino)?;
        }
        let keep_from = self
            .log
            .iter()
            .position(|l| l.at.elapsed() < age)
            .unwrap_or(self.log.len());
        self.log.drain(..keep_from);
        Ok(old.len())
    }

    /// Power loss: forget every unsynced write and undo every directory change that was not
    /// made durable, newest first.
    pub fn drop_unsynced(&mut self) -> io::Result<DropReport> {
        let mut report = DropReport {
            files: self
                .data
                .values()
                .filter(|d| !d.pages.is_empty() || d.cut.is_some())
                .count(),
            bytes: self.dirty_bytes(),
            ..DropReport::default()
        };
        self.data.clear();
        let log = std::mem::take(&mut self.log);
        report.namespace_ops = log.len();
        let mut first_err = None;
        for logged in log.into_iter().rev() {
            if let Err(e) = self.undo(&logged.op) {
                tracing::warn!(op = ?logged.op, error = %e, "undoing a directory change failed");
                first_err.get_or_insert(e);
            }
        }
        // Backing files may have been replaced under the cached handles.
        self.files.clear();
        self.stats.drops += 1;
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn undo(&mut self, op: &NsOp) -> io::Result<()> {
        match op {
            NsOp::Created { path, dir } => {
                let full = self.full(path);
                if *dir {
                    fs::remove_dir(&full)?;
                } else {
                    fs::remove_file(&full)?;
                }
                if let Some(ino) = self.by_path.remove(path) {
                    self.forget_ino(ino);
                }
            }
            NsOp::Removed { path, trash } => {
                fs::rename(self.full(trash), self.full(path))?;
                self.move_paths(trash, path);
            }
            NsOp::Renamed { from, to, replaced } => {
                fs::rename(self.full(to), self.full(from))?;
                self.move_paths(to, from);
                if let Some(trash) = replaced {
                    fs::rename(self.full(trash), self.full(to))?;
                    self.move_paths(trash, to);
                }
            }
        }
        Ok(())
    }

    /// Power loss in which the newest unsynced write survives as a prefix of `keep` (0 to 1,
    /// of its length; at least one byte is kept and at least one lost when it has two), with
    /// the bytes its first sector held before it as the page cache has them now (a sector
    /// is written whole: an earlier unsynced write to that sector cannot be lost while a
    /// later one survives). Without any unsynced write this is a plain
    /// [`Volume::drop_unsynced`].
    pub fn tear_last_write(&mut self, keep: f64) -> io::Result<DropReport> {
        let newest = self
            .data
            .iter()
            .filter_map(|(ino, d)| d.last_write.as_ref().map(|(seq, _, _)| (*seq, *ino)))
            .max();
        let mut torn = None;
        if let Some((_, ino)) = newest {
            let (_, offset, bytes) = self.data[&ino]
                .last_write
                .clone()
                .expect("filtered on last_write");
            let len = bytes.len() as u64;
            let kept = if len < 2 {
                len
            } else {
                ((len as f64 * keep.clamp(0.0, 1.0)) as u64).clamp(1, len - 1)
            };
            let path = self.path_of(ino)?;
            let sector_start = offset / SECTOR * SECTOR;
            let mut sector = self.read(ino, sector_start, offset - sector_start)?;
            // A file extended past its end by this write reads short there: zeros.
            sector.resize((offset - sector_start) as usize, 0);
            sector.extend_from_slice(&bytes[..kept as usize]);
            let file = self.backing_file(ino)?;
            file.write_all_at(&sector, sector_start)?;
            file.sync_data()?;
            torn = Some(TornWrite {
                path: path.display().to_string(),
                offset,
                len,
                kept,
            });
        }
        let mut report = self.drop_unsynced()?;
        report.torn = torn;
        Ok(report)
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break, // past the end of the backing file: zeros
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol() -> (tempfile::TempDir, Volume) {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::new(dir.path()).unwrap();
        (dir, v)
    }

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn unsynced_writes_are_readable_and_lost_on_drop() {
        let (dir, mut v) = vol();
        let f = v.create_file(ROOT, name("a"), 0o644).unwrap();
        v.sync_dir(ROOT).unwrap();
        v.write(f, 0, b"hello world").unwrap();
        assert_eq!(v.read(f, 0, 100).unwrap(), b"hello world");
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"");
        let r = v.drop_unsynced().unwrap();
        assert_eq!((r.files, r.namespace_ops), (1, 0));
        assert_eq!(v.read(f, 0, 100).unwrap(), b"");
    }

    #[test]
    fn synced_writes_survive_and_later_ones_do_not() {
        let (dir, mut v) = vol();
        let f = v.create_file(ROOT, name("a"), 0o644).unwrap();
        v.sync_dir(ROOT).unwrap();
        v.write(f, 0, b"durable ").unwrap();
        v.sync_file(f).unwrap();
        v.write(f, 8, b"volatile").unwrap();
        assert_eq!(v.read(f, 0, 100).unwrap(), b"durable volatile");
        v.drop_unsynced().unwrap();
        assert_eq!(v.read(f, 0, 100).unwrap(), b"durable ");
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"durable ");
    }

    #[test]
    fn writes_across_pages_and_truncation() {
        let (_dir, mut v) = vol();
        let f = v.create_file(ROOT, name("a"), 0o644).unwrap();
        v.sync_dir(ROOT).unwrap();
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        v.write(f, 0, &big).unwrap();
        v.sync_file(f).unwrap();
        v.truncate(f, 5000).unwrap();
        v.write(f, 6000, b"xy").unwrap();
        let got = v.read(f, 0, 20_000).unwrap();
        assert_eq!(got.len(), 6002);
        assert_eq!(&got[..5000], &big[..5000]);
        assert!(
            got[5000..6000].iter().all(|&b| b == 0),
            "truncated bytes came back"
        );
        assert_eq!(&got[6000..], b"xy");
        v.sync_file(f).unwrap();
        v.drop_unsynced().unwrap();
        assert_eq!(v.read(f, 0, 20_000).unwrap(), got);
    }

    #[test]
    fn new_files_need_a_directory_fsync() {
        let (dir, mut v) = vol();
        let f = v.create_file(ROOT, name("new"), 0o644).unwrap();
        v.write(f, 0, b"data").unwrap();
        v.sync_file(f).unwrap();
        let r = v.drop_unsynced().unwrap();
        assert_eq!(r.namespace_ops, 1);
        assert!(!dir.path().join("new").exists(), "unsynced create survived");
        assert!(v.path_of(f).is_err());
        let g = v.create_file(ROOT, name("kept"), 0o644).unwrap();
        v.sync_dir(ROOT).unwrap();
        v.drop_unsynced().unwrap();
        assert!(dir.path().join("kept").exists());
        assert!(v.path_of(g).is_ok());
    }

    #[test]
    fn rename_and_unlink_are_undone_without_a_directory_fsync() {
        let (dir, mut v) = vol();
        let a = v.create_file(ROOT, name("meta"), 0o644).unwrap();
        v.write(a, 0, b"old").unwrap();
        v.sync_file(a).unwrap();
        v.sync_dir(ROOT).unwrap();
        // The atomic-replace dance without the final directory fsync.
        let t = v.create_file(ROOT, name("meta.tmp"), 0o644).unwrap();
        v.write(t, 0, b"new").unwrap();
        v.sync_file(t).unwrap();
        v.rename(ROOT, name("meta.tmp"), ROOT, name("meta"), false)
            .unwrap();
        assert_eq!(v.read(t, 0, 10).unwrap(), b"new");
        v.remove(ROOT, name("meta"), false).unwrap();
        assert!(!dir.path().join("meta").exists());
        let r = v.drop_unsynced().unwrap();
        assert_eq!(r.namespace_ops, 3);
        assert_eq!(fs::read(dir.path().join("meta")).unwrap(), b"old");
        assert!(!dir.path().join("meta.tmp").exists());
        let ino = v.ino_for(Path::new("meta"));
        assert_eq!(ino, a, "the old inode is back under its name");
        assert_eq!(v.read(a, 0, 10).unwrap(), b"old");
    }

    #[test]
    fn directory_fsync_commits_a_prefix() {
        let (dir, mut v) = vol();
        let d = v.mkdir(ROOT, name("log"), 0o755).unwrap();
        v.sync_dir(ROOT).unwrap();
        v.create_file(d, name("seg1"), 0o644).unwrap();
        v.create_file(ROOT, name("other"), 0o644).unwrap();
        v.sync_dir(d).unwrap();
        v.create_file(d, name("seg2"), 0o644).unwrap();
        let r = v.drop_unsynced().unwrap();
        assert_eq!(r.namespace_ops, 2);
        assert!(dir.path().join("log/seg1").exists());
        assert!(!dir.path().join("log/seg2").exists());
        assert!(!dir.path().join("other").exists());
    }

    /// A file `file` holding "first;" synced, then "second;" written after it, unsynced.
    fn synced_then_unsynced(file: &str) -> (tempfile::TempDir, Volume, u64) {
        let (dir, mut v) = vol();
        let f = v.create_file(ROOT, name(file), 0o644).unwrap();
        v.sync_dir(ROOT).unwrap();
        v.write(f, 0, b"first;").unwrap();
        v.sync_file(f).unwrap();
        v.write(f, 6, b"second;").unwrap();
        (dir, v, f)
    }

    #[test]
    fn torn_write_leaves_a_prefix() {
        let (dir, mut v, f) = synced_then_unsynced("aof");
        v.write(f, 13, b"0123456789").unwrap();
        let r = v.tear_last_write(0.5).unwrap();
        let t = r.torn.unwrap();
        assert_eq!((t.offset, t.len, t.kept), (13, 10, 5));
        // A prefix of the last write is there, and the earlier unsynced write in its sector
        // with it: the disk wrote that sector whole.
        let on_disk = fs::read(dir.path().join("aof")).unwrap();
        assert_eq!(on_disk, b"first;second;01234");
        assert_eq!(v.read(f, 0, 100).unwrap(), on_disk);
    }

    #[test]
    fn a_torn_write_loses_earlier_unsynced_writes_in_other_sectors() {
        let (dir, mut v, f) = synced_then_unsynced("log");
        // The last write starts in the third sector: the second write's sector was
        // written back or not, independently of it (here: not).
        v.write(f, 1100, b"0123456789").unwrap();
        let r = v.tear_last_write(0.3).unwrap();
        assert_eq!(r.torn.unwrap().kept, 3);
        let on_disk = fs::read(dir.path().join("log")).unwrap();
        assert_eq!(on_disk.len(), 1103);
        assert_eq!(&on_disk[..6], b"first;");
        assert!(on_disk[6..1100].iter().all(|&b| b == 0), "a hole");
        assert_eq!(&on_disk[1100..], b"012");
        assert_eq!(v.read(f, 0, 2000).unwrap(), on_disk);
    }

    #[test]
    fn writeback_persists_only_old_changes() {
        let (dir, mut v) = vol();
        let f = v.create_file(ROOT, name("old"), 0o644).unwrap();
        v.write(f, 0, b"old data").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let g = v.create_file(ROOT, name("new"), 0o644).unwrap();
        v.write(g, 0, b"new data").unwrap();
        let n = v
            .write_back_older_than(std::time::Duration::from_millis(20))
            .unwrap();
        assert_eq!(n, 1);
        v.drop_unsynced().unwrap();
        assert_eq!(fs::read(dir.path().join("old")).unwrap(), b"old data");
        assert!(!dir.path().join("new").exists());
    }

    #[test]
    fn trash_is_hidden_and_names_are_checked() {
        let (_dir, mut v) = vol();
        assert!(v.child(ROOT, name(TRASH)).is_err());
        assert!(v.child(ROOT, name("a/b")).is_err());
        assert!(v.list(ROOT).unwrap().is_empty());
        v.mkdir(ROOT, name("d"), 0o755).unwrap();
        v.create_file(ROOT, name("f"), 0o644).unwrap();
        let e = v.remove(ROOT, name("d"), false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let d = v.ino_for(Path::new("d"));
        v.create_file(d, name("x"), 0o644).unwrap();
        let e = v.remove(ROOT, name("d"), true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
        let names: Vec<_> = v.list(ROOT).unwrap().into_iter().map(|e| e.2).collect();
        assert_eq!(names, ["d", "f"]);
    }
}
