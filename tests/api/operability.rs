//! Request ids and metrics, as a client and a Prometheus scraper see them.

use api_tests::{Backend, problem};

const PASSWORD: &str = "correct horse";

pub async fn request_ids_are_echoed_or_generated_and_named_in_problems(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    let given = app
        .request(reqwest::Method::GET, "/org/get?organization_name=Nobody")
        .header("x-request-id", "client-chosen.id:1")
        .send()
        .await
        .expect("request");
    assert_eq!(given.headers()["x-request-id"], "client-chosen.id:1");
    assert_eq!(problem(given, 404).await["request_id"], "client-chosen.id:1");
    for bad in ["has spaces", &"x".repeat(129)] {
        let response = app
            .request(reqwest::Method::GET, "/health/live")
            .header("x-request-id", bad)
            .send()
            .await
            .expect("request");
        let id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a generated id replaces {bad:?}");
    }
    let generated = app.request(reqwest::Method::GET, "/nowhere").send().await.expect("request");
    let id = generated.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(problem(generated, 404).await["request_id"], id);
}

fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())
            .flatten()
    })
}

pub async fn metrics_expose_requests_hashing_store_and_security_events(backend: Backend) {
    let app = backend.spawn_with(|_| {}).await;
    app.create_ok("Acme Secret Project", "a@acme.test", PASSWORD).await;
    app.create_ok("Globex", "g@globex.test", PASSWORD).await;
    for _ in 0..5 {
        problem(app.login("a@acme.test", "wrong password").await, 401).await;
    }
    problem(app.login("a@acme.test", PASSWORD).await, 429).await;
    assert_eq!(app.get("Globex", None).await.status(), 200);
    problem(app.get("Nobody", None).await, 404).await;
    let response = app.request(reqwest::Method::GET, "/metrics").send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
    let text = response.text().await.expect("text");

    let requests = |route, method, status| {
        sample(&text, "orgsvc_http_requests_total", &[("route", route), ("method", method), ("status", status)])
    };
    assert_eq!(requests("/org/create", "POST", "2xx"), Some(2.0));
    assert_eq!(requests("/org/get", "GET", "2xx"), Some(1.0));
    assert_eq!(requests("/org/get", "GET", "4xx"), Some(1.0));
    assert_eq!(requests("/admin/login", "POST", "4xx"), Some(6.0));
    assert!(sample(&text, "orgsvc_http_request_duration_seconds_count", &[("route", "/org/create")]) >= Some(2.0));
    assert!(sample(&text, "orgsvc_http_requests_in_flight", &[]).is_some());
    assert_eq!(sample(&text, "orgsvc_organizations", &[]), Some(2.0));
    assert!(sample(&text, "orgsvc_password_hash_queue_depth", &[]).is_some());
    assert!(sample(&text, "orgsvc_password_hash_wait_seconds_count", &[]) >= Some(7.0));
    assert!(
        sample(&text, "orgsvc_store_operation_duration_seconds_count", &[("operation", "organization.create")])
            >= Some(2.0)
    );
    let events =
        |action, outcome| sample(&text, "orgsvc_security_events_total", &[("action", action), ("outcome", outcome)]);
    assert_eq!(events("login.failed", "failure"), Some(5.0));
    assert_eq!(events("login.locked", "failure"), Some(1.0));
    assert_eq!(events("login.locked", "denied"), Some(1.0));
    // Label values are route templates, never what a client typed.
    assert!(!text.contains("Secret") && !text.contains("Nobody") && !text.contains("acme.test"), "{text}");
    // On MongoDB with the organization cache, its lookups and its change stream.
    let cached = backend == Backend::MongoDb && cache_on();
    assert_eq!(sample(&text, "orgsvc_cache_lookups_total", &[("result", "miss")]).is_some(), cached, "{text}");
    assert_eq!(sample(&text, "orgsvc_cache_stream_up", &[]).is_some(), cached);
    // On MongoDB, each cluster's connection pool: requests were served, so connections
    // were checked out and waited for, and no checkout timed out.
    let mongo = backend == Backend::MongoDb;
    let main = [("cluster", "main")];
    let checkouts = sample(&text, "orgsvc_mongodb_pool_checkouts_total", &main);
    assert_eq!(checkouts.is_some_and(|n| n > 0.0), mongo, "{text}");
    let open = sample(&text, "orgsvc_mongodb_pool_connections", &[("cluster", "main"), ("state", "open")]);
    assert_eq!(open.is_some_and(|n| n >= 1.0), mongo, "{text}");
    let waits = sample(&text, "orgsvc_mongodb_pool_checkout_wait_seconds_count", &main);
    assert_eq!(waits.is_some_and(|n| n >= checkouts.unwrap_or(0.0)), mongo, "{text}");
    let timeouts =
        sample(&text, "orgsvc_mongodb_pool_checkout_failures_total", &[("cluster", "main"), ("reason", "timeout")]);
    assert_eq!(timeouts, mongo.then_some(0.0), "{text}");
}

/// Whether this run of the suite has the organization cache on (see `make test`).
fn cache_on() -> bool {
    api_tests::mongo_database().cache.enabled
}

pub async fn metrics_can_need_a_token_or_a_listener_of_their_own(backend: Backend) {
    const TOKEN: &str = "J9F6+gvZaD9f5I+24qp9QHMQWmE7JAQH";
    let app = backend.spawn_with(|s| s.http.metrics.token = Some(TOKEN.to_owned().into())).await;
    let metrics = |token: Option<&str>| {
        let request = app.request(reqwest::Method::GET, "/metrics");
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };
    problem(metrics(None).await.expect("request"), 401).await;
    problem(metrics(Some("J9F6+gvZaD9f5I+24qp9QHMQWmE7JAQh")).await.expect("request"), 401).await;
    problem(metrics(Some("J9F6")).await.expect("request"), 401).await;
    let response = metrics(Some(TOKEN)).await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("text").contains("orgsvc_http_requests_total"));

    // On a listener of its own, the API's listener no longer serves it.
    let app = backend.spawn_with(|s| s.metrics_addr = Some("127.0.0.1:0".parse().expect("address"))).await;
    problem(app.request(reqwest::Method::GET, "/metrics").send().await.expect("request"), 404).await;
    let address = app.metrics_address.as_deref().expect("a metrics listener");
    let response = app.client.get(format!("{address}/metrics")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("text").contains("orgsvc_http_requests_total"));
    problem(app.client.get(format!("{address}/org/get?organization_name=A")).send().await.expect("request"), 404).await;
}
