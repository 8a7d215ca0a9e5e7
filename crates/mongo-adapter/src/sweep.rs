//! Removing what no organization references, without reading every organization on every
//! reconciliation pass.
//!
//! Two mechanisms, at two frequencies:
//! - Tombstones, on every pass: when an organization's data is removed (a delete, the
//!   rollback of a create), the master database keeps a tombstone of where it was for
//!   [`TOMBSTONE_RETENTION`]. Each pass looks at the tombstones only (so its cost follows
//!   the recent removals, not the number of organizations) and removes whatever came back
//!   under a removed `database` or `shared` organization: a database recreated by a late
//!   command of a dead process, or documents an application wrote with its tenant id after
//!   the delete. Their database names and tenant ids are never reused, so nothing there
//!   can belong to a live organization.
//! - The full sweep, far less often (`ORGSVC_ORPHAN_SWEEP_INTERVAL_SECONDS`, and
//!   `orgsvc reconcile`): every cluster's tenant collections, every tenant id of every
//!   shared collection and every admin, each checked against the master database a page
//!   at a time, so that it never holds the whole organization list in memory.
//!
//! Databases named `orgsvc_t_<id>` that no organization and no tombstone of this
//! deployment knows are left alone: their names carry no deployment, and another
//! deployment sharing the cluster may own them.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use domain::{Placement, PlacementKind, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, doc};
use serde::{Deserialize, Serialize};

use crate::clusters::Cluster;
use crate::documents::{AdminDoc, OrgDoc};
use crate::errors::db;
use crate::{MongoStore, ReconcileReport};

/// How long a tombstone is kept: far beyond any lease, so that a late command of a dead
/// process finds one, and long enough to catch applications still writing for a while.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many names, tenant ids or admins the full sweep checks with one query.
const SWEEP_PAGE: usize = 1000;

/// Where a removed organization's data was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    database: String,
    placement: String,
    expires_at: bson::DateTime,
}

impl MongoStore {
    /// Records where a `database` or `shared` organization's data is before it is removed
    /// (idempotent: a repeated removal refreshes it).
    pub(crate) async fn record_tombstone(&self, org: &OrgDoc) -> Result<(), StoreError> {
        let Some(placement) = org.placement.clone() else { return Ok(()) };
        let retention = i64::try_from(TOMBSTONE_RETENTION.as_millis()).unwrap_or(i64::MAX);
        let tombstone = Tombstone {
            id: org.id.clone(),
            cluster: org.cluster.clone(),
            database: org.database.clone(),
            placement,
            expires_at: bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis().saturating_add(retention)),
        };
        db(self.tombstones.replace_one(doc! {"_id": &org.id}, &tombstone).upsert(true).await).map(drop)
    }

    /// Removes what came back under the tombstones: the tombstoned `database` organizations'
    /// databases (with their users), the tombstoned `shared` organizations' documents. A
    /// tombstone on a cluster that cannot be reached now is logged and tried again at the
    /// next pass; the others go on.
    pub(crate) async fn clear_tombstoned(&self, report: &mut ReconcileReport) -> anyhow::Result<()> {
        let mut tombstones = self.tombstones.find(doc! {}).await.context("reading tombstones")?;
        while let Some(tombstone) = tombstones.try_next().await.context("reading tombstones")? {
            if let Err(error) = self.clear_tombstone(&tombstone, report).await {
                tracing::warn!(
                    organization_id = %tombstone.id,
                    error = format!("{error:#}"),
                    "could not check a removed organization's data; will retry"
                );
            }
        }
        Ok(())
    }

    async fn clear_tombstone(&self, tombstone: &Tombstone, report: &mut ReconcileReport) -> anyhow::Result<()> {
        // An organization reappearing under a tombstoned id would be a bug elsewhere; its
        // data is not touched.
        if self.organizations.count_documents(doc! {"_id": &tombstone.id}).await? > 0 {
            return Ok(());
        }
        let cluster = self.cluster_named(tombstone.cluster.as_deref())?;
        if tombstone.placement == PlacementKind::Database.as_str() {
            let own = Placement::database_of(domain::OrgId::parse(&tombstone.id).context("tombstone id")?);
            if tombstone.database == own && !cluster.client.database(&own).list_collection_names().await?.is_empty() {
                cluster.drop_database_users(&own).await?;
                cluster.drop_database(&own).await?;
                report.orphan_databases_dropped.push(own);
            }
        } else if tombstone.placement == PlacementKind::Shared.as_str()
            && shared_documents_of(cluster, &tombstone.id).await?
        {
            cluster.delete_shared_documents(&tombstone.id, self.shared_delete_batch).await?;
            report.orphan_shared_tenants_removed.push(tombstone.id.clone());
        }
        Ok(())
    }

    /// The full orphan sweep: tenant collections, shared documents and admins that no
    /// organization references, on every cluster, a page at a time.
    /// A cluster that cannot be reached is reported under `needs_attention` and the sweep
    /// goes on with the others.
    pub async fn sweep_orphans(&self) -> anyhow::Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        for cluster in self.clusters.values() {
            let swept = async {
                self.sweep_collections(cluster, &mut report).await?;
                self.sweep_shared_documents(cluster, &mut report).await
            }
            .await;
            if let Err(error) = swept {
                report.needs_attention.push(format!("cluster {} could not be swept: {error:#}", cluster.name));
            }
        }
        self.sweep_admins(&mut report).await?;
        Ok(report)
    }

    /// Drops the tenant collections of a cluster's tenant database that no organization
    /// references. The names are listed before the organizations are read: an organization
    /// document is always written before its collection, so a name listed first whose
    /// organization is then missing really is an orphan.
    async fn sweep_collections(&self, cluster: &Cluster, report: &mut ReconcileReport) -> anyhow::Result<()> {
        let database = cluster.tenants.name();
        let names = cluster.tenant_collection_names(database).await?;
        self.failpoints.pass(crate::RECONCILE_AFTER_LISTING).await;
        for page in names.chunks(SWEEP_PAGE) {
            // Besides its own collection and a rename's target, a moving organization
            // references both sides of its move until the move has ended.
            let filter = doc! {"$or": [
                {"database": database, "collection": {"$in": page}},
                {"database": database, "op.to_collection": {"$in": page}},
                {"moving.to.database": database, "moving.to.collection": {"$in": page}},
                {"moving.from.database": database, "moving.from.collection": {"$in": page}},
            ]};
            let referencing: Vec<OrgDoc> = self.organizations.find(filter).await?.try_collect().await?;
            let referenced: HashSet<&str> = referencing
                .iter()
                .flat_map(|o| {
                    let own = (!o.is_shared() && o.database == database).then_some(o.collection.as_str());
                    let renamed = o.op.as_ref().and_then(|op| op.to_collection.as_deref());
                    let moved = o.moving.iter().flat_map(|m| [&m.to, &m.from]).filter_map(|side| {
                        (side.database == database && side.cluster == cluster.name.as_str())
                            .then_some(side.collection.as_str())
                    });
                    own.into_iter().chain(renamed).chain(moved)
                })
                .collect();
            for collection in page.iter().filter(|c| !referenced.contains(c.as_str())) {
                if self.drop_orphan_collection(cluster, database, collection).await? {
                    report.orphan_collections_dropped.push(collection.clone());
                }
            }
        }
        Ok(())
    }

    /// Removes the documents of a cluster's shared collection whose tenant id no
    /// organization has. Tenant ids are visited in order through the tenant index, one
    /// indexed query each, and checked a page at a time.
    async fn sweep_shared_documents(&self, cluster: &Cluster, report: &mut ReconcileReport) -> anyhow::Result<()> {
        let Some(shared) = cluster.shared_collection().await? else { return Ok(()) };
        let mut after = String::new();
        loop {
            let mut page = Vec::new();
            while page.len() < SWEEP_PAGE {
                let next = shared
                    .find_one(doc! {Placement::TENANT_FIELD: {"$gt": &after}})
                    .sort(doc! {Placement::TENANT_FIELD: 1, "_id": 1})
                    .projection(doc! {Placement::TENANT_FIELD: 1})
                    .await?;
                let Some(Bson::String(tenant)) = next.and_then(|d| d.get(Placement::TENANT_FIELD).cloned()) else {
                    break;
                };
                after.clone_from(&tenant);
                page.push(tenant);
            }
            if page.is_empty() {
                return Ok(());
            }
            let known: Vec<OrgDoc> = self.organizations.find(doc! {"_id": {"$in": &page}}).await?.try_collect().await?;
            let known: HashSet<&str> = known.iter().map(|o| o.id.as_str()).collect();
            for tenant in page.iter().filter(|t| !known.contains(t.as_str())) {
                cluster.delete_shared_documents(tenant, self.shared_delete_batch).await?;
                report.orphan_shared_tenants_removed.push(tenant.clone());
            }
        }
    }

    /// Removes admins whose organization does not exist, a page at a time.
    async fn sweep_admins(&self, report: &mut ReconcileReport) -> anyhow::Result<()> {
        let mut after = String::new();
        loop {
            let page: Vec<AdminDoc> = self
                .admins
                .find(doc! {"_id": {"$gt": &after}})
                .sort(doc! {"_id": 1})
                .limit(i64::try_from(SWEEP_PAGE).unwrap_or(i64::MAX))
                .await?
                .try_collect()
                .await?;
            let Some(last) = page.last() else { return Ok(()) };
            after.clone_from(&last.id);
            let ids: Vec<&str> = page.iter().map(|a| a.organization_id.as_str()).collect();
            let known: Vec<OrgDoc> = self.organizations.find(doc! {"_id": {"$in": &ids}}).await?.try_collect().await?;
            let known: HashSet<&str> = known.iter().map(|o| o.id.as_str()).collect();
            for admin in page.iter().filter(|a| !known.contains(a.organization_id.as_str())) {
                self.admins.delete_one(doc! {"_id": &admin.id, "organization_id": &admin.organization_id}).await?;
                report.orphan_admins_removed.push(admin.id.clone());
            }
        }
    }
}

/// Whether a cluster's shared collection holds any document of a tenant.
async fn shared_documents_of(cluster: &Cluster, tenant: &str) -> anyhow::Result<bool> {
    let Some(shared) = cluster.shared_collection().await? else { return Ok(false) };
    Ok(shared.find_one(doc! {Placement::TENANT_FIELD: tenant}).projection(doc! {"_id": 1}).await?.is_some())
}
