//! Progress display on stderr: a bar on a terminal, a plain line every 5 s otherwise.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::record::{Clock, LiveStats};

const PLAIN_EVERY: Duration = Duration::from_secs(5);
const BAR_EVERY: Duration = Duration::from_millis(250);

/// Shows progress until `stop` turns true.
pub async fn show(
    live: Arc<LiveStats>,
    clock: Clock,
    duration: Duration,
    label: String,
    mut stop: watch::Receiver<bool>,
) {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(duration.as_secs()),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}s {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        bar
    });
    let every = if terminal { BAR_EVERY } else { PLAIN_EVERY };
    let mut last = (0u64, 0u64, 0u64);
    let mut last_us = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now_us = clock.now_us();
        let invoked = live.invoked.load(Ordering::Relaxed);
        let acked = live.acked.load(Ordering::Relaxed);
        let failed = live.failed.load(Ordering::Relaxed);
        let indeterminate = live.indeterminate.load(Ordering::Relaxed);
        let delivered = live.delivered.load(Ordering::Relaxed);
        let dt = (now_us.saturating_sub(last_us) as f64 / 1e6).max(1e-3);
        let offered_rate = (invoked - last.0) as f64 / dt;
        let acked_rate = (acked - last.1) as f64 / dt;
        let delivered_rate = (delivered - last.2) as f64 / dt;
        last = (invoked, acked, delivered);
        last_us = now_us;
        let phase = if now_us > duration.as_micros() as u64 {
            "draining: "
        } else {
            ""
        };
        let msg = format!(
            "{phase}offered {offered_rate:.0}/s acked {acked_rate:.0}/s delivered {delivered_rate:.0}/s \
             failed {failed} indeterminate {indeterminate}"
        );
        match &bar {
            Some(bar) => {
                bar.set_position((now_us / 1_000_000).min(duration.as_secs()));
                bar.set_message(msg);
            }
            None => eprintln!(
                "[{label}] {:>5.1}s/{}s {msg}",
                (now_us as f64 / 1e6).min(duration.as_secs_f64()),
                duration.as_secs()
            ),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
