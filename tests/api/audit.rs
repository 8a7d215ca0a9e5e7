//! `GET /org/audit`: the security events of the caller's organization.

use api_tests::{Backend, error_fields, problem};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse";

fn actions(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["action"].as_str().expect("action").to_owned()).collect()
}

pub async fn every_action_is_recorded_with_its_context(backend: Backend) {
    let app = backend.spawn_with(|s| s.security.refresh_grace = std::time::Duration::ZERO).await;
    let created = app
        .request(reqwest::Method::POST, "/org/create")
        .header("x-request-id", "create-req-1")
        .json(&json!({"organization_name": "Acme", "email": "a@acme.test", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.headers()["x-request-id"], "create-req-1");
    let created: Value = created.json().await.expect("json");
    problem(app.login("a@acme.test", "wrong password").await, 401).await;
    let first = app.tokens("a@acme.test", PASSWORD).await;
    assert_eq!(app.update(&first.access, json!({"organization_name": "Acme Two"})).await.status(), 200);
    assert_eq!(app.update(&first.access, json!({"email": "b@acme.test"})).await.status(), 200);
    assert_eq!(app.update(&first.access, json!({"password": "another password"})).await.status(), 200);
    let second = app.tokens("b@acme.test", "another password").await;
    let rotated = api_tests::tokens_of(app.refresh(&second.refresh).await).await;
    problem(app.refresh(&second.refresh).await, 401).await;
    assert_eq!(app.logout(&first.access).await.status(), 204);
    let reader = app.tokens("b@acme.test", "another password").await;
    let _ = rotated;

    let events = app.audit_events(&reader.access).await;
    assert_eq!(
        actions(&events),
        [
            "login.succeeded",
            "session.logged_out",
            "session.refresh_reused",
            "login.succeeded",
            "admin.password_changed",
            "admin.email_changed",
            "organization.renamed",
            "login.succeeded",
            "login.failed",
            "organization.created",
        ]
    );
    let org_id = &created["organization_id"];
    let admin_id = &created["admin"]["id"];
    for event in &events {
        assert_eq!(&event["organization_id"], org_id, "{event}");
        assert_eq!(&event["actor_id"], admin_id, "{event}");
        assert_eq!(event["ip"], "127.0.0.1", "{event}");
        assert!(event["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{event}");
        assert!(event["id"].as_str().is_some() && event["at"].as_str().is_some(), "{event}");
        let text = event.to_string();
        for secret in [PASSWORD, "another password", &first.refresh, &first.access, "argon2"] {
            assert!(!text.contains(secret), "an event holds a secret: {text}");
        }
    }
    let outcome = |action: &str| events.iter().find(|e| e["action"] == action).map(|e| e["outcome"].clone());
    assert_eq!(outcome("login.failed"), Some(json!("failure")));
    assert_eq!(outcome("session.refresh_reused"), Some(json!("failure")));
    assert_eq!(outcome("organization.created"), Some(json!("success")));
    assert_eq!(events.last().expect("created")["request_id"], "create-req-1");

    // Deleting records the deletion, and from then on nobody can read the events.
    assert_eq!(app.delete(&reader.access, "Acme Two").await.status(), 204);
    problem(app.audit(&reader.access, &[]).await, 401).await;
    app.create_ok("Acme Two", "c@acme.test", PASSWORD).await;
    let newcomer = app.tokens("c@acme.test", PASSWORD).await;
    assert_eq!(actions(&app.audit_events(&newcomer.access).await), ["login.succeeded", "organization.created"]);
}

pub async fn pages_follow_the_cursor_newest_first(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    for _ in 0..7 {
        let tokens = app.tokens("a@acme.test", PASSWORD).await;
        assert_eq!(app.logout(&tokens.access).await.status(), 204);
    }
    let reader = app.tokens("a@acme.test", PASSWORD).await;
    let all = app.audit_events(&reader.access).await;
    assert_eq!(all.len(), 16);
    all.iter().for_each(|e| api_tests::assert_api_time(&e["at"]));
    let times: Vec<&str> = all.iter().map(|e| e["at"].as_str().expect("at")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");

    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "3".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = app.audit(&reader.access, &query).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.expect("json");
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 3);
        paged.extend(events.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, all, "pages cover every event once, in order");
}

pub async fn the_action_filter_and_bad_parameters(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    problem(app.login("a@acme.test", "wrong password").await, 401).await;
    let reader = app.tokens("a@acme.test", PASSWORD).await;
    let response = app.audit(&reader.access, &[("action", "login.failed")]).await;
    let page: Value = response.json().await.expect("json");
    assert_eq!(actions(page["events"].as_array().expect("events")), ["login.failed"]);
    assert!(page["next_cursor"].is_null());
    for (query, field) in [
        (("limit", "0"), "limit"),
        (("limit", "101"), "limit"),
        (("limit", "ten"), "limit"),
        (("cursor", "not-a-cursor"), "cursor"),
        (("action", "login.maybe"), "action"),
    ] {
        let body = problem(app.audit(&reader.access, &[query]).await, 422).await;
        assert_eq!(error_fields(&body), [field], "{query:?}");
    }
    problem(app.audit("not a token", &[]).await, 401).await;
}

pub async fn events_are_the_organizations_own_and_survive_a_rename(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    app.create_ok("Globex", "g@globex.test", PASSWORD).await;
    problem(app.login("g@globex.test", "wrong password").await, 401).await;
    let acme = app.tokens("a@acme.test", PASSWORD).await;
    let before = app.audit_events(&acme.access).await;
    assert_eq!(actions(&before), ["login.succeeded", "organization.created"]);
    assert_eq!(app.update(&acme.access, json!({"organization_name": "Acme Renamed"})).await.status(), 200);
    let after = app.audit_events(&acme.access).await;
    assert_eq!(actions(&after), ["organization.renamed", "login.succeeded", "organization.created"]);
    assert_eq!(after[1..], before[..]);
    let globex = app.tokens("g@globex.test", PASSWORD).await;
    assert_eq!(
        actions(&app.audit_events(&globex.access).await),
        ["login.succeeded", "login.failed", "organization.created"]
    );
}
