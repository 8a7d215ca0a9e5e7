//! The organization cache: the master database's answers to the lookups every request makes
//! (an organization by key or id, an admin by id, a session), kept in process and kept
//! coherent across instances by a change stream on the master collections.
//!
//! An entry is used only while it can be trusted:
//! - every write this instance makes evicts what it changed before it answers, so an
//!   instance always reads its own writes;
//! - on a replica set, each instance follows a change stream of the master database and
//!   evicts what another instance (or the CLI, a job, the reconciler) changed, within the
//!   stream's delay; the cache is bypassed whenever the stream has not answered for
//!   [`STREAM_SILENCE_LIMIT`], so a stalled or broken stream never lets a stale entry be
//!   served for longer than that;
//! - every entry also expires after the safety TTL (`ORGSVC_CACHE_TTL_SECONDS`), which is
//!   the whole bound on a server without change streams (a standalone mongod).
//!
//! A read that misses fills the cache only if nothing was evicted since it began (a
//! generation number taken before the read), so a read that raced with a write never
//! stores what the write replaced.

mod store;
mod watch;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{Admin, AdminId, ApiKey, ApiKeyHash, ApiKeyId, OrgId, OrgKey, Organization, Session, SessionId};
use ports::Clock;

pub use store::CachedStore;

/// How long the change stream may stay silent (no event, no empty answer) before the cache
/// stops trusting its entries. The stream's server answers within half a second even when
/// nothing changed, so a healthy stream is never silent this long.
pub const STREAM_SILENCE_LIMIT: Duration = Duration::from_secs(2);

/// How long the server holds the stream's request open when nothing changes.
const STREAM_AWAIT: Duration = Duration::from_millis(500);

/// What the cache holds and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether reads are cached at all (`ORGSVC_CACHE`).
    pub enabled: bool,
    /// The longest an entry is used (`ORGSVC_CACHE_TTL_SECONDS`): on a server without change
    /// streams, how late an instance sees another instance's change.
    pub ttl: Duration,
    /// The most entries kept (`ORGSVC_CACHE_MAX_ENTRIES`).
    pub max_entries: u64,
    /// The most memory the entries take, in bytes, as estimated (`ORGSVC_CACHE_MAX_MEMORY_MB`).
    pub max_memory: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { enabled: true, ttl: Duration::from_secs(5), max_entries: 100_000, max_memory: 64 << 20 }
    }
}

/// How the cache has done since the instance started, for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    capacity_evictions: AtomicU64,
    reconnects: AtomicU64,
    resets: AtomicU64,
    lag_ms: AtomicI64,
    following: AtomicBool,
}

/// A reading of [`CacheStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSnapshot {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that read the database (the cache off, untrusted, or without the entry).
    pub misses: u64,
    /// Entries removed because what they hold changed.
    pub evictions: u64,
    /// Entries removed to stay within the bounds.
    pub capacity_evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Times the change stream was opened again after an error.
    pub reconnects: u64,
    /// Times the whole cache was dropped because the stream could not resume where it was.
    pub resets: u64,
    /// How long ago the last change the stream delivered was made, in milliseconds, when
    /// it was delivered.
    pub lag_ms: i64,
    /// Whether the change stream is followed and answering now.
    pub following: bool,
}

/// What the cache is keyed by. A key maps to the organization's id only, so that one
/// eviction by id covers every name the organization was found under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    OrgKey(OrgKey),
    Org(OrgId),
    Admin(AdminId),
    Session(SessionId),
    /// An API key by the hash of its secret: maps to the key's id, like a name to its
    /// organization's id.
    ApiKeyByHash(ApiKeyHash),
    ApiKeyById(ApiKeyId),
}

/// A cached answer.
#[derive(Debug, Clone)]
enum Value {
    OrgIdOf(OrgId),
    Org(Arc<Organization>),
    Admin(Arc<Admin>),
    /// The session and whether it is revoked.
    Session(Arc<(Session, bool)>),
    ApiKeyIdOf(ApiKeyId),
    ApiKey(Arc<ApiKey>),
}

impl Value {
    /// A rough size in bytes, for the memory bound.
    fn weight(&self) -> usize {
        let strings = match self {
            Value::OrgIdOf(_) | Value::ApiKeyIdOf(_) => 0,
            Value::ApiKey(key) => key.name.as_str().len() + key.prefix.len(),
            Value::Org(org) => {
                org.name.as_str().len() * 2 + org.collection.as_str().len() + org.placement.cluster.as_str().len()
            }
            Value::Admin(admin) => admin.email.as_str().len() + admin.password_hash.as_phc().len(),
            Value::Session(_) => 0,
        };
        std::mem::size_of::<Key>() + std::mem::size_of::<Entry>() + 64 + strings
    }
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    at: DateTime<Utc>,
}

/// `heard_at_ms` when the stream has not answered since it was (re)opened.
const NOT_HEARD: i64 = i64::MIN;

/// A generation number read before a database read; the answer is stored only if no
/// eviction happened since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket(u64);

/// The cache itself, shared by the store decorator and the stream follower.
pub(crate) struct MasterCache {
    entries: moka::sync::Cache<Key, Entry>,
    ttl: chrono::Duration,
    clock: Arc<dyn Clock>,
    /// Held while an answer is stored and while entries are evicted, so that a store checks
    /// its ticket and inserts with no eviction in between.
    generation: Mutex<u64>,
    /// Whether a change stream keeps the cache coherent; without one, entries are trusted
    /// for the TTL.
    follows_stream: AtomicBool,
    /// When the change stream last answered (milliseconds since the epoch), or
    /// [`NOT_HEARD`]: entries are trusted only while that is recent.
    heard_at_ms: AtomicI64,
    stats: Arc<CacheStats>,
    /// Set by the tests: the next time the stream is opened again, it resumes from a token
    /// the server never issued, as if its position had fallen off the oplog.
    #[cfg(feature = "test-support")]
    forget_position: AtomicBool,
}

impl MasterCache {
    fn new(settings: &CacheSettings, clock: Arc<dyn Clock>) -> Self {
        let stats = Arc::new(CacheStats::default());
        let counted = Arc::clone(&stats);
        // Every entry weighs at least its share of the memory bound at the entry bound, so the
        // one weighted capacity enforces both.
        let floor = settings.max_memory / settings.max_entries.max(1);
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.max_memory)
            .weigher(move |_: &Key, entry: &Entry| {
                let weight = u64::try_from(entry.value.weight()).unwrap_or(u64::MAX).max(floor);
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.capacity_evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            entries,
            ttl: chrono::Duration::from_std(settings.ttl).unwrap_or(chrono::Duration::MAX),
            clock,
            generation: Mutex::new(0),
            follows_stream: AtomicBool::new(false),
            heard_at_ms: AtomicI64::new(NOT_HEARD),
            stats,
            #[cfg(feature = "test-support")]
            forget_position: AtomicBool::new(false),
        }
    }

    fn generation(&self) -> std::sync::MutexGuard<'_, u64> {
        self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on entries are trusted only while the change stream answers; until it
    /// first does, they are not.
    fn follow_stream(&self) {
        self.heard_at_ms.store(NOT_HEARD, Ordering::Release);
        self.follows_stream.store(true, Ordering::Release);
    }

    /// The change stream answered a request made at `asked`: every change made before then
    /// has been evicted.
    fn heard_from_stream(&self, asked: DateTime<Utc>) {
        self.heard_at_ms.fetch_max(asked.timestamp_millis(), Ordering::AcqRel);
        self.stats.following.store(true, Ordering::Relaxed);
    }

    /// The change stream failed: stop trusting entries until it answers again.
    fn lost_stream(&self) {
        self.heard_at_ms.store(NOT_HEARD, Ordering::Release);
        self.stats.following.store(false, Ordering::Relaxed);
    }

    /// Whether entries may be used at `now`.
    fn trusted(&self, now: DateTime<Utc>) -> bool {
        if !self.follows_stream.load(Ordering::Acquire) {
            return true;
        }
        let heard = self.heard_at_ms.load(Ordering::Acquire);
        let limit = i64::try_from(STREAM_SILENCE_LIMIT.as_millis()).unwrap_or(i64::MAX);
        heard != NOT_HEARD && now.timestamp_millis().saturating_sub(heard) < limit
    }

    /// The entry under `key`, if it may be used now. Not counted: a lookup may need several.
    fn get(&self, key: &Key) -> Option<Value> {
        let now = self.clock.now();
        if !self.trusted(now) {
            return None;
        }
        let entry = self.entries.get(key)?;
        (now - entry.at < self.ttl).then_some(entry.value)
    }

    fn hit(&self) {
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn miss(&self) {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Taken before a database read whose answer may be stored.
    fn ticket(&self) -> Ticket {
        Ticket(*self.generation())
    }

    /// Stores answers read under `ticket`, unless something was evicted since.
    fn fill(&self, ticket: Ticket, answers: impl IntoIterator<Item = (Key, Value)>) {
        let at = self.clock.now();
        let generation = self.generation();
        if *generation != ticket.0 {
            return;
        }
        for (key, value) in answers {
            self.entries.insert(key, Entry { value, at });
        }
    }

    /// Removes entries whose data changed.
    fn evict(&self, keys: impl IntoIterator<Item = Key>) {
        let mut generation = self.generation();
        *generation += 1;
        for key in keys {
            if self.entries.remove(&key).is_some() {
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Removes the entries matching `which` (an organization's admin, an admin's sessions).
    fn evict_where(&self, which: impl Fn(&Value) -> bool + Send + Sync + 'static) {
        let mut generation = self.generation();
        *generation += 1;
        if self.entries.invalidate_entries_if(move |_, entry| which(&entry.value)).is_err() {
            // Only possible if the cache was built without invalidation closures; dropping
            // everything is always safe.
            self.entries.invalidate_all();
        }
    }

    /// Drops every entry: what changed meanwhile is unknown.
    fn clear(&self) {
        let mut generation = self.generation();
        *generation += 1;
        self.entries.invalidate_all();
    }

    fn snapshot(&self) -> CacheSnapshot {
        let s = &self.stats;
        CacheSnapshot {
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            evictions: s.evictions.load(Ordering::Relaxed),
            capacity_evictions: s.capacity_evictions.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            resets: s.resets.load(Ordering::Relaxed),
            lag_ms: s.lag_ms.load(Ordering::Relaxed),
            following: s.following.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ports::ManualClock;

    fn cache(clock: &Arc<ManualClock>) -> MasterCache {
        MasterCache::new(&CacheSettings::default(), Arc::clone(clock) as Arc<dyn Clock>)
    }

    fn session(admin: AdminId, org: OrgId) -> (SessionId, Value) {
        let now = Utc::now();
        let session = Session { id: SessionId::new(), admin_id: admin, org_id: org, created_at: now, expires_at: now };
        (session.id, Value::Session(Arc::new((session, false))))
    }

    #[test]
    fn an_entry_is_used_only_within_the_ttl() {
        let clock = Arc::new(ManualClock::starting_at(Utc::now()));
        let cache = cache(&clock);
        let (id, value) = session(AdminId::new(), OrgId::new());
        cache.fill(cache.ticket(), [(Key::Session(id), value)]);
        assert!(cache.get(&Key::Session(id)).is_some());
        clock.advance(Duration::from_millis(4999));
        assert!(cache.get(&Key::Session(id)).is_some());
        clock.advance(Duration::from_millis(1));
        assert!(cache.get(&Key::Session(id)).is_none(), "expired at the TTL");
    }

    #[test]
    fn an_answer_read_before_an_eviction_is_not_stored() {
        let clock = Arc::new(ManualClock::starting_at(Utc::now()));
        let cache = cache(&clock);
        let (id, value) = session(AdminId::new(), OrgId::new());
        let ticket = cache.ticket();
        // A write evicts while the read that took the ticket is in flight.
        cache.evict([Key::Session(id)]);
        cache.fill(ticket, [(Key::Session(id), value.clone())]);
        assert!(cache.get(&Key::Session(id)).is_none(), "the racing read's answer may be stale");
        cache.fill(cache.ticket(), [(Key::Session(id), value)]);
        assert!(cache.get(&Key::Session(id)).is_some());
    }

    #[test]
    fn sessions_are_evicted_by_admin_and_organization() {
        let clock = Arc::new(ManualClock::starting_at(Utc::now()));
        let cache = cache(&clock);
        let (admin, other_admin, org) = (AdminId::new(), AdminId::new(), OrgId::new());
        let (mine, a) = session(admin, org);
        let (theirs, b) = session(other_admin, OrgId::new());
        cache.fill(cache.ticket(), [(Key::Session(mine), a), (Key::Session(theirs), b)]);
        cache.evict_where(move |v| matches!(v, Value::Session(s) if s.0.admin_id == admin));
        assert!(cache.get(&Key::Session(mine)).is_none());
        assert!(cache.get(&Key::Session(theirs)).is_some());
        cache.evict_where(|_| true);
        assert!(cache.get(&Key::Session(theirs)).is_none());
    }

    #[test]
    fn with_a_stream_entries_are_trusted_only_while_it_answers() {
        let clock = Arc::new(ManualClock::starting_at(Utc::now()));
        let cache = cache(&clock);
        let (id, value) = session(AdminId::new(), OrgId::new());
        cache.fill(cache.ticket(), [(Key::Session(id), value)]);
        cache.follow_stream();
        assert!(cache.get(&Key::Session(id)).is_none(), "not before the stream first answers");
        cache.heard_from_stream(clock.now());
        assert!(cache.get(&Key::Session(id)).is_some());
        clock.advance(STREAM_SILENCE_LIMIT);
        assert!(cache.get(&Key::Session(id)).is_none(), "a silent stream is not trusted");
        cache.heard_from_stream(clock.now() - chrono::Duration::milliseconds(100));
        assert!(cache.get(&Key::Session(id)).is_some());
        cache.lost_stream();
        assert!(cache.get(&Key::Session(id)).is_none(), "nor a failed one");
    }

    #[test]
    fn the_bounds_hold_by_entries_and_by_memory() {
        let clock = Arc::new(ManualClock::starting_at(Utc::now()));
        for settings in [
            CacheSettings { max_entries: 100, ..CacheSettings::default() },
            CacheSettings { max_memory: 100 * 1024, ..CacheSettings::default() },
        ] {
            let cache = MasterCache::new(&settings, Arc::clone(&clock) as Arc<dyn Clock>);
            for _ in 0..5_000 {
                let (id, value) = session(AdminId::new(), OrgId::new());
                cache.fill(cache.ticket(), [(Key::Session(id), value)]);
            }
            cache.entries.run_pending_tasks();
            let held = cache.entries.entry_count();
            assert!(held > 0 && held <= 1_000, "{settings:?}: {held} entries");
            if settings.max_entries == 100 {
                assert!(held <= 100, "{held}");
            }
            assert!(cache.entries.weighted_size() <= settings.max_memory);
            assert!(cache.snapshot().capacity_evictions > 0);
        }
    }
}
