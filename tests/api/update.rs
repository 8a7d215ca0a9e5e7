//! `PUT /org/update`.

use api_tests::{TestApp, error_fields, problem};
use reqwest::Method;
use serde_json::{Value, json};

async fn seed(app: &TestApp, name: &str, count: usize, tag: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        (0..count).map(|i| json!({"seq": i, "tag": tag, "body": format!("{tag} document {i}")})).collect();
    app.tenants.insert_documents(&app.organization(name).await, docs.clone()).await.expect("insert");
    docs
}

/// The tenant documents of the organization named `name`.
async fn documents(app: &TestApp, name: &str) -> Vec<Value> {
    app.tenants.documents(&app.organization(name).await).await.expect("documents")
}

pub async fn requires_a_valid_bearer_token(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let body = json!({"organization_name": "Hijacked"});
    let response = app.request(Method::PUT, "/org/update").json(&body).send().await.expect("request");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, 401).await;
    for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        let response = app.update(token, body.clone()).await;
        assert!(response.headers()["www-authenticate"].to_str().expect("header").starts_with("Bearer"));
        problem(response, 401).await;
    }
    let response = app
        .request(Method::PUT, "/org/update")
        .header("authorization", "Basic YTpi")
        .json(&body)
        .send()
        .await
        .expect("request");
    problem(response, 401).await;
    app.get("Acme", None).await.error_for_status().expect("unchanged");
}

pub async fn empty_update_is_422(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    assert_eq!(error_fields(&problem(app.update(&token, json!({})).await, 422).await), vec!["body"]);
    let invalid = app.update(&token, json!({"organization_name": "", "email": "x", "password": "short"})).await;
    assert_eq!(error_fields(&problem(invalid, 422).await), vec!["organization_name", "email", "password"]);
    // `null` is not "leave it as it is": the schema says the fields are not nullable.
    let nulls = app.update(&token, json!({"organization_name": null, "email": null, "password": null})).await;
    assert_eq!(error_fields(&problem(nulls, 422).await), vec!["organization_name", "email", "password"]);
    let one_null = app.update(&token, json!({"organization_name": "Acme Two", "email": null})).await;
    assert_eq!(error_fields(&problem(one_null, 422).await), vec!["email"]);
    app.get("Acme", None).await.error_for_status().expect("nothing changed");
}

pub async fn rename_moves_the_collection_with_every_document(app: TestApp) {
    let created = app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let docs = seed(&app, "Acme", 300, "acme").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let response = app.update(&token, json!({"organization_name": "Acme Industries"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["organization_id"], created["organization_id"]);
    assert_eq!(body["organization_name"], "Acme Industries");
    assert_eq!(body["collection_name"], "org_acme_industries");
    assert_eq!(body["admin_email"], "a@acme.test");
    assert_eq!(body["created_at"], created["created_at"]);
    assert_ne!(body["updated_at"], Value::Null);
    assert_eq!(documents(&app, "Acme Industries").await, docs);
    assert_eq!(
        app.tenants.tenant_collections().await.expect("collections"),
        app.own_collections(&["Acme Industries"]).await
    );
    problem(app.get("Acme", None).await, 404).await;
    app.get("acme industries", None).await.error_for_status().expect("found under its new name");
}

pub async fn rename_onto_a_taken_name_is_409_and_touches_nothing(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    app.create_ok("Globex", "g@globex.test", "correct horse").await;
    let acme_docs = seed(&app, "Acme", 40, "acme").await;
    let globex_docs = seed(&app, "Globex", 60, "globex").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let body = problem(app.update(&token, json!({"organization_name": "GLOBEX"})).await, 409).await;
    assert!(body["detail"].as_str().expect("detail").contains("name"));
    assert_eq!(documents(&app, "Acme").await, acme_docs);
    assert_eq!(documents(&app, "Globex").await, globex_docs);
    let globex: Value = app.get("Globex", None).await.json().await.expect("json");
    assert_eq!(globex["collection_name"], "org_globex");
    app.get("Acme", None).await.error_for_status().expect("acme unchanged");
}

pub async fn tokens_survive_a_rename(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    app.update(&token, json!({"organization_name": "Acme Two"})).await.error_for_status().expect("rename");
    let body: Value = app.get("Acme Two", Some(&token)).await.json().await.expect("json");
    assert_eq!(body["admin_email"], "a@acme.test");
    let response = app.update(&token, json!({"organization_name": "Acme Three"})).await;
    assert_eq!(response.status(), 200);
    // A new spelling of the same key is a rename of the display name only.
    let body: Value = app.update(&token, json!({"organization_name": "ACME three"})).await.json().await.expect("json");
    assert_eq!(body["organization_name"], "ACME three");
    assert_eq!(body["collection_name"], "org_acme_three");
}

pub async fn email_and_password_changes_apply(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let response = app.update(&token, json!({"email": "New@Acme.test", "password": "battery staple"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["admin_email"], "new@acme.test");
    problem(app.login("a@acme.test", "correct horse").await, 401).await;
    problem(app.login("new@acme.test", "correct horse").await, 401).await;
    app.token("new@acme.test", "battery staple").await;
    // The old email is free for someone else.
    app.create_ok("Other", "a@acme.test", "correct horse").await;
}

pub async fn taken_email_is_409_and_nothing_applies(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    app.create_ok("Globex", "g@globex.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let response = app
        .update(
            &token,
            json!({"organization_name": "Acme Renamed", "email": "G@globex.test", "password": "battery staple"}),
        )
        .await;
    let body = problem(response, 409).await;
    assert!(body["detail"].as_str().expect("detail").contains("email"));
    app.get("Acme", None).await.error_for_status().expect("name unchanged");
    problem(app.get("Acme Renamed", None).await, 404).await;
    app.token("a@acme.test", "correct horse").await;
    assert_eq!(
        app.tenants.tenant_collections().await.expect("collections"),
        app.own_collections(&["Acme", "Globex"]).await
    );
}
