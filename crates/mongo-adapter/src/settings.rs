//! Connection and safety settings of the MongoDB store.

use std::time::Duration;

use domain::ClusterName;
use secrecy::SecretString;

/// How to reach MongoDB and how long operations may take.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// Connection string; it may hold credentials, so it is kept secret.
    pub uri: SecretString,
    /// The master database.
    pub database: String,
    /// The database holding the tenant collections.
    pub tenant_database: String,
    /// Application name reported to the server.
    pub app_name: String,
    /// Connection pool bounds.
    pub max_pool_size: u32,
    /// Connections kept open when idle.
    pub min_pool_size: u32,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed to find a usable server; bounds how long a request waits during an
    /// outage before it gets a 503.
    pub server_selection_timeout: Duration,
    /// Acknowledge writes only once a majority of the replica set has them.
    pub write_concern_majority: bool,
    /// Retry a write once after a transient network error or failover.
    pub retry_writes: bool,
    /// Server-side limit of every DDL command (`maxTimeMS`).
    pub command_timeout: Duration,
    /// How long an operation may stay unfinished before the reconciler takes it over; must
    /// exceed the longest operation, `command_timeout` included.
    pub lease: Duration,
    /// The other deployments that may hold tenant data, by name, each reached with its own
    /// connection pool; the main one (`uri`) is the cluster `main` and holds the master
    /// database.
    pub clusters: Vec<(ClusterName, SecretString)>,
    /// How many documents of a `shared` organization one delete batch removes: bounded so
    /// that deleting a large tenant never holds one long write.
    pub shared_delete_batch: u32,
    /// The lease of a job's runner (renewed every third of it while it works).
    pub job_lease: domain::JobLease,
    /// How many documents a move copies, and compares, at a time.
    pub move_batch: u32,
    /// How long a moved organization's fenced source is kept after the switch (its deletes
    /// still reach the target meanwhile) before it is removed.
    pub move_grace: Duration,
    /// The organization cache in front of the master database.
    pub cache: crate::CacheSettings,
}

impl MongoSettings {
    /// Settings for a URI and master database, with the defaults for everything else.
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        let uri: String = uri.into();
        let database = database.into();
        Self {
            uri: SecretString::from(uri),
            tenant_database: format!("{database}_tenants"),
            database,
            app_name: "orgsvc".to_owned(),
            max_pool_size: 50,
            min_pool_size: 0,
            connect_timeout: Duration::from_secs(5),
            server_selection_timeout: Duration::from_secs(3),
            write_concern_majority: true,
            retry_writes: true,
            command_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            clusters: Vec::new(),
            shared_delete_batch: 1000,
            job_lease: domain::JobLease::default(),
            move_batch: 1000,
            move_grace: Duration::from_secs(600),
            cache: crate::CacheSettings::default(),
        }
    }
}

/// A connection string without the user name and password it may carry, nor the options
/// that say how the service authenticates (`authSource`, `authMechanism`,
/// `authMechanismProperties`): `mongodb://user:secret@a,b/?replicaSet=rs&authSource=admin`
/// becomes `mongodb://a,b/?replicaSet=rs`. It is handed to tenants' applications, which
/// connect with credentials of their own.
pub fn without_credentials(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return String::new() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|option| {
            let name = option.split('=').next().unwrap_or_default().to_ascii_lowercase();
            !option.is_empty() && !name.starts_with("authsource") && !name.starts_with("authmechanism")
        })
        .collect();
    if kept.is_empty() {
        format!("{scheme}://{hosts}{path}")
    } else {
        format!("{scheme}://{hosts}{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod credential_tests {
    use super::without_credentials;

    #[test]
    fn credentials_are_removed_from_connection_strings() {
        for (uri, public) in [
            ("mongodb://user:p%40ss@a:1,b:2/?replicaSet=rs", "mongodb://a:1,b:2/?replicaSet=rs"),
            ("mongodb+srv://u:s@cluster.example/db?tls=true", "mongodb+srv://cluster.example/db?tls=true"),
            ("mongodb://localhost:27017", "mongodb://localhost:27017"),
            ("mongodb://a@b@host/", "mongodb://host/"),
            ("nonsense", ""),
            ("mongodb://u:p@h:1/?directConnection=true&authSource=admin", "mongodb://h:1/?directConnection=true"),
            ("mongodb://u:p@h/?authSource=admin&authMechanism=SCRAM-SHA-256", "mongodb://h/"),
            ("mongodb://h/db?authMechanismProperties=X:Y&tls=true", "mongodb://h/db?tls=true"),
        ] {
            assert_eq!(without_credentials(uri), public, "{uri}");
        }
    }
}
