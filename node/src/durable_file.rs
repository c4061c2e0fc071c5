//! Crash-safe whole-file replacement: write a temp file, fsync it, rename it over the
//! target, fsync the directory. A crash leaves either the old or the new file, never a mix.
//!
//! Every write gets its own temp file, so two writers of the same target never share (and
//! tear) one; which of them wins the rename is the caller's to decide.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A temp file name for one write of `path`: `.<name>.<pid>-<n>.tmp` beside it, never
/// handed out twice by this process.
pub fn unique_temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".{}.{}-{n}.tmp",
        file_name(path),
        std::process::id()
    ))
}

/// Removes temp files of `path` left by writes that crashed before their rename (they hold
/// nothing that was ever current). Returns what was removed.
pub fn remove_temps(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let prefix = format!(".{}.", file_name(path));
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Makes file creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// Atomically replaces `path` with the concatenation of `parts` (no copy into one buffer).
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = unique_temp_path(path);
    {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vote");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_are_unique_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        let (a, b) = (unique_temp_path(&path), unique_temp_path(&path));
        assert_ne!(a, b);
        std::fs::write(&a, b"half").unwrap();
        std::fs::write(&b, b"half").unwrap();
        std::fs::write(dir.path().join("other"), b"keep").unwrap();
        let mut removed = remove_temps(&path).unwrap();
        removed.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(dir.path().join("other").exists());
    }
}
