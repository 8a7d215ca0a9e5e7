//! The command line. Every command reads the same layered settings: defaults, then
//! `--config FILE`, then `ORGSVC_*` variables, then flags (`--set KEY=VALUE` and the
//! shortcuts below).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use mongo_adapter::{MongoStore, master_migrations, tenant_migrations};
use ports::{AdminRepository, OrganizationRepository};

use crate::settings::{Environment, Layers, Source, read_config_file, variable_for};
use crate::{Application, Settings, Storage, telemetry};

/// The Organization Management Service.
#[derive(Debug, Parser)]
#[command(name = "orgsvc", version, about, long_about = None)]
pub struct Cli {
    /// A TOML configuration file (keys as in `ORGSVC_*` without the prefix, lowercase;
    /// tables allowed: `[mongodb] uri = ...`).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Sets any setting, over the file and the environment (`--set http_addr=0.0.0.0:8080`).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Address to listen on (`ORGSVC_HTTP_ADDR`).
    #[arg(long, global = true, value_name = "ADDR")]
    http_addr: Option<String>,
    /// `memory` or `mongodb` (`ORGSVC_STORAGE`).
    #[arg(long, global = true, value_name = "STORAGE")]
    storage: Option<String>,
    /// `text` or `json` (`ORGSVC_LOG_FORMAT`).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending migrations: master indexes, then every tenant collection.
    Migrate {
        /// Only list what would be applied.
        #[arg(long)]
        dry_run: bool,
    },
    /// Finish or roll back interrupted operations and report what was done; with
    /// `--resolve`, settle one organization's operation the chosen way without waiting for
    /// its lease (only when no instance still runs it).
    Reconcile {
        /// The id of the organization whose operation to settle (see `org show`).
        #[arg(long, value_name = "ORGANIZATION_ID", requires = "way")]
        resolve: Option<String>,
        /// Finish the operation.
        #[arg(long, group = "way", requires = "resolve")]
        forward: bool,
        /// Undo the operation.
        #[arg(long, group = "way", requires = "resolve")]
        back: bool,
    },
    /// Read-only views of organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Print the effective settings (secrets redacted); fail on an invalid one.
    CheckConfig,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// List every organization.
    List,
    /// Show one organization by name (any spelling with the same key).
    Show {
        /// The organization's name.
        name: String,
    },
}

impl Cli {
    fn layers(&self) -> anyhow::Result<Layers> {
        let file = match &self.config {
            Some(path) => read_config_file(path)?,
            None => HashMap::new(),
        };
        let mut flags = HashMap::new();
        for assignment in &self.set {
            let Some((key, value)) = assignment.split_once('=') else {
                bail!("--set {assignment:?}: expected KEY=VALUE");
            };
            let variable = variable_for(key).with_context(|| format!("--set: unknown setting `{}`", key.trim()))?;
            flags.insert(variable.to_owned(), value.to_owned());
        }
        for (variable, value) in [
            ("ORGSVC_HTTP_ADDR", &self.http_addr),
            ("ORGSVC_STORAGE", &self.storage),
            ("ORGSVC_LOG_FORMAT", &self.log_format),
        ] {
            if let Some(value) = value {
                flags.insert(variable.to_owned(), value.clone());
            }
        }
        Ok(Layers { file, flags })
    }
}

/// Parses the arguments, loads the settings, starts telemetry and runs the command.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = cli.layers().and_then(|layers| Settings::load(&layers, |name| std::env::var(name).ok()));
    let (settings, sources) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("orgsvc: invalid configuration: {error:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let command = cli.command.unwrap_or(Command::Serve);
    // A failure is reported once: a serving process in its log (which a collector reads),
    // an operator's command on standard error.
    let serving = matches!(command, Command::Serve);
    match run(command, settings, &sources).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if serving => {
            tracing::error!(error = format!("{error:#}"), "orgsvc failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("orgsvc: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings, sources: &[(&'static str, Source)]) -> anyhow::Result<()> {
    match command {
        Command::Serve => Application::build(settings).await?.run_until_signalled().await,
        Command::CheckConfig => {
            print!("{}", describe(&settings, sources));
            println!("configuration is valid");
            Ok(())
        }
        Command::Migrate { dry_run } => {
            let store = mongo_store(&settings).await?;
            let report = store.migrate(master_migrations()?, dry_run).await?;
            let verb = if dry_run { "would apply" } else { "applied" };
            let applied = if report.applied.is_empty() { "nothing".to_owned() } else { report.applied.join(", ") };
            println!("master migrations: {verb} {applied}; already applied: {}", report.already_applied.len());
            if !dry_run {
                print!("{}", store.rekey_organizations().await?);
            }
            let tenants =
                store.migrate_tenants(&tenant_migrations()?, dry_run, &mut crate::progress::Progress::new()).await?;
            print!("{tenants}");
            Ok(())
        }
        Command::Reconcile { resolve: Some(id), forward, .. } => {
            let store = mongo_store(&settings).await?;
            let direction = if forward { mongo_adapter::Direction::Forward } else { mongo_adapter::Direction::Back };
            print!("{}", store.resolve_operation(&id, direction).await?);
            Ok(())
        }
        Command::Reconcile { .. } => {
            let store = mongo_store(&settings).await?;
            // An operator's run does everything: the operations, then the full orphan sweep.
            let mut report = store.reconcile().await?;
            report.merge(store.sweep_orphans().await?);
            print!("{report}");
            if !report.needs_attention.is_empty() {
                bail!("some operations need an operator's attention (see above)");
            }
            Ok(())
        }
        Command::Org { command } => {
            let store = mongo_store(&settings).await?;
            match command {
                OrgCommand::List => {
                    let all = store.list().await?;
                    println!(
                        "{:<36}  {:<40}  {:<30}  {:<10}  {:<10}  created",
                        "id", "name", "collection", "placement", "cluster"
                    );
                    for org in &all {
                        println!(
                            "{:<36}  {:<40}  {:<30}  {:<10}  {:<10}  {}",
                            org.id,
                            org.name.as_str(),
                            org.collection.as_str(),
                            org.placement.kind.as_str(),
                            org.placement.cluster.as_str(),
                            org.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        );
                    }
                    println!("{} organization(s)", all.len());
                }
                OrgCommand::Show { name } => {
                    let name = domain::OrganizationName::parse(&name).context("not a valid organization name")?;
                    let org = store
                        .find_by_key(name.key())
                        .await?
                        .with_context(|| format!("no organization has the key {}", name.key()))?;
                    let admin = AdminRepository::find_by_id(&store, org.admin_id).await?;
                    println!("id:          {}", org.id);
                    println!("name:        {}", org.name.as_str());
                    println!("key:         {}", org.name.key());
                    println!("collection:  {}", org.collection.as_str());
                    println!("placement:   {}", org.placement);
                    println!(
                        "admin:       {} <{}>",
                        org.admin_id,
                        admin.map_or("missing".to_owned(), |a| a.email.as_str().to_owned())
                    );
                    println!("created_at:  {}", org.created_at.to_rfc3339());
                    println!("updated_at:  {}", org.updated_at.to_rfc3339());
                }
            }
            Ok(())
        }
    }
}

async fn mongo_store(settings: &Settings) -> anyhow::Result<MongoStore> {
    if settings.storage != Storage::MongoDb {
        bail!(
            "ORGSVC_STORAGE is not mongodb: the memory storage lives inside a serving process and has nothing to show, migrate or reconcile"
        );
    }
    MongoStore::connect(&settings.mongodb).await.context("connecting to MongoDB")
}

/// The effective settings as `check-config` prints them: one line per variable with its
/// value and where the value came from, secrets redacted.
fn describe(settings: &Settings, sources: &[(&'static str, Source)]) -> String {
    let environment = match settings.environment {
        Environment::Production => "Production: the production checks passed",
        Environment::Development => "Development: production checks not applied",
    };
    let mut text = format!("# {environment}\n");
    let width = crate::settings::VARIABLES.iter().map(|v| v.len()).max().unwrap_or(0);
    for (variable, value) in settings.describe() {
        let source = sources.iter().find(|(v, _)| *v == variable).map_or(Source::Default, |(_, s)| *s);
        let value = if value.is_empty() { "(not set)".to_owned() } else { value };
        text.push_str(&format!("{variable:<width$} = {value}  # {source}\n"));
    }
    text
}
