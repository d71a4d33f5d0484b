//! [`Config`]: the command line and environment of `guidstore-server` (clap), and its translation
//! into the [`Settings`] of [`run`](crate::run) and the store's [`Options`].
//!
//! Every flag has a `GUIDSTORE_*` environment variable and a default, all shown by `--help`. The
//! defaults are written once, here (the library's own, such as `DEFAULT_MAX_BODY`, are reused), and
//! [`Config::default`] gives them without reading the environment. Nothing here opens files or
//! sockets: [`Application::build`](crate::Application::build) does that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{CommandFactory, FromArgMatches};
use guidstore::{Options, Synchronous};
use log::LevelFilter;

use crate::tls::{Tls, TlsFiles};

/// The largest request head (request line and headers) hyper buffers for HTTP/1: a larger one is
/// `431 header_too_large`. (hyper's default, about 400 KiB, would let 10,000 idle connections
/// hold 4 GB.)
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The server's configuration, from flags and `GUIDSTORE_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "guidstore-server",
    version,
    about = "A REST server for a registry of GUIDs with expiry and metadata."
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the real address is printed on stdout).
    #[arg(long, env = "GUIDSTORE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where the records live: an SQLite file path or sqlite:PATH (created if missing; one server
    /// owns it), postgres://USER[:PASS]@HOST[:PORT]/DB or mysql://USER[:PASS]@HOST[:PORT]/DB (also
    /// mariadb://): a database any number of servers share. TLS to it (default: when offered):
    /// ?sslmode=disable|prefer|require|verify-ca|verify-full[&sslrootcert=FILE] on PostgreSQL,
    /// ?ssl-mode=DISABLED|PREFERRED|REQUIRED|VERIFY_IDENTITY on MySQL (&ssl-ca=FILE with
    /// VERIFY_IDENTITY).
    /// Without a password in the URL, PGPASSWORD or MYSQL_PWD is used. Never logged with its password.
    #[arg(
        long,
        env = "GUIDSTORE_DB",
        default_value = "./guidstore.db",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub db: String,

    /// Connections in the pool to a PostgreSQL or MySQL database (beside it, one for freshness
    /// rounds, and on PostgreSQL one for LISTEN).
    #[arg(long, env = "GUIDSTORE_DB_POOL_SIZE", default_value_t = guidstore::DEFAULT_POOL_SIZE,
          value_parser = RangedU64ValueParser::<usize>::new().range(2..))]
    pub db_pool_size: usize,

    /// How long any call to a PostgreSQL or MySQL database may take (connect, query, commit) before
    /// the request is answered 503 unavailable; the database is asked to cancel longer statements.
    #[arg(long, env = "GUIDSTORE_DB_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub db_timeout: Duration,

    /// At startup, how long to keep retrying a PostgreSQL or MySQL database that cannot be reached
    /// (with backoff, each attempt logged) before giving up with exit code 1.
    #[arg(long, env = "GUIDSTORE_DB_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub db_wait: Duration,

    /// On a shared database, how often the change log is read when no request asks for it: bounds how
    /// stale a `Cache-Control: max-stale` read can be and how late the change feed sees other
    /// servers' writes on MySQL (PostgreSQL servers also wake each other with NOTIFY).
    #[arg(long, env = "GUIDSTORE_TAIL_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub tail_interval: Duration,

    /// Log file, appended to (never truncated).
    #[arg(long, env = "GUIDSTORE_LOG_FILE", default_value = "./server.log")]
    pub log_file: PathBuf,

    /// Log level: off, error, warn, info (one line per request), debug (also 4xx causes), trace.
    #[arg(long, env = "GUIDSTORE_LOG_LEVEL", default_value = "info")]
    pub log_level: LevelFilter,

    /// How many records the in-memory record cache (segmented LRU) holds (0 disables it).
    #[arg(long, env = "GUIDSTORE_CACHE_CAPACITY", default_value_t = guidstore::DEFAULT_CACHE_CAPACITY)]
    pub cache_capacity: usize,

    /// A shared cache in Redis between this server's own cache and a shared (PostgreSQL or MySQL)
    /// database: `redis://[:PASS@]HOST[:PORT][/DB]`, or `rediss://` for TLS. Every server of the
    /// registry may use the same one; its entries are used only when proven current, and when it
    /// fails, reads go to the database. Refused with an SQLite --db. Default: none.
    #[arg(long, env = "GUIDSTORE_CACHE", hide_env_values = true, value_name = "URL")]
    pub cache: Option<String>,

    /// How long an entry stays in the shared cache (never longer than its record's expiry).
    #[arg(long, env = "GUIDSTORE_CACHE_TTL", default_value = "1h", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// How long one call to the shared cache may take; past it the read goes to the database and
    /// the cache is left alone until a background probe finds it answering again.
    #[arg(long, env = "GUIDSTORE_CACHE_TIMEOUT", default_value = "50ms", value_parser = parse_duration)]
    pub cache_timeout: Duration,

    /// Text put before every key of the shared cache (keys are always namespaced by the registry's
    /// own id as well).
    #[arg(long, env = "GUIDSTORE_CACHE_PREFIX", default_value = "")]
    pub cache_prefix: String,

    /// Expiry of records created without one: now + this many seconds.
    #[arg(long, env = "GUIDSTORE_DEFAULT_TTL", default_value_t = guidstore::DEFAULT_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub default_ttl: u64,

    /// How often expired records are purged from the database (e.g. 60s, 500ms, 5m; a bare number is seconds).
    #[arg(long, env = "GUIDSTORE_PURGE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub purge_interval: Duration,

    /// Most expired records removed in one purge transaction (batches repeat until done).
    #[arg(long, env = "GUIDSTORE_PURGE_BATCH", default_value_t = guidstore::DEFAULT_PURGE_BATCH,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub purge_batch: usize,

    /// Largest accepted request body in bytes; larger bodies get 413. Also the largest record: a
    /// PATCH whose result would render larger gets 413 and changes nothing.
    #[arg(long, env = "GUIDSTORE_MAX_BODY", default_value_t = guidstore::DEFAULT_MAX_BODY)]
    pub max_body: usize,

    /// How commits reach the disk: full (fsync every commit; survives power loss) or normal (WAL
    /// synced at checkpoints; survives a process crash).
    #[arg(long, env = "GUIDSTORE_SYNC", value_enum, default_value_t = SyncMode::Full)]
    pub sync: SyncMode,

    /// Most simultaneously open client connections; further clients wait in the listen backlog.
    #[arg(long, env = "GUIDSTORE_MAX_CONNECTIONS", default_value_t = 16_384,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// Time a client has to send a request's headers (and an idle keep-alive connection to send the
    /// next request) before the connection is closed.
    #[arg(long, env = "GUIDSTORE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// At shutdown, how long in-flight requests get to finish before connections are dropped.
    #[arg(long, env = "GUIDSTORE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// The longest a `GET /events` long poll waits for a change (a request's `wait` is cut to it);
    /// lower it below a proxy's idle timeout.
    #[arg(long, env = "GUIDSTORE_EVENTS_MAX_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub events_max_wait: Duration,

    /// How long an event stream's client may leave output unread (taking none of it) before its
    /// connection is dropped; a client that falls 1 MiB behind gets a last `overflow` event first.
    #[arg(long, env = "GUIDSTORE_EVENTS_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub events_stall_timeout: Duration,

    /// How long changes stay in the change log for `GET /events` consumers (older ones are trimmed
    /// with each purge; a consumer behind them gets 410 events_truncated). The newest is always kept.
    #[arg(long, env = "GUIDSTORE_EVENTS_RETENTION", default_value = "7days", value_parser = parse_duration)]
    pub events_retention: Duration,

    /// Also keep at most this many of the newest changes (no count limit when absent).
    #[arg(long, env = "GUIDSTORE_EVENTS_RETENTION_COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub events_retention_count: Option<u64>,

    /// File of bearer tokens, one per line. When set, every route but /healthz needs
    /// `Authorization: Bearer TOKEN`.
    #[arg(long, env = "GUIDSTORE_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this PEM certificate chain, leaf first; needs
    /// --tls-key. Reloaded when the file changes (checked every 10 s) or on SIGHUP.
    #[arg(long, env = "GUIDSTORE_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1, not encrypted).
    #[arg(long, env = "GUIDSTORE_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Require a client certificate signed by a CA of this PEM file; connections without one are
    /// refused during the TLS handshake. Needs --tls-cert.
    #[arg(long, env = "GUIDSTORE_TLS_CLIENT_CA", requires = "tls_cert", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Limits and intervals of the server (see [`Config`] for their meaning and defaults).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    /// Most simultaneously open connections.
    pub max_connections: usize,
    /// Time allowed to send request headers; also the idle limit of a keep-alive connection.
    pub header_timeout: Duration,
    /// Time in-flight requests get at shutdown.
    pub shutdown_timeout: Duration,
    /// Time between purges of expired records.
    pub purge_interval: Duration,
    /// Most records removed per purge transaction.
    pub purge_batch: usize,
    /// The longest a long poll of `/events` waits.
    pub events_max_wait: Duration,
    /// How long an event stream's unread output may wait before its connection is dropped.
    pub events_stall_timeout: Duration,
    /// How long changes stay in the change log.
    pub events_retention: Duration,
    /// At most this many changes stay in the change log.
    pub events_retention_count: Option<u64>,
    /// TLS, when on: every connection starts with a handshake (loaded by the application builder
    /// from [`Config::tls_files`]).
    pub tls: Option<Tls>,
    /// How often the TLS files are checked for changes (a changed file is reloaded).
    pub tls_reload_interval: Duration,
}

/// How often the TLS files are checked for changes unless told otherwise.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

impl Default for Settings {
    /// The settings of the default [`Config`]: the defaults are written once.
    fn default() -> Settings {
        Config::default().settings()
    }
}

/// `--sync`: SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// Every commit is fsynced before it is acknowledged.
    Full,
    /// WAL commits are synced at checkpoints.
    Normal,
}

impl Default for Config {
    /// Every flag at its default, whatever the environment says (tests start from this).
    fn default() -> Config {
        let matches = Config::command().mut_args(|arg| arg.env(None)).get_matches_from(["guidstore-server"]);
        Config::from_arg_matches(&matches).expect("the defaults of every flag parse")
    }
}

impl Config {
    /// The settings of [`run`](crate::run).
    pub fn settings(&self) -> Settings {
        Settings {
            max_body: self.max_body,
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            shutdown_timeout: self.shutdown_timeout,
            purge_interval: self.purge_interval,
            purge_batch: self.purge_batch,
            events_max_wait: self.events_max_wait,
            events_stall_timeout: self.events_stall_timeout,
            events_retention: self.events_retention,
            events_retention_count: self.events_retention_count,
            tls: None,
            tls_reload_interval: DEFAULT_TLS_RELOAD_INTERVAL,
        }
    }

    /// The TLS files, when TLS is on (loading them is
    /// [`ApplicationBuilder::build`](crate::ApplicationBuilder::build)'s job).
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The store options, recording `owner` (the server's URL) in the database's lock file.
    pub fn store_options(&self, owner: &str) -> Options {
        let synchronous = match self.sync {
            SyncMode::Full => Synchronous::Full,
            SyncMode::Normal => Synchronous::Normal,
        };
        let options = Options::default()
            .cache_capacity(self.cache_capacity)
            .default_ttl(self.default_ttl)
            .synchronous(synchronous)
            .max_record_bytes(self.max_body)
            .pool_size(self.db_pool_size)
            .timeout(self.db_timeout)
            .tail_interval(self.tail_interval)
            .redis_ttl(self.cache_ttl)
            .redis_timeout(self.cache_timeout)
            .redis_prefix(self.cache_prefix.clone())
            .owner(owner);
        match &self.cache {
            Some(url) => options.redis_cache(url.clone()),
            None => options,
        }
    }

    /// The effective configuration as one line for the startup log (never the tokens).
    pub fn summary(&self) -> String {
        format!(
            "listen={} db={} db_pool_size={} db_timeout={:?} db_wait={:?} tail_interval={:?} log_file={} log_level={} \
             cache_capacity={} cache={} cache_ttl={:?} cache_timeout={:?} cache_prefix={:?} default_ttl={}s purge_interval={:?} purge_batch={} max_body={} sync={:?} \
             max_connections={} header_timeout={:?} shutdown_timeout={:?} auth={} tls={}",
            self.listen,
            guidstore::redact_url(&self.db),
            self.db_pool_size,
            self.db_timeout,
            self.db_wait,
            self.tail_interval,
            self.log_file.display(),
            self.log_level,
            self.cache_capacity,
            self.cache.as_deref().map_or_else(|| "off".to_owned(), guidstore::redact_url),
            self.cache_ttl,
            self.cache_timeout,
            self.cache_prefix,
            self.default_ttl,
            self.purge_interval,
            self.purge_batch,
            self.max_body,
            self.sync,
            self.max_connections,
            self.header_timeout,
            self.shutdown_timeout,
            self.auth_token_file.as_ref().map_or_else(|| "off".to_owned(), |p| format!("tokens from {}", p.display())),
            self.tls_files().map_or_else(
                || "off".to_owned(),
                |files| format!(
                    "(cert {} key {} client_ca {})",
                    files.cert.display(),
                    files.key.display(),
                    files.client_ca.map_or_else(|| "none".to_owned(), |path| path.display().to_string())
                )
            ),
        )
    }
}

/// Parses a positive duration: a bare number of seconds, or what `humantime` reads (`500ms`, `10s`,
/// `5m`, `1h`, `1.5s`, `2days`, `1h 30m`, ...).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().map(Duration::from_secs).map_err(|_| format!("{text:?} is too many seconds"))?
    } else {
        humantime::parse_duration(text)
            .map_err(|error| format!("{text:?} is not a duration such as 10s, 500ms or 5m ({error})"))?
    };
    if duration.is_zero() {
        return Err("the duration must be positive".to_owned());
    }
    // Deadlines are `Instant + duration`, which panics past the clock's range: a century is
    // longer than any wait anyone means, and far inside it.
    if duration > MAX_DURATION {
        return Err(format!("{text:?} is longer than the longest duration allowed (100 years)"));
    }
    Ok(duration)
}

/// The longest duration a flag accepts.
const MAX_DURATION: Duration = guidstore::LONGEST_TIMEOUT;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        let cases = [
            ("10", Some(Duration::from_secs(10))),
            ("10s", Some(Duration::from_secs(10))),
            ("250ms", Some(Duration::from_millis(250))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            (" 10s ", Some(Duration::from_secs(10))),
            // Forms humantime adds to the hand-written parser it replaced (which refused them).
            ("1.5s", Some(Duration::from_millis(1500))),
            ("10d", Some(Duration::from_secs(864_000))),
            ("1h 30m", Some(Duration::from_secs(5400))),
            ("", None),
            ("0", None),
            ("0s", None),
            ("0ms", None),
            ("s", None),
            ("-1s", None),
            ("1.5", None),
            ("10x", None),
            ("１０s", None),
            ("99999999999999999999", None),
            ("18446744073709551615", None),
            ("101y", None),
            ("3153600000", Some(MAX_DURATION)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), expected, "{text:?}");
        }
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = Config::try_parse_from(["guidstore-server"]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.db, "./guidstore.db");
        assert_eq!(config.log_file, PathBuf::from("./server.log"));
        assert_eq!(config.log_level, LevelFilter::Info);
        assert_eq!(config.default_ttl, 2_592_000);
        assert_eq!(config.max_body, 65_536);
        assert_eq!(config.sync, SyncMode::Full);
        assert_eq!(config.auth_token_file, None);
        assert_eq!(config.tls_files(), None);
    }

    #[test]
    fn tls_needs_both_a_certificate_and_a_key() {
        let both = Config::try_parse_from(["guidstore-server", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        let files = both.tls_files().unwrap();
        assert_eq!((files.cert, files.key, files.client_ca), ("c.pem".into(), "k.pem".into(), None));
        assert!(both.summary().contains("tls=(cert c.pem key k.pem client_ca none)"), "{}", both.summary());
        for args in [
            &["--tls-cert", "c.pem"][..],
            &["--tls-key", "k.pem"],
            &["--tls-client-ca", "ca.pem"],
            &["--tls-client-ca", "ca.pem", "--tls-key", "k.pem"],
        ] {
            let parsed = Config::try_parse_from(std::iter::once("guidstore-server").chain(args.iter().copied()));
            assert!(parsed.is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn the_default_config_ignores_the_environment_and_matches_the_library() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.cache_capacity, guidstore::DEFAULT_CACHE_CAPACITY);
        assert_eq!(config.max_body, guidstore::DEFAULT_MAX_BODY);
        assert_eq!(config.purge_batch, guidstore::DEFAULT_PURGE_BATCH);
        assert_eq!(config.default_ttl, guidstore::DEFAULT_TTL_SECS);
        let settings = Settings::default();
        assert_eq!((settings.max_connections, settings.header_timeout), (16_384, Duration::from_secs(10)));
        assert_eq!(
            (settings.purge_interval, settings.shutdown_timeout),
            (Duration::from_secs(60), Duration::from_secs(10))
        );
        assert!(Config::try_parse_from(["guidstore-server", "--purge-batch", "0"]).is_err());
        assert!(Config::try_parse_from(["guidstore-server", "--max-connections", "0"]).is_err());
    }

    #[test]
    fn help_shows_every_flag_with_its_environment_variable() {
        let help = Config::command().render_long_help().to_string();
        for flag in [
            "listen",
            "db",
            "db-pool-size",
            "db-timeout",
            "db-wait",
            "tail-interval",
            "events-max-wait",
            "events-stall-timeout",
            "events-retention",
            "events-retention-count",
            "log-file",
            "log-level",
            "cache-capacity",
            "cache",
            "cache-ttl",
            "cache-timeout",
            "cache-prefix",
            "default-ttl",
            "purge-interval",
            "purge-batch",
            "max-body",
            "sync",
            "max-connections",
            "header-timeout",
            "shutdown-timeout",
            "auth-token-file",
            "tls-cert",
            "tls-key",
            "tls-client-ca",
        ] {
            assert!(help.contains(&format!("--{flag}")), "--{flag} missing from --help");
            let env = format!("GUIDSTORE_{}", flag.replace('-', "_").to_uppercase());
            assert!(help.contains(&env), "{env} missing from --help");
        }
    }

    #[test]
    fn summary_and_help_never_show_a_database_password() {
        let config = Config::try_parse_from(["guidstore-server", "--db", "postgres://app:hunter2@db/reg"]).unwrap();
        assert!(config.summary().contains("db=postgres://app:***@db/reg"), "{}", config.summary());
        assert!(!config.summary().contains("hunter2"));
        let config = Config::try_parse_from(["guidstore-server", "--cache", "redis://:hunter2@cache:6379/2"]).unwrap();
        assert!(config.summary().contains("cache=redis://:***@cache:6379/2"), "{}", config.summary());
        assert!(!config.summary().contains("hunter2"));
    }

    #[test]
    fn summary_names_the_token_file_but_no_token() {
        let config = Config::try_parse_from(["guidstore-server", "--auth-token-file", "/etc/tokens"]).unwrap();
        assert!(config.summary().contains("auth=tokens from /etc/tokens"));
    }
}
