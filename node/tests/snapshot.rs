use std::time::Duration;

use anyhow::Context;

use crate::util::{wait_stream_len, xrange, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_by_snapshot() -> anyhow::Result<()> {
    // Snapshot every 100 entries and keep only 10 behind it, so 1000 writes while a node
    // is down leave it nothing to replicate from the log: it must install a snapshot.
    let settings = "snapshot_every = 100\nkeep_after_snapshot = 10\n";
    let mut cluster = Cluster::start_with(3, Some(settings), None)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let down = (leader + 1) % 3;
    cluster.kill(down);

    let mut c = cluster.conn(leader).await?;
    for i in 0..1000 {
        let _: String = redis::cmd("XADD")
            .arg("big")
            .arg("*")
            .arg("m")
            .arg(format!("v{i}"))
            .query_async(&mut c)
            .await?;
    }
    cluster.wait_purged(leader, Duration::from_secs(15)).await?;

    cluster.restart(down)?;
    wait_stream_len(&cluster, "big", 1000, Duration::from_secs(30)).await?;
    assert_eq!(
        xrange(&cluster, down, "big").await?,
        xrange(&cluster, leader, "big").await?
    );
    cluster
        .wait_logged(&[down], "installed snapshot", Duration::from_secs(10))
        .await
        .context("node caught up by snapshot")?;
    Ok(())
}
