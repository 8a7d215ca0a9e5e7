//! A tenant application for the move tests: it writes an organization's documents where the
//! organization's connection details say they are, keeps a model of what it wrote, and
//! looks the location up again when the fence of a move refuses a write. The move tests
//! (in-process, crash-injected and killed with `kill -9`) compare the model with what the
//! organization holds afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{Organization, Placement, PlacementKind};
use mongodb::bson::{Document, doc};
use ports::OrganizationRepository;

use crate::MongoStore;

/// The tenant's collection and filter as its application finds them now.
pub struct Location {
    collection: mongodb::Collection<Document>,
    tenant: Option<(String, String)>,
}

impl Location {
    /// Where `org` (as read now) keeps its documents.
    pub fn of(store: &MongoStore, org: &Organization) -> Self {
        let location = store.location(org);
        let client = store.cluster_client(&org.placement.cluster).expect("a configured cluster");
        Location {
            collection: client.database(&location.database).collection(&location.collection),
            tenant: location.tenant_filter,
        }
    }

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
#[derive(Debug, Default)]
pub struct Writes {
    /// Every document it holds, as `_id -> v`.
    pub model: BTreeMap<i64, i64>,
    /// When the fence of a move refused a write.
    pub refused_at: Vec<DateTime<Utc>>,
    /// Any other error: none is expected.
    pub other_errors: Vec<String>,
    /// Writes attempted.
    pub operations: u64,
    /// Only inserts and updates: for a move without change streams, which does not carry
    /// over deletes made at the old location after its switch.
    pub without_deletes: bool,
}

fn validation_failure(error: &mongodb::error::Error) -> bool {
    format!("{error:?}").contains("code: 121")
}

/// An application: inserts, updates and deletes at random at the organization's location
/// (a write every `pause`), and looks the location up again when a write is refused (the
/// fence of a move), until `stop` is set.
pub async fn write_until_stopped(
    store: MongoStore,
    org: Organization,
    mut writes: Writes,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Writes {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let mut location = Location::of(&store, &org);
    let mut next = writes.model.keys().last().map_or(0, |k| k + 1);
    while !stop.load(Ordering::Relaxed) {
        // An application writing steadily, not flooding the test server.
        tokio::time::sleep(pause).await;
        let pick = |model: &BTreeMap<i64, i64>, r: u64| model.keys().nth(usize::try_from(r).unwrap_or(0)).copied();
        let len = writes.model.len() as u64;
        let kinds = if writes.without_deletes { 2 } else { 3 };
        let (op, id) = match random(kinds) {
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
                location = Location::of(&store, &current);
            }
            // The connection broke (the test server stalled, say): the write may or may not
            // have been applied, so the application reads which, as a real one would before
            // trying again, rather than insert the same `_id` again and again.
            Err(e) if outcome_unknown(&e) => match applied(&location, op, id, writes.model.get(&id).copied()).await {
                Some(true) => match op {
                    0 => {
                        writes.model.insert(id, 0);
                        next += 1;
                    }
                    1 => *writes.model.get_mut(&id).expect("modelled") += 1,
                    _ => {
                        writes.model.remove(&id);
                    }
                },
                Some(false) => {}
                None => writes.other_errors.push(format!("{e}, and its outcome could not be read")),
            },
            Err(e) => writes.other_errors.push(format!("{e}")),
        }
    }
    writes
}

/// Whether a failed write may have been applied all the same: anything but an answer of the
/// server (a write or command error).
fn outcome_unknown(error: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    !matches!(error.kind.as_ref(), ErrorKind::Write(_) | ErrorKind::Command(_))
}

/// Whether write `op` (0 insert, 1 increment from `before`, 2 delete) of document `id` was
/// applied at `location`, read once the server answers again; `None` if it never does.
async fn applied(location: &Location, op: u8, id: i64, before: Option<i64>) -> Option<bool> {
    for _ in 0..40 {
        match location.collection.find_one(location.filter(id)).await {
            Ok(found) => {
                let v = found.map(|d| d.get_i64("v").or_else(|_| d.get_i32("v").map(i64::from)).unwrap_or(-1));
                return Some(match op {
                    0 => v.is_some(),
                    1 => v == before.map(|b| b + 1),
                    _ => v.is_none(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    None
}

/// Stores `documents` documents (`_id` 0.., `v` 0) for the organization; returns the model.
pub async fn seed(store: &MongoStore, org: &Organization, documents: i64) -> Writes {
    seed_ids(store, org, 0..documents).await
}

/// Stores a document (`v` 0) with each of these `_id`s for the organization; returns the
/// model. Tenants that share a collection need `_id`s of their own.
pub async fn seed_ids(store: &MongoStore, org: &Organization, ids: std::ops::Range<i64>) -> Writes {
    let location = Location::of(store, org);
    let mut writes = Writes::default();
    let all: Vec<Document> = ids.clone().map(|id| location.document(id, 0)).collect();
    for chunk in all.chunks(5000) {
        location.collection.insert_many(chunk.to_vec()).await.expect("seed");
    }
    writes.model = ids.map(|id| (id, 0)).collect();
    writes
}

/// The organization's documents where it is now, as `_id -> v`, checking each is whole.
pub async fn stored(store: &MongoStore, org: &Organization) -> BTreeMap<i64, i64> {
    let location = Location::of(store, org);
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

/// Asserts that the organization keeps no data under `placement` with tenant collection
/// `collection`: the source of a finished move, or the target of a rolled-back one.
pub async fn nothing_left_at(store: &MongoStore, org: &Organization, placement: &Placement, collection: &str) {
    let client = store.cluster_client(&placement.cluster).expect("cluster");
    match placement.kind {
        PlacementKind::Database => {
            let databases = client.list_database_names().await.expect("databases");
            assert!(!databases.contains(&Placement::database_of(org.id)), "the database {placement} is gone");
        }
        PlacementKind::Collection => {
            let names = client.database(store.tenant_database().name()).list_collection_names().await.expect("list");
            assert!(!names.contains(&collection.to_owned()), "the collection {placement} is gone: {names:?}");
        }
        PlacementKind::Shared => {
            let shared =
                client.database(store.tenant_database().name()).collection::<Document>(Placement::SHARED_COLLECTION);
            let left = shared.count_documents(doc! {Placement::TENANT_FIELD: org.id.to_string()}).await.expect("count");
            assert_eq!(left, 0, "the shared documents on {placement} are gone");
        }
    }
}

/// Asserts that no validator of this store refuses a tenant's writes any more: no
/// collection in its tenant database or in an organization's own database, on any cluster,
/// carries a move's fence, and the shared fence of every cluster lists no tenant and is
/// unlocked. (Other tests' databases on the same server are theirs to check.)
pub async fn no_fence_left(store: &MongoStore) {
    use futures::TryStreamExt;
    let fenced = doc! {"_id": {"$exists": false}};
    let mut ours = vec![store.tenant_database().name().to_owned()];
    ours.extend(store.list().await.expect("organizations").iter().map(|org| Placement::database_of(org.id)));
    for cluster in store.cluster_names() {
        let client = store.cluster_client(&cluster).expect("cluster");
        let databases = client.list_database_names().await.expect("databases");
        for database in databases.iter().filter(|d| ours.contains(d)) {
            let specs: Vec<_> =
                client.database(database).list_collections().await.expect("list").try_collect().await.expect("specs");
            for spec in specs {
                let clauses = spec.options.validator.as_ref().and_then(|v| v.get_array("$and").ok());
                let fence = clauses.is_some_and(|clauses| clauses.iter().any(|c| c.as_document() == Some(&fenced)));
                assert!(!fence, "{database}.{} is still fenced on {cluster}", spec.name);
            }
        }
        let fences = client.database(store.tenant_database().name()).collection::<Document>("orgsvc_move_markers");
        if let Some(fence) = fences.find_one(doc! {"_id": "shared_fence"}).await.expect("fence") {
            assert_eq!(fence.get_array("tenants").map(Vec::len), Ok(0), "{fence:?}");
            assert!(fence.get("lock").is_none(), "{fence:?}");
        }
    }
}

/// Makes a job's lease run out now, as if its runner had died that long ago: a test's
/// stand-in for waiting out the lease.
pub async fn expire_job_lease(store: &MongoStore, id: domain::JobId) {
    store
        .master()
        .collection::<Document>("jobs")
        .update_one(
            doc! {"_id": id.to_string(), "lease": {"$exists": true}},
            doc! {"$set": {"lease.expires_at": crate::documents::to_bson_time(Utc::now())}},
        )
        .await
        .expect("expire the lease");
}
