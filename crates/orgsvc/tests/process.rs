//! The `orgsvc` binary as an operator runs it: a configuration file, JSON logs with request
//! ids, `check-config`, the read-only `org` views, `migrate` with progress, and a graceful
//! stop on SIGTERM or SIGINT that lets an in-flight request finish.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orgsvc");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A configuration file, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("orgsvc-test-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).expect("write config");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The binary with a clean environment: only the test server variables are kept.
fn orgsvc(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("ORGSVC_") && !key.starts_with("ORGSVC_TEST_") {
            command.env_remove(key);
        }
    }
    command
}

/// Starts `orgsvc serve` and waits until it answers. The caller waits for the child.
async fn serve(config: &Path, port: u16) -> Child {
    serve_logging(config, port, "info").await
}

/// Starts `orgsvc serve` with this log filter. Its output is piped and read only when it
/// exits, so a test that makes many requests must log little, or the pipe fills and the
/// service blocks on its log.
async fn serve_logging(config: &Path, port: u16, filter: &str) -> Child {
    serve_with_env(config, port, filter, &[]).await
}

/// Starts `orgsvc serve` with this log filter and these variables set.
#[allow(clippy::zombie_processes)]
async fn serve_with_env(config: &Path, port: u16, filter: &str, env: &[(&str, &str)]) -> Child {
    let mut child = orgsvc(&["--config", config.to_str().expect("path"), "serve"])
        .env("RUST_LOG", filter)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn orgsvc");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(format!("http://127.0.0.1:{port}/health/live")).await.is_ok() {
            return child;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!("orgsvc did not start: {}", String::from_utf8_lossy(&output.stderr));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pseudo-random numbers below a bound (xorshift), seeded by the process id so that runs
/// differ; for where kill tests strike.
fn random_below() -> impl FnMut(u64) -> u64 {
    let mut seed = u64::from(std::process::id()) | 1;
    move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    a_stop_signal_lets_an_in_flight_request_finish("TERM").await;
}

/// Ctrl-C in a terminal, or SIGINT from a supervisor, drains like SIGTERM (actix-web's own
/// handler would stop at once on SIGINT).
#[tokio::test]
async fn sigint_lets_an_in_flight_request_finish_then_exits_zero() {
    a_stop_signal_lets_an_in_flight_request_finish("INT").await;
}

async fn a_stop_signal_lets_an_in_flight_request_finish(name: &str) {
    let port = free_port();
    // Expensive hashing makes the create slow enough to be in flight when the signal comes.
    let config = ConfigFile::new(&format!(
        "http_addr = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 20\n[argon2]\nmemory_kib = 262144\niterations = 6\n"
    ));
    let child = serve(&config.0, port).await;
    let create = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/org/create"))
            .json(
                &serde_json::json!({"organization_name": "Acme", "email": "a@acme.test", "password": "correct horse"}),
            )
            .send()
            .await
    });
    // The signal comes once the server is serving the create (a request still in the
    // listen backlog is not in flight: it is refused with the listener). `/metrics` counts
    // itself among the requests in flight, so two means the create is being served.
    let deadline = Instant::now() + Duration::from_secs(30);
    while in_flight(port).await < 2 {
        assert!(Instant::now() < deadline, "the create never reached the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, name);
    let response = create.await.expect("join").expect("the in-flight request is answered");
    assert_eq!(response.status(), 201);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    assert!(output.status.success(), "exit status {:?}", output.status);
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/health/live")).await.is_err(), "no longer accepting");
    // Text logs off a terminal carry no colour codes.
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("draining in-flight requests") && logs.contains("stopped"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes off a terminal: {logs:?}");
}

/// The requests the service on `port` is serving, as its `/metrics` says.
async fn in_flight(port: u16) -> u64 {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("orgsvc_http_requests_in_flight "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Stops the service with SIGTERM, checks that it exited cleanly and answers its JSON log
/// lines.
fn stopped_json_lines(child: &mut Child) -> Vec<serde_json::Value> {
    signal(child, "TERM");
    let stdout = child.stdout.take().expect("stdout");
    let lines = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .map(|line| serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}")))
        .collect();
    assert!(child.wait().expect("wait").success());
    lines
}

/// Registers a webhook endpoint for these events through the API; the answer's body.
async fn register_webhook(base: &str, token: &str, url: &str, events: &[&str]) -> serde_json::Value {
    let hook = reqwest::Client::new()
        .post(format!("{base}/org/webhooks"))
        .bearer_auth(token)
        .json(&serde_json::json!({"url": url, "events": events}))
        .send()
        .await
        .expect("register");
    assert_eq!(hook.status(), 201);
    hook.json().await.expect("json")
}

#[tokio::test]
async fn json_logs_carry_the_request_id_route_status_and_latency() {
    let port = free_port();
    let config = ConfigFile::new(&format!("http_addr = \"127.0.0.1:{port}\"\nlog_format = \"json\"\n"));
    let mut child = serve(&config.0, port).await;
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/org/get?organization_name=Secret%20Name"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["request_id"], "trace-me-42", "the problem body names the request");
    let lines = stopped_json_lines(&mut child);
    let served = lines
        .iter()
        .find(|l| l["message"] == "request served" && l["span"]["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("no request line in {lines:#?}"));
    assert_eq!(served["span"]["route"], "/org/get");
    assert_eq!(served["span"]["method"], "GET");
    assert_eq!(served["status"], 404);
    assert!(served["latency_ms"].as_f64().is_some());
    let all = lines.iter().map(|l| l.to_string()).collect::<String>();
    assert!(!all.contains("Secret Name"), "raw names stay out of the logs");
}

#[test]
fn check_config_prints_redacted_settings_and_names_a_bad_setting() {
    let good = ConfigFile::new(
        "env = \"production\"\njwt_secret = \"a-production-secret-of-32-bytes-or-more\"\nstorage = \"mongodb\"\n\
         metrics_token = \"J9F6+gvZaD9f5I+24qp9QHMQWmE7JAQH\"\n\
         [mongodb]\nuri = \"mongodb://user:hunter2@db.example/\"\n",
    );
    let output = orgsvc(&["--config", good.path(), "check-config"]).output().expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Production") && stdout.contains("configuration is valid"), "{stdout}");
    for secret in ["hunter2", "a-production-secret", "J9F6+gvZaD9f5I"] {
        assert!(!stdout.contains(secret), "secrets leaked: {stdout}");
    }

    let unknown = ConfigFile::new("[mongodb]\nurl = \"mongodb://db/\"\n");
    let output = orgsvc(&["--config", unknown.path(), "check-config"]).output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("`mongodb.url`"));

    // Flags override the file.
    let output =
        orgsvc(&["--config", good.path(), "--set", "token_ttl_seconds=0", "check-config"]).output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ORGSVC_TOKEN_TTL_SECONDS"));
    let output = orgsvc(&["--set", "no_such_setting=1", "check-config"]).output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no_such_setting"));
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["reconcile", "--help"],
        vec!["org", "--help"],
        vec!["org", "list", "--help"],
        vec!["org", "show", "--help"],
        vec!["org", "move", "--help"],
        vec!["jobs", "list", "--help"],
        vec!["jobs", "show", "--help"],
        vec!["jobs", "cancel", "--help"],
        vec!["jobs", "run", "--help"],
        vec!["jobs", "tier", "--help"],
        vec!["check-config", "--help"],
    ] {
        let output = orgsvc(&args).output().expect("run");
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{args:?}");
    }
}

/// A configuration of the service on fresh databases of the test server, listening on a
/// free port, with `settings` (top-level lines) added; the file and the port.
fn mongodb_config(settings: &str) -> (ConfigFile, u16) {
    let uri = std::env::var("ORGSVC_TEST_MONGODB_URI").expect("run with make test: ORGSVC_TEST_MONGODB_URI");
    let database = format!("t{}", uuid::Uuid::new_v4().simple());
    let port = free_port();
    let config = ConfigFile::new(&format!(
        "http_addr = \"127.0.0.1:{port}\"\nstorage = \"mongodb\"\n{settings}[mongodb]\nuri = \"{uri}\"\ndatabase = \"{database}\"\n"
    ));
    (config, port)
}

/// Starts the service on `config`, creates these organizations (name, admin email) through
/// its API, and stops it with SIGTERM.
async fn create_through_the_service(config: &ConfigFile, port: u16, organizations: &[(&str, &str)]) {
    let child = serve(&config.0, port).await;
    for (name, email) in organizations {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/org/create"))
            .json(&serde_json::json!({"organization_name": name, "email": email, "password": "correct horse"}))
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 201);
    }
    signal(&child, "TERM");
    assert!(child.wait_with_output().expect("wait").status.success());
}

#[tokio::test]
async fn operators_list_show_and_migrate_on_mongodb() {
    let (config, port) = mongodb_config("");
    create_through_the_service(&config, port, &[("Globex", "g@globex.test"), ("Acme Corp", "a@acme.test")]).await;

    let list = orgsvc(&["--config", config.path(), "org", "list"]).output().expect("run");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{text}");
    let acme = text.find("Acme Corp").expect("acme listed");
    let globex = text.find("Globex").expect("globex listed");
    assert!(acme < globex, "sorted by key: {text}");
    assert!(text.contains("2 organization(s)"));

    let show = orgsvc(&["--config", config.path(), "org", "show", "acme-corp"]).output().expect("run");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success() && text.contains("org_acme_corp") && text.contains("a@acme.test"), "{text}");
    assert!(text.contains("placement:   collection on main"), "{text}");
    let missing = orgsvc(&["--config", config.path(), "org", "show", "Nobody"]).output().expect("run");
    assert!(!missing.status.success());

    // Both organizations got the tenant migrations when they were created.
    let output = orgsvc(&["--config", config.path(), "migrate"]).output().expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout} {stderr}");
    assert!(stdout.contains("0 collection(s) migrated now, 2 already had it"), "{stdout}");
    // Nothing to do shows no progress (no "0/0 ... ETA ?" lines); the lines themselves are
    // tested in the progress module and the migration tests.
    assert!(!stderr.contains("0/0") && !stderr.contains("ETA"), "progress for nothing: {stderr}");
    // A dry run says what it would do, and shows no progress of work it does not do.
    let output = orgsvc(&["--config", config.path(), "migrate", "--dry-run"]).output().expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout} {stderr}");
    assert!(stdout.contains("would migrate 0 collection(s), 2 already have it"), "{stdout}");
    assert!(!stdout.contains("migrated now") && !stderr.contains("(done)"), "{stdout} {stderr}");
}

#[tokio::test]
async fn operators_move_an_organization_and_watch_the_job() {
    let (config, port) = mongodb_config("move_grace_seconds = 0\njobs_interval_seconds = 0\n");
    create_through_the_service(&config, port, &[("Acme", "a@acme.test")]).await;

    // Followed in the foreground until the switch: exit 0, the new placement shown.
    let (ok, text) = run_command(config.path(), &["org", "move", "Acme", "--to", "database"]).await;
    assert!(ok && text.contains("completed, phase done"), "no grace period: finished at once: {text}");
    let (ok, text) = run_command(config.path(), &["org", "show", "Acme"]).await;
    assert!(ok && text.contains("placement:   database on main"), "{text}");
    // The same placement again is refused, saying why.
    let (ok, text) = run_command(config.path(), &["org", "move", "Acme", "--to", "database"]).await;
    assert!(!ok && text.contains("already placed there"), "{text}");
    let (ok, text) = run_command(config.path(), &["org", "move", "Acme", "--to", "nowhere"]).await;
    assert!(!ok && text.contains("expected collection, database or shared"), "{text}");

    // Detached: recorded, then run by `jobs run`; then listed and shown.
    let (ok, text) = run_command(config.path(), &["org", "move", "Acme", "--to", "shared", "--detach"]).await;
    assert!(ok && text.contains("move started: job "), "{text}");
    let id = text.split("move started: job ").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("id");
    let (ok, text) = run_command(config.path(), &["jobs", "run"]).await;
    assert!(ok && text.contains("1 job(s) run"), "{text}");
    let (ok, text) = run_command(config.path(), &["jobs", "list"]).await;
    assert!(ok && text.contains("2 job(s)") && text.contains("completed"), "{text}");
    let (ok, text) = run_command(config.path(), &["jobs", "show", id]).await;
    assert!(ok && text.contains("completed, phase done") && text.contains("write fence:"), "{text}");
    // A finished job cannot be cancelled; an unknown one is named.
    let (ok, text) = run_command(config.path(), &["jobs", "cancel", id]).await;
    assert!(!ok && text.contains("has already ended"), "{text}");
    let (ok, text) = run_command(config.path(), &["jobs", "show", "nope"]).await;
    assert!(!ok && text.contains("is not a job id"), "{text}");
    let (ok, text) = run_command(config.path(), &["org", "show", "Acme"]).await;
    assert!(ok && text.contains("placement:   shared on main"), "{text}");

    // Tenant migrations run as a job, listed with the moves.
    let (ok, text) = run_command(config.path(), &["migrate"]).await;
    assert!(ok && text.contains("job ") && text.contains("completed"), "{text}");
    let (ok, text) = run_command(config.path(), &["jobs", "list"]).await;
    assert!(ok && text.contains("3 job(s)") && text.contains("tenant_migration"), "{text}");
    // A migration without a down part, or an unknown one, is not rolled back.
    let (ok, text) = run_command(config.path(), &["migrate", "--down", "0001_updated_at_index"]).await;
    assert!(!ok && text.contains("has no down part"), "{text}");
    let (ok, text) = run_command(config.path(), &["migrate", "--down", "0999_nothing"]).await;
    assert!(!ok && text.contains("no tenant migration named 0999_nothing"), "{text}");
    // A tiering pass leaves an organization with no documents in `shared`.
    let (ok, text) = run_command(config.path(), &["jobs", "tier"]).await;
    assert!(ok && text.contains("1 organization(s) checked, 0 move(s) started"), "{text}");
}

#[test]
fn a_failed_command_reports_its_error_once_without_colour_codes() {
    let output = orgsvc(&["org", "list"]).output().expect("run");
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let all = format!("{stdout}{stderr}");
    assert_eq!(all.matches("ORGSVC_STORAGE is not mongodb").count(), 1, "{all}");
    assert!(!all.contains('\u{1b}'), "colour codes off a terminal: {all:?}");
}

/// The resident memory of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).expect("value").parse().expect("number")
}

/// One wave of clients that send their headers and most of a 64 KiB body, then stall:
/// returns the process's resident memory while they hang, once each has been answered 408
/// and disconnected by the server.
async fn stalled_wave(port: u16, pid: u32, clients: usize, timeout: Duration) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let head = "POST /org/create HTTP/1.1\r\nHost: orgsvc\r\nContent-Type: application/json\r\n\
                    Content-Length: 65536\r\n\r\n";
        stream.write_all(head.as_bytes()).await.expect("headers");
        stream.write_all(&[b' '; 48 * 1024]).await.expect("most of the body");
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holding = resident_kib(pid);
    for mut stream in streams {
        let mut answer = Vec::new();
        tokio::time::timeout(timeout * 3, stream.read_to_end(&mut answer))
            .await
            .expect("the server closes a stalled connection")
            .expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    }
    assert!(started.elapsed() >= timeout, "answered before the body timeout");
    holding
}

/// Stalled request bodies are answered 408 and dropped once the body timeout has passed,
/// and the memory they held is given back: waves of them do not make the process grow
/// (the allocator keeps freed memory for reuse, so the resident size settles rather than
/// returning to its first value).
#[tokio::test]
async fn stalled_bodies_are_dropped_on_time_and_their_memory_is_reused() {
    const CLIENTS: usize = 500;
    let timeout = Duration::from_secs(2);
    let port = free_port();
    let config = ConfigFile::new(&format!("http_addr = \"127.0.0.1:{port}\"\nhttp_body_timeout_seconds = 2\n"));
    let child = serve_logging(&config.0, port, "warn").await;
    let pid = child.id();
    let before = resident_kib(pid);
    let first = stalled_wave(port, pid, CLIENTS, timeout).await;
    let held = first.saturating_sub(before);
    assert!(held > 8 * 1024, "the wave should hold memory while it stalls: {held} KiB");
    for _ in 0..3 {
        stalled_wave(port, pid, CLIENTS, timeout).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = resident_kib(pid);
    assert!(
        after.saturating_sub(first) < held / 4,
        "memory grew across waves: {before} KiB before, {first} KiB during the first wave, {after} KiB after four"
    );
    // Still serving.
    reqwest::get(format!("http://127.0.0.1:{port}/health/live")).await.expect("live").error_for_status().expect("200");
    signal(&child, "TERM");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    assert!(output.status.success());
}

/// Runs an `orgsvc` command off the async threads (the test's tenant application keeps
/// writing meanwhile); returns whether it succeeded and what it printed.
async fn run_command(config: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--config".to_owned(), config.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        let output = orgsvc(&args).output().expect("run");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    })
    .await
    .expect("join")
}

/// When a round kills the process that runs a move.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// After this many milliseconds.
    After(u64),
    /// As soon as the job's record shows this phase.
    Phase(domain::MovePhase),
}

/// `kill -9` of the process running a move, at random moments and in each phase (the
/// cut-over among them), while the tenant's application keeps writing: after a restart
/// (`orgsvc jobs run`, once the dead runner's lease has run out) every move has completed
/// or rolled back, the organization holds exactly what its application wrote, nothing is
/// left at the other end, and no fence is left in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_killed_at_random_points_complete_or_roll_back_after_a_restart() {
    use domain::{ClusterName, JobState, MovePhase, Placement, PlacementKind};
    use mongo_adapter::test_support::application::{
        Writes, no_fence_left, nothing_left_at, seed, stored, write_until_stopped,
    };
    use mongo_adapter::test_support::{
        SECOND_URI_VARIABLE, URI_VARIABLE, fresh_settings_with_second_cluster, new_organization, second_cluster,
    };
    use ports::OrganizationRepository;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut settings = fresh_settings_with_second_cluster(URI_VARIABLE);
    // The test server scans every retryable write it remembers on each new one.
    settings.retry_writes = false;
    let store = mongo_adapter::MongoStore::open(&settings).await.expect("store");
    let config = ConfigFile::new(&format!(
        "storage = \"mongodb\"\njobs_interval_seconds = 0\njob_lease_seconds = 5\nmove_batch = 100\n\
         move_grace_seconds = 1\n[mongodb]\nuri = \"{}\"\ndatabase = \"{}\"\ncommand_timeout_ms = 2400\n\
         retry_writes = false\n[clusters.second]\nuri = \"{}\"\n",
        std::env::var(URI_VARIABLE).expect("run with make test"),
        settings.database,
        std::env::var(SECOND_URI_VARIABLE).expect("run with make test"),
    ));
    let org = store.create(new_organization("Killed", "k@killed.test")).await.expect("create");
    let writes: Writes = seed(&store, &org, 1_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer =
        tokio::spawn(write_until_stopped(store.clone(), org.clone(), writes, Duration::from_millis(20), stop.clone()));

    let on =
        |kind, second: bool| Placement { kind, cluster: if second { second_cluster() } else { ClusterName::main() } };
    let (c, d, s) = (PlacementKind::Collection, PlacementKind::Database, PlacementKind::Shared);
    let mut random = random_below();
    let rounds = [
        (on(s, true), KillAt::Phase(MovePhase::Copying)),
        (on(d, false), KillAt::After(random(2_500))),
        (on(c, false), KillAt::Phase(MovePhase::CatchingUp)),
        (on(s, false), KillAt::Phase(MovePhase::Fenced)),
        (on(d, true), KillAt::After(random(2_500))),
        (on(c, true), KillAt::Phase(MovePhase::Switched)),
        (on(s, true), KillAt::Phase(MovePhase::Fenced)),
        (on(c, false), KillAt::After(random(2_500))),
        (on(d, false), KillAt::Phase(MovePhase::Fenced)),
        (on(s, false), KillAt::After(random(2_500))),
        (on(d, true), KillAt::Phase(MovePhase::CatchingUp)),
        (on(c, false), KillAt::Phase(MovePhase::Fenced)),
    ];
    let mut killed_mid_move = 0;
    let mut killed_in_phase = std::collections::BTreeMap::<String, usize>::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (round, (to, kill_at)) in rounds.iter().enumerate() {
        let before = store.find_by_id(org.id).await.expect("find").expect("exists");
        let kind = to.kind.as_str();
        let cluster = to.cluster.to_string();
        let mut child =
            orgsvc(&["--config", config.path(), "org", "move", "Killed", "--to", kind, "--cluster", &cluster])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn orgsvc org move");
        let started = Instant::now();
        // The move's job, once recorded, and its phase at the kill.
        let mut job = None;
        loop {
            if job.is_none() {
                job = store.list_jobs().await.expect("jobs").into_iter().find(|j| j.finished_at.is_none());
            }
            let current = match &job {
                Some(j) => store.job(j.id).await.expect("job"),
                None => None,
            };
            let due = match kill_at {
                KillAt::After(ms) => started.elapsed() >= Duration::from_millis(*ms),
                KillAt::Phase(phase) => {
                    current.as_ref().is_some_and(|j| j.phase >= Some(*phase) || j.finished_at.is_some())
                }
            };
            if due || child.try_wait().expect("wait").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        // Killed just after recording its job, the command may have left one the loop above
        // did not see yet: once it is dead, the list is final.
        if job.is_none() {
            job = store.list_jobs().await.expect("jobs").into_iter().find(|j| j.finished_at.is_none());
        }
        let Some(job) = job else { continue };
        let at_kill = store.job(job.id).await.expect("job").expect("the job exists");
        if at_kill.finished_at.is_none() {
            killed_mid_move += 1;
            *killed_in_phase.entry(at_kill.phase.map(|p| p.to_string()).unwrap_or_default()).or_default() += 1;
        }

        // The restart: `jobs run` takes the job up once the dead runner's lease has run out.
        let deadline = Instant::now() + Duration::from_secs(120);
        let ended = loop {
            let (ok, text) = run_command(config.path(), &["jobs", "run"]).await;
            assert!(ok, "round {round}: {text}");
            let now = store.job(job.id).await.expect("job").expect("the job exists");
            if now.finished_at.is_some() {
                break now;
            }
            assert!(Instant::now() < deadline, "round {round}: the job did not end: {now}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let after = store.find_by_id(org.id).await.expect("find").expect("exists");
        match ended.state {
            JobState::Completed => {
                assert_eq!(&after.placement, to, "round {round}: {ended}");
                nothing_left_at(&store, &after, &before.placement, before.collection.as_str()).await;
            }
            JobState::RolledBack => {
                assert_eq!(after.placement, before.placement, "round {round}: {ended}");
                nothing_left_at(&store, &after, to, after.collection.as_str()).await;
            }
            _ => panic!("round {round}: neither completed nor rolled back: {ended}"),
        }
        *outcomes.entry(ended.state.to_string()).or_default() += 1;
        no_fence_left(&store).await;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    assert!(writes.other_errors.is_empty(), "{:?}", writes.other_errors);
    let org = store.find_by_id(org.id).await.expect("find").expect("exists");
    assert_eq!(stored(&store, &org).await, writes.model, "exactly what the application wrote");
    eprintln!("killed mid-move: {killed_mid_move}, by phase {killed_in_phase:?}; outcomes {outcomes:?}");
    assert!(killed_mid_move >= 10, "{killed_mid_move} kills hit a running move: {killed_in_phase:?}");
    assert!(killed_in_phase.contains_key("fenced"), "no kill hit the cut-over: {killed_in_phase:?}");
}

/// A running service, killed when dropped: a test that fails leaves no process behind.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kill -9 the service while deliveries are in flight (the receiver holds each answer for a
/// while) and while renames are in flight, restart it, and check that no event was lost:
/// every rename that was answered 200 reaches the receiver, in commit order, each under one
/// `webhook-id` however often it was sent; a rename cut short by the kill is delivered if
/// and only if it committed (the last name delivered is the organization's name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_survive_kill_9() {
    use http_adapter::receiver::{Received, Receiver};
    use serde_json::{Value, json};

    let receiver = Receiver::start_answering_after(0, Duration::from_millis(300)).await;
    let (config, port) = mongodb_config(
        // A fixed signing key, so that the token outlives each restart; a short lease, so
        // that a rename cut short by a kill is resolved within seconds of the restart.
        "jwt_secret = \"a signing key of more than thirty-two bytes\"\nwebhooks_allow_private = true\n\
         webhooks_retry_base_ms = 50\nwebhooks_poll_ms = 20\nwebhooks_timeout_seconds = 1\n\
         reconcile_lease_seconds = 3\nreconcile_interval_seconds = 1\nmongodb_command_timeout_ms = 1000\n",
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = Service(serve(&config.0, port).await);
    let created = client
        .post(format!("{base}/org/create"))
        .json(&json!({"organization_name": "Org 0", "email": "a@acme.test", "password": "correct horse"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let login = client
        .post(format!("{base}/admin/login"))
        .json(&json!({"email": "a@acme.test", "password": "correct horse"}))
        .send()
        .await
        .expect("login");
    let token = login.json::<Value>().await.expect("json")["access_token"].as_str().expect("token").to_owned();
    let hook = register_webhook(&base, &token, &receiver.url, &["organization.renamed"]).await;
    let secret = hook["secret"].as_str().expect("secret").to_owned();

    let rename = |n: usize| {
        client
            .put(format!("{base}/org/update"))
            .bearer_auth(&token)
            .json(&json!({"organization_name": format!("Org {n}")}))
            .send()
    };
    // A rename the last kill cut short holds the organization until the reconciler resolves
    // it (503, as a client would retry).
    let rename_retrying = async |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answered = rename(n).await.expect("rename");
            if answered.status() != 503 || Instant::now() >= deadline {
                return answered;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut committed = Vec::new();
    let mut next = 1;
    let mut random = random_below();
    for round in 0..6 {
        for _ in 0..3 {
            let answered = rename_retrying(next).await;
            assert_eq!(answered.status(), 200, "round {round}");
            committed.push(next);
            next += 1;
        }
        // One more rename, and the kill: in even rounds as soon as a request has reached the
        // receiver, which holds each answer for 300 ms (polling every 5 ms from before the
        // rename cannot miss one), so mid-delivery; in odd rounds at a random point of the
        // rename.
        let in_flight = tokio::spawn(rename(next));
        if round % 2 == 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while receiver.in_flight() == 0 {
                assert!(Instant::now() < deadline, "round {round}: nothing was delivered");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(random(40))).await;
        }
        signal(&child.0, "KILL");
        if let Ok(Ok(answered)) = in_flight.await
            && answered.status() == 200
        {
            committed.push(next);
        }
        next += 1;
        signal(&child.0, "KILL");
        let _ = child.0.wait();
        child = Service(serve(&config.0, port).await);
    }

    // The restarted service resolved any rename the last kill cut short before it listened:
    // the organization's name now is the last committed one, or the cut-short one.
    let cut_short = client
        .get(format!("{base}/org/get"))
        .query(&[("organization_name", format!("Org {}", next - 1))])
        .send()
        .await
        .expect("get");
    let current_name = if cut_short.status() == 200 {
        format!("Org {}", next - 1)
    } else {
        format!("Org {}", committed.last().expect("renames"))
    };
    // Every committed rename arrives, in order, once per webhook-id.
    let name_of = |r: &Received| {
        let body: Value = serde_json::from_str(&r.body).expect("json");
        body["data"]["name"].as_str().expect("name").to_owned()
    };
    let received = receiver.wait_for(Duration::from_secs(60), |r| r.iter().any(|r| name_of(r) == current_name)).await;
    signal(&child.0, "TERM");
    let _ = child.0.wait();

    let mut first_seen = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for request in &received {
        let name = name_of(request);
        let id = request.header("webhook-id").to_owned();
        let secret = domain::WebhookSecret::parse(&secret).expect("secret");
        let timestamp: i64 = request.header("webhook-timestamp").parse().expect("timestamp");
        assert!(secret.verify(
            &id,
            timestamp,
            request.body.as_bytes(),
            request.header("webhook-signature"),
            chrono::Utc::now()
        ));
        // A duplicate is the same event: the same id for the same name, and back to back
        // with its first sending (later events waited for it).
        if let Some(earlier) = ids.insert(name.clone(), id.clone()) {
            assert_eq!(earlier, id, "{name} was sent under two ids");
        } else {
            first_seen.push(name);
        }
    }
    let numbers: Vec<usize> =
        first_seen.iter().map(|n| n.trim_start_matches("Org ").parse().expect("a number")).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in commit order: {numbers:?}");
    for n in &committed {
        assert!(numbers.contains(n), "the committed rename to Org {n} was lost: {numbers:?}");
    }
    assert_eq!(first_seen.last(), Some(&current_name), "the last event delivered is the organization's name");
    eprintln!("renames committed {}, events delivered {}, requests {}", committed.len(), numbers.len(), received.len());
}

/// An OTLP/HTTP collector on loopback: it keeps every span it is sent, with the name of the
/// service that sent it, and stops when dropped.
struct Collector {
    /// Its base address, as `ORGSVC_OTLP_ENDPOINT` takes it.
    url: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>,
    server: actix_web::dev::ServerHandle,
}

impl Collector {
    async fn start() -> Self {
        use actix_web::{App, HttpResponse, HttpServer, web};
        use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message;

        type Spans = std::sync::Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>;
        async fn export(body: web::Bytes, spans: web::Data<Spans>) -> HttpResponse {
            let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                return HttpResponse::BadRequest().finish();
            };
            let mut kept = spans.lock().expect("lock");
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(name) => Some(name.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    kept.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
                }
            }
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse::default().encode_to_vec())
        }

        let spans = web::Data::new(Spans::default());
        let kept = spans.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(spans.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .route("/v1/traces", web::post().to(export))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let url = format!("http://127.0.0.1:{}", server.addrs()[0].port());
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, spans: kept.into_inner(), server: handle }
    }

    fn spans(&self) -> Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)> {
        self.spans.lock().expect("lock").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn int_attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<i64> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Value::IntValue(value) => Some(*value),
        _ => None,
    })
}

fn string_attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(value) => Some(value.clone()),
        _ => None,
    })
}

/// With `ORGSVC_OTLP_ENDPOINT` set, a request that arrives with a W3C `traceparent` is
/// exported to the collector as one span tree inside the caller's trace (request, use
/// case, store operation and password hashing), its log lines carry its request id and
/// trace id together, and a webhook delivery sends its own trace to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_the_callers_and_reach_the_collector_as_one_tree() {
    let collector = Collector::start().await;
    let port = free_port();
    let config = ConfigFile::new(&format!("http_addr = \"127.0.0.1:{port}\"\n{}", traced(&collector)));
    one_traced_session(config, port, &collector).await;
}

/// The same on MongoDB, where the store's operations are the driver's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_the_callers_and_reach_the_collector_as_one_tree_on_mongodb() {
    let collector = Collector::start().await;
    let (config, port) = mongodb_config(&traced(&collector));
    one_traced_session(config, port, &collector).await;
}

/// The settings of a service that exports its traces to `collector` and may deliver
/// webhooks to loopback.
fn traced(collector: &Collector) -> String {
    format!(
        "log_format = \"json\"\notlp_endpoint = \"{}\"\nwebhooks_allow_private = true\nwebhooks_poll_ms = 20\n",
        collector.url
    )
}

/// Creates an organization with a `traceparent`, logs in without one, registers a webhook
/// and renames the organization, then stops the service and checks what reached the
/// collector, the logs and the receiver.
async fn one_traced_session(config: ConfigFile, port: u16, collector: &Collector) {
    use http_adapter::receiver::Receiver;
    use serde_json::{Value, json};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER: &str = "00f067aa0ba902b7";
    let receiver = Receiver::start(0).await;
    // Batches leave every 100 ms rather than every 5 s (an OpenTelemetry SDK variable).
    let child = serve_with_env(&config.0, port, "info", &[("OTEL_BSP_SCHEDULE_DELAY", "100")]).await;
    let mut child = Service(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/org/create"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .header("x-request-id", "traced-create")
        .json(&json!({"organization_name": "Traced", "email": "a@acme.test", "password": "correct horse"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    // Without a traceparent, a request starts a trace of its own.
    let login = client
        .post(format!("{base}/admin/login"))
        .header("x-request-id", "traced-login")
        .json(&json!({"email": "a@acme.test", "password": "correct horse"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.expect("json")["access_token"].as_str().expect("token").to_owned();
    register_webhook(&base, &token, &receiver.url, &["organization.renamed"]).await;
    let renamed = client
        .put(format!("{base}/org/update"))
        .bearer_auth(&token)
        .json(&json!({"organization_name": "Traced Again"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(renamed.status(), 200);
    let delivered = receiver.wait_for(Duration::from_secs(30), |received| !received.is_empty()).await;

    // SIGTERM: the service sends its last traces before it exits.
    let lines = stopped_json_lines(&mut child.0);
    let spans = collector.spans();
    let named = |name: &'static str| spans.iter().filter(move |(_, s)| s.name == name).map(|(_, s)| s);

    // The request continues the caller's trace, named and described as OpenTelemetry's HTTP
    // conventions say.
    let of_request = |request_id: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| string_attribute(s, "request_id").as_deref() == Some(request_id))
            .unwrap_or_else(|| {
                panic!("no span of {request_id} in {:#?}", spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>())
            })
    };
    let request = of_request("traced-create");
    assert_eq!(hex(&request.trace_id), TRACE);
    assert_eq!(hex(&request.parent_span_id), CALLER);
    assert_eq!(request.name, "POST /org/create");
    assert_eq!(request.kind, opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32);
    assert_eq!(string_attribute(request, "http.route").as_deref(), Some("/org/create"));
    assert_eq!(string_attribute(request, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(int_attribute(request, "http.response.status_code"), Some(201));
    assert!(spans.iter().all(|(service, _)| service == "orgsvc"), "the resource names the service");
    // Below it, the use case; below that, the password's hashing and the store's create.
    let child_of = |parent: &opentelemetry_proto::tonic::trace::v1::Span, name: &'static str| {
        named(name)
            .find(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
            .unwrap_or_else(|| panic!("no {name} span below {}", parent.name))
            .clone()
    };
    let use_case = child_of(request, "use_case.create");
    let hashing = child_of(&use_case, "password_hash");
    let stored = child_of(&use_case, "organization.create");
    assert!(hashing.end_time_unix_nano <= stored.start_time_unix_nano, "the password is hashed before the write");
    for span in [&use_case, &hashing, &stored] {
        assert!(request.start_time_unix_nano <= span.start_time_unix_nano);
        assert!(span.end_time_unix_nano <= request.end_time_unix_nano);
    }

    // A request without a traceparent gets a trace of its own, verification included.
    let login = of_request("traced-login");
    assert_eq!(login.name, "POST /admin/login");
    assert!(login.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&login.trace_id), TRACE);
    child_of(&child_of(login, "use_case.login"), "password_hash");

    // The log lines of a request name its request id and trace id together.
    let served = |request_id: &str| {
        lines
            .iter()
            .find(|l| l["message"] == "request served" && l["span"]["request_id"] == request_id)
            .unwrap_or_else(|| panic!("no line for {request_id}"))
            .clone()
    };
    assert_eq!(served("traced-create")["span"]["trace_id"], TRACE);
    assert_eq!(served("traced-login")["span"]["trace_id"], hex(&login.trace_id));
    assert!(lines.iter().all(|l| l["span"].get("otel.name").is_none()), "span names stay out of the logs");

    // The delivery sends its trace along: the receiver's work would join it.
    let traceparent = delivered[0].header("traceparent").to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    let delivery = named("webhook.delivery")
        .find(|s| hex(&s.trace_id) == parts[1])
        .unwrap_or_else(|| panic!("no delivery span in the trace of {traceparent}"));
    assert_eq!(hex(&delivery.span_id), parts[2]);
    assert_eq!(parts[3], "01", "sampled");
}
