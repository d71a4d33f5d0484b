//! Databases for tests: [`TestDb`] is a fresh, empty database on one backend — a temporary SQLite
//! file, or a database with a random name created on the local PostgreSQL or MariaDB server and
//! dropped again when the `TestDb` is dropped.
//!
//! The servers are found at `GUIDSTORE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`)
//! and `GUIDSTORE_TEST_MYSQL` (default `mysql://root@127.0.0.1:3306`), administered with the `psql`
//! and `mariadb` (or `mysql`) command-line clients. When one cannot be reached, its tests are
//! skipped with a loud line on stderr and in `target/skipped-backend-tests.txt` — unless
//! `GUIDSTORE_REQUIRE_SERVICES=1` (set by `.ci/run`), which makes them fail instead.

use std::io::Write as _;
use std::process::Command;
use std::sync::OnceLock;

/// A storage backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// A fresh database, dropped with this value.
pub struct TestDb {
    kind: Kind,
    url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_base() -> String {
    std::env::var("GUIDSTORE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn mysql_base() -> String {
    std::env::var("GUIDSTORE_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// `mysql://USER[:PASS]@HOST[:PORT]` as command-line arguments of the mariadb client.
fn mysql_args() -> Vec<String> {
    let base = mysql_base();
    let rest = base.trim_start_matches("mysql://").trim_start_matches("mariadb://").trim_end_matches('/');
    let (user_info, host_port) = rest.rsplit_once('@').unwrap_or(("root", rest));
    let (user, password) = user_info.split_once(':').map_or((user_info, None), |(u, p)| (u, Some(p)));
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
    let mut args = vec![format!("--host={host}"), format!("--port={port}"), format!("--user={user}")];
    if let Some(password) = password {
        args.push(format!("--password={password}"));
    }
    args
}

fn mysql_client() -> &'static str {
    static CLIENT: OnceLock<&'static str> = OnceLock::new();
    CLIENT.get_or_init(|| {
        if Command::new("mariadb").arg("--version").output().is_ok_and(|o| o.status.success()) {
            "mariadb"
        } else {
            "mysql"
        }
    })
}

/// Runs one SQL statement as the administrator of `kind`'s server.
fn admin(kind: Kind, sql: &str) -> Result<(), String> {
    let output = match kind {
        Kind::Sqlite => return Ok(()),
        Kind::Postgres => Command::new("psql")
            .arg(format!("{}/postgres", postgres_base()))
            .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
            .output(),
        Kind::Mysql => Command::new(mysql_client()).args(mysql_args()).args(["-e", sql]).output(),
    };
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        Err(error) => Err(format!("cannot run the {kind:?} client: {error}")),
    }
}

/// Whether `kind`'s server answers (checked once per test binary).
fn available(kind: Kind) -> Result<(), String> {
    static POSTGRES: OnceLock<Result<(), String>> = OnceLock::new();
    static MYSQL: OnceLock<Result<(), String>> = OnceLock::new();
    match kind {
        Kind::Sqlite => Ok(()),
        Kind::Postgres => POSTGRES.get_or_init(|| admin(kind, "SELECT 1")).clone(),
        Kind::Mysql => MYSQL.get_or_init(|| admin(kind, "SELECT 1")).clone(),
    }
}

fn skip(kind: Kind, why: &str) {
    skip_service(&format!("{kind:?}"), why);
}

/// Says that a test of `service` is skipped because it cannot be reached (on stderr and in
/// `target/skipped-backend-tests.txt`), or panics under `GUIDSTORE_REQUIRE_SERVICES=1`.
pub(crate) fn skip_service(service: &str, why: &str) {
    let message = format!("SKIPPED: a {service} test, because the server is not reachable: {why}");
    if std::env::var("GUIDSTORE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{message} (GUIDSTORE_REQUIRE_SERVICES=1: a missing service fails the test)");
    }
    eprintln!("{message}");
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_owned());
    if let Ok(mut file) =
        std::fs::OpenOptions::new().create(true).append(true).open(format!("{target}/skipped-backend-tests.txt"))
    {
        let _ = writeln!(file, "{message}");
    }
}

impl TestDb {
    /// A fresh database on `kind`, or `None` (after saying so) when its server is unreachable.
    pub fn new(kind: Kind) -> Option<TestDb> {
        if let Err(why) = available(kind) {
            skip(kind, &why);
            return None;
        }
        let name = format!("guidstore_test_{:016x}", rand_u64());
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = dir.path().join("test.db").to_string_lossy().into_owned();
                Some(TestDb { kind, url, name, _dir: Some(dir) })
            }
            Kind::Postgres => {
                admin(kind, &format!("CREATE DATABASE {name}")).expect("create a PostgreSQL test database");
                Some(TestDb { kind, url: format!("{}/{name}", postgres_base()), name, _dir: None })
            }
            Kind::Mysql => {
                admin(kind, &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
                    .expect("create a MariaDB test database");
                Some(TestDb { kind, url: format!("{}/{name}", mysql_base()), name, _dir: None })
            }
        }
    }

    /// The storage URL (a path for SQLite).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Runs SQL in this database as the administrator (not for SQLite).
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        match self.kind {
            Kind::Sqlite => Err("not for SQLite".to_owned()),
            Kind::Postgres => {
                let output = Command::new("psql")
                    .arg(&self.url)
                    .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
                    .output()
                    .map_err(|e| e.to_string())?;
                if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
            }
            Kind::Mysql => {
                let output = Command::new(mysql_client())
                    .args(mysql_args())
                    .arg(&self.name)
                    .args(["-e", sql])
                    .output()
                    .map_err(|e| e.to_string())?;
                if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
            }
        }
    }
}

impl TestDb {
    /// Ends every connection to this database except the administrator's own: PostgreSQL
    /// `pg_terminate_backend`, MariaDB `KILL CONNECTION`; how many. Not for SQLite.
    pub fn kill_connections(&self) -> Result<usize, String> {
        match self.kind {
            Kind::Sqlite => Err("not for SQLite".to_owned()),
            Kind::Postgres => {
                let output = Command::new("psql")
                    .arg(format!("{}/postgres", postgres_base()))
                    .args(["-v", "ON_ERROR_STOP=1", "-qAtc"])
                    .arg(format!(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE datname = '{}' AND pid <> pg_backend_pid()",
                        self.name
                    ))
                    .output()
                    .map_err(|e| e.to_string())?;
                if !output.status.success() {
                    return Err(String::from_utf8_lossy(&output.stderr).into_owned());
                }
                let count = String::from_utf8_lossy(&output.stdout);
                count.trim().parse().map_err(|_| format!("pg_terminate_backend answered {count:?}"))
            }
            Kind::Mysql => {
                let output = Command::new(mysql_client())
                    .args(mysql_args())
                    .args(["-N", "-B", "-e"])
                    .arg(format!(
                        "SELECT id FROM information_schema.processlist WHERE db = '{}' AND id <> CONNECTION_ID()",
                        self.name
                    ))
                    .output()
                    .map_err(|e| e.to_string())?;
                if !output.status.success() {
                    return Err(String::from_utf8_lossy(&output.stderr).into_owned());
                }
                let ids: Vec<u64> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter_map(|line| line.trim().parse().ok())
                    .collect();
                if ids.is_empty() {
                    return Ok(0);
                }
                // One client for all of them, at once; `--force` goes on past a connection that
                // ended meanwhile ("Unknown thread id").
                let kills: String = ids.iter().map(|id| format!("KILL CONNECTION {id};")).collect();
                let output = Command::new(mysql_client())
                    .args(mysql_args())
                    .args(["--force", "-e", &kills])
                    .output()
                    .map_err(|e| e.to_string())?;
                let unknown = String::from_utf8_lossy(&output.stderr).matches("Unknown thread id").count();
                let killed = ids.len().saturating_sub(unknown);
                Ok(killed)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let dropped = match self.kind {
            Kind::Sqlite => Ok(()),
            Kind::Postgres => admin(self.kind, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)),
            Kind::Mysql => admin(self.kind, &format!("DROP DATABASE IF EXISTS {}", self.name)),
        };
        if let Err(error) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// A random number without another dependency: std's hasher is randomly seeded per process, and
/// the counter and time make each call differ.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Defines, for each named test function `fn name(kind: Kind)`, one `#[test]` per backend:
/// `sqlite::name`, `postgres::name`, `mysql::name`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::db::Kind::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::db::Kind::Postgres) } )*
        }
        mod mysql {
            $( #[test] fn $name() { super::$name($crate::db::Kind::Mysql) } )*
        }
    };
}

/// Like [`on_every_backend!`], for the backends several processes share: `postgres::name` and
/// `mysql::name`.
#[macro_export]
macro_rules! on_shared_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::db::Kind::Postgres) } )*
        }
        mod mysql {
            $( #[test] fn $name() { super::$name($crate::db::Kind::Mysql) } )*
        }
    };
}
