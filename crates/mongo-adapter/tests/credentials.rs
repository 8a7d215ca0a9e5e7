//! Per-tenant database credentials, proven on a test server that requires authentication
//! (SecantusDB with `--auth`, the service connected as its root user): the tenant's user
//! reads and writes its own database and nothing else, a rotation refuses the old password
//! at once, and deleting the organization drops the user.

use domain::{ClusterName, DatabasePassword, DatabaseUser, Organization, Placement, PlacementKind};
use mongo_adapter::MongoStore;
use mongo_adapter::test_support::{AUTH_URI_VARIABLE, fresh_settings, new_organization};
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
