//! The contract of organizations: create, find, rename, update, delete, list.

use super::*;

/// A created organization reads back identically by key and by id, with its admin.
pub async fn create_then_find<S: Store>(store: Arc<S>) {
    let new = new_org("Acme Corp", "Admin@Acme.test");
    let created = store.create(new.clone()).await.expect("create");
    assert_eq!(created.id, new.id());
    assert_eq!(&created.name, new.name());
    assert_eq!(created.collection.as_str(), "org_acme_corp");
    assert_eq!(created.admin_id, new.admin().id);
    assert_eq!(created.created_at, new.created_at());
    assert_eq!(created.updated_at, new.created_at());
    assert_eq!(store.find_by_key(name("ACME-corp").key()).await.expect("find"), Some(created.clone()));
    assert_eq!(OrganizationRepository::find_by_id(&*store, created.id).await.expect("find"), Some(created.clone()));
    let admin = store.find_by_email(&email("admin@acme.test")).await.expect("find admin").expect("admin exists");
    assert_eq!(admin.id, new.admin().id);
    assert_eq!(admin.organization_id, created.id);
    assert_eq!(admin.password_hash, new.admin().password_hash);
    assert_eq!(AdminRepository::find_by_id(&*store, admin.id).await.expect("find admin"), Some(admin));
    assert_eq!(store.find_by_key(name("Other").key()).await.expect("find"), None);
    assert_eq!(OrganizationRepository::find_by_id(&*store, OrgId::new()).await.expect("find"), None);
    assert_eq!(AdminRepository::find_by_id(&*store, AdminId::new()).await.expect("find"), None);
    store.ping().await.expect("ping");
}

/// Creating an organization creates its empty tenant collection.
pub async fn create_creates_the_tenant_collection<S: Store>(store: Arc<S>) {
    assert!(collections(&*store).await.is_empty());
    let org = create(&*store, "Acme", "a@acme.test").await;
    assert_eq!(collections(&*store).await, own_collections(&[&org]));
    assert!(store.documents(&org).await.expect("documents").is_empty());
}

/// A second organization whose name has a taken key is refused and changes nothing.
pub async fn taken_key_is_name_taken<S: Store>(store: Arc<S>) {
    let first = create(&*store, "Acme Corp", "a@acme.test").await;
    let result = store.create(new_org("acme-CORP", "b@acme.test")).await;
    assert!(matches!(result, Err(CreateOrgError::NameTaken)), "{result:?}");
    assert_eq!(store.find_by_key(first.name.key()).await.expect("find"), Some(first.clone()));
    assert_eq!(store.find_by_email(&email("b@acme.test")).await.expect("find"), None);
    assert_eq!(collections(&*store).await, own_collections(&[&first]));
}

/// A name that only looks like a taken one (Cyrillic letters for Latin ones) is taken too,
/// for creates and renames; renaming to a look-alike of one's own name is allowed; a
/// rename or delete frees the look-alikes of the name it gives up.
pub async fn look_alike_names_are_taken_until_freed<S: Store>(store: Arc<S>) {
    // "Асме" below is written in Cyrillic letters; "\u{43e}" is a Cyrillic "о".
    let cyrillic_acme = "\u{410}\u{441}\u{43c}\u{435}";
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let result = store.create(new_org(cyrillic_acme, "c@acme.test")).await;
    assert!(matches!(result, Err(CreateOrgError::NameTaken)), "{result:?}");
    create(&*store, "ACME Corp", "c@acme.test").await;

    let globex = create(&*store, "Globex", "g@globex.test").await;
    let mut change = changes();
    change.rename = Some(rename(&globex, cyrillic_acme));
    let result = store.update(globex.id, change).await;
    assert!(matches!(result, Err(UpdateOrgError::NameTaken)), "{result:?}");
    assert_eq!(store.find_by_key(globex.name.key()).await.expect("find"), Some(globex.clone()));

    // Its own look-alike: a different key, so the collection moves.
    let mut change = changes();
    change.rename = Some(rename(&acme, "\u{410}cme"));
    let renamed = store.update(acme.id, change).await.expect("rename to its own look-alike");
    assert_ne!(renamed.name.key(), acme.name.key());
    // The rename gave up the key "acme" but keeps its look-alikes; deleting frees them.
    let result = store.create(new_org("Acme", "d@acme.test")).await;
    assert!(matches!(result, Err(CreateOrgError::NameTaken)), "{result:?}");
    store.delete(acme.id).await.expect("delete");
    create(&*store, cyrillic_acme, "d@acme.test").await;

    // A rename away frees the look-alikes of the old name.
    let mut change = changes();
    change.rename = Some(rename(&globex, "Initech"));
    store.update(globex.id, change).await.expect("rename");
    create(&*store, "Gl\u{43e}bex", "e@globex.test").await;
}

/// An organization whose admin email is taken is refused, and nothing of it remains: its
/// name stays free and no collection is left behind.
pub async fn taken_email_is_email_taken_and_leaves_nothing<S: Store>(store: Arc<S>) {
    let first = create(&*store, "Acme", "admin@acme.test").await;
    let result = store.create(new_org("Globex", "ADMIN@acme.test")).await;
    assert!(matches!(result, Err(CreateOrgError::EmailTaken)), "{result:?}");
    assert_eq!(store.find_by_key(name("Globex").key()).await.expect("find"), None);
    assert_eq!(collections(&*store).await, own_collections(&[&first]));
    let admin = store.find_by_email(&email("admin@acme.test")).await.expect("find").expect("admin");
    assert_eq!(admin.organization_id, first.id);
    // The name was not left reserved.
    create(&*store, "Globex", "admin@globex.test").await;
}

/// Sixteen simultaneous creates of one key: exactly one wins, the others are `NameTaken`.
pub async fn concurrent_creates_have_one_winner<S: Store>(store: Arc<S>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let spelling = if i % 2 == 0 { "Race Corp" } else { "race-corp" };
            tokio::spawn(async move { store.create(new_org(spelling, &format!("admin{i}@race.test"))).await })
        })
        .collect();
    let (mut won, mut taken) = (Vec::new(), 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(org) => won.push(org),
            Err(CreateOrgError::NameTaken) => taken += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((won.len(), taken), (1, 15));
    assert_eq!(won[0].collection.as_str(), "org_race_corp");
    assert_eq!(collections(&*store).await, own_collections(&[&won[0]]));
}

/// A rename moves the tenant collection with every document; the old one is gone.
pub async fn rename_moves_every_document<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let docs = seed(&*store, &org, 300, "acme").await;
    let mut change = changes();
    change.rename = Some(rename(&org, "Acme Renamed"));
    let renamed = store.update(org.id, change.clone()).await.expect("rename");
    assert_eq!(renamed.id, org.id);
    assert_eq!(renamed.name.as_str(), "Acme Renamed");
    assert_eq!(renamed.collection.as_str(), "org_acme_renamed");
    assert_eq!(renamed.created_at, org.created_at);
    assert_eq!(renamed.updated_at, change.at);
    assert_eq!(collections(&*store).await, own_collections(&[&renamed]));
    assert_eq!(store.documents(&renamed).await.expect("documents"), docs);
    assert_eq!(store.find_by_key(org.name.key()).await.expect("find"), None);
    assert_eq!(store.find_by_key(renamed.name.key()).await.expect("find"), Some(renamed));
    // The old name is free again.
    create(&*store, "Acme", "b@acme.test").await;
}

/// A rename onto another organization's key is refused and neither organization's data
/// or metadata changes.
pub async fn rename_onto_taken_key_touches_nothing<S: Store>(store: Arc<S>) {
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let globex = create(&*store, "Globex", "g@globex.test").await;
    let acme_docs = seed(&*store, &acme, 50, "acme").await;
    let globex_docs = seed(&*store, &globex, 70, "globex").await;
    let mut change = changes();
    change.rename = Some(rename(&acme, "GLOBEX"));
    change.email = Some(email("new@acme.test"));
    let result = store.update(acme.id, change).await;
    assert!(matches!(result, Err(UpdateOrgError::NameTaken)), "{result:?}");
    assert_eq!(store.documents(&acme).await.expect("documents"), acme_docs);
    assert_eq!(store.documents(&globex).await.expect("documents"), globex_docs);
    assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), Some(acme));
    assert_eq!(store.find_by_key(globex.name.key()).await.expect("find"), Some(globex));
    assert!(store.find_by_email(&email("new@acme.test")).await.expect("find").is_none());
}

/// A new spelling of the same key renames the display name and keeps the collection.
pub async fn rename_keeping_the_key_changes_only_the_display_name<S: Store>(store: Arc<S>) {
    let org = create(&*store, "acme corp", "a@acme.test").await;
    let docs = seed(&*store, &org, 5, "acme").await;
    let mut change = changes();
    change.rename = Some(rename(&org, "ACME Corp"));
    let renamed = store.update(org.id, change).await.expect("rename");
    assert_eq!(renamed.name.as_str(), "ACME Corp");
    assert_eq!(renamed.collection, org.collection);
    assert_eq!(store.documents(&org).await.expect("documents"), docs);
}

/// Email and password changes apply to the organization's admin.
pub async fn update_email_and_password<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let mut change = changes();
    change.email = Some(email("new@acme.test"));
    change.password_hash = Some(phc("bmV3"));
    let updated = store.update(org.id, change.clone()).await.expect("update");
    assert_eq!(updated.updated_at, change.at);
    assert_eq!(store.find_by_email(&email("a@acme.test")).await.expect("find"), None);
    let admin = store.find_by_email(&email("new@acme.test")).await.expect("find").expect("admin");
    assert_eq!(admin.id, org.admin_id);
    assert_eq!(admin.password_hash, phc("bmV3"));
    assert_eq!(admin.updated_at, change.at);
    // Setting the email an admin already has is not a conflict.
    let mut same = changes();
    same.email = Some(email("new@acme.test"));
    store.update(org.id, same).await.expect("same email");
    // The old email is free again.
    create(&*store, "Other", "a@acme.test").await;
}

/// When one requested change is refused, none is applied.
pub async fn update_is_all_or_nothing<S: Store>(store: Arc<S>) {
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let globex = create(&*store, "Globex", "g@globex.test").await;
    let docs = seed(&*store, &acme, 20, "acme").await;
    let mut change = changes();
    change.rename = Some(rename(&acme, "Acme Renamed"));
    change.email = Some(email("g@globex.test"));
    change.password_hash = Some(phc("bmV3"));
    let result = store.update(acme.id, change).await;
    assert!(matches!(result, Err(UpdateOrgError::EmailTaken)), "{result:?}");
    assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), Some(acme.clone()));
    assert_eq!(store.find_by_key(name("Acme Renamed").key()).await.expect("find"), None);
    assert_eq!(store.documents(&acme).await.expect("documents"), docs);
    assert_eq!(collections(&*store).await, own_collections(&[&acme, &globex]));
    let admin = store.find_by_email(&email("a@acme.test")).await.expect("find").expect("admin");
    assert_eq!(admin.password_hash, phc("aGFzaA"));
    // The reserved name was released.
    create(&*store, "Acme Renamed", "r@acme.test").await;
}

/// Updating an organization that does not exist is `NotFound`.
pub async fn update_of_missing_organization_is_not_found<S: Store>(store: Arc<S>) {
    let mut change = changes();
    change.email = Some(email("x@acme.test"));
    let result = store.update(OrgId::new(), change).await;
    assert!(matches!(result, Err(UpdateOrgError::NotFound)), "{result:?}");
}

/// Eight organizations renaming to one key at once: one wins, the others are `NameTaken`
/// and keep their data.
pub async fn concurrent_renames_to_one_key_have_one_winner<S: Store>(store: Arc<S>) {
    let mut orgs = Vec::new();
    for i in 0..8 {
        let org = create(&*store, &format!("Org {i}"), &format!("a{i}@org.test")).await;
        seed(&*store, &org, 3, &format!("org{i}")).await;
        orgs.push(org);
    }
    let tasks: Vec<_> = orgs
        .iter()
        .map(|org| {
            let store = Arc::clone(&store);
            let mut change = changes();
            change.rename = Some(rename(org, "Target"));
            let id = org.id;
            tokio::spawn(async move { store.update(id, change).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(org) => winners.push(org),
            Err(UpdateOrgError::NameTaken) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let winner = &winners[0];
    let original = orgs.iter().position(|o| o.id == winner.id).expect("winner is one of them");
    assert_eq!(winner.collection.as_str(), "org_target");
    let docs = store.documents(winner).await.expect("documents");
    assert_eq!(docs.len(), 3);
    assert!(docs.iter().all(|d| d["tag"] == format!("org{original}")));
    let now: Vec<&Organization> = orgs.iter().filter(|o| o.id != winner.id).chain([winner]).collect();
    assert_eq!(collections(&*store).await, own_collections(&now));
    for (i, org) in orgs.iter().enumerate().filter(|(i, _)| *i != original) {
        assert_eq!(store.find_by_key(org.name.key()).await.expect("find").as_ref(), Some(org), "org {i}");
        assert_eq!(store.documents(org).await.expect("documents").len(), 3);
    }
}

/// Deleting removes the collection, the admin and the organization, and frees its name
/// and email.
pub async fn delete_removes_everything_and_frees_the_names<S: Store>(store: Arc<S>) {
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let globex = create(&*store, "Globex", "g@globex.test").await;
    seed(&*store, &acme, 10, "acme").await;
    let globex_docs = seed(&*store, &globex, 10, "globex").await;
    store.delete(acme.id).await.expect("delete");
    assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), None);
    assert_eq!(OrganizationRepository::find_by_id(&*store, acme.id).await.expect("find"), None);
    assert_eq!(AdminRepository::find_by_id(&*store, acme.admin_id).await.expect("find"), None);
    assert_eq!(store.find_by_email(&email("a@acme.test")).await.expect("find"), None);
    assert_eq!(collections(&*store).await, own_collections(&[&globex]));
    assert!(store.documents(&acme).await.expect("documents").is_empty());
    assert_eq!(store.documents(&globex).await.expect("documents"), globex_docs);
    let again = create(&*store, "ACME", "a@acme.test").await;
    assert!(store.documents(&again).await.expect("documents").is_empty());
}

/// Deleting an organization that does not exist is `NotFound`, also the second time.
pub async fn delete_of_missing_organization_is_not_found<S: Store>(store: Arc<S>) {
    let result = store.delete(OrgId::new()).await;
    assert!(matches!(result, Err(DeleteOrgError::NotFound)), "{result:?}");
    let org = create(&*store, "Acme", "a@acme.test").await;
    store.delete(org.id).await.expect("delete");
    let result = store.delete(org.id).await;
    assert!(matches!(result, Err(DeleteOrgError::NotFound)), "{result:?}");
}

/// Under id naming a rename changes only metadata: the collection stays where it is.
pub async fn id_naming_never_moves_the_collection<S: Store>(store: Arc<S>) {
    let org = store.create(new_org_named("Acme", "a@acme.test", CollectionNaming::Id)).await.expect("create");
    assert_eq!(org.collection.as_str(), format!("org_{}", org.id.as_uuid().simple()));
    let docs = seed(&*store, &org, 10, "acme").await;
    let mut change = changes();
    change.rename = Some(Rename::new(org.id, name("Acme Two"), CollectionNaming::Id));
    let renamed = store.update(org.id, change).await.expect("rename");
    assert_eq!(renamed.collection, org.collection);
    assert_eq!(store.documents(&org).await.expect("documents"), docs);
    assert_eq!(collections(&*store).await, own_collections(&[&org]));
}

/// Operators' views: every active organization by key, and their number.
pub async fn list_and_count_show_active_organizations<S: Store>(store: Arc<S>) {
    assert_eq!(store.count().await.expect("count"), 0);
    let globex = create(&*store, "Globex", "g@globex.test").await;
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let gone = create(&*store, "Gone", "x@gone.test").await;
    store.delete(gone.id).await.expect("delete");
    assert_eq!(store.list().await.expect("list"), vec![acme, globex]);
    assert_eq!(store.count().await.expect("count"), 2);
}
