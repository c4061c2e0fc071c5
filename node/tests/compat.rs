//! The compatibility script (`tests/compat/streams_compat.py`, Python `redis` package and
//! redis-cli) run against redis-server and against a bus cluster: the replies must be the
//! same, stream IDs and times aside. The same for a consumer-group session through
//! redis-rs's typed stream API ([`redis_rs_session`]). Needs python3 with venv, pip access to PyPI (once;
//! the virtualenv is kept in the target directory), redis-server and redis-cli; without
//! them the test fails naming what is missing, unless `RAFTBUS_ALLOW_SKIP=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftbus_node::resp::Frame;

use crate::util::{free_addrs, Cluster, RawConn};

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

/// Replaces stream ids (`<ms>-<seq>`; the bus's are `<offset>-0`) by their order of first
/// appearance, `#1`, `#2`...; `0-0` (a cursor at its end) stays.
fn normalize_ids(text: &str) -> String {
    let mut seen: Vec<String> = Vec::new();
    let mut out = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let ms = i - start;
        if ms > 0 && i < bytes.len() && bytes[i] == b'-' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j > i + 1 && &text[start..j] != "0-0" {
                let id = &text[start..j];
                let n = match seen.iter().position(|s| s == id) {
                    Some(n) => n,
                    None => {
                        seen.push(id.to_string());
                        seen.len() - 1
                    }
                };
                out.push_str(&format!("#{}", n + 1));
                i = j;
                continue;
            }
        }
        if ms > 0 {
            out.push_str(&text[start..i]);
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// A consumer-group session through redis-rs's typed stream API, one line per reply
/// (times left out; ids normalized by the caller).
async fn redis_rs_session(url: &str) -> anyhow::Result<Vec<String>> {
    use redis::streams::{
        StreamAutoClaimOptions, StreamAutoClaimReply, StreamClaimReply, StreamInfoGroupsReply,
        StreamPendingCountReply, StreamPendingReply, StreamReadOptions, StreamReadReply,
    };
    use redis::AsyncCommands;

    let client = redis::Client::open(url)?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let mut out = Vec::new();
    let created: String = c.xgroup_create_mkstream("jobs", "workers", "$").await?;
    out.push(format!("create {created}"));
    let busy: redis::RedisResult<String> = c.xgroup_create_mkstream("jobs", "workers", "$").await;
    out.push(format!(
        "create again: {:?}",
        busy.map_err(|e| e.code().unwrap_or("?").to_string())
    ));
    let mut ids = Vec::new();
    for n in 1..=4 {
        let id: String = c.xadd("jobs", "*", &[("n", n)]).await?;
        ids.push(id);
    }
    let read = |consumer: &str, count| {
        StreamReadOptions::default()
            .group("workers", consumer)
            .count(count)
    };
    let r: StreamReadReply = c
        .xread_options(&["jobs"], &[">"], &read("alice", 2))
        .await?;
    let got = |r: &StreamReadReply| -> Vec<String> {
        r.keys
            .iter()
            .flat_map(|k| k.ids.iter())
            .map(|e| format!("{} n={:?}", e.id, e.get::<i64>("n")))
            .collect()
    };
    out.push(format!("alice reads {:?}", got(&r)));
    let r: StreamReadReply = c.xread_options(&["jobs"], &[">"], &read("bob", 10)).await?;
    out.push(format!("bob reads {:?}", got(&r)));
    let acked: usize = c.xack("jobs", "workers", &[&ids[0]]).await?;
    out.push(format!("alice acks {} -> {acked}", ids[0]));
    let p: StreamPendingReply = c.xpending("jobs", "workers").await?;
    match p {
        StreamPendingReply::Data(d) => out.push(format!(
            "pending {} from {} to {}, {:?}",
            d.count,
            d.start_id,
            d.end_id,
            d.consumers
                .iter()
                .map(|x| (x.name.clone(), x.pending))
                .collect::<Vec<_>>()
        )),
        StreamPendingReply::Empty => out.push("pending none".into()),
    }
    let p: StreamPendingCountReply = c.xpending_count("jobs", "workers", "-", "+", 10).await?;
    out.push(format!(
        "pending list {:?}",
        p.ids
            .iter()
            .map(|i| (i.id.clone(), i.consumer.clone(), i.times_delivered))
            .collect::<Vec<_>>()
    ));
    // Alice "dies": bob claims what she holds.
    let claimed: StreamClaimReply = c.xclaim("jobs", "workers", "bob", 0, &[&ids[1]]).await?;
    out.push(format!(
        "bob claims {:?}",
        claimed.ids.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    ));
    let auto: StreamAutoClaimReply = c
        .xautoclaim_options(
            "jobs",
            "workers",
            "carol",
            0,
            "0-0",
            StreamAutoClaimOptions::default().count(10),
        )
        .await?;
    out.push(format!(
        "carol autoclaims {:?} next {} deleted {:?}",
        auto.claimed
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>(),
        auto.next_stream_id,
        auto.deleted_ids
    ));
    let (added, len): (String, usize) = redis::pipe()
        .atomic()
        .xadd("jobs", "*", &[("n", 5)])
        .xlen("jobs")
        .query_async(&mut c)
        .await?;
    out.push(format!("transaction adds {added}, len {len}"));
    let g: StreamInfoGroupsReply = c.xinfo_groups("jobs").await?;
    out.push(format!(
        "groups {:?}",
        g.groups
            .iter()
            .map(|g| (
                g.name.clone(),
                g.consumers,
                g.pending,
                g.last_delivered_id.clone()
            ))
            .collect::<Vec<_>>()
    ));
    let acked: usize = c.xack("jobs", "workers", &ids[1..]).await?;
    out.push(format!("ack the rest -> {acked}"));
    let trimmed: usize = c
        .xtrim("jobs", redis::streams::StreamMaxlen::Equals(2))
        .await?;
    let len: usize = c.xlen("jobs").await?;
    out.push(format!("trim to 2 removed {trimmed}, len {len}"));
    let kind: String = redis::cmd("TYPE").arg("jobs").query_async(&mut c).await?;
    let exists: usize = c.exists("jobs").await?;
    let deleted: usize = c.del("jobs").await?;
    let after: usize = c.exists("jobs").await?;
    out.push(format!(
        "type {kind}, exists {exists}, del {deleted}, exists {after}"
    ));
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_consumer_groups_get_the_same_replies_from_the_bus_and_redis() -> anyhow::Result<()>
{
    if !on_path("redis-server") && missing("redis-server on PATH") {
        return Ok(());
    }
    let (_redis, port) = start_redis()?;
    let from_redis = redis_rs_session(&format!("redis://127.0.0.1:{port}/")).await?;
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let from_bus = redis_rs_session(&cluster.url((leader + 1) % 3)).await?;
    let (a, b) = (
        normalize_ids(&from_redis.join("\n")),
        normalize_ids(&from_bus.join("\n")),
    );
    assert_eq!(
        a, b,
        "redis-rs sees different replies from redis-server (left) and the bus (right)"
    );
    assert!(
        a.contains("BUSYGROUP") && a.contains("carol autoclaims"),
        "{a}"
    );
    Ok(())
}

/// Sends one command and returns every frame that comes back within a short wait.
async fn exchange(conn: &mut RawConn, commands: &[&str]) -> anyhow::Result<Vec<Frame>> {
    for command in commands {
        conn.send(&command.split(' ').collect::<Vec<_>>()).await?;
    }
    let mut frames = Vec::new();
    let mut wait = Duration::from_secs(5);
    while let Some(frame) = conn.read(wait).await? {
        frames.push(frame);
        // Once the first reply is in, the rest follow at once.
        wait = Duration::from_millis(300);
    }
    Ok(frames)
}

/// The same array with its elements in order (PUBSUB CHANNELS lists in hash-table order).
fn sorted(frames: Vec<Frame>) -> Vec<Frame> {
    frames
        .into_iter()
        .map(|f| match f {
            Frame::Array(mut items) => {
                items.sort_by_key(|i| format!("{i:?}"));
                Frame::Array(items)
            }
            other => other,
        })
        .collect()
}

/// Subscribers on one server, then PUBSUB, RESET and AUTH as a client library would use
/// them; one line per exchange. HELLO's reply (server version, client id) is left out.
async fn connection_session(addr: std::net::SocketAddr) -> anyhow::Result<Vec<String>> {
    // Connections 0-2 subscribe; 3 asks.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(RawConn::connect(addr).await?);
    }
    let steps: &[(usize, &[&str])] = &[
        (0, &["SUBSCRIBE news.a news.b"]),
        (1, &["SUBSCRIBE news.a", "PSUBSCRIBE news.*"]),
        (2, &["PSUBSCRIBE news.* other.?"]),
        (3, &["PUBSUB CHANNELS"]),
        (3, &["PUBSUB CHANNELS news.?"]),
        (3, &["PUBSUB CHANNELS *b"]),
        (3, &["PUBSUB NUMSUB news.a news.b none"]),
        (3, &["PUBSUB NUMSUB"]),
        (3, &["PUBSUB NUMPAT"]),
        (3, &["PUBSUB SHARDCHANNELS"]),
        (3, &["PUBSUB SHARDNUMSUB x"]),
        (3, &["PUBSUB CHANNELS a b"]),
        (3, &["PUBSUB NUMPAT x"]),
        (3, &["PUBSUB bogus"]),
        (3, &["PUBSUB"]),
        // Subscribed (RESP2): only the subscriber's commands and RESET run.
        (1, &["PUBSUB NUMPAT", "CLIENT ID", "RESET", "PING"]),
        (3, &["PUBSUB NUMSUB news.a", "PUBSUB NUMPAT"]),
        (2, &["PUNSUBSCRIBE other.?"]),
        (3, &["PUBSUB NUMPAT"]),
        (3, &["CLIENT SETNAME foo", "HELLO 3"]),
        (
            3,
            &["MULTI", "RESET", "CLIENT GETNAME", "EXEC", "XLEN nokey"],
        ),
        // No password set: the default user takes any password, the one-argument form is
        // refused, another user does not exist.
        (
            3,
            &[
                "AUTH x",
                "AUTH default x",
                "AUTH bob x",
                "HELLO 2 AUTH bob x",
            ],
        ),
    ];
    let mut out = Vec::new();
    for &(conn, commands) in steps {
        let frames = exchange(&mut conns[conn], commands).await?;
        let frames = match commands[0] {
            c if c.starts_with("PUBSUB CHANNELS") => sorted(frames),
            "CLIENT SETNAME foo" => continue,
            _ => frames,
        };
        out.push(format!("{conn} {}: {frames:?}", commands.join("; ")));
    }
    Ok(out)
}

/// PUBSUB introspection, RESET and AUTH, frame for frame as redis-server answers them. On the bus
/// each node counts its own subscribers (as each node of a Redis Cluster does), so the
/// session runs on one node: a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_reset_and_auth_get_the_same_replies_from_the_bus_and_redis() -> anyhow::Result<()> {
    if !on_path("redis-server") && missing("redis-server on PATH") {
        return Ok(());
    }
    let (_redis, port) = start_redis()?;
    let from_redis = connection_session(([127, 0, 0, 1], port).into()).await?;
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let from_bus = connection_session(cluster.nodes[(leader + 1) % 3].client).await?;
    assert_eq!(
        from_redis.join("\n"),
        from_bus.join("\n"),
        "PUBSUB/RESET/AUTH replies differ between redis-server (left) and the bus (right)"
    );
    let text = from_bus.join("\n");
    assert!(
        text.contains(r#"PUBSUB NUMSUB news.a news.b none: [Array([Bulk(b"news.a"), Integer(2), Bulk(b"news.b"), Integer(1), Bulk(b"none"), Integer(0)])]"#)
            && text.contains(r#"PUBSUB NUMSUB news.a; PUBSUB NUMPAT: [Array([Bulk(b"news.a"), Integer(1)]), Integer(2)]"#),
        "{text}"
    );
    Ok(())
}

#[test]
fn ids_are_normalized_in_order_of_first_appearance() {
    assert_eq!(
        normalize_ids("1796276717144-0 then 1796276717144-1, 1796276717144-0, 42-0, 0-0"),
        "#1 then #2, #1, #3, 0-0"
    );
}

/// A throwaway redis-server on a free port, without persistence.
fn start_redis() -> anyhow::Result<(Redis, u16)> {
    let port = free_addrs(1)[0].port();
    let redis = Redis(
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
    Ok((redis, port))
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

    let (_redis, port) = start_redis()?;
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
