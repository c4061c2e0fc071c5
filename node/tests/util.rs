//! Spawning real `raftbus-node` processes on loopback for integration tests.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use raftbus_node::resp::{Frame, FrameDecoder, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// `k` distinct free loopback ports: all are held until every one is chosen, so that no
/// two nodes of one cluster get the same port (a released port is often handed out again).
pub fn free_addrs(k: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> = (0..k)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

pub struct NodeProc {
    pub id: u64,
    pub client: SocketAddr,
    pub raft: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// A cluster of real node processes, killed on drop.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    peers: String,
    config: Option<PathBuf>,
    secrets: Vec<Option<String>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize) -> Result<Cluster> {
        Self::start_with(n, None, None)
    }

    /// Starts `n` nodes, optionally with a settings file body and a cluster secret.
    pub fn start_with(n: usize, settings: Option<&str>, secret: Option<&str>) -> Result<Cluster> {
        init_tracing();
        let dir = tempfile::tempdir()?;
        let config = match settings {
            Some(body) => {
                let p = dir.path().join("node.toml");
                std::fs::write(&p, body)?;
                Some(p)
            }
            None => None,
        };
        let addrs = free_addrs(2 * n);
        let nodes: Vec<NodeProc> = (1..=n as u64)
            .map(|id| NodeProc {
                id,
                client: addrs[2 * (id as usize - 1)],
                raft: addrs[2 * (id as usize - 1) + 1],
                data_dir: dir.path().join(format!("n{id}")),
                log: dir.path().join(format!("n{id}.log")),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.raft))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes,
            peers,
            config,
            secrets: vec![secret.map(str::to_string); n],
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftbus-node"));
        cmd.arg("--id")
            .arg(node.id.to_string())
            .arg("--listen")
            .arg(node.client.to_string())
            .arg("--raft-listen")
            .arg(node.raft.to_string())
            .arg("--peers")
            .arg(&self.peers)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        match &self.secrets[i] {
            Some(s) => cmd.env("RAFTBUS_CLUSTER_SECRET", s),
            None => cmd.env_remove("RAFTBUS_CLUSTER_SECRET"),
        };
        node.child = Some(cmd.spawn().context("spawn raftbus-node")?);
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self, i: usize) -> Result<Option<i32>> {
        let Some(mut c) = self.nodes[i].child.take() else {
            bail!("node {} is not running", i + 1)
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("node {} did not exit within 10s of SIGTERM", i + 1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts node `i` presenting a different cluster secret.
    pub fn restart_with_secret(&mut self, i: usize, secret: Option<&str>) -> Result<()> {
        self.secrets[i] = secret.map(str::to_string);
        self.restart(i)
    }

    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to node `i` without reaping it.
    pub fn signal(&self, i: usize, signal: &str) -> Result<()> {
        self.signal_all(&[i], signal)
    }

    /// The process id of node `i`, which must be running.
    fn pid(&self, i: usize) -> Result<u32> {
        match &self.nodes[i].child {
            Some(c) => Ok(c.id()),
            None => bail!("node {} is not running", i + 1),
        }
    }

    /// Sends a signal to several nodes with one kill(1), so they get it together.
    pub fn signal_all(&self, nodes: &[usize], signal: &str) -> Result<()> {
        let mut kill = Command::new("kill");
        kill.arg(format!("-{signal}"));
        for &i in nodes {
            kill.arg(self.pid(i)?.to_string());
        }
        if !kill.status()?.success() {
            bail!("kill -{signal} of nodes {nodes:?} failed");
        }
        if signal == "STOP" {
            self.wait_stopped(nodes)?;
        }
        Ok(())
    }

    /// Waits until every thread of the nodes has stopped. kill(2) returns once SIGSTOP is
    /// queued; a thread on another (virtual) CPU runs on until it is interrupted, and on a
    /// loaded machine it can still answer a Raft RPC after kill returned.
    fn wait_stopped(&self, nodes: &[usize]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        for &i in nodes {
            let tasks = format!("/proc/{}/task", self.pid(i)?);
            while !all_threads_stopped(&tasks)? {
                if Instant::now() > deadline {
                    bail!("node {} did not stop within 10s of SIGSTOP", i + 1);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn url(&self, i: usize) -> String {
        format!("redis://{}/", self.nodes[i].client)
    }

    pub async fn conn(&self, i: usize) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url(i))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("connect to node {}", i + 1))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The replication section of INFO as key/value pairs.
    pub async fn info(&self, i: usize) -> Result<HashMap<String, String>> {
        self.info_section(i, "replication").await
    }

    /// One INFO section of node `i`, as field -> value.
    pub async fn info_section(&self, i: usize, section: &str) -> Result<HashMap<String, String>> {
        let mut c = self.conn(i).await?;
        let text: String = redis::cmd("INFO").arg(section).query_async(&mut c).await?;
        Ok(parse_info(&text))
    }

    /// Waits until node `i` purged part of its log behind a snapshot (it does so
    /// asynchronously, after building the snapshot); its INFO then.
    pub async fn wait_purged(
        &self,
        i: usize,
        timeout: Duration,
    ) -> Result<HashMap<String, String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.info(i).await?;
            if info["purged_index"].parse::<u64>()? > 0 {
                return Ok(info);
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} purged no log within {timeout:?} after a snapshot: {info:?}",
                    i + 1
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until one of `nodes` has logged a line containing `needle`; returns that node.
    /// A node makes state visible before it logs that it did (an installed snapshot is
    /// served while its file is still being written), so a log check must wait too.
    pub async fn wait_logged(
        &self,
        nodes: &[usize],
        needle: &str,
        timeout: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for &i in nodes {
                let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
                if log.contains(needle) {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no node of {nodes:?} logged {needle:?} within {timeout:?}; logs:\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a running node reports itself leader; returns its index.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..self.nodes.len() {
                if !self.is_running(i) {
                    continue;
                }
                if let Ok(info) = self.info(i).await {
                    if info.get("role").map(String::as_str) == Some("leader") {
                        return Ok(i);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no leader within {timeout:?}; logs:\n{}", self.log_tails());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- n{} ---\n{}", n.id, tail(&n.log, 20)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The entries of a stream on one node, as (id, value of the first field).
pub async fn xrange(cluster: &Cluster, i: usize, key: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut c = cluster.conn(i).await?;
    type Fields = Vec<(Vec<u8>, Vec<u8>)>;
    let reply: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await?;
    Ok(reply
        .into_iter()
        .map(|(id, fields)| {
            (
                id,
                fields.into_iter().next().map(|f| f.1).unwrap_or_default(),
            )
        })
        .collect())
}

/// Waits until every running node's stream `key` has at least `len` entries.
pub async fn wait_stream_len(
    cluster: &Cluster,
    key: &str,
    len: usize,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = true;
        for i in 0..cluster.nodes.len() {
            if !cluster.is_running(i) {
                continue;
            }
            let got = xrange(cluster, i, key).await.map(|v| v.len()).unwrap_or(0);
            if got < len {
                all = false;
            }
        }
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("stream {key} did not reach {len} entries on every node within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A raw RESP connection, so a test sees exactly what a server sends and when.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Result<RawConn> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    return Ok(RawConn {
                        stream,
                        buf: BytesMut::new(),
                        decoder: FrameDecoder::new(Limits::default()),
                    })
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("connect to {addr}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn send(&mut self, args: &[&str]) -> Result<()> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(out.as_bytes()).await?;
        Ok(())
    }

    /// The next frame, or `None` when none comes within `timeout`.
    pub async fn read(&mut self, timeout: Duration) -> Result<Option<Frame>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => bail!("connection closed by the server"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
}

/// Whether every thread under `/proc/<pid>/task` is in state T (stopped by a signal).
fn all_threads_stopped(tasks: &str) -> Result<bool> {
    for task in std::fs::read_dir(tasks).with_context(|| format!("reading {tasks}"))? {
        let stat = std::fs::read_to_string(task?.path().join("stat"))?;
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if state != Some('T') {
            return Ok(false);
        }
    }
    Ok(true)
}
