use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use raftbus_faults::{Bandwidth, Lab};

use crate::util::{self, connect};

pub fn one_megabyte_at_one_megabit(lab: &Lab) -> anyhow::Result<()> {
    util::require(lab.capabilities().tbf, "the tbf qdisc")?;
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    let addr = n2.socket_addr(7100);
    let listener = n2.run_in(|| TcpListener::bind(addr))??;
    let receiver = std::thread::spawn(move || -> std::io::Result<(usize, Instant)> {
        let (mut conn, _) = listener.accept()?;
        let mut total = 0;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok((total, Instant::now()));
            }
            total += n;
        }
    });

    let net = lab.net();
    net.limit_bandwidth("n1", Bandwidth::mbit(1))?;
    let qdiscs = net.qdiscs("n1")?;
    ensure!(
        qdiscs.matches("qdisc tbf").count() == 2,
        "expected tbf on both ends: {qdiscs}"
    );

    const SIZE: usize = 1_000_000;
    let start = Instant::now();
    let mut c = connect(Some(&n1), addr, Duration::from_secs(2))?;
    c.write_all(&vec![0x5a; SIZE])?;
    c.shutdown(std::net::Shutdown::Write)?;
    let (received, done) = receiver
        .join()
        .expect("receiver panicked")
        .context("receiver")?;
    let took = done - start;
    println!("1 MB at 1 Mbit/s took {took:?}");
    ensure!(received == SIZE, "received {received} of {SIZE} bytes");
    ensure!(
        took >= Duration::from_millis(500),
        "1 MB crossed a 1 Mbit/s link in {took:?}: the limit is not applied"
    );

    net.clear_bandwidth("n1")?;
    let qdiscs = net.qdiscs("n1")?;
    ensure!(!qdiscs.contains("tbf"), "tbf left after clear: {qdiscs}");
    Ok(())
}
