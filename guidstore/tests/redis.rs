//! The shared Redis cache level (`Options::redis_cache`): several stores on one shared database
//! (PostgreSQL, MariaDB) and one private `redis-server`, which the tests corrupt, kill, restart and
//! pause. Every read must be the database's answer, whatever Redis holds or does.

use std::time::{Duration, Instant};

use guidstore::{Code, Error, Guid, ManualClock, NewRecord, Options, Patch, Store};
use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::on_shared_backends;
use guidstore_testkit::redis::RedisServer;

const NOW: u64 = 1_700_000_000;

/// Options of a store on `redis` without a local cache: every read consults Redis.
fn options(redis: &RedisServer, clock: &ManualClock) -> Options {
    Options::default().cache_capacity(0).clock(clock.clone()).redis_cache(redis.url()).redis_prefix("test:")
}

fn setup(kind: Kind, stores: usize) -> Option<(TestDb, RedisServer, ManualClock, Vec<Store>)> {
    let db = TestDb::new(kind)?;
    let redis = RedisServer::start()?;
    let clock = ManualClock::new(NOW);
    let stores = (0..stores).map(|_| Store::open_url(db.url(), options(&redis, &clock)).unwrap()).collect();
    Some((db, redis, clock, stores))
}

fn create(store: &Store, n: i64) -> Guid {
    let body = format!(r#"{{"n":{n}}}"#);
    *store.create(NewRecord::parse(body.as_bytes(), None, NOW).unwrap()).unwrap().guid()
}

fn n_of(store: &Store, guid: &Guid) -> Result<i64, Error> {
    store.get(guid).map(|record| record.metadata()["n"].as_i64().unwrap())
}

/// Waits (10 s at most) until `done` holds: for what happens in the background (fills, probes).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The key of `guid`'s entry (there is one registry per test, so one namespace).
fn key_of(redis: &RedisServer, guid: &Guid) -> String {
    let keys = redis.command(&["KEYS", &format!("test:guidstore:*:{guid}")]);
    assert!(!keys.is_empty() && !keys.contains('\n'), "keys of {guid}: {keys:?}");
    keys
}

fn field(redis: &RedisServer, key: &str, name: &str) -> String {
    redis.command(&["HGET", key, name])
}

fn reads_are_answered_from_redis_by_every_store(kind: Kind) {
    let Some((_db, redis, _clock, stores)) = setup(kind, 3) else { return };
    let guid = create(&stores[0], 1);
    // The writer's own commit fills Redis; the others find it there.
    eventually("the commit reaches Redis", || redis.command(&["KEYS", "test:*"]).contains(&guid.to_string()));
    for store in &stores[1..] {
        assert_eq!(n_of(store, &guid).unwrap(), 1);
        let stats = store.shared_cache_stats().unwrap();
        assert_eq!((stats.hits, stats.misses, stats.up), (1, 0, true), "{stats:?}");
        assert_eq!(store.counters().storage_reads, 0);
    }
    // A store started later can prove the entries written before it started.
    let late = Store::open_url(_db.url(), options(&redis, &_clock)).unwrap();
    assert_eq!(n_of(&late, &guid).unwrap(), 1);
    assert_eq!(late.shared_cache_stats().unwrap().hits, 1);
    // A database read fills Redis for the next reader.
    redis.command(&["FLUSHALL"]);
    assert_eq!(n_of(&stores[1], &guid).unwrap(), 1);
    assert_eq!(stores[1].counters().storage_reads, 1);
    eventually("the fill reaches Redis", || redis.command(&["KEYS", "test:*"]).contains(&guid.to_string()));
    assert_eq!(n_of(&stores[2], &guid).unwrap(), 1);
    assert_eq!(stores[2].counters().storage_reads, 0);
}

fn a_stale_entry_is_never_served(kind: Kind) {
    let Some((_db, redis, _clock, stores)) = setup(kind, 2) else { return };
    let (writer, reader) = (&stores[0], &stores[1]);
    let guid = create(writer, 1);
    eventually("the create reaches Redis", || redis.command(&["KEYS", "test:*"]).contains(&guid.to_string()));
    let key = key_of(&redis, &guid);
    let old: Vec<String> = ["r", "e", "v", "m"].iter().map(|name| field(&redis, &key, name)).collect();
    let patch = Patch::parse(br#"{"n":2}"#, &guid, NOW).unwrap();
    writer.update(&guid, patch, None).unwrap();
    eventually("the update reaches Redis", || field(&redis, &key, "r") != old[0]);
    // Redis goes back to the old record (a late fill, a restart from an old snapshot, a lost write).
    let restore = |redis: &RedisServer| {
        redis.command(&["DEL", &key]);
        redis.command(&["HSET", &key, "r", &old[0], "e", &old[1], "v", &old[2], "m", &old[3]]);
    };
    restore(&redis);
    assert_eq!(n_of(reader, &guid).unwrap(), 2);
    assert_eq!(reader.shared_cache_stats().unwrap().unproven, 1);
    // A delete leaves a tombstone, which answers: absent.
    writer.delete(&guid, None).unwrap();
    eventually("the delete reaches Redis", || field(&redis, &key, "m").is_empty());
    assert_eq!(n_of(reader, &guid).unwrap_err().code(), Code::NotFound);
    assert_eq!(reader.shared_cache_stats().unwrap().hits, 1);
    // Nor is the record resurrected by an older entry.
    restore(&redis);
    assert_eq!(n_of(reader, &guid).unwrap_err().code(), Code::NotFound);
    assert_eq!(reader.shared_cache_stats().unwrap().unproven, 2);
}

fn reads_and_writes_go_on_while_redis_is_killed_and_restarted(kind: Kind) {
    let Some((_db, mut redis, _clock, stores)) = setup(kind, 2) else { return };
    let guids: Vec<Guid> = (0..10).map(|n| create(&stores[0], n)).collect();
    for (n, guid) in guids.iter().enumerate() {
        assert_eq!(n_of(&stores[1], guid).unwrap(), n as i64);
    }
    redis.kill();
    for round in 0..3 {
        for (n, guid) in guids.iter().enumerate() {
            let value = (round * 100 + n) as i64;
            let patch = Patch::parse(format!(r#"{{"n":{value}}}"#).as_bytes(), guid, NOW).unwrap();
            stores[round % 2].update(guid, patch, None).unwrap();
            assert_eq!(n_of(&stores[(round + 1) % 2], guid).unwrap(), value);
        }
    }
    let stats = stores[1].shared_cache_stats().unwrap();
    assert!(!stats.up && stats.errors + stats.timeouts >= 1 && stats.skipped >= 1, "{stats:?}");
    // Started again, empty: the probe finds it, and it fills again.
    redis.restart();
    eventually("the breaker closes", || stores.iter().all(|s| s.shared_cache_stats().unwrap().up));
    for (n, guid) in guids.iter().enumerate() {
        assert_eq!(n_of(&stores[1], guid).unwrap(), (200 + n) as i64);
    }
    eventually("the fills reach Redis", || redis.command(&["DBSIZE"]) == "10");
    let before = stores[0].shared_cache_stats().unwrap().hits;
    for (n, guid) in guids.iter().enumerate() {
        assert_eq!(n_of(&stores[0], guid).unwrap(), (200 + n) as i64);
    }
    assert_eq!(stores[0].shared_cache_stats().unwrap().hits, before + 10);
}

fn a_paused_redis_costs_a_timeout_then_the_breaker_opens(kind: Kind) {
    let Some((_db, redis, _clock, stores)) = setup(kind, 2) else { return };
    let guid = create(&stores[0], 7);
    // The commit's own write to Redis must not be the call the pause catches.
    eventually("the create reaches Redis", || redis.command(&["KEYS", "test:*"]).contains(&guid.to_string()));
    redis.command(&["CLIENT", "PAUSE", "3000", "ALL"]);
    for _ in 0..20 {
        assert_eq!(n_of(&stores[1], &guid).unwrap(), 7);
    }
    let stats = stores[1].shared_cache_stats().unwrap();
    // One read paid the timeout; the breaker kept the others off Redis.
    assert_eq!((stats.timeouts, stats.up), (1, false), "{stats:?}");
    assert!(stats.skipped >= 19, "{stats:?}");
    redis.command(&["CLIENT", "UNPAUSE"]);
    eventually("the breaker closes", || stores[1].shared_cache_stats().unwrap().up);
    assert_eq!(n_of(&stores[1], &guid).unwrap(), 7);
}

fn two_registries_sharing_one_redis_never_see_each_others_entries(kind: Kind) {
    let Some(redis) = RedisServer::start() else { return };
    let (Some(first), Some(second)) = (TestDb::new(kind), TestDb::new(kind)) else { return };
    let clock = ManualClock::new(NOW);
    let open = |db: &TestDb| Store::open_url(db.url(), options(&redis, &clock)).unwrap();
    let (a, b) = (open(&first), open(&second));
    let guid = Guid::random();
    for (store, n) in [(&a, 1), (&b, 2)] {
        let body = format!(r#"{{"guid":"{guid}","n":{n}}}"#);
        store.create(NewRecord::parse(body.as_bytes(), None, NOW).unwrap()).unwrap();
    }
    eventually("both entries reach Redis", || redis.command(&["DBSIZE"]) == "2");
    let (a2, b2) = (open(&first), open(&second));
    assert_eq!((n_of(&a2, &guid).unwrap(), n_of(&b2, &guid).unwrap()), (1, 2));
    assert_eq!((a2.shared_cache_stats().unwrap().hits, b2.shared_cache_stats().unwrap().hits), (1, 1));
}

fn an_unreachable_redis_does_not_stop_a_store_from_opening(kind: Kind) {
    let Some(db) = TestDb::new(kind) else { return };
    let Some(mut redis) = RedisServer::start() else { return };
    redis.kill();
    let clock = ManualClock::new(NOW);
    let store = Store::open_url(db.url(), options(&redis, &clock)).unwrap();
    assert!(!store.shared_cache_stats().unwrap().up);
    let guid = create(&store, 3);
    assert_eq!(n_of(&store, &guid).unwrap(), 3);
    redis.restart();
    eventually("the breaker closes", || store.shared_cache_stats().unwrap().up);
}

on_shared_backends!(
    reads_are_answered_from_redis_by_every_store,
    a_stale_entry_is_never_served,
    reads_and_writes_go_on_while_redis_is_killed_and_restarted,
    a_paused_redis_costs_a_timeout_then_the_breaker_opens,
    two_registries_sharing_one_redis_never_see_each_others_entries,
    an_unreachable_redis_does_not_stop_a_store_from_opening,
);

#[test]
fn a_shared_cache_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guids.db");
    let error =
        Store::open_url(path.to_str().unwrap(), Options::default().redis_cache("redis://127.0.0.1:1")).unwrap_err();
    assert!(matches!(&error, Error::InvalidUrl { reason, .. } if reason.contains("shared database")), "{error}");
    assert!(!path.exists(), "the file was created before the refusal");
    assert!(Store::open_in_memory_with(Options::default().redis_cache("redis://127.0.0.1:1")).is_err());
}

#[test]
fn a_malformed_redis_url_is_refused() {
    let Some(db) = TestDb::new(Kind::Postgres) else { return };
    let error = Store::open_url(db.url(), Options::default().redis_cache("http://127.0.0.1:1")).unwrap_err();
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
}
