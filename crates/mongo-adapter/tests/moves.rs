//! Online moves: an organization's documents go from any placement to any other, on either
//! cluster, while an application keeps writing them; afterwards the target holds exactly
//! what the application last wrote, the source is gone, and no fence is left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{ClusterName, JobState, MovePhase, Organization, Placement, PlacementKind};
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

/// The tenant's collection and filter as its application finds them now.
struct Location {
    collection: mongodb::Collection<Document>,
    tenant: Option<(String, String)>,
}

fn location_of(store: &MongoStore, org: &Organization) -> Location {
    let location = store.location(org);
    let client = store.cluster_client(&org.placement.cluster).expect("a configured cluster");
    Location {
        collection: client.database(&location.database).collection(&location.collection),
        tenant: location.tenant_filter,
    }
}

impl Location {
    fn filter(&self, id: i64) -> Document {
        let mut filter = doc! {"_id": id};
        if let Some((field, value)) = &self.tenant {
            filter.insert(field, value);
        }
        filter
    }

    fn document(&self, id: i64, v: i64) -> Document {
        let mut document = doc! {"_id": id, "v": v, "pad": "x".repeat(64)};
        if let Some((field, value)) = &self.tenant {
            document.insert(field, value);
        }
        document
    }
}

/// What the application wrote, and when its writes were refused.
#[derive(Default)]
struct Writes {
    model: BTreeMap<i64, i64>,
    refused_at: Vec<DateTime<Utc>>,
    other_errors: Vec<String>,
    operations: u64,
}

fn validation_failure(error: &mongodb::error::Error) -> bool {
    format!("{error:?}").contains("code: 121")
}

/// An application: inserts, updates and deletes at random at the organization's location,
/// and looks the location up again when a write is refused (the fence of a move).
async fn write_until_stopped(
    store: MongoStore,
    org: Organization,
    mut writes: Writes,
    stop: Arc<AtomicBool>,
) -> Writes {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let mut location = location_of(&store, &org);
    let mut next = writes.model.keys().last().map_or(0, |k| k + 1);
    while !stop.load(Ordering::Relaxed) {
        // An application writing steadily, not flooding the test server.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let pick = |model: &BTreeMap<i64, i64>, r: u64| model.keys().nth(usize::try_from(r).unwrap_or(0)).copied();
        let len = writes.model.len() as u64;
        let (op, id) = match random(3) {
            0 => (0, next),
            1 => (1, pick(&writes.model, random(len)).unwrap_or(next)),
            _ => (2, pick(&writes.model, random(len)).unwrap_or(next)),
        };
        let result = match op {
            0 if !writes.model.contains_key(&id) || id == next => {
                location.collection.insert_one(location.document(id, 0)).await.map(drop)
            }
            1 if writes.model.contains_key(&id) => {
                location.collection.update_one(location.filter(id), doc! {"$inc": {"v": 1}}).await.map(drop)
            }
            2 if writes.model.contains_key(&id) => location.collection.delete_one(location.filter(id)).await.map(drop),
            _ => continue,
        };
        writes.operations += 1;
        match result {
            Ok(()) => match op {
                0 => {
                    writes.model.insert(id, 0);
                    next += 1;
                }
                1 => *writes.model.get_mut(&id).expect("modelled") += 1,
                _ => {
                    writes.model.remove(&id);
                }
            },
            Err(e) if validation_failure(&e) => {
                writes.refused_at.push(Utc::now());
                tokio::time::sleep(Duration::from_millis(5)).await;
                let current = store.find_by_id(org.id).await.expect("find").expect("the organization exists");
                location = location_of(&store, &current);
            }
            Err(e) => writes.other_errors.push(format!("{e}")),
        }
    }
    writes
}

async fn seed(store: &MongoStore, org: &Organization, documents: i64) -> Writes {
    let location = location_of(store, org);
    let mut writes = Writes::default();
    let all: Vec<Document> = (0..documents).map(|id| location.document(id, 0)).collect();
    for chunk in all.chunks(5000) {
        location.collection.insert_many(chunk.to_vec()).await.expect("seed");
    }
    writes.model = (0..documents).map(|id| (id, 0)).collect();
    writes
}

/// The organization's documents where it is now, as `_id -> v`, checking each is whole.
async fn stored(store: &MongoStore, org: &Organization) -> BTreeMap<i64, i64> {
    let location = location_of(store, org);
    let filter = location.tenant.as_ref().map(|(f, v)| doc! {f: v}).unwrap_or_default();
    let mut cursor = location.collection.find(filter).await.expect("find");
    let mut found = BTreeMap::new();
    while cursor.advance().await.expect("read") {
        let document: Document = cursor.deserialize_current().expect("document");
        assert_eq!(document.get_str("pad").map(str::len), Ok(64), "{document:?}");
        let id = document.get_i64("_id").or_else(|_| document.get_i32("_id").map(i64::from)).expect("an id");
        let v = document.get_i64("v").or_else(|_| document.get_i32("v").map(i64::from)).expect("v");
        assert!(found.insert(id, v).is_none(), "{id} twice");
    }
    found
}

/// Whether the source of a finished move is gone from its cluster.
async fn source_is_gone(store: &MongoStore, org: &Organization, before: &Placement, collection: &str) {
    let client = store.cluster_client(&before.cluster).expect("cluster");
    match before.kind {
        PlacementKind::Database => {
            let databases = client.list_database_names().await.expect("databases");
            assert!(!databases.contains(&Placement::database_of(org.id)), "the source database is gone");
        }
        PlacementKind::Collection => {
            let names = client.database(store.tenant_database().name()).list_collection_names().await.expect("list");
            assert!(!names.contains(&collection.to_owned()), "the source collection is gone: {names:?}");
        }
        PlacementKind::Shared => {
            let shared =
                client.database(store.tenant_database().name()).collection::<Document>(Placement::SHARED_COLLECTION);
            let left = shared.count_documents(doc! {Placement::TENANT_FIELD: org.id.to_string()}).await.expect("count");
            assert_eq!(left, 0, "the source's shared documents are gone");
        }
    }
}

/// No validator anywhere refuses the tenant's writes any more.
async fn no_fence_left(store: &MongoStore) {
    for cluster in store.cluster_names() {
        let client = store.cluster_client(&cluster).expect("cluster");
        let fences = client.database(store.tenant_database().name()).collection::<Document>("orgsvc_move_markers");
        if let Some(fence) = fences.find_one(doc! {"_id": "shared_fence"}).await.expect("fence") {
            assert_eq!(fence.get_array("tenants").map(Vec::len), Ok(0), "{fence:?}");
            assert!(fence.get("lock").is_none(), "{fence:?}");
        }
    }
}

async fn move_to(store: &MongoStore, org: &Organization, to: &Placement) -> JobView {
    let id = store.start_move(org.name.key(), to.clone()).await.expect("start the move");
    let job = store.run_job(id, "test", RunUntil::Finished).await.expect("run").expect("claimed");
    if job.state != JobState::Completed {
        let raw = store.master().collection::<Document>("jobs").find_one(doc! {}).sort(doc! {"created_at": -1}).await;
        eprintln!("{raw:?}");
    }
    assert_eq!((job.state, job.phase), (JobState::Completed, MovePhase::Done), "{job}");
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
    let writer = tokio::spawn(write_until_stopped(store.clone(), org.clone(), writes, stop.clone()));
    let mut jobs = Vec::new();
    for to in placements {
        let current = store.find_by_id(org.id).await.expect("find").expect("exists");
        let job = move_to(store, &current, to).await;
        let moved = store.find_by_id(org.id).await.expect("find").expect("exists");
        assert_eq!(&moved.placement, to, "{job}");
        source_is_gone(store, &moved, &current.placement, current.collection.as_str()).await;
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

#[tokio::test]
async fn a_tenant_of_twenty_thousand_documents_moves_across_kinds_and_clusters_under_a_writer() {
    let store = MongoStore::open(&settings(Duration::from_millis(1500), 2000)).await.expect("store");
    let org = store.create(new_organization("Busy", "b@busy.test")).await.expect("create");
    let writes = seed(&store, &org, 20_000).await;
    let placements = [
        placement(PlacementKind::Database, false),
        placement(PlacementKind::Shared, true),
        placement(PlacementKind::Collection, false),
    ];
    for job in moves_under_a_writer(&store, &org, writes, &placements).await {
        assert!(job.progress.total > 19_000 && job.progress.done * 10 >= job.progress.total * 9, "{job}");
        assert!(job.fence_ms.is_some(), "{job}");
    }
}
