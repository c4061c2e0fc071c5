//! Finding the Redis primary through Sentinel, as real clients do.
//!
//! A client asks the Sentinels in turn `SENTINEL get-master-addr-by-name raftbus`, takes
//! the first answer, and confirms with `ROLE` on the named server that it really is a
//! primary (a Sentinel may lag behind a failover). [`settle`] waits, after the load, until
//! every server is a replica of that primary with its link up and its offset caught up, so
//! that the final reads compare what Redis ended up with, not a resync in progress.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::resp::{RespConn, Value};
use crate::target::{check_client_addr, info, info_field};

/// How long a client waits for a Sentinel or server to answer while it looks for the
/// primary.
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "raftbus";

async fn call(addr: SocketAddr, args: &[&str], timeout: Duration) -> io::Result<Value> {
    check_client_addr(addr).map_err(io::Error::other)?;
    let work = async {
        let mut conn = RespConn::connect(addr, timeout).await?;
        conn.call(args).await
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string).or_else(|| match v {
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    })
}

/// `SENTINEL MASTER raftbus` as `(field, value)` pairs.
pub async fn sentinel_master_info(
    sentinel: SocketAddr,
    timeout: Duration,
) -> io::Result<Vec<(String, String)>> {
    let v = call(sentinel, &["SENTINEL", "MASTER", MASTER_NAME], timeout).await?;
    let items = v
        .as_array()
        .ok_or_else(|| io::Error::other(format!("unexpected SENTINEL MASTER reply {v:?}")))?;
    Ok(items
        .chunks(2)
        .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
        .collect())
}

/// The primary one Sentinel names.
pub async fn sentinel_primary(sentinel: SocketAddr, timeout: Duration) -> io::Result<SocketAddr> {
    let v = call(
        sentinel,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        timeout,
    )
    .await?;
    let parts: Vec<String> = v
        .as_array()
        .map(|a| a.iter().filter_map(text).collect())
        .unwrap_or_default();
    match parts.as_slice() {
        [ip, port] => format!("{ip}:{port}")
            .parse()
            .map_err(|e| io::Error::other(format!("bad primary address {ip}:{port}: {e}"))),
        _ => Err(io::Error::other(format!("no primary in reply {v:?}"))),
    }
}

/// Whether `ROLE` on `addr` says `master`.
pub async fn is_primary(addr: SocketAddr, timeout: Duration) -> bool {
    match call(addr, &["ROLE"], timeout).await {
        Ok(v) => v
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .is_some_and(|r| r == "master"),
        Err(_) => false,
    }
}

/// Asks the Sentinels in turn, starting at `first`, and returns the first named primary
/// that confirms its role.
pub async fn discover(
    sentinels: &[SocketAddr],
    first: usize,
    timeout: Duration,
) -> io::Result<SocketAddr> {
    let n = sentinels.len();
    let mut last = io::Error::other("no sentinels");
    for i in 0..n {
        let s = sentinels[(first + i) % n];
        match sentinel_primary(s, timeout).await {
            Ok(p) if is_primary(p, timeout).await => return Ok(p),
            Ok(p) => last = io::Error::other(format!("sentinel {s} names {p}, not a primary")),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The primary a majority of the answering Sentinels name (ties: the first), or `None`.
pub async fn majority_primary(sentinels: &[SocketAddr], timeout: Duration) -> Option<SocketAddr> {
    let answers = futures::future::join_all(
        sentinels
            .iter()
            .map(|s| async move { sentinel_primary(*s, timeout).await.ok() }),
    )
    .await;
    let mut counts: Vec<(SocketAddr, usize)> = Vec::new();
    for a in answers.into_iter().flatten() {
        match counts.iter_mut().find(|(p, _)| *p == a) {
            Some((_, c)) => *c += 1,
            None => counts.push((a, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, c)| *c)
        .map(|(primary, _)| primary)
}

/// Why the servers have not settled yet.
async fn unsettled(servers: &[(String, SocketAddr)], primary: SocketAddr) -> Option<String> {
    let Some((pname, _)) = servers.iter().find(|(_, a)| *a == primary) else {
        return Some(format!(
            "sentinels name {primary}, which is none of the servers"
        ));
    };
    let pinfo = match info(pname, primary, "replication").await {
        Ok(t) => t,
        Err(e) => return Some(format!("primary {pname}: {e}")),
    };
    if info_field(&pinfo, "role") != Some("master") {
        return Some(format!("{pname} is not a primary yet"));
    }
    let offset = info_field(&pinfo, "master_repl_offset")
        .unwrap_or("?")
        .to_string();
    for (name, addr) in servers.iter().filter(|(_, a)| *a != primary) {
        let t = match info(name, *addr, "replication").await {
            Ok(t) => t,
            Err(e) => return Some(format!("{name}: {e}")),
        };
        let host = info_field(&t, "master_host").unwrap_or("");
        let port = info_field(&t, "master_port").unwrap_or("");
        if info_field(&t, "role") != Some("slave")
            || format!("{host}:{port}") != primary.to_string()
        {
            return Some(format!("{name} is not a replica of {pname} yet"));
        }
        if info_field(&t, "master_link_status") != Some("up")
            || info_field(&t, "master_sync_in_progress") == Some("1")
        {
            return Some(format!("{name} is still syncing with {pname}"));
        }
        if info_field(&t, "slave_repl_offset") != Some(offset.as_str()) {
            return Some(format!("{name} has not caught up with {pname}"));
        }
    }
    None
}

/// Waits until every server replicates the primary the Sentinels name and has caught up
/// (checked twice in a row, so a primary still taking writes is not mistaken for settled).
/// Returns the primary, or why it did not settle within `timeout`.
pub async fn settle(
    servers: &[(String, SocketAddr)],
    sentinels: &[SocketAddr],
    timeout: Duration,
) -> Result<SocketAddr, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut streak = 0;
    let mut why = String::from("no sentinel answered");
    loop {
        match majority_primary(sentinels, Duration::from_secs(1)).await {
            Some(p) => match unsettled(servers, p).await {
                None => {
                    streak += 1;
                    if streak >= 2 {
                        return Ok(p);
                    }
                }
                Some(w) => {
                    streak = 0;
                    why = w;
                }
            },
            None => streak = 0,
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(why);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
