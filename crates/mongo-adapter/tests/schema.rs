//! The basic schema of tenant collections: applied on create, enforced by the server, and
//! still in force after a rename.

use chrono::Utc;
use domain::{CollectionName, CollectionNaming, NewOrganization, OrganizationChanges, OrganizationName, Rename};
use mongo_adapter::test_support::{fresh_standalone_store, fresh_store};
use mongo_adapter::{MongoStore, tenant_collection_options};
use mongodb::bson::{Bson, Document, doc};
use ports::OrganizationRepository;

fn new_org(name: &str) -> NewOrganization {
    mongo_adapter::test_support::new_organization(name, "admin@schema.test")
}

async fn validator(store: &MongoStore, collection: &str) -> Option<Document> {
    mongo_adapter::test_support::validator(store.tenant_database(), collection).await
}

/// Inserts one document with each kind of `_id` (distinct per `round`) and returns which
/// kinds were accepted.
async fn accepted_ids(store: &MongoStore, collection: &str, round: i32) -> Vec<&'static str> {
    let candidates: [(&str, Bson); 6] = [
        ("objectId", Bson::ObjectId(mongodb::bson::oid::ObjectId::new())),
        ("string", Bson::String(format!("invoice-{round}"))),
        ("int", Bson::Int32(round)),
        ("double", Bson::Double(1.5)),
        ("null", Bson::Null),
        ("document", Bson::Document(doc! {"a": 1})),
    ];
    let tenant = store.tenant_database().collection::<Document>(collection);
    let mut accepted = Vec::new();
    for (kind, id) in candidates {
        match tenant.insert_one(doc! {"_id": id, "kind": kind}).await {
            Ok(_) => accepted.push(kind),
            Err(e) => assert!(e.to_string().contains("validation"), "{kind}: unexpected error {e}"),
        }
    }
    accepted
}

async fn schema_is_applied_and_survives_a_rename(store: MongoStore) {
    let expected = tenant_collection_options().get_document("validator").ok().cloned();
    let org = store.create(new_org("Schema Corp")).await.expect("create");
    assert_eq!(validator(&store, org.collection.as_str()).await, expected);
    assert_eq!(accepted_ids(&store, org.collection.as_str(), 1).await, ["objectId", "string", "int"]);

    let name = OrganizationName::parse("Schema Renamed").expect("name");
    let collection = CollectionName::for_organization(CollectionNaming::Key, org.id, name.key());
    let changes = OrganizationChanges {
        rename: Some(Rename::new(org.id, name, CollectionNaming::Key)),
        email: None,
        password_hash: None,
        at: domain::truncate_to_millis(Utc::now()),
    };
    let renamed = store.update(org.id, changes).await.expect("rename");
    assert_eq!(renamed.collection, collection);
    assert_eq!(validator(&store, collection.as_str()).await, expected, "the schema survives the rename");
    assert_eq!(accepted_ids(&store, collection.as_str(), 2).await, ["objectId", "string", "int"]);
    let count = store.tenant_database().collection::<Document>(collection.as_str()).count_documents(doc! {}).await;
    assert_eq!(count.expect("count"), 6, "the documents moved with the collection");
}

#[tokio::test]
async fn schema_on_a_replica_set() {
    schema_is_applied_and_survives_a_rename(fresh_store().await).await;
}

#[tokio::test]
async fn schema_on_a_standalone_server() {
    schema_is_applied_and_survives_a_rename(fresh_standalone_store().await).await;
}
