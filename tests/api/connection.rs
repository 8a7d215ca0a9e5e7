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

/// New organizations go where the policy says, and their connection details say where that
/// is: every placement on another cluster on the memory store (placements are metadata
/// there), the placements MongoDB has so far (collection and database, on main) on MongoDB.
pub async fn new_organizations_go_where_the_policy_says(backend: Backend) {
    use domain::PlacementKind::{Collection, Database, Shared};
    let (cluster, kinds) = match backend {
        Backend::Memory => (domain::ClusterName::parse("eu").expect("name"), vec![Collection, Database, Shared]),
        Backend::MongoDb => (domain::ClusterName::main(), vec![Collection, Database]),
    };
    for kind in kinds {
        let app = backend
            .spawn_with(|s| {
                if !cluster.is_main() {
                    s.clusters = vec![(cluster.clone(), "mongodb://eu.example/".to_owned().into())];
                }
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
    }
}
