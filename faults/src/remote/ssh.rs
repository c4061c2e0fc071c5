//! One SSH connection to a host: the system OpenSSH client through the `openssh` crate (one
//! ControlMaster per host, every command multiplexed over it), host keys checked strictly
//! against known_hosts, keys from the agent or an identity file, never a password
//! (`BatchMode=yes`).
//!
//! The crate is async; the fault journal and the process handles are not. Commands run on a
//! small runtime of their own (`raftbus-ssh` threads), and the calling thread waits for the
//! answer, so a command can be sent from a tokio worker, a plain thread or a drop.

use openssh::Stdio;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::AsyncWriteExt;

use super::log::CommandLog;
use crate::error::{Error, Result};

/// How long one remote command may take (uploads get [`UPLOAD_TIMEOUT`]).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// The prefix the `openssh` crate gives its control directories.
const CONTROL_PREFIX: &str = ".ssh-connection";

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The inventory name (`h1`), for messages and the command log.
    pub name: String,
    /// Address or host name given to `ssh`.
    pub address: String,
    /// Login user.
    pub user: String,
    /// `ssh -p`.
    pub port: Option<u16>,
    /// `ssh -i` (only this key is offered then); otherwise the agent and default keys.
    pub identity: Option<PathBuf>,
    /// `ssh -F`: an OpenSSH config file.
    pub config: Option<PathBuf>,
    /// `UserKnownHostsFile`: where the host keys are checked (strictly).
    pub known_hosts: Option<PathBuf>,
    /// Where the control socket directory is created (a stale one is closed by
    /// [`close_stale_masters`]).
    pub control_dir: PathBuf,
    /// `ConnectTimeout`.
    pub connect_timeout: Duration,
    /// Prefix privileged commands (nft, tc) with `sudo -n`.
    pub sudo: bool,
}

/// A connected host. Cheap to clone.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    address: String,
    sudo: bool,
    session: Session,
    log: CommandLog,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("name", &self.inner.name)
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Remote {}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("raftbus-ssh")
            .enable_all()
            .build()
            .expect("build the ssh runtime")
    })
}

/// Runs `f` on the ssh runtime and waits for it on the calling thread.
fn block<F>(f: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .map_err(|_| Error::Invalid("an ssh task panicked".into()))
}

/// `'text'` for sh, with embedded single quotes escaped.
pub fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The text of an `openssh` error with its causes (the ssh client's own message, e.g. a host
/// key mismatch, is in the source).
fn ssh_error(e: &openssh::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(s.to_string().trim());
        source = s.source();
    }
    text
}

impl Remote {
    /// Opens the master connection (fails with the ssh client's reason: unreachable host,
    /// unknown or changed host key, refused key).
    pub fn connect(target: &SshTarget, log: CommandLog) -> Result<Remote> {
        std::fs::create_dir_all(&target.control_dir).map_err(|e| {
            Error::io(
                format!("create ssh control dir {}", target.control_dir.display()),
                e,
            )
        })?;
        let mut b = SessionBuilder::default();
        b.user(target.user.clone())
            .known_hosts_check(KnownHosts::Strict)
            .control_directory(&target.control_dir)
            .control_persist(ControlPersist::Forever)
            .server_alive_interval(Duration::from_secs(5))
            .connect_timeout(target.connect_timeout);
        if let Some(p) = target.port {
            b.port(p);
        }
        if let Some(k) = &target.identity {
            b.keyfile(k);
        }
        if let Some(c) = &target.config {
            b.config_file(c);
        }
        if let Some(k) = &target.known_hosts {
            b.user_known_hosts_file(k);
        }
        let destination = target.address.clone();
        let session =
            block(async move { b.connect(destination).await })?.map_err(|e| Error::Ssh {
                host: target.name.clone(),
                message: format!(
                    "cannot connect to {}@{}: {}",
                    target.user,
                    target.address,
                    ssh_error(&e)
                ),
            })?;
        tracing::info!(host = %target.name, address = %target.address, "ssh connected");
        Ok(Remote {
            inner: Arc::new(Inner {
                name: target.name.clone(),
                address: target.address.clone(),
                sudo: target.sudo,
                session,
                log,
            }),
        })
    }

    /// The inventory name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address ssh connects to.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The command log every change goes to.
    pub fn log(&self) -> &CommandLog {
        &self.inner.log
    }

    /// `script` as root: as is, or through `sudo -n sh -c` when the inventory says so.
    pub fn as_root(&self, script: &str) -> String {
        if self.inner.sudo {
            format!("sudo -n sh -c {}", quote(script))
        } else {
            script.to_string()
        }
    }

    /// Runs a read-only `script` with `sh -c` and returns its stdout (not journaled).
    pub fn query(&self, script: &str) -> Result<String> {
        tracing::trace!(host = %self.inner.name, script, "ssh query");
        self.exec(script, None, COMMAND_TIMEOUT)
    }

    /// Runs a `script` that changes the host, journaled in the command log before and after.
    pub fn change(&self, script: &str) -> Result<String> {
        let token = self.inner.log.begin(&self.inner.name, script);
        let r = self.exec(script, None, COMMAND_TIMEOUT);
        self.inner.log.end(
            token,
            &self.inner.name,
            script,
            r.as_ref().err().map(ToString::to_string),
        );
        tracing::debug!(host = %self.inner.name, script, ok = r.is_ok(), "ssh change");
        r
    }

    /// Writes `data` to `path` on the host (through a temporary file, then renamed), with
    /// `chmod mode`; journaled.
    pub fn upload(&self, data: Arc<Vec<u8>>, path: &Path, mode: u32) -> Result<()> {
        let p = quote(&path.to_string_lossy());
        let script = format!(
            "set -e; mkdir -p \"$(dirname {p})\"; cat > {p}.part; chmod {mode:o} {p}.part; mv -f {p}.part {p}"
        );
        let shown = format!("{script} # {} bytes on stdin", data.len());
        let token = self.inner.log.begin(&self.inner.name, &shown);
        let r = self.exec(&script, Some(data), UPLOAD_TIMEOUT).map(drop);
        self.inner.log.end(
            token,
            &self.inner.name,
            &shown,
            r.as_ref().err().map(ToString::to_string),
        );
        r
    }

    /// Whether the master connection still works.
    pub fn check(&self) -> Result<()> {
        let inner = self.inner.clone();
        block(async move { inner.session.check().await })?.map_err(|e| Error::Ssh {
            host: self.inner.name.clone(),
            message: ssh_error(&e),
        })
    }

    fn exec(&self, script: &str, stdin: Option<Arc<Vec<u8>>>, timeout: Duration) -> Result<String> {
        let inner = self.inner.clone();
        let line = format!("sh -c {}", quote(script));
        let run_line = line.clone();
        let out = block(async move {
            let work = async {
                let mut cmd = inner.session.raw_command(&run_line);
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                match stdin {
                    None => {
                        cmd.stdin(Stdio::null());
                        cmd.output().await
                    }
                    Some(data) => {
                        cmd.stdin(Stdio::piped());
                        let mut child = cmd.spawn().await?;
                        if let Some(mut pipe) = child.stdin().take() {
                            pipe.write_all(&data)
                                .await
                                .map_err(openssh::Error::Remote)?;
                            pipe.shutdown().await.map_err(openssh::Error::Remote)?;
                        }
                        child.wait_with_output().await
                    }
                }
            };
            tokio::time::timeout(timeout, work).await
        })?;
        let host = self.inner.name.clone();
        let out = out
            .map_err(|_| Error::Ssh {
                host: host.clone(),
                message: format!("`{script}` did not finish within {}s", timeout.as_secs()),
            })?
            .map_err(|e| Error::Ssh {
                host: host.clone(),
                message: format!("`{script}`: {}", ssh_error(&e)),
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command {
                command: format!("ssh {host}: {script}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// Closes ssh masters a killed harness left in `control_dir` (`ssh -O exit`) and removes
/// their directories. Returns how many it closed.
pub fn close_stale_masters(control_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(control_dir) else {
        return 0;
    };
    let mut closed = 0;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(CONTROL_PREFIX)
        {
            continue;
        }
        let socket = entry.path().join("master");
        if socket.exists() {
            let ok = std::process::Command::new("ssh")
                .arg("-S")
                .arg(&socket)
                .args(["-O", "exit", "raftbus-stale-master"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                closed += 1;
                tracing::info!(socket = %socket.display(), "closed a stale ssh master");
            }
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_sh() {
        for text in ["plain", "two words", "it's", "$HOME `x` \"q\"", ""] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(text)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), text);
        }
        assert_eq!(quote("/a/b-c.d"), "/a/b-c.d");
    }
}
