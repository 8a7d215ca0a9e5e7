//! `POST /admin/login`.

use api_tests::{TestApp, error_fields, jwt_payload, problem};
use serde_json::Value;

pub async fn returns_a_bearer_jwt_with_every_claim(app: TestApp) {
    let created = app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let response = app.login("a@acme.test", "correct horse").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().expect("token");
    let claims = jwt_payload(token);
    assert_eq!(claims["sub"], created["admin"]["id"]);
    assert_eq!(claims["org_id"], created["organization_id"]);
    assert_eq!(claims["iss"], "orgsvc");
    let (iat, exp) = (claims["iat"].as_i64().expect("iat"), claims["exp"].as_i64().expect("exp"));
    assert_eq!(exp - iat, 900);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    // Each login gets its own token id.
    let other = jwt_payload(&app.token("a@acme.test", "correct horse").await);
    assert_ne!(other["jti"], claims["jti"]);
}

pub async fn email_is_case_insensitive(app: TestApp) {
    app.create_ok("Acme", "Admin@Acme.test", "correct horse").await;
    app.token("ADMIN@ACME.TEST", "correct horse").await;
    app.token("  admin@acme.test ", "correct horse").await;
}

pub async fn unknown_email_and_wrong_password_get_the_same_401(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let wrong_password = app.login("a@acme.test", "wrong horse").await;
    assert_eq!(wrong_password.headers()["www-authenticate"], "Bearer");
    let unknown_email = app.login("nobody@acme.test", "correct horse").await;
    assert_eq!(unknown_email.headers()["www-authenticate"], "Bearer");
    // The same body but for the request id, which names each request.
    let without_id = |mut body: Value| {
        body.as_object_mut().expect("object").remove("request_id").expect("a request id");
        body
    };
    assert_eq!(without_id(problem(wrong_password, 401).await), without_id(problem(unknown_email, 401).await));
}

pub async fn invalid_fields_are_422(app: TestApp) {
    let response =
        app.request(reqwest::Method::POST, "/admin/login").json(&serde_json::json!({})).send().await.expect("request");
    assert_eq!(error_fields(&problem(response, 422).await), vec!["email", "password"]);
    let response = app.login("not-an-email", "correct horse").await;
    assert_eq!(error_fields(&problem(response, 422).await), vec!["email"]);
}
