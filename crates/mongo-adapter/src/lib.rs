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

mod api_keys;
pub mod cache;
mod clusters;
mod credentials;
mod documents;
mod errors;
mod failpoints;
mod jobs;
mod migrations;
mod moves;
mod operations;
pub mod pool;
mod reconcile;
mod schema;
mod security;
mod settings;
mod sweep;
mod tenant_jobs;
mod tenants;
mod tiering;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mongodb::bson::doc;
use mongodb::{Client, Collection, Database};

pub use cache::{CacheSettings, CacheSnapshot, CachedStore};
pub use failpoints::{
    CREATE_STEPS, DELETE_STEPS, FailPoints, Pause, RECONCILE_AFTER_LISTING, SHARED_DELETE_STEP, UPDATE_STEPS,
};
pub use jobs::{CancelJobError, JobCounts, JobView};
pub use migrations::{
    Migration, MigrationProgress, MigrationReport, RekeyReport, Silent, TENANT_MIGRATION_STEP, TenantMigrationReport,
    master_migrations, tenant_migrations,
};
pub use moves::{MOVE_STEPS, RunUntil};
pub use pool::PoolSnapshot;
pub use reconcile::{Direction, ReconcileReport};
pub use schema::{shared_collection_options, tenant_collection_options};
pub use settings::MongoSettings;
pub use sweep::TOMBSTONE_RETENTION;
pub use tenant_jobs::{MigrationJob, RollbackError};
pub use tiering::TieringReport;

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
    /// Seals tenant users' passwords (so that moves can carry the users to other clusters)
    /// and webhook signing secrets; none without a sealing key.
    vault: Option<Arc<dyn ports::CredentialVault>>,
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
        let pool = Arc::new(pool::PoolStats::default());
        let options = clusters::client_options(settings, &settings.uri, "ORGSVC_MONGODB_URI", &pool).await?;
        let client = Client::with_options(options).context("creating the MongoDB client")?;
        let master = client.database(&settings.database);
        let tenants = client.database(&settings.tenant_database);
        let failpoints = FailPoints::default();
        Ok(Self {
            clusters: clusters::connect_all(settings, (&client, &pool), &failpoints).await?,
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
            vault: None,
            #[cfg(feature = "test-support")]
            forced_placement: None,
        })
    }

    /// This store with a vault: tenant users' passwords are kept sealed, and a move to a
    /// database of the organization's own on another cluster recreates its user there with
    /// the same password (without one, a move drops the user with the source); webhook
    /// signing secrets are stored sealed instead of in clear.
    pub fn with_vault(self, vault: Arc<dyn ports::CredentialVault>) -> Self {
        Self { vault: Some(vault), ..self }
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

    /// What each cluster's connection pool did so far, by cluster, `main` first.
    pub fn pool_stats(&self) -> Vec<(domain::ClusterName, PoolSnapshot)> {
        let mut stats: Vec<_> = self.clusters.values().map(|c| (c.name.clone(), c.pool.snapshot())).collect();
        stats.sort_by_key(|(name, _)| *name != domain::ClusterName::main());
        stats
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

#[cfg(feature = "test-support")]
pub mod test_support;
