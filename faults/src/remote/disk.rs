//! The lazy filesystem on a remote host. The mount needs a process on that host that
//! serves it (FUSE) and holds its unsynced writes: `raftbus lazyfs serve`, uploaded with
//! the node binary and started over SSH. Faults reach it through `raftbus lazyfs ctl` (a
//! unix socket on the host), so power loss, torn writes and corruption run the same code
//! ([`crate::disk`]) as in the lab.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ssh::{quote, Remote};
use crate::disk::{CorruptMode, CorruptReport, DropReport, VolumeStats};
use crate::error::{Error, Result};

/// The `lazyfs ctl` commands, as the server reads them (one line per connection).
pub mod command {
    /// Forget every unsynced write ([`crate::DiskControl::drop_unsynced`]).
    pub const DROP_UNSYNCED: &str = "drop-unsynced";
    /// Keep a prefix of the newest unsynced write, forget the rest; followed by the kept
    /// fraction ([`crate::DiskControl::tear_last_write`]).
    pub const TEAR_LAST_WRITE: &str = "tear-last-write";
    /// Write every unsynced change through ([`crate::DiskControl::write_back`]).
    pub const WRITE_BACK: &str = "write-back";
    /// Counters ([`crate::DiskControl::stats`]).
    pub const STATS: &str = "stats";
}

/// A lazy filesystem served on a remote host.
#[derive(Debug)]
pub struct RemoteDisk {
    remote: Remote,
    /// The `raftbus` binary on the host.
    program: PathBuf,
    /// The server's control socket on the host.
    control: PathBuf,
    /// The backing directory on the host (what is durable).
    backing: PathBuf,
}

impl RemoteDisk {
    /// The disk that `program lazyfs serve --control control --backing backing` serves.
    pub fn new(remote: Remote, program: PathBuf, control: PathBuf, backing: PathBuf) -> Self {
        RemoteDisk {
            remote,
            program,
            control,
            backing,
        }
    }

    /// The backing directory on the host.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Runs `raftbus lazyfs <args>` on the host (journaled) and parses its JSON answer.
    fn run<T: DeserializeOwned>(&self, args: &str) -> Result<T> {
        let script = format!("{} lazyfs {args}", quote(&self.program.to_string_lossy()));
        let out = self.remote.change(&self.remote.as_root(&script))?;
        let line = out.lines().last().unwrap_or_default();
        serde_json::from_str(line).map_err(|e| Error::Ssh {
            host: self.remote.name().to_string(),
            message: format!("`{script}` answered {:?}: {e}", out.trim()),
        })
    }

    fn ctl<T: DeserializeOwned>(&self, command: &str) -> Result<T> {
        self.run(&format!(
            "ctl {} {command}",
            quote(&self.control.to_string_lossy())
        ))
    }

    /// See [`crate::DiskControl::drop_unsynced`].
    pub fn drop_unsynced(&self) -> Result<DropReport> {
        self.ctl(command::DROP_UNSYNCED)
    }

    /// See [`crate::DiskControl::tear_last_write`].
    pub fn tear_last_write(&self, keep: f64) -> Result<DropReport> {
        self.ctl(&format!("{} {keep}", command::TEAR_LAST_WRITE))
    }

    /// See [`crate::DiskControl::write_back`].
    pub fn write_back(&self) -> Result<()> {
        self.ctl(command::WRITE_BACK)
    }

    /// See [`crate::DiskControl::stats`].
    pub fn stats(&self) -> Result<VolumeStats> {
        self.ctl(command::STATS)
    }

    /// [`crate::disk::corrupt_seeded`] on the backing directory, run on the host (after
    /// writing back what the server holds, as for a local disk).
    pub fn corrupt(&self, mode: CorruptMode, seed: u64) -> Result<CorruptReport> {
        self.write_back()?;
        self.run(&format!(
            "corrupt --dir {} --mode {mode} --seed {seed}",
            quote(&self.backing.to_string_lossy())
        ))
    }
}
