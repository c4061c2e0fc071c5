//! Capability detection: can we make namespaces, and which of nftables, tc, tbf, netem and
//! FUSE work inside them.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How network namespaces can be created here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "reason")]
pub enum NamespaceSupport {
    /// We are root: plain `CLONE_NEWNET`.
    Root,
    /// Not root, but an unprivileged user namespace works (`CLONE_NEWUSER | CLONE_NEWNET`).
    Rootless,
    /// No namespaces; the text says why.
    Unavailable(String),
}

impl NamespaceSupport {
    /// Whether a namespace lab can be built.
    pub fn available(&self) -> bool {
        !matches!(self, NamespaceSupport::Unavailable(_))
    }
}

/// What the machine offers for fault injection, found by trying it in a throwaway namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Whether (and how) network namespaces can be created.
    pub namespaces: NamespaceSupport,
    /// `ip` is installed and can create a bridge and a veth pair.
    pub links: bool,
    /// `nft` is installed and the kernel accepts a `bridge` family table.
    pub nftables: bool,
    /// `tc` is installed.
    pub tc: bool,
    /// The `tbf` qdisc works (bandwidth limits).
    pub tbf: bool,
    /// The `netem` qdisc works (kernel delay/loss); when false delay runs in the userspace
    /// [`crate::DelayProxy`].
    pub netem: bool,
    /// A FUSE filesystem can be mounted in the lab's private mount namespace (the disk
    /// faults: power-loss, torn-write; corrupt needs no FUSE).
    #[serde(default)]
    pub fuse: bool,
    /// Human-readable findings, for reports.
    pub notes: Vec<String>,
}

impl Capabilities {
    fn without_namespaces(reason: String) -> Self {
        Capabilities {
            notes: vec![format!("no network namespaces: {reason}")],
            namespaces: NamespaceSupport::Unavailable(reason),
            links: false,
            nftables: false,
            tc: false,
            tbf: false,
            netem: false,
            fuse: false,
        }
    }

    /// Whether the namespace lab with nftables partitions is fully usable.
    pub fn full_lab(&self) -> bool {
        self.namespaces.available() && self.links && self.nftables
    }
}

/// The checks, as a shell script run inside the namespace to test. Each check prints
/// `name=ok` or `name=fail <message>` or `name=missing`.
const CHECKS: &str = r#"
r() { n=$1; shift; if out=$("$@" 2>&1); then echo "$n=ok"; else echo "$n=fail $(echo "$out" | tr '\n' ' ')"; fi; }
if command -v ip >/dev/null 2>&1; then
  r links sh -c 'ip link add rbprobe-br type bridge && ip link add rbprobe-a type veth peer name rbprobe-b && ip link del rbprobe-br && ip link del rbprobe-a'
else echo "links=missing"; fi
if command -v nft >/dev/null 2>&1; then
  r nftables sh -c 'nft add table bridge raftbus_probe && nft delete table bridge raftbus_probe'
else echo "nftables=missing"; fi
if command -v tc >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
  echo "tc=ok"
  ip link add rbprobe-q type veth peer name rbprobe-p >/dev/null 2>&1
  r tbf tc qdisc add dev rbprobe-q root tbf rate 1mbit burst 32kbit latency 50ms
  tc qdisc del dev rbprobe-q root >/dev/null 2>&1
  r netem tc qdisc add dev rbprobe-q root netem delay 1ms
  ip link del rbprobe-q >/dev/null 2>&1
else echo "tc=missing"; echo "tbf=missing"; echo "netem=missing"; fi
"#;

/// Detect capabilities without entering a lab: the checks run in a child process inside a
/// fresh, throwaway network namespace (and user namespace when not root). Nothing is changed
/// in the caller's namespace.
pub fn probe() -> Capabilities {
    let rootless = !nix::unistd::geteuid().is_root();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(CHECKS);
    let ids = if rootless {
        match IdMaps::current() {
            Ok(ids) => Some(ids),
            Err(e) => return Capabilities::without_namespaces(e.to_string()),
        }
    } else {
        None
    };
    // The FUSE check runs in the child (inside its fresh namespaces) and reports one byte
    // through a pipe: 0 when a test mount worked, else the errno.
    let scratch = crate::disk::probe::ScratchDir::new();
    let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
    let fuse_target = match (&scratch, &pipe) {
        (Ok(dir), Ok((_, w))) => Some((dir.c_path.clone(), w.as_raw_fd())),
        _ => None,
    };
    // SAFETY: runs in the forked child before exec; only system calls on data prepared
    // before the fork (see `enter_namespaces` and `mount_test`).
    unsafe {
        cmd.pre_exec(move || {
            enter_namespaces(ids.as_ref()).map_err(std::io::Error::from)?;
            if let Some((target, fd)) = &fuse_target {
                let byte = match crate::disk::probe::mount_test(target) {
                    Ok(()) => 0u8,
                    Err(e) => (e as i32).clamp(1, 255) as u8,
                };
                libc::write(*fd, (&byte as *const u8).cast(), 1);
            }
            Ok(())
        });
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output();
    let fuse = match pipe {
        Ok((r, w)) => {
            drop(w);
            let mut byte = [0u8; 1];
            match nix::unistd::read(&r, &mut byte) {
                Ok(1) if byte[0] == 0 => Ok(()),
                Ok(1) => Err(crate::disk::probe::explain(
                    nix::errno::Errno::from_raw(i32::from(byte[0])),
                    rootless,
                )),
                _ => Err("the FUSE check did not run".to_string()),
            }
        }
        Err(e) => Err(format!("pipe for the FUSE check: {e}")),
    };
    drop(scratch);
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let mode = if rootless { "user+network" } else { "network" };
            return Capabilities::without_namespaces(format!(
                "creating a {mode} namespace failed: {e}"
            ));
        }
    };
    let support = if rootless {
        NamespaceSupport::Rootless
    } else {
        NamespaceSupport::Root
    };
    let mut caps = parse_checks(support, &String::from_utf8_lossy(&out.stdout));
    set_fuse(&mut caps, fuse);
    caps
}

fn set_fuse(caps: &mut Capabilities, result: std::result::Result<(), String>) {
    match result {
        Ok(()) => {
            caps.fuse = true;
            caps.notes
                .push("fuse: yes (disk faults power-loss, torn-write)".into());
        }
        Err(why) => {
            caps.fuse = false;
            caps.notes.push(format!("fuse: no ({why})"));
        }
    }
}

/// Run the checks in the current network namespace (used right after entering the lab).
pub(crate) fn check_here(support: NamespaceSupport) -> Capabilities {
    let mut caps = match Command::new("sh")
        .arg("-c")
        .arg(CHECKS)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) => parse_checks(support, &String::from_utf8_lossy(&out.stdout)),
        Err(e) => {
            let mut caps = parse_checks(support, "");
            caps.notes
                .push(format!("could not run the checks with sh: {e}"));
            caps
        }
    };
    let rootless = caps.namespaces == NamespaceSupport::Rootless;
    set_fuse(
        &mut caps,
        crate::disk::fuse_usable().map_err(|e| {
            if rootless && e.contains("EPERM") {
                "this kernel does not allow FUSE mounts in a user namespace".to_string()
            } else {
                e
            }
        }),
    );
    caps
}

fn parse_checks(namespaces: NamespaceSupport, output: &str) -> Capabilities {
    let mut caps = Capabilities {
        namespaces,
        links: false,
        nftables: false,
        tc: false,
        tbf: false,
        netem: false,
        fuse: false,
        notes: Vec::new(),
    };
    match &caps.namespaces {
        NamespaceSupport::Root => caps.notes.push("network namespaces: yes (root)".into()),
        NamespaceSupport::Rootless => caps
            .notes
            .push("network namespaces: yes (rootless, through a user namespace)".into()),
        NamespaceSupport::Unavailable(_) => {}
    }
    for name in ["links", "nftables", "tc", "tbf", "netem"] {
        let line = output
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')));
        let ok = line == Some("ok");
        match name {
            "links" => caps.links = ok,
            "nftables" => caps.nftables = ok,
            "tc" => caps.tc = ok,
            "tbf" => caps.tbf = ok,
            _ => caps.netem = ok,
        }
        let note = match line {
            Some("ok") => format!("{name}: yes"),
            Some("missing") | None => format!("{name}: no (tool not installed)"),
            Some(other) => format!(
                "{name}: no ({})",
                other.strip_prefix("fail ").unwrap_or(other).trim()
            ),
        };
        caps.notes.push(note);
    }
    if !caps.netem {
        caps.notes
            .push("delay and jitter run in the userspace delay proxy".into());
    }
    caps
}

/// uid/gid maps for a rootless user namespace, prepared before a fork.
#[derive(Debug)]
pub(crate) struct IdMaps {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    setgroups: CString,
    uid_map_path: CString,
    gid_map_path: CString,
}

impl IdMaps {
    /// Map root in the new namespace to the current effective uid/gid.
    pub(crate) fn current() -> Result<Self> {
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        let path = |p: &str| CString::new(p).map_err(|e| Error::Invalid(e.to_string()));
        Ok(IdMaps {
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            setgroups: path("/proc/self/setgroups")?,
            uid_map_path: path("/proc/self/uid_map")?,
            gid_map_path: path("/proc/self/gid_map")?,
        })
    }
}

/// Unshare into a new network and mount namespace (mount propagation made private, so no
/// mount made inside ever reaches the host); with `ids`, into a new user namespace first,
/// with root inside mapped to our ids. Async-signal-safe: only system calls on prepared
/// data, so it may run in `pre_exec`.
pub(crate) fn enter_namespaces(ids: Option<&IdMaps>) -> Result<(), nix::Error> {
    match ids {
        None => nix::sched::unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)?,
        Some(ids) => {
            nix::sched::unshare(
                CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS,
            )?;
            write_file(&ids.setgroups, b"deny")?;
            write_file(&ids.uid_map_path, &ids.uid_map)?;
            write_file(&ids.gid_map_path, &ids.gid_map)?;
        }
    }
    make_mounts_private()
}

/// `mount --make-rprivate /`: mounts made in this namespace stay in it.
fn make_mounts_private() -> Result<(), nix::Error> {
    // SAFETY: mount(2) with static NUL-terminated strings and null data.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

fn write_file(path: &CString, data: &[u8]) -> Result<(), nix::Error> {
    // SAFETY: open/write/close on a valid NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(nix::Error::last());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = nix::Error::last();
        libc::close(fd);
        if n < 0 || n as usize != data.len() {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_check_output() {
        let caps = parse_checks(
            NamespaceSupport::Root,
            "links=ok\nnftables=ok\ntc=ok\ntbf=ok\nnetem=fail Error: Specified qdisc kind is unknown.\n",
        );
        assert!(caps.links && caps.nftables && caps.tc && caps.tbf);
        assert!(!caps.netem);
        assert!(caps.full_lab());
        assert!(caps
            .notes
            .iter()
            .any(|n| n.contains("netem: no (Error: Specified qdisc kind is unknown.)")));
    }

    #[test]
    fn missing_tools_are_reported() {
        let caps = parse_checks(NamespaceSupport::Rootless, "links=ok\nnftables=missing\n");
        assert!(!caps.nftables && !caps.tc && !caps.full_lab());
        assert!(caps
            .notes
            .iter()
            .any(|n| n == "nftables: no (tool not installed)"));
    }
}
