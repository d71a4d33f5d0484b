//! The storage seam: [`Backend`] and [`Transaction`]. The [`Store`](crate::Store) keeps every rule
//! (expiry, conflicts, preconditions, merge patches, caching, group commit, revisions); a backend
//! only loads records and saves the changes the store computed, with their revisions, in one
//! transaction.
//!
//! Backends, one file each: `sqlite` (the embedded default, always built, with `vfs`, its write
//! connection's VFS shim), `postgres` (feature `postgres`) and `mysql` (feature `mysql`), which
//! share `runtime`, the private async runtime that drives their drivers, and `tls`, the URL's TLS
//! parameters (`sslmode`, `sslrootcert`) and the rustls configuration. `location` parses the
//! storage URL that picks one. SQL migrations live in `guidstore/migrations/BACKEND/`.

pub(crate) mod location;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod revision;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
pub(crate) mod runtime;
pub(crate) mod sqlite;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod tls;
mod vfs;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Change, Error, Expiry, Guid, Op, Record, Result, StorageError};

/// Connection settings of a network backend, from [`Options`](crate::Options).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code, reason = "no network backend built"))]
pub(crate) struct NetworkSettings {
    /// Most connections open at once.
    pub(crate) pool_size: usize,
    /// How long any database call (connect, query, commit) may take.
    pub(crate) timeout: Duration,
}

/// A backend call in progress, for an async caller: boxed, `Send`, free of any runtime type.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reusable timer for pauses well under a millisecond, driven by a backend's runtime
/// ([`Backend::pause_timer`]).
pub(crate) trait PauseTimer: Send {
    /// Resolves at `until` (at once if it has passed), or at once if the timer cannot be armed.
    fn sleep_until(&mut self, until: Instant) -> BoxFuture<'_, ()>;
}

/// One write transaction, driven by the store's writer thread. Between its start and its end no
/// other write transaction commits on the same database (the backend serializes them), so what
/// [`Transaction::load`] returns stays true until the commit.
pub(crate) trait Transaction {
    /// The revision of the newest change committed before this transaction (0 when none).
    fn revision(&self) -> u64;
    /// The stored records with these GUIDs, expired or not; absent ones are left out.
    fn load(&mut self, guids: &[Guid]) -> Result<Vec<Record>>;
    /// Up to `limit` GUIDs of stored records with `expire <= now`.
    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<Guid>>;
    /// Saves `changes` (in revision order, numbered on from [`Transaction::revision`]): the
    /// records they leave, and the changes themselves in the change log.
    fn apply(&mut self, changes: &[Change]) -> Result<()>;
}

/// Durable storage of records and of the change log.
///
/// `write` is called only from the store's writer thread, one call at a time; the other methods
/// may be called from any thread, concurrently with `write`, and see every committed write.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The stored record with this GUID, expired or not.
    fn load(&self, guid: &Guid) -> Result<Option<Record>>;

    /// [`Backend::load`] as a future that blocks no thread while the database answers (a network
    /// backend: its driver is async; a SQLite file: its lookup threads), bounded like `load`.
    /// `None`: `load` blocks (an in-memory database), call it on a thread that may block.
    fn load_async(&self, guid: Guid) -> Option<BoxFuture<'_, Result<Option<Record>>>> {
        let _ = guid;
        None
    }

    /// Whether [`Backend::load_async`] always returns a future (that blocks no thread).
    fn loads_without_blocking(&self) -> bool {
        self.is_shared()
    }

    /// [`Backend::revision`] as a future (a freshness round's query), given up at `deadline`
    /// with a transient error (a network backend; `None`: bounded as `revision` is). By default it
    /// calls `revision` when first polled.
    fn revision_until(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<u64>> {
        let _ = deadline;
        Box::pin(async move { self.revision() })
    }

    /// A future that resolves at `deadline`, driven by the backend's runtime (a network backend;
    /// to bound a wait with one timer). `None`: the backend has no timers (its waits are not bounded).
    fn timer(&self, deadline: Instant) -> Option<BoxFuture<'static, ()>> {
        let _ = deadline;
        None
    }

    /// A timer for the short pauses that pace freshness rounds under load (see `coherence.rs`'s
    /// [`pause_for`](crate::coherence::pause_for)), far finer than the runtime's millisecond
    /// timers. `None`: rounds are not paced.
    fn pause_timer(&self) -> Option<Box<dyn PauseTimer>> {
        None
    }

    /// Runs `task` in the background: on a network backend, on the runtime that drives its
    /// driver; by default on a thread of its own.
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        let spawned =
            std::thread::Builder::new().name("guidstore-task".to_owned()).spawn(move || crate::pending::park_on(task));
        if let Err(error) = spawned {
            log::error!("guidstore: cannot start a background task: {error}");
        }
    }

    /// Whether other processes may write to the same database (a network database), so that
    /// this process learns of their changes only from the change log.
    fn is_shared(&self) -> bool {
        false
    }

    /// Records per import transaction ([`crate::IMPORT_BATCH`] unless the backend says otherwise).
    fn import_batch(&self) -> usize {
        crate::IMPORT_BATCH
    }

    /// Calls `wake` whenever another process may have committed a change (PostgreSQL
    /// `LISTEN`/`NOTIFY`), so that the tailer need not wait for its next poll. Backends without
    /// notifications ignore it.
    fn listen(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }

    /// Runs `work` in one transaction: committed durably if `work` returns `Ok`, rolled back
    /// otherwise. Returns only after the commit is durable. `prefetch` is what `work` will first
    /// [`Transaction::load`]: a network backend may load it in the round trip that opens the
    /// transaction.
    fn write(&self, prefetch: &[Guid], work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;

    /// [`Backend::write`], given up (rolled back, a transient error) if it has not committed by
    /// `deadline`: the writer passes the deadline of the oldest write in the batch, so no write
    /// waits for an unanswering database longer than [`Backend::timeout`] in all. Backends that
    /// bound nothing (SQLite) ignore it.
    fn write_until(
        &self,
        deadline: Instant,
        prefetch: &[Guid],
        work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>,
    ) -> Result<()> {
        let _ = deadline;
        self.write(prefetch, work)
    }

    /// How long a request may wait for this backend in all (`Options::timeout`), or `None` when
    /// its waits are not bounded (SQLite: a local file).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Up to `limit` records live at `now` with GUIDs after `after`, in GUID order.
    fn scan(&self, after: Option<&Guid>, now: u64, limit: usize) -> Result<Vec<Record>>;

    /// The revision of the newest committed change (0 when none).
    fn revision(&self) -> Result<u64>;

    /// Up to `limit` committed changes with revisions above `after`, in revision order.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>>;

    /// The revision of the oldest change the log still holds (`None` when it is empty).
    fn oldest_revision(&self) -> Result<Option<u64>>;

    /// Removes up to `limit` changes with `revision < below` and `at < before_at` from the change
    /// log, oldest first; how many were removed. It must not hold up writes for long.
    fn trim_changes(&self, below: u64, before_at: u64, limit: usize) -> Result<u64>;

    /// How many records are live (`expire > now`).
    fn count_live(&self, now: u64) -> Result<u64>;

    /// The registry's random id, made when the database was first migrated (`guidstore_meta`): it
    /// names the registry's keys in a shared cache. Backends that are never shared have none.
    #[cfg_attr(not(feature = "redis"), allow(dead_code, reason = "no shared cache built"))]
    fn registry_id(&self) -> Result<String> {
        Err(StorageError::permanent("this backend has no registry id").into())
    }

    /// Whether storage answers a trivial query (for health checks).
    fn check(&self) -> Result<()>;

    /// Flushes whatever the backend keeps in memory before the store closes (e.g. a WAL checkpoint).
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// A record from its stored columns (as every backend stores them).
pub(crate) fn stored_record(guid: Guid, expire: i64, metadata: &str, version: i64) -> Result<Record> {
    let corrupt = |what: &str| Error::from(StorageError::permanent(format!("record {guid}: stored {what} is invalid")));
    let expire = Expiry::from_stored(expire).ok_or_else(|| corrupt("expire"))?;
    // Checked without building the map (the record parses it only if asked): a JSON object, in
    // the compact form this library writes.
    let object = metadata.starts_with('{') && metadata.ends_with('}');
    if !object || serde_json::from_str::<serde::de::IgnoredAny>(metadata).is_err() {
        return Err(corrupt("metadata"));
    }
    Ok(Record::from_metadata_json(guid, expire, metadata, version as u64))
}

/// A GUID read back from storage as text.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code, reason = "no network backend built"))]
pub(crate) fn stored_guid(text: &str) -> Result<Guid> {
    Guid::parse(text).map_err(|_| StorageError::permanent(format!("stored GUID {text:?} is invalid")).into())
}

/// The columns of one row of the change log: revision, op, guid, at, and the record's expire,
/// metadata and version after a create or update.
pub(crate) type ChangeRow = (i64, String, String, i64, Option<i64>, Option<String>, Option<i64>);

/// A change from its stored columns.
pub(crate) fn stored_change((revision, op, guid, at, expire, metadata, version): ChangeRow) -> Result<Change> {
    let invalid =
        |what: &str| Error::from(StorageError::permanent(format!("change {revision}: stored {what} is invalid")));
    let guid = Guid::parse(&guid).map_err(|_| invalid("guid"))?;
    let op = Op::parse(&op).ok_or_else(|| invalid("op"))?;
    let revision = u64::try_from(revision).map_err(|_| invalid("revision"))?;
    let at = u64::try_from(at).unwrap_or(0);
    match (expire, metadata, version) {
        (Some(expire), Some(metadata), Some(version)) => {
            Ok(Change::put(revision, op, at, Arc::new(stored_record(guid, expire, &metadata, version)?)))
        }
        _ => Ok(Change::remove(revision, op, at, guid)),
    }
}

/// A Unix time, count or revision as SQL's signed 64-bit integer.
pub(crate) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What a batch of changes leaves in the records table: the last change of each GUID decides
/// whether its row is written (`upserts`) or removed (`deletes`). Set-based backends write these
/// with one statement each.
pub(crate) struct FinalStates<'a> {
    pub(crate) upserts: Vec<&'a Arc<Record>>,
    pub(crate) deletes: Vec<Guid>,
}

impl<'a> FinalStates<'a> {
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql")),
        allow(dead_code, reason = "no network backend built")
    )]
    pub(crate) fn of(changes: &'a [Change]) -> FinalStates<'a> {
        let mut last: HashMap<Guid, Option<&'a Arc<Record>>> = HashMap::with_capacity(changes.len());
        let mut order = Vec::with_capacity(changes.len());
        for change in changes {
            if last.insert(*change.guid(), change.record()).is_none() {
                order.push(*change.guid());
            }
        }
        let mut states = FinalStates { upserts: Vec::new(), deletes: Vec::new() };
        for guid in order {
            match last.get(&guid).copied().flatten() {
                Some(record) => states.upserts.push(record),
                None => states.deletes.push(guid),
            }
        }
        states
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metadata;

    #[test]
    fn a_stored_record_with_invalid_metadata_is_refused_without_parsing_a_map() {
        let guid = Guid::random();
        let record = stored_record(guid, 2_000_000_000, r#"{"user":"Jay","n":[1,2]}"#, -5).unwrap();
        assert_eq!(record.metadata()["user"], "Jay");
        assert_eq!(record.version(), (-5_i64) as u64);
        for corrupt in ["", "[1]", "{", r#"{"a":1"#, r#"{"a":}"#, "{} {}", "null", r#""{}""#] {
            let error = stored_record(guid, 2_000_000_000, corrupt, 1).unwrap_err();
            assert!(error.to_string().contains("stored metadata is invalid"), "{corrupt:?}: {error}");
        }
    }

    #[test]
    fn the_last_change_of_each_guid_decides_its_row() {
        let record = |guid: Guid, n: i64| {
            let metadata: Metadata = [("n".to_owned(), n.into())].into_iter().collect();
            Arc::new(Record::new(guid, Expiry::new_after(2_000_000_000, 0).unwrap(), metadata, 1))
        };
        let (a, b, c) = (Guid::random(), Guid::random(), Guid::random());
        let changes = vec![
            Change::put(1, Op::Create, 0, record(a, 1)),
            Change::put(2, Op::Create, 0, record(b, 1)),
            Change::remove(3, Op::Delete, 0, a),
            Change::put(4, Op::Update, 0, record(b, 2)),
            Change::remove(5, Op::Expire, 0, c),
            Change::put(6, Op::Create, 0, record(c, 3)),
        ];
        let states = FinalStates::of(&changes);
        let upserts: Vec<_> = states.upserts.iter().map(|r| (*r.guid(), r.metadata()["n"].clone())).collect();
        assert_eq!(upserts, vec![(b, 2.into()), (c, 3.into())]);
        assert_eq!(states.deletes, vec![a]);
    }
}
