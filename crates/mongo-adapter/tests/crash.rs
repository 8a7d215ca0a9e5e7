//! Crash injection: every step of create, update (rename with admin changes, and a plain
//! rename) and delete is interrupted in turn as if the process died there; a reconciliation
//! pass must then leave the store satisfying every invariant, with each operation either
//! fully applied or fully undone, and never a tenant document lost or duplicated.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use domain::{
    AdminId, CollectionName, CollectionNaming, Email, NewAdmin, NewOrganization, OrgId, Organization,
    OrganizationChanges, OrganizationName, PasswordHash, Rename, UpdateOrgError,
};
use futures::TryStreamExt;
use mongo_adapter::test_support::{fresh_standalone_store, fresh_store};
use mongo_adapter::{
    CREATE_STEPS, DELETE_STEPS, MongoStore, RECONCILE_AFTER_LISTING, SHARED_DELETE_STEP, UPDATE_STEPS,
    shared_collection_options, tenant_collection_options,
};
use mongodb::bson::{Document, doc};
use ports::{AdminRepository, OrganizationRepository, TenantStore};
use serde_json::json;

fn phc(tag: &str) -> PasswordHash {
    PasswordHash::from_phc(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${tag}")).expect("phc")
}

fn email(text: &str) -> Email {
    Email::parse(text).expect("email")
}

fn new_org(name: &str, admin_email: &str) -> NewOrganization {
    let name = OrganizationName::parse(name).expect("name");
    let admin = NewAdmin { id: AdminId::new(), email: email(admin_email), password_hash: phc("b2xk") };
    NewOrganization::new(OrgId::new(), name, CollectionNaming::Key, admin, domain::truncate_to_millis(Utc::now()))
}

async fn seeded(
    store: &MongoStore,
    name: &str,
    admin_email: &str,
    docs: usize,
) -> (Organization, Vec<serde_json::Value>) {
    let org = store.create(new_org(name, admin_email)).await.expect("create");
    let documents: Vec<_> = (0..docs).map(|i| json!({"n": i, "owner": name})).collect();
    store.insert_documents(&org, documents.clone()).await.expect("seed");
    (org, documents)
}

async fn reconcile(store: &MongoStore) {
    store.failpoints().clear();
    let report = store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile");
    assert!(report.needs_attention.is_empty(), "{report}");
    let swept = store.sweep_orphans().await.expect("sweep");
    assert!(swept.needs_attention.is_empty(), "{swept}");
    // A second pass finds nothing left to do.
    let again = store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile again");
    assert!(again.is_clean(), "second pass: {again}");
    let again = store.sweep_orphans().await.expect("sweep again");
    assert!(again.is_clean(), "second sweep: {again}");
}

/// The invariants of the master database and the tenant collections.
/// The types of the events an organization published, in its sequence order.
async fn published(store: &MongoStore, org: domain::OrgId) -> Vec<String> {
    let events: Vec<Document> = store
        .master()
        .collection("outbox")
        .find(doc! {"org_id": org.to_string()})
        .sort(doc! {"seq": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("events");
    events.iter().map(|e| e.get_str("type").expect("type").to_owned()).collect()
}

async fn assert_invariants(store: &MongoStore) {
    let orgs: Vec<Document> = store
        .master()
        .collection("organizations")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("orgs");
    let admins: Vec<Document> =
        store.master().collection("admins").find(doc! {}).await.expect("find").try_collect().await.expect("admins");
    let mut expected_collections = BTreeSet::new();
    for org in &orgs {
        assert_eq!(org.get_str("state"), Ok("active"), "{org}");
        assert!(org.get("op").is_none(), "unfinished operation left: {org}");
        let key = org.get_str("key").expect("key");
        // Exactly the key and its look-alike skeletons: no reservation is left behind.
        let skeletons = domain::OrgKey::from_stored(key.to_owned()).skeletons();
        let expected: Vec<&str> = std::iter::once(key).chain(skeletons.iter().map(|s| s.as_str())).collect();
        let keys: Vec<&str> = org.get_array("keys").expect("keys").iter().filter_map(|k| k.as_str()).collect();
        assert_eq!(keys, expected, "{org}");
        if org.get_str("placement") != Ok("shared") {
            assert!(
                expected_collections.insert(org.get_str("collection").expect("collection").to_owned()),
                "two organizations in one collection"
            );
        }
        let admin_id = org.get_str("admin_id").expect("admin id");
        assert!(admins.iter().any(|a| a.get_str("_id") == Ok(admin_id)), "admin of {org} is missing");
        // Every published event is relayed, numbered 1, 2, ... without gaps.
        assert!(org.get_array("outbox").map_or(true, |pending| pending.is_empty()), "events left unrelayed: {org}");
        let id = domain::OrgId::parse(org.get_str("_id").expect("id")).expect("an id");
        let count = i64::try_from(published(store, id).await.len()).expect("count");
        assert_eq!(org.get_i64("event_seq").unwrap_or(0), count, "{org}");
    }
    for admin in &admins {
        let org_id = admin.get_str("organization_id").expect("organization id");
        assert!(orgs.iter().any(|o| o.get_str("_id") == Ok(org_id)), "admin {admin} has no organization");
    }
    let actual: BTreeSet<String> =
        store.tenant_collections().await.expect("collections").iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(actual, expected_collections, "tenant collections and organizations disagree");
    let expected_validator = tenant_collection_options().get_document("validator").ok().cloned();
    for org in orgs.iter().filter(|org| org.get_str("placement") != Ok("shared")) {
        let collection = org.get_str("collection").expect("collection");
        let database = org.get_str("database").expect("database");
        let cluster = cluster_client(store, org.get_str("cluster").ok());
        let validator = mongo_adapter::test_support::validator(&cluster.database(database), collection).await;
        assert_eq!(validator, expected_validator, "{collection} lost its schema");
    }
    // No document of a shared collection belongs to an organization that is gone.
    let shared = domain::Placement::SHARED_COLLECTION;
    for cluster in store.cluster_names() {
        let tenants = cluster_client(store, Some(cluster.as_str())).database(store.tenant_database().name());
        if !tenants.list_collection_names().await.expect("names").iter().any(|n| n == shared) {
            continue;
        }
        let owners = tenants
            .collection::<Document>(shared)
            .distinct(domain::Placement::TENANT_FIELD, doc! {})
            .await
            .expect("distinct");
        for owner in owners {
            let owner = owner.as_str().expect("a string tenant id");
            assert!(orgs.iter().any(|o| o.get_str("_id") == Ok(owner)), "shared documents of {owner} left behind");
        }
        let validator = mongo_adapter::test_support::validator(&tenants, shared).await;
        assert_eq!(validator, shared_collection_options().get_document("validator").ok().cloned());
    }
}

/// The client of the cluster a stored `cluster` field names (absent: main).
fn cluster_client<'a>(store: &'a MongoStore, cluster: Option<&str>) -> &'a mongodb::Client {
    let name = cluster.map_or_else(domain::ClusterName::main, |c| domain::ClusterName::parse(c).expect("name"));
    store.cluster_client(&name).expect("a configured cluster")
}

/// Whether the database an organization would have under the `database` placement holds
/// nothing on any cluster (never had anything, or was dropped with the organization).
async fn own_database_is_empty(store: &MongoStore, id: OrgId) -> bool {
    for cluster in store.cluster_names() {
        let client = store.cluster_client(&cluster).expect("cluster");
        let database = client.database(&domain::Placement::database_of(id));
        if !database.list_collection_names().await.expect("list").is_empty() {
            return false;
        }
    }
    true
}

/// Stores that place every organization in a database of its own.
async fn own_database_store() -> MongoStore {
    fresh_store().await.placing_every_organization(own_database())
}

async fn own_database_standalone_store() -> MongoStore {
    fresh_standalone_store().await.placing_every_organization(own_database())
}

fn own_database() -> domain::Placement {
    domain::Placement { kind: domain::PlacementKind::Database, cluster: domain::ClusterName::main() }
}

/// Stores that place every organization in the shared collection, deleting its documents
/// in batches of 7, so that deleting a tenant of 30 documents takes several batches.
async fn shared_store_on(variable: &str) -> MongoStore {
    let mut settings = mongo_adapter::test_support::fresh_settings(variable);
    settings.shared_delete_batch = 7;
    let shared = domain::Placement { kind: domain::PlacementKind::Shared, cluster: domain::ClusterName::main() };
    MongoStore::open(&settings).await.expect("open").placing_every_organization(shared)
}

async fn shared_store() -> MongoStore {
    shared_store_on(mongo_adapter::test_support::URI_VARIABLE).await
}

async fn shared_standalone_store() -> MongoStore {
    shared_store_on(mongo_adapter::test_support::STANDALONE_URI_VARIABLE).await
}

async fn crash_every_create_step(store: impl AsyncFn() -> MongoStore) {
    for step in CREATE_STEPS {
        let store = store().await;
        let (other, other_docs) = seeded(&store, "Other", "o@other.test", 20).await;
        store.failpoints().arm(step);
        let new = new_org("Acme", "a@acme.test");
        store.create(new.clone()).await.expect_err(step);
        reconcile(&store).await;
        assert_invariants(&store).await;
        // A create that never answered is rolled back entirely, and can be retried.
        assert_eq!(store.find_by_key(new.name().key()).await.expect("find"), None, "{step}");
        assert_eq!(store.find_by_email(&email("a@acme.test")).await.expect("find"), None, "{step}");
        assert!(own_database_is_empty(&store, new.id()).await, "{step}: no database left behind");
        assert_eq!(store.documents(&other).await.expect("docs"), other_docs, "{step}");
        assert!(published(&store, new.id()).await.is_empty(), "{step}: a rolled-back create published nothing");
        let again = store.create(new_org("Acme", "a@acme.test")).await.expect("create again");
        assert_invariants(&store).await;
        assert_eq!(published(&store, again.id).await, ["organization.created"], "{step}");
    }
}

/// How an operation is interrupted at a step.
#[derive(Clone, Copy, Debug)]
enum Interruption {
    /// The process dies there.
    Crash,
    /// The operation stalls there while the reconciler takes it over, then goes on.
    TakeOver,
}

async fn crash_every_update_step(store: impl AsyncFn() -> MongoStore, with_admin_changes: bool) {
    interrupt_every_update_step(store, with_admin_changes, Interruption::Crash).await;
}

async fn interrupt_every_update_step(
    store: impl AsyncFn() -> MongoStore,
    with_admin_changes: bool,
    mode: Interruption,
) {
    for step in UPDATE_STEPS.iter().copied().filter(|s| with_admin_changes || !s.ends_with("update_admin")) {
        let shared = std::sync::Arc::new(store().await);
        let store = &*shared;
        let (acme, acme_docs) = seeded(store, "Acme", "a@acme.test", 200).await;
        let (globex, globex_docs) = seeded(store, "Globex", "g@globex.test", 50).await;
        if acme.placement.kind == domain::PlacementKind::Shared && step == "update:before_collection_schema" {
            // A shared organization's rename moves no collection, so it has no such step.
            continue;
        }
        let new_name = OrganizationName::parse("Acme Renamed").expect("name");
        let changes = OrganizationChanges {
            rename: Some(Rename::new(acme.id, new_name.clone(), CollectionNaming::Key)),
            email: with_admin_changes.then(|| email("new@acme.test")),
            password_hash: with_admin_changes.then(|| phc("bmV3")),
            at: domain::truncate_to_millis(Utc::now()),
        };
        match mode {
            Interruption::Crash => {
                store.failpoints().arm(step);
                store.update(acme.id, changes).await.expect_err(step);
            }
            Interruption::TakeOver => {
                // The operation stalls at this step long enough for its lease to run out;
                // the reconciler takes it over while it is still alive, then it goes on.
                let pause = store.failpoints().pause_at(step);
                let live = tokio::spawn({
                    let store = shared.clone();
                    async move { store.update(acme.id, changes).await }
                });
                pause.reached().await;
                store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile during the operation");
                pause.resume();
                match live.await.expect("join") {
                    Ok(_) | Err(UpdateOrgError::Unavailable(_)) => {}
                    Err(other) => panic!("{step}: a taken-over update must answer 503 or succeed, got {other:?}"),
                }
            }
        }
        reconcile(store).await;
        assert_invariants(store).await;

        let now = OrganizationRepository::find_by_id(store, acme.id).await.expect("find").expect("acme exists");
        let admin = AdminRepository::find_by_id(store, acme.admin_id).await.expect("find").expect("admin exists");
        let renamed = now.name == new_name;
        if !renamed {
            assert_eq!(now, acme, "{step}: rolled back, so unchanged");
        }
        // The update's events exist if and only if it committed.
        let mut expected = vec!["organization.created"];
        if renamed {
            expected.push("organization.renamed");
            if with_admin_changes {
                expected.extend(["admin.email_changed", "admin.password_changed"]);
            }
        }
        assert_eq!(published(store, acme.id).await, expected, "{step}");
        if with_admin_changes {
            // All of the update or none of it.
            assert_eq!(admin.email == email("new@acme.test"), renamed, "{step}");
            assert_eq!(admin.password_hash == phc("bmV3"), renamed, "{step}");
        }
        assert_eq!(store.documents(&now).await.expect("docs"), acme_docs, "{step}: documents lost or duplicated");
        assert_eq!(store.documents(&globex).await.expect("docs"), globex_docs, "{step}");
        assert_eq!(OrganizationRepository::find_by_id(store, globex.id).await.expect("find"), Some(globex), "{step}");
    }
}

async fn crash_every_delete_step(store: impl AsyncFn() -> MongoStore) {
    for step in DELETE_STEPS {
        let store = store().await;
        let (acme, _) = seeded(&store, "Acme", "a@acme.test", 30).await;
        let (globex, globex_docs) = seeded(&store, "Globex", "g@globex.test", 30).await;
        store.failpoints().arm(step);
        store.delete(acme.id).await.expect_err(step);
        // From the first step on, the organization is invisible.
        assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), None, "{step}");
        reconcile(&store).await;
        assert_invariants(&store).await;
        assert_eq!(OrganizationRepository::find_by_id(&store, acme.id).await.expect("find"), None, "{step}");
        assert_eq!(AdminRepository::find_by_id(&store, acme.admin_id).await.expect("find"), None, "{step}");
        assert!(own_database_is_empty(&store, acme.id).await, "{step}: its database went with it");
        let events = published(&store, acme.id).await;
        assert_eq!(events, ["organization.created", "organization.deleted"], "{step}: the delete's event, once");
        assert_eq!(store.documents(&globex).await.expect("docs"), globex_docs, "{step}");
        store.create(new_org("Acme", "a@acme.test")).await.expect("name and email are free again");
    }
}

#[tokio::test]
async fn create_survives_a_crash_at_every_step_with_transactions() {
    crash_every_create_step(fresh_store).await;
}

#[tokio::test]
async fn create_survives_a_crash_at_every_step_without_transactions() {
    crash_every_create_step(fresh_standalone_store).await;
}

#[tokio::test]
async fn rename_with_admin_changes_survives_a_crash_at_every_step() {
    crash_every_update_step(fresh_store, true).await;
    crash_every_update_step(fresh_standalone_store, true).await;
}

#[tokio::test]
async fn plain_rename_survives_a_crash_at_every_step() {
    crash_every_update_step(fresh_store, false).await;
    crash_every_update_step(fresh_standalone_store, false).await;
}

#[tokio::test]
async fn renames_taken_over_at_every_step_stay_consistent() {
    interrupt_every_update_step(fresh_store, true, Interruption::TakeOver).await;
    interrupt_every_update_step(fresh_store, false, Interruption::TakeOver).await;
    interrupt_every_update_step(fresh_standalone_store, true, Interruption::TakeOver).await;
}

#[tokio::test]
async fn delete_survives_a_crash_at_every_step() {
    crash_every_delete_step(fresh_store).await;
    crash_every_delete_step(fresh_standalone_store).await;
}

/// The same crashes with every organization in a database of its own: the database is
/// created with the organization's collection and dropped with it, and a crash at any step
/// leaves neither a database nor a lost document behind.
#[tokio::test]
async fn the_database_placement_survives_a_crash_at_every_step() {
    crash_every_create_step(own_database_store).await;
    crash_every_create_step(own_database_standalone_store).await;
    crash_every_update_step(own_database_store, true).await;
    crash_every_update_step(own_database_standalone_store, false).await;
    interrupt_every_update_step(own_database_store, false, Interruption::TakeOver).await;
    crash_every_delete_step(own_database_store).await;
    crash_every_delete_step(own_database_standalone_store).await;
}

/// The same crashes with every organization in the shared collection: no DDL, the
/// documents found by the tenant field. A delete also stops between two of its batches: the
/// organization is gone at once, and the reconciler removes the rest of its documents.
#[tokio::test]
async fn the_shared_placement_survives_a_crash_at_every_step() {
    crash_every_create_step(shared_store).await;
    crash_every_create_step(shared_standalone_store).await;
    crash_every_update_step(shared_store, true).await;
    crash_every_update_step(shared_standalone_store, false).await;
    interrupt_every_update_step(shared_store, true, Interruption::TakeOver).await;
    crash_every_delete_step(shared_store).await;
    crash_every_delete_step(shared_standalone_store).await;

    let store = shared_store().await;
    let (acme, _) = seeded(&store, "Acme", "a@acme.test", 30).await;
    let (globex, globex_docs) = seeded(&store, "Globex", "g@globex.test", 30).await;
    store.failpoints().arm_at_pass(SHARED_DELETE_STEP, 2);
    store.delete(acme.id).await.expect_err("stopped after two batches");
    assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), None);
    assert_eq!(store.documents(&acme).await.expect("docs").len(), 30 - 2 * 7, "two batches were deleted");
    reconcile(&store).await;
    assert_invariants(&store).await;
    assert!(store.documents(&acme).await.expect("docs").is_empty());
    assert_eq!(store.documents(&globex).await.expect("docs"), globex_docs);
}

/// Every placement on the second cluster, crashed at every step: the master database's
/// writes on main and the tenant DDL on the other deployment stay in step.
#[tokio::test]
async fn every_placement_on_a_second_cluster_survives_a_crash_at_every_step() {
    for kind in domain::PlacementKind::ALL {
        let store = async || {
            let placement = domain::Placement { kind, cluster: mongo_adapter::test_support::second_cluster() };
            mongo_adapter::test_support::fresh_store_with_second_cluster().await.placing_every_organization(placement)
        };
        crash_every_create_step(store).await;
        crash_every_update_step(store, true).await;
        crash_every_delete_step(store).await;
    }
}

#[tokio::test]
async fn reconciliation_respects_the_lease_of_live_operations() {
    let store = fresh_store().await;
    let (acme, _) = seeded(&store, "Acme", "a@acme.test", 5).await;
    store.failpoints().arm("delete:after_mark");
    store.delete(acme.id).await.expect_err("crash");
    // Within the lease the operation may still be running elsewhere: leave it alone. Its
    // event committed with the mark, so relaying it is no intrusion.
    let report = store.reconcile_with_lease(Duration::from_secs(3600)).await.expect("reconcile");
    assert_eq!(report.events_relayed, [acme.id.to_string()], "{report}");
    assert!(mongo_adapter::ReconcileReport { events_relayed: Vec::new(), ..report.clone() }.is_clean(), "{report}");
    reconcile(&store).await;
    assert_invariants(&store).await;
}

#[tokio::test]
async fn orphans_are_removed() {
    let store = fresh_store().await;
    let (acme, _) = seeded(&store, "Acme", "a@acme.test", 5).await;
    // A collection nothing points to, as a killed process's late DDL could leave.
    store.tenant_database().create_collection("org_stray").await.expect("create stray");
    store
        .master()
        .collection::<Document>("admins")
        .insert_one(doc! {"_id": "ghost", "email": "ghost@x.test", "password_hash": "$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA",
            "organization_id": "nobody", "created_at": mongodb::bson::DateTime::now(), "updated_at": mongodb::bson::DateTime::now()})
        .await
        .expect("insert ghost admin");
    assert!(store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile").is_clean(), "left to the sweep");
    let report = store.sweep_orphans().await.expect("sweep");
    assert_eq!(report.orphan_collections_dropped, vec!["org_stray"]);
    assert_eq!(report.orphan_admins_removed, vec!["ghost"]);
    assert_invariants(&store).await;
    assert!(OrganizationRepository::find_by_id(&store, acme.id).await.expect("find").is_some());
}

/// What comes back under a removed organization (its own database recreated by a late
/// command, documents written with its tenant id after the delete) is removed by the next
/// reconciliation pass, through the organization's tombstone, on any cluster; live
/// organizations' data is untouched.
#[tokio::test]
async fn tombstones_remove_what_comes_back_under_removed_organizations() {
    use domain::{Placement, PlacementKind};
    let store = mongo_adapter::test_support::fresh_store_with_second_cluster().await;
    let second = mongo_adapter::test_support::second_cluster();
    let mut removed = Vec::new();
    for (kind, cluster) in [
        (PlacementKind::Database, domain::ClusterName::main()),
        (PlacementKind::Shared, domain::ClusterName::main()),
        (PlacementKind::Database, second.clone()),
        (PlacementKind::Shared, second.clone()),
    ] {
        let placement = Placement { kind, cluster: cluster.clone() };
        let live = store
            .create(
                new_org(&format!("Live {kind} {cluster}"), &format!("l@{kind}.{cluster}.test"))
                    .placed(placement.clone()),
            )
            .await
            .expect("create");
        store.insert_documents(&live, vec![json!({"live": true})]).await.expect("seed");
        let gone = store
            .create(new_org(&format!("Gone {kind} {cluster}"), &format!("g@{kind}.{cluster}.test")).placed(placement))
            .await
            .expect("create");
        store.delete(gone.id).await.expect("delete");
        // Back it comes: a late create of its collection, or an application's late write.
        store.insert_documents(&gone, vec![json!({"late": true})]).await.expect("late write");
        assert_eq!(store.documents(&gone).await.expect("docs").len(), 1);
        removed.push((gone, live));
    }
    let report = store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile");
    assert_eq!(report.orphan_databases_dropped.len(), 2, "{report}");
    assert_eq!(report.orphan_shared_tenants_removed.len(), 2, "{report}");
    for (gone, live) in &removed {
        assert!(store.documents(gone).await.expect("docs").is_empty(), "{:?}", gone.placement);
        assert_eq!(store.documents(live).await.expect("docs"), vec![json!({"live": true})]);
    }
    assert!(own_database_is_empty(&store, removed[0].0.id).await);
    assert!(store.reconcile_with_lease(Duration::ZERO).await.expect("again").is_clean());
}

/// The full sweep removes, on every cluster, tenant collections and shared documents that
/// no organization references; the documents of live shared organizations stay.
#[tokio::test]
async fn the_full_sweep_covers_every_cluster_and_the_shared_collections() {
    use domain::{Placement, PlacementKind};
    let store = mongo_adapter::test_support::fresh_store_with_second_cluster().await;
    let second = mongo_adapter::test_support::second_cluster();
    let shared = Placement { kind: PlacementKind::Shared, cluster: second.clone() };
    let live = store.create(new_org("Live", "l@live.test").placed(shared)).await.expect("create");
    store.insert_documents(&live, vec![json!({"n": 1}), json!({"n": 2})]).await.expect("seed");
    let client = store.cluster_client(&second).expect("second cluster");
    let tenants = client.database(store.tenant_database().name());
    tenants.create_collection("org_stray").await.expect("stray collection");
    tenants
        .collection::<Document>(domain::Placement::SHARED_COLLECTION)
        .insert_many(vec![
            doc! {"tenant_id": "nobody", "n": 1},
            doc! {"tenant_id": "nobody", "n": 2},
            doc! {"tenant_id": "zz-ghost"},
        ])
        .await
        .expect("stray documents");
    let report = store.sweep_orphans().await.expect("sweep");
    assert_eq!(report.orphan_collections_dropped, vec!["org_stray"]);
    assert_eq!(report.orphan_shared_tenants_removed, vec!["nobody", "zz-ghost"]);
    assert_eq!(store.documents(&live).await.expect("docs"), vec![json!({"n": 1}), json!({"n": 2})]);
    assert!(store.sweep_orphans().await.expect("again").is_clean());
    assert_invariants(&store).await;
}

/// An orphan collection is found by the reconciler; before it drops it, another instance
/// creates the organization whose collection has that very name. The reconciler must not
/// drop the collection the new organization now owns.
#[tokio::test]
async fn orphan_removal_never_drops_a_collection_created_meanwhile() {
    let store = std::sync::Arc::new(fresh_store().await);
    store.tenant_database().create_collection("org_race").await.expect("orphan");
    let pause = store.failpoints().pause_at(RECONCILE_AFTER_LISTING);
    let reconciler = {
        let store = store.clone();
        tokio::spawn(async move { store.sweep_orphans().await.expect("sweep") })
    };
    pause.reached().await;
    let org = store.create(new_org("Race", "admin@race.test")).await.expect("create");
    store.insert_documents(&org, vec![json!({"n": 1})]).await.expect("insert");
    pause.resume();
    let report = reconciler.await.expect("join");
    assert!(report.orphan_collections_dropped.is_empty(), "{report}");
    assert_eq!(store.documents(&org).await.expect("docs"), vec![json!({"n": 1})]);
    assert_invariants(&store).await;
}

/// A create whose collection name is taken by a leftover collection (one no organization
/// references) replaces it with a fresh, empty collection instead of failing.
#[tokio::test]
async fn create_replaces_a_leftover_collection_of_its_name() {
    let store = fresh_store().await;
    let leftover = store.tenant_database().collection::<Document>("org_leftover");
    leftover.insert_one(doc! {"stale": true}).await.expect("leftover");
    let org = store.create(new_org("Leftover", "l@leftover.test")).await.expect("create");
    assert_eq!(org.collection.as_str(), "org_leftover");
    assert_eq!(store.documents(&org).await.expect("docs"), Vec::<serde_json::Value>::new());
    assert_invariants(&store).await;
}

/// The documents of a tenant collection as the driver sees them, `_id` included.
async fn raw_documents(store: &MongoStore, collection: &str) -> Vec<Document> {
    store
        .tenant_database()
        .collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
}

/// A rename is interrupted after its collection moved, and a tenant application then
/// writes to the old name, which recreates it (on a real mongod as on the test server).
/// The reconciler must not leave the organization stuck: it merges the old collection into
/// the one the organization ends up with, moves what is new, drops exact copies, and keeps
/// a document whose `_id` is on both sides with other contents in a reported quarantine
/// instead of overwriting either.
#[tokio::test]
async fn a_rename_whose_old_collection_reappears_is_merged_not_stuck() {
    for (with_admin_changes, standalone) in [(false, false), (true, false), (false, true)] {
        let store = if standalone { fresh_standalone_store().await } else { fresh_store().await };
        let (acme, _) = seeded(&store, "Acme", "a@acme.test", 40).await;
        let new_name = OrganizationName::parse("Acme Renamed").expect("name");
        let to = CollectionName::for_organization(CollectionNaming::Key, acme.id, new_name.key());
        let changes = OrganizationChanges {
            rename: Some(Rename::new(acme.id, new_name.clone(), CollectionNaming::Key)),
            email: with_admin_changes.then(|| email("new@acme.test")),
            password_hash: None,
            at: domain::truncate_to_millis(Utc::now()),
        };
        store.failpoints().arm("update:after_rename_collection");
        store.update(acme.id, changes).await.expect_err("crashed after the move");
        store.failpoints().clear();

        // The move is done: the documents are in the new collection. Without admin changes
        // the rename rolls forward (into the new collection), with admin changes not yet
        // applied it rolls back (into the old one). Either way the application writes to
        // the old name meanwhile: two new documents, an exact copy of a moved one, and a
        // moved one's `_id` with other contents.
        let old = acme.collection.as_str();
        let target = if with_admin_changes { old } else { to.as_str() };
        let moved = raw_documents(&store, to.as_str()).await;
        assert_eq!(moved.len(), 40);
        let same = moved[0].clone();
        let mut conflicting = moved[1].clone();
        conflicting.insert("n", "written by the application during the rename");
        store
            .tenant_database()
            .collection::<Document>(old)
            .insert_many(vec![doc! {"fresh": 1}, doc! {"fresh": 2}, same.clone(), conflicting])
            .await
            .expect("the old name reappears");

        let report = store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile");
        assert_eq!(report.collections_merged.len(), 1, "{report}");
        assert_eq!(report.needs_attention.len(), 1, "{report}");
        assert!(report.needs_attention[0].contains("quarantine"), "{report}");
        let again = store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile again");
        assert!(again.is_clean(), "second pass: {again}");
        assert_invariants(&store).await;

        // Resolved, not stuck: the organization is in one collection and takes changes.
        let now = OrganizationRepository::find_by_id(&store, acme.id).await.expect("find").expect("acme");
        assert_eq!(now.collection.as_str(), target);
        let merged = raw_documents(&store, target).await;
        assert_eq!(merged.len(), 42, "40 moved documents and 2 new ones, the copy once");
        assert!(merged.contains(&same));
        let quarantined: Vec<String> = store
            .tenant_database()
            .list_collection_names()
            .await
            .expect("names")
            .into_iter()
            .filter(|n| n.starts_with("orgsvc_quarantine_"))
            .collect();
        assert_eq!(quarantined.len(), 1, "{quarantined:?}");
        assert_eq!(raw_documents(&store, &quarantined[0]).await.len(), 1, "only the conflicting document");
        let again_name = OrganizationName::parse("Acme Again").expect("name");
        let back = OrganizationChanges {
            rename: Some(Rename::new(acme.id, again_name, CollectionNaming::Key)),
            email: None,
            password_hash: None,
            at: domain::truncate_to_millis(Utc::now()),
        };
        store.update(acme.id, back).await.expect("a later change goes through");
    }
}

/// Operators settle one organization's unfinished operation either way without waiting
/// for its lease; the ways that would lose data or answers are refused with the reason.
#[tokio::test]
async fn operators_resolve_an_operation_either_way() {
    use mongo_adapter::Direction::{Back, Forward};
    for direction in [Forward, Back] {
        let store = fresh_store().await;
        let (acme, docs) = seeded(&store, "Acme", "a@acme.test", 10).await;
        let new_name = OrganizationName::parse("Acme Renamed").expect("name");
        let changes = OrganizationChanges {
            rename: Some(Rename::new(acme.id, new_name.clone(), CollectionNaming::Key)),
            email: Some(email("new@acme.test")),
            password_hash: None,
            at: domain::truncate_to_millis(Utc::now()),
        };
        store.failpoints().arm("update:after_rename_collection");
        store.update(acme.id, changes).await.expect_err("interrupted");
        store.failpoints().clear();
        // The reconciler leaves it alone: its lease has not run out.
        assert!(store.reconcile().await.expect("reconcile").is_clean());

        let summary = store.resolve_operation(&acme.id.to_string(), direction).await.expect("resolve");
        assert!(summary.contains(&acme.id.to_string()), "{summary}");
        assert_invariants(&store).await;
        let now = OrganizationRepository::find_by_id(&store, acme.id).await.expect("find").expect("acme");
        let admin = AdminRepository::find_by_id(&store, acme.admin_id).await.expect("find").expect("admin");
        assert_eq!(now.name == new_name, direction == Forward);
        assert_eq!(admin.email == email("new@acme.test"), direction == Forward);
        assert_eq!(store.documents(&now).await.expect("documents"), docs);
        let error = store.resolve_operation(&acme.id.to_string(), direction).await.expect_err("nothing left");
        assert!(format!("{error:#}").contains("no operation in progress"), "{error:#}");
    }

    // A create is only rolled back, a delete only finished.
    let store = fresh_store().await;
    let new = new_org("Acme", "a@acme.test");
    store.failpoints().arm("create:after_create_collection");
    store.create(new.clone()).await.expect_err("interrupted");
    store.failpoints().clear();
    let id = new.id().to_string();
    let refused = store.resolve_operation(&id, Forward).await.expect_err("refused");
    assert!(format!("{refused:#}").contains("--back"), "{refused:#}");
    store.resolve_operation(&id, Back).await.expect("rolled back");
    assert_invariants(&store).await;
    assert_eq!(store.find_by_key(new.name().key()).await.expect("find"), None);
}
