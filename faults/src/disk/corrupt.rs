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
    /// XOR one byte in the middle half of the file's data with a random non-zero mask.
    FlipBits,
    /// Cut the file at a point in the middle half of its data.
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
/// The damage lands in the middle half of the file's data: the file up to its last non-zero
/// byte. Zeros after that are space written ahead (logs preallocate so that an append does
/// not change the file's size); a bit flipped there damages nothing a reader uses.
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
    let full = dir.join(&path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&full)
        .map_err(|e| Error::io(format!("opening {}", full.display()), e))?;
    let io = |e| Error::io(format!("corrupting {}", full.display()), e);
    let data = match data_len(&file, len).map_err(io)? {
        0 => len,
        data => data,
    };
    let offset = if data < 4 {
        rng.gen_range(0..data)
    } else {
        rng.gen_range(data / 4..data * 3 / 4)
    };
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

/// The length of `file` without its trailing zeros.
fn data_len(file: &std::fs::File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(last) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(start + last as u64 + 1);
        }
        end = start;
    }
    Ok(0)
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
    fn damage_lands_in_the_data_not_in_the_zeros_after_it() {
        let dir = tempfile::tempdir().unwrap();
        // 1,000 bytes of data, then 200,000 zeros written ahead.
        let mut data = vec![7u8; 1000];
        data.resize(201_000, 0);
        std::fs::write(dir.path().join("seg"), &data).unwrap();
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let r = corrupt(dir.path(), CorruptMode::FlipBits, &mut rng).unwrap();
            assert!((250..750).contains(&r.offset), "{r}");
            assert_eq!(r.len, 201_000);
            // Undo, for the next seed.
            corrupt_undo(dir.path(), &r);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let r = corrupt(dir.path(), CorruptMode::Truncate, &mut rng).unwrap();
        assert!((250..750).contains(&r.offset), "{r}");
    }

    fn corrupt_undo(dir: &Path, r: &CorruptReport) {
        let path = dir.join(&r.path);
        let mut data = std::fs::read(&path).unwrap();
        data[r.offset as usize] ^= r.mask.unwrap();
        std::fs::write(&path, data).unwrap();
    }

    #[test]
    fn a_file_of_zeros_is_damaged_anywhere_in_its_middle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seg"), vec![0u8; 1000]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let r = corrupt(dir.path(), CorruptMode::FlipBits, &mut rng).unwrap();
        assert!((250..750).contains(&r.offset), "{r}");
    }

    #[test]
    fn an_empty_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let e = corrupt(dir.path(), CorruptMode::FlipBits, &mut rng).unwrap_err();
        assert!(e.to_string().contains("no non-empty data file"), "{e}");
    }
}
