//! Online moves of an organization's data to another placement or cluster, as jobs.
//!
//! The protocol extends the intent records of create, rename and delete (see
//! `docs/operations.md`):
//! 1. Start: a job record, then `moving: {job, to}` on the organization, set only if no other
//!    operation or move holds it. From then on renames wait; a delete may still happen, and
//!    the move then rolls back.
//! 2. Copying: a change stream on the source's database is opened first and its position
//!    checkpointed, then the documents are copied in `_id` order in bounded batches, each
//!    checkpointed, into a target created with the tenant schema and the source's indexes.
//! 3. Catching up: the writes made since are applied from the change stream, each as "make
//!    the target's document with this `_id` what the source's is now" (a replace, or a delete
//!    if it is gone), which is idempotent and order-proof. Then every `_id` range of both sides
//!    is compared by digest, and a range that differs is synchronised document by document.
//! 4. Fenced: the source refuses inserts and updates (a validator no document passes; for a
//!    shared source, one that refuses only this tenant's documents), a marker written beside
//!    it is awaited in the change stream so that every earlier write is drained, the documents
//!    changed since the range comparison and the counts are checked, and the organization is
//!    switched to the target with one conditional write holding the move.
//! 5. Switched: the source stays fenced for the grace period, and deletes still made on it
//!    (validators cannot refuse those) reach the target; then it is removed.
//!
//! Without change streams (a standalone server) the source is fenced before the copy and the
//! ranges are compared inside the fence instead. Any failure before the switch rolls back:
//! the target is removed and the fence lifted. After the switch only the clean-up is left.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use chrono::Utc;
use domain::{
    ClusterName, JobId, JobKind, JobState, MoveError, MoveMode, MovePhase, MovePlan, OrgKey, Placement, PlacementKind,
    Recovery,
};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::MongoStore;
use crate::clusters::Cluster;
use crate::documents::{OrgDoc, State, to_bson_time};
use crate::errors::{CHANGE_STREAMS_UNSUPPORTED, NAMESPACE_NOT_FOUND, code, is_duplicate_key};
use crate::failpoints::Crash;
use crate::jobs::{Held, JobDoc, JobView, LostLease, Side};

/// The collection beside tenant data where moves write their markers and a cluster keeps the
/// list of fenced shared tenants. Not `org_*`, so the orphan sweep leaves it alone.
pub(crate) const MOVE_MARKERS: &str = "orgsvc_move_markers";

/// The marker document that lists the tenants whose documents a cluster's shared collection
/// refuses, and holds the lock that serialises changes of its validator.
const SHARED_FENCE: &str = "shared_fence";

/// The steps of a move, where the tests stop a runner as if it had been killed.
pub const MOVE_STEPS: &[&str] = &[
    "move:after_start",
    "move:after_copy_batch",
    "move:after_catch_up",
    "move:after_fence",
    "move:after_switch",
    "move:after_drop_source",
];

/// How many change events are applied between two checkpoints.
const EVENT_BATCH: usize = 500;

/// How many changed `_id`s the fence checks one by one; beyond, it compares every range.
const CHANGED_LIMIT: usize = 20_000;

/// How many documents changed since the last comparison the cut-over may have to check
/// before the move stops shrinking that set: it bounds the fence whatever the tenant's size.
const FENCE_CHECK_TARGET: usize = 200;

/// How many comparisons of the changed documents shrink that set before the cut-over.
const SHRINK_ROUNDS: usize = 5;

/// How many times the switch waits for an admin change holding the organization.
const SWITCH_ATTEMPTS: usize = 40;

/// How many single-document lookups or deletes a move has in flight at once.
const LOOKUPS_IN_FLIGHT: usize = 16;

/// The longest a batch of change events is read before it is applied and checkpointed.
const BATCH_SLICE: Duration = Duration::from_millis(250);

/// How long a drain waits for its marker while no event comes before giving up (and
/// rolling back).
const MARKER_WAIT: Duration = Duration::from_secs(30);

/// Where a move is recorded on its organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MovingDoc {
    pub job: String,
    pub from: Side,
    pub to: Side,
    /// Set by the switch: from then on the organization is at `to`.
    #[serde(default)]
    pub switched: bool,
}

/// How long a runner keeps going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUntil {
    /// Until the job has ended (the server's job runner).
    Finished,
    /// Until a move has switched the organization (the operator's `orgsvc org move`, which
    /// leaves the clean-up after the grace period to the job runners).
    Switched,
}

/// The `_id` types the tenant schema allows, by their bracket in the server's sort order
/// (numbers, strings, binary, object ids), each with the smallest value of its bracket. A
/// comparison on `_id` matches only within one bracket, so a walk in `_id` order queries one
/// bracket after another, each an index range.
fn id_bracket(id: &Bson) -> anyhow::Result<usize> {
    Ok(match id {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 0,
        Bson::String(_) => 1,
        Bson::Binary(_) => 2,
        Bson::ObjectId(_) => 3,
        other => {
            bail!("a tenant document has an _id of type {:?}, which the tenant schema refuses", other.element_type())
        }
    })
}

fn bracket_minimum(bracket: usize) -> Bson {
    match bracket {
        0 => Bson::Int64(i64::MIN),
        1 => Bson::String(String::new()),
        2 => Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: Vec::new() }),
        _ => Bson::ObjectId(bson::oid::ObjectId::from_bytes([0; 12])),
    }
}

const ID_BRACKETS: usize = 4;

/// The filters, one per type bracket in order, of the `_id`s after `after` (all, if none)
/// and up to `upto` included (no bound, if none).
fn id_ranges(after: Option<&Bson>, upto: Option<&Bson>) -> anyhow::Result<Vec<Document>> {
    let first = after.map(id_bracket).transpose()?.unwrap_or(0);
    let last = upto.map(id_bracket).transpose()?.unwrap_or(ID_BRACKETS - 1);
    let mut ranges = Vec::new();
    for bracket in first..=last {
        let mut range = Document::new();
        match after {
            Some(after) if bracket == first => range.insert("$gt", after.clone()),
            _ => range.insert("$gte", bracket_minimum(bracket)),
        };
        // A comparison matches its own bracket only, so no upper bound keeps a range in it.
        if let Some(upto) = upto.filter(|_| bracket == last) {
            range.insert("$lte", upto.clone());
        }
        ranges.push(doc! {"_id": range});
    }
    Ok(ranges)
}

/// The conjunction of filters: one flat document when their fields differ (the form every
/// server's planner reads best, an `_id` lookup stays one), `$and` otherwise.
fn and(filters: Vec<Document>) -> Document {
    let filters: Vec<Document> = filters.into_iter().filter(|f| !f.is_empty()).collect();
    let mut keys = HashSet::new();
    let flat = filters.iter().flat_map(Document::keys).all(|k| !k.starts_with('$') && keys.insert(k.clone()));
    if flat {
        return filters.into_iter().flatten().collect();
    }
    doc! {"$and": filters}
}

/// One side of a move, connected.
struct End<'a> {
    side: &'a Side,
    cluster: &'a Cluster,
    tenant: &'a str,
}

impl End<'_> {
    fn collection(&self) -> mongodb::Collection<Document> {
        self.cluster.client.database(&self.side.database).collection(&self.side.collection)
    }

    /// The filter of the tenant's documents (every document, unless shared).
    fn tenant(&self) -> Document {
        if self.side.is_shared() {
            doc! {Placement::TENANT_FIELD: self.tenant}
        } else {
            Document::new()
        }
    }

    /// The document as this side stores it: the tenant field added in a shared collection,
    /// removed elsewhere (it is the placement's, not the application's).
    fn stored(&self, mut document: Document) -> anyhow::Result<Document> {
        if self.side.is_shared() {
            match document.get(Placement::TENANT_FIELD) {
                Some(Bson::String(t)) if t == self.tenant => {}
                Some(_) => bail!(
                    "document {} has a field {} of its own, which the shared placement reserves",
                    document.get("_id").map(ToString::to_string).unwrap_or_default(),
                    Placement::TENANT_FIELD
                ),
                None => {
                    document.insert(Placement::TENANT_FIELD, self.tenant);
                }
            }
        } else {
            document.remove(Placement::TENANT_FIELD);
        }
        Ok(document)
    }

    /// The document as both sides compare it: without the placement's tenant field.
    fn comparable(&self, mut document: Document) -> Document {
        if self.side.is_shared() {
            document.remove(Placement::TENANT_FIELD);
        }
        document
    }

    /// Up to `limit` documents matching `filter`, in `_id` order.
    async fn page(&self, filter: Document, limit: Option<i64>) -> anyhow::Result<Vec<Document>> {
        let collection = self.collection();
        let mut find = collection.find(and(vec![self.tenant(), filter])).sort(doc! {"_id": 1});
        if let Some(limit) = limit {
            find = find.limit(limit);
        }
        Ok(find.await?.try_collect().await?)
    }

    /// The tenant's documents with these `_id`s, by `_id`: one indexed lookup per `_id`,
    /// [`LOOKUPS_IN_FLIGHT`] at a time, so the cost follows the number of changes and never
    /// the tenant's size (some servers plan a long `$in` as a scan).
    async fn fetch(&self, ids: &[Bson]) -> anyhow::Result<BTreeMap<IdKey, Document>> {
        use futures::StreamExt;
        let filters: Vec<Document> = ids.iter().map(|id| and(vec![doc! {"_id": id.clone()}, self.tenant()])).collect();
        let collection = self.collection();
        let found: Vec<Option<Document>> = futures::stream::iter(filters)
            .map(move |filter| {
                let collection = collection.clone();
                async move { collection.find_one(filter).await }
            })
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().filter_map(|d| d.get("_id").cloned().map(|id| (IdKey(id), d))).collect())
    }

    /// Deletes the tenant's documents with these `_id`s, one indexed delete per `_id`.
    async fn delete(&self, ids: &[Bson]) -> anyhow::Result<()> {
        use futures::StreamExt;
        let filters: Vec<Document> = ids.iter().map(|id| and(vec![doc! {"_id": id.clone()}, self.tenant()])).collect();
        let collection = self.collection();
        futures::stream::iter(filters)
            .map(move |filter| {
                let collection = collection.clone();
                async move { collection.delete_one(filter).await }
            })
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Up to `limit` documents in `_id` order in the ranges of [`id_ranges`], bracket after
    /// bracket.
    async fn walk(&self, ranges: Vec<Document>, limit: Option<i64>) -> anyhow::Result<Vec<Document>> {
        let mut found = Vec::new();
        for range in ranges {
            let left = limit.map(|l| l - i64::try_from(found.len()).unwrap_or(i64::MAX));
            if left.is_some_and(|l| l <= 0) {
                break;
            }
            found.extend(self.page(range, left).await?);
        }
        Ok(found)
    }

    async fn count(&self) -> anyhow::Result<u64> {
        Ok(self.collection().count_documents(self.tenant()).await?)
    }
}

/// What the runner of one move holds.
struct Mover<'a> {
    store: &'a MongoStore,
    held: Held,
    plan_tenant: String,
}

impl MongoStore {
    /// Starts moving the organization with this key to `to`: records the job and marks the
    /// organization, and returns the job's id. The job runs in whichever process claims it.
    pub async fn start_move(&self, key: &OrgKey, to: domain::Placement) -> Result<JobId, MoveError> {
        let store_error = |e: anyhow::Error| MoveError::Unknown(e);
        let org = self
            .organizations
            .find_one(doc! {"key": key.as_str(), "state": "active"})
            .await
            .map_err(|e| store_error(e.into()))?
            .ok_or(MoveError::NotFound)?;
        let target = self
            .clusters
            .get(&to.cluster)
            .ok_or_else(|| MoveError::UnknownCluster { cluster: to.cluster.to_string() })?;
        let from = org.placement().map_err(store_error)?;
        let plan = MovePlan::new(from, to)?;
        let source = self.cluster_of(&org)?;
        let id = JobId::new();
        let from_side = side_of(&org, plan.from(), source);
        let to_side = side_of(&org, plan.to(), target);
        let target_end = End { side: &to_side, cluster: target, tenant: &org.id };
        if !to_side.is_shared() && target.collection_exists(&to_side.database, &to_side.collection).await? {
            return Err(MoveError::Unknown(anyhow!(
                "{} already exists on cluster {}; a leftover the orphan sweep removes, or someone else's",
                to_side.database,
                to_side.cluster
            )));
        }
        if to_side.is_shared()
            && target.shared_collection().await?.is_some()
            && target_end.count().await.map_err(store_error)? > 0
        {
            return Err(MoveError::Unknown(anyhow!(
                "the shared collection of cluster {} already holds documents of this organization",
                to_side.cluster
            )));
        }
        let job = JobDoc {
            organization: org.id.clone(),
            organization_name: org.name.clone(),
            from: from_side,
            to: to_side.clone(),
            phase: MovePhase::Copying.as_str().to_owned(),
            ..JobDoc::pending(id, JobKind::Move)
        };
        self.jobs().insert_one(&job).await.map_err(|e| store_error(e.into()))?;
        let moving = MovingDoc { job: job.id.clone(), from: job.from.clone(), to: to_side, switched: false };
        let marked = self
            .organizations
            .update_one(
                doc! {"_id": &org.id, "state": "active", "op": {"$exists": false}, "moving": {"$exists": false}},
                doc! {"$set": {"moving": bson::to_bson(&moving).map_err(|e| store_error(e.into()))?}},
            )
            .await
            .map_err(|e| store_error(e.into()))?;
        if marked.matched_count == 0 {
            // The job never started: nothing refers to it.
            self.jobs().delete_one(doc! {"_id": &job.id}).await.map_err(|e| store_error(e.into()))?;
            return Err(MoveError::Busy);
        }
        tracing::info!(job = %id, organization_id = %org.id, from = %job.from, to = %job.to, "move started");
        Ok(id)
    }

    /// Runs a job if its lease is free or expired, until `until`; returns it as it then is,
    /// or `None` if another runner holds it. A runner that loses the lease stops quietly.
    pub async fn run_job(&self, id: JobId, owner: &str, until: RunUntil) -> anyhow::Result<Option<JobView>> {
        let Some(mut held) = self.claim_job(&id.to_string(), owner).await? else { return Ok(None) };
        if held.doc.kind()? != JobKind::Move {
            let migrations = crate::migrations::tenant_migrations()?;
            // A failure is recorded on the job, which is tried again later.
            let _ = self.drive_tenant_job(&mut held, &migrations, &mut crate::migrations::Silent).await;
            return self.job(id).await;
        }
        let tenant = held.doc.organization.clone();
        let mut mover = Mover { store: self, held, plan_tenant: tenant };
        match mover.drive(until).await {
            Ok(()) => {}
            Err(e) if e.is::<LostLease>() => {
                tracing::warn!(job = %id, "lost the lease of a job to another runner");
                return self.job(id).await;
            }
            Err(e) if e.is::<Crash>() => return self.job(id).await,
            Err(e) => {
                // An error the job could not turn into a rollback (an unreachable cluster in
                // the clean-up, say): it stays unfinished and is tried again later.
                let message = format!("{e:#}");
                tracing::error!(job = %id, error = %message, "job interrupted; will retry");
                let _ = mover.store.save_job(&mut mover.held, doc! {"last_error": &message}).await;
                let _ = self.release_job(&mover.held, self.job_lease.length()).await;
            }
        }
        self.job(id).await
    }

    /// Runs every job whose lease is free or expired, to its end: the server's job runner
    /// calls this periodically, and `orgsvc jobs run` once.
    pub async fn run_due_jobs(&self, owner: &str) -> anyhow::Result<Vec<JobView>> {
        let mut ran = Vec::new();
        for id in self.claimable_jobs().await? {
            let id = JobId::parse(&id).context("job id")?;
            if let Some(job) = self.run_job(id, owner, RunUntil::Finished).await? {
                ran.push(job);
            }
        }
        Ok(ran)
    }

    /// How many documents an organization holds where it is now.
    pub(crate) async fn documents_of(&self, org: &OrgDoc) -> anyhow::Result<u64> {
        let cluster = self.cluster_of(org)?;
        let side = side_of(org, &org.placement()?, cluster);
        End { side: &side, cluster, tenant: &org.id }.count().await
    }

    /// The organization document a job works on, if it still exists.
    async fn org_of(&self, job: &JobDoc) -> anyhow::Result<Option<OrgDoc>> {
        Ok(self.organizations.find_one(doc! {"_id": &job.organization}).await?)
    }

    fn cluster_by(&self, name: &str) -> anyhow::Result<&Cluster> {
        Ok(self.cluster(&ClusterName::parse(name).map_err(|e| anyhow!("cluster {name:?}: {e}"))?)?)
    }
}

/// Where an organization's data is under `placement` on `cluster`.
fn side_of(org: &OrgDoc, placement: &Placement, cluster: &Cluster) -> Side {
    let id = domain::OrgId::parse(&org.id).ok();
    let database = match (placement.kind, id) {
        (PlacementKind::Database, Some(id)) => Placement::database_of(id),
        _ => cluster.tenants.name().to_owned(),
    };
    let collection = if placement.kind == PlacementKind::Shared {
        Placement::SHARED_COLLECTION.to_owned()
    } else {
        org.collection.clone()
    };
    Side { kind: placement.kind.as_str().to_owned(), cluster: placement.cluster.to_string(), database, collection }
}

impl Mover<'_> {
    fn job(&self) -> &JobDoc {
        &self.held.doc
    }

    fn source(&self) -> anyhow::Result<End<'_>> {
        let side = &self.held.doc.from;
        Ok(End { side, cluster: self.store.cluster_by(&side.cluster)?, tenant: &self.plan_tenant })
    }

    fn target(&self) -> anyhow::Result<End<'_>> {
        let side = &self.held.doc.to;
        Ok(End { side, cluster: self.store.cluster_by(&side.cluster)?, tenant: &self.plan_tenant })
    }

    async fn step(&self, step: &'static str) -> anyhow::Result<()> {
        self.store.failpoints.pass(step).await;
        // An injected crash is not a failure to roll back: like a killed process, it leaves
        // the job, its lease and both sides exactly as they are.
        self.store.failpoints.check(step)?;
        Ok(())
    }

    async fn set_phase(&mut self, phase: MovePhase, mut more: Document) -> anyhow::Result<()> {
        more.insert("phase", phase.as_str());
        self.store.save_job(&mut self.held, more).await?;
        tracing::info!(job = %self.job().id, phase = phase.as_str(), "move phase");
        Ok(())
    }

    /// Runs the move from wherever its record says it is.
    async fn drive(&mut self, until: RunUntil) -> anyhow::Result<()> {
        // A crash between the switch and recording it leaves the phase behind the truth,
        // which is on the organization.
        let org = self.store.org_of(self.job()).await?;
        let switched =
            org.as_ref().and_then(|o| o.moving.as_ref()).is_some_and(|m| m.job == self.job().id && m.switched);
        let mut phase = self.job().phase()?;
        if switched && phase < MovePhase::Switched {
            phase = MovePhase::Switched;
            self.set_phase(phase, Document::new()).await?;
        }
        loop {
            if phase.recovery() == Recovery::RollBack && phase != MovePhase::RollingBack {
                let outcome = match self.still_moving().await {
                    Ok(()) => self.advance(phase).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(next) => phase = next,
                    Err(e) if e.is::<LostLease>() || e.is::<Crash>() => return Err(e),
                    Err(e) => {
                        let message = format!("{e:#}");
                        tracing::warn!(job = %self.job().id, error = %message, "move failed; rolling back");
                        self.set_phase(MovePhase::RollingBack, doc! {"last_error": &message}).await?;
                        phase = MovePhase::RollingBack;
                    }
                }
                continue;
            }
            match phase {
                MovePhase::RollingBack => {
                    self.roll_back().await?;
                    return Ok(());
                }
                // The clean-up waits for the grace period, which the instances' runners sit
                // out; without one it is done at once.
                MovePhase::Switched
                    if until == RunUntil::Switched
                        && self
                            .job()
                            .cleanup_at
                            .is_some_and(|at| at.timestamp_millis() > Utc::now().timestamp_millis()) =>
                {
                    self.store.release_job(&self.held, Duration::ZERO).await?;
                    return Ok(());
                }
                MovePhase::Switched | MovePhase::RemovingSource => {
                    self.finish(phase).await?;
                    return Ok(());
                }
                MovePhase::Done => {
                    self.store
                        .end_job(&mut self.held, JobState::Completed, doc! {"phase": MovePhase::Done.as_str()})
                        .await?;
                    return Ok(());
                }
                MovePhase::Copying | MovePhase::CatchingUp | MovePhase::Fenced => {
                    unreachable!("phases before the switch are handled above")
                }
            }
        }
    }

    /// Fails unless the organization is still active and still marked with this move, and no
    /// operator asked to cancel it.
    async fn still_moving(&mut self) -> anyhow::Result<()> {
        let cancelled =
            self.store.jobs().count_documents(doc! {"_id": &self.job().id, "cancel_requested": true}).await?;
        ensure!(cancelled == 0, "cancelled by an operator");
        let org = self.store.org_of(self.job()).await?;
        match org {
            Some(org) if org.state == State::Active && org.moving.as_ref().is_some_and(|m| m.job == self.job().id) => {
                Ok(())
            }
            Some(org) if org.state != State::Active => bail!("the organization is being deleted"),
            Some(_) => bail!("the organization is no longer marked with this move"),
            None => bail!("the organization was deleted"),
        }
    }

    /// Does one phase before the switch; returns the next.
    async fn advance(&mut self, phase: MovePhase) -> anyhow::Result<MovePhase> {
        match phase {
            MovePhase::Copying => {
                self.prepare().await?;
                self.copy().await?;
                let mode = self.job().mode()?;
                if mode == Some(MoveMode::FencedCopy) {
                    self.set_phase(MovePhase::Fenced, Document::new()).await?;
                    Ok(MovePhase::Fenced)
                } else {
                    self.set_phase(MovePhase::CatchingUp, Document::new()).await?;
                    Ok(MovePhase::CatchingUp)
                }
            }
            MovePhase::CatchingUp => {
                let mut stream = self.open_stream().await?;
                self.catch_up(&mut stream, None, false).await?;
                self.verify_ranges().await?;
                // What changed during the range comparison is applied now, and checked
                // document by document inside the fence.
                let mut changed: HashSet<IdKey> = HashSet::new();
                self.catch_up(&mut stream, Some(&mut changed), false).await?;
                // The fence checks every document changed since the last comparison; a few
                // shorter comparisons of just those shrink that set while writes go on.
                for _ in 0..SHRINK_ROUNDS {
                    if changed.len() <= FENCE_CHECK_TARGET {
                        break;
                    }
                    let ids: Vec<Bson> = std::mem::take(&mut changed).into_iter().map(|k| k.0).collect();
                    let differing = self.differing(&ids).await?;
                    self.sync(&differing).await?;
                    self.catch_up(&mut stream, Some(&mut changed), false).await?;
                }
                self.step("move:after_catch_up").await?;
                self.set_phase(MovePhase::Fenced, Document::new()).await?;
                Ok(MovePhase::Fenced)
            }
            MovePhase::Fenced => {
                self.cut_over().await?;
                Ok(MovePhase::Switched)
            }
            MovePhase::Switched | MovePhase::RemovingSource | MovePhase::Done | MovePhase::RollingBack => Ok(phase),
        }
    }

    /// Before the first copy: decides the mode (a change stream if the source has them,
    /// opened and checkpointed now, else a fence for the whole copy), and creates the target
    /// with the tenant schema, the source's indexes and the tenant migrations.
    async fn prepare(&mut self) -> anyhow::Result<()> {
        if self.job().mode.is_none() {
            let source = self.source()?;
            let watched = source.cluster.client.database(&source.side.database).watch().await;
            let (mode, token) = match watched {
                Ok(stream) => {
                    let token = stream.resume_token().ok_or_else(|| anyhow!("the change stream gave no position"))?;
                    (MoveMode::ChangeStream, Some(bson::to_bson(&token)?))
                }
                Err(e) if code(&e) == Some(CHANGE_STREAMS_UNSUPPORTED) => {
                    tracing::warn!(
                        job = %self.job().id,
                        "the source has no change streams (a standalone server): its writes are refused for the whole copy"
                    );
                    (MoveMode::FencedCopy, None)
                }
                Err(e) => return Err(e).context("opening the source's change stream"),
            };
            let total = i64::try_from(source.count().await?).unwrap_or(i64::MAX);
            let mut set = doc! {"mode": mode.as_str(), "progress.total": total};
            if let Some(token) = token {
                set.insert("checkpoint.resume_token", token);
            }
            self.store.save_job(&mut self.held, set).await?;
        }
        // The domain's rule says when the source refuses writes; while copying, only without
        // a change stream.
        if self.job().mode()?.is_some_and(|mode| MovePhase::Copying.source_fenced(mode)) {
            self.fence().await?;
        }
        self.create_target().await?;
        self.step("move:after_start").await
    }

    /// Creates the target collection (idempotent): the tenant schema, every index of the
    /// source (but the `_id` and shared tenant indexes), and the tenant migrations; under
    /// `shared`, the cluster's shared collection.
    async fn create_target(&self) -> anyhow::Result<()> {
        let target = self.target()?;
        if target.side.is_shared() {
            target.cluster.ensure_shared_collection(self.store.tenant_migrations_in_force()).await?;
            return Ok(());
        }
        target.cluster.create_collection_with_schema(&target.side.database, &target.side.collection).await?;
        let in_force = self.store.tenant_migrations_in_force().await?;
        target.cluster.initialize_tenant_collection(&target.side.database, &target.side.collection, &in_force).await?;
        let source = self.source()?;
        if source.side.is_shared() {
            return Ok(());
        }
        let indexes: Vec<Document> = source
            .collection()
            .list_indexes()
            .await?
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .filter(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) != Some("_id_"))
            .map(|i| bson::to_document(&i))
            .collect::<Result<_, _>>()?;
        if !indexes.is_empty() {
            target
                .cluster
                .command(&target.side.database, doc! {"createIndexes": &target.side.collection, "indexes": indexes})
                .await
                .context("creating the source's indexes on the target")?;
        }
        Ok(())
    }

    /// Copies the source's documents after the checkpoint, a batch at a time.
    async fn copy(&mut self) -> anyhow::Result<()> {
        let batch = i64::from(self.store.move_batch.max(1));
        loop {
            let ranges = id_ranges(self.job().checkpoint.last_id.as_ref(), None)?;
            let (documents, bytes, end) = {
                let source = self.source()?;
                let target = self.target()?;
                let page = source.walk(ranges, Some(batch)).await?;
                // A short page reached the end of the source's documents. Those inserted
                // since come through the change stream (or are refused by the fence), so
                // the copy does not chase an application that keeps appending.
                let end = i64::try_from(page.len()).unwrap_or(i64::MAX) < batch;
                let Some(last) = page.last().and_then(|d| d.get("_id").cloned()) else { break };
                let mut bytes = 0;
                let mut stored = Vec::with_capacity(page.len());
                for document in page {
                    bytes += bson::to_vec(&document).map(|b| b.len()).unwrap_or(0);
                    stored.push(target.stored(document)?);
                }
                let count = stored.len();
                insert_ignoring_copies(&target.collection(), stored).await?;
                ((count, last), bytes, end)
            };
            let ((count, last), bytes) = (documents, bytes);
            let progress = self.job().progress;
            self.store
                .save_job(
                    &mut self.held,
                    doc! {
                        "checkpoint.last_id": last,
                        "progress.done": progress.done + i64::try_from(count).unwrap_or(0),
                        "progress.bytes": progress.bytes + i64::try_from(bytes).unwrap_or(0),
                    },
                )
                .await?;
            self.step("move:after_copy_batch").await?;
            self.still_moving().await?;
            if end {
                break;
            }
        }
        Ok(())
    }

    /// Opens the source's change stream at the checkpointed position.
    async fn open_stream(&self) -> anyhow::Result<ChangeStream<ChangeStreamEvent<Document>>> {
        let source = self.source()?;
        let token: ResumeToken = bson::from_bson(
            self.job()
                .checkpoint
                .resume_token
                .clone()
                .ok_or_else(|| anyhow!("the move has no change stream position"))?,
        )?;
        let collection = &source.side.collection;
        let tenant_events = if source.side.is_shared() {
            doc! {"ns.coll": collection, "$or": [
                {"operationType": "delete"},
                {format!("fullDocument.{}", Placement::TENANT_FIELD): source.tenant},
            ]}
        } else {
            doc! {"ns.coll": collection}
        };
        let pipeline = vec![doc! {"$match": {"$or": [tenant_events, {"ns.coll": MOVE_MARKERS}]}}];
        let database = source.cluster.client.database(&source.side.database);
        let watch = database.watch().pipeline(pipeline);
        // Only a shared source needs the documents, to tell its tenant's events apart.
        let watch = if source.side.is_shared() { watch.full_document(FullDocumentType::UpdateLookup) } else { watch };
        let stream = watch
            .max_await_time(Duration::from_millis(50))
            .resume_after(token)
            .await
            .context("resuming the source's change stream")?;
        Ok(stream)
    }

    /// Applies the change events available now, a batch at a time, checkpointing the stream's
    /// position after each batch; stops at `marker`'s insert if given (waiting for it), else
    /// after a batch that is not full, of events or of time (the writes that keep coming
    /// are left to the next call). The `_id`s it synchronised are added to `changed`.
    async fn apply_events(
        &mut self,
        stream: &mut ChangeStream<ChangeStreamEvent<Document>>,
        marker: Option<&str>,
        mut changed: Option<&mut HashSet<IdKey>>,
        only_deletes: bool,
    ) -> anyhow::Result<()> {
        // A drain gives up when the stream stops moving, not when it takes long: a big
        // backlog is applied however long it takes.
        let mut moved_at = std::time::Instant::now();
        loop {
            let mut ids = Vec::new();
            let mut seen_marker = false;
            let mut ended = false;
            // A batch also ends after a while: events that keep coming faster than the
            // stream's wait would otherwise never let a batch end.
            let batch_started = std::time::Instant::now();
            while ids.len() < EVENT_BATCH && batch_started.elapsed() < BATCH_SLICE {
                let Some(event) = stream.next_if_any().await.context("reading the source's change stream")? else {
                    break;
                };
                moved_at = std::time::Instant::now();
                let coll = event.ns.as_ref().and_then(|ns| ns.coll.clone()).unwrap_or_default();
                let id = event.document_key.as_ref().and_then(|k| k.get("_id").cloned());
                if coll == MOVE_MARKERS {
                    if marker.is_some() && id.as_ref().and_then(Bson::as_str) == marker {
                        seen_marker = true;
                        break;
                    }
                    continue;
                }
                match event.operation_type {
                    OperationType::Insert | OperationType::Update | OperationType::Replace if !only_deletes => {
                        ids.extend(id);
                    }
                    OperationType::Delete => ids.extend(id),
                    OperationType::Insert | OperationType::Update | OperationType::Replace => {}
                    // After the switch, a source that went away has no deletes left to pass on.
                    OperationType::Drop | OperationType::DropDatabase | OperationType::Invalidate if only_deletes => {
                        ended = true;
                        break;
                    }
                    OperationType::Drop | OperationType::DropDatabase | OperationType::Rename => {
                        bail!("the source was dropped or renamed during the move")
                    }
                    OperationType::Invalidate => bail!("the source's change stream was invalidated"),
                    _ => {}
                }
            }
            if only_deletes {
                self.delete_on_target(&ids).await?;
            } else {
                self.sync(&ids).await?;
            }
            let mut set = Document::new();
            if let Some(changed) = changed.as_deref_mut() {
                changed.extend(ids.iter().cloned().map(IdKey));
                // Persisted with the position, so that a runner resuming inside the fence
                // checks them too; past a limit, the fence compares every range instead.
                if !ids.is_empty() {
                    if changed.len() <= CHANGED_LIMIT {
                        let all: Vec<Bson> = changed.iter().map(|k| k.0.clone()).collect();
                        set.insert("checkpoint.changed", all);
                    } else {
                        set.insert("checkpoint.changed_overflow", true);
                    }
                }
            }
            if let Some(token) = stream.resume_token() {
                set.insert("checkpoint.resume_token", bson::to_bson(&token)?);
            }
            if !set.is_empty() {
                self.store.save_job(&mut self.held, set).await?;
            }
            let idle = !stream.is_alive();
            if ended {
                return Ok(());
            }
            match marker {
                Some(_) if seen_marker => return Ok(()),
                Some(m) => ensure!(
                    moved_at.elapsed() < MARKER_WAIT && !idle,
                    "the source's change stream did not show the drain marker {m} in time"
                ),
                // Caught up to less than a batch (of events or of time) behind: the fence
                // drains the rest.
                None if ids.len() < EVENT_BATCH => return Ok(()),
                None => {}
            }
        }
    }

    /// Applies every change made to the source up to now: writes a marker beside the
    /// source and applies the events until the marker's own, however many there are and
    /// however slowly they come. The `_id`s synchronised are added to `changed`.
    async fn catch_up(
        &mut self,
        stream: &mut ChangeStream<ChangeStreamEvent<Document>>,
        changed: Option<&mut HashSet<IdKey>>,
        only_deletes: bool,
    ) -> anyhow::Result<()> {
        let marker = format!("{}:{}", self.job().id, uuid::Uuid::new_v4().simple());
        let markers = {
            let source = self.source()?;
            source.cluster.client.database(&source.side.database).collection::<Document>(MOVE_MARKERS)
        };
        markers.insert_one(doc! {"_id": &marker}).await.context("writing a drain marker")?;
        self.apply_events(stream, Some(&marker), changed, only_deletes).await?;
        markers.delete_one(doc! {"_id": &marker}).await.context("removing a drain marker")?;
        Ok(())
    }

    /// Makes the target's documents with these `_id`s what the source's are now: replaced,
    /// or deleted where the source has none. Idempotent, whatever the order of the events.
    async fn sync(&self, ids: &[Bson]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (source, target) = (self.source()?, self.target()?);
        let unique: Vec<Bson> =
            ids.iter().cloned().map(IdKey).collect::<HashSet<_>>().into_iter().map(|k| k.0).collect();
        let current = source.fetch(&unique).await?;
        // The target is nobody's location before the switch, so the batch need not be
        // atomic: remove every one of them, then insert those the source still has.
        target.delete(&unique).await?;
        let present: Vec<Document> =
            current.into_values().map(|document| target.stored(document)).collect::<anyhow::Result<_>>()?;
        if !present.is_empty() {
            target.collection().insert_many(present).await.context("applying changes to the target")?;
        }
        Ok(())
    }

    /// Deletes these `_id`s on the target (the source's deletes after the switch).
    async fn delete_on_target(&self, ids: &[Bson]) -> anyhow::Result<()> {
        self.target()?.delete(ids).await
    }

    /// Compares both sides range by range (`move_batch` source documents each) by digest, and
    /// synchronises every range that differs; returns how many ranges did.
    async fn verify_ranges(&mut self) -> anyhow::Result<u64> {
        let batch = i64::from(self.store.move_batch.max(1));
        let mut after: Option<Bson> = None;
        let mut repaired: u64 = 0;
        let mut ranges: u64 = 0;
        loop {
            let (source, target) = (self.source()?, self.target()?);
            let page = source.walk(id_ranges(after.as_ref(), None)?, Some(batch)).await?;
            // A short page is the last one (documents appended since are the catch-up's), and
            // its range reaches past the source's last document to whatever the target
            // still holds there.
            let last_page = i64::try_from(page.len()).unwrap_or(i64::MAX) < batch;
            let upper = if last_page { None } else { page.last().and_then(|d| d.get("_id").cloned()) };
            let theirs = target.walk(id_ranges(after.as_ref(), upper.as_ref())?, None).await?;
            let digest = |end: &End<'_>, documents: &[Document]| -> anyhow::Result<Vec<u8>> {
                let mut hash = Sha256::new();
                for document in documents {
                    hash.update(bson::to_vec(&end.comparable(document.clone()))?);
                }
                Ok(hash.finalize().to_vec())
            };
            ranges += 1;
            if digest(&source, &page)? != digest(&target, &theirs)? {
                let ids: Vec<Bson> = page.iter().chain(&theirs).filter_map(|d| d.get("_id").cloned()).collect();
                self.sync(&ids).await?;
                repaired += 1;
            }
            match upper {
                Some(upper) => after = Some(upper),
                None => break,
            }
            self.store.renew_job(&mut self.held).await?;
        }
        if repaired > 0 {
            tracing::info!(job = %self.job().id, ranges = repaired, "move: ranges synchronised after comparison");
        }
        self.store.save_job(&mut self.held, doc! {"verified_ranges": i64::try_from(ranges).unwrap_or(i64::MAX), "repaired_ranges": i64::try_from(repaired).unwrap_or(i64::MAX)}).await?;
        Ok(repaired)
    }

    /// The `_id`s among these whose documents differ between the two sides.
    async fn differing(&self, ids: &[Bson]) -> anyhow::Result<Vec<Bson>> {
        let (source, target) = (self.source()?, self.target()?);
        let mine = source.fetch(ids).await?;
        let theirs = target.fetch(ids).await?;
        Ok(ids
            .iter()
            .filter(|id| {
                let key = IdKey((*id).clone());
                mine.get(&key).cloned().map(|d| source.comparable(d))
                    != theirs.get(&key).cloned().map(|d| target.comparable(d))
            })
            .cloned()
            .collect())
    }

    /// The cut-over: fence, drain, verify, switch. Inside the fence only deletes still reach
    /// the source (validators cannot refuse them), so a verification that finds a difference
    /// applies the events that came since and looks again, a few times, before giving up.
    async fn cut_over(&mut self) -> anyhow::Result<()> {
        let mode = self.job().mode()?.unwrap_or(MoveMode::ChangeStream);
        self.fence().await?;
        self.step("move:after_fence").await?;
        let started = std::time::Instant::now();
        let mut timings = Document::new();
        let mut stream = match mode {
            MoveMode::ChangeStream => Some(self.open_stream().await?),
            MoveMode::FencedCopy => None,
        };
        let mut changed: HashSet<IdKey> = self.job().checkpoint.changed.iter().cloned().map(IdKey).collect();
        if let Some(stream) = stream.as_mut() {
            self.catch_up(stream, Some(&mut changed), false).await?;
        }
        timings.insert("drain_ms", elapsed_ms(started));
        let mut check: Vec<Bson> = if mode == MoveMode::FencedCopy || self.job().checkpoint.changed_overflow {
            self.verify_ranges().await?;
            Vec::new()
        } else {
            changed.iter().map(|k| k.0.clone()).collect()
        };
        // Every range was equal when compared, and every document changed since is checked
        // here, so both sides hold the same documents (and as many) without counting them in
        // the fence, whose length must not grow with the tenant.
        let mut attempts = 0;
        loop {
            let differing = self.differing(&check).await?;
            if differing.is_empty() {
                break;
            }
            attempts += 1;
            let Some(stream) = stream.as_mut().filter(|_| attempts < 5) else {
                bail!("verification failed: {} document(s) differ between source and target", differing.len());
            };
            let mut more = HashSet::new();
            self.catch_up(stream, Some(&mut more), false).await?;
            check = differing.into_iter().chain(more.into_iter().map(|k| k.0)).collect();
        }
        timings.insert("verify_ms", elapsed_ms(started));
        self.store.save_job(&mut self.held, doc! {"fence_steps": timings}).await?;
        self.switch().await
    }

    /// Switches the organization to the target in one write, conditional on it still being
    /// active and marked with this move.
    async fn switch(&mut self) -> anyhow::Result<()> {
        let to = &self.job().to;
        let placement = Placement {
            kind: to.kind.parse().map_err(|e| anyhow!("target kind: {e}"))?,
            cluster: ClusterName::parse(&to.cluster).map_err(|e| anyhow!("target cluster: {e}"))?,
        };
        let (kind, cluster) = OrgDoc::placement_fields(&placement);
        let mut set = doc! {"database": &to.database, "moving.switched": true, "updated_at": to_bson_time(Utc::now())};
        let mut unset = Document::new();
        match kind {
            Some(kind) => set.insert("placement", kind),
            None => unset.insert("placement", ""),
        };
        match cluster {
            Some(cluster) => set.insert("cluster", cluster),
            None => unset.insert("cluster", ""),
        };
        let mut update = doc! {"$set": set};
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        // The switch publishes `organization.moved` in the same write.
        let from = &self.job().from;
        let from = Placement {
            kind: from.kind.parse().map_err(|e| anyhow!("source kind: {e}"))?,
            cluster: ClusterName::parse(&from.cluster).map_err(|e| anyhow!("source cluster: {e}"))?,
        };
        let now = Utc::now();
        let org_id = domain::OrgId::parse(&self.job().organization).map_err(|e| anyhow!("organization id: {e}"))?;
        let moved = domain::Event::organization_moved(domain::MessageId::at(now), org_id, &from, &placement, now);
        let update = crate::webhooks::merged(
            update,
            crate::webhooks::publishing(&[crate::webhooks::EventDoc::from_domain(&moved)])?,
        );
        let filter = doc! {"_id": &self.job().organization, "state": "active", "op": {"$exists": false}, "moving.job": &self.job().id};
        let mut attempts = 0;
        loop {
            // The organization's database user goes along where the target is a database of
            // its own (same name, same password); anywhere else it stays behind, dropped with
            // the source, and the record forgets it.
            let org = self.store.org_of(self.job()).await?.ok_or_else(|| anyhow!("the organization is gone"))?;
            let target = self.target()?;
            let carried = self.store.carry_tenant_user(&org, target.cluster, target.side.is_own_database()).await?;
            let (mut filter, mut update) = (filter.clone(), update.clone());
            match &carried {
                // A rotation since the user was carried makes the switch miss, and the user
                // is carried again with the new password.
                Some(sealed) => {
                    filter.insert("tenant_user.sealed", sealed.clone());
                }
                None => unset_field(&mut update, "tenant_user"),
            }
            let switched =
                self.store.organizations.update_one(filter, update).await.context("switching the organization")?;
            if switched.matched_count == 1 {
                break;
            }
            let rotated = self
                .store
                .org_of(self.job())
                .await?
                .is_some_and(|now| now.tenant_user.map(|u| u.sealed) != carried && carried.is_some());
            if rotated {
                attempts += 1;
                ensure!(attempts < SWITCH_ATTEMPTS, "the database user's password kept changing during the cut-over");
                continue;
            }
            // An admin's email or password change in flight holds the organization for a
            // moment: wait for it rather than roll the whole move back. Anything else (a
            // delete) does roll it back.
            let busy = self
                .store
                .organizations
                .count_documents(doc! {"_id": &self.job().organization, "state": "active", "op.kind": "update", "moving.job": &self.job().id})
                .await?;
            attempts += 1;
            ensure!(busy == 1 && attempts < SWITCH_ATTEMPTS, "the organization changed during the cut-over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.store.relay_after_commit(&self.job().organization).await;
        let fence_ms = self
            .job()
            .fence_started_at
            .map(|t| Utc::now().timestamp_millis() - t.timestamp_millis())
            .unwrap_or_default();
        let grace = chrono::Duration::from_std(self.store.move_grace).unwrap_or(chrono::Duration::MAX);
        tracing::info!(job = %self.job().id, organization_id = %self.job().organization, fence_ms, "move switched");
        self.set_phase(
            MovePhase::Switched,
            doc! {"fence_ms": fence_ms, "cleanup_at": to_bson_time(Utc::now() + grace)},
        )
        .await?;
        self.step("move:after_switch").await
    }

    /// After the switch: the source's deletes keep reaching the target until the grace
    /// period ends; then the source is removed and the move completes.
    async fn finish(&mut self, phase: MovePhase) -> anyhow::Result<()> {
        // Once the removal has begun, the source's deletes are the removal's own (for a
        // shared source, its documents deleted in batches) and must not reach the target.
        if phase < MovePhase::RemovingSource {
            let cleanup_at = self.job().cleanup_at.map(|t| t.timestamp_millis()).unwrap_or_default();
            let mode = self.job().mode()?.unwrap_or(MoveMode::ChangeStream);
            if mode == MoveMode::ChangeStream {
                let mut stream = self.open_stream().await?;
                loop {
                    self.apply_events(&mut stream, None, None, true).await?;
                    self.store.renew_job(&mut self.held).await?;
                    let left = cleanup_at - Utc::now().timestamp_millis();
                    if left <= 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0).min(500))).await;
                }
                // Every delete made before the grace period ended reaches the target, however
                // far behind the passes above were.
                self.catch_up(&mut stream, None, true).await?;
            } else {
                loop {
                    let left = cleanup_at - Utc::now().timestamp_millis();
                    if left <= 0 {
                        break;
                    }
                    self.store.renew_job(&mut self.held).await?;
                    tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0).min(500))).await;
                }
            }
            self.set_phase(MovePhase::RemovingSource, Document::new()).await?;
        }
        self.remove_side(false).await?;
        self.step("move:after_drop_source").await?;
        self.store
            .organizations
            .update_one(
                doc! {"_id": &self.job().organization, "moving.job": &self.job().id},
                doc! {"$unset": {"moving": ""}},
            )
            .await?;
        self.store.end_job(&mut self.held, JobState::Completed, doc! {"phase": MovePhase::Done.as_str()}).await
    }

    /// Undoes the move: the target removed, the source's fence lifted, the organization's
    /// mark cleared. Idempotent.
    async fn roll_back(&mut self) -> anyhow::Result<()> {
        self.unfence().await?;
        self.remove_side(true).await?;
        {
            // A source database of the organization's own keeps nothing of the move.
            let source = self.source()?;
            if source.side.is_own_database() {
                source.cluster.drop_collection(&source.side.database, MOVE_MARKERS).await?;
            }
        }
        self.store
            .organizations
            .update_one(
                doc! {"_id": &self.job().organization, "moving.job": &self.job().id, "moving.switched": {"$ne": true}},
                doc! {"$unset": {"moving": ""}},
            )
            .await?;
        if let Some(started) = self.job().fence_started_at {
            let fence_ms = Utc::now().timestamp_millis() - started.timestamp_millis();
            self.store.save_job(&mut self.held, doc! {"fence_ms": fence_ms}).await?;
        }
        self.store.end_job(&mut self.held, JobState::RolledBack, doc! {"phase": MovePhase::RollingBack.as_str()}).await
    }

    /// Removes the target (`target`) or the source of the move: a collection or database of
    /// its own is dropped (with its users), a shared tenant's documents deleted in batches
    /// and its fence lifted.
    async fn remove_side(&self, target: bool) -> anyhow::Result<()> {
        let end = if target { self.target()? } else { self.source()? };
        if end.side.is_shared() {
            end.cluster.delete_shared_documents(end.tenant, self.store.shared_delete_batch).await?;
            if !target {
                self.unfence().await?;
            }
        } else if end.side.is_own_database() {
            end.cluster.drop_database_users(&end.side.database).await?;
            end.cluster.drop_database(&end.side.database).await?;
        } else {
            end.cluster.drop_collection(&end.side.database, &end.side.collection).await?;
        }
        Ok(())
    }

    /// Makes the source refuse the tenant's inserts and updates (idempotent). When the fence
    /// goes up is recorded first, so that no refused write precedes the recorded start.
    async fn fence(&mut self) -> anyhow::Result<()> {
        if self.job().fence_started_at.is_none() {
            self.store.save_job(&mut self.held, doc! {"fence_started_at": to_bson_time(Utc::now())}).await?;
        }
        let source = self.source()?;
        if source.side.is_shared() {
            source.cluster.set_shared_fence(source.tenant, true).await?;
        } else {
            let mut validator = crate::schema::tenant_collection_options();
            let schema = validator.remove("validator").unwrap_or(Bson::Null);
            validator.insert("validator", doc! {"$and": [schema, {"_id": {"$exists": false}}]});
            let mut command = doc! {"collMod": &source.side.collection};
            command.extend(validator);
            source.cluster.command(&source.side.database, command).await.context("fencing the source")?;
        }
        Ok(())
    }

    /// Lifts the source's fence (idempotent; a source that is gone has none).
    async fn unfence(&self) -> anyhow::Result<()> {
        let source = self.source()?;
        if source.side.is_shared() {
            source.cluster.set_shared_fence(source.tenant, false).await?;
            return Ok(());
        }
        let mut command = doc! {"collMod": &source.side.collection};
        command.extend(crate::schema::tenant_collection_options());
        match source.cluster.command(&source.side.database, command).await {
            Err(e) if code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
            other => other.map(drop).context("lifting the source's fence"),
        }
    }
}

/// Adds `field` to an update's `$unset`.
fn unset_field(update: &mut Document, field: &str) {
    match update.get_document_mut("$unset") {
        Ok(unset) => {
            unset.insert(field, "");
        }
        Err(_) => {
            update.insert("$unset", doc! {field: ""});
        }
    }
}

fn elapsed_ms(since: std::time::Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// A BSON value as a map key: `_id`s compared by their canonical form.
#[derive(Debug, Clone)]
struct IdKey(Bson);

impl IdKey {
    fn bytes(&self) -> Vec<u8> {
        bson::to_vec(&doc! {"k": self.0.clone()}).unwrap_or_default()
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}
impl Eq for IdKey {}
impl std::hash::Hash for IdKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}
impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for IdKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(&other.bytes())
    }
}

/// Inserts copied documents, skipping those already there (a resumed copy repeats part of a
/// batch; the change stream brings any later change of them).
async fn insert_ignoring_copies(
    collection: &mongodb::Collection<Document>,
    documents: Vec<Document>,
) -> anyhow::Result<()> {
    if documents.is_empty() {
        return Ok(());
    }
    match collection.insert_many(documents).ordered(false).await {
        Ok(_) => Ok(()),
        Err(e) => match &*e.kind {
            mongodb::error::ErrorKind::InsertMany(failure)
                if failure.write_concern_error.is_none()
                    && failure.write_errors.as_ref().is_some_and(|errors| errors.iter().all(|w| w.code == 11000)) =>
            {
                Ok(())
            }
            _ => Err(e).context("copying documents to the target"),
        },
    }
}

impl Cluster {
    /// Adds a tenant to (or removes it from) the tenants whose documents this cluster's
    /// shared collection refuses, and applies the resulting validator. Changes are
    /// serialised by a lock in the marker collection, so two moves fencing at once cannot
    /// undo each other's fence.
    pub(crate) async fn set_shared_fence(&self, tenant: &str, fenced: bool) -> anyhow::Result<()> {
        let markers = self.tenants.collection::<Document>(MOVE_MARKERS);
        let change = if fenced {
            doc! {"$addToSet": {"tenants": tenant}}
        } else {
            doc! {"$pull": {"tenants": tenant}}
        };
        markers
            .update_one(doc! {"_id": SHARED_FENCE}, change)
            .upsert(true)
            .await
            .context("recording a shared fence")?;
        self.apply_shared_validator().await
    }

    /// Applies the shared collection's validator: the shared schema, refusing the documents
    /// of every fenced tenant. Holds the fence lock while it reads the list and applies it.
    pub(crate) async fn apply_shared_validator(&self) -> anyhow::Result<()> {
        let markers = self.tenants.collection::<Document>(MOVE_MARKERS);
        let token = uuid::Uuid::new_v4().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = Utc::now();
            let lease = to_bson_time(now + chrono::Duration::from_std(self.command_timeout()).unwrap_or_default() * 2);
            let taken = markers
                .update_one(
                    doc! {"_id": SHARED_FENCE, "$or": [
                        {"lock": {"$exists": false}},
                        {"lock.expires_at": {"$lte": to_bson_time(now)}},
                    ]},
                    doc! {"$set": {"lock": {"token": &token, "expires_at": lease}}},
                )
                .await;
            match taken {
                Ok(r) if r.matched_count == 1 => break,
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(e).context("taking the shared fence lock"),
            }
            // No fence document yet: nothing is fenced, and the lock is taken on it.
            if markers.count_documents(doc! {"_id": SHARED_FENCE}).await? == 0 {
                markers.insert_one(doc! {"_id": SHARED_FENCE, "tenants": []}).await.ok();
                continue;
            }
            ensure!(std::time::Instant::now() < deadline, "the shared fence lock stayed taken");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let result = async {
            let fence = markers.find_one(doc! {"_id": SHARED_FENCE}).await?.unwrap_or_default();
            let tenants: Vec<Bson> = fence.get_array("tenants").cloned().unwrap_or_default();
            let mut options = crate::schema::shared_collection_options();
            if !tenants.is_empty() {
                let schema = options.remove("validator").unwrap_or(Bson::Null);
                options.insert("validator", doc! {"$and": [schema, {Placement::TENANT_FIELD: {"$nin": tenants}}]});
            }
            let mut command = doc! {"collMod": Placement::SHARED_COLLECTION};
            command.extend(options);
            match self.command(self.tenants.name(), command).await {
                Err(e) if code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
                other => other.map(drop).context("applying the shared collection's validator"),
            }
        }
        .await;
        markers.update_one(doc! {"_id": SHARED_FENCE, "lock.token": &token}, doc! {"$unset": {"lock": ""}}).await?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_walk_the_type_brackets_in_the_servers_order() {
        let all = id_ranges(None, None).expect("ranges");
        assert_eq!(all.len(), ID_BRACKETS, "one index range per bracket: {all:?}");
        let after = Bson::String("m".to_owned());
        let rest = id_ranges(Some(&after), None).expect("ranges");
        assert_eq!(rest[0], doc! {"_id": {"$gt": "m"}});
        assert_eq!(rest.len(), 3, "strings after m, then binary, then object ids");
        let upto = Bson::Int64(5);
        let within = id_ranges(Some(&Bson::Int64(1)), Some(&upto)).expect("ranges");
        assert_eq!(within, vec![doc! {"_id": {"$gt": 1_i64, "$lte": 5_i64}}]);
        let across = id_ranges(Some(&Bson::Int32(7)), Some(&after)).expect("ranges");
        assert_eq!(across, vec![doc! {"_id": {"$gt": 7}}, doc! {"_id": {"$gte": "", "$lte": "m"}}]);
        assert!(id_ranges(Some(&Bson::Boolean(true)), None).is_err(), "the schema refuses such an _id");
    }

    #[test]
    fn filters_on_different_fields_stay_flat() {
        assert_eq!(and(vec![doc! {"_id": 1}, doc! {"tenant_id": "t"}]), doc! {"_id": 1, "tenant_id": "t"});
        assert_eq!(and(vec![Document::new(), doc! {"_id": 1}]), doc! {"_id": 1});
        assert_eq!(
            and(vec![doc! {"_id": {"$gt": 1}}, doc! {"_id": {"$lt": 3}}]),
            doc! {"$and": [{"_id": {"$gt": 1}}, {"_id": {"$lt": 3}}]}
        );
    }

    #[test]
    fn id_keys_tell_types_apart() {
        assert_ne!(IdKey(Bson::Int32(1)), IdKey(Bson::Int64(1)));
        assert_eq!(IdKey(Bson::String("a".to_owned())), IdKey(Bson::String("a".to_owned())));
    }
}
