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
