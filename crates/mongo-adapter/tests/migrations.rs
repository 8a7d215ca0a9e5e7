//! Master migrations: applied once, in order, recorded with a checksum; a changed applied
//! migration is refused by name.

use futures::TryStreamExt;
use mongo_adapter::test_support::fresh_store;
use mongo_adapter::{Migration, master_migrations};
use mongodb::bson::{Document, doc};

#[tokio::test]
async fn opening_applies_every_migration_once() {
    let store = fresh_store().await;
    let names: Vec<String> = master_migrations().expect("migrations").into_iter().map(|m| m.name).collect();
    assert!(names.contains(&"0001_master_indexes".to_owned()));
    let report = store.migrate(master_migrations().expect("migrations"), false).await.expect("migrate");
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.already_applied, names);
    let records: Vec<Document> = store
        .master()
        .collection("_migrations")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("records");
    assert_eq!(records.len(), names.len());
    let indexes = store.master().collection::<Document>("organizations").list_index_names().await.expect("indexes");
    assert!(indexes.contains(&"keys_unique".to_owned()), "{indexes:?}");
    let indexes = store.master().collection::<Document>("admins").list_index_names().await.expect("indexes");
    assert!(indexes.contains(&"email_unique".to_owned()), "{indexes:?}");
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused_by_name() {
    let store = fresh_store().await;
    let mut migrations = master_migrations().expect("migrations");
    migrations[0].text.push('\n');
    let error = store.migrate(migrations, false).await.expect_err("changed migration");
    let message = format!("{error:#}");
    assert!(message.contains("0001_master_indexes") && message.contains("changed"), "{message}");
}

#[tokio::test]
async fn new_migrations_are_applied_in_order_and_dry_runs_change_nothing() {
    let store = fresh_store().await;
    let mut migrations = master_migrations().expect("migrations");
    let extra = |name: &str, field: &str| Migration {
        name: name.to_owned(),
        text: format!(
            r#"[{{"createIndexes": "organizations", "indexes": [{{"key": {{"{field}": 1}}, "name": "by_{field}"}}]}}]"#
        ),
    };
    migrations.push(extra("9002_second", "updated_at"));
    migrations.push(extra("9001_first", "name"));
    let dry = store.migrate(migrations.clone(), true).await.expect("dry run");
    assert_eq!(dry.applied, vec!["9001_first", "9002_second"]);
    let indexes = store.master().collection::<Document>("organizations").list_index_names().await.expect("indexes");
    assert!(!indexes.contains(&"by_name".to_owned()));
    let report = store.migrate(migrations.clone(), false).await.expect("migrate");
    assert_eq!(report.applied, vec!["9001_first", "9002_second"]);
    let again = store.migrate(migrations, false).await.expect("migrate again");
    assert!(again.applied.is_empty());
}
