//! Background jobs in the master database (`jobs`): their records, the lease that makes one
//! runner their owner, and what operators see of them.
//!
//! A runner claims a job with one conditional update (the job is unfinished and its lease
//! free or expired) that writes its own lease token; every later write of the job's record
//! is conditional on that token and renews the lease, so a runner that stalled past the
//! expiry finds out at its next write and stops, leaving the job to the one that took it
//! over, which resumes from the last checkpoint.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use domain::{JobId, JobKind, JobLease, JobProgress, JobState, MoveMode, MovePhase};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::MongoStore;
use crate::documents::{from_bson_time, to_bson_time};

/// One side of a move: where tenant data is or goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Side {
    /// The placement kind.
    pub kind: String,
    /// The cluster.
    pub cluster: String,
    /// The database holding the collection.
    pub database: String,
    /// The collection (the shared collection under `shared`).
    pub collection: String,
}

impl Side {
    /// Whether this is no side at all (a job that is not a move).
    pub(crate) fn is_unset(&self) -> bool {
        self.kind.is_empty()
    }

    /// Whether the data is in a shared collection, marked with the tenant field.
    pub(crate) fn is_shared(&self) -> bool {
        self.kind == domain::PlacementKind::Shared.as_str()
    }

    /// Whether the data is in a database of the organization's own.
    pub(crate) fn is_own_database(&self) -> bool {
        self.kind == domain::PlacementKind::Database.as_str()
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} ({}.{})", self.kind, self.cluster, self.database, self.collection)
    }
}

/// How far a job is, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProgressDoc {
    pub done: i64,
    pub total: i64,
    pub bytes: i64,
}

/// Where a job resumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckpointDoc {
    /// The last `_id` copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_id: Option<Bson>,
    /// The change stream's position: every event before it has been applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<Bson>,
    /// The `_id`s changed since the ranges were compared, which the fence checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<Bson>,
    /// Too many changed for that: the fence compares every range again.
    #[serde(default)]
    pub changed_overflow: bool,
}

/// The lease of a job's current runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LeaseDoc {
    pub owner: String,
    pub token: String,
    pub expires_at: bson::DateTime,
}

/// A job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub kind: String,
    pub state: String,
    // The fields of a move; other jobs have none of them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub organization: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub organization_name: String,
    #[serde(default, skip_serializing_if = "Side::is_unset")]
    pub from: Side,
    #[serde(default, skip_serializing_if = "Side::is_unset")]
    pub to: Side,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// The tenant migrations a migration job applies, or the one a rollback reverts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<String>,
    /// What a migration job did, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default)]
    pub progress: ProgressDoc,
    #[serde(default)]
    pub checkpoint: CheckpointDoc,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseDoc>,
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_started_at: Option<bson::DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_at: Option<bson::DateTime>,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<bson::DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl JobDoc {
    /// A new job of `kind`, pending, with nothing of any kind's own yet.
    pub(crate) fn pending(id: JobId, kind: JobKind) -> Self {
        let now = to_bson_time(Utc::now());
        Self {
            id: id.to_string(),
            kind: kind.as_str().to_owned(),
            state: JobState::Pending.as_str().to_owned(),
            organization: String::new(),
            organization_name: String::new(),
            from: Side::default(),
            to: Side::default(),
            phase: String::new(),
            migrations: Vec::new(),
            summary: None,
            mode: None,
            progress: ProgressDoc::default(),
            checkpoint: CheckpointDoc::default(),
            lease: None,
            cancel_requested: false,
            fence_started_at: None,
            fence_ms: None,
            cleanup_at: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            last_error: None,
        }
    }

    pub(crate) fn phase(&self) -> anyhow::Result<MovePhase> {
        self.phase.parse().with_context(|| format!("job {}: phase {:?}", self.id, self.phase))
    }

    pub(crate) fn mode(&self) -> anyhow::Result<Option<MoveMode>> {
        self.mode.as_deref().map(str::parse).transpose().with_context(|| format!("job {}: mode", self.id))
    }

    pub(crate) fn kind(&self) -> anyhow::Result<JobKind> {
        self.kind.parse().with_context(|| format!("job {}: kind {:?}", self.id, self.kind))
    }

    pub(crate) fn to_view(&self) -> anyhow::Result<JobView> {
        let time = |t: Option<bson::DateTime>| t.map(from_bson_time).transpose();
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let moving = self.kind()? == JobKind::Move;
        let text = |value: &str| moving.then(|| value.to_owned());
        Ok(JobView {
            id: JobId::parse(&self.id).with_context(|| format!("job id {:?}", self.id))?,
            kind: self.kind()?,
            state: self.state.parse().with_context(|| format!("job {}: state", self.id))?,
            phase: if moving { Some(self.phase()?) } else { None },
            mode: self.mode()?,
            organization_id: text(&self.organization),
            organization_name: text(&self.organization_name),
            from: text(&self.from.to_string()),
            to: text(&self.to.to_string()),
            migrations: self.migrations.clone(),
            summary: self.summary.clone(),
            progress: JobProgress {
                done: count(self.progress.done),
                total: count(self.progress.total),
                bytes: count(self.progress.bytes),
            },
            owner: self.lease.as_ref().map(|l| l.owner.clone()),
            lease_expires_at: time(self.lease.as_ref().map(|l| l.expires_at))?,
            cancel_requested: self.cancel_requested,
            fence_ms: self.fence_ms.map(count),
            cleanup_at: time(self.cleanup_at)?,
            created_at: from_bson_time(self.created_at)?,
            updated_at: from_bson_time(self.updated_at)?,
            finished_at: time(self.finished_at)?,
            last_error: self.last_error.clone(),
        })
    }
}

/// A job as operators see it (`orgsvc jobs list`, `orgsvc jobs show`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// Its id.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// Where it is in its life.
    pub state: JobState,
    /// The step a move is at (or ended at).
    pub phase: Option<MovePhase>,
    /// How a move keeps up with writes, once it has decided.
    pub mode: Option<MoveMode>,
    /// The organization a move works on.
    pub organization_id: Option<String>,
    /// That organization's name when the move started.
    pub organization_name: Option<String>,
    /// Where a move's data was.
    pub from: Option<String>,
    /// Where it goes.
    pub to: Option<String>,
    /// The tenant migrations a migration job applies, or the one a rollback reverts.
    pub migrations: Vec<String>,
    /// What a migration job did, once it ended.
    pub summary: Option<String>,
    /// Work done of the work counted at the start ([`JobKind::unit`]), and for a move the
    /// bytes copied.
    pub progress: JobProgress,
    /// The runner holding the lease (a host and process), if any.
    pub owner: Option<String>,
    /// When that lease expires unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether an operator asked to cancel it.
    pub cancel_requested: bool,
    /// How long the source refused writes, once the fence is lifted or switched.
    pub fence_ms: Option<u64>,
    /// When the fenced source is removed, after the switch.
    pub cleanup_at: Option<DateTime<Utc>>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When its record last changed.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The last error it met (it may have recovered since).
    pub last_error: Option<String>,
}

impl fmt::Display for JobView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phase {
            Some(phase) => writeln!(f, "job {} ({}): {}, phase {phase}", self.id, self.kind.as_str(), self.state)?,
            None => writeln!(f, "job {} ({}): {}", self.id, self.kind.as_str(), self.state)?,
        }
        if let (Some(name), Some(id)) = (&self.organization_name, &self.organization_id) {
            writeln!(f, "  organization: {name} ({id})")?;
        }
        if let (Some(from), Some(to)) = (&self.from, &self.to) {
            writeln!(f, "  from: {from}")?;
            writeln!(f, "  to:   {to}")?;
        }
        if !self.migrations.is_empty() {
            writeln!(f, "  tenant migrations: {}", self.migrations.join(", "))?;
        }
        if let Some(mode) = self.mode {
            let note = match mode {
                MoveMode::ChangeStream => "writes refused only during the cut-over",
                MoveMode::FencedCopy => "no change streams on the source: writes refused for the whole copy",
            };
            writeln!(f, "  mode: {} ({note})", mode.as_str())?;
        }
        let p = self.progress;
        if self.kind == JobKind::Move {
            writeln!(f, "  progress: {}/{} documents, {} bytes", p.done, p.total, p.bytes)?;
        } else {
            writeln!(f, "  progress: {}/{} {}", p.done, p.total, self.kind.unit())?;
        }
        if let Some(summary) = &self.summary {
            for line in summary.lines() {
                writeln!(f, "  {line}")?;
            }
        }
        if let Some(ms) = self.fence_ms {
            writeln!(f, "  write fence: {ms} ms")?;
        }
        if let Some(owner) = &self.owner {
            let until = self.lease_expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            writeln!(f, "  runner: {owner} (lease until {until})")?;
        }
        if self.cancel_requested {
            writeln!(f, "  cancel requested")?;
        }
        if let Some(at) = self.cleanup_at {
            writeln!(f, "  source removed after: {}", at.to_rfc3339())?;
        }
        writeln!(f, "  created: {}, updated: {}", self.created_at.to_rfc3339(), self.updated_at.to_rfc3339())?;
        if let Some(at) = self.finished_at {
            writeln!(f, "  finished: {}", at.to_rfc3339())?;
        }
        if let Some(error) = &self.last_error {
            writeln!(f, "  last error: {error}")?;
        }
        Ok(())
    }
}

/// Why a job could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelJobError {
    /// No job has this id.
    #[error("no job {0}")]
    NotFound(JobId),
    /// The job has ended.
    #[error("job {0} has already ended ({1})")]
    Finished(JobId, JobState),
    /// Tenant migration jobs are not cancelled: what they did stays done (it is
    /// idempotent), and `orgsvc migrate --down` reverts a migration.
    #[error("job {0} is a {1} job, which cannot be cancelled; roll a migration back with orgsvc migrate --down")]
    NotCancellable(JobId, &'static str),
    /// The move has switched the organization to its target: only its clean-up is left,
    /// and undoing it would be another move.
    #[error("job {0} has already switched the organization to its new placement; move it back instead")]
    Switched(JobId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Counts of jobs for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Jobs not ended (pending or running).
    pub running: u64,
    /// Jobs that ended rolled back.
    pub rolled_back: u64,
    /// Jobs that ended failed.
    pub failed: u64,
    /// Jobs that completed.
    pub completed: u64,
    /// Documents copied by the jobs not ended.
    pub items_done: u64,
}

/// The state values a runner may claim a job in.
fn unfinished() -> Bson {
    Bson::Array(vec![JobState::Pending.as_str().into(), JobState::Running.as_str().into()])
}

/// A job held by this process: writes to its record go through here, conditional on the
/// lease token, renewing the lease as they go.
#[derive(Debug)]
pub(crate) struct Held {
    pub doc: JobDoc,
    token: String,
    lease: JobLease,
    renewed: std::time::Instant,
}

/// This runner lost the job's lease to another one: it must stop at once.
#[derive(Debug, thiserror::Error)]
#[error("the lease of job {0} was taken over by another runner")]
pub(crate) struct LostLease(pub String);

impl MongoStore {
    pub(crate) fn jobs(&self) -> mongodb::Collection<JobDoc> {
        self.master.collection("jobs")
    }

    /// Takes a job's lease if it is unfinished and its lease is free or expired.
    pub(crate) async fn claim_job(&self, id: &str, owner: &str) -> anyhow::Result<Option<Held>> {
        let token = Uuid::new_v4().to_string();
        let now = Utc::now();
        let lease = self.job_lease;
        let claimed = self
            .jobs()
            .find_one_and_update(
                doc! {
                    "_id": id,
                    "state": {"$in": unfinished()},
                    "$or": [{"lease": {"$exists": false}}, {"lease.expires_at": {"$lte": to_bson_time(now)}}],
                },
                doc! {"$set": {
                    "state": JobState::Running.as_str(),
                    "lease": {"owner": owner, "token": &token, "expires_at": to_bson_time(lease.expiry(now))},
                    "updated_at": to_bson_time(now),
                }},
            )
            .return_document(mongodb::options::ReturnDocument::After)
            .await
            .context("claiming a job")?;
        Ok(claimed.map(|doc| Held { doc, token, lease, renewed: std::time::Instant::now() }))
    }

    /// Writes to a held job's record (`$set` fields, renewing the lease too), provided this
    /// runner still holds it, and keeps the in-memory copy in step.
    pub(crate) async fn save_job(&self, held: &mut Held, mut set: Document) -> anyhow::Result<()> {
        let now = Utc::now();
        set.insert("lease.expires_at", to_bson_time(held.lease.expiry(now)));
        set.insert("updated_at", to_bson_time(now));
        let updated = self
            .jobs()
            .find_one_and_update(doc! {"_id": &held.doc.id, "lease.token": &held.token}, doc! {"$set": set})
            .return_document(mongodb::options::ReturnDocument::After)
            .await
            .context("saving a job's progress")?;
        match updated {
            Some(doc) => {
                held.doc = doc;
                held.renewed = std::time::Instant::now();
                Ok(())
            }
            None => Err(LostLease(held.doc.id.clone()).into()),
        }
    }

    /// Renews the lease if a third of it has passed since the last write.
    pub(crate) async fn renew_job(&self, held: &mut Held) -> anyhow::Result<()> {
        if held.renewed.elapsed() >= held.lease.renew_every() {
            self.save_job(held, Document::new()).await?;
        }
        Ok(())
    }

    /// Lets go of a held job without ending it: another runner (or this one) takes it up
    /// again after `retry_after`.
    pub(crate) async fn release_job(&self, held: &Held, retry_after: Duration) -> anyhow::Result<()> {
        let at = Utc::now() + chrono::Duration::from_std(retry_after).unwrap_or(chrono::Duration::MAX);
        self.jobs()
            .update_one(
                doc! {"_id": &held.doc.id, "lease.token": &held.token},
                doc! {"$set": {"lease.expires_at": to_bson_time(at), "updated_at": to_bson_time(Utc::now())}},
            )
            .await
            .context("releasing a job")?;
        Ok(())
    }

    /// Ends a held job in `state`, with the fields in `set` (a move's last phase, say),
    /// releasing its lease.
    pub(crate) async fn end_job(&self, held: &mut Held, state: JobState, mut set: Document) -> anyhow::Result<()> {
        let now = to_bson_time(Utc::now());
        set.extend(doc! {"state": state.as_str(), "finished_at": now, "updated_at": now});
        let ended = self
            .jobs()
            .update_one(
                doc! {"_id": &held.doc.id, "lease.token": &held.token},
                doc! {"$set": set.clone(), "$unset": {"lease": ""}},
            )
            .await
            .context("ending a job")?;
        if ended.matched_count == 0 {
            bail!(LostLease(held.doc.id.clone()));
        }
        held.doc.state = state.as_str().to_owned();
        if let Ok(phase) = set.get_str("phase") {
            held.doc.phase = phase.to_owned();
        }
        tracing::info!(job = %held.doc.id, kind = %held.doc.kind, state = state.as_str(), "job ended");
        Ok(())
    }

    /// Every job, newest first.
    pub async fn list_jobs(&self) -> anyhow::Result<Vec<JobView>> {
        let docs: Vec<JobDoc> = self
            .jobs()
            .find(doc! {})
            .sort(doc! {"created_at": -1})
            .await?
            .try_collect()
            .await
            .context("listing jobs")?;
        docs.iter().map(JobDoc::to_view).collect()
    }

    /// One job.
    pub async fn job(&self, id: JobId) -> anyhow::Result<Option<JobView>> {
        let doc = self.jobs().find_one(doc! {"_id": id.to_string()}).await.context("reading a job")?;
        doc.as_ref().map(JobDoc::to_view).transpose()
    }

    /// Asks a job to stop: a move that has not switched yet rolls back cleanly at its next
    /// step, whoever runs it.
    pub async fn cancel_job(&self, id: JobId) -> Result<JobView, CancelJobError> {
        let key = id.to_string();
        let kind = self.job(id).await?.ok_or(CancelJobError::NotFound(id))?.kind;
        if kind != JobKind::Move {
            return Err(CancelJobError::NotCancellable(id, kind.as_str()));
        }
        let before_switch: Vec<Bson> =
            [MovePhase::Copying, MovePhase::CatchingUp, MovePhase::Fenced, MovePhase::RollingBack]
                .iter()
                .map(|p| p.as_str().into())
                .collect();
        self.jobs()
            .update_one(
                doc! {"_id": &key, "state": {"$in": unfinished()}, "phase": {"$in": before_switch}},
                doc! {"$set": {"cancel_requested": true, "updated_at": to_bson_time(Utc::now())}},
            )
            .await
            .context("cancelling a job")?;
        let job = self.job(id).await?.ok_or(CancelJobError::NotFound(id))?;
        if job.cancel_requested {
            tracing::info!(job = %id, "job cancellation requested");
            Ok(job)
        } else if job.state.is_finished() {
            Err(CancelJobError::Finished(id, job.state))
        } else {
            Err(CancelJobError::Switched(id))
        }
    }

    /// Job counts for `/metrics`.
    pub async fn job_counts(&self) -> anyhow::Result<JobCounts> {
        let mut counts = JobCounts::default();
        let mut cursor = self
            .jobs()
            .clone_with_type::<Document>()
            .aggregate(vec![doc! {"$group": {"_id": "$state", "n": {"$sum": 1}, "done": {"$sum": "$progress.done"}}}])
            .await
            .context("counting jobs")?;
        while let Some(group) = cursor.try_next().await.context("counting jobs")? {
            let n = group.get("n").and_then(Bson::as_i64).or_else(|| group.get_i32("n").ok().map(i64::from));
            let n = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
            let done = group.get("done").and_then(Bson::as_i64).or_else(|| group.get_i32("done").ok().map(i64::from));
            match group.get_str("_id").ok().and_then(|s| s.parse::<JobState>().ok()) {
                Some(JobState::Pending | JobState::Running) => {
                    counts.running += n;
                    counts.items_done += u64::try_from(done.unwrap_or(0)).unwrap_or(0);
                }
                Some(JobState::Completed) => counts.completed += n,
                Some(JobState::RolledBack) => counts.rolled_back += n,
                Some(JobState::Failed) => counts.failed += n,
                None => {}
            }
        }
        Ok(counts)
    }

    /// The ids of unfinished jobs whose lease is free or expired, oldest first.
    pub(crate) async fn claimable_jobs(&self) -> anyhow::Result<Vec<String>> {
        let now = to_bson_time(Utc::now());
        let docs: Vec<Document> = self
            .jobs()
            .clone_with_type::<Document>()
            .find(doc! {
                "state": {"$in": unfinished()},
                "$or": [{"lease": {"$exists": false}}, {"lease.expires_at": {"$lte": now}}],
            })
            .projection(doc! {"_id": 1})
            .sort(doc! {"created_at": 1})
            .await?
            .try_collect()
            .await
            .context("finding jobs to run")?;
        docs.iter().map(|d| d.get_str("_id").map(str::to_owned).map_err(|_| anyhow!("job without an id"))).collect()
    }
}
