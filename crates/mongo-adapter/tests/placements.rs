//! Placements on MongoDB: an organization placed in a database of its own has its
//! collection there (not in the tenant database), renames move the collection inside that
//! database, and deleting drops the database; one placed `shared` has no collection, only
//! documents carrying its id in the shared collection; and any placement can be on another
//! cluster, whose data then lives on that deployment only.

use std::time::Duration;

use domain::{ClusterName, OrganizationChanges, OrganizationName, Placement, PlacementKind, Rename};
use mongo_adapter::MongoStore;
use mongo_adapter::test_support::{
    fresh_settings, fresh_store, fresh_store_with_second_cluster, new_organization, second_cluster,
};
use mongodb::bson::{Document, doc};
use ports::{OrganizationRepository, TenantStore};
use serde_json::json;

#[tokio::test]
async fn an_organization_in_its_own_database_lives_and_dies_there() {
    let store = fresh_store().await;
    let placement = Placement { kind: PlacementKind::Database, cluster: ClusterName::main() };
    let org = store.create(new_organization("Acme", "a@acme.test").placed(placement.clone())).await.expect("create");
    assert_eq!(org.placement, placement);
    let own = store.client().database(&Placement::database_of(org.id));
    assert_eq!(own.list_collection_names().await.expect("list"), ["org_acme"]);
    let shared = store.tenant_database().list_collection_names().await.expect("list");
    assert!(!shared.contains(&"org_acme".to_owned()), "{shared:?}");
    let location = store.location(&org);
    assert_eq!((location.database.as_str(), location.collection.as_str()), (own.name(), "org_acme"));
    assert!(location.tenant_filter.is_none());

    let docs = vec![json!({"n": 1}), json!({"n": 2})];
    store.insert_documents(&org, docs.clone()).await.expect("seed");
    let name = OrganizationName::parse("Acme Two").expect("name");
    let rename = Rename::new(org.id, name, domain::CollectionNaming::Key);
    let changes = OrganizationChanges { rename: Some(rename), email: None, password_hash: None, at: org.updated_at };
    let renamed = store.update(org.id, changes).await.expect("rename");
    assert_eq!(own.list_collection_names().await.expect("list"), ["org_acme_two"]);
    assert_eq!(store.documents(&renamed).await.expect("documents"), docs);
    assert_eq!(store.find_by_id(org.id).await.expect("find").map(|o| o.placement), Some(placement));

    store.delete(org.id).await.expect("delete");
    assert!(own.list_collection_names().await.expect("list").is_empty());
    let databases = store.client().list_database_names().await.expect("databases");
    assert!(!databases.contains(&own.name().to_owned()), "{databases:?}");
}

fn rename_to(org: &domain::Organization, name: &str) -> OrganizationChanges {
    let name = OrganizationName::parse(name).expect("name");
    let rename = Rename::new(org.id, name, domain::CollectionNaming::Key);
    OrganizationChanges { rename: Some(rename), email: None, password_hash: None, at: org.updated_at }
}

#[tokio::test]
async fn a_shared_organization_has_documents_that_carry_its_id_and_no_collection() {
    let store = fresh_store().await;
    let placement = Placement { kind: PlacementKind::Shared, cluster: ClusterName::main() };
    let acme = store.create(new_organization("Acme", "a@acme.test").placed(placement.clone())).await.expect("create");
    let globex =
        store.create(new_organization("Globex", "g@globex.test").placed(placement.clone())).await.expect("create");
    let tenants = store.tenant_database();
    let before = tenants.list_collection_names().await.expect("list");
    assert_eq!(before, [Placement::SHARED_COLLECTION], "no collection per organization");
    let location = store.location(&acme);
    assert_eq!(location.collection, Placement::SHARED_COLLECTION);
    assert_eq!(location.tenant_filter, Some((Placement::TENANT_FIELD.to_owned(), acme.id.to_string())));

    let docs = vec![json!({"n": 1}), json!({"n": 2})];
    store.insert_documents(&acme, docs.clone()).await.expect("seed");
    store.insert_documents(&globex, vec![json!({"n": 3})]).await.expect("seed");
    let shared = tenants.collection::<Document>(Placement::SHARED_COLLECTION);
    let acme_id = acme.id.to_string();
    assert_eq!(shared.count_documents(doc! {Placement::TENANT_FIELD: &acme_id}).await.expect("count"), 2);
    // The schema refuses a document that belongs to no organization.
    let refused = shared.insert_one(doc! {"n": 4}).await.expect_err("no tenant field");
    assert!(format!("{refused}").contains("121") || format!("{refused:?}").contains("121"), "{refused:?}");

    // A rename is metadata only: no DDL, the documents stay where they are.
    let renamed = store.update(acme.id, rename_to(&acme, "Acme Two")).await.expect("rename");
    assert_eq!(renamed.collection.as_str(), "org_acme_two", "the name its collection would have");
    assert_eq!(tenants.list_collection_names().await.expect("list"), before);
    assert_eq!(store.documents(&renamed).await.expect("documents"), docs);

    store.delete(acme.id).await.expect("delete");
    assert_eq!(shared.count_documents(doc! {Placement::TENANT_FIELD: &acme_id}).await.expect("count"), 0);
    assert_eq!(store.documents(&globex).await.expect("documents"), vec![json!({"n": 3})]);
    assert_eq!(tenants.list_collection_names().await.expect("list"), before);
}

/// Every placement on the second cluster keeps its data there: the main deployment gets
/// only the master database's documents.
#[tokio::test]
async fn every_placement_on_a_second_cluster_keeps_its_data_there() {
    let store = fresh_store_with_second_cluster().await;
    let second = store.cluster_client(&second_cluster()).expect("the second cluster").clone();
    let tenant_database = store.tenant_database().name().to_owned();
    for kind in PlacementKind::ALL {
        let placement = Placement { kind, cluster: second_cluster() };
        let name = format!("Acme {kind}");
        let email = format!("a@{kind}.test");
        let org = store.create(new_organization(&name, &email).placed(placement.clone())).await.expect("create");
        assert_eq!(org.placement, placement);
        let location = store.location(&org);
        let main_uri = std::env::var(mongo_adapter::test_support::URI_VARIABLE).expect("uri");
        assert_ne!(location.uri, main_uri, "the second cluster's connection string");
        let docs = vec![json!({"n": 1, "kind": kind.as_str()})];
        store.insert_documents(&org, docs.clone()).await.expect("seed");
        let on_second = second.database(&location.database).collection::<Document>(&location.collection);
        assert_eq!(on_second.count_documents(doc! {"kind": kind.as_str()}).await.expect("count"), 1, "{kind}");
        let on_main = store.client().database(&location.database).collection::<Document>(&location.collection);
        assert_eq!(on_main.count_documents(doc! {}).await.expect("count"), 0, "{kind}: nothing on main");

        let renamed = store.update(org.id, rename_to(&org, &format!("Renamed {kind}"))).await.expect("rename");
        assert_eq!(store.documents(&renamed).await.expect("documents"), docs, "{kind}");
        store.delete(org.id).await.expect("delete");
        let location = store.location(&renamed);
        let left = second.database(&location.database).collection::<Document>(&location.collection);
        assert_eq!(left.count_documents(doc! {"kind": kind.as_str()}).await.expect("count"), 0, "{kind}");
    }
    assert!(store.tenant_collections().await.expect("collections").is_empty());
    let main_tenants = store.client().database(&tenant_database).list_collection_names().await.expect("list");
    assert!(main_tenants.is_empty(), "{main_tenants:?}");
}

/// A cluster that cannot be reached makes its own organizations' operations unavailable
/// (a 503 at the API), and nothing else: the store opens, and organizations on other
/// clusters are created, read and deleted as usual.
#[tokio::test]
async fn an_unreachable_cluster_fails_only_its_own_organizations() {
    let mut settings = fresh_settings(mongo_adapter::test_support::URI_VARIABLE);
    let down = ClusterName::parse("down").expect("name");
    // Nothing listens on port 9 of this machine.
    settings.clusters = vec![(down.clone(), "mongodb://127.0.0.1:9/?directConnection=true".to_owned().into())];
    settings.server_selection_timeout = Duration::from_millis(300);
    let store = MongoStore::open(&settings).await.expect("the store opens while a tenant cluster is down");
    for kind in PlacementKind::ALL {
        let placement = Placement { kind, cluster: down.clone() };
        let result = store.create(new_organization("Acme", "a@acme.test").placed(placement)).await;
        assert!(matches!(result, Err(domain::CreateOrgError::Unavailable(_))), "{kind}: {result:?}");
        assert_eq!(store.count().await.expect("count"), 0, "{kind}: nothing half-created");
    }
    let unknown = Placement { kind: PlacementKind::Collection, cluster: ClusterName::parse("nowhere").expect("name") };
    let result = store.create(new_organization("Acme", "a@acme.test").placed(unknown)).await;
    assert!(matches!(result, Err(domain::CreateOrgError::Unavailable(_))), "{result:?}");

    let org = store.create(new_organization("Acme", "a@acme.test")).await.expect("main works");
    assert_eq!(store.find_by_id(org.id).await.expect("find"), Some(org.clone()));
    store.delete(org.id).await.expect("delete");
    // The reconciler and the sweep go on for the clusters they reach, and say which not.
    assert!(store.reconcile_with_lease(Duration::ZERO).await.expect("reconcile").is_clean());
    let swept = store.sweep_orphans().await.expect("sweep");
    assert_eq!(swept.needs_attention.len(), 1, "{swept}");
    assert!(swept.needs_attention[0].starts_with("cluster down "), "{swept}");
}
