//! The clock port, so that use cases and tests agree on what "now" is.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Tells the current time, and waits.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Waits about this long, for work that waits on other work (a busy login throttle).
    /// A test clock may return at once.
    async fn pause(&self, duration: Duration);
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn pause(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock that moves only when told to (or when something pauses on it): for tests that
/// need time to pass without sleeping, and for embedding the use cases in simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self { now: std::sync::Mutex::new(start) }
    }

    /// Sets the clock to `at`, forward or back.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns at once, having moved the clock forward by `duration`: whatever waits on
    /// this clock sees the time it waited for pass.
    async fn pause(&self, duration: Duration) {
        self.advance(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told_or_paused_on() {
        let start = Utc::now();
        let clock = ManualClock::starting_at(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), start + chrono::Duration::milliseconds(1500));
        clock.pause(Duration::from_secs(2)).await;
        assert_eq!(clock.now(), start + chrono::Duration::milliseconds(3500));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }
}
