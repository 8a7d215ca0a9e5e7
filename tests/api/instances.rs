//! Several instances sharing one MongoDB database, as behind a load balancer: signing key
//! rotation, how soon one instance sees another's revocation, and hash upgrades.

use std::time::Duration;

use api_tests::{Backend, TestApp, jwt_payload, problem};
use orgsvc::{Application, Environment, Settings, Storage};
use secrecy::SecretString;

const PASSWORD: &str = "correct horse";
const OLD_KEY: &str = "the-old-signing-key-of-32-bytes!!";
const NEW_KEY: &str = "the-new-signing-key-of-32-bytes!!";

fn keys(list: &[(&str, &str)]) -> Vec<(String, SecretString)> {
    list.iter().map(|(kid, secret)| ((*kid).to_owned(), SecretString::from((*secret).to_owned()))).collect()
}

async fn instance(shared: &Settings, change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = shared.clone();
    change(&mut settings);
    TestApp::spawn_with(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_without_logging_anybody_out() {
    let shared = Backend::MongoDb.settings();
    let old = instance(&shared, |s| s.jwt_keys = keys(&[("old", OLD_KEY)])).await;
    old.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let before = old.tokens("a@acme.test", PASSWORD).await;

    // Step 1: the new key signs, the old one still verifies.
    let rotated = instance(&shared, |s| s.jwt_keys = keys(&[("new", NEW_KEY), ("old", OLD_KEY)])).await;
    assert_eq!(rotated.audit(&before.access, &[]).await.status(), 200, "old tokens stay valid");
    let after = rotated.tokens("a@acme.test", PASSWORD).await;
    let header = after.access.split('.').next().expect("header");
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).expect("base64"),
    )
    .expect("json");
    assert_eq!(header["kid"], "new");
    assert_eq!(header["alg"], "HS256");

    // Step 2: once the old tokens have expired, the old key is removed.
    let retired = instance(&shared, |s| s.jwt_keys = keys(&[("new", NEW_KEY)])).await;
    assert_eq!(retired.audit(&after.access, &[]).await.status(), 200);
    problem(retired.audit(&before.access, &[]).await, 401).await;
    // Refresh tokens are not signed: a session survives the removal of the key that
    // signed its access tokens.
    assert_eq!(retired.refresh(&before.refresh).await.status(), 200);
}

/// How many times each change is made on one instance and awaited on the other.
const ROUNDS: usize = 10;

/// Waits until `seen` holds, returning how long that took; the deadline, far beyond any
/// expected delay, only stops a broken run from hanging.
async fn delay_until<F, Fut>(what: &str, seen: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !seen().await {
        assert!(started.elapsed() < Duration::from_secs(30), "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_changes_are_seen_through_the_change_stream() {
    let mut shared = Backend::MongoDb.settings();
    shared.jwt_keys = keys(&[("k", OLD_KEY)]);
    // Cached entries live an hour: only the change stream can explain what b sees (in the
    // suite's run without the cache, b reads the database every time).
    shared.mongodb.cache.ttl = Duration::from_secs(3600);
    let a = instance(&shared, |_| {}).await;
    let b = instance(&shared, |_| {}).await;
    let mut delays: Vec<(&str, Duration)> = Vec::new();
    for round in 0..ROUNDS {
        let (name, email) = (format!("Acme {round}"), format!("a{round}@acme.test"));
        a.create_ok(&name, &email, PASSWORD).await;
        let tokens = a.tokens(&email, PASSWORD).await;
        // b reads the organization, its admin and the session, and caches them.
        for _ in 0..2 {
            assert_eq!(b.get(&name, Some(&tokens.access)).await.status(), 200);
        }
        // A rename on a: b answers 404 for the old name.
        let renamed = format!("Acme {round} Renamed");
        assert_eq!(a.update(&tokens.access, serde_json::json!({"organization_name": renamed})).await.status(), 200);
        delays.push((
            "rename",
            delay_until("b sees the rename", || async { b.get(&name, None).await.status() == 404 }).await,
        ));
        // A password change on a: b refuses the admin's other sessions, and logs in with the
        // new password only.
        let other = a.tokens(&email, PASSWORD).await;
        assert_eq!(b.audit(&other.access, &[]).await.status(), 200);
        let changed = a.update(&tokens.access, serde_json::json!({"password": "a new password"})).await;
        assert_eq!(changed.status(), 200);
        delays.push((
            "password change",
            delay_until("b sees the password change", || async { b.audit(&other.access, &[]).await.status() == 401 })
                .await,
        ));
        assert_eq!(b.login(&email, PASSWORD).await.status(), 401);
        // A logout on a: b refuses the session.
        assert_eq!(b.audit(&tokens.access, &[]).await.status(), 200);
        assert_eq!(a.logout(&tokens.access).await.status(), 204);
        delays.push((
            "logout",
            delay_until("b sees the logout", || async { b.audit(&tokens.access, &[]).await.status() == 401 }).await,
        ));
        // A delete on a: b answers 404, and refuses the admin's tokens.
        let last = b.tokens(&email, "a new password").await;
        assert_eq!(b.get(&renamed, Some(&last.access)).await.status(), 200);
        assert_eq!(a.delete(&last.access, &renamed).await.status(), 204);
        delays.push((
            "delete",
            delay_until("b sees the delete", || async { b.get(&renamed, None).await.status() == 404 }).await,
        ));
        problem(b.audit(&last.access, &[]).await, 401).await;
    }
    for change in ["rename", "password change", "logout", "delete"] {
        let mut seen: Vec<Duration> = delays.iter().filter(|(c, _)| *c == change).map(|(_, d)| *d).collect();
        seen.sort();
        eprintln!(
            "{change} seen by the other instance after: median {:?}, most {:?}",
            seen[seen.len() / 2],
            seen[seen.len() - 1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_api_key_is_refused_by_the_other_instance_as_fast_as_a_logout() {
    let mut shared = Backend::MongoDb.settings();
    shared.jwt_keys = keys(&[("k", OLD_KEY)]);
    // As above: only the change stream can explain what b sees when the cache is on.
    shared.mongodb.cache.ttl = Duration::from_secs(3600);
    let a = instance(&shared, |_| {}).await;
    let b = instance(&shared, |_| {}).await;
    a.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let token = a.token("a@acme.test", PASSWORD).await;
    let connection = |app: &TestApp, key: &str| {
        app.request(reqwest::Method::GET, "/org/connection").bearer_auth(key.to_owned()).send()
    };
    let mut delays = Vec::new();
    for _ in 0..ROUNDS {
        let body = serde_json::json!({"name": "billing", "scopes": ["org:read"]});
        let created = a.request(reqwest::Method::POST, "/org/api-keys").bearer_auth(&token).json(&body).send().await;
        let created: serde_json::Value = created.expect("request").json().await.expect("json");
        let key = created["key"].as_str().expect("key").to_owned();
        // b uses the key, and caches it.
        for _ in 0..2 {
            assert_eq!(connection(&b, &key).await.expect("request").status(), 200);
        }
        let id = created["id"].as_str().expect("id");
        let revoked = a.request(reqwest::Method::DELETE, &format!("/org/api-keys/{id}")).bearer_auth(&token).send();
        assert_eq!(revoked.await.expect("request").status(), 204);
        delays.push(
            delay_until("b refuses the revoked key", || async {
                connection(&b, &key).await.is_ok_and(|r| r.status() == 401)
            })
            .await,
        );
    }
    delays.sort();
    eprintln!(
        "revoked key refused by the other instance after: median {:?}, most {:?}",
        delays[ROUNDS / 2],
        delays[ROUNDS - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_hash_is_upgraded_at_the_next_login() {
    let shared = Backend::MongoDb.settings();
    let weak = instance(&shared, |s| {
        s.argon2.memory_kib = 1024;
        s.argon2.iterations = 1;
    })
    .await;
    let created = weak.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let stored_hash = || async {
        let client = mongodb::Client::with_uri_str(
            std::env::var(mongo_adapter::test_support::URI_VARIABLE).expect("test server"),
        )
        .await
        .expect("client");
        let admin = client
            .database(&shared.mongodb.database)
            .collection::<mongodb::bson::Document>("admins")
            .find_one(mongodb::bson::doc! {"_id": created["admin"]["id"].as_str().expect("id")})
            .await
            .expect("find")
            .expect("admin");
        admin.get_str("password_hash").expect("hash").to_owned()
    };
    assert!(stored_hash().await.contains("m=1024,t=1,p=1"));
    let current = instance(&shared, |s| {
        s.argon2.memory_kib = 8192;
        s.argon2.iterations = 2;
    })
    .await;
    let tokens = current.tokens("a@acme.test", PASSWORD).await;
    assert!(jwt_payload(&tokens.access)["sid"].is_string());
    let upgraded = stored_hash().await;
    assert!(upgraded.starts_with("$argon2id$v=19$m=8192,t=2,p=1$"), "{upgraded}");
    // The upgraded hash still verifies, on either instance.
    weak.tokens("a@acme.test", PASSWORD).await;
    assert!(stored_hash().await.contains("m=8192"), "an instance with weaker parameters never downgrades");
}

#[tokio::test]
async fn production_mode_refuses_unsafe_settings() {
    let mut settings = Backend::Memory.settings();
    settings.environment = Environment::Production;
    settings.jwt_keys = keys(&[("k", OLD_KEY)]);
    let error = format!("{:#}", Application::build(settings.clone()).await.err().expect("memory refused"));
    assert!(error.contains("ORGSVC_STORAGE=memory"), "{error}");
    settings.storage = Storage::MongoDb;
    settings.mongodb = Backend::MongoDb.settings().mongodb;
    settings.jwt_keys.clear();
    let error = format!("{:#}", Application::build(settings.clone()).await.err().expect("random key refused"));
    assert!(error.contains("ORGSVC_JWT_SECRET"), "{error}");
    settings.jwt_keys = keys(&[("k", OLD_KEY)]);
    // The test settings hash cheaply, run without a login limit and expose /metrics to all.
    let error = format!("{:#}", Application::build(settings.clone()).await.err().expect("weak hashing refused"));
    assert!(error.contains("ORGSVC_ARGON2_MEMORY_KIB"), "{error}");
    settings.argon2 = orgsvc::settings::Argon2Settings::default();
    let error = format!("{:#}", Application::build(settings.clone()).await.err().expect("no metrics rule refused"));
    assert!(error.contains("ORGSVC_METRICS_ADDR") && error.contains("ORGSVC_METRICS_TOKEN"), "{error}");
    settings.http.metrics.token = Some("J9F6+gvZaD9f5I+24qp9QHMQWmE7JAQH".to_owned().into());
    let error = format!("{:#}", Application::build(settings.clone()).await.err().expect("no login limit refused"));
    assert!(error.contains("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE"), "{error}");
    settings.http.rate_limits = http_adapter::RateLimits::default();
    settings.jwt_keys = keys(&[("k", &"k".repeat(40))]);
    let error = format!("{:#}", Application::build(settings.clone()).await.err().expect("a weak key refused"));
    assert!(error.contains("entropy") && !error.contains("kkkk"), "{error}");
    settings.jwt_keys = keys(&[("k", OLD_KEY)]);
    Application::build(settings).await.expect("a complete production configuration starts");
}
