//! The service's settings: defaults, then an optional TOML file, then `ORGSVC_*`
//! environment variables, then command-line flags, each layer overriding the one before.
//! Every setting has one name, its variable (`ORGSVC_HTTP_ADDR`); in the file it is the
//! rest of that name in lowercase, flat (`http_addr = ...`) or split into tables
//! (`[http] addr = ...`). Secrets are wrapped so that printing the settings cannot reveal
//! them.

mod describe;
mod parse;
mod sources;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use domain::CollectionNaming;
use http_adapter::HttpPolicy;
use mongo_adapter::MongoSettings;
use ports::SecurityPolicy;
use secrecy::{ExposeSecret, SecretString};

pub use describe::REDACTED;
use sources::Layered;
pub use sources::{Layers, Source, VARIABLES, parse_config, read_config_file, variable_for};

/// Where organizations are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In process memory: nothing to set up, nothing survives a restart.
    Memory,
    /// MongoDB: a master database and one collection per organization.
    MongoDb,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

/// How strict the service is about its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Conveniences allowed: a random signing key, the memory store.
    Development,
    /// Refuses to start without an explicit signing key and a durable store.
    Production,
}

/// How webhook deliveries are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The first retry's delay, doubled for each later one (`ORGSVC_WEBHOOKS_RETRY_BASE_MS`).
    pub retry_base: Duration,
    /// Whether endpoints may be on loopback, link-local and private addresses
    /// (`ORGSVC_WEBHOOKS_ALLOW_PRIVATE`; off: server-side request forgery).
    pub allow_private: bool,
    /// Deliveries this instance makes at once (`ORGSVC_WEBHOOKS_WORKERS`; 0: none, another
    /// instance delivers).
    pub workers: usize,
    /// How often an idle worker looks for due deliveries (`ORGSVC_WEBHOOKS_POLL_MS`).
    pub poll: Duration,
    /// How long a delivery may take before it counts as failed
    /// (`ORGSVC_WEBHOOKS_TIMEOUT_SECONDS`); a worker that dies mid-delivery holds its
    /// endpoint for three times this, then another takes over.
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            retry_base: domain::RetryPolicy::default().base,
            allow_private: false,
            workers: 4,
            poll: Duration::from_secs(1),
            timeout: http_adapter::DELIVERY_TIMEOUT,
        }
    }
}

impl Settings {
    /// Where webhook endpoints may be: https only in production, internal addresses only
    /// where allowed.
    pub fn endpoint_policy(&self) -> domain::EndpointPolicy {
        domain::EndpointPolicy {
            require_https: self.environment == Environment::Production,
            allow_private: self.webhooks.allow_private,
        }
    }
}

/// Where and how much of the service's traces go (OpenTelemetry over OTLP/HTTP).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The collector's OTLP/HTTP base address, like `http://otel-collector:4318`; traces are
    /// posted to its `/v1/traces` (`ORGSVC_OTLP_ENDPOINT`; unset, the default: no tracing).
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, from 0 to 1 (`ORGSVC_OTLP_SAMPLE_RATIO`; 1 by
    /// default). A request that arrives with a `traceparent` follows its caller's decision.
    pub sample_ratio: f64,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self { otlp_endpoint: None, sample_ratio: 1.0 }
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    /// The OWASP recommendation: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

/// Every setting of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (`ORGSVC_HTTP_ADDR`); port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// HTTP worker threads (`ORGSVC_HTTP_WORKERS`); 0 means one per core.
    pub http_workers: usize,
    /// A listener of its own for `GET /metrics` (`ORGSVC_METRICS_ADDR`); when set, the API's
    /// listener no longer serves it.
    pub metrics_addr: Option<SocketAddr>,
    /// The store (`ORGSVC_STORAGE`).
    pub storage: Storage,
    /// How tenant collections are named (`ORGSVC_COLLECTION_NAMING`: `key` or `id`).
    pub collection_naming: CollectionNaming,
    /// Where new organizations go (`ORGSVC_PLACEMENT`, `ORGSVC_PLACEMENT_CLUSTER`).
    pub placement: domain::Placement,
    /// Whether organizations placed in a database of their own may get database users of
    /// their own (`ORGSVC_TENANT_CREDENTIALS`); the service's MongoDB user then needs user
    /// administration rights.
    pub tenant_credentials: bool,
    /// The key that seals the secrets the service must read back itself
    /// (`ORGSVC_SEALING_KEY`, at least 32 bytes, the same on every instance): tenant users'
    /// passwords, so that a move to another cluster recreates the user there with the same
    /// password, and webhook signing secrets, so that they are not kept in clear. Unset: no
    /// password is kept (the user stays behind on such a move) and signing secrets are kept
    /// in clear.
    pub sealing_key: Option<SecretString>,
    /// Development or production (`ORGSVC_ENV`).
    pub environment: Environment,
    /// Log format (`ORGSVC_LOG_FORMAT`: `text` or `json`; JSON by default in production).
    pub log_format: LogFormat,
    /// How long in-flight requests may take to finish after SIGTERM or Ctrl-C
    /// (`ORGSVC_SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: Duration,
    /// HMAC keys for access tokens, as `(kid, secret)`, each at least 32 bytes: the first
    /// signs, all verify. From `ORGSVC_JWT_KEYS` (`kid:secret,kid:secret`), or else
    /// `ORGSVC_JWT_SECRET` with `ORGSVC_JWT_KID`. Empty: a random key per process.
    pub jwt_keys: Vec<(String, SecretString)>,
    /// Token issuer, `iss` (`ORGSVC_JWT_ISSUER`).
    pub jwt_issuer: String,
    /// Access token lifetime in seconds (`ORGSVC_TOKEN_TTL_SECONDS`).
    pub token_ttl_seconds: u64,
    /// Argon2id parameters (`ORGSVC_ARGON2_MEMORY_KIB`, `_ITERATIONS`, `_PARALLELISM`).
    pub argon2: Argon2Settings,
    /// Hashes computed at once (`ORGSVC_HASH_CONCURRENCY`); 0 means one per core.
    pub hash_concurrency: usize,
    /// Hashes waiting beyond those (`ORGSVC_HASH_QUEUE`); more get 503.
    pub hash_queue: usize,
    /// MongoDB connection and safety settings (`ORGSVC_MONGODB_*`).
    pub mongodb: MongoSettings,
    /// How often a serving instance reconciles interrupted operations
    /// (`ORGSVC_RECONCILE_INTERVAL_SECONDS`; 0 turns the periodic pass off).
    pub reconcile_interval: Duration,
    /// How often the full orphan sweep runs in the background
    /// (`ORGSVC_ORPHAN_SWEEP_INTERVAL_SECONDS`; 0: only by `orgsvc reconcile`).
    pub orphan_sweep_interval: Duration,
    /// How often an instance looks for background jobs (moves) to run or resume
    /// (`ORGSVC_JOBS_INTERVAL_SECONDS`; 0: this instance runs none, `orgsvc jobs run` does).
    pub jobs_interval: Duration,
    /// How often an instance runs the automatic tiering pass, if no other instance is
    /// (`ORGSVC_TIERING_INTERVAL_SECONDS`; 0, the default: never).
    pub tiering_interval: Duration,
    /// The document counts that decide an organization's placement kind in that pass
    /// (`ORGSVC_TIERING_SHARED_BELOW`, `ORGSVC_TIERING_DATABASE_ABOVE`).
    pub tiering: domain::TieringPolicy,
    /// Sessions, lockout and audit retention (`ORGSVC_REFRESH_TTL_SECONDS`,
    /// `ORGSVC_REFRESH_GRACE_SECONDS`,
    /// `ORGSVC_LOCKOUT_THRESHOLD`, `ORGSVC_LOCKOUT_BASE_SECONDS`, `ORGSVC_LOCKOUT_MAX_SECONDS`,
    /// `ORGSVC_AUDIT_RETENTION_DAYS`).
    pub security: SecurityPolicy,
    /// Webhook deliveries (`ORGSVC_WEBHOOKS_*`).
    pub webhooks: WebhookSettings,
    /// Distributed tracing (`ORGSVC_OTLP_*`).
    pub tracing: TracingSettings,
    /// Rate limits, trusted proxies and CORS (`ORGSVC_RATE_LIMIT_*_PER_MINUTE`,
    /// `ORGSVC_TRUSTED_PROXIES`, `ORGSVC_CORS_ALLOWED_ORIGINS`).
    pub http: HttpPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_workers: 0,
            metrics_addr: None,
            storage: Storage::Memory,
            collection_naming: CollectionNaming::Key,
            placement: domain::Placement::default(),
            tenant_credentials: false,
            sealing_key: None,
            environment: Environment::Development,
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_secs(30),
            jwt_keys: Vec::new(),
            jwt_issuer: "orgsvc".to_owned(),
            token_ttl_seconds: 900,
            argon2: Argon2Settings::default(),
            hash_concurrency: 0,
            hash_queue: 256,
            mongodb: MongoSettings::new("mongodb://127.0.0.1:27017", "orgsvc_master"),
            reconcile_interval: Duration::from_secs(30),
            orphan_sweep_interval: Duration::from_secs(3600),
            webhooks: WebhookSettings::default(),
            tracing: TracingSettings::default(),
            jobs_interval: Duration::from_secs(5),
            tiering_interval: Duration::ZERO,
            tiering: domain::TieringPolicy::default(),
            security: SecurityPolicy::default(),
            http: HttpPolicy::default(),
        }
    }
}

impl Settings {
    /// The defaults overridden by the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The defaults overridden by a file's values, the process environment and flags.
    pub fn from_layers(layers: &Layers) -> anyhow::Result<Self> {
        Self::load(layers, |name| std::env::var(name).ok()).map(|(settings, _)| settings)
    }

    /// The defaults overridden by whatever `lookup` finds (as if it were the environment);
    /// every error names its variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Self::load(&Layers::default(), lookup).map(|(settings, _)| settings)
    }

    /// The settings from a file's values, an environment and flags, with where each
    /// variable's value came from: what `orgsvc check-config` shows.
    pub fn load(
        layers: &Layers,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(Self, Vec<(&'static str, Source)>)> {
        let layered = Layered::new(layers, env)?;
        let settings = Self::from_raw(&layered.raw)?;
        let sources = VARIABLES.iter().map(|v| (*v, layered.source(v))).collect();
        Ok((settings, sources))
    }

    /// Refuses combinations that are unsafe where they are used. Production needs an
    /// explicit signing key (a random one logs everybody out at each restart and differs
    /// between instances) and a durable, shared store.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.environment == Environment::Production {
            if self.jwt_keys.is_empty() {
                bail!(
                    "ORGSVC_ENV=production: set ORGSVC_JWT_SECRET or ORGSVC_JWT_KEYS (keys of at least {} bytes)",
                    crypto_adapter::MIN_KEY_BYTES
                );
            }
            if self.storage == Storage::Memory {
                bail!(
                    "ORGSVC_ENV=production: ORGSVC_STORAGE=memory is refused (nothing would survive a restart); use mongodb"
                );
            }
            let a = self.argon2;
            if !crypto_adapter::meets_owasp_argon2id_minimum(a.memory_kib, a.iterations) {
                bail!(
                    "ORGSVC_ENV=production: ORGSVC_ARGON2_MEMORY_KIB={} with ORGSVC_ARGON2_ITERATIONS={} is below the OWASP \
                     minimums for argon2id (one of {})",
                    a.memory_kib,
                    a.iterations,
                    crypto_adapter::OWASP_ARGON2ID_MINIMUMS
                        .iter()
                        .map(|(m, t)| format!("{m} KiB with {t} pass(es)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for (kid, secret) in &self.jwt_keys {
                let bits = crypto_adapter::estimated_key_entropy_bits(secret.expose_secret().as_bytes());
                if bits < crypto_adapter::MIN_KEY_ENTROPY_BITS {
                    bail!(
                        "ORGSVC_ENV=production: the signing key {kid:?} of ORGSVC_JWT_SECRET / ORGSVC_JWT_KEYS has too \
                         little entropy (about {bits:.0} bits, at least {} needed): generate one with \
                         `openssl rand -base64 48`",
                        crypto_adapter::MIN_KEY_ENTROPY_BITS
                    );
                }
            }
            match (&self.metrics_addr, &self.http.metrics.token) {
                (None, None) => bail!(
                    "ORGSVC_ENV=production: /metrics shows tenant counts and security events; set ORGSVC_METRICS_ADDR \
                     (a listener only the monitoring network reaches) or ORGSVC_METRICS_TOKEN (a bearer token)"
                ),
                (_, Some(token))
                    if crypto_adapter::estimated_key_entropy_bits(token.expose_secret().as_bytes())
                        < crypto_adapter::MIN_KEY_ENTROPY_BITS =>
                {
                    bail!(
                        "ORGSVC_ENV=production: ORGSVC_METRICS_TOKEN has too little entropy (at least {} bits): \
                         generate one with `openssl rand -base64 48`",
                        crypto_adapter::MIN_KEY_ENTROPY_BITS
                    )
                }
                _ => {}
            }
            if self.http.rate_limits.login_per_minute == 0 {
                bail!(
                    "ORGSVC_ENV=production: ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE=0 switches off the login limit, which \
                     production refuses"
                );
            }
        }
        Ok(())
    }

    /// The vault that seals the secrets the service reads back, when a sealing key is set.
    pub fn vault(&self) -> anyhow::Result<Option<std::sync::Arc<dyn ports::CredentialVault>>> {
        let Some(key) = &self.sealing_key else { return Ok(None) };
        let vault = crypto_adapter::AeadVault::new(key.expose_secret().as_bytes())
            .map_err(|e| anyhow::anyhow!("ORGSVC_SEALING_KEY: {e}"))?;
        Ok(Some(std::sync::Arc::new(vault)))
    }

    /// The argon2 parameters, checked.
    pub fn argon2_params(&self) -> anyhow::Result<argon2::Params> {
        let a = self.argon2;
        argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None).map_err(|e| anyhow::anyhow!("{e}"))
    }
}
