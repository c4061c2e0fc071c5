//! Mounting: [`LazyMount`] serves a [`Volume`] at a mount point through `/dev/fuse` (fuser's
//! pure-Rust mount, no libfuse), [`DiskControl`] is the handle through which faults act on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use nix::mount::MntFlags;

use super::corrupt::{CorruptMode, CorruptReport};
use super::fs::{LazyFs, Shared};
use super::volume::{DropReport, Volume, VolumeStats};
use crate::error::{Error, Result};
use crate::remote::disk::RemoteDisk;

/// A mounted lazy filesystem; unmounted on [`LazyMount::unmount`] or drop.
///
/// Unmount only after every process using it is gone (a busy mount is detached lazily and
/// its FUSE connection aborted).
pub struct LazyMount {
    mountpoint: PathBuf,
    backing: PathBuf,
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
    /// `st_dev` of the mount, which names its FUSE connection in fusectl.
    dev: u64,
    /// Stops the writeback thread.
    writeback_stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl std::fmt::Debug for LazyMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyMount")
            .field("mountpoint", &self.mountpoint)
            .field("backing", &self.backing)
            .finish_non_exhaustive()
    }
}

impl LazyMount {
    /// Mounts a lazy filesystem backed by the directory `backing` at `mountpoint` (both must
    /// exist). Mount it inside the lab (a private mount namespace) so that a killed harness
    /// leaves no mount behind.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<LazyMount> {
        Self::mount_with(backing, mountpoint, None)
    }

    /// Like [`LazyMount::mount`]; with `writeback = Some(age)` a background thread writes
    /// back changes once they are older than `age`, as the kernel's flusher does with dirty
    /// pages (Linux: `vm.dirty_expire_centisecs`, 30 s by default), so a power loss loses
    /// only what is younger. `None`: nothing is ever written back unless fsynced (LazyFS).
    pub fn mount_with(
        backing: &Path,
        mountpoint: &Path,
        writeback: Option<std::time::Duration>,
    ) -> Result<LazyMount> {
        let volume = Volume::new(backing)
            .map_err(|e| Error::io(format!("preparing backing dir {}", backing.display()), e))?;
        let backing = volume.backing().to_path_buf();
        let shared = Shared::new(volume);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("raftbus-lazyfs".into()),
            MountOption::Subtype("raftbus-lazyfs".into()),
            MountOption::NoAtime,
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(2);
        let fs = LazyFs {
            shared: shared.clone(),
        };
        let session = fuser::spawn_mount(fs, mountpoint, &config).map_err(|e| {
            Error::io(
                format!("mounting the lazy filesystem at {}", mountpoint.display()),
                e,
            )
        })?;
        let dev = nix::sys::stat::stat(mountpoint)
            .map(|s| s.st_dev)
            .unwrap_or(0);
        let writeback_stop = writeback.map(|age| {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (flag, shared) = (stop.clone(), shared.clone());
            let tick = (age / 4).clamp(
                std::time::Duration::from_millis(10),
                std::time::Duration::from_millis(500),
            );
            std::thread::Builder::new()
                .name("lazyfs-writeback".into())
                .spawn(move || {
                    while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        if let Err(e) = shared.lock().write_back_older_than(age) {
                            tracing::warn!(error = %e, "lazy filesystem writeback failed");
                        }
                    }
                })
                .map(|_| stop)
        });
        let writeback_stop = match writeback_stop {
            None => None,
            Some(Ok(stop)) => Some(stop),
            Some(Err(e)) => return Err(Error::io("starting the writeback thread", e)),
        };
        tracing::info!(mountpoint = %mountpoint.display(), backing = %backing.display(), ?writeback, "lazy filesystem mounted");
        Ok(LazyMount {
            mountpoint: mountpoint
                .canonicalize()
                .unwrap_or_else(|_| mountpoint.to_path_buf()),
            backing,
            shared,
            session: Some(session),
            dev,
            writeback_stop,
        })
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing directory (what is durable).
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// The handle faults use.
    pub fn control(&self) -> DiskControl {
        DiskControl {
            served: Served::Here(self.shared.clone()),
            backing: self.backing.clone(),
        }
    }

    /// Unmounts (lazily when busy, aborting the FUSE connection) and waits for the server
    /// thread. Idempotent; also run on drop.
    pub fn unmount(&mut self) -> Result<()> {
        if let Some(stop) = self.writeback_stop.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // fuser's own unmount first (umount(2), then the server thread ends); a busy mount
        // is detached lazily and its FUSE connection aborted so the thread ends anyway.
        let busy = match session.umount_and_join() {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "lazy filesystem busy at unmount, detaching it");
                match nix::mount::umount2(&self.mountpoint, MntFlags::MNT_DETACH) {
                    Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                    Err(e) => return Err(Error::sys("umount2", e)),
                }
                abort_connection(self.dev);
                true
            }
        };
        if let Err(e) = self.shared.lock().clear_trash() {
            tracing::warn!(error = %e, "cannot remove the lazy filesystem trash");
        }
        tracing::info!(mountpoint = %self.mountpoint.display(), busy, "lazy filesystem unmounted");
        Ok(())
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            tracing::warn!(error = %e, "unmounting the lazy filesystem failed");
        }
    }
}

/// Writes `1` to the fusectl `abort` file of the connection `dev` (mounting fusectl first
/// when it is not: inside the lab's private mount namespace that touches nothing outside).
fn abort_connection(dev: u64) {
    let dir = Path::new("/sys/fs/fuse/connections");
    let conn = dir.join(dev.to_string());
    if !conn.exists() {
        let _ = nix::mount::mount(
            Some("fusectl"),
            dir,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    match std::fs::write(conn.join("abort"), b"1") {
        Ok(()) => tracing::warn!(dev, "aborted a busy lazy filesystem connection"),
        Err(e) => tracing::warn!(dev, error = %e, "cannot abort the lazy filesystem connection"),
    }
}

/// What faults do to a mounted lazy filesystem: one mounted here ([`LazyMount::control`]) or
/// one served on a remote host ([`DiskControl::remote`]). Cheap to clone.
#[derive(Clone)]
pub struct DiskControl {
    served: Served,
    backing: PathBuf,
}

#[derive(Clone)]
enum Served {
    Here(Arc<Shared>),
    Remote(Arc<RemoteDisk>),
}

impl std::fmt::Debug for DiskControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskControl")
            .field("backing", &self.backing)
            .field("remote", &matches!(self.served, Served::Remote(_)))
            .finish_non_exhaustive()
    }
}

impl DiskControl {
    /// The handle of a lazy filesystem served on a remote host.
    pub fn remote(disk: RemoteDisk) -> DiskControl {
        DiskControl {
            backing: disk.backing().to_path_buf(),
            served: Served::Remote(Arc::new(disk)),
        }
    }

    /// Power loss: forget every unsynced write and directory change. Kill the processes
    /// using the filesystem first. Inverse: restart them (they recover from what is durable).
    pub fn drop_unsynced(&self) -> Result<DropReport> {
        match &self.served {
            Served::Here(shared) => shared
                .lock()
                .drop_unsynced()
                .map_err(|e| Error::io("dropping unsynced data", e)),
            Served::Remote(disk) => disk.drop_unsynced(),
        }
    }

    /// Power loss in which the newest unsynced write survives as a prefix (`keep` of its
    /// length, 0 to 1). Inverse: restart.
    pub fn tear_last_write(&self, keep: f64) -> Result<DropReport> {
        match &self.served {
            Served::Here(shared) => shared
                .lock()
                .tear_last_write(keep)
                .map_err(|e| Error::io("tearing the last write", e)),
            Served::Remote(disk) => disk.tear_last_write(keep),
        }
    }

    /// Writes every unsynced change through to the backing directory, as the kernel
    /// eventually does with the page cache of a killed process (used before `corrupt`).
    pub fn write_back(&self) -> Result<()> {
        match &self.served {
            Served::Here(shared) => shared
                .lock()
                .write_back()
                .map_err(|e| Error::io("writing unsynced data back", e)),
            Served::Remote(disk) => disk.write_back(),
        }
    }

    /// Writes back what is unsynced, then damages the backing directory's largest file
    /// ([`super::corrupt_seeded`]), here or on the remote host. The processes using the
    /// filesystem must be gone.
    pub fn corrupt(&self, mode: CorruptMode, seed: u64) -> Result<CorruptReport> {
        match &self.served {
            Served::Here(_) => {
                self.write_back()?;
                super::corrupt_seeded(&self.backing, mode, seed)
            }
            Served::Remote(disk) => disk.corrupt(mode, seed),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Result<VolumeStats> {
        match &self.served {
            Served::Here(shared) => Ok(shared.lock().stats()),
            Served::Remote(disk) => disk.stats(),
        }
    }

    /// The backing directory (on the remote host for a remote disk).
    pub fn backing(&self) -> &Path {
        &self.backing
    }
}
