//! Helpers for tests that need a real server: each call gets fresh databases on the server
//! named by `ORGSVC_TEST_MONGODB_URI` (set by `make test`, which starts one).

pub mod application;
pub mod proxy;

use super::{MongoSettings, MongoStore};

/// The variable naming the test server.
pub const URI_VARIABLE: &str = "ORGSVC_TEST_MONGODB_URI";
/// The variable naming a second test server running as a standalone (no transactions).
pub const STANDALONE_URI_VARIABLE: &str = "ORGSVC_TEST_MONGODB_STANDALONE_URI";
/// The variable naming the test server that stands in for a second cluster.
pub const SECOND_URI_VARIABLE: &str = "ORGSVC_TEST_MONGODB_SECOND_URI";
/// The variable naming the test server that requires authentication, with the
/// credentials of its root user.
pub const AUTH_URI_VARIABLE: &str = "ORGSVC_TEST_MONGODB_AUTH_URI";
/// The name the tests give the second cluster.
pub const SECOND_CLUSTER: &str = "second";

/// Settings for fresh databases on the server in `variable`. Panics when the variable
/// is unset: the MongoDB suites must run, not be skipped.
pub fn fresh_settings(variable: &str) -> MongoSettings {
    let uri = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests with `make test`, which starts the SecantusDB test server")
    });
    let mut settings = MongoSettings::new(uri, format!("t{}", uuid::Uuid::new_v4().simple()));
    settings.server_selection_timeout = std::time::Duration::from_secs(10);
    settings
}

/// A new organization named `name` whose admin is `admin_email`, its collection named
/// by key, created now (to the millisecond), with a placeholder argon2id hash: the
/// fixture of this adapter's tests.
pub fn new_organization(name: &str, admin_email: &str) -> domain::NewOrganization {
    let name = domain::OrganizationName::parse(name).expect("a valid organization name");
    let admin = domain::NewAdmin {
        id: domain::AdminId::new(),
        email: domain::Email::parse(admin_email).expect("a valid email"),
        password_hash: domain::PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned())
            .expect("a PHC string"),
    };
    let created_at = domain::truncate_to_millis(chrono::Utc::now());
    domain::NewOrganization::new(domain::OrgId::new(), name, domain::CollectionNaming::Key, admin, created_at)
}

/// Stores `organizations` (placed `shared`: they need no tenant DDL) as active, with
/// their admins, in bulk writes straight to the master database, as the adapter stores
/// them: for benchmarks that need many organizations without the cost of creating each
/// one through the service.
pub async fn seed_shared_organizations(
    store: &MongoStore,
    organizations: &[domain::NewOrganization],
) -> anyhow::Result<()> {
    let mut orgs = Vec::with_capacity(organizations.len());
    let mut admins = Vec::with_capacity(organizations.len());
    let migrations: Vec<String> = crate::migrations::tenant_migrations()?.into_iter().map(|m| m.name).collect();
    for new in organizations {
        anyhow::ensure!(new.placement().kind == domain::PlacementKind::Shared, "only shared organizations");
        let (org, admin) = crate::documents::stored(new, store.tenants.name());
        let mut org = mongodb::bson::to_document(&org)?;
        org.insert("tenant_migrations", migrations.clone());
        orgs.push(org);
        admins.push(admin);
    }
    store.master.collection::<mongodb::bson::Document>("organizations").insert_many(orgs).await?;
    store.admins.insert_many(admins).await?;
    Ok(())
}

/// The schema validator of a collection, which must exist.
pub async fn validator(database: &mongodb::Database, collection: &str) -> Option<mongodb::bson::Document> {
    use futures::TryStreamExt;
    let spec = database
        .list_collections()
        .filter(mongodb::bson::doc! {"name": collection})
        .await
        .expect("list")
        .try_next()
        .await
        .expect("spec")
        .unwrap_or_else(|| panic!("the collection {collection} exists"));
    spec.options.validator
}

/// A migrated store on fresh databases of the replica-set test server.
pub async fn fresh_store() -> MongoStore {
    MongoStore::open(&fresh_settings(URI_VARIABLE)).await.expect("open the test store")
}

/// Settings for fresh databases on the server in `variable`, with the second test server
/// as the cluster [`SECOND_CLUSTER`].
pub fn fresh_settings_with_second_cluster(variable: &str) -> MongoSettings {
    let mut settings = fresh_settings(variable);
    let second = fresh_settings(SECOND_URI_VARIABLE).uri;
    settings.clusters = vec![(second_cluster(), second)];
    settings
}

/// The second cluster's name.
pub fn second_cluster() -> domain::ClusterName {
    domain::ClusterName::parse(SECOND_CLUSTER).expect("a valid cluster name")
}

/// A migrated store on fresh databases of the replica-set test server that also reaches
/// the second test server as the cluster [`SECOND_CLUSTER`].
pub async fn fresh_store_with_second_cluster() -> MongoStore {
    MongoStore::open(&fresh_settings_with_second_cluster(URI_VARIABLE)).await.expect("open the test store")
}

/// A migrated store on fresh databases of the standalone test server.
pub async fn fresh_standalone_store() -> MongoStore {
    MongoStore::open(&fresh_settings(STANDALONE_URI_VARIABLE)).await.expect("open the standalone test store")
}
