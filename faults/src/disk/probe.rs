//! Can FUSE be mounted here? Tried for real: open `/dev/fuse` and mount a FUSE filesystem
//! (with nobody serving it) on a scratch directory, then unmount it at once.

use std::ffi::CString;
use std::path::PathBuf;

/// Tries a FUSE mount in the current mount namespace. Call it only inside the lab (a
/// private mount namespace): the test mount lives for a moment on a scratch directory.
pub fn fuse_usable() -> Result<(), String> {
    let dir = ScratchDir::new()?;
    mount_test(&dir.c_path).map_err(|e| explain(e, false))
}

/// Human-readable reason for a failed test mount.
pub(crate) fn explain(e: nix::errno::Errno, rootless: bool) -> String {
    match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ENODEV => {
            "no /dev/fuse (load the fuse module: modprobe fuse)".to_string()
        }
        nix::errno::Errno::EPERM | nix::errno::Errno::EACCES if rootless => {
            "this kernel does not allow FUSE mounts in a user namespace".to_string()
        }
        other => format!("test mount of a FUSE filesystem failed: {other}"),
    }
}

/// A scratch mount point, removed on drop.
pub(crate) struct ScratchDir {
    path: PathBuf,
    pub(crate) c_path: CString,
}

impl ScratchDir {
    pub(crate) fn new() -> Result<ScratchDir, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "raftbus-fuse-probe-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| format!("scratch path: {e}"))?;
        Ok(ScratchDir { path, c_path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Appends the decimal digits of `n` to `buf` at `pos`.
fn push_num(buf: &mut [u8], pos: &mut usize, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut k = 0;
    loop {
        digits[k] = b'0' + (n % 10) as u8;
        k += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        buf[*pos] = digits[k];
        *pos += 1;
    }
}

fn push(buf: &mut [u8], pos: &mut usize, s: &[u8]) {
    buf[*pos..*pos + s.len()].copy_from_slice(s);
    *pos += s.len();
}

/// Opens `/dev/fuse`, mounts it on `target` and unmounts it. Async-signal-safe (system calls
/// on prepared data and a stack buffer only), so it may run in `pre_exec`.
pub(crate) fn mount_test(target: &std::ffi::CStr) -> Result<(), nix::errno::Errno> {
    // SAFETY: plain system calls on NUL-terminated strings and a stack buffer that outlives
    // them; the fd is closed on every path.
    unsafe {
        let fd = libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(nix::errno::Errno::last());
        }
        let mut opts = [0u8; 128];
        let mut pos = 0;
        push(&mut opts, &mut pos, b"fd=");
        push_num(&mut opts, &mut pos, fd as u32);
        push(&mut opts, &mut pos, b",rootmode=40000,user_id=");
        push_num(&mut opts, &mut pos, libc::getuid());
        push(&mut opts, &mut pos, b",group_id=");
        push_num(&mut opts, &mut pos, libc::getgid());
        opts[pos] = 0;
        let rc = libc::mount(
            c"raftbus-probe".as_ptr(),
            target.as_ptr(),
            c"fuse".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        );
        let err = nix::errno::Errno::last();
        if rc == 0 {
            libc::umount2(target.as_ptr(), libc::MNT_DETACH);
        }
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}
