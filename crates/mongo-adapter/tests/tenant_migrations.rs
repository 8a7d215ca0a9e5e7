//! Tenant-wide migrations: applied to every organization's collection, resumable after an
//! interruption without applying anything twice, and applied to new collections at create;
//! run as exclusive jobs; rolled back by their `down` part.

use domain::{JobKind, JobState, NewOrganization};
use futures::TryStreamExt;
use mongo_adapter::test_support::application::expire_job_lease;
use mongo_adapter::test_support::fresh_store;
use mongo_adapter::{
    Migration, MigrationJob, MigrationProgress, MongoStore, Silent, TENANT_MIGRATION_STEP, tenant_migrations,
};
use mongodb::bson::{Document, doc};
use ports::{OrganizationRepository, TenantStore};
use serde_json::json;

fn new_org(i: usize) -> NewOrganization {
    mongo_adapter::test_support::new_organization(&format!("Tenant {i:04}"), &format!("admin{i}@tenant.test"))
}

/// A deliberately non-idempotent backfill: applied twice, a document would count 2.
fn backfill() -> Migration {
    Migration {
        name: "0100_backfill_counter".to_owned(),
        text: json!([
            {"update": "$collection", "updates": [{"q": {}, "u": {"$inc": {"migrated": 1}}, "multi": true}]},
            {"createIndexes": "$collection", "indexes": [{"key": {"migrated": 1}, "name": "migrated"}]}
        ])
        .to_string(),
    }
}

#[derive(Default)]
struct Recorded {
    begun: Vec<(String, u64)>,
    advanced: u64,
    ended: usize,
}

impl MigrationProgress for Recorded {
    fn begin(&mut self, migration: &str, total: u64) {
        self.begun.push((migration.to_owned(), total));
    }
    fn advance(&mut self) {
        self.advanced += 1;
    }
    fn end(&mut self) {
        self.ended += 1;
    }
}

async fn migrated_count(store: &MongoStore, name: &str) -> u64 {
    store
        .master()
        .collection::<Document>("organizations")
        .count_documents(doc! {"tenant_migrations": name})
        .await
        .expect("count")
}

/// Every document of a collection of the tenant database.
async fn all_documents(store: &MongoStore, collection: &str) -> Vec<Document> {
    let cursor = store.tenant_database().collection::<Document>(collection).find(doc! {}).await.expect("find");
    cursor.try_collect().await.expect("documents")
}

/// The backfill's counter on a document, whichever integer type the server stored.
fn migrated(document: &Document) -> Option<i64> {
    document.get_i32("migrated").map(i64::from).or_else(|_| document.get_i64("migrated")).ok()
}

async fn index_names(store: &MongoStore, collection: &str) -> Vec<String> {
    store.tenant_database().collection::<Document>(collection).list_index_names().await.expect("indexes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_run_resumes_and_applies_each_migration_once() {
    let store = fresh_store().await;
    const ORGS: usize = 300;
    let mut orgs = Vec::with_capacity(ORGS);
    for i in 0..ORGS {
        let org = store.create(new_org(i)).await.expect("create");
        store.insert_documents(&org, vec![json!({"n": 1}), json!({"n": 2})]).await.expect("seed");
        orgs.push(org);
    }

    // Killed halfway: after 150 organizations the run stops dead.
    store.failpoints().arm_at_pass(TENANT_MIGRATION_STEP, ORGS / 2 + 1);
    let mut progress = Recorded::default();
    store.migrate_tenants(&[backfill()], false, &mut progress).await.expect_err("interrupted");
    assert_eq!(migrated_count(&store, "0100_backfill_counter").await, (ORGS / 2) as u64);
    assert_eq!(progress.begun, vec![("0100_backfill_counter".to_owned(), ORGS as u64)]);
    assert_eq!(progress.advanced, (ORGS / 2) as u64);

    // A dry run counts what is left.
    let dry = store.migrate_tenants(&[backfill()], true, &mut Silent).await.expect("dry run");
    assert_eq!(dry.migrations, vec![("0100_backfill_counter".to_owned(), (ORGS / 2) as u64, (ORGS / 2) as u64)]);

    // Resumed: the rest, and only the rest.
    store.failpoints().clear();
    let report = store.migrate_tenants(&[backfill()], false, &mut Silent).await.expect("resume");
    assert_eq!(report.migrations, vec![("0100_backfill_counter".to_owned(), (ORGS / 2) as u64, (ORGS / 2) as u64)]);
    for org in &orgs {
        let docs = all_documents(&store, org.collection.as_str()).await;
        assert_eq!(docs.len(), 2);
        for d in &docs {
            assert_eq!(migrated(d), Some(1), "{org:?}: {d}");
        }
        assert!(index_names(&store, org.collection.as_str()).await.contains(&"migrated".to_owned()));
    }
    // Once everything has it, a run does nothing.
    let again = store.migrate_tenants(&[backfill()], false, &mut Silent).await.expect("again");
    assert_eq!(again.migrations, vec![("0100_backfill_counter".to_owned(), 0, ORGS as u64)]);

    // A changed migration is refused.
    let mut changed = backfill();
    changed.text = changed.text.replace("migrated", "migrated_twice");
    let error = format!("{:#}", store.migrate_tenants(&[changed], false, &mut Silent).await.expect_err("changed"));
    assert!(error.contains("0100_backfill_counter") && error.contains("changed"), "{error}");
}

#[tokio::test]
async fn new_collections_get_every_tenant_migration_at_create() {
    let store = fresh_store().await;
    let embedded = tenant_migrations().expect("embedded");
    assert!(!embedded.is_empty());
    let org = store.create(new_org(1)).await.expect("create");
    assert!(index_names(&store, org.collection.as_str()).await.contains(&"updated_at".to_owned()));
    for migration in &embedded {
        assert_eq!(migrated_count(&store, &migration.name).await, 1);
    }
    let report = store.migrate_tenants(&embedded, false, &mut Silent).await.expect("migrate");
    assert!(report.migrations.iter().all(|(_, now, already)| *now == 0 && *already == 1), "{report}");
}

/// Organizations placed `shared` have no collection of their own: a tenant migration
/// applies to their cluster's shared collection, once per run however many of them there
/// are, and is recorded on each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_organizations_are_migrated_through_the_shared_collection_once() {
    let shared = domain::Placement { kind: domain::PlacementKind::Shared, cluster: domain::ClusterName::main() };
    let store = fresh_store().await.placing_every_organization(shared);
    let mut orgs = Vec::new();
    for i in 0..5 {
        let org = store.create(new_org(i)).await.expect("create");
        store.insert_documents(&org, vec![json!({"n": i})]).await.expect("seed");
        orgs.push(org);
    }
    let report = store.migrate_tenants(&[backfill()], false, &mut Silent).await.expect("migrate");
    assert_eq!(report.migrations, vec![("0100_backfill_counter".to_owned(), 5, 0)]);
    assert_eq!(migrated_count(&store, "0100_backfill_counter").await, 5);
    let docs = all_documents(&store, domain::Placement::SHARED_COLLECTION).await;
    assert_eq!(docs.len(), 5);
    assert!(docs.iter().all(|d| migrated(d) == Some(1)), "applied once: {docs:?}");
    assert!(index_names(&store, domain::Placement::SHARED_COLLECTION).await.contains(&"migrated".to_owned()));
    // No collection of an organization's name was created on the way.
    let names = store.tenant_database().list_collection_names().await.expect("names");
    assert_eq!(names, [domain::Placement::SHARED_COLLECTION]);
    // A new shared organization has the build's migrations recorded, as a new collection would.
    let built: Vec<String> = tenant_migrations().expect("migrations").into_iter().map(|m| m.name).collect();
    let new = store.create(new_org(99)).await.expect("create");
    let stored = store
        .master()
        .collection::<Document>("organizations")
        .find_one(doc! {"_id": new.id.to_string()})
        .await
        .expect("find")
        .expect("stored");
    let recorded: Vec<String> = stored
        .get_array("tenant_migrations")
        .expect("recorded")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    assert_eq!(recorded, built);
}

/// Tenant migrations run as a job: one at a time (a second start gets the unfinished one),
/// under a lease, resumed by another runner after its runner died, the lock released at the
/// end; the job shows what it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_migrations_run_as_one_exclusive_job_that_another_runner_resumes() {
    let store = fresh_store().await;
    const ORGS: usize = 40;
    let mut orgs = Vec::new();
    for i in 0..ORGS {
        let org = store.create(new_org(i)).await.expect("create");
        store.insert_documents(&org, vec![json!({"n": i})]).await.expect("seed");
        orgs.push(org);
    }
    let MigrationJob::Started(id) = store.start_tenant_migrations(&[backfill()]).await.expect("start") else {
        panic!("no other job runs")
    };
    // A second run finds the first one, and records nothing of its own.
    match store.start_tenant_migrations(&[backfill()]).await.expect("start again") {
        MigrationJob::Running(job) => assert_eq!((job.id, job.kind), (id, JobKind::TenantMigration)),
        other => panic!("two migration jobs at once: {other:?}"),
    }
    assert_eq!(store.list_jobs().await.expect("jobs").len(), 1);

    // A job whose starter lost the race for the lock (recorded, not yet withdrawn) is not
    // run beside the one holding it: a runner that finds it ends it, unrun.
    let loser = domain::JobId::new();
    let now = mongodb::bson::DateTime::now();
    store
        .master()
        .collection::<Document>("jobs")
        .insert_one(doc! {
            "_id": loser.to_string(), "kind": "tenant_migration", "state": "pending",
            "migrations": ["0100_backfill_counter"], "created_at": now, "updated_at": now,
        })
        .await
        .expect("record a losing job");
    let (ended, _) =
        store.run_tenant_job(loser, "runner", &[backfill()], &mut Silent).await.expect("run").expect("claimed");
    assert_eq!(ended.state, JobState::Failed, "{ended}");
    assert_eq!(migrated_count(&store, "0100_backfill_counter").await, 0);

    // Its runner dies halfway.
    store.failpoints().arm_at_pass(TENANT_MIGRATION_STEP, ORGS / 2 + 1);
    let (stopped, report) =
        store.run_tenant_job(id, "dies", &[backfill()], &mut Silent).await.expect("run").expect("claimed");
    assert!(report.is_none() && stopped.state == JobState::Running, "{stopped}");
    assert_eq!(migrated_count(&store, "0100_backfill_counter").await, (ORGS / 2) as u64);
    assert!(store.run_tenant_job(id, "too early", &[backfill()], &mut Silent).await.expect("run").is_none());
    assert!(matches!(store.start_tenant_migrations(&[backfill()]).await, Ok(MigrationJob::Running(_))));

    // Another runner takes it up once the lease has run out, and does only the rest.
    expire_job_lease(&store, id).await;
    let (job, report) =
        store.run_tenant_job(id, "resumes", &[backfill()], &mut Silent).await.expect("run").expect("claimed");
    let report = report.expect("ran to the end");
    assert_eq!(report.migrations, vec![("0100_backfill_counter".to_owned(), (ORGS / 2) as u64, (ORGS / 2) as u64)]);
    assert_eq!(job.state, JobState::Completed, "{job}");
    assert_eq!(job.migrations, vec!["0100_backfill_counter".to_owned()]);
    assert!(job.summary.as_deref().is_some_and(|s| s.contains("20 collection(s) migrated now")), "{job}");
    for org in &orgs {
        let docs = all_documents(&store, org.collection.as_str()).await;
        assert!(docs.iter().all(|d| migrated(d) == Some(1)), "applied once: {docs:?}");
    }
    // The lock is free again: the next run is a job of its own, with nothing to do.
    let MigrationJob::Started(next) = store.start_tenant_migrations(&[backfill()]).await.expect("start") else {
        panic!("the lock was not released")
    };
    let (_, report) =
        store.run_tenant_job(next, "again", &[backfill()], &mut Silent).await.expect("run").expect("claimed");
    assert_eq!(report.expect("ran").migrations, vec![("0100_backfill_counter".to_owned(), 0, ORGS as u64)]);
    // Migration jobs are not cancelled (a rollback undoes a migration).
    assert!(matches!(store.cancel_job(next).await, Err(mongo_adapter::CancelJobError::NotCancellable(..))));
}

/// Runs a tenant migration job with [`reversible`] here, to completion; its report.
async fn run_reversible(store: &MongoStore, id: domain::JobId) -> mongo_adapter::TenantMigrationReport {
    let ran = store.run_tenant_job(id, "here", &[reversible()], &mut Silent).await.expect("run");
    let (job, report) = ran.expect("claimed");
    assert_eq!(job.state, JobState::Completed, "{job}");
    report.expect("ran")
}

/// An index and a flag on every document, and their removal.
fn reversible() -> Migration {
    Migration {
        name: "0101_flagged".to_owned(),
        text: json!({
            "up": [
                {"update": "$collection", "updates": [{"q": {}, "u": {"$set": {"flagged": true}}, "multi": true}]},
                {"createIndexes": "$collection", "indexes": [{"key": {"flagged": 1}, "name": "flagged"}]}
            ],
            "down": [
                {"dropIndexes": "$collection", "index": "flagged"},
                {"update": "$collection", "updates": [{"q": {}, "u": {"$unset": {"flagged": ""}}, "multi": true}]}
            ]
        })
        .to_string(),
    }
}

/// `migrate --down`: a migration with a `down` part is reverted on every organization that
/// has it, own collections and shared collection alike, as a job; it stays rolled back (a
/// later run skips it and new collections do not get it); one without a `down` part, or
/// an unknown one, is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_with_a_down_part_rolls_back_everywhere_and_stays_rolled_back() {
    let store = fresh_store().await;
    let shared = domain::Placement { kind: domain::PlacementKind::Shared, cluster: domain::ClusterName::main() };
    let placing_shared = store.clone().placing_every_organization(shared);
    let mut own = Vec::new();
    for i in 0..3 {
        let org = store.create(new_org(i)).await.expect("create");
        store.insert_documents(&org, vec![json!({"n": i})]).await.expect("seed");
        own.push(org);
    }
    for i in 3..5 {
        let org = placing_shared.create(new_org(i)).await.expect("create");
        placing_shared.insert_documents(&org, vec![json!({"n": i})]).await.expect("seed");
    }
    let MigrationJob::Started(up) = store.start_tenant_migrations(&[reversible()]).await.expect("start") else {
        panic!("no other job")
    };
    assert_eq!(run_reversible(&store, up).await.migrations, vec![("0101_flagged".to_owned(), 5, 0)]);
    let collections: Vec<String> = own
        .iter()
        .map(|o| o.collection.as_str().to_owned())
        .chain([domain::Placement::SHARED_COLLECTION.to_owned()])
        .collect();
    for collection in &collections {
        assert!(index_names(&store, collection).await.contains(&"flagged".to_owned()), "{collection}");
    }

    // Refused without a down part, or by an unknown name.
    let error = store.start_tenant_rollback(&[backfill()], "0100_backfill_counter").await.expect_err("no down");
    assert!(error.to_string().contains("has no down part"), "{error}");
    let error = store.start_tenant_rollback(&[reversible()], "0999_nothing").await.expect_err("unknown");
    assert!(error.to_string().contains("no tenant migration named 0999_nothing"), "{error}");

    let Ok(MigrationJob::Started(down)) = store.start_tenant_rollback(&[reversible()], "0101_flagged").await else {
        panic!("the rollback did not start")
    };
    let report = run_reversible(&store, down).await;
    assert_eq!(report.reverted, vec![("0101_flagged".to_owned(), 5)]);
    assert_eq!(migrated_count(&store, "0101_flagged").await, 0);
    for collection in &collections {
        assert!(!index_names(&store, collection).await.contains(&"flagged".to_owned()), "{collection}");
        let docs = all_documents(&store, collection).await;
        assert!(docs.iter().all(|d| !d.contains_key("flagged")), "{docs:?}");
    }
    // It stays rolled back: the next run skips it, saying so.
    let MigrationJob::Started(again) = store.start_tenant_migrations(&[reversible()]).await.expect("start") else {
        panic!("the lock was not released")
    };
    let report = run_reversible(&store, again).await;
    assert!(report.migrations.is_empty() && report.rolled_back == ["0101_flagged"], "{report}");
    assert_eq!(migrated_count(&store, "0101_flagged").await, 0);
}

/// A new collection gets only the tenant migrations in force: not one rolled back.
#[tokio::test]
async fn a_rolled_back_migration_is_not_applied_to_new_collections() {
    let store = fresh_store().await;
    let first = tenant_migrations().expect("embedded").remove(0);
    store
        .master()
        .collection::<Document>("_migrations")
        .update_one(doc! {"_id": format!("tenant/{}", first.name)}, doc! {"$set": {"rolled_back": true}})
        .upsert(true)
        .await
        .expect("mark rolled back");
    let org = store.create(new_org(1)).await.expect("create");
    assert!(!index_names(&store, org.collection.as_str()).await.contains(&"updated_at".to_owned()));
    assert_eq!(migrated_count(&store, &first.name).await, 0);
}
