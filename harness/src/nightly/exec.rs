//! Running one harness command as a child process: its output goes to a log file, its
//! stdout is also kept for parsing, and it is stopped if it overruns its deadline.
//!
//! Every run is a fresh `raftbus` process, so each builds its own lab at start (which must
//! happen while the process is single-threaded) and the printed command reruns it exactly.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much of the child's stdout is kept in memory for parsing.
const MAX_KEPT_STDOUT: usize = 1 << 20;
/// Time a child gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(15);

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Invocation {
    /// The command line, quoted for a POSIX shell.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes `arg` for a POSIX shell when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./,:=@%+".contains(c));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// How a child ended.
#[derive(Debug, Clone, Default)]
pub struct ChildRun {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Stopped by us after its deadline.
    pub timed_out: bool,
    /// Its standard output (the first MiB).
    pub stdout: String,
    pub elapsed: Duration,
}

impl ChildRun {
    /// A one-line description of how the child ended.
    pub fn describe(&self) -> String {
        match (self.code, self.signal, self.timed_out) {
            (_, _, true) => format!(
                "did not finish within its deadline ({:.0}s) and was stopped",
                self.elapsed.as_secs_f64()
            ),
            (Some(c), _, _) => format!("exited with code {c}"),
            (None, Some(s), _) => format!("was killed by signal {s}"),
            (None, None, _) => "ended without an exit status".to_string(),
        }
    }
}

fn pump(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<File>>,
    keep: bool,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = String::new();
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Ok(mut f) = log.lock() {
                        let _ = f.write_all(&line);
                        if !line.ends_with(b"\n") {
                            let _ = f.write_all(b"\n");
                        }
                    }
                    if keep && kept.len() < MAX_KEPT_STDOUT {
                        kept.push_str(&String::from_utf8_lossy(&line));
                    }
                }
            }
        }
        kept
    })
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Runs `inv` to completion, appending its stdout and stderr to `log`; after `timeout`
/// it gets SIGTERM, then SIGKILL. Fails only when the log cannot be written or the
/// program cannot be started.
pub fn run_logged(inv: &Invocation, log: &Path, timeout: Duration) -> std::io::Result<ChildRun> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(file, "$ {}", inv.command_line())?;
    let file = Arc::new(Mutex::new(file));
    let started = Instant::now();
    let mut child = Command::new(&inv.program)
        .args(&inv.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = pump(child.stdout.take().expect("piped"), file.clone(), true);
    let err = pump(child.stderr.take().expect("piped"), file.clone(), false);
    let mut timed_out = false;
    let mut termed_at: Option<Instant> = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        match termed_at {
            None if now.duration_since(started) > timeout => {
                tracing::warn!(pid = child.id(), "child overran its deadline; stopping it");
                timed_out = true;
                signal(child.id(), nix::sys::signal::Signal::SIGTERM);
                termed_at = Some(now);
            }
            Some(t) if now.duration_since(t) > TERM_GRACE => {
                signal(child.id(), nix::sys::signal::Signal::SIGKILL);
                break child.wait()?;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out.join().unwrap_or_default();
    let _ = err.join();
    let elapsed = started.elapsed();
    let run = ChildRun {
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        timed_out,
        stdout,
        elapsed,
    };
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(
            f,
            "# {} after {:.1}s",
            run.describe(),
            elapsed.as_secs_f64()
        );
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--seed"), "--seed");
        assert_eq!(shell_quote("/a/b-c_d.toml"), "/a/b-c_d.toml");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let inv = Invocation {
            program: PathBuf::from("/bin/raftbus"),
            args: vec!["check".into(), "/tmp/x y".into()],
        };
        assert_eq!(inv.command_line(), "/bin/raftbus check '/tmp/x y'");
    }

    #[test]
    fn output_goes_to_the_log_and_stdout_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nightly.log");
        let inv = Invocation {
            program: PathBuf::from("sh"),
            args: vec![
                "-c".into(),
                "echo out-line; echo err-line >&2; exit 3".into(),
            ],
        };
        let run = run_logged(&inv, &log, Duration::from_secs(30)).unwrap();
        assert_eq!(run.code, Some(3));
        assert!(!run.timed_out);
        assert_eq!(run.stdout, "out-line\n");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("$ sh -c "), "{text}");
        assert!(
            text.contains("out-line") && text.contains("err-line"),
            "{text}"
        );
        assert!(text.contains("exited with code 3"), "{text}");
    }

    #[test]
    fn an_overrunning_child_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nightly.log");
        let inv = Invocation {
            program: PathBuf::from("sleep"),
            args: vec!["30".into()],
        };
        let run = run_logged(&inv, &log, Duration::from_millis(300)).unwrap();
        assert!(run.timed_out);
        assert_eq!(run.signal, Some(libc_sigterm()));
        assert!(run.describe().contains("deadline"));
    }

    fn libc_sigterm() -> i32 {
        nix::sys::signal::Signal::SIGTERM as i32
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Invocation {
            program: dir.path().join("no-such-binary"),
            args: Vec::new(),
        };
        assert!(run_logged(&inv, &dir.path().join("log"), Duration::from_secs(1)).is_err());
    }
}
