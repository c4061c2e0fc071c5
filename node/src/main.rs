//! `raftbus-node`: parse flags, set up logging, run the node until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use raftbus_node::config::{parse_peers, CpuScheduling, NodeConfig, NodeSettings};
use raftbus_node::{node, shutdown};

/// glibc's malloc made each snapshot stall every write for 50-100 ms: freeing the purged
/// log cache (tens of thousands of small buffers) took that long on the Raft core task, and
/// the next large allocation paid again in `malloc_consolidate`. mimalloc frees in place.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Raft-replicated message bus node that speaks the Redis protocol.
///
/// Start the same command on every node with its own --id, --listen, --raft-listen and
/// --data-dir, and the same --peers. The node with the lowest id initialises the cluster
/// the first time; restarting a node with the same flags rejoins it.
#[derive(Debug, Parser)]
#[command(name = "raftbus-node", version)]
struct Args {
    /// This node's id; must appear in --peers.
    #[arg(long)]
    id: u64,
    /// Address for Redis clients (RESP), e.g. 127.0.0.1:6401.
    #[arg(long)]
    listen: SocketAddr,
    /// Address for Raft traffic from the other nodes, e.g. 127.0.0.1:7401.
    #[arg(long)]
    raft_listen: SocketAddr,
    /// Every node's Raft address: 1=127.0.0.1:7401,2=127.0.0.1:7402,3=127.0.0.1:7403.
    #[arg(long)]
    peers: String,
    /// Where the log, vote and snapshots live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Shared secret that peers must present; without it peer connections are
    /// unauthenticated (a warning is logged).
    #[arg(long, env = "RAFTBUS_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// TOML file with tuning: retention, limits, snapshot interval, timeouts, requirepass.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Failpoint builds only: the token the admin command RAFTBUS.FAILPOINT must present
    /// (default: the cluster secret; with neither, the command is refused).
    #[cfg(feature = "failpoints")]
    #[arg(long, env = "RAFTBUS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Failpoint builds only: read the admin token from this file.
    #[cfg(feature = "failpoints")]
    #[arg(long, conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Failpoint builds only: failpoints to arm at start, `name=actions;name=actions`
    /// (e.g. `bug.apply_twice=return;net.send=5%return`).
    #[cfg(feature = "failpoints")]
    #[arg(long, env = "FAILPOINTS")]
    failpoints: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let span = tracing::info_span!("node", id = args.id);
    let _entered = span.enter();

    #[cfg(feature = "failpoints")]
    {
        use raftbus_node::failpoint;
        let token = failpoint::resolve_token(
            args.admin_token.clone(),
            args.admin_token_file.as_deref(),
            args.cluster_secret.clone().filter(|s| !s.is_empty()),
        )
        .and_then(|token| failpoint::init(token, args.failpoints.as_deref()));
        if let Err(e) = token {
            tracing::error!("{e}");
            eprintln!("raftbus-node: {e}");
            return ExitCode::from(2);
        }
    }

    let config = match build_config(args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("raftbus-node: {e}");
            return ExitCode::from(2);
        }
    };

    set_cpu_scheduling(config.settings.cpu_scheduling);
    let mut builder = if one_worker_thread() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async move {
        let (trigger, stop) = shutdown::channel();
        tokio::spawn(async move {
            wait_for_signal().await;
            trigger.fire();
        });
        node::run(config, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("raftbus-node: {e}");
            ExitCode::from(1)
        }
    }
}

fn build_config(args: Args) -> anyhow::Result<NodeConfig> {
    let settings = match &args.config {
        Some(path) => NodeSettings::load(path)?,
        None => NodeSettings::default(),
    };
    Ok(NodeConfig {
        id: args.id,
        listen: args.listen,
        raft_listen: args.raft_listen,
        peers: parse_peers(&args.peers)?,
        data_dir: args.data_dir,
        cluster_secret: args.cluster_secret.filter(|s| !s.is_empty()),
        settings,
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Sets the policy on this thread before the runtime starts, so every thread the node
/// creates (runtime workers, the log flusher, blocking tasks) inherits it. A kernel that
/// refuses leaves the default policy, with a warning: it changes speed, not behaviour.
fn set_cpu_scheduling(policy: CpuScheduling) {
    let CpuScheduling::Batch = policy else {
        return;
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread and `param` outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "cannot set cpu_scheduling = \"batch\"; threads keep the default policy");
    }
}

/// `TOKIO_WORKER_THREADS=1` (what `raftbus` gives each of three nodes sharing a 2-core
/// machine) runs every task on tokio's current-thread scheduler: the same single thread,
/// without the work-stealing machinery around it. Measured in six alternating pairs of
/// `redis-benchmark -c 50` XADD via the leader: 28.5k/s against 26.6k/s on a multi-thread
/// runtime with one worker.
fn one_worker_thread() -> bool {
    std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim().parse::<usize>() == Ok(1))
}
