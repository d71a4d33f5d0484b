//! [`Store`]: the registry. It applies the API's rules (expiry, conflicts, merge patches,
//! preconditions), runs every write through one writer thread that commits concurrent writes together
//! (group commit), serves reads from the LRU cache or the backend's read connections, and holds the
//! database file's lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::backend::{Backend, Transaction};
use crate::cache::{Cache, CacheUpdate};
use crate::{
    Clock, DEFAULT_TTL_SECS, Error, Expiry, Guid, IfMatch, NewRecord, Patch, Record, Result, SqliteBackend,
    Synchronous, SystemClock,
};

/// Records the cache holds unless told otherwise ([`Options::cache_capacity`], `--cache-capacity`).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// The largest request body, and the largest rendered record, in bytes, unless told otherwise
/// (`--max-body` of the server and the CLI).
pub const DEFAULT_MAX_BODY: usize = 65_536;

/// Expired records removed per purge transaction unless told otherwise (`--purge-batch`).
pub const DEFAULT_PURGE_BATCH: usize = 1_000;

/// How to open a [`Store`]. `Options::default()` is what `guidstore-server` uses by default.
#[derive(Debug, Clone)]
pub struct Options {
    cache_capacity: usize,
    synchronous: Synchronous,
    default_ttl: u64,
    clock: Arc<dyn Clock>,
    readers: usize,
    max_batch: usize,
    owner: Option<String>,
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
            owner: None,
        }
    }
}

impl Options {
    /// How many records the LRU cache holds (default 100,000; 0 disables it).
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

    /// How many idle read connections are kept (default 8).
    pub fn readers(mut self, readers: usize) -> Options {
        self.readers = readers;
        self
    }

    /// The most writes committed in one transaction (default 1024).
    pub fn max_batch(mut self, writes: usize) -> Options {
        self.max_batch = writes.max(1);
        self
    }

    /// Text written into the database's lock file while this store holds it, shown to whoever
    /// finds the file in use (a server writes its URL). Default: `pid N`.
    pub fn owner(mut self, owner: impl Into<String>) -> Options {
        self.owner = Some(owner.into());
        self
    }
}

/// What a write produced.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// The record as created or updated.
    Record(Arc<Record>),
    /// The record was deleted.
    Deleted,
    /// This many expired records were removed.
    Purged(u64),
}

/// A write for the writer thread, for callers that want to be answered by callback
/// ([`Store::submit`]) rather than by blocking.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create a record; answered with [`WriteOutcome::Record`].
    Create(NewRecord),
    /// Merge-patch a live record; answered with [`WriteOutcome::Record`].
    Update {
        /// The record.
        guid: Guid,
        /// The change.
        patch: Patch,
        /// A precondition on its current entity-tag.
        if_match: Option<IfMatch>,
    },
    /// Delete a live record; answered with [`WriteOutcome::Deleted`].
    Delete {
        /// The record.
        guid: Guid,
        /// A precondition on its current entity-tag.
        if_match: Option<IfMatch>,
    },
    /// Remove up to `limit` expired records; answered with [`WriteOutcome::Purged`].
    Purge {
        /// The most records removed.
        limit: usize,
    },
}

/// A callback answering a submitted write, called on the writer thread after the commit.
pub type Reply = Box<dyn FnOnce(Result<WriteOutcome>) + Send + 'static>;

struct Job {
    write: Write,
    reply: Reply,
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
}

struct Shared {
    backend: Box<dyn Backend>,
    cache: Cache,
    clock: Arc<dyn Clock>,
    default_ttl: u64,
    purged: AtomicU64,
    commits: AtomicU64,
    writes: AtomicU64,
    storage_errors: AtomicU64,
}

impl Shared {
    fn count_error<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result
            && !error.is_client_error()
        {
            self.storage_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// A registry of GUIDs and their metadata. `Send + Sync`: share it by reference or in an `Arc`.
///
/// Reads run on the calling thread (cache, then a read connection). Writes are queued to the
/// store's writer thread, which commits all queued writes in one transaction and answers each
/// caller after the commit is durable. Dropping the store (or [`Store::close`]) finishes queued
/// writes, stops the writer and releases the file.
pub struct Store {
    shared: Arc<Shared>,
    sender: Option<mpsc::Sender<Job>>,
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
        let lock_file = acquire_lock(path, options.owner.as_deref())?;
        let backend = SqliteBackend::open(path, options.synchronous, options.readers)?;
        let mut store = Store::with_backend(backend, options)?;
        store.lock_file = Some(lock_file);
        Ok(store)
    }

    /// A store in memory, with default [`Options`]: nothing survives it.
    pub fn open_in_memory() -> Result<Store> {
        Store::open_in_memory_with(Options::default())
    }

    /// A store in memory: nothing survives it.
    pub fn open_in_memory_with(options: Options) -> Result<Store> {
        Store::with_backend(SqliteBackend::open_in_memory()?, options)
    }

    /// A store over any [`Backend`].
    pub fn with_backend(backend: impl Backend, options: Options) -> Result<Store> {
        let shared = Arc::new(Shared {
            backend: Box::new(backend),
            cache: Cache::new(options.cache_capacity),
            clock: options.clock,
            default_ttl: options.default_ttl,
            purged: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            storage_errors: AtomicU64::new(0),
        });
        let (sender, receiver) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let max_batch = options.max_batch;
        let writer = std::thread::Builder::new()
            .name("guidstore-writer".to_owned())
            .spawn(move || writer_loop(&writer_shared, &receiver, max_batch))
            .map_err(|source| Error::Open { path: PathBuf::from("<writer thread>"), source })?;
        Ok(Store { shared, sender: Some(sender), writer: Some(writer), lock_file: None })
    }

    /// The current time by the store's clock (Unix seconds).
    pub fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    /// The live record with this GUID.
    ///
    /// Errors: [`Error::NotFound`] when there is none (never created, deleted or expired).
    pub fn get(&self, guid: &Guid) -> Result<Arc<Record>> {
        let now = self.now();
        let ticket = match self.shared.cache.get(guid, now) {
            Ok(record) => return Ok(record),
            Err(ticket) => ticket,
        };
        let loaded = self.shared.count_error(self.shared.backend.load(guid))?;
        match loaded {
            Some(record) if !record.is_expired_at(now) => {
                let record = Arc::new(record);
                self.shared.cache.fill(ticket, &record);
                Ok(record)
            }
            _ => Err(Error::NotFound(*guid)),
        }
    }

    /// The live record with this GUID if the cache holds it: no disk I/O, no blocking on storage.
    /// `None` means "ask [`Store::get`]", not "absent".
    pub fn get_cached(&self, guid: &Guid) -> Option<Arc<Record>> {
        self.shared.cache.peek_live(guid, self.now())
    }

    /// Creates a record; returns it after the commit is durable.
    ///
    /// Errors: [`Error::AlreadyExists`] if a live record has the GUID (nothing changes);
    /// [`Error::InvalidExpire`] if the requested expiry has passed by the time it is written.
    pub fn create(&self, record: NewRecord) -> Result<Arc<Record>> {
        self.write_blocking(Write::Create(record)).and_then(expect_record)
    }

    /// Merge-patches the live record `guid`, if `if_match` (when given) matches its entity-tag.
    /// A patch that changes nothing leaves the version (and so the entity-tag) as it was.
    ///
    /// Errors: [`Error::NotFound`], [`Error::PreconditionFailed`], [`Error::InvalidMetadata`].
    pub fn update(&self, guid: &Guid, patch: Patch, if_match: Option<IfMatch>) -> Result<Arc<Record>> {
        self.write_blocking(Write::Update { guid: *guid, patch, if_match }).and_then(expect_record)
    }

    /// Deletes the live record `guid`, if `if_match` (when given) matches its entity-tag.
    ///
    /// Errors: [`Error::NotFound`], [`Error::PreconditionFailed`].
    pub fn delete(&self, guid: &Guid, if_match: Option<IfMatch>) -> Result<()> {
        self.write_blocking(Write::Delete { guid: *guid, if_match }).map(|_| ())
    }

    /// Removes up to `limit` expired records in one transaction; how many were removed.
    /// Call it again while it returns `limit` to purge everything in bounded batches.
    pub fn purge_expired(&self, limit: usize) -> Result<u64> {
        match self.write_blocking(Write::Purge { limit })? {
            WriteOutcome::Purged(count) => Ok(count),
            _ => Ok(0),
        }
    }

    /// Queues a write; `reply` is called on the writer thread once it is committed (or failed).
    /// This never blocks, so asynchronous callers can hand `reply` a channel of their runtime.
    pub fn submit(&self, write: Write, reply: impl FnOnce(Result<WriteOutcome>) + Send + 'static) {
        let job = Job { write, reply: Box::new(reply) };
        let Some(sender) = &self.sender else { return (job.reply)(Err(Error::Closed)) };
        if let Err(mpsc::SendError(job)) = sender.send(job) {
            (job.reply)(Err(Error::Closed));
        }
    }

    fn write_blocking(&self, write: Write) -> Result<WriteOutcome> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.submit(write, move |result| {
            let _ = sender.send(result);
        });
        receiver.recv().unwrap_or(Err(Error::Closed))
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

fn expect_record(outcome: WriteOutcome) -> Result<Arc<Record>> {
    match outcome {
        WriteOutcome::Record(record) => Ok(record),
        _ => Err(Error::Closed),
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
    let open_error = |source| Error::Open { path: path.to_owned(), source };
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

fn writer_loop(shared: &Shared, receiver: &mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        // The callers answered by the previous commit are waking up to queue their next writes:
        // give them the processor once before taking the batch, so it holds more of them.
        // (Measured: about 10% more 32-thread creates per second; nothing when no one waits.)
        std::thread::yield_now();
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(shared, batch);
    }
    log::debug!("guidstore: writer thread stopped");
}

/// Commits `batch` in one transaction; if the transaction fails, commits each write alone so that
/// one failing write does not fail the others.
fn commit_batch(shared: &Shared, batch: Vec<Job>) {
    let now = shared.clock.now();
    let mut outcomes: Vec<(Result<WriteOutcome>, Option<CacheUpdate>)> = Vec::with_capacity(batch.len());
    let result = shared.backend.write(&mut |txn| {
        outcomes.clear();
        for job in &batch {
            let outcome = apply(shared, txn, &job.write, now);
            if let Err(error) = &outcome.0
                && !error.is_client_error()
            {
                return Err(clone_storage_error(error));
            }
            outcomes.push(outcome);
        }
        Ok(())
    });
    match result {
        Ok(()) => finish(shared, batch, outcomes),
        Err(error) if batch.len() == 1 => {
            log::error!("guidstore: write failed: {error}");
            shared.storage_errors.fetch_add(1, Ordering::Relaxed);
            for job in batch {
                (job.reply)(Err(clone_storage_error(&error)));
            }
        }
        Err(error) => {
            log::warn!("guidstore: group commit of {} writes failed ({error}); retrying one by one", batch.len());
            for job in batch {
                commit_batch(shared, vec![job]);
            }
        }
    }
}

fn finish(shared: &Shared, batch: Vec<Job>, outcomes: Vec<(Result<WriteOutcome>, Option<CacheUpdate>)>) {
    let mut updates = Vec::with_capacity(outcomes.len());
    let mut results = Vec::with_capacity(outcomes.len());
    let mut writes = 0;
    for (result, update) in outcomes {
        if let Some(update) = update {
            updates.push(update);
            writes += 1;
        }
        if let Ok(WriteOutcome::Purged(count)) = &result {
            shared.purged.fetch_add(*count, Ordering::Relaxed);
        }
        results.push(result);
    }
    shared.commits.fetch_add(1, Ordering::Relaxed);
    shared.writes.fetch_add(writes, Ordering::Relaxed);
    // The cache learns of the writes before any caller is answered.
    shared.cache.apply(updates);
    for (job, result) in batch.into_iter().zip(results) {
        (job.reply)(result);
    }
}

fn generic_db_error(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR), Some(message))
}

/// rusqlite errors are not `Clone`; a failed transaction's error is reported to every caller in it.
fn clone_storage_error(error: &Error) -> Error {
    let inner = match error {
        Error::Unavailable(inner) | Error::Db(inner) => inner,
        Error::Closed => return Error::Closed,
        other => {
            return Error::Db(generic_db_error(other.to_string()));
        }
    };
    let copy = match inner {
        rusqlite::Error::SqliteFailure(code, message) => rusqlite::Error::SqliteFailure(*code, message.clone()),
        other => generic_db_error(other.to_string()),
    };
    match error {
        Error::Unavailable(_) => Error::Unavailable(copy),
        _ => Error::Db(copy),
    }
}

/// Applies one write inside the transaction: the result for its caller and the cache change it makes.
fn apply(
    shared: &Shared,
    txn: &mut dyn Transaction,
    write: &Write,
    now: u64,
) -> (Result<WriteOutcome>, Option<CacheUpdate>) {
    match apply_inner(shared, txn, write, now) {
        Ok((outcome, update)) => (Ok(outcome), update),
        Err(error) => (Err(error), None),
    }
}

fn load_live(txn: &mut dyn Transaction, guid: &Guid, now: u64) -> Result<Record> {
    match txn.load(guid)? {
        Some(record) if !record.is_expired_at(now) => Ok(record),
        _ => Err(Error::NotFound(*guid)),
    }
}

fn check_precondition(record: &Record, if_match: Option<&IfMatch>) -> Result<()> {
    match if_match {
        Some(condition) if !condition.matches(record) => Err(Error::PreconditionFailed(*record.guid())),
        _ => Ok(()),
    }
}

fn new_version(previous: Option<u64>) -> u64 {
    loop {
        let version: u64 = rand::random();
        if Some(version) != previous {
            return version;
        }
    }
}

fn apply_inner(
    shared: &Shared,
    txn: &mut dyn Transaction,
    write: &Write,
    now: u64,
) -> Result<(WriteOutcome, Option<CacheUpdate>)> {
    match write {
        Write::Create(new_record) => {
            let (guid, metadata) = (new_record.guid().copied(), new_record.metadata());
            let expire = match new_record.expire() {
                Some(expire) => Expiry::new_after(expire.as_secs(), now)?,
                None => Expiry::after_ttl(now, shared.default_ttl),
            };
            let guid_given = guid.is_some();
            loop {
                let guid = guid.unwrap_or_else(Guid::random);
                let record = Arc::new(Record::new(guid, expire, metadata.clone(), new_version(None)));
                if txn.insert_unless_live(&record, now)? {
                    return Ok((WriteOutcome::Record(Arc::clone(&record)), Some(CacheUpdate::Put(record))));
                }
                if guid_given {
                    return Err(Error::AlreadyExists(guid));
                }
                // A random GUID met a live record (1 in 2^128 per record): draw again.
            }
        }
        Write::Update { guid, patch, if_match } => {
            let current = load_live(txn, guid, now)?;
            check_precondition(&current, if_match.as_ref())?;
            if let Some(expire) = patch.expire() {
                Expiry::new_after(expire.as_secs(), now)?;
            }
            let (expire, metadata) = patch.apply(current.expire(), current.metadata())?;
            if expire == current.expire() && metadata == *current.metadata() {
                let current = Arc::new(current);
                return Ok((WriteOutcome::Record(Arc::clone(&current)), Some(CacheUpdate::Put(current))));
            }
            let record = Arc::new(Record::new(*guid, expire, metadata, new_version(Some(current.version()))));
            txn.put(&record)?;
            Ok((WriteOutcome::Record(Arc::clone(&record)), Some(CacheUpdate::Put(record))))
        }
        Write::Delete { guid, if_match } => {
            let current = load_live(txn, guid, now)?;
            check_precondition(&current, if_match.as_ref())?;
            txn.remove(guid)?;
            Ok((WriteOutcome::Deleted, Some(CacheUpdate::Remove(*guid))))
        }
        Write::Purge { limit } => {
            let removed = txn.purge_expired(now, *limit)?;
            Ok((WriteOutcome::Purged(removed), None))
        }
    }
}
