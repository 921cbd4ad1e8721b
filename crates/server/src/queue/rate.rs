//! A queue's start rate (`AIRWAVE_QUEUE_<NAME>_RATE_PER_S`): at most `per_s` jobs start a second in
//! one worker process, in bursts of up to one second's worth — `governor`'s GCRA, on a clock the
//! tests can move.

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

pub struct StartRate<C: Clock = MonotonicClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

impl StartRate {
    /// `None` unless `per_s` is a positive rate.
    pub fn new(per_s: f64) -> Option<Self> {
        Self::with_clock(per_s, MonotonicClock)
    }
}

impl<C: Clock> StartRate<C> {
    pub fn with_clock(per_s: f64, clock: C) -> Option<Self> {
        if !(per_s.is_finite() && per_s > 0.0) {
            return None;
        }
        // One start every 1/per_s seconds (at least a nanosecond apart), bursts of a second's worth.
        let period = Duration::from_secs_f64(1.0 / per_s).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(per_s.floor().clamp(1.0, f64::from(u32::MAX)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)?.allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::direct_with_clock(quota, clock),
        })
    }

    /// Takes up to `want` starts. Returns how many it got and, when none, how long until the next.
    pub fn take(&self, want: usize) -> (usize, Duration) {
        for got in 0..want {
            if let Err(not_until) = self.limiter.check() {
                let wait = if got == 0 {
                    not_until.wait_time_from(self.limiter.clock().now())
                } else {
                    Duration::ZERO
                };
                return (got, wait);
            }
        }
        (want, Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn a_second_s_worth_at_once_then_one_per_period() {
        let clock = FakeRelativeClock::default();
        let rate = StartRate::with_clock(10.0, clock.clone()).unwrap();
        assert_eq!(
            rate.take(25),
            (10, Duration::ZERO),
            "a burst of one second's worth"
        );
        assert_eq!(rate.take(5), (0, Duration::from_millis(100)));
        clock.advance(Duration::from_millis(100));
        assert_eq!(rate.take(5).0, 1);
        clock.advance(Duration::from_millis(350));
        assert_eq!(rate.take(5).0, 3);
        // An idle spell never banks more than the burst.
        clock.advance(Duration::from_secs(60));
        assert_eq!(rate.take(100).0, 10);
    }

    #[test]
    fn slow_rates_start_one_at_a_time_and_nonsense_is_no_limit() {
        let clock = FakeRelativeClock::default();
        let rate = StartRate::with_clock(0.5, clock.clone()).unwrap();
        assert_eq!(rate.take(3).0, 1);
        assert_eq!(rate.take(3), (0, Duration::from_secs(2)));
        clock.advance(Duration::from_secs(2));
        assert_eq!(rate.take(3).0, 1);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(StartRate::new(bad).is_none(), "{bad}");
        }
        assert_eq!(StartRate::new(1_000_000.0).unwrap().take(64).0, 64);
    }
}
