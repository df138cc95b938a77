//! A per-(account, region) rate limit: calls are spaced evenly at `per_second`.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        RateLimiter {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(None),
        }
    }

    /// Waits until the next call may go out.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With paused time, ten calls at 5/s take 1.8 s of (virtual) time: the first goes at once.
    #[tokio::test(start_paused = true)]
    async fn spaces_calls_evenly() {
        let l = RateLimiter::new(5);
        let start = Instant::now();
        for _ in 0..10 {
            l.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1800));
    }
}
