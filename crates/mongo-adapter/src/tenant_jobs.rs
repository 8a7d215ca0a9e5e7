//! Tenant migrations and their rollbacks as jobs: recorded in `jobs` like moves, run under
//! a lease by the CLI or any instance's job runner, resumed by another after a crash (the
//! organizations' `tenant_migrations` lists are the checkpoint), and exclusive: one lock in
//! `_migrations` lets only one such job be unfinished at a time, so a second
//! `orgsvc migrate` waits for the first instead of running beside it.

use anyhow::{Context, anyhow, bail};
use domain::{JobId, JobKind, JobState};
use mongodb::bson::{Document, doc};

use crate::MongoStore;
use crate::errors::is_duplicate_key;
use crate::jobs::{Held, JobDoc, JobView};
use crate::migrations::{Migration, MigrationProgress, TenantMigrationReport};

/// The lock that makes tenant migration jobs exclusive, in `_migrations`.
const LOCK: &str = "lock/tenant_migrations";

/// The tenant migration job a run got.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationJob {
    /// A new job, recorded and waiting for this run (or any runner).
    Started(JobId),
    /// Another job holds the lock: it runs (or waits for a runner) already.
    Running(Box<JobView>),
}

/// Why a tenant migration cannot be rolled back.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// This build has no tenant migration of that name.
    #[error("no tenant migration named {0} in this build")]
    Unknown(String),
    /// The migration ships no `down` part.
    #[error("tenant migration {0} has no down part, so it cannot be rolled back; write a new migration that undoes it")]
    NoDown(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl MongoStore {
    /// Records a job applying `migrations` to every organization that lacks them (those
    /// rolled back are skipped, and reported), unless a tenant migration job is already
    /// unfinished: then that one.
    pub async fn start_tenant_migrations(&self, migrations: &[Migration]) -> anyhow::Result<MigrationJob> {
        let names = migrations.iter().map(|m| m.name.clone()).collect();
        self.start_exclusive(JobKind::TenantMigration, names).await
    }

    /// Records a job reverting the tenant migration `name` on every organization that has
    /// it, unless a tenant migration job is already unfinished: then that one. Refuses a
    /// migration without a `down` part, saying so.
    pub async fn start_tenant_rollback(
        &self,
        migrations: &[Migration],
        name: &str,
    ) -> Result<MigrationJob, RollbackError> {
        let migration =
            migrations.iter().find(|m| m.name == name).ok_or_else(|| RollbackError::Unknown(name.to_owned()))?;
        if !migration.has_down() {
            return Err(RollbackError::NoDown(name.to_owned()));
        }
        Ok(self.start_exclusive(JobKind::TenantRollback, vec![name.to_owned()]).await?)
    }

    /// Records a job of an exclusive kind and takes the lock for it. The job is recorded
    /// first, so a lock always names a job that exists; a lock whose job has ended (its
    /// runner died between ending it and unlocking) is stale and taken over.
    async fn start_exclusive(&self, kind: JobKind, migrations: Vec<String>) -> anyhow::Result<MigrationJob> {
        let locks = self.master.collection::<Document>("_migrations");
        let id = JobId::new();
        let job = JobDoc { migrations, ..JobDoc::pending(id, kind) };
        let now = job.created_at;
        self.jobs().insert_one(&job).await.context("recording a tenant migration job")?;
        loop {
            match locks.insert_one(doc! {"_id": LOCK, "job": &job.id, "at": now}).await {
                Ok(_) => {
                    tracing::info!(job = %id, kind = kind.as_str(), "tenant migration job started");
                    return Ok(MigrationJob::Started(id));
                }
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => {
                    self.jobs().delete_one(doc! {"_id": &job.id}).await.ok();
                    return Err(e).context("taking the tenant migration lock");
                }
            }
            let holder = locks.find_one(doc! {"_id": LOCK}).await.context("reading the tenant migration lock")?;
            let Some(holder) = holder.and_then(|h| h.get_str("job").ok().map(str::to_owned)) else { continue };
            let held_by = match JobId::parse(&holder) {
                Ok(holder) => self.job(holder).await?,
                Err(_) => None,
            };
            match held_by {
                Some(running) if !running.state.is_finished() => {
                    // Nothing refers to the job this run recorded.
                    self.jobs().delete_one(doc! {"_id": &job.id}).await.context("withdrawing a job")?;
                    return Ok(MigrationJob::Running(Box::new(running)));
                }
                _ => {
                    locks.delete_one(doc! {"_id": LOCK, "job": &holder}).await.context("clearing a stale lock")?;
                }
            }
        }
    }

    /// Runs a held tenant migration or rollback job to its end with `migrations` (this
    /// build's), reporting progress to `progress`; unlocks at the end. A migration the job
    /// names that this build lacks fails the run, and the job waits for a runner that has it.
    pub(crate) async fn run_migration_job(
        &self,
        held: &mut Held,
        migrations: &[Migration],
        progress: &mut dyn MigrationProgress,
    ) -> anyhow::Result<TenantMigrationReport> {
        let kind = held.doc.kind()?;
        // A job is recorded before its lock is taken, so a runner may find one whose
        // starter lost the race for the lock (and has not withdrawn it yet, or died first):
        // it runs only while holding the lock, taking it if it is free.
        if !self.hold_lock(&held.doc.id).await? {
            let summary = "not run: another tenant migration job held the lock";
            self.end_job(held, JobState::Failed, doc! {"summary": summary, "last_error": summary}).await?;
            return Ok(TenantMigrationReport::default());
        }
        let named =
            held.doc
                .migrations
                .iter()
                .map(|name| {
                    migrations.iter().find(|m| &m.name == name).cloned().ok_or_else(|| {
                        anyhow!("this build has no tenant migration {name}; a newer instance will run it")
                    })
                })
                .collect::<anyhow::Result<Vec<Migration>>>()?;
        let report = match kind {
            JobKind::TenantMigration => self.migrate_tenants_in(&named, false, progress, Some(held)).await?,
            JobKind::TenantRollback => {
                let migration = named.first().ok_or_else(|| anyhow!("a rollback job without its migration"))?;
                self.roll_back_tenants_in(migration, progress, Some(held)).await?
            }
            JobKind::Move => bail!("job {} is a move", held.doc.id),
        };
        self.end_job(held, JobState::Completed, doc! {"summary": report.to_string().trim_end()}).await?;
        self.master
            .collection::<Document>("_migrations")
            .delete_one(doc! {"_id": LOCK, "job": &held.doc.id})
            .await
            .context("releasing the tenant migration lock")?;
        Ok(report)
    }

    /// Whether the tenant migration lock names this job, taking it if it is free.
    async fn hold_lock(&self, job: &str) -> anyhow::Result<bool> {
        let locks = self.master.collection::<Document>("_migrations");
        let at = mongodb::bson::DateTime::now();
        match locks.insert_one(doc! {"_id": LOCK, "job": job, "at": at}).await {
            Ok(_) => return Ok(true),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e).context("taking the tenant migration lock"),
        }
        let holder = locks.find_one(doc! {"_id": LOCK}).await.context("reading the tenant migration lock")?;
        Ok(holder.is_some_and(|h| h.get_str("job") == Ok(job)))
    }

    /// Claims a tenant migration or rollback job and runs it here with `migrations`,
    /// showing its progress; `None` when another runner holds it.
    pub async fn run_tenant_job(
        &self,
        id: JobId,
        owner: &str,
        migrations: &[Migration],
        progress: &mut dyn MigrationProgress,
    ) -> anyhow::Result<Option<(JobView, Option<TenantMigrationReport>)>> {
        let Some(mut held) = self.claim_job(&id.to_string(), owner).await? else { return Ok(None) };
        let report = self.drive_tenant_job(&mut held, migrations, progress).await?;
        let job = self.job(id).await?.with_context(|| format!("job {id} vanished"))?;
        Ok(Some((job, report)))
    }

    /// Runs a held tenant migration or rollback job. Its report, or `None` if this runner
    /// stopped (its lease lost, or a crash injected); any other error is recorded on the job,
    /// which is released to be tried again after a lease.
    pub(crate) async fn drive_tenant_job(
        &self,
        held: &mut Held,
        migrations: &[Migration],
        progress: &mut dyn MigrationProgress,
    ) -> anyhow::Result<Option<TenantMigrationReport>> {
        match self.run_migration_job(held, migrations, progress).await {
            Ok(report) => Ok(Some(report)),
            Err(e) if e.is::<crate::jobs::LostLease>() || e.is::<crate::failpoints::Crash>() => Ok(None),
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(job = %held.doc.id, error = %message, "tenant migration job interrupted; will retry");
                let _ = self.save_job(held, doc! {"last_error": &message}).await;
                let _ = self.release_job(held, self.job_lease.length()).await;
                Err(e)
            }
        }
    }
}
