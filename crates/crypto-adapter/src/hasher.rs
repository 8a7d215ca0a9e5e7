//! Argon2id password hashing. Hashing costs tens of milliseconds of CPU and ~19 MiB of
//! memory, so it runs on a pool of its own threads (never on an executor thread), at most
//! `concurrency` at once, with at most `queue` more waiting; beyond that callers get
//! [`HashError::Busy`] rather than a growing queue that exhausts memory.
//!
//! The pool's threads run at the lowest scheduling class the OS offers without privileges
//! (`SCHED_IDLE` on Linux): they use every idle cycle, but a thread serving requests always
//! preempts them, so a login flood cannot slow other requests down.

use std::cell::RefCell;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash as Phc, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use domain::{Password, PasswordHash};
use ports::{HashError, PasswordHasher};
use tokio::sync::Semaphore;

/// How many hashes may run and wait at once.
#[derive(Debug, Clone, Copy)]
pub struct HashingLimits {
    /// Hashes running at once.
    pub concurrency: usize,
    /// Hashes waiting for a slot; more are refused.
    pub queue: usize,
}

impl Default for HashingLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self { concurrency: cores, queue: cores * 64 }
    }
}

/// The hasher's metrics: how many hashes wait for a slot, and how long they waited.
#[derive(Clone)]
struct HashMetrics {
    queue_depth: prometheus::IntGauge,
    wait_seconds: prometheus::Histogram,
    refused: prometheus::IntCounter,
}

impl HashMetrics {
    fn new() -> Self {
        let buckets = vec![0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        // The names and help texts are constants, so these cannot fail.
        #[allow(clippy::unwrap_used)]
        Self {
            queue_depth: prometheus::IntGauge::new(
                "orgsvc_password_hash_queue_depth",
                "Password hashes waiting for a hashing slot.",
            )
            .unwrap(),
            wait_seconds: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "orgsvc_password_hash_wait_seconds",
                    "Time a password hash waited for a hashing slot.",
                )
                .buckets(buckets),
            )
            .unwrap(),
            refused: prometheus::IntCounter::new(
                "orgsvc_password_hash_refused_total",
                "Password hashes refused because the queue was full (answered 503).",
            )
            .unwrap(),
        }
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads that run hashing jobs, at idle priority.
struct HashPool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl HashPool {
    fn new(threads: usize) -> anyhow::Result<Self> {
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            // The hasher is gone.
                            Err(_) => break,
                        }
                    }
                })
                .context("starting a hashing thread")?;
        }
        Ok(Self { jobs: std::sync::Mutex::new(sender) })
    }

    async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> anyhow::Result<R> {
        let (done, result) = tokio::sync::oneshot::channel();
        // The span starts when a thread takes the job, so a trace shows the wait for a
        // thread and the hashing apart; it belongs to the caller's span.
        let caller = tracing::Span::current();
        let job: Job = Box::new(move || {
            let span = tracing::debug_span!(parent: &caller, "password_hash");
            let _ = done.send(span.in_scope(work));
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| anyhow!("hashing threads stopped"))?;
        result.await.context("a hashing job was dropped")
    }
}

/// Moves the current thread to the idle scheduling class, where the OS allows it.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(error) =
            set_thread_priority_and_policy(thread_native_id(), thread_priority::ThreadPriority::Min, idle)
        {
            tracing::warn!(?error, "could not lower the hashing threads' priority");
        }
    }
}

/// Argon2id hashing with explicit parameters.
#[derive(Clone)]
pub struct Argon2Hasher {
    pool: Arc<HashPool>,
    params: Params,
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    dummy: Arc<str>,
    metrics: HashMetrics,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// The OWASP recommendation: 19 MiB, 2 iterations, 1 lane.
    pub fn owasp_params() -> Params {
        Params::DEFAULT
    }

    /// A hasher with these parameters and limits. It computes its dummy hash (for unknown
    /// accounts) once, here, with the same parameters, so that a check against it costs as
    /// much as a real one.
    pub fn new(params: Params, limits: HashingLimits) -> anyhow::Result<Self> {
        let concurrency = limits.concurrency.max(1);
        let dummy_password: [u8; 16] = rand::random();
        let dummy = hash_phc(&params, &dummy_password).context("computing the dummy hash")?;
        Ok(Self {
            pool: Arc::new(HashPool::new(concurrency)?),
            params,
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency + limits.queue)),
            dummy: dummy.into(),
            metrics: HashMetrics::new(),
        })
    }

    /// Registers the hasher's metrics (queue depth, wait time, refusals).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> anyhow::Result<()> {
        registry.register(Box::new(self.metrics.queue_depth.clone()))?;
        registry.register(Box::new(self.metrics.wait_seconds.clone()))?;
        registry.register(Box::new(self.metrics.refused.clone()))?;
        Ok(())
    }

    /// Runs `work` on the hashing threads once admitted and given a slot.
    async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> Result<R, HashError> {
        let _admitted = self.admitted.try_acquire().map_err(|_| {
            self.metrics.refused.inc();
            HashError::Busy
        })?;
        let waiting = std::time::Instant::now();
        self.metrics.queue_depth.inc();
        let running = self.running.acquire().await;
        self.metrics.queue_depth.dec();
        self.metrics.wait_seconds.observe(waiting.elapsed().as_secs_f64());
        let _running = running.context("hashing semaphore closed")?;
        self.pool.run(work).await.map_err(HashError::Failed)
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

thread_local! {
    /// The calling thread's argon2 memory, kept from one hash to the next. Allocating and
    /// faulting in ~19 MiB for every hash costs about a tenth of the hashing throughput when
    /// every core hashes at once (docs/benchmarks.md).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's argon2 memory, sized for `params`, and zeroes the memory
/// afterwards so that no state derived from a password outlives its hash.
fn with_memory<R>(params: &Params, f: impl FnOnce(&mut [Block]) -> R) -> R {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let needed = params.block_count();
        if memory.len() != needed {
            *memory = vec![Block::default(); needed];
        }
        let result = f(&mut memory);
        memory.fill(Block::default());
        result
    })
}

/// Hashes `password` with `params` and a fresh random salt into a PHC string.
fn hash_phc(params: &Params, password: &[u8]) -> anyhow::Result<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = Salt::new(&salt_bytes).map_err(|e| anyhow!("salt: {e}"))?;
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    with_memory(params, |memory| {
        argon2(params).hash_password_into_with_memory(password, &salt_bytes, &mut out, memory)
    })
    .map_err(|e| anyhow!("hashing failed: {e}"))?;
    let phc = Phc {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow!("parameters: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, with the algorithm, version and
/// parameters the string names (so hashes made with older parameters still verify), compared
/// in constant time. A string that does not parse matches nothing.
fn verify_phc(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = Phc::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else { return false };
    let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let mut out = vec![0u8; expected.len()];
    let hashed = with_memory(&params, |memory| {
        Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(password, salt, &mut out, memory)
    });
    hashed.is_ok() && Output::new(&out).is_ok_and(|computed| &computed == expected)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: Password) -> Result<PasswordHash, HashError> {
        let params = self.params.clone();
        let phc =
            self.run(move || hash_phc(&params, password.expose().as_bytes())).await?.map_err(HashError::Failed)?;
        PasswordHash::from_phc(phc).context("argon2 produced an unexpected hash").map_err(HashError::Failed)
    }

    async fn verify(&self, password: Password, hash: Option<PasswordHash>) -> Result<bool, HashError> {
        let known = hash.is_some();
        let phc = hash.map_or_else(|| self.dummy.to_string(), |h| h.as_phc().to_owned());
        // The parameters come from the PHC string, so hashes made with older parameters
        // still verify.
        // A password that normalization changed is also tried as typed, so that hashes made
        // before passwords were normalized keep working; the dummy hash gets the same two
        // tries, so an unknown email still costs what a wrong password costs.
        let matches = self
            .run(move || {
                verify_phc(password.expose().as_bytes(), &phc)
                    || password.as_typed().is_some_and(|typed| verify_phc(typed.as_bytes(), &phc))
            })
            .await?;
        Ok(known && matches)
    }

    fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        // Only a weaker hash is replaced: another algorithm or version, or less memory or
        // fewer passes than now. During a rolling change of parameters, instances with the
        // old ones must not downgrade what the new ones upgraded.
        let Ok(parsed) = Phc::new(hash.as_phc()) else { return true };
        let Ok(params) = Params::try_from(&parsed) else { return true };
        parsed.algorithm.as_str() != "argon2id"
            || parsed.version != Some(Version::V0x13.into())
            || params.m_cost() < self.params.m_cost()
            || params.t_cost() < self.params.t_cost()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Params {
        Params::new(1024, 1, 1, None).expect("params")
    }

    fn password(text: &str) -> Password {
        Password::parse(text.to_owned()).expect("password")
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let hasher = Argon2Hasher::new(Argon2Hasher::owasp_params(), HashingLimits::default()).expect("hasher");
        let a = hasher.hash(password("correct horse")).await.expect("hash");
        let b = hasher.hash(password("correct horse")).await.expect("hash");
        assert!(a.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", a.as_phc());
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.as_phc().contains("correct horse"));
        assert!(hasher.verify(password("correct horse"), Some(a.clone())).await.expect("verify"));
        assert!(!hasher.verify(password("wrong horse"), Some(a)).await.expect("verify"));
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_reference_implementation() {
        // The hasher computes on reused memory rather than through the crate's own
        // PasswordHasher; both must accept each other's PHC strings.
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = Argon2Hasher::new(fast(), HashingLimits::default()).expect("hasher");
        let ours = hasher.hash(password("correct horse")).await.expect("hash");
        let reference = argon2(&fast());
        assert!(reference.verify_password(b"correct horse", ours.as_phc()).is_ok());
        assert!(reference.verify_password(b"wrong horse", ours.as_phc()).is_err());
        let theirs = reference.hash_password(b"correct horse").expect("hash").to_string();
        let theirs = PasswordHash::from_phc(theirs).expect("phc");
        assert!(hasher.verify(password("correct horse"), Some(theirs.clone())).await.expect("verify"));
        assert!(!hasher.verify(password("wrong horse"), Some(theirs)).await.expect("verify"));
    }

    #[test]
    fn memory_is_zeroed_after_each_hash() {
        let phc = hash_phc(&fast(), b"correct horse").expect("hash");
        assert!(verify_phc(b"correct horse", &phc));
        MEMORY.with(|memory| {
            let memory = memory.borrow();
            assert_eq!(memory.len(), fast().block_count(), "the memory is kept for the next hash");
            assert!(
                memory.iter().all(|block| block.as_ref().iter().all(|&word| word == 0)),
                "no password-derived state is left"
            );
        });
    }

    #[test]
    fn malformed_or_tampered_hashes_match_nothing() {
        let phc = hash_phc(&fast(), b"correct horse").expect("hash");
        assert!(!verify_phc(b"correct horse", "not a phc string"));
        assert!(!verify_phc(b"correct horse", &phc.replace("$argon2id$", "$argon2x$")));
        let (head, tail) = phc.rsplit_once('$').expect("hash part");
        let flipped = if tail.starts_with('A') { tail.replacen('A', "B", 1) } else { format!("A{}", &tail[1..]) };
        assert!(!verify_phc(b"correct horse", &format!("{head}${flipped}")));
    }

    #[tokio::test]
    async fn no_hash_never_verifies_even_with_the_dummy_password() {
        let hasher = Argon2Hasher::new(fast(), HashingLimits::default()).expect("hasher");
        assert!(!hasher.verify(password("anything at all"), None).await.expect("verify"));
    }

    #[tokio::test]
    async fn passwords_are_normalized_and_hashes_of_unnormalized_ones_still_verify() {
        let hasher = Argon2Hasher::new(fast(), HashingLimits::default()).expect("hasher");
        let (composed, decomposed) = ("caf\u{e9} au lait", "cafe\u{301} au lait");
        // New hashes are of the normalized form: either spelling verifies.
        let hash = hasher.hash(password(decomposed)).await.expect("hash");
        assert!(hasher.verify(password(composed), Some(hash.clone())).await.expect("verify"));
        assert!(hasher.verify(password(decomposed), Some(hash)).await.expect("verify"));
        // A hash made before normalization, from the decomposed bytes, still verifies for
        // the password typed that way.
        use argon2::password_hash::PasswordHasher as _;
        let legacy = argon2(&fast()).hash_password(decomposed.as_bytes()).expect("hash").to_string();
        let legacy = PasswordHash::from_phc(legacy).expect("phc");
        assert!(hasher.verify(password(decomposed), Some(legacy.clone())).await.expect("verify"));
        assert!(!hasher.verify(password("cafe au lait!"), Some(legacy)).await.expect("verify"));
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_still_verify() {
        let old = Argon2Hasher::new(fast(), HashingLimits::default()).expect("hasher");
        let hash = old.hash(password("correct horse")).await.expect("hash");
        let new = Argon2Hasher::new(Argon2Hasher::owasp_params(), HashingLimits::default()).expect("hasher");
        assert!(new.verify(password("correct horse"), Some(hash)).await.expect("verify"));
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_need_a_rehash() {
        let old = Argon2Hasher::new(fast(), HashingLimits::default()).expect("hasher");
        let current = Argon2Hasher::new(Argon2Hasher::owasp_params(), HashingLimits::default()).expect("hasher");
        let outdated = old.hash(password("correct horse")).await.expect("hash");
        let fresh = current.hash(password("correct horse")).await.expect("hash");
        assert!(current.needs_rehash(&outdated));
        assert!(!current.needs_rehash(&fresh));
        assert!(!old.needs_rehash(&fresh), "never a downgrade");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn hashing_runs_off_the_executor_thread() {
        // On a current-thread runtime a hash computed on the executor would block this
        // ticker; on the blocking pool the ticker keeps running while the hash is computed.
        let hasher = Argon2Hasher::new(Argon2Hasher::owasp_params(), HashingLimits::default()).expect("hasher");
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        };
        hasher.hash(password("correct horse")).await.expect("hash");
        ticker.abort();
        assert!(ticks.load(std::sync::atomic::Ordering::SeqCst) > 1);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_yield_to_every_other_thread() {
        use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy};
        let hasher = Argon2Hasher::new(fast(), HashingLimits::default()).expect("hasher");
        let policy = hasher.run(thread_schedule_policy).await.expect("run").expect("policy");
        assert_eq!(policy, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle));
        assert_ne!(thread_schedule_policy().expect("policy"), policy, "callers keep their own class");
    }

    #[tokio::test]
    async fn beyond_the_queue_callers_are_told_to_retry() {
        let hasher = Argon2Hasher::new(Argon2Hasher::owasp_params(), HashingLimits { concurrency: 1, queue: 1 })
            .expect("hasher");
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(password("correct horse")).await })
            })
            .collect();
        let mut busy = 0;
        let mut done = 0;
        for call in calls {
            match call.await.expect("task") {
                Ok(_) => done += 1,
                Err(HashError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(done >= 2 && busy >= 1, "done {done}, busy {busy}");
        assert_eq!(done + busy, 6);
    }
}
