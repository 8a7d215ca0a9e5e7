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
    let files = records.iter().filter(|r| !r.get_str("_id").is_ok_and(|id| id.starts_with("code/"))).count();
    assert_eq!(files, names.len());
    assert!(records.iter().any(|r| r.get_str("_id") == Ok("code/0005_case_folded_keys")), "the re-keying ran once");
    assert!(records.iter().any(|r| r.get_str("_id") == Ok("code/0006_look_alike_skeletons")), "and recorded");
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

/// Organizations stored under the earlier key rule (lowercase, not case folding) are found
/// again by their names after the re-keying; one whose new key another organization holds
/// keeps its key and is reported; the re-keying runs once.
#[tokio::test]
async fn stored_keys_are_brought_to_the_case_folding_rule_once() {
    use domain::{OrgId, OrganizationName};
    use mongo_adapter::test_support::new_organization as create;
    use ports::OrganizationRepository;
    let store = fresh_store().await;
    let strasse = store.create(create("Straße Inc", "s@strasse.test")).await.expect("create");
    let masse = store.create(create("Masse", "m@masse.test")).await.expect("create");
    let other = store.create(create("Maße Placeholder", "o@masse.test")).await.expect("create");
    // What earlier versions stored: lowercase keys.
    let organizations = store.master().collection::<Document>("organizations");
    let set_old = |id: OrgId, name: &'static str, key: &'static str| {
        let organizations = organizations.clone();
        async move {
            organizations
                .update_one(doc! {"_id": id.to_string()}, doc! {"$set": {"name": name, "key": key, "keys": [key]}})
                .await
                .expect("store the old key");
        }
    };
    set_old(strasse.id, "Straße Inc", "straße_inc").await;
    set_old(other.id, "Maße", "maße").await;
    store
        .master()
        .collection::<Document>("_migrations")
        .delete_one(doc! {"_id": "code/0005_case_folded_keys"})
        .await
        .expect("forget");

    let report = store.rekey_organizations().await.expect("rekey");
    assert_eq!(report.rekeyed, [format!("{}: straße_inc -> strasse_inc", strasse.id)], "{report}");
    assert_eq!(report.conflicts.len(), 1, "{report}");
    assert!(report.conflicts[0].contains(&other.id.to_string()), "{report}");
    let found = store.find_by_key(OrganizationName::parse("STRASSE INC").expect("name").key()).await.expect("find");
    assert_eq!(found.map(|o| o.id), Some(strasse.id));
    let found = store.find_by_key(OrganizationName::parse("MASSE").expect("name").key()).await.expect("find");
    assert_eq!(found.map(|o| o.id), Some(masse.id), "the holder of the key keeps it");
    let again = store.rekey_organizations().await.expect("rekey again");
    assert_eq!(again, mongo_adapter::RekeyReport::default(), "done once");
}

/// Organizations stored before look-alike skeletons existed get them reserved beside their
/// keys; of two stored names that look alike, the second is reported and left as it was.
#[tokio::test]
async fn stored_keys_get_their_look_alike_skeletons_once() {
    use domain::OrganizationName;
    use mongo_adapter::test_support::new_organization as create;
    use ports::OrganizationRepository;
    let store = fresh_store().await;
    let acme = store.create(create("Acme", "a@acme.test")).await.expect("create");
    let other = store.create(create("Other", "c@acme.test")).await.expect("create");
    // What earlier versions stored: keys without skeletons, so a look-alike got in.
    let organizations = store.master().collection::<Document>("organizations");
    let cyrillic_acme = "\u{410}\u{441}\u{43c}\u{435}";
    let cyrillic_key = OrganizationName::parse(cyrillic_acme).expect("name").key().to_string();
    for (id, name, key) in [(acme.id, "Acme", "acme"), (other.id, cyrillic_acme, cyrillic_key.as_str())] {
        organizations
            .update_one(doc! {"_id": id.to_string()}, doc! {"$set": {"name": name, "key": key, "keys": [key]}})
            .await
            .expect("store the old keys");
    }
    let records = store.master().collection::<Document>("_migrations");
    records.delete_one(doc! {"_id": "code/0006_look_alike_skeletons"}).await.expect("forget");

    let report = store.rekey_organizations().await.expect("rekey");
    assert!(report.rekeyed.is_empty(), "{report}");
    assert_eq!(report.conflicts.len() + report.skeletons_added, 2, "{report}");
    assert_eq!(report.conflicts.len(), 1, "{report}");
    let result = store.create(create(" \u{410}CME ", "d@acme.test")).await;
    assert!(matches!(result, Err(domain::CreateOrgError::NameTaken)), "{result:?}");
    assert!(records.find_one(doc! {"_id": "code/0006_look_alike_skeletons"}).await.expect("find").is_some());
    let again = store.rekey_organizations().await.expect("rekey again");
    assert_eq!(again, mongo_adapter::RekeyReport::default(), "done once");
}

/// Migration 0004 removes the lockout fields that earlier versions kept on admins.
#[tokio::test]
async fn the_old_lockout_fields_are_removed_from_admins() {
    let store = fresh_store().await;
    let admins = store.master().collection::<Document>("admins");
    admins
        .insert_one(doc! {"_id": "a", "email": "a@old.test", "failed_logins": 3, "locked_until": mongodb::bson::DateTime::now()})
        .await
        .expect("an admin as stored before");
    let mut migrations = master_migrations().expect("migrations");
    migrations.retain(|m| m.name.starts_with("0004_"));
    store
        .master()
        .collection::<Document>("_migrations")
        .delete_one(doc! {"_id": &migrations[0].name})
        .await
        .expect("forget");
    store.migrate(migrations, false).await.expect("migrate");
    let admin = admins.find_one(doc! {"_id": "a"}).await.expect("find").expect("admin");
    assert_eq!(admin, doc! {"_id": "a", "email": "a@old.test"});
}
