//! A per-(account, region) rate limit: calls are spaced evenly at `per_second`.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

/// Books the next slot at or after `now`, `interval` after the previous one.
fn reserve(next: &mut Option<Instant>, now: Instant, interval: Duration) -> Instant {
    let slot = next.map_or(now, |n| n.max(now));
    *next = Some(slot + interval);
    slot
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
        let now = Instant::now();
        let slot = reserve(&mut *self.next.lock().await, now, self.interval);
        // A timer rounds up to the next millisecond: only sleep when there is a wait.
        if slot > now {
            tokio::time::sleep_until(slot.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_evenly_and_never_in_the_past() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut next = None;
        // Ten calls at once at 5/s: 0, 200, …, 1800 ms.
        let slots: Vec<Duration> = (0..10)
            .map(|_| reserve(&mut next, t0, ms(200)) - t0)
            .collect();
        assert_eq!(slots, (0..10).map(|i| ms(200 * i)).collect::<Vec<_>>());
        // A caller arriving after a quiet spell goes at once, and spacing resumes from there.
        assert_eq!(reserve(&mut next, t0 + ms(5000), ms(200)) - t0, ms(5000));
        assert_eq!(reserve(&mut next, t0 + ms(5000), ms(200)) - t0, ms(5200));
        assert_eq!(RateLimiter::new(10).interval, ms(100));
        assert_eq!(RateLimiter::new(0).interval, ms(1000));
    }
}
