//! The service under test: the release `orgsvc` binary next to this one, started as its
//! own process with benchmark settings, and stopped with SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where the service keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    /// The in-memory store.
    Memory,
    /// Fresh databases on a MongoDB server.
    MongoDb {
        /// The server.
        uri: String,
        /// The master database, new for each use.
        database: String,
    },
}

impl Storage {
    /// Fresh databases on the server at `uri`.
    pub fn mongodb(uri: &str) -> Self {
        Self::MongoDb { uri: uri.to_owned(), database: format!("bench_{}", uuid::Uuid::new_v4().simple()) }
    }

    /// The name in the results table.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::MongoDb { .. } => "mongodb",
        }
    }
}

/// The password hashing parameters the service runs with.
#[derive(Debug, Clone, Copy)]
pub enum Hashing {
    /// The production default (OWASP: 19 MiB, 2 passes, 1 lane).
    Owasp,
    /// 1 MiB, 1 pass: for scenarios that create many organizations and measure the store.
    Cheap,
}

/// A running service.
pub struct Service {
    child: Child,
    port: u16,
    storage: Storage,
    /// A client with a connection pool for the load.
    pub client: reqwest::Client,
}

impl Service {
    /// Starts the service and waits until it is ready.
    pub async fn start(storage: &Storage, hashing: Hashing) -> anyhow::Result<Self> {
        Self::start_with(storage, hashing, &[]).await
    }

    /// Starts the service with extra settings and waits until it is ready.
    pub async fn start_with(storage: &Storage, hashing: Hashing, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let binary = std::env::current_exe()?.with_file_name("orgsvc");
        if !binary.exists() {
            bail!("{} not found: build it with `cargo build --release -p orgsvc`", binary.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            // The production log format at the default level: every request's log line is
            // part of what is measured (written to /dev/null).
            .env_remove("RUST_LOG")
            .env("ORGSVC_LOG_FORMAT", "json")
            .env("ORGSVC_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE", "0")
            .env("ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE", "0")
            .env("ORGSVC_RATE_LIMIT_REFRESH_PER_MINUTE", "0")
            .env("ORGSVC_LOCKOUT_THRESHOLD", "1000000")
            .env("ORGSVC_HASH_QUEUE", "10000")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Hashing::Cheap = hashing {
            command.env("ORGSVC_ARGON2_MEMORY_KIB", "1024").env("ORGSVC_ARGON2_ITERATIONS", "1");
        }
        if let Storage::MongoDb { uri, database } = storage {
            command
                .env("ORGSVC_STORAGE", "mongodb")
                .env("ORGSVC_MONGODB_URI", uri)
                .env("ORGSVC_MONGODB_DATABASE", database)
                .env("ORGSVC_MONGODB_MAX_POOL_SIZE", "64");
        }
        command.envs(extra.iter().copied());
        let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        Self::once_ready(child, port, storage.clone()).await
    }

    /// Starts `orgsvc-hello`, the actix-web hello world that answers `GET /org/get` with the
    /// same JSON, and waits until it is ready.
    pub async fn start_hello() -> anyhow::Result<Self> {
        let binary = std::env::current_exe()?.with_file_name("orgsvc-hello");
        if !binary.exists() {
            bail!("{} not found: build it with `cargo build --release -p bench`", binary.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&binary)
            .env("ORGSVC_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Self::once_ready(child, port, Storage::Memory).await
    }

    /// The service in `child` on `port`, once it answers `/health/ready`.
    async fn once_ready(child: Child, port: u16, storage: Storage) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        let service = Self { child, port, storage, client };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = service.client.get(service.url("/health/ready")).send().await
                && response.status() == 200
            {
                return Ok(service);
            }
            if Instant::now() > deadline {
                service.stop().await;
                bail!("the service did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A driver client on the service's MongoDB server.
    pub async fn mongo_client(&self) -> anyhow::Result<mongodb::Client> {
        let Storage::MongoDb { uri, .. } = &self.storage else { bail!("not on MongoDB") };
        Ok(mongodb::Client::with_uri_str(uri).await?)
    }

    /// The service's resident memory, KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the service with SIGTERM and waits for it.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = tokio::task::spawn_blocking(move || self.child.wait()).await;
    }
}

/// CPU seconds (user and system) a process has used so far, from `/proc` (Linux); `None`
/// where that cannot be read.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start with field 3, so utime (14) and stime (15) are the 12th and 13th there.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks / 100.0)
}

/// Hashes with the production parameters on a reused memory buffer, as the service's
/// hashing threads do.
struct Hasher {
    argon2: argon2::Argon2<'static>,
    memory: Vec<argon2::Block>,
}

impl Hasher {
    fn new() -> Self {
        let params = argon2::Params::DEFAULT;
        Self { memory: vec![argon2::Block::default(); params.block_count()], argon2: argon2::Argon2::from(params) }
    }

    fn hash(&mut self) {
        let mut out = [0u8; 32];
        let _ = self.argon2.hash_password_into_with_memory(
            b"benchmark password",
            b"benchmark salt",
            &mut out,
            &mut self.memory,
        );
    }
}

/// The time of one argon2id hash with the production parameters on this machine: the
/// fastest of several, the cost of a hash that nothing else disturbs.
pub fn single_hash_time() -> Duration {
    let mut hasher = Hasher::new();
    // One hash first, so that page faults of the first use of the memory do not count.
    hasher.hash();
    (0..15)
        .map(|_| {
            let started = Instant::now();
            hasher.hash();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Hashes per second that `threads` threads sustain hashing at once for `duration`.
pub fn parallel_hash_rate(threads: usize, duration: Duration) -> f64 {
    let started = Instant::now();
    let counts: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut hasher = Hasher::new();
                    let mut n = 0;
                    while started.elapsed() < duration {
                        hasher.hash();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<usize>() as f64 / started.elapsed().as_secs_f64()
}

/// What the database server holds: the files and bytes under its storage path, and its
/// resident memory.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    /// Files under the storage path.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The server's resident memory.
    pub rss_kib: u64,
}

/// The footprint of the test server whose process id `scripts/with-test-mongo.sh` exports
/// (its storage path is read from its command line), if there is one.
pub fn database_server_footprint() -> Option<Footprint> {
    let pid = std::env::var("ORGSVC_TEST_MONGODB_PID").ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let path = args.iter().position(|a| a == "--storage-path").and_then(|i| args.get(i + 1))?;
    let (mut files, mut bytes) = (0, 0);
    let mut pending = vec![std::path::PathBuf::from(path)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))?;
    Some(Footprint { files, bytes, rss_kib })
}
