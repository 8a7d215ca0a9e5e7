//! Helpers shared by the black-box API tests: spawn the real application on port 0 with
//! its own fresh store, and talk to it over HTTP like any client.

use std::sync::Arc;

pub use http_adapter::receiver;

use base64::Engine;
use orgsvc::{Application, Settings};
use ports::TenantStore;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

/// A running application and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Direct access to the tenant collections behind the API.
    pub tenants: Arc<dyn TenantStore>,
    /// The application's organizations, to find one whose tenant data a test reads.
    pub organizations: Arc<dyn ports::OrganizationRepository>,
    /// `http://127.0.0.1:<port>` of the metrics listener, when it has its own.
    pub metrics_address: Option<String>,
}

/// The settings every test starts from: a free port, a fixed signing key, and the real
/// argon2id with cheaper parameters so that hundreds of hashes stay fast.
pub fn test_settings() -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("default settings");
    settings.http_addr = "127.0.0.1:0".parse().expect("address");
    settings.http_workers = 2;
    settings.argon2.memory_kib = 4096;
    settings.argon2.iterations = 1;
    // Suites make many requests from one address; the rate-limit tests turn limits back on.
    settings.http.rate_limits = http_adapter::RateLimits::off();
    // Secrets the MongoDB store reads back are sealed, as in a careful deployment (the
    // repository contract suite runs without a key, which keeps them in clear).
    settings.sealing_key = Some("a sealing key for the black-box API tests".to_owned().into());
    settings
}

/// Fresh databases on the MongoDB test server, with the organization cache on unless
/// `ORGSVC_TEST_CACHE=off` (`make test` runs this suite both ways).
pub fn mongo_database() -> mongo_adapter::MongoSettings {
    let mut settings = mongo_adapter::test_support::fresh_settings(mongo_adapter::test_support::URI_VARIABLE);
    settings.cache.enabled = std::env::var("ORGSVC_TEST_CACHE").map_or(true, |v| v != "off");
    settings
}

/// Where a test's application keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh in-memory store.
    Memory,
    /// Fresh databases on the MongoDB test server.
    MongoDb,
}

impl Backend {
    /// The test settings for this storage, on fresh databases.
    pub fn settings(self) -> Settings {
        let mut settings = test_settings();
        if self == Backend::MongoDb {
            settings.storage = orgsvc::Storage::MongoDb;
            settings.mongodb = mongo_database();
        }
        settings
    }

    /// Starts the application on this storage with the test settings changed by `change`.
    pub async fn spawn_with(self, change: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings();
        change(&mut settings);
        TestApp::spawn_with(settings).await
    }
}

/// The tokens of a login or refresh.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

impl TestApp {
    /// Starts the application with the test settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(test_settings()).await
    }

    /// Starts the application on fresh databases of the MongoDB test server.
    pub async fn spawn_mongodb() -> Self {
        let mut settings = test_settings();
        settings.storage = orgsvc::Storage::MongoDb;
        settings.mongodb = mongo_database();
        Self::spawn_with(settings).await
    }

    /// Starts the application with these settings.
    pub async fn spawn_with(settings: Settings) -> Self {
        Self::spawn_with_clock(settings, std::sync::Arc::new(ports::SystemClock)).await
    }

    /// Starts the application with these settings on this clock.
    pub async fn spawn_with_clock(settings: Settings, clock: std::sync::Arc<dyn ports::Clock>) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            // Traces are not exported from API tests (the process tests check them).
            let _ = orgsvc::telemetry::init(settings.log_format, &orgsvc::settings::TracingSettings::default());
        }
        let app = Application::build_with_clock(settings, clock).await.expect("build application");
        let address = format!("http://127.0.0.1:{}", app.port());
        let metrics_address = app.metrics_port().map(|port| format!("http://127.0.0.1:{port}"));
        let (tenants, organizations) = (app.tenants(), app.organizations());
        tokio::spawn(app.run_until_stopped());
        Self { address, client: reqwest::Client::new(), tenants, organizations, metrics_address }
    }

    /// The organization named `name` (any spelling of its key), which must exist.
    pub async fn organization(&self, name: &str) -> domain::Organization {
        let key = domain::OrganizationName::parse(name).expect("a valid name");
        self.organizations.find_by_key(key.key()).await.expect("find").unwrap_or_else(|| panic!("{name} exists"))
    }

    /// The tenant collections the organizations named `names` should have, sorted: one
    /// each, except under the `shared` placement, whose documents are in the shared
    /// collection instead.
    pub async fn own_collections(&self, names: &[&str]) -> Vec<domain::CollectionName> {
        let mut collections = Vec::new();
        for name in names {
            let org = self.organization(name).await;
            if org.placement.kind != domain::PlacementKind::Shared {
                collections.push(org.collection);
            }
        }
        collections.sort();
        collections
    }

    /// A request to a path of the application.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.address))
    }

    /// `POST /org/create`.
    pub async fn create(&self, name: &str, email: &str, password: &str) -> Response {
        self.request(Method::POST, "/org/create")
            .json(&json!({"organization_name": name, "email": email, "password": password}))
            .send()
            .await
            .expect("request")
    }

    /// Creates an organization, failing the test unless it gets 201; returns the body.
    pub async fn create_ok(&self, name: &str, email: &str, password: &str) -> Value {
        let response = self.create(name, email, password).await;
        assert_eq!(response.status(), 201, "create {name}");
        response.json().await.expect("json")
    }

    /// `POST /admin/login`.
    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.request(Method::POST, "/admin/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("request")
    }

    /// Logs in, failing the test unless it gets 200; returns the access token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200, "login {email}");
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    /// Logs in, failing the test unless it gets 200; returns both tokens.
    pub async fn tokens(&self, email: &str, password: &str) -> Tokens {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200, "login {email}");
        tokens_of(response).await
    }

    /// `POST /admin/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.request(Method::POST, "/admin/refresh")
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .await
            .expect("request")
    }

    /// `POST /admin/logout`.
    pub async fn logout(&self, token: &str) -> Response {
        self.request(Method::POST, "/admin/logout").bearer_auth(token).send().await.expect("request")
    }

    /// `GET /org/audit` with query parameters.
    pub async fn audit(&self, token: &str, query: &[(&str, &str)]) -> Response {
        self.request(Method::GET, "/org/audit").query(query).bearer_auth(token).send().await.expect("request")
    }

    /// Every audit event of the token's organization, newest first, failing unless 200.
    pub async fn audit_events(&self, token: &str) -> Vec<Value> {
        let response = self.audit(token, &[("limit", "100")]).await;
        assert_eq!(response.status(), 200, "audit");
        let body: Value = response.json().await.expect("json");
        body["events"].as_array().expect("events").clone()
    }

    /// `GET /org/get?organization_name=...`, with a token if given.
    pub async fn get(&self, name: &str, token: Option<&str>) -> Response {
        let mut request = self.request(Method::GET, "/org/get").query(&[("organization_name", name)]);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    /// `PUT /org/update` with a JSON body.
    pub async fn update(&self, token: &str, body: Value) -> Response {
        self.request(Method::PUT, "/org/update").bearer_auth(token).json(&body).send().await.expect("request")
    }

    /// `DELETE /org/delete?organization_name=...`.
    pub async fn delete(&self, token: &str, name: &str) -> Response {
        self.request(Method::DELETE, "/org/delete")
            .query(&[("organization_name", name)])
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

/// The tokens of a 200 login or refresh response.
pub async fn tokens_of(response: Response) -> Tokens {
    let body: Value = response.json().await.expect("json");
    Tokens {
        access: body["access_token"].as_str().expect("access_token").to_owned(),
        refresh: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
    }
}

/// Reads a problem+json response, checking its status, content type and shape.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    body
}

/// The fields named in a validation problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The decoded payload of a JWT, without verifying it.
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("json payload")
}

/// Asserts that `value` is a time as the API writes every time: RFC 3339 in UTC with
/// exactly three fractional digits (`2026-11-26T12:00:34.000Z`), so that times compare as
/// strings in the order they happened.
pub fn assert_api_time(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time string: {value}"));
    let shape_ok = text.len() == 24
        && text.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape_ok, "not RFC 3339 UTC with milliseconds: {text}");
}

/// Applications whose every new organization gets a placement other than the default, for
/// running the organization suites on each placement.
pub mod spawn_placed {
    use super::{Backend, TestApp};
    use domain::{ClusterName, Placement, PlacementKind};

    async fn spawn(backend: Backend, kind: PlacementKind, second_cluster: bool) -> TestApp {
        backend
            .spawn_with(|s| {
                let mut cluster = ClusterName::main();
                if second_cluster {
                    cluster = mongo_adapter::test_support::second_cluster();
                    let uri = std::env::var(mongo_adapter::test_support::SECOND_URI_VARIABLE)
                        .expect("the second test server: run the tests with `make test`");
                    s.mongodb.clusters = vec![(cluster.clone(), uri.into())];
                }
                s.placement = Placement { kind, cluster };
            })
            .await
    }

    /// Memory store, `database` placement.
    pub async fn memory_database() -> TestApp {
        spawn(Backend::Memory, PlacementKind::Database, false).await
    }

    /// Memory store, `shared` placement.
    pub async fn memory_shared() -> TestApp {
        spawn(Backend::Memory, PlacementKind::Shared, false).await
    }

    /// MongoDB, `database` placement on main.
    pub async fn mongodb_database() -> TestApp {
        spawn(Backend::MongoDb, PlacementKind::Database, false).await
    }

    /// MongoDB, `shared` placement on main.
    pub async fn mongodb_shared() -> TestApp {
        spawn(Backend::MongoDb, PlacementKind::Shared, false).await
    }

    /// MongoDB, `collection` placement on the second cluster.
    pub async fn mongodb_second_cluster() -> TestApp {
        spawn(Backend::MongoDb, PlacementKind::Collection, true).await
    }
}
