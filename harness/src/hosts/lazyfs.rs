//! `raftbus lazyfs`: the host side of remote disk faults. On a `--hosts` run with disk
//! faults the harness uploads its own binary and starts `raftbus lazyfs serve` over SSH for
//! each server; the server's data dir is then a lazy filesystem held by that process, and
//! `raftbus lazyfs ctl` (run over SSH by [`raftbus_faults::remote::RemoteDisk`]) asks it to
//! drop or tear what is unsynced. `raftbus lazyfs corrupt` damages a backing directory
//! with the same code as in the lab. Every answer is one JSON line on stdout.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use raftbus_faults::remote::disk::command;
use raftbus_faults::{CorruptMode, DiskControl, LazyMount};
use serde_json::{json, Value};

use crate::cli::LazyfsCommand;
use crate::run::{exit, RunError};
use crate::target::process::LAZY_FS_WRITEBACK;

/// Runs one `raftbus lazyfs` command.
pub async fn command(cmd: LazyfsCommand) -> Result<u8, RunError> {
    match cmd {
        LazyfsCommand::Serve {
            backing,
            mount,
            control,
        } => serve(&backing, &mount, &control).await,
        LazyfsCommand::Ctl { control, command } => ctl(&control, &command.join(" ")),
        LazyfsCommand::Corrupt { dir, mode, seed } => {
            let mode: CorruptMode =
                serde_json::from_value(Value::String(mode.clone())).map_err(|_| {
                    RunError::Usage(format!("--mode {mode}: expected flip-bits or truncate"))
                })?;
            let report = raftbus_faults::corrupt_seeded(&dir, mode, seed)
                .map_err(|e| RunError::Lazyfs(format!("corrupt {}: {e}", dir.display())))?;
            println!("{}", json!(report));
            Ok(exit::VALID)
        }
    }
}

/// Mounts the lazy filesystem, answers `ctl` requests on `control` until SIGTERM, SIGINT
/// or SIGHUP, then unmounts.
async fn serve(backing: &Path, mount: &Path, control: &Path) -> Result<u8, RunError> {
    let env = |what: String| RunError::Lazyfs(what);
    for d in [backing, mount] {
        std::fs::create_dir_all(d).map_err(|e| env(format!("create {}: {e}", d.display())))?;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut signals = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ] {
        signals.push(signal(kind).map_err(|e| env(format!("signal handler: {e}")))?);
    }
    let mut lazy = LazyMount::mount_with(backing, mount, Some(LAZY_FS_WRITEBACK))
        .map_err(|e| env(format!("mount {}: {e}", mount.display())))?;
    let _ = std::fs::remove_file(control);
    let listener =
        UnixListener::bind(control).map_err(|e| env(format!("bind {}: {e}", control.display())))?;
    let disk = lazy.control();
    std::thread::Builder::new()
        .name("lazyfs-ctl".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                answer(&disk, stream);
            }
        })
        .map_err(|e| env(format!("start the control thread: {e}")))?;
    eprintln!(
        "raftbus lazyfs: {} mounted over {}, control {}",
        mount.display(),
        backing.display(),
        control.display()
    );
    let waits: Vec<_> = signals.iter_mut().map(|s| Box::pin(s.recv())).collect();
    futures::future::select_all(waits).await;
    let _ = std::fs::remove_file(control);
    lazy.unmount()
        .map_err(|e| env(format!("unmount {}: {e}", mount.display())))?;
    eprintln!("raftbus lazyfs: unmounted {}", mount.display());
    Ok(exit::VALID)
}

/// Reads one request line from `stream` and writes one JSON line back: the result, or
/// `{"error": ...}`.
fn answer(disk: &DiskControl, stream: UnixStream) {
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let reply = match (words.next(), words.next()) {
        (Some(command::DROP_UNSYNCED), None) => disk.drop_unsynced().map(|r| json!(r)),
        (Some(command::TEAR_LAST_WRITE), Some(keep)) => match keep.parse::<f64>() {
            Ok(keep) if (0.0..=1.0).contains(&keep) => disk.tear_last_write(keep).map(|r| json!(r)),
            _ => Ok(json!({ "error": format!("keep must be between 0 and 1, not {keep}") })),
        },
        (Some(command::WRITE_BACK), None) => disk.write_back().map(|()| Value::Null),
        (Some(command::STATS), None) => disk.stats().map(|r| json!(r)),
        _ => Ok(json!({ "error": format!("unknown request {:?}", line.trim()) })),
    };
    let reply = reply.unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let _ = writeln!(&stream, "{reply}");
}

/// Sends `request` to the server behind `control` and prints its answer; exit 3 when it
/// reports an error or cannot be reached.
fn ctl(control: &PathBuf, request: &str) -> Result<u8, RunError> {
    let env = |what: String| RunError::Lazyfs(what);
    let mut stream = UnixStream::connect(control)
        .map_err(|e| env(format!("connect to {}: {e}", control.display())))?;
    writeln!(stream, "{request}").map_err(|e| env(format!("send: {e}")))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(|e| env(format!("read the answer: {e}")))?;
    let value: Value = serde_json::from_str(reply.trim())
        .map_err(|e| env(format!("the server answered {:?}: {e}", reply.trim())))?;
    if let Some(err) = value.get("error").and_then(Value::as_str) {
        return Err(env(format!("{request}: {err}")));
    }
    println!("{value}");
    Ok(exit::VALID)
}
