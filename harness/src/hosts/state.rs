//! The per-inventory state file (`<hosts.toml>.state/state.jsonl`): what runs changed on
//! which host, appended (and fsynced) as it happens, so that `raftbus hosts heal` knows what
//! a harness killed with SIGKILL left. Heal empties it once every host is clean.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One thing a run did on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StateRecord {
    /// A run directory (with its `.raftbus-run` marker) was created.
    RunDir {
        run: String,
        host: String,
        dir: PathBuf,
    },
    /// A server was started: its process group and pid with their start times.
    Process {
        run: String,
        host: String,
        server: String,
        pgid: u32,
        pgid_start: u64,
        pid: u32,
        pid_start: u64,
    },
    /// The run finished and healed everything itself.
    Finished { run: String },
}

/// Appends records; see the module docs.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl StateFile {
    /// Opens (creating) `dir/state.jsonl`.
    pub fn open(dir: &Path) -> std::io::Result<StateFile> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("state.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(StateFile {
            path,
            file: Mutex::new(Some(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `rec` and syncs it (a failure is logged: the remote run dir markers and pid
    /// files still let heal find everything).
    pub fn append(&self, rec: &StateRecord) {
        let Ok(mut line) = serde_json::to_string(rec) else {
            return;
        };
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = f.as_mut() {
            if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the hosts state file");
            }
        }
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<StateRecord> {
        read(&self.path)
    }

    /// Empties the file (after a heal found every host clean).
    pub fn clear(&self) -> std::io::Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let file = std::fs::File::create(&self.path)?;
        *f = Some(file);
        Ok(())
    }
}

/// The records in `path` (missing file: none; unreadable lines are skipped).
pub fn read(path: &Path) -> Vec<StateRecord> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs that started something and did not finish (their records), in order.
pub fn unfinished(records: &[StateRecord]) -> Vec<&StateRecord> {
    let finished: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| match r {
            StateRecord::Finished { run } => Some(run.as_str()),
            _ => None,
        })
        .collect();
    records
        .iter()
        .filter(|r| match r {
            StateRecord::RunDir { run, .. } | StateRecord::Process { run, .. } => {
                !finished.contains(run.as_str())
            }
            StateRecord::Finished { .. } => false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_finished_runs_drop_out() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateFile::open(dir.path()).unwrap();
        let p = |run: &str| StateRecord::Process {
            run: run.into(),
            host: "h1".into(),
            server: "n1".into(),
            pgid: 10,
            pgid_start: 5,
            pid: 11,
            pid_start: 6,
        };
        st.append(&p("a"));
        st.append(&p("b"));
        st.append(&StateRecord::Finished { run: "a".into() });
        let recs = st.records();
        assert_eq!(recs.len(), 3);
        assert_eq!(unfinished(&recs), vec![&p("b")]);
        st.clear().unwrap();
        assert!(st.records().is_empty());
        st.append(&p("c"));
        assert_eq!(st.records(), vec![p("c")]);
    }
}
