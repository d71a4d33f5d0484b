//! The consumer example, killed with SIGKILL again and again while a burst of writes (creates,
//! updates, deletes and expiries from four threads) goes on, and restarted each time: in the end
//! its audit table is the registry's history exactly — every revision once, in order, with the
//! same content — and its index holds exactly the live records.
//!
//! The consumer must be a process of its own to be killed: this test binary (no libtest harness)
//! runs it when `GUIDSTORE_CONSUMER` names the server and the audit file, and runs the test
//! otherwise. The server runs in this process, built by `guidstore_server::Application` on a
//! `ManualClock`, so expiries happen when the test says.

#[path = "../consumer.rs"]
mod consumer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guidstore::{Clock, ManualClock};
use guidstore_server::config::Config;
use guidstore_server::{Application, purge_expired};
use guidstore_testkit::http::Connection;
use serde_json::Value;

const CHILD: &str = "GUIDSTORE_CONSUMER";
const NOW: u64 = 1_900_000_000;

fn main() {
    if let Ok(args) = std::env::var(CHILD) {
        let (server, audit) = args.split_once(' ').expect("GUIDSTORE_CONSUMER=URL PATH");
        if let Err(error) = consumer::run(server, Path::new(audit)) {
            eprintln!("consumer failed: {error}");
            std::process::exit(1);
        }
        return;
    }
    the_consumer_killed_during_a_burst_applies_every_event_exactly_once();
    println!("test the_consumer_killed_during_a_burst_applies_every_event_exactly_once ... ok");
}

/// The consumer process; killed (SIGKILL) when dropped, also when the test fails.
struct Consumer(Child);

impl Consumer {
    fn start(url: &str, audit: &Path) -> Consumer {
        let child = Command::new(std::env::current_exe().expect("this test binary"))
            .env(CHILD, format!("{url} {}", audit.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the consumer");
        Consumer(child)
    }

    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the consumer");
        self.0.wait().expect("reap the consumer");
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn request(address: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut connection = Connection::connect(address, Duration::from_secs(10)).expect("connect");
    let response = connection.request(method, path, &[], body.map(str::as_bytes)).expect("an answer");
    let json = if response.body.is_empty() { Value::Null } else { response.json() };
    (response.status, json)
}

fn the_consumer_killed_during_a_burst_applies_every_event_exactly_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        db: dir.path().join("registry.db").to_string_lossy().into_owned(),
        ..Config::default()
    };
    let clock = ManualClock::new(NOW);
    let store_clock = clock.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let app = runtime.block_on(async {
        Application::builder(config)
            .store_options(move |options| options.clock(store_clock))
            .build()
            .await
            .expect("the server starts")
    });
    let (url, address, state) = (app.url().to_owned(), app.address(), Arc::clone(app.state()));
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let audit = dir.path().join("audit.db");
    let mut consumer = Consumer::start(&url, &audit);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let clock = clock.clone();
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    let guid = format!("{w:016X}{i:016X}");
                    let path = format!("/guid/{guid}");
                    // Every third record expires 10 s after it is made; the test's clock passes that.
                    let body = |now: u64| {
                        if i % 3 == 0 {
                            format!(r#"{{"w":{w},"i":{i},"expire":"{}"}}"#, now + 10)
                        } else {
                            format!(r#"{{"w":{w},"i":{i}}}"#)
                        }
                    };
                    let mut created = request(address, "POST", &path, Some(&body(clock.now()))).0;
                    if created == 400 {
                        // The clock moved on between reading it and the create (400 invalid_expire).
                        created = request(address, "POST", &path, Some(&body(clock.now()))).0;
                    }
                    assert_eq!(created, 201);
                    if i % 3 == 1 {
                        assert_eq!(request(address, "PATCH", &path, Some(r#"{"seen":true}"#)).0, 200);
                    }
                    // Records that may expire are not deleted: the test's clock can pass their
                    // expiry between the create and the delete (a 404, and no event).
                    if i % 5 == 4 && i % 3 != 0 {
                        assert_eq!(request(address, "DELETE", &path, None).0, 204);
                    }
                }
            })
        })
        .collect();
    // Kill the consumer at five moments of the burst and restart it each time.
    let mut kills = 0;
    let mut killed_at = Vec::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    while kills < 5 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(50 + rng % 150));
        consumer.kill();
        kills += 1;
        // Where it was killed (it is dead, so the file is quiet).
        if audit.exists() {
            killed_at.push(consumer::position(&consumer::open(&audit).expect("audit")).expect("position"));
        }
        if kills == 3 {
            // Expire a third of the records mid-burst: `expire` events from the purge.
            clock.advance(10);
            runtime.block_on(purge_expired(&state.store, 1000)).expect("purge");
        }
        consumer = Consumer::start(&url, &audit);
    }
    for writer in writers {
        writer.join().expect("writer");
    }
    runtime.block_on(purge_expired(&state.store, 1000)).expect("purge");

    // The registry's history, and the consumer catching up with it.
    let (status, history) = request(address, "GET", "/events?after=0&wait=0&limit=10000", None);
    assert_eq!(status, 200);
    let history = history["events"].as_array().expect("events").clone();
    let newest = history.last().and_then(|e| e["rev"].as_u64()).expect("some events");
    let deadline = Instant::now() + Duration::from_secs(60);
    let db = consumer::open(&audit).expect("open the audit file");
    while consumer::position(&db).expect("position") < newest {
        assert!(Instant::now() < deadline, "the consumer did not catch up within 60 s");
        assert!(consumer.0.try_wait().expect("consumer").is_none(), "the consumer stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    consumer.kill();
    assert!(
        killed_at.iter().any(|position| (1..newest).contains(position)),
        "no kill fell in the middle of the feed: killed at positions {killed_at:?} of {newest}"
    );

    let mut statement = db.prepare("SELECT rev, op, guid, at, record FROM audit ORDER BY id").expect("select");
    let audited: Vec<Value> = statement
        .query_map([], |row| {
            let record: Option<String> = row.get(4)?;
            let mut event = serde_json::json!({
                "rev": row.get::<_, u64>(0)?, "op": row.get::<_, String>(1)?,
                "guid": row.get::<_, String>(2)?, "at": row.get::<_, String>(3)?,
            });
            if let Some(record) = record {
                event["record"] = serde_json::from_str(&record).expect("record JSON");
            }
            Ok(event)
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(audited.len(), history.len(), "the audit has {} events, the registry {}", audited.len(), history.len());
    assert_eq!(audited, history, "the audit differs from the registry's history");
    let ops = |op: &str| history.iter().filter(|e| e["op"] == op).count();
    assert!(ops("create") == 600 && ops("update") > 0 && ops("delete") > 0 && ops("expire") > 0, "{history:?}");

    // The index holds exactly the live records, as GET shows them.
    let mut index: BTreeMap<String, Value> = BTreeMap::new();
    let mut rows = db.prepare("SELECT guid, record FROM records").expect("select");
    for row in rows.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))).expect("query") {
        let (guid, record) = row.expect("row");
        index.insert(guid, serde_json::from_str(&record).expect("record JSON"));
    }
    let mut live = 0;
    for guid in history.iter().filter_map(|e| e["guid"].as_str()).collect::<std::collections::BTreeSet<_>>() {
        let (status, record) = request(address, "GET", &format!("/guid/{guid}"), None);
        match status {
            200 => {
                live += 1;
                assert_eq!(index.get(guid), Some(&record), "{guid}");
            }
            404 => assert!(!index.contains_key(guid), "{guid} is gone from the registry but not from the index"),
            other => panic!("GET {guid}: {other}"),
        }
    }
    assert_eq!(index.len(), live);
    println!(
        "consumer killed {kills} times (at positions {killed_at:?}): {} events audited exactly once, {live} live records indexed",
        audited.len()
    );

    let _ = shutdown.send(());
    let stopped = runtime.block_on(server).expect("the server stops");
    runtime.shutdown_timeout(Duration::from_secs(5));
    stopped.close().expect("close the store");
}
