//! Where the records are — [`Target`] (what the command line asked for) and [`Endpoint`] (what was
//! opened: the database file, or a server) — and the record operations on either, returning the
//! record's JSON exactly as the server would send it.
//!
//! The coherence rule lives here: a database file held by a guidstore-server (its lock file names an
//! `http://` or `https://` URL) is reached through that server, never opened beside it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use guidstore::{Error, Guid, IfMatch, Location, NewRecord, Options, Patch, Store};
use hyper::Method;

use crate::body::check_size;
use crate::cli::Cli;
use crate::error::CliError;
use crate::remote::Remote;
use crate::tls::TlsOptions;

/// How long to wait for a store that is just starting (or stopping) to say who it is.
const LOCK_RETRIES: u32 = 20;
const LOCK_RETRY_DELAY: Duration = Duration::from_millis(25);

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A database: an SQLite file path, or a postgres:// or mysql:// URL.
    Db(String),
    /// A server's base URL.
    Server(String),
}

impl Target {
    /// `--server` or `--db`: a flag on the command line beats the environment; with neither flag,
    /// `GUIDSTORE_SERVER` beats `GUIDSTORE_DB`; with nothing at all, the default database file.
    pub fn choose(cli: &Cli, db: Option<ValueSource>, server: Option<ValueSource>) -> Result<Target, CliError> {
        let db_flag = db == Some(ValueSource::CommandLine);
        let server_flag = server == Some(ValueSource::CommandLine);
        match (&cli.server, db_flag, server_flag) {
            (Some(_), true, true) => Err(CliError::Usage("--db and --server cannot be used together".to_owned())),
            (Some(url), false, _) => Ok(Target::Server(url.clone())),
            _ => Ok(Target::Db(cli.db.clone())),
        }
    }
}

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bearer token.
    pub token: Option<String>,
    /// Connect and answer timeout.
    pub timeout: Duration,
    /// Say on stderr which store or server is used.
    pub verbose: bool,
    /// Largest body (checked before sending or applying it) and, with a database, largest record.
    pub max_body: usize,
    /// TLS, for an `https://` server.
    pub tls: TlsOptions,
}

/// A record as printed: its JSON and entity-tag.
#[derive(Debug)]
pub struct Output {
    /// One line of JSON, as the server sends it.
    pub json: Vec<u8>,
    /// The quoted entity-tag, when known.
    pub etag: Option<String>,
}

/// An opened store or server.
pub enum Endpoint {
    /// The database file, opened by this process.
    Local(Store),
    /// A database file that does not exist (and was not created for a read): nothing is in it.
    Missing,
    /// A server; `held` is the database file whose lock pointed at it, if that is how it was found.
    Remote {
        /// The client.
        remote: Box<Remote>,
        /// The database file the user named, when the server was found through its lock.
        held: Option<PathBuf>,
    },
}

impl Endpoint {
    /// Opens `target`. A database file is created only when `create` is set (a create command);
    /// if a server holds it, the server is used instead.
    pub fn open(target: Target, settings: &Settings, create: bool) -> Result<Endpoint, CliError> {
        match target {
            Target::Server(url) => {
                let remote = Remote::new(&url, settings.token.as_deref(), settings.timeout, &settings.tls)?;
                note(settings, format_args!("using server {}", remote.base()));
                Ok(Endpoint::Remote { remote: Box::new(remote), held: None })
            }
            Target::Db(db) => match Location::parse(&db).map_err(|error| CliError::Usage(error.to_string()))? {
                Location::Sqlite(path) if !create && !path.exists() => {
                    note(settings, format_args!("database {} does not exist", path.display()));
                    Ok(Endpoint::Missing)
                }
                Location::Sqlite(path) => open_db(path, settings),
                shared => {
                    let store = Store::open_url(&db, options(settings)).map_err(|error| match error {
                        Error::InvalidUrl { .. } => CliError::Usage(error.to_string()),
                        other => other.into(),
                    })?;
                    note(settings, format_args!("using database {shared}"));
                    Ok(Endpoint::Local(store))
                }
            },
        }
    }

    /// Opens `target`, runs `operation` on it, and closes it (a close failure after a successful
    /// operation is a warning: the operation's writes are already durable).
    pub fn with<T>(
        target: Target,
        settings: &Settings,
        create: bool,
        operation: impl FnOnce(&Endpoint) -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        let endpoint = Endpoint::open(target, settings, create)?;
        let result = operation(&endpoint);
        if let Endpoint::Local(store) = endpoint
            && let Err(error) = store.close()
        {
            let _ = writeln!(std::io::stderr(), "warning: closing the database: {error}");
        }
        result
    }

    /// Creates a record from `body` (with `guid` when given) and returns it. `max_body` is the
    /// largest body accepted (the server checks its own limit).
    pub fn create(&self, guid: Option<&Guid>, body: Vec<u8>, max_body: usize) -> Result<Output, CliError> {
        match self {
            Endpoint::Local(store) => {
                check_size(&body, max_body)?;
                let record = store.create(NewRecord::parse(&body, guid, store.now())?)?;
                Ok(Output { json: record.to_json().as_bytes().to_vec(), etag: Some(record.etag()) })
            }
            // `open` never gives `Missing` for a create (it creates the file).
            Endpoint::Missing => Err(CliError::Unavailable("the database file does not exist".to_owned())),
            Endpoint::Remote { remote, .. } => {
                let path = guid.map_or_else(|| "/guid".to_owned(), |guid| format!("/guid/{guid}"));
                let answer = remote.send(Method::POST, &path, Some(body), None)?;
                Ok(Output { json: answer.body.to_vec(), etag: answer.etag })
            }
        }
    }

    /// The live record `guid`.
    pub fn get(&self, guid: &Guid) -> Result<Output, CliError> {
        match self {
            Endpoint::Local(store) => {
                let record = store.get(guid)?;
                Ok(Output { json: record.to_json().as_bytes().to_vec(), etag: Some(record.etag()) })
            }
            Endpoint::Missing => Err(Error::NotFound(*guid).into()),
            Endpoint::Remote { remote, .. } => {
                let answer = remote.send(Method::GET, &format!("/guid/{guid}"), None, None)?;
                Ok(Output { json: answer.body.to_vec(), etag: answer.etag })
            }
        }
    }

    /// Merge-patches the live record `guid` with `body`, if `if_match` (when given) matches.
    /// `max_body` is the largest body accepted (the server checks its own limit).
    pub fn update(
        &self,
        guid: &Guid,
        body: Vec<u8>,
        if_match_text: Option<&str>,
        max_body: usize,
    ) -> Result<Output, CliError> {
        match self {
            Endpoint::Local(store) => {
                check_size(&body, max_body)?;
                let patch = Patch::parse(&body, guid, store.now())?;
                let record = store.update(guid, patch, if_match(if_match_text))?;
                Ok(Output { json: record.to_json().as_bytes().to_vec(), etag: Some(record.etag()) })
            }
            Endpoint::Missing => Err(Error::NotFound(*guid).into()),
            Endpoint::Remote { remote, .. } => {
                let answer = remote.send(Method::PATCH, &format!("/guid/{guid}"), Some(body), if_match_text)?;
                Ok(Output { json: answer.body.to_vec(), etag: answer.etag })
            }
        }
    }

    /// Deletes the live record `guid`, if `if_match` (when given) matches.
    pub fn delete(&self, guid: &Guid, if_match_text: Option<&str>) -> Result<(), CliError> {
        match self {
            Endpoint::Local(store) => Ok(store.delete(guid, if_match(if_match_text))?),
            Endpoint::Missing => Err(Error::NotFound(*guid).into()),
            Endpoint::Remote { remote, .. } => {
                remote.send(Method::DELETE, &format!("/guid/{guid}"), None, if_match_text).map(|_| ())
            }
        }
    }

    /// Writes every live record to `out` as NDJSON; how many. Databases only: the HTTP API has no
    /// export route.
    pub fn export(&self, out: impl std::io::Write) -> Result<u64, CliError> {
        match self {
            Endpoint::Local(store) => store.export(out).map_err(|error| match error {
                guidstore::ExportError::Write(source) => CliError::io("writing stdout", source),
                guidstore::ExportError::Store(error) => error.into(),
            }),
            Endpoint::Missing => Ok(0),
            Endpoint::Remote { remote, held } => Err(self.no_route("export", remote, held.as_deref())),
        }
    }

    /// Imports NDJSON records from `input`, calling `progress` after each batch. Databases only.
    pub fn import(
        &self,
        input: impl std::io::BufRead,
        on_conflict: guidstore::OnConflict,
        progress: impl FnMut(&guidstore::ImportStats),
    ) -> Result<guidstore::ImportStats, CliError> {
        match self {
            Endpoint::Local(store) => store.import(input, on_conflict, progress).map_err(CliError::from),
            // `open` never gives `Missing` for an import (it creates the file).
            Endpoint::Missing => Err(CliError::Unavailable("the database file does not exist".to_owned())),
            Endpoint::Remote { remote, held } => Err(self.no_route("import", remote, held.as_deref())),
        }
    }

    /// The error of a command the HTTP API has no route for.
    fn no_route(&self, command: &str, remote: &Remote, held: Option<&std::path::Path>) -> CliError {
        match held {
            None => CliError::Usage(format!(
                "{command} works on a database (--db); the HTTP API of {} has no {command} route",
                remote.base()
            )),
            Some(path) => CliError::Unavailable(format!(
                "database {} is in use by guidstore-server at {}, whose HTTP API has no {command} route \
                 (stop the server, or keep the registry in a shared database: postgres:// or mysql://)",
                path.display(),
                remote.base()
            )),
        }
    }

    /// Removes every expired record, in batches; how many were removed. Database files only: the
    /// HTTP API has no purge route.
    pub fn purge(&self) -> Result<u64, CliError> {
        match self {
            Endpoint::Local(store) => Ok(store.purge_all_expired(guidstore::DEFAULT_PURGE_BATCH)?),
            Endpoint::Missing => Ok(0),
            Endpoint::Remote { remote, held: None } => Err(CliError::Usage(format!(
                "purge works on a database file (--db); the HTTP API of {} has no purge route",
                remote.base()
            ))),
            Endpoint::Remote { remote, held: Some(path) } => Err(CliError::Unavailable(format!(
                "database {} is in use by guidstore-server at {}, whose HTTP API has no purge route; \
                 expired records are already invisible (stop the server to purge the file)",
                path.display(),
                remote.base()
            ))),
        }
    }
}

fn note(settings: &Settings, message: std::fmt::Arguments<'_>) {
    if settings.verbose {
        let _ = writeln!(std::io::stderr(), "{message}");
    }
}

/// The store options of a command: a small cache, one reader, `--max-body` as the largest record,
/// and the CLI named as the owner.
fn options(settings: &Settings) -> Options {
    Options::default()
        .cache_capacity(64)
        .readers(1)
        .max_record_bytes(settings.max_body)
        .owner(format!("guidstore-cli pid {}", std::process::id()))
}

/// Opens the file, or finds the server that holds it. A lock whose owner has not written its name
/// yet (a store starting) is retried briefly.
fn open_db(path: PathBuf, settings: &Settings) -> Result<Endpoint, CliError> {
    let mut attempt = 0;
    loop {
        match Store::open_with(&path, options(settings)) {
            Ok(store) => {
                note(settings, format_args!("using database {}", path.display()));
                return Ok(Endpoint::Local(store));
            }
            Err(Error::Locked { owner: Some(owner), .. }) if is_server_url(&owner) => {
                note(settings, format_args!("database {} is held by {owner}; going through it", path.display()));
                let remote = Remote::new(&owner, settings.token.as_deref(), settings.timeout, &settings.tls)?;
                return Ok(Endpoint::Remote { remote: Box::new(remote), held: Some(path) });
            }
            Err(Error::Locked { owner: None, .. }) if attempt < LOCK_RETRIES => {
                attempt += 1;
                std::thread::sleep(LOCK_RETRY_DELAY);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// `If-Match` for the library: the same text the HTTP header would carry.
fn if_match(text: Option<&str>) -> Option<IfMatch> {
    text.map(IfMatch::parse)
}

fn is_server_url(owner: &str) -> bool {
    owner.starts_with("http://") || owner.starts_with("https://")
}
