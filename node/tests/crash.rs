//! SIGKILL while a client writes: nothing acknowledged is ever lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{wait_stream_len, xrange, Cluster};

const KEY: &str = "acked";

/// Writes `m<seq>` continuously through any reachable node and records what was acked.
pub(crate) struct Writer {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub(crate) fn start(urls: Vec<String>) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut seq = 0u64;
            let mut node = 0usize;
            while !s.load(Ordering::Relaxed) {
                let Ok(client) = redis::Client::open(urls[node % urls.len()].as_str()) else {
                    node += 1;
                    continue;
                };
                let conn = tokio::time::timeout(
                    Duration::from_millis(500),
                    client.get_multiplexed_async_connection(),
                )
                .await;
                let Ok(Ok(mut conn)) = conn else {
                    node += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                while !s.load(Ordering::Relaxed) {
                    seq += 1;
                    let msg = format!("m{seq}");
                    let r: redis::RedisResult<String> = tokio::time::timeout(
                        Duration::from_secs(6),
                        redis::cmd("XADD")
                            .arg(KEY)
                            .arg("*")
                            .arg("m")
                            .arg(&msg)
                            .query_async(&mut conn),
                    )
                    .await
                    .unwrap_or_else(|_| Err((redis::ErrorKind::IoError, "timeout").into()));
                    match r {
                        Ok(_) => a.lock().unwrap().push(msg),
                        Err(e)
                            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() =>
                        {
                            node += 1;
                            break;
                        }
                        // TRYAGAIN / outcome unknown: keep going, new ids only.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        });
        Writer { acked, stop, task }
    }

    pub(crate) fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The messages acknowledged so far, in order.
    #[cfg(feature = "failpoints")]
    pub(crate) fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    pub(crate) async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

pub(crate) fn urls(cluster: &Cluster) -> Vec<String> {
    (0..cluster.nodes.len()).map(|i| cluster.url(i)).collect()
}

pub(crate) async fn wait_more_acks(w: &Writer, more: usize) -> anyhow::Result<()> {
    let target = w.acked_count() + more;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while w.acked_count() < target {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "writes did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Every acked message is on every node, each node holds the same sequence, no duplicates.
pub(crate) async fn assert_all_acked_everywhere(
    cluster: &Cluster,
    acked: &[String],
) -> anyhow::Result<()> {
    wait_stream_len(cluster, KEY, acked.len(), Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reference = xrange(cluster, 0, KEY).await?;
    for i in 0..cluster.nodes.len() {
        let entries = xrange(cluster, i, KEY).await?;
        assert_eq!(entries, reference, "node {} diverges from node 1", i + 1);
    }
    let stored: std::collections::HashSet<Vec<u8>> =
        reference.iter().map(|e| e.1.clone()).collect();
    assert_eq!(stored.len(), reference.len(), "no message is stored twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|m| !stored.contains(m.as_bytes()))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let writer = Writer::start(urls(&cluster));
    wait_more_acks(&writer, 200).await?;
    cluster.kill(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    assert_ne!(new_leader, leader);
    wait_more_acks(&writer, 200).await?;
    cluster.restart(leader)?;
    wait_more_acks(&writer, 100).await?;
    let acked = writer.stop().await;
    assert_all_acked_everywhere(&cluster, &acked).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_follower_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;
    let writer = Writer::start(urls(&cluster));
    wait_more_acks(&writer, 200).await?;
    cluster.kill(follower);
    wait_more_acks(&writer, 200).await?;
    cluster.restart(follower)?;
    wait_more_acks(&writer, 100).await?;
    let acked = writer.stop().await;
    assert_all_acked_everywhere(&cluster, &acked).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_at_once_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_leader(Duration::from_secs(20)).await?;
    let writer = Writer::start(urls(&cluster));
    wait_more_acks(&writer, 300).await?;
    for i in 0..3 {
        cluster.kill(i);
    }
    // Whatever the writer got acked up to now must survive the total crash.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..3 {
        cluster.restart(i)?;
    }
    cluster.wait_leader(Duration::from_secs(30)).await?;
    wait_more_acks(&writer, 100).await?;
    let acked = writer.stop().await;
    assert_all_acked_everywhere(&cluster, &acked).await
}
