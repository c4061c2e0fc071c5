//! `read_consistency = "linearizable"`: XRANGE, XREVRANGE, XLEN and XREAD see every write
//! acknowledged before they were sent, on any node, and a leader that cannot confirm its
//! leadership with a quorum refuses to serve instead of answering from an old view.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::util::{parse_info, Cluster};

const KEY: &str = "ledger";
const LINEARIZABLE: &str = "read_consistency = \"linearizable\"\nwrite_timeout_ms = 2000\n";

async fn xadd(cluster: &Cluster, node: usize, n: usize) -> Result<String> {
    let mut c = cluster.conn(node).await?;
    let mut last = String::new();
    for i in 0..n {
        last = redis::cmd("XADD")
            .arg(KEY)
            .arg("*")
            .arg("n")
            .arg(i)
            .query_async(&mut c)
            .await
            .with_context(|| format!("xadd {i} via node {}", node + 1))?;
    }
    Ok(last)
}

fn is_tryagain(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::TryAgain
}

/// The id of the newest entry, from XREVRANGE + - COUNT 1 (`None`: empty stream).
fn newest(reply: &redis::Value) -> Option<String> {
    let redis::Value::Array(entries) = reply else {
        return None;
    };
    let redis::Value::Array(entry) = entries.first()? else {
        return None;
    };
    match entry.first()? {
        redis::Value::BulkString(id) => Some(String::from_utf8_lossy(id).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_on_a_lagging_follower_sees_a_just_acked_write() -> Result<()> {
    let cluster = Cluster::start_with(3, Some(LINEARIZABLE), None)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;
    let info = cluster.info(follower).await?;
    assert_eq!(
        info.get("read_consistency").map(String::as_str),
        Some("linearizable")
    );
    xadd(&cluster, leader, 1).await?;

    // The follower misses 300 writes while paused; the reads reach it while it is still
    // paused, so it sees them the moment it wakes up, before it has caught up.
    let mut len_conn = cluster.conn(follower).await?;
    let mut range_conn = cluster.conn(follower).await?;
    cluster.signal(follower, "STOP")?;
    let acked = xadd(&cluster, leader, 300).await?;
    let len = tokio::spawn(async move {
        redis::cmd("XLEN")
            .arg(KEY)
            .query_async::<i64>(&mut len_conn)
            .await
    });
    let range = tokio::spawn(async move {
        redis::cmd("XREVRANGE")
            .arg(KEY)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async::<redis::Value>(&mut range_conn)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.signal(follower, "CONT")?;

    let len = tokio::time::timeout(Duration::from_secs(10), len)
        .await
        .context("XLEN on the follower did not answer")???;
    assert_eq!(
        len,
        301,
        "a linearizable XLEN on the follower missed acknowledged writes; logs:\n{}",
        cluster.log_tails()
    );
    let range = tokio::time::timeout(Duration::from_secs(10), range)
        .await
        .context("XREVRANGE on the follower did not answer")???;
    assert_eq!(newest(&range), Some(acked), "XREVRANGE reply: {range:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_refuses_linearizable_reads() -> Result<()> {
    let cluster = Cluster::start_with(3, Some(LINEARIZABLE), None)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    xadd(&cluster, leader, 5).await?;
    let mut c = cluster.conn(leader).await?;
    // The followers stop: the leader still believes it leads, but no quorum confirms it.
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &i in &followers {
        cluster.signal(i, "STOP")?;
    }
    for cmd in [
        redis::cmd("XLEN").arg(KEY).clone(),
        redis::cmd("XRANGE").arg(KEY).arg("-").arg("+").clone(),
        redis::cmd("XREAD").arg("STREAMS").arg(KEY).arg("0").clone(),
    ] {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            cmd.query_async::<redis::Value>(&mut c),
        )
        .await
        .context("no reply from the cut-off leader")?;
        let err = reply.expect_err("a leader without a quorum served a linearizable read");
        assert!(is_tryagain(&err), "expected -TRYAGAIN, got {err}");
    }
    for &i in &followers {
        cluster.signal(i, "CONT")?;
    }
    Ok(())
}

/// The same with writes in flight when the others stop: their answers and the commit
/// updates they cause are still on the way at the leader, which must not count any of them
/// as a confirmation given after the read began. With two of three nodes stopped, no node
/// may serve a linearizable read, whatever it believes about who leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_is_served_while_two_of_three_nodes_are_stopped_mid_write() -> Result<()> {
    const ROUNDS: usize = 4;
    let cluster = Cluster::start_with(3, Some(LINEARIZABLE), None)?;
    cluster.wait_leader(Duration::from_secs(20)).await?;
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut c = cluster.conn(w % 3).await?;
        let writing = writing.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = 0u64;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let r: redis::RedisResult<String> = redis::cmd("XADD")
                    .arg(KEY)
                    .arg("*")
                    .arg("w")
                    .arg(w)
                    .query_async(&mut c)
                    .await;
                acked += u64::from(r.is_ok());
            }
            acked
        }));
    }
    for round in 0..ROUNDS {
        let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
        let mut reader = cluster.conn(leader).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        cluster.signal_all(&others, "STOP")?;
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            redis::cmd("XLEN")
                .arg(KEY)
                .query_async::<redis::Value>(&mut reader),
        )
        .await
        .context("no reply from the cut-off node")?;
        cluster.signal_all(&others, "CONT")?;
        let err = reply.expect_err(&format!(
            "round {round}: node {} served a linearizable read with two of three nodes stopped",
            leader + 1
        ));
        assert!(is_tryagain(&err), "expected -TRYAGAIN, got {err}");
    }
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut acked = 0;
    for w in writers {
        acked += w.await?;
    }
    assert!(
        acked > 0,
        "no write was acknowledged, so nothing was in flight"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_old_leader_does_not_serve_what_it_missed() -> Result<()> {
    let cluster = Cluster::start_with(3, Some(LINEARIZABLE), None)?;
    let old = cluster.wait_leader(Duration::from_secs(20)).await?;
    xadd(&cluster, old, 5).await?;
    let mut read_conn = cluster.conn(old).await?;
    cluster.signal(old, "STOP")?;
    // The others elect a new leader and acknowledge more writes meanwhile.
    let other = (old + 1) % 3;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let acked = loop {
        match xadd(&cluster, other, 20).await {
            Ok(id) => break id,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e),
        }
    };
    // The read reaches the old leader while it still thinks it leads.
    let read = tokio::spawn(async move {
        redis::cmd("XREVRANGE")
            .arg(KEY)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async::<redis::Value>(&mut read_conn)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.signal(old, "CONT")?;
    let reply = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("the old leader did not answer")??;
    match reply {
        Ok(v) => assert_eq!(
            newest(&v),
            Some(acked),
            "the resumed old leader served a stale read; logs:\n{}",
            cluster.log_tails()
        ),
        Err(e) => assert!(is_tryagain(&e), "unexpected error {e}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_is_the_default_and_info_says_so() -> Result<()> {
    let cluster = Cluster::start(1)?;
    cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut c = cluster.conn(0).await?;
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await?;
    let info = parse_info(&text);
    assert_eq!(
        info.get("read_consistency").map(String::as_str),
        Some("local")
    );
    assert!(info["reads"].starts_with("local replica"), "{text}");
    Ok(())
}
