//! Precise wake-ups for the publishers' schedule.
//!
//! tokio's timer rounds every deadline up to a whole millisecond and fires on the next
//! turn of its driver, so a publisher sleeping until its next send time woke on average
//! about 1 ms late, and every latency measured from the intended time carried that much
//! of the generator's own lag. One thread here sleeps with the OS timer (microsecond
//! resolution) until the earliest deadline asked of it and wakes that task then; the
//! coarse tokio timer still covers all but the last [`FINE_SPAN`] of a long wait, so the
//! thread only ever waits out short spans.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// The last stretch of a wait that the pacer thread, not tokio's timer, waits out.
pub const FINE_SPAN: Duration = Duration::from_millis(2);
/// How long the thread waits for requests when it has none.
const IDLE: Duration = Duration::from_secs(1);

type Request = (std::time::Instant, u64, oneshot::Sender<()>);

fn pacer() -> &'static mpsc::Sender<Request> {
    static PACER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    PACER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("rb-pacer".into())
            .spawn(move || run(rx))
            .expect("spawn the pacer thread");
        tx
    })
}

/// The thread: a heap of deadlines, each woken once it has passed.
fn run(rx: mpsc::Receiver<Request>) {
    let mut due: BinaryHeap<Reverse<(std::time::Instant, u64)>> = BinaryHeap::new();
    let mut wakers = std::collections::HashMap::new();
    loop {
        let now = std::time::Instant::now();
        while let Some(Reverse((at, id))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            if let Some(tx) = wakers.remove(&id) {
                let _: Result<(), ()> = oneshot::Sender::send(tx, ());
            }
        }
        let wait = due
            .peek()
            .map_or(IDLE, |Reverse((at, _))| at.saturating_duration_since(now));
        match rx.recv_timeout(wait) {
            Ok((at, id, tx)) => {
                due.push(Reverse((at, id)));
                wakers.insert(id, tx);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Sleeps until `deadline`, never waking before it, and close after it.
pub async fn sleep_until(deadline: Instant) {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let coarse = deadline.checked_sub(FINE_SPAN);
    if let Some(coarse) = coarse.filter(|c| *c > Instant::now()) {
        tokio::time::sleep_until(coarse).await;
    }
    if Instant::now() >= deadline {
        return;
    }
    let (tx, rx) = oneshot::channel();
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if pacer().send((deadline.into_std(), id, tx)).is_err() {
        // No pacer thread (cannot happen once started): the coarse timer still works.
        tokio::time::sleep_until(deadline).await;
        return;
    }
    if rx.await.is_err() {
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_wakes_before_its_deadline_and_serves_many_sleepers() {
        let start = Instant::now();
        let mut tasks = Vec::new();
        // Short waits (the pacer alone) and longer ones (tokio first), interleaved.
        for i in 0..200u64 {
            let deadline = start + Duration::from_micros(137 * i + (i % 7) * 1000);
            tasks.push(tokio::spawn(async move {
                sleep_until(deadline).await;
                (deadline, Instant::now())
            }));
        }
        for t in tasks {
            let (deadline, woke) = t.await.unwrap();
            assert!(woke >= deadline, "woke {:?} early", deadline - woke);
        }
        // A deadline already past returns at once.
        sleep_until(start).await;
    }
}
