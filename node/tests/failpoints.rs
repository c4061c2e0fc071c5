//! The failpoint admin command: absent from the default build; in a failpoint build
//! (`--features failpoints`) it arms named points and planted bugs on one node, at run time,
//! for holders of the admin token only.

use std::time::Duration;

use crate::util::Cluster;

/// Sends `RAFTBUS.FAILPOINT args...` to node `i`; the reply as text (errors included).
async fn admin(cluster: &Cluster, i: usize, args: &[&str]) -> anyhow::Result<String> {
    let mut c = cluster.conn(i).await?;
    let mut cmd = redis::cmd("RAFTBUS.FAILPOINT");
    for a in args {
        cmd.arg(*a);
    }
    Ok(match cmd.query_async::<redis::Value>(&mut c).await {
        Ok(redis::Value::Okay) => "OK".into(),
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    })
}

#[cfg(not(feature = "failpoints"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_build_has_no_failpoint_admin_command() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(1, None, Some("s3cret"))?;
    cluster.wait_leader(Duration::from_secs(20)).await?;
    let text = admin(&cluster, 0, &["s3cret", "SET", "net.send", "return"]).await?;
    assert!(text.contains("unknown command"), "{text}");
    Ok(())
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failpoint_build_arms_fires_and_disarms_points_and_planted_bugs() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(3, Some("write_timeout_ms = 1500\n"), Some("s3cret"))?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;
    let xadd = |i: usize, item: &'static str| {
        let cluster = &cluster;
        async move {
            let mut c = cluster.conn(i).await?;
            let reply: redis::RedisResult<String> = redis::cmd("XADD")
                .arg("orders")
                .arg("*")
                .arg("item")
                .arg(item)
                .query_async(&mut c)
                .await;
            anyhow::Ok(reply)
        }
    };

    // Without the token, or with a wrong one, nothing is armed.
    let refused = admin(
        &cluster,
        follower,
        &["wrong", "SET", "bus.forward", "return"],
    )
    .await?;
    assert!(refused.contains("NOPERM"), "{refused}");
    let unknown = admin(&cluster, follower, &["s3cret", "SET", "no.such", "return"]).await?;
    assert!(unknown.contains("unknown failpoint"), "{unknown}");

    // A named point: the follower's forward to the leader fails while it is armed.
    let ok = admin(
        &cluster,
        follower,
        &["s3cret", "SET", "bus.forward", "return"],
    )
    .await?;
    assert_eq!(ok, "OK");
    let listed = admin(&cluster, follower, &["s3cret", "LIST"]).await?;
    assert!(listed.contains("bus.forward=return"), "{listed}");
    let failed = xadd(follower, "refused").await?.unwrap_err();
    assert!(
        failed.to_string().contains("failpoint bus.forward"),
        "the write fails with the failpoint's error: {failed}"
    );
    // Writes through the leader do not forward and are unaffected.
    assert_eq!(xadd(leader, "first").await??, "1-0");
    assert_eq!(
        admin(&cluster, follower, &["s3cret", "OFF", "bus.forward"]).await?,
        "OK"
    );
    assert_eq!(xadd(follower, "second").await??, "2-0");

    // A planted bug: the follower acknowledges a write it never forwarded.
    let armed = admin(
        &cluster,
        follower,
        &["s3cret", "SET", "bug.drop_forwarded", "return"],
    )
    .await?;
    assert_eq!(armed, "OK");
    let acked = xadd(follower, "dropped").await??;
    assert_eq!(
        acked, "3-0",
        "acknowledged with the offset it would have had"
    );
    admin(&cluster, follower, &["s3cret", "OFF", "bug.drop_forwarded"]).await?;
    assert_eq!(
        xadd(follower, "third").await??,
        "3-0",
        "offset 3 was never written"
    );
    let entries = crate::util::xrange(&cluster, leader, "orders").await?;
    let items: Vec<&[u8]> = entries.iter().map(|(_, v)| v.as_slice()).collect();
    assert_eq!(items, [&b"first"[..], b"second", b"third"]);

    // `panic` crashes the node where the point is: the follower dies applying the next entry.
    let armed = admin(
        &cluster,
        follower,
        &["s3cret", "SET", "sm.before_apply", "panic"],
    )
    .await?;
    assert_eq!(armed, "OK");
    xadd(leader, "fourth").await??;
    // A crashed node refuses connections.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut crashed = false;
    while !crashed && std::time::Instant::now() < deadline {
        crashed = tokio::net::TcpStream::connect(cluster.nodes[follower].client)
            .await
            .is_err();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        crashed,
        "the follower should have crashed at sm.before_apply"
    );
    Ok(())
}

/// The leader's own log write is off the commit path (openraft 0.10 counts the leader's
/// flush as one vote of the quorum instead of waiting for it before replicating), and that
/// must not weaken an acknowledgement: with the leader's flusher stalled before it even
/// writes (`log.before_write`), writes are still acknowledged — on the followers' fsyncs
/// alone — and when the leader is then SIGKILLed, without those entries anywhere on its
/// disk, every acknowledged write survives on the new leader and on the restarted old one.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_before_its_own_log_write_loses_no_acknowledged_write(
) -> anyhow::Result<()> {
    use crate::crash::{assert_all_acked_everywhere, urls, wait_more_acks, Writer};

    let mut cluster = Cluster::start_with(3, None, Some("s3cret"))?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let writer = Writer::start(urls(&cluster));
    wait_more_acks(&writer, 100).await?;

    // Every write of the leader's log now sleeps before its records reach the segment file.
    let armed = admin(
        &cluster,
        leader,
        &["s3cret", "SET", "log.before_write", "sleep(20000)"],
    )
    .await?;
    assert_eq!(armed, "OK");
    // Let the write under way when the point was armed finish; then the leader's flushed
    // count stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flushed = |i: usize| {
        let cluster = &cluster;
        async move {
            let mut c = cluster.conn(i).await?;
            let text: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut c)
                .await?;
            let value = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("log_entries_flushed:"))
                .ok_or_else(|| anyhow::anyhow!("INFO has no log_entries_flushed: {text}"))?;
            anyhow::Ok(value.parse::<u64>()?)
        }
    };
    let flushed_before = flushed(leader).await?;
    let acked_before = writer.acked_count();
    wait_more_acks(&writer, 100).await?;
    let flushed_after = flushed(leader).await?;
    assert_eq!(
        flushed_after, flushed_before,
        "the leader's log made nothing durable while its writes were stalled"
    );
    let acked_while_stalled: Vec<String> = writer.acked()[acked_before..].to_vec();
    assert!(acked_while_stalled.len() >= 100);

    cluster.kill(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    assert_ne!(new_leader, leader);
    wait_more_acks(&writer, 100).await?;
    cluster.restart(leader)?;
    wait_more_acks(&writer, 50).await?;
    let acked = writer.stop().await;
    // Among them the writes acknowledged while only the followers had them.
    assert_all_acked_everywhere(&cluster, &acked).await
}

/// A restarted leader must win a new election before it writes again; it must never resume
/// its old term (openraft 0.10's `enable_leader_restore`, on by default). The leader sends
/// entries to its followers before its own log write, so after a crash its log can lack
/// entries a follower holds under its term. Were it to resume that term, its next writes
/// would reuse those log ids with other contents, the follower would take them as already
/// present, and the two would apply different entries at the same index (the incident
/// `docs/incidents/2026-12-03-queue-power-loss`). Here the third node is down, so nobody can
/// elect while the leader is away, and the leader's own write is stalled while one follower
/// receives entries.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_never_reuses_the_log_ids_a_follower_holds() -> anyhow::Result<()> {
    use crate::crash::{assert_all_acked_everywhere, urls, wait_more_acks, Writer};

    let mut cluster = Cluster::start_with(3, None, Some("s3cret"))?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let (down, holder) = match leader {
        0 => (1, 2),
        1 => (2, 0),
        _ => (0, 1),
    };
    let writer = Writer::start(urls(&cluster));
    wait_more_acks(&writer, 100).await?;
    cluster.kill(down);
    wait_more_acks(&writer, 50).await?;

    let last_log = |i: usize| {
        let cluster = &cluster;
        async move {
            let info = cluster.info(i).await?;
            let value = info
                .get("last_log_index")
                .ok_or_else(|| anyhow::anyhow!("INFO has no last_log_index: {info:?}"))?;
            anyhow::Ok(value.parse::<u64>()?)
        }
    };
    let armed = admin(
        &cluster,
        leader,
        &["s3cret", "SET", "log.before_write", "sleep(20000)"],
    )
    .await?;
    assert_eq!(armed, "OK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held_before = last_log(holder).await?;
    // Writes the leader cannot commit now (its own flush stalls, one follower is down) but
    // does replicate to the other follower.
    let url = cluster.url(leader);
    let pending = tokio::spawn(async move {
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return;
        };
        for k in 0..5 {
            let mut write = redis::cmd("XADD");
            write
                .arg("acked")
                .arg("*")
                .arg("m")
                .arg(format!("pending{k}"));
            let reply = write.query_async::<String>(&mut conn);
            let _ = tokio::time::timeout(Duration::from_millis(200), reply).await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while last_log(holder).await? <= held_before {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the follower never received the entries the stalled leader sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = pending.await;

    // The leader dies without those entries on its disk; restarted, it is the longest-lived
    // node with the newest vote, and the only other voter holds entries it lacks.
    cluster.kill(leader);
    cluster.restart(leader)?;
    wait_more_acks(&writer, 100).await?;
    cluster.restart(down)?;
    wait_more_acks(&writer, 50).await?;
    let acked = writer.stop().await;
    assert_all_acked_everywhere(&cluster, &acked).await
}
