//! `corrupt`: damage one data file of a node that is down — flip bits in it or cut it short —
//! as a failing disk or a buggy controller can. It acts on a plain directory (a lazy
//! filesystem's backing directory, or a data dir without one).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::volume::TRASH;
use crate::error::{Error, Result};

/// How a file is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorruptMode {
    /// XOR one byte in the middle half of the file with a random non-zero mask.
    FlipBits,
    /// Cut the file at a point in its middle half.
    Truncate,
}

impl std::fmt::Display for CorruptMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CorruptMode::FlipBits => "flip-bits",
            CorruptMode::Truncate => "truncate",
        })
    }
}

/// What was damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptReport {
    /// The file, relative to the directory.
    pub path: PathBuf,
    /// Its length before.
    pub len: u64,
    /// Where.
    pub offset: u64,
    pub mode: CorruptMode,
    /// The XOR mask (flip-bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<u8>,
}

impl std::fmt::Display for CorruptReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.mode, self.mask) {
            (CorruptMode::FlipBits, Some(mask)) => write!(
                f,
                "flipped bits {mask:#04x} at byte {} of {} ({} bytes)",
                self.offset,
                self.path.display(),
                self.len
            ),
            _ => write!(
                f,
                "truncated {} from {} to {} bytes",
                self.path.display(),
                self.len,
                self.offset
            ),
        }
    }
}

/// [`corrupt()`] with the offset and bits chosen by `seed` (the same seed, the same damage;
/// the harness journals the seed).
pub fn corrupt_seeded(dir: &Path, mode: CorruptMode, seed: u64) -> Result<CorruptReport> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    corrupt(dir, mode, &mut rng)
}

/// Damages the largest regular file under `dir` (the lazy filesystem's trash excluded).
/// Nothing may be using the file. Inverse: none for the data — the restarted node must
/// detect it (and refuse to start or repair).
pub fn corrupt<R: Rng + ?Sized>(
    dir: &Path,
    mode: CorruptMode,
    rng: &mut R,
) -> Result<CorruptReport> {
    let (path, len) = largest_file(dir)?.ok_or_else(|| {
        Error::Invalid(format!(
            "no non-empty data file to corrupt under {}",
            dir.display()
        ))
    })?;
    let offset = if len < 4 {
        rng.gen_range(0..len)
    } else {
        rng.gen_range(len / 4..len * 3 / 4)
    };
    let full = dir.join(&path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&full)
        .map_err(|e| Error::io(format!("opening {}", full.display()), e))?;
    let io = |e| Error::io(format!("corrupting {}", full.display()), e);
    let mask = match mode {
        CorruptMode::FlipBits => {
            let mask: u8 = rng.gen_range(1..=255);
            let mut b = [0u8];
            file.read_exact_at(&mut b, offset).map_err(io)?;
            b[0] ^= mask;
            file.write_all_at(&b, offset).map_err(io)?;
            Some(mask)
        }
        CorruptMode::Truncate => {
            file.set_len(offset).map_err(io)?;
            None
        }
    };
    file.sync_all().map_err(io)?;
    let report = CorruptReport {
        path,
        len,
        offset,
        mode,
        mask,
    };
    tracing::info!(dir = %dir.display(), %report, "data file corrupted");
    Ok(report)
}

fn largest_file(dir: &Path) -> Result<Option<(PathBuf, u64)>> {
    let mut best: Option<(PathBuf, u64)> = None;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let entries = std::fs::read_dir(&full)
            .map_err(|e| Error::io(format!("listing {}", full.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", full.display()), e))?;
            let name = entry.file_name();
            if rel.as_os_str().is_empty() && name == TRASH {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|e| Error::io(format!("stat {}", entry.path().display()), e))?;
            let child = rel.join(&name);
            if meta.is_dir() {
                stack.push(child);
            } else if meta.is_file() && meta.len() > 0 {
                let better = match &best {
                    None => true,
                    Some((p, l)) => meta.len() > *l || (meta.len() == *l && child < *p),
                };
                if better {
                    best = Some((child, meta.len()));
                }
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn flips_one_byte_of_the_largest_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("log")).unwrap();
        let data = vec![7u8; 1000];
        std::fs::write(dir.path().join("log/seg"), &data).unwrap();
        std::fs::write(dir.path().join("small"), b"abc").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let r = corrupt(dir.path(), CorruptMode::FlipBits, &mut rng).unwrap();
        assert_eq!(r.path, Path::new("log/seg"));
        assert!((250..750).contains(&r.offset), "{r}");
        let after = std::fs::read(dir.path().join("log/seg")).unwrap();
        let diff: Vec<usize> = (0..1000).filter(|&i| after[i] != data[i]).collect();
        assert_eq!(diff, vec![r.offset as usize]);
        let r = corrupt(dir.path(), CorruptMode::Truncate, &mut rng).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("log/seg")).unwrap().len(),
            r.offset
        );
    }

    #[test]
    fn an_empty_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let e = corrupt(dir.path(), CorruptMode::FlipBits, &mut rng).unwrap_err();
        assert!(e.to_string().contains("no non-empty data file"), "{e}");
    }
}
