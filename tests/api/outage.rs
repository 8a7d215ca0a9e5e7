//! A MongoDB outage: requests get a 503 problem quickly (no hang, no 500), readiness fails,
//! and both recover by themselves when the server is back.

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

    fn start(port: u16, storage: std::path::PathBuf) -> Self {
        let child = Command::new(Self::binary())
            // Synced commits, so that the SIGKILL below loses nothing acknowledged.
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING", "--sync-on-commit"])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_gives_503s_and_the_service_recovers_by_itself() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let storage = std::env::temp_dir().join(format!("orgsvc-outage-{}", uuid::Uuid::new_v4().simple()));
    let server = Server::start(port, storage);

    let mut settings = test_settings();
    settings.storage = orgsvc::Storage::MongoDb;
    settings.mongodb =
        mongo_adapter::MongoSettings::new(format!("mongodb://127.0.0.1:{port}/?directConnection=true"), "outage");
    settings.mongodb.server_selection_timeout = Duration::from_millis(1500);
    let app = TestApp::spawn_with(settings).await;
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    assert_eq!(ready_status(&app).await, 200);

    let (port, storage) = server.stop();
    let started = Instant::now();
    let response = app.get("Acme", None).await;
    assert!(started.elapsed() < Duration::from_secs(10), "the request hung for {:?}", started.elapsed());
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503).await;
    problem(app.create("Globex", "g@globex.test", "correct horse").await, 503).await;
    problem(app.login("a@acme.test", "correct horse").await, 503).await;
    assert_eq!(ready_status(&app).await, 503);

    let _server = Server::start(port, storage.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready_status(&app).await != 200 {
        assert!(Instant::now() < deadline, "the service did not become ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.get("Acme", None).await.error_for_status().expect("data survived the outage");
    app.token("a@acme.test", "correct horse").await;
    let _ = std::fs::remove_dir_all(storage);
}
