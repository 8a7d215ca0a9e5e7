//! Abuse protection: account lockout, rate limits, the hashing bound, CORS and caching.

use api_tests::{Backend, problem};
use http_adapter::RateLimits;
use serde_json::Value;

const PASSWORD: &str = "correct horse";

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds")
}

/// Fifty parallel wrong passwords: five are checked (401, each audited as a failed login),
/// the other forty-five are refused unchecked (429), and so is the right password now.
pub async fn parallel_wrong_passwords_get_five_checks_then_429(backend: Backend) {
    let app = std::sync::Arc::new(backend.spawn_with(|_| {}).await);
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let owner = app.tokens("a@acme.test", PASSWORD).await;
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(
                async move { app.login("a@acme.test", &format!("wrong password {i}")).await.status().as_u16() },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.expect("join"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "password checks: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 45, "{statuses:?}");
    let locked = app.login("a@acme.test", PASSWORD).await;
    let wait = retry_after(&locked);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body = problem(locked, 429).await;
    assert_eq!(body["type"], "urn:orgsvc:problem:account-locked");
    let events = app.audit_events(&owner.access).await;
    let count = |action: &str, outcome: &str| {
        events.iter().filter(|e| e["action"] == action && e["outcome"] == outcome).count()
    };
    assert_eq!(count("login.failed", "failure"), 5, "each check is a failed login");
    assert_eq!(count("login.locked", "failure"), 1, "the fifth failure locked the account");
    assert_eq!(count("login.locked", "denied"), 46);
}

pub async fn a_success_resets_the_failure_count(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    for _ in 0..2 {
        for _ in 0..4 {
            problem(app.login("a@acme.test", "wrong password").await, 401).await;
        }
        app.tokens("a@acme.test", PASSWORD).await;
    }
    // Another account is never affected.
    app.create_ok("Globex", "g@globex.test", PASSWORD).await;
    for _ in 0..5 {
        problem(app.login("a@acme.test", "wrong password").await, 401).await;
    }
    problem(app.login("a@acme.test", PASSWORD).await, 429).await;
    app.tokens("g@globex.test", PASSWORD).await;
}

pub async fn rate_limits_answer_429_with_retry_after(backend: Backend) {
    let app = backend
        .spawn_with(|s| {
            s.http.rate_limits = RateLimits { login_per_minute: 3, create_per_minute: 2, refresh_per_minute: 2 }
        })
        .await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    app.create_ok("Globex", "g@globex.test", PASSWORD).await;
    let limited = app.create("Initech", "i@initech.test", PASSWORD).await;
    assert!(retry_after(&limited) >= 1);
    assert_eq!(problem(limited, 429).await["type"], "urn:orgsvc:problem:rate-limited");

    let tokens = app.tokens("a@acme.test", PASSWORD).await;
    problem(app.login("nobody@acme.test", PASSWORD).await, 401).await;
    problem(app.login("a@acme.test", "wrong password").await, 401).await;
    let limited = app.login("a@acme.test", PASSWORD).await;
    let wait = retry_after(&limited);
    assert!((1..=20).contains(&wait), "one of three per minute comes back within 20 s, got {wait}");
    problem(limited, 429).await;

    let refreshed = api_tests::tokens_of(app.refresh(&tokens.refresh).await).await;
    problem(app.refresh("unknown").await, 401).await;
    problem(app.refresh(&refreshed.refresh).await, 429).await;
    // Reads are not limited.
    assert_eq!(app.get("Acme", None).await.status(), 200);
}

pub async fn forwarded_for_counts_only_behind_trusted_proxies(backend: Backend) {
    let limits = RateLimits { login_per_minute: 1, ..RateLimits::off() };
    let direct = backend.spawn_with(|s| s.http.rate_limits = limits).await;
    let behind_proxy = backend
        .spawn_with(|s| {
            s.http.rate_limits = limits;
            s.http.trusted_proxies = vec!["127.0.0.1".parse().expect("network")];
        })
        .await;
    let login = |app: &api_tests::TestApp, client: &str| {
        app.request(reqwest::Method::POST, "/admin/login")
            .header("x-forwarded-for", client.to_owned())
            .json(&serde_json::json!({"email": "a@acme.test", "password": PASSWORD}))
            .send()
    };
    // Untrusted peer: the header is ignored, so both requests count for 127.0.0.1.
    assert_eq!(login(&direct, "198.51.100.1").await.expect("request").status(), 401);
    assert_eq!(login(&direct, "198.51.100.2").await.expect("request").status(), 429);
    // Trusted proxy: each forwarded client has its own bucket.
    assert_eq!(login(&behind_proxy, "198.51.100.1").await.expect("request").status(), 401);
    assert_eq!(login(&behind_proxy, "198.51.100.2").await.expect("request").status(), 401);
    assert_eq!(login(&behind_proxy, "198.51.100.1").await.expect("request").status(), 429);
}

/// With one hash at a time and no queue, a burst of creates gets 503 with `Retry-After`
/// for whatever cannot be hashed now, and never a 500 or a hang.
pub async fn hashing_beyond_its_bound_is_503_with_retry_after(backend: Backend) {
    let app = std::sync::Arc::new(
        backend
            .spawn_with(|s| {
                s.hash_concurrency = 1;
                s.hash_queue = 0;
                s.argon2 = orgsvc::settings::Argon2Settings::default();
            })
            .await,
    );
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let response = app.create(&format!("Org {i}"), &format!("a{i}@org.test"), PASSWORD).await;
                let retry = response.headers().get("retry-after").is_some();
                (response.status().as_u16(), retry)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.expect("join"));
    }
    assert!(outcomes.iter().all(|(s, _)| *s == 201 || *s == 503), "{outcomes:?}");
    assert!(outcomes.iter().any(|(s, _)| *s == 201), "{outcomes:?}");
    assert!(outcomes.iter().any(|(s, _)| *s == 503), "{outcomes:?}");
    assert!(outcomes.iter().filter(|(s, _)| *s == 503).all(|(_, retry)| *retry));
}

pub async fn cors_is_off_unless_origins_are_allowed(backend: Backend) {
    let preflight = |app: &api_tests::TestApp, origin: &str| {
        app.request(reqwest::Method::OPTIONS, "/org/get")
            .header("origin", origin.to_owned())
            .header("access-control-request-method", "GET")
            .send()
    };
    let closed = backend.spawn_with(|_| {}).await;
    let response = preflight(&closed, "https://app.example.com").await.expect("request");
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let open = backend.spawn_with(|s| s.http.cors_allowed_origins = vec!["https://app.example.com".to_owned()]).await;
    let response = preflight(&open, "https://app.example.com").await.expect("request");
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example.com");
    let response = preflight(&open, "https://evil.example.com").await.expect("request");
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

pub async fn responses_are_never_cached(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    let created = app.create("Acme", "a@acme.test", PASSWORD).await;
    assert_eq!(created.headers()["cache-control"], "no-store");
    let tokens = app.tokens("a@acme.test", PASSWORD).await;
    for response in [
        app.get("Acme", Some(&tokens.access)).await,
        app.audit(&tokens.access, &[]).await,
        app.get("Nobody", None).await,
    ] {
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    }
    let body: Value = app.get("Acme", None).await.json().await.expect("json");
    assert_eq!(body["organization_name"], "Acme");
}

/// Clients that send their headers and then stall the body: each gets 408 once the body
/// timeout has passed and its connection is closed, while other clients are served.
pub async fn stalled_bodies_get_408_and_lose_the_connection(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const STALLED: usize = 64;
    let timeout = std::time::Duration::from_millis(1500);
    let app = backend.spawn_with(|s| s.http.body_timeout = timeout).await;
    let authority = app.address.trim_start_matches("http://").to_owned();
    let started = std::time::Instant::now();
    let stalled: Vec<_> = (0..STALLED)
        .map(|_| {
            let authority = authority.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&authority).await.expect("connect");
                let head = format!(
                    "POST /org/create HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
                     Content-Length: 1000\r\n\r\n{{\"organization_name\": "
                );
                stream.write_all(head.as_bytes()).await.expect("write");
                // Read until the server closes: the answer, then the end of the stream.
                let mut answer = Vec::new();
                stream.read_to_end(&mut answer).await.expect("read");
                (String::from_utf8_lossy(&answer).into_owned(), std::time::Instant::now())
            })
        })
        .collect();
    // Meanwhile the service answers everyone else.
    tokio::time::sleep(timeout / 3).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    for connection in stalled {
        let (answer, closed_at) = tokio::time::timeout(timeout * 4, connection)
            .await
            .expect("the server closes a stalled connection")
            .expect("join");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(closed_at - started >= timeout, "closed before the timeout");
    }
    problem(app.get("Nobody", None).await, 404).await;
}

/// Sixteen parallel logins with the right password are all answered 200: a login waits
/// for a slot held by other checks instead of being told the account is locked.
pub async fn parallel_right_passwords_are_never_locked_out(backend: Backend) {
    let app = std::sync::Arc::new(backend.spawn_with(|_| {}).await);
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    // Some failures first, so fewer slots are free when the burst comes.
    for _ in 0..3 {
        problem(app.login("a@acme.test", "wrong password").await, 401).await;
    }
    let logins: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.login("a@acme.test", PASSWORD).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in logins {
        statuses.push(login.await.expect("join"));
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// An address nobody has goes through the same sequence of answers as an admin's: five
/// 401s, then 429 "locked" with `Retry-After`, so the lockout does not reveal accounts.
pub async fn unknown_emails_get_the_same_lockout_answers(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let mut sequences = Vec::new();
    for email in ["a@acme.test", "nobody@acme.test"] {
        let mut sequence = Vec::new();
        for _ in 0..7 {
            let response = app.login(email, "wrong password").await;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body = problem(response, status).await;
            sequence.push((status, retry_after, body["type"].clone(), body["title"].clone(), body["detail"].clone()));
        }
        sequences.push(sequence);
    }
    let statuses: Vec<u16> = sequences[0].iter().map(|s| s.0).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    assert_eq!(sequences[0], sequences[1], "an admin's address and an unknown one are answered alike");
}
