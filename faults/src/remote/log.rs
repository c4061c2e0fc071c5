//! The command log: every command that changes a remote host, as JSON lines, written before
//! it runs (`"phase":"start"`) and after (`"end"`, with the error if it failed), so a run
//! killed mid-command still shows what it was doing. The run writes it to
//! `DIR/hosts-commands.jsonl`; `raftbus hosts heal` to the inventory's state directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Pairs a `start` with its `end`.
    pub seq: u64,
    /// `start` or `end`.
    pub phase: String,
    /// Inventory host name.
    pub host: String,
    /// The script, as given to `sh -c` on the host.
    pub command: String,
    /// On `end`: the error, if the command failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where remote changes are journaled. Cheap to clone; [`CommandLog::none`] records only
/// to the tracing log.
#[derive(Debug, Clone, Default)]
pub struct CommandLog {
    file: Option<Arc<Mutex<File>>>,
    seq: Arc<AtomicU64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl CommandLog {
    /// A log appending to `path`.
    pub fn to_file(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Ok(CommandLog {
            file: Some(Arc::new(Mutex::new(file))),
            seq: Arc::default(),
        })
    }

    /// No file.
    pub fn none() -> Self {
        CommandLog::default()
    }

    fn write(&self, rec: &CommandRecord) {
        let Some(file) = &self.file else { return };
        let Ok(mut line) = serde_json::to_string(rec) else {
            return;
        };
        line.push('\n');
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
            tracing::warn!(error = %e, "cannot write the remote command log");
        }
    }

    /// Records that `command` is about to run on `host`; returns the token for [`Self::end`].
    pub fn begin(&self, host: &str, command: &str) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.write(&CommandRecord {
            at_ms: now_ms(),
            seq,
            phase: "start".into(),
            host: host.into(),
            command: command.into(),
            error: None,
        });
        seq
    }

    /// Records how `command` ended.
    pub fn end(&self, seq: u64, host: &str, command: &str, error: Option<String>) {
        self.write(&CommandRecord {
            at_ms: now_ms(),
            seq,
            phase: "end".into(),
            host: host.into(),
            command: command.into(),
            error,
        });
    }
}

/// Reads a command log (lines that do not parse are skipped).
pub fn read(path: &Path) -> Result<Vec<CommandRecord>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_end_are_paired() {
        let dir = std::env::temp_dir().join(format!("rb-cmdlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        let log = CommandLog::to_file(&path).unwrap();
        let t = log.begin("h1", "nft -f -");
        log.end(t, "h1", "nft -f -", Some("boom".into()));
        let recs = read(&path).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].phase, "start");
        assert_eq!(recs[1].seq, recs[0].seq);
        assert_eq!(recs[1].error.as_deref(), Some("boom"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
