//! The storage ports on MongoDB.
//!
//! A master database holds two collections, `organizations` and `admins`, with unique
//! indexes on the organization keys and the admin emails; every organization has its own
//! tenant collection (`org_<key>` or `org_<id>`) in the tenant database.
//!
//! Create, rename and delete span several writes and DDL commands that MongoDB cannot put
//! in one transaction. Each one records its intent on the organization document (an `op`
//! with a claim token and a start time) before its first side effect and clears it with
//! its last step; the [`reconcile`](MongoStore::reconcile) pass finishes or rolls back
//! every operation abandoned for longer than the lease. See `docs/mongodb.md`.

mod clusters;
mod credentials;
mod documents;
mod errors;
mod failpoints;
mod jobs;
mod migrations;
mod moves;
mod operations;
mod reconcile;
mod schema;
mod security;
mod settings;
mod sweep;
mod tenants;

use std::time::Duration;

use anyhow::Context;
use mongodb::bson::doc;
use mongodb::{Client, Collection, Database};

pub use failpoints::{
    CREATE_STEPS, DELETE_STEPS, FailPoints, Pause, RECONCILE_AFTER_LISTING, SHARED_DELETE_STEP, UPDATE_STEPS,
};
pub use jobs::{CancelJobError, JobCounts, JobView};
pub use migrations::{
    Migration, MigrationProgress, MigrationReport, RekeyReport, Silent, TENANT_MIGRATION_STEP, TenantMigrationReport,
    master_migrations, tenant_migrations,
};
pub use moves::{MOVE_STEPS, RunUntil};
pub use reconcile::{Direction, ReconcileReport};
pub use schema::{shared_collection_options, tenant_collection_options};
pub use settings::MongoSettings;
pub use sweep::TOMBSTONE_RETENTION;

use clusters::{Cluster, Clusters};
use documents::{AdminDoc, OrgDoc};

/// The MongoDB store: organizations, admins and tenant collections.
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    master: Database,
    tenants: Database,
    organizations: Collection<OrgDoc>,
    admins: Collection<AdminDoc>,
    tombstones: Collection<sweep::Tombstone>,
    lease: Duration,
    transactions: bool,
    failpoints: FailPoints,
    /// Every deployment that holds tenant data, `main` included.
    clusters: Clusters,
    shared_delete_batch: u32,
    /// The lease of a job's runner.
    job_lease: domain::JobLease,
    /// How many documents a move copies and compares at a time.
    move_batch: u32,
    /// How long a moved organization's source is kept, fenced, after the switch.
    move_grace: Duration,
    /// A placement every new organization gets whatever it asked for, so that the test
    /// suites written for the default placement run on every placement.
    #[cfg(feature = "test-support")]
    forced_placement: Option<domain::Placement>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("master", &self.master.name())
            .field("tenants", &self.tenants.name())
            .field("transactions", &self.transactions)
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects lazily (the driver connects on first use, so the service can start while the
    /// database is down and become ready when it comes back).
    pub async fn connect(settings: &MongoSettings) -> anyhow::Result<Self> {
        let options = clusters::client_options(settings, &settings.uri, "ORGSVC_MONGODB_URI").await?;
        let client = Client::with_options(options).context("creating the MongoDB client")?;
        let master = client.database(&settings.database);
        let tenants = client.database(&settings.tenant_database);
        let failpoints = FailPoints::default();
        Ok(Self {
            clusters: clusters::connect_all(settings, &client, &failpoints).await?,
            shared_delete_batch: settings.shared_delete_batch,
            job_lease: settings.job_lease,
            move_batch: settings.move_batch,
            move_grace: settings.move_grace,
            organizations: master.collection("organizations"),
            admins: master.collection("admins"),
            tombstones: master.collection("tenant_tombstones"),
            client,
            master,
            tenants,
            lease: settings.lease,
            transactions: false,
            failpoints,
            #[cfg(feature = "test-support")]
            forced_placement: None,
        })
    }

    /// Connects, applies pending migrations and detects transaction support: what the
    /// service does at startup. Fails if the server cannot be reached.
    pub async fn open(settings: &MongoSettings) -> anyhow::Result<Self> {
        let mut store = Self::connect(settings).await?;
        store.detect_transactions().await?;
        store.migrate(master_migrations()?, false).await?;
        store.rekey_organizations().await?;
        Ok(store)
    }

    /// Multi-document transactions need a replica set or a sharded cluster.
    async fn detect_transactions(&mut self) -> anyhow::Result<()> {
        let hello = self.master.run_command(doc! {"hello": 1}).await.context("asking the server who it is")?;
        self.transactions = hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid");
        tracing::info!(transactions = self.transactions, "connected to MongoDB");
        Ok(())
    }

    /// Whether metadata writes use multi-document transactions.
    pub fn uses_transactions(&self) -> bool {
        self.transactions
    }

    /// This store with every new organization placed as `placement`, for running the suites
    /// written for the default placement on another one.
    #[cfg(feature = "test-support")]
    pub fn placing_every_organization(self, placement: domain::Placement) -> Self {
        Self { forced_placement: Some(placement), ..self }
    }

    /// Hooks that simulate a crash at a named step, for the crash-injection tests.
    pub fn failpoints(&self) -> &FailPoints {
        &self.failpoints
    }

    /// The master database.
    pub fn master(&self) -> &Database {
        &self.master
    }

    /// The database that holds the tenant collections.
    pub fn tenant_database(&self) -> &Database {
        &self.tenants
    }

    /// The client, for tests that need raw access.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The names of the clusters this store reaches, `main` first.
    pub fn cluster_names(&self) -> Vec<domain::ClusterName> {
        let mut names: Vec<_> = self.clusters.keys().cloned().collect();
        names.sort_by_key(|n| !n.is_main());
        names
    }

    /// The client of a cluster, for tests that need raw access to tenant data there.
    pub fn cluster_client(&self, name: &domain::ClusterName) -> Option<&Client> {
        self.clusters.get(name).map(|c| &c.client)
    }

    /// A cluster by name. An organization recorded on a cluster the settings no longer name
    /// cannot be reached: its operations are unavailable, the rest of the service is not.
    pub(crate) fn cluster(&self, name: &domain::ClusterName) -> Result<&Cluster, domain::StoreError> {
        self.clusters.get(name).ok_or_else(|| {
            domain::StoreError::Unavailable(anyhow::anyhow!("cluster {name} is not configured (ORGSVC_CLUSTERS)"))
        })
    }

    /// The cluster a stored `cluster` field names (absent: `main`).
    pub(crate) fn cluster_named(&self, stored: Option<&str>) -> Result<&Cluster, domain::StoreError> {
        let name = stored
            .map(domain::ClusterName::parse)
            .transpose()
            .map_err(|e| errors::unknown(anyhow::anyhow!("stored cluster name {stored:?}: {e}")))?
            .unwrap_or_default();
        self.cluster(&name)
    }

    /// The cluster holding an organization's tenant data.
    pub(crate) fn cluster_of(&self, org: &OrgDoc) -> Result<&Cluster, domain::StoreError> {
        self.cluster_named(org.cluster.as_deref())
    }
}

/// Helpers for tests that need a real server: each call gets fresh databases on the server
/// named by `ORGSVC_TEST_MONGODB_URI` (set by `make test`, which starts one).
#[cfg(feature = "test-support")]
pub mod test_support {
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
}
