//! The command line: `orgsvc [serve]`, `orgsvc migrate [--dry-run]`, `orgsvc reconcile`.

use anyhow::{Context, bail};
use mongo_adapter::{MongoStore, master_migrations};

use crate::{Application, Settings, Storage};

const USAGE: &str = "\\
usage: orgsvc [COMMAND]

commands:
  serve               serve the HTTP API (the default)
  migrate [--dry-run] apply pending MongoDB migrations (--dry-run: only list them)
  reconcile           finish or roll back interrupted operations and report what was done

Settings come from ORGSVC_* environment variables; see the README.";

/// Runs the command named by the arguments (without the program name).
pub async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => {
            let settings = Settings::from_env()?;
            Application::build(settings).await?.run_until_stopped().await
        }
        ["migrate", rest @ ..] => {
            let dry_run = match rest {
                [] => false,
                ["--dry-run"] => true,
                _ => bail!("unexpected arguments to migrate: {rest:?}\\n\\n{USAGE}"),
            };
            let store = mongo_store().await?;
            let report = store.migrate(master_migrations()?, dry_run).await?;
            let verb = if dry_run { "would apply" } else { "applied" };
            println!(
                "{verb}: {}",
                if report.applied.is_empty() { "nothing".to_owned() } else { report.applied.join(", ") }
            );
            println!("already applied: {}", report.already_applied.len());
            Ok(())
        }
        ["reconcile"] => {
            let store = mongo_store().await?;
            let report = store.reconcile().await?;
            print!("{report}");
            if !report.needs_attention.is_empty() {
                bail!("some operations need an operator's attention (see above)");
            }
            Ok(())
        }
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown command {args:?}\\n\\n{USAGE}"),
    }
}

async fn mongo_store() -> anyhow::Result<MongoStore> {
    let settings = Settings::from_env()?;
    if settings.storage != Storage::MongoDb {
        bail!("ORGSVC_STORAGE is not mongodb: the memory storage has nothing to migrate or reconcile");
    }
    MongoStore::connect(&settings.mongodb).await.context("connecting to MongoDB")
}
