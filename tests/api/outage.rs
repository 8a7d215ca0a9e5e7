//! A MongoDB outage, on a replica set and on a standalone server: every route answers a
//! 503 problem with `Retry-After` within the server selection timeout plus a small margin
//! (no hang, no 500), readiness fails, and both recover by themselves when the server is
//! back.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_tests::{TestApp, problem, test_settings};
use reqwest::Method;

/// A SecantusDB server of this test's own, so that stopping it disturbs no other test.
struct Server {
    child: Child,
    port: u16,
    storage: std::path::PathBuf,
}

impl Server {
    fn binary() -> String {
        std::env::var("ORGSVC_TEST_SECANTUSD")
            .expect("ORGSVC_TEST_SECANTUSD is not set: run the tests with `make test`")
    }

    fn start(port: u16, storage: std::path::PathBuf, flags: &[&str]) -> Self {
        let child = Command::new(Self::binary())
            // Synced commits, so that the SIGKILL below loses nothing acknowledged.
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING", "--sync-on-commit"])
            .args(flags)
            .arg("--storage-path")
            .arg(&storage)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start SecantusDB");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "SecantusDB did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port, storage }
    }

    fn stop(mut self) -> (u16, std::path::PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.storage.clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ready_status(app: &TestApp) -> u16 {
    app.request(Method::GET, "/health/ready").send().await.expect("request").status().as_u16()
}

/// How long a request may take beyond the server selection timeout to answer 503: the
/// time to notice, plus one round of work that does not wait for the server.
const MARGIN: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_gives_503s_and_the_service_recovers_by_itself() {
    an_outage_gives_quick_503s_and_the_service_recovers(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_a_standalone_server_gives_quick_503s_too() {
    an_outage_gives_quick_503s_and_the_service_recovers(&["--standalone"]).await;
}

async fn an_outage_gives_quick_503s_and_the_service_recovers(flags: &[&'static str]) {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let storage = std::env::temp_dir().join(format!("orgsvc-outage-{}", uuid::Uuid::new_v4().simple()));
    let server = Server::start(port, storage, flags);

    let mut settings = test_settings();
    settings.storage = orgsvc::Storage::MongoDb;
    settings.mongodb =
        mongo_adapter::MongoSettings::new(format!("mongodb://127.0.0.1:{port}/?directConnection=true"), "outage");
    let selection = Duration::from_millis(1500);
    settings.mongodb.server_selection_timeout = selection;
    // Every request reads the store, so that none is answered from the cache in the
    // moments before its change stream is found broken.
    settings.mongodb.cache.enabled = false;
    let app = TestApp::spawn_with(settings).await;
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    let tokens = app.tokens("a@acme.test", "correct horse").await;
    assert_eq!(ready_status(&app).await, 200);

    let (port, storage) = server.stop();
    let requests: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("get", app.request(Method::GET, "/org/get").query(&[("organization_name", "Acme")])),
        (
            "create",
            app.request(Method::POST, "/org/create").json(
                &serde_json::json!({"organization_name": "Globex", "email": "g@globex.test", "password": "correct horse"}),
            ),
        ),
        (
            "login",
            app.request(Method::POST, "/admin/login")
                .json(&serde_json::json!({"email": "a@acme.test", "password": "correct horse"})),
        ),
        ("refresh", app.request(Method::POST, "/admin/refresh").json(&serde_json::json!({"refresh_token": tokens.refresh}))),
        (
            "update",
            app.request(Method::PUT, "/org/update")
                .bearer_auth(&tokens.access)
                .json(&serde_json::json!({"organization_name": "Acme Two"})),
        ),
        ("audit", app.request(Method::GET, "/org/audit").bearer_auth(&tokens.access)),
        ("logout", app.request(Method::POST, "/admin/logout").bearer_auth(&tokens.access)),
        (
            "delete",
            app.request(Method::DELETE, "/org/delete").query(&[("organization_name", "Acme")]).bearer_auth(&tokens.access),
        ),
        ("ready", app.request(Method::GET, "/health/ready")),
    ];
    for (route, request) in requests {
        let started = Instant::now();
        let response = request.send().await.expect("request");
        let took = started.elapsed();
        assert!(took <= selection + MARGIN, "{route} took {took:?} to answer during the outage");
        assert!(response.headers().contains_key("retry-after"), "{route}");
        problem(response, 503).await;
    }

    let _server = Server::start(port, storage.clone(), flags);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready_status(&app).await != 200 {
        assert!(Instant::now() < deadline, "the service did not become ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.get("Acme", None).await.error_for_status().expect("data survived the outage");
    app.token("a@acme.test", "correct horse").await;
    let _ = std::fs::remove_dir_all(storage);
}
