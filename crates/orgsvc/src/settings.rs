//! The service's settings, read from `ORGSVC_*` environment variables over defaults.
//! Secrets are wrapped so that printing the settings cannot reveal them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use domain::CollectionNaming;
use mongo_adapter::MongoSettings;
use secrecy::SecretString;

/// Where organizations are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In process memory: nothing to set up, nothing survives a restart.
    Memory,
    /// MongoDB: a master database and one collection per organization.
    MongoDb,
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
    /// The store (`ORGSVC_STORAGE`).
    pub storage: Storage,
    /// How tenant collections are named (`ORGSVC_COLLECTION_NAMING`: `key` or `id`).
    pub collection_naming: CollectionNaming,
    /// HMAC key for access tokens (`ORGSVC_JWT_SECRET`, at least 32 bytes); random per
    /// process when unset.
    pub jwt_secret: Option<SecretString>,
    /// Key id written in token headers (`ORGSVC_JWT_KID`).
    pub jwt_kid: String,
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_workers: 0,
            storage: Storage::Memory,
            collection_naming: CollectionNaming::Key,
            jwt_secret: None,
            jwt_kid: "k1".to_owned(),
            jwt_issuer: "orgsvc".to_owned(),
            token_ttl_seconds: 900,
            argon2: Argon2Settings::default(),
            hash_concurrency: 0,
            hash_queue: 256,
            mongodb: MongoSettings::new("mongodb://127.0.0.1:27017", "orgsvc_master"),
            reconcile_interval: Duration::from_secs(30),
        }
    }
}

impl Settings {
    /// The defaults overridden by the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
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
        if let Some(v) = lookup("ORGSVC_JWT_SECRET") {
            // The value is never echoed back, only its length.
            if v.len() < crypto_adapter::MIN_KEY_BYTES {
                bail!("ORGSVC_JWT_SECRET: must be at least {} bytes (got {})", crypto_adapter::MIN_KEY_BYTES, v.len());
            }
            s.jwt_secret = Some(SecretString::from(v));
        }
        if let Some(v) = get("ORGSVC_JWT_KID") {
            s.jwt_kid = v.trim().to_owned();
        }
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
        Ok(s)
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
        assert!(s.jwt_secret.is_none());
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
}
