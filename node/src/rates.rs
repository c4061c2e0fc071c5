//! Instantaneous rates of monotonic counters, as Redis's `instantaneous_ops_per_sec`: the
//! counters are sampled every [`SAMPLE_EVERY`] and a rate is the change across the last
//! [`SAMPLES`] samples divided by the time they span.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Samples kept: the rate covers the last 1.6 s.
pub const SAMPLES: usize = 16;

/// The last samples of `N` counters.
#[derive(Debug)]
pub struct RateWindow<const N: usize> {
    samples: VecDeque<(Instant, [u64; N])>,
}

impl<const N: usize> Default for RateWindow<N> {
    fn default() -> Self {
        RateWindow {
            samples: VecDeque::with_capacity(SAMPLES + 1),
        }
    }
}

impl<const N: usize> RateWindow<N> {
    pub fn record(&mut self, at: Instant, counters: [u64; N]) {
        self.samples.push_back((at, counters));
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Per-second rate of each counter over the window; zeros until two samples exist.
    pub fn per_second(&self) -> [f64; N] {
        let mut rates = [0.0; N];
        let (Some((t0, first)), Some((t1, last))) = (self.samples.front(), self.samples.back())
        else {
            return rates;
        };
        let span = t1.duration_since(*t0).as_secs_f64();
        if span <= 0.0 {
            return rates;
        }
        for (rate, (a, b)) in rates.iter_mut().zip(first.iter().zip(last)) {
            *rate = b.saturating_sub(*a) as f64 / span;
        }
        rates
    }
}

/// Samples `read` every [`SAMPLE_EVERY`] into a shared window until `shutdown`.
pub fn spawn_sampler<const N: usize>(
    window: Arc<Mutex<RateWindow<N>>>,
    read: impl Fn() -> [u64; N] + Send + 'static,
    mut shutdown: crate::shutdown::Shutdown,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.recv() => return,
            }
            let counters = read();
            window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(Instant::now(), counters);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_change_over_the_window_span() {
        let mut w = RateWindow::<2>::default();
        let t = Instant::now();
        assert_eq!(w.per_second(), [0.0, 0.0]);
        w.record(t, [10, 100]);
        assert_eq!(w.per_second(), [0.0, 0.0]);
        w.record(t + Duration::from_millis(500), [60, 100]);
        assert_eq!(w.per_second(), [100.0, 0.0]);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut w = RateWindow::<1>::default();
        let t = Instant::now();
        // A burst long ago, then a steady 10 per 100 ms.
        w.record(t, [0]);
        w.record(t + Duration::from_millis(100), [1_000]);
        for i in 2..=40u64 {
            w.record(t + Duration::from_millis(100 * i), [1_000 + 10 * (i - 1)]);
        }
        assert_eq!(w.samples.len(), SAMPLES);
        let [rate] = w.per_second();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
    }
}
