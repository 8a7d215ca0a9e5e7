//! The deployments that hold tenant data: the main one (which also holds the master
//! database) and the others the operator named, each with its own connection pool. The DDL
//! of tenant collections and the shared collection runs here, on the organization's
//! cluster; the master database's writes that sequence it stay with the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use domain::{ClusterName, Placement, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Database, IndexModel};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::errors::{NAMESPACE_EXISTS, NAMESPACE_NOT_FOUND, code, db, store_error, unknown};
use crate::failpoints::{FailPoints, SHARED_DELETE_STEP};
use crate::migrations::Migration;
use crate::pool::PoolStats;
use crate::schema::{shared_collection_options, tenant_collection_options};
use crate::settings::{MongoSettings, without_credentials};

/// The index of the shared collection that every tenant query and the batched delete use.
const SHARED_TENANT_INDEX: &str = "tenant_id_id";

/// One deployment holding tenant data.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The operator's name for it.
    pub(crate) name: ClusterName,
    /// Its own connection pool.
    pub(crate) client: Client,
    /// The shared tenant database on this cluster (the same name on every cluster).
    pub(crate) tenants: Database,
    /// The connection string without credentials, as tenants' applications are given it.
    pub(crate) public_uri: String,
    /// What its connection pool did, for `/metrics`.
    pub(crate) pool: Arc<PoolStats>,
    command_timeout: Duration,
    failpoints: FailPoints,
    /// The tenant migrations the shared collection has, once this process made sure it
    /// exists with its schema and index. Set lazily, so that a cluster that is unreachable
    /// at startup fails only its own tenants' operations.
    shared_ready: OnceCell<Vec<String>>,
}

/// Every cluster by name, `main` included.
pub(crate) type Clusters = Arc<BTreeMap<ClusterName, Cluster>>;

/// The client options every cluster's pool gets from the settings, its events counted in
/// `pool`.
pub(crate) async fn client_options(
    settings: &MongoSettings,
    uri: &SecretString,
    variable: &str,
    pool: &Arc<PoolStats>,
) -> anyhow::Result<ClientOptions> {
    // The error of a bad URI is not shown: it could quote the credentials in it.
    let mut options = ClientOptions::parse(uri.expose_secret())
        .await
        .map_err(|_| anyhow!("{variable} is not a valid MongoDB connection string"))?;
    options.app_name = Some(settings.app_name.clone());
    options.max_pool_size = Some(settings.max_pool_size);
    options.min_pool_size = Some(settings.min_pool_size);
    options.connect_timeout = Some(settings.connect_timeout);
    options.server_selection_timeout = Some(settings.server_selection_timeout);
    options.retry_writes = Some(settings.retry_writes);
    options.retry_reads = Some(true);
    if settings.write_concern_majority {
        options.write_concern = Some(WriteConcern::majority());
    }
    let pool = Arc::clone(pool);
    options.cmap_event_handler = Some(EventHandler::callback(move |event| pool.observe(&event)));
    Ok(options)
}

/// Connects lazily to every cluster: `main` with the client of the master database, the
/// others with pools of their own.
pub(crate) async fn connect_all(
    settings: &MongoSettings,
    main: (&Client, &Arc<PoolStats>),
    failpoints: &FailPoints,
) -> anyhow::Result<Clusters> {
    let cluster = |name: ClusterName, client: Client, uri: &SecretString, pool: Arc<PoolStats>| Cluster {
        pool,
        name,
        tenants: client.database(&settings.tenant_database),
        client,
        public_uri: without_credentials(uri.expose_secret()),
        command_timeout: settings.command_timeout,
        failpoints: failpoints.clone(),
        shared_ready: OnceCell::new(),
    };
    let mut all = BTreeMap::new();
    let (main, main_pool) = main;
    all.insert(ClusterName::main(), cluster(ClusterName::main(), main.clone(), &settings.uri, Arc::clone(main_pool)));
    for (name, uri) in &settings.clusters {
        let pool = Arc::new(PoolStats::default());
        let options = client_options(settings, uri, &format!("the URI of cluster {name}"), &pool).await?;
        let client = Client::with_options(options).with_context(|| format!("creating the client of cluster {name}"))?;
        all.insert(name.clone(), cluster(name.clone(), client, uri, pool));
    }
    Ok(Arc::new(all))
}

impl Cluster {
    /// The server-side time limit of this cluster's DDL commands.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    fn max_time_ms(&self) -> i64 {
        i64::try_from(self.command_timeout.as_millis()).unwrap_or(i64::MAX)
    }

    /// Runs a DDL command on a database of this cluster with a server-side time limit, so
    /// that a command sent by a process that then died cannot execute after the lease
    /// expired.
    pub(crate) async fn command(&self, database: &str, mut command: Document) -> mongodb::error::Result<Document> {
        command.insert("maxTimeMS", self.max_time_ms());
        self.client.database(database).run_command(command).await
    }

    /// Drops a collection; one that is not there is already dropped.
    pub(crate) async fn drop_collection(&self, database: &str, collection: &str) -> Result<(), StoreError> {
        match self.command(database, doc! {"drop": collection}).await {
            Err(e) if code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
            other => db(other).map(drop),
        }
    }

    /// Drops a whole database (an organization's own).
    pub(crate) async fn drop_database(&self, database: &str) -> Result<(), StoreError> {
        db(self.command(database, doc! {"dropDatabase": 1}).await).map(drop)
    }

    /// Renames a tenant collection and applies the tenant schema to it again. Never with
    /// `dropTarget`: a rename onto an existing collection must fail rather than destroy it.
    pub(crate) async fn rename_collection(
        &self,
        database: &str,
        from: &str,
        to: &str,
    ) -> Result<Result<(), mongodb::error::Error>, StoreError> {
        let rename = doc! {"renameCollection": format!("{database}.{from}"), "to": format!("{database}.{to}")};
        match self.command("admin", rename).await {
            Ok(_) => {
                self.failpoints.step("update:before_collection_schema").await?;
                self.ensure_tenant_schema(database, to).await?;
                Ok(Ok(()))
            }
            Err(e) if matches!(code(&e), Some(NAMESPACE_EXISTS | NAMESPACE_NOT_FOUND)) => Ok(Err(e)),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Applies the tenant schema to an existing collection (idempotent).
    pub(crate) async fn ensure_tenant_schema(&self, database: &str, collection: &str) -> Result<(), StoreError> {
        let mut command = doc! {"collMod": collection};
        command.extend(tenant_collection_options());
        db(self.command(database, command).await).map(drop)
    }

    /// Creates a collection with `options`, or applies them if it exists already
    /// (idempotent).
    async fn create_with_options(&self, database: &str, collection: &str, options: Document) -> Result<(), StoreError> {
        let mut command = doc! {"create": collection};
        command.extend(options.clone());
        match self.command(database, command).await {
            Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => {
                let mut command = doc! {"collMod": collection};
                command.extend(options);
                db(self.command(database, command).await).map(drop)
            }
            other => db(other).map(drop),
        }
    }

    /// Creates a tenant collection with the tenant schema, or applies the schema if it
    /// exists already (idempotent).
    pub(crate) async fn create_collection_with_schema(
        &self,
        database: &str,
        collection: &str,
    ) -> Result<(), StoreError> {
        self.create_with_options(database, collection, tenant_collection_options()).await
    }

    /// Whether a collection exists.
    pub(crate) async fn collection_exists(&self, database: &str, collection: &str) -> Result<bool, StoreError> {
        let names = db(self.client.database(database).list_collection_names().filter(doc! {"name": collection}).await)?;
        Ok(!names.is_empty())
    }

    /// The tenant collections (`org_*`) of a database.
    pub(crate) async fn tenant_collection_names(&self, database: &str) -> Result<Vec<String>, StoreError> {
        db(self.client.database(database).list_collection_names().filter(doc! {"name": {"$regex": "^org_"}}).await)
    }

    /// Runs a tenant migration's commands on one collection.
    pub(crate) async fn apply_tenant_commands(
        &self,
        database: &str,
        collection: &str,
        commands: &[Document],
    ) -> anyhow::Result<()> {
        for command in commands {
            let mut command = Bson::Document(command.clone());
            crate::migrations::for_collection(&mut command, collection);
            let Bson::Document(command) = command else { unreachable!("a document stays a document") };
            self.client.database(database).run_command(command).await?;
        }
        Ok(())
    }

    /// Applies `migrations` (the tenant migrations in force) to a collection and returns
    /// their names, to be recorded with the organizations it holds.
    pub(crate) async fn initialize_tenant_collection(
        &self,
        database: &str,
        collection: &str,
        migrations: &[Migration],
    ) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::with_capacity(migrations.len());
        for migration in migrations {
            self.apply_tenant_commands(database, collection, &migration.commands()?).await?;
            names.push(migration.name.clone());
        }
        Ok(names)
    }

    /// Makes sure this cluster's shared collection exists with its schema, its tenant index
    /// and the tenant migrations in force (`in_force`, awaited only the first time), once
    /// per process; returns the migrations it got. All of it is idempotent, so instances
    /// starting together may all do it.
    pub(crate) async fn ensure_shared_collection(
        &self,
        in_force: impl Future<Output = Result<Vec<Migration>, StoreError>>,
    ) -> Result<&[String], StoreError> {
        let migrations = self
            .shared_ready
            .get_or_try_init(|| async {
                let in_force = in_force.await?;
                let database = self.tenants.name();
                let shared = Placement::SHARED_COLLECTION;
                let mut create = doc! {"create": shared};
                create.extend(shared_collection_options());
                match self.command(database, create).await {
                    // An existing one gets the schema again through the fence lock, so that
                    // the fences of moves in progress stay up.
                    Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => {
                        self.apply_shared_validator().await.map_err(unknown)?;
                    }
                    other => db(other).map(drop)?,
                }
                let index = IndexModel::builder()
                    .keys(doc! {Placement::TENANT_FIELD: 1, "_id": 1})
                    .options(IndexOptions::builder().name(SHARED_TENANT_INDEX.to_owned()).build())
                    .build();
                db(self.tenants.collection::<Document>(shared).create_index(index).await)?;
                self.initialize_tenant_collection(database, shared, &in_force).await.map_err(unknown)
            })
            .await?;
        Ok(migrations)
    }

    /// Deletes a `shared` organization's documents in batches of `batch`, in `_id` order
    /// through the tenant index, so that no single write grows with the tenant. Each batch
    /// is a step: a delete stopped between batches resumes with the next one.
    pub(crate) async fn delete_shared_documents(&self, tenant_id: &str, batch: u32) -> Result<(), StoreError> {
        let Some(shared) = self.shared_collection().await? else { return Ok(()) };
        loop {
            let ids: Vec<Bson> = db(db(shared
                .find(doc! {Placement::TENANT_FIELD: tenant_id})
                .projection(doc! {"_id": 1})
                .sort(doc! {"_id": 1})
                .limit(i64::from(batch.max(1)))
                .await)?
            .try_collect::<Vec<Document>>()
            .await)?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
            if ids.is_empty() {
                return Ok(());
            }
            db(shared.delete_many(doc! {Placement::TENANT_FIELD: tenant_id, "_id": {"$in": ids}}).await)?;
            self.failpoints.step(SHARED_DELETE_STEP).await?;
        }
    }

    /// This cluster's shared collection, if it exists: reading one that does not would
    /// not create it, but the callers need not query it at all then.
    pub(crate) async fn shared_collection(&self) -> Result<Option<mongodb::Collection<Document>>, StoreError> {
        let exists = self.collection_exists(self.tenants.name(), Placement::SHARED_COLLECTION).await?;
        Ok(exists.then(|| self.tenants.collection::<Document>(Placement::SHARED_COLLECTION)))
    }

    /// The documents of a collection in `_id` order, matching `filter`.
    pub(crate) async fn find_documents(
        &self,
        database: &str,
        collection: &str,
        filter: Document,
    ) -> Result<Vec<Document>, StoreError> {
        let source = self.client.database(database).collection::<Document>(collection);
        db(db(source.find(filter).sort(doc! {"_id": 1}).await)?.try_collect().await)
    }

    /// Inserts documents into a collection.
    pub(crate) async fn insert_documents(
        &self,
        database: &str,
        collection: &str,
        documents: Vec<Document>,
    ) -> Result<(), StoreError> {
        let target = self.client.database(database).collection::<Document>(collection);
        db(target.insert_many(documents).await).map(drop)
    }
}
