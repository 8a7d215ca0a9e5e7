//! Organizations' tenant data on MongoDB: creating and removing it where the placement puts
//! it (which the multi-step operations and the reconciler sequence), and the tenant store
//! port.

use anyhow::anyhow;
use async_trait::async_trait;
use domain::{CollectionName, Organization, Placement, PlacementKind, StoreError, TenantLocation};
use mongodb::bson::{self, Document, doc};
use ports::TenantStore;

use crate::MongoStore;
use crate::documents::OrgDoc;
use crate::errors::{NAMESPACE_EXISTS, code, db, unknown};
use crate::schema::tenant_collection_options;

impl OrgDoc {
    /// Whether the organization's documents are in its cluster's shared collection.
    pub(crate) fn is_shared(&self) -> bool {
        self.placement.as_deref() == Some(PlacementKind::Shared.as_str())
    }

    /// Whether the organization has a database of its own (the `database` placement), which
    /// goes when its collection goes.
    pub(crate) fn has_own_database(&self) -> bool {
        self.placement.as_deref() == Some(PlacementKind::Database.as_str())
    }

    /// Whether a rename to `to` moves a collection: not under `shared`, where the
    /// collection name is only the name the data would get if the organization moved.
    pub(crate) fn rename_moves_collection(&self, to: &str) -> bool {
        !self.is_shared() && self.collection != to
    }
}

impl MongoStore {
    /// Removes an organization's tenant data wherever its placement keeps it: its
    /// collection, its database too under `database`, its documents in batches under
    /// `shared` (idempotent, so a reconciler may repeat it).
    pub(crate) async fn drop_tenant_data(&self, org: &OrgDoc) -> Result<(), StoreError> {
        let cluster = self.cluster_of(org)?;
        self.record_tombstone(org).await?;
        if org.is_shared() {
            return cluster.delete_shared_documents(&org.id, self.shared_delete_batch).await;
        }
        cluster.drop_collection(&org.database, &org.collection).await?;
        if org.has_own_database() {
            // Users are not dropped with their database: drop them first.
            cluster.drop_database_users(&org.database).await?;
            cluster.drop_database(&org.database).await?;
        }
        Ok(())
    }

    /// Creates a new organization's tenant collection with the tenant schema. A collection
    /// of that name that no other organization references is a leftover the reconciler has
    /// not removed yet (an orphan): this organization holds the key through the unique
    /// index, so nobody else can claim the name meanwhile, and it drops the leftover itself
    /// instead of failing the request.
    pub(crate) async fn create_tenant_collection(&self, org: &OrgDoc) -> Result<(), StoreError> {
        let cluster = self.cluster_of(org)?;
        let create = || {
            let mut command = doc! {"create": &org.collection};
            command.extend(tenant_collection_options());
            cluster.command(&org.database, command)
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
                cluster.drop_collection(&org.database, &org.collection).await?;
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
            "placement": {"$ne": PlacementKind::Shared.as_str()},
            "$or": [{"collection": collection}, {"op.to_collection": collection}],
        };
        Ok(db(self.organizations.count_documents(filter).await)? > 0)
    }

    /// Where an organization's data is, on its cluster.
    fn locate(&self, org: &Organization) -> Result<(&crate::Cluster, TenantLocation), StoreError> {
        let cluster = self.cluster(&org.placement.cluster)?;
        Ok((cluster, TenantLocation::of(org, cluster.public_uri.clone(), cluster.tenants.name())))
    }
}

#[async_trait]
impl TenantStore for MongoStore {
    /// The tenant collections of every cluster's shared tenant database and of every
    /// organization's own database.
    async fn tenant_collections(&self) -> Result<Vec<CollectionName>, StoreError> {
        let mut names = Vec::new();
        for cluster in self.clusters.values() {
            names.extend(cluster.tenant_collection_names(cluster.tenants.name()).await?);
        }
        let own: Vec<OrgDoc> = {
            use futures::TryStreamExt;
            db(db(self.organizations.find(doc! {"placement": "database"}).await)?.try_collect().await)?
        };
        let mut databases: Vec<(Option<&str>, &str)> =
            own.iter().map(|org| (org.cluster.as_deref(), org.database.as_str())).collect();
        databases.sort();
        databases.dedup();
        for (cluster, database) in databases {
            names.extend(self.cluster_named(cluster)?.tenant_collection_names(database).await?);
        }
        let mut collections =
            names.iter().map(|n| CollectionName::parse(n).map_err(unknown)).collect::<Result<Vec<_>, _>>()?;
        collections.sort();
        Ok(collections)
    }

    async fn insert_documents(&self, org: &Organization, documents: Vec<serde_json::Value>) -> Result<(), StoreError> {
        if documents.is_empty() {
            return Ok(());
        }
        let (cluster, location) = self.locate(org)?;
        let mut documents =
            documents.iter().map(|d| bson::to_document(d).map_err(unknown)).collect::<Result<Vec<_>, _>>()?;
        if let Some((field, value)) = &location.tenant_filter {
            cluster.ensure_shared_collection(self.tenant_migrations_in_force()).await?;
            for document in &mut documents {
                document.insert(field.as_str(), value.as_str());
            }
        }
        cluster.insert_documents(&location.database, &location.collection, documents).await
    }

    async fn documents(&self, org: &Organization) -> Result<Vec<serde_json::Value>, StoreError> {
        let (cluster, location) = self.locate(org)?;
        let filter = match &location.tenant_filter {
            Some((field, value)) => doc! {field.as_str(): value.as_str()},
            None => Document::new(),
        };
        let documents = cluster.find_documents(&location.database, &location.collection, filter).await?;
        Ok(documents
            .into_iter()
            .map(|mut d| {
                d.remove("_id");
                if location.tenant_filter.is_some() {
                    d.remove(Placement::TENANT_FIELD);
                }
                bson::Bson::Document(d).into_relaxed_extjson()
            })
            .collect())
    }
}
