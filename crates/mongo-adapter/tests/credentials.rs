//! Per-tenant database credentials, proven on a test server that requires authentication
//! (SecantusDB with `--auth`, the service connected as its root user): the tenant's user
//! reads and writes its own database and nothing else, a rotation refuses the old password
//! at once, and deleting the organization drops the user. With a sealing key, the user
//! moves with its tenant to another cluster, password and all, and webhook signing secrets
//! are stored sealed.

use domain::{ClusterName, DatabasePassword, DatabaseUser, Organization, Placement, PlacementKind};
use mongo_adapter::test_support::{
    AUTH_URI_VARIABLE, URI_VARIABLE, fresh_settings, fresh_settings_with_second_cluster, new_organization,
    second_cluster,
};
use mongo_adapter::{MongoStore, RunUntil};
use mongodb::Client;
use mongodb::bson::{Document, doc};
use mongodb::error::{Error, ErrorKind};
use ports::OrganizationRepository;

/// A password as the service generates them (the use case's rule, not the adapter's).
fn password(tag: u8) -> DatabasePassword {
    DatabasePassword::from_generated(format!("{tag:02x}").repeat(32)).expect("password")
}

/// A client that authenticates as `user` with `password`, at the tenant's connection
/// string (which carries no credentials of the service).
async fn tenant_client(store: &MongoStore, org: &Organization, user: &DatabaseUser, password: &str) -> Client {
    let public = store.location(org).uri;
    let (scheme, rest) = public.split_once("://").expect("a connection string");
    let separator = if rest.contains('?') { '&' } else { '?' };
    let uri = format!(
        "{scheme}://{}:{password}@{rest}{separator}authSource={}&serverSelectionTimeoutMS=5000",
        user.username, user.auth_source
    );
    Client::with_uri_str(uri).await.expect("client")
}

/// Whether the server refused to authenticate.
fn authentication_refused(error: &Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Authentication { .. })
        || matches!(error.kind.as_ref(), ErrorKind::Command(e) if e.code == 18)
}

/// Whether the server refused the operation for lack of privileges (code 13).
fn unauthorized(error: &Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Command(e) => e.code == 13,
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => e.code == 13,
        _ => false,
    }
}

#[tokio::test]
async fn a_tenant_user_reaches_only_its_own_database_and_rotation_refuses_the_old_password() {
    let settings = fresh_settings(AUTH_URI_VARIABLE);
    let store = MongoStore::open(&settings).await.expect("open as the root user");
    let own = Placement { kind: PlacementKind::Database, cluster: ClusterName::main() };
    let acme = store.create(new_organization("Acme", "a@acme.test").placed(own.clone())).await.expect("create");
    let globex = store.create(new_organization("Globex", "g@globex.test").placed(own)).await.expect("create");
    assert!(!store.location(&acme).uri.contains("root"), "no credentials of the service");

    let first = password(1);
    let user = store.set_database_user(&acme, &first).await.expect("create the user");
    assert_eq!(user, DatabaseUser::of(acme.id));
    let tenant = tenant_client(&store, &acme, &user, first.expose()).await;
    let mine = tenant.database(&Placement::database_of(acme.id)).collection::<Document>(acme.collection.as_str());
    mine.insert_one(doc! {"n": 1}).await.expect("writes its own database");
    assert_eq!(mine.count_documents(doc! {}).await.expect("reads its own database"), 1);

    let theirs = tenant.database(&Placement::database_of(globex.id)).collection::<Document>(globex.collection.as_str());
    let refused = theirs.insert_one(doc! {"n": 1}).await.expect_err("another tenant's database");
    assert!(unauthorized(&refused), "{refused:?}");
    let refused = theirs.find_one(doc! {}).await.expect_err("another tenant's database");
    assert!(unauthorized(&refused), "{refused:?}");
    let master = tenant.database(&settings.database).collection::<Document>("organizations");
    let refused = master.find_one(doc! {}).await.expect_err("the master database");
    assert!(unauthorized(&refused), "{refused:?}");

    // Rotation: the old password is refused from now on, the new one works.
    let second = password(2);
    assert_eq!(store.set_database_user(&acme, &second).await.expect("rotate"), user);
    let old = tenant_client(&store, &acme, &user, first.expose()).await;
    let refused = old.database(&user.auth_source).run_command(doc! {"ping": 1}).await.expect_err("old password");
    assert!(authentication_refused(&refused), "{refused:?}");
    let new = tenant_client(&store, &acme, &user, second.expose()).await;
    let mine = new.database(&Placement::database_of(acme.id)).collection::<Document>(acme.collection.as_str());
    assert_eq!(mine.count_documents(doc! {}).await.expect("the new password works"), 1);

    // Deleting the organization drops its user with its database.
    store.delete(acme.id).await.expect("delete");
    let gone = tenant_client(&store, &acme, &user, second.expose()).await;
    let refused = gone.database(&user.auth_source).run_command(doc! {"ping": 1}).await.expect_err("user dropped");
    assert!(authentication_refused(&refused), "{refused:?}");
    let users = store.client().database(&user.auth_source).run_command(doc! {"usersInfo": 1}).await.expect("usersInfo");
    assert!(users.get_array("users").expect("users").is_empty(), "{users}");
}

/// Moves the organization and waits for the move to complete.
async fn move_to(store: &MongoStore, org: &Organization, to: Placement) -> Organization {
    let id = store.start_move(org.name.key(), to.clone()).await.expect("start the move");
    let job = store.run_job(id, "test", RunUntil::Finished).await.expect("run").expect("claimed");
    assert_eq!(job.state, domain::JobState::Completed, "{job}");
    let moved = store.find_by_id(org.id).await.expect("find").expect("exists");
    assert_eq!(moved.placement, to);
    moved
}

/// Whether `user` can write its own database with `password` where the organization is now.
async fn can_write(store: &MongoStore, org: &Organization, user: &DatabaseUser, password: &str) -> bool {
    let tenant = tenant_client(store, org, user, password).await;
    let own = tenant.database(&user.auth_source).collection::<Document>(org.collection.as_str());
    match own.insert_one(doc! {"written": "by the tenant"}).await {
        Ok(_) => true,
        Err(e) if authentication_refused(&e) => false,
        Err(e) => panic!("neither written nor refused: {e}"),
    }
}

/// The organization's record as stored, for what it keeps of the user.
async fn raw_record(store: &MongoStore, org: &Organization) -> Document {
    let organizations = store.master().collection::<Document>("organizations");
    organizations.find_one(doc! {"_id": org.id.to_string()}).await.expect("read").expect("the record")
}

/// With a sealing key, a tenant's database user moves with it to a database of its own
/// on another cluster: the same name and password work there, another password does not,
/// and the source's user is gone with the source; a move to a placement that shares its
/// database leaves the user behind and the record forgets it. (The servers check SCRAM
/// credentials whether or not they require authentication, so a refusal is real.)
#[tokio::test]
async fn a_database_user_moves_with_its_tenant_to_another_cluster() {
    let mut settings = fresh_settings_with_second_cluster(URI_VARIABLE);
    settings.move_grace = std::time::Duration::ZERO;
    let vault = crypto_adapter::AeadVault::new(b"a sealing key of more than thirty-two bytes").expect("vault");
    let store = MongoStore::open(&settings).await.expect("open").with_vault(std::sync::Arc::new(vault));
    let own = |cluster| Placement { kind: PlacementKind::Database, cluster };
    let org = store
        .create(new_organization("Carried", "c@carried.test").placed(own(ClusterName::main())))
        .await
        .expect("create");
    let secret = password(7);
    let user = store.set_database_user(&org, &secret).await.expect("create the user");
    assert!(can_write(&store, &org, &user, secret.expose()).await);
    let record = raw_record(&store, &org).await;
    let kept = record.get_document("tenant_user").expect("the sealed password is kept");
    assert_eq!(kept.get_str("username").expect("username"), user.username);
    assert!(!format!("{record:?}").contains(secret.expose()), "never in clear: {record:?}");
    let before = org.clone();

    let org = move_to(&store, &org, own(second_cluster())).await;
    assert!(can_write(&store, &org, &user, secret.expose()).await, "the same password on the new cluster");
    assert!(!can_write(&store, &org, &user, password(8).expose()).await, "and no other");
    assert!(!can_write(&store, &before, &user, secret.expose()).await, "the source's user is gone");
    assert_eq!(raw_record(&store, &org).await.get_document("tenant_user").expect("still kept"), kept);

    // A rotation on the new cluster is what the next move carries.
    let rotated = password(9);
    store.set_database_user(&org, &rotated).await.expect("rotate");
    let org = move_to(&store, &org, own(ClusterName::main())).await;
    assert!(can_write(&store, &org, &user, rotated.expose()).await);
    assert!(!can_write(&store, &org, &user, secret.expose()).await);

    // A collection in the shared tenant database cannot isolate a user: it stays behind.
    let shared_database = move_to(&store, &org, Placement::default()).await;
    assert!(raw_record(&store, &shared_database).await.get_document("tenant_user").is_err(), "forgotten");
    assert!(!can_write(&store, &org, &user, rotated.expose()).await, "dropped with its database");
}

/// Without a sealing key nothing is kept, and a move leaves the user behind (the admin
/// rotates to get one where the tenant went).
#[tokio::test]
async fn without_a_sealing_key_a_move_leaves_the_user_behind() {
    let mut settings = fresh_settings_with_second_cluster(URI_VARIABLE);
    settings.move_grace = std::time::Duration::ZERO;
    let store = MongoStore::open(&settings).await.expect("open");
    let own = |cluster| Placement { kind: PlacementKind::Database, cluster };
    let org = store
        .create(new_organization("Behind", "b@behind.test").placed(own(ClusterName::main())))
        .await
        .expect("create");
    let secret = password(3);
    let user = store.set_database_user(&org, &secret).await.expect("create the user");
    assert!(raw_record(&store, &org).await.get_document("tenant_user").is_err(), "nothing kept");
    let moved = move_to(&store, &org, own(second_cluster())).await;
    assert!(!can_write(&store, &moved, &user, secret.expose()).await, "no user on the new cluster");
    let user = store.set_database_user(&moved, &password(4)).await.expect("rotate there");
    assert!(can_write(&store, &moved, &user, password(4).expose()).await);
}

/// With a sealing key, a webhook's signing secret is stored sealed (never in clear), opens
/// for deliveries, stays sealed when rotated, and an instance without the key cannot sign
/// with it (an error, not an unsigned delivery).
#[tokio::test]
async fn webhook_signing_secrets_are_stored_sealed_with_a_sealing_key() {
    use domain::{Endpoint, EndpointPolicy, EventFilter, OrganizationChanges, OrganizationName, Rename, WebhookId};
    use domain::{WebhookSecret, WebhookUrl};
    use ports::WebhookRepository;
    use secrecy::ExposeSecret;

    let settings = fresh_settings(URI_VARIABLE);
    let plain = MongoStore::open(&settings).await.expect("open");
    let vault = crypto_adapter::AeadVault::new(b"a sealing key of more than thirty-two bytes").expect("vault");
    let store = plain.clone().with_vault(std::sync::Arc::new(vault));
    let org = store.create(new_organization("Hooked", "h@hooked.test")).await.expect("create");
    let endpoint = Endpoint {
        id: WebhookId::new(),
        organization_id: org.id,
        url: WebhookUrl::parse("https://hooks.example.com/in", EndpointPolicy::default()).expect("url"),
        events: EventFilter::parse(["*"]).expect("filter"),
        created_at: org.created_at,
    };
    let first = WebhookSecret::from_entropy([3; domain::WEBHOOK_SECRET_BYTES]);
    store.create_endpoint(&endpoint, &first).await.expect("register");
    let raw = || async {
        let webhooks = store.master().collection::<Document>("webhooks");
        webhooks.find_one(doc! {"_id": endpoint.id.to_string()}).await.expect("read").expect("the endpoint")
    };
    let stored = raw().await;
    assert!(stored.get("secret").is_none(), "no clear secret: {stored:?}");
    assert!(stored.get_binary_generic("sealed_secret").is_ok(), "{stored:?}");
    assert!(!format!("{stored:?}").contains(first.expose().expose_secret().trim_start_matches("whsec_")));

    // A rename publishes an event; the delivery task carries the opened secret.
    let name = OrganizationName::parse("Hooked Again").expect("name");
    let rename = Rename::new(org.id, name, domain::CollectionNaming::Key);
    let changes = OrganizationChanges { rename: Some(rename), email: None, password_hash: None, at: org.updated_at };
    store.update(org.id, changes).await.expect("rename");
    let lease = std::time::Duration::from_secs(30);
    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    // An instance without the key cannot sign: it says so instead.
    let error = plain.next_delivery(now, lease).await.expect_err("no key").to_string();
    assert!(error.contains("ORGSVC_SEALING_KEY"), "{error}");
    let expired = now + chrono::Duration::seconds(60);
    let task = store.next_delivery(expired, lease).await.expect("next").expect("a delivery");
    assert_eq!(task.secret.expose().expose_secret(), first.expose().expose_secret());

    let second = WebhookSecret::from_entropy([4; domain::WEBHOOK_SECRET_BYTES]);
    assert!(store.rotate_endpoint_secret(org.id, endpoint.id, &second).await.expect("rotate"));
    let stored = raw().await;
    assert!(stored.get("secret").is_none() && stored.get_binary_generic("sealed_secret").is_ok(), "{stored:?}");
    // A store without a vault keeps it in clear, and rotating there replaces the sealed one.
    assert!(plain.rotate_endpoint_secret(org.id, endpoint.id, &first).await.expect("rotate"));
    let stored = raw().await;
    assert_eq!(stored.get_str("secret").expect("clear"), first.expose().expose_secret());
    assert!(stored.get("sealed_secret").is_none(), "{stored:?}");
}
