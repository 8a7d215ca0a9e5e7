//! The reconciler: finishes or rolls back every operation abandoned for longer than the
//! lease, then removes what no organization references. Every step is idempotent, so a
//! crash during reconciliation is repaired by the next run, and several instances may run
//! it at once: an operation is taken over by replacing its claim token with a conditional
//! update, which only one of them can win.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{self, doc};
use uuid::Uuid;

use crate::MongoStore;
use crate::documents::{AdminDoc, OpDoc, OpKind, OrgDoc, State};
use crate::errors::is_duplicate_key;

/// What a reconciliation pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Interrupted creates undone (organization ids).
    pub creates_rolled_back: Vec<String>,
    /// Interrupted updates finished.
    pub updates_rolled_forward: Vec<String>,
    /// Interrupted updates undone.
    pub updates_rolled_back: Vec<String>,
    /// Interrupted deletes finished.
    pub deletes_finished: Vec<String>,
    /// Tenant collections that no organization referenced, dropped.
    pub orphan_collections_dropped: Vec<String>,
    /// Admins whose organization did not exist, removed.
    pub orphan_admins_removed: Vec<String>,
    /// Operations left alone because the collections are in a state no step explains
    /// (both or neither of a rename's collections exist): an operator must look.
    pub needs_attention: Vec<String>,
}

impl ReconcileReport {
    /// Whether the pass changed nothing and found nothing to report.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines = [
            ("creates rolled back", &self.creates_rolled_back),
            ("updates rolled forward", &self.updates_rolled_forward),
            ("updates rolled back", &self.updates_rolled_back),
            ("deletes finished", &self.deletes_finished),
            ("orphan collections dropped", &self.orphan_collections_dropped),
            ("orphan admins removed", &self.orphan_admins_removed),
            ("NEEDS ATTENTION", &self.needs_attention),
        ];
        for (label, items) in lines {
            writeln!(f, "{label}: {}", if items.is_empty() { "none".to_owned() } else { items.join(", ") })?;
        }
        Ok(())
    }
}

impl MongoStore {
    /// Reconciles operations abandoned for longer than the configured lease.
    pub async fn reconcile(&self) -> anyhow::Result<ReconcileReport> {
        self.reconcile_with_lease(self.lease).await
    }

    /// Reconciles operations abandoned for longer than `lease` (tests use zero).
    pub async fn reconcile_with_lease(&self, lease: Duration) -> anyhow::Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let cutoff = bson::DateTime::from_millis(
            bson::DateTime::now().timestamp_millis() - i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
        );
        let stale: Vec<OrgDoc> = self
            .organizations
            .find(doc! {"op.started_at": {"$lte": cutoff}})
            .await
            .context("finding interrupted operations")?
            .try_collect()
            .await
            .context("reading interrupted operations")?;
        for org in stale {
            let Some(op) = org.op.clone() else { continue };
            let Some(token) = self.take_over(&org, &op, cutoff).await? else { continue };
            match op.kind {
                OpKind::Create => {
                    self.roll_back_create(&org, &token).await?;
                    report.creates_rolled_back.push(org.id.clone());
                }
                OpKind::Delete => {
                    self.finish_delete(&org, &token).await?;
                    report.deletes_finished.push(org.id.clone());
                }
                OpKind::Update => self.resolve_update(&org, &op, &token, &mut report).await?,
            }
            tracing::warn!(organization_id = %org.id, kind = ?op.kind, "reconciled an interrupted operation");
        }
        self.remove_orphans(&mut report).await?;
        if !report.needs_attention.is_empty() {
            tracing::error!(items = ?report.needs_attention, "reconciliation found operations it cannot resolve");
        }
        Ok(report)
    }

    /// Claims an abandoned operation by replacing its token; `None` if someone else did.
    async fn take_over(&self, org: &OrgDoc, op: &OpDoc, cutoff: bson::DateTime) -> anyhow::Result<Option<String>> {
        let token = Uuid::new_v4().to_string();
        let result = self
            .organizations
            .update_one(
                doc! {"_id": &org.id, "op.token": &op.token, "op.started_at": {"$lte": cutoff}},
                doc! {"$set": {"op.token": &token, "op.started_at": bson::DateTime::now()}},
            )
            .await
            .context("claiming an interrupted operation")?;
        Ok((result.modified_count == 1).then_some(token))
    }

    /// An update is rolled forward once its admin changes are applied (or it has none), and
    /// rolled back before; the tenant collection follows.
    async fn resolve_update(
        &self,
        org: &OrgDoc,
        op: &OpDoc,
        token: &str,
        report: &mut ReconcileReport,
    ) -> anyhow::Result<()> {
        let admin: Option<AdminDoc> = self.admins.find_one(doc! {"_id": &org.admin_id}).await?;
        let applied = !op.has_admin_changes()
            || admin.is_some_and(|a| {
                op.new_email.as_ref().is_none_or(|e| *e == a.email)
                    && op.new_password_hash.as_ref().is_none_or(|h| *h == a.password_hash)
            });
        let from = org.collection.as_str();
        let to = op.to_collection.as_deref().unwrap_or(from);
        if from != to {
            let old_exists = self.collection_exists(&org.database, from).await?;
            let new_exists = self.collection_exists(&org.database, to).await?;
            let (source, target, needed) = if applied { (from, to, old_exists) } else { (to, from, new_exists) };
            match (old_exists, new_exists) {
                (true, false) | (false, true) => {
                    if needed {
                        self.rename_collection(&org.database, source, target)
                            .await?
                            .with_context(|| format!("moving {source} to {target}"))?;
                    } else {
                        // The move happened but the crash may have come before its schema
                        // was applied again.
                        self.ensure_tenant_schema(&org.database, target).await?;
                    }
                }
                _ => {
                    report.needs_attention.push(format!(
                        "organization {}: rename {from} -> {to} with {} of the collections present",
                        org.id,
                        if old_exists { "both" } else { "neither" }
                    ));
                    return Ok(());
                }
            }
        }
        if applied {
            self.commit_update(org, op, token).await?;
            report.updates_rolled_forward.push(org.id.clone());
        } else {
            self.release_update(org, token).await?;
            report.updates_rolled_back.push(org.id.clone());
        }
        Ok(())
    }

    /// Drops a tenant collection that no organization referenced when the organizations
    /// were listed, unless one does by now. Between that listing and the drop, a create on
    /// another instance could take the name and create the collection anew; so the drop runs
    /// as the delete of a placeholder organization that first reserves the collection's key
    /// through the unique index (a concurrent create or rename onto that name gets 409 for
    /// this moment) and records the intent, so a crash here is finished by the next pass.
    /// Returns whether the collection was dropped.
    async fn drop_orphan_collection(&self, database: &str, collection: &str) -> anyhow::Result<bool> {
        let key = collection.strip_prefix("org_").unwrap_or(collection).to_owned();
        let token = Uuid::new_v4().to_string();
        let now = bson::DateTime::now();
        let placeholder = OrgDoc {
            id: Uuid::new_v4().to_string(),
            name: collection.to_owned(),
            key: key.clone(),
            keys: vec![key],
            collection: collection.to_owned(),
            database: database.to_owned(),
            admin_id: Uuid::new_v4().to_string(),
            state: State::Deleting,
            op: Some(OpDoc::new(OpKind::Delete, &token)),
            created_at: now,
            updated_at: now,
        };
        match self.organizations.insert_one(&placeholder).await {
            Err(e) if is_duplicate_key(&e) => return Ok(false),
            other => other.with_context(|| format!("reserving orphan collection {collection}"))?,
        };
        if self.collection_referenced(database, collection, &placeholder.id).await? {
            self.organizations.delete_one(doc! {"_id": &placeholder.id, "op.token": &token}).await?;
            return Ok(false);
        }
        self.finish_delete(&placeholder, &token).await?;
        Ok(true)
    }

    /// Drops tenant collections and removes admins that no organization references. The
    /// collections and admins are listed before the organizations: an organization document
    /// is always written before its collection and admin, so anything listed first whose
    /// organization is then missing really is an orphan.
    async fn remove_orphans(&self, report: &mut ReconcileReport) -> anyhow::Result<()> {
        let collections = self.tenants.list_collection_names().filter(doc! {"name": {"$regex": "^org_"}}).await?;
        let admins: Vec<AdminDoc> = self.admins.find(doc! {}).await?.try_collect().await?;
        let orgs: Vec<OrgDoc> = self.organizations.find(doc! {}).await?.try_collect().await?;
        self.failpoints.pass(crate::RECONCILE_AFTER_LISTING).await;
        let tenant_db = self.tenants.name();
        let referenced: HashSet<&str> = orgs
            .iter()
            .filter(|o| o.database == tenant_db)
            .flat_map(|o| {
                std::iter::once(o.collection.as_str()).chain(o.op.as_ref().and_then(|op| op.to_collection.as_deref()))
            })
            .collect();
        let org_ids: HashSet<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
        for collection in collections.iter().filter(|c| !referenced.contains(c.as_str())) {
            if self.drop_orphan_collection(tenant_db, collection).await? {
                report.orphan_collections_dropped.push(collection.clone());
            }
        }
        for admin in admins.iter().filter(|a| !org_ids.contains(a.organization_id.as_str())) {
            self.admins.delete_one(doc! {"_id": &admin.id, "organization_id": &admin.organization_id}).await?;
            report.orphan_admins_removed.push(admin.id.clone());
        }
        Ok(())
    }
}
