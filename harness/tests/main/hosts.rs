//! `--hosts`: the bus and Redis on "remote" hosts over real SSH. The hosts are sshd
//! daemons in lab namespaces (`raftbus hosts lab`), reached at 198.18.1.N exactly as remote
//! machines would be. Each test writes a shell script that `raftbus hosts lab` runs inside
//! the lab; the script leaves what it saw (exit codes, what is left on each host) in files
//! the test then checks. Everything the lab made dies with it.
//!
//! They need the namespace lab and sshd (openssh-server); without them they fail loudly
//! unless `RAFTBUS_ALLOW_SKIP=1`.

use std::path::Path;

use raftbus_reports::model::Verdict;

use crate::util;

fn require_ssh_lab() -> bool {
    if !util::require_lab() {
        return false;
    }
    let found = ["sshd", "ssh", "ssh-keygen"].iter().all(|p| {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            .unwrap_or(false)
    });
    if found {
        return true;
    }
    if std::env::var_os("RAFTBUS_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: sshd/ssh/ssh-keygen not on PATH (apt-get install -y openssh-server openssh-client)");
        return false;
    }
    panic!("sshd, ssh and ssh-keygen must be on PATH: sudo apt-get install -y openssh-server openssh-client; set RAFTBUS_ALLOW_SKIP=1 to skip");
}

/// Shell functions the scripts use: `leftovers NAME` writes what is left of raftbus on
/// every host (processes under its root, the nft table, qdiscs, mounts) to `NAME.h<i>`.
const PRELUDE: &str = r#"set -u
rb="$RB"; lab="$LAB"
leftovers() {
  for i in 1 2 3; do
    ssh -F "$lab/ssh_config" 198.18.1.$i "
      echo procs: \$(pgrep -af '[/]${lab#/}/h$i/root' | wc -l)
      echo nft: \$(nft list tables | grep -c 'inet raftbus')
      echo qdisc: \$(tc qdisc show dev eth0 | grep -c ' 5242: ')
      echo mounts: \$(grep -c ' [/]${lab#/}/h$i/root' /proc/mounts)
      pgrep -af '[/]${lab#/}/h$i/root'
    " > "$lab/$1.h$i" 2>&1
  done
  true
}
# How many hosts have the nft table loaded.
tables() {
  for i in 1 2 3; do ssh -F "$lab/ssh_config" 198.18.1.$i nft list tables; done | grep -c 'inet raftbus'
}
"#;

/// Runs `script` inside a fresh 3-host ssh lab in `dir/lab`; returns the lab's exit code.
fn in_ssh_lab(dir: &Path, script: &str) -> i32 {
    let lab = dir.join("lab");
    let path = dir.join("script.sh");
    std::fs::write(&path, format!("{PRELUDE}{script}")).unwrap();
    let out = util::raftbus()
        .args(["hosts", "lab", "--dir"])
        .arg(&lab)
        .arg("--")
        .arg("sh")
        .arg(&path)
        .env("RB", env!("CARGO_BIN_EXE_raftbus"))
        .env("LAB", &lab)
        .output()
        .expect("run raftbus hosts lab");
    eprintln!(
        "--- hosts lab stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.code().unwrap_or(-1)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Nothing of raftbus on any host: `leftovers NAME` found zero of everything.
fn assert_clean(lab: &Path, name: &str) {
    for i in 1..=3 {
        let text = read(&lab.join(format!("{name}.h{i}")));
        for key in ["procs", "nft", "qdisc", "mounts"] {
            assert!(
                text.contains(&format!("{key}: 0")),
                "{name}: h{i} still has {key}: {text}"
            );
        }
    }
}

fn chaos_script(out: &Path, target: &str, faults: &str) -> String {
    format!(
        "\"$rb\" chaos --hosts \"$lab/hosts.toml\" --target {target} --faults {faults} \
         --duration 20s --warmup 2s --interval 6s --recovery 6s --rate 200 --publishers 2 \
         --channels 2 --seed 11 --out {} > \"$lab/run.log\" 2>&1\n\
         echo $? > \"$lab/run.rc\"\nleftovers after\n",
        out.display()
    )
}

/// The journal of remote commands holds a command of each kind, and the run's windows.
fn assert_applied_remotely(out: &Path, kinds: &[(&str, &str)]) {
    let s = util::summary(out);
    assert_eq!(s.environment.network, "ssh-hosts");
    assert!(
        s.environment
            .notes
            .iter()
            .any(|n| n.starts_with("rtt between hosts")),
        "{:?}",
        s.environment.notes
    );
    assert!(
        s.environment
            .notes
            .iter()
            .any(|n| n.starts_with("host h1: 198.18.1.1") && n.contains("kernel")),
        "{:?}",
        s.environment.notes
    );
    let commands = read(&out.join("hosts-commands.jsonl"));
    for (kind, command) in kinds {
        assert!(
            s.faults.iter().any(|f| f.kind == *kind),
            "no {kind} window: {:?}",
            s.faults
        );
        assert!(
            commands.contains(command),
            "no `{command}` ({kind}) in hosts-commands.jsonl"
        );
    }
    for n in ["n1", "n2", "n3"].iter().take(s.workload.nodes) {
        let log = out.join("logs").join(format!("{n}.log"));
        assert!(log.is_file(), "{} not fetched", log.display());
    }
}

#[test]
fn inventory_errors_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("version = 1\n", "field `host`"),
        (
            "version = 1\n[[host]]\nname = \"h1\"\naddress = \"db1.example\"\nuser = \"root\"\nroot = \"/srv/rb\"\ninterface = \"eth0\"\n",
            "host[0].address",
        ),
        (
            "version = 1\n[[host]]\nname = \"h1\"\naddress = \"198.18.1.1\"\nuser = \"root\"\nroot = \"/srv/rb\"\n",
            "interface",
        ),
        (
            "version = 1\n[ssh]\nknown_hosts = \"missing\"\n[[host]]\nname = \"h1\"\naddress = \"198.18.1.1\"\nuser = \"root\"\nroot = \"/srv/rb\"\ninterface = \"eth0\"\n",
            "ssh.known_hosts",
        ),
    ];
    for (text, field) in cases {
        let path = dir.path().join("hosts.toml");
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let results = dir.path().join("results");
        let r = results.to_str().unwrap();
        for args in [
            vec!["chaos", "--hosts", p, "--faults", "kill", "--out", r],
            vec!["hosts", "check", "--hosts", p],
        ] {
            let out = util::run(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = util::stderr(&out);
            assert!(err.contains(field) && err.contains(p), "{field}: {err}");
            assert!(
                !results.exists(),
                "{args:?}: a results directory for bad usage"
            );
        }
    }
}

/// A chaos run of `target` with `faults` over ssh that exits 0 and leaves nothing on the
/// hosts; its summary.
fn chaos_over_ssh(target: &str, faults: &str) -> Option<raftbus_reports::model::Summary> {
    if !require_ssh_lab() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_eq!(
        in_ssh_lab(dir.path(), &chaos_script(&out, target, faults)),
        0
    );
    let lab = dir.path().join("lab");
    let rc = read(&lab.join("run.rc"));
    assert_eq!(rc.trim(), "0", "{}", read(&lab.join("run.log")));
    let s = util::summary(&out);
    assert_eq!(s.verdict, Verdict::Valid);
    assert_eq!(s.checks.lost, 0);
    assert!(s.checks.acked > 1000, "{}", s.checks.acked);
    let kinds: Vec<(&str, &str)> = faults
        .split(',')
        .map(|k| {
            let command = match k {
                "kill" => "kill -s KILL --",
                "pause" => "kill -s STOP --",
                "partition" => "comment \\\"partition",
                "loss" => "numgen random mod 100",
                "power-loss" => "drop-unsynced",
                "torn-write" => "tear-last-write",
                "corrupt" => "lazyfs corrupt --dir",
                other => panic!("no remote command known for {other}"),
            };
            (k, command)
        })
        .collect();
    assert_applied_remotely(&out, &kinds);
    assert_clean(&lab, "after");
    Some(s)
}

#[test]
fn bus_chaos_over_ssh_applies_kill_and_partition_remotely() {
    chaos_over_ssh("bus", "kill,partition");
}

#[test]
fn bus_disk_faults_over_ssh_go_through_the_hosts_lazy_filesystems() {
    if let Some(s) = chaos_over_ssh("bus", "power-loss,corrupt") {
        assert!(
            s.faults
                .iter()
                .any(|f| f.kind == "corrupt" && f.detail.contains(".seg")),
            "{:?}",
            s.faults
        );
    }
}

#[test]
fn redis_chaos_over_ssh() {
    util::require_redis();
    if let Some(s) = chaos_over_ssh("redis", "pause,loss") {
        assert!(
            s.target_detail.contains("appendfsync"),
            "{}",
            s.target_detail
        );
    }
}

#[test]
fn heal_after_sigkill_of_the_harness_leaves_nothing() {
    if !require_ssh_lab() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let fresh = dir.path().join("fresh");
    // A loss window is on from 8s to ~11s: the kill lands once every host has the table
    // loaded (polled: on a loaded machine ssh commands take seconds), and the lazy
    // filesystems the hosts serve are mounted.
    let script = format!(
        "\"$rb\" chaos --hosts \"$lab/hosts.toml\" --target bus --faults loss --lazy-fs \
         --duration 30s --warmup 2s --interval 12s --recovery 6s --rate 100 --seed 3 \
         --out {out} > \"$lab/run.log\" 2>&1 &\n\
         pid=$!\n\
         i=0; until grep -q numgen {out}/hosts-commands.jsonl 2>/dev/null || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done\n\
         j=0; until [ \"$(tables)\" = 3 ] || [ $j -ge 300 ]; do sleep 0.2; j=$((j+1)); done\n\
         kill -9 $pid; wait $pid; echo $? > \"$lab/killed.rc\"\n\
         leftovers before\n\
         \"$rb\" hosts heal --hosts \"$lab/hosts.toml\" > \"$lab/heal.out\" 2>\"$lab/heal.err\"; echo $? > \"$lab/heal.rc\"\n\
         leftovers healed\n\
         \"$rb\" hosts heal --hosts \"$lab/hosts.toml\" > \"$lab/heal2.out\" 2>&1\n\
         \"$rb\" bench --hosts \"$lab/hosts.toml\" --target bus --duration 4s --warmup 1s --rate 100 \
         --seed 4 --out {fresh} > \"$lab/fresh.log\" 2>&1; echo $? > \"$lab/fresh.rc\"\n",
        out = out.display(),
        fresh = fresh.display()
    );
    assert_eq!(in_ssh_lab(dir.path(), &script), 0);
    let lab = dir.path().join("lab");
    assert_eq!(read(&lab.join("killed.rc")).trim(), "137");
    // The kill really left things behind: the nodes and the table.
    for i in 1..=3 {
        let before = read(&lab.join(format!("before.h{i}")));
        assert!(!before.contains("procs: 0"), "h{i}: {before}");
        assert!(before.contains("nft: 1"), "h{i}: {before}");
        assert!(before.contains("mounts: 1"), "h{i}: {before}");
    }
    assert_eq!(
        read(&lab.join("heal.rc")).trim(),
        "0",
        "{}",
        read(&lab.join("heal.err"))
    );
    let healed = read(&lab.join("heal.out"));
    assert!(healed.contains("killed process group"), "{healed}");
    assert!(healed.contains("nft table inet raftbus"), "{healed}");
    assert!(healed.contains(": mount /"), "{healed}");
    assert_clean(&lab, "healed");
    let again = read(&lab.join("heal2.out"));
    assert_eq!(again.matches("nothing to heal").count(), 3, "{again}");
    assert_eq!(
        read(&lab.join("fresh.rc")).trim(),
        "0",
        "{}",
        read(&lab.join("fresh.log"))
    );
    assert_eq!(util::summary(&fresh).verdict, Verdict::Valid);
}
