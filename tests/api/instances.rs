//! Several instances sharing one MongoDB database, as behind a load balancer: signing key
//! rotation, how soon one instance sees another's revocation, and hash upgrades.

use std::sync::Arc;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_logout_is_seen_within_the_bound() {
    let shared = Backend::MongoDb.settings();
    let key = |s: &mut Settings| s.jwt_keys = keys(&[("k", OLD_KEY)]);
    let bound = Duration::from_secs(1);
    let a = instance(&shared, key).await;
    // b runs on a clock the test moves, so the bound passes without sleeping.
    let b_clock = Arc::new(ports::ManualClock::starting_at(ports::Clock::now(&ports::SystemClock)));
    let mut b_settings = shared.clone();
    key(&mut b_settings);
    b_settings.security.revocation_bound = bound;
    let b = TestApp::spawn_with_clock(b_settings, b_clock.clone()).await;
    a.create_ok("Acme", "a@acme.test", PASSWORD).await;
    let tokens = a.tokens("a@acme.test", PASSWORD).await;
    assert_eq!(b.audit(&tokens.access, &[]).await.status(), 200, "b now trusts the session for the bound");
    assert_eq!(a.logout(&tokens.access).await.status(), 204);
    problem(a.audit(&tokens.access, &[]).await, 401).await;
    b_clock.advance(bound);
    problem(b.audit(&tokens.access, &[]).await, 401).await;

    // With a bound of zero, every request asks the store.
    let c = instance(&shared, |s| {
        key(s);
        s.security.revocation_bound = Duration::ZERO;
    })
    .await;
    let tokens = a.tokens("a@acme.test", PASSWORD).await;
    assert_eq!(c.audit(&tokens.access, &[]).await.status(), 200);
    assert_eq!(a.logout(&tokens.access).await.status(), 204);
    problem(c.audit(&tokens.access, &[]).await, 401).await;
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
