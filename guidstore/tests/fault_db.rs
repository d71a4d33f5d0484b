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

/// Polls `future` to its end on this thread with a waker of its own: no async runtime at all, as
/// a program without one (or on another executor) would.
fn poll_to_end<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// `Store::get_async` gives the answers `Store::get` gives — a record, `not_found`, and
/// `unavailable` within the timeout while the database is down — polled by no runtime at all,
/// and from the cache, Redis-less storage and a fresh round alike.
#[test]
fn an_async_get_answers_as_get_does_even_with_the_database_stopped() {
    let Some(mut cluster) = cluster() else { return };
    cluster.create_database("async_get").unwrap();
    let url = cluster.url("async_get");
    // No local cache: every read goes to the database after its freshness round.
    let uncached = Store::open_url(&url, options().cache_capacity(0)).unwrap();
    let cached = Store::open_url(&url, options()).unwrap();
    let created =
        cached.create(NewRecord::parse(format!(r#"{{"guid":"{G1}","n":0}}"#).as_bytes(), None, NOW).unwrap()).unwrap();
    let absent = Guid::parse("00000000000000000000000000000001").unwrap();
    for store in [&uncached, &cached] {
        assert!(store.reads_without_blocking());
        let reads_before = store.counters().storage_reads;
        let read = poll_to_end(store.get_async(&guid())).unwrap();
        assert_eq!(read.to_json(), created.to_json());
        assert_eq!(read.to_json(), store.get(&guid()).unwrap().to_json());
        let missing = poll_to_end(store.get_async(&absent)).unwrap_err();
        assert_eq!((missing.code(), store.get(&absent).unwrap_err().code()), (Code::NotFound, Code::NotFound));
        let reads = store.counters().storage_reads - reads_before;
        // The cached store read the record from its cache (the create filled it); both read the
        // absent GUID from the database, once per call.
        assert_eq!(reads, if std::ptr::eq(store, &uncached) { 4 } else { 2 }, "storage reads");
    }
    // Another store's update is seen by the next async read of the cached one (its round).
    uncached.update(&guid(), patch(7), None).unwrap();
    assert_eq!(poll_to_end(cached.get_async(&guid())).unwrap().metadata()["n"].as_i64(), Some(7));

    cluster.stop(guidstore_testkit::postgres::StopMode::Fast).unwrap();
    for store in [&uncached, &cached] {
        let started = std::time::Instant::now();
        let read = poll_to_end(store.get_async(&guid())).unwrap_err();
        assert_eq!(read.code(), Code::Unavailable, "{read}");
        let blocking = store.get(&guid()).unwrap_err();
        assert_eq!(blocking.code(), Code::Unavailable, "{blocking}");
        // One timeout (500 ms) per call at most, with some slack for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // A read that skips the round fails at the database just the same.
        assert!(poll_to_end(store.get_current_async(&absent)).is_err());
    }
    cluster.start_again().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match poll_to_end(cached.get_async(&guid())) {
            Ok(read) => {
                assert_eq!(read.metadata()["n"].as_i64(), Some(7));
                break;
            }
            Err(error) if std::time::Instant::now() < deadline => {
                assert_eq!(error.code(), Code::Unavailable, "{error}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("no recovery: {error}"),
        }
    }
}
