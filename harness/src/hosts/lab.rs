//! `raftbus hosts lab`: stand-in hosts on one machine, for tests and docs. Inside the lab
//! (entered by `main`: a private network and mount namespace), each host `hN` is a lab
//! namespace at 198.18.1.N running Debian's `sshd` with a host key made for it; a client key,
//! a `known_hosts` holding exactly those host keys, an `ssh_config` and the matching
//! `DIR/hosts.toml` are written. Then COMMAND runs inside the lab, where 198.18.1.N is
//! reachable, and everything is torn down when it exits: sshd and the namespaces die with
//! this process, and `/run/sshd` (sshd's privilege-separation directory) is a tmpfs of the
//! lab's own mount namespace when the machine has none.
//!
//! This process is the subreaper of everything the hosts start, as init is on a real host,
//! so servers that exit are reaped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitStatus};
use raftbus_faults::Lab;

use super::HostsError;

fn lab_err(what: impl Into<String>) -> HostsError {
    HostsError::Lab(what.into())
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<(), HostsError> {
    let out = cmd.output().map_err(|e| lab_err(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(lab_err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

extern "C" fn ignore(_: nix::libc::c_int) {}

/// Writes the keys and configs under `dir`, starts sshd in `count` lab hosts, runs
/// `command` inside the lab and returns its exit code.
pub fn run(lab: &Lab, dir: &Path, count: usize, command: &[String]) -> Result<u8, HostsError> {
    if !lab.mode().is_namespaced() {
        return Err(lab_err(format!(
            "needs the namespace lab, which is not available here: {:?}",
            lab.mode()
        )));
    }
    if !(1..=16).contains(&count) {
        return Err(lab_err(format!("--count must be 1-16, got {count}")));
    }
    let sshd = crate::target::find_on_path("sshd")
        .ok_or_else(|| lab_err("sshd not found: sudo apt-get install -y openssh-server"))?;
    crate::target::find_on_path("ssh-keygen")
        .ok_or_else(|| lab_err("ssh-keygen not found: sudo apt-get install -y openssh-client"))?;
    std::fs::create_dir_all(dir).map_err(|e| lab_err(format!("create {}: {e}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| lab_err(format!("resolve {}: {e}", dir.display())))?;
    if !Path::new("/run/sshd").is_dir() {
        std::fs::create_dir_all("/run").map_err(|e| lab_err(format!("create /run: {e}")))?;
        nix::mount::mount(
            Some("tmpfs"),
            "/run",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=0755"),
        )
        .map_err(|e| lab_err(format!("mount a tmpfs on /run in the lab: {e}")))?;
        std::fs::create_dir_all("/run/sshd")
            .map_err(|e| lab_err(format!("create /run/sshd: {e}")))?;
    }
    let key = dir.join("id_ed25519");
    if !key.exists() {
        run_tool(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "raftbus-hosts-lab",
                    "-f",
                ])
                .arg(&key),
            "make the client key",
        )?;
    }
    std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))
        .map_err(|e| lab_err(format!("write authorized_keys: {e}")))?;
    let names: Vec<String> = (1..=count).map(|i| format!("h{i}")).collect();
    let mut known = String::new();
    let mut inventory = String::from(
        "# written by `raftbus hosts lab`: sshd in lab namespaces, keys made for the occasion\n\
         version = 1\n\n[ssh]\nconfig = \"ssh_config\"\nknown_hosts = \"known_hosts\"\nidentity = \"id_ed25519\"\n",
    );
    let mut daemons = Vec::new();
    for name in &names {
        let host = lab
            .add_host(name)
            .map_err(|e| lab_err(format!("add lab host {name}: {e}")))?;
        let hdir = dir.join(name);
        std::fs::create_dir_all(hdir.join("root"))
            .map_err(|e| lab_err(format!("create {}: {e}", hdir.display())))?;
        let hostkey = hdir.join("ssh_host_ed25519_key");
        if !hostkey.exists() {
            run_tool(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                    .arg(&hostkey),
                "make a host key",
            )?;
        }
        let pubkey = std::fs::read_to_string(hdir.join("ssh_host_ed25519_key.pub"))
            .map_err(|e| lab_err(format!("read the host key: {e}")))?;
        let mut parts = pubkey.split_whitespace();
        let (kt, kb) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        known.push_str(&format!("{} {kt} {kb}\n", host.addr()));
        let conf = hdir.join("sshd_config");
        std::fs::write(
            &conf,
            format!(
                "ListenAddress {addr}:22\nHostKey {key}\nAuthorizedKeysFile {auth}\nPidFile {pid}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n\
                 AcceptEnv LANG\nMaxSessions 64\nMaxStartups 64\n",
                addr = host.addr(),
                key = hostkey.display(),
                auth = dir.join("authorized_keys").display(),
                pid = hdir.join("sshd.pid").display(),
            ),
        )
        .map_err(|e| lab_err(format!("write {}: {e}", conf.display())))?;
        let log = std::fs::File::create(hdir.join("sshd.log"))
            .map_err(|e| lab_err(format!("create the sshd log: {e}")))?;
        let mut cmd = host
            .command(&sshd)
            .map_err(|e| lab_err(format!("sshd in {name}: {e}")))?;
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| lab_err(e.to_string()))?)
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| lab_err(format!("start sshd in {name}: {e}")))?;
        daemons.push((name.clone(), host.addr(), child));
        inventory.push_str(&format!(
            "\n[[host]]\nname = \"{name}\"\naddress = \"{}\"\nuser = \"root\"\nroot = \"{}\"\ninterface = \"eth0\"\n",
            host.addr(),
            hdir.join("root").display()
        ));
    }
    std::fs::write(dir.join("known_hosts"), known)
        .map_err(|e| lab_err(format!("write known_hosts: {e}")))?;
    std::fs::write(
        dir.join("ssh_config"),
        format!(
            "# for `ssh -F {d}/ssh_config 198.18.1.N`\nHost *\n  User root\n  IdentityFile {d}/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            d = dir.display()
        ),
    )
    .map_err(|e| lab_err(format!("write ssh_config: {e}")))?;
    std::fs::write(dir.join("hosts.toml"), inventory)
        .map_err(|e| lab_err(format!("write hosts.toml: {e}")))?;
    // Ready once each sshd accepts connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, addr, child) in &mut daemons {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(lab_err(format!(
                    "sshd in {name} exited ({status}); see {}",
                    dir.join(name.as_str()).join("sshd.log").display()
                )));
            }
            let sa = std::net::SocketAddr::new(std::net::IpAddr::V4(*addr), 22);
            if std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(lab_err(format!("sshd in {name} did not listen on {sa}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "raftbus: hosts lab: {count} sshd hosts up; inventory {}",
        dir.join("hosts.toml").display()
    );
    // Orphans of the hosts' sessions (servers started with setsid) are reaped here.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| lab_err(format!("become a subreaper: {e}")))?;
    // Ctrl-C reaches the command; this process waits for it and then tears down.
    // SAFETY: the handler does nothing (async-signal-safe).
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::Handler(ignore),
        );
    }
    let child = Command::new(&command[0])
        .args(&command[1..])
        .spawn()
        .map_err(|e| lab_err(format!("run {}: {e}", command[0])))?;
    let child_pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let code = loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, c)) if pid == child_pid => break c as u8,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child_pid => break 128 + sig as u8,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(lab_err(format!("wait for the command: {e}"))),
        }
    };
    for (_, _, mut d) in daemons {
        let _ = d.kill();
        let _ = d.wait();
    }
    Ok(code)
}
