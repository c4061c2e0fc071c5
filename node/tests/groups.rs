//! Consumer groups and transactions on a real cluster: group state survives kill -9,
//! failover and snapshot install, is identical on every node, and MULTI/EXEC is one
//! all-or-nothing entry.

use std::time::{Duration, Instant};

use anyhow::Context;
use redis::Value;

use crate::util::Cluster;

/// What a node says of a group, without the times that depend on when it is asked:
/// XINFO GROUPS, and XPENDING's extended form as (id, consumer, deliveries).
async fn group_state(cluster: &Cluster, i: usize, key: &str) -> anyhow::Result<String> {
    let mut c = cluster.conn(i).await?;
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(&mut c)
        .await?;
    let mut out = format!("{groups:?}\n");
    let names: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async::<Vec<Vec<redis::Value>>>(&mut c)
        .await?;
    for g in names {
        let name: String = redis::from_redis_value(&g[1])?;
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(key)
            .arg(&name)
            .arg("-")
            .arg("+")
            .arg(1000)
            .query_async(&mut c)
            .await?;
        let pending: Vec<(String, String, u64)> = pending
            .into_iter()
            .map(|(id, c, _, n)| (id, c, n))
            .collect();
        out.push_str(&format!("{name}: {pending:?}\n"));
    }
    Ok(out)
}

/// Waits until every running node reports the same group state; returns it.
async fn converged(cluster: &Cluster, key: &str, timeout: Duration) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let mut states = Vec::new();
        for i in 0..cluster.nodes.len() {
            if cluster.is_running(i) {
                states.push(group_state(cluster, i, key).await.unwrap_or_default());
            }
        }
        if !states[0].is_empty() && states.iter().all(|s| *s == states[0]) {
            return Ok(states.swap_remove(0));
        }
        if start.elapsed() > timeout {
            anyhow::bail!("group state differs between nodes: {states:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `XGROUP CREATE q g <start> MKSTREAM`
async fn create_group(
    c: &mut redis::aio::MultiplexedConnection,
    start: &str,
) -> anyhow::Result<()> {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("q")
        .arg("g")
        .arg(start)
        .arg("MKSTREAM")
        .query_async(c)
        .await?;
    Ok(())
}

async fn xadd(c: &mut redis::aio::MultiplexedConnection, n: u64) -> anyhow::Result<String> {
    Ok(redis::cmd("XADD")
        .arg("q")
        .arg("*")
        .arg("n")
        .arg(n)
        .query_async(c)
        .await?)
}

type Read = Vec<(String, Vec<(String, Vec<(String, String)>)>)>;

async fn read_group(
    c: &mut redis::aio::MultiplexedConnection,
    consumer: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let reply: Option<Read> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg("q")
        .arg(">")
        .query_async(c)
        .await?;
    Ok(reply
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(_, entries)| entries.into_iter().map(|(id, _)| id))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_survive_kill_and_failover_and_agree_on_every_node() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;
    let mut c = cluster.conn(follower).await?;
    create_group(&mut c, "0").await?;
    for i in 0..10 {
        xadd(&mut c, i).await?;
    }
    // Through a follower: forwarded to the leader, replicated like any write.
    let first = read_group(&mut c, "c1", 4).await?;
    assert_eq!(first, vec!["1-0", "2-0", "3-0", "4-0"]);
    let acked: u64 = redis::cmd("XACK")
        .arg("q")
        .arg("g")
        .arg("1-0")
        .query_async(&mut c)
        .await?;
    assert_eq!(acked, 1);
    let before = converged(&cluster, "q", Duration::from_secs(10)).await?;

    // kill -9 the leader: the group's cursor and PEL are on the others.
    cluster.kill(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    assert_ne!(new_leader, leader);
    let mut c = cluster.conn(new_leader).await?;
    let rest = read_group(&mut c, "c2", 100).await?;
    assert_eq!(rest.len(), 6, "each entry goes to one consumer: {rest:?}");
    assert_eq!(rest[0], "5-0");
    let pending: (u64, String, String, Vec<(String, String)>) = redis::cmd("XPENDING")
        .arg("q")
        .arg("g")
        .query_async(&mut c)
        .await?;
    assert_eq!(pending.0, 9);
    assert_eq!(
        pending.3,
        vec![("c1".into(), "3".into()), ("c2".into(), "6".into())]
    );

    // The killed node comes back with the same state (its own log, then replication).
    cluster.restart(leader)?;
    let after = converged(&cluster, "q", Duration::from_secs(30)).await?;
    assert_ne!(before, after);
    assert!(after.contains("(\"2-0\", \"c1\", 1)"), "{after}");
    assert!(after.contains("(\"10-0\", \"c2\", 1)"), "{after}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_catching_up_by_snapshot_gets_the_groups() -> anyhow::Result<()> {
    let settings = "snapshot_every = 100\nkeep_after_snapshot = 10\n";
    let mut cluster = Cluster::start_with(3, Some(settings), None)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let down = (leader + 1) % 3;
    cluster.kill(down);
    let mut c = cluster.conn(leader).await?;
    create_group(&mut c, "$").await?;
    for i in 0..300 {
        xadd(&mut c, i).await?;
        if i % 3 == 0 {
            let got = read_group(&mut c, if i % 2 == 0 { "a" } else { "b" }, 2).await?;
            if let Some(id) = got.first() {
                let _: u64 = redis::cmd("XACK")
                    .arg("q")
                    .arg("g")
                    .arg(id)
                    .query_async(&mut c)
                    .await?;
            }
        }
    }
    cluster.wait_purged(leader, Duration::from_secs(15)).await?;
    cluster.restart(down)?;
    let state = converged(&cluster, "q", Duration::from_secs(30)).await?;
    assert!(state.contains("\"a\""), "{state}");
    cluster
        .wait_logged(&[down], "installed snapshot", Duration::from_secs(10))
        .await
        .context("caught up by snapshot")?;
    // And the state survives the snapshotted node's own restart from disk.
    cluster.kill(down);
    cluster.restart(down)?;
    assert_eq!(
        converged(&cluster, "q", Duration::from_secs(30)).await?,
        state
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_all_or_nothing_and_never_interleave() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    cluster.wait_leader(Duration::from_secs(20)).await?;

    // A command that fails to queue discards the whole transaction.
    let mut c = cluster.conn(0).await?;
    let _: () = redis::cmd("MULTI").query_async(&mut c).await?;
    let q: String = redis::cmd("XADD")
        .arg("a")
        .arg("*")
        .arg("m")
        .arg("x")
        .query_async(&mut c)
        .await?;
    assert_eq!(q, "QUEUED");
    let bad: redis::RedisResult<()> = redis::cmd("XADD").arg("a").query_async(&mut c).await;
    assert!(bad.is_err());
    let exec: redis::RedisResult<Value> = redis::cmd("EXEC").query_async(&mut c).await;
    assert!(
        format!("{exec:?}").to_lowercase().contains("execabort"),
        "EXEC after a queueing error aborts: {exec:?}"
    );
    let len: u64 = redis::cmd("XLEN").arg("a").query_async(&mut c).await?;
    assert_eq!(len, 0, "nothing of an aborted transaction is applied");

    // Many clients on every node run transactions that append to two streams: each
    // transaction is one entry, so both streams hold the same sequence.
    let mut tasks = Vec::new();
    for client in 0..6 {
        let url = cluster.url(client % 3);
        tasks.push(tokio::spawn(async move {
            let mut c = redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?;
            for i in 0..20 {
                let tag = format!("{client}.{i}");
                let (x, y, len): (String, String, u64) = redis::pipe()
                    .atomic()
                    .cmd("XADD")
                    .arg("left")
                    .arg("*")
                    .arg("t")
                    .arg(&tag)
                    .cmd("XADD")
                    .arg("right")
                    .arg("*")
                    .arg("t")
                    .arg(&tag)
                    .cmd("XLEN")
                    .arg("left")
                    .query_async(&mut c)
                    .await?;
                anyhow::ensure!(x == y, "{x} != {y}: the two appends were split");
                anyhow::ensure!(
                    x == format!("{len}-0"),
                    "XLEN in the transaction sees its own append"
                );
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    crate::util::wait_stream_len(&cluster, "right", 120, Duration::from_secs(10)).await?;
    let left = crate::util::xrange(&cluster, 1, "left").await?;
    let right = crate::util::xrange(&cluster, 1, "right").await?;
    assert_eq!(left.len(), 120);
    assert_eq!(left, right);
    Ok(())
}
