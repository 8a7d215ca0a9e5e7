//! Scenario 6: an online tenant move against the tenant's size. For each size, an
//! organization in its own collection with that many documents moves to a database of its
//! own while an application writes to it; the move's whole time and its write fence are
//! measured. The fence must not grow with the tenant (the copy may). Batches are a tenth
//! of the tenant (see [`move_once`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use domain::{ClusterName, JobState, Placement, PlacementKind};
use mongo_adapter::test_support::application::{seed, stored, write_until_stopped};
use mongo_adapter::test_support::{URI_VARIABLE, fresh_settings, new_organization};
use mongo_adapter::{MongoStore, RunUntil};
use ports::OrganizationRepository;

use crate::report::Report;

/// What one move measured.
struct Measured {
    documents: usize,
    total: Duration,
    fence_ms: u64,
}

/// Moves a tenant of each size in `sizes` and reports the move time and the fence, with
/// verdicts on the targets: a fence under 1 s, and a fence at the largest size less than
/// twice the one at the smallest.
pub(crate) async fn move_cost(sizes: &[usize], report: &mut Report) -> anyhow::Result<()> {
    let mut measured = Vec::new();
    for &documents in sizes {
        let m = move_once(documents).await.with_context(|| format!("moving a tenant of {documents} documents"))?;
        report.notes.push(format!(
            "move of {} documents (collection -> database, under a writer): {:.1} s in all, write fence {} ms",
            m.documents,
            m.total.as_secs_f64(),
            m.fence_ms
        ));
        eprintln!(
            "[{:>4.0} s] move of {documents} documents: {:.1} s, fence {} ms",
            report.started.elapsed().as_secs_f64(),
            m.total.as_secs_f64(),
            m.fence_ms
        );
        measured.push(m);
    }
    for m in &measured {
        report.verdict(
            format!("6: move write fence under 1 s at {} documents", m.documents),
            format!("{} ms (move {:.1} s)", m.fence_ms, m.total.as_secs_f64()),
            m.fence_ms < 1_000,
        );
    }
    if let (Some(first), Some(last)) = (measured.first(), measured.last())
        && measured.len() > 1
    {
        let ratio = last.fence_ms as f64 / first.fence_ms.max(1) as f64;
        report.verdict(
            format!("6: fence at {} / fence at {} documents under 2", last.documents, first.documents),
            format!("{ratio:.2} ({} ms / {} ms)", last.fence_ms, first.fence_ms),
            ratio < 2.0,
        );
    }
    Ok(())
}

async fn move_once(documents: usize) -> anyhow::Result<Measured> {
    let mut settings = fresh_settings(URI_VARIABLE);
    settings.move_grace = Duration::ZERO;
    // The test server scans every retryable write it remembers on each new one, which a
    // steady writer would turn into a slowdown of its own (docs/benchmarks.md).
    settings.retry_writes = false;
    // The test server reads a range of `_id`s by scanning the whole collection, so batches
    // of a fixed size would make the copy quadratic there (a real mongod walks the index):
    // a tenth of the tenant per batch keeps the number of range reads constant.
    settings.move_batch = u32::try_from((documents / 10).clamp(1_000, 100_000))?;
    let store = MongoStore::open(&settings).await?;
    let org = store.create(new_organization("Mover", "m@mover.test")).await?;
    let writes = seed(&store, &org, i64::try_from(documents)?).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer =
        tokio::spawn(write_until_stopped(store.clone(), org.clone(), writes, Duration::from_millis(20), stop.clone()));
    let to = Placement { kind: PlacementKind::Database, cluster: ClusterName::main() };
    let started = Instant::now();
    let id = store.start_move(org.name.key(), to).await?;
    let job = store.run_job(id, "bench", RunUntil::Finished).await?.context("the job was not claimed")?;
    let total = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await?;
    anyhow::ensure!(job.state == JobState::Completed, "the move did not complete: {job}");
    anyhow::ensure!(writes.other_errors.is_empty(), "the writer failed: {:?}", writes.other_errors);
    let moved = store.find_by_id(org.id).await?.context("the organization vanished")?;
    anyhow::ensure!(stored(&store, &moved).await == writes.model, "the moved tenant differs from what was written");
    Ok(Measured { documents, total, fence_ms: job.fence_ms.context("no fence recorded")? })
}
