//! Several stores on one shared database (PostgreSQL, MariaDB), as several processes would have
//! them: every read reflects every write acknowledged before it, by any store, although each
//! store answers hot reads from its own cache.

use std::sync::Arc;
use std::time::Duration;

use guidstore::{Error, Guid, ManualClock, NewRecord, Options, Patch, Store};
use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::on_shared_backends;

const NOW: u64 = 1_700_000_000;
const G1: &str = "9094E4C980C74043A4B586B420E69DDF";

/// `count` stores on one fresh database of `kind`, with one clock.
fn stores(kind: Kind, count: usize, options: impl Fn() -> Options) -> Option<(TestDb, ManualClock, Vec<Store>)> {
    let db = TestDb::new(kind)?;
    let clock = ManualClock::new(NOW);
    let stores = (0..count).map(|_| Store::open_url(db.url(), options().clock(clock.clone())).unwrap()).collect();
    Some((db, clock, stores))
}

fn body(text: &str) -> NewRecord {
    NewRecord::parse(text.as_bytes(), None, NOW).unwrap()
}

fn guid() -> Guid {
    Guid::parse(G1).unwrap()
}

fn every_read_sees_the_writes_acknowledged_before_it_on_any_store(kind: Kind) {
    // A poll interval far longer than the test: only the freshness rounds can make it pass.
    let Some((_db, _clock, stores)) = stores(kind, 2, || Options::default().tail_interval(Duration::from_secs(3600)))
    else {
        return;
    };
    let (a, b) = (&stores[0], &stores[1]);
    assert!(a.is_shared());
    let created = a.create(body(&format!(r#"{{"guid":"{G1}","n":0}}"#))).unwrap();
    assert_eq!(b.get(&guid()).unwrap().to_json(), created.to_json());
    // b now caches the record; each change on a must still be seen by b's next read.
    for n in 1..=50 {
        let patch = Patch::parse(format!(r#"{{"n":{n}}}"#).as_bytes(), &guid(), NOW).unwrap();
        let written = a.update(&guid(), patch, None).unwrap();
        let read = b.get(&guid()).unwrap();
        assert_eq!((read.metadata()["n"].as_i64(), read.etag()), (Some(n), written.etag()));
    }
    assert!(b.get_cached(&guid()).is_some(), "hot reads are not answered from memory");
    a.delete(&guid(), None).unwrap();
    assert!(matches!(b.get(&guid()), Err(Error::NotFound(_))));
    let again = b.create(body(&format!(r#"{{"guid":"{G1}","n":"new"}}"#))).unwrap();
    assert_eq!(a.get(&guid()).unwrap().to_json(), again.to_json());
    let counters = b.counters();
    assert!(counters.sync_rounds > 0 && counters.cache_hits > 0, "{counters:?}");
}

fn creates_of_one_guid_racing_on_several_stores_have_one_winner(kind: Kind) {
    let Some((_db, _clock, stores)) = stores(kind, 3, Options::default) else { return };
    let stores: Vec<Arc<Store>> = stores.into_iter().map(Arc::new).collect();
    for round in 0..5 {
        let text = format!("{round:032X}");
        let barrier = Arc::new(std::sync::Barrier::new(24));
        let threads: Vec<_> = (0..24)
            .map(|i| {
                let (store, barrier, text) = (Arc::clone(&stores[i % 3]), Arc::clone(&barrier), text.clone());
                std::thread::spawn(move || {
                    let request = body(&format!(r#"{{"guid":"{text}","writer":{i}}}"#));
                    barrier.wait();
                    store.create(request)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::AlreadyExists(_))));
        for store in &stores {
            assert_eq!(store.get(&Guid::parse(&text).unwrap()).unwrap().to_json(), winners[0].to_json());
        }
    }
}

fn revisions_are_dense_and_in_commit_order_across_stores(kind: Kind) {
    let Some((_db, _clock, stores)) = stores(kind, 3, Options::default) else { return };
    let stores: Vec<Arc<Store>> = stores.into_iter().map(Arc::new).collect();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let store = Arc::clone(&stores[i % 3]);
            std::thread::spawn(move || {
                for n in 0..40 {
                    store.create(body(&format!(r#"{{"writer":{i},"n":{n}}}"#))).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let changes = stores[0].changes_after(0, 10_000).unwrap();
    assert_eq!(changes.len(), 240);
    assert!(changes.iter().zip(1..).all(|(change, expected)| change.revision() == expected));
    for store in &stores {
        store.sync().unwrap();
        assert_eq!(store.counters().applied_revision, 240);
    }
}

fn a_store_that_falls_behind_a_trimmed_log_starts_its_cache_over(kind: Kind) {
    let Some((db, _clock, stores)) = stores(kind, 2, || Options::default().tail_interval(Duration::from_secs(3600)))
    else {
        return;
    };
    let (a, b) = (&stores[0], &stores[1]);
    let created = a.create(body(&format!(r#"{{"guid":"{G1}","n":1}}"#))).unwrap();
    assert_eq!(b.get(&guid()).unwrap().to_json(), created.to_json());
    let patch = Patch::parse(br#"{"n":2}"#, &guid(), NOW).unwrap();
    let updated = a.update(&guid(), patch, None).unwrap();
    a.create(body("{}")).unwrap();
    // The log loses the update before b has read it.
    db.execute("DELETE FROM guidstore_changes WHERE revision <= 2").unwrap();
    assert_eq!(b.get(&guid()).unwrap().to_json(), updated.to_json());
}

fn a_consumer_of_one_store_sees_the_changes_made_through_another_in_order(kind: Kind) {
    // Without notifications (MariaDB), the poll interval is how soon a store learns of another's
    // commit.
    let Some((_db, _clock, stores)) = stores(kind, 2, || Options::default().tail_interval(Duration::from_millis(20)))
    else {
        return;
    };
    let stores: Vec<Arc<Store>> = stores.into_iter().map(Arc::new).collect();
    let consumer = {
        let store = Arc::clone(&stores[1]);
        std::thread::spawn(move || {
            let (mut after, mut seen) = (0, Vec::new());
            while seen.len() < 100 {
                store.wait_for_changes_after(after).wait().unwrap();
                for change in store.events_after(after, 7).unwrap() {
                    assert_eq!(change.revision(), after + 1);
                    after = change.revision();
                    seen.push(change.record().unwrap().metadata()["n"].as_i64().unwrap());
                }
            }
            seen
        })
    };
    for n in 0..100 {
        stores[0].create(body(&format!(r#"{{"n":{n}}}"#))).unwrap();
    }
    assert_eq!(consumer.join().unwrap(), (0..100).collect::<Vec<i64>>());
}

on_shared_backends!(
    a_consumer_of_one_store_sees_the_changes_made_through_another_in_order,
    every_read_sees_the_writes_acknowledged_before_it_on_any_store,
    creates_of_one_guid_racing_on_several_stores_have_one_winner,
    revisions_are_dense_and_in_commit_order_across_stores,
    a_store_that_falls_behind_a_trimmed_log_starts_its_cache_over,
);

/// PostgreSQL only: a commit notifies every store (LISTEN/NOTIFY), so a waiting consumer on another
/// store wakes without waiting for the poll interval (an hour here).
#[test]
fn postgres_commits_wake_the_other_stores_at_once() {
    let Some((_db, _clock, stores)) =
        stores(Kind::Postgres, 2, || Options::default().tail_interval(Duration::from_secs(3600)))
    else {
        return;
    };
    let (a, b) = (&stores[0], &stores[1]);
    b.sync().unwrap();
    // Let b's LISTEN connection come up (it is made in the background at open).
    std::thread::sleep(Duration::from_millis(300));
    let waiting = b.wait_for_changes_after(0);
    let (woken, wake) = std::sync::mpsc::channel();
    std::thread::spawn(move || woken.send(waiting.wait()));
    a.create(body("{}")).unwrap();
    let result = wake.recv_timeout(Duration::from_secs(30)).expect("not woken within 30 s: only polling would wake it");
    result.unwrap();
    assert_eq!(b.feed_revision(), 1);
}
