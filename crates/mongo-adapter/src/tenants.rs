//! Tenant collections on MongoDB: their DDL (create with the tenant schema, rename, drop),
//! which the multi-step operations and the reconciler sequence, and the tenant store port.

use anyhow::anyhow;
use async_trait::async_trait;
use domain::{CollectionName, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use ports::TenantStore;

use crate::MongoStore;
use crate::documents::OrgDoc;
use crate::errors::{NAMESPACE_EXISTS, NAMESPACE_NOT_FOUND, code, db, store_error, unknown};
use crate::schema::tenant_collection_options;

impl MongoStore {
    /// Removes an organization's tenant data: its collection, and under the `database`
    /// placement its database too (idempotent, so a reconciler may repeat it).
    pub(crate) async fn drop_tenant_data(&self, org: &OrgDoc) -> Result<(), StoreError> {
        self.drop_collection(&org.database, &org.collection).await?;
        if self.is_own_database(&org.database) {
            let mut command = doc! {"dropDatabase": 1};
            command.insert("maxTimeMS", self.max_time_ms());
            db(self.client.database(&org.database).run_command(command).await)?;
        }
        Ok(())
    }

    /// The database holding a tenant collection: an organization's own when one with the
    /// `database` placement names it, else the shared tenant database.
    async fn database_of_collection(&self, collection: &CollectionName) -> Result<String, StoreError> {
        let filter = doc! {"collection": collection.as_str(), "placement": "database"};
        let own = db(self.organizations.find_one(filter).await)?;
        Ok(own.map_or_else(|| self.tenants.name().to_owned(), |org| org.database))
    }

    pub(crate) async fn drop_collection(&self, database: &str, collection: &str) -> Result<(), StoreError> {
        let mut command = doc! {"drop": collection};
        command.insert("maxTimeMS", self.max_time_ms());
        match self.client.database(database).run_command(command).await {
            Err(e) if code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
            other => db(other).map(drop),
        }
    }

    /// Renames a tenant collection and applies the tenant schema to it again. Never with
    /// `dropTarget`: a rename onto an existing collection must fail rather than destroy it.
    pub(crate) async fn rename_collection(
        &self,
        database: &str,
        from: &str,
        to: &str,
    ) -> Result<Result<(), mongodb::error::Error>, StoreError> {
        match self
            .admin_command(doc! {"renameCollection": format!("{database}.{from}"), "to": format!("{database}.{to}")})
            .await
        {
            Ok(_) => {
                self.step("update:before_collection_schema").await?;
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
        command.insert("maxTimeMS", self.max_time_ms());
        db(self.client.database(database).run_command(command).await).map(drop)
    }

    /// Creates a tenant collection with the tenant schema, or applies the schema if it
    /// exists already (idempotent).
    pub(crate) async fn create_collection_with_schema(
        &self,
        database: &str,
        collection: &str,
    ) -> Result<(), StoreError> {
        let mut command = doc! {"create": collection};
        command.extend(tenant_collection_options());
        command.insert("maxTimeMS", self.max_time_ms());
        match self.client.database(database).run_command(command).await {
            Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => self.ensure_tenant_schema(database, collection).await,
            other => db(other).map(drop),
        }
    }

    pub(crate) async fn collection_exists(&self, database: &str, collection: &str) -> Result<bool, StoreError> {
        let names = db(self.client.database(database).list_collection_names().filter(doc! {"name": collection}).await)?;
        Ok(!names.is_empty())
    }

    /// Creates a new organization's tenant collection with the tenant schema. A collection
    /// of that name that no other organization references is a leftover the reconciler has
    /// not removed yet (an orphan): this organization holds the key through the unique
    /// index, so nobody else can claim the name meanwhile, and it drops the leftover itself
    /// instead of failing the request.
    pub(crate) async fn create_tenant_collection(&self, org: &OrgDoc) -> Result<(), StoreError> {
        let create = || {
            let mut command = doc! {"create": &org.collection};
            command.extend(tenant_collection_options());
            self.tenant_command(&org.database, command)
        };
        match create().await {
            Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => {
                if self.collection_referenced(&org.database, &org.collection, &org.id).await? {
                    return Err(unknown(anyhow!(
                        "tenant collection {} belongs to another organization; naming settings changed?",
                        org.collection
                    )));
                }
                tracing::warn!(collection = %org.collection, "dropping a leftover tenant collection to reuse its name");
                self.drop_collection(&org.database, &org.collection).await?;
                db(create().await).map(drop)
            }
            other => db(other).map(drop),
        }
    }

    /// Whether an organization other than `except` holds the tenant collection, or is
    /// moving its collection there.
    pub(crate) async fn collection_referenced(
        &self,
        database: &str,
        collection: &str,
        except: &str,
    ) -> Result<bool, StoreError> {
        let filter = doc! {
            "_id": {"$ne": except},
            "database": database,
            "$or": [{"collection": collection}, {"op.to_collection": collection}],
        };
        Ok(db(self.organizations.count_documents(filter).await)? > 0)
    }
}

#[async_trait]
impl TenantStore for MongoStore {
    /// The tenant collections of the shared tenant database and of every organization's own
    /// database.
    async fn tenant_collections(&self) -> Result<Vec<CollectionName>, StoreError> {
        let tenant_collections = doc! {"name": {"$regex": "^org_"}};
        let mut names = db(self.tenants.list_collection_names().filter(tenant_collections.clone()).await)?;
        let own: Vec<OrgDoc> =
            db(db(self.organizations.find(doc! {"placement": "database"}).await)?.try_collect().await)?;
        for database in own.iter().map(|org| org.database.as_str()).collect::<std::collections::BTreeSet<_>>() {
            names.extend(db(self
                .client
                .database(database)
                .list_collection_names()
                .filter(tenant_collections.clone())
                .await)?);
        }
        let mut collections =
            names.iter().map(|n| CollectionName::parse(n).map_err(unknown)).collect::<Result<Vec<_>, _>>()?;
        collections.sort();
        Ok(collections)
    }

    async fn insert_documents(
        &self,
        collection: &CollectionName,
        documents: Vec<serde_json::Value>,
    ) -> Result<(), StoreError> {
        if documents.is_empty() {
            return Ok(());
        }
        let documents =
            documents.iter().map(|d| bson::to_document(d).map_err(unknown)).collect::<Result<Vec<_>, _>>()?;
        let database = self.database_of_collection(collection).await?;
        let target = self.client.database(&database).collection::<Document>(collection.as_str());
        db(target.insert_many(documents).await).map(drop)
    }

    async fn documents(&self, collection: &CollectionName) -> Result<Vec<serde_json::Value>, StoreError> {
        let database = self.database_of_collection(collection).await?;
        let source = self.client.database(&database).collection::<Document>(collection.as_str());
        let cursor = db(source.find(doc! {}).sort(doc! {"_id": 1}).await)?;
        let documents: Vec<Document> = db(cursor.try_collect().await)?;
        Ok(documents
            .into_iter()
            .map(|mut d| {
                d.remove("_id");
                bson::Bson::Document(d).into_relaxed_extjson()
            })
            .collect())
    }
}
