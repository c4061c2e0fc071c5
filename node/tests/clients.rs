//! Clients nobody here wrote: redis-cli (redis-tools) and the redis-rs crate.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::Cluster;

fn redis_cli() -> &'static str {
    assert!(
        Command::new("redis-cli").arg("--version").output().is_ok(),
        "redis-cli is required for this test: sudo apt-get install -y redis-tools"
    );
    "redis-cli"
}

fn cli(addr: std::net::SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(redis_cli())
        .arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(args)
        .output()?;
    anyhow::ensure!(out.status.success(), "redis-cli {args:?} failed: {out:?}");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_works_against_the_bus() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let a = cluster.nodes[leader].client;
    let b = cluster.nodes[(leader + 1) % 3].client;

    assert_eq!(cli(a, &["PING"])?, "PONG");

    // SUBSCRIBE in one redis-cli, PUBLISH from another, on different nodes.
    let mut sub = Command::new(redis_cli())
        .arg("-h")
        .arg(b.ip().to_string())
        .arg("-p")
        .arg(b.port().to_string())
        .args(["SUBSCRIBE", "chat"])
        .stdout(Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let offset = cli(a, &["PUBLISH", "chat", "hello-from-cli"])?;
    assert_eq!(offset, "1");
    tokio::time::sleep(Duration::from_millis(800)).await;
    sub.kill()?;
    let out = sub.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("subscribe") && text.contains("hello-from-cli"),
        "{text}"
    );

    // XADD / XREAD / XLEN.
    let id = cli(a, &["XADD", "events", "*", "kind", "click"])?;
    assert_eq!(id, "1-0");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = cli(b, &["XREAD", "COUNT", "10", "STREAMS", "events", "0"])?;
        if read.contains("click") {
            assert!(read.contains("1-0"), "{read}");
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "XREAD never saw the entry: {read}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cli(b, &["XLEN", "events"])?, "1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_streams_api_works_against_the_bus() -> anyhow::Result<()> {
    use redis::AsyncCommands;
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    // Written through a follower (forwarded), read on the leader, which applied it before
    // the acknowledgement went out.
    let mut f = cluster.conn((leader + 1) % 3).await?;
    let id: String = f.xadd("s", "*", &[("a", "1"), ("b", "2")]).await?;
    assert_eq!(id, "1-0");
    let mut c = cluster.conn(leader).await?;
    let len: usize = c.xlen("s").await?;
    assert_eq!(len, 1);
    let reply: redis::streams::StreamRangeReply = c.xrange_all("s").await?;
    assert_eq!(reply.ids.len(), 1);
    assert_eq!(reply.ids[0].id, "1-0");
    let v: String = reply.ids[0].get("b").expect("field b");
    assert_eq!(v, "2");
    Ok(())
}

/// With `requirepass`, commands wait for AUTH (or HELLO AUTH), and RESET makes the
/// connection unauthenticated again, as Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_makes_a_connection_authenticate_again() -> anyhow::Result<()> {
    use raftbus_node::resp::Frame;
    let cluster = Cluster::start_with(1, Some("version = 1\nrequirepass = \"s3cret\"\n"), None)?;
    // No leader is needed: AUTH, RESET and a replica read are the node's own.
    let mut conn = crate::util::RawConn::connect(cluster.nodes[0].client).await?;
    let mut ask = async |args: &[&str]| -> anyhow::Result<Frame> {
        conn.send(args).await?;
        conn.read(Duration::from_secs(5))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no reply to {args:?}"))
    };
    let noauth = Frame::Error("NOAUTH Authentication required.".into());
    assert_eq!(ask(&["XLEN", "k"]).await?, noauth);
    assert_eq!(
        ask(&["AUTH", "wrong"]).await?,
        Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(ask(&["AUTH", "s3cret"]).await?, Frame::ok());
    assert_eq!(ask(&["XLEN", "k"]).await?, Frame::Integer(0));
    assert_eq!(ask(&["RESET"]).await?, Frame::simple("RESET"));
    assert_eq!(ask(&["XLEN", "k"]).await?, noauth);
    let hello = ask(&["HELLO", "3", "AUTH", "default", "s3cret"]).await?;
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(ask(&["XLEN", "k"]).await?, Frame::Integer(0));
    Ok(())
}
