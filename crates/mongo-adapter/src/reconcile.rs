//! The reconciler: finishes or rolls back every operation abandoned for longer than the
//! lease, then removes what came back under the tombstones of removed organizations (the
//! full orphan sweep, which reads every organization, runs far less often: see `sweep`). Every step is idempotent, so a
//! crash during reconciliation is repaired by the next run, and several instances may run
//! it at once: an operation is taken over by replacing its claim token with a conditional
//! update, which only one of them can win.

use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{self, doc};
use uuid::Uuid;

use crate::documents::{AdminDoc, OpDoc, OpKind, OrgDoc, State};
use crate::errors::{EMAIL_INDEX, KEYS_INDEX, is_duplicate_in, is_duplicate_key};
use crate::{Cluster, MongoStore};

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
    /// Databases of removed `database` organizations that had come back, dropped with
    /// their users.
    pub orphan_databases_dropped: Vec<String>,
    /// Tenant ids of a shared collection that no organization has, whose documents were
    /// removed.
    pub orphan_shared_tenants_removed: Vec<String>,
    /// Admins whose organization did not exist, removed.
    pub orphan_admins_removed: Vec<String>,
    /// Interrupted renames whose old collection had been recreated (both collections
    /// existed), merged by `_id`.
    pub collections_merged: Vec<String>,
    /// Organizations whose published events were still on their document (the operation's
    /// own relay was cut short), relayed.
    pub events_relayed: Vec<String>,
    /// What an operator should look at: documents kept in quarantine because their `_id`
    /// was on both sides of a rename with different contents, and renames whose collections
    /// had both vanished. The operations themselves are resolved.
    pub needs_attention: Vec<String>,
}

/// Which way an operator resolves an unfinished operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Finish it, as if it had not been interrupted.
    Forward,
    /// Undo it, as if it had never started.
    Back,
}

/// What merging one collection into another did.
#[derive(Debug, Default)]
struct Merge {
    moved: u64,
    conflicts: Vec<String>,
    quarantine: Option<String>,
}

/// The server refused a document because of the collection's validator.
const DOCUMENT_VALIDATION_FAILURE: i32 = 121;

impl ReconcileReport {
    /// Whether the pass changed nothing and found nothing to report.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }

    /// Adds what another pass did (the full sweep's findings to a reconciliation's).
    pub fn merge(&mut self, other: ReconcileReport) {
        let Self {
            creates_rolled_back,
            updates_rolled_forward,
            updates_rolled_back,
            deletes_finished,
            orphan_collections_dropped,
            orphan_databases_dropped,
            orphan_shared_tenants_removed,
            orphan_admins_removed,
            collections_merged,
            events_relayed,
            needs_attention,
        } = other;
        self.creates_rolled_back.extend(creates_rolled_back);
        self.updates_rolled_forward.extend(updates_rolled_forward);
        self.updates_rolled_back.extend(updates_rolled_back);
        self.deletes_finished.extend(deletes_finished);
        self.orphan_collections_dropped.extend(orphan_collections_dropped);
        self.orphan_databases_dropped.extend(orphan_databases_dropped);
        self.orphan_shared_tenants_removed.extend(orphan_shared_tenants_removed);
        self.orphan_admins_removed.extend(orphan_admins_removed);
        self.collections_merged.extend(collections_merged);
        self.events_relayed.extend(events_relayed);
        self.needs_attention.extend(needs_attention);
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
            ("orphan databases dropped", &self.orphan_databases_dropped),
            ("orphan shared tenants removed", &self.orphan_shared_tenants_removed),
            ("orphan admins removed", &self.orphan_admins_removed),
            ("collections merged", &self.collections_merged),
            ("events relayed for", &self.events_relayed),
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
        self.clear_tombstoned(&mut report).await?;
        report.events_relayed = self.relay_waiting_events().await.context("relaying published events")?;
        if !report.needs_attention.is_empty() {
            tracing::error!(items = ?report.needs_attention, "reconciliation found operations it cannot resolve");
        }
        Ok(report)
    }

    /// Resolves the unfinished operation of one organization the way an operator chooses,
    /// without waiting for its lease: for an operation the reconciler reported, or one an
    /// operator knows is dead (no instance runs it any more; a live one would find it lost
    /// its claim and give up). An update can go either way as long as the admin's changes
    /// are not applied yet, and only forward after; a create can only be rolled back (its
    /// client never got an answer) and a delete only finished (its data may be gone).
    /// Returns what was done, for the operator.
    pub async fn resolve_operation(&self, organization_id: &str, direction: Direction) -> anyhow::Result<String> {
        let org: OrgDoc = self
            .organizations
            .find_one(doc! {"_id": organization_id})
            .await?
            .with_context(|| format!("no organization has the id {organization_id}"))?;
        let op =
            org.op.clone().with_context(|| format!("organization {organization_id} has no operation in progress"))?;
        match (op.kind, direction) {
            (OpKind::Create, Direction::Forward) => {
                anyhow::bail!("an interrupted create is only rolled back: its client never got an answer (use --back)")
            }
            (OpKind::Delete, Direction::Back) => {
                anyhow::bail!("an interrupted delete is only finished: its data may already be gone (use --forward)")
            }
            _ => {}
        }
        // Claimed as it is now, whatever its age: the operator has decided it is dead.
        let token =
            self.take_over(&org, &op, op.started_at).await?.context("the operation changed meanwhile; look again")?;
        let mut report = ReconcileReport::default();
        match op.kind {
            OpKind::Create => self.roll_back_create(&org, &token).await?,
            OpKind::Delete => self.finish_delete(&org, &token).await?,
            OpKind::Update => {
                let admin: Option<AdminDoc> = self.admins.find_one(doc! {"_id": &org.admin_id}).await?;
                let applied = op.admin_changes_applied(admin.as_ref());
                let from = org.collection.as_str();
                let to = op.to_collection.as_deref().unwrap_or(from);
                match direction {
                    Direction::Back if applied && op.has_admin_changes() => anyhow::bail!(
                        "the admin's changes of this update are applied already; it can only be finished (use --forward)"
                    ),
                    Direction::Back => {
                        if org.rename_moves_collection(to) {
                            self.move_tenant_collection(&org, to, from, &mut report).await?;
                        }
                        self.release_update(&org, &token).await?;
                    }
                    Direction::Forward => {
                        if !applied {
                            let set = doc! {"$set": op.admin_changes()};
                            match self.admins.update_one(doc! {"_id": &org.admin_id}, set).await {
                                Err(e) if is_duplicate_in(&e, EMAIL_INDEX) => anyhow::bail!(
                                    "the update's new email belongs to another admin now; it can only be rolled back \
                                     (use --back)"
                                ),
                                other => other.context("applying the admin's changes")?,
                            };
                        }
                        if org.rename_moves_collection(to) {
                            self.move_tenant_collection(&org, from, to, &mut report).await?;
                        }
                        self.commit_update(&org, &op, &token).await?;
                        self.relay_after_commit(organization_id).await;
                    }
                }
            }
        }
        tracing::warn!(organization_id, kind = ?op.kind, ?direction, "an operator resolved an operation");
        let verb = match direction {
            Direction::Forward => "finished",
            Direction::Back => "rolled back",
        };
        let mut summary = format!("{:?} of organization {organization_id} {verb}\n", op.kind);
        for line in report.collections_merged.iter().chain(&report.needs_attention) {
            summary.push_str(line);
            summary.push('\n');
        }
        Ok(summary)
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
        let applied = op.admin_changes_applied(admin.as_ref());
        let from = org.collection.as_str();
        let to = op.to_collection.as_deref().unwrap_or(from);
        if org.rename_moves_collection(to) {
            let (source, target) = if applied { (from, to) } else { (to, from) };
            self.move_tenant_collection(org, source, target, report).await?;
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

    /// Brings an interrupted rename's tenant data into `target`, whatever the rename left:
    /// only the source (rename it), only the target (re-apply the schema), both (a tenant
    /// application wrote to the old name during the rename, which recreated it, or the
    /// server copied rather than renamed: merge the source into the target by `_id`), or
    /// neither (create the target empty, and report it). The organization is never left
    /// stuck, and no document is lost or overwritten: a document whose `_id` is on both
    /// sides with different contents stays in a quarantine collection that is reported.
    async fn move_tenant_collection(
        &self,
        org: &OrgDoc,
        source: &str,
        target: &str,
        report: &mut ReconcileReport,
    ) -> anyhow::Result<()> {
        let cluster = self.cluster_of(org)?;
        let source_exists = cluster.collection_exists(&org.database, source).await?;
        let target_exists = cluster.collection_exists(&org.database, target).await?;
        match (source_exists, target_exists) {
            (true, false) => {
                cluster
                    .rename_collection(&org.database, source, target)
                    .await?
                    .with_context(|| format!("moving {source} to {target}"))?;
            }
            // The move happened, but the crash may have come before its schema was applied.
            (false, true) => cluster.ensure_tenant_schema(&org.database, target).await?,
            (true, true) => {
                let merge = Self::merge_collection(cluster, &org.database, source, target).await?;
                report.collections_merged.push(format!(
                    "organization {}: {} document(s) of {source} moved into {target}",
                    org.id, merge.moved
                ));
                if let Some(quarantine) = merge.quarantine {
                    report.needs_attention.push(format!(
                        "organization {}: {} document(s) of {source} have an _id that {target} holds with other \
                         contents; they are kept in {}.{quarantine}: ids {}",
                        org.id,
                        merge.conflicts.len(),
                        org.database,
                        merge.conflicts.join(", ")
                    ));
                }
                cluster.ensure_tenant_schema(&org.database, target).await?;
            }
            (false, false) => {
                cluster.create_collection_with_schema(&org.database, target).await?;
                report.needs_attention.push(format!(
                    "organization {}: neither {source} nor {target} existed; {target} was created empty",
                    org.id
                ));
            }
        }
        Ok(())
    }

    /// Moves every document of `source` into `target` by `_id`, then drops `source`. A
    /// document already in `target` with the same contents (a copy made by an earlier,
    /// interrupted pass) is simply removed from `source`; one with other contents, or one
    /// the target's validator refuses, is left in `source`, which is then renamed to a
    /// quarantine collection outside the `org_` names so that nothing removes it. Each
    /// document is inserted before it is deleted, so a crash at any point loses nothing and
    /// the next pass finishes the job.
    async fn merge_collection(cluster: &Cluster, database: &str, source: &str, target: &str) -> anyhow::Result<Merge> {
        let db = cluster.client.database(database);
        let from = db.collection::<bson::Document>(source);
        let into = db.collection::<bson::Document>(target);
        let mut merge = Merge::default();
        let mut cursor = from.find(doc! {}).sort(doc! {"_id": 1}).batch_size(500).await?;
        while let Some(document) = cursor.try_next().await? {
            let id = document.get("_id").cloned().unwrap_or(bson::Bson::Null);
            match into.insert_one(&document).await {
                Ok(_) => merge.moved += 1,
                Err(e) if is_duplicate_key(&e) => {
                    if into.find_one(doc! {"_id": id.clone()}).await?.as_ref() != Some(&document) {
                        merge.conflicts.push(id.to_string());
                        continue;
                    }
                }
                Err(e) if crate::errors::code(&e) == Some(DOCUMENT_VALIDATION_FAILURE) => {
                    merge.conflicts.push(id.to_string());
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("moving a document of {source} into {target}")),
            }
            from.delete_one(doc! {"_id": id}).await?;
        }
        if merge.conflicts.is_empty() {
            cluster.drop_collection(database, source).await?;
        } else {
            let quarantine = format!("orgsvc_quarantine_{source}_{}", bson::DateTime::now().timestamp_millis());
            cluster
                .rename_collection(database, source, &quarantine)
                .await?
                .with_context(|| format!("quarantining {source}"))?;
            merge.quarantine = Some(quarantine);
        }
        Ok(merge)
    }

    /// Drops a tenant collection that no organization referenced when the organizations
    /// were listed, unless one does by now. Between that listing and the drop, a create on
    /// another instance could take the name and create the collection anew; so the drop runs
    /// as the delete of a placeholder organization that first reserves the collection's key
    /// through the unique index (a concurrent create or rename onto that name gets 409 for
    /// this moment) and records the intent, so a crash here is finished by the next pass.
    /// Returns whether the collection was dropped.
    pub(crate) async fn drop_orphan_collection(
        &self,
        cluster: &Cluster,
        database: &str,
        collection: &str,
    ) -> anyhow::Result<bool> {
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
            placement: None,
            cluster: (!cluster.name.is_main()).then(|| cluster.name.to_string()),
            admin_id: Uuid::new_v4().to_string(),
            state: State::Deleting,
            op: Some(OpDoc::new(OpKind::Delete, &token)),
            moving: None,
            created_at: now,
            updated_at: now,
            event_seq: 0,
            outbox: Vec::new(),
            tenant_user: None,
        };
        match self.organizations.insert_one(&placeholder).await {
            Err(e) if is_duplicate_in(&e, KEYS_INDEX) => return Ok(false),
            other => other.with_context(|| format!("reserving orphan collection {collection}"))?,
        };
        if self.collection_referenced(database, collection, &placeholder.id).await? {
            self.organizations.delete_one(doc! {"_id": &placeholder.id, "op.token": &token}).await?;
            return Ok(false);
        }
        self.finish_delete(&placeholder, &token).await?;
        Ok(true)
    }
}
