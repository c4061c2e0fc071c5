//! The crate's error type.

use std::io;

/// Errors from applying or undoing faults and from managing the lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An external tool (`ip`, `nft`, `tc`) ran but reported failure.
    #[error("command `{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the log.
        command: String,
        /// Exit status as text.
        status: String,
        /// What the tool printed on stderr (trimmed).
        stderr: String,
    },
    /// An external tool could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The fault needs network namespaces but the lab runs in loopback mode.
    #[error("{0} needs the namespace lab, but the lab runs in loopback mode")]
    Unsupported(String),
    /// A host name that the lab does not know.
    #[error("unknown lab host {0:?}")]
    UnknownHost(String),
    /// A bad argument (host name, percentage, empty group, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Undoing a kill or terminate needs a [`crate::Restarter`] and none was registered.
    #[error("no restarter registered, cannot restart {0}")]
    NoRestarter(String),
    /// The harness's restarter failed.
    #[error("restarting {host} failed: {message}")]
    Restart {
        /// The host whose process was to be restarted.
        host: String,
        /// The restarter's error, as text.
        message: String,
    },
    /// The lab was torn down already.
    #[error("the lab has been torn down")]
    TornDown,
    /// SSH to a remote host failed (connect, host key, timeout, lost connection).
    #[error("ssh {host}: {message}")]
    Ssh {
        /// Inventory host name.
        host: String,
        /// What went wrong, with the ssh client's own words.
        message: String,
    },
    /// No journal entry with this id, or it was healed already.
    #[error("no active fault with id {0}")]
    NotActive(u64),
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn sys(call: &'static str, source: nix::Error) -> Self {
        Error::Sys { call, source }
    }
}
