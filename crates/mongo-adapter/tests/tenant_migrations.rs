//! Tenant-wide migrations: applied to every organization's collection, resumable after an
//! interruption without applying anything twice, and applied to new collections at create.

use domain::NewOrganization;
use futures::TryStreamExt;
use mongo_adapter::test_support::fresh_store;
use mongo_adapter::{Migration, MigrationProgress, MongoStore, Silent, TENANT_MIGRATION_STEP, tenant_migrations};
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
