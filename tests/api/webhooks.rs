//! Webhooks: endpoints registered by the admin's session, with a signing secret shown once;
//! the organization's events delivered to them at least once, in order, signed as the
//! Standard Webhooks specification says, retried after failures, and logged.

use std::time::Duration;

use api_tests::receiver::{Received, Receiver};
use api_tests::{Backend, TestApp, error_fields, problem};
use chrono::Utc;
use domain::WebhookSecret;
use reqwest::{Method, Response};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse";

/// How long a test waits for deliveries that a fast retry schedule makes in well under a
/// second; generous, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// An application whose webhooks may go to the loopback receiver, retried after 20 ms.
async fn spawn(backend: Backend) -> TestApp {
    backend
        .spawn_with(|settings| {
            settings.webhooks.allow_private = true;
            settings.webhooks.retry_base = Duration::from_millis(20);
            settings.webhooks.poll = Duration::from_millis(20);
        })
        .await
}

async fn register(app: &TestApp, token: &str, body: Value) -> Response {
    app.request(Method::POST, "/org/webhooks").bearer_auth(token).json(&body).send().await.expect("request")
}

async fn register_ok(app: &TestApp, token: &str, url: &str, events: &[&str]) -> Value {
    let response = register(app, token, json!({"url": url, "events": events})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("json")
}

async fn deliveries(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let response = app
        .request(Method::GET, &format!("/org/webhooks/{id}/deliveries"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["deliveries"].as_array().expect("deliveries").clone()
}

/// Whether the request carries a valid signature by `secret`.
fn signed_by(request: &Received, secret: &str) -> bool {
    let secret = WebhookSecret::parse(secret).expect("a signing secret");
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("a timestamp");
    secret.verify(
        request.header("webhook-id"),
        timestamp,
        request.body.as_bytes(),
        request.header("webhook-signature"),
        Utc::now(),
    )
}

/// The event types accepted, each once (a retry after a lost answer may repeat one).
fn accepted_types(received: &[Received]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .filter(|r| r.status < 300 && seen.insert(r.header("webhook-id").to_owned()))
        .map(Received::event_type)
        .collect()
}

pub async fn events_arrive_signed_in_order_despite_failures(backend: Backend) {
    let app = spawn(backend).await;
    let receiver = Receiver::start(2).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let created = register_ok(&app, &token, &receiver.url, &["*"]).await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let id = created["id"].as_str().expect("id").to_owned();

    // The rename is refused twice by the receiver, then accepted; the later changes wait
    // for it, so they arrive after it.
    assert_eq!(app.update(&token, json!({"organization_name": "Acme Two"})).await.status(), 200);
    let both = json!({"email": "new@acme.test", "password": "battery staple"});
    assert_eq!(app.update(&token, both).await.status(), 200);
    let received = receiver.wait_for(PATIENCE, |r| accepted_types(r).len() == 3).await;
    assert_eq!(accepted_types(&received), ["organization.renamed", "admin.email_changed", "admin.password_changed"]);
    assert_eq!(received[0].status, 500);
    assert_eq!(received[1].status, 500);
    let first = received[0].header("webhook-id");
    assert!(received[..3].iter().all(|r| r.header("webhook-id") == first), "retries carry the same webhook-id");
    assert!(received.iter().all(|r| signed_by(r, &secret)), "every delivery is signed with the secret");
    let renamed: Value = serde_json::from_str(&received[2].body).expect("json");
    assert_eq!(renamed["data"]["name"], "Acme Two");
    assert_eq!(renamed["data"]["previous_name"], "Acme");
    assert!(renamed["timestamp"].is_string(), "{renamed}");

    // The log shows the attempts, newest first.
    let log = deliveries(&app, &token, &id).await;
    let of_rename: Vec<&Value> = log.iter().filter(|d| d["event_id"] == first).collect();
    assert_eq!(of_rename.len(), 3, "{log:?}");
    assert_eq!(of_rename[0]["outcome"], "delivered");
    assert_eq!(of_rename[0]["attempt"], 3);
    assert_eq!(of_rename[2]["status"], 500);
    assert_eq!(of_rename[2]["outcome"], "retrying");
    assert!(of_rename[2]["next_attempt_at"].is_string(), "{log:?}");

    // The attempts are on /metrics by result.
    let metrics = app.request(Method::GET, "/metrics").send().await.expect("request").text().await.expect("text");
    assert!(metrics.contains("orgsvc_webhook_attempts_total{result=\"5xx\"} 2"), "{metrics}");
    assert!(metrics.contains("orgsvc_webhook_attempts_total{result=\"2xx\"} 3"), "{metrics}");

    // A rotated secret signs the next delivery; the old one no longer does.
    let rotated = app
        .request(Method::POST, &format!("/org/webhooks/{id}/rotate-secret"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.expect("json");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(app.delete(&token, "Acme Two").await.status(), 204);
    let received = receiver.wait_for(PATIENCE, |r| accepted_types(r).len() == 4).await;
    let deleted = received.last().expect("the delete's event");
    assert_eq!(deleted.event_type(), "organization.deleted");
    assert!(signed_by(deleted, &new_secret) && !signed_by(deleted, &secret));
}

pub async fn endpoints_receive_only_their_event_types(backend: Backend) {
    let app = spawn(backend).await;
    let (all, renames) = (Receiver::start(0).await, Receiver::start(0).await);
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    register_ok(&app, &token, &all.url, &["*"]).await;
    register_ok(&app, &token, &renames.url, &["organization.renamed"]).await;
    assert_eq!(app.update(&token, json!({"password": "battery staple"})).await.status(), 200);
    assert_eq!(app.update(&token, json!({"organization_name": "Acme Two"})).await.status(), 200);
    all.wait_for(PATIENCE, |r| accepted_types(r).len() == 2).await;
    let only = renames.wait_for(PATIENCE, |r| !r.is_empty()).await;
    assert_eq!(accepted_types(&all.received()), ["admin.password_changed", "organization.renamed"]);
    assert_eq!(accepted_types(&only), ["organization.renamed"]);
}

pub async fn endpoints_are_the_sessions_to_manage(backend: Backend) {
    // The default policy: no loopback or private addresses.
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    for (body, field) in [
        (json!({"url": "https://127.0.0.1/hook", "events": ["*"]}), "url"),
        (json!({"url": "https://169.254.169.254/latest", "events": ["*"]}), "url"),
        (json!({"url": "https://hooks.localhost/", "events": ["*"]}), "url"),
        (json!({"url": "ftp://hooks.example.com/", "events": ["*"]}), "url"),
        (json!({"url": "https://user:pw@hooks.example.com/", "events": ["*"]}), "url"),
        (json!({"url": "https://hooks.example.com/", "events": ["organization.exploded"]}), "events"),
        (json!({"url": "https://hooks.example.com/", "events": []}), "events"),
        (json!({"events": ["*"]}), "url"),
        (json!({"url": "https://hooks.example.com/"}), "events"),
    ] {
        let body = problem(register(&app, &token, body.clone()).await, 422).await;
        assert_eq!(error_fields(&body), [field], "{body}");
    }

    // Registered, listed without the secret, removed.
    let created = register_ok(&app, &token, "https://hooks.example.com/orgsvc", &["organization.renamed"]).await;
    let secret = created["secret"].as_str().expect("secret");
    let listed = app.request(Method::GET, "/org/webhooks").bearer_auth(&token).send().await.expect("request");
    assert_eq!(listed.status(), 200);
    let text = listed.text().await.expect("body");
    assert!(!text.contains(secret), "the secret is shown once only");
    let listed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(listed["webhooks"][0]["id"], created["id"]);
    assert_eq!(listed["webhooks"][0]["events"], json!(["organization.renamed"]));
    let id = created["id"].as_str().expect("id");
    let remove = |id: String| {
        let request = app.request(Method::DELETE, &format!("/org/webhooks/{id}")).bearer_auth(&token);
        async move { request.send().await.expect("request") }
    };
    assert_eq!(remove(id.to_owned()).await.status(), 204);
    problem(remove(id.to_owned()).await, 404).await;
    let body = problem(remove("not-a-uuid".to_owned()).await, 422).await;
    assert_eq!(error_fields(&body), ["path.id"]);

    // Another organization's endpoint is not found.
    app.create_ok("Globex", "g@globex.test", PASSWORD).await;
    let other = app.token("g@globex.test", PASSWORD).await;
    let theirs = register_ok(&app, &other, "https://hooks.example.com/globex", &["*"]).await;
    let theirs = theirs["id"].as_str().expect("id").to_owned();
    problem(remove(theirs.clone()).await, 404).await;
    let log = app.request(Method::GET, &format!("/org/webhooks/{theirs}/deliveries")).bearer_auth(&token);
    problem(log.send().await.expect("request"), 404).await;

    // At most ten per organization.
    for n in 0..10 {
        register_ok(&app, &token, &format!("https://hooks.example.com/{n}"), &["*"]).await;
    }
    let body =
        problem(register(&app, &token, json!({"url": "https://hooks.example.com/x", "events": ["*"]})).await, 409)
            .await;
    assert_eq!(body["type"], "urn:orgsvc:problem:too-many-webhooks", "{body}");

    // An API key, whatever its scopes, cannot manage webhooks.
    let key = app
        .request(Method::POST, "/org/api-keys")
        .bearer_auth(&token)
        .json(&json!({"name": "all scopes", "scopes": ["org:read", "org:write", "audit:read"]}))
        .send()
        .await
        .expect("request");
    let key: Value = key.json().await.expect("json");
    let key = key["key"].as_str().expect("key");
    problem(register(&app, key, json!({"url": "https://hooks.example.com/k", "events": ["*"]})).await, 403).await;
    let listed = app.request(Method::GET, "/org/webhooks").bearer_auth(key).send().await.expect("request");
    problem(listed, 403).await;
}

pub async fn keys_and_sessions_publish_their_events(backend: Backend) {
    let app = spawn(backend).await;
    let receiver = Receiver::start(0).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = app.token("a@acme.test", PASSWORD).await;
    let other = app.token("a@acme.test", PASSWORD).await;
    register_ok(&app, &token, &receiver.url, &["*"]).await;
    let key = app
        .request(Method::POST, "/org/api-keys")
        .bearer_auth(&token)
        .json(&json!({"name": "billing", "scopes": ["org:read"]}))
        .send()
        .await
        .expect("request");
    let key: Value = key.json().await.expect("json");
    let key_id = key["id"].as_str().expect("id").to_owned();
    let revoked = app
        .request(Method::DELETE, &format!("/org/api-keys/{key_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 204);
    // A new password ends the other session (before the change applies, so its event comes
    // first); logging out ends this one.
    assert_eq!(app.update(&token, json!({"password": "battery staple"})).await.status(), 200);
    assert_eq!(app.logout(&token).await.status(), 204);
    problem(app.logout(&other).await, 401).await;

    let received = receiver.wait_for(PATIENCE, |r| accepted_types(r).len() == 5).await;
    assert_eq!(
        accepted_types(&received),
        ["api_key.created", "api_key.revoked", "session.revoked", "admin.password_changed", "session.revoked"]
    );
    let data = |i: usize| serde_json::from_str::<Value>(&received[i].body).expect("json")["data"].clone();
    assert_eq!(data(0)["api_key_id"], key_id);
    assert_eq!(data(1)["api_key_id"], key_id);
    let (first, second) = (data(2), data(4));
    assert_ne!(first["session_id"], second["session_id"], "one event per session");
}
