//! Each cluster's connection pool as the driver reports it (its CMAP events): connections
//! open and in use, checkouts, how long they waited, and why some failed. Counted in
//! atomics by the driver's event callback and read at scrape time, so `/metrics` costs
//! the request path nothing.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use mongodb::event::cmap::{CmapEvent, ConnectionCheckoutFailedReason};

/// The upper bounds, in seconds, of the checkout-wait histogram's buckets (the last bucket,
/// `+Inf`, is implicit).
pub const CHECKOUT_WAIT_BUCKETS: [f64; 9] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// Why a checkout failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutFailure {
    /// No connection became free in time.
    Timeout,
    /// A new connection could not be established (network, handshake, authentication).
    ConnectionError,
    /// The pool was closed, or a reason this driver version added.
    Other,
}

impl CheckoutFailure {
    /// Every reason, in a stable order.
    pub const ALL: [CheckoutFailure; 3] = [Self::Timeout, Self::ConnectionError, Self::Other];

    /// The reason's label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectionError => "connection_error",
            Self::Other => "other",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Timeout => 0,
            Self::ConnectionError => 1,
            Self::Other => 2,
        }
    }
}

/// One cluster's pool counters, fed by the driver's events.
#[derive(Debug, Default)]
pub struct PoolStats {
    open: AtomicI64,
    in_use: AtomicI64,
    checkouts: AtomicU64,
    failures: [AtomicU64; 3],
    /// Checkouts by wait bucket (not cumulative), the last one beyond every bound.
    wait_buckets: [AtomicU64; CHECKOUT_WAIT_BUCKETS.len() + 1],
    wait_micros: AtomicU64,
    cleared: AtomicU64,
}

/// A reading of [`PoolStats`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSnapshot {
    /// Connections open now.
    pub open: i64,
    /// Connections checked out now.
    pub in_use: i64,
    /// Successful checkouts so far.
    pub checkouts: u64,
    /// Failed checkouts so far, by reason, in [`CheckoutFailure::ALL`] order.
    pub failures: [u64; 3],
    /// Checkouts (successful or not) whose wait was at most each bound of
    /// [`CHECKOUT_WAIT_BUCKETS`], cumulative, then all of them.
    pub wait_cumulative: Vec<u64>,
    /// The total wait of those checkouts, in seconds.
    pub wait_seconds: f64,
    /// Times the pool was cleared (its server marked unknown after a network error).
    pub cleared: u64,
}

impl PoolStats {
    /// Counts one event of the driver.
    pub fn observe(&self, event: &CmapEvent) {
        match event {
            CmapEvent::ConnectionCreated(_) => {
                self.open.fetch_add(1, Ordering::Relaxed);
            }
            CmapEvent::ConnectionClosed(_) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
            CmapEvent::ConnectionCheckedOut(out) => {
                self.in_use.fetch_add(1, Ordering::Relaxed);
                self.checkouts.fetch_add(1, Ordering::Relaxed);
                self.waited(out.duration);
            }
            CmapEvent::ConnectionCheckedIn(_) => {
                self.in_use.fetch_sub(1, Ordering::Relaxed);
            }
            CmapEvent::ConnectionCheckoutFailed(failed) => {
                let reason = match failed.reason {
                    ConnectionCheckoutFailedReason::Timeout => CheckoutFailure::Timeout,
                    ConnectionCheckoutFailedReason::ConnectionError => CheckoutFailure::ConnectionError,
                    #[allow(unreachable_patterns)]
                    _ => CheckoutFailure::Other,
                };
                self.failures[reason.index()].fetch_add(1, Ordering::Relaxed);
                self.waited(failed.duration);
            }
            CmapEvent::PoolCleared(_) => {
                self.cleared.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn waited(&self, wait: std::time::Duration) {
        let seconds = wait.as_secs_f64();
        let bucket =
            CHECKOUT_WAIT_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(CHECKOUT_WAIT_BUCKETS.len());
        self.wait_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.wait_micros.fetch_add(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> PoolSnapshot {
        let mut running = 0;
        let wait_cumulative = self
            .wait_buckets
            .iter()
            .map(|bucket| {
                running += bucket.load(Ordering::Relaxed);
                running
            })
            .collect();
        PoolSnapshot {
            open: self.open.load(Ordering::Relaxed),
            in_use: self.in_use.load(Ordering::Relaxed),
            checkouts: self.checkouts.load(Ordering::Relaxed),
            failures: std::array::from_fn(|i| self.failures[i].load(Ordering::Relaxed)),
            wait_cumulative,
            // Microseconds to seconds: precise to well beyond what a scrape shows.
            wait_seconds: self.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
            cleared: self.cleared.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::event::cmap::{
        ConnectionCheckedInEvent, ConnectionCheckedOutEvent, ConnectionCheckoutFailedEvent, ConnectionClosedEvent,
        ConnectionCreatedEvent,
    };
    use serde_json::json;

    use super::*;

    fn event<T: serde::de::DeserializeOwned + Into<CmapEvent>>(fields: serde_json::Value) -> CmapEvent {
        serde_json::from_value::<T>(fields).expect("an event").into()
    }

    #[test]
    fn events_are_counted() {
        let stats = PoolStats::default();
        stats.observe(&event::<ConnectionCreatedEvent>(json!({"connectionId": 1})));
        stats.observe(&event::<ConnectionCreatedEvent>(json!({"connectionId": 2})));
        stats.observe(&event::<ConnectionCheckedOutEvent>(json!({"connectionId": 1})));
        stats.observe(&event::<ConnectionCheckedOutEvent>(json!({"connectionId": 2})));
        stats.observe(&event::<ConnectionCheckedInEvent>(json!({"connectionId": 1})));
        stats.observe(&event::<ConnectionCheckoutFailedEvent>(json!({"reason": "timeout"})));
        stats.observe(&event::<ConnectionCheckoutFailedEvent>(json!({"reason": "connectionError"})));
        stats.observe(&event::<ConnectionClosedEvent>(json!({"connectionId": 2, "reason": "stale"})));
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.open, snapshot.in_use, snapshot.checkouts), (1, 1, 2));
        assert_eq!(snapshot.failures, [1, 1, 0]);
        // Deserialized events carry no duration: every wait is in the first bucket.
        assert_eq!(snapshot.wait_cumulative, vec![4; CHECKOUT_WAIT_BUCKETS.len() + 1]);
    }

    #[test]
    fn waits_fall_in_their_buckets() {
        let stats = PoolStats::default();
        for millis in [0, 1, 7, 2000] {
            stats.waited(std::time::Duration::from_millis(millis));
        }
        let snapshot = stats.snapshot();
        // Bounds: 0.5 ms, 1, 2.5, 5, 10, 50, 100, 500, 1000, +Inf.
        assert_eq!(snapshot.wait_cumulative, vec![1, 2, 2, 2, 3, 3, 3, 3, 3, 4]);
        assert!((snapshot.wait_seconds - 2.008).abs() < 1e-9, "{}", snapshot.wait_seconds);
    }
}
