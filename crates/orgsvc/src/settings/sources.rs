//! Where settings come from: the configuration file, the environment and command-line
//! flags, layered with figment (flags over environment over file over defaults), each
//! value remembered with the layer that gave it.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;

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
    "ORGSVC_PLACEMENT",
    "ORGSVC_PLACEMENT_CLUSTER",
    "ORGSVC_CLUSTERS",
    "ORGSVC_TENANT_CREDENTIALS",
    "ORGSVC_SEALING_KEY",
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
    "ORGSVC_ORPHAN_SWEEP_INTERVAL_SECONDS",
    "ORGSVC_JOBS_INTERVAL_SECONDS",
    "ORGSVC_TIERING_INTERVAL_SECONDS",
    "ORGSVC_TIERING_SHARED_BELOW",
    "ORGSVC_TIERING_DATABASE_ABOVE",
    "ORGSVC_JOB_LEASE_SECONDS",
    "ORGSVC_MOVE_BATCH",
    "ORGSVC_MOVE_GRACE_SECONDS",
    "ORGSVC_CACHE",
    "ORGSVC_CACHE_TTL_SECONDS",
    "ORGSVC_CACHE_MAX_ENTRIES",
    "ORGSVC_CACHE_MAX_MEMORY_MB",
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
    "ORGSVC_WEBHOOKS_RETRY_BASE_MS",
    "ORGSVC_WEBHOOKS_ALLOW_PRIVATE",
    "ORGSVC_WEBHOOKS_WORKERS",
    "ORGSVC_WEBHOOKS_POLL_MS",
    "ORGSVC_WEBHOOKS_TIMEOUT_SECONDS",
    "ORGSVC_OTLP_ENDPOINT",
    "ORGSVC_OTLP_SAMPLE_RATIO",
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
pub fn read_config_file(path: &std::path::Path) -> anyhow::Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the configuration file {}", path.display()))?;
    parse_config(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

/// Parses the text of a TOML configuration file (see [`read_config_file`]).
pub fn parse_config(text: &str) -> anyhow::Result<HashMap<String, String>> {
    // A TOML syntax error quotes the offending line, which could hold a secret; only its
    // position is reported.
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid TOML at byte {}", e.span().map_or(0, |s| s.start)))?;
    let mut values = HashMap::new();
    flatten(&table, "", &mut values)?;
    Ok(values)
}

fn flatten(table: &toml::Table, prefix: &str, out: &mut HashMap<String, String>) -> anyhow::Result<()> {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        // `[clusters.<name>] uri = "..."`: one entry of ORGSVC_CLUSTERS per table.
        if path == "clusters"
            && let toml::Value::Table(clusters) = value
        {
            let mut entries = Vec::new();
            for (name, cluster) in clusters {
                let uri = cluster.as_table().and_then(|t| t.get("uri")).and_then(toml::Value::as_str);
                let Some(uri) = uri.filter(|_| cluster.as_table().is_some_and(|t| t.len() == 1)) else {
                    bail!("`clusters.{name}`: a cluster table holds exactly one key, `uri`");
                };
                entries.push(format!("{name}={uri}"));
            }
            out.insert("ORGSVC_CLUSTERS".to_owned(), entries.join(" "));
            continue;
        }
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
    pub file: HashMap<String, String>,
    /// From command-line flags.
    pub flags: HashMap<String, String>,
}

/// Which layer gave a setting its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Nothing set it.
    Default,
    /// The configuration file.
    File,
    /// An `ORGSVC_*` environment variable.
    Environment,
    /// `--set` or another command-line flag.
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::File => "configuration file",
            Self::Environment => "environment",
            Self::Flag => "command line",
        })
    }
}

/// One layer of values by variable name, as a figment provider.
struct Layer {
    source: Source,
    values: BTreeMap<String, String>,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.source.to_string())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = self
            .values
            .iter()
            .filter_map(|(variable, value)| Some((field_of(variable)?, Value::from(value.clone()))))
            .collect();
        Ok(Profile::Default.collect(dict))
    }
}

/// The field of [`Raw`] a variable sets: its name without `ORGSVC_`, in lowercase.
fn field_of(variable: &str) -> Option<String> {
    variable.strip_prefix("ORGSVC_").map(str::to_ascii_lowercase)
}

/// Every setting as text, as the layers give it (`None`: no layer set it); what
/// [`Settings::from_raw`](super::Settings) turns into typed settings, naming the variable
/// of any value it refuses. Unknown fields are refused, so the variable list and this
/// struct cannot drift apart unnoticed.
///
/// It holds secrets in clear, so it deliberately has no `Debug`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) env: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) http_addr: Option<String>,
    pub(super) http_workers: Option<String>,
    pub(super) http_body_timeout_seconds: Option<String>,
    pub(super) http_max_connections: Option<String>,
    pub(super) metrics_addr: Option<String>,
    pub(super) metrics_token: Option<String>,
    pub(super) shutdown_grace_seconds: Option<String>,
    pub(super) storage: Option<String>,
    pub(super) collection_naming: Option<String>,
    pub(super) placement: Option<String>,
    pub(super) placement_cluster: Option<String>,
    pub(super) clusters: Option<String>,
    pub(super) tenant_credentials: Option<String>,
    pub(super) sealing_key: Option<String>,
    pub(super) jwt_secret: Option<String>,
    pub(super) jwt_kid: Option<String>,
    pub(super) jwt_keys: Option<String>,
    pub(super) jwt_issuer: Option<String>,
    pub(super) token_ttl_seconds: Option<String>,
    pub(super) argon2_memory_kib: Option<String>,
    pub(super) argon2_iterations: Option<String>,
    pub(super) argon2_parallelism: Option<String>,
    pub(super) hash_concurrency: Option<String>,
    pub(super) hash_queue: Option<String>,
    pub(super) mongodb_uri: Option<String>,
    pub(super) mongodb_database: Option<String>,
    pub(super) mongodb_tenant_database: Option<String>,
    pub(super) mongodb_app_name: Option<String>,
    pub(super) mongodb_max_pool_size: Option<String>,
    pub(super) mongodb_min_pool_size: Option<String>,
    pub(super) mongodb_connect_timeout_ms: Option<String>,
    pub(super) mongodb_server_selection_timeout_ms: Option<String>,
    pub(super) mongodb_command_timeout_ms: Option<String>,
    pub(super) mongodb_write_concern: Option<String>,
    pub(super) mongodb_retry_writes: Option<String>,
    pub(super) reconcile_lease_seconds: Option<String>,
    pub(super) reconcile_interval_seconds: Option<String>,
    pub(super) orphan_sweep_interval_seconds: Option<String>,
    pub(super) jobs_interval_seconds: Option<String>,
    pub(super) tiering_interval_seconds: Option<String>,
    pub(super) tiering_shared_below: Option<String>,
    pub(super) tiering_database_above: Option<String>,
    pub(super) job_lease_seconds: Option<String>,
    pub(super) move_batch: Option<String>,
    pub(super) move_grace_seconds: Option<String>,
    pub(super) cache: Option<String>,
    pub(super) cache_ttl_seconds: Option<String>,
    pub(super) cache_max_entries: Option<String>,
    pub(super) cache_max_memory_mb: Option<String>,
    pub(super) refresh_ttl_seconds: Option<String>,
    pub(super) refresh_grace_seconds: Option<String>,
    pub(super) revocation_bound_seconds: Option<String>,
    pub(super) lockout_threshold: Option<String>,
    pub(super) lockout_base_seconds: Option<String>,
    pub(super) webhooks_retry_base_ms: Option<String>,
    pub(super) webhooks_allow_private: Option<String>,
    pub(super) webhooks_workers: Option<String>,
    pub(super) webhooks_poll_ms: Option<String>,
    pub(super) webhooks_timeout_seconds: Option<String>,
    pub(super) otlp_endpoint: Option<String>,
    pub(super) otlp_sample_ratio: Option<String>,
    pub(super) lockout_max_seconds: Option<String>,
    pub(super) audit_retention_days: Option<String>,
    pub(super) rate_limit_login_per_minute: Option<String>,
    pub(super) rate_limit_create_per_minute: Option<String>,
    pub(super) rate_limit_refresh_per_minute: Option<String>,
    pub(super) trusted_proxies: Option<String>,
    pub(super) cors_allowed_origins: Option<String>,
}

/// The layered values: what they are, and where each came from.
pub(super) struct Layered {
    figment: Figment,
    /// The values.
    pub(super) raw: Raw,
}

impl Layered {
    /// Layers the file, the environment (as `env` reads it) and the flags.
    pub(super) fn new(layers: &Layers, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let layer = |source, values: BTreeMap<String, String>| Layer { source, values };
        let environment = VARIABLES.iter().filter_map(|v| Some(((*v).to_owned(), env(v)?))).collect();
        let figment = Figment::new()
            .merge(layer(Source::File, layers.file.clone().into_iter().collect()))
            .merge(layer(Source::Environment, environment))
            .merge(layer(Source::Flag, layers.flags.clone().into_iter().collect()));
        // Every value is text, so extraction can only fail on a field no variable names,
        // which `variable_for` rules out; the message names the field, never a value.
        let raw = figment.extract::<Raw>().map_err(|e| anyhow::anyhow!("settings: {}", e.kind))?;
        Ok(Self { figment, raw })
    }

    /// The layer that gave a variable its value.
    pub(super) fn source(&self, variable: &str) -> Source {
        let Some(field) = field_of(variable) else { return Source::Default };
        match self.figment.find_metadata(&field).map(|m| m.name.as_ref()) {
            Some(name) if name == Source::File.to_string() => Source::File,
            Some(name) if name == Source::Environment.to_string() => Source::Environment,
            Some(name) if name == Source::Flag.to_string() => Source::Flag,
            _ => Source::Default,
        }
    }
}
