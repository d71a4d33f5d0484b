//! Database faults under real `guidstore-server` processes (shared/API.md "Faults"; issue 10):
//!
//! - a private PostgreSQL (`initdb` into a temp dir) stopped while a server runs (`pg_ctl stop -m
//!   fast`: connections refused) and paused (`SIGSTOP` on its processes: connections hang), then
//!   brought back: during the fault every write and every linearizable read answers
//!   `503 unavailable` (none hangs, none is a 500), `/healthz` is 503; afterwards the server
//!   recovers by itself, and every write it acknowledged is in the database;
//! - the server's connections killed while it runs (`pg_terminate_backend`, MariaDB `KILL`):
//!   requests go on by themselves, at most the ones in flight fail with 503;
//! - the database unreachable at startup: the server retries with backoff, says so in server.log,
//!   answers every request 503 (`/healthz` included) meanwhile, and starts once the database is
//!   there.
//!
//! Each test prints its figures (time to the first 503, the slowest 503, time to recover after the
//! database is back); `DB_FAULT_TRIALS=N` repeats the stop and pause faults N times and prints the
//! median and maximum (RELIABILITY.md "Database faults"). Nothing here asserts on time except that
//! every request is answered within the client's 30 s timeout.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guidstore_reliability::server::{Server, ServerConfig, server_binary_for_tests};
use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::http::{Connection, Response};
use guidstore_testkit::postgres::{PostgresCluster, StopMode};

/// How long a client waits for any answer: far above the server's 2 s bound, so a hang fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A private PostgreSQL, or `None` (after saying so) where it cannot run.
fn cluster() -> Option<PostgresCluster> {
    match PostgresCluster::start() {
        Ok(cluster) => Some(cluster),
        Err(error) => {
            let message = format!("SKIPPED: a private PostgreSQL cannot be started here: {error}");
            if std::env::var("GUIDSTORE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("{message} (GUIDSTORE_REQUIRE_SERVICES=1)");
            }
            eprintln!("{message}");
            None
        }
    }
}

fn start_server(db: &str, dir: &Path) -> Server {
    let config = ServerConfig::in_dir(server_binary_for_tests(), dir).args([
        "--tail-interval",
        "100ms",
        "--cache-capacity",
        "1000",
        "--log-level",
        "debug",
    ]);
    let config = ServerConfig { db: db.into(), ..config };
    Server::start(&config).expect("start guidstore-server")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Read,
    StaleRead,
}

/// One answered request.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: Op,
    start: Instant,
    end: Instant,
    status: u16,
}

/// One GUID a writer owns: the counter `n` its last acknowledged write left, and the highest it
/// ever sent (a write answered 503 may or may not have been committed).
struct Key {
    guid: String,
    acknowledged: AtomicU64,
    attempted: AtomicU64,
}

/// Writers (a PATCH incrementing a counter, each on its own GUID), linearizable readers of those
/// GUIDs, and a `max-stale=1` reader, each with one keep-alive connection, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
    keys: Arc<Vec<Key>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn request(
    connection: &mut Option<Connection>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    for _ in 0..3 {
        if connection.as_ref().is_none_or(Connection::is_closed) {
            *connection = Some(Connection::connect(addr, CLIENT_TIMEOUT).expect("connect to the server"));
        }
        let Some(open) = connection.as_mut() else { unreachable!("just connected") };
        match open.request(method, path, headers, body.map(str::as_bytes)) {
            Ok(response) => return response,
            // A keep-alive connection the server had closed: open another (the request was not read).
            Err(error)
                if error.kind() != std::io::ErrorKind::WouldBlock && error.kind() != std::io::ErrorKind::TimedOut =>
            {
                *connection = None;
            }
            Err(error) => panic!("{method} {path}: no answer within {CLIENT_TIMEOUT:?}: {error}"),
        }
    }
    panic!("{method} {path}: the connection failed three times");
}

fn counter(response: &Response) -> u64 {
    response.json()["n"].as_u64().unwrap_or_else(|| panic!("no counter in {}", response.text()))
}

impl Load {
    fn start(addr: SocketAddr, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut setup = None;
        static LOADS: AtomicU64 = AtomicU64::new(0);
        let load = LOADS.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<Key> = (0..writers)
            .map(|i| {
                let guid = format!("{:016X}{:016X}", 0xFA17_0000 + load, i as u64 + 1);
                let created = request(&mut setup, addr, "POST", &format!("/guid/{guid}"), &[], Some(r#"{"n":0}"#));
                assert_eq!(created.status, 201, "{}", created.text());
                Key { guid, acknowledged: AtomicU64::new(0), attempted: AtomicU64::new(0) }
            })
            .collect();
        let keys = Arc::new(keys);
        let mut threads = Vec::new();
        for k in 0..writers {
            let (stop, events, keys) = (Arc::clone(&stop), Arc::clone(&events), Arc::clone(&keys));
            threads.push(std::thread::spawn(move || {
                let key = &keys[k];
                let mut connection = None;
                let path = format!("/guid/{}", key.guid);
                while !stop.load(Ordering::Relaxed) {
                    let next = key.attempted.load(Ordering::SeqCst) + 1;
                    key.attempted.store(next, Ordering::SeqCst);
                    let start = Instant::now();
                    let body = format!(r#"{{"n":{next}}}"#);
                    let response = request(&mut connection, addr, "PATCH", &path, &[], Some(&body));
                    let end = Instant::now();
                    if response.status == 200 {
                        assert_eq!(counter(&response), next);
                        key.acknowledged.store(next, Ordering::SeqCst);
                    }
                    events.lock().unwrap().push(Event { op: Op::Write, start, end, status: response.status });
                    if response.status != 200 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }));
        }
        for (reader, op) in [(0, Op::Read), (1, Op::Read), (2, Op::StaleRead)] {
            let (stop, events, keys) = (Arc::clone(&stop), Arc::clone(&events), Arc::clone(&keys));
            threads.push(std::thread::spawn(move || {
                let mut connection = None;
                let mut i = reader;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = &keys[i % keys.len()];
                    let before = key.acknowledged.load(Ordering::SeqCst);
                    let headers: &[(&str, &str)] =
                        if op == Op::StaleRead { &[("Cache-Control", "max-stale=1")] } else { &[] };
                    let start = Instant::now();
                    let response = request(&mut connection, addr, "GET", &format!("/guid/{}", key.guid), headers, None);
                    let end = Instant::now();
                    if response.status == 200 {
                        let seen = counter(&response);
                        if op == Op::Read {
                            // Linearizable: never older than what was acknowledged before the read began.
                            assert!(seen >= before, "stale read of {}: {seen} < {before}", key.guid);
                        }
                    }
                    events.lock().unwrap().push(Event { op, start, end, status: response.status });
                    // Cache hits answer in microseconds: pace the readers (the machine is shared).
                    std::thread::sleep(Duration::from_millis(if response.status == 200 { 1 } else { 5 }));
                }
            }));
        }
        Load { stop, events, keys, threads }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until a write and a linearizable read that began after `since`
    /// have succeeded.
    fn wait_for_success_after(&self, since: Instant, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            let events = self.events();
            let ok = |op| events.iter().any(|e| e.op == op && e.start >= since && (200..300).contains(&e.status));
            if ok(Op::Write) && ok(Op::Read) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn stop(self) -> (Vec<Event>, Arc<Vec<Key>>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        (self.events.lock().unwrap().clone(), self.keys)
    }
}

fn healthz(addr: SocketAddr) -> u16 {
    request(&mut None, addr, "GET", "/healthz", &[], None).status
}

/// Figures of one fault.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// From the fault to the first `503` answer.
    first_503: Duration,
    /// The longest a request that began during the fault took to get its `503`.
    slowest_503: Duration,
    /// The longest any request that began during the fault took to be answered (503, or 200
    /// after the database came back).
    slowest: Duration,
    /// From the database's return to the first acknowledged write and linearizable read.
    recover_write: Duration,
    recover_read: Duration,
    /// Requests answered during the fault: 503s, and max-stale reads served (200).
    unavailable: usize,
    stale_served: usize,
    /// How long into the fault the last max-stale read served began.
    last_stale: Duration,
}

/// What a fault must and must not produce, checked on the answered requests: the fault began at
/// `fault`; from `faulted` to `resuming` the database was down for sure; at `back` it was back
/// for sure (`pg_ctl start -w` returned: it may have answered up to one of pg_ctl's polls earlier).
fn judge(events: &[Event], fault: Instant, faulted: Instant, resuming: Instant, back: Instant) -> Figures {
    for event in events {
        assert!(matches!(event.status, 200 | 201 | 503), "unexpected status {} for {:?}", event.status, event);
        let during = event.start >= faulted && event.end <= resuming;
        if during && event.op != Op::StaleRead {
            assert_eq!(
                event.status,
                503,
                "a {:?} that began {:?} after the database was down and ended {:?} before it was back \
                 (the fault took {:?}): {event:?}",
                event.op,
                event.start - faulted,
                resuming - event.end,
                faulted - fault
            );
        }
    }
    let failed: Vec<&Event> = events.iter().filter(|e| e.status == 503).collect();
    assert!(!failed.is_empty(), "no request failed while the database was down");
    let first_503 = failed.iter().map(|e| e.end).min().unwrap().saturating_duration_since(fault);
    let slowest_503 = failed.iter().filter(|e| e.start >= faulted).map(|e| e.end - e.start).max().unwrap_or_default();
    let recover = |op| {
        events
            .iter()
            .filter(|e| e.op == op && e.end >= back && e.status == 200)
            .map(|e| e.end - back)
            .min()
            .unwrap_or_else(|| panic!("no {op:?} succeeded after the database came back"))
    };
    // `max-stale=1`: the cache is behind by the time since the last freshness round began, and
    // none began after the database was down, so no such read begun later than 1 s after that
    // may be answered from memory.
    let served: Vec<&Event> = events
        .iter()
        .filter(|e| e.op == Op::StaleRead && e.start >= faulted && e.end <= resuming && e.status == 200)
        .collect();
    let stale_served = served.len();
    let last_stale = served.iter().map(|e| e.start - faulted).max().unwrap_or_default();
    assert!(last_stale <= Duration::from_secs(1), "a max-stale=1 read begun {last_stale:?} into the fault was served");
    let slowest =
        events.iter().filter(|e| e.start >= faulted && e.start <= resuming).map(|e| e.end - e.start).max().unwrap();
    Figures {
        first_503,
        slowest_503,
        slowest,
        recover_write: recover(Op::Write),
        recover_read: recover(Op::Read),
        unavailable: failed.len(),
        stale_served,
        last_stale,
    }
}

/// Every write acknowledged is in the database, and nothing that was never sent: the stored
/// counter of each key is between the last acknowledged and the last attempted.
fn check_committed(cluster: &PostgresCluster, db: &str, keys: &[Key]) {
    for key in keys {
        let stored =
            cluster.psql(db, &format!("SELECT metadata FROM guidstore_records WHERE guid = '{}'", key.guid)).unwrap();
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap_or_else(|_| panic!("metadata {stored:?}"));
        let n = stored["n"].as_u64().expect("counter");
        let (acknowledged, attempted) = (key.acknowledged.load(Ordering::SeqCst), key.attempted.load(Ordering::SeqCst));
        assert!(
            acknowledged <= n && n <= attempted,
            "{}: stored {n}, acknowledged {acknowledged}, attempted {attempted}",
            key.guid
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Stop,
    Pause,
}

fn one_trial(cluster: &mut PostgresCluster, db: &str, addr: SocketAddr, fault: Fault) -> Figures {
    let load = Load::start(addr, 4);
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    match fault {
        Fault::Stop => cluster.stop(StopMode::Fast).expect("pg_ctl stop"),
        Fault::Pause => cluster.pause().expect("SIGSTOP PostgreSQL"),
    }
    let faulted = Instant::now();
    // Longer than the server's 2 s bound, so that requests begin and end inside the fault.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(healthz(addr), 503, "/healthz while the database is down");
    std::thread::sleep(Duration::from_millis(1000));
    let resuming = Instant::now();
    match fault {
        Fault::Stop => cluster.start_again().expect("pg_ctl start"),
        Fault::Pause => cluster.resume().expect("SIGCONT PostgreSQL"),
    }
    let back = Instant::now();
    assert!(load.wait_for_success_after(back, Duration::from_secs(30)), "the server did not recover within 30 s");
    std::thread::sleep(Duration::from_millis(300));
    let (events, keys) = load.stop();
    assert_eq!(healthz(addr), 200, "/healthz after recovery");
    check_committed(cluster, db, &keys);
    judge(&events, began, faulted, resuming, back)
}

fn ms(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

fn report(name: &str, trials: &[Figures]) {
    let stat = |pick: fn(&Figures) -> Duration| {
        let mut values: Vec<Duration> = trials.iter().map(pick).collect();
        values.sort();
        (values[values.len() / 2], values[values.len() - 1])
    };
    println!("{name}: {} trials", trials.len());
    for (i, t) in trials.iter().enumerate() {
        println!(
            "  trial {}: first 503 after {}, slowest 503 {}, slowest answer {}, recovered: write {}, read {}; \
             {} requests 503, {} max-stale=1 reads served (the last begun {} into the fault)",
            i + 1,
            ms(t.first_503),
            ms(t.slowest_503),
            ms(t.slowest),
            ms(t.recover_write),
            ms(t.recover_read),
            t.unavailable,
            t.stale_served,
            ms(t.last_stale)
        );
    }
    for (label, pick) in [
        ("first 503", (|t: &Figures| t.first_503) as fn(&Figures) -> Duration),
        ("slowest 503", |t| t.slowest_503),
        ("slowest answer", |t| t.slowest),
        ("recover (write)", |t| t.recover_write),
        ("recover (read)", |t| t.recover_read),
    ] {
        let (median, max) = stat(pick);
        println!("  {label}: median {}, max {}", ms(median), ms(max));
    }
}

/// The server's directory (its log); kept, and named on stdout, with `DB_FAULT_KEEP=1`.
fn log_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("DB_FAULT_KEEP").is_some() {
        println!("server.log in {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    dir
}

fn trials() -> usize {
    std::env::var("DB_FAULT_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

fn fault_test(fault: Fault) {
    let Some(mut cluster) = cluster() else { return };
    cluster.create_database("faults").expect("create database");
    let dir = log_dir();
    let server = start_server(&cluster.url("faults"), dir.path());
    let figures: Vec<Figures> =
        (0..trials()).map(|_| one_trial(&mut cluster, "faults", server.addr(), fault)).collect();
    report(&format!("PostgreSQL {fault:?}"), &figures);
    let log = server.log();
    assert!(!log.contains("panicked"), "a panic in server.log");
}

#[test]
fn postgres_stopped_while_running() {
    fault_test(Fault::Stop);
}

#[test]
fn postgres_paused_while_running() {
    fault_test(Fault::Pause);
}

fn connections_killed(kind: Kind) {
    let Some(db) = TestDb::new(kind) else { return };
    let dir = log_dir();
    let server = start_server(db.url(), dir.path());
    let load = Load::start(server.addr(), 4);
    let mut killed = 0;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        killed += db.kill_connections().expect("kill the server's connections");
    }
    let last_kill = Instant::now();
    assert!(load.wait_for_success_after(last_kill, Duration::from_secs(30)), "no recovery after the kills");
    std::thread::sleep(Duration::from_millis(300));
    let (events, keys) = load.stop();
    for event in &events {
        assert!(matches!(event.status, 200 | 503), "unexpected {event:?}");
    }
    let failed = events.iter().filter(|e| e.status == 503).count();
    // Reads after the kills see every acknowledged write.
    let mut connection = None;
    for key in keys.iter() {
        let response = request(&mut connection, server.addr(), "GET", &format!("/guid/{}", key.guid), &[], None);
        assert_eq!(response.status, 200);
        assert!(counter(&response) >= key.acknowledged.load(Ordering::SeqCst));
    }
    assert_eq!(healthz(server.addr()), 200);
    let failed_of = |op| events.iter().filter(|e| e.op == op && e.status == 503).count();
    println!(
        "{kind:?}: {killed} connections killed in 5 rounds; {} requests, {failed} answered 503 \
         ({} writes, {} reads, {} max-stale reads)",
        events.len(),
        failed_of(Op::Write),
        failed_of(Op::Read),
        failed_of(Op::StaleRead)
    );
    if std::env::var_os("DB_FAULT_LOG").is_some() {
        for line in server.log().lines().filter(|line| line.contains("ERROR") || line.contains("WARN")) {
            println!("  {line}");
        }
    }
}

#[test]
fn postgres_connections_killed() {
    connections_killed(Kind::Postgres);
}

#[test]
fn mariadb_connections_killed() {
    connections_killed(Kind::Mysql);
}

#[test]
fn startup_waits_for_an_unreachable_database() {
    let Some(mut cluster) = cluster() else { return };
    cluster.create_database("startup").expect("create database");
    cluster.stop(StopMode::Fast).expect("pg_ctl stop");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    // A port of its own, known before the server prints it (it does so only once it is ready).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(server_binary_for_tests())
        .args(["--listen", &listen.to_string(), "--db", &cluster.url("startup"), "--db-wait", "60s"])
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start guidstore-server");
    let started = Instant::now();
    // It says so in server.log, and keeps trying.
    let retries = |text: &str| text.matches("cannot reach database").count();
    while retries(&std::fs::read_to_string(&log).unwrap_or_default()) < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the server exited instead of retrying");
        assert!(started.elapsed() < Duration::from_secs(30), "no retry logged in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM while it waits stops it at once, cleanly (exit 0).
    let other_log = dir.path().join("other.log");
    let mut other = Command::new(server_binary_for_tests())
        .args(["--listen", "127.0.0.1:0", "--db", &cluster.url("startup"), "--db-wait", "60s"])
        .arg("--log-file")
        .arg(&other_log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a second guidstore-server");
    while retries(&std::fs::read_to_string(&other_log).unwrap_or_default()) < 1 {
        assert!(other.try_wait().unwrap().is_none(), "the second server exited instead of retrying");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill with a valid pid and signal.
    assert_eq!(unsafe { libc::kill(other.id() as i32, libc::SIGTERM) }, 0);
    let status = other.wait().unwrap();
    assert!(status.success(), "SIGTERM while waiting for the database: {status}");
    assert!(std::fs::read_to_string(&other_log).unwrap().contains("stopped before database"));
    // Meanwhile every request is answered 503, /healthz included.
    let waiting = request(&mut None, listen, "GET", "/healthz", &[], None);
    waiting.assert_error(503, "unavailable");
    assert_eq!(waiting.header("retry-after"), Some("1"));
    let write = request(&mut None, listen, "POST", "/guid", &[], Some(r#"{"n":1}"#));
    write.assert_error(503, "unavailable");
    cluster.start_again().expect("pg_ctl start");
    let back = Instant::now();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let listening = back.elapsed();
    let addr: SocketAddr = line.trim().strip_prefix("listening on http://").expect("listening line").parse().unwrap();
    assert_eq!(addr, listen);
    assert_eq!(healthz(addr), 200);
    // The create refused while waiting changed nothing.
    let records = cluster.psql("startup", "SELECT count(*) FROM guidstore_records").unwrap();
    assert_eq!(records, "0");
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    println!("startup: {} retries logged, listening {} after PostgreSQL came back", retries(&text), ms(listening));
}
