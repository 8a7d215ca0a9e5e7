//! A closed-loop load driver: a fixed number of connections, each sending its next request
//! when the previous one is answered, for a duration or a number of requests.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Latencies and errors of a run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Latency of every successful request, microseconds.
    pub latencies_us: Vec<u64>,
    /// Failed requests.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Stats {
    /// Records one request.
    pub fn record(&mut self, latency: Duration, ok: bool) {
        if ok {
            self.latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        } else {
            self.errors += 1;
        }
    }

    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`th percentile latency in milliseconds (nearest rank).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        // The small epsilon keeps binary rounding (99.9 / 100 * 1000 = 999.0000000000001)
        // from moving the rank up by one.
        let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
    }

    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this long.
    Deadline(Duration),
    /// After this many requests in all.
    Count(usize),
}

/// Runs `request(n)` (n counts requests from 0) over `concurrency` connections.
pub async fn run<F, Fut>(concurrency: usize, until: Until, request: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let issued = AtomicUsize::new(0);
    let workers = (0..concurrency.max(1)).map(|_| async {
        let mut stats = Stats::default();
        loop {
            let n = issued.fetch_add(1, Ordering::SeqCst);
            let more = match until {
                Until::Deadline(d) => started.elapsed() < d,
                Until::Count(total) => n < total,
            };
            if !more {
                break;
            }
            let sent = Instant::now();
            let ok = request(n).await;
            stats.record(sent.elapsed(), ok);
        }
        stats
    });
    let mut total = Stats::default();
    for stats in futures::future::join_all(workers).await {
        total.merge(stats);
    }
    total.elapsed = started.elapsed();
    total
}

/// Runs for a duration.
pub async fn run_load<F, Fut>(concurrency: usize, duration: Duration, request: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool>,
{
    run(concurrency, Until::Deadline(duration), request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let stats =
            Stats { latencies_us: (1..=1000).map(|i| i * 1000).collect(), errors: 0, elapsed: Duration::from_secs(2) };
        assert_eq!(stats.percentile_ms(50.0), 500.0);
        assert_eq!(stats.percentile_ms(99.0), 990.0);
        assert_eq!(stats.percentile_ms(99.9), 999.0);
        assert_eq!(stats.rps(), 500.0);
        assert!(Stats::default().percentile_ms(50.0).is_nan());
    }

    #[tokio::test]
    async fn a_counted_run_sends_exactly_that_many_requests() {
        let sent = AtomicUsize::new(0);
        let stats = run(4, Until::Count(10), |n| {
            sent.fetch_add(1, Ordering::SeqCst);
            async move { n % 5 != 0 }
        })
        .await;
        assert_eq!(sent.load(Ordering::SeqCst), 10);
        assert_eq!(stats.errors, 2);
        assert_eq!(stats.latencies_us.len(), 8);
    }
}
