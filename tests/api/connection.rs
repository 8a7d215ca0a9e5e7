//! `GET /org/connection`, and the placement `GET /org/get` shows the organization's admin.

use api_tests::{Backend, problem};
use reqwest::Method;
use serde_json::Value;

async fn connection(app: &api_tests::TestApp, token: &str) -> reqwest::Response {
    app.request(Method::GET, "/org/connection").bearer_auth(token).send().await.expect("request")
}

pub async fn the_admin_gets_its_own_connection_details(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    let created = app.create_ok("Acme Corp", "a@acme.test", "correct horse").await;
    problem(app.request(Method::GET, "/org/connection").send().await.expect("request"), 401).await;
    let token = app.token("a@acme.test", "correct horse").await;
    let response = connection(&app, &token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["placement"], "collection");
    assert_eq!(body["cluster"], "main");
    assert_eq!(body["collection"], created["collection_name"]);
    assert!(body["database"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert!(body["tenant_field"].is_null() && body["tenant_id"].is_null(), "{body}");
    let uri = body["uri"].as_str().expect("uri");
    assert!(uri.contains("://") && !uri.contains('@'), "no credentials: {uri}");

    // The placement shows in GET /org/get for the organization's admin only.
    let own: Value = app.get("Acme Corp", Some(&token)).await.json().await.expect("json");
    assert_eq!(own["placement"], serde_json::json!({"kind": "collection", "cluster": "main"}));
    let anonymous: Value = app.get("Acme Corp", None).await.json().await.expect("json");
    assert!(anonymous.get("placement").is_none(), "{anonymous}");
}

/// New organizations go where the policy says, on another cluster, and their connection
/// details say where that is; rename and delete work in every placement. On the memory
/// store placements are metadata; on MongoDB the other cluster is the second test server.
pub async fn new_organizations_go_where_the_policy_says(backend: Backend) {
    use domain::PlacementKind::{Collection, Database, Shared};
    let (cluster, uri) = match backend {
        Backend::Memory => (domain::ClusterName::parse("eu").expect("name"), "mongodb://eu.example/".to_owned()),
        Backend::MongoDb => (
            mongo_adapter::test_support::second_cluster(),
            std::env::var(mongo_adapter::test_support::SECOND_URI_VARIABLE).expect("the second test server"),
        ),
    };
    for kind in [Collection, Database, Shared] {
        let app = backend
            .spawn_with(|s| {
                s.mongodb.clusters = vec![(cluster.clone(), uri.clone().into())];
                s.placement = domain::Placement { kind, cluster: cluster.clone() };
            })
            .await;
        let created = app.create_ok("Acme", "a@acme.test", "correct horse").await;
        let id = created["organization_id"].as_str().expect("id").to_owned();
        let token = app.token("a@acme.test", "correct horse").await;
        let body: Value = connection(&app, &token).await.json().await.expect("json");
        assert_eq!((&body["placement"], &body["cluster"]), (&kind.as_str().into(), &cluster.as_str().into()), "{body}");
        let own_database = format!("orgsvc_t_{}", uuid::Uuid::parse_str(&id).expect("uuid").simple());
        let database = body["database"].as_str().expect("database");
        assert_eq!(database == own_database, kind == Database, "{body}");
        let (collection, field, value): (Value, Value, Value) = match kind {
            Collection | Database => ("org_acme".into(), Value::Null, Value::Null),
            Shared => ("shared_tenants".into(), "tenant_id".into(), id.clone().into()),
        };
        assert_eq!(body["collection"], collection, "{body}");
        assert_eq!((&body["tenant_field"], &body["tenant_id"]), (&field, &value), "{body}");
        // The API's collection name stays what it always was.
        assert_eq!(created["collection_name"], "org_acme");
        let own: Value = app.get("Acme", Some(&token)).await.json().await.expect("json");
        assert_eq!(own["placement"]["kind"], kind.as_str());

        // Rename and delete go through in every placement, on the other cluster.
        let response = app.update(&token, serde_json::json!({"organization_name": "Acme Two"})).await;
        assert_eq!(response.status(), 200, "{kind}");
        let body: Value = connection(&app, &token).await.json().await.expect("json");
        let expected = if kind == Shared { "shared_tenants" } else { "org_acme_two" };
        assert_eq!(body["collection"], expected, "{body}");
        let response = app.delete(&token, "Acme Two").await;
        assert_eq!(response.status(), 204, "{kind}");
        assert!(app.tenants.tenant_collections().await.expect("collections").is_empty(), "{kind}");
    }
}

/// A cluster that cannot be reached makes creates placed there answer 503, and nothing
/// else: the service starts, and organizations elsewhere are served as usual.
pub async fn an_unreachable_cluster_answers_503_for_its_tenants_only(backend: Backend) {
    let down = domain::ClusterName::parse("down").expect("name");
    let app = backend
        .spawn_with(|s| {
            // Nothing listens on port 9 of this machine.
            s.mongodb.clusters = vec![(down.clone(), "mongodb://127.0.0.1:9/?directConnection=true".to_owned().into())];
            s.mongodb.server_selection_timeout = std::time::Duration::from_millis(300);
        })
        .await;
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let elsewhere = backend
        .spawn_with(|s| {
            s.mongodb.clusters = vec![(down.clone(), "mongodb://127.0.0.1:9/?directConnection=true".to_owned().into())];
            s.mongodb.server_selection_timeout = std::time::Duration::from_millis(300);
            s.placement = domain::Placement { kind: domain::PlacementKind::Collection, cluster: down.clone() };
        })
        .await;
    let response = elsewhere.create("Globex", "g@globex.test", "correct horse").await;
    match backend {
        // Placements are metadata on the memory store: nothing is unreachable.
        Backend::Memory => assert_eq!(response.status(), 201),
        Backend::MongoDb => {
            let body = problem(response, 503).await;
            assert!(!body.to_string().contains("127.0.0.1:9"), "no connection details in errors: {body}");
            problem(elsewhere.get("Globex", None).await, 404).await;
        }
    }
    app.get("Acme", None).await.error_for_status().expect("served as usual");
}

async fn rotate(app: &api_tests::TestApp, token: &str) -> reqwest::Response {
    app.request(Method::POST, "/org/connection/credentials").bearer_auth(token).send().await.expect("request")
}

/// Per-tenant database credentials: for an organization in a database of its own where the
/// deployment enables them, a user and a new password each time (shown once, never again
/// in any answer or audit event); a 409 problem saying why for the other placements and
/// where they are off.
pub async fn database_credentials_are_for_own_databases_only(backend: Backend) {
    use domain::PlacementKind::{Collection, Database, Shared};
    let app = backend
        .spawn_with(|s| {
            s.tenant_credentials = true;
            s.placement.kind = Database;
        })
        .await;
    let created = app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let id = uuid::Uuid::parse_str(created["organization_id"].as_str().expect("id")).expect("uuid");
    problem(app.request(Method::POST, "/org/connection/credentials").send().await.expect("request"), 401).await;
    let token = app.token("a@acme.test", "correct horse").await;
    let first = rotate(&app, &token).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "no-store");
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["username"], format!("orgsvc_u_{}", id.simple()));
    assert_eq!(first["auth_source"], format!("orgsvc_t_{}", id.simple()));
    let password = first["password"].as_str().expect("password").to_owned();
    assert!(password.len() >= domain::MIN_DATABASE_PASSWORD_CHARS, "{password}");
    let second: Value = rotate(&app, &token).await.json().await.expect("json");
    assert_eq!(second["username"], first["username"]);
    assert_ne!(second["password"], first["password"], "a new password each time");
    // Shown once: nowhere else.
    let details = connection(&app, &token).await.text().await.expect("body");
    let audit = app.request(Method::GET, "/org/audit").bearer_auth(&token).send().await.expect("request");
    let audit = audit.text().await.expect("body");
    assert!(audit.contains("database_credentials.rotated"), "{audit}");
    for body in [&details, &audit] {
        assert!(!body.contains(&password), "{body}");
    }

    for kind in [Collection, Shared] {
        let app = backend
            .spawn_with(|s| {
                s.tenant_credentials = true;
                s.placement.kind = kind;
            })
            .await;
        app.create_ok("Acme", "a@acme.test", "correct horse").await;
        let token = app.token("a@acme.test", "correct horse").await;
        let body = problem(rotate(&app, &token).await, 409).await;
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(kind.as_str()) && detail.contains("per database"), "{body}");
    }
    let off = backend.spawn_with(|s| s.placement.kind = Database).await;
    off.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = off.token("a@acme.test", "correct horse").await;
    let body = problem(rotate(&off, &token).await, 409).await;
    assert!(body["detail"].as_str().expect("detail").contains("not enabled"), "{body}");
}
