//! API keys: created by the admin's session and shown once, listed without their secret,
//! authenticating other services within their scopes only, refused once revoked or expired
//! (with the same 401 as a bad token, counted like failed logins), and named in the audit
//! trail when they act.

use std::sync::Arc;
use std::time::Duration;

use api_tests::{Backend, TestApp, error_fields, problem};
use http_adapter::RateLimits;
use ports::{Clock, ManualClock};
use reqwest::{Method, Response};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse";

async fn create_key(app: &TestApp, token: &str, body: Value) -> Response {
    app.request(Method::POST, "/org/api-keys").bearer_auth(token).json(&body).send().await.expect("request")
}

/// Creates a key, failing unless 201; returns the answer.
async fn key_ok(app: &TestApp, token: &str, scopes: &[&str]) -> Value {
    let response = create_key(app, token, json!({"name": "billing service", "scopes": scopes})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("json")
}

async fn list(app: &TestApp, token: &str) -> Response {
    app.request(Method::GET, "/org/api-keys").bearer_auth(token).send().await.expect("request")
}

async fn revoke(app: &TestApp, token: &str, id: &str) -> Response {
    app.request(Method::DELETE, &format!("/org/api-keys/{id}")).bearer_auth(token).send().await.expect("request")
}

async fn connection(app: &TestApp, token: &str) -> Response {
    app.request(Method::GET, "/org/connection").bearer_auth(token).send().await.expect("request")
}

/// A 403 for a key, naming the scope that would allow the request, if one would.
async fn forbidden(response: Response, scope: Option<&str>) {
    let challenge = response.headers()["www-authenticate"].to_str().expect("ascii").to_owned();
    assert!(challenge.contains(r#"error="insufficient_scope""#), "{challenge}");
    match scope {
        Some(scope) => assert!(challenge.contains(&format!(r#"scope="{scope}""#)), "{challenge}"),
        None => assert!(!challenge.contains("scope=\""), "{challenge}"),
    }
    let body = problem(response, 403).await;
    assert_eq!(body["type"], "urn:orgsvc:problem:insufficient-scope", "{body}");
}

pub async fn a_key_is_shown_once_and_works_within_its_scopes(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let created = key_ok(&app, &token, &["org:read", "audit:read"]).await;
    let key = created["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("osk_") && key.len() == 53, "{key}");
    assert_eq!(created["scopes"], json!(["org:read", "audit:read"]));
    assert!(created["expires_at"].is_null() && created["last_used_at"].is_null(), "{created}");
    let prefix = created["prefix"].as_str().expect("prefix");
    assert!(key.starts_with(prefix) && prefix.len() == 10, "{prefix}");

    // Listed without the secret.
    let listed = list(&app, &token).await;
    assert_eq!(listed.status(), 200);
    let text = listed.text().await.expect("body");
    assert!(!text.contains(&key), "the key is shown once only");
    let listed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["keys"][0]["id"], created["id"]);
    assert!(listed["keys"][0].get("key").is_none(), "{listed}");

    // What org:read and audit:read allow.
    let own: Value = app.get("Acme", Some(&key)).await.json().await.expect("json");
    assert_eq!(own["admin_email"], "a@acme.test", "the admin's view: {own}");
    assert_eq!(connection(&app, &key).await.status(), 200);
    assert_eq!(app.audit(&key, &[]).await.status(), 200);
    let listed: Value = list(&app, &token).await.json().await.expect("json");
    assert!(listed["keys"][0]["last_used_at"].is_string(), "the use is recorded: {listed}");

    // What needs another scope, and what no key may do.
    forbidden(app.update(&key, json!({"organization_name": "Acme Two"})).await, Some("org:write")).await;
    forbidden(app.update(&key, json!({"password": "another password"})).await, None).await;
    forbidden(app.delete(&key, "Acme").await, None).await;
    forbidden(create_key(&app, &key, json!({"name": "k", "scopes": ["org:read"]})).await, None).await;
    forbidden(list(&app, &key).await, None).await;
    forbidden(revoke(&app, &key, created["id"].as_str().expect("id")).await, None).await;
    forbidden(app.logout(&key).await, None).await;
    let credentials = app.request(Method::POST, "/org/connection/credentials").bearer_auth(&key).send().await;
    forbidden(credentials.expect("request"), None).await;
    assert_eq!(app.get("Acme", None).await.status(), 200, "the organization is untouched");
    assert_eq!(app.update(&token, json!({"organization_name": "Acme"})).await.status(), 200, "and the admin still in");

    // A key without org:read gets the public view.
    let audit_only = key_ok(&app, &token, &["audit:read"]).await;
    let public: Value = app.get("Acme", audit_only["key"].as_str()).await.json().await.expect("json");
    assert!(public.get("admin_email").is_none(), "{public}");
    forbidden(connection(&app, audit_only["key"].as_str().expect("key")).await, Some("org:read")).await;
}

pub async fn a_write_key_renames_and_the_audit_trail_names_it(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let created = key_ok(&app, &token, &["org:write"]).await;
    let key = created["key"].as_str().expect("key");
    assert_eq!(app.update(key, json!({"organization_name": "Acme Two"})).await.status(), 200);
    assert_eq!(app.get("Acme Two", None).await.status(), 200);
    forbidden(app.audit(key, &[]).await, Some("audit:read")).await;

    let events = app.audit_events(&token).await;
    let renamed = events.iter().find(|e| e["action"] == "organization.renamed").expect("the rename is audited");
    assert_eq!(renamed["api_key_id"], created["id"], "{renamed}");
    assert!(renamed["actor_id"].is_string(), "for the admin: {renamed}");
    let made = events.iter().find(|e| e["action"] == "api_key.created").expect("the creation is audited");
    assert!(made["api_key_id"].is_null(), "the admin's session created it: {made}");
}

pub async fn revoked_expired_and_wrong_keys_get_the_401_of_a_bad_token(backend: Backend) {
    let clock = Arc::new(ManualClock::starting_at(chrono::Utc::now()));
    let app = TestApp::spawn_with_clock(backend.settings(), Arc::clone(&clock) as Arc<dyn Clock>).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;

    let revoked = key_ok(&app, &token, &["org:read"]).await;
    let revoked_key = revoked["key"].as_str().expect("key");
    assert_eq!(connection(&app, revoked_key).await.status(), 200);
    assert_eq!(revoke(&app, &token, revoked["id"].as_str().expect("id")).await.status(), 204);
    assert_eq!(revoke(&app, &token, revoked["id"].as_str().expect("id")).await.status(), 404);

    let expires_at = (clock.now() + chrono::Duration::seconds(60)).to_rfc3339();
    let body = json!({"name": "short-lived", "scopes": ["org:read"], "expires_at": expires_at});
    let expiring: Value = create_key(&app, &token, body).await.json().await.expect("json");
    let expiring_key = expiring["key"].as_str().expect("key");
    assert_eq!(connection(&app, expiring_key).await.status(), 200);
    clock.advance(Duration::from_secs(60));

    let unknown = domain::ApiKeySecret::from_entropy([7; 32]);
    let unknown = secrecy::ExposeSecret::expose_secret(unknown.expose()).to_owned();
    let mut malformed = expiring_key.to_owned();
    malformed.pop();
    malformed.push(if expiring_key.ends_with('a') { 'b' } else { 'a' });
    for refused in [revoked_key, expiring_key, unknown.as_str(), malformed.as_str()] {
        let response = connection(&app, refused).await;
        assert_eq!(response.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
        let body = problem(response, 401).await;
        assert_eq!(body["detail"], "the token is invalid or expired", "{refused}: {body}");
        // On the public route, a refused key makes the caller anonymous.
        let public: Value = app.get("Acme", Some(refused)).await.json().await.expect("json");
        assert!(public.get("admin_email").is_none(), "{public}");
    }
    let listed: Value = list(&app, &token).await.json().await.expect("json");
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1), "the expired key is still listed: {listed}");
}

pub async fn refused_keys_count_like_failed_logins(backend: Backend) {
    let app =
        backend.spawn_with(|s| s.http.rate_limits = RateLimits { login_per_minute: 3, ..RateLimits::off() }).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let good = key_ok(&app, &token, &["org:read"]).await;
    let unknown = domain::ApiKeySecret::from_entropy([8; 32]);
    let unknown = secrecy::ExposeSecret::expose_secret(unknown.expose()).to_owned();
    // The login took one of the three; two refused keys take the rest.
    for _ in 0..2 {
        problem(connection(&app, &unknown).await, 401).await;
    }
    let limited = connection(&app, &unknown).await;
    assert!(limited.headers().contains_key("retry-after"));
    problem(limited, 429).await;
    assert_eq!(connection(&app, good["key"].as_str().expect("key")).await.status(), 200, "a good key is not limited");
    problem(app.login("a@acme.test", PASSWORD).await, 429).await;
}

pub async fn invalid_requests_are_4xx_naming_the_field(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    app.create_ok("Beta", "b@beta.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let other = app.token("b@beta.test", PASSWORD).await;
    for (body, field, rule) in [
        (json!({"scopes": ["org:read"]}), "name", "is required"),
        (json!({"name": " ", "scopes": ["org:read"]}), "name", "must not be empty"),
        (json!({"name": "x".repeat(101), "scopes": ["org:read"]}), "name", "at most 100"),
        (json!({"name": "k"}), "scopes", "is required"),
        (json!({"name": "k", "scopes": []}), "scopes", "at least one scope"),
        (json!({"name": "k", "scopes": ["org:delete"]}), "scopes", "unknown scope \"org:delete\""),
        (json!({"name": "k", "scopes": ["org:read"], "expires_at": "tomorrow"}), "expires_at", "RFC 3339"),
        (json!({"name": "k", "scopes": ["org:read"], "expires_at": "2020-01-01T00:00:00Z"}), "expires_at", "future"),
    ] {
        let body = problem(create_key(&app, &token, body.clone()).await, 422).await;
        assert_eq!(error_fields(&body), [field], "{body}");
        assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains(rule)), "{body}");
    }
    problem(create_key(&app, &token, json!({"name": "k", "scopes": "org:read"})).await, 422).await;
    problem(create_key(&app, &token, json!({"name": "k", "scopes": ["org:read"], "extra": 1})).await, 422).await;
    let body = problem(revoke(&app, &token, "not-a-uuid").await, 422).await;
    assert_eq!(error_fields(&body), ["path.id"], "{body}");
    problem(revoke(&app, &token, &uuid::Uuid::new_v4().to_string()).await, 404).await;
    let theirs = key_ok(&app, &other, &["org:read"]).await;
    problem(revoke(&app, &token, theirs["id"].as_str().expect("id")).await, 404).await;
    assert_eq!(connection(&app, theirs["key"].as_str().expect("key")).await.status(), 200, "still theirs");
    problem(app.request(Method::GET, "/org/api-keys").send().await.expect("request"), 401).await;
}

pub async fn a_deleted_organizations_keys_stop_working(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let key = key_ok(&app, &token, &["org:read"]).await;
    let key = key["key"].as_str().expect("key");
    assert_eq!(connection(&app, key).await.status(), 200);
    assert_eq!(app.delete(&token, "Acme").await.status(), 204);
    problem(connection(&app, key).await, 401).await;
    // A new organization of the same name does not inherit them.
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    problem(connection(&app, key).await, 401).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let listed: Value = list(&app, &token).await.json().await.expect("json");
    assert_eq!(listed["keys"], json!([]));
}
