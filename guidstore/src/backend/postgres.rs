//! [`PostgresBackend`]: records in a PostgreSQL database shared by any number of processes
//! (feature `postgres`), through tokio-postgres connections pooled by deadpool-postgres and driven
//! by the private [`DbRuntime`].
//!
//! Write transactions start by locking the one row of `guidstore_meta` (`FOR UPDATE`), so they
//! commit one at a time across every process, and the revision they take from it is commit order.
//! A batch costs a few round trips, whatever its size: the lock, one `load` of every GUID
//! (`= ANY($1)`), the changes as four pipelined set-based statements (`unnest` arrays), and the
//! commit. Migrations (`guidstore/migrations/postgres/`) run under an advisory lock, so processes
//! starting together migrate once.

use std::future::Future;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::NetworkSettings;
use super::revision::{Discard, RevisionSlot};
use super::runtime::{DbRuntime, park_on};
use crate::backend::{
    Backend, BoxFuture, ChangeRow, FinalStates, Transaction, sql_int, stored_change, stored_guid, stored_record,
};
use crate::{Change, Error, Guid, Record, Result, StorageError};

/// Schema migrations; `guidstore_meta.schema_version` is the number applied.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/postgres/0001_initial.sql")];

/// The advisory lock held while migrating ("GUID" in ASCII).
const MIGRATION_LOCK: i64 = 0x4755_4944;

pub(crate) struct PostgresBackend {
    runtime: DbRuntime,
    /// How long one request may wait for the database in all.
    timeout: Duration,
    pool: Pool,
    /// The connection settings, for the `LISTEN` connection.
    config: tokio_postgres::Config,
    /// The TLS connector (used as `config`'s `sslmode` says).
    tls: MakeRustlsConnect,
    /// The URL without its password, for messages.
    name: String,
    /// The connection freshness rounds read the newest revision on (see `revision.rs`).
    revision_connection: RevisionSlot<RevisionConnection>,
}

/// The revision connection of freshness rounds (see `revision.rs`): discarded by dropping it.
struct RevisionConnection {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
}

impl Discard for RevisionConnection {
    fn discard(self) {}
}

/// The newest committed revision (a freshness round's query).
const REVISION_SQL: &str = "SELECT revision FROM guidstore_meta WHERE id = 1";

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").field("database", &self.name).finish_non_exhaustive()
    }
}

/// A tokio-postgres error as a storage error: lost connections, timeouts, resource shortages,
/// shutdowns and serialization failures are transient.
fn pg_error(what: &str, error: tokio_postgres::Error) -> Error {
    let transient = error.is_closed()
        || match error.code() {
            Some(state) => matches!(state.code().get(..2), Some("08" | "40" | "53" | "55" | "57" | "58")),
            // No SQLSTATE: an I/O or protocol failure on the connection.
            None => true,
        };
    let message = format!("PostgreSQL: {what}");
    let storage = if transient { StorageError::transient(message) } else { StorageError::permanent(message) };
    Error::Storage(storage.with_source(error))
}

fn pool_error(error: PoolError) -> Error {
    match error {
        PoolError::Backend(error) => pg_error("connecting", error),
        other => StorageError::transient(format!("PostgreSQL connection pool: {other}")).into(),
    }
}

/// A connection taken from the pool that goes back to it only through [`Pooled::release`], after
/// calls that all succeeded. Dropped otherwise — a call that failed, timed out, or was abandoned
/// when its request's deadline passed — it leaves the pool for good and is closed (the server
/// rolls back whatever transaction it had open): a connection in an unknown state never serves
/// another request.
struct Pooled(Option<Object>);

impl Pooled {
    fn release(mut self) {
        // Dropping the `Object` itself returns it to the pool.
        drop(self.0.take());
    }
}

impl std::ops::Deref for Pooled {
    type Target = Object;

    fn deref(&self) -> &Object {
        // Only `release` and `drop` empty it, and both consume it.
        self.0.as_ref().unwrap_or_else(|| unreachable!("a released connection is not used"))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// Whether `error` is worth one more attempt on a fresh connection: a transient storage error (a
/// connection the server closed while it sat in the pool, a restart, a lock timeout).
fn retryable(error: &Error) -> bool {
    matches!(error, Error::Storage(storage) if storage.is_transient())
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://USER[:PASS]@HOST[:PORT]/DB[?sslmode=…]`),
    /// checks durability settings and migrates the schema. TLS is as `sslmode` and `sslrootcert`
    /// ask (see [`super::tls`]; `prefer` by default).
    pub(crate) fn open(url: &str, settings: NetworkSettings) -> Result<PostgresBackend> {
        let name = super::location::redact_url(url);
        let invalid = |reason: String| Error::InvalidUrl { url: name.clone(), reason };
        // tokio-postgres knows disable, prefer and require: the modes that check certificates
        // are this backend's, and the driver sees only whether to use TLS at all.
        let (url, tls) = super::tls::split_url(url).map_err(invalid)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| invalid(format!("{e}")))?;
        if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password);
        }
        if config.get_dbname().is_none() {
            return Err(invalid("it names no database (postgres://USER@HOST/DATABASE)".to_owned()));
        }
        config.ssl_mode(match tls.mode {
            super::tls::TlsMode::Disable => SslMode::Disable,
            super::tls::TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = MakeRustlsConnect::new(super::tls::client_config(&tls).map_err(invalid)?);
        config.connect_timeout(settings.timeout);
        config.keepalives(true).keepalives_idle(Duration::from_secs(10));
        // The server gives up on a statement the client has stopped waiting for.
        config.options(format!("-c statement_timeout={}", settings.timeout.as_millis()));
        config.application_name("guidstore");
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .recycle_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| StorageError::permanent(format!("PostgreSQL connection pool: {e}")))?;
        let runtime = DbRuntime::new("guidstore-postgres", settings.timeout)?;
        let backend = PostgresBackend {
            runtime,
            timeout: settings.timeout,
            pool,
            config,
            tls,
            name,
            revision_connection: RevisionSlot::new(),
        };
        backend.connect_and_migrate()?;
        Ok(backend)
    }

    fn connect_and_migrate(&self) -> Result<()> {
        let client =
            self.runtime.run("connecting", async { self.pool.get().await.map_err(pool_error) }).map_err(|error| {
                match error {
                    Error::Storage(storage) => {
                        Error::Storage(StorageError::context(format!("cannot connect to {}", self.name), storage))
                    }
                    other => other,
                }
            })?;
        self.warn_if_not_durable(&client);
        // Migrations may take longer than one call's timeout on a big database: run them
        // without it, but not without the server's own statement timeout being lifted for them.
        let name = self.name.clone();
        self.runtime.run("migrating", async move {
            client
                .batch_execute(&format!("SET statement_timeout = 0; SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .await
                .map_err(|e| pg_error("locking for migration", e))?;
            let result = migrate(&client, &name).await;
            let unlock = client
                .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK}); RESET statement_timeout"))
                .await;
            if result.is_ok() {
                unlock.map_err(|e| pg_error("unlocking after migration", e))?;
            } else {
                // The connection may be unusable: do not return it to the pool.
                drop(Object::take(client));
            }
            result
        })
    }

    /// Logs a warning for each setting under which PostgreSQL can lose acknowledged commits.
    fn warn_if_not_durable(&self, client: &Object) {
        for (setting, unsafe_values) in [("fsync", &["off"][..]), ("synchronous_commit", &["off"][..])] {
            let value = self.runtime.run("reading settings", async {
                let row = client.query_one(&format!("SHOW {setting}"), &[]).await.map_err(|e| pg_error("SHOW", e))?;
                Ok(row.get::<_, String>(0))
            });
            match value {
                Ok(value) if unsafe_values.contains(&value.as_str()) => log::warn!(
                    "guidstore: PostgreSQL {} has {setting} = {value}: a crash of the database server can lose \
                     writes guidstore has acknowledged",
                    self.name
                ),
                Ok(_) => {}
                Err(error) => log::warn!("guidstore: cannot read PostgreSQL setting {setting}: {error}"),
            }
        }
    }

    /// Runs `work` with a pooled connection, within one timeout in all. A transient failure is
    /// tried once more on a fresh connection, if time is left (a read is idempotent; the pool may
    /// have handed out a connection the server had closed). A connection whose call failed or
    /// timed out never returns to the pool.
    fn with_client<T>(&self, what: &str, work: impl AsyncFn(&Object) -> Result<T>) -> Result<T> {
        park_on(self.with_client_async(what, work))
    }

    /// [`PostgresBackend::with_client`] as a future: whoever polls it waits without blocking.
    fn with_client_async<'a, T: 'a>(
        &'a self,
        what: &'a str,
        work: impl AsyncFn(&Object) -> Result<T> + 'a,
    ) -> impl Future<Output = Result<T>> + 'a {
        self.runtime.bound(self.runtime.deadline(), what, async move {
            let mut retried = false;
            loop {
                let client = Pooled(Some(self.pool.get().await.map_err(pool_error)?));
                match work(&client).await {
                    Ok(value) => {
                        client.release();
                        return Ok(value);
                    }
                    Err(error) if !retried && retryable(&error) => {
                        log::debug!("guidstore: {what} failed ({error}); trying once more on a new connection");
                        retried = true;
                    }
                    Err(error) => return Err(error),
                }
            }
        })
    }
}

impl PostgresBackend {
    /// The stored record `guid` (a pooled connection, one round trip).
    fn load_record(&self, guid: Guid) -> impl Future<Output = Result<Option<Record>>> + Send + '_ {
        self.with_client_async("reading a record", async move |client| {
            let statement = client
                .prepare_cached("SELECT guid, expire, metadata, version FROM guidstore_records WHERE guid = $1")
                .await
                .map_err(|e| pg_error("preparing", e))?;
            let row =
                client.query_opt(&statement, &[&guid.as_str()]).await.map_err(|e| pg_error("reading a record", e))?;
            row.as_ref().map(record_from_row).transpose()
        })
    }

    /// The newest committed revision (see [`RevisionSlot::read`]); a transient error past `deadline`.
    fn read_revision(&self, deadline: Instant) -> impl Future<Output = Result<u64>> + Send + '_ {
        let read = self.revision_connection.read(
            self,
            retryable,
            |backend| Box::pin(backend.connect_revision()),
            |backend, connection| Box::pin(backend.query_revision(connection)),
            || Box::pin(self.read_revision_pooled()),
        );
        self.runtime.bound(deadline, "reading the revision", read)
    }

    /// The revision query on the revision connection.
    async fn query_revision(&self, connection: &mut RevisionConnection) -> Result<u64> {
        let row = connection
            .client
            .query_one(&connection.statement, &[])
            .await
            .map_err(|e| pg_error("reading the revision", e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// A new revision connection: connected, its driver spawned on the runtime, its statement
    /// prepared.
    async fn connect_revision(&self) -> Result<RevisionConnection> {
        let (client, connection) =
            self.config.connect(self.tls.clone()).await.map_err(|e| pg_error("connecting", e))?;
        let name = self.name.clone();
        self.runtime.spawn(async move {
            if let Err(error) = connection.await {
                log::debug!("guidstore: revision connection to {name} failed: {error}");
            }
        });
        let statement = client.prepare(REVISION_SQL).await.map_err(|e| pg_error("preparing", e))?;
        Ok(RevisionConnection { client, statement })
    }

    /// The newest committed revision on a pooled connection.
    async fn read_revision_pooled(&self) -> Result<u64> {
        let client = Pooled(Some(self.pool.get().await.map_err(pool_error)?));
        let statement = prepare(&client, REVISION_SQL).await?;
        let row = client.query_one(&statement, &[]).await.map_err(|e| pg_error("reading the revision", e))?;
        client.release();
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}

/// The channel on which every commit notifies listeners.
const CHANNEL: &str = "guidstore_changes";

/// Connects, listens on [`CHANNEL`] and calls `wake` for every notification until the connection
/// ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    wake: &(dyn Fn() + Send + Sync),
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let statement = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&statement);
    let mut listening = std::pin::pin!(listening);
    let mut subscribed = false;
    loop {
        let message = std::future::poll_fn(|context| {
            if !subscribed && let std::task::Poll::Ready(result) = listening.as_mut().poll(context) {
                subscribed = true;
                if let Err(error) = result {
                    return std::task::Poll::Ready(Some(Err(error)));
                }
                // Changes may have been committed before LISTEN took effect.
                wake();
            }
            connection.poll_message(context)
        })
        .await;
        match message {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => wake(),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => return Ok(()),
        }
    }
}

async fn migrate(client: &Object, name: &str) -> Result<()> {
    let error = |what: &'static str| move |e| pg_error(what, e);
    let exists: bool = client
        .query_one("SELECT to_regclass('guidstore_meta') IS NOT NULL", &[])
        .await
        .map_err(error("reading the schema"))?
        .get(0);
    let supported = MIGRATIONS.len() as i64;
    let version: i64 = if exists {
        let version: i32 = client
            .query_one("SELECT schema_version FROM guidstore_meta WHERE id = 1", &[])
            .await
            .map_err(error("reading the schema version"))?
            .get(0);
        i64::from(version)
    } else {
        let tables: i64 = client
            .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()", &[])
            .await
            .map_err(error("listing tables"))?
            .get(0);
        if tables > 0 {
            return Err(Error::NotAGuidstoreDatabase {
                path: name.into(),
                reason: format!("it holds {tables} tables that are not guidstore's"),
            });
        }
        0
    };
    if version > supported {
        return Err(Error::UnsupportedSchema { found: version, supported });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = index + 1;
        let sql =
            format!("BEGIN; {migration}; UPDATE guidstore_meta SET schema_version = {next} WHERE id = 1; COMMIT;");
        if let Err(e) = client.batch_execute(&sql).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(pg_error("migrating", e));
        }
        log::info!("guidstore: migrated PostgreSQL schema of {name} to version {next}");
    }
    Ok(())
}

fn record_from_row(row: &tokio_postgres::Row) -> Result<Record> {
    let guid = stored_guid(row.get::<_, &str>(0))?;
    stored_record(guid, row.get(1), row.get(2), row.get(3))
}

struct PostgresTransaction<'a> {
    backend: &'a PostgresBackend,
    client: &'a Object,
    /// When the whole transaction must have committed (one timeout from its start).
    deadline: Instant,
    revision: u64,
    /// What the opening round trip loaded: the GUIDs asked for and the records found.
    prefetched: Option<(Vec<Guid>, Vec<Record>)>,
    /// The changes of `apply`, saved in the round trip that commits.
    changes: Option<ChangeArrays>,
}

/// A batch's changes as the columns of the set-based statements.
struct ChangeArrays {
    upsert_guids: Vec<String>,
    upsert_expires: Vec<i64>,
    upsert_metadata: Vec<String>,
    upsert_versions: Vec<i64>,
    deletes: Vec<String>,
    revisions: Vec<i64>,
    ops: Vec<&'static str>,
    guids: Vec<String>,
    ats: Vec<i64>,
    expires: Vec<Option<i64>>,
    metadata: Vec<Option<String>>,
    versions: Vec<Option<i64>>,
    revision: i64,
}

impl ChangeArrays {
    fn of(changes: &[Change], last: &Change) -> ChangeArrays {
        let states = FinalStates::of(changes);
        ChangeArrays {
            upsert_guids: states.upserts.iter().map(|r| r.guid().to_string()).collect(),
            upsert_expires: states.upserts.iter().map(|r| sql_int(r.expire().as_secs())).collect(),
            upsert_metadata: states.upserts.iter().map(|r| r.metadata_json()).collect(),
            upsert_versions: states.upserts.iter().map(|r| r.version() as i64).collect(),
            deletes: states.deletes.iter().map(Guid::to_string).collect(),
            revisions: changes.iter().map(|c| sql_int(c.revision())).collect(),
            ops: changes.iter().map(|c| c.op().as_str()).collect(),
            guids: changes.iter().map(|c| c.guid().to_string()).collect(),
            ats: changes.iter().map(|c| sql_int(c.at())).collect(),
            expires: changes.iter().map(|c| c.record().map(|r| sql_int(r.expire().as_secs()))).collect(),
            metadata: changes.iter().map(|c| c.record().map(|r| r.metadata_json())).collect(),
            versions: changes.iter().map(|c| c.record().map(|r| r.version() as i64)).collect(),
            revision: sql_int(last.revision()),
        }
    }
}

const LOCK_SQL: &str = "SELECT revision FROM guidstore_meta WHERE id = 1 FOR UPDATE";
const LOAD_SQL: &str = "SELECT guid, expire, metadata, version FROM guidstore_records WHERE guid = ANY($1)";
const UPSERT_SQL: &str = "INSERT INTO guidstore_records (guid, expire, metadata, version)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[])
     ON CONFLICT (guid) DO UPDATE SET
         expire = EXCLUDED.expire, metadata = EXCLUDED.metadata, version = EXCLUDED.version";
const DELETE_SQL: &str = "DELETE FROM guidstore_records WHERE guid = ANY($1)";
const LOG_SQL: &str = "INSERT INTO guidstore_changes (revision, op, guid, at, expire, metadata, version)
     SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::int8[])";
const COUNTER_SQL: &str = "UPDATE guidstore_meta SET revision = $1 WHERE id = 1";

/// The opening round trip of a write transaction: `BEGIN`, the one-row lock (the newest
/// revision) and the batch's records, pipelined.
async fn begin(client: &Object, texts: &[&str]) -> Result<(u64, Vec<tokio_postgres::Row>)> {
    let (lock, load) = tokio::try_join!(prepare(client, LOCK_SQL), prepare(client, LOAD_SQL))?;
    let (begin, row, rows) = tokio::join!(
        client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
        client.query_one(&lock, &[]),
        async {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            client.query(&load, &[&texts]).await
        },
    );
    begin.map_err(|e| pg_error("BEGIN", e))?;
    let row = row.map_err(|e| pg_error("locking the revision", e))?;
    let rows = rows.map_err(|e| pg_error("loading records", e))?;
    Ok((u64::try_from(row.get::<_, i64>(0)).unwrap_or(0), rows))
}

async fn prepare(client: &Object, sql: &str) -> Result<tokio_postgres::Statement> {
    client.prepare_cached(sql).await.map_err(|e| pg_error("preparing", e))
}

impl Transaction for PostgresTransaction<'_> {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn load(&mut self, guids: &[Guid]) -> Result<Vec<Record>> {
        if guids.is_empty() {
            return Ok(Vec::new());
        }
        if let Some((_, found)) = self.prefetched.take_if(|(asked, _)| asked.as_slice() == guids) {
            return Ok(found);
        }
        let texts: Vec<&str> = guids.iter().map(Guid::as_str).collect();
        let client = self.client;
        let rows = self.backend.runtime.run_until(self.deadline, "loading records", async {
            let statement = prepare(client, LOAD_SQL).await?;
            client.query(&statement, &[&texts]).await.map_err(|e| pg_error("loading records", e))
        })?;
        rows.iter().map(record_from_row).collect()
    }

    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<Guid>> {
        let client = self.client;
        let rows = self.backend.runtime.run_until(self.deadline, "finding expired records", async {
            let statement = prepare(client, "SELECT guid FROM guidstore_records WHERE expire <= $1 LIMIT $2").await?;
            client
                .query(&statement, &[&sql_int(now), &sql_int(limit as u64)])
                .await
                .map_err(|e| pg_error("finding expired records", e))
        })?;
        rows.iter().map(|row| stored_guid(row.get::<_, &str>(0))).collect()
    }

    /// Keeps the changes: they are sent with the commit, in one round trip.
    fn apply(&mut self, changes: &[Change]) -> Result<()> {
        if let Some(last) = changes.last() {
            self.changes = Some(ChangeArrays::of(changes, last));
        }
        Ok(())
    }
}

impl PostgresTransaction<'_> {
    /// Saves the changes and commits, in one round trip: the set-based statements, `NOTIFY`, and
    /// `COMMIT`, pipelined. A statement that fails aborts the transaction, and then `COMMIT` rolls
    /// back (PostgreSQL answers it without an error): the statements' results decide.
    fn commit(&self) -> Result<()> {
        let client = self.client;
        let changes = self.changes.as_ref();
        self.backend.runtime.run_until(self.deadline, "committing", async {
            let statements = match changes {
                Some(_) => Some(tokio::try_join!(
                    prepare(client, UPSERT_SQL),
                    prepare(client, DELETE_SQL),
                    prepare(client, LOG_SQL),
                    prepare(client, COUNTER_SQL),
                )?),
                None => None,
            };
            let saved = |result: std::result::Result<u64, tokio_postgres::Error>| {
                result.map(|_| ()).map_err(|e| pg_error("saving changes", e))
            };
            let save = async {
                let (Some(c), Some((upsert, delete, log, counter))) = (changes, &statements) else { return Ok(()) };
                let (upserted, deleted, logged, counted) = tokio::join!(
                    async {
                        if c.upsert_guids.is_empty() {
                            return Ok(());
                        }
                        saved(
                            client
                                .execute(
                                    upsert,
                                    &[&c.upsert_guids, &c.upsert_expires, &c.upsert_metadata, &c.upsert_versions],
                                )
                                .await,
                        )
                    },
                    async {
                        if c.deletes.is_empty() {
                            return Ok(());
                        }
                        saved(client.execute(delete, &[&c.deletes]).await)
                    },
                    async {
                        saved(
                            client
                                .execute(
                                    log,
                                    &[&c.revisions, &c.ops, &c.guids, &c.ats, &c.expires, &c.metadata, &c.versions],
                                )
                                .await,
                        )
                    },
                    async { saved(client.execute(counter, &[&c.revision]).await) },
                );
                upserted.and(deleted).and(logged).and(counted)
            };
            // The notification is delivered at commit, to every process listening.
            let commit = async {
                let sql = if changes.is_some() { format!("NOTIFY {CHANNEL}; COMMIT") } else { "COMMIT".to_owned() };
                client.batch_execute(&sql).await.map_err(|e| pg_error("COMMIT", e))
            };
            let (saved, committed) = tokio::join!(save, commit);
            saved.and(committed)
        })
    }
}

impl Backend for PostgresBackend {
    fn load(&self, guid: &Guid) -> Result<Option<Record>> {
        park_on(self.load_record(*guid))
    }

    fn load_async(&self, guid: Guid) -> Option<BoxFuture<'_, Result<Option<Record>>>> {
        Some(Box::pin(self.load_record(guid)))
    }

    fn revision_until(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.read_revision(deadline.unwrap_or_else(|| self.runtime.deadline())))
    }

    fn timer(&self, deadline: Instant) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(self.runtime.sleep_until(deadline)))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.runtime.spawn(task);
    }

    fn pause_timer(&self) -> Option<Box<dyn super::PauseTimer>> {
        Some(Box::new(self.runtime.fine_timer()))
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn write(&self, prefetch: &[Guid], work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()> {
        self.write_until(self.runtime.deadline(), prefetch, work)
    }

    /// The whole transaction — connection, opening round trip, loads, commit — within `deadline`.
    /// A transient failure of the opening round trip is tried once more on a fresh connection
    /// (nothing has been sent that changes anything); a failure after it is not: whether a
    /// commit whose answer was lost took effect is unknown, so it is reported, never repeated.
    fn write_until(
        &self,
        deadline: Instant,
        prefetch: &[Guid],
        work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>,
    ) -> Result<()> {
        // One round trip opens the transaction, takes the one-row lock (write transactions commit
        // one at a time; the revision is read under it) and loads the batch's records.
        let texts: Vec<&str> = prefetch.iter().map(Guid::as_str).collect();
        let (client, revision, rows) = self.runtime.run_until(deadline, "starting a transaction", async {
            let mut retried = false;
            loop {
                let client = Pooled(Some(self.pool.get().await.map_err(pool_error)?));
                match begin(&client, &texts).await {
                    Ok((revision, rows)) => return Ok((client, revision, rows)),
                    Err(error) if !retried && retryable(&error) => {
                        log::debug!(
                            "guidstore: starting a transaction failed ({error}); once more on a new connection"
                        );
                        retried = true;
                    }
                    Err(error) => return Err(error),
                }
            }
        })?;
        let result = rows.iter().map(record_from_row).collect::<Result<Vec<_>>>().and_then(|found| {
            let mut transaction = PostgresTransaction {
                backend: self,
                client: &client,
                deadline,
                revision,
                prefetched: Some((prefetch.to_vec(), found)),
                changes: None,
            };
            work(&mut transaction)?;
            transaction.commit()
        });
        match &result {
            Ok(()) => client.release(),
            // The connection may be dead or mid-statement: closing it rolls back, and nothing
            // waits for an unanswering database a second time.
            Err(error) if retryable(error) => drop(client),
            Err(_) => {
                let rolled_back = self.runtime.run_until(deadline, "rolling back", async {
                    client.batch_execute("ROLLBACK").await.map_err(|e| pg_error("ROLLBACK", e))
                });
                if rolled_back.is_ok() {
                    client.release();
                }
            }
        }
        result
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn scan(&self, after: Option<&Guid>, now: u64, limit: usize) -> Result<Vec<Record>> {
        let rows = self.with_client("scanning records", async |client| {
            let statement = client
                .prepare_cached(
                    "SELECT guid, expire, metadata, version FROM guidstore_records
                     WHERE guid > $1 AND expire > $2 ORDER BY guid LIMIT $3",
                )
                .await
                .map_err(|e| pg_error("preparing", e))?;
            let after = after.map_or("", Guid::as_str);
            client
                .query(&statement, &[&after, &sql_int(now), &sql_int(limit as u64)])
                .await
                .map_err(|e| pg_error("scanning records", e))
        })?;
        rows.iter().map(record_from_row).collect()
    }

    fn listen(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let name = self.name.clone();
        self.runtime.spawn(async move {
            // One connection of its own, outside the pool, held for as long as the store is open;
            // when it breaks, the tailer's polling goes on and the connection is made again.
            loop {
                match listen_once(&config, &tls, &*wake).await {
                    Ok(()) => log::debug!("guidstore: LISTEN connection to {name} closed"),
                    Err(error) => log::debug!("guidstore: LISTEN connection to {name} failed: {error}"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn registry_id(&self) -> Result<String> {
        self.with_client("reading the registry id", async |client| {
            let row = client
                .query_one("SELECT registry_id FROM guidstore_meta WHERE id = 1", &[])
                .await
                .map_err(|e| pg_error("reading the registry id", e))?;
            Ok(row.get::<_, String>(0))
        })
    }

    fn revision(&self) -> Result<u64> {
        park_on(self.read_revision(self.runtime.deadline()))
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.with_client("reading changes", async |client| {
            let statement = client
                .prepare_cached(
                    "SELECT revision, op, guid, at, expire, metadata, version FROM guidstore_changes
                     WHERE revision > $1 ORDER BY revision LIMIT $2",
                )
                .await
                .map_err(|e| pg_error("preparing", e))?;
            let rows = client
                .query(&statement, &[&sql_int(after), &sql_int(limit as u64)])
                .await
                .map_err(|e| pg_error("reading changes", e))?;
            rows.iter()
                .map(|row| {
                    let columns: ChangeRow =
                        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6));
                    stored_change(columns)
                })
                .collect()
        })
    }

    fn oldest_revision(&self) -> Result<Option<u64>> {
        self.with_client("reading the change log", async |client| {
            let row = client
                .query_one("SELECT min(revision) FROM guidstore_changes", &[])
                .await
                .map_err(|e| pg_error("reading the change log", e))?;
            Ok(row.get::<_, Option<i64>>(0).and_then(|revision| u64::try_from(revision).ok()))
        })
    }

    fn trim_changes(&self, below: u64, before_at: u64, limit: usize) -> Result<u64> {
        // Old rows only: no conflict with the inserts of write transactions, no global lock.
        self.with_client("trimming the change log", async |client| {
            client
                .execute(
                    "DELETE FROM guidstore_changes WHERE revision IN
                         (SELECT revision FROM guidstore_changes WHERE revision < $1 AND at < $2
                          ORDER BY revision LIMIT $3)",
                    &[&sql_int(below), &sql_int(before_at), &sql_int(limit as u64)],
                )
                .await
                .map_err(|e| pg_error("trimming the change log", e))
        })
    }

    fn count_live(&self, now: u64) -> Result<u64> {
        self.with_client("counting records", async |client| {
            let row = client
                .query_one("SELECT count(*) FROM guidstore_records WHERE expire > $1", &[&sql_int(now)])
                .await
                .map_err(|e| pg_error("counting records", e))?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn check(&self) -> Result<()> {
        self.with_client("checking the database", async |client| {
            client.simple_query("SELECT 1").await.map_err(|e| pg_error("checking the database", e))?;
            Ok(())
        })
    }

    fn close(&self) -> Result<()> {
        self.pool.close();
        drop(self.revision_connection.take_idle());
        Ok(())
    }
}
