//! [`RedisLevel`]: a cache level shared by every process of a registry, in Redis, between each
//! process's own LRU ([`Cache`](super::Cache)) and the shared database (cargo feature `redis`).
//!
//! What lives here: the entries' format and the compare-on-revision script that writes them, the
//! proof that an entry is current ([`Sketch`]), the circuit breaker, and the counters. What does not:
//! the read path that consults this level (`Store::get_current`), and the tailer that feeds the
//! sketch (`coherence.rs`).
//!
//! **An entry is a claim** "as of revision A, GUID G was this record" (or "was absent": a tombstone
//! a delete or expiry leaves). A is a lower bound of the database state the value was read at: the
//! revision of the change itself for a commit, or for a read from the database the revision this
//! process had already read from the change log before the read began (every change up to it was
//! committed, so the read saw it). Entries are written only after a commit or a completed database
//! read, by a script that keeps whichever claim has the higher A: a late fill never overwrites a
//! newer entry, and a tombstone is not resurrected by an older read.
//!
//! **An entry is used** for a read that must be current at revision R only when this process's own
//! copy of the change log proves that G did not change in (A, R]: the [`Sketch`] keeps, for each of
//! 2^20 buckets of GUIDs, the newest revision of a change to any GUID of the bucket that the tailer
//! has read since `start` (the revision from which this process has read the whole log). An entry
//! with A < `start`, or whose bucket changed after A, is not used: the read goes to the database and
//! its result replaces the entry. So nothing Redis says (stale, lost, restarted, rolled back, written
//! by a process that has since died) can make a read return a record that was not current.
//!
//! **Faults** never fail a request: every call is bounded by the timeout; the first failure opens
//! the breaker (logged once), calls stop, and a background probe reconnects and closes it (logged
//! once) — the reads meanwhile go to the database.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Script};

use crate::backend::runtime::park_on;
use crate::backend::{Backend, stored_record};
use crate::{Change, Error, Guid, Record, Result, SharedCacheStats, redact_url};

/// Buckets of the [`Sketch`] (8 MiB of revisions). A change marks its bucket; an entry of a GUID
/// whose bucket another GUID marked since the entry was written is read from the database again,
/// so the size bounds only the waste, never correctness.
const BUCKETS: usize = 1 << 20;

/// Changes read back from the log at open, so that entries written shortly before this process
/// started can be proven current.
const HISTORY: u64 = 100_000;

/// Pause between two attempts to reach Redis while the breaker is open.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The most lookups one pipeline carries; more wait for the next.
const MAX_BATCH: usize = 256;

/// The fields of an entry, in the order of [`Entry`].
const FIELDS: [&str; 4] = ["r", "e", "v", "m"];

/// Writes an entry unless Redis holds one with an equal or higher revision. KEYS[1]: the key;
/// ARGV: revision, TTL in milliseconds, then expire, version, metadata (a record) or nothing (a
/// tombstone). Revisions stay below 2^53, so Lua's numbers hold them exactly.
const PUT_SCRIPT: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], 'r') or '')
if current and current >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] then
  redis.call('HSET', KEYS[1], 'r', ARGV[1], 'e', ARGV[3], 'v', ARGV[4], 'm', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'r', ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// How to reach the shared cache: from [`Options::redis_cache`](crate::Options::redis_cache) and
/// its companions.
#[derive(Debug, Clone)]
pub(crate) struct RedisSettings {
    pub(crate) url: String,
    pub(crate) ttl: Duration,
    pub(crate) timeout: Duration,
    pub(crate) prefix: String,
}

/// An entry's fields as `HMGET key r e v m` returns them: revision, expire, version, metadata.
type Entry = (Option<String>, Option<String>, Option<String>, Option<String>);

/// A lookup waiting for its batch: the entry's key, when the lookup gives up (now + the timeout
/// when it was queued), and where its reply goes (`None`: the batch failed or came too late).
struct Waiter {
    key: String,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Option<Entry>>,
}

/// Lookups queued for the batcher task ([`batches`]): those that arrive while a batch is in
/// flight go together in the next one, one pipeline (one write, one read) for all of them.
#[derive(Default)]
struct Queue {
    waiters: Mutex<Vec<Waiter>>,
    /// Told when a lookup is queued (keeps one permit when the batcher is busy).
    ready: tokio::sync::Notify,
}

/// What a lookup in Redis found.
pub(crate) enum Lookup {
    /// A live record, proven current.
    Hit(Arc<Record>),
    /// Proven absent (a tombstone, or an entry whose record has expired since).
    Absent,
    /// Nothing usable: read the database.
    Miss,
}

/// The newest change per bucket of GUIDs, since `start`.
struct Sketch {
    buckets: Box<[AtomicU64]>,
    /// The log has been read in full from here on (changes above it are all in `buckets`).
    start: AtomicU64,
    /// The newest revision folded into `buckets`.
    revision: AtomicU64,
}

impl Sketch {
    fn new(start: u64) -> Sketch {
        Sketch {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            start: AtomicU64::new(start),
            revision: AtomicU64::new(start),
        }
    }

    fn bucket(&self, guid: &Guid) -> &AtomicU64 {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(guid);
        &self.buckets[(hash as usize) % BUCKETS]
    }

    /// Folds changes read from the log, in revision order, consecutive after `revision`.
    fn observe(&self, changes: &[Change]) {
        let Some(last) = changes.last() else { return };
        for change in changes {
            self.bucket(change.guid()).fetch_max(change.revision(), Ordering::AcqRel);
        }
        self.revision.fetch_max(last.revision(), Ordering::AcqRel);
    }

    /// The log continues after `revision`, the changes before it unknown.
    fn restart(&self, revision: u64) {
        self.start.store(revision, Ordering::Release);
        self.revision.store(revision, Ordering::Release);
    }

    /// Whether an entry of `guid` true as of `revision` is still true as of `self.revision`: the
    /// log from `revision` to there has been read (an entry from beyond it is not used) and has no
    /// change to the GUID's bucket.
    fn proves(&self, guid: &Guid, revision: u64) -> bool {
        revision >= self.start.load(Ordering::Acquire)
            && revision <= self.revision.load(Ordering::Acquire)
            && self.bucket(guid).load(Ordering::Acquire) <= revision
    }
}

/// The Redis connection behind its circuit breaker.
struct Link {
    client: Client,
    /// The URL without its password, for the log.
    name: String,
    timeout: Duration,
    /// `Some` while the breaker is closed.
    connection: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    runtime: tokio::runtime::Handle,
    errors: AtomicU64,
    timeouts: AtomicU64,
}

enum Failure {
    Timeout,
    Redis(RedisError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("no answer within the timeout"),
            Failure::Redis(error) => write!(f, "{error}"),
        }
    }
}

impl Link {
    fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.up.load(Ordering::Acquire) {
            return None;
        }
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs one call within the timeout; a failure opens the breaker.
    async fn call<T>(self: &Arc<Self>, future: impl Future<Output = std::result::Result<T, RedisError>>) -> Option<T> {
        self.call_until(Instant::now() + self.timeout, future).await
    }

    /// Runs one call until `deadline` at most; a failure opens the breaker.
    async fn call_until<T>(
        self: &Arc<Self>,
        deadline: Instant,
        future: impl Future<Output = std::result::Result<T, RedisError>>,
    ) -> Option<T> {
        match tokio::time::timeout_at(deadline.into(), future).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) if !error.is_timeout() => self.fail(Failure::Redis(error)),
            Ok(Err(_)) | Err(_) => self.fail(Failure::Timeout),
        }
    }

    /// Counts a failed call and opens the breaker; `None`, the call's answer.
    fn fail<T>(self: &Arc<Self>, failure: Failure) -> Option<T> {
        match &failure {
            Failure::Timeout => self.timeouts.fetch_add(1, Ordering::Relaxed),
            Failure::Redis(_) => self.errors.fetch_add(1, Ordering::Relaxed),
        };
        self.trip(&failure);
        None
    }

    /// Opens the breaker (once) and starts the probe that closes it again.
    fn trip(self: &Arc<Self>, failure: &Failure) {
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).take();
        log::error!("guidstore: Redis cache {} lost ({failure}); reads go to the database until it is back", self.name);
        let link = Arc::clone(self);
        self.runtime.spawn(async move { link.probe().await });
    }

    async fn connect(&self) -> std::result::Result<MultiplexedConnection, Failure> {
        let attempt = async {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(500))))
                .set_response_timeout(Some(self.timeout));
            let mut connection = self.client.get_multiplexed_async_connection_with_config(&config).await?;
            ::redis::cmd("PING").query_async::<String>(&mut connection).await?;
            Ok(connection)
        };
        match tokio::time::timeout(self.timeout.max(Duration::from_millis(500)) * 2, attempt).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(Failure::Redis(error)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Until Redis answers again: then the breaker closes.
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            if let Ok(connection) = self.connect().await {
                *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection);
                self.up.store(true, Ordering::Release);
                log::warn!("guidstore: Redis cache {} is back; reads use it again", self.name);
                return;
            }
        }
    }
}

/// The shared cache level of a store (see the module's documentation).
pub(crate) struct RedisLevel {
    link: Arc<Link>,
    sketch: Sketch,
    script: Arc<Script>,
    /// `PREFIX` + `guidstore:` + the registry's id + `:`.
    namespace: String,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    unproven: AtomicU64,
    skipped: AtomicU64,
    queue: Arc<Queue>,
    /// Runs the Redis connection, the batcher, the background writes and the probe; shut down
    /// without waiting when the level is dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl RedisLevel {
    /// Opens the level for the registry in `backend`, whose change log is applied up to `applied`.
    /// Redis being unreachable does not fail the open: the breaker starts open.
    pub(crate) fn open(settings: &RedisSettings, backend: &dyn Backend, applied: u64) -> Result<RedisLevel> {
        let name = redact_url(&settings.url);
        let invalid = |reason: String| Error::InvalidUrl { url: name.clone(), reason };
        if !backend.is_shared() {
            return Err(invalid(
                "a shared cache needs a shared database (PostgreSQL or MariaDB): an SQLite file is served by \
                 one process, whose own cache is enough"
                    .to_owned(),
            ));
        }
        let client = Client::open(settings.url.as_str()).map_err(|error| invalid(error.to_string()))?;
        let registry = backend.registry_id()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("guidstore-redis")
            .enable_all()
            .build()
            .map_err(|error| Error::open("<redis runtime>", error))?;
        let link = Arc::new(Link {
            client,
            name,
            timeout: settings.timeout,
            connection: Mutex::new(None),
            up: AtomicBool::new(false),
            runtime: runtime.handle().clone(),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        });
        let sketch = read_history(backend, applied)?;
        let level = RedisLevel {
            link: Arc::clone(&link),
            sketch,
            script: Arc::new(Script::new(PUT_SCRIPT)),
            namespace: format!("{}guidstore:{registry}:", settings.prefix),
            ttl: settings.ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            unproven: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            queue: Arc::new(Queue::default()),
            runtime: Some(runtime),
        };
        link.runtime.spawn(batches(Arc::clone(&link), Arc::clone(&level.queue)));
        let first = {
            let _context = level.runtime.as_ref().map(tokio::runtime::Runtime::enter);
            park_on(link.connect())
        };
        match first {
            Ok(connection) => {
                *link.connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection);
                link.up.store(true, Ordering::Release);
                log::info!("guidstore: Redis cache {} in use (keys {}*)", link.name, level.namespace);
            }
            Err(failure) => {
                log::error!(
                    "guidstore: Redis cache {} unreachable at start ({failure}); reads go to the database until it answers",
                    link.name
                );
                let probing = Arc::clone(&link);
                link.runtime.spawn(async move { probing.probe().await });
            }
        }
        Ok(level)
    }

    fn key(&self, guid: &Guid) -> String {
        // Not `format!`: about 1,000 instructions a lookup through the formatting machinery.
        let mut key = String::with_capacity(self.namespace.len() + guid.as_str().len());
        key.push_str(&self.namespace);
        key.push_str(guid.as_str());
        key
    }

    /// The revision to label a fill with when a database read starts now.
    pub(crate) fn label(&self) -> u64 {
        self.sketch.revision.load(Ordering::Acquire)
    }

    /// Folds changes the tailer read from the log (before it applies them to the local cache).
    pub(crate) fn observe(&self, changes: &[Change]) {
        self.sketch.observe(changes);
    }

    /// The tailer fell behind the log's retention: it goes on after `revision`, knowing nothing
    /// of the changes before.
    pub(crate) fn restart(&self, revision: u64) {
        self.sketch.restart(revision);
    }

    /// Looks `guid` up, for a read that must be current as of the revision the tailer has read.
    /// The caller awaits the reply without blocking its thread (the level's runtime drives the
    /// connection and wakes it), whatever executor polls the future.
    ///
    /// The lookup joins the queue of the batcher task, which sends every lookup queued meanwhile
    /// as one pipeline of `HMGET`s, bounded by the earliest deadline among them: a lookup waits
    /// at most the timeout (then it is a miss, and a timeout that opens the breaker), whether its
    /// own batch or the one before it is slow. It needs no timer of its own, and no runtime: the
    /// batcher's runtime drives the connection and wakes it.
    pub(crate) async fn get(&self, guid: &Guid, now: u64) -> Lookup {
        if !self.link.up.load(Ordering::Acquire) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss;
        }
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let waiter = Waiter { key: self.key(guid), deadline: Instant::now() + self.link.timeout, reply };
        self.queue.waiters.lock().unwrap_or_else(PoisonError::into_inner).push(waiter);
        self.queue.ready.notify_one();
        // A closed channel: the batch failed (counted, and the breaker opened, by the batcher),
        // came too late, or the runtime stopped.
        let reply = receiver.await.unwrap_or(None);
        let lookup = match reply {
            None => Lookup::Miss,
            Some(entry) => self.decode(guid, entry, now),
        };
        match lookup {
            Lookup::Miss => self.misses.fetch_add(1, Ordering::Relaxed),
            Lookup::Hit(_) | Lookup::Absent => self.hits.fetch_add(1, Ordering::Relaxed),
        };
        lookup
    }

    /// What an entry says, if this process can prove it current.
    fn decode(&self, guid: &Guid, entry: Entry, now: u64) -> Lookup {
        let key = || self.key(guid);
        let (Some(revision), expire, version, metadata) = entry else { return Lookup::Miss };
        let Ok(revision) = revision.parse::<u64>() else {
            log::warn!("guidstore: Redis entry {} has no valid revision; read from the database", key());
            return Lookup::Miss;
        };
        if !self.sketch.proves(guid, revision) {
            self.unproven.fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss;
        }
        let (expire, version, metadata) = match (expire, version, metadata) {
            (None, None, None) => return Lookup::Absent,
            (Some(expire), Some(version), Some(metadata)) => (expire, version, metadata),
            _ => {
                log::warn!("guidstore: Redis entry {} is incomplete; read from the database", key());
                return Lookup::Miss;
            }
        };
        let record = match (expire.parse::<i64>(), version.parse::<u64>()) {
            // Versions are stored as SQL's signed integers, as every backend stores them.
            (Ok(expire), Ok(version)) => stored_record(*guid, expire, &metadata, version as i64),
            _ => {
                log::warn!("guidstore: Redis entry {} is not a record; read from the database", key());
                return Lookup::Miss;
            }
        };
        match record {
            Ok(record) if record.is_expired_at(now) => Lookup::Absent,
            Ok(record) => Lookup::Hit(Arc::new(record)),
            Err(error) => {
                log::warn!("guidstore: Redis entry {} is not a record ({error}); read from the database", key());
                Lookup::Miss
            }
        }
    }

    /// Stores what a database read found (a live record), as of `label` (taken before the read).
    /// In the background: the reader does not wait.
    pub(crate) fn fill(&self, record: &Arc<Record>, label: u64, now: u64) {
        self.put(*record.guid(), Some(Arc::clone(record)), label, now);
    }

    /// Stores this process's committed changes (records, and tombstones for deletes and expiries),
    /// in the background. Best effort: the proof of currency does not depend on it.
    pub(crate) fn apply_local(&self, changes: &[Change], now: u64) {
        for change in changes {
            self.put(*change.guid(), change.record().cloned(), change.revision(), now);
        }
    }

    fn put(&self, guid: Guid, record: Option<Arc<Record>>, revision: u64, now: u64) {
        let ttl = match &record {
            Some(record) => {
                let left = Duration::from_secs(record.expire().as_secs().saturating_sub(now));
                self.ttl.min(left)
            }
            None => self.ttl,
        };
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return;
        }
        let Some(mut connection) = self.link.connection() else { return };
        let key = self.key(&guid);
        let script = Arc::clone(&self.script);
        let link = Arc::clone(&self.link);
        self.link.runtime.spawn(async move {
            let mut invocation = script.key(key);
            invocation.arg(revision).arg(millis);
            if let Some(record) = &record {
                invocation.arg(record.expire().as_secs()).arg(record.version()).arg(record.metadata_json());
            }
            link.call(invocation.invoke_async::<i64>(&mut connection)).await;
        });
    }

    pub(crate) fn stats(&self) -> SharedCacheStats {
        SharedCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            unproven: self.unproven.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            errors: self.link.errors.load(Ordering::Relaxed),
            timeouts: self.link.timeouts.load(Ordering::Relaxed),
            up: self.link.up.load(Ordering::Acquire),
        }
    }
}

impl Drop for RedisLevel {
    fn drop(&mut self) {
        // A probe may be waiting on a Redis that does not answer: do not wait for it.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The batcher task: sends the queued lookups, up to [`MAX_BATCH`] at a time, as one pipeline of
/// `HMGET`s until the earliest of their deadlines (a failure opens the breaker, as any call's), and
/// hands each waiter its entry. One batch is in flight at a time: lookups arriving meanwhile make
/// up the next. A lookup whose deadline passed while it was queued is a miss; the breaker opens
/// for a pipeline Redis leaves unanswered for a whole timeout (or a failed one), as for any call.
async fn batches(link: Arc<Link>, queue: Arc<Queue>) {
    let mut batch = Vec::new();
    loop {
        queue.ready.notified().await;
        loop {
            {
                let mut waiters = queue.waiters.lock().unwrap_or_else(PoisonError::into_inner);
                let take = waiters.len().min(MAX_BATCH);
                batch.extend(waiters.drain(..take));
            }
            if batch.is_empty() {
                break;
            }
            let now = Instant::now();
            // Waiters that gave up (their request ended) need no answer; those whose deadline
            // passed in the queue (behind a slow batch, which answered: a failed one opened the
            // breaker already) get a miss, and Redis is not blamed for their wait.
            batch.retain(|waiter: &Waiter| !waiter.reply.is_closed() && waiter.deadline > now);
            let deadline = batch.iter().map(|waiter| waiter.deadline).min();
            let replies = match (deadline, link.connection()) {
                (Some(deadline), Some(mut connection)) => {
                    let mut pipe = ::redis::pipe();
                    for waiter in &batch {
                        pipe.cmd("HMGET").arg(&waiter.key).arg(&FIELDS);
                    }
                    let query = pipe.query_async::<Vec<Entry>>(&mut connection);
                    tokio::pin!(query);
                    match tokio::time::timeout_at(deadline.into(), &mut query).await {
                        Ok(Ok(entries)) => Some(entries),
                        Ok(Err(error)) if !error.is_timeout() => link.fail(Failure::Redis(error)),
                        Ok(Err(_)) => link.fail(Failure::Timeout),
                        Err(_) => {
                            // The earliest waiter's time is up (it may have queued behind a slow
                            // batch): every waiter gets a miss now, but the breaker opens only if
                            // Redis leaves the pipeline unanswered for a whole timeout.
                            batch.clear();
                            link.call_until(now + link.timeout, query).await.and(None)
                        }
                    }
                }
                _ => None,
            };
            match replies {
                Some(entries) if entries.len() == batch.len() => {
                    for (waiter, entry) in batch.drain(..).zip(entries) {
                        // A waiter that has gone since does not need it.
                        let _ = waiter.reply.send(Some(entry));
                    }
                }
                // Dropping the senders tells each waiter: a miss.
                _ => batch.clear(),
            }
        }
    }
}

/// A sketch of the newest changes up to `applied` (up to [`HISTORY`] of them, as far as the log
/// still holds them), so that entries written shortly before this process started are usable.
fn read_history(backend: &dyn Backend, applied: u64) -> Result<Sketch> {
    let from = match backend.oldest_revision()? {
        Some(oldest) => applied.saturating_sub(HISTORY).max(oldest.saturating_sub(1)).min(applied),
        None => applied,
    };
    let sketch = Sketch::new(from);
    let mut after = from;
    while after < applied {
        let changes = backend.changes_after(after, 1_000)?;
        let consecutive = changes.iter().zip(after + 1..=applied).take_while(|(c, r)| c.revision() == *r).count();
        let Some(folded) = changes.get(..consecutive).filter(|folded| !folded.is_empty()) else {
            // Trimmed under us: the log is known from `applied` on only.
            sketch.restart(applied);
            break;
        };
        sketch.observe(folded);
        after += consecutive as u64;
    }
    Ok(sketch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expiry, Metadata, Op};

    fn put(revision: u64, guid: Guid) -> Change {
        Change::put(
            revision,
            Op::Update,
            0,
            Arc::new(Record::new(guid, Expiry::new_after(100, 0).unwrap(), Metadata::new(), 1)),
        )
    }

    #[test]
    fn an_entry_is_proven_only_when_its_guid_did_not_change_since() {
        let sketch = Sketch::new(10);
        let (a, b) = (Guid::random(), Guid::random());
        // Before the window: not provable.
        assert!(!sketch.proves(&a, 9));
        assert!(sketch.proves(&a, 10));
        sketch.observe(&[put(11, a), put(12, b)]);
        assert!(!sketch.proves(&a, 10));
        assert!(sketch.proves(&a, 11));
        // An entry from beyond what this process has read is not used.
        assert!(!sketch.proves(&a, 20));
        assert_eq!(sketch.revision.load(Ordering::Acquire), 12);
    }

    #[test]
    fn the_script_keeps_the_entry_with_the_highest_revision() {
        let Some(redis) = guidstore_testkit::redis::RedisServer::start() else { return };
        let put = |revision: &str, record: Option<&str>| {
            let mut args = vec!["EVAL", PUT_SCRIPT, "1", "k", revision, "60000"];
            if let Some(metadata) = record {
                args.extend(["1700000000", "7", metadata]);
            }
            redis.command(&args)
        };
        assert_eq!(put("5", Some("{\"n\":5}")), "1");
        // A late fill, read at an older revision, changes nothing; nor does an equal one.
        assert_eq!(put("3", Some("{\"n\":3}")), "0");
        assert_eq!(put("5", Some("{\"n\":3}")), "0");
        assert_eq!(redis.command(&["HGET", "k", "m"]), "{\"n\":5}");
        // A delete at 6 leaves a tombstone that an older record does not resurrect.
        assert_eq!(put("4", None), "0");
        assert_eq!(put("6", None), "1");
        assert_eq!(put("5", Some("{\"n\":5}")), "0");
        assert_eq!(redis.command(&["HGETALL", "k"]), "r\n6");
        assert_eq!(put("7", Some("{\"n\":7}")), "1");
        assert_eq!(redis.command(&["HGET", "k", "r"]), "7");
        // An entry whose revision is not a number is replaced.
        redis.command(&["HSET", "k", "r", "junk"]);
        assert_eq!(put("2", None), "1");
        let ttl: u64 = redis.command(&["PTTL", "k"]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    }

    #[test]
    fn a_restart_forgets_what_came_before() {
        let sketch = Sketch::new(0);
        let a = Guid::random();
        sketch.observe(&[put(1, a)]);
        sketch.restart(50);
        assert!(!sketch.proves(&a, 49));
        assert!(sketch.proves(&a, 50));
    }
}
