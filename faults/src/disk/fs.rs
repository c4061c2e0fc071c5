//! The FUSE side: [`LazyFs`] answers kernel requests from a shared [`Volume`].
//!
//! Kernel caching is off: entry and attribute timeouts are zero (every path walk and `stat`
//! asks us) and every open file is `FOPEN_DIRECT_IO` (no page cache), so after a drop
//! processes see exactly what the volume holds. `O_APPEND` writes go to the volume's own end
//! of file, not to the kernel's idea of it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::volume::{Kind, Volume};

const TTL: Duration = Duration::ZERO;

/// Shared between the filesystem (served on fuser's thread) and the [`super::DiskControl`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) volume: Mutex<Volume>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Handle {
    append: bool,
}

impl Shared {
    pub(crate) fn new(volume: Volume) -> Arc<Shared> {
        Arc::new(Shared {
            volume: Mutex::new(volume),
            handles: Mutex::new(HashMap::new()),
            next_fh: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Volume> {
        self.volume.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_handle(&self, flags: i32) -> FileHandle {
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.handles().insert(
            fh,
            Handle {
                append: flags & libc::O_APPEND != 0,
            },
        );
        FileHandle(fh)
    }
}

/// The filesystem handed to fuser.
#[derive(Debug)]
pub(crate) struct LazyFs {
    pub(crate) shared: Arc<Shared>,
}

fn err(e: std::io::Error) -> Errno {
    Errno::from(e)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, meta: &fs::Metadata, size: Option<u64>) -> FileAttr {
    let kind = match Volume::kind_of(meta) {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Other => {
            let ft = meta.file_type();
            use std::os::unix::fs::FileTypeExt;
            if ft.is_symlink() {
                FileType::Symlink
            } else if ft.is_fifo() {
                FileType::NamedPipe
            } else if ft.is_socket() {
                FileType::Socket
            } else if ft.is_char_device() {
                FileType::CharDevice
            } else {
                FileType::BlockDevice
            }
        }
    };
    let size = size.unwrap_or(meta.size());
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.ctime(), meta.ctime_nsec()),
        kind,
        perm: (meta.permissions().mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl LazyFs {
    fn attr_of(&self, v: &Volume, ino: u64) -> Result<FileAttr, Errno> {
        let (meta, size) = v.stat(ino).map_err(err)?;
        Ok(attr(ino, &meta, size))
    }
}

fn to_system_time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut v = self.shared.lock();
        let result = v.child(parent.0, name).and_then(|rel| {
            let meta = fs::symlink_metadata(v.backing().join(&rel))?;
            let ino = v.ino_for(&rel);
            let size = v.stat(ino).ok().and_then(|(_, s)| s);
            Ok(attr(ino, &meta, size))
        });
        match result {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let v = self.shared.lock();
        match self.attr_of(&v, ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut v = self.shared.lock();
        let result = (|| -> std::io::Result<()> {
            let path = v.backing().join(v.path_of(ino.0)?);
            if let Some(len) = size {
                v.truncate(ino.0, len)?;
            }
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&path, uid, gid)?;
            }
            if atime.is_some() || mtime.is_some() {
                let f = fs::File::options()
                    .write(true)
                    .open(&path)
                    .or_else(|_| fs::File::open(&path))?;
                let mut times = fs::FileTimes::new();
                if let Some(a) = atime {
                    times = times.set_accessed(to_system_time(a));
                }
                if let Some(m) = mtime {
                    times = times.set_modified(to_system_time(m));
                }
                f.set_times(times)?;
            }
            Ok(())
        })();
        match result.map_err(err).and_then(|()| self.attr_of(&v, ino.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut v = self.shared.lock();
        match v
            .mkdir(parent.0, name, mode & !umask)
            .map_err(err)
            .and_then(|ino| self.attr_of(&v, ino))
        {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.shared.lock().remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.shared.lock().remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self
            .shared
            .lock()
            .rename(parent.0, name, newparent.0, newname, noreplace)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut v = self.shared.lock();
        if flags.0 & libc::O_TRUNC != 0 && flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            if let Err(e) = v.truncate(ino.0, 0) {
                reply.error(err(e));
                return;
            }
        }
        if let Err(e) = v.path_of(ino.0) {
            reply.error(err(e));
            return;
        }
        drop(v);
        let fh = self.shared.open_handle(flags.0);
        reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut v = self.shared.lock();
        let result = match v.create_file(parent.0, name, mode & !umask) {
            Ok(ino) => Ok(ino),
            // Lost a race with another creator: open the existing file (unless O_EXCL).
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && flags & libc::O_EXCL == 0 => v
                .child(parent.0, name)
                .map(|rel| v.ino_for(&rel))
                .and_then(|ino| {
                    if flags & libc::O_TRUNC != 0 {
                        v.truncate(ino, 0)?;
                    }
                    Ok(ino)
                }),
            Err(e) => Err(e),
        };
        match result.map_err(err).and_then(|ino| self.attr_of(&v, ino)) {
            Ok(a) => {
                drop(v);
                let fh = self.shared.open_handle(flags);
                reply.created(&TTL, &a, Generation(0), fh, FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.shared.lock().read(ino.0, offset, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let append = self.shared.handles().get(&fh.0).is_some_and(|h| h.append);
        let mut v = self.shared.lock();
        let result = (|| {
            let at = if append { v.size(ino.0)? } else { offset };
            v.write(ino.0, at, data)
        })();
        match result {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) does not make anything durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.shared.handles().remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.shared.lock().sync_file(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.shared.lock().path_of(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut v = self.shared.lock();
        let list = match v.list(ino.0) {
            Ok(l) => l,
            Err(e) => {
                reply.error(err(e));
                return;
            }
        };
        let mut entries: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        entries.extend(list.into_iter().map(|(i, k, n)| {
            let kind = match k {
                Kind::Dir => FileType::Directory,
                Kind::File => FileType::RegularFile,
                Kind::Other => FileType::RegularFile,
            };
            (i, kind, n)
        }));
        for (k, (i, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), (k + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.shared.lock().sync_dir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = self.shared.lock().backing().to_path_buf();
        match nix::sys::statvfs::statvfs(&backing) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.shared.lock().path_of(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }
}
