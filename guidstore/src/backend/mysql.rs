//! [`MysqlBackend`]: records in a MariaDB (10.11) or MySQL (8) database shared by any number of
//! processes (feature `mysql`), through a mysql_async pool driven by the private [`DbRuntime`].
//!
//! As on PostgreSQL, a write transaction starts by locking the one row of `guidstore_meta`
//! (`FOR UPDATE`, InnoDB, READ COMMITTED), so transactions commit one at a time across every
//! process and the revision they take is commit order. A batch costs a round trip per statement,
//! whatever its size: the lock, one `load` (`IN (…)`), multi-row upsert / delete / change-log
//! inserts, the counter, and the commit. Migrations (`guidstore/migrations/mysql/`) run under
//! `GET_LOCK`, so processes starting together migrate once (MySQL's DDL is not transactional:
//! a migration that fails half-way is reported and must be repaired by hand).

use std::future::Future;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts, Value};

use super::NetworkSettings;
use super::revision::{Discard, RevisionSlot};
use super::runtime::{DbRuntime, park_on};
use super::tls::{TlsMode, TlsParams};
use crate::backend::{
    Backend, BoxFuture, ChangeRow, FinalStates, Transaction, sql_int, stored_change, stored_guid, stored_record,
};
use crate::{Change, Error, Guid, Record, Result, StorageError};

/// Schema migrations; `guidstore_meta.schema_version` is the number applied.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/mysql/0001_initial.sql")];

/// Rows per multi-row statement (a statement has at most 65,535 placeholders).
const ROWS_PER_STATEMENT: usize = 1_000;

/// The named lock held while migrating.
const MIGRATION_LOCK: &str = "guidstore_migrate";

pub(crate) struct MysqlBackend {
    runtime: DbRuntime,
    /// The connection options, for a connection of its own outside the pool (a retry).
    opts: Opts,
    /// How long one request may wait for the database in all.
    timeout: Duration,
    pool: Pool,
    /// The URL without its password, for messages.
    name: String,
    /// The connection freshness rounds read the newest revision on (see `revision.rs`).
    revision_connection: RevisionSlot<RevisionConnection>,
}

/// The revision connection of freshness rounds (see `revision.rs`; on MySQL it also spares the
/// reset and setup statements mysql_async runs on a pooled connection when it goes back to the
/// pool): discarded by disconnecting it on the runtime.
struct RevisionConnection {
    conn: Conn,
    statement: mysql_async::Statement,
    runtime: Option<tokio::runtime::Handle>,
}

impl Discard for RevisionConnection {
    fn discard(self) {
        disconnect(self.runtime.as_ref(), self.conn);
    }
}

/// The newest committed revision (a freshness round's query).
const REVISION_SQL: &str = "SELECT revision FROM guidstore_meta WHERE id = 1";

/// Closes `conn` on the runtime without waiting for it (as [`Pooled`] does when dropped).
fn disconnect(runtime: Option<&tokio::runtime::Handle>, conn: Conn) {
    let Some(runtime) = runtime else { return };
    runtime.spawn(async move {
        let _ = tokio::time::timeout(Duration::ZERO, conn.disconnect()).await;
    });
}

impl std::fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlBackend").field("database", &self.name).finish_non_exhaustive()
    }
}

/// A mysql_async error as a storage error: I/O, lost connections, lock-wait timeouts, deadlocks,
/// too many connections and server shutdowns are transient; the rest (access denied, unknown
/// database, bad SQL) are not.
fn my_error(what: &str, error: mysql_async::Error) -> Error {
    let transient = match &error {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(server) => {
            matches!(server.code, 1040 | 1053 | 1205 | 1213 | 1927 | 2002 | 2003 | 2006 | 2013 | 3024 | 1969)
        }
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => false,
    };
    let message = format!("MariaDB/MySQL: {what}");
    let storage = if transient { StorageError::transient(message) } else { StorageError::permanent(message) };
    Error::Storage(storage.with_source(error))
}

/// `?, ?, …` for `count` rows of `columns` values each, parenthesized per row.
fn placeholders(count: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; count].join(", ")
}

/// GUIDs as SQL string literals: safe to inline, a GUID is 32 characters of `0-9A-F`.
fn guid_list(guids: impl IntoIterator<Item = Guid>) -> String {
    guids.into_iter().map(|guid| format!("'{guid}'")).collect::<Vec<_>>().join(", ")
}

/// A connection taken from the pool that goes back to it only through [`Pooled::release`], after
/// calls that all succeeded. Dropped otherwise — a call that failed, timed out, or was abandoned
/// mid-statement when its request's deadline passed — it is disconnected, never reused: mysql_async
/// would return a dropped connection to its pool, where a reply still on its way would answer the
/// next request's query. (`Conn::disconnect` marks it disconnected before its first await, so the
/// pool discards it even though the disconnect itself is not waited for.)
struct Pooled {
    conn: Option<Conn>,
    runtime: Option<tokio::runtime::Handle>,
}

impl Pooled {
    fn release(mut self) {
        // Dropping the `Conn` itself returns it to the pool.
        drop(self.conn.take());
    }
}

impl std::ops::Deref for Pooled {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn.as_ref().unwrap_or_else(|| unreachable!("a released connection is not used"))
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!("a released connection is not used"))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let (Some(conn), Some(runtime)) = (self.conn.take(), &self.runtime) else { return };
        // A zero timeout: the first poll marks the connection disconnected, then it is dropped.
        runtime.spawn(async move {
            let _ = tokio::time::timeout(Duration::ZERO, conn.disconnect()).await;
        });
    }
}

/// mysql_async's TLS options for `tls` (`None`: no TLS). The roots are loaded here, so that a
/// bad file is reported once at startup; without a root file the system's roots are trusted
/// (not the Mozilla list built into mysql_async).
fn ssl_opts(tls: &TlsParams) -> std::result::Result<Option<SslOpts>, String> {
    if tls.mode == TlsMode::Disable {
        return Ok(None);
    }
    let Some((roots, check_name)) = tls.verification() else {
        // prefer, and require without a root file: encrypted, the certificate not checked.
        return Ok(Some(SslOpts::default().with_danger_accept_invalid_certs(true)));
    };
    if !check_name {
        // mysql_async's "skip domain validation" matches the text "NotValidForName" in rustls's
        // error, which rustls 0.23 no longer prints: the chain alone cannot be checked.
        return Err("VERIFY_CA is not available on MariaDB/MySQL (nor REQUIRED with ssl-ca, which means it): \
                    use VERIFY_IDENTITY, which checks the chain and the host name, or REQUIRED without ssl-ca"
            .to_owned());
    }
    let roots = super::tls::load_roots(&roots)?.into_iter().map(|cert| cert.to_vec().into()).collect();
    Ok(Some(SslOpts::default().with_root_certs(roots).with_disable_built_in_roots(true)))
}

/// `PREFERRED`: one connection with `tls` tells whether the server offers TLS; if it does not,
/// the pool connects without (decided once, at startup; a server must be restarted to change
/// that anyway). Other failures are left to the first connection of the pool to report.
async fn prefer_tls(tls: Opts, plain: Opts, name: &str) -> Result<Opts> {
    match Conn::new(tls.clone()).await {
        Ok(conn) => {
            let _ = conn.disconnect().await;
            Ok(tls)
        }
        Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) => {
            log::info!("guidstore: {name} offers no TLS; connecting without it (ssl-mode=PREFERRED)");
            Ok(plain)
        }
        Err(_) => Ok(tls),
    }
}

/// Whether `error` is worth one more attempt on a fresh connection (see the PostgreSQL backend).
fn retryable(error: &Error) -> bool {
    matches!(error, Error::Storage(storage) if storage.is_transient())
}

impl MysqlBackend {
    /// Connects to the database at `url` (`mysql://USER[:PASS]@HOST[:PORT]/DB[?ssl-mode=…]`),
    /// checks durability settings and migrates the schema. TLS is as `ssl-mode` and `ssl-ca` ask
    /// (see [`super::tls`]; `PREFERRED` by default).
    pub(crate) fn open(url: &str, settings: NetworkSettings) -> Result<MysqlBackend> {
        let name = super::location::redact_url(url);
        let invalid = |reason: String| Error::InvalidUrl { url: name.clone(), reason };
        let (url, tls) = super::tls::split_url(url).map_err(invalid)?;
        if let Some(own) = url.split_once('?').and_then(|(_, query)| {
            query.split('&').map(|p| p.split_once('=').map_or(p, |(name, _)| name)).find(|name| {
                ["require_ssl", "verify_ca", "verify_identity", "built_in_roots"]
                    .contains(&name.to_ascii_lowercase().as_str())
            })
        }) {
            return Err(invalid(format!(
                "{own} is not used: TLS is set with ssl-mode=DISABLED|PREFERRED|REQUIRED|VERIFY_CA|VERIFY_IDENTITY \
                 and ssl-ca=FILE"
            )));
        }
        let ssl = ssl_opts(&tls).map_err(invalid)?;
        let opts = Opts::from_url(&url).map_err(|e| invalid(e.to_string()))?;
        if opts.db_name().is_none_or(str::is_empty) {
            return Err(invalid("it names no database (mysql://USER@HOST/DATABASE)".to_owned()));
        }
        let password = opts.pass().map(str::to_owned).or_else(|| std::env::var("MYSQL_PWD").ok());
        let lock_wait = settings.timeout.as_secs().max(1);
        let constraints = PoolConstraints::new(0, settings.pool_size.max(2))
            .ok_or_else(|| invalid("invalid pool size".to_owned()))?;
        let opts = OptsBuilder::from_opts(opts)
            .pass(password)
            .prefer_socket(false)
            .tcp_keepalive(Some(std::time::Duration::from_secs(10)))
            // Idle connections are kept (up to the pool size, closed after a minute unused): with
            // mysql_async's default TTL of zero a pool whose minimum is 0 keeps none, and every
            // call paid a new connection (TCP, handshake, the setup statements).
            .pool_opts(
                PoolOpts::new().with_constraints(constraints).with_inactive_connection_ttl(Duration::from_secs(60)),
            )
            // Run on every new connection and after every reset (when a connection returns to
            // the pool): transactions read committed data, and wait for a lock at most the timeout.
            .setup(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
                format!("SET SESSION innodb_lock_wait_timeout = {lock_wait}"),
            ]);
        let runtime = DbRuntime::new("guidstore-mysql", settings.timeout)?;
        let plain: Opts = opts.clone().into();
        let opts: Opts = opts.ssl_opts(ssl).into();
        let opts =
            if tls.mode == TlsMode::Prefer { runtime.run("connecting", prefer_tls(opts, plain, &name))? } else { opts };
        let pool = runtime.run("creating the pool", async { Ok(Pool::new(opts.clone())) })?;
        let backend = MysqlBackend {
            runtime,
            opts,
            timeout: settings.timeout,
            pool,
            name,
            revision_connection: RevisionSlot::new(),
        };
        backend.connect_and_migrate()?;
        Ok(backend)
    }

    fn connect_and_migrate(&self) -> Result<()> {
        let conn = self
            .runtime
            .run("connecting", async { self.pool.get_conn().await.map_err(|e| my_error("connecting", e)) })
            .map_err(|error| match error {
                Error::Storage(storage) => {
                    Error::Storage(StorageError::context(format!("cannot connect to {}", self.name), storage))
                }
                other => other,
            })?;
        let mut conn = self.pooled(conn);
        self.warn_if_not_durable(&mut conn);
        let name = self.name.clone();
        self.runtime.run("migrating", async move {
            let locked: Option<i64> = conn
                .query_first(format!("SELECT GET_LOCK('{MIGRATION_LOCK}', 60)"))
                .await
                .map_err(|e| my_error("locking for migration", e))?;
            if locked != Some(1) {
                return Err(StorageError::transient("another process holds the migration lock").into());
            }
            let result = migrate(&mut conn, &name).await;
            let unlocked = conn.query_drop(format!("SELECT RELEASE_LOCK('{MIGRATION_LOCK}')")).await;
            if result.is_ok() && unlocked.is_ok() {
                conn.release();
            }
            result
        })
    }

    /// Logs a warning when InnoDB does not flush its log at every commit: a crash of the database
    /// server can then lose writes guidstore has acknowledged.
    fn warn_if_not_durable(&self, conn: &mut Conn) {
        let value = self.runtime.run("reading settings", async {
            conn.query_first::<i64, _>("SELECT @@innodb_flush_log_at_trx_commit")
                .await
                .map_err(|e| my_error("reading settings", e))
        });
        match value {
            Ok(Some(1)) => {}
            Ok(value) => log::warn!(
                "guidstore: MariaDB/MySQL {} has innodb_flush_log_at_trx_commit = {}: a crash of the database \
                 server can lose writes guidstore has acknowledged",
                self.name,
                value.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
            ),
            Err(error) => log::warn!("guidstore: cannot read innodb_flush_log_at_trx_commit: {error}"),
        }
    }

    fn pooled(&self, conn: Conn) -> Pooled {
        Pooled { conn: Some(conn), runtime: self.runtime.handle() }
    }

    /// A connection from the pool; for a retry (`fresh`), a new one outside it, since the pool
    /// may hold more connections the server has killed (it is closed after use).
    async fn connect(&self, fresh: bool) -> Result<Pooled> {
        let conn = if fresh { Conn::new(self.opts.clone()).await } else { self.pool.get_conn().await };
        Ok(self.pooled(conn.map_err(|e| my_error("connecting", e))?))
    }

    /// Runs `work` with a pooled connection, within one timeout in all. A transient failure is
    /// tried once more on a new connection outside the pool, if time is left (a read is
    /// idempotent; the pool may hold connections the server has killed). A connection whose call
    /// failed or timed out never returns to the pool.
    fn with_conn<T>(&self, what: &str, work: impl AsyncFn(&mut Conn) -> Result<T>) -> Result<T> {
        park_on(self.with_conn_async(what, work))
    }

    /// [`MysqlBackend::with_conn`] as a future: whoever polls it waits without blocking.
    fn with_conn_async<'a, T: 'a>(
        &'a self,
        what: &'a str,
        work: impl AsyncFn(&mut Conn) -> Result<T> + 'a,
    ) -> impl Future<Output = Result<T>> + 'a {
        self.with_conn_until(self.runtime.deadline(), what, work)
    }

    /// [`MysqlBackend::with_conn_async`], given up at `deadline` (a transient error).
    fn with_conn_until<'a, T: 'a>(
        &'a self,
        deadline: Instant,
        what: &'a str,
        work: impl AsyncFn(&mut Conn) -> Result<T> + 'a,
    ) -> impl Future<Output = Result<T>> + 'a {
        self.runtime.bound(deadline, what, async move {
            let mut retried = false;
            loop {
                let mut conn = self.connect(retried).await?;
                match work(&mut conn).await {
                    Ok(value) => {
                        conn.release();
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

/// Opens a write transaction and takes the one-row lock; the newest revision.
async fn begin(conn: &mut Conn) -> Result<u64> {
    conn.query_drop("START TRANSACTION").await.map_err(|e| my_error("START TRANSACTION", e))?;
    let revision: Option<i64> = conn
        .query_first("SELECT revision FROM guidstore_meta WHERE id = 1 FOR UPDATE")
        .await
        .map_err(|e| my_error("locking the revision", e))?;
    Ok(revision.and_then(|r| u64::try_from(r).ok()).unwrap_or(0))
}

/// The statements of a migration file: comments dropped, split at `;`.
fn statements(migration: &str) -> Vec<String> {
    let without_comments: String =
        migration.lines().filter(|line| !line.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

async fn migrate(conn: &mut Conn, name: &str) -> Result<()> {
    let error = |what: &'static str| move |e| my_error(what, e);
    let exists: Option<i64> = conn
        .query_first(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'guidstore_meta'",
        )
        .await
        .map_err(error("reading the schema"))?;
    let supported = MIGRATIONS.len() as i64;
    let version: i64 = if exists.unwrap_or(0) > 0 {
        conn.query_first("SELECT schema_version FROM guidstore_meta WHERE id = 1")
            .await
            .map_err(error("reading the schema version"))?
            .unwrap_or(0)
    } else {
        let tables: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()")
            .await
            .map_err(error("listing tables"))?;
        let tables = tables.unwrap_or(0);
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
        for statement in statements(migration) {
            conn.query_drop(statement).await.map_err(error("migrating"))?;
        }
        conn.query_drop(format!("UPDATE guidstore_meta SET schema_version = {next} WHERE id = 1"))
            .await
            .map_err(error("migrating"))?;
        log::info!("guidstore: migrated MariaDB/MySQL schema of {name} to version {next}");
    }
    Ok(())
}

type RecordRow = (String, i64, String, i64);

fn record_from_row((guid, expire, metadata, version): RecordRow) -> Result<Record> {
    stored_record(stored_guid(&guid)?, expire, &metadata, version)
}

struct MysqlTransaction<'a> {
    runtime: &'a DbRuntime,
    conn: &'a mut Conn,
    /// When the whole transaction must have committed (one timeout from its start).
    deadline: Instant,
    revision: u64,
}

impl Transaction for MysqlTransaction<'_> {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn load(&mut self, guids: &[Guid]) -> Result<Vec<Record>> {
        if guids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = &mut *self.conn;
        let rows: Vec<RecordRow> = self.runtime.run_until(self.deadline, "loading records", async {
            let mut rows = Vec::with_capacity(guids.len());
            for chunk in guids.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "SELECT guid, expire, metadata, version FROM guidstore_records WHERE guid IN ({})",
                    guid_list(chunk.iter().copied())
                );
                rows.extend(conn.query::<RecordRow, _>(sql).await.map_err(|e| my_error("loading records", e))?);
            }
            Ok(rows)
        })?;
        rows.into_iter().map(record_from_row).collect()
    }

    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<Guid>> {
        let conn = &mut *self.conn;
        let rows: Vec<String> = self.runtime.run_until(self.deadline, "finding expired records", async {
            conn.exec(
                "SELECT guid FROM guidstore_records WHERE expire <= ? LIMIT ?",
                (sql_int(now), sql_int(limit as u64)),
            )
            .await
            .map_err(|e| my_error("finding expired records", e))
        })?;
        rows.iter().map(|guid| stored_guid(guid)).collect()
    }

    fn apply(&mut self, changes: &[Change]) -> Result<()> {
        let Some(last) = changes.last() else { return Ok(()) };
        let states = FinalStates::of(changes);
        // One statement per ROWS_PER_STATEMENT rows: a prepared statement takes at most 65,535
        // placeholders (an import batch of 10,000 changes has 70,000).
        let upserts: Vec<(String, Vec<Value>)> = states
            .upserts
            .chunks(ROWS_PER_STATEMENT)
            .map(|chunk| {
                let mut params = Vec::with_capacity(chunk.len() * 4);
                for record in chunk {
                    params.extend([
                        Value::from(record.guid().as_str()),
                        Value::from(sql_int(record.expire().as_secs())),
                        Value::from(record.metadata_json()),
                        Value::from(record.version() as i64),
                    ]);
                }
                let sql = format!(
                    "INSERT INTO guidstore_records (guid, expire, metadata, version) VALUES {}
                     ON DUPLICATE KEY UPDATE expire = VALUES(expire), metadata = VALUES(metadata), version = VALUES(version)",
                    placeholders(chunk.len(), 4)
                );
                (sql, params)
            })
            .collect();
        let logs: Vec<(String, Vec<Value>)> = changes
            .chunks(ROWS_PER_STATEMENT)
            .map(|chunk| {
                let mut params = Vec::with_capacity(chunk.len() * 7);
                for change in chunk {
                    let record = change.record();
                    params.extend([
                        Value::from(sql_int(change.revision())),
                        Value::from(change.op().as_str()),
                        Value::from(change.guid().as_str()),
                        Value::from(sql_int(change.at())),
                        Value::from(record.map(|r| sql_int(r.expire().as_secs()))),
                        Value::from(record.map(|r| r.metadata_json())),
                        Value::from(record.map(|r| r.version() as i64)),
                    ]);
                }
                let sql = format!(
                    "INSERT INTO guidstore_changes (revision, op, guid, at, expire, metadata, version) VALUES {}",
                    placeholders(chunk.len(), 7)
                );
                (sql, params)
            })
            .collect();
        let delete_sql =
            format!("DELETE FROM guidstore_records WHERE guid IN ({})", guid_list(states.deletes.iter().copied()));
        let revision = sql_int(last.revision());
        let conn = &mut *self.conn;
        self.runtime.run_until(self.deadline, "saving changes", async {
            let saved = |e| my_error("saving changes", e);
            for (sql, params) in upserts {
                conn.exec_drop(sql, params).await.map_err(saved)?;
            }
            if !states.deletes.is_empty() {
                conn.query_drop(delete_sql).await.map_err(saved)?;
            }
            for (sql, params) in logs {
                conn.exec_drop(sql, params).await.map_err(saved)?;
            }
            conn.exec_drop("UPDATE guidstore_meta SET revision = ? WHERE id = 1", (revision,)).await.map_err(saved)
        })
    }
}

impl MysqlBackend {
    /// The stored record `guid` (a pooled connection, one round trip).
    fn load_record(&self, guid: Guid) -> impl Future<Output = Result<Option<Record>>> + Send + '_ {
        let row = self.with_conn_async("reading a record", async move |conn| {
            conn.exec_first::<RecordRow, _, _>(
                "SELECT guid, expire, metadata, version FROM guidstore_records WHERE guid = ?",
                (guid.as_str(),),
            )
            .await
            .map_err(|e| my_error("reading a record", e))
        });
        async move { row.await?.map(record_from_row).transpose() }
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

    /// The revision statement on the revision connection.
    async fn query_revision(&self, connection: &mut RevisionConnection) -> Result<u64> {
        let revision: Option<i64> = connection
            .conn
            .exec_first(&connection.statement, ())
            .await
            .map_err(|e| my_error("reading the revision", e))?;
        Ok(revision.and_then(|r| u64::try_from(r).ok()).unwrap_or(0))
    }

    /// A new revision connection, outside the pool, its statement prepared.
    async fn connect_revision(&self) -> Result<RevisionConnection> {
        let mut conn = Conn::new(self.opts.clone()).await.map_err(|e| my_error("connecting", e))?;
        match conn.prep(REVISION_SQL).await {
            Ok(statement) => Ok(RevisionConnection { conn, statement, runtime: self.runtime.handle() }),
            Err(error) => {
                disconnect(self.runtime.handle().as_ref(), conn);
                Err(my_error("preparing", error))
            }
        }
    }

    /// The newest committed revision on a pooled connection.
    async fn read_revision_pooled(&self) -> Result<u64> {
        let mut conn = self.connect(false).await?;
        let revision: Option<i64> =
            conn.query_first(REVISION_SQL).await.map_err(|e| my_error("reading the revision", e))?;
        conn.release();
        Ok(revision.and_then(|r| u64::try_from(r).ok()).unwrap_or(0))
    }
}

impl Backend for MysqlBackend {
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

    /// The whole transaction within `deadline`. A transient failure before `COMMIT` is sent (its
    /// opening, a load, the statements that save the changes: a killed connection rolls them back)
    /// is tried once more on a new connection; a failure during `COMMIT` never is, since the
    /// commit may have taken effect. (PostgreSQL sends the changes and `COMMIT` pipelined, so
    /// there only the opening round trip is retried.)
    fn write_until(
        &self,
        deadline: Instant,
        _prefetch: &[Guid],
        work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>,
    ) -> Result<()> {
        // Whether the transaction is being tried a second time, on a new connection.
        let mut again = false;
        loop {
            let (mut conn, revision) = self.runtime.run_until(deadline, "starting a transaction", async {
                let mut fresh = again;
                loop {
                    let mut conn = self.connect(fresh).await?;
                    match begin(&mut conn).await {
                        Ok(revision) => return Ok((conn, revision)),
                        Err(error) if !fresh && retryable(&error) => {
                            log::debug!(
                                "guidstore: starting a transaction failed ({error}); once more on a new connection"
                            );
                            fresh = true;
                        }
                        Err(error) => return Err(error),
                    }
                }
            })?;
            let mut transaction = MysqlTransaction { runtime: &self.runtime, conn: &mut conn, deadline, revision };
            let mut committing = false;
            let result = work(&mut transaction).and_then(|()| {
                committing = true;
                self.runtime.run_until(deadline, "committing", async {
                    conn.query_drop("COMMIT").await.map_err(|e| my_error("COMMIT", e))
                })
            });
            match &result {
                Ok(()) => conn.release(),
                // The connection may be dead or mid-statement: disconnecting rolls back, and
                // nothing waits for an unanswering database a second time.
                Err(error) if retryable(error) => {
                    drop(conn);
                    // Failed before COMMIT was sent (a killed connection, a deadlock): nothing
                    // was committed, so the whole transaction is tried once more, if time is left.
                    // A failure during COMMIT is not: the commit may have taken effect.
                    if !committing && !again && Instant::now() < deadline {
                        log::debug!("guidstore: a write transaction failed before its commit ({error}); once more");
                        again = true;
                        continue;
                    }
                }
                Err(_) => {
                    let rolled_back = self.runtime.run_until(deadline, "rolling back", async {
                        conn.query_drop("ROLLBACK").await.map_err(|e| my_error("ROLLBACK", e))
                    });
                    if rolled_back.is_ok() {
                        conn.release();
                    }
                }
            }
            return result;
        }
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn scan(&self, after: Option<&Guid>, now: u64, limit: usize) -> Result<Vec<Record>> {
        let after = after.map_or("", Guid::as_str);
        let rows: Vec<RecordRow> = self.with_conn("scanning records", async |conn| {
            conn.exec(
                "SELECT guid, expire, metadata, version FROM guidstore_records
                 WHERE guid > ? AND expire > ? ORDER BY guid LIMIT ?",
                (after, sql_int(now), sql_int(limit as u64)),
            )
            .await
            .map_err(|e| my_error("scanning records", e))
        })?;
        rows.into_iter().map(record_from_row).collect()
    }

    fn registry_id(&self) -> Result<String> {
        self.with_conn("reading the registry id", async |conn| {
            let id: Option<String> = conn
                .query_first("SELECT registry_id FROM guidstore_meta WHERE id = 1")
                .await
                .map_err(|e| my_error("reading the registry id", e))?;
            id.ok_or_else(|| StorageError::permanent("guidstore_meta has no row").into())
        })
    }

    fn revision(&self) -> Result<u64> {
        park_on(self.read_revision(self.runtime.deadline()))
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let rows: Vec<ChangeRow> = self.with_conn("reading changes", async |conn| {
            conn.exec(
                "SELECT revision, op, guid, at, expire, metadata, version FROM guidstore_changes
                 WHERE revision > ? ORDER BY revision LIMIT ?",
                (sql_int(after), sql_int(limit as u64)),
            )
            .await
            .map_err(|e| my_error("reading changes", e))
        })?;
        rows.into_iter().map(stored_change).collect()
    }

    fn oldest_revision(&self) -> Result<Option<u64>> {
        self.with_conn("reading the change log", async |conn| {
            let oldest: Option<Option<i64>> = conn
                .query_first("SELECT MIN(revision) FROM guidstore_changes")
                .await
                .map_err(|e| my_error("reading the change log", e))?;
            Ok(oldest.flatten().and_then(|r| u64::try_from(r).ok()))
        })
    }

    fn trim_changes(&self, below: u64, before_at: u64, limit: usize) -> Result<u64> {
        // Old rows only: no conflict with the inserts of write transactions, no global lock.
        self.with_conn("trimming the change log", async |conn| {
            conn.exec_drop(
                "DELETE FROM guidstore_changes WHERE revision < ? AND at < ? ORDER BY revision LIMIT ?",
                (sql_int(below), sql_int(before_at), sql_int(limit as u64)),
            )
            .await
            .map_err(|e| my_error("trimming the change log", e))?;
            Ok(conn.affected_rows())
        })
    }

    fn count_live(&self, now: u64) -> Result<u64> {
        self.with_conn("counting records", async |conn| {
            let count: Option<i64> = conn
                .exec_first("SELECT COUNT(*) FROM guidstore_records WHERE expire > ?", (sql_int(now),))
                .await
                .map_err(|e| my_error("counting records", e))?;
            Ok(count.and_then(|c| u64::try_from(c).ok()).unwrap_or(0))
        })
    }

    fn check(&self) -> Result<()> {
        self.with_conn("checking the database", async |conn| {
            conn.query_drop("SELECT 1").await.map_err(|e| my_error("checking the database", e))
        })
    }

    fn close(&self) -> Result<()> {
        if let Some(connection) = self.revision_connection.take_idle() {
            let _ = self.runtime.run("closing the revision connection", async {
                connection.conn.disconnect().await.map_err(|e| my_error("closing the revision connection", e))
            });
        }
        let pool = self.pool.clone();
        self.runtime
            .run("closing the pool", async { pool.disconnect().await.map_err(|e| my_error("closing the pool", e)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements_without_comments() {
        let split =
            statements("-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\nINSERT INTO a VALUES (1);\n");
        assert_eq!(split, ["CREATE TABLE a (x INT)", "INSERT INTO a VALUES (1)"]);
        assert!(MIGRATIONS.iter().all(|m| !statements(m).is_empty()));
    }

    #[test]
    fn placeholders_and_guid_lists_have_the_right_shape() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
        let guid = Guid::parse("9094E4C980C74043A4B586B420E69DDF").unwrap();
        assert_eq!(guid_list([guid, guid]), "'9094E4C980C74043A4B586B420E69DDF', '9094E4C980C74043A4B586B420E69DDF'");
    }
}
