use std::time::Duration;

use futures::StreamExt;

use crate::util::{wait_stream_len, xrange, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_xadd_and_deliver_publish_across_nodes() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;

    // XADD on a follower is forwarded and returns an id after commit.
    let mut c = cluster.conn(follower).await?;
    let id: String = redis::cmd("XADD")
        .arg("orders")
        .arg("*")
        .arg("item")
        .arg("book")
        .query_async(&mut c)
        .await?;
    assert_eq!(id, "1-0");

    // Every node serves it from its own replica.
    wait_stream_len(&cluster, "orders", 1, Duration::from_secs(10)).await?;
    for i in 0..3 {
        let entries = xrange(&cluster, i, "orders").await?;
        assert_eq!(
            entries,
            vec![("1-0".to_string(), b"book".to_vec())],
            "node {}",
            i + 1
        );
    }

    // A subscriber on node 3 receives a PUBLISH made on node 2.
    let client = redis::Client::open(cluster.url(2))?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("news").await?;
    let mut messages = pubsub.on_message();
    let mut p = cluster.conn(1).await?;
    let offset: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg("hello")
        .query_async(&mut p)
        .await?;
    assert_eq!(offset, 1, "PUBLISH replies with the entry's offset");
    let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await?
        .expect("a message");
    assert_eq!(msg.get_channel_name(), "news");
    assert_eq!(msg.get_payload::<String>()?, "hello");

    // The published message is an entry of the same stream, readable by XRANGE too.
    wait_stream_len(&cluster, "news", 1, Duration::from_secs(10)).await?;
    assert_eq!(xrange(&cluster, 0, "news").await?[0].1, b"hello".to_vec());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xread_block_wakes_up_on_a_new_entry_and_info_reports_replication() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let reader_node = (leader + 2) % 3;
    let mut reader = cluster.conn(reader_node).await?;
    let blocked = tokio::spawn(async move {
        let reply: redis::Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(10_000)
            .arg("STREAMS")
            .arg("s")
            .arg("$")
            .query_async(&mut reader)
            .await?;
        anyhow::Ok(reply)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut w = cluster.conn(leader).await?;
    let _: String = redis::cmd("XADD")
        .arg("s")
        .arg("*")
        .arg("f")
        .arg("v")
        .query_async(&mut w)
        .await?;
    let reply = blocked.await??;
    let text = format!("{reply:?}");
    assert!(text.contains("1-0"), "XREAD returned {text}");

    let info = cluster.info(leader).await?;
    assert_eq!(info["role"], "leader");
    assert_eq!(info["leader_id"], (leader + 1).to_string());
    assert!(info["term"].parse::<u64>()? >= 1);
    assert!(info["commit_index"].parse::<u64>()? >= 1);
    assert!(info["applied_index"].parse::<u64>()? >= 1);
    let finfo = cluster.info(reader_node).await?;
    assert_eq!(finfo["role"], "follower");
    assert_eq!(finfo["leader_id"], (leader + 1).to_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_leader(Duration::from_secs(20)).await?;
    let code = cluster.terminate(2)?;
    assert_eq!(code, Some(0), "logs:\n{}", cluster.log_tails());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_cluster_secret_is_refused() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(3, None, Some("s3cret"))?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let outsider = (leader + 1) % 3;
    cluster.restart_with_secret(outsider, Some("wrong"))?;
    let mut c = cluster.conn(leader).await?;
    for _ in 0..5 {
        let _: String = redis::cmd("XADD")
            .arg("s")
            .arg("*")
            .arg("f")
            .arg("v")
            .query_async(&mut c)
            .await?;
    }
    // The outsider never receives entries: its peers refuse its connections and it
    // refuses theirs, and both sides log why.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let logs = [&cluster.nodes[leader].log, &cluster.nodes[outsider].log]
            .map(|p| std::fs::read_to_string(p).unwrap_or_default());
        if logs.iter().any(|l| l.contains("cluster secret")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no node logged the refusal:\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(xrange(&cluster, outsider, "s").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_group_commit_counts_and_rates() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let writers = 10;
    let per_writer = 20;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut conn = cluster.conn(leader).await?;
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let _: String = redis::cmd("XADD")
                    .arg(format!("gc{w}"))
                    .arg("*")
                    .arg("i")
                    .arg(i)
                    .query_async(&mut conn)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let info = cluster.info_section(leader, "persistence").await?;
    let num = |key: &str| -> anyhow::Result<f64> {
        info.get(key)
            .ok_or_else(|| anyhow::anyhow!("INFO has no {key}"))?
            .parse::<f64>()
            .map_err(|e| anyhow::anyhow!("{key}: {e}"))
    };
    let messages = num("proposed_messages")?;
    let batches = num("proposed_batches")?;
    assert!(messages >= f64::from(writers * per_writer), "{info:?}");
    assert!(batches >= 1.0 && batches <= messages, "{info:?}");
    let per_batch = num("proposed_messages_per_batch")?;
    assert!((per_batch - messages / batches).abs() < 0.01, "{info:?}");
    let fsyncs = num("log_fsyncs")?;
    let per_fsync = num("log_entries_per_fsync")?;
    assert!(fsyncs >= 1.0, "{info:?}");
    assert!(
        (per_fsync - num("log_entries_flushed")? / fsyncs).abs() < 0.01,
        "{info:?}"
    );
    // The writes ended moments ago: the 1.6 s window still holds them.
    assert!(num("instantaneous_log_fsyncs_per_sec")? > 0.0, "{info:?}");
    assert!(num("instantaneous_log_entries_per_sec")? > 0.0, "{info:?}");
    assert!(
        num("instantaneous_proposed_messages_per_sec")? > 0.0,
        "{info:?}"
    );
    // A follower proposes nothing; its rates fall back to zero once writes stop.
    let follower = (leader + 1) % 3;
    let finfo = cluster.info_section(follower, "persistence").await?;
    assert_eq!(finfo["proposed_messages"], "0", "{finfo:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let finfo = cluster.info_section(follower, "persistence").await?;
    assert_eq!(finfo["instantaneous_log_entries_per_sec"], "0", "{finfo:?}");
    Ok(())
}

/// The scheduling policy of every thread of a node process, from `/proc/<pid>/task/*/stat`
/// (field 41; 0 is SCHED_OTHER, 3 is SCHED_BATCH).
fn thread_policies(pid: u32) -> anyhow::Result<Vec<u32>> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let policy = rest
            .split_whitespace()
            .nth(41 - 3)
            .ok_or_else(|| anyhow::anyhow!("short stat: {stat}"))?;
        policies.push(policy.parse()?);
    }
    Ok(policies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_thread_runs_with_the_configured_cpu_scheduling() -> anyhow::Result<()> {
    for (settings, policy, name) in [
        (None, 3, "batch"),
        (Some("cpu_scheduling = \"normal\"\n"), 0, "normal"),
    ] {
        let cluster = Cluster::start_with(1, settings, None)?;
        cluster.wait_leader(Duration::from_secs(20)).await?;
        // A write, so the log flusher and the runtime have both run.
        let mut c = cluster.conn(0).await?;
        let _: String = redis::cmd("XADD")
            .arg("s")
            .arg("*")
            .arg("m")
            .arg("x")
            .query_async(&mut c)
            .await?;
        let info = cluster.info_section(0, "server").await?;
        assert_eq!(info["cpu_scheduling"], name);
        let pid: u32 = info["process_id"].parse()?;
        let policies = thread_policies(pid)?;
        assert!(
            policies.len() >= 2,
            "the runtime and the flusher: {policies:?}"
        );
        assert!(
            policies.iter().all(|p| *p == policy),
            "{name}: every thread has policy {policy}: {policies:?}"
        );
    }
    Ok(())
}
