//! Sessions: refresh tokens, rotation, reuse detection, logout and revocation.

use api_tests::{Backend, jwt_payload, problem, tokens_of};
use serde_json::json;

const PASSWORD: &str = "correct horse";

pub async fn login_returns_a_refresh_token_bound_to_a_session(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let first = app.tokens("a@acme.test", PASSWORD).await;
    assert_eq!(first.refresh.len(), 64, "256 random bits, hex");
    assert!(first.refresh.bytes().all(|b| b.is_ascii_hexdigit()));
    let second = app.tokens("a@acme.test", PASSWORD).await;
    let (a, b) = (jwt_payload(&first.access), jwt_payload(&second.access));
    assert!(a["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_ne!(a["sid"], b["sid"], "each login opens its own session");
    assert_ne!(first.refresh, second.refresh);
}

pub async fn refresh_rotates_and_reuse_revokes_the_session(backend: Backend) {
    let app = backend.spawn_with(|s| s.security.refresh_grace = std::time::Duration::ZERO).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let login = app.tokens("a@acme.test", PASSWORD).await;
    let response = app.refresh(&login.refresh).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let rotated = tokens_of(response).await;
    assert_ne!(rotated.refresh, login.refresh);
    assert_eq!(jwt_payload(&rotated.access)["sid"], jwt_payload(&login.access)["sid"], "same session");
    assert_eq!(app.audit(&rotated.access, &[]).await.status(), 200);

    // The first refresh token again: reuse. The whole session ends.
    let reused = problem(app.refresh(&login.refresh).await, 401).await;
    assert!(reused["detail"].as_str().is_some_and(|d| d.contains("revoked")), "{reused}");
    problem(app.refresh(&rotated.refresh).await, 401).await;
    problem(app.audit(&rotated.access, &[]).await, 401).await;
    problem(app.audit(&login.access, &[]).await, 401).await;
    // Other sessions are untouched, and logging in again works.
    let again = app.tokens("a@acme.test", PASSWORD).await;
    assert_eq!(app.audit(&again.access, &[]).await.status(), 200);
}

pub async fn a_retry_within_the_grace_window_is_not_reuse(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let login = app.tokens("a@acme.test", PASSWORD).await;
    // The client's first refresh gets an answer it never receives...
    let lost = tokens_of(app.refresh(&login.refresh).await).await;
    // ...so it retries with the same token within the grace window.
    let retried = app.refresh(&login.refresh).await;
    assert_eq!(retried.status(), 200, "a retry within the grace window");
    let retried = tokens_of(retried).await;
    assert_eq!(app.refresh(&retried.refresh).await.status(), 200);
    // The lost answer's refresh token was never meant to be used: presenting it is reuse.
    problem(app.refresh(&lost.refresh).await, 401).await;
}

pub async fn logout_ends_access_and_refresh(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let kept = app.tokens("a@acme.test", PASSWORD).await;
    let session = app.tokens("a@acme.test", PASSWORD).await;
    assert_eq!(app.logout(&session.access).await.status(), 204);
    let refused = app.audit(&session.access, &[]).await;
    assert_eq!(refused.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
    problem(refused, 401).await;
    problem(app.refresh(&session.refresh).await, 401).await;
    problem(app.logout(&session.access).await, 401).await;
    problem(app.logout("not a token").await, 401).await;
    // Another session of the same admin lives on.
    assert_eq!(app.audit(&kept.access, &[]).await.status(), 200);
    assert_eq!(app.refresh(&kept.refresh).await.status(), 200);
}

pub async fn credential_changes_end_every_other_session(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    for (change, email) in
        [(json!({"password": "a new password"}), "a@acme.test"), (json!({"email": "new@acme.test"}), "new@acme.test")]
    {
        let password = if email == "a@acme.test" { PASSWORD } else { "a new password" };
        // Both changes are made while the admin's email is still a@acme.test.
        let current = app.tokens("a@acme.test", password).await;
        let other = app.tokens("a@acme.test", password).await;
        assert_eq!(app.update(&current.access, change).await.status(), 200);
        // The session that made the change goes on; every other one ends.
        assert_eq!(app.audit(&current.access, &[]).await.status(), 200);
        problem(app.audit(&other.access, &[]).await, 401).await;
        problem(app.refresh(&other.refresh).await, 401).await;
        assert_eq!(app.refresh(&current.refresh).await.status(), 200);
    }
    // A rename alone ends nothing.
    let current = app.tokens("new@acme.test", "a new password").await;
    let other = app.tokens("new@acme.test", "a new password").await;
    assert_eq!(app.update(&current.access, json!({"organization_name": "Acme Two"})).await.status(), 200);
    assert_eq!(app.audit(&other.access, &[]).await.status(), 200);
}

pub async fn deletion_ends_every_session(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let first = app.tokens("a@acme.test", PASSWORD).await;
    let second = app.tokens("a@acme.test", PASSWORD).await;
    assert_eq!(app.delete(&first.access, "Acme").await.status(), 204);
    for tokens in [&first, &second] {
        problem(app.audit(&tokens.access, &[]).await, 401).await;
        problem(app.refresh(&tokens.refresh).await, 401).await;
    }
    // A new organization of that name and email gets nothing of the old sessions.
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    problem(app.refresh(&second.refresh).await, 401).await;
}

pub async fn invalid_refresh_requests_are_rejected(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    problem(app.refresh(&"0".repeat(64)).await, 401).await;
    let missing = app.request(reqwest::Method::POST, "/admin/refresh").json(&json!({})).send().await.expect("request");
    assert_eq!(api_tests::error_fields(&problem(missing, 422).await), ["refresh_token"]);
    let long = problem(app.refresh(&"a".repeat(300)).await, 422).await;
    assert_eq!(api_tests::error_fields(&long), ["refresh_token"]);
}
