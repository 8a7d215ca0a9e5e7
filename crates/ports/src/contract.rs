//! The repository contract suite: the behaviour every storage adapter must have, written
//! once and run against each adapter with [`repository_contract_tests!`](crate::repository_contract_tests).
//!
//! Each case takes a fresh, empty store. The cases check outcomes through the ports only,
//! so that the same assertions hold for every adapter.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use std::time::Duration;

use domain::{
    AdminId, AuditAction, AuditEvent, AuditOutcome, CheckId, CollectionName, CollectionNaming, CreateOrgError,
    DeleteOrgError, Email, EventId, LockoutPolicy, LoginThrottle, NewAdmin, NewOrganization, OrgId, Organization,
    OrganizationChanges, OrganizationName, PasswordHash, PendingCheck, Rename, SecurityPolicy, Session, SessionId,
    UpdateOrgError,
};
use serde_json::json;

use crate::{
    AccountLockout, AdminRepository, AuditLog, AuditQuery, CheckPermit, Clock, LoginThrottles, NewSession,
    OrganizationRepository, RefreshToken, Rotation, SessionRepository, SystemClock, TenantStore, ThrottleKey,
    ThrottleKeyer,
};

/// Everything a store under contract implements.
pub trait Store:
    OrganizationRepository + AdminRepository + TenantStore + AccountLockout + SessionRepository + AuditLog
{
}
impl<S> Store for S where
    S: OrganizationRepository + AdminRepository + TenantStore + AccountLockout + SessionRepository + AuditLog
{
}

/// Generates one `#[tokio::test]` per contract case. The argument is an expression that
/// evaluates to an async factory of fresh stores: `|| async { Arc<S> }`.
#[macro_export]
macro_rules! repository_contract_tests {
    ($factory:expr) => {
        $crate::repository_contract_tests!(@cases $factory;
            create_then_find, create_creates_the_tenant_collection, taken_key_is_name_taken,
            look_alike_names_are_taken_until_freed,
            taken_email_is_email_taken_and_leaves_nothing, concurrent_creates_have_one_winner,
            rename_moves_every_document, rename_onto_taken_key_touches_nothing,
            rename_keeping_the_key_changes_only_the_display_name, update_email_and_password,
            update_is_all_or_nothing, update_of_missing_organization_is_not_found,
            concurrent_renames_to_one_key_have_one_winner, delete_removes_everything_and_frees_the_names,
            delete_of_missing_organization_is_not_found, id_naming_never_moves_the_collection,
            throttle_writes_are_compare_and_set, parallel_wrong_passwords_get_at_most_the_threshold_checks,
            parallel_right_passwords_are_never_locked_out, lockout_backs_off_and_resets_on_success,
            hash_upgrade_is_conditional, refresh_rotates_and_detects_reuse, refresh_grace_allows_one_retry,
            parallel_refreshes_of_one_token_rotate_once, sessions_are_revoked_by_admin_and_organization,
            audit_events_page_newest_first_per_organization, deleted_organizations_events_expire,
            list_and_count_show_active_organizations);
    };
    (@cases $factory:expr; $($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let store = ($factory)().await;
            $crate::contract::$case(store).await;
        }
    )*};
}

fn phc(tag: &str) -> PasswordHash {
    // A well-formed PHC string; the contract never verifies passwords.
    PasswordHash::from_phc(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${tag}")).expect("valid phc")
}

fn now() -> DateTime<Utc> {
    domain::truncate_to_millis(Utc::now())
}

fn name(text: &str) -> OrganizationName {
    OrganizationName::parse(text).expect("valid name")
}

fn email(text: &str) -> Email {
    Email::parse(text).expect("valid email")
}

fn new_org(org_name: &str, admin_email: &str) -> NewOrganization {
    new_org_named(org_name, admin_email, CollectionNaming::Key)
}

fn new_org_named(org_name: &str, admin_email: &str, naming: CollectionNaming) -> NewOrganization {
    let admin = NewAdmin { id: AdminId::new(), email: email(admin_email), password_hash: phc("aGFzaA") };
    NewOrganization::new(OrgId::new(), name(org_name), naming, admin, now())
}

fn rename(org: &Organization, to: &str) -> Rename {
    Rename::new(org.id, name(to), CollectionNaming::Key)
}

fn changes() -> OrganizationChanges {
    OrganizationChanges { rename: None, email: None, password_hash: None, at: now() }
}

fn collection(text: &str) -> CollectionName {
    CollectionName::parse(text).expect("valid collection")
}

async fn collections<S: Store>(store: &S) -> Vec<String> {
    store.tenant_collections().await.expect("list collections").iter().map(|c| c.as_str().to_owned()).collect()
}

async fn seed<S: Store>(store: &S, collection: &CollectionName, count: usize, tag: &str) -> Vec<serde_json::Value> {
    let docs: Vec<_> = (0..count).map(|i| json!({"seq": i, "tag": tag, "payload": format!("{tag}-{i}")})).collect();
    store.insert_documents(collection, docs.clone()).await.expect("insert documents");
    docs
}

async fn create<S: Store>(store: &S, org_name: &str, admin_email: &str) -> Organization {
    store.create(new_org(org_name, admin_email)).await.expect("create")
}

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
    assert_eq!(collections(&*store).await, vec!["org_acme"]);
    assert!(store.documents(&org.collection).await.expect("documents").is_empty());
}

/// A second organization whose name has a taken key is refused and changes nothing.
pub async fn taken_key_is_name_taken<S: Store>(store: Arc<S>) {
    let first = create(&*store, "Acme Corp", "a@acme.test").await;
    let result = store.create(new_org("acme-CORP", "b@acme.test")).await;
    assert!(matches!(result, Err(CreateOrgError::NameTaken)), "{result:?}");
    assert_eq!(store.find_by_key(first.name.key()).await.expect("find"), Some(first));
    assert_eq!(store.find_by_email(&email("b@acme.test")).await.expect("find"), None);
    assert_eq!(collections(&*store).await, vec!["org_acme_corp"]);
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
    assert_eq!(collections(&*store).await, vec!["org_acme"]);
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
    let (mut won, mut taken) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => won += 1,
            Err(CreateOrgError::NameTaken) => taken += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((won, taken), (1, 15));
    assert_eq!(collections(&*store).await, vec!["org_race_corp"]);
}

/// A rename moves the tenant collection with every document; the old one is gone.
pub async fn rename_moves_every_document<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let docs = seed(&*store, &org.collection, 300, "acme").await;
    let mut change = changes();
    change.rename = Some(rename(&org, "Acme Renamed"));
    let renamed = store.update(org.id, change.clone()).await.expect("rename");
    assert_eq!(renamed.id, org.id);
    assert_eq!(renamed.name.as_str(), "Acme Renamed");
    assert_eq!(renamed.collection.as_str(), "org_acme_renamed");
    assert_eq!(renamed.created_at, org.created_at);
    assert_eq!(renamed.updated_at, change.at);
    assert_eq!(collections(&*store).await, vec!["org_acme_renamed"]);
    assert_eq!(store.documents(&renamed.collection).await.expect("documents"), docs);
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
    let acme_docs = seed(&*store, &acme.collection, 50, "acme").await;
    let globex_docs = seed(&*store, &globex.collection, 70, "globex").await;
    let mut change = changes();
    change.rename = Some(rename(&acme, "GLOBEX"));
    change.email = Some(email("new@acme.test"));
    let result = store.update(acme.id, change).await;
    assert!(matches!(result, Err(UpdateOrgError::NameTaken)), "{result:?}");
    assert_eq!(store.documents(&acme.collection).await.expect("documents"), acme_docs);
    assert_eq!(store.documents(&globex.collection).await.expect("documents"), globex_docs);
    assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), Some(acme));
    assert_eq!(store.find_by_key(globex.name.key()).await.expect("find"), Some(globex));
    assert!(store.find_by_email(&email("new@acme.test")).await.expect("find").is_none());
}

/// A new spelling of the same key renames the display name and keeps the collection.
pub async fn rename_keeping_the_key_changes_only_the_display_name<S: Store>(store: Arc<S>) {
    let org = create(&*store, "acme corp", "a@acme.test").await;
    let docs = seed(&*store, &org.collection, 5, "acme").await;
    let mut change = changes();
    change.rename = Some(rename(&org, "ACME Corp"));
    let renamed = store.update(org.id, change).await.expect("rename");
    assert_eq!(renamed.name.as_str(), "ACME Corp");
    assert_eq!(renamed.collection, org.collection);
    assert_eq!(store.documents(&org.collection).await.expect("documents"), docs);
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
    create(&*store, "Globex", "g@globex.test").await;
    let docs = seed(&*store, &acme.collection, 20, "acme").await;
    let mut change = changes();
    change.rename = Some(rename(&acme, "Acme Renamed"));
    change.email = Some(email("g@globex.test"));
    change.password_hash = Some(phc("bmV3"));
    let result = store.update(acme.id, change).await;
    assert!(matches!(result, Err(UpdateOrgError::EmailTaken)), "{result:?}");
    assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), Some(acme.clone()));
    assert_eq!(store.find_by_key(name("Acme Renamed").key()).await.expect("find"), None);
    assert_eq!(store.documents(&acme.collection).await.expect("documents"), docs);
    assert_eq!(collections(&*store).await, vec!["org_acme", "org_globex"]);
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
        seed(&*store, &org.collection, 3, &format!("org{i}")).await;
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
    let docs = store.documents(&collection("org_target")).await.expect("documents");
    assert_eq!(docs.len(), 3);
    assert!(docs.iter().all(|d| d["tag"] == format!("org{original}")));
    let all = collections(&*store).await;
    assert_eq!(all.len(), 8);
    for (i, org) in orgs.iter().enumerate().filter(|(i, _)| *i != original) {
        assert_eq!(store.find_by_key(org.name.key()).await.expect("find").as_ref(), Some(org), "org {i}");
        assert_eq!(store.documents(&org.collection).await.expect("documents").len(), 3);
    }
}

/// Deleting removes the collection, the admin and the organization, and frees its name
/// and email.
pub async fn delete_removes_everything_and_frees_the_names<S: Store>(store: Arc<S>) {
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let globex = create(&*store, "Globex", "g@globex.test").await;
    seed(&*store, &acme.collection, 10, "acme").await;
    let globex_docs = seed(&*store, &globex.collection, 10, "globex").await;
    store.delete(acme.id).await.expect("delete");
    assert_eq!(store.find_by_key(acme.name.key()).await.expect("find"), None);
    assert_eq!(OrganizationRepository::find_by_id(&*store, acme.id).await.expect("find"), None);
    assert_eq!(AdminRepository::find_by_id(&*store, acme.admin_id).await.expect("find"), None);
    assert_eq!(store.find_by_email(&email("a@acme.test")).await.expect("find"), None);
    assert_eq!(collections(&*store).await, vec!["org_globex"]);
    assert_eq!(store.documents(&globex.collection).await.expect("documents"), globex_docs);
    let again = create(&*store, "ACME", "a@acme.test").await;
    assert!(store.documents(&again.collection).await.expect("documents").is_empty());
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
    let docs = seed(&*store, &org.collection, 10, "acme").await;
    let mut change = changes();
    change.rename = Some(Rename::new(org.id, name("Acme Two"), CollectionNaming::Id));
    let renamed = store.update(org.id, change).await.expect("rename");
    assert_eq!(renamed.collection, org.collection);
    assert_eq!(store.documents(&org.collection).await.expect("documents"), docs);
    assert_eq!(collections(&*store).await, vec![org.collection.as_str().to_owned()]);
}

fn ms(t: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    t + chrono::Duration::seconds(seconds)
}

fn throttle_key(tag: &str) -> ThrottleKey {
    ThrottleKey::from_hex(format!("{tag:0>64}"))
}

/// Throttle writes are compare-and-set on the version read, and `None` means "absent".
pub async fn throttle_writes_are_compare_and_set<S: Store>(store: Arc<S>) {
    let key = throttle_key("a1");
    let at = now();
    let later = ms(at, 24 * 3600);
    assert_eq!(store.load_throttle(&key).await.expect("load"), None);
    let first = LoginThrottle { failures: 1, locked_until: None, checks: Vec::new() };
    assert!(store.save_throttle(&key, &first, None, later).await.expect("insert"));
    assert!(!store.save_throttle(&key, &first, None, later).await.expect("insert again"), "already stored");
    let loaded = store.load_throttle(&key).await.expect("load").expect("stored");
    assert_eq!(loaded.throttle, first);
    let second = LoginThrottle {
        failures: 5,
        locked_until: Some(ms(at, 60)),
        checks: vec![PendingCheck { id: CheckId::new(), expires_at: ms(at, 30) }],
    };
    assert!(store.save_throttle(&key, &second, Some(loaded.version), later).await.expect("update"));
    assert!(!store.save_throttle(&key, &first, Some(loaded.version), later).await.expect("stale"), "stale version");
    let reloaded = store.load_throttle(&key).await.expect("load").expect("stored");
    assert_eq!(reloaded.throttle, second);
    assert_ne!(reloaded.version, loaded.version);
    assert_eq!(store.load_throttle(&throttle_key("b2")).await.expect("load"), None, "keys are separate");
}

/// A clock that tests move by hand; pauses only yield.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(at))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn pause(&self, _: std::time::Duration) {
        tokio::task::yield_now().await;
    }
}

fn throttles<S: Store>(store: &Arc<S>) -> LoginThrottles {
    LoginThrottles::new(store.clone(), LockoutPolicy::default(), ThrottleKeyer::new(b"contract"))
}

/// Fifty parallel wrong passwords for one address get exactly the threshold's number of
/// checks; the rest are told the address is locked.
pub async fn parallel_wrong_passwords_get_at_most_the_threshold_checks<S: Store>(store: Arc<S>) {
    let throttles = Arc::new(throttles(&store));
    let clock = Arc::new(SystemClock);
    let attempts: Vec<_> = (0..50)
        .map(|_| {
            let (throttles, clock) = (throttles.clone(), clock.clone());
            tokio::spawn(async move {
                let address = email("a@acme.test");
                let check = CheckId::new();
                match throttles.start(&address, check, &*clock).await.expect("start") {
                    CheckPermit::Granted => {
                        throttles.failed(&address, check, &*clock).await.expect("failed");
                        true
                    }
                    CheckPermit::Locked { .. } => false,
                }
            })
        })
        .collect();
    let mut checked = 0;
    for attempt in attempts {
        checked += usize::from(attempt.await.expect("join"));
    }
    assert_eq!(checked, 5, "password checks");
}

/// Sixteen parallel right passwords for one address, which has failures already, are all
/// checked: a check waits for a slot rather than being told the address is locked.
pub async fn parallel_right_passwords_are_never_locked_out<S: Store>(store: Arc<S>) {
    let throttles = Arc::new(throttles(&store));
    let clock = Arc::new(SystemClock);
    let address = email("a@acme.test");
    for _ in 0..3 {
        let check = CheckId::new();
        assert_eq!(throttles.start(&address, check, &*clock).await.expect("start"), CheckPermit::Granted);
        throttles.failed(&address, check, &*clock).await.expect("failed");
    }
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let (throttles, clock, address) = (throttles.clone(), clock.clone(), address.clone());
            tokio::spawn(async move {
                let check = CheckId::new();
                let permit = throttles.start(&address, check, &*clock).await.expect("start");
                if permit == CheckPermit::Granted {
                    throttles.succeeded(&address, check, &*clock).await.expect("succeeded");
                }
                permit
            })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.await.expect("join"), CheckPermit::Granted);
    }
}

/// After a lock expires one more check is allowed, and failing it locks for twice as long;
/// a success resets everything; addresses are counted apart.
pub async fn lockout_backs_off_and_resets_on_success<S: Store>(store: Arc<S>) {
    let throttles = throttles(&store);
    let t0 = now();
    let clock = ManualClock::at(t0);
    let address = email("a@acme.test");
    let attempt = |succeed: bool| {
        let (throttles, clock, address) = (&throttles, &clock, &address);
        async move {
            let check = CheckId::new();
            let permit = throttles.start(address, check, clock).await.expect("start");
            if permit == CheckPermit::Granted {
                if succeed {
                    throttles.succeeded(address, check, clock).await.expect("succeeded");
                } else {
                    throttles.failed(address, check, clock).await.expect("failed");
                }
            }
            permit
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt(false).await, CheckPermit::Granted);
    }
    clock.set(ms(t0, 59));
    assert_eq!(attempt(true).await, CheckPermit::Locked { until: ms(t0, 60) });
    assert_eq!(
        throttles.start(&email("b@acme.test"), CheckId::new(), &clock).await.expect("start"),
        CheckPermit::Granted,
        "another address is not locked"
    );
    let t1 = ms(t0, 61);
    clock.set(t1);
    assert_eq!(attempt(false).await, CheckPermit::Granted);
    clock.set(ms(t1, 1));
    assert_eq!(attempt(true).await, CheckPermit::Locked { until: ms(t1, 120) });
    clock.set(ms(t1, 121));
    assert_eq!(attempt(true).await, CheckPermit::Granted);
    for _ in 0..4 {
        assert_eq!(attempt(false).await, CheckPermit::Granted);
    }
    assert_eq!(attempt(true).await, CheckPermit::Granted, "the success reset the count");
}

/// A hash upgrade applies only over the hash it was computed from.
pub async fn hash_upgrade_is_conditional<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    assert!(!store.upgrade_password_hash(org.admin_id, &phc("b3RoZXI"), phc("bmV3")).await.expect("upgrade"));
    assert!(store.upgrade_password_hash(org.admin_id, &phc("aGFzaA"), phc("bmV3")).await.expect("upgrade"));
    let admin = AdminRepository::find_by_id(&*store, org.admin_id).await.expect("find").expect("admin");
    assert_eq!(admin.password_hash, phc("bmV3"));
}

async fn open_session<S: Store>(store: &S, org: &Organization, at: DateTime<Utc>) -> (Session, RefreshToken) {
    let session = Session {
        id: SessionId::new(),
        admin_id: org.admin_id,
        org_id: org.id,
        created_at: at,
        expires_at: ms(at, 30 * 24 * 3600),
    };
    let token = RefreshToken::generate();
    store.create_session(NewSession { session: session.clone(), refresh_hash: token.hash() }).await.expect("session");
    (session, token)
}

const GRACE: Duration = Duration::from_secs(10);

/// The default policy with this grace window for refresh retries.
fn grace(window: Duration) -> SecurityPolicy {
    SecurityPolicy { refresh_grace: window, ..SecurityPolicy::default() }
}

/// The current token rotates; a rotated one presented later revokes the session.
pub async fn refresh_rotates_and_detects_reuse<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let t0 = now();
    let (session, first) = open_session(&*store, &org, t0).await;
    let (second, third) = (RefreshToken::generate(), RefreshToken::generate());
    assert_eq!(
        store.rotate(&first.hash(), &second.hash(), &grace(GRACE), t0).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    assert_eq!(
        store.rotate(&second.hash(), &third.hash(), &grace(GRACE), ms(t0, 60)).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    assert!(store.session_active(session.id, ms(t0, 61)).await.expect("active"));
    // The first token again, long after: reuse.
    let reused = store
        .rotate(&first.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 120))
        .await
        .expect("rotate");
    assert_eq!(reused, Rotation::Reused(session.clone()));
    assert!(!store.session_active(session.id, ms(t0, 121)).await.expect("active"));
    // Even the current token is dead now.
    let after = store
        .rotate(&third.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 122))
        .await
        .expect("rotate");
    assert_eq!(after, Rotation::Invalid);
    let unknown =
        store.rotate(&RefreshToken::generate().hash(), &RefreshToken::generate().hash(), &grace(GRACE), t0).await;
    assert_eq!(unknown.expect("rotate"), Rotation::Invalid);
    // An expired session neither rotates nor is active.
    let (expiring, token) = open_session(&*store, &org, t0).await;
    let late = ms(t0, 30 * 24 * 3600 + 1);
    assert!(!store.session_active(expiring.id, late).await.expect("active"));
    assert_eq!(
        store.rotate(&token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), late).await.expect("rotate"),
        Rotation::Invalid
    );
}

/// Within the grace window the token just rotated away may be presented once more (a lost
/// answer, retried); the answer that was lost then becomes a rotated token itself.
pub async fn refresh_grace_allows_one_retry<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let t0 = now();
    let (session, first) = open_session(&*store, &org, t0).await;
    let (lost, retried, next) = (RefreshToken::generate(), RefreshToken::generate(), RefreshToken::generate());
    assert_eq!(
        store.rotate(&first.hash(), &lost.hash(), &grace(GRACE), t0).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    assert_eq!(
        store.rotate(&first.hash(), &retried.hash(), &grace(GRACE), ms(t0, 5)).await.expect("retry"),
        Rotation::Rotated(session.clone())
    );
    assert_eq!(
        store.rotate(&retried.hash(), &next.hash(), &grace(GRACE), ms(t0, 6)).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    // The lost answer's token surfaces: reuse.
    let reused =
        store.rotate(&lost.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 7)).await.expect("rotate");
    assert_eq!(reused, Rotation::Reused(session.clone()));
    // Outside the window, the rotated token is reuse too.
    let (other, token) = open_session(&*store, &org, t0).await;
    store.rotate(&token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), t0).await.expect("rotate");
    let late =
        store.rotate(&token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 11)).await.expect("rotate");
    assert_eq!(late, Rotation::Reused(other));
}

/// Parallel refreshes with one token and no grace: one rotates, the others are reuse.
pub async fn parallel_refreshes_of_one_token_rotate_once<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let t0 = now();
    let (_, token) = open_session(&*store, &org, t0).await;
    let presented = token.hash();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let (store, presented) = (store.clone(), presented.clone());
            tokio::spawn(async move {
                store
                    .rotate(&presented, &RefreshToken::generate().hash(), &grace(Duration::ZERO), ms(t0, 1))
                    .await
                    .expect("rotate")
            })
        })
        .collect();
    let mut rotated = 0;
    for call in calls {
        match call.await.expect("join") {
            Rotation::Rotated(_) => rotated += 1,
            Rotation::Reused(_) | Rotation::Invalid => {}
        }
    }
    assert_eq!(rotated, 1);
}

/// Revoking by admin spares the named session; revoking by organization spares none.
pub async fn sessions_are_revoked_by_admin_and_organization<S: Store>(store: Arc<S>) {
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let globex = create(&*store, "Globex", "g@globex.test").await;
    let t0 = now();
    let (kept, _) = open_session(&*store, &acme, t0).await;
    let (ended, ended_token) = open_session(&*store, &acme, t0).await;
    let (other, _) = open_session(&*store, &globex, t0).await;
    store.revoke_admin_sessions(acme.admin_id, Some(kept.id), t0).await.expect("revoke");
    assert!(store.session_active(kept.id, t0).await.expect("active"));
    assert!(!store.session_active(ended.id, t0).await.expect("active"));
    assert_eq!(
        store.rotate(&ended_token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), t0).await.expect("rotate"),
        Rotation::Invalid
    );
    store.revoke_organization_sessions(acme.id, t0).await.expect("revoke");
    assert!(!store.session_active(kept.id, t0).await.expect("active"));
    assert!(store.session_active(other.id, t0).await.expect("active"), "another organization's session");
    store.revoke_session(other.id, t0).await.expect("revoke");
    assert!(!store.session_active(other.id, t0).await.expect("active"));
}

fn event(org: Option<OrgId>, action: AuditAction, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        id: EventId::at(at),
        at,
        action,
        organization_id: org,
        actor_id: Some(AdminId::new()),
        ip: Some("192.0.2.7".to_owned()),
        request_id: Some("req".to_owned()),
        outcome: AuditOutcome::Success,
    }
}

/// Events come back newest first, only the organization's own, filtered and paged by
/// cursor without gaps or repeats.
pub async fn audit_events_page_newest_first_per_organization<S: Store>(store: Arc<S>) {
    let (acme, globex) = (OrgId::new(), OrgId::new());
    let t0 = now();
    let mut recorded = Vec::new();
    for i in 0..25 {
        let action = if i % 5 == 0 { AuditAction::LoginFailed } else { AuditAction::LoginSucceeded };
        let e = event(Some(acme), action, ms(t0, i));
        store.record(e.clone()).await.expect("record");
        recorded.push(e);
        store.record(event(Some(globex), action, ms(t0, i))).await.expect("record");
    }
    store.record(event(None, AuditAction::LoginFailed, t0)).await.expect("record");
    recorded.reverse();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.events(acme, AuditQuery { action: None, before, limit: 10 }, t0).await.expect("events");
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        seen.extend(page);
    }
    assert_eq!(seen, recorded);
    let failed = store
        .events(acme, AuditQuery { action: Some(AuditAction::LoginFailed), before: None, limit: 100 }, t0)
        .await
        .expect("events");
    assert_eq!(failed.len(), 5);
    assert!(failed.iter().all(|e| e.action == AuditAction::LoginFailed && e.organization_id == Some(acme)));
}

/// A deleted organization's events stay until their expiry, then are gone.
pub async fn deleted_organizations_events_expire<S: Store>(store: Arc<S>) {
    let org = OrgId::new();
    let t0 = now();
    store.record(event(Some(org), AuditAction::OrganizationDeleted, t0)).await.expect("record");
    store.expire_events(org, ms(t0, 60)).await.expect("expire");
    let query = AuditQuery { action: None, before: None, limit: 10 };
    assert_eq!(store.events(org, query.clone(), ms(t0, 30)).await.expect("events").len(), 1);
    assert!(store.events(org, query, ms(t0, 61)).await.expect("events").is_empty());
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
