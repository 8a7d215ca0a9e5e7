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
    /// Apply pending migrations: master indexes, then every tenant collection (as a job
    /// that waits for, or resumes, one already started).
    Migrate {
        /// Only list what would be applied.
        #[arg(long)]
        dry_run: bool,
        /// Roll this tenant migration back (its `down` part) on every organization that
        /// has it, as a job; a migration without a `down` part is refused.
        #[arg(long, value_name = "NAME", conflicts_with = "dry_run")]
        down: Option<String>,
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
    /// Background jobs (tenant moves, tenant migrations): list, show, cancel, run, tier.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Print the effective settings (secrets redacted); fail on an invalid one.
    CheckConfig,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// List every job, newest first.
    List,
    /// Show one job; while it runs, follow it with a progress bar until it switches or ends.
    Show {
        /// The job's id.
        id: String,
        /// Print it once, without following.
        #[arg(long)]
        once: bool,
    },
    /// Cancel a job: a move that has not switched yet rolls back cleanly, whoever runs it.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Run every job that is due (new, or whose runner died) in this process, to its end.
    Run,
    /// Run one automatic tiering pass now: start moves for the organizations whose document
    /// counts crossed a threshold (`ORGSVC_TIERING_*`); `jobs run` or the instances run them.
    Tier,
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
    /// Move an organization's data to another placement or cluster while its applications
    /// keep using it; follows the move until the switch (exit 0) or its rollback (exit 1).
    Move {
        /// The organization's name.
        name: String,
        /// The placement to move to: `collection`, `database` or `shared`.
        #[arg(long, value_name = "PLACEMENT")]
        to: String,
        /// The cluster to move to (default: the one it is on).
        #[arg(long, value_name = "CLUSTER")]
        cluster: Option<String>,
        /// Only start the move; the instances' job runners (or `orgsvc jobs run`) do it.
        #[arg(long)]
        detach: bool,
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
    let telemetry = match telemetry::init(settings.log_format, &settings.tracing) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("orgsvc: {error:#}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    // A failure is reported once: a serving process in its log (which a collector reads),
    // an operator's command on standard error.
    let serving = matches!(command, Command::Serve);
    let outcome = run(command, settings, &sources).await;
    // The last traces are sent before the process ends; that blocks, so off the runtime.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match outcome {
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
        Command::Migrate { down: Some(name), .. } => {
            let store = mongo_store(&settings).await?;
            let migrations = tenant_migrations()?;
            run_tenant_job(&store, &migrations, || store.start_tenant_rollback(&migrations, &name)).await
        }
        Command::Migrate { dry_run, down: None } => {
            let store = mongo_store(&settings).await?;
            let report = store.migrate(master_migrations()?, dry_run).await?;
            let verb = if dry_run { "would apply" } else { "applied" };
            let applied = if report.applied.is_empty() { "nothing".to_owned() } else { report.applied.join(", ") };
            println!("master migrations: {verb} {applied}; already applied: {}", report.already_applied.len());
            if !dry_run {
                print!("{}", store.rekey_organizations().await?);
            }
            let migrations = tenant_migrations()?;
            if dry_run {
                print!("{}", store.migrate_tenants(&migrations, true, &mut crate::progress::Progress::new()).await?);
                return Ok(());
            }
            run_tenant_job(&store, &migrations, || store.start_tenant_migrations(&migrations)).await
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
        Command::Jobs { command } => jobs(&mongo_store(&settings).await?, &settings, command).await,
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
                OrgCommand::Move { name, to, cluster, detach } => {
                    return move_organization(&store, &name, &to, cluster.as_deref(), detach).await;
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
                    let location = store.location(&org);
                    println!("location:    {}.{}", location.database, location.collection);
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

async fn jobs(store: &MongoStore, settings: &Settings, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List => {
            let all = store.list_jobs().await?;
            println!(
                "{:<36}  {:<16}  {:<11}  {:<15}  {:<24}  {:>17}  created",
                "id", "kind", "state", "phase", "organization or migrations", "progress"
            );
            for job in &all {
                let progress = format!("{}/{}", job.progress.done, job.progress.total);
                println!(
                    "{:<36}  {:<16}  {:<11}  {:<15}  {:<24}  {:>17}  {}",
                    job.id,
                    job.kind.as_str(),
                    job.state.as_str(),
                    job.phase.map_or("-", domain::MovePhase::as_str),
                    job.organization_name.clone().unwrap_or_else(|| job.migrations.join(",")),
                    progress,
                    job.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            println!("{} job(s)", all.len());
            Ok(())
        }
        JobsCommand::Show { id, once } => {
            let id = job_id(&id)?;
            let job = store.job(id).await?.with_context(|| format!("no job {id}"))?;
            let job =
                if once || job.state.is_finished() { job } else { crate::progress::follow_job(store, id).await? };
            print!("{job}");
            Ok(())
        }
        JobsCommand::Cancel { id } => {
            let job = store.cancel_job(job_id(&id)?).await?;
            println!("cancellation requested: the move rolls back at its next step");
            print!("{job}");
            Ok(())
        }
        JobsCommand::Run => {
            let ran = store.run_due_jobs(&runner_name()).await?;
            for job in &ran {
                print!("{job}");
            }
            println!("{} job(s) run", ran.len());
            Ok(())
        }
        JobsCommand::Tier => {
            // A one-off pass keeps the lease for a minute: no instance starts a pass meanwhile.
            let lease = std::time::Duration::from_secs(60);
            print!("{}", store.tiering_pass(&settings.tiering, &runner_name(), lease, usize::MAX).await?);
            Ok(())
        }
    }
}

fn job_id(text: &str) -> anyhow::Result<domain::JobId> {
    domain::JobId::parse(text).map_err(|_| anyhow::anyhow!("{text:?} is not a job id (see `orgsvc jobs list`)"))
}

/// How this process names itself as a job runner: host and process id, so that an
/// operator can tell which instance holds a lease.
pub fn runner_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// Starts a move and, unless detached, runs it in this process until the switch, with a
/// progress bar; fails (exit 1) when it rolled back.
async fn move_organization(
    store: &MongoStore,
    name: &str,
    to: &str,
    cluster: Option<&str>,
    detach: bool,
) -> anyhow::Result<()> {
    let name = domain::OrganizationName::parse(name).context("not a valid organization name")?;
    let org =
        store.find_by_key(name.key()).await?.with_context(|| format!("no organization has the key {}", name.key()))?;
    let kind: domain::PlacementKind =
        to.parse().map_err(|_| anyhow::anyhow!("--to {to:?}: expected collection, database or shared"))?;
    let cluster = match cluster {
        Some(c) => domain::ClusterName::parse(c).map_err(|e| anyhow::anyhow!("--cluster {c:?}: {e}"))?,
        None => org.placement.cluster.clone(),
    };
    let id = store.start_move(name.key(), domain::Placement { kind, cluster }).await?;
    println!("move started: job {id}");
    if detach {
        println!(
            "the instances' job runners (or `orgsvc jobs run`) carry it out; follow it with `orgsvc jobs show {id}`"
        );
        return Ok(());
    }
    let runner = {
        let store = store.clone();
        tokio::spawn(async move { store.run_job(id, &runner_name(), mongo_adapter::RunUntil::Switched).await })
    };
    // The bar stops at the switch; the runner may go on with the clean-up (no grace period).
    crate::progress::follow_job(store, id).await?;
    runner.await.context("the move's runner stopped")??;
    let job = store.job(id).await?.with_context(|| format!("job {id} vanished"))?;
    print!("{job}");
    match job.state {
        domain::JobState::RolledBack | domain::JobState::Failed => {
            bail!("the move did not complete: {}", job.last_error.unwrap_or_else(|| job.state.to_string()))
        }
        _ if job.phase.is_some_and(domain::MovePhase::has_switched) => {
            if let Some(at) = job.cleanup_at.filter(|_| !job.state.is_finished()) {
                println!(
                    "switched; the fenced source is removed after {} by a job runner",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            Ok(())
        }
        _ => bail!(
            "the move is still running elsewhere ({}); follow it with `orgsvc jobs show {id}`",
            job.phase.map_or("-", domain::MovePhase::as_str)
        ),
    }
}

async fn mongo_store(settings: &Settings) -> anyhow::Result<MongoStore> {
    if settings.storage != Storage::MongoDb {
        bail!(
            "ORGSVC_STORAGE is not mongodb: the memory storage lives inside a serving process and has nothing to show, migrate or reconcile"
        );
    }
    let store = MongoStore::connect(&settings.mongodb).await.context("connecting to MongoDB")?;
    // Moves run from the command line carry tenant users as the service's would.
    Ok(match settings.vault()? {
        Some(vault) => store.with_vault(vault),
        None => store,
    })
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

/// Starts a tenant migration (or rollback) job with `start` and runs it here with a progress
/// bar. While another such job is unfinished it runs that one instead if its runner died,
/// or follows it until it ends, and then starts its own: two runs never work at once.
async fn run_tenant_job<F, Fut, E>(
    store: &MongoStore,
    migrations: &[mongo_adapter::Migration],
    start: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<mongo_adapter::MigrationJob, E>>,
    E: Into<anyhow::Error>,
{
    let owner = runner_name();
    loop {
        let (id, ours) = match start().await.map_err(Into::into)? {
            mongo_adapter::MigrationJob::Started(id) => (id, true),
            mongo_adapter::MigrationJob::Running(other) => {
                let runner = other.owner.clone().unwrap_or_else(|| "no runner yet".to_owned());
                eprintln!("tenant migration job {} is unfinished ({runner}); waiting for it", other.id);
                (other.id, false)
            }
        };
        let ran = store.run_tenant_job(id, &owner, migrations, &mut crate::progress::Progress::new()).await?;
        let job = match ran {
            Some((job, Some(report))) if ours => {
                print!("{report}");
                println!("job {}: {}", job.id, job.state);
                return Ok(());
            }
            Some((job, _)) => job,
            // Another runner holds it (an instance's job runner may take up a new job first).
            None => crate::progress::follow_job(store, id).await?,
        };
        if ours {
            print!("{job}");
            return Ok(());
        }
    }
}
