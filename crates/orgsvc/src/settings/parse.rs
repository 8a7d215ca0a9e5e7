//! Turning the layered text values into typed settings. Each value is parsed where its
//! variable is named, so an error names the variable; none quotes a secret.

use std::time::Duration;

use anyhow::{Context, bail};
use domain::{ClusterName, CollectionNaming, LockoutPolicy, LockoutPolicyError};
use http_adapter::TrustedNetwork;
use secrecy::SecretString;

use super::sources::Raw;
use super::{Environment, LogFormat, Settings, Storage};

/// A value that was set to something other than blanks.
fn get(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// The defaults overridden by the layered values; every error names its variable, and
    /// none quotes a secret.
    pub(super) fn from_raw(raw: &Raw) -> anyhow::Result<Self> {
        let mut s = Self::default();
        if let Some(v) = get(&raw.http_addr) {
            s.http_addr = v
                .trim()
                .parse()
                .with_context(|| format!("ORGSVC_HTTP_ADDR: {v:?} is not an address like 127.0.0.1:8080"))?;
        }
        if let Some(v) = get(&raw.http_workers) {
            s.http_workers = number("ORGSVC_HTTP_WORKERS", &v)?;
        }
        if let Some(v) = get(&raw.http_body_timeout_seconds) {
            s.http.body_timeout = Duration::from_secs(number("ORGSVC_HTTP_BODY_TIMEOUT_SECONDS", &v)?);
            if s.http.body_timeout.is_zero() {
                bail!("ORGSVC_HTTP_BODY_TIMEOUT_SECONDS: must be positive");
            }
        }
        if let Some(v) = get(&raw.http_max_connections) {
            s.http.max_connections = number("ORGSVC_HTTP_MAX_CONNECTIONS", &v)?;
            if s.http.max_connections == 0 {
                bail!("ORGSVC_HTTP_MAX_CONNECTIONS: must be positive");
            }
        }
        if let Some(v) = get(&raw.metrics_addr) {
            s.metrics_addr = Some(
                v.trim()
                    .parse()
                    .with_context(|| format!("ORGSVC_METRICS_ADDR: {v:?} is not an address like 10.0.0.5:9090"))?,
            );
        }
        if let Some(v) = get(&raw.metrics_token) {
            s.http.metrics.token = Some(SecretString::from(v.trim().to_owned()));
        }
        if let Some(v) = get(&raw.storage) {
            s.storage = match v.trim().to_ascii_lowercase().as_str() {
                "memory" => Storage::Memory,
                "mongodb" => Storage::MongoDb,
                _ => bail!("ORGSVC_STORAGE: {v:?} is not one of memory, mongodb"),
            };
        }
        if let Some(v) = get(&raw.collection_naming) {
            s.collection_naming = match v.trim().to_ascii_lowercase().as_str() {
                "key" => CollectionNaming::Key,
                "id" => CollectionNaming::Id,
                _ => bail!("ORGSVC_COLLECTION_NAMING: {v:?} is not one of key, id"),
            };
        }
        s.read_placement(raw)?;
        if let Some(v) = get(&raw.env) {
            s.environment = match v.trim().to_ascii_lowercase().as_str() {
                "development" | "dev" => Environment::Development,
                "production" | "prod" => Environment::Production,
                _ => bail!("ORGSVC_ENV: {v:?} is not one of development, production"),
            };
        }
        s.log_format = match get(&raw.log_format).map(|v| v.trim().to_ascii_lowercase()) {
            None if s.environment == Environment::Production => LogFormat::Json,
            None => LogFormat::Text,
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "text" => LogFormat::Text,
            Some(v) => bail!("ORGSVC_LOG_FORMAT: {v:?} is not one of text, json"),
        };
        if let Some(v) = get(&raw.shutdown_grace_seconds) {
            s.shutdown_grace = Duration::from_secs(number("ORGSVC_SHUTDOWN_GRACE_SECONDS", &v)?);
        }
        s.read_keys(raw)?;
        if let Some(v) = get(&raw.jwt_issuer) {
            s.jwt_issuer = v.trim().to_owned();
        }
        if let Some(v) = get(&raw.token_ttl_seconds) {
            s.token_ttl_seconds = number("ORGSVC_TOKEN_TTL_SECONDS", &v)?;
            if s.token_ttl_seconds == 0 {
                bail!("ORGSVC_TOKEN_TTL_SECONDS: must be positive");
            }
        }
        if let Some(v) = get(&raw.argon2_memory_kib) {
            s.argon2.memory_kib = number("ORGSVC_ARGON2_MEMORY_KIB", &v)?;
        }
        if let Some(v) = get(&raw.argon2_iterations) {
            s.argon2.iterations = number("ORGSVC_ARGON2_ITERATIONS", &v)?;
        }
        if let Some(v) = get(&raw.argon2_parallelism) {
            s.argon2.parallelism = number("ORGSVC_ARGON2_PARALLELISM", &v)?;
        }
        s.argon2_params().context("ORGSVC_ARGON2_*: invalid argon2 parameters")?;
        if let Some(v) = get(&raw.hash_concurrency) {
            s.hash_concurrency = number("ORGSVC_HASH_CONCURRENCY", &v)?;
        }
        if let Some(v) = get(&raw.hash_queue) {
            s.hash_queue = number("ORGSVC_HASH_QUEUE", &v)?;
        }
        s.read_mongodb(raw)?;
        if let Some(v) = get(&raw.reconcile_interval_seconds) {
            s.reconcile_interval = Duration::from_secs(number("ORGSVC_RECONCILE_INTERVAL_SECONDS", &v)?);
        }
        if let Some(v) = get(&raw.orphan_sweep_interval_seconds) {
            s.orphan_sweep_interval = Duration::from_secs(number("ORGSVC_ORPHAN_SWEEP_INTERVAL_SECONDS", &v)?);
        }
        if let Some(v) = get(&raw.jobs_interval_seconds) {
            s.jobs_interval = Duration::from_secs(number("ORGSVC_JOBS_INTERVAL_SECONDS", &v)?);
        }
        if let Some(v) = get(&raw.tiering_interval_seconds) {
            s.tiering_interval = Duration::from_secs(number("ORGSVC_TIERING_INTERVAL_SECONDS", &v)?);
        }
        let shared_below = match get(&raw.tiering_shared_below) {
            Some(v) => number("ORGSVC_TIERING_SHARED_BELOW", &v)?,
            None => s.tiering.shared_below(),
        };
        let database_above = match get(&raw.tiering_database_above) {
            Some(v) => number("ORGSVC_TIERING_DATABASE_ABOVE", &v)?,
            None => s.tiering.database_above(),
        };
        s.tiering = domain::TieringPolicy::new(shared_below, database_above)
            .map_err(|e| anyhow::anyhow!("ORGSVC_TIERING_SHARED_BELOW: {e}"))?;
        s.read_security(raw)?;
        s.read_webhooks(raw)?;
        s.read_tracing(raw)?;
        s.validate()?;
        Ok(s)
    }

    /// The other clusters and where new organizations go.
    fn read_placement(&mut self, raw: &Raw) -> anyhow::Result<()> {
        if let Some(v) = get(&raw.clusters) {
            // Connection strings hold commas (several hosts), never unescaped whitespace.
            for entry in v.split_whitespace() {
                let Some((name, uri)) = entry.split_once('=') else {
                    bail!("ORGSVC_CLUSTERS: each entry must be name=mongodb://... (entries separated by spaces)");
                };
                let name = ClusterName::parse(name).map_err(|e| anyhow::anyhow!("ORGSVC_CLUSTERS: {name:?} {e}"))?;
                if name.is_main() || self.mongodb.clusters.iter().any(|(n, _)| *n == name) {
                    bail!("ORGSVC_CLUSTERS: {name} is named twice (`main` is ORGSVC_MONGODB_URI)");
                }
                if !uri.starts_with("mongodb://") && !uri.starts_with("mongodb+srv://") {
                    bail!(
                        "ORGSVC_CLUSTERS: the connection string of {name} must start with mongodb:// or mongodb+srv://"
                    );
                }
                self.mongodb.clusters.push((name, SecretString::from(uri.to_owned())));
            }
        }
        if let Some(v) = get(&raw.placement) {
            self.placement.kind = v.parse().map_err(|e| anyhow::anyhow!("ORGSVC_PLACEMENT: {v:?} {e}"))?;
        }
        if let Some(v) = get(&raw.placement_cluster) {
            let name = ClusterName::parse(v.trim()).map_err(|e| anyhow::anyhow!("ORGSVC_PLACEMENT_CLUSTER: {e}"))?;
            if !name.is_main() && !self.mongodb.clusters.iter().any(|(n, _)| *n == name) {
                bail!("ORGSVC_PLACEMENT_CLUSTER: {name} is not main nor a cluster of ORGSVC_CLUSTERS");
            }
            self.placement.cluster = name;
        }
        if let Some(v) = get(&raw.sealing_key) {
            // Refused here, by the vault's own rule, so that a bad key stops the service before
            // anything starts; the value itself is never quoted.
            crypto_adapter::AeadVault::new(v.trim().as_bytes())
                .map_err(|e| anyhow::anyhow!("ORGSVC_SEALING_KEY: {e}: generate one with `openssl rand -base64 48`"))?;
            self.sealing_key = Some(SecretString::from(v.trim().to_owned()));
        }
        if let Some(v) = get(&raw.tenant_credentials) {
            self.tenant_credentials = boolean("ORGSVC_TENANT_CREDENTIALS", &v)?;
        }
        Ok(())
    }

    fn read_webhooks(&mut self, raw: &Raw) -> anyhow::Result<()> {
        let w = &mut self.webhooks;
        if let Some(v) = get(&raw.webhooks_retry_base_ms) {
            w.retry_base = Duration::from_millis(number("ORGSVC_WEBHOOKS_RETRY_BASE_MS", &v)?);
            if w.retry_base.is_zero() {
                bail!("ORGSVC_WEBHOOKS_RETRY_BASE_MS: must be positive");
            }
        }
        if let Some(v) = get(&raw.webhooks_allow_private) {
            w.allow_private = boolean("ORGSVC_WEBHOOKS_ALLOW_PRIVATE", &v)?;
        }
        if let Some(v) = get(&raw.webhooks_workers) {
            w.workers = number("ORGSVC_WEBHOOKS_WORKERS", &v)?;
        }
        if let Some(v) = get(&raw.webhooks_poll_ms) {
            w.poll = Duration::from_millis(number("ORGSVC_WEBHOOKS_POLL_MS", &v)?);
            if w.poll.is_zero() {
                bail!("ORGSVC_WEBHOOKS_POLL_MS: must be positive");
            }
        }
        if let Some(v) = get(&raw.webhooks_timeout_seconds) {
            w.timeout = Duration::from_secs(number("ORGSVC_WEBHOOKS_TIMEOUT_SECONDS", &v)?);
            if w.timeout.is_zero() {
                bail!("ORGSVC_WEBHOOKS_TIMEOUT_SECONDS: must be positive");
            }
        }
        Ok(())
    }

    fn read_tracing(&mut self, raw: &Raw) -> anyhow::Result<()> {
        if let Some(v) = get(&raw.otlp_endpoint) {
            self.tracing.otlp_endpoint = Some(otlp_traces_url(v.trim())?);
        }
        if let Some(v) = get(&raw.otlp_sample_ratio) {
            let ratio: f64 = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("ORGSVC_OTLP_SAMPLE_RATIO: {v:?} is not a number from 0 to 1"))?;
            if !(0.0..=1.0).contains(&ratio) {
                bail!("ORGSVC_OTLP_SAMPLE_RATIO: {v:?} is not a number from 0 to 1");
            }
            self.tracing.sample_ratio = ratio;
        }
        Ok(())
    }

    fn read_keys(&mut self, raw: &Raw) -> anyhow::Result<()> {
        // Values are never echoed back in errors, only key ids and lengths.
        let check = |name: &str, kid: &str, secret: &str| -> anyhow::Result<()> {
            if secret.len() < crypto_adapter::MIN_KEY_BYTES {
                bail!(
                    "{name}: key {kid:?} must be at least {} bytes (got {})",
                    crypto_adapter::MIN_KEY_BYTES,
                    secret.len()
                );
            }
            Ok(())
        };
        if let Some(list) = get(&raw.jwt_keys) {
            for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let Some((kid, secret)) = entry.split_once(':') else {
                    bail!("ORGSVC_JWT_KEYS: each entry must be kid:secret");
                };
                let kid = kid.trim();
                if kid.is_empty() || self.jwt_keys.iter().any(|(k, _)| k == kid) {
                    bail!("ORGSVC_JWT_KEYS: key ids must be present and distinct (got {kid:?})");
                }
                check("ORGSVC_JWT_KEYS", kid, secret)?;
                self.jwt_keys.push((kid.to_owned(), SecretString::from(secret.to_owned())));
            }
        } else if let Some(secret) = raw.jwt_secret.clone().filter(|v| !v.is_empty()) {
            let kid = raw.jwt_kid.as_ref().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
            let kid = kid.unwrap_or_else(|| "k1".to_owned());
            check("ORGSVC_JWT_SECRET", &kid, &secret)?;
            self.jwt_keys.push((kid, SecretString::from(secret)));
        } else if get(&raw.jwt_kid).is_some() {
            // A key id names a key; without one the operator's intent cannot be met.
            bail!("ORGSVC_JWT_KID: names the key of ORGSVC_JWT_SECRET, which is not set");
        }
        Ok(())
    }

    fn read_security(&mut self, raw: &Raw) -> anyhow::Result<()> {
        let p = &mut self.security;
        let seconds = |name: &str, v: &str| number::<u64>(name, v).map(Duration::from_secs);
        if let Some(v) = get(&raw.refresh_ttl_seconds) {
            p.session_ttl = seconds("ORGSVC_REFRESH_TTL_SECONDS", &v)?;
            if p.session_ttl.is_zero() {
                bail!("ORGSVC_REFRESH_TTL_SECONDS: must be positive");
            }
        }
        if let Some(v) = get(&raw.refresh_grace_seconds) {
            p.refresh_grace = seconds("ORGSVC_REFRESH_GRACE_SECONDS", &v)?;
            if p.refresh_grace > Duration::from_secs(300) {
                bail!("ORGSVC_REFRESH_GRACE_SECONDS: at most 300 (a long grace weakens reuse detection)");
            }
        }
        let mut threshold = p.lockout.threshold();
        if let Some(v) = get(&raw.lockout_threshold) {
            threshold = number("ORGSVC_LOCKOUT_THRESHOLD", &v)?;
        }
        let mut base = p.lockout.base();
        if let Some(v) = get(&raw.lockout_base_seconds) {
            base = seconds("ORGSVC_LOCKOUT_BASE_SECONDS", &v)?;
        }
        let mut cap = p.lockout.cap();
        if let Some(v) = get(&raw.lockout_max_seconds) {
            cap = seconds("ORGSVC_LOCKOUT_MAX_SECONDS", &v)?;
        }
        p.lockout = LockoutPolicy::new(threshold, base, cap).map_err(|e| match e {
            LockoutPolicyError::ZeroThreshold => anyhow::anyhow!("ORGSVC_LOCKOUT_THRESHOLD: must be at least 1"),
            LockoutPolicyError::CapBelowBase => {
                anyhow::anyhow!("ORGSVC_LOCKOUT_MAX_SECONDS: must not be below ORGSVC_LOCKOUT_BASE_SECONDS")
            }
        })?;
        if let Some(v) = get(&raw.audit_retention_days) {
            p.audit_retention = Duration::from_secs(number::<u64>("ORGSVC_AUDIT_RETENTION_DAYS", &v)? * 24 * 3600);
        }
        let h = &mut self.http;
        if let Some(v) = get(&raw.rate_limit_login_per_minute) {
            h.rate_limits.login_per_minute = number("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE", &v)?;
        }
        if let Some(v) = get(&raw.rate_limit_create_per_minute) {
            h.rate_limits.create_per_minute = number("ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE", &v)?;
        }
        if let Some(v) = get(&raw.rate_limit_refresh_per_minute) {
            h.rate_limits.refresh_per_minute = number("ORGSVC_RATE_LIMIT_REFRESH_PER_MINUTE", &v)?;
        }
        if let Some(v) = get(&raw.trusted_proxies) {
            h.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| e.parse::<TrustedNetwork>().map_err(|e| anyhow::anyhow!("ORGSVC_TRUSTED_PROXIES: {e}")))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(v) = get(&raw.cors_allowed_origins) {
            h.cors_allowed_origins = v.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect();
            if let Some(bad) = h.cors_allowed_origins.iter().find(|o| {
                !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/') || o.contains('*')
            }) {
                bail!("ORGSVC_CORS_ALLOWED_ORIGINS: {bad:?} is not an origin like https://app.example.com");
            }
        }
        Ok(())
    }

    fn read_mongodb(&mut self, raw: &Raw) -> anyhow::Result<()> {
        let m = &mut self.mongodb;
        if let Some(v) = get(&raw.mongodb_uri) {
            m.uri = SecretString::from(v);
        } else if self.storage == Storage::MongoDb {
            bail!("ORGSVC_MONGODB_URI: required when ORGSVC_STORAGE=mongodb");
        }
        if let Some(v) = get(&raw.mongodb_database) {
            m.tenant_database = format!("{}_tenants", v.trim());
            m.database = v.trim().to_owned();
        }
        if let Some(v) = get(&raw.mongodb_tenant_database) {
            m.tenant_database = v.trim().to_owned();
        }
        if let Some(v) = get(&raw.mongodb_app_name) {
            m.app_name = v.trim().to_owned();
        }
        if let Some(v) = get(&raw.mongodb_max_pool_size) {
            m.max_pool_size = number("ORGSVC_MONGODB_MAX_POOL_SIZE", &v)?;
        }
        if let Some(v) = get(&raw.mongodb_min_pool_size) {
            m.min_pool_size = number("ORGSVC_MONGODB_MIN_POOL_SIZE", &v)?;
        }
        if let Some(v) = get(&raw.mongodb_connect_timeout_ms) {
            m.connect_timeout = Duration::from_millis(number("ORGSVC_MONGODB_CONNECT_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get(&raw.mongodb_server_selection_timeout_ms) {
            m.server_selection_timeout =
                Duration::from_millis(number("ORGSVC_MONGODB_SERVER_SELECTION_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get(&raw.mongodb_command_timeout_ms) {
            m.command_timeout = Duration::from_millis(number("ORGSVC_MONGODB_COMMAND_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get(&raw.mongodb_write_concern) {
            m.write_concern_majority = match v.trim().to_ascii_lowercase().as_str() {
                "majority" => true,
                "default" => false,
                _ => bail!("ORGSVC_MONGODB_WRITE_CONCERN: {v:?} is not one of majority, default"),
            };
        }
        if let Some(v) = get(&raw.mongodb_retry_writes) {
            m.retry_writes = boolean("ORGSVC_MONGODB_RETRY_WRITES", &v)?;
        }
        if let Some(v) = get(&raw.reconcile_lease_seconds) {
            m.lease = Duration::from_secs(number("ORGSVC_RECONCILE_LEASE_SECONDS", &v)?);
        }
        if let Some(v) = get(&raw.job_lease_seconds) {
            let lease = Duration::from_secs(number("ORGSVC_JOB_LEASE_SECONDS", &v)?);
            if lease < domain::JobLease::MIN {
                bail!("ORGSVC_JOB_LEASE_SECONDS: must be at least {} seconds", domain::JobLease::MIN.as_secs());
            }
            m.job_lease = domain::JobLease::new(lease);
        }
        // A step of a job is at most a few commands between two renewals.
        if m.job_lease.length() <= m.command_timeout * 2 {
            bail!(
                "ORGSVC_JOB_LEASE_SECONDS: the job lease must be longer than twice ORGSVC_MONGODB_COMMAND_TIMEOUT_MS"
            );
        }
        if let Some(v) = get(&raw.move_batch) {
            m.move_batch = number("ORGSVC_MOVE_BATCH", &v)?;
            if !(1..=100_000).contains(&m.move_batch) {
                bail!("ORGSVC_MOVE_BATCH: must be between 1 and 100000 documents");
            }
        }
        if let Some(v) = get(&raw.move_grace_seconds) {
            m.move_grace = Duration::from_secs(number("ORGSVC_MOVE_GRACE_SECONDS", &v)?);
        }
        if m.lease <= m.command_timeout {
            bail!("ORGSVC_RECONCILE_LEASE_SECONDS: the lease must be longer than ORGSVC_MONGODB_COMMAND_TIMEOUT_MS");
        }
        self.read_cache(raw)?;
        Ok(())
    }
}

impl Settings {
    /// The organization cache. `ORGSVC_REVOCATION_BOUND_SECONDS`, the bound on how late
    /// another instance's logout was seen before the cache existed, is still read as the
    /// TTL when `ORGSVC_CACHE_TTL_SECONDS` is not set, so that configurations that relied
    /// on it keep their guarantee.
    fn read_cache(&mut self, raw: &Raw) -> anyhow::Result<()> {
        let c = &mut self.mongodb.cache;
        if let Some(v) = get(&raw.cache) {
            c.enabled = boolean("ORGSVC_CACHE", &v)?;
        }
        if let Some(v) = get(&raw.cache_ttl_seconds) {
            c.ttl = Duration::from_secs(number("ORGSVC_CACHE_TTL_SECONDS", &v)?);
        } else if let Some(v) = get(&raw.revocation_bound_seconds) {
            c.ttl = Duration::from_secs(number("ORGSVC_REVOCATION_BOUND_SECONDS", &v)?);
        }
        if let Some(v) = get(&raw.cache_max_entries) {
            c.max_entries = number("ORGSVC_CACHE_MAX_ENTRIES", &v)?;
            if c.max_entries == 0 {
                bail!("ORGSVC_CACHE_MAX_ENTRIES: must be positive (ORGSVC_CACHE=false turns the cache off)");
            }
        }
        if let Some(v) = get(&raw.cache_max_memory_mb) {
            let megabytes: u64 = number("ORGSVC_CACHE_MAX_MEMORY_MB", &v)?;
            if !(1..=1 << 20).contains(&megabytes) {
                bail!("ORGSVC_CACHE_MAX_MEMORY_MB: must be between 1 and 1048576");
            }
            c.max_memory = megabytes << 20;
        }
        Ok(())
    }
}

/// The traces address of an OTLP/HTTP collector given by its base address (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is) or by its traces address. Credentials in it are refused:
/// the address is shown by `check-config` and in errors, so they belong in
/// `OTEL_EXPORTER_OTLP_HEADERS`.
fn otlp_traces_url(value: &str) -> anyhow::Result<String> {
    const NAME: &str = "ORGSVC_OTLP_ENDPOINT";
    let url =
        url::Url::parse(value).map_err(|e| anyhow::anyhow!("{NAME}: not a URL like http://collector:4318 ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("{NAME}: the scheme must be http or https (OTLP over HTTP), not {:?}", url.scheme());
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("{NAME}: must not hold credentials; give them as headers in OTEL_EXPORTER_OTLP_HEADERS");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("{NAME}: must not have a query or a fragment");
    }
    let base = url.as_str().trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") })
}

fn boolean(name: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("{name}: {value:?} is not true or false"),
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<T> {
    value.trim().parse().map_err(|_| anyhow::anyhow!("{name}: {value:?} is not a non-negative integer"))
}
