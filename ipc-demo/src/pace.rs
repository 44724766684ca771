//! Pacing a stream at a given number of items per second.

use std::time::{Duration, Instant};

/// Sleeps so that item `n` does not start before `n / rate` seconds after
/// the start; does nothing without a rate.
#[derive(Debug)]
pub struct Pace {
    start: Instant,
    rate: Option<f64>,
}

impl Pace {
    /// A pace of `rate` items per second from now (`None`: no pacing).
    pub fn new(rate: Option<f64>) -> Self {
        Pace {
            start: Instant::now(),
            rate,
        }
    }

    /// When item `n` is due (`None`: no pacing).
    pub fn due(&self, n: u64) -> Option<Instant> {
        self.rate
            .map(|rate| self.start + Duration::from_secs_f64(n as f64 / rate))
    }

    /// Waits until item `n` is due.
    pub fn wait(&self, n: u64) {
        if let Some(due) = self.due(n) {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}
