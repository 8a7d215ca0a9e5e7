//! Versioned migrations of the master database. Each is applied once, in version order,
//! and recorded in `_migrations` with the SHA-256 of its text; an applied migration whose
//! text changed is refused, naming it.

use anyhow::{Context, bail};
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use sha2::{Digest, Sha256};

use crate::MongoStore;

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

    fn commands(&self) -> anyhow::Result<Vec<Document>> {
        let json: serde_json::Value =
            serde_json::from_str(&self.text).with_context(|| format!("migration {} is not valid JSON", self.name))?;
        let serde_json::Value::Array(items) = json else {
            bail!("migration {} must be a JSON array of commands", self.name)
        };
        items
            .into_iter()
            .map(|item| {
                bson::to_document(&item)
                    .with_context(|| format!("migration {} holds a command that is not an object", self.name))
            })
            .collect()
    }
}

/// The master migrations embedded in this build, from `migrations/master/`.
pub fn master_migrations() -> anyhow::Result<Vec<Migration>> {
    const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
    let migrations: Vec<Migration> =
        EMBEDDED.iter().map(|(name, text)| Migration { name: (*name).to_owned(), text: (*text).to_owned() }).collect();
    for m in &migrations {
        m.commands()?;
    }
    Ok(migrations)
}

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

async fn apply(db: &Database, migration: &Migration) -> anyhow::Result<()> {
    for command in migration.commands()? {
        db.run_command(command).await.with_context(|| format!("applying migration {}", migration.name))?;
    }
    Ok(())
}
