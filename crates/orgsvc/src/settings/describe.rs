//! The effective settings by the names users set them with, for `orgsvc check-config`.

use std::time::Duration;

use domain::CollectionNaming;

use super::{Environment, LogFormat, Settings, Storage};

/// What a secret is shown as.
pub const REDACTED: &str = "[REDACTED]";

fn seconds(d: Duration) -> String {
    d.as_secs().to_string()
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(",")
}

impl Settings {
    /// Every setting's effective value by its variable, in the order of
    /// [`VARIABLES`](super::VARIABLES), each as it could be written back (secrets shown as
    /// [`REDACTED`], signing keys by their ids only).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let (m, h, p) = (&self.mongodb, &self.http, &self.security);
        let redacted = |set: bool| if set { REDACTED.to_owned() } else { String::new() };
        let signing = self.jwt_keys.first();
        let mut values = vec![
            (
                "ORGSVC_ENV",
                match self.environment {
                    Environment::Development => "development",
                    Environment::Production => "production",
                }
                .to_owned(),
            ),
            (
                "ORGSVC_LOG_FORMAT",
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .to_owned(),
            ),
            ("ORGSVC_HTTP_ADDR", self.http_addr.to_string()),
            ("ORGSVC_HTTP_WORKERS", self.http_workers.to_string()),
            ("ORGSVC_HTTP_BODY_TIMEOUT_SECONDS", seconds(h.body_timeout)),
            ("ORGSVC_HTTP_MAX_CONNECTIONS", h.max_connections.to_string()),
            ("ORGSVC_METRICS_ADDR", self.metrics_addr.map(|a| a.to_string()).unwrap_or_default()),
            ("ORGSVC_METRICS_TOKEN", redacted(h.metrics.token.is_some())),
            ("ORGSVC_SHUTDOWN_GRACE_SECONDS", seconds(self.shutdown_grace)),
            (
                "ORGSVC_STORAGE",
                match self.storage {
                    Storage::Memory => "memory",
                    Storage::MongoDb => "mongodb",
                }
                .to_owned(),
            ),
            (
                "ORGSVC_COLLECTION_NAMING",
                match self.collection_naming {
                    CollectionNaming::Key => "key",
                    CollectionNaming::Id => "id",
                }
                .to_owned(),
            ),
            ("ORGSVC_PLACEMENT", self.placement.kind.as_str().to_owned()),
            ("ORGSVC_PLACEMENT_CLUSTER", self.placement.cluster.to_string()),
            ("ORGSVC_TENANT_CREDENTIALS", self.tenant_credentials.to_string()),
            ("ORGSVC_SEALING_KEY", redacted(self.sealing_key.is_some())),
            (
                "ORGSVC_CLUSTERS",
                self.mongodb
                    .clusters
                    .iter()
                    .map(|(name, _)| format!("{name}={REDACTED}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("ORGSVC_JWT_SECRET", redacted(self.jwt_keys.len() == 1)),
            ("ORGSVC_JWT_KID", signing.map(|(kid, _)| kid.clone()).unwrap_or_default()),
            ("ORGSVC_JWT_KEYS", list(self.jwt_keys.iter().map(|(kid, _)| format!("{kid}:{REDACTED}")))),
            ("ORGSVC_JWT_ISSUER", self.jwt_issuer.clone()),
            ("ORGSVC_TOKEN_TTL_SECONDS", self.token_ttl_seconds.to_string()),
            ("ORGSVC_ARGON2_MEMORY_KIB", self.argon2.memory_kib.to_string()),
            ("ORGSVC_ARGON2_ITERATIONS", self.argon2.iterations.to_string()),
            ("ORGSVC_ARGON2_PARALLELISM", self.argon2.parallelism.to_string()),
            ("ORGSVC_HASH_CONCURRENCY", self.hash_concurrency.to_string()),
            ("ORGSVC_HASH_QUEUE", self.hash_queue.to_string()),
            ("ORGSVC_MONGODB_URI", REDACTED.to_owned()),
            ("ORGSVC_MONGODB_DATABASE", m.database.clone()),
            ("ORGSVC_MONGODB_TENANT_DATABASE", m.tenant_database.clone()),
            ("ORGSVC_MONGODB_APP_NAME", m.app_name.clone()),
            ("ORGSVC_MONGODB_MAX_POOL_SIZE", m.max_pool_size.to_string()),
            ("ORGSVC_MONGODB_MIN_POOL_SIZE", m.min_pool_size.to_string()),
            ("ORGSVC_MONGODB_CONNECT_TIMEOUT_MS", millis(m.connect_timeout)),
            ("ORGSVC_MONGODB_SERVER_SELECTION_TIMEOUT_MS", millis(m.server_selection_timeout)),
            ("ORGSVC_MONGODB_COMMAND_TIMEOUT_MS", millis(m.command_timeout)),
            ("ORGSVC_MONGODB_WRITE_CONCERN", if m.write_concern_majority { "majority" } else { "default" }.to_owned()),
            ("ORGSVC_MONGODB_RETRY_WRITES", m.retry_writes.to_string()),
            ("ORGSVC_RECONCILE_LEASE_SECONDS", seconds(m.lease)),
            ("ORGSVC_RECONCILE_INTERVAL_SECONDS", seconds(self.reconcile_interval)),
            ("ORGSVC_ORPHAN_SWEEP_INTERVAL_SECONDS", seconds(self.orphan_sweep_interval)),
            ("ORGSVC_JOBS_INTERVAL_SECONDS", seconds(self.jobs_interval)),
            ("ORGSVC_TIERING_INTERVAL_SECONDS", seconds(self.tiering_interval)),
            ("ORGSVC_TIERING_SHARED_BELOW", self.tiering.shared_below().to_string()),
            ("ORGSVC_TIERING_DATABASE_ABOVE", self.tiering.database_above().to_string()),
            ("ORGSVC_JOB_LEASE_SECONDS", seconds(m.job_lease.length())),
            ("ORGSVC_MOVE_BATCH", m.move_batch.to_string()),
            ("ORGSVC_MOVE_GRACE_SECONDS", seconds(m.move_grace)),
            ("ORGSVC_CACHE", m.cache.enabled.to_string()),
            ("ORGSVC_CACHE_TTL_SECONDS", seconds(m.cache.ttl)),
            ("ORGSVC_CACHE_MAX_ENTRIES", m.cache.max_entries.to_string()),
            ("ORGSVC_CACHE_MAX_MEMORY_MB", (m.cache.max_memory >> 20).to_string()),
            ("ORGSVC_REFRESH_TTL_SECONDS", seconds(p.session_ttl)),
            ("ORGSVC_REFRESH_GRACE_SECONDS", seconds(p.refresh_grace)),
            ("ORGSVC_REVOCATION_BOUND_SECONDS", "read as ORGSVC_CACHE_TTL_SECONDS when that is unset".to_owned()),
            ("ORGSVC_LOCKOUT_THRESHOLD", p.lockout.threshold().to_string()),
            ("ORGSVC_LOCKOUT_BASE_SECONDS", seconds(p.lockout.base())),
            ("ORGSVC_LOCKOUT_MAX_SECONDS", seconds(p.lockout.cap())),
            ("ORGSVC_AUDIT_RETENTION_DAYS", (p.audit_retention.as_secs() / (24 * 3600)).to_string()),
            ("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE", h.rate_limits.login_per_minute.to_string()),
            ("ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE", h.rate_limits.create_per_minute.to_string()),
            ("ORGSVC_RATE_LIMIT_REFRESH_PER_MINUTE", h.rate_limits.refresh_per_minute.to_string()),
            ("ORGSVC_TRUSTED_PROXIES", list(h.trusted_proxies.iter().map(ToString::to_string))),
            ("ORGSVC_CORS_ALLOWED_ORIGINS", h.cors_allowed_origins.join(",")),
            ("ORGSVC_WEBHOOKS_RETRY_BASE_MS", millis(self.webhooks.retry_base)),
            ("ORGSVC_WEBHOOKS_ALLOW_PRIVATE", self.webhooks.allow_private.to_string()),
            ("ORGSVC_WEBHOOKS_WORKERS", self.webhooks.workers.to_string()),
            ("ORGSVC_WEBHOOKS_POLL_MS", millis(self.webhooks.poll)),
            ("ORGSVC_WEBHOOKS_TIMEOUT_SECONDS", seconds(self.webhooks.timeout)),
            ("ORGSVC_OTLP_ENDPOINT", self.tracing.otlp_endpoint.clone().unwrap_or_default()),
            ("ORGSVC_OTLP_SAMPLE_RATIO", self.tracing.sample_ratio.to_string()),
        ];
        // One list of names: the order (and completeness) of VARIABLES wins.
        values.sort_by_key(|(name, _)| super::VARIABLES.iter().position(|v| v == name));
        values
    }
}
