//! Storage faults under a real `guidstore-server` process: the disk fills (a small tmpfs, and
//! `RLIMIT_FSIZE`), and the database file and directory become read-only (`chattr +i`, which stops
//! root too). In each case writes must answer `503 unavailable` and log the cause, reads must keep
//! working, writes must work again once the fault clears, and `PRAGMA integrity_check` must say ok.
//!
//! The tmpfs and `chattr` cases need root (CI runs as root); elsewhere they say so and pass.
//! The server runs with `--cache-capacity 0` so reads really go to SQLite.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use guidstore_reliability::server::{Server, ServerConfig, server_binary_for_tests};
use guidstore_testkit::fault::{Frozen, Tmpfs, is_root};
use guidstore_testkit::http::{Response, request_once};

fn create(addr: SocketAddr, padding: usize) -> Response {
    let body = format!(r#"{{"user":"fault-test","pad":"{}"}}"#, "p".repeat(padding));
    request_once(addr, "POST", "/guid", &[], Some(body.as_bytes())).expect("create answered")
}

/// Creates records until one is refused; returns the created locations and the refusal.
fn fill_until_refused(addr: SocketAddr, padding: usize, max: usize) -> (Vec<String>, Response) {
    let mut created = Vec::new();
    for _ in 0..max {
        let response = create(addr, padding);
        if response.status == 201 {
            created.push(response.header("location").expect("Location").to_owned());
        } else {
            return (created, response);
        }
    }
    panic!("{max} creates of {padding} bytes all succeeded: the fault never bit");
}

fn assert_unavailable(response: &Response, server: &Server) {
    assert_eq!(response.status, 503, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(response.error_code().as_deref(), Some("unavailable"));
    let body = String::from_utf8_lossy(&response.body).to_lowercase();
    for leak in ["sqlite", "/tmp", ".db", "panicked"] {
        assert!(!body.contains(leak), "503 body leaks internals: {body}");
    }
    // The log file is flushed about once a second.
    let mut log = String::new();
    for _ in 0..40 {
        log = server.log();
        if let Some(line) = log.lines().find(|line| line.contains("ERROR") || line.contains("WARN")) {
            eprintln!("server.log: {line}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no error line in server.log for the storage fault:\n{log}");
}

fn assert_reads_work(addr: SocketAddr, locations: &[String]) {
    for location in locations.iter().rev().take(5).chain(locations.first()) {
        let read = request_once(addr, "GET", location, &[], None).expect("read answered");
        assert_eq!(read.status, 200, "GET {location} during the fault");
        let head = request_once(addr, "HEAD", location, &[], None).expect("head answered");
        assert_eq!(head.status, 200);
    }
}

/// After the fault: writes work again, the server stops cleanly, the file is intact and every
/// acknowledged record is still there after a restart.
fn assert_recovered(mut server: Server, locations: &mut Vec<String>) {
    let addr = server.addr();
    let again = create(addr, 100);
    assert_eq!(again.status, 201, "create after the fault cleared: {}", String::from_utf8_lossy(&again.body));
    locations.push(again.header("location").unwrap().to_owned());
    let patch = request_once(addr, "PATCH", &locations[0], &[], Some(br#"{"healed":true}"#)).unwrap();
    assert_eq!(patch.status, 200);
    let status = server.terminate(Duration::from_secs(20)).expect("SIGTERM");
    assert!(status.success(), "exit after SIGTERM: {status}");
    let db = server.config().db.clone();
    let connection = rusqlite::Connection::open(&db).expect("open the database");
    let check: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(connection);
    let config = server.config().clone();
    let restarted = Server::start(&config).expect("restart");
    for location in locations.iter() {
        let read = request_once(restarted.addr(), "GET", location, &[], None).unwrap();
        assert_eq!(read.status, 200, "acknowledged {location} lost after the fault");
    }
}

fn config(dir: &Path, db_dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::in_dir(server_binary_for_tests(), dir).args(["--cache-capacity", "0"]);
    config.db = db_dir.join("guidstore.db");
    config
}

#[test]
fn disk_full_on_a_small_tmpfs_answers_503_then_recovers() {
    if !is_root() {
        eprintln!("disk_full_on_a_small_tmpfs: not root, cannot mount a tmpfs: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap();
    let tmpfs = Tmpfs::mount(&mount_point, "1m").expect("mount -t tmpfs");
    let server = Server::start(&config(dir.path(), &mount_point)).expect("start");
    let addr = server.addr();
    let (mut locations, refused) = fill_until_refused(addr, 20_000, 500);
    assert!(!locations.is_empty(), "not even one record fit");
    assert_unavailable(&refused, &server);
    assert_reads_work(addr, &locations);
    let health = request_once(addr, "GET", "/healthz", &[], None).unwrap();
    assert!(health.status == 200 || health.status == 503, "healthz during disk full: {}", health.status);
    tmpfs.resize("64m").expect("grow the tmpfs");
    assert_recovered(server, &mut locations);
}

#[test]
fn file_size_limit_answers_503_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), dir.path());
    config.file_size_limit = Some(1 << 20);
    let server = Server::start(&config).expect("start");
    let addr = server.addr();
    let (mut locations, refused) = fill_until_refused(addr, 20_000, 500);
    assert!(!locations.is_empty(), "not even one record fit");
    assert_unavailable(&refused, &server);
    assert_reads_work(addr, &locations);
    server.set_file_size_limit(None).expect("prlimit");
    assert_recovered(server, &mut locations);
}

#[test]
fn read_only_database_file_and_directory_answer_503_then_recover() {
    if !is_root() {
        eprintln!("read_only_database: not root, chattr +i needs CAP_LINUX_IMMUTABLE: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    std::fs::create_dir(&db_dir).unwrap();
    let server = Server::start(&config(dir.path(), &db_dir)).expect("start");
    let addr = server.addr();
    let mut locations: Vec<String> = (0..20)
        .map(|_| {
            let response = create(addr, 1000);
            assert_eq!(response.status, 201);
            response.header("location").unwrap().to_owned()
        })
        .collect();
    let frozen = Frozen::freeze_dir(&db_dir).expect("chattr +i");
    let refused = create(addr, 1000);
    assert_unavailable(&refused, &server);
    let patch = request_once(addr, "PATCH", &locations[0], &[], Some(br#"{"x":1}"#)).unwrap();
    assert_eq!(patch.status, 503, "PATCH on a read-only database");
    let delete = request_once(addr, "DELETE", &locations[1], &[], None).unwrap();
    assert_eq!(delete.status, 503, "DELETE on a read-only database");
    assert_reads_work(addr, &locations);
    drop(frozen);
    assert_recovered(server, &mut locations);
}
