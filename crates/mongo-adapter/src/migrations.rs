//! Versioned migrations. Master migrations change the master database; each is applied
//! once, in version order, and recorded in `_migrations` with the SHA-256 of its text; an
//! applied migration whose text changed is refused, naming it.
//!
//! Tenant migrations change every tenant collection: their commands name the collection
//! as `"$collection"`. Each organization records the tenant migrations its collection
//! got (`tenant_migrations` on its document), so an interrupted run resumes where it
//! stopped and never applies one twice to a collection it recorded; a new organization's
//! collection gets every tenant migration when it is created.

use anyhow::{Context, bail};
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use sha2::{Digest, Sha256};

use crate::MongoStore;
use crate::documents::name_reservations;
use crate::errors::{db, unknown};
use crate::jobs::Held;

/// A migration: a name (`NNNN_description`) and a JSON array of commands.
#[derive(Debug, Clone)]
pub struct Migration {
    /// `NNNN_description`, ordered by its number.
    pub name: String,
    /// The JSON text of the command list.
    pub text: String,
}

impl Migration {
    /// The SHA-256 of the text, hex.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }

    /// The commands that apply it: the whole array, or the `up` part of an object.
    pub(crate) fn commands(&self) -> anyhow::Result<Vec<Document>> {
        Ok(self.parts()?.0)
    }

    /// The commands that revert it (a tenant migration's `down` part), if it ships them.
    pub(crate) fn down_commands(&self) -> anyhow::Result<Option<Vec<Document>>> {
        Ok(self.parts()?.1)
    }

    /// Whether it can be rolled back.
    pub fn has_down(&self) -> bool {
        self.down_commands().is_ok_and(|down| down.is_some())
    }

    /// A migration is a JSON array of commands, or an object `{"up": [...], "down": [...]}`
    /// whose `down` reverts what `up` did.
    fn parts(&self) -> anyhow::Result<(Vec<Document>, Option<Vec<Document>>)> {
        let json: serde_json::Value =
            serde_json::from_str(&self.text).with_context(|| format!("migration {} is not valid JSON", self.name))?;
        let list = |value: serde_json::Value, part: &str| -> anyhow::Result<Vec<Document>> {
            let serde_json::Value::Array(items) = value else {
                bail!("migration {}: {part} must be a JSON array of commands", self.name)
            };
            items
                .into_iter()
                .map(|item| {
                    bson::to_document(&item)
                        .with_context(|| format!("migration {} holds a command that is not an object", self.name))
                })
                .collect()
        };
        match json {
            serde_json::Value::Array(_) => Ok((list(json, "it")?, None)),
            serde_json::Value::Object(mut parts) => {
                if let Some(other) = parts.keys().find(|k| *k != "up" && *k != "down") {
                    bail!("migration {}: unknown part {other:?} (expected up and down)", self.name);
                }
                let up = parts.remove("up").with_context(|| format!("migration {} has no up part", self.name))?;
                let down = parts.remove("down").map(|down| list(down, "down")).transpose()?;
                Ok((list(up, "up")?, down))
            }
            _ => bail!("migration {} must be a JSON array of commands or an object with up and down", self.name),
        }
    }
}

/// The master migrations embedded in this build, from `migrations/master/`.
pub fn master_migrations() -> anyhow::Result<Vec<Migration>> {
    const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/master_migrations.rs"));
    embedded(EMBEDDED)
}

/// The tenant migrations embedded in this build, from `migrations/tenant/`.
pub fn tenant_migrations() -> anyhow::Result<Vec<Migration>> {
    const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/tenant_migrations.rs"));
    embedded(EMBEDDED)
}

fn embedded(files: &[(&str, &str)]) -> anyhow::Result<Vec<Migration>> {
    let migrations: Vec<Migration> =
        files.iter().map(|(name, text)| Migration { name: (*name).to_owned(), text: (*text).to_owned() }).collect();
    for m in &migrations {
        m.parts()?;
    }
    Ok(migrations)
}

/// Where a tenant migration run reports its progress: a progress bar on a terminal, plain
/// lines otherwise.
pub trait MigrationProgress: Send {
    /// A migration starts, with this many collections to do.
    fn begin(&mut self, migration: &str, total: u64);
    /// One more collection is done.
    fn advance(&mut self);
    /// The migration is done.
    fn end(&mut self);
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl MigrationProgress for Silent {
    fn begin(&mut self, _: &str, _: u64) {}
    fn advance(&mut self) {}
    fn end(&mut self) {}
}

/// What a tenant migration run did, per migration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantMigrationReport {
    /// `(migration, collections migrated by this run (or to migrate, in a dry run),
    /// collections that already had it)`.
    pub migrations: Vec<(String, u64, u64)>,
    /// Migrations skipped because they were rolled back.
    pub rolled_back: Vec<String>,
    /// `(migration, collections reverted)` of a rollback.
    pub reverted: Vec<(String, u64)>,
    /// Whether this was a dry run, which applied nothing.
    pub dry_run: bool,
}

impl std::fmt::Display for TenantMigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.migrations.is_empty() && self.rolled_back.is_empty() && self.reverted.is_empty() {
            return writeln!(f, "tenant migrations: none");
        }
        for (name, done) in &self.reverted {
            writeln!(f, "tenant migration {name}: rolled back on {done} collection(s)")?;
        }
        for name in &self.rolled_back {
            writeln!(f, "tenant migration {name}: rolled back earlier, not applied (ship it again under a new name)")?;
        }
        for (name, done, already) in &self.migrations {
            if self.dry_run {
                writeln!(f, "tenant migration {name}: would migrate {done} collection(s), {already} already have it")?;
            } else {
                writeln!(f, "tenant migration {name}: {done} collection(s) migrated now, {already} already had it")?;
            }
        }
        Ok(())
    }
}

/// Counts a tenant migration job's work and saves it to the job's record now and then,
/// which also renews the job's lease.
#[derive(Debug, Default)]
struct JobCounter {
    done: u64,
    total: u64,
    saved: Option<std::time::Instant>,
}

impl JobCounter {
    /// One organization more is done.
    async fn advance(&mut self, store: &MongoStore, held: Option<&mut Held>) -> anyhow::Result<()> {
        self.done += 1;
        let Some(held) = held else { return Ok(()) };
        if self.saved.is_some_and(|at| at.elapsed() < std::time::Duration::from_millis(500)) {
            return Ok(());
        }
        self.saved = Some(std::time::Instant::now());
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        store
            .save_job(
                held,
                doc! {"progress.done": count(self.done), "progress.total": count(self.total.max(self.done))},
            )
            .await
    }
}

/// Replaces every `"$collection"` string in a command with the collection's name.
pub(crate) fn for_collection(value: &mut bson::Bson, collection: &str) {
    match value {
        bson::Bson::String(s) if s == "$collection" => *s = collection.to_owned(),
        bson::Bson::Document(d) => d.iter_mut().for_each(|(_, v)| for_collection(v, collection)),
        bson::Bson::Array(items) => items.iter_mut().for_each(|v| for_collection(v, collection)),
        _ => {}
    }
}

/// The step between two organizations of a tenant migration, where tests stop a run as if
/// it had been killed.
pub const TENANT_MIGRATION_STEP: &str = "tenant_migration:before_organization";

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run (or that would be, in a dry run).
    pub applied: Vec<String>,
    /// Migrations that were already applied.
    pub already_applied: Vec<String>,
}

impl MongoStore {
    /// Applies the pending migrations in order; with `dry_run`, only lists them. Refuses to
    /// do anything if an applied migration changed.
    pub async fn migrate(&self, mut migrations: Vec<Migration>, dry_run: bool) -> anyhow::Result<MigrationReport> {
        migrations.sort_by(|a, b| a.name.cmp(&b.name));
        let records: Collection<Document> = self.master.collection("_migrations");
        let mut report = MigrationReport::default();
        let mut pending = Vec::new();
        for migration in migrations {
            let checksum = migration.checksum();
            match records.find_one(doc! {"_id": &migration.name}).await.context("reading applied migrations")? {
                Some(record) => {
                    let recorded = record.get_str("checksum").unwrap_or_default();
                    if recorded != checksum {
                        bail!(
                            "migration {} was changed after it was applied (checksum {checksum}, recorded {recorded}); \
                             restore it and add a new migration instead",
                            migration.name
                        );
                    }
                    report.already_applied.push(migration.name);
                }
                None => pending.push((migration, checksum)),
            }
        }
        for (migration, checksum) in pending {
            if !dry_run {
                apply(&self.master, &migration).await?;
                let record = doc! {"_id": &migration.name, "checksum": &checksum, "applied_at": bson::DateTime::now()};
                if let Err(e) = records.insert_one(record).await
                    && !crate::errors::is_duplicate_key(&e)
                {
                    return Err(e).context("recording an applied migration");
                }
                tracing::info!(migration = %migration.name, "migration applied");
            }
            report.applied.push(migration.name);
        }
        Ok(report)
    }
}

impl MongoStore {
    /// Applies each tenant migration to every active organization's collection that lacks
    /// it, recording it on the organization as it goes; with `dry_run`, only counts. Runs
    /// until no active organization lacks a migration, so organizations created or renamed
    /// meanwhile are not missed. Tenant migrations must be idempotent (index creation,
    /// updates that skip documents already changed): a crash between applying one to a
    /// collection and recording it re-applies it to that one collection on the next run.
    /// Migrations rolled back (`orgsvc migrate --down`) are skipped and reported.
    pub async fn migrate_tenants(
        &self,
        migrations: &[Migration],
        dry_run: bool,
        progress: &mut dyn MigrationProgress,
    ) -> anyhow::Result<TenantMigrationReport> {
        self.migrate_tenants_in(migrations, dry_run, progress, None).await
    }

    /// [`MongoStore::migrate_tenants`], as the job `held` if given: its progress saved and
    /// its lease renewed as it goes.
    pub(crate) async fn migrate_tenants_in(
        &self,
        migrations: &[Migration],
        dry_run: bool,
        progress: &mut dyn MigrationProgress,
        mut held: Option<&mut Held>,
    ) -> anyhow::Result<TenantMigrationReport> {
        let mut migrations = migrations.to_vec();
        migrations.sort_by(|a, b| a.name.cmp(&b.name));
        let organizations: Collection<Document> = self.master.collection("organizations");
        let mut report = TenantMigrationReport { dry_run, ..TenantMigrationReport::default() };
        let rolled_back = self.rolled_back_tenant_migrations().await?;
        let mut job = JobCounter::default();
        for migration in &migrations {
            if rolled_back.contains(&migration.name) {
                report.rolled_back.push(migration.name.clone());
                continue;
            }
            self.check_tenant_checksum(migration, dry_run).await?;
            let commands = migration.commands()?;
            let lacking = doc! {"state": "active", "tenant_migrations": {"$ne": &migration.name}};
            let already = organizations
                .count_documents(doc! {"state": "active", "tenant_migrations": &migration.name})
                .await
                .context("counting migrated organizations")?;
            let total = organizations.count_documents(lacking.clone()).await.context("counting organizations")?;
            // Progress is shown only for work: a dry run applies nothing and an empty run has
            // nothing to count down.
            let shown = !dry_run && total > 0;
            if shown {
                progress.begin(&migration.name, total);
            }
            job.total += total;
            let mut done = 0;
            let mut shared_done = std::collections::HashSet::new();
            loop {
                let batch = self.organizations_to_migrate(lacking.clone()).await?;
                if batch.is_empty() || dry_run {
                    done += if dry_run { batch.len() as u64 } else { 0 };
                    break;
                }
                for org in batch {
                    let (id, collection) = self
                        .apply_to_organization(&org, &commands, &mut shared_done)
                        .await
                        .with_context(|| format!("applying tenant migration {}", migration.name))?;
                    // Recorded only if the collection is still the one migrated: after a
                    // concurrent rename the organization is picked up again under its new
                    // collection (idempotent), after a deletion it is gone.
                    let recorded = organizations
                        .update_one(
                            doc! {"_id": id, "collection": collection},
                            doc! {"$addToSet": {"tenant_migrations": &migration.name}},
                        )
                        .await
                        .context("recording a tenant migration")?;
                    if recorded.matched_count == 1 {
                        done += 1;
                        if shown {
                            progress.advance();
                        }
                    }
                    job.advance(self, held.as_deref_mut()).await?;
                }
            }
            if shown {
                progress.end();
            }
            if !dry_run {
                tracing::info!(migration = %migration.name, collections = done, "tenant migration applied");
            }
            report.migrations.push((migration.name.clone(), done, already));
        }
        Ok(report)
    }

    /// Reverts `migration` (its `down` part) on every active organization that has it,
    /// removing it from the organization's record as it goes, as the job `held` if given.
    /// The migration is marked rolled back first, so that organizations created meanwhile
    /// do not get it and later runs do not apply it again; the run goes on until no active
    /// organization has it, so one created just before the mark is covered too.
    pub(crate) async fn roll_back_tenants_in(
        &self,
        migration: &Migration,
        progress: &mut dyn MigrationProgress,
        mut held: Option<&mut Held>,
    ) -> anyhow::Result<TenantMigrationReport> {
        let down = migration
            .down_commands()?
            .with_context(|| format!("tenant migration {} has no down part", migration.name))?;
        self.check_tenant_checksum(migration, false).await?;
        let records: Collection<Document> = self.master.collection("_migrations");
        records
            .update_one(
                doc! {"_id": format!("tenant/{}", migration.name)},
                doc! {"$set": {"rolled_back": true, "rolled_back_at": bson::DateTime::now()}},
            )
            .await
            .context("marking a tenant migration rolled back")?;
        let organizations: Collection<Document> = self.master.collection("organizations");
        let having = doc! {"state": "active", "tenant_migrations": &migration.name};
        let total = organizations.count_documents(having.clone()).await.context("counting organizations")?;
        if total > 0 {
            progress.begin(&migration.name, total);
        }
        let mut job = JobCounter { total, ..JobCounter::default() };
        let mut shared_done = std::collections::HashSet::new();
        loop {
            let batch = self.organizations_to_migrate(having.clone()).await?;
            if batch.is_empty() {
                break;
            }
            for org in batch {
                let (id, collection) = self
                    .apply_to_organization(&org, &down, &mut shared_done)
                    .await
                    .with_context(|| format!("rolling back tenant migration {}", migration.name))?;
                let removed = organizations
                    .update_one(
                        doc! {"_id": id, "collection": collection},
                        doc! {"$pull": {"tenant_migrations": &migration.name}},
                    )
                    .await
                    .context("recording a rolled-back tenant migration")?;
                if removed.matched_count == 1 {
                    progress.advance();
                    job.advance(self, held.as_deref_mut()).await?;
                }
            }
        }
        if total > 0 {
            progress.end();
        }
        tracing::info!(migration = %migration.name, collections = job.done, "tenant migration rolled back");
        Ok(TenantMigrationReport { reverted: vec![(migration.name.clone(), job.done)], ..Default::default() })
    }

    /// The active organizations matching `filter`, in `_id` order, with what a tenant
    /// migration needs of them.
    async fn organizations_to_migrate(&self, filter: Document) -> anyhow::Result<Vec<Document>> {
        self.master
            .collection::<Document>("organizations")
            .find(filter)
            .projection(doc! {"collection": 1, "database": 1, "placement": 1, "cluster": 1})
            .sort(doc! {"_id": 1})
            .await
            .context("listing organizations")?
            .try_collect()
            .await
            .context("listing organizations")
    }

    /// Applies `commands` to an organization's collection, or for a `shared` one to its
    /// cluster's shared collection, once per run (`shared_done` holds the clusters done);
    /// a step where tests stop the run. Returns the organization's id and collection, to
    /// record the change on it.
    async fn apply_to_organization<'o>(
        &self,
        org: &'o Document,
        commands: &[Document],
        shared_done: &mut std::collections::HashSet<domain::ClusterName>,
    ) -> anyhow::Result<(&'o str, &'o str)> {
        self.failpoints.pass(TENANT_MIGRATION_STEP).await;
        self.failpoints.check(TENANT_MIGRATION_STEP)?;
        let (id, collection, database) = (org.get_str("_id")?, org.get_str("collection")?, org.get_str("database")?);
        let cluster = self.cluster_named(org.get_str("cluster").ok())?;
        if org.get_str("placement") == Ok(domain::PlacementKind::Shared.as_str()) {
            if shared_done.insert(cluster.name.clone()) {
                cluster
                    .apply_tenant_commands(cluster.tenants.name(), domain::Placement::SHARED_COLLECTION, commands)
                    .await
                    .context("on the shared collection")?;
            }
        } else {
            cluster
                .apply_tenant_commands(database, collection, commands)
                .await
                .with_context(|| format!("on {collection}"))?;
        }
        Ok((id, collection))
    }

    /// The names of the tenant migrations that were rolled back. An unreachable server is
    /// [`domain::StoreError::Unavailable`]: creates call this first.
    pub(crate) async fn rolled_back_tenant_migrations(
        &self,
    ) -> Result<std::collections::HashSet<String>, domain::StoreError> {
        let found = db(self
            .master
            .collection::<Document>("_migrations")
            .find(doc! {"rolled_back": true})
            .projection(doc! {"_id": 1})
            .await)?;
        let records: Vec<Document> = db(found.try_collect().await)?;
        Ok(records
            .iter()
            .filter_map(|r| r.get_str("_id").ok().and_then(|id| id.strip_prefix("tenant/")).map(str::to_owned))
            .collect())
    }

    /// This build's tenant migrations but those rolled back: what a new tenant collection
    /// gets.
    pub(crate) async fn tenant_migrations_in_force(&self) -> Result<Vec<Migration>, domain::StoreError> {
        let rolled_back = self.rolled_back_tenant_migrations().await?;
        Ok(tenant_migrations().map_err(unknown)?.into_iter().filter(|m| !rolled_back.contains(&m.name)).collect())
    }

    /// Records a tenant migration's checksum the first time it runs, and refuses one whose
    /// text changed since.
    async fn check_tenant_checksum(&self, migration: &Migration, dry_run: bool) -> anyhow::Result<()> {
        let records: Collection<Document> = self.master.collection("_migrations");
        let id = format!("tenant/{}", migration.name);
        let checksum = migration.checksum();
        match records.find_one(doc! {"_id": &id}).await.context("reading applied migrations")? {
            Some(record) if record.get_str("checksum").unwrap_or_default() != checksum => bail!(
                "tenant migration {} was changed after it was applied; restore it and add a new migration instead",
                migration.name
            ),
            Some(_) => Ok(()),
            None if dry_run => Ok(()),
            None => {
                let record = doc! {"_id": &id, "checksum": &checksum, "applied_at": bson::DateTime::now()};
                match records.insert_one(record).await {
                    Err(e) if !crate::errors::is_duplicate_key(&e) => Err(e).context("recording a tenant migration"),
                    _ => Ok(()),
                }
            }
        }
    }
}

async fn apply(db: &Database, migration: &Migration) -> anyhow::Result<()> {
    for command in migration.commands()? {
        db.run_command(command).await.with_context(|| format!("applying migration {}", migration.name))?;
    }
    Ok(())
}

/// The records of the re-keyings that brought stored keys to today's key rule: full case
/// folding, then look-alike skeletons reserved beside every key.
const REKEY_MIGRATIONS: [&str; 2] = ["code/0005_case_folded_keys", "code/0006_look_alike_skeletons"];

/// What re-keying stored organizations did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Organizations whose key changed, as `id: old -> new`.
    pub rekeyed: Vec<String>,
    /// How many organizations kept their key and got its look-alike skeletons reserved.
    pub skeletons_added: usize,
    /// Organizations left as they were because another one holds the new key or one of its
    /// skeletons (two names that are one name, or look like one, under the new rule): an
    /// operator should rename one.
    pub conflicts: Vec<String>,
    /// Organizations skipped because an operation on them was in progress; a later run
    /// picks them up.
    pub busy: Vec<String>,
}

impl std::fmt::Display for RekeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |items: &[String]| if items.is_empty() { "none".to_owned() } else { items.join(", ") };
        writeln!(f, "re-keying, keys updated: {}", list(&self.rekeyed))?;
        writeln!(f, "re-keying, look-alike skeletons reserved: {}", self.skeletons_added)?;
        writeln!(f, "re-keying, NEEDS ATTENTION (name or look-alike taken): {}", list(&self.conflicts))?;
        writeln!(f, "re-keying, busy: {}", list(&self.busy))
    }
}

impl MongoStore {
    /// Brings the keys of stored organizations to today's key rule: full case folding
    /// (since `code/0005_case_folded_keys`), so that an organization stored as "Straße"
    /// under the key `straße` is found again by its name, whose key is now `strasse`; and
    /// the key's look-alike skeletons reserved beside it (since
    /// `code/0006_look_alike_skeletons`). A re-keyed organization's collection keeps its name
    /// (a later rename moves it). Runs once: done is recorded in `_migrations`, unless some
    /// organization was busy, so that the next run picks it up. An organization whose new
    /// key or skeleton another organization holds is left as it was and reported.
    pub async fn rekey_organizations(&self) -> anyhow::Result<RekeyReport> {
        let records: Collection<Document> = self.master.collection("_migrations");
        let mut report = RekeyReport::default();
        let done = records.count_documents(doc! {"_id": {"$in": REKEY_MIGRATIONS.to_vec()}}).await;
        if done.context("reading _migrations")? == REKEY_MIGRATIONS.len() as u64 {
            return Ok(report);
        }
        let organizations: Collection<Document> = self.master.collection("organizations");
        let mut cursor = organizations
            .find(doc! {})
            .projection(doc! {"name": 1, "key": 1, "keys": 1, "op": 1})
            .await
            .context("listing organizations")?;
        while let Some(org) = cursor.try_next().await.context("reading an organization")? {
            let (id, name, old) = (org.get_str("_id")?, org.get_str("name")?, org.get_str("key")?);
            // A name today's rules refuse keeps the key it was stored with.
            let new = domain::OrganizationName::parse(name).map_or_else(|_| old.to_owned(), |n| n.key().to_string());
            let reservations = name_reservations(&new);
            let held: Vec<&str> =
                org.get_array("keys").iter().flat_map(|keys| keys.iter()).filter_map(|k| k.as_str()).collect();
            if new == old && held == reservations {
                continue;
            }
            if org.get("op").is_some() {
                report.busy.push(id.to_owned());
                continue;
            }
            let updated = organizations
                .update_one(
                    doc! {"_id": id, "key": old, "op": {"$exists": false}},
                    doc! {"$set": {"key": &new, "keys": &reservations}},
                )
                .await;
            match updated {
                Ok(result) if result.matched_count == 0 => report.busy.push(id.to_owned()),
                Ok(_) if new == old => report.skeletons_added += 1,
                Ok(_) => report.rekeyed.push(format!("{id}: {old} -> {new}")),
                Err(e) if crate::errors::is_duplicate_in(&e, crate::errors::KEYS_INDEX) => report.conflicts.push(
                    format!("{id} ({name:?}): {new} or a name that looks like it belongs to another organization"),
                ),
                Err(e) => return Err(e).context("re-keying an organization"),
            }
        }
        if report.busy.is_empty() {
            for record in REKEY_MIGRATIONS {
                let record = doc! {"_id": record, "applied_at": bson::DateTime::now()};
                if let Err(e) = records.insert_one(record).await
                    && !crate::errors::is_duplicate_key(&e)
                {
                    return Err(e).context("recording the re-keying");
                }
            }
        }
        if !report.rekeyed.is_empty() || !report.conflicts.is_empty() {
            tracing::warn!(%report, "re-keyed stored organizations");
        }
        Ok(report)
    }
}
