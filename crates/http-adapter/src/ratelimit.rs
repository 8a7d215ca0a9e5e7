//! Per-client-address rate limits on the endpoints that cost a password hash or mint
//! tokens: a token bucket per address and endpoint, refilled continuously, holding at most
//! a minute's allowance. The buckets live in this instance's memory: with N instances
//! behind a balancer a client gets at most N times the limit (per-account lockout, kept in
//! the store, is the global bound on password guessing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The endpoints that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limited {
    /// `POST /admin/login`, and refused API keys
    Login,
    /// `POST /org/create`
    Create,
    /// `POST /admin/refresh`
    Refresh,
}

/// Requests per minute per client address; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Logins.
    pub login_per_minute: u32,
    /// Creates.
    pub create_per_minute: u32,
    /// Refreshes.
    pub refresh_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { login_per_minute: 10, create_per_minute: 5, refresh_per_minute: 30 }
    }
}

impl RateLimits {
    /// No limits, for load tests and test suites.
    pub fn off() -> Self {
        Self { login_per_minute: 0, create_per_minute: 0, refresh_per_minute: 0 }
    }

    fn per_minute(&self, endpoint: Limited) -> u32 {
        match endpoint {
            Limited::Login => self.login_per_minute,
            Limited::Create => self.create_per_minute,
            Limited::Refresh => self.refresh_per_minute,
        }
    }
}

/// Beyond this many tracked buckets, full ones (clients idle for a minute) are forgotten.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of every client address.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Limited, IpAddr), Bucket>>,
}

impl RateLimiter {
    /// A limiter with these limits.
    pub fn new(limits: RateLimits) -> Self {
        Self { limits, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from the client's bucket, or says how long until one is available.
    pub fn check(&self, endpoint: Limited, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let per_minute = self.limits.per_minute(endpoint);
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|(e, _), b| {
                let full = f64::from(self.limits.per_minute(*e));
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * full / 60.0 < full
            });
        }
        let bucket = buckets.entry((endpoint, ip)).or_insert(Bucket { tokens: capacity, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_minute_then_refills() {
        let limiter = RateLimiter::new(RateLimits { login_per_minute: 6, ..RateLimits::off() });
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(limiter.check(Limited::Login, ip, t0), Ok(()));
        }
        let wait = limiter.check(Limited::Login, ip, t0).expect_err("limited");
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10), "{wait:?}");
        // Another address and another endpoint have their own buckets.
        assert_eq!(limiter.check(Limited::Login, "192.0.2.2".parse().expect("ip"), t0), Ok(()));
        assert_eq!(limiter.check(Limited::Create, ip, t0), Ok(()), "limit off");
        assert_eq!(limiter.check(Limited::Login, ip, t0 + Duration::from_secs(10)), Ok(()));
        assert!(limiter.check(Limited::Login, ip, t0 + Duration::from_secs(10)).is_err());
    }
}
