//! A userspace delay stage: a TCP proxy with runtime-adjustable delay, jitter and blackhole.
//!
//! Why a proxy: this kernel has no `netem`, so the kernel cannot delay packets. The
//! alternatives were a TUN router in the lab (every packet through userspace, a routing and
//! ARP setup per host, and we would own IP forwarding semantics) or NFQUEUE (needs the
//! `nfnetlink_queue` module and a verdict loop, and cannot hold a packet without stalling
//! the whole queue). A TCP proxy is simple, works in loopback mode and rootless, and delays
//! exactly the traffic the harness points at it: nodes' peer addresses and clients' server
//! addresses. It works at the byte-stream level: each chunk read is forwarded after
//! `delay ± jitter`, and chunks of one direction are never reordered (a later chunk is never
//! due before an earlier one), so TCP byte order holds.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::{Error, Result};

const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction (bounds memory: CHUNK * QUEUE per direction).
const QUEUE: usize = 256;

/// What the proxy currently does to the traffic it forwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxySettings {
    /// Added to every chunk, in each direction (so a round trip grows by twice this).
    pub delay: Duration,
    /// Each chunk's delay is drawn uniformly from `delay ± jitter` (seeded), never below 0,
    /// and never earlier than the chunk before it.
    pub jitter: Duration,
    /// Forward nothing: data is held (not dropped: that would corrupt the stream) and new
    /// connections are accepted but not connected upstream until the blackhole is lifted.
    pub blackhole: bool,
}

#[derive(Debug)]
struct Inner {
    listen: SocketAddr,
    upstream: SocketAddr,
    settings: watch::Sender<ProxySettings>,
    resets: watch::Sender<u64>,
    rng: Mutex<ChaCha8Rng>,
    active: AtomicUsize,
}

impl Inner {
    fn chunk_delay(&self, s: &ProxySettings) -> Duration {
        if s.jitter.is_zero() {
            return s.delay;
        }
        let j = s.jitter.as_nanos() as i128;
        let offset = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .gen_range(-j..=j);
        let nanos = (s.delay.as_nanos() as i128 + offset).max(0);
        Duration::from_nanos(nanos.min(u64::MAX as i128) as u64)
    }
}

/// A handle on a running proxy's settings; cheap to clone (the [`crate::Journal`] keeps one
/// to undo a delay fault). Named inverse of every setter: [`ProxyControl::clear`].
#[derive(Debug, Clone)]
pub struct ProxyControl {
    inner: Arc<Inner>,
}

impl ProxyControl {
    /// Where the proxy listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// Where it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.inner.upstream
    }

    /// Current settings.
    pub fn settings(&self) -> ProxySettings {
        *self.inner.settings.borrow()
    }

    /// Delay every chunk by `delay ± jitter` in each direction.
    pub fn set_delay(&self, delay: Duration, jitter: Duration) {
        self.inner.settings.send_modify(|s| {
            s.delay = delay;
            s.jitter = jitter;
        });
        tracing::info!(upstream = %self.inner.upstream, ?delay, ?jitter, "proxy delay set");
    }

    /// Stop (or resume) forwarding in both directions.
    pub fn set_blackhole(&self, on: bool) {
        self.inner.settings.send_modify(|s| s.blackhole = on);
        tracing::info!(upstream = %self.inner.upstream, on, "proxy blackhole set");
    }

    /// Back to a transparent proxy: no delay, no jitter, no blackhole.
    pub fn clear(&self) {
        self.inner.settings.send_replace(ProxySettings::default());
        tracing::info!(upstream = %self.inner.upstream, "proxy cleared");
    }

    /// Close every connection currently open through the proxy (both sides see the close).
    pub fn reset_connections(&self) {
        self.inner.resets.send_modify(|g| *g += 1);
    }

    /// Connections currently open through the proxy.
    pub fn active_connections(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }
}

/// A running TCP delay proxy. Stops when dropped or on [`DelayProxy::shutdown`].
#[derive(Debug)]
pub struct DelayProxy {
    control: ProxyControl,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DelayProxy {
    /// Listen on `listen` (port 0 picks one) and forward every connection to `upstream`.
    /// `seed` drives the jitter. Must be called inside a tokio runtime.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, seed: u64) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io(format!("binding proxy on {listen}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("proxy local address", e))?;
        let control = ProxyControl {
            inner: Arc::new(Inner {
                listen: local,
                upstream,
                settings: watch::Sender::new(ProxySettings::default()),
                resets: watch::Sender::new(0),
                rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
                active: AtomicUsize::new(0),
            }),
        };
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(serve(listener, control.inner.clone(), stop));
        tracing::info!(listen = %local, %upstream, "delay proxy started");
        Ok(DelayProxy {
            control,
            shutdown,
            task: Some(task),
        })
    }

    /// A clonable handle on the settings.
    pub fn control(&self) -> ProxyControl {
        self.control.clone()
    }

    /// Stop accepting, close every connection and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::ops::Deref for DelayProxy {
    type Target = ProxyControl;

    fn deref(&self) -> &ProxyControl {
        &self.control
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn serve(listener: TcpListener, inner: Arc<Inner>, stop: watch::Receiver<bool>) {
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            () = until_stopped(&mut stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    tokio::spawn(connection(client, peer, inner.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::debug!(listen = %inner.listen, "delay proxy stopped");
}

struct ActiveGuard(Arc<Inner>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    client: TcpStream,
    peer: SocketAddr,
    inner: Arc<Inner>,
    mut stop: watch::Receiver<bool>,
) {
    inner.active.fetch_add(1, Ordering::Relaxed);
    let _guard = ActiveGuard(inner.clone());
    let mut resets = inner.resets.subscribe();
    let generation = *resets.borrow_and_update();
    let run = async {
        // A blackholed proxy holds new connections before they reach the upstream.
        let mut settings = inner.settings.subscribe();
        wait_open(&mut settings).await;
        let upstream = TcpStream::connect(inner.upstream).await?;
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (cr, cw) = client.into_split();
        let (ur, uw) = upstream.into_split();
        tokio::try_join!(pipe(cr, uw, inner.clone()), pipe(ur, cw, inner.clone()))?;
        Ok::<_, io::Error>(())
    };
    tokio::select! {
        r = run => if let Err(e) = r {
            tracing::debug!(%peer, upstream = %inner.upstream, error = %e, "proxied connection ended");
        },
        () = until_stopped(&mut stop) => {}
        () = until_reset(&mut resets, generation) => {
            tracing::debug!(%peer, "proxied connection reset");
        }
    }
}

async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn until_reset(resets: &mut watch::Receiver<u64>, generation: u64) {
    let _ = resets.wait_for(|g| *g != generation).await;
}

async fn wait_open(settings: &mut watch::Receiver<ProxySettings>) {
    // The sender lives in `Inner`, which outlives every receiver user.
    let _ = settings.wait_for(|s| !s.blackhole).await;
}

/// Copy one direction, holding each chunk until it is due.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    inner: Arc<Inner>,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reading = {
        let inner = inner.clone();
        async move {
            let mut settings = inner.settings.subscribe();
            let mut last_due = Instant::now();
            loop {
                wait_open(&mut settings).await;
                let mut buf = vec![0u8; CHUNK];
                let n = from.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, io::Error>(());
                }
                buf.truncate(n);
                let s = *settings.borrow();
                let due = (Instant::now() + inner.chunk_delay(&s)).max(last_due);
                last_due = due;
                if tx.send((due, buf)).await.is_err() {
                    return Ok(());
                }
            }
        }
    };
    let writing = async move {
        let mut settings = inner.settings.subscribe();
        while let Some((due, buf)) = rx.recv().await {
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            wait_open(&mut settings).await;
            to.write_all(&buf).await?;
        }
        // Propagate the half-close.
        to.shutdown().await
    };
    tokio::try_join!(reading, writing)?;
    Ok(())
}
