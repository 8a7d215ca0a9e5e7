//! The settings' tests: defaults, layering, errors that name variables and hide secrets.

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
fn check_config_describes_every_variable_and_no_secret() {
    let input = [
        ("ORGSVC_JWT_KEYS", "new:a-secret-that-is-long-enough-to-use!,old:another-secret-that-is-long-enough"),
        ("ORGSVC_STORAGE", "mongodb"),
        ("ORGSVC_MONGODB_URI", "mongodb://user:hunter2@db.example/"),
        ("ORGSVC_METRICS_TOKEN", "J9F6+gvZaD9f5I+24qp9QHMQWmE7JAQH"),
        ("ORGSVC_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("ORGSVC_AUDIT_RETENTION_DAYS", "7"),
    ];
    let described = from(&input).expect("settings").describe();
    let names: Vec<&str> = described.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, VARIABLES);
    let printed = format!("{described:?}");
    for secret in ["a-secret-that", "another-secret", "hunter2", "J9F6"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    let value = |name: &str| described.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).expect("described");
    assert_eq!(value("ORGSVC_JWT_KEYS"), "new:[REDACTED],old:[REDACTED]");
    assert_eq!(value("ORGSVC_TRUSTED_PROXIES"), "10.0.0.0/8");
    // Every value reads back as itself: set the described values (secrets from the input)
    // and the description is the same.
    let back = Settings::from_lookup(|name| {
        let secret = input.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
        Some(value(name)).filter(|v| !v.contains(REDACTED)).or(secret)
    })
    .expect("read back");
    assert_eq!(back.describe(), described);
}

#[test]
fn every_variable_is_a_layered_field() {
    // The layered struct refuses unknown fields, so a variable it has no field for fails.
    let all = VARIABLES.iter().map(|v| ((*v).to_owned(), "x".to_owned())).collect();
    let layers = Layers { file: all, flags: Default::default() };
    assert!(sources::Layered::new(&layers, |_| None).is_ok());
}

#[test]
fn every_variable_read_is_known_to_the_file_format() {
    let source = [include_str!("mod.rs"), include_str!("parse.rs")].concat();
    let mut rest = source.as_str();
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
    let (s, sources) = Settings::load(&layers, env).expect("settings");
    assert_eq!(s.http_addr.to_string(), "10.0.0.3:3");
    assert_eq!(s.http_workers, 7);
    assert_eq!(s.storage, Storage::Memory);
    // Where each value came from, for check-config.
    let source = |variable: &str| sources.iter().find(|(v, _)| *v == variable).map(|(_, s)| *s);
    assert_eq!(source("ORGSVC_HTTP_ADDR"), Some(Source::Flag));
    assert_eq!(source("ORGSVC_HTTP_WORKERS"), Some(Source::Environment));
    assert_eq!(source("ORGSVC_STORAGE"), Some(Source::File));
    assert_eq!(source("ORGSVC_TOKEN_TTL_SECONDS"), Some(Source::Default));
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
    let text = include_str!("../../../../orgsvc.example.toml");
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
    let no_key =
        from(&[("ORGSVC_ENV", "production"), ("ORGSVC_STORAGE", "mongodb"), ("ORGSVC_MONGODB_URI", "mongodb://db/")]);
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
        ("ORGSVC_CACHE_MAX_MEMORY_MB", "16"),
    ])
    .expect("settings");
    assert_eq!(s.security.lockout.threshold(), 3);
    assert_eq!(s.http.rate_limits.login_per_minute, 0);
    assert_eq!(s.http.trusted_proxies.len(), 2);
    assert_eq!(s.http.cors_allowed_origins, ["https://app.example.com"]);
    // The bound of before the cache is read as its TTL, unless the TTL is set.
    assert!(s.mongodb.cache.ttl.is_zero());
    assert_eq!(s.mongodb.cache.max_memory, 16 << 20);
    let s =
        from(&[("ORGSVC_REVOCATION_BOUND_SECONDS", "0"), ("ORGSVC_CACHE_TTL_SECONDS", "7"), ("ORGSVC_CACHE", "no")])
            .expect("settings");
    assert_eq!(s.mongodb.cache.ttl, Duration::from_secs(7));
    assert!(!s.mongodb.cache.enabled);
    for (variable, value) in
        [("ORGSVC_CACHE", "maybe"), ("ORGSVC_CACHE_MAX_ENTRIES", "0"), ("ORGSVC_CACHE_MAX_MEMORY_MB", "0")]
    {
        let error = from(&[(variable, value)]).expect_err("refused");
        assert!(format!("{error:#}").contains(variable), "{error:#}");
    }
}

#[test]
fn clusters_and_the_placement_policy_are_read_from_variables_and_tables() {
    let s = from(&[
        ("ORGSVC_CLUSTERS", "eu=mongodb://u:hunter2@a:1,b:2/?replicaSet=rs  us=mongodb+srv://us.example/"),
        ("ORGSVC_PLACEMENT", "Shared"),
        ("ORGSVC_PLACEMENT_CLUSTER", "eu"),
    ])
    .expect("settings");
    let names: Vec<&str> = s.mongodb.clusters.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["eu", "us"]);
    assert_eq!(s.mongodb.clusters[0].1.expose_secret(), "mongodb://u:hunter2@a:1,b:2/?replicaSet=rs");
    assert_eq!(s.placement.to_string(), "shared on eu");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(!format!("{:?}", s.describe()).contains("hunter2"));

    let values =
        parse_config("placement = \"database\"\n[clusters.eu]\nuri = \"mongodb://eu.example/\"\n").expect("file");
    assert_eq!(values["ORGSVC_CLUSTERS"], "eu=mongodb://eu.example/");
    let error = parse_config("[clusters.eu]\nurl = \"mongodb://eu.example/\"\n").expect_err("not uri");
    assert!(format!("{error:#}").contains("clusters.eu"), "{error:#}");

    for (vars, name) in [
        (vec![("ORGSVC_PLACEMENT", "tenant")], "ORGSVC_PLACEMENT"),
        (vec![("ORGSVC_PLACEMENT_CLUSTER", "eu")], "ORGSVC_PLACEMENT_CLUSTER"),
        (vec![("ORGSVC_CLUSTERS", "main=mongodb://x/")], "ORGSVC_CLUSTERS"),
        (vec![("ORGSVC_CLUSTERS", "EU=mongodb://x/")], "ORGSVC_CLUSTERS"),
        (vec![("ORGSVC_CLUSTERS", "eu=http://u:hunter2@x/")], "ORGSVC_CLUSTERS"),
        (vec![("ORGSVC_CLUSTERS", "eu")], "ORGSVC_CLUSTERS"),
    ] {
        let error = format!("{:#}", from(&vars).expect_err("invalid"));
        assert!(error.contains(name) && !error.contains("hunter2"), "{error}");
    }
}

#[test]
fn tracing_is_off_by_default_and_the_collector_is_a_plain_http_address() {
    let s = from(&[]).expect("defaults");
    assert_eq!(s.tracing, TracingSettings { otlp_endpoint: None, sample_ratio: 1.0 });
    for (given, traces) in [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("https://collector.example/otlp/", "https://collector.example/otlp/v1/traces"),
        ("http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/traces"),
    ] {
        let s = from(&[("ORGSVC_OTLP_ENDPOINT", given), ("ORGSVC_OTLP_SAMPLE_RATIO", "0.25")]).expect(given);
        assert_eq!(s.tracing.otlp_endpoint.as_deref(), Some(traces));
        assert_eq!(s.tracing.sample_ratio, 0.25);
    }
    for (name, value, rule) in [
        ("ORGSVC_OTLP_ENDPOINT", "collector:4318", "scheme"),
        ("ORGSVC_OTLP_ENDPOINT", "grpc://collector:4317", "scheme"),
        ("ORGSVC_OTLP_ENDPOINT", "not a url", "not a URL"),
        ("ORGSVC_OTLP_ENDPOINT", "https://user:s3cret@collector:4318", "OTEL_EXPORTER_OTLP_HEADERS"),
        ("ORGSVC_OTLP_ENDPOINT", "http://collector:4318/?a=b", "query"),
        ("ORGSVC_OTLP_SAMPLE_RATIO", "1.5", "from 0 to 1"),
        ("ORGSVC_OTLP_SAMPLE_RATIO", "NaN", "from 0 to 1"),
        ("ORGSVC_OTLP_SAMPLE_RATIO", "half", "from 0 to 1"),
    ] {
        let error = format!("{:#}", from(&[(name, value)]).expect_err(value));
        assert!(error.contains(name) && error.contains(rule), "{value}: {error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
}

#[test]
fn the_credentials_key_is_long_enough_secret_and_makes_a_vault() {
    assert!(from(&[]).expect("defaults").vault().expect("no key").is_none());
    let error = format!("{:#}", from(&[("ORGSVC_SEALING_KEY", "short-and-secret")]).expect_err("short"));
    assert!(error.contains("ORGSVC_SEALING_KEY") && error.contains("at least 32 bytes"), "{error}");
    assert!(!error.contains("short-and-secret"), "{error}");
    let key = "a sealing key of more than thirty-two bytes";
    let s = from(&[("ORGSVC_SEALING_KEY", key)]).expect("settings");
    assert!(s.vault().expect("vault").is_some());
    let described = s.describe();
    let shown = described.iter().find(|(name, _)| *name == "ORGSVC_SEALING_KEY").expect("described");
    assert_eq!(shown.1, REDACTED);
    assert!(!format!("{s:?}").contains(key), "Debug shows no key");
}
