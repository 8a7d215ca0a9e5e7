//! Placements on MongoDB: an organization placed in a database of its own has its
//! collection there (not in the tenant database), renames move the collection inside that
//! database, and deleting drops the database.

use domain::{ClusterName, OrganizationChanges, OrganizationName, Placement, PlacementKind, Rename};
use mongo_adapter::test_support::{fresh_store, new_organization};
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
    store.insert_documents(&org.collection, docs.clone()).await.expect("seed");
    let name = OrganizationName::parse("Acme Two").expect("name");
    let rename = Rename::new(org.id, name, domain::CollectionNaming::Key);
    let changes = OrganizationChanges { rename: Some(rename), email: None, password_hash: None, at: org.updated_at };
    let renamed = store.update(org.id, changes).await.expect("rename");
    assert_eq!(own.list_collection_names().await.expect("list"), ["org_acme_two"]);
    assert_eq!(store.documents(&renamed.collection).await.expect("documents"), docs);
    assert_eq!(store.find_by_id(org.id).await.expect("find").map(|o| o.placement), Some(placement));

    store.delete(org.id).await.expect("delete");
    assert!(own.list_collection_names().await.expect("list").is_empty());
    let databases = store.client().list_database_names().await.expect("databases");
    assert!(!databases.contains(&own.name().to_owned()), "{databases:?}");
}

#[tokio::test]
async fn shared_and_other_clusters_are_refused_rather_than_misplaced() {
    let store = fresh_store().await;
    for placement in [
        Placement { kind: PlacementKind::Shared, cluster: ClusterName::main() },
        Placement { kind: PlacementKind::Collection, cluster: ClusterName::parse("eu").expect("name") },
    ] {
        let result = store.create(new_organization("Acme", "a@acme.test").placed(placement.clone())).await;
        assert!(matches!(result, Err(domain::CreateOrgError::Unknown(_))), "{placement}: {result:?}");
        assert_eq!(store.count().await.expect("count"), 0, "{placement}");
    }
}
