//! The compatibility script (`tests/compat/streams_compat.py`, Python `redis` package and
//! redis-cli) run against redis-server and against a bus cluster: the replies must be the
//! same, stream IDs and times aside. Needs python3 with venv, pip access to PyPI (once;
//! the virtualenv is kept in the target directory), redis-server and redis-cli; without
//! them the test fails naming what is missing, unless `RAFTBUS_ALLOW_SKIP=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_addrs, Cluster};

fn missing(what: &str) -> bool {
    if std::env::var_os("RAFTBUS_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!("skipping the compatibility test: {what}");
        return true;
    }
    panic!("the compatibility test needs {what}; set RAFTBUS_ALLOW_SKIP=1 to skip");
}

fn on_path(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A virtualenv with the `redis` package, made once under the target directory.
fn venv_python() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat-venv");
    let python = dir.join("bin/python");
    let has_redis = |p: &Path| {
        Command::new(p)
            .args(["-c", "import redis"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_redis(&python) {
        return Ok(python);
    }
    let venv = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .map_err(|e| format!("python3 (to make a virtualenv): {e}"))?;
    if !venv.status.success() {
        return Err(format!(
            "python3 -m venv (the venv module): {}",
            String::from_utf8_lossy(&venv.stderr)
        ));
    }
    let pip = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "redis"])
        .output()
        .map_err(|e| format!("pip in the virtualenv: {e}"))?;
    if !pip.status.success() || !has_redis(&python) {
        return Err(format!(
            "pip install redis (PyPI access): {}",
            String::from_utf8_lossy(&pip.stderr)
        ));
    }
    Ok(python)
}

fn run_script(python: &Path, port: u16) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/streams_compat.py");
    let out = Command::new(python)
        .arg(&script)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .output()
        .expect("run the compatibility script");
    assert!(
        out.status.success(),
        "the script failed against port {port}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_redis_and_redis_cli_get_the_same_replies_from_the_bus_and_redis(
) -> anyhow::Result<()> {
    for tool in ["redis-server", "redis-cli", "python3"] {
        if !on_path(tool) && missing(&format!("{tool} on PATH")) {
            return Ok(());
        }
    }
    let python = match venv_python() {
        Ok(p) => p,
        Err(why) => {
            missing(&why);
            return Ok(());
        }
    };

    let port = free_addrs(1)[0].port();
    let _redis = Redis(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let from_redis = run_script(&python, port);

    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    // Through a follower, so every write is forwarded.
    let node = (leader + 1) % 3;
    let from_bus = run_script(&python, cluster.nodes[node].client.port());

    let diff: Vec<String> = from_redis
        .lines()
        .zip(from_bus.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("redis: {a}\nbus:   {b}"))
        .collect();
    assert!(
        diff.is_empty() && from_redis.lines().count() == from_bus.lines().count(),
        "the bus answers differently from redis-server:\n{}\n\nredis:\n{from_redis}\nbus:\n{from_bus}",
        diff.join("\n")
    );
    Ok(())
}
