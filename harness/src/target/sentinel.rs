//! Redis Sentinel: `redis-server --sentinel` processes (`s1`..`s3`) that watch the Redis
//! primary and promote a replica when a quorum of them thinks it is down.
//!
//! Each Sentinel runs in its own lab host like the servers, so network faults reach it.
//! Its config file (`DIR/sentinel/sI.conf`) names the primary by lab IP (no hostname
//! resolution) and is writable: Sentinel rewrites it with what it learns (the other
//! Sentinels, the replicas, the current primary), and a restarted Sentinel reads it back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{
    provide_config, wait_ready, Node, ProcessSpec, ServerProcess, Spawner, Startup, TargetError,
    START_ATTEMPTS,
};
use crate::scenario::RedisOptions;
use crate::workload::discover::{sentinel_master_info, MASTER_NAME};

/// How long the Sentinels get to find each other and the replicas.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the Sentinels were configured with, for `summary.target_detail`.
pub fn detail(opts: &RedisOptions) -> String {
    format!(
        "{} sentinels (quorum {}, down-after {}ms, failover-timeout {}ms)",
        opts.sentinels,
        quorum(opts.sentinels),
        opts.down_after.as_millis(),
        opts.failover_timeout.as_millis()
    )
}

/// A majority of the Sentinels must agree that the primary is down.
pub fn quorum(sentinels: usize) -> usize {
    sentinels / 2 + 1
}

/// The config file of one Sentinel.
pub fn config(listen: SocketAddr, primary: SocketAddr, dir: &Path, opts: &RedisOptions) -> String {
    format!(
        "# written by the raftbus harness; Sentinel rewrites it\n\
         port {port}\n\
         bind {ip}\n\
         daemonize no\n\
         protected-mode no\n\
         dir {dir}\n\
         sentinel monitor {MASTER_NAME} {pip} {pport} {quorum}\n\
         sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
         sentinel failover-timeout {MASTER_NAME} {failover}\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n",
        port = listen.port(),
        ip = listen.ip(),
        dir = dir.display(),
        pip = primary.ip(),
        pport = primary.port(),
        quorum = quorum(opts.sentinels),
        down = opts.down_after.as_millis(),
        failover = opts.failover_timeout.as_millis(),
    )
}

/// Starts `opts.sentinels` Sentinels watching `primary` and waits until each knows the
/// other Sentinels and every replica.
pub async fn start(
    dir: &Path,
    program: &Path,
    primary: SocketAddr,
    opts: &RedisOptions,
    spawner: Arc<dyn Spawner>,
) -> Result<Vec<Node>, TargetError> {
    let names: Vec<String> = (1..=opts.sentinels).map(|i| format!("s{i}")).collect();
    let conf_dir = dir.join("sentinel");
    let mut last_clash = String::new();
    for attempt in 1..=START_ATTEMPTS {
        super::clear_attempt(dir, &names);
        spawner.clear_attempt(&names);
        let _ = std::fs::remove_dir_all(&conf_dir);
        let mut procs = Vec::new();
        let mut addrs = Vec::new();
        for name in &names {
            let host = spawner.host(name);
            let port = spawner.free_port(name).map_err(|source| TargetError::Io {
                what: "pick a free port".into(),
                source,
            })?;
            let addr = SocketAddr::new(host, port);
            super::check_client_addr(addr)?;
            let data_dir = spawner.server_path(name, &dir.join("data").join(name));
            let conf = provide_config(
                spawner.as_ref(),
                &conf_dir,
                name,
                &config(addr, primary, &data_dir, opts),
            )?;
            let spec = ProcessSpec {
                name: name.clone(),
                program: program.to_path_buf(),
                args: vec![conf.into_os_string(), "--sentinel".into()],
                log: dir.join("logs").join(format!("{name}.log")),
                data_dir,
                env: Vec::new(),
            };
            procs.push(ServerProcess::start(spec, spawner.clone())?);
            addrs.push(addr);
        }
        let want_others = opts.sentinels - 1;
        let want_replicas = opts.replicas;
        let probe = addrs.clone();
        let outcome = wait_ready(&mut procs, "redis sentinels", READY_TIMEOUT, || {
            let probe = probe.clone();
            async move {
                for a in probe {
                    let Ok(info) = sentinel_master_info(a, Duration::from_secs(1)).await else {
                        return false;
                    };
                    let num = |k: &str| {
                        info.iter()
                            .find(|(key, _)| key == k)
                            .and_then(|(_, v)| v.parse::<usize>().ok())
                    };
                    if num("num-other-sentinels") != Some(want_others)
                        || num("num-slaves") != Some(want_replicas)
                    {
                        return false;
                    }
                }
                true
            }
        })
        .await?;
        match outcome {
            Startup::Ready => {
                tracing::info!(sentinels = addrs.len(), %primary, "sentinels ready");
                return Ok(procs
                    .into_iter()
                    .zip(addrs)
                    .map(|(process, addr)| Node {
                        name: process.name().to_string(),
                        addr,
                        process,
                    })
                    .collect());
            }
            Startup::PortClash(tail) => {
                tracing::warn!(attempt, "sentinel port taken during startup, retrying");
                last_clash = tail;
            }
        }
    }
    Err(TargetError::PortsInUse {
        attempts: START_ATTEMPTS,
        tail: last_clash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_primary_by_ip_with_the_scenario_timings() {
        let opts = RedisOptions {
            sentinels: 3,
            replicas: 2,
            down_after: Duration::from_millis(1500),
            ..RedisOptions::default()
        };
        let text = config(
            "198.18.1.4:7000".parse().unwrap(),
            "198.18.1.1:6379".parse().unwrap(),
            Path::new("/tmp/x"),
            &opts,
        );
        assert!(text.contains("bind 198.18.1.4\n"), "{text}");
        assert!(text.contains(&format!(
            "sentinel monitor {MASTER_NAME} 198.18.1.1 6379 2\n"
        )));
        assert!(text.contains("down-after-milliseconds raftbus 1500\n"));
        assert!(text.contains("failover-timeout raftbus 10000\n"));
        assert_eq!(quorum(3), 2);
    }
}
