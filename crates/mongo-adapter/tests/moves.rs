//! Online moves: an organization's documents go from any placement to any other, on either
//! cluster, while an application keeps writing them; afterwards the target holds exactly
//! what the application last wrote, the source is gone, and no fence is left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use domain::{ClusterName, JobState, MovePhase, Organization, Placement, PlacementKind};
use mongo_adapter::test_support::application::{
    Writes, expire_job_lease, no_fence_left, nothing_left_at, seed, seed_ids, stored, write_until_stopped,
};
use mongo_adapter::test_support::{URI_VARIABLE, fresh_settings_with_second_cluster, new_organization, second_cluster};
use mongo_adapter::{JobView, MongoSettings, MongoStore, RunUntil};
use mongodb::bson::{Document, doc};
use ports::OrganizationRepository;

fn settings(grace: Duration, batch: u32) -> MongoSettings {
    let mut settings = fresh_settings_with_second_cluster(URI_VARIABLE);
    settings.move_grace = grace;
    settings.move_batch = batch;
    // The test server scans every retryable write it remembers on each new one, so a writer
    // that keeps writing would slow it down more and more (a real mongod does not).
    settings.retry_writes = false;
    settings
}

fn placement(kind: PlacementKind, second: bool) -> Placement {
    Placement { kind, cluster: if second { second_cluster() } else { ClusterName::main() } }
}

/// Every ordered pair of placement kinds on one cluster (collection, database, shared and
/// back in both directions), then each kind across clusters, and kinds and clusters at once.
fn circuit() -> Vec<Placement> {
    use PlacementKind::{Collection as C, Database as D, Shared as S};
    vec![
        placement(D, false),
        placement(S, false),
        placement(C, false),
        placement(S, false),
        placement(D, false),
        placement(C, false),
        placement(C, true),
        placement(D, true),
        placement(D, false),
        placement(S, true),
        placement(S, false),
        placement(C, true),
        placement(C, false),
    ]
}

async fn move_to(store: &MongoStore, org: &Organization, to: &Placement) -> JobView {
    let id = store.start_move(org.name.key(), to.clone()).await.expect("start the move");
    let job = store.run_job(id, "test", RunUntil::Finished).await.expect("run").expect("claimed");
    if job.state != JobState::Completed {
        let raw = store.master().collection::<Document>("jobs").find_one(doc! {}).sort(doc! {"created_at": -1}).await;
        eprintln!("{raw:?}");
    }
    assert_eq!((job.state, job.phase), (JobState::Completed, Some(MovePhase::Done)), "{job}");
    job
}

#[tokio::test]
async fn a_move_between_every_pair_of_placements_keeps_every_document_under_a_writer() {
    let store = MongoStore::open(&settings(Duration::from_millis(1500), 500)).await.expect("store");
    let org = store.create(new_organization("Acme", "a@acme.test")).await.expect("create");
    let writes = seed(&store, &org, 1_234).await;
    let jobs = moves_under_a_writer(&store, &org, writes, &circuit()).await;
    for job in &jobs {
        // The writer deletes some documents before they are copied, and inserts others.
        assert!(job.progress.total > 1_000 && job.progress.done * 10 >= job.progress.total * 9, "{job}");
    }
}

/// Moves the organization through `placements` while an application writes; checks that
/// the final location holds exactly what it wrote, that every source is gone, that its
/// writes were refused only inside fences, and that no fence is left.
async fn moves_under_a_writer(
    store: &MongoStore,
    org: &Organization,
    writes: Writes,
    placements: &[Placement],
) -> Vec<JobView> {
    let stop = Arc::new(AtomicBool::new(false));
    let writer =
        tokio::spawn(write_until_stopped(store.clone(), org.clone(), writes, Duration::from_millis(50), stop.clone()));
    let mut jobs = Vec::new();
    for to in placements {
        let current = store.find_by_id(org.id).await.expect("find").expect("exists");
        let job = move_to(store, &current, to).await;
        let moved = store.find_by_id(org.id).await.expect("find").expect("exists");
        assert_eq!(&moved.placement, to, "{job}");
        nothing_left_at(store, &moved, &current.placement, current.collection.as_str()).await;
        jobs.push(job);
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    let org = store.find_by_id(org.id).await.expect("find").expect("exists");
    assert!(writes.other_errors.is_empty(), "{:?}", writes.other_errors);
    assert!(writes.operations > 20, "the writer kept writing: {}", writes.operations);
    assert_eq!(stored(store, &org).await, writes.model, "exactly what the application wrote");
    for refused in &writes.refused_at {
        let inside = jobs.iter().any(|job| {
            let fence_ms = i64::try_from(job.fence_ms.unwrap_or(0)).unwrap_or(0);
            job.cleanup_at.is_some_and(|switched_plus_grace| {
                let switched = switched_plus_grace - chrono::Duration::milliseconds(1500);
                *refused >= switched - chrono::Duration::milliseconds(fence_ms + 50) && *refused <= switched_plus_grace
            })
        });
        assert!(inside, "a write refused at {refused} outside every fence: {jobs:#?}");
    }
    no_fence_left(store).await;
    jobs
}

/// A 20,000-document tenant through every ordered pair of placement kinds (collection to
/// database, database to shared, shared to collection, collection to shared, shared to
/// database, database to collection), four of the six moves across clusters.
#[tokio::test]
async fn a_tenant_of_twenty_thousand_documents_moves_between_every_pair_of_kinds_and_across_clusters_under_a_writer() {
    use PlacementKind::{Collection as C, Database as D, Shared as S};
    let store = MongoStore::open(&settings(Duration::from_millis(1500), 2000)).await.expect("store");
    let org = store.create(new_organization("Busy", "b@busy.test")).await.expect("create");
    let writes = seed(&store, &org, 20_000).await;
    let placements = [
        placement(D, false),
        placement(S, true),
        placement(C, false),
        placement(S, false),
        placement(D, true),
        placement(C, false),
    ];
    for job in moves_under_a_writer(&store, &org, writes, &placements).await {
        assert!(job.progress.total > 19_000 && job.progress.done * 10 >= job.progress.total * 9, "{job}");
        assert!(job.fence_ms.is_some(), "{job}");
    }
}

/// Whether the organization's record still carries a move.
async fn still_marked_moving(store: &MongoStore, org: &Organization) -> bool {
    let raw = store.master().collection::<Document>("organizations").find_one(doc! {"_id": org.id.to_string()}).await;
    raw.expect("read").expect("the organization exists").contains_key("moving")
}

/// A runner that stops dead at any step of a move (nothing after the step runs, nothing is
/// undone: a killed process) leaves a job that another runner resumes once the lease has
/// run out, from the checkpoint, to the end: the organization's documents are exactly what
/// its application wrote, nothing is left at the source, and no fence stays up. Cancelling
/// a move stopped inside its fence rolls it back just as cleanly.
#[tokio::test]
async fn a_move_stopped_dead_at_any_step_is_finished_by_another_runner() {
    use PlacementKind::{Collection, Database, Shared};
    // A grace period, as in production: an application that looked its location up just
    // before a switch must find the old one fenced, not gone (a write to a removed
    // collection would create it anew, and be lost).
    let store = MongoStore::open(&settings(Duration::from_secs(1), 100)).await.expect("store");
    let org = store.create(new_organization("Crashy", "c@crashy.test")).await.expect("create");
    let writes = seed(&store, &org, 450).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer =
        tokio::spawn(write_until_stopped(store.clone(), org.clone(), writes, Duration::from_millis(20), stop.clone()));
    // Each step twice, from each kind of source in turn, to the other cluster and back.
    let targets = [placement(Shared, true), placement(Database, false), placement(Collection, true)];
    let mut round = 0;
    for step in mongo_adapter::MOVE_STEPS.iter().copied().chain(std::iter::once("cancelled inside the fence")) {
        for _ in 0..2 {
            let to = &targets[round % targets.len()];
            round += 1;
            let before = store.find_by_id(org.id).await.expect("find").expect("exists");
            let cancel = !mongo_adapter::MOVE_STEPS.contains(&step);
            eprintln!("round {round}: {step}, {} to {to}", before.placement);
            match step {
                // The second batch: a copy already under way.
                "move:after_copy_batch" => store.failpoints().arm_at_pass(step, 2),
                _ if cancel => store.failpoints().arm("move:after_fence"),
                _ => store.failpoints().arm(step),
            }
            let id = store.start_move(org.name.key(), to.clone()).await.expect("start");
            let stopped = store.run_job(id, "dies", RunUntil::Finished).await.expect("run").expect("claimed");
            assert!(stopped.finished_at.is_none() && stopped.owner.as_deref() == Some("dies"), "{step}: {stopped}");
            // Nobody else can take it while the dead runner's lease lasts.
            assert!(store.run_job(id, "too early", RunUntil::Finished).await.expect("run").is_none(), "{step}");
            if cancel {
                store.cancel_job(id).await.expect("cancel");
            }
            expire_job_lease(&store, id).await;
            let job = store.run_job(id, "resumes", RunUntil::Finished).await.expect("run").expect("claimed");
            let after = store.find_by_id(org.id).await.expect("find").expect("exists");
            if cancel {
                assert_eq!((job.state, job.phase), (JobState::RolledBack, Some(MovePhase::RollingBack)), "{job}");
                assert_eq!(after.placement, before.placement, "{job}");
                nothing_left_at(&store, &after, to, after.collection.as_str()).await;
            } else {
                assert_eq!((job.state, job.phase), (JobState::Completed, Some(MovePhase::Done)), "{step}: {job}");
                assert_eq!(&after.placement, to, "{job}");
                nothing_left_at(&store, &after, &before.placement, before.collection.as_str()).await;
                // Resumed from the checkpoint, not copied again from the start.
                assert!(job.progress.done < job.progress.total + 100, "{step}: {job}");
            }
            assert!(!still_marked_moving(&store, &after).await, "{step}: {job}");
            no_fence_left(&store).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    assert!(writes.other_errors.is_empty(), "{:?}", writes.other_errors);
    assert!(writes.operations > 20, "the writer kept writing: {}", writes.operations);
    let org = store.find_by_id(org.id).await.expect("find").expect("exists");
    assert_eq!(stored(&store, &org).await, writes.model, "exactly what the application wrote");
}

/// The tiering pass counts each organization's documents and starts a move for those that
/// crossed a threshold, up or (past the margin) down, on their own cluster; one instance at
/// a time runs it; the moves keep every document; a second pass finds nothing to do.
#[tokio::test]
async fn the_tiering_pass_moves_organizations_that_crossed_a_threshold() {
    use PlacementKind::{Collection, Database, Shared};
    let store = MongoStore::open(&settings(Duration::ZERO, 500)).await.expect("store");
    let placing_shared = store.clone().placing_every_organization(placement(Shared, false));
    let policy = domain::TieringPolicy::new(10, 100).expect("a policy");
    let mut tenants = Vec::new();
    for (i, (name, shared, documents, expected)) in [
        ("Small", false, 3, Shared),
        ("Medium", false, 50, Collection),
        ("Big", false, 150, Database),
        ("Grown", true, 40, Collection),
        ("Tiny", true, 2, Shared),
    ]
    .into_iter()
    .enumerate()
    {
        let creator = if shared { &placing_shared } else { &store };
        let org = creator.create(new_organization(name, &format!("a@{name}.test"))).await.expect("create");
        let first = i64::try_from(i).expect("small") * 1_000;
        let writes = seed_ids(&store, &org, first..first + documents).await;
        tenants.push((org, writes, expected));
    }
    let lease = Duration::from_secs(60);
    let report = store.tiering_pass(&policy, "first", lease, 10).await.expect("pass");
    assert!(report.ran && report.checked == 5 && report.started.len() == 3 && report.skipped.is_empty(), "{report}");
    // Another instance's pass waits for the lease.
    assert!(!store.tiering_pass(&policy, "second", lease, 10).await.expect("pass").ran);
    let ran = store.run_due_jobs("runner").await.expect("run");
    assert_eq!(ran.len(), 3, "{ran:#?}");
    assert!(ran.iter().all(|job| job.state == JobState::Completed), "{ran:#?}");
    for (org, writes, expected) in &tenants {
        let now = store.find_by_id(org.id).await.expect("find").expect("exists");
        assert_eq!(now.placement, placement(*expected, false), "{}", org.name.as_str());
        assert_eq!(stored(&store, &now).await, writes.model, "{}", org.name.as_str());
    }
    let again = store.tiering_pass(&policy, "first", lease, 10).await.expect("pass");
    assert!(again.ran && again.started.is_empty(), "{again}");
    no_fence_left(&store).await;
}

/// Without change streams (a standalone server) a move fences its source for the whole
/// copy, and says so; the application's inserts and updates are refused until the switch
/// and then go to the new location; none is lost. (Deletes made at the old location after
/// the switch are not carried over in this mode, as docs/operations.md says, so this
/// application makes none.)
#[tokio::test]
async fn a_move_on_a_standalone_server_fences_for_the_whole_copy() {
    let mut settings =
        mongo_adapter::test_support::fresh_settings(mongo_adapter::test_support::STANDALONE_URI_VARIABLE);
    settings.move_grace = Duration::from_secs(1);
    settings.move_batch = 100;
    settings.retry_writes = false;
    let store = MongoStore::open(&settings).await.expect("store");
    let org = store.create(new_organization("Alone", "a@alone.test")).await.expect("create");
    let mut writes = seed(&store, &org, 500).await;
    writes.without_deletes = true;
    let stop = Arc::new(AtomicBool::new(false));
    let writer =
        tokio::spawn(write_until_stopped(store.clone(), org.clone(), writes, Duration::from_millis(20), stop.clone()));
    let to = placement(PlacementKind::Shared, false);
    let job = move_to(&store, &org, &to).await;
    assert_eq!(job.mode, Some(domain::MoveMode::FencedCopy), "{job}");
    assert!(job.to_string().contains("writes refused for the whole copy"), "{job}");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    assert!(writes.other_errors.is_empty(), "{:?}", writes.other_errors);
    assert!(!writes.refused_at.is_empty(), "the fence refused the writes made during the copy");
    let moved = store.find_by_id(org.id).await.expect("find").expect("exists");
    assert_eq!(moved.placement, to);
    assert_eq!(stored(&store, &moved).await, writes.model, "exactly what the application wrote");
    nothing_left_at(&store, &moved, &org.placement, org.collection.as_str()).await;
    no_fence_left(&store).await;
}
