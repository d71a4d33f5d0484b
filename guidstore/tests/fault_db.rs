//! Database faults at the library level (the server-level tests, with their figures, are in
//! `reliability/tests/db_faults.rs`):
//!
//! - a write and a read that time out against a paused PostgreSQL fail as `unavailable`, and leave
//!   no connection behind in the pool: once the database answers again, every call works, on this
//!   store and on another one (no transaction left open holding the revision lock);
//! - connections the database kills while they sit in the pool (`pg_terminate_backend`, MariaDB
//!   `KILL`) cost no call anything: the next read and write succeed at their first attempt.

use std::time::Duration;

use guidstore::{Code, Guid, ManualClock, NewRecord, Options, Patch, Store};
use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::on_shared_backends;
use guidstore_testkit::postgres::PostgresCluster;

const NOW: u64 = 1_700_000_000;
const G1: &str = "9094E4C980C74043A4B586B420E69DDF";

fn guid() -> Guid {
    Guid::parse(G1).unwrap()
}

fn patch(n: u64) -> Patch {
    Patch::parse(format!(r#"{{"n":{n}}}"#).as_bytes(), &guid(), NOW).unwrap()
}

fn options() -> Options {
    Options::default().clock(ManualClock::new(NOW)).pool_size(2).timeout(Duration::from_millis(500))
}

fn counter(store: &Store) -> i64 {
    store.get(&guid()).unwrap().metadata()["n"].as_i64().unwrap()
}

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

#[test]
fn calls_that_time_out_leave_no_connection_behind() {
    let Some(mut cluster) = cluster() else { return };
    cluster.create_database("hygiene").unwrap();
    let url = cluster.url("hygiene");
    let store = Store::open_url(&url, options()).unwrap();
    store.create(NewRecord::parse(format!(r#"{{"guid":"{G1}","n":0}}"#).as_bytes(), None, NOW).unwrap()).unwrap();
    assert_eq!(counter(&store), 0);

    cluster.pause().unwrap();
    // Several writes and reads, so that every connection of the pool times out mid-call.
    for n in 1..=3 {
        let write = store.update(&guid(), patch(n), None).unwrap_err();
        assert_eq!(write.code(), Code::Unavailable, "{write}");
        let read = store.get(&guid()).unwrap_err();
        assert_eq!(read.code(), Code::Unavailable, "{read}");
        let check = store.check().unwrap_err();
        assert_eq!(check.code(), Code::Unavailable, "{check}");
    }
    cluster.resume().unwrap();

    // Nothing that timed out was committed (the transactions were rolled back when their
    // connections closed), and every call works again, on this store and on another.
    // The other store writes first: a transaction left open by a timed-out call of the first
    // one would hold the revision lock, and its writes would time out.
    let other = Store::open_url(&url, options()).unwrap();
    assert_eq!(counter(&other), 0);
    for n in 10..20 {
        let writer = if n < 15 { &other } else { &store };
        assert_eq!(writer.update(&guid(), patch(n), None).unwrap().metadata()["n"].as_i64(), Some(n as i64));
        assert_eq!(counter(&store), n as i64);
        assert_eq!(counter(&other), n as i64);
        store.check().unwrap();
    }
}

fn killed_pooled_connections_cost_no_call(kind: Kind) {
    let Some(db) = TestDb::new(kind) else { return };
    let store = Store::open_url(db.url(), options().timeout(Duration::from_secs(5))).unwrap();
    store.create(NewRecord::parse(format!(r#"{{"guid":"{G1}","n":0}}"#).as_bytes(), None, NOW).unwrap()).unwrap();
    for n in 1..=5 {
        // Warm the pool: a read and a write leave idle connections in it.
        assert_eq!(counter(&store), n - 1);
        let killed = db.kill_connections().unwrap();
        assert!(killed > 0, "no connection to kill");
        store.update(&guid(), patch(n as u64), None).unwrap();
        assert_eq!(counter(&store), n);
        store.check().unwrap();
    }
}

on_shared_backends!(killed_pooled_connections_cost_no_call);
