//! The target API the chaos work drives: kill, restart (same flags, data dir, ports),
//! pause and resume a node, and nothing left running after the cluster is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raftbus::scenario::RedisOptions;
use raftbus::target::{self, LoopbackSpawner};

use crate::util::require_redis;

async fn ping(addr: SocketAddr, timeout: Duration) -> bool {
    let attempt = async {
        let mut c = target::connect("n1", addr, timeout).await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut c).await.ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(p)) if p == "PONG")
}

async fn wait_ping(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        if ping(addr, Duration::from_millis(500)).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_can_be_killed_restarted_paused_and_resumed() {
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = target::redis::start(
        dir.path(),
        &RedisOptions::default(),
        Arc::new(LoopbackSpawner),
    )
    .await
    .unwrap();
    let (name, addr) = cluster.endpoints()[0].clone();
    assert_eq!(name, "n1");
    assert!(addr.ip().is_loopback());
    assert!(ping(addr, Duration::from_secs(2)).await);

    let node = cluster.node_mut("n1").unwrap();
    let pid = node.process.pid().unwrap();
    node.process.kill();
    assert_eq!(node.process.pid(), None);
    assert!(!alive(pid), "killed and reaped");
    assert!(!ping(addr, Duration::from_millis(500)).await);
    // Sampled right before the kill: the first lifetime keeps its figures.
    let first = cluster.process_costs().remove(0);
    assert_eq!((first.name.as_str(), first.lifetimes), ("n1", 1));
    assert!(
        first.peak_rss_bytes > 0 && first.final_rss_bytes > 0,
        "{first:?}"
    );
    assert_eq!(first.fsyncs, None, "redis reports no fsyncs");

    let node = cluster.node_mut("n1").unwrap();
    node.process.restart().unwrap();
    let new_pid = node.process.pid().unwrap();
    assert_ne!(new_pid, pid);
    assert!(wait_ping(addr).await, "restarted on the same port");

    let node = cluster.node_mut("n1").unwrap();
    node.process.pause().unwrap();
    assert!(node.process.is_paused());
    // A paused process can be sampled; the restart began a second lifetime.
    cluster.sample_cost();
    let both = cluster.process_costs().remove(0);
    assert_eq!(both.lifetimes, 2);
    assert_eq!(both.unsampled_lifetimes, 0);
    assert!(both.cpu_s >= first.cpu_s);
    assert!(both.peak_rss_bytes >= first.peak_rss_bytes);
    assert!(both.write_bytes >= first.write_bytes);
    let node = cluster.node_mut("n1").unwrap();
    assert!(
        !ping(addr, Duration::from_millis(500)).await,
        "a paused server does not answer"
    );
    node.process.resume().unwrap();
    assert!(wait_ping(addr).await, "answers again after resume");

    let log = std::fs::read_to_string(dir.path().join("logs/n1.log")).unwrap();
    assert!(!log.is_empty());
    drop(cluster);
    assert!(!alive(new_pid), "dropping the cluster kills its processes");
}

/// Sentinel's failover rewrites the servers' config files, so a promoted replica that
/// restarts comes back as the primary, not as a replica of the old primary (which would
/// wipe what it acknowledged since the promotion with a full resync).
#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_replica_restarts_as_the_primary() {
    use raftbus::workload::discover::majority_primary;
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let opts = RedisOptions {
        replicas: 2,
        sentinels: 3,
        down_after: Duration::from_secs(1),
        failover_timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    };
    let mut cluster = target::redis::start(dir.path(), &opts, Arc::new(LoopbackSpawner))
        .await
        .unwrap();
    let sentinels: Vec<SocketAddr> = cluster
        .sentinel_endpoints()
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let first = cluster.endpoints()[0].1;
    cluster.node_mut("n1").unwrap().process.kill();

    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let promoted = loop {
        let named = majority_primary(&sentinels, Duration::from_secs(1)).await;
        if let Some(p) = named.filter(|p| *p != first) {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "no failover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name = cluster
        .endpoints()
        .into_iter()
        .find(|(_, a)| *a == promoted)
        .map(|(n, _)| n)
        .expect("the new primary is one of the servers");
    let conf = dir.path().join("conf").join(format!("{name}.conf"));
    let role_in_file = || {
        std::fs::read_to_string(&conf)
            .unwrap()
            .contains("replicaof")
    };
    while role_in_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "Sentinel did not rewrite {}",
            conf.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let node = cluster.node_mut(&name).unwrap();
    node.process.kill();
    node.process.restart().unwrap();
    assert!(
        wait_ping(promoted).await,
        "{name} answers after its restart"
    );
    let text = target::info(&name, promoted, "replication").await.unwrap();
    assert_eq!(
        target::info_field(&text, "role"),
        Some("master"),
        "{name} restarted as: {text}"
    );
}
