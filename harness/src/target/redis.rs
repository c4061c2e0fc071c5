//! The Redis baseline: `redis-server` from `PATH`, a primary `n1` and optionally replicas
//! `n2`.. (`replicaof`), with `min-replicas-to-write` when asked, and optionally three
//! Sentinels ([`super::sentinel`]) that fail the primary over. Each server runs from its
//! own config file, which Sentinel rewrites. Publishers talk to the primary (with Sentinel:
//! the one Sentinel names); subscribers to every server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raftbus_reports::model::Target;

use super::{
    clear_attempt, info, info_field, provide_config, wait_ready, Cluster, Node, ProcessSpec,
    ServerProcess, Spawner, Startup, TargetError, START_ATTEMPTS,
};
use crate::scenario::{RedisOptions, RedisPersistence};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds `redis-server` or explains how to install it.
pub fn find_redis_server() -> Result<std::path::PathBuf, TargetError> {
    super::find_on_path("redis-server").ok_or_else(|| TargetError::MissingBinary {
        name: "redis-server".into(),
        hint: "it must be on PATH; install it with `sudo apt-get install -y redis-server`".into(),
    })
}

/// `redis-server 7.0.15` from `redis-server --version`.
pub fn version(program: &Path) -> String {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_version(&text)
}

/// `redis-server 7.0.15` from the text `redis-server --version` printed.
pub fn parse_version(text: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map(|v| format!("redis-server {v}"))
        .unwrap_or_else(|| "redis-server (unknown version)".into())
}

/// What the options mean, for `summary.target_detail`.
pub fn detail(opts: &RedisOptions) -> String {
    let persistence = match opts.persistence {
        RedisPersistence::None => "no persistence",
        RedisPersistence::Everysec => "appendfsync everysec",
        RedisPersistence::Always => "appendfsync always",
    };
    let mut parts = vec![persistence.to_string()];
    match opts.replicas {
        0 => {}
        1 => parts.push("1 replica".into()),
        n => parts.push(format!("{n} replicas")),
    }
    if opts.sentinels > 0 {
        parts.push(super::sentinel::detail(opts));
    }
    if opts.min_replicas_to_write > 0 {
        parts.push(format!(
            "min-replicas-to-write {} (max lag {}s)",
            opts.min_replicas_to_write,
            opts.min_replicas_max_lag.as_secs()
        ));
    }
    if opts.wait_replicas > 0 {
        parts.push(format!(
            "WAIT {} {}",
            opts.wait_replicas,
            opts.wait_timeout.as_millis()
        ));
    }
    parts.join(", ")
}

/// The config file of one server. Redis is deployed from a file, as with a package's
/// `redis.conf`: Sentinel's failover ends with `CONFIG REWRITE`, so a promoted replica
/// restarts as the primary instead of as a replica of the old one. Started from command-line
/// options alone, the rewrite fails and every restart would go back to the first roles.
fn config(
    port: u16,
    host: std::net::IpAddr,
    data_dir: &Path,
    opts: &RedisOptions,
    replica_of: Option<SocketAddr>,
) -> String {
    let (appendonly, fsync) = match opts.persistence {
        RedisPersistence::None => ("no", "everysec"),
        RedisPersistence::Everysec => ("yes", "everysec"),
        RedisPersistence::Always => ("yes", "always"),
    };
    let mut c = format!(
        "# written by the raftbus harness; Sentinel rewrites it on failover\n\
         port {port}\n\
         bind {host}\n\
         save \"\"\n\
         dir {dir}\n\
         appendonly {appendonly}\n\
         appendfsync {fsync}\n\
         protected-mode no\n\
         daemonize no\n",
        dir = quoted(&data_dir.to_string_lossy()),
    );
    if opts.min_replicas_to_write > 0 {
        c.push_str(&format!(
            "min-replicas-to-write {}\nmin-replicas-max-lag {}\n",
            opts.min_replicas_to_write,
            opts.min_replicas_max_lag.as_secs().max(1)
        ));
    }
    if let Some(primary) = replica_of {
        c.push_str(&format!("replicaof {} {}\n", primary.ip(), primary.port()));
    }
    c
}

/// A config-file value in double quotes, as Redis's parser reads them back.
fn quoted(value: &str) -> String {
    let mut q = String::with_capacity(value.len() + 2);
    q.push('"');
    for ch in value.chars() {
        match ch {
            '"' | '\\' => {
                q.push('\\');
                q.push(ch);
            }
            '\n' => q.push_str("\\n"),
            _ => q.push(ch),
        }
    }
    q.push('"');
    q
}

/// Starts Redis under `dir` (`dir/data/nI`, `dir/logs/nI.log`) and waits until it serves
/// (and the replica, if any, is in sync).
pub async fn start(
    dir: &Path,
    opts: &RedisOptions,
    spawner: Arc<dyn Spawner>,
) -> Result<Cluster, TargetError> {
    let program = spawner.program_on_path("n1", "redis-server")?;
    let version = parse_version(&spawner.version_text("n1", &program));
    let count = 1 + opts.replicas;
    let names: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
    let mut last_clash = String::new();
    for attempt in 1..=START_ATTEMPTS {
        clear_attempt(dir, &names);
        spawner.clear_attempt(&names);
        let mut procs = Vec::new();
        let mut addrs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let host = spawner.host(name);
            let port = spawner.free_port(name).map_err(|source| TargetError::Io {
                what: "pick a free port".into(),
                source,
            })?;
            let addr = SocketAddr::new(host, port);
            super::check_client_addr(addr)?;
            let data_dir = spawner.server_path(name, &dir.join("data").join(name));
            // Beside the data dir, not on the lazy disk: like `/etc/redis`, it is not what a
            // power loss of the data disk takes.
            let conf = provide_config(
                spawner.as_ref(),
                &dir.join("conf"),
                name,
                &config(port, host, &data_dir, opts, (i > 0).then(|| addrs[0])),
            )?;
            let spec = ProcessSpec {
                name: name.clone(),
                program: program.clone(),
                args: vec![conf.into_os_string()],
                log: dir.join("logs").join(format!("{name}.log")),
                data_dir,
                env: Vec::new(),
            };
            procs.push(ServerProcess::start(spec, spawner.clone())?);
            addrs.push(addr);
        }
        let probe_addrs: Vec<(String, SocketAddr)> =
            names.iter().cloned().zip(addrs.iter().copied()).collect();
        let outcome = wait_ready(&mut procs, "redis-server", READY_TIMEOUT, || {
            let probe_addrs = probe_addrs.clone();
            async move { redis_ready(&probe_addrs).await }
        })
        .await?;
        match outcome {
            Startup::Ready => {
                tracing::info!(%version, primary = %addrs[0], replicas = opts.replicas, "redis ready");
                let sentinels = if opts.sentinels > 0 {
                    match super::sentinel::start(dir, &program, addrs[0], opts, spawner.clone())
                        .await
                    {
                        Ok(s) => s,
                        Err(e) => {
                            for p in &mut procs {
                                p.kill();
                            }
                            return Err(e);
                        }
                    }
                } else {
                    Vec::new()
                };
                let nodes = procs
                    .into_iter()
                    .zip(addrs)
                    .map(|(process, addr)| Node {
                        name: process.name().to_string(),
                        addr,
                        process,
                    })
                    .collect();
                return Ok(Cluster {
                    target: Target::Redis,
                    detail: detail(opts),
                    version,
                    nodes,
                    writable: vec![0],
                    sentinels,
                    spawner,
                });
            }
            Startup::PortClash(tail) => {
                tracing::warn!(
                    attempt,
                    "redis port taken during startup, retrying with new ports"
                );
                last_clash = tail;
            }
        }
    }
    Err(TargetError::PortsInUse {
        attempts: START_ATTEMPTS,
        tail: last_clash,
    })
}

/// Every server answers PING, and every replica's link to the primary is up.
async fn redis_ready(nodes: &[(String, SocketAddr)]) -> bool {
    for (i, (name, addr)) in nodes.iter().enumerate() {
        let Ok(text) = info(name, *addr, "replication").await else {
            return false;
        };
        if i > 0 && info_field(&text, "master_link_status") != Some("up") {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_the_way_redis_reads_them_back() {
        assert_eq!(quoted("/tmp/run 1/n1"), "\"/tmp/run 1/n1\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn only_replicas_name_a_primary_and_limits_appear_when_set() {
        let host: std::net::IpAddr = "198.18.1.1".parse().unwrap();
        let primary: SocketAddr = "198.18.1.1:7000".parse().unwrap();
        let mut opts = RedisOptions::default();
        let first = config(7000, host, Path::new("/d/n1"), &opts, None);
        assert!(first.contains("port 7000\n"), "{first}");
        assert!(first.contains("dir \"/d/n1\"\n"), "{first}");
        assert!(!first.contains("replicaof"), "{first}");
        assert!(!first.contains("min-replicas"), "{first}");
        opts.min_replicas_to_write = 1;
        let replica = config(7001, host, Path::new("/d/n2"), &opts, Some(primary));
        assert!(replica.contains("replicaof 198.18.1.1 7000\n"), "{replica}");
        assert!(replica.contains("min-replicas-to-write 1\n"), "{replica}");
    }
}
