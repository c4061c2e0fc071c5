use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use raftbus_faults::{DelayProxy, ProxySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

async fn rtt(stream: &mut TcpStream) -> anyhow::Result<Duration> {
    let start = Instant::now();
    stream.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await?;
    ensure!(&buf == b"ping");
    Ok(start.elapsed())
}

async fn min_rtt(addr: SocketAddr, rounds: usize) -> anyhow::Result<Duration> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        best = best.min(rtt(&mut s).await?);
    }
    Ok(best)
}

async fn proxy(upstream: SocketAddr) -> anyhow::Result<DelayProxy> {
    Ok(DelayProxy::start("127.0.0.1:0".parse()?, upstream, 42).await?)
}

pub fn proxy_adds_round_trip_delay() -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let echo = echo_server().await?;
        let p = proxy(echo).await?;
        let direct = min_rtt(echo, 5).await?;
        let transparent = min_rtt(p.local_addr(), 5).await?;
        p.set_delay(Duration::from_millis(100), Duration::ZERO);
        let delayed = min_rtt(p.local_addr(), 3).await?;
        println!("direct {direct:?}, through proxy {transparent:?}, with 100 ms {delayed:?}");
        ensure!(
            delayed >= direct + Duration::from_millis(100),
            "a 100 ms delay made the round trip {delayed:?} (direct {direct:?})"
        );
        // Named inverse.
        p.clear();
        ensure!(p.settings() == ProxySettings::default());
        let cleared = min_rtt(p.local_addr(), 3).await?;
        ensure!(
            cleared < Duration::from_millis(100),
            "still delayed after clear: {cleared:?}"
        );
        Ok(())
    })
}

pub fn jitter_keeps_byte_order() -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let echo = echo_server().await?;
        let p = proxy(echo).await?;
        p.set_delay(Duration::from_millis(5), Duration::from_millis(5));
        let s = TcpStream::connect(p.local_addr()).await?;
        s.set_nodelay(true)?;
        let (mut r, mut w) = s.into_split();
        let total: u32 = 20_000;
        let writer = tokio::spawn(async move {
            for i in 0..total {
                w.write_all(&i.to_be_bytes()).await?;
                if i % 500 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            w.shutdown().await?;
            Ok::<_, std::io::Error>(())
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got))
            .await
            .context("echo through the proxy did not finish")??;
        writer.await??;
        ensure!(got.len() == total as usize * 4, "got {} bytes", got.len());
        for (i, chunk) in got.chunks(4).enumerate() {
            let v = u32::from_be_bytes(chunk.try_into()?);
            ensure!(v == i as u32, "byte order broken at word {i}: {v}");
        }
        Ok(())
    })
}

pub fn blackhole_holds_and_reset_closes() -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let echo = echo_server().await?;
        let p = proxy(echo).await?;
        let mut s = TcpStream::connect(p.local_addr()).await?;
        rtt(&mut s).await?;
        p.set_blackhole(true);
        s.write_all(b"held").await?;
        let mut buf = [0u8; 4];
        let r = tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await;
        ensure!(r.is_err(), "data crossed a blackholed proxy");
        p.set_blackhole(false);
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .context("held data never arrived after lifting the blackhole")??;
        ensure!(&buf == b"held", "held data corrupted: {buf:?}");
        ensure!(p.active_connections() == 1);

        p.reset_connections();
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .context("reset did not close the connection")?;
        ensure!(r.is_err() || rest.is_empty(), "data after reset: {rest:?}");
        // New connections still work after a reset.
        let mut s = TcpStream::connect(p.local_addr()).await?;
        rtt(&mut s).await?;
        p.shutdown().await;
        Ok(())
    })
}

/// Kernel delay: with netem, a 50 ms delay on n1 makes an n2 -> n1 round trip at least
/// 100 ms longer; without netem (this CI kernel) it must refuse with `Unsupported` rather
/// than pretend.
pub fn kernel_delay_where_netem_exists(lab: &raftbus_faults::Lab) -> anyhow::Result<()> {
    use crate::util::{connect, echo_roundtrip, echo_server, PATIENT};
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    let net = lab.net();
    let delay = Duration::from_millis(50);
    if !lab.capabilities().netem {
        let r = net.set_delay("n1", delay, Duration::ZERO);
        ensure!(
            matches!(r, Err(raftbus_faults::Error::Unsupported(_))),
            "set_delay without netem: {r:?}"
        );
        return Ok(());
    }
    let s1 = echo_server(&n1, 7000)?;
    let mut c = connect(Some(&n2), s1, PATIENT)?;
    let start = Instant::now();
    ensure!(echo_roundtrip(&mut c, b"x", PATIENT)?);
    let direct = start.elapsed();
    net.set_delay("n1", delay, Duration::ZERO)?;
    let start = Instant::now();
    ensure!(echo_roundtrip(&mut c, b"y", Duration::from_secs(2))?);
    let delayed = start.elapsed();
    ensure!(
        delayed >= direct + 2 * delay,
        "netem round trip {delayed:?}"
    );
    net.clear_delay("n1")?;
    ensure!(!net.qdiscs("n1")?.contains("netem"));
    Ok(())
}
