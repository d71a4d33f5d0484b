//! [`Store`]: the registry. It applies the API's rules (expiry, conflicts, merge patches,
//! preconditions), runs every write through one writer thread that commits concurrent writes together
//! (group commit), serves reads from the record cache or the backend's read connections, and holds the
//! database file's lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::location::Location;
use crate::backend::sqlite::SqliteBackend;
use crate::backend::{Backend, NetworkSettings};
use crate::cache::Cache;
use crate::coherence::Coherence;
use crate::feed::Feed;
use crate::pending::{Pending, pending};
use crate::shared::Shared;
use crate::writer::{Job, Queued, writer_loop};
use crate::{
    Change, Clock, DEFAULT_TTL_SECS, Error, Guid, IfMatch, NewRecord, Patch, Record, Result, Synchronous, SystemClock,
};

/// Records the cache holds unless told otherwise ([`Options::cache_capacity`], `--cache-capacity`).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// The largest request body, and the largest rendered record, in bytes, unless told otherwise
/// (`--max-body` of the server and the CLI).
pub const DEFAULT_MAX_BODY: usize = 65_536;

/// Expired records removed per purge transaction unless told otherwise (`--purge-batch`).
pub const DEFAULT_PURGE_BATCH: usize = 1_000;

/// Connections a store keeps to a network database unless told otherwise ([`Options::pool_size`]).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long a call to a network database may take unless told otherwise ([`Options::timeout`]).
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest timeout the options accept (longer ones are taken as this): deadlines are instants
/// one timeout ahead, and a century is far inside the clock's range and longer than any wait.
pub const LONGEST_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// How long an entry stays in the shared Redis cache unless told otherwise ([`Options::redis_ttl`];
/// never longer than its record's own expiry).
pub const DEFAULT_REDIS_TTL: Duration = Duration::from_secs(3600);

/// How long one call to the shared Redis cache may take unless told otherwise
/// ([`Options::redis_timeout`]).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// How often a store on a shared database reads the change log when nothing else asks it to
/// ([`Options::tail_interval`]).
pub const DEFAULT_TAIL_INTERVAL: Duration = Duration::from_millis(100);

/// How to open a [`Store`]. `Options::default()` is what `guidstore-server` uses by default.
#[derive(Debug, Clone)]
pub struct Options {
    cache_capacity: usize,
    synchronous: Synchronous,
    default_ttl: u64,
    clock: Arc<dyn Clock>,
    readers: usize,
    max_batch: usize,
    max_record_bytes: usize,
    owner: Option<String>,
    pool_size: usize,
    timeout: Duration,
    tail_interval: Duration,
    redis_url: Option<String>,
    redis_ttl: Duration,
    redis_timeout: Duration,
    redis_prefix: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            synchronous: Synchronous::Full,
            default_ttl: DEFAULT_TTL_SECS,
            clock: Arc::new(SystemClock),
            readers: 8,
            max_batch: 1024,
            max_record_bytes: DEFAULT_MAX_BODY,
            owner: None,
            pool_size: DEFAULT_POOL_SIZE,
            timeout: DEFAULT_DB_TIMEOUT,
            tail_interval: DEFAULT_TAIL_INTERVAL,
            redis_url: None,
            redis_ttl: DEFAULT_REDIS_TTL,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
            redis_prefix: String::new(),
        }
    }
}

impl Options {
    /// How many records the cache (a segmented LRU) holds (default 100,000; 0 disables it).
    pub fn cache_capacity(mut self, records: usize) -> Options {
        self.cache_capacity = records;
        self
    }

    /// How commits reach the disk (default [`Synchronous::Full`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Options {
        self.synchronous = synchronous;
        self
    }

    /// The expiry of a record created without one: now + `secs` (default 30 days).
    pub fn default_ttl(mut self, secs: u64) -> Options {
        self.default_ttl = secs;
        self
    }

    /// The clock that says what "now" is (default the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Options {
        self.clock = Arc::new(clock);
        self
    }

    /// How many idle read connections are kept for blocking reads (by GUID from [`Store::get`],
    /// on the caller's thread), scans (export), the change log, counts (default 8). Awaited reads
    /// by GUID ([`Store::get_async`]) have two lookup threads of their own on a SQLite file.
    pub fn readers(mut self, readers: usize) -> Options {
        self.readers = readers;
        self
    }

    /// The most writes committed in one transaction (default 1024).
    pub fn max_batch(mut self, writes: usize) -> Options {
        self.max_batch = writes.max(1);
        self
    }

    /// The largest record, in bytes of its JSON rendering, that an update may leave (default
    /// [`DEFAULT_MAX_BODY`]): a larger result is [`Error::RecordTooLarge`] and changes nothing.
    pub fn max_record_bytes(mut self, bytes: usize) -> Options {
        self.max_record_bytes = bytes;
        self
    }

    /// Connections of the pool to a network database (default [`DEFAULT_POOL_SIZE`]; at least 2).
    /// Beside the pool a store holds one more for freshness rounds (PostgreSQL and MySQL), and on
    /// PostgreSQL one for `LISTEN`.
    pub fn pool_size(mut self, connections: usize) -> Options {
        self.pool_size = connections;
        self
    }

    /// How long any call to a network database (connect, query, commit) may take before it fails
    /// as [`Code::Unavailable`](crate::Code::Unavailable) (default [`DEFAULT_DB_TIMEOUT`]). The
    /// server is asked to cancel statements that run longer, too. At most [`LONGEST_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Options {
        self.timeout = timeout.min(LONGEST_TIMEOUT);
        self
    }

    /// On a shared database: how often the change log is read when no read or notification asks
    /// for it (default [`DEFAULT_TAIL_INTERVAL`]). It bounds how far behind the cache can fall for
    /// reads that accept staleness, and how late the change feed learns of other processes' writes.
    pub fn tail_interval(mut self, interval: Duration) -> Options {
        self.tail_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// A shared cache in Redis (`redis://HOST[:PORT][/DB]`, `rediss://` for TLS) between this
    /// store's own cache and a shared database (cargo feature `redis`): a read its own cache
    /// misses looks there before it reads the database, and fills it. Its entries are used only
    /// when this store can prove them current from the change log it has read, so the answers are
    /// those of the database alone, whatever Redis holds or does; when Redis fails, reads go to
    /// the database and a background probe waits for it (see `cache/redis.rs`). Refused on SQLite,
    /// which one process serves. Default: none.
    pub fn redis_cache(mut self, url: impl Into<String>) -> Options {
        self.redis_url = Some(url.into());
        self
    }

    /// How long an entry stays in the shared cache (default [`DEFAULT_REDIS_TTL`]); never longer
    /// than its record's expiry.
    pub fn redis_ttl(mut self, ttl: Duration) -> Options {
        self.redis_ttl = ttl;
        self
    }

    /// How long one call to the shared cache may take (default [`DEFAULT_REDIS_TIMEOUT`]): past it
    /// the read goes to the database and the cache is left alone until it answers again. Between
    /// 1 ms and [`LONGEST_TIMEOUT`].
    pub fn redis_timeout(mut self, timeout: Duration) -> Options {
        self.redis_timeout = timeout.clamp(Duration::from_millis(1), LONGEST_TIMEOUT);
        self
    }

    /// Text put before every key of the shared cache (default none). Keys are always namespaced
    /// by the registry's id, so two registries never share entries; a prefix separates further
    /// (e.g. test runs) or lets Redis ACLs match.
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Options {
        self.redis_prefix = prefix.into();
        self
    }

    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql")),
        allow(dead_code, reason = "no network backend built")
    )]
    fn network(&self) -> NetworkSettings {
        NetworkSettings { pool_size: self.pool_size, timeout: self.timeout }
    }

    /// Text written into the database's lock file while this store holds it, shown to whoever
    /// finds the file in use (a server writes its URL). Default: `pid N`.
    pub fn owner(mut self, owner: impl Into<String>) -> Options {
        self.owner = Some(owner.into());
        self
    }
}

/// Counters of a store since it was opened (except `records`, read from storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Reads answered from the cache.
    pub cache_hits: u64,
    /// Reads that went to storage.
    pub cache_misses: u64,
    /// Records in the cache now.
    pub cached: u64,
    /// Live records in storage now.
    pub records: u64,
    /// Expired records removed by purges.
    pub purged: u64,
    /// Write transactions committed (one holds every write queued when it began, refused ones
    /// included).
    pub commits: u64,
    /// Writes that succeeded: records created, updated (a no-change patch included) or deleted.
    /// Refused writes (conflicts, preconditions, not found) and purges are not counted.
    pub writes: u64,
    /// Storage operations that failed (not counting rejected input).
    pub storage_errors: u64,
    /// The revision up to which the change log is reflected in the cache.
    pub applied_revision: u64,
    /// On a shared database, queries of the change log's state: freshness rounds (each reads the
    /// newest revision, shared by the reads waiting at the time) and the tailer's reads of the log.
    pub sync_rounds: u64,
    /// Reads of a record from storage (misses of every cache level).
    pub storage_reads: u64,
}

/// Counters of the shared cache level since the store opened, and the breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SharedCacheStats {
    /// Reads answered from Redis (a record, or its proven absence).
    pub hits: u64,
    /// Reads Redis had no usable entry for (they went to the database), `unproven` included.
    pub misses: u64,
    /// Entries found but not used: this process could not prove them current.
    pub unproven: u64,
    /// Reads that skipped Redis because the breaker was open.
    pub skipped: u64,
    /// Redis calls that failed.
    pub errors: u64,
    /// Redis calls that did not answer within the timeout.
    pub timeouts: u64,
    /// Whether Redis is in use now (the breaker is closed).
    pub up: bool,
}

/// A registry of GUIDs and their metadata. `Send + Sync`: share it by reference or in an `Arc`.
///
/// Reads run on the calling thread (cache, then a read connection). Writes are queued to the
/// store's writer thread, which commits all queued writes in one transaction and answers each
/// caller after the commit is durable. Dropping the store (or [`Store::close`]) finishes queued
/// writes, stops the writer and releases the file.
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    sender: Option<mpsc::Sender<Queued>>,
    writer: Option<JoinHandle<()>>,
    lock_file: Option<(PathBuf, File)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("file", &self.lock_file.as_ref().map(|(p, _)| p)).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database file at `path` with default [`Options`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, Options::default())
    }

    /// Opens (creating if needed) the database file at `path`.
    ///
    /// Takes the file's lock (`PATH.lock`) first: while a store has a file open, another process
    /// opening it gets [`Error::Locked`] with what the owner wrote there.
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref();
        refuse_shared_cache(&options)?;
        let lock_file = acquire_lock(path, options.owner.as_deref())?;
        let backend = SqliteBackend::open(path, options.synchronous, options.readers)?;
        let mut store = Store::start(backend, options)?;
        store.lock_file = Some(lock_file);
        Ok(store)
    }

    /// Opens the storage a URL names, with `options`:
    ///
    /// - a file path, or `sqlite:PATH`: an SQLite file, as [`Store::open_with`];
    /// - `postgres://USER[:PASS]@HOST[:PORT]/DB` (or `postgresql://`): PostgreSQL (cargo feature
    ///   `postgres`); TLS as `?sslmode=disable|prefer|require|verify-ca|verify-full` and
    ///   `&sslrootcert=FILE|system` say (libpq's meanings; `prefer` by default);
    /// - `mysql://USER[:PASS]@HOST[:PORT]/DB` (or `mariadb://`): MariaDB or MySQL (feature `mysql`);
    ///   TLS as `?ssl-mode=DISABLED|PREFERRED|REQUIRED|VERIFY_IDENTITY` and `&ssl-ca=FILE|system` say.
    ///
    /// Without a password in the URL, `PGPASSWORD` or `MYSQL_PWD` is used. A network database is
    /// migrated at open (under an advisory lock, so processes starting together migrate once) and
    /// may be shared by any number of processes.
    ///
    /// Errors: [`Error::InvalidUrl`] (malformed, unknown scheme, backend not built in);
    /// [`Code::Unavailable`](crate::Code::Unavailable) storage errors when the database cannot be
    /// reached or refuses the login; [`Error::NotAGuidstoreDatabase`],
    /// [`Error::UnsupportedSchema`].
    pub fn open_url(url: &str, options: Options) -> Result<Store> {
        match Location::parse(url)? {
            Location::Sqlite(path) => Store::open_with(path, options),
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => {
                let backend = crate::backend::postgres::PostgresBackend::open(&url, options.network())?;
                Store::start(backend, options)
            }
            #[cfg(feature = "mysql")]
            Location::Mysql(url) => {
                let backend = crate::backend::mysql::MysqlBackend::open(&url, options.network())?;
                Store::start(backend, options)
            }
            #[allow(unreachable_patterns, reason = "reachable when a backend feature is off")]
            location => Err(Error::InvalidUrl {
                url: location.to_string(),
                reason: "this build of guidstore has no driver for it (cargo features postgres, mysql)".to_owned(),
            }),
        }
    }

    /// A store in memory, with default [`Options`]: nothing survives it.
    pub fn open_in_memory() -> Result<Store> {
        Store::open_in_memory_with(Options::default())
    }

    /// A store in memory: nothing survives it.
    pub fn open_in_memory_with(options: Options) -> Result<Store> {
        refuse_shared_cache(&options)?;
        Store::start(SqliteBackend::open_in_memory()?, options)
    }

    /// A store over `backend`: starts its writer thread.
    fn start(backend: impl Backend, options: Options) -> Result<Store> {
        let applied = backend.revision()?;
        let cache = Cache::new(options.cache_capacity, applied, backend.is_shared());
        let coherence = backend.is_shared().then(|| Coherence::new(options.tail_interval, backend.timeout()));
        #[cfg(feature = "redis")]
        let redis = match &options.redis_url {
            Some(url) => {
                let settings = crate::cache::redis::RedisSettings {
                    url: url.clone(),
                    ttl: options.redis_ttl,
                    timeout: options.redis_timeout,
                    prefix: options.redis_prefix.clone(),
                };
                Some(crate::cache::redis::RedisLevel::open(&settings, &backend, applied)?)
            }
            None => None,
        };
        #[cfg(not(feature = "redis"))]
        if let Some(url) = &options.redis_url {
            return Err(Error::InvalidUrl {
                url: crate::redact_url(url),
                reason: "this build of guidstore has no Redis client (cargo feature redis)".to_owned(),
            });
        }
        let shared = Arc::new(Shared {
            backend: Box::new(backend),
            cache,
            coherence,
            #[cfg(feature = "redis")]
            redis,
            feed: Feed::new(applied),
            clock: options.clock,
            default_ttl: options.default_ttl,
            max_record_bytes: options.max_record_bytes,
            purged: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            storage_errors: AtomicU64::new(0),
            storage_reads: AtomicU64::new(0),
            pause_timer: std::sync::Mutex::new(None),
        });
        let (sender, receiver) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let max_batch = options.max_batch;
        let writer = std::thread::Builder::new()
            .name("guidstore-writer".to_owned())
            .spawn(move || writer_loop(&writer_shared, &receiver, max_batch))
            .map_err(|source| Error::open("<writer thread>", source))?;
        let store = Store { shared, sender: Some(sender), writer: Some(writer), lock_file: None };
        Shared::start_tailer(&store.shared)?;
        Ok(store)
    }

    /// The current time by the store's clock (Unix seconds).
    pub fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    /// The live record with this GUID, as of now: on a shared database, after a freshness round
    /// (see [`Store::sync`]), so that it reflects every write acknowledged before the call, by any
    /// process.
    ///
    /// Errors: [`Error::NotFound`] when there is none (never created, deleted or expired);
    /// [`Code::Unavailable`](crate::Code::Unavailable) when the database cannot be reached.
    pub fn get(&self, guid: &Guid) -> Result<Arc<Record>> {
        self.sync()?;
        self.get_current(guid)
    }

    /// [`Store::get`] as a future, for async callers on any executor (it needs no runtime of
    /// theirs): the same answers. On a shared database it waits for the freshness round, and for
    /// Redis or the database on a miss, without blocking the thread that polls it; on a SQLite
    /// file a miss is read by one of the store's lookup threads. Only on an in-memory database
    /// does a miss read on the polling thread (see [`Store::reads_without_blocking`]).
    pub async fn get_async(&self, guid: &Guid) -> Result<Arc<Record>> {
        self.sync_async().await?;
        self.get_current_async(guid).await
    }

    /// The live record with this GUID as of the last [`Store::sync`]: from the cache, else from
    /// the shared cache when this store can prove its entry current (see
    /// [`Options::redis_cache`]), else read from storage (and cached). Without a shared database
    /// every call is current.
    pub fn get_current(&self, guid: &Guid) -> Result<Arc<Record>> {
        crate::pending::park_on(self.read_current(guid, false))
    }

    /// [`Store::get_current`] as a future (see [`Store::get_async`]).
    pub async fn get_current_async(&self, guid: &Guid) -> Result<Arc<Record>> {
        self.read_current(guid, true).await
    }

    /// [`Store::get_current_async`]; `awaited`: a miss is awaited from the backend if it can be
    /// (false: read on this thread, which may block, as a blocking caller's does without a hop
    /// to a lookup thread).
    async fn read_current(&self, guid: &Guid, awaited: bool) -> Result<Arc<Record>> {
        let now = self.now();
        let ticket = match self.shared.cache.get(guid, now) {
            Ok(record) => return Ok(record),
            Err(ticket) => ticket,
        };
        #[cfg(feature = "redis")]
        let label = match &self.shared.redis {
            // While a local commit of the GUID is ahead of the tailer, Redis can be proven current
            // only below it: this process's own acknowledged write would be missed. The database
            // has it.
            Some(redis) if self.shared.cache.is_ahead(guid) => Some((redis, redis.label())),
            Some(redis) => {
                // Taken before the database read: that read sees every change up to it.
                let label = redis.label();
                match redis.get(guid, now).await {
                    crate::cache::redis::Lookup::Hit(record) => {
                        self.shared.cache.fill_from_shared(ticket, &record);
                        return Ok(record);
                    }
                    crate::cache::redis::Lookup::Absent => return Err(Error::NotFound(*guid)),
                    crate::cache::redis::Lookup::Miss => Some((redis, label)),
                }
            }
            None => None,
        };
        self.shared.storage_reads.fetch_add(1, Ordering::Relaxed);
        let loaded = match awaited.then(|| self.shared.backend.load_async(*guid)).flatten() {
            Some(load) => load.await,
            None => self.shared.backend.load(guid),
        };
        match self.shared.count_error(loaded)? {
            Some(record) if !record.is_expired_at(now) => {
                let record = Arc::new(record);
                self.shared.cache.fill(ticket, &record);
                #[cfg(feature = "redis")]
                if let Some((redis, label)) = label {
                    redis.fill(&record, label, now);
                }
                Ok(record)
            }
            _ => Err(Error::NotFound(*guid)),
        }
    }

    /// Whether [`Store::get_async`] and [`Store::get_current_async`] never block the thread that
    /// polls them: true on a network database (its reads are awaited) and on a SQLite file (its
    /// cache misses are read by lookup threads of the store's own), false on an in-memory
    /// database, whose misses read on the polling thread (an async server gives those a thread
    /// that may block, e.g. with [`Store::get_current`]).
    pub fn reads_without_blocking(&self) -> bool {
        self.shared.backend.loads_without_blocking()
    }

    /// The shared cache's counters and state (`None` without one).
    pub fn shared_cache_stats(&self) -> Option<SharedCacheStats> {
        #[cfg(feature = "redis")]
        return self.shared.redis.as_ref().map(crate::cache::redis::RedisLevel::stats);
        #[cfg(not(feature = "redis"))]
        None
    }

    /// The live record with this GUID if the cache holds it: no I/O, no blocking. `None` means
    /// "ask [`Store::get_current`]", not "absent". On a shared database it is current as of the
    /// last [`Store::sync`].
    pub fn get_cached(&self, guid: &Guid) -> Option<Arc<Record>> {
        self.shared.cache.peek_live(guid, self.now())
    }

    /// How long a call waits for a network database in all before it fails as
    /// [`Code::Unavailable`](crate::Code::Unavailable) ([`Options::timeout`]), a write's time in
    /// the writer's queue included; `None` for SQLite, whose calls are not bounded. A freshness
    /// round ([`Store::sync_async`]) answers within it of the call, without a timer per caller (the
    /// round carries the deadline); a front-end that reads on after it (a cache miss) bounds that
    /// by what is left of the read's budget.
    pub fn timeout(&self) -> Option<Duration> {
        self.shared.backend.timeout()
    }

    /// Whether other processes may write to the same database (PostgreSQL, MySQL).
    pub fn is_shared(&self) -> bool {
        self.shared.coherence.is_some()
    }

    /// Brings the cache up to date with every change committed before the call, by any process:
    /// one freshness round shared by every caller waiting at the time. Without a shared database
    /// the cache is always current and this returns at once.
    ///
    /// Errors: [`Code::Unavailable`](crate::Code::Unavailable) when the change log cannot be read,
    /// at the latest [`Store::timeout`] after the call.
    pub fn sync(&self) -> Result<()> {
        self.sync_async().wait()
    }

    /// [`Store::sync`] without blocking.
    pub fn sync_async(&self) -> Pending<()> {
        Shared::sync(&self.shared)
    }

    /// How far the cache may be behind the database: the time since the last freshness round
    /// began (`None` before the first). Always zero without a shared database.
    pub fn staleness(&self) -> Option<Duration> {
        match &self.shared.coherence {
            Some(coherence) => coherence.staleness(),
            None => Some(Duration::ZERO),
        }
    }

    /// Creates a record; returns it after the commit is durable.
    ///
    /// Errors: [`Error::AlreadyExists`] if a live record has the GUID (nothing changes);
    /// [`Error::InvalidExpire`] if the requested expiry has passed by the time it is written.
    pub fn create(&self, record: NewRecord) -> Result<Arc<Record>> {
        self.create_async(record).wait()
    }

    /// [`Store::create`] without blocking: the result is known once the commit is durable.
    pub fn create_async(&self, new_record: NewRecord) -> Pending<Arc<Record>> {
        let (done, result) = pending();
        self.queue(Job::Create { new_record, done });
        result
    }

    /// Merge-patches the live record `guid`, if `if_match` (when given) matches its entity-tag.
    /// A patch that changes nothing leaves the version (and so the entity-tag) as it was.
    ///
    /// Errors: [`Error::NotFound`], [`Error::PreconditionFailed`], [`Error::InvalidMetadata`],
    /// [`Error::RecordTooLarge`].
    pub fn update(&self, guid: &Guid, patch: Patch, if_match: Option<IfMatch>) -> Result<Arc<Record>> {
        self.update_async(guid, patch, if_match).wait()
    }

    /// [`Store::update`] without blocking.
    pub fn update_async(&self, guid: &Guid, patch: Patch, if_match: Option<IfMatch>) -> Pending<Arc<Record>> {
        let (done, result) = pending();
        self.queue(Job::Update { guid: *guid, patch, if_match, done });
        result
    }

    /// Deletes the live record `guid`, if `if_match` (when given) matches its entity-tag.
    ///
    /// Errors: [`Error::NotFound`], [`Error::PreconditionFailed`].
    pub fn delete(&self, guid: &Guid, if_match: Option<IfMatch>) -> Result<()> {
        self.delete_async(guid, if_match).wait()
    }

    /// [`Store::delete`] without blocking.
    pub fn delete_async(&self, guid: &Guid, if_match: Option<IfMatch>) -> Pending<()> {
        let (done, result) = pending();
        self.queue(Job::Delete { guid: *guid, if_match, done });
        result
    }

    /// Removes up to `limit` expired records in one transaction; how many were removed.
    pub fn purge_expired(&self, limit: usize) -> Result<u64> {
        let (done, result) = pending();
        self.queue(Job::Purge { limit: limit.max(1), until_done: false, total: 0, done });
        result.wait()
    }

    /// Removes every expired record, `batch` at a time (one transaction each; other writes go
    /// between them); how many were removed.
    pub fn purge_all_expired(&self, batch: usize) -> Result<u64> {
        self.purge_all_expired_async(batch).wait()
    }

    /// [`Store::purge_all_expired`] without blocking.
    pub fn purge_all_expired_async(&self, batch: usize) -> Pending<u64> {
        let (done, result) = pending();
        self.queue(Job::Purge { limit: batch.max(1), until_done: true, total: 0, done });
        result
    }

    /// Hands `job` to the writer thread; if it has stopped, the job's completer is dropped, which
    /// answers [`Error::Closed`].
    pub(crate) fn queue(&self, job: Job) {
        if let Some(sender) = &self.sender {
            let _ = sender.send((std::time::Instant::now(), job));
        }
    }

    /// The revision of the newest committed change (0 before the first).
    pub fn revision(&self) -> Result<u64> {
        self.shared.count_error(self.shared.backend.revision())
    }

    /// Up to `limit` committed changes after revision `after`, in revision order, as the change
    /// log holds them (see [`Store::oldest_revision`] for how far back it reaches).
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.shared.count_error(self.shared.backend.changes_after(after, limit))
    }

    /// Up to `limit` changes after revision `after`, in revision order, for a consumer of the
    /// change feed: from memory when they are recent, else from the change log. An empty answer
    /// means none yet ([`Store::wait_for_changes_after`] waits for one). On a shared database the
    /// answer includes every change committed before the call.
    ///
    /// A `limit` of 0 is taken as 1.
    ///
    /// Errors: [`Error::EventsTruncated`] when changes after `after` have been trimmed from the log.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let limit = limit.max(1);
        // On a shared database, first learn of every change committed before this call, so a
        // consumer sees its own acknowledged writes (one freshness round, shared with all callers).
        self.sync()?;
        if let Some(recent) = self.shared.feed.recent_after(after, limit) {
            return Ok(recent);
        }
        if let Some(oldest) = self.oldest_revision()?
            && after + 1 < oldest
        {
            return Err(Error::EventsTruncated { after, oldest });
        }
        self.changes_after(after, limit)
    }

    /// Resolves once this process has learnt of a change after revision `after` (at once if it
    /// has). Waiting costs no query: one tail per process wakes every consumer.
    pub fn wait_for_changes_after(&self, after: u64) -> Pending<()> {
        if let Some(coherence) = &self.shared.coherence
            && self.shared.feed.newest() <= after
        {
            // A consumer ahead of this process (it read the log itself) asks for a round soon.
            coherence.wake();
        }
        self.shared.feed.wait_after(after)
    }

    /// Up to `limit` changes after `after` that this process has published to the change feed, from
    /// memory: no query, no freshness round, never blocks (for a fan-out that follows the feed:
    /// [`Store::wait_for_changes_after`] tells it when to look). `None` when memory no longer
    /// reaches back to `after` (read [`Store::events_after`] instead). A `limit` of 0 is taken as 1.
    pub fn published_after(&self, after: u64, limit: usize) -> Option<Vec<Change>> {
        self.shared.feed.recent_after(after, limit.max(1))
    }

    /// The newest revision this process has published to the change feed.
    pub fn feed_revision(&self) -> u64 {
        self.shared.feed.newest()
    }

    /// Consumers waiting on the change feed now, and changes published to it since open.
    pub fn feed_counts(&self) -> (usize, u64) {
        self.shared.feed.counts()
    }

    /// Trims the change log: removes changes older than `max_age` (by their commit time), and
    /// all but the newest `max_count`, in batches of 10,000 (writes go on between them). The
    /// newest change is always kept. Returns how many were removed.
    pub fn trim_changes(&self, max_age: Option<Duration>, max_count: Option<u64>) -> Result<u64> {
        const BATCH: usize = 10_000;
        let newest = self.revision()?;
        let mut limits = Vec::new();
        if let Some(age) = max_age {
            limits.push((newest, self.now().saturating_sub(age.as_secs())));
        }
        if let Some(count) = max_count {
            limits.push((newest.saturating_sub(count.max(1)) + 1, u64::MAX));
        }
        let mut total = 0;
        for (below, before_at) in limits {
            loop {
                let removed = self.shared.count_error(self.shared.backend.trim_changes(below, before_at, BATCH))?;
                total += removed;
                if removed < BATCH as u64 {
                    break;
                }
            }
        }
        // On a shared database another process may have trimmed the log (this trim then removes
        // nothing): the feed forgets what the log no longer keeps either way, so every process
        // answers `events_truncated` below the oldest kept change by its next trim at the latest.
        if (total > 0 || self.is_shared())
            && let Some(oldest) = self.oldest_revision()?
        {
            self.shared.feed.forget_before(oldest);
        }
        Ok(total)
    }

    /// The revision of the oldest change still in the change log (`None` when it is empty).
    pub fn oldest_revision(&self) -> Result<Option<u64>> {
        self.shared.count_error(self.shared.backend.oldest_revision())
    }

    /// Counters and sizes. `records` is counted in storage (a scan of the expiry index).
    pub fn stats(&self) -> Result<Stats> {
        let records = self.shared.count_error(self.shared.backend.count_live(self.now()))?;
        Ok(Stats { records, ..self.counters() })
    }

    /// The counters only: no storage access.
    pub fn counters(&self) -> Stats {
        let shared = &self.shared;
        Stats {
            cache_hits: shared.cache.hits(),
            cache_misses: shared.cache.misses(),
            cached: shared.cache.len() as u64,
            records: 0,
            purged: shared.purged.load(Ordering::Relaxed),
            commits: shared.commits.load(Ordering::Relaxed),
            writes: shared.writes.load(Ordering::Relaxed),
            storage_errors: shared.storage_errors.load(Ordering::Relaxed),
            applied_revision: shared.cache.applied(),
            sync_rounds: shared.coherence.as_ref().map_or(0, Coherence::rounds),
            storage_reads: shared.storage_reads.load(Ordering::Relaxed),
        }
    }

    /// Whether storage answers (for health checks).
    pub fn check(&self) -> Result<()> {
        self.shared.count_error(self.shared.backend.check())
    }

    /// Finishes queued writes, stops the writer thread, checkpoints the database and releases the
    /// file. Dropping the store does the same but cannot report a failure.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            log::error!("guidstore: writer thread panicked");
        }
        if let Some(coherence) = &self.shared.coherence {
            coherence.stop();
        }
        let result = self.shared.backend.close();
        if let Some((path, file)) = self.lock_file.take() {
            let _ = file.set_len(0);
            drop(file);
            log::debug!("guidstore: released {}", path.display());
        }
        result
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            log::error!("guidstore: closing the store failed: {error}");
        }
    }
}

/// An SQLite file is served by one process, so a shared cache would serve no one else: refused
/// before the file is created or opened.
fn refuse_shared_cache(options: &Options) -> Result<()> {
    match &options.redis_url {
        Some(url) => Err(Error::InvalidUrl {
            url: crate::redact_url(url),
            reason: "a shared cache needs a shared database (PostgreSQL or MariaDB): an SQLite file is served by \
                     one process, whose own cache is enough"
                .to_owned(),
        }),
        None => Ok(()),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Retries of a lock found taken, and the pause between them (50 ms in all).
const LOCK_ATTEMPTS: u32 = 10;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

fn acquire_lock(path: &Path, owner: Option<&str>) -> Result<(PathBuf, File)> {
    let lock_path = lock_path(path);
    let open_error = |source| Error::open(path, source);
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(open_error)?;
    // `lock_owner` holds a shared lock for an instant while it looks: a few short retries keep
    // such a look from refusing an open; a real owner still holds the lock after them.
    let mut attempts = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if attempts < LOCK_ATTEMPTS => {
                attempts += 1;
                std::thread::sleep(LOCK_RETRY_PAUSE);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let owner = Some(text.trim().to_owned()).filter(|t| !t.is_empty());
                return Err(Error::Locked { path: path.to_owned(), owner });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(open_error(source)),
        }
    }
    let text = owner.map_or_else(|| format!("pid {}", std::process::id()), str::to_owned);
    file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(text.as_bytes())).map_err(open_error)?;
    Ok((lock_path, file))
}

/// What the lock file of the database at `path` says about its owner, if a store holds it now.
///
/// A CLI uses this to find a running server's URL and go through it instead of the file.
pub fn lock_owner(path: impl AsRef<Path>) -> Option<String> {
    let mut file = File::open(lock_path(path.as_ref())).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => {
            let mut text = String::new();
            file.read_to_string(&mut text).ok()?;
            Some(text.trim().to_owned())
        }
    }
}
