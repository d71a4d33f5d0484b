//! Store behaviour end to end, the same suite on every backend (`sqlite::…`, `postgres::…`,
//! `mysql::…`, each on a fresh database): the API's semantics, expiry with an injected clock,
//! revisions and the change log, persistence across reopen, concurrency. Then what only SQLite
//! files have: file ownership and bad files.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use guidstore::{Clock, Error, Guid, IfMatch, ManualClock, NewRecord, Options, Patch, Store};
use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::on_every_backend;
use serde_json::json;

const NOW: u64 = 1_700_000_000;

struct TestStore {
    store: Store,
    clock: ManualClock,
    db: TestDb,
}

impl TestStore {
    /// A store on a fresh database of `kind`; `None` when its server is unreachable (skipped).
    fn on(kind: Kind) -> Option<TestStore> {
        TestStore::with_options(kind, Options::default())
    }

    fn with_options(kind: Kind, options: Options) -> Option<TestStore> {
        let db = TestDb::new(kind)?;
        let clock = ManualClock::new(NOW);
        let store = Store::open_url(db.url(), options.clock(clock.clone())).unwrap();
        Some(TestStore { store, clock, db })
    }

    /// Closes the store and opens the database again.
    fn reopen(self) -> TestStore {
        let TestStore { store, clock, db } = self;
        store.close().unwrap();
        let store = Store::open_url(db.url(), Options::default().clock(clock.clone())).unwrap();
        TestStore { store, clock, db }
    }

    fn create(&self, body: &str) -> guidstore::Result<Arc<guidstore::Record>> {
        self.store.create(NewRecord::parse(body.as_bytes(), None, self.clock.now())?)
    }

    fn patch(&self, guid: &Guid, body: &str, if_match: Option<&str>) -> guidstore::Result<Arc<guidstore::Record>> {
        let patch = Patch::parse(body.as_bytes(), guid, self.clock.now())?;
        self.store.update(guid, patch, if_match.map(IfMatch::parse))
    }
}

fn guid(text: &str) -> Guid {
    Guid::parse(text).unwrap()
}

const G1: &str = "9094E4C980C74043A4B586B420E69DDF";

fn create_then_get_returns_the_same_record(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let created = t.create(&format!(r#"{{"guid":"{G1}","expire":"1800000000","user":"Jay Patel"}}"#)).unwrap();
    assert_eq!(created.to_json(), format!(r#"{{"guid":"{G1}","expire":"1800000000","user":"Jay Patel"}}"#));
    let read = t.store.get(&guid(G1)).unwrap();
    assert_eq!(read.to_json(), created.to_json());
    assert_eq!(read.etag(), created.etag());
}

fn create_without_guid_or_expire_draws_a_guid_and_uses_the_default_ttl(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let record = t.create("").unwrap();
    assert_eq!(record.expire().as_secs(), NOW + guidstore::DEFAULT_TTL_SECS);
    assert_eq!(t.store.get(record.guid()).unwrap().guid(), record.guid());
}

fn create_over_a_live_guid_is_already_exists_and_changes_nothing(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let first = t.create(&format!(r#"{{"guid":"{G1}","user":"a"}}"#)).unwrap();
    let err = t.create(&format!(r#"{{"guid":"{G1}","user":"b"}}"#)).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
    let now = t.store.get(&guid(G1)).unwrap();
    assert_eq!(now.to_json(), first.to_json());
    assert_eq!(now.etag(), first.etag());
}

fn an_expired_record_is_absent_for_every_operation(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let g = guid(G1);
    t.create(&format!(r#"{{"guid":"{G1}","expire":{}}}"#, NOW + 10)).unwrap();
    t.store.get(&g).unwrap();
    t.clock.advance(10);
    assert!(matches!(t.store.get(&g), Err(Error::NotFound(_))));
    assert!(matches!(t.patch(&g, "{}", None), Err(Error::NotFound(_))));
    assert!(matches!(t.patch(&g, "{}", Some("*")), Err(Error::NotFound(_))));
    assert!(matches!(t.store.delete(&g, None), Err(Error::NotFound(_))));
    // A create of the same GUID succeeds as if it were new, with a new entity-tag.
    let again = t.create(&format!(r#"{{"guid":"{G1}","user":"new"}}"#)).unwrap();
    assert_eq!(t.store.get(&g).unwrap().to_json(), again.to_json());
}

fn a_create_whose_expire_passed_before_commit_is_rejected(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let request = NewRecord::parse(format!(r#"{{"expire":{}}}"#, NOW + 5).as_bytes(), None, NOW).unwrap();
    t.clock.advance(5);
    assert!(matches!(t.store.create(request), Err(Error::InvalidExpire(_))));
}

fn patch_merges_metadata_and_changes_the_etag(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let g = guid(G1);
    let created = t.create(&format!(r#"{{"guid":"{G1}","user":"a","team":{{"name":"ops","size":3}}}}"#)).unwrap();
    let updated = t.patch(&g, r#"{"team":{"size":null},"tags":["x"],"expire":"1900000000"}"#, None).unwrap();
    assert_eq!(
        updated.to_json(),
        format!(r#"{{"guid":"{G1}","expire":"1900000000","user":"a","team":{{"name":"ops"}},"tags":["x"]}}"#)
    );
    assert_ne!(updated.etag(), created.etag());
    assert_eq!(t.store.get(&g).unwrap().to_json(), updated.to_json());
}

fn an_empty_patch_changes_nothing_and_keeps_the_etag(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let g = guid(G1);
    let created = t.create(&format!(r#"{{"guid":"{G1}","user":"a"}}"#)).unwrap();
    assert_eq!(t.patch(&g, "{}", None).unwrap().etag(), created.etag());
    assert_eq!(t.patch(&g, r#"{"user":"a"}"#, None).unwrap().etag(), created.etag());
    assert_eq!(t.store.get(&g).unwrap().etag(), created.etag());
}

fn if_match_guards_update_and_delete(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let g = guid(G1);
    let created = t.create(&format!(r#"{{"guid":"{G1}","user":"a"}}"#)).unwrap();
    let err = t.patch(&g, r#"{"user":"b"}"#, Some("\"0000000000000000\"")).unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)));
    assert_eq!(t.store.get(&g).unwrap().to_json(), created.to_json());
    let updated = t.patch(&g, r#"{"user":"b"}"#, Some(&created.etag())).unwrap();
    assert!(matches!(t.store.delete(&g, Some(IfMatch::parse(&created.etag()))), Err(Error::PreconditionFailed(_))));
    t.store.get(&g).unwrap();
    t.store.delete(&g, Some(IfMatch::parse(&format!("\"x\", {}", updated.etag())))).unwrap();
    assert!(matches!(t.store.get(&g), Err(Error::NotFound(_))));
    assert!(matches!(t.store.delete(&g, Some(IfMatch::Any)), Err(Error::NotFound(_))));
}

fn a_patch_that_breaks_the_user_rule_changes_nothing(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let g = guid(G1);
    let created = t.create(&format!(r#"{{"guid":"{G1}","user":"a"}}"#)).unwrap();
    assert!(matches!(t.patch(&g, r#"{"user":{"x":1}}"#, None), Err(Error::InvalidMetadata(_))));
    assert_eq!(t.store.get(&g).unwrap().to_json(), created.to_json());
}

fn purge_removes_expired_records_in_bounded_batches(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    for _ in 0..25 {
        t.create(&format!(r#"{{"expire":{}}}"#, NOW + 1)).unwrap();
    }
    let keep = t.create(&format!(r#"{{"expire":{}}}"#, NOW + 100)).unwrap();
    assert_eq!(t.store.purge_expired(10).unwrap(), 0);
    t.clock.advance(1);
    assert_eq!(t.store.purge_expired(10).unwrap(), 10);
    assert_eq!(t.store.purge_expired(10).unwrap(), 10);
    assert_eq!(t.store.purge_expired(10).unwrap(), 5);
    assert_eq!(t.store.purge_expired(10).unwrap(), 0);
    let stats = t.store.stats().unwrap();
    assert_eq!((stats.records, stats.purged), (1, 25));
    t.store.get(keep.guid()).unwrap();
}

fn records_survive_reopening_the_database(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let created = t.create(r#"{"user":"persist","nested":{"a":[1,2,{"b":null}]}}"#).unwrap();
    let t = t.reopen();
    let read = t.store.get(created.guid()).unwrap();
    assert_eq!(read.to_json(), created.to_json());
    assert_eq!(read.etag(), created.etag());
}

fn writes_from_32_threads_are_all_present_after_reopen_and_share_commits(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let TestStore { store, clock, db } = t;
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(32));
    let handles: Vec<_> = (0..32)
        .map(|thread| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..50)
                    .map(|i| {
                        let body = format!(r#"{{"thread":{thread},"i":{i}}}"#);
                        *store.create(NewRecord::parse(body.as_bytes(), None, NOW).unwrap()).unwrap().guid()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let guids: Vec<Guid> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(guids.iter().collect::<HashSet<_>>().len(), 32 * 50);
    let counters = store.counters();
    assert_eq!(counters.writes, 32 * 50);
    assert!(counters.commits < counters.writes, "group commit shared no transaction: {counters:?}");
    let store = Arc::into_inner(store).unwrap();
    store.close().unwrap();
    let reopened = Store::open_url(db.url(), Options::default().clock(clock)).unwrap();
    for guid in &guids {
        reopened.get(guid).unwrap();
    }
    assert_eq!(reopened.stats().unwrap().records, 32 * 50);
}

fn concurrent_creates_of_one_guid_have_exactly_one_winner(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let store = Arc::new(t);
    for round in 0..20 {
        let text = format!("{round:032X}");
        let barrier = Arc::new(Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (store, barrier, text) = (Arc::clone(&store), Arc::clone(&barrier), text.clone());
                std::thread::spawn(move || {
                    let body = format!(r#"{{"guid":"{text}","writer":{i}}}"#);
                    let request = NewRecord::parse(body.as_bytes(), None, NOW).unwrap();
                    barrier.wait();
                    store.store.create(request)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::AlreadyExists(_))));
        assert_eq!(store.store.get(&guid(&text)).unwrap().to_json(), winners[0].to_json());
    }
}

fn export_writes_each_live_record_as_get_renders_it_in_guid_order(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let mut expected = Vec::new();
    for n in 0..25 {
        expected.push(t.create(&format!(r#"{{"n":{n},"text":"é \" {n}"}}"#)).unwrap());
    }
    t.create(&format!(r#"{{"expire":{}}}"#, NOW + 5)).unwrap();
    t.clock.advance(5);
    expected.sort_by(|a, b| a.guid().cmp(b.guid()));
    let mut out = Vec::new();
    assert_eq!(t.store.export(&mut out).unwrap(), 25);
    let lines: Vec<String> = expected.iter().map(|r| format!("{}\n", r.to_json())).collect();
    assert_eq!(String::from_utf8(out).unwrap(), lines.concat());
}

fn import_creates_records_skips_expired_ones_and_is_idempotent(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let input = format!(
        "{}\n\n{}\n{}\n",
        format_args!(r#"{{"guid":"{G1}","expire":"{}","user":"Jay"}}"#, NOW + 100),
        format_args!(r#"{{"guid":"00000000000000000000000000000002","expire":{},"n":[1,2]}}"#, NOW + 100),
        format_args!(r#"{{"guid":"00000000000000000000000000000003","expire":"{}"}}"#, NOW),
    );
    let mut seen = Vec::new();
    let stats = t.store.import(input.as_bytes(), guidstore::OnConflict::Fail, |s| seen.push(*s)).unwrap();
    assert_eq!((stats.lines, stats.created, stats.expired, stats.unchanged), (4, 2, 1, 0));
    assert_eq!(seen.last(), Some(&stats));
    assert_eq!(
        t.store.get(&guid(G1)).unwrap().to_json(),
        format!(r#"{{"guid":"{G1}","expire":"{}","user":"Jay"}}"#, NOW + 100)
    );
    let again = t.store.import(input.as_bytes(), guidstore::OnConflict::Fail, |_| {}).unwrap();
    assert_eq!((again.created, again.unchanged, again.expired), (0, 2, 1));
    let creates = log(&t.store).iter().filter(|(_, op, _, _)| op == "create").count();
    assert_eq!(creates, 2);
}

/// A whole batch (10,000 records on a network database, so 10,000 changes in one transaction;
/// 50,000 on SQLite) fits every backend's statement limits (MySQL: 65,535 placeholders per
/// prepared statement).
fn a_full_import_batch_is_one_transaction_on_every_backend(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let batch = t.store.import_batch_size();
    assert_eq!(batch, if kind == Kind::Sqlite { guidstore::SQLITE_IMPORT_BATCH } else { guidstore::IMPORT_BATCH });
    let commits = t.store.counters().commits;
    let input: String =
        (0..batch).map(|n| format!("{{\"guid\":\"{n:032X}\",\"expire\":\"{}\",\"n\":{n}}}\n", NOW + 100)).collect();
    let stats = t.store.import(input.as_bytes(), guidstore::OnConflict::Fail, |_| {}).unwrap();
    assert_eq!(stats.created, batch as u64);
    assert_eq!(t.store.counters().commits - commits, 1, "one transaction");
    let last = guid(&format!("{:032X}", batch - 1));
    assert_eq!(t.store.get(&last).unwrap().metadata()["n"], batch - 1);
}

fn import_conflicts_follow_the_rule_and_a_bad_line_writes_nothing_of_its_batch(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let stored = t.create(&format!(r#"{{"guid":"{G1}","user":"old"}}"#)).unwrap();
    let line = |user: &str| format!(r#"{{"guid":"{G1}","expire":"{}","user":"{user}"}}"#, NOW + 100);
    let other = format!(r#"{{"guid":"00000000000000000000000000000002","expire":"{}"}}"#, NOW + 100);
    let input = format!("{other}\n{}\n", line("new"));
    let error = t.store.import(input.as_bytes(), guidstore::OnConflict::Fail, |_| {}).unwrap_err();
    assert!(matches!(error, guidstore::ImportError::Conflict { line: 2, .. }), "{error}");
    assert!(t.store.get(&guid("00000000000000000000000000000002")).is_err(), "the batch was written");
    let skipped = t.store.import(input.as_bytes(), guidstore::OnConflict::Skip, |_| {}).unwrap();
    assert_eq!((skipped.created, skipped.skipped), (1, 1));
    assert_eq!(t.store.get(&guid(G1)).unwrap().to_json(), stored.to_json());
    let replaced = t.store.import(input.as_bytes(), guidstore::OnConflict::Replace, |_| {}).unwrap();
    assert_eq!((replaced.replaced, replaced.unchanged), (1, 1));
    assert_eq!(t.store.get(&guid(G1)).unwrap().metadata()["user"], "new");
    let bad = format!(r#"{{"guid":"00000000000000000000000000000004","expire":"{}"}}"#, NOW + 100) + "\n{\"guid\":1}\n";
    let error = t.store.import(bad.as_bytes(), guidstore::OnConflict::Fail, |_| {}).unwrap_err();
    assert_eq!(error.to_string().split(':').next(), Some("line 2"), "{error}");
    assert!(t.store.get(&guid("00000000000000000000000000000004")).is_err(), "the bad line's batch was written");
}

fn the_feed_wakes_consumers_and_serves_changes_in_order_until_trimmed(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let t = Arc::new(t);
    let waiting = t.store.wait_for_changes_after(0);
    let writer = {
        let t = Arc::clone(&t);
        std::thread::spawn(move || t.create(&format!(r#"{{"guid":"{G1}","expire":{}}}"#, NOW + 10)).unwrap())
    };
    waiting.wait().unwrap();
    let created = writer.join().unwrap();
    t.patch(&guid(G1), r#"{"a":1}"#, None).unwrap();
    t.clock.advance(10);
    t.store.purge_all_expired(10).unwrap();
    // On a shared database the feed learns of changes from the log: a sync brings it up to date.
    t.store.sync().unwrap();
    let events: Vec<String> = t.store.events_after(0, 100).unwrap().iter().map(|c| c.to_json()).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[0],
        format!(r#"{{"rev":1,"op":"create","guid":"{G1}","at":"{NOW}","record":{}}}"#, created.to_json())
    );
    assert!(events[1].starts_with(r#"{"rev":2,"op":"update""#), "{}", events[1]);
    assert_eq!(events[2], format!(r#"{{"rev":3,"op":"expire","guid":"{G1}","at":"{}"}}"#, NOW + 10));
    assert_eq!(t.store.events_after(1, 1).unwrap()[0].revision(), 2);
    assert!(t.store.events_after(3, 10).unwrap().is_empty());
    // Trimming keeps the newest change; a consumer behind the oldest kept is told so.
    assert_eq!(t.store.trim_changes(None, Some(1)).unwrap(), 2);
    assert_eq!(t.store.oldest_revision().unwrap(), Some(3));
    assert_eq!(t.store.changes_after(0, 10).unwrap().len(), 1);
    t.clock.advance(3600);
    assert_eq!(t.store.trim_changes(Some(std::time::Duration::from_secs(60)), None).unwrap(), 0);
}

on_every_backend!(
    the_feed_wakes_consumers_and_serves_changes_in_order_until_trimmed,
    export_writes_each_live_record_as_get_renders_it_in_guid_order,
    import_creates_records_skips_expired_ones_and_is_idempotent,
    a_full_import_batch_is_one_transaction_on_every_backend,
    import_conflicts_follow_the_rule_and_a_bad_line_writes_nothing_of_its_batch,
    create_then_get_returns_the_same_record,
    create_without_guid_or_expire_draws_a_guid_and_uses_the_default_ttl,
    create_over_a_live_guid_is_already_exists_and_changes_nothing,
    an_expired_record_is_absent_for_every_operation,
    a_create_whose_expire_passed_before_commit_is_rejected,
    patch_merges_metadata_and_changes_the_etag,
    an_empty_patch_changes_nothing_and_keeps_the_etag,
    if_match_guards_update_and_delete,
    a_patch_that_breaks_the_user_rule_changes_nothing,
    purge_removes_expired_records_in_bounded_batches,
    records_survive_reopening_the_database,
    writes_from_32_threads_are_all_present_after_reopen_and_share_commits,
    concurrent_creates_of_one_guid_have_exactly_one_winner,
    cache_hits_do_not_outlive_writes_or_expiry,
    every_committed_change_gets_the_next_revision_and_nothing_else_does,
    a_create_over_an_expired_record_logs_its_expiry_first,
    purges_log_one_expiry_per_removed_record_and_purge_all_empties_in_batches,
    concurrent_writes_to_one_guid_in_one_batch_see_each_other,
    an_update_that_would_grow_the_record_past_the_limit_changes_nothing,
);

// What only SQLite files have.

/// Polls every future on this thread, parking between rounds, until all are ready: their
/// outputs in order. (A burst of reads awaited together, as one runtime thread awaits them.) It
/// parks until a waker wakes it: a lost wake-up fails (after 30 s) instead of being polled past.
fn join_all<T>(futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + '_>>>) -> Vec<T> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while outputs.iter().any(Option::is_none) {
        for (future, output) in futures.iter_mut().zip(&mut outputs) {
            if let Some(polled) = future.as_mut()
                && let std::task::Poll::Ready(value) = polled.as_mut().poll(&mut context)
            {
                *output = Some(value);
                *future = None;
            }
        }
        if outputs.iter().any(Option::is_none) {
            let left = deadline.checked_duration_since(std::time::Instant::now());
            std::thread::park_timeout(left.expect("a wake-up was lost: reads still pending after 30 s"));
        }
    }
    outputs.into_iter().map(Option::unwrap).collect()
}

/// On a SQLite file, cache misses awaited together from one thread (more than the lookup threads,
/// nothing cached) each get their own record or `NotFound`, and the thread never blocks on the
/// file; an in-memory store says its misses block.
#[test]
fn a_burst_of_misses_awaited_on_one_thread_gets_each_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path().join("misses.db"), Options::default().cache_capacity(0)).unwrap();
    assert!(store.reads_without_blocking());
    assert!(!Store::open_in_memory().unwrap().reads_without_blocking());
    let created: Vec<_> = (0..100)
        .map(|n| {
            let body = format!(r#"{{"user":"u{n}"}}"#);
            store.create(NewRecord::parse(body.as_bytes(), None, store.now()).unwrap()).unwrap()
        })
        .collect();
    let absent: Vec<Guid> = (0..20).map(|_| Guid::random()).collect();
    let asked: Vec<Guid> = created.iter().map(|record| *record.guid()).chain(absent.iter().copied()).collect();
    type Read<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = guidstore::Result<Arc<guidstore::Record>>> + 'a>>;
    let answers = join_all(asked.iter().map(|guid| Box::pin(store.get_async(guid)) as Read<'_>).collect());
    for (n, answer) in answers.into_iter().enumerate() {
        match created.get(n) {
            Some(record) => assert_eq!(answer.unwrap().to_json(), record.to_json()),
            None => assert!(matches!(answer, Err(Error::NotFound(guid)) if guid == asked[n])),
        }
    }
    store.close().unwrap();
}

#[test]
fn a_second_store_on_the_same_file_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = Store::open_with(&path, Options::default().owner("http://127.0.0.1:9")).unwrap();
    let created = first.create(NewRecord::parse(br#"{"user":"one"}"#, None, first.now()).unwrap()).unwrap();
    match Store::open(&path) {
        Err(Error::Locked { owner, .. }) => assert_eq!(owner.as_deref(), Some("http://127.0.0.1:9")),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(guidstore::lock_owner(&path).as_deref(), Some("http://127.0.0.1:9"));
    first.close().unwrap();
    assert_eq!(guidstore::lock_owner(&path), None);
    let second = Store::open(&path).unwrap();
    assert_eq!(second.get(created.guid()).unwrap().to_json(), created.to_json());
    second.delete(created.guid(), None).unwrap();
    drop(second);
    let third = Store::open(&path).unwrap();
    assert!(matches!(third.get(created.guid()), Err(Error::NotFound(_))));
}

#[test]
fn looking_up_the_owner_does_not_stop_an_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probed.db");
    Store::open(&path).unwrap().close().unwrap();
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let prober = {
        let (path, probing) = (path.clone(), std::sync::Arc::clone(&probing));
        std::thread::spawn(move || {
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = guidstore::lock_owner(&path);
            }
        })
    };
    for _ in 0..20 {
        Store::open(&path).unwrap().close().unwrap();
    }
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    prober.join().unwrap();
}

fn cache_hits_do_not_outlive_writes_or_expiry(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let g = guid(G1);
    t.create(&format!(r#"{{"guid":"{G1}","expire":{},"n":1}}"#, NOW + 50)).unwrap();
    assert_eq!(t.store.get_cached(&g).unwrap().metadata()["n"], json!(1));
    t.patch(&g, r#"{"n":2}"#, None).unwrap();
    assert_eq!(t.store.get(&g).unwrap().metadata()["n"], json!(2));
    assert_eq!(t.store.get_cached(&g).unwrap().metadata()["n"], json!(2));
    t.clock.advance(50);
    assert!(t.store.get_cached(&g).is_none());
    t.clock.set(NOW);
    t.store.get(&g).unwrap();
    t.store.delete(&g, None).unwrap();
    assert!(t.store.get_cached(&g).is_none());
    assert!(matches!(t.store.get(&g), Err(Error::NotFound(_))));
    let stats = t.store.counters();
    assert!(stats.cache_hits >= 2 && stats.cache_misses >= 1, "{stats:?}");
}

#[test]
fn a_store_without_cache_behaves_the_same() {
    let store = Store::open_in_memory_with(Options::default().cache_capacity(0)).unwrap();
    let record = store.create(NewRecord::parse(b"{}", None, store.now()).unwrap()).unwrap();
    assert!(store.get_cached(record.guid()).is_none());
    assert_eq!(store.get(record.guid()).unwrap().to_json(), record.to_json());
}

#[test]
fn async_writes_answer_after_commit_on_another_thread() {
    let store = Store::open_in_memory().unwrap();
    let request = NewRecord::parse(b"{}", None, store.now()).unwrap();
    let pending = store.create_async(request);
    let record = std::thread::spawn(move || pending.wait()).join().unwrap().unwrap();
    assert_eq!(store.get(record.guid()).unwrap().to_json(), record.to_json());
    let patch = Patch::parse(br#"{"a":1}"#, record.guid(), store.now()).unwrap();
    let updated = store.update_async(record.guid(), patch, None).wait().unwrap();
    assert_eq!(updated.metadata()["a"], 1);
    store.delete_async(record.guid(), None).wait().unwrap();
    assert_eq!(store.get(record.guid()).unwrap_err().code(), "not_found");
}

#[test]
fn a_file_that_is_not_a_database_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    assert!(matches!(Store::open(&path), Err(Error::NotAGuidstoreDatabase { .. })), "{:?}", Store::open(&path));
}

#[test]
fn another_applications_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    rusqlite_like_file(&path);
    assert!(matches!(Store::open(&path), Err(Error::NotAGuidstoreDatabase { .. })), "{:?}", Store::open(&path));
}

/// A valid SQLite file holding someone else's table.
fn rusqlite_like_file(path: &std::path::Path) {
    rusqlite::Connection::open(path).unwrap().execute_batch("CREATE TABLE t(x);").unwrap();
}

#[test]
fn a_database_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    Store::open(&path).unwrap().close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(Store::open(&path), Err(Error::UnsupportedSchema { found: 99, .. })), "{:?}", Store::open(&path));
}

#[test]
fn a_missing_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path().join("no/such/dir/x.db")).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert_eq!(err.code(), "internal");
}

/// `(revision, op, guid, record JSON)` of every change in the log.
fn log(store: &Store) -> Vec<(u64, String, String, Option<String>)> {
    let changes = store.changes_after(0, 1000).unwrap();
    changes
        .iter()
        .map(|c| (c.revision(), c.op().to_string(), c.guid().to_string(), c.record().map(|r| r.to_json().to_owned())))
        .collect()
}

fn every_committed_change_gets_the_next_revision_and_nothing_else_does(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    assert_eq!(t.store.revision().unwrap(), 0);
    let created = t.create(&format!(r#"{{"guid":"{G1}","user":"Jay"}}"#)).unwrap();
    assert_eq!(t.create(&format!(r#"{{"guid":"{G1}"}}"#)).unwrap_err().code(), "already_exists");
    let unchanged = t.patch(&guid(G1), "{}", None).unwrap();
    assert_eq!(unchanged.etag(), created.etag());
    assert_eq!(t.patch(&guid(G1), r#"{"a":1}"#, Some("\"nope\"")).unwrap_err().code(), "precondition_failed");
    let updated = t.patch(&guid(G1), r#"{"a":1}"#, None).unwrap();
    t.store.delete(&guid(G1), None).unwrap();
    assert_eq!(t.store.delete(&guid(G1), None).unwrap_err().code(), "not_found");
    assert_eq!(
        log(&t.store),
        vec![
            (1, "create".into(), G1.into(), Some(created.to_json().into())),
            (2, "update".into(), G1.into(), Some(updated.to_json().into())),
            (3, "delete".into(), G1.into(), None),
        ]
    );
    assert_eq!(t.store.revision().unwrap(), 3);
    assert_eq!(t.store.oldest_revision().unwrap(), Some(1));
    let changes = t.store.changes_after(1, 1).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].record().unwrap().etag(), updated.etag());
}

fn a_create_over_an_expired_record_logs_its_expiry_first(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    t.create(&format!(r#"{{"guid":"{G1}","expire":{}}}"#, NOW + 10)).unwrap();
    t.clock.advance(10);
    let again = t.create(&format!(r#"{{"guid":"{G1}","user":"new"}}"#)).unwrap();
    let ops: Vec<_> = log(&t.store).into_iter().map(|(rev, op, _, _)| (rev, op)).collect();
    assert_eq!(ops, vec![(1, "create".into()), (2, "expire".into()), (3, "create".into())]);
    assert_eq!(t.store.get(&guid(G1)).unwrap().to_json(), again.to_json());
}

fn purges_log_one_expiry_per_removed_record_and_purge_all_empties_in_batches(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    for _ in 0..25 {
        t.create(&format!(r#"{{"expire":{}}}"#, NOW + 5)).unwrap();
    }
    let live = t.create("{}").unwrap();
    t.clock.advance(5);
    assert_eq!(t.store.purge_expired(10).unwrap(), 10);
    assert_eq!(t.store.purge_all_expired(4).unwrap(), 15);
    assert_eq!(t.store.purge_all_expired(4).unwrap(), 0);
    let expired: Vec<_> = log(&t.store).into_iter().filter(|(_, op, _, _)| op == "expire").collect();
    assert_eq!(expired.len(), 25);
    assert!(expired.iter().all(|(_, _, guid, record)| guid != live.guid().as_str() && record.is_none()));
    assert_eq!(t.store.stats().unwrap().records, 1);
}

fn concurrent_writes_to_one_guid_in_one_batch_see_each_other(kind: Kind) {
    let Some(t) = TestStore::on(kind) else { return };
    let t = Arc::new(t);
    let barrier = Arc::new(Barrier::new(24));
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let (t, barrier) = (Arc::clone(&t), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                match i % 3 {
                    0 => t.create(&format!(r#"{{"guid":"{G1}","n":{i}}}"#)).map(|_| "created"),
                    1 => t.patch(&guid(G1), &format!(r#"{{"p{i}":{i}}}"#), None).map(|_| "updated"),
                    _ => t.store.delete(&guid(G1), None).map(|()| "deleted"),
                }
                .unwrap_or_else(|e| e.code().as_str())
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
    // Replaying the log gives the state the store holds, and every success is in it exactly once.
    let log = log(&t.store);
    let successes = results.iter().filter(|r| matches!(**r, "created" | "updated" | "deleted")).count();
    assert_eq!(log.len(), successes, "{results:?} {log:?}");
    assert!(log.windows(2).all(|pair| pair[0].0 + 1 == pair[1].0));
    let last = log.last().map(|(_, _, _, record)| record.clone());
    let now = t.store.get(&guid(G1)).ok().map(|r| r.to_json().to_owned());
    assert_eq!(last.flatten(), now);
}

fn an_update_that_would_grow_the_record_past_the_limit_changes_nothing(kind: Kind) {
    let Some(t) = TestStore::with_options(kind, Options::default().max_record_bytes(200)) else { return };
    let store = &t.store;
    let record = store.create(NewRecord::parse(br#"{"a":"x"}"#, None, store.now()).unwrap()).unwrap();
    let big = format!(r#"{{"b":"{}"}}"#, "y".repeat(150));
    let patch = Patch::parse(big.as_bytes(), record.guid(), store.now()).unwrap();
    let error = store.update(record.guid(), patch, None).unwrap_err();
    assert!(matches!(error, Error::RecordTooLarge { limit: 200, .. }), "{error:?}");
    assert_eq!(error.code(), "payload_too_large");
    assert_eq!(store.get(record.guid()).unwrap().to_json(), record.to_json());
    assert_eq!(store.revision().unwrap(), 1);
}

#[test]
fn a_registry_moves_between_every_backend_byte_for_byte() {
    let kinds = [Kind::Sqlite, Kind::Postgres, Kind::Mysql, Kind::Sqlite];
    let Some(stores): Option<Vec<TestStore>> = kinds.iter().map(|kind| TestStore::on(*kind)).collect() else { return };
    for n in 0..2_500 {
        let body = format!(
            r#"{{"user":"u{n}","n":{n},"f":1.5e3,"big":12345678901234567890,"nested":{{"é":[null,true,"\\ \""]}}}}"#
        );
        stores[0].create(&body).unwrap();
    }
    let mut exported = Vec::new();
    stores[0].store.export(&mut exported).unwrap();
    let mut current = exported.clone();
    for target in &stores[1..] {
        let stats = target.store.import(current.as_slice(), guidstore::OnConflict::Fail, |_| {}).unwrap();
        assert_eq!(stats.created, 2_500);
        let mut next = Vec::new();
        target.store.export(&mut next).unwrap();
        assert_eq!(String::from_utf8_lossy(&next), String::from_utf8_lossy(&exported), "after {:?}", target.db.kind());
        current = next;
    }
}
