use anyhow::ensure;
use raftbus_faults::Lab;

use crate::util::{udp_count, udp_in, QUIET};

pub fn half_the_datagrams_are_lost(lab: &Lab) -> anyhow::Result<()> {
    let n1 = lab.add_host("n1")?;
    let n2 = lab.add_host("n2")?;
    let u1 = udp_in(&n1, 9000)?;
    let u2 = udp_in(&n2, 9000)?;
    let to = n2.socket_addr(9000);
    let sent = 1000;
    // Control: the same traffic without the fault loses (almost) nothing.
    let control = udp_count(&u1, &u2, to, sent, QUIET)?;
    ensure!(
        control >= sent * 99 / 100,
        "{control}/{sent} arrived without any fault"
    );

    let net = lab.net();
    net.set_loss("n1", 50)?;
    let got = udp_count(&u1, &u2, to, sent, QUIET)?;
    println!("50% loss: {got}/{sent} arrived");
    ensure!(got < sent * 8 / 10, "{got}/{sent} arrived with 50% loss");
    ensure!(
        got > sent / 5,
        "{got}/{sent} arrived: that is a partition, not 50% loss"
    );

    net.clear_loss("n1")?;
    let got = udp_count(&u1, &u2, to, sent, QUIET)?;
    ensure!(
        got >= sent * 99 / 100,
        "{got}/{sent} arrived after clearing the loss"
    );
    Ok(())
}
