//! Test runner plumbing and network helpers.
//!
//! Tests that need a lab cannot run inside libtest's threads: `Lab::enter()` must unshare
//! while the process is single-threaded (a user namespace demands it, and a network
//! namespace entered from one thread would only move that thread). So this binary has its
//! own `main` (libtest-mimic): a lab test's trial re-executes the binary with
//! `RAFTBUS_FAULTS_CHILD=<test name>`; the child sees the variable before anything else,
//! calls `Lab::enter()` while still single-threaded, runs the test body and exits. A child
//! exiting with [`SKIP_CODE`] lacked a capability and `RAFTBUS_ALLOW_SKIP=1` was set.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raftbus_faults::{Host, Lab};

/// Environment variable that turns the binary into a lab child running one test.
pub const CHILD_ENV: &str = "RAFTBUS_FAULTS_CHILD";
/// Exit code of a child that skipped for a missing capability.
pub const SKIP_CODE: i32 = 77;

pub type PlainFn = fn() -> anyhow::Result<()>;
pub type LabFn = fn(&Lab) -> anyhow::Result<()>;

/// How a test runs.
pub enum Kind {
    /// In the test thread, in the host namespace.
    Plain(PlainFn),
    /// In a child process that entered a fresh lab first.
    InLab(LabFn),
    /// Only as a child started by another test (not listed as a trial).
    ChildOnly(LabFn),
}

pub struct Test {
    pub name: &'static str,
    pub kind: Kind,
}

/// Whether missing capabilities may skip instead of fail.
pub fn allow_skip() -> bool {
    std::env::var("RAFTBUS_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

/// Fail loudly when a capability is missing (CI runs as root with nftables and iproute2),
/// or, with `RAFTBUS_ALLOW_SKIP=1`, print a skip and report it to the caller.
pub fn missing_capability(what: &str) -> anyhow::Result<Skip> {
    if allow_skip() {
        eprintln!("SKIPPED (RAFTBUS_ALLOW_SKIP=1): {what}");
        Ok(Skip)
    } else {
        bail!(
            "missing capability: {what}. These tests need root (or unprivileged user namespaces), \
             iproute2, nftables and tc; set RAFTBUS_ALLOW_SKIP=1 to skip them on a dev machine"
        )
    }
}

/// Marker returned when a test was skipped.
pub struct Skip;

/// Entry point for a child: if [`CHILD_ENV`] names a test, enter a lab, run it and return the
/// exit code. Must be the first thing `main` does.
pub fn child_main(tests: &[Test]) -> Option<i32> {
    let name = std::env::var(CHILD_ENV).ok()?;
    let Some(test) = tests.iter().find(|t| t.name == name) else {
        eprintln!("unknown child test {name:?}");
        return Some(2);
    };
    let body = match test.kind {
        Kind::InLab(f) | Kind::ChildOnly(f) => f,
        Kind::Plain(_) => {
            eprintln!("{name} is not a lab test");
            return Some(2);
        }
    };
    let lab = Lab::enter();
    let caps = lab.capabilities().clone();
    if !lab.mode().is_namespaced() || !caps.full_lab() {
        let what = format!(
            "namespace lab unavailable: {:?}; {}",
            lab.mode(),
            caps.notes.join("; ")
        );
        return Some(match missing_capability(&what) {
            Ok(Skip) => SKIP_CODE,
            Err(e) => {
                eprintln!("{e:#}");
                1
            }
        });
    }
    let result = body(&lab);
    if let Err(e) = lab.teardown() {
        eprintln!("teardown failed: {e}");
        return Some(1);
    }
    match result {
        Ok(()) => Some(0),
        Err(e) if e.is::<SkipError>() => Some(SKIP_CODE),
        Err(e) => {
            eprintln!("test {name} failed: {e:#}");
            Some(1)
        }
    }
}

/// Returned by a lab test body that skipped (see [`require`]).
#[derive(Debug)]
pub struct SkipError;

impl std::fmt::Display for SkipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("skipped")
    }
}

impl std::error::Error for SkipError {}

/// Inside a lab test: require a capability (fail loudly, or skip when allowed).
pub fn require(ok: bool, what: &str) -> anyhow::Result<()> {
    if ok {
        return Ok(());
    }
    missing_capability(what)?;
    Err(SkipError.into())
}

/// Run `name` as a lab child of this binary, optionally adjusting the command first.
pub fn run_child(name: &str, adjust: impl FnOnce(&mut Command)) -> anyhow::Result<Output> {
    let exe = std::env::current_exe().context("current_exe")?;
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, name);
    adjust(&mut cmd);
    cmd.output()
        .with_context(|| format!("running lab child {name}"))
}

/// Turn a child's output into a test result.
pub fn child_result(name: &str, out: &Output) -> anyhow::Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => Ok(()),
        Some(SKIP_CODE) => {
            eprintln!("{name}: {}", stderr.trim());
            Ok(())
        }
        _ => bail!(
            "lab child {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        ),
    }
}

pub fn lab_trial(name: &'static str) -> anyhow::Result<()> {
    let out = run_child(name, |_| {})?;
    child_result(name, &out)
}

// ---- network helpers -------------------------------------------------------------------

/// How long to wait for something that must *not* happen (a blocked connect or echo).
pub const SHORT: Duration = Duration::from_millis(500);
/// How long to wait for something that must happen (generous: the machine is shared).
pub const PATIENT: Duration = Duration::from_secs(3);
/// Silence after which a UDP receiver stops counting.
pub const QUIET: Duration = Duration::from_secs(1);

/// A TCP echo server in `host`'s namespace on `port`; serves until the process exits.
pub fn echo_server(host: &Host, port: u16) -> anyhow::Result<SocketAddr> {
    let addr = host.socket_addr(port);
    let listener = host
        .run_in(|| TcpListener::bind(addr))?
        .with_context(|| format!("bind {addr} in {}", host.name()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Connect to `to` from `from`'s namespace (from the lab itself with `None`).
pub fn connect(from: Option<&Host>, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = match from {
        Some(h) => h
            .run_in(|| TcpStream::connect_timeout(&to, timeout))
            .map_err(io::Error::other)??,
        None => TcpStream::connect_timeout(&to, timeout)?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Write `msg` and read back as many bytes within `timeout`; `Ok(false)` when nothing (or
/// not everything) came back in time.
pub fn echo_roundtrip(stream: &mut TcpStream, msg: &[u8], timeout: Duration) -> io::Result<bool> {
    stream.write_all(msg)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut got = Vec::new();
    let mut buf = vec![0u8; msg.len()];
    let deadline = Instant::now() + timeout;
    while got.len() < msg.len() && Instant::now() < deadline {
        match stream.read(&mut buf[..msg.len() - got.len()]) {
            Ok(0) => return Ok(false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(got == msg)
}

/// A UDP socket bound in `host`'s namespace.
pub fn udp_in(host: &Host, port: u16) -> anyhow::Result<UdpSocket> {
    let addr = host.socket_addr(port);
    let sock = host
        .run_in(|| UdpSocket::bind(addr))?
        .with_context(|| format!("udp bind {addr}"))?;
    Ok(sock)
}

/// Send `count` numbered datagrams from `tx` to `to` while a thread counts how many distinct
/// ones `rx` receives (it stops after `quiet` without traffic). Receiving concurrently keeps
/// the socket buffer from overflowing, so only the fault under test drops datagrams.
pub fn udp_count(
    tx: &UdpSocket,
    rx: &UdpSocket,
    to: SocketAddr,
    count: u32,
    quiet: Duration,
) -> anyhow::Result<u32> {
    let rx = rx.try_clone()?;
    rx.set_read_timeout(Some(quiet))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || -> io::Result<u32> {
        let mut seen = std::collections::BTreeSet::new();
        let mut buf = [0u8; 64];
        let _ = ready_tx.send(());
        loop {
            match rx.recv_from(&mut buf) {
                Ok((4, _)) => {
                    seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(seen.len() as u32)
                }
                Err(e) => return Err(e),
            }
        }
    });
    ready_rx.recv()?;
    for i in 0..count {
        tx.send_to(&i.to_be_bytes(), to)?;
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(receiver.join().expect("udp receiver panicked")?)
}

/// Links and nft tables in the *current* namespace that look like ours.
pub fn our_traces_here() -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let links = Command::new("ip").args(["-o", "link", "show"]).output()?;
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        // "3: vh-n1@if2: <...>"
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        if name == "rb0" || name.starts_with("vh-") || name.starts_with("vp-") {
            found.push(format!("link {name}"));
        }
    }
    if let Ok(tables) = Command::new("nft").args(["list", "tables"]).output() {
        for line in String::from_utf8_lossy(&tables.stdout).lines() {
            if line.contains("raftbus") {
                found.push(line.trim().to_owned());
            }
        }
    }
    Ok(found)
}
