use std::time::Duration;

use anyhow::{ensure, Context};
use raftbus_faults::{Lab, Partition};

use crate::util::{connect, echo_roundtrip, echo_server, udp_count, udp_in, PATIENT, QUIET, SHORT};

pub fn isolate_cuts_new_and_established(lab: &Lab) -> anyhow::Result<()> {
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    let n3 = lab.add_host("n3")?;
    let s1 = echo_server(&n1, 7000)?;
    let s3 = echo_server(&n3, 7000)?;
    let mut established = connect(Some(&n2), s1, PATIENT)?;
    ensure!(
        echo_roundtrip(&mut established, b"before", PATIENT)?,
        "echo before the partition"
    );

    let net = lab.net();
    let id = net.partition(&Partition::isolate("n1", &["n2", "n3"]))?;
    ensure!(
        connect(Some(&n2), s1, SHORT).is_err(),
        "a new connection n2 -> n1 succeeded during the partition"
    );
    ensure!(
        !echo_roundtrip(&mut established, b"during", Duration::from_secs(1))?,
        "an established connection still delivered during the partition"
    );
    // The rest of the cluster and the lab are unaffected.
    let mut c = connect(Some(&n2), s3, PATIENT).context("n2 -> n3 during the partition")?;
    ensure!(echo_roundtrip(&mut c, b"n2n3", PATIENT)?);
    let mut c = connect(None, s1, PATIENT).context("lab -> n1 during the partition")?;
    ensure!(echo_roundtrip(&mut c, b"lab", PATIENT)?);

    net.repair(id)?;
    ensure!(net.current_partition().is_empty());
    let mut c = connect(Some(&n2), s1, Duration::from_secs(2)).context("n2 -> n1 after heal")?;
    ensure!(
        echo_roundtrip(&mut c, b"after", PATIENT)?,
        "echo after heal"
    );
    Ok(())
}

pub fn one_way_blocks_one_direction(lab: &Lab) -> anyhow::Result<()> {
    let a = lab.add_host("a")?;
    let b = lab.add_host("b")?;
    let ua = udp_in(&a, 9000)?;
    let ub = udp_in(&b, 9000)?;
    // Warm up ARP in both directions first.
    ensure!(udp_count(&ua, &ub, b.socket_addr(9000), 5, QUIET)? == 5);
    ensure!(udp_count(&ub, &ua, a.socket_addr(9000), 5, QUIET)? == 5);

    let net = lab.net();
    net.partition(&Partition::one_way(&["a"], &["b"]))?;
    let ruleset = net.ruleset()?;
    ensure!(
        ruleset.contains(r#"iifname "vh-a" oifname "vh-b""#),
        "missing a -> b rule: {ruleset}"
    );
    ensure!(
        !ruleset.contains(r#"iifname "vh-b" oifname "vh-a""#),
        "b -> a must stay open: {ruleset}"
    );
    let a_to_b = udp_count(&ua, &ub, b.socket_addr(9000), 20, QUIET)?;
    let b_to_a = udp_count(&ub, &ua, a.socket_addr(9000), 20, QUIET)?;
    ensure!(
        a_to_b == 0,
        "{a_to_b} datagrams went a -> b through a one-way cut"
    );
    ensure!(b_to_a == 20, "only {b_to_a}/20 datagrams went b -> a");

    net.heal()?;
    ensure!(
        udp_count(&ua, &ub, b.socket_addr(9000), 20, QUIET)? == 20,
        "a -> b after heal"
    );
    Ok(())
}

pub fn client_partition_keeps_nodes_talking(lab: &Lab) -> anyhow::Result<()> {
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    let s1 = echo_server(&n1, 7000)?;
    let net = lab.net();
    net.partition(&Partition::client(&["n1"]))?;
    ensure!(
        connect(None, s1, SHORT).is_err(),
        "the lab reached n1 through a client partition"
    );
    let mut c = connect(Some(&n2), s1, PATIENT).context("n2 -> n1 during a client partition")?;
    ensure!(echo_roundtrip(&mut c, b"peers", PATIENT)?);
    net.heal()?;
    let mut c = connect(None, s1, Duration::from_secs(2)).context("lab -> n1 after heal")?;
    ensure!(echo_roundtrip(&mut c, b"client", PATIENT)?);
    Ok(())
}
