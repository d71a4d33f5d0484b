//! The command line: clap definitions only. Parsing values (GUIDs, JSON, URLs) and choosing between
//! the database file and a server happen in `main.rs`, `body.rs` and `endpoint.rs`, not here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

const AFTER_HELP: &str = "\
Where records live:
  --db PATH|URL   work on the database directly: an SQLite file (default ./guidstore.db; sqlite:PATH
                  also works), or postgres://USER[:PASS]@HOST[:PORT]/DB or mysql://... (mariadb://),
                  which any number of servers and CLIs share. If a guidstore-server has an SQLite
                  file open, the command goes through that server over HTTP instead (the server
                  writes its URL in PATH.lock), so the CLI is safe beside a running server.
                  Without a password in the URL, PGPASSWORD or MYSQL_PWD is used. TLS to the
                  database: ?sslmode=disable|prefer|require|verify-ca|verify-full and
                  &sslrootcert=FILE (MySQL: ?ssl-mode=...|VERIFY_IDENTITY&ssl-ca=FILE).
  --server URL    talk HTTP to a running guidstore-server: http://HOST:PORT, or https://HOST:PORT
                  over TLS, trusting the system's CA certificates or only those of --cacert FILE
                  (--client-cert and --client-key for a server that requires client certificates).
  The command line beats the environment; when neither flag is given, GUIDSTORE_SERVER beats
  GUIDSTORE_DB.

Output:
  create, get and update print the record as one line of JSON on stdout, exactly the server's body
  (--pretty indents it); delete and purge print nothing; export prints one record per line (NDJSON)
  and import reports its counts on stderr; watch prints one change-feed event per line (NDJSON) and
  `last revision: REV` on stderr. Errors go to stderr as `error: CODE: message`, with the
  API's codes (invalid_guid, not_found, ...).

Moving a registry:
  guidstore-cli --db old.db export | guidstore-cli --db postgres://app@db/registry import

Exit codes:
  0  success
  1  store, server or I/O failure (unavailable, internal, cannot connect, TLS certificate not trusted,
     file held by another program)
  2  usage or invalid input (bad flags, invalid_guid, invalid_expire, invalid_json, invalid_metadata,
     guid_mismatch, guid_immutable, payload_too_large, unauthorized)
  3  not found (not_found)
  4  already exists or precondition failed (already_exists, precondition_failed)";

/// Command-line client for guidstore: a registry of GUIDs and their metadata, each valid until an
/// expiry time.
#[derive(Debug, Parser)]
#[command(name = "guidstore-cli", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Database to work on: an SQLite file path (or sqlite:PATH), postgres://… or mysql://….
    #[arg(
        long,
        global = true,
        env = "GUIDSTORE_DB",
        default_value = "./guidstore.db",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub db: String,

    /// Base URL of a running guidstore-server, e.g. http://127.0.0.1:8080 (instead of --db).
    #[arg(long, global = true, env = "GUIDSTORE_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Bearer token sent to the server (`Authorization: Bearer TOKEN`), when it requires one.
    #[arg(long, global = true, env = "GUIDSTORE_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// CA certificates (PEM) to trust for an https:// server, instead of the system's.
    #[arg(long, global = true, env = "GUIDSTORE_CACERT", value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,

    /// DANGEROUS, for tests only: do not verify the https:// server's certificate. Any certificate
    /// is accepted, whoever issued it (or self-signed), for whatever host name, expired or not;
    /// the connection is still encrypted, but anyone on the way can pose as the server and read or
    /// change the records and the token. Prints a warning on stderr every time.
    #[arg(long, global = true)]
    pub insecure: bool,

    /// Client certificate (PEM chain) to present to an https:// server that requires one.
    #[arg(long, global = true, env = "GUIDSTORE_CLIENT_CERT", value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// The PEM private key of --client-cert.
    #[arg(long, global = true, env = "GUIDSTORE_CLIENT_KEY", value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// Seconds to wait for the server before giving up (HTTP only).
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,

    /// Largest request body in bytes, and (with --db) the largest record an update may leave:
    /// larger is payload_too_large, as from a server started with the same --max-body.
    #[arg(long, global = true, env = "GUIDSTORE_MAX_BODY", default_value_t = guidstore::DEFAULT_MAX_BODY,
          value_name = "BYTES")]
    pub max_body: usize,

    /// Print the record indented over several lines instead of one line.
    #[arg(long, global = true)]
    pub pretty: bool,

    /// Also print the record's entity-tag (for --if-match) on stderr, as one line: "0123456789abcdef".
    #[arg(long, global = true)]
    pub etag: bool,

    /// Say more on stderr: which store or server is used, how many records a purge removed.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a record (with a random GUID unless one is given) and print it.
    Create {
        /// The GUID to create (32 uppercase hexadecimal characters); random when absent.
        guid: Option<String>,
        #[command(flatten)]
        fields: Fields,
    },
    /// Print a live record.
    Get {
        /// The record's GUID.
        guid: String,
    },
    /// Change a live record (JSON Merge Patch on its metadata) and print it.
    Update {
        /// The record's GUID.
        guid: String,
        #[command(flatten)]
        fields: Fields,
        /// Remove a metadata key (a merge-patch null). Repeatable.
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        /// Only change the record if its entity-tag is one of these (or `*`).
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Delete a live record.
    Delete {
        /// The record's GUID.
        guid: String,
        /// Only delete the record if its entity-tag is one of these (or `*`).
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Remove expired records from the database file (--db only; -v prints how many).
    Purge,
    /// Print every live record as one line of JSON (NDJSON), exactly as GET renders it, in GUID order
    /// (--db only; streamed: constant memory whatever the size).
    Export,
    /// Read NDJSON records (as export prints them) from FILE or stdin and write them in batches, one
    /// transaction each: 50,000 records on SQLite, 10,000 on PostgreSQL and MySQL (--db only).
    /// Expired records are skipped; a record already there with the same content is unchanged (so
    /// a re-run is harmless); --on-conflict decides about a live record with other content. A bad
    /// line stops with its line number, before anything of its batch is written (earlier batches
    /// stay). Counts go to stderr, with progress on a terminal.
    Import {
        /// The file to read (`-` or nothing: stdin).
        file: Option<PathBuf>,
        /// What to do with a live record of the same GUID and other content.
        #[arg(long, value_enum, default_value_t = OnConflictArg::Fail)]
        on_conflict: OnConflictArg,
    },
    /// Print the change feed: every create, update, delete and expiry after --after, one event per
    /// line (NDJSON, as GET /events sends them), in revision order. With --follow, wait for more
    /// until Ctrl-C (exit 0). On exit, `last revision: REV` on stderr is the --after that resumes
    /// right after the last event printed. Exit 2 with events_truncated when --after is older than
    /// the oldest change kept (re-read the registry with export). From a server, a shared
    /// database, or an SQLite file (--follow on a file needs the server that has it open).
    Watch {
        /// Print the events after this revision (0: from the oldest kept).
        #[arg(long, default_value_t = 0, value_name = "REV")]
        after: u64,
        /// Keep waiting for new events instead of exiting once the feed is read.
        #[arg(long)]
        follow: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, ...) on stdout.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// The fields of a create or update body. They merge into one JSON object in this order: --json,
/// then --expire, --user, each --set (and, for update, each --unset); a later one wins.
#[derive(Debug, Args)]
pub struct Fields {
    /// Expiry, Unix time in seconds (ASCII digits, strictly in the future).
    #[arg(long, value_name = "UNIX")]
    pub expire: Option<String>,
    /// The `user` metadata field (a non-empty string).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Set a metadata field to a JSON value; text that is not JSON is taken as a string
    /// (--set team=ops, --set tags='["a","b"]', --set size=3). Repeatable.
    #[arg(long, value_name = "KEY=JSON")]
    pub set: Vec<String>,
    /// The body as a JSON object: inline, @FILE to read a file, or - to read stdin.
    #[arg(long, value_name = "OBJECT|@FILE|-")]
    pub json: Option<String>,
}

/// `--on-conflict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnConflictArg {
    /// Keep the stored record.
    Skip,
    /// Replace it with the imported one.
    Replace,
    /// Stop with an error (exit 4); nothing of that batch is written.
    Fail,
}

impl From<OnConflictArg> for guidstore::OnConflict {
    fn from(arg: OnConflictArg) -> guidstore::OnConflict {
        match arg {
            OnConflictArg::Skip => guidstore::OnConflict::Skip,
            OnConflictArg::Replace => guidstore::OnConflict::Replace,
            OnConflictArg::Fail => guidstore::OnConflict::Fail,
        }
    }
}
