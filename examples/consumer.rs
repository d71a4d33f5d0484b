//! A change-feed consumer: a worker that follows a guidstore-server's `GET /events` and keeps a
//! registry of its own in its own SQLite file — an audit log of every change and an index of the
//! live records — storing its position (the last revision applied) **in the same transaction** as
//! the effect of the events up to it.
//!
//! ```text
//! cargo run -p guidstore-examples --example consumer -- http://127.0.0.1:8080 audit.db
//! sqlite3 audit.db 'SELECT rev, op, guid FROM audit ORDER BY rev DESC LIMIT 5'
//! ```
//!
//! Why it is exactly once in effect: the position and the effect commit together, so after a crash
//! (even `kill -9`) the file holds both or neither, and the worker resumes from the position it
//! finds — never re-applying an event it applied, never skipping one. The feed delivers events in
//! revision order with none missing, so nothing else is needed: no deduplication, no locking.
//! A position the server no longer keeps (`410 events_truncated`) means the worker was away longer
//! than the retention window: it stops and says so (a real worker would rebuild its index from an
//! export).
//!
//! It speaks plain HTTP/1.1 with the standard library (one long poll per request, `Connection:
//! close`), so it needs no HTTP client crate; with authentication on, set `GUIDSTORE_TOKEN`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, params};
use serde_json::Value;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Events asked for per long poll (one transaction each).
const BATCH: usize = 500;
/// How long one long poll waits for an event.
const WAIT_SECS: u64 = 30;

#[allow(dead_code)] // the tests call `run` directly
fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(server), Some(audit)) = (args.next(), args.next()) else {
        return Err("usage: consumer http://HOST:PORT AUDIT.db".into());
    };
    run(&server, Path::new(&audit))
}

/// Follows the feed of `server` into `audit` forever (until killed); an error ends it.
pub fn run(server: &str, audit: &Path) -> Result<(), Error> {
    let address = server.strip_prefix("http://").ok_or("the server URL must be http://HOST:PORT")?;
    let address = address.trim_end_matches('/').to_owned();
    let mut db = open(audit)?;
    let token = std::env::var("GUIDSTORE_TOKEN").ok();
    let mut failures = 0u32;
    loop {
        let after = position(&db)?;
        let path = format!("/events?after={after}&wait={WAIT_SECS}&limit={BATCH}");
        let (status, body) = match get(&address, &path, token.as_deref()) {
            Ok(answer) => answer,
            Err(error) => {
                // The server is restarting, or the network hiccupped: try again, more slowly.
                failures += 1;
                eprintln!("consumer: {server} unreachable ({error}); retrying");
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(50))));
                continue;
            }
        };
        failures = 0;
        let page: Value = serde_json::from_slice(&body)?;
        match status {
            200 => {}
            410 => return Err(format!("position {after} was trimmed from the server's log: {page}").into()),
            _ => return Err(format!("GET {path}: {status} {page}").into()),
        }
        let events = page["events"].as_array().ok_or("an answer without events")?;
        if !events.is_empty() {
            apply(&mut db, events)?;
        }
    }
}

/// The audit file: `audit` (every event applied, in order), `records` (the live records, by
/// GUID) and `position` (one row: the revision applied last).
pub fn open(path: &Path) -> Result<Connection, Error> {
    let db = Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS audit (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             rev INTEGER NOT NULL, op TEXT NOT NULL, guid TEXT NOT NULL, at TEXT NOT NULL, record TEXT);
         CREATE TABLE IF NOT EXISTS records (guid TEXT PRIMARY KEY, record TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS position (id INTEGER PRIMARY KEY CHECK (id = 1), rev INTEGER NOT NULL);
         INSERT OR IGNORE INTO position (id, rev) VALUES (1, 0);",
    )?;
    Ok(db)
}

/// The revision applied last.
pub fn position(db: &Connection) -> Result<u64, Error> {
    Ok(db.query_row("SELECT rev FROM position WHERE id = 1", [], |row| row.get(0))?)
}

/// Applies `events` and moves the position past them, all in one transaction. (The audit's `id`
/// is its own counter, not the revision: an event applied twice would show as two rows.)
fn apply(db: &mut Connection, events: &[Value]) -> Result<(), Error> {
    let tx = db.transaction()?;
    let mut last = None;
    for event in events {
        let rev = event["rev"].as_u64().ok_or("an event without rev")?;
        let op = event["op"].as_str().ok_or("an event without op")?;
        let guid = event["guid"].as_str().ok_or("an event without guid")?;
        let at = event["at"].as_str().ok_or("an event without at")?;
        let record = event.get("record").map(Value::to_string);
        tx.execute(
            "INSERT INTO audit (rev, op, guid, at, record) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![rev, op, guid, at, record],
        )?;
        match (op, &record) {
            ("create" | "update", Some(record)) => {
                tx.execute(
                    "INSERT INTO records (guid, record) VALUES (?1, ?2)
                     ON CONFLICT (guid) DO UPDATE SET record = excluded.record",
                    params![guid, record],
                )?;
            }
            ("delete" | "expire", None) => {
                tx.execute("DELETE FROM records WHERE guid = ?1", params![guid])?;
            }
            _ => return Err(format!("unexpected event {event}").into()),
        }
        last = Some(rev);
    }
    if let Some(rev) = last {
        tx.execute("UPDATE position SET rev = ?1 WHERE id = 1", params![rev])?;
    }
    tx.commit()?;
    Ok(())
}

/// `GET path` over one HTTP/1.1 connection: the status and the body.
fn get(address: &str, path: &str, token: Option<&str>) -> Result<(u16, Vec<u8>), Error> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(WAIT_SECS + 30)))?;
    let authorization = token.map_or_else(String::new, |token| format!("Authorization: Bearer {token}\r\n"));
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("a response without a head")?;
    let head = std::str::from_utf8(&response[..end])?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("a response without a status")?;
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .ok_or("a response without Content-Length")?;
    let body = response.split_off(end + 4);
    if body.len() != length {
        return Err(format!("the response ended after {} of {length} bytes", body.len()).into());
    }
    Ok((status, body))
}
