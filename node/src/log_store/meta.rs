//! The small `meta.json` file: vote, committed log id and last purged log id.
//!
//! Written atomically: a temp file is written and fsync'ed, renamed over `meta.json`, and the
//! directory is fsync'ed, so a crash leaves either the old or the new file, never a mix.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable_file;
use crate::types::{LogId, Vote};

use super::LogStoreError;

pub(super) const META_FILE: &str = "meta.json";
const META_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Meta {
    pub version: u32,
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
}

/// Loads `meta.json`, or the default when it does not exist. A leftover temp file from a crash
/// during a write is removed: the rename never happened, so `meta.json` is the current state.
pub(super) fn load(dir: &Path) -> Result<Meta, LogStoreError> {
    let path = dir.join(META_FILE);
    let removed = durable_file::remove_temps(&path).map_err(|e| LogStoreError::io(dir, e))?;
    for tmp in removed {
        tracing::warn!(path = %tmp.display(), "removed leftover temp meta file");
    }
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Meta {
                version: META_VERSION,
                ..Meta::default()
            })
        }
        Err(e) => return Err(LogStoreError::io(&path, e)),
    };
    let meta: Meta = serde_json::from_slice(&data).map_err(|e| LogStoreError::Meta {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if meta.version != META_VERSION {
        return Err(LogStoreError::Meta {
            path,
            reason: format!("unsupported version {}", meta.version),
        });
    }
    Ok(meta)
}

/// Atomically replaces `meta.json` with `meta`.
pub(super) fn store(dir: &Path, meta: &Meta) -> io::Result<()> {
    let data = serde_json::to_vec(&Meta {
        version: META_VERSION,
        ..meta.clone()
    })?;
    durable_file::write_atomic(&dir.join(META_FILE), &data)
}

pub(super) use crate::durable_file::sync_dir;
