//! Where a subscription starts: a subscriber gets what is committed after its SUBSCRIBE
//! (or XREAD `$`) took effect, never an entry committed before, whatever the node was doing
//! when it arrived (replaying its log after a restart, catching up from the leader's log,
//! installing a snapshot).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use raftbus_node::resp::Frame;

use crate::util::{wait_stream_len, Cluster, RawConn};

const CHANNEL: &str = "news";

fn text(f: &Frame) -> String {
    f.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| format!("{f:?}"))
}

async fn publish(cluster: &Cluster, node: usize, payload: &str) -> Result<()> {
    let mut c = cluster.conn(node).await?;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(payload)
        .query_async(&mut c)
        .await
        .with_context(|| format!("publish {payload} via node {}", node + 1))?;
    Ok(())
}

/// A cluster where node `lagging` has the first 50 entries, missed `missed` more while it
/// was down, and has just been restarted while the other two are stopped (so it cannot
/// learn anything yet). Returns the cluster and the lagging node's index.
async fn restart_lagging_node(settings: &str, missed: usize) -> Result<(Cluster, usize)> {
    let mut cluster = Cluster::start_with(3, Some(settings), None)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let lagging = (leader + 1) % 3;
    for i in 0..50 {
        publish(&cluster, leader, &format!("before-{i}")).await?;
    }
    wait_stream_len(&cluster, CHANNEL, 50, Duration::from_secs(20)).await?;
    cluster.kill(lagging);
    for i in 0..missed {
        publish(&cluster, leader, &format!("missed-{i}")).await?;
    }
    for i in (0..3).filter(|i| *i != lagging) {
        cluster.signal(i, "STOP")?;
    }
    cluster.restart(lagging)?;
    Ok((cluster, lagging))
}

fn resume_others(cluster: &Cluster, lagging: usize) -> Result<()> {
    for i in (0..3).filter(|i| *i != lagging) {
        cluster.signal(i, "CONT")?;
    }
    Ok(())
}

/// Subscribes on the lagging node while it cannot catch up, lets it catch up, then checks
/// that the subscriber gets exactly what was published after its confirmation.
async fn subscription_starts_after_catch_up(settings: &str, missed: usize) -> Result<Cluster> {
    let (cluster, lagging) = restart_lagging_node(settings, missed).await?;
    let mut sub = RawConn::connect(cluster.nodes[lagging].client).await?;
    sub.send(&["SUBSCRIBE", CHANNEL]).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    resume_others(&cluster, lagging)?;

    let confirm = sub
        .read(Duration::from_secs(25))
        .await?
        .context("no SUBSCRIBE confirmation within 25s")?;
    let parts = confirm.as_array().context("confirmation is an array")?;
    assert_eq!(text(&parts[0]), "subscribe", "confirmation: {confirm:?}");

    for i in 0..5 {
        publish(&cluster, lagging, &format!("after-{i}")).await?;
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 5 && Instant::now() < deadline {
        let Some(frame) = sub.read(Duration::from_secs(1)).await? else {
            continue;
        };
        let parts = frame.as_array().context("push is an array")?;
        assert_eq!(text(&parts[0]), "message", "push: {frame:?}");
        got.push(text(&parts[2]));
    }
    // Anything from before the SUBSCRIBE would arrive first (log order).
    let expected: Vec<String> = (0..5).map(|i| format!("after-{i}")).collect();
    assert_eq!(
        got,
        expected,
        "the subscriber got entries committed before it subscribed; logs:\n{}",
        cluster.log_tails()
    );
    // Nothing more, in particular no replay behind them.
    assert!(sub.read(Duration::from_millis(300)).await?.is_none());
    Ok(cluster)
}

const SLOW_WRITES: &str = "write_timeout_ms = 20000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_does_not_replay_old_entries_into_a_new_subscription() -> Result<()> {
    subscription_starts_after_catch_up(SLOW_WRITES, 200).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_catching_up_by_snapshot_does_not_replay_old_entries() -> Result<()> {
    // Snapshots every 100 entries keeping 10: the 1000 missed entries are only in a snapshot.
    let settings = format!("{SLOW_WRITES}snapshot_every = 100\nkeep_after_snapshot = 10\n");
    let cluster = subscription_starts_after_catch_up(&settings, 1000).await?;
    let every_node: Vec<usize> = (0..cluster.nodes.len()).collect();
    cluster
        .wait_logged(&every_node, "installed snapshot", Duration::from_secs(10))
        .await
        .context("the lagging node caught up by snapshot")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xread_dollar_on_a_lagging_node_means_the_clusters_latest() -> Result<()> {
    let (cluster, lagging) = restart_lagging_node(SLOW_WRITES, 200).await?;
    let mut reader = RawConn::connect(cluster.nodes[lagging].client).await?;
    reader
        .send(&["XREAD", "BLOCK", "20000", "STREAMS", CHANNEL, "$"])
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    resume_others(&cluster, lagging)?;
    // Publish until the blocked read returns: `$` is fixed at some point after the resume,
    // and whatever it returns must come from after that point.
    let mut reply = None;
    for i in 0..100 {
        publish(&cluster, lagging, &format!("after-{i}")).await?;
        if let Some(frame) = reader.read(Duration::from_millis(200)).await? {
            reply = Some(frame);
            break;
        }
    }
    let reply = reply.context("XREAD BLOCK $ never returned")?;
    // [[news, [[id, [message, payload]], ...]]]
    let streams = reply.as_array().context("XREAD reply is an array")?;
    let entries = streams[0].as_array().context("stream reply")?[1]
        .as_array()
        .context("entries")?;
    assert!(!entries.is_empty());
    for e in entries {
        let fields = e.as_array().context("entry")?[1]
            .as_array()
            .context("fields")?;
        let payload = text(&fields[1]);
        assert!(
            payload.starts_with("after-"),
            "XREAD $ returned {payload}, committed before the call; reply: {reply:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_on_a_node_cut_off_from_the_leader_is_refused() -> Result<()> {
    let settings = "write_timeout_ms = 2000\n";
    let cluster = Cluster::start_with(3, Some(settings), None)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let alone = (leader + 1) % 3;
    for i in (0..3).filter(|i| *i != alone) {
        cluster.signal(i, "STOP")?;
    }
    let mut sub = RawConn::connect(cluster.nodes[alone].client).await?;
    sub.send(&["SUBSCRIBE", CHANNEL]).await?;
    let reply = sub
        .read(Duration::from_secs(10))
        .await?
        .context("no reply to SUBSCRIBE within 10s")?;
    assert!(
        matches!(&reply, Frame::Error(e) if e.starts_with("TRYAGAIN")),
        "a node that cannot reach a leader must not confirm a subscription: {reply:?}"
    );
    resume_others(&cluster, alone)?;
    Ok(())
}
