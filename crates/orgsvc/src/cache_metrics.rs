//! The organization cache on `/metrics`: its counters are read from the cache when the
//! registry is scraped, so the request path pays nothing for them.

use std::sync::{Arc, Mutex};

use mongo_adapter::CachedStore;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

/// The cache's metrics, refreshed at each scrape.
pub struct CacheMetrics {
    store: Arc<CachedStore>,
    lookups: IntCounterVec,
    evictions: IntCounterVec,
    reconnects: IntCounter,
    resets: IntCounter,
    entries: IntGauge,
    lag: IntGauge,
    following: IntGauge,
    /// Serialises scrapes, which turn totals into counter increments.
    scraping: Mutex<()>,
}

impl CacheMetrics {
    /// Registers the metrics of `store`'s cache.
    pub fn register(store: Arc<CachedStore>, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let metrics = Self {
            store,
            lookups: IntCounterVec::new(
                Opts::new(
                    "orgsvc_cache_lookups_total",
                    "Organization, admin and session lookups by result (hit or miss).",
                ),
                &["result"],
            )?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "orgsvc_cache_evictions_total",
                    "Cache entries removed, because what they held changed (change) or to stay within the bounds (capacity).",
                ),
                &["cause"],
            )?,
            reconnects: IntCounter::new(
                "orgsvc_cache_stream_reconnects_total",
                "Times the master database's change stream was opened again after an error.",
            )?,
            resets: IntCounter::new(
                "orgsvc_cache_resets_total",
                "Times the whole cache was dropped because its change stream could not resume where it was.",
            )?,
            entries: IntGauge::new("orgsvc_cache_entries", "Entries in the organization cache.")?,
            lag: IntGauge::new(
                "orgsvc_cache_stream_lag_milliseconds",
                "How old the last change was when the change stream delivered it.",
            )?,
            following: IntGauge::new(
                "orgsvc_cache_stream_up",
                "1 while the change stream answers (cached entries are trusted), 0 otherwise or without change streams.",
            )?,
            scraping: Mutex::new(()),
        };
        registry.register(Box::new(metrics))
    }

    fn parts(&self) -> [&dyn Collector; 7] {
        [&self.lookups, &self.evictions, &self.reconnects, &self.resets, &self.entries, &self.lag, &self.following]
    }
}

/// Raises a counter to a total kept elsewhere.
fn catch_up(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for CacheMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(Collector::desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _scraping = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.store.stats();
        catch_up(&self.lookups.with_label_values(&["hit"]), s.hits);
        catch_up(&self.lookups.with_label_values(&["miss"]), s.misses);
        catch_up(&self.evictions.with_label_values(&["change"]), s.evictions);
        catch_up(&self.evictions.with_label_values(&["capacity"]), s.capacity_evictions);
        catch_up(&self.reconnects, s.reconnects);
        catch_up(&self.resets, s.resets);
        self.entries.set(gauge(s.entries));
        self.lag.set(s.lag_ms);
        self.following.set(i64::from(s.following));
        self.parts().into_iter().flat_map(Collector::collect).collect()
    }
}
