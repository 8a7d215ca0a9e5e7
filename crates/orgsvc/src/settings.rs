//! The service's settings: defaults, then an optional TOML file, then `ORGSVC_*`
//! environment variables, then command-line flags, each layer overriding the one before.
//! Every setting has one name, its variable (`ORGSVC_HTTP_ADDR`); in the file it is the
//! rest of that name in lowercase, flat (`http_addr = ...`) or split into tables
//! (`[http] addr = ...`). Secrets are wrapped so that printing the settings cannot reveal
//! them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use domain::{CollectionNaming, LockoutPolicy, LockoutPolicyError};
use http_adapter::{HttpPolicy, TrustedNetwork};
use mongo_adapter::MongoSettings;
use ports::SecurityPolicy;
use secrecy::{ExposeSecret, SecretString};

/// Where organizations are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In process memory: nothing to set up, nothing survives a restart.
    Memory,
    /// MongoDB: a master database and one collection per organization.
    MongoDb,
}

/// Every variable a setting is read from. A key of the configuration file must name one of
/// them, so that a typo is an error rather than a silently ignored setting.
pub const VARIABLES: &[&str] = &[
    "ORGSVC_ENV",
    "ORGSVC_LOG_FORMAT",
    "ORGSVC_HTTP_ADDR",
    "ORGSVC_HTTP_WORKERS",
    "ORGSVC_HTTP_BODY_TIMEOUT_SECONDS",
    "ORGSVC_HTTP_MAX_CONNECTIONS",
    "ORGSVC_METRICS_ADDR",
    "ORGSVC_METRICS_TOKEN",
    "ORGSVC_SHUTDOWN_GRACE_SECONDS",
    "ORGSVC_STORAGE",
    "ORGSVC_COLLECTION_NAMING",
    "ORGSVC_JWT_SECRET",
    "ORGSVC_JWT_KID",
    "ORGSVC_JWT_KEYS",
    "ORGSVC_JWT_ISSUER",
    "ORGSVC_TOKEN_TTL_SECONDS",
    "ORGSVC_ARGON2_MEMORY_KIB",
    "ORGSVC_ARGON2_ITERATIONS",
    "ORGSVC_ARGON2_PARALLELISM",
    "ORGSVC_HASH_CONCURRENCY",
    "ORGSVC_HASH_QUEUE",
    "ORGSVC_MONGODB_URI",
    "ORGSVC_MONGODB_DATABASE",
    "ORGSVC_MONGODB_TENANT_DATABASE",
    "ORGSVC_MONGODB_APP_NAME",
    "ORGSVC_MONGODB_MAX_POOL_SIZE",
    "ORGSVC_MONGODB_MIN_POOL_SIZE",
    "ORGSVC_MONGODB_CONNECT_TIMEOUT_MS",
    "ORGSVC_MONGODB_SERVER_SELECTION_TIMEOUT_MS",
    "ORGSVC_MONGODB_COMMAND_TIMEOUT_MS",
    "ORGSVC_MONGODB_WRITE_CONCERN",
    "ORGSVC_MONGODB_RETRY_WRITES",
    "ORGSVC_RECONCILE_LEASE_SECONDS",
    "ORGSVC_RECONCILE_INTERVAL_SECONDS",
    "ORGSVC_REFRESH_TTL_SECONDS",
    "ORGSVC_REFRESH_GRACE_SECONDS",
    "ORGSVC_REVOCATION_BOUND_SECONDS",
    "ORGSVC_LOCKOUT_THRESHOLD",
    "ORGSVC_LOCKOUT_BASE_SECONDS",
    "ORGSVC_LOCKOUT_MAX_SECONDS",
    "ORGSVC_AUDIT_RETENTION_DAYS",
    "ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE",
    "ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE",
    "ORGSVC_RATE_LIMIT_REFRESH_PER_MINUTE",
    "ORGSVC_TRUSTED_PROXIES",
    "ORGSVC_CORS_ALLOWED_ORIGINS",
];

/// The variable a configuration key or flag names: `mongodb.uri`, `mongodb_uri` and
/// `ORGSVC_MONGODB_URI` all name `ORGSVC_MONGODB_URI`. `None` if it names no setting.
pub fn variable_for(key: &str) -> Option<&'static str> {
    let normalized = key.trim().replace(['.', '-'], "_").to_ascii_uppercase();
    let name = if normalized.starts_with("ORGSVC_") { normalized } else { format!("ORGSVC_{normalized}") };
    VARIABLES.iter().copied().find(|v| *v == name)
}

/// Reads a TOML configuration file into variable names and values. Unknown keys are an
/// error that names them; values may be strings, numbers, booleans or arrays of those
/// (joined with commas).
pub fn read_config_file(path: &std::path::Path) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the configuration file {}", path.display()))?;
    parse_config(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

/// Parses the text of a TOML configuration file (see [`read_config_file`]).
pub fn parse_config(text: &str) -> anyhow::Result<std::collections::HashMap<String, String>> {
    // A TOML syntax error quotes the offending line, which could hold a secret; only its
    // position is reported.
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid TOML at byte {}", e.span().map_or(0, |s| s.start)))?;
    let mut values = std::collections::HashMap::new();
    flatten(&table, "", &mut values)?;
    Ok(values)
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut std::collections::HashMap<String, String>,
) -> anyhow::Result<()> {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let scalar = |v: &toml::Value| -> Option<String> {
            match v {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                _ => None,
            }
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten(inner, &path, out)?;
                continue;
            }
            toml::Value::Array(items) => {
                items.iter().map(scalar).collect::<Option<Vec<_>>>().map(|parts| parts.join(","))
            }
            other => scalar(other),
        };
        let Some(variable) = variable_for(&path) else { bail!("unknown key `{path}`") };
        let Some(text) = text else { bail!("`{path}`: unsupported value type") };
        out.insert(variable.to_owned(), text);
    }
    Ok(())
}

/// Where settings come from besides the defaults: a configuration file's values and
/// command-line overrides, both by variable name. The environment sits between them.
#[derive(Debug, Default, Clone)]
pub struct Layers {
    /// From the configuration file.
    pub file: std::collections::HashMap<String, String>,
    /// From command-line flags.
    pub flags: std::collections::HashMap<String, String>,
}

impl Layers {
    /// The value of a variable: flags over environment over file.
    pub fn lookup(&self, env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
        self.flags.get(name).cloned().or_else(|| env(name)).or_else(|| self.file.get(name).cloned())
    }
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
    /// Sessions, lockout and audit retention (`ORGSVC_REFRESH_TTL_SECONDS`,
    /// `ORGSVC_REFRESH_GRACE_SECONDS`, `ORGSVC_REVOCATION_BOUND_SECONDS`,
    /// `ORGSVC_LOCKOUT_THRESHOLD`, `ORGSVC_LOCKOUT_BASE_SECONDS`, `ORGSVC_LOCKOUT_MAX_SECONDS`,
    /// `ORGSVC_AUDIT_RETENTION_DAYS`).
    pub security: SecurityPolicy,
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
        let env = |name: &str| std::env::var(name).ok();
        Self::from_lookup(|name| layers.lookup(&env, name))
    }

    /// The defaults overridden by whatever `lookup` finds; every error names its variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut s = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("ORGSVC_HTTP_ADDR") {
            s.http_addr = v
                .trim()
                .parse()
                .with_context(|| format!("ORGSVC_HTTP_ADDR: {v:?} is not an address like 127.0.0.1:8080"))?;
        }
        if let Some(v) = get("ORGSVC_HTTP_WORKERS") {
            s.http_workers = number("ORGSVC_HTTP_WORKERS", &v)?;
        }
        if let Some(v) = get("ORGSVC_HTTP_BODY_TIMEOUT_SECONDS") {
            s.http.body_timeout = Duration::from_secs(number("ORGSVC_HTTP_BODY_TIMEOUT_SECONDS", &v)?);
            if s.http.body_timeout.is_zero() {
                bail!("ORGSVC_HTTP_BODY_TIMEOUT_SECONDS: must be positive");
            }
        }
        if let Some(v) = get("ORGSVC_HTTP_MAX_CONNECTIONS") {
            s.http.max_connections = number("ORGSVC_HTTP_MAX_CONNECTIONS", &v)?;
            if s.http.max_connections == 0 {
                bail!("ORGSVC_HTTP_MAX_CONNECTIONS: must be positive");
            }
        }
        if let Some(v) = get("ORGSVC_METRICS_ADDR") {
            s.metrics_addr = Some(
                v.trim()
                    .parse()
                    .with_context(|| format!("ORGSVC_METRICS_ADDR: {v:?} is not an address like 10.0.0.5:9090"))?,
            );
        }
        if let Some(v) = get("ORGSVC_METRICS_TOKEN") {
            s.http.metrics.token = Some(SecretString::from(v.trim().to_owned()));
        }
        if let Some(v) = get("ORGSVC_STORAGE") {
            s.storage = match v.trim().to_ascii_lowercase().as_str() {
                "memory" => Storage::Memory,
                "mongodb" => Storage::MongoDb,
                _ => bail!("ORGSVC_STORAGE: {v:?} is not one of memory, mongodb"),
            };
        }
        if let Some(v) = get("ORGSVC_COLLECTION_NAMING") {
            s.collection_naming = match v.trim().to_ascii_lowercase().as_str() {
                "key" => CollectionNaming::Key,
                "id" => CollectionNaming::Id,
                _ => bail!("ORGSVC_COLLECTION_NAMING: {v:?} is not one of key, id"),
            };
        }
        if let Some(v) = get("ORGSVC_ENV") {
            s.environment = match v.trim().to_ascii_lowercase().as_str() {
                "development" | "dev" => Environment::Development,
                "production" | "prod" => Environment::Production,
                _ => bail!("ORGSVC_ENV: {v:?} is not one of development, production"),
            };
        }
        s.log_format = match get("ORGSVC_LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase()) {
            None if s.environment == Environment::Production => LogFormat::Json,
            None => LogFormat::Text,
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "text" => LogFormat::Text,
            Some(v) => bail!("ORGSVC_LOG_FORMAT: {v:?} is not one of text, json"),
        };
        if let Some(v) = get("ORGSVC_SHUTDOWN_GRACE_SECONDS") {
            s.shutdown_grace = Duration::from_secs(number("ORGSVC_SHUTDOWN_GRACE_SECONDS", &v)?);
        }
        s.read_keys(&lookup)?;
        if let Some(v) = get("ORGSVC_JWT_ISSUER") {
            s.jwt_issuer = v.trim().to_owned();
        }
        if let Some(v) = get("ORGSVC_TOKEN_TTL_SECONDS") {
            s.token_ttl_seconds = number("ORGSVC_TOKEN_TTL_SECONDS", &v)?;
            if s.token_ttl_seconds == 0 {
                bail!("ORGSVC_TOKEN_TTL_SECONDS: must be positive");
            }
        }
        if let Some(v) = get("ORGSVC_ARGON2_MEMORY_KIB") {
            s.argon2.memory_kib = number("ORGSVC_ARGON2_MEMORY_KIB", &v)?;
        }
        if let Some(v) = get("ORGSVC_ARGON2_ITERATIONS") {
            s.argon2.iterations = number("ORGSVC_ARGON2_ITERATIONS", &v)?;
        }
        if let Some(v) = get("ORGSVC_ARGON2_PARALLELISM") {
            s.argon2.parallelism = number("ORGSVC_ARGON2_PARALLELISM", &v)?;
        }
        s.argon2_params().context("ORGSVC_ARGON2_*: invalid argon2 parameters")?;
        if let Some(v) = get("ORGSVC_HASH_CONCURRENCY") {
            s.hash_concurrency = number("ORGSVC_HASH_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("ORGSVC_HASH_QUEUE") {
            s.hash_queue = number("ORGSVC_HASH_QUEUE", &v)?;
        }
        s.read_mongodb(&get)?;
        if let Some(v) = get("ORGSVC_RECONCILE_INTERVAL_SECONDS") {
            s.reconcile_interval = Duration::from_secs(number("ORGSVC_RECONCILE_INTERVAL_SECONDS", &v)?);
        }
        s.read_security(&get)?;
        s.validate()?;
        Ok(s)
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

    fn read_keys(&mut self, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
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
        if let Some(list) = lookup("ORGSVC_JWT_KEYS").filter(|v| !v.trim().is_empty()) {
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
        } else if let Some(secret) = lookup("ORGSVC_JWT_SECRET").filter(|v| !v.is_empty()) {
            let kid = lookup("ORGSVC_JWT_KID").map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
            let kid = kid.unwrap_or_else(|| "k1".to_owned());
            check("ORGSVC_JWT_SECRET", &kid, &secret)?;
            self.jwt_keys.push((kid, SecretString::from(secret)));
        } else if lookup("ORGSVC_JWT_KID").is_some_and(|k| !k.trim().is_empty()) {
            // A key id names a key; without one the operator's intent cannot be met.
            bail!("ORGSVC_JWT_KID: names the key of ORGSVC_JWT_SECRET, which is not set");
        }
        Ok(())
    }

    fn read_security(&mut self, get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let p = &mut self.security;
        let seconds = |name: &str, v: &str| number::<u64>(name, v).map(Duration::from_secs);
        if let Some(v) = get("ORGSVC_REFRESH_TTL_SECONDS") {
            p.session_ttl = seconds("ORGSVC_REFRESH_TTL_SECONDS", &v)?;
            if p.session_ttl.is_zero() {
                bail!("ORGSVC_REFRESH_TTL_SECONDS: must be positive");
            }
        }
        if let Some(v) = get("ORGSVC_REFRESH_GRACE_SECONDS") {
            p.refresh_grace = seconds("ORGSVC_REFRESH_GRACE_SECONDS", &v)?;
            if p.refresh_grace > Duration::from_secs(300) {
                bail!("ORGSVC_REFRESH_GRACE_SECONDS: at most 300 (a long grace weakens reuse detection)");
            }
        }
        if let Some(v) = get("ORGSVC_REVOCATION_BOUND_SECONDS") {
            p.revocation_bound = seconds("ORGSVC_REVOCATION_BOUND_SECONDS", &v)?;
        }
        let mut threshold = p.lockout.threshold();
        if let Some(v) = get("ORGSVC_LOCKOUT_THRESHOLD") {
            threshold = number("ORGSVC_LOCKOUT_THRESHOLD", &v)?;
        }
        let mut base = p.lockout.base();
        if let Some(v) = get("ORGSVC_LOCKOUT_BASE_SECONDS") {
            base = seconds("ORGSVC_LOCKOUT_BASE_SECONDS", &v)?;
        }
        let mut cap = p.lockout.cap();
        if let Some(v) = get("ORGSVC_LOCKOUT_MAX_SECONDS") {
            cap = seconds("ORGSVC_LOCKOUT_MAX_SECONDS", &v)?;
        }
        p.lockout = LockoutPolicy::new(threshold, base, cap).map_err(|e| match e {
            LockoutPolicyError::ZeroThreshold => anyhow::anyhow!("ORGSVC_LOCKOUT_THRESHOLD: must be at least 1"),
            LockoutPolicyError::CapBelowBase => {
                anyhow::anyhow!("ORGSVC_LOCKOUT_MAX_SECONDS: must not be below ORGSVC_LOCKOUT_BASE_SECONDS")
            }
        })?;
        if let Some(v) = get("ORGSVC_AUDIT_RETENTION_DAYS") {
            p.audit_retention = Duration::from_secs(number::<u64>("ORGSVC_AUDIT_RETENTION_DAYS", &v)? * 24 * 3600);
        }
        let h = &mut self.http;
        if let Some(v) = get("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE") {
            h.rate_limits.login_per_minute = number("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE") {
            h.rate_limits.create_per_minute = number("ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("ORGSVC_RATE_LIMIT_REFRESH_PER_MINUTE") {
            h.rate_limits.refresh_per_minute = number("ORGSVC_RATE_LIMIT_REFRESH_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("ORGSVC_TRUSTED_PROXIES") {
            h.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| e.parse::<TrustedNetwork>().map_err(|e| anyhow::anyhow!("ORGSVC_TRUSTED_PROXIES: {e}")))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(v) = get("ORGSVC_CORS_ALLOWED_ORIGINS") {
            h.cors_allowed_origins = v.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect();
            if let Some(bad) = h.cors_allowed_origins.iter().find(|o| {
                !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/') || o.contains('*')
            }) {
                bail!("ORGSVC_CORS_ALLOWED_ORIGINS: {bad:?} is not an origin like https://app.example.com");
            }
        }
        Ok(())
    }

    fn read_mongodb(&mut self, get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let m = &mut self.mongodb;
        if let Some(v) = get("ORGSVC_MONGODB_URI") {
            m.uri = SecretString::from(v);
        } else if self.storage == Storage::MongoDb {
            bail!("ORGSVC_MONGODB_URI: required when ORGSVC_STORAGE=mongodb");
        }
        if let Some(v) = get("ORGSVC_MONGODB_DATABASE") {
            m.tenant_database = format!("{}_tenants", v.trim());
            m.database = v.trim().to_owned();
        }
        if let Some(v) = get("ORGSVC_MONGODB_TENANT_DATABASE") {
            m.tenant_database = v.trim().to_owned();
        }
        if let Some(v) = get("ORGSVC_MONGODB_APP_NAME") {
            m.app_name = v.trim().to_owned();
        }
        if let Some(v) = get("ORGSVC_MONGODB_MAX_POOL_SIZE") {
            m.max_pool_size = number("ORGSVC_MONGODB_MAX_POOL_SIZE", &v)?;
        }
        if let Some(v) = get("ORGSVC_MONGODB_MIN_POOL_SIZE") {
            m.min_pool_size = number("ORGSVC_MONGODB_MIN_POOL_SIZE", &v)?;
        }
        if let Some(v) = get("ORGSVC_MONGODB_CONNECT_TIMEOUT_MS") {
            m.connect_timeout = Duration::from_millis(number("ORGSVC_MONGODB_CONNECT_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("ORGSVC_MONGODB_SERVER_SELECTION_TIMEOUT_MS") {
            m.server_selection_timeout =
                Duration::from_millis(number("ORGSVC_MONGODB_SERVER_SELECTION_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("ORGSVC_MONGODB_COMMAND_TIMEOUT_MS") {
            m.command_timeout = Duration::from_millis(number("ORGSVC_MONGODB_COMMAND_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("ORGSVC_MONGODB_WRITE_CONCERN") {
            m.write_concern_majority = match v.trim().to_ascii_lowercase().as_str() {
                "majority" => true,
                "default" => false,
                _ => bail!("ORGSVC_MONGODB_WRITE_CONCERN: {v:?} is not one of majority, default"),
            };
        }
        if let Some(v) = get("ORGSVC_MONGODB_RETRY_WRITES") {
            m.retry_writes = boolean("ORGSVC_MONGODB_RETRY_WRITES", &v)?;
        }
        if let Some(v) = get("ORGSVC_RECONCILE_LEASE_SECONDS") {
            m.lease = Duration::from_secs(number("ORGSVC_RECONCILE_LEASE_SECONDS", &v)?);
        }
        if m.lease <= m.command_timeout {
            bail!("ORGSVC_RECONCILE_LEASE_SECONDS: the lease must be longer than ORGSVC_MONGODB_COMMAND_TIMEOUT_MS");
        }
        Ok(())
    }

    /// The argon2 parameters, checked.
    pub fn argon2_params(&self) -> anyhow::Result<argon2::Params> {
        let a = self.argon2;
        argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None).map_err(|e| anyhow::anyhow!("{e}"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn defaults_need_nothing() {
        let s = from(&[]).expect("defaults");
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.storage, Storage::Memory);
        assert!(s.jwt_keys.is_empty());
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.security, SecurityPolicy::default());
        assert_eq!(s.http.rate_limits, http_adapter::RateLimits::default());
        assert_eq!(s.argon2, Argon2Settings { memory_kib: 19456, iterations: 2, parallelism: 1 });
    }

    #[test]
    fn variables_override_defaults() {
        let s = from(&[
            ("ORGSVC_HTTP_ADDR", "0.0.0.0:9000"),
            ("ORGSVC_COLLECTION_NAMING", "id"),
            ("ORGSVC_TOKEN_TTL_SECONDS", "60"),
        ])
        .expect("settings");
        assert_eq!(s.http_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(s.collection_naming, CollectionNaming::Id);
        assert_eq!(s.token_ttl_seconds, 60);
    }

    #[test]
    fn errors_name_the_variable_and_never_the_secret() {
        for (vars, name) in [
            (vec![("ORGSVC_HTTP_ADDR", "nowhere")], "ORGSVC_HTTP_ADDR"),
            (vec![("ORGSVC_STORAGE", "postgres")], "ORGSVC_STORAGE"),
            (vec![("ORGSVC_TOKEN_TTL_SECONDS", "-5")], "ORGSVC_TOKEN_TTL_SECONDS"),
            (vec![("ORGSVC_TOKEN_TTL_SECONDS", "0")], "ORGSVC_TOKEN_TTL_SECONDS"),
            (vec![("ORGSVC_COLLECTION_NAMING", "name")], "ORGSVC_COLLECTION_NAMING"),
            (vec![("ORGSVC_ARGON2_MEMORY_KIB", "1")], "ORGSVC_ARGON2"),
            (vec![("ORGSVC_JWT_SECRET", "tooshortsecret")], "ORGSVC_JWT_SECRET"),
            (vec![("ORGSVC_STORAGE", "mongodb")], "ORGSVC_MONGODB_URI"),
            (vec![("ORGSVC_MONGODB_WRITE_CONCERN", "some")], "ORGSVC_MONGODB_WRITE_CONCERN"),
            (vec![("ORGSVC_MONGODB_RETRY_WRITES", "maybe")], "ORGSVC_MONGODB_RETRY_WRITES"),
            (vec![("ORGSVC_RECONCILE_LEASE_SECONDS", "1")], "ORGSVC_RECONCILE_LEASE_SECONDS"),
            (vec![("ORGSVC_JWT_KEYS", "new:tooshortsecret")], "ORGSVC_JWT_KEYS"),
            (vec![("ORGSVC_JWT_KEYS", "tooshortsecret")], "ORGSVC_JWT_KEYS"),
            (vec![("ORGSVC_ENV", "staging")], "ORGSVC_ENV"),
            (vec![("ORGSVC_LOCKOUT_THRESHOLD", "0")], "ORGSVC_LOCKOUT_THRESHOLD"),
            (vec![("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE", "many")], "ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE"),
            (vec![("ORGSVC_TRUSTED_PROXIES", "proxy.local")], "ORGSVC_TRUSTED_PROXIES"),
            (vec![("ORGSVC_CORS_ALLOWED_ORIGINS", "*")], "ORGSVC_CORS_ALLOWED_ORIGINS"),
            (vec![("ORGSVC_REFRESH_GRACE_SECONDS", "3600")], "ORGSVC_REFRESH_GRACE_SECONDS"),
        ] {
            let error = format!("{:#}", from(&vars).expect_err("invalid"));
            assert!(error.contains(name), "{error}");
            assert!(!error.contains("tooshortsecret"), "{error}");
        }
        let s = from(&[
            ("ORGSVC_JWT_SECRET", "a-secret-that-is-long-enough-to-use!"),
            ("ORGSVC_STORAGE", "mongodb"),
            ("ORGSVC_MONGODB_URI", "mongodb://user:hunter2@db.example/"),
        ])
        .expect("settings");
        let printed = format!("{s:?}");
        assert!(!printed.contains("a-secret-that") && !printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn every_variable_read_is_known_to_the_file_format() {
        let source = include_str!("settings.rs");
        let mut rest = source.split("#[cfg(test)]").next().expect("source");
        while let Some(start) = rest.find("\"ORGSVC_") {
            let tail = &rest[start + 1..];
            let end = tail.find('"').expect("closing quote");
            let name = &tail[..end];
            let plain = name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if plain && name != "ORGSVC_ARGON2" && !name.ends_with('_') {
                assert!(VARIABLES.contains(&name), "{name} is read but not in VARIABLES");
            }
            rest = &tail[end..];
        }
    }

    #[test]
    fn a_file_sets_values_by_flat_or_nested_keys_and_refuses_unknown_ones() {
        let values = parse_config(
            "http_addr = \"0.0.0.0:9000\"\n[mongodb]\nuri = \"mongodb://db/\"\nmax_pool_size = 20\n\
             [rate_limit]\nlogin_per_minute = 0\n[cors]\nallowed_origins = [\"https://a.example\", \"https://b.example\"]\n",
        )
        .expect("config");
        assert_eq!(values["ORGSVC_HTTP_ADDR"], "0.0.0.0:9000");
        assert_eq!(values["ORGSVC_MONGODB_URI"], "mongodb://db/");
        assert_eq!(values["ORGSVC_MONGODB_MAX_POOL_SIZE"], "20");
        assert_eq!(values["ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE"], "0");
        assert_eq!(values["ORGSVC_CORS_ALLOWED_ORIGINS"], "https://a.example,https://b.example");
        let error = format!("{:#}", parse_config("[mongodb]\nurl = \"x\"\n").expect_err("unknown key"));
        assert!(error.contains("`mongodb.url`"), "{error}");
        let error = format!("{:#}", parse_config("jwt_secret = \"hunter2hunter2\" oops").expect_err("syntax"));
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let layers = Layers {
            file: [("ORGSVC_HTTP_ADDR", "10.0.0.1:1"), ("ORGSVC_HTTP_WORKERS", "3"), ("ORGSVC_STORAGE", "memory")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            flags: [("ORGSVC_HTTP_ADDR", "10.0.0.3:3")].map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
        };
        let env = |name: &str| (name == "ORGSVC_HTTP_ADDR" || name == "ORGSVC_HTTP_WORKERS").then(|| "7".to_owned());
        let env = |name: &str| match name {
            "ORGSVC_HTTP_ADDR" => Some("10.0.0.2:2".to_owned()),
            other => env(other),
        };
        let s = Settings::from_lookup(|name| layers.lookup(&env, name)).expect("settings");
        assert_eq!(s.http_addr.to_string(), "10.0.0.3:3");
        assert_eq!(s.http_workers, 7);
        assert_eq!(s.storage, Storage::Memory);
        assert_eq!(variable_for("mongodb.uri"), Some("ORGSVC_MONGODB_URI"));
        assert_eq!(variable_for("ORGSVC_HTTP_ADDR"), Some("ORGSVC_HTTP_ADDR"));
        assert_eq!(variable_for("http-addr"), Some("ORGSVC_HTTP_ADDR"));
        assert_eq!(variable_for("nonsense"), None);
    }

    #[test]
    fn production_logs_json_by_default() {
        let s = from(&[
            ("ORGSVC_JWT_SECRET", KEY_A),
            ("ORGSVC_STORAGE", "mongodb"),
            ("ORGSVC_MONGODB_URI", "mongodb://db/"),
            ("ORGSVC_ENV", "production"),
            ("ORGSVC_METRICS_ADDR", "127.0.0.1:9090"),
        ])
        .expect("settings");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(from(&[]).expect("settings").log_format, LogFormat::Text);
        assert!(format!("{:#}", from(&[("ORGSVC_LOG_FORMAT", "xml")]).expect_err("bad")).contains("ORGSVC_LOG_FORMAT"));
    }

    const KEY_A: &str = "a-secret-that-is-long-enough-to-use!";
    const KEY_B: &str = "another-secret-long-enough-to-sign!!";
    /// `openssl rand -base64 32`.
    const STRONG_KEY: &str = "dsoXOdHABkL7Afs6uHjbv4U3hIvzDpfE5Erx7zCevV4=";

    #[test]
    fn the_example_file_is_valid_with_and_without_its_commented_keys() {
        let text = include_str!("../../../orgsvc.example.toml");
        parse_config(text).expect("the example as shipped");
        let is_key = |line: &str| {
            let line = line.trim_start_matches("# ");
            line.starts_with('[')
                || line.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        };
        let uncommented: Vec<&str> =
            text.lines().map(|l| if l.starts_with("# ") && is_key(l) { &l[2..] } else { l }).collect();
        let all = parse_config(&uncommented.join("\n")).expect("every commented key is a setting");
        assert!(all.contains_key("ORGSVC_MONGODB_URI") && all.contains_key("ORGSVC_JWT_KEYS"), "{all:?}");
    }

    #[test]
    fn a_key_id_without_a_secret_is_an_error() {
        let error = format!("{:#}", from(&[("ORGSVC_JWT_KID", "k9")]).expect_err("kid alone"));
        assert!(error.contains("ORGSVC_JWT_KID") && error.contains("ORGSVC_JWT_SECRET"), "{error}");
    }

    #[test]
    fn a_key_list_names_its_keys_and_the_first_signs() {
        let s = from(&[("ORGSVC_JWT_KEYS", &format!("new:{KEY_B}, old:{KEY_A}"))]).expect("settings");
        let kids: Vec<&str> = s.jwt_keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kids, ["new", "old"]);
        let single = from(&[("ORGSVC_JWT_SECRET", KEY_A), ("ORGSVC_JWT_KID", "main")]).expect("settings");
        assert_eq!(single.jwt_keys.len(), 1);
        assert_eq!(single.jwt_keys[0].0, "main");
        let dup = from(&[("ORGSVC_JWT_KEYS", &format!("k:{KEY_A},k:{KEY_B}"))]);
        assert!(format!("{:#}", dup.expect_err("duplicate")).contains("distinct"));
    }

    #[test]
    fn production_refuses_a_random_key_and_the_memory_store() {
        let no_key = from(&[
            ("ORGSVC_ENV", "production"),
            ("ORGSVC_STORAGE", "mongodb"),
            ("ORGSVC_MONGODB_URI", "mongodb://db/"),
        ]);
        let error = format!("{:#}", no_key.expect_err("no key"));
        assert!(error.contains("ORGSVC_JWT_SECRET"), "{error}");
        let memory = from(&[("ORGSVC_ENV", "production"), ("ORGSVC_JWT_SECRET", KEY_A)]);
        let error = format!("{:#}", memory.expect_err("memory"));
        assert!(error.contains("ORGSVC_STORAGE=memory"), "{error}");
        let short = from(&[
            ("ORGSVC_ENV", "production"),
            ("ORGSVC_JWT_SECRET", "short"),
            ("ORGSVC_STORAGE", "mongodb"),
            ("ORGSVC_MONGODB_URI", "mongodb://db/"),
        ]);
        assert!(format!("{:#}", short.expect_err("short key")).contains("at least 32 bytes"));
        from(&[
            ("ORGSVC_ENV", "production"),
            ("ORGSVC_JWT_SECRET", KEY_A),
            ("ORGSVC_STORAGE", "mongodb"),
            ("ORGSVC_MONGODB_URI", "mongodb://db/"),
            ("ORGSVC_METRICS_ADDR", "127.0.0.1:9090"),
        ])
        .expect("a complete production configuration");
    }

    #[test]
    fn production_refuses_weak_hashing_weak_keys_and_no_login_limit() {
        let production = |extra: &[(&'static str, &'static str)]| {
            let mut vars = vec![
                ("ORGSVC_ENV", "production"),
                ("ORGSVC_JWT_SECRET", STRONG_KEY),
                ("ORGSVC_STORAGE", "mongodb"),
                ("ORGSVC_MONGODB_URI", "mongodb://db/"),
                ("ORGSVC_METRICS_ADDR", "10.0.0.5:9090"),
            ];
            for (name, value) in extra {
                vars.retain(|(n, _)| n != name);
                vars.push((name, value));
            }
            from(&vars).map_err(|e| format!("{e:#}"))
        };
        production(&[]).expect("strong settings");
        production(&[("ORGSVC_METRICS_ADDR", ""), ("ORGSVC_METRICS_TOKEN", STRONG_KEY)]).expect("a metrics token");
        for (extra, named) in [
            (&[("ORGSVC_ARGON2_MEMORY_KIB", "8"), ("ORGSVC_ARGON2_ITERATIONS", "1")][..], "ORGSVC_ARGON2_MEMORY_KIB"),
            (&[("ORGSVC_ARGON2_ITERATIONS", "1")][..], "ORGSVC_ARGON2_ITERATIONS"),
            (&[("ORGSVC_JWT_SECRET", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")][..], "ORGSVC_JWT_SECRET"),
            (&[("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE", "0")][..], "ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE"),
            (&[("ORGSVC_METRICS_ADDR", "")][..], "ORGSVC_METRICS_TOKEN"),
            (
                &[("ORGSVC_METRICS_ADDR", ""), ("ORGSVC_METRICS_TOKEN", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")][..],
                "ORGSVC_METRICS_TOKEN",
            ),
        ] {
            let error = production(extra).expect_err("weak setting refused");
            assert!(error.contains(named), "{extra:?}: {error}");
            assert!(!error.contains("xxxxxxxx"), "the secret is echoed: {error}");
        }
        // Development runs with whatever it is given.
        from(&[("ORGSVC_ARGON2_MEMORY_KIB", "8"), ("ORGSVC_ARGON2_ITERATIONS", "1")]).expect("development");
    }

    #[test]
    fn security_and_http_policies_are_read() {
        let s = from(&[
            ("ORGSVC_LOCKOUT_THRESHOLD", "3"),
            ("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE", "0"),
            ("ORGSVC_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("ORGSVC_CORS_ALLOWED_ORIGINS", "https://app.example.com"),
            ("ORGSVC_REVOCATION_BOUND_SECONDS", "0"),
        ])
        .expect("settings");
        assert_eq!(s.security.lockout.threshold(), 3);
        assert_eq!(s.http.rate_limits.login_per_minute, 0);
        assert_eq!(s.http.trusted_proxies.len(), 2);
        assert_eq!(s.http.cors_allowed_origins, ["https://app.example.com"]);
        assert!(s.security.revocation_bound.is_zero());
    }
}
