//! Malformed and oversized input gets errors; the node keeps serving everyone else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::Cluster;

/// Sends raw bytes and reads whatever comes back until the node closes the connection or
/// goes quiet.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> anyhow::Result<(String, bool)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    Ok((String::from_utf8_lossy(&out).into_owned(), closed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_and_the_node_stays_up() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let addr = cluster.nodes[leader].client;
    let mut healthy = cluster.conn(leader).await?;

    // Unparseable stream: error, then the connection is closed.
    let (reply, closed) = exchange(addr, b"*abc\r\n").await?;
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
    assert!(closed);

    // A bulk string over the limit (4 MiB by default) is refused before it is read.
    let (reply, closed) = exchange(addr, b"*2\r\n$4\r\nECHO\r\n$999999999\r\n").await?;
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
    assert!(closed);

    // A huge array header likewise.
    let (reply, closed) = exchange(addr, b"*99999999999\r\n").await?;
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
    assert!(closed);

    // Unknown command and wrong arity: errors, and the connection keeps working.
    let (reply, closed) = exchange(
        addr,
        b"*1\r\n$7\r\nNOTACMD\r\n*1\r\n$4\r\nXADD\r\n*3\r\n$6\r\nXRANGE\r\n$1\r\nk\r\n$1\r\n-\r\n*1\r\n$4\r\nPING\r\n",
    )
    .await?;
    let lines: Vec<&str> = reply.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("-ERR unknown command 'NOTACMD'"),
        "{reply}"
    );
    assert!(
        lines[1].starts_with("-ERR wrong number of arguments for 'xadd'"),
        "{reply}"
    );
    assert!(
        lines[2].starts_with("-ERR wrong number of arguments for 'xrange'"),
        "{reply}"
    );
    assert_eq!(lines[3], "+PONG", "{reply}");
    assert!(!closed);

    // Inline commands work as with redis-server (telnet style).
    let (reply, _) = exchange(addr, b"PING\r\nECHO hi\r\n").await?;
    assert_eq!(reply, "+PONG\r\n$2\r\nhi\r\n");

    // Random garbage in many shapes never takes the node down.
    let mut seed = 0x2545f4914f6cdd1du64;
    for _ in 0..50 {
        let mut junk = Vec::new();
        for _ in 0..64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push(b"*$:+-\r\n0123456789abc"[(seed % 20) as usize]);
        }
        let _ = exchange(addr, &junk).await;
    }

    // Everyone else was served all along.
    let pong: String = redis::cmd("PING").query_async(&mut healthy).await?;
    assert_eq!(pong, "PONG");
    let _: String = redis::cmd("XADD")
        .arg("k")
        .arg("*")
        .arg("f")
        .arg("v")
        .query_async(&mut healthy)
        .await?;
    Ok(())
}
