//! [`SqliteBackend`]: the embedded SQLite storage (WAL mode, versioned schema, one write connection
//! used by the store's writer thread, lookup threads that serve awaited reads by GUID from a
//! queue, a small pool of read connections for the other reads — blocking reads by GUID on the
//! caller's thread, scans, the change log —, a checkpointer thread). rusqlite's errors
//! stop here: they leave as [`StorageError`]s.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, params, params_from_iter};

use crate::backend::{Backend, BoxFuture, ChangeRow, FinalStates, Transaction, sql_int, stored_change, stored_record};
use crate::pending::{Completer, Pending, pending};
use crate::{Change, Error, Guid, Record, Result, StorageError};

/// `PRAGMA application_id` of a guidstore database: "GUID" in ASCII.
const APPLICATION_ID: i64 = 0x4755_4944;

/// Schema migrations (`guidstore/migrations/sqlite/`); `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_records.sql"),
    include_str!("../../migrations/sqlite/0002_change_log.sql"),
    include_str!("../../migrations/sqlite/0003_records_by_guid.sql"),
];

/// Rows per multi-row `INSERT` and GUIDs per `IN (…)` list: one statement execution (cursors
/// opened once, one descent begun from the last position) for many rows. Rows that do not fill a
/// whole chunk go one statement each, so that only two statements of each kind are cached.
///
/// A statement that writes several rows and may abort halfway makes SQLite keep a statement
/// journal, a temporary file to which it copies every page before the statement first changes it
/// (measured: about 14,000 `pwrite` calls to `/var/tmp/etilqs_*` per 10,000-record import batch,
/// from multi-row upserts). So multi-row inserts say `OR ROLLBACK` (a failing write rolls the
/// whole transaction back anyway, and the writer then retries each job alone), which spares the
/// journal for plain inserts, and upserts go one row at a time.
const CHUNK: usize = 64;

/// Page cache of the read connections, in KiB (`PRAGMA cache_size`), shared out over the lookup
/// threads' ones: each gets `READ_CACHE_BUDGET_KIB / LOOKUP_THREADS`, between SQLite's default
/// 2 MiB and [`READ_CACHE_MAX_KIB`]; the pooled connections (blocking reads by GUID, scans, the
/// change log) share it the same way (`/ max_idle_readers`: 4 MiB each of a server's 8; a cache
/// fills only as its connection reads, so those a server uses for the change log stay small).
/// The inner pages of the records table at 10 million records take about
/// 7 MiB with 16-byte keys; with them cached, a read at a random GUID reads only its leaf page from
/// the file (measured at 1,000,000 records: 0.98 page reads per lookup with 8 MiB, 1.57 with
/// 2 MiB, 2.34 with schema 2 and 2 MiB). The budget bounds what the lookup threads' caches add to
/// the process's memory (2 threads: 8 MiB each). The write
/// connection keeps SQLite's default (2 MiB): a large writer cache was measured to slow commits
/// (see BENCHMARKS.md), and it does not spill (`cache_spill = OFF`), so a large transaction such
/// as an import batch keeps its dirty pages in memory and writes each once, at its commit.
const READ_CACHE_BUDGET_KIB: usize = 32 * 1024;
const READ_CACHE_MAX_KIB: usize = 8 * 1024;
const READ_CACHE_MIN_KIB: usize = 2 * 1024;

/// A GUID as the records table stores it (schema 3): its 16 bytes, as a BLOB.
struct Key([u8; 16]);

impl Key {
    fn of(guid: &Guid) -> Key {
        Key(guid.to_bytes())
    }
}

impl ToSql for Key {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Blob(&self.0)))
    }
}

/// A GUID read back from the records table's key column.
fn stored_key(value: ValueRef<'_>) -> Result<Guid> {
    let bytes: Option<[u8; 16]> = value.as_blob().ok().and_then(|blob| blob.try_into().ok());
    bytes.map(Guid::from_bytes).ok_or_else(|| StorageError::permanent("a stored GUID key is not 16 bytes").into())
}

/// A record from a row whose columns from `first` on are expire, metadata and version.
fn record_from_row(guid: Guid, row: &rusqlite::Row<'_>, first: usize) -> Result<Record> {
    let expire: i64 = row.get(first).db()?;
    let metadata = row.get_ref(first + 1).and_then(|value| Ok(value.as_str()?)).db()?;
    let version: i64 = row.get(first + 2).db()?;
    stored_record(guid, expire, metadata, version)
}

/// `(?, ?, …)` groups for a multi-row `VALUES` list: `rows` groups of `columns` placeholders.
fn values_list(rows: usize, columns: usize) -> String {
    let group = format!("({})", vec!["?"; columns].join(", "));
    vec![group; rows].join(", ")
}

/// Converts rusqlite results into the library's, classifying the error.
trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(storage_error)
    }
}

/// A rusqlite error as a [`StorageError`]: faults that clear by themselves (read-only, disk full,
/// busy, locked, I/O) are transient. The message names SQLite's extended result code, which names
/// the failing system call (e.g. `SQLITE_IOERR_WRITE`, `SQLITE_IOERR_FSYNC`).
fn storage_error(error: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    let transient = matches!(
        error.sqlite_error_code(),
        Some(ReadOnly | DiskFull | DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure)
    );
    let message = describe(&error);
    let storage = if transient { StorageError::transient(message) } else { StorageError::permanent(message) };
    Error::Storage(storage.with_source(error))
}

fn describe(error: &rusqlite::Error) -> String {
    use rusqlite::ffi;
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => {
            let name = match failure.extended_code {
                ffi::SQLITE_IOERR_WRITE => " SQLITE_IOERR_WRITE",
                ffi::SQLITE_IOERR_FSYNC => " SQLITE_IOERR_FSYNC",
                ffi::SQLITE_IOERR_TRUNCATE => " SQLITE_IOERR_TRUNCATE",
                ffi::SQLITE_IOERR_SHMOPEN => " SQLITE_IOERR_SHMOPEN",
                ffi::SQLITE_IOERR_SHMSIZE => " SQLITE_IOERR_SHMSIZE",
                ffi::SQLITE_FULL => " SQLITE_FULL",
                ffi::SQLITE_READONLY => " SQLITE_READONLY",
                ffi::SQLITE_READONLY_DBMOVED => " SQLITE_READONLY_DBMOVED",
                ffi::SQLITE_CANTOPEN => " SQLITE_CANTOPEN",
                ffi::SQLITE_BUSY => " SQLITE_BUSY",
                _ => "",
            };
            format!("SQLite extended code {}{name}", failure.extended_code)
        }
        _ => "SQLite".to_owned(),
    }
}

/// How SQLite syncs commits to disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is synced before it is acknowledged: survives power loss and `kill -9`.
    #[default]
    Full,
    /// WAL commits are synced at checkpoints: survives `kill -9`, may lose the last commits on
    /// power loss.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// SQLite storage of records.
pub struct SqliteBackend {
    path: Option<PathBuf>,
    writer: Mutex<Writer>,
    /// Held by every write transaction, and by the checkpointer while it finishes a checkpoint.
    write_gate: Arc<Mutex<()>>,
    /// Reads by GUID (`None` in memory: they use the write connection).
    lookups: Option<Lookups>,
    /// Read connections for the other reads.
    readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The write connection and the checkpointer it wakes.
struct Writer {
    connection: Connection,
    /// Rows written since the checkpointer was last woken.
    rows_since_checkpoint: u64,
    checkpointer: Option<Checkpointer>,
}

/// Rows written between two wake-ups of the checkpointer. Each row dirties about one page of the
/// GUID index; the longer the interval, the more often the same pages are written again between
/// two checkpoints, and a checkpoint copies each page once. With 10,000 rows the WAL stayed at
/// about 60 MB under load (docs/design.md, "Group commit").
const CHECKPOINT_EVERY_ROWS: u64 = 10_000;

/// A thread that copies the WAL into the database file, so that the writer does not wait for a
/// checkpoint's I/O (auto-checkpointing is off on the write connection).
///
/// Each run has two steps. Passive checkpoints copy what the WAL holds while the writer goes on
/// (two passes, each followed by a sync of the database file). Then, holding the write gate so
/// that no write transaction starts, a restart checkpoint copies the few frames committed
/// meanwhile and waits for readers still on the old WAL: the next write then starts the WAL over
/// from its beginning. Without that second step a steady write
/// load never lets the WAL be fully copied, and it grows without bound (measured: 800 MB in 20 s
/// of creates), slowing every read that has to search its index.
struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    thread: Option<JoinHandle<()>>,
    /// Runs finished.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by tests"))]
    runs: Arc<AtomicU64>,
}

impl Checkpointer {
    fn start(connection: Connection, database: &Path, write_gate: Arc<Mutex<()>>) -> std::io::Result<Checkpointer> {
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let runs = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&runs);
        // Only checkpoints write the database file. SQLite syncs it only when a checkpoint has
        // copied the whole WAL, that is in the gated step: syncing it first, outside the gate,
        // leaves that step only the few pages it copies itself. Measured under POST load: writes
        // held off 24-33 ms per run without these syncs, 7-11 ms with one pass, 2-7 ms with two.
        let database = std::fs::File::open(database)?;
        let thread = std::thread::Builder::new().name("guidstore-checkpoint".to_owned()).spawn(move || {
            while woken.recv().is_ok() {
                // Twice: the second pass copies only what was committed during the first, so
                // the gated step has less still to copy.
                for _ in 0..2 {
                    checkpoint(&connection, "PASSIVE");
                    if let Err(error) = database.sync_data() {
                        log::warn!("guidstore: syncing the database file before a checkpoint failed: {error}");
                    }
                }
                let gate = lock(&write_gate);
                let held = std::time::Instant::now();
                checkpoint(&connection, "RESTART");
                drop(gate);
                log::debug!("guidstore: checkpoint held writes off for {:?}", held.elapsed());
                counter.fetch_add(1, Ordering::Release);
            }
        })?;
        Ok(Checkpointer { wake, thread: Some(thread), runs })
    }

    fn stop(&mut self) {
        let (closed, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.wake, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `PRAGMA wal_checkpoint(MODE)`, logging what it did or why it failed.
fn checkpoint(connection: &Connection, mode: &str) {
    let result = connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match result {
        // A restart checkpoint that stays busy (a reader held on to the old WAL for the whole busy
        // timeout) leaves the WAL to grow until the next run: worth a warning.
        Ok((busy, frames, copied)) if busy != 0 && mode != "PASSIVE" => {
            log::warn!("guidstore: {mode} checkpoint busy: {copied} of {frames} WAL frames copied, WAL not restarted")
        }
        Ok((busy, frames, copied)) => {
            log::debug!("guidstore: {mode} checkpoint: {copied} of {frames} WAL frames copied (busy: {busy})")
        }
        Err(error) => log::warn!("guidstore: {mode} WAL checkpoint failed: {error}"),
    }
}

/// Threads that read records by GUID ([`Backend::load_async`], a cache miss), each on a read
/// connection of its own, serving a queue of lookups. An async caller queues its lookup and
/// awaits a [`Pending`] (woken through its `Waker`, whatever its runtime): no thread of the
/// caller's blocks on the file, and a lookup thread that finds more lookups queued serves them
/// without sleeping in between, so a burst of misses costs a few wake-ups, not two context
/// switches each. Measured (1,000,000 records, GETs over 200,000 GUIDs, server on one core)
/// against the server's former `spawn_blocking` per miss: context switches per request 2.3 → 0.55,
/// CPU time per request about 36 → 20-26 µs, threads 48-206 → 8.
struct Lookups {
    shared: Arc<LookupQueue>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct LookupQueue {
    state: Mutex<LookupState>,
    /// Signalled for a sleeping thread when a lookup is queued (see [`Lookups::submit`]).
    queued: Condvar,
}

#[derive(Default)]
struct LookupState {
    waiting: VecDeque<(Guid, Completer<Option<Record>>)>,
    /// Threads waiting on `queued`.
    sleeping: usize,
    /// Of those, how many were signalled and have not yet woken: a signal is sent only when a
    /// sleeping thread has none on its way.
    signalled: usize,
    /// Threads started.
    threads: usize,
    closed: bool,
}

/// Lookup threads. One serves lookups answered from the OS page cache as fast as more would on a
/// server's one core; a second overlaps reads that wait for the disk. Each has a page cache of
/// [`READ_CACHE_MAX_KIB`] (the inner pages of 10 million records fit). Measured at 1,000,000
/// records, GETs over 200,000 GUIDs (half of them misses): RSS 68 MiB with one, 77 with two, 97
/// with four; CPU time per request the same within the noise.
const LOOKUP_THREADS: usize = 2;

/// Lookups queued per awake lookup thread before another is woken: a thread woken for each
/// lookup would cost a context switch each, on one core; a queue much longer than the awake
/// threads drain (reads waiting for the disk) wakes more of them.
const LOOKUPS_PER_THREAD: usize = 8;

impl Lookups {
    /// Starts a thread for each connection.
    fn start(connections: Vec<Connection>) -> std::io::Result<Lookups> {
        let shared = Arc::new(LookupQueue { state: Mutex::new(LookupState::default()), queued: Condvar::new() });
        let lookups = Lookups { shared, threads: Mutex::new(Vec::with_capacity(connections.len())) };
        for connection in connections {
            let shared = Arc::clone(&lookups.shared);
            // Counted first: the thread may sleep before `start` goes on.
            lookups.shared.lock().threads += 1;
            // On an error, dropping `lookups` stops the threads already started.
            let thread = std::thread::Builder::new()
                .name("guidstore-lookup".to_owned())
                .spawn(move || shared.serve(&connection))?;
            lock(&lookups.threads).push(thread);
        }
        Ok(lookups)
    }

    /// Queues a lookup of `guid`; its answer is the record stored, expired or not.
    fn submit(&self, guid: Guid) -> Pending<Option<Record>> {
        let (answer, pending) = pending();
        let mut state = self.shared.lock();
        if state.closed {
            return Pending::ready(Err(Error::Closed));
        }
        state.waiting.push_back((guid, answer));
        let awake = state.threads - state.sleeping + state.signalled;
        let wake = state.sleeping > state.signalled && state.waiting.len() > awake * LOOKUPS_PER_THREAD;
        if wake {
            state.signalled += 1;
        }
        drop(state);
        if wake {
            self.shared.queued.notify_one();
        }
        pending
    }

    /// Stops the threads once they have answered what is queued; later lookups fail as closed.
    fn stop(&self) {
        self.shared.lock().closed = true;
        self.shared.queued.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            // A lookup thread may itself drop the last store (through a caller's waker it drops):
            // it ends by itself once the queue is empty; it cannot join itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        self.stop();
    }
}

impl LookupQueue {
    fn lock(&self) -> MutexGuard<'_, LookupState> {
        // Every change under the lock leaves a valid state: a poisoned lock still holds one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A lookup thread: answers queued lookups until the queue is empty, then sleeps until one
    /// is queued; ends once the queue is closed and empty.
    fn serve(&self, connection: &Connection) {
        let mut state = self.lock();
        loop {
            if let Some((guid, answer)) = state.waiting.pop_front() {
                drop(state);
                // A caller that gave up (a request cut short) is not answered. Completing wakes
                // the caller's task through its waker, foreign code: should it panic, the lookup
                // thread goes on (a dead one would be counted as asleep, and misses could hang).
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if !answer.is_abandoned() {
                        answer.complete(load_record(connection, &guid));
                    }
                }));
                if served.is_err() {
                    log::error!(
                        "guidstore: a lookup of {guid} panicked (its caller's waker?); the lookup thread goes on"
                    );
                }
                state = self.lock();
                continue;
            }
            if state.closed {
                return;
            }
            state.sleeping += 1;
            state = self.queued.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.sleeping -= 1;
            // A spurious wake-up may take another's signal: at worst one more thread is woken.
            state.signalled = state.signalled.saturating_sub(1);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file at `path`, migrating its schema.
    pub fn open(path: &Path, synchronous: Synchronous, max_idle_readers: usize) -> Result<SqliteBackend> {
        let opening = |error| open_error(path, error);
        // The write connection gathers each commit's WAL frames into one write (see `vfs`).
        let writer = if super::vfs::register() {
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), super::vfs::NAME)
        } else {
            Connection::open(path)
        };
        let writer = writer.map_err(opening)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(opening)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::transient(format!("cannot enable WAL mode (journal_mode is {mode})")).into());
        }
        configure(&writer).map_err(opening)?;
        writer.pragma_update(None, "cache_spill", false).map_err(opening)?;
        // Any statement journal stays in memory rather than in a file under /var/tmp.
        writer.pragma_update(None, "temp_store", "MEMORY").map_err(opening)?;
        writer.pragma_update(None, "synchronous", synchronous.pragma()).map_err(opening)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(opening)?;
        migrate(&writer, path)?;
        let checkpoint_connection = Connection::open(path).map_err(opening)?;
        configure(&checkpoint_connection).map_err(opening)?;
        checkpoint_connection.pragma_update(None, "synchronous", synchronous.pragma()).map_err(opening)?;
        let write_gate = Arc::new(Mutex::new(()));
        let checkpointer = Checkpointer::start(checkpoint_connection, path, Arc::clone(&write_gate))
            .map_err(|source| Error::open(path, source))?;
        let mut backend = SqliteBackend {
            path: Some(path.to_owned()),
            write_gate,
            writer: Mutex::new(Writer {
                connection: writer,
                rows_since_checkpoint: 0,
                checkpointer: Some(checkpointer),
            }),
            lookups: None,
            readers: Mutex::new(Vec::new()),
            max_idle_readers,
        };
        // Open the readers now, so a file readers cannot use fails here rather than on first read.
        let reader = backend.open_reader(backend.pooled_cache_kib())?;
        lock(&backend.readers).push(reader);
        let lookup_kib = (READ_CACHE_BUDGET_KIB / LOOKUP_THREADS).clamp(READ_CACHE_MIN_KIB, READ_CACHE_MAX_KIB);
        let connections =
            (0..LOOKUP_THREADS).map(|_| backend.open_reader(lookup_kib)).collect::<Result<Vec<Connection>>>()?;
        backend.lookups = Some(Lookups::start(connections).map_err(|source| Error::open(path, source))?);
        Ok(backend)
    }

    /// A private in-memory database. Reads share the write connection (they wait for a running
    /// write transaction); nothing survives the backend.
    pub fn open_in_memory() -> Result<SqliteBackend> {
        let writer = Connection::open_in_memory().db()?;
        configure(&writer).db()?;
        migrate(&writer, Path::new(":memory:"))?;
        Ok(SqliteBackend {
            path: None,
            writer: Mutex::new(Writer { connection: writer, rows_since_checkpoint: 0, checkpointer: None }),
            write_gate: Arc::new(Mutex::new(())),
            lookups: None,
            readers: Mutex::new(Vec::new()),
            max_idle_readers: 0,
        })
    }

    /// A read connection with a page cache of `cache_kib` KiB.
    /// The page cache of a pooled read connection, in KiB.
    fn pooled_cache_kib(&self) -> usize {
        (READ_CACHE_BUDGET_KIB / self.max_idle_readers.max(1)).clamp(READ_CACHE_MIN_KIB, READ_CACHE_MAX_KIB)
    }

    fn open_reader(&self, cache_kib: usize) -> Result<Connection> {
        let Some(path) = &self.path else { return Err(Error::Closed) };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).db()?;
        configure(&connection).db()?;
        connection.pragma_update(None, "cache_size", -(cache_kib as i64)).db()?;
        Ok(connection)
    }

    /// Runs `f` on a read connection: a pooled one, a new one, or (in memory) the writer's.
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.path.is_none() {
            return f(&lock(&self.writer).connection);
        }
        let pooled = lock(&self.readers).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => self.open_reader(self.pooled_cache_kib())?,
        };
        let result = f(&connection);
        let mut pool = lock(&self.readers);
        if pool.len() < self.max_idle_readers {
            pool.push(connection);
        }
        result
    }
}

/// An error while opening `path`: a file that is not a database, or cannot be opened, gets its
/// own variant; the rest are storage errors.
fn open_error(path: &Path, error: rusqlite::Error) -> Error {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            Error::NotAGuidstoreDatabase { path: path.to_owned(), reason: "file is not a database".to_owned() }
        }
        Some(rusqlite::ErrorCode::CannotOpen) => {
            Error::open(path, std::io::Error::new(std::io::ErrorKind::NotFound, error.to_string()))
        }
        _ => storage_error(error),
    }
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.set_prepared_statement_cache_capacity(16);
    Ok(())
}

fn migrate(connection: &Connection, path: &Path) -> Result<()> {
    let opening = |error| open_error(path, error);
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(opening)?;
    let application_id: i64 =
        connection.pragma_query_value(None, "application_id", |row| row.get(0)).map_err(opening)?;
    let supported = MIGRATIONS.len() as i64;
    if version == 0 {
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |row| row.get(0))
            .map_err(opening)?;
        if tables > 0 || application_id != 0 {
            return Err(Error::NotAGuidstoreDatabase {
                path: path.to_owned(),
                reason: "it holds other tables".to_owned(),
            });
        }
    } else if application_id != APPLICATION_ID {
        return Err(Error::NotAGuidstoreDatabase {
            path: path.to_owned(),
            reason: format!("application_id is {application_id}"),
        });
    }
    if version > supported {
        return Err(Error::UnsupportedSchema { found: version, supported });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = index as i64 + 1;
        let sql = format!(
            "BEGIN IMMEDIATE; {migration}; PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {next}; COMMIT;"
        );
        if let Err(error) = connection.execute_batch(&sql) {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(opening(error));
        }
        log::info!("guidstore: migrated database schema to version {next}");
    }
    Ok(())
}

fn load_record(connection: &Connection, guid: &Guid) -> Result<Option<Record>> {
    let mut statement =
        connection.prepare_cached("SELECT expire, metadata, version FROM records WHERE guid = ?1").db()?;
    let mut rows = statement.query([Key::of(guid)]).db()?;
    match rows.next().db()? {
        Some(row) => record_from_row(*guid, row, 0).map(Some),
        None => Ok(None),
    }
}

/// The stored records with these GUIDs (sorted, without duplicates): [`CHUNK`] GUIDs per query,
/// the rest one by one.
fn load_records(connection: &Connection, guids: &[Guid]) -> Result<Vec<Record>> {
    let mut found = Vec::with_capacity(guids.len());
    let mut chunks = guids.chunks_exact(CHUNK);
    if chunks.len() > 0 {
        let sql = format!(
            "SELECT guid, expire, metadata, version FROM records WHERE guid IN ({})",
            vec!["?"; CHUNK].join(", ")
        );
        let mut statement = connection.prepare_cached(&sql).db()?;
        for chunk in &mut chunks {
            let mut rows = statement.query(params_from_iter(chunk.iter().map(Key::of))).db()?;
            while let Some(row) = rows.next().db()? {
                found.push(record_from_row(stored_key(row.get_ref(0).db()?)?, row, 1)?);
            }
        }
    }
    for guid in chunks.remainder() {
        found.extend(load_record(connection, guid)?);
    }
    Ok(found)
}

struct SqliteTransaction<'c> {
    connection: &'c Connection,
    revision: u64,
    rows_written: u64,
    /// GUIDs that [`Transaction::load`] looked for and did not find, not written since: their
    /// rows are new, and go in with plain multi-row `INSERT`s.
    absent: HashSet<Guid>,
}

impl SqliteTransaction<'_> {
    /// Writes the rows `changes` leave in `records`, in GUID order: the batch's random GUIDs
    /// then descend the GUID index in order, touching each of its pages once, not at random.
    fn save_records(&mut self, changes: &[Change]) -> rusqlite::Result<()> {
        let mut states = FinalStates::of(changes);
        states.upserts.sort_unstable_by_key(|record| *record.guid());
        states.deletes.sort_unstable();
        // New rows (GUIDs the transaction found absent) go in many at a time. An upsert of many
        // rows would make SQLite keep a statement journal (see `CHUNK`); one row at a time it
        // does not, so rows that may exist are upserted one by one.
        let absent = &mut self.absent;
        let (inserts, upserts): (Vec<&Arc<Record>>, Vec<&Arc<Record>>) =
            states.upserts.iter().partition(|record| absent.remove(record.guid()));
        let insert = |rows: usize| {
            format!("INSERT OR ROLLBACK INTO records (guid, expire, metadata, version) VALUES {}", values_list(rows, 4))
        };
        let bind = |statement: &mut rusqlite::Statement<'_>, row: usize, record: &Record| {
            let first = row * 4;
            statement.raw_bind_parameter(first + 1, Key::of(record.guid()))?;
            statement.raw_bind_parameter(first + 2, sql_int(record.expire().as_secs()))?;
            statement.raw_bind_parameter(first + 3, record.metadata_json())?;
            statement.raw_bind_parameter(first + 4, record.version() as i64)
        };
        let mut chunks = inserts.chunks_exact(CHUNK);
        if chunks.len() > 0 {
            let mut statement = self.connection.prepare_cached(&insert(CHUNK))?;
            for chunk in &mut chunks {
                for (row, record) in chunk.iter().enumerate() {
                    bind(&mut statement, row, record)?;
                }
                statement.raw_execute()?;
            }
        }
        let mut statement = self.connection.prepare_cached(&insert(1))?;
        for record in chunks.remainder() {
            bind(&mut statement, 0, record)?;
            statement.raw_execute()?;
        }
        let mut statement = self.connection.prepare_cached(
            "INSERT INTO records (guid, expire, metadata, version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (guid) DO UPDATE SET
                 expire = excluded.expire, metadata = excluded.metadata, version = excluded.version",
        )?;
        for record in upserts {
            bind(&mut statement, 0, record)?;
            statement.raw_execute()?;
        }
        let mut delete = self.connection.prepare_cached("DELETE FROM records WHERE guid = ?1")?;
        for guid in &states.deletes {
            self.absent.remove(guid);
            delete.execute([Key::of(guid)])?;
        }
        self.rows_written += (states.upserts.len() + states.deletes.len()) as u64;
        Ok(())
    }

    /// Appends `changes` to the change log.
    fn save_changes(&mut self, changes: &[Change]) -> rusqlite::Result<()> {
        let insert = |rows: usize| {
            format!(
                "INSERT OR ROLLBACK INTO changes (revision, op, guid, at, expire, metadata, version) VALUES {}",
                values_list(rows, 7)
            )
        };
        let bind = |statement: &mut rusqlite::Statement<'_>, row: usize, change: &Change| {
            let first = row * 7;
            let record = change.record();
            statement.raw_bind_parameter(first + 1, sql_int(change.revision()))?;
            statement.raw_bind_parameter(first + 2, change.op().as_str())?;
            statement.raw_bind_parameter(first + 3, change.guid())?;
            statement.raw_bind_parameter(first + 4, sql_int(change.at()))?;
            statement.raw_bind_parameter(first + 5, record.map(|record| sql_int(record.expire().as_secs())))?;
            statement.raw_bind_parameter(first + 6, record.map(|record| record.metadata_json()))?;
            statement.raw_bind_parameter(first + 7, record.map(|record| record.version() as i64))
        };
        let mut chunks = changes.chunks_exact(CHUNK);
        if chunks.len() > 0 {
            let mut statement = self.connection.prepare_cached(&insert(CHUNK))?;
            for chunk in &mut chunks {
                for (row, change) in chunk.iter().enumerate() {
                    bind(&mut statement, row, change)?;
                }
                statement.raw_execute()?;
            }
        }
        let mut statement = self.connection.prepare_cached(&insert(1))?;
        for change in chunks.remainder() {
            bind(&mut statement, 0, change)?;
            statement.raw_execute()?;
        }
        // Appended rows fill pages in order: they do not count towards a checkpoint's work.
        Ok(())
    }
}

impl Transaction for SqliteTransaction<'_> {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn load(&mut self, guids: &[Guid]) -> Result<Vec<Record>> {
        let found = load_records(self.connection, guids)?;
        let present: HashSet<Guid> = found.iter().map(|record| *record.guid()).collect();
        self.absent.extend(guids.iter().filter(|guid| !present.contains(guid)));
        for guid in &present {
            self.absent.remove(guid);
        }
        Ok(found)
    }

    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<Guid>> {
        let mut statement =
            self.connection.prepare_cached("SELECT guid FROM records WHERE expire <= ?1 LIMIT ?2").db()?;
        let mut rows = statement.query(params![sql_int(now), sql_int(limit as u64)]).db()?;
        let mut guids = Vec::new();
        while let Some(row) = rows.next().db()? {
            guids.push(stored_key(row.get_ref(0).db()?)?);
        }
        Ok(guids)
    }

    fn apply(&mut self, changes: &[Change]) -> Result<()> {
        let Some(last) = changes.last() else { return Ok(()) };
        self.save_changes(changes).db()?;
        self.save_records(changes).db()?;
        self.connection
            .prepare_cached("UPDATE guidstore_meta SET revision = ?1 WHERE id = 1")
            .and_then(|mut statement| statement.execute([sql_int(last.revision())]))
            .db()?;
        Ok(())
    }
}

/// The newest revision, from the one row of `guidstore_meta`.
fn read_revision(connection: &Connection) -> rusqlite::Result<u64> {
    let revision: i64 = connection
        .prepare_cached("SELECT revision FROM guidstore_meta WHERE id = 1")?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(revision).unwrap_or(0))
}

impl Backend for SqliteBackend {
    fn load(&self, guid: &Guid) -> Result<Option<Record>> {
        self.with_reader(|connection| load_record(connection, guid))
    }

    fn load_async(&self, guid: Guid) -> Option<BoxFuture<'_, Result<Option<Record>>>> {
        self.lookups.as_ref().map(|lookups| Box::pin(lookups.submit(guid)) as BoxFuture<'_, _>)
    }

    fn loads_without_blocking(&self) -> bool {
        self.lookups.is_some()
    }

    fn import_batch(&self) -> usize {
        crate::SQLITE_IMPORT_BATCH
    }

    fn write(&self, _prefetch: &[Guid], work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()> {
        let mut writer = lock(&self.writer);
        let gate = lock(&self.write_gate);
        let connection = &writer.connection;
        let outcome = connection.execute_batch("BEGIN IMMEDIATE").and_then(|()| read_revision(connection)).db();
        let mut rows_written = 0;
        let outcome = outcome.and_then(|revision| {
            let mut transaction = SqliteTransaction { connection, revision, rows_written: 0, absent: HashSet::new() };
            let outcome = work(&mut transaction);
            rows_written = transaction.rows_written;
            outcome
        });
        let outcome = outcome.and_then(|()| connection.execute_batch("COMMIT").db());
        if outcome.is_err()
            && !connection.is_autocommit()
            && let Err(error) = connection.execute_batch("ROLLBACK")
        {
            log::error!("guidstore: rollback failed: {error}");
        }
        drop(gate);
        if outcome.is_ok() {
            writer.rows_since_checkpoint += rows_written;
            if writer.rows_since_checkpoint >= CHECKPOINT_EVERY_ROWS {
                writer.rows_since_checkpoint = 0;
                if let Some(checkpointer) = &writer.checkpointer {
                    // Full means a wake-up is already pending: nothing to add.
                    let _ = checkpointer.wake.try_send(());
                }
            }
        }
        outcome
    }

    fn scan(&self, after: Option<&Guid>, now: u64, limit: usize) -> Result<Vec<Record>> {
        self.with_reader(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT guid, expire, metadata, version FROM records
                     WHERE guid > ?1 AND expire > ?2 ORDER BY guid LIMIT ?3",
                )
                .db()?;
            // The empty BLOB sorts before every 16-byte key.
            let after = after.map_or_else(Vec::new, |guid| guid.to_bytes().to_vec());
            let mut rows = statement.query(params![after, sql_int(now), sql_int(limit as u64)]).db()?;
            let mut records = Vec::with_capacity(limit.min(1024));
            while let Some(row) = rows.next().db()? {
                records.push(record_from_row(stored_key(row.get_ref(0).db()?)?, row, 1)?);
            }
            Ok(records)
        })
    }

    fn revision(&self) -> Result<u64> {
        self.with_reader(|connection| read_revision(connection).db())
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.with_reader(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT revision, op, guid, at, expire, metadata, version FROM changes
                     WHERE revision > ?1 ORDER BY revision LIMIT ?2",
                )
                .db()?;
            let rows = statement
                .query_map(params![sql_int(after), sql_int(limit as u64)], |row| {
                    let columns: ChangeRow =
                        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?);
                    Ok(columns)
                })
                .db()?;
            rows.map(|row| row.db().and_then(stored_change)).collect()
        })
    }

    fn oldest_revision(&self) -> Result<Option<u64>> {
        self.with_reader(|connection| {
            let oldest: Option<i64> =
                connection.query_row("SELECT min(revision) FROM changes", [], |row| row.get(0)).db()?;
            Ok(oldest.and_then(|revision| u64::try_from(revision).ok()))
        })
    }

    fn trim_changes(&self, below: u64, before_at: u64, limit: usize) -> Result<u64> {
        // On the write connection, as a write transaction of its own between the writer's.
        let writer = lock(&self.writer);
        let gate = lock(&self.write_gate);
        let removed = writer
            .connection
            .prepare_cached(
                "DELETE FROM changes WHERE revision IN
                     (SELECT revision FROM changes WHERE revision < ?1 AND at < ?2 ORDER BY revision LIMIT ?3)",
            )
            .and_then(|mut statement| {
                statement.execute(params![sql_int(below), sql_int(before_at), sql_int(limit as u64)])
            })
            .db();
        drop(gate);
        Ok(removed? as u64)
    }

    fn count_live(&self, now: u64) -> Result<u64> {
        self.with_reader(|connection| {
            let count: i64 = connection
                .prepare_cached("SELECT count(*) FROM records WHERE expire > ?1")
                .and_then(|mut statement| statement.query_row([sql_int(now)], |row| row.get(0)))
                .db()?;
            Ok(count as u64)
        })
    }

    fn check(&self) -> Result<()> {
        self.with_reader(|connection| {
            connection.prepare_cached("SELECT 1 FROM records LIMIT 1").and_then(|mut s| s.exists([])).db()?;
            Ok(())
        })
    }

    fn close(&self) -> Result<()> {
        if let Some(lookups) = &self.lookups {
            lookups.stop();
        }
        lock(&self.readers).clear();
        let mut writer = lock(&self.writer);
        if let Some(mut checkpointer) = writer.checkpointer.take() {
            checkpointer.stop();
        }
        if self.path.is_some() {
            writer.connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).db()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expiry, Metadata, Op};

    fn write_rows(backend: &SqliteBackend, count: usize) {
        backend
            .write(&[], &mut |txn| {
                let first = txn.revision() + 1;
                let changes: Vec<Change> = (first..first + count as u64)
                    .map(|revision| {
                        let expire = Expiry::new_after(4_000_000_000, 0).unwrap();
                        let record = Arc::new(Record::new(Guid::random(), expire, Metadata::new(), 1));
                        Change::put(revision, Op::Create, 0, record)
                    })
                    .collect();
                txn.apply(&changes)
            })
            .unwrap();
    }

    /// A file as schema 2 (the records table keyed by rowid, GUIDs as text) left it, with records
    /// and changes, opened by this code: it migrates to schema 3 and every record and change is
    /// still there, with the same content, readable by GUID, in GUID order, and in the change log.
    #[test]
    fn a_schema_2_file_migrates_to_16_byte_keys_keeping_every_record_and_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        let guids: Vec<Guid> = (0..300).map(|_| Guid::random()).collect();
        {
            let old = Connection::open(&path).unwrap();
            old.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
            for (index, migration) in MIGRATIONS[..2].iter().enumerate() {
                let next = index + 1;
                old.execute_batch(&format!(
                    "BEGIN; {migration}; PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {next}; COMMIT;"
                ))
                .unwrap();
            }
            for (n, guid) in guids.iter().enumerate() {
                let metadata = format!(r#"{{"n":{n},"user":"u{n}"}}"#);
                old.execute(
                    "INSERT INTO records (guid, expire, metadata, version) VALUES (?1, ?2, ?3, ?4)",
                    params![guid.as_str(), 4_000_000_000i64 + n as i64, metadata, n as i64 + 7],
                )
                .unwrap();
                old.execute(
                    "INSERT INTO changes (revision, op, guid, at, expire, metadata, version)
                     VALUES (?1, 'create', ?2, 5, ?3, ?4, ?5)",
                    params![n as i64 + 1, guid.as_str(), 4_000_000_000i64 + n as i64, metadata, n as i64 + 7],
                )
                .unwrap();
            }
            old.execute(
                "INSERT INTO changes (revision, op, guid, at) VALUES (301, 'delete', ?1, 6)",
                [Guid::random().as_str()],
            )
            .unwrap();
            old.execute("UPDATE guidstore_meta SET revision = 301", []).unwrap();
        }

        let backend = SqliteBackend::open(&path, Synchronous::Full, 1).unwrap();
        let expected = |n: usize| (4_000_000_000 + n as u64, format!(r#"{{"n":{n},"user":"u{n}"}}"#), n as u64 + 7);
        for (n, guid) in guids.iter().enumerate() {
            let record = backend.load(guid).unwrap().expect("a migrated record");
            assert_eq!((record.expire().as_secs(), record.metadata_json(), record.version()), expected(n));
        }
        let mut sorted = guids.clone();
        sorted.sort_unstable();
        let first = backend.scan(None, 0, 100).unwrap();
        let rest = backend.scan(Some(first.last().unwrap().guid()), 0, 1000).unwrap();
        let scanned: Vec<Guid> = first.iter().chain(&rest).map(|record| *record.guid()).collect();
        assert_eq!(scanned, sorted);
        assert_eq!(backend.count_live(0).unwrap(), 300);
        assert_eq!(backend.revision().unwrap(), 301);
        let changes = backend.changes_after(0, 1000).unwrap();
        assert_eq!(changes.len(), 301);
        for (n, change) in changes.iter().take(300).enumerate() {
            assert_eq!((change.revision(), change.guid()), (n as u64 + 1, &guids[n]));
            let record = change.record().unwrap();
            assert_eq!((record.expire().as_secs(), record.metadata_json(), record.version()), expected(n));
        }
        assert!(changes[300].record().is_none());
        // Writes go on from there, and the table is keyed by the 16 bytes.
        write_rows(&backend, 5);
        assert_eq!(backend.count_live(0).unwrap(), 305);
        backend.close().unwrap();
        let connection = Connection::open(&path).unwrap();
        let (version, sql): (i64, String) = connection
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), sql FROM sqlite_schema WHERE name = 'records'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(version, 3);
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
        let key_length: i64 =
            connection.query_row("SELECT max(length(guid)) FROM records", [], |row| row.get(0)).unwrap();
        assert_eq!(key_length, 16);
    }

    /// A write whose multi-row insert fails (a revision already in the change log) leaves nothing
    /// of its transaction, and the next write commits.
    #[test]
    fn a_failing_multi_row_insert_rolls_back_its_whole_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("db"), Synchronous::Normal, 1).unwrap();
        write_rows(&backend, 1);
        let expire = Expiry::new_after(4_000_000_000, 0).unwrap();
        let put = |revision| {
            Change::put(revision, Op::Create, 0, Arc::new(Record::new(Guid::random(), expire, Metadata::new(), 1)))
        };
        // Revisions 2..=65 then 1 again: the chunk of 64 goes in, the last row conflicts.
        let changes: Vec<Change> = (2..2 + CHUNK as u64).map(put).chain([put(1)]).collect();
        assert!(backend.write(&[], &mut |txn| txn.apply(&changes)).is_err());
        assert_eq!((backend.count_live(0).unwrap(), backend.revision().unwrap()), (1, 1));
        assert_eq!(backend.changes_after(0, 1000).unwrap().len(), 1);
        write_rows(&backend, CHUNK + 1);
        assert_eq!(backend.count_live(0).unwrap(), CHUNK as u64 + 2);
        backend.close().unwrap();
    }

    /// Batched loads (full chunks and the rest) find exactly the stored records among absent ones.
    #[test]
    fn a_transaction_loads_many_guids_in_chunks() {
        let backend = SqliteBackend::open_in_memory().unwrap();
        let stored: Vec<Guid> = (0..CHUNK * 2 + 5).map(|_| Guid::random()).collect();
        backend
            .write(&[], &mut |txn| {
                let changes: Vec<Change> = stored
                    .iter()
                    .enumerate()
                    .map(|(n, guid)| {
                        let expire = Expiry::new_after(4_000_000_000, 0).unwrap();
                        Change::put(
                            n as u64 + 1,
                            Op::Create,
                            0,
                            Arc::new(Record::new(*guid, expire, Metadata::new(), 1)),
                        )
                    })
                    .collect();
                txn.apply(&changes)
            })
            .unwrap();
        let mut asked: Vec<Guid> = stored.iter().step_by(2).copied().chain((0..100).map(|_| Guid::random())).collect();
        asked.sort_unstable();
        let mut found = Vec::new();
        backend
            .write(&[], &mut |txn| {
                found = txn.load(&asked)?.iter().map(|record| *record.guid()).collect();
                Ok(())
            })
            .unwrap();
        found.sort_unstable();
        let mut expected: Vec<Guid> = stored.iter().step_by(2).copied().collect();
        expected.sort_unstable();
        assert_eq!(found, expected);
    }

    /// Lookups queued all at once on a file (more than the threads, while they sleep) are each
    /// answered with the stored record or `None`; after `close` a lookup fails as closed.
    #[test]
    fn lookup_threads_answer_every_queued_lookup_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("db"), Synchronous::Normal, 1).unwrap();
        assert!(backend.loads_without_blocking());
        write_rows(&backend, 200);
        let stored = backend.scan(None, 0, 1000).unwrap();
        let asked: Vec<Guid> =
            stored.iter().map(|record| *record.guid()).chain((0..50).map(|_| Guid::random())).collect();
        let lookups: Vec<_> = asked.iter().map(|guid| backend.load_async(*guid).unwrap()).collect();
        let answers: Vec<Option<Record>> =
            lookups.into_iter().map(|lookup| crate::pending::park_on(lookup).unwrap()).collect();
        for (n, answer) in answers.iter().enumerate() {
            match stored.get(n) {
                Some(record) => assert_eq!(answer.as_ref().map(Record::metadata_json), Some(record.metadata_json())),
                None => assert!(answer.is_none(), "{:?}", asked[n]),
            }
        }
        backend.close().unwrap();
        let after = crate::pending::park_on(backend.load_async(asked[0]).unwrap());
        assert!(matches!(after, Err(Error::Closed)), "{after:?}");
    }

    /// A sleeping lookup thread is signalled for the first lookup queued; another only once the
    /// queue holds more than [`LOOKUPS_PER_THREAD`] per thread awake; none once every sleeping
    /// thread is on its way.
    #[test]
    fn a_burst_of_lookups_wakes_one_thread_per_lookups_per_thread_queued() {
        let lookups = Lookups::start(Vec::new()).unwrap();
        // Two threads, both asleep (none runs: nothing takes the lookups).
        {
            let mut state = lookups.shared.lock();
            (state.threads, state.sleeping) = (2, 2);
        }
        let signalled = |lookups: &Lookups| lookups.shared.lock().signalled;
        let mut queued = vec![lookups.submit(Guid::random())];
        assert_eq!(signalled(&lookups), 1);
        while queued.len() < LOOKUPS_PER_THREAD {
            queued.push(lookups.submit(Guid::random()));
        }
        assert_eq!(signalled(&lookups), 1);
        queued.push(lookups.submit(Guid::random()));
        assert_eq!(signalled(&lookups), 2);
        queued.extend((0..100).map(|_| lookups.submit(Guid::random())));
        assert_eq!(signalled(&lookups), 2);
        // Stopping answers nothing itself: the queued lookups' answers are dropped with the queue.
        lookups.stop();
        drop(lookups);
        for lookup in queued {
            assert!(matches!(crate::pending::park_on(lookup), Err(Error::Closed)));
        }
    }

    /// Frames in the WAL now (a passive checkpoint reports them).
    fn wal_frames(path: &Path) -> i64 {
        let connection = Connection::open(path).unwrap();
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1)).unwrap()
    }

    #[test]
    fn a_steady_write_load_starts_the_wal_over_after_each_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let backend = SqliteBackend::open(&path, Synchronous::Normal, 1).unwrap();
        let runs = Arc::clone(&lock(&backend.writer).checkpointer.as_ref().unwrap().runs);
        for _ in 0..CHECKPOINT_EVERY_ROWS / 1000 {
            write_rows(&backend, 1000);
        }
        // The last write woke the checkpointer; go on writing while it runs, as a server under
        // load does. Its passive step alone cannot then copy the whole WAL.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut rows = CHECKPOINT_EVERY_ROWS;
        while runs.load(Ordering::Acquire) == 0 {
            assert!(std::time::Instant::now() < deadline, "the checkpointer did not run");
            write_rows(&backend, 100);
            rows += 100;
        }
        write_rows(&backend, 10);
        let frames = wal_frames(&path);
        // Each 1,000-row write adds about 200 frames: 10,000 rows left about 2,000 in the WAL.
        assert!(frames < 500, "the WAL was not started over: {frames} frames");
        assert_eq!(backend.count_live(0).unwrap(), rows + 10);
        backend.close().unwrap();
    }
}
