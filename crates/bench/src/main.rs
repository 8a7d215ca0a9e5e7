//! `orgsvc-bench`: the benchmark harness behind `make bench` and `make bench-quick`.
//!
//! It starts the release `orgsvc` binary as a separate process (on the memory store, and on
//! MongoDB when `ORGSVC_TEST_MONGODB_URI` names a server), seeds data through the API, drives
//! load from this process with a fixed number of concurrent connections (closed loop), and
//! prints one table with the targets of issue 6 marked met or not. Nothing here runs inside
//! `cargo test`.

mod coherence;
mod load;
mod moves;
mod report;
mod scenarios;
mod service;

use std::time::{Duration, Instant};

use anyhow::Context;
use report::Report;
use scenarios::{get_warm, growth, hot_path, login_flood, rename_cost};
use service::{Service, Storage};

/// How long and how big each scenario is.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    measure: Duration,
    concurrency: usize,
    memory_sizes: Vec<usize>,
    mongo_sizes: Vec<usize>,
    /// The sizes of the `shared` placement's growth on MongoDB, which has no DDL per
    /// organization and so reaches further.
    shared_sizes: Vec<usize>,
    /// The placements whose growth is measured on MongoDB.
    placements: Vec<&'static str>,
    /// Whether `shared` organizations up to each size are stored straight in the master
    /// database in bulk rather than created through the service (the other placements are
    /// always created through it, with their DDL): the test server slows
    /// down with every single write it serves (docs/benchmarks.md), which seeding 100,000
    /// organizations one by one would measure instead of the placement.
    bulk_seed: bool,
    /// Whether the memory store's growth is measured too (`--skip-memory` leaves it out,
    /// to measure one placement per fresh test server).
    memory_growth: bool,
    big_tenant_docs: usize,
    /// The tenant sizes of the move scenario.
    move_sizes: Vec<usize>,
    /// How many times each change is made on one instance and awaited on another.
    coherence_rounds: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                measure: Duration::from_secs(3),
                concurrency: 16,
                memory_sizes: vec![200, 2_000],
                mongo_sizes: vec![100, 1_000],
                shared_sizes: vec![100, 1_000],
                placements: vec!["collection", "database", "shared"],
                memory_growth: true,
                bulk_seed: false,
                big_tenant_docs: 5_000,
                move_sizes: vec![1_000, 10_000],
                coherence_rounds: 20,
            }
        } else {
            Self {
                quick,
                measure: Duration::from_secs(8),
                concurrency: 32,
                memory_sizes: vec![1_000, 10_000, 100_000],
                // The issue asks for 1,000 and 10,000; on the project's test server creating a
                // collection costs time proportional to the number of collections it holds
                // (docs/benchmarks.md), so 10,000 alone takes longer than the 10 minutes the
                // whole run may take. `make bench-growth` runs those sizes.
                mongo_sizes: vec![1_000, 3_000],
                shared_sizes: vec![1_000, 10_000],
                placements: vec!["collection", "shared"],
                memory_growth: true,
                bulk_seed: false,
                big_tenant_docs: 100_000,
                move_sizes: vec![1_000, 100_000],
                coherence_rounds: 200,
            }
        }
    }
}

/// Which scenarios run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    /// Scenarios 3 and 5 alone.
    Growth,
    /// Scenario 6 alone.
    Moves,
    /// Scenarios 1, 7 and 8: the hot path and the cache.
    Hot,
}

/// The command line: `[--quick] [--only=growth] [--mongo-sizes=N,N...] [--shared-sizes=N,N...]
/// [--placements=P,P...]`.
fn parse_args(args: impl Iterator<Item = String>) -> anyhow::Result<(Plan, Only)> {
    let args: Vec<String> = args.collect();
    let mut plan = Plan::new(args.iter().any(|a| a == "--quick"));
    let mut only = Only::All;
    for arg in &args {
        if arg == "--quick" {
            continue;
        } else if arg == "--skip-memory" {
            plan.memory_growth = false;
        } else if arg == "--bulk-seed" {
            plan.bulk_seed = true;
        } else if let Some(sizes) = arg.strip_prefix("--mongo-sizes=") {
            plan.mongo_sizes = sizes_of("--mongo-sizes", sizes)?;
        } else if let Some(sizes) = arg.strip_prefix("--shared-sizes=") {
            plan.shared_sizes = sizes_of("--shared-sizes", sizes)?;
        } else if let Some(placements) = arg.strip_prefix("--placements=") {
            plan.placements = placements
                .split(',')
                .map(|p| match p {
                    "collection" => Ok("collection"),
                    "database" => Ok("database"),
                    "shared" => Ok("shared"),
                    other => Err(anyhow::anyhow!("--placements: {other:?} is not collection, database or shared")),
                })
                .collect::<anyhow::Result<_>>()?;
        } else if let Some(sizes) = arg.strip_prefix("--move-sizes=") {
            plan.move_sizes = sizes_of("--move-sizes", sizes)?;
        } else if arg == "--only=growth" {
            only = Only::Growth;
        } else if arg == "--only=moves" {
            only = Only::Moves;
        } else if arg == "--only=hot" {
            only = Only::Hot;
        } else {
            anyhow::bail!(
                "unknown argument {arg}; usage: orgsvc-bench [--quick] [--only=growth|moves|hot] [--mongo-sizes=N,N] \
                 [--shared-sizes=N,N] [--move-sizes=N,N] [--placements=collection,database,shared] [--skip-memory] \
                 [--bulk-seed]"
            );
        }
    }
    Ok((plan, only))
}

/// Increasing sizes from a comma-separated list.
fn sizes_of(option: &str, text: &str) -> anyhow::Result<Vec<usize>> {
    let sizes: Vec<usize> = text.split(',').map(str::parse).collect::<Result<_, _>>().context(option.to_owned())?;
    anyhow::ensure!(!sizes.is_empty() && sizes.windows(2).all(|w| w[0] < w[1]), "{option} must be increasing");
    Ok(sizes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (plan, only) = parse_args(std::env::args().skip(1))?;
    let quick = plan.quick;
    let started = Instant::now();
    let mongo_uri = std::env::var("ORGSVC_TEST_MONGODB_URI").ok();
    let mut report = Report::new();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "orgsvc benchmarks ({}), {cores} cores, MongoDB: {}",
        if quick { "quick" } else { "full" },
        if mongo_uri.is_some() { "the project's test server" } else { "none (memory only)" }
    );

    if only == Only::Hot {
        let mut figures = Vec::new();
        for storage in storages(&mongo_uri) {
            let service = Service::start(&storage, service::Hashing::Owasp).await?;
            figures.push(get_warm(&service, &storage, &plan, &mut report).await?);
            service.stop().await;
        }
        hot_path(&figures[0], figures.get(1), &plan, &mut report).await?;
        if let Some(uri) = &mongo_uri {
            coherence::delays(uri, plan.coherence_rounds, &mut report).await?;
        }
        report.print();
        println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    if only == Only::All {
        // Scenarios 1 and 2 with production hashing parameters.
        let mut figures = Vec::new();
        for storage in storages(&mongo_uri) {
            let service = Service::start(&storage, service::Hashing::Owasp).await?;
            figures.push(get_warm(&service, &storage, &plan, &mut report).await?);
            login_flood(&service, &storage, &plan, cores, &mut report).await?;
            service.stop().await;
        }
        hot_path(&figures[0], figures.get(1), &plan, &mut report).await?;
        // Scenario 8: how soon one instance sees another's changes through the cache.
        if let Some(uri) = &mongo_uri {
            coherence::delays(uri, plan.coherence_rounds, &mut report).await?;
        }
        // Scenario 4 before 3: on the test server, the thousands of collections scenario 3
        // leaves behind slow down every later collection command (docs/benchmarks.md).
        // Rename cost against tenant size (collections exist on MongoDB only), with tenant
        // collections named by key (renameCollection) and by id (metadata only).
        if let Some(uri) = &mongo_uri {
            for naming in ["key", "id"] {
                let storage = Storage::mongodb(uri);
                let service =
                    Service::start_with(&storage, service::Hashing::Cheap, &[("ORGSVC_COLLECTION_NAMING", naming)])
                        .await?;
                rename_cost(&service, &storage, naming, &plan, &mut report).await?;
                service.stop().await;
            }
        } else {
            report
                .notes
                .push("scenario 4 needs MongoDB: run through `make bench`, which starts the test server".into());
        }
    }
    // Scenario 6, before growth too: online moves against the tenant's size.
    if matches!(only, Only::All | Only::Moves) {
        match &mongo_uri {
            Some(_) => moves::move_cost(&plan.move_sizes, &mut report).await?,
            None => report.notes.push("scenario 6 (moves) needs MongoDB: run through `make bench`".into()),
        }
    }
    if only == Only::Moves {
        report.print();
        println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    // Scenarios 3 and 5: growth, with cheap hashing so that seeding is about the store; on
    // MongoDB once per placement, each on fresh databases.
    if plan.memory_growth {
        let service = Service::start(&Storage::Memory, service::Hashing::Cheap).await?;
        growth(&service, &Storage::Memory, "collection", &plan.memory_sizes, &plan, &mut report).await?;
        service.stop().await;
    }
    if let Some(uri) = &mongo_uri {
        for &placement in &plan.placements {
            let storage = Storage::mongodb(uri);
            let service =
                Service::start_with(&storage, service::Hashing::Cheap, &[("ORGSVC_PLACEMENT", placement)]).await?;
            let sizes = if placement == "shared" { &plan.shared_sizes } else { &plan.mongo_sizes };
            growth(&service, &storage, placement, sizes, &plan, &mut report).await?;
            service.stop().await;
        }
    }
    report.print();
    println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn storages(mongo_uri: &Option<String>) -> Vec<Storage> {
    let mut all = vec![Storage::Memory];
    if let Some(uri) = mongo_uri {
        all.push(Storage::mongodb(uri));
    }
    all
}
