//! Each MongoDB cluster's connection pool on `/metrics`: connections open and in use,
//! checkouts and their wait, failed checkouts by reason, pool clears. The driver's events
//! are counted by the adapter (`mongo_adapter::pool`) and read here at scrape time.

use std::collections::HashMap;
use std::sync::Arc;

use mongo_adapter::MongoStore;
use mongo_adapter::pool::{CHECKOUT_WAIT_BUCKETS, CheckoutFailure};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};

/// The pools' metrics, built from the adapter's counters at each scrape.
pub struct PoolMetrics {
    store: Arc<MongoStore>,
    descs: Vec<Desc>,
}

const CONNECTIONS: (&str, &str) =
    ("orgsvc_mongodb_pool_connections", "Connections of each cluster's pool, open and in use (checked out).");
const CHECKOUTS: (&str, &str) =
    ("orgsvc_mongodb_pool_checkouts_total", "Connections checked out of each cluster's pool.");
const FAILURES: (&str, &str) = (
    "orgsvc_mongodb_pool_checkout_failures_total",
    "Checkouts that failed, by reason (timeout, connection_error, other).",
);
const WAIT: (&str, &str) =
    ("orgsvc_mongodb_pool_checkout_wait_seconds", "How long checkouts (successful or not) waited for a connection.");
const CLEARED: (&str, &str) =
    ("orgsvc_mongodb_pool_cleared_total", "Times a pool was cleared (its server marked unknown after an error).");

impl PoolMetrics {
    /// Registers the metrics of `store`'s pools.
    pub fn register(store: Arc<MongoStore>, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
        };
        let descs = vec![
            desc(CONNECTIONS, &["cluster", "state"])?,
            desc(CHECKOUTS, &["cluster"])?,
            desc(FAILURES, &["cluster", "reason"])?,
            desc(WAIT, &["cluster"])?,
            desc(CLEARED, &["cluster"])?,
        ];
        registry.register(Box::new(Self { store, descs }))
    }
}

fn family((name, help): (&str, &str), kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn labelled(labels: &[(&str, &str)]) -> Metric {
    let mut metric = Metric::default();
    metric.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect(),
    );
    metric
}

fn gauge(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut metric = labelled(labels);
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    metric.set_gauge(gauge);
    metric
}

fn counter(labels: &[(&str, &str)], value: u64) -> Metric {
    let mut metric = labelled(labels);
    let mut counter = Counter::default();
    // Counts far below 2^53 are exact as floats.
    counter.set_value(value as f64);
    metric.set_counter(counter);
    metric
}

impl Collector for PoolMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (mut connections, mut checkouts, mut failures, mut waits, mut cleared) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (cluster, pool) in self.store.pool_stats() {
            let cluster = cluster.as_str();
            connections.push(gauge(&[("cluster", cluster), ("state", "open")], pool.open as f64));
            connections.push(gauge(&[("cluster", cluster), ("state", "in_use")], pool.in_use as f64));
            checkouts.push(counter(&[("cluster", cluster)], pool.checkouts));
            for (reason, count) in CheckoutFailure::ALL.into_iter().zip(pool.failures) {
                failures.push(counter(&[("cluster", cluster), ("reason", reason.as_str())], count));
            }
            let mut histogram = Histogram::default();
            let total = pool.wait_cumulative.last().copied().unwrap_or(0);
            histogram.set_sample_count(total);
            histogram.set_sample_sum(pool.wait_seconds);
            histogram.set_bucket(
                CHECKOUT_WAIT_BUCKETS
                    .iter()
                    .zip(&pool.wait_cumulative)
                    .map(|(bound, count)| {
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(*count);
                        bucket
                    })
                    .collect(),
            );
            let mut wait = labelled(&[("cluster", cluster)]);
            wait.set_histogram(histogram);
            waits.push(wait);
            cleared.push(counter(&[("cluster", cluster)], pool.cleared));
        }
        vec![
            family(CONNECTIONS, MetricType::GAUGE, connections),
            family(CHECKOUTS, MetricType::COUNTER, checkouts),
            family(FAILURES, MetricType::COUNTER, failures),
            family(WAIT, MetricType::HISTOGRAM, waits),
            family(CLEARED, MetricType::COUNTER, cleared),
        ]
    }
}
