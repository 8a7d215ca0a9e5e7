//! `DELETE /org/delete`.

use api_tests::{TestApp, error_fields, problem};
use reqwest::Method;
use serde_json::json;

pub async fn requires_a_valid_bearer_token(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let response = app.request(Method::DELETE, "/org/delete?organization_name=Acme").send().await.expect("request");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, 401).await;
    problem(app.delete("not-a-token", "Acme").await, 401).await;
    app.get("Acme", None).await.error_for_status().expect("still there");
}

pub async fn unknown_organization_is_404(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    problem(app.delete(&token, "Nobody").await, 404).await;
}

pub async fn another_organization_is_403_and_survives(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    app.create_ok("Globex", "g@globex.test", "correct horse").await;
    let acme = app.token("a@acme.test", "correct horse").await;
    problem(app.delete(&acme, "Globex").await, 403).await;
    app.get("Globex", None).await.error_for_status().expect("globex survives");
    app.token("g@globex.test", "correct horse").await;
}

pub async fn removes_everything_and_refuses_its_tokens(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    app.create_ok("Globex", "g@globex.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let second_token = app.token("a@acme.test", "correct horse").await;
    let response = app.delete(&token, "ACME").await;
    assert_eq!(response.status(), 204);
    problem(app.get("Acme", None).await, 404).await;
    assert_eq!(app.tenants.tenant_collections().await.expect("collections"), app.own_collections(&["Globex"]).await);
    problem(app.login("a@acme.test", "correct horse").await, 401).await;
    for token in [&token, &second_token] {
        problem(app.update(token, json!({"organization_name": "Zombie"})).await, 401).await;
        problem(app.delete(token, "Acme").await, 401).await;
    }
    // The name and the email are free again, and the new organization starts empty.
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let fresh = app.token("a@acme.test", "correct horse").await;
    problem(app.update(&token, json!({"organization_name": "Zombie"})).await, 401).await;
    app.update(&fresh, json!({"organization_name": "Acme Reborn"})).await.error_for_status().expect("new token works");
}

pub async fn accepts_the_name_in_a_json_body(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let response = app
        .request(Method::DELETE, "/org/delete")
        .bearer_auth(&token)
        .json(&json!({"organization_name": "acme"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 204);
    problem(app.get("Acme", None).await, 404).await;
}

pub async fn missing_name_is_422(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let response = app.request(Method::DELETE, "/org/delete").bearer_auth(&token).send().await.expect("request");
    assert_eq!(error_fields(&problem(response, 422).await), vec!["organization_name"]);
    app.get("Acme", None).await.error_for_status().expect("still there");
}

pub async fn naming_two_organizations_is_400_and_deletes_nothing(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let token = app.token("a@acme.test", "correct horse").await;
    let delete = |query: &'static str, body: serde_json::Value| {
        app.request(Method::DELETE, "/org/delete")
            .query(&[("organization_name", query)])
            .bearer_auth(&token)
            .json(&body)
    };
    let response = delete("Acme", json!({"organization_name": "Globex"})).send().await.expect("request");
    let body = problem(response, 400).await;
    assert_eq!(error_fields(&body), ["query.organization_name", "body.organization_name"]);
    app.get("Acme", None).await.error_for_status().expect("still there");
    // A body without a content type is not read as JSON.
    let response = app
        .request(Method::DELETE, "/org/delete")
        .bearer_auth(&token)
        .body(r#"{"organization_name": "Acme"}"#)
        .send()
        .await
        .expect("request");
    problem(response, 415).await;
    app.get("Acme", None).await.error_for_status().expect("still there");
    // Two spellings of one organization name one organization.
    let response = delete("Acme", json!({"organization_name": "ACME"})).send().await.expect("request");
    assert_eq!(response.status(), 204);
    problem(app.get("Acme", None).await, 404).await;
}
