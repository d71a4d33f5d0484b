//! Several real `guidstore-server` processes on one PostgreSQL or MariaDB database act as ONE
//! server (shared/API.md "Several instances, one registry"): with concurrent clients on random
//! instances, a read that starts after a write was acknowledged sees it or a later one; a DELETE
//! acknowledged on one instance is a 404 on all at once; a create of one GUID racing on every
//! instance has exactly one winner; `Cache-Control: max-stale=S` reads are at most S behind; and
//! the change feed (`GET /events`) of any instance carries every instance's writes exactly once, in
//! revision order, resumes from `Last-Event-ID`, wakes long polls, and answers 410 once trimmed.
//! With `--cache` (one Redis shared by the instances), reads stay current while the test kills
//! Redis, starts it again empty and pauses it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use guidstore_testkit::db::{Kind, TestDb};
use guidstore_testkit::http::{Connection, Response};
use guidstore_testkit::on_shared_backends;
use guidstore_testkit::redis::RedisServer;

/// One `guidstore-server` process.
struct Instance {
    child: Child,
    address: SocketAddr,
}

impl Instance {
    fn start(db: &TestDb, dir: &Path, name: &str) -> Instance {
        Instance::start_with(db, dir, name, &[])
    }

    /// An instance with more flags (`extra`; its own `--cache-capacity` replaces the default 1000).
    fn start_with(db: &TestDb, dir: &Path, name: &str, extra: &[&str]) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
            .args(["--listen", "127.0.0.1:0", "--db", db.url(), "--tail-interval", "100ms"])
            .args(if extra.contains(&"--cache-capacity") { &[][..] } else { &["--cache-capacity", "1000"][..] })
            .args(extra)
            .arg("--log-file")
            .arg(dir.join(format!("{name}.log")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start guidstore-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read stdout");
        let url = line.trim_end().strip_prefix("listening on http://").unwrap_or_else(|| panic!("stdout: {line:?}"));
        Instance { address: url.parse().expect("address"), child }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three instances on a fresh database of `kind` (`None`: its server is unreachable, skipped).
fn cluster(kind: Kind) -> Option<(TestDb, tempfile::TempDir, Vec<Instance>)> {
    cluster_with(kind, &[])
}

/// Three instances with `extra` flags (see [`Instance::start_with`]).
fn cluster_with(kind: Kind, extra: &[String]) -> Option<(TestDb, tempfile::TempDir, Vec<Instance>)> {
    let db = TestDb::new(kind)?;
    let dir = tempfile::tempdir().expect("temporary directory");
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let instances = (0..3).map(|i| Instance::start_with(&db, dir.path(), &format!("instance-{i}"), &extra)).collect();
    Some((db, dir, instances))
}

/// A client that keeps one connection per instance.
struct Client {
    addresses: Vec<SocketAddr>,
    connections: Vec<Option<Connection>>,
    seed: u64,
}

impl Client {
    fn new(instances: &[Instance], seed: u64) -> Client {
        let addresses: Vec<SocketAddr> = instances.iter().map(|i| i.address).collect();
        Client { connections: addresses.iter().map(|_| None).collect(), addresses, seed: seed | 1 }
    }

    /// A pseudo-random instance (xorshift).
    fn random_instance(&mut self) -> usize {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % self.addresses.len() as u64) as usize
    }

    fn request(
        &mut self,
        instance: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Response {
        for _ in 0..3 {
            let connection = match &mut self.connections[instance] {
                Some(connection) if !connection.is_closed() => connection,
                slot => slot
                    .insert(Connection::connect(self.addresses[instance], Duration::from_secs(10)).expect("connect")),
            };
            match connection.request(method, path, headers, body.map(str::as_bytes)) {
                Ok(response) => return response,
                // A keep-alive connection the server closed: open another.
                Err(_) => self.connections[instance] = None,
            }
        }
        panic!("{method} {path} on instance {instance} failed three times");
    }
}

fn counter_of(response: &Response) -> u64 {
    assert_eq!(response.status, 200, "{response:?}");
    response.json()["n"].as_u64().unwrap_or_else(|| panic!("no counter: {response:?}"))
}

/// Reads on random instances while writers count `keys` records up to `writes` each on random
/// instances, and `meanwhile` runs (until `writing` turns false): how many reads, and how many
/// missed a write acknowledged before they started.
fn reads_during_writes(
    instances: &Arc<Vec<Instance>>,
    keys: usize,
    writes: u64,
    meanwhile: impl FnOnce(&AtomicBool) + Send,
) -> (u64, u64) {
    let keys: Vec<String> = (0..keys).map(|k| format!("{:032X}", 0xA000 + k)).collect();
    let acknowledged: Arc<Vec<AtomicU64>> = Arc::new(keys.iter().map(|_| AtomicU64::new(0)).collect());
    let mut setup = Client::new(instances, 1);
    for key in &keys {
        assert_eq!(setup.request(0, "POST", &format!("/guid/{key}"), &[], Some(r#"{"n":0}"#)).status, 201);
    }
    let done = Arc::new(AtomicBool::new(false));
    let writing = AtomicBool::new(true);
    let (reads, stale) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = (0..6)
        .map(|r| {
            let (instances, keys, acknowledged) = (Arc::clone(instances), keys.clone(), Arc::clone(&acknowledged));
            let (done, reads, stale) = (Arc::clone(&done), Arc::clone(&reads), Arc::clone(&stale));
            std::thread::spawn(move || {
                let mut client = Client::new(&instances, 0x9E37_79B9 + r);
                while !done.load(Ordering::Acquire) {
                    let key = client.random_instance() % keys.len();
                    // Taken before the request starts: a write acknowledged by then must be seen.
                    let floor = acknowledged[key].load(Ordering::Acquire);
                    let instance = client.random_instance();
                    let n = counter_of(&client.request(instance, "GET", &format!("/guid/{}", keys[key]), &[], None));
                    reads.fetch_add(1, Ordering::Relaxed);
                    if n < floor {
                        stale.fetch_add(1, Ordering::Relaxed);
                        eprintln!("stale read on instance {instance}: key {key} at {n}, acknowledged {floor}");
                    }
                }
            })
        })
        .collect();
    std::thread::scope(|scope| {
        scope.spawn(|| meanwhile(&writing));
        let writers: Vec<_> = (0..keys.len())
            .map(|key| {
                let (keys, acknowledged) = (keys.clone(), Arc::clone(&acknowledged));
                scope.spawn(move || {
                    let mut client = Client::new(instances, 77 + key as u64);
                    for n in 1..=writes {
                        let instance = client.random_instance();
                        let body = format!(r#"{{"n":{n}}}"#);
                        let response =
                            client.request(instance, "PATCH", &format!("/guid/{}", keys[key]), &[], Some(&body));
                        assert_eq!(counter_of(&response), n);
                        acknowledged[key].store(n, Ordering::Release);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
        writing.store(false, Ordering::Release);
    });
    done.store(true, Ordering::Release);
    for reader in readers {
        reader.join().expect("reader");
    }
    (reads.load(Ordering::Relaxed), stale.load(Ordering::Relaxed))
}

fn reads_that_start_after_an_acknowledged_write_see_it_on_every_instance(kind: Kind) {
    let Some((_db, _dir, instances)) = cluster(kind) else { return };
    let (reads, stale) = reads_during_writes(&Arc::new(instances), 3, 150, |_| {});
    eprintln!("{kind:?}: {reads} linearizable reads on 3 instances during 450 acknowledged writes, {stale} stale");
    assert!(reads > 100, "too few reads to say anything: {reads}");
    assert_eq!(stale, 0, "{stale} of {reads} reads missed an acknowledged write");
}

/// A counter of `/metrics` on one instance.
fn metric(client: &mut Client, instance: usize, name: &str) -> u64 {
    let response = client.request(instance, "GET", "/metrics", &[], None);
    let text = String::from_utf8_lossy(&response.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

fn with_a_shared_cache_killed_restarted_and_paused_no_read_is_stale(kind: Kind) {
    let Some(mut redis) = RedisServer::start() else { return };
    // Local caches of 2 records for 6 keys: most reads miss them and go through Redis (or, while it
    // is down, the database), and Redis hits fill them, racing the tailer's changes.
    let flags = ["--cache", &redis.url(), "--cache-capacity", "2", "--cache-timeout", "50ms"].map(str::to_owned);
    let Some((_db, dir, instances)) = cluster_with(kind, &flags) else { return };
    let instances = Arc::new(instances);
    let mut faults = 0;
    let (reads, stale) = reads_during_writes(&instances, 6, 120, |writing| {
        let pause = || std::thread::sleep(Duration::from_millis(300));
        while writing.load(Ordering::Acquire) {
            pause();
            redis.kill();
            pause();
            redis.restart();
            pause();
            redis.command(&["CLIENT", "PAUSE", "300", "ALL"]);
            faults += 2;
        }
    });
    eprintln!("{kind:?}: {reads} reads on 3 instances with --cache, {faults} Redis faults, {stale} stale");
    assert!(reads > 100, "too few reads to say anything: {reads}");
    assert_eq!(stale, 0, "{stale} of {reads} reads missed an acknowledged write");
    assert!(faults >= 2, "the writes ended before any fault");
    // Redis served reads, and every instance has it back.
    let mut client = Client::new(&instances, 9);
    let deadline = Instant::now() + Duration::from_secs(10);
    for instance in 0..3 {
        while metric(&mut client, instance, "guidstore_shared_cache_up") != 1 {
            assert!(Instant::now() < deadline, "instance {instance} does not use Redis again");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let hits: u64 = (0..3).map(|i| metric(&mut client, i, "guidstore_shared_cache_hits_total")).sum();
    eprintln!("{kind:?}: {hits} reads answered from Redis");
    assert!(hits > 0, "no read was answered from Redis");
    // Each loss is logged once, not once per request (the log is flushed every second: wait for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    for instance in 0..3 {
        let counts = || {
            let log = std::fs::read_to_string(dir.path().join(format!("instance-{instance}.log"))).expect("log");
            let lines =
                |what: &str| log.lines().filter(|line| line.contains("Redis cache") && line.contains(what)).count();
            (lines(" lost ("), lines(" is back;"))
        };
        let (mut lost, mut back) = counts();
        while lost == 0 || back < lost {
            assert!(Instant::now() < deadline, "instance {instance}: {lost} lost lines, {back} back lines");
            std::thread::sleep(Duration::from_millis(50));
            (lost, back) = counts();
        }
        assert!(lost <= faults, "instance {instance}: {lost} lost lines for {faults} faults");
        assert!(back <= lost + 1, "instance {instance}: {back} back lines for {lost} lost");
    }
}

fn a_delete_on_one_instance_is_a_404_on_all_and_a_re_create_elsewhere_is_seen_everywhere(kind: Kind) {
    let Some((_db, _dir, instances)) = cluster(kind) else { return };
    let mut client = Client::new(&instances, 5);
    for round in 0..20 {
        let path = format!("/guid/{:032X}", 0xD000 + round);
        let (first, second) = (round % 3, (round + 1) % 3);
        assert_eq!(client.request(first, "POST", &path, &[], Some(r#"{"v":1}"#)).status, 201);
        for instance in 0..3 {
            assert_eq!(client.request(instance, "GET", &path, &[], None).status, 200, "round {round}");
        }
        assert_eq!(client.request(first, "DELETE", &path, &[], None).status, 204);
        for instance in 0..3 {
            assert_eq!(
                client.request(instance, "GET", &path, &[], None).status,
                404,
                "round {round}, instance {instance}"
            );
        }
        let recreated = client.request(second, "POST", &path, &[], Some(r#"{"v":2}"#));
        assert_eq!(recreated.status, 201);
        for instance in 0..3 {
            let read = client.request(instance, "GET", &path, &[], None);
            assert_eq!((read.status, read.json()["v"].as_u64()), (200, Some(2)), "round {round}, instance {instance}");
            assert_eq!(read.header("etag"), recreated.header("etag"));
        }
    }
}

fn one_guid_created_from_24_threads_across_the_instances_gets_exactly_one_201(kind: Kind) {
    let Some((_db, _dir, instances)) = cluster(kind) else { return };
    let instances = Arc::new(instances);
    for round in 0..5 {
        let path = format!("/guid/{:032X}", 0xC000 + round);
        let barrier = Arc::new(Barrier::new(24));
        let threads: Vec<_> = (0..24)
            .map(|t| {
                let (instances, barrier, path) = (Arc::clone(&instances), Arc::clone(&barrier), path.clone());
                std::thread::spawn(move || {
                    let mut client = Client::new(&instances, 1);
                    // Connect before the barrier, so the requests leave together.
                    client.connections[t % 3] =
                        Some(Connection::connect(instances[t % 3].address, Duration::from_secs(10)).expect("connect"));
                    barrier.wait();
                    client.request(t % 3, "POST", &path, &[], Some(&format!(r#"{{"writer":{t}}}"#))).status
                })
            })
            .collect();
        let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "round {round}: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "round {round}: {statuses:?}");
    }
}

fn max_stale_reads_are_at_most_that_far_behind(kind: Kind) {
    let Some((_db, _dir, instances)) = cluster(kind) else { return };
    let instances = Arc::new(instances);
    const MAX_STALE: Duration = Duration::from_secs(1);
    let key = format!("/guid/{:032X}", 0x5000);
    let mut setup = Client::new(&instances, 3);
    assert_eq!(setup.request(0, "POST", &key, &[], Some(r#"{"n":0}"#)).status, 201);
    let started = Instant::now();
    // (time since start, n) of every acknowledged write, in order.
    let acknowledged: Arc<Mutex<Vec<(Duration, u64)>>> = Arc::new(Mutex::new(vec![(Duration::ZERO, 0)]));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (instances, key, done) = (Arc::clone(&instances), key.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut client = Client::new(&instances, 31 + r);
                let mut reads = Vec::new();
                while !done.load(Ordering::Acquire) {
                    let at = started.elapsed();
                    let instance = client.random_instance();
                    let response = client.request(instance, "GET", &key, &[("Cache-Control", "max-stale=1")], None);
                    reads.push((at, counter_of(&response)));
                }
                reads
            })
        })
        .collect();
    let mut writer = Client::new(&instances, 11);
    for n in 1..=60 {
        let instance = writer.random_instance();
        let response = writer.request(instance, "PATCH", &key, &[], Some(&format!(r#"{{"n":{n}}}"#)));
        assert_eq!(counter_of(&response), n);
        acknowledged.lock().unwrap().push((started.elapsed(), n));
        std::thread::sleep(Duration::from_millis(25));
    }
    done.store(true, Ordering::Release);
    let acknowledged = acknowledged.lock().unwrap().clone();
    let (mut reads, mut behind, mut worst) = (0, 0, Duration::ZERO);
    for reader in readers {
        for (at, n) in reader.join().expect("reader") {
            reads += 1;
            // Every write acknowledged more than MAX_STALE before the read began must be seen.
            let required =
                acknowledged.iter().filter(|(ack, _)| *ack + MAX_STALE <= at).map(|(_, n)| *n).max().unwrap_or(0);
            assert!(
                n >= required,
                "a max-stale read at {at:?} saw {n}, but {required} was acknowledged over 1 s before"
            );
            let newest = acknowledged.iter().filter(|(ack, _)| *ack <= at).map(|(_, n)| *n).max().unwrap_or(0);
            if n < newest {
                behind += 1;
                // How long ago the first write this read missed was acknowledged.
                if let Some((ack, _)) = acknowledged.iter().find(|(_, m)| *m == n + 1) {
                    worst = worst.max(at.saturating_sub(*ack));
                }
            }
        }
    }
    eprintln!(
        "{kind:?}: {reads} max-stale=1 reads, {behind} behind the newest acknowledged write, at most {worst:?} behind"
    );
    assert!(reads > 50, "too few reads: {reads}");
}

/// One event of a stream or a long poll: `(rev, op, guid, record)`.
type Event = (u64, String, String, Option<serde_json::Value>);

fn event_of(data: &serde_json::Value) -> Event {
    (
        data["rev"].as_u64().unwrap_or_else(|| panic!("no rev: {data}")),
        data["op"].as_str().unwrap_or_else(|| panic!("no op: {data}")).to_owned(),
        data["guid"].as_str().unwrap_or_else(|| panic!("no guid: {data}")).to_owned(),
        data.get("record").cloned(),
    )
}

/// A Server-Sent Events subscriber on its own thread: it collects every event of one stream of
/// `GET /events` until stopped, checking each `id:` against its data's `rev`.
struct Subscriber {
    events: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    fn start(address: SocketAddr, last_event_id: Option<u64>) -> Subscriber {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        let resume = last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
        let request = format!("GET /events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n{resume}\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let (events, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (collected, stopped) = (Arc::clone(&events), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let (mut pending, mut id, mut buffer) = (Vec::new(), None::<u64>, [0u8; 16384]);
            while !stopped.load(Ordering::Acquire) {
                let n = match stream.read(&mut buffer) {
                    Ok(0) => panic!("the event stream ended"),
                    Ok(n) => n,
                    Err(error)
                        if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                    {
                        continue;
                    }
                    Err(error) => panic!("reading the event stream: {error}"),
                };
                pending.extend_from_slice(&buffer[..n]);
                // Complete lines only; chunk-size lines and the response head match no field.
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let line = String::from_utf8(line).expect("UTF-8");
                    let line = line.trim_end_matches(['\r', '\n']);
                    if let Some(value) = line.strip_prefix("id: ") {
                        id = Some(value.parse().expect("id"));
                    } else if let Some(value) = line.strip_prefix("event: ") {
                        assert!(matches!(value, "create" | "update" | "delete" | "expire"), "event {value:?}");
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        let event = event_of(&serde_json::from_str(data).expect("data is JSON"));
                        assert_eq!(id.take(), Some(event.0), "id: and rev differ");
                        collected.lock().unwrap().push(event);
                    }
                }
            }
        });
        Subscriber { events, stop, thread: Some(thread) }
    }

    /// Waits (60 s at most) until `count` events have arrived, stops, and returns them all.
    fn collect(mut self, count: usize) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.events.lock().unwrap().len() < count && Instant::now() < deadline {
            assert!(!self.thread.as_ref().is_some_and(|t| t.is_finished()), "the subscriber failed");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("subscriber");
        }
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The events of a long-poll answer, and its `next`.
fn polled(response: &Response) -> (Vec<Event>, u64) {
    assert_eq!(response.status, 200, "{response:?}");
    let body = response.json();
    let events = body["events"].as_array().unwrap_or_else(|| panic!("{body}")).iter().map(event_of).collect();
    (events, body["next"].as_u64().unwrap_or_else(|| panic!("{body}")))
}

/// The feed test's GUIDs: writer `w`'s `i`-th record.
fn feed_guid(writer: usize, i: usize) -> String {
    format!("{:08X}{:024X}", 0xFEED_0000_u32 + writer as u32, i)
}

fn every_acknowledged_write_reaches_a_subscriber_on_the_other_instance_once_and_in_order(kind: Kind) {
    let Some(db) = TestDb::new(kind) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let instances: Arc<Vec<Instance>> =
        Arc::new((0..2).map(|i| Instance::start(&db, dir.path(), &format!("instance-{i}"))).collect());
    // Subscribed before any write, on instance 1; the writers go to both, mostly to instance 0.
    let subscriber = Subscriber::start(instances[1].address, None);
    const WRITERS: usize = 8;
    const RECORDS: usize = 25;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let instances = Arc::clone(&instances);
            std::thread::spawn(move || {
                let mut client = Client::new(&instances, 1000 + w as u64);
                // (op, guid) of each acknowledged write, in the order acknowledged.
                let mut acknowledged = Vec::new();
                for i in 0..RECORDS {
                    let path = format!("/guid/{}", feed_guid(w, i));
                    let (first, second) = ((w + i) % 2, (w + i + 1) % 2);
                    let created = client.request(first, "POST", &path, &[], Some(&format!(r#"{{"w":{w},"i":{i}}}"#)));
                    assert_eq!(created.status, 201, "{created:?}");
                    acknowledged.push(("create", feed_guid(w, i)));
                    let patched = client.request(second, "PATCH", &path, &[], Some(r#"{"patched":true}"#));
                    assert_eq!(patched.status, 200, "{patched:?}");
                    acknowledged.push(("update", feed_guid(w, i)));
                    if i % 2 == 0 {
                        assert_eq!(client.request(first, "DELETE", &path, &[], None).status, 204);
                        acknowledged.push(("delete", feed_guid(w, i)));
                    }
                }
                acknowledged
            })
        })
        .collect();
    let acknowledged: Vec<Vec<(&str, String)>> = writers.into_iter().map(|t| t.join().expect("writer")).collect();
    let total: usize = acknowledged.iter().map(Vec::len).sum();
    let events = subscriber.collect(total);
    assert_eq!(events.len(), total, "{} of {total} acknowledged writes reached the subscriber", events.len());
    let revisions: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(revisions, (1..=total as u64).collect::<Vec<_>>(), "not every revision once, in order");
    let mut seen = std::collections::HashSet::new();
    for (_, op, guid, record) in &events {
        assert!(seen.insert((op.clone(), guid.clone())), "{op} {guid} arrived twice");
        match op.as_str() {
            "create" => assert_eq!(record.as_ref().and_then(|r| r["guid"].as_str()), Some(guid.as_str())),
            "update" => assert_eq!(record.as_ref().map(|r| &r["patched"]), Some(&serde_json::Value::Bool(true))),
            _ => assert!(record.is_none(), "{op} with a record"),
        }
    }
    for (w, writes) in acknowledged.iter().enumerate() {
        let prefix = &feed_guid(w, 0)[..8];
        let delivered: Vec<(&str, String)> =
            events.iter().filter(|e| e.2.starts_with(prefix)).map(|e| (e.1.as_str(), e.2.clone())).collect();
        assert_eq!(&delivered, writes, "writer {w}: its acknowledged writes, in its order");
    }

    // Resuming with Last-Event-ID on the other instance gives exactly the rest.
    let middle = total as u64 / 2;
    let resumed = Subscriber::start(instances[0].address, Some(middle)).collect(total - middle as usize);
    assert_eq!(resumed.iter().map(|e| e.0).collect::<Vec<_>>(), (middle + 1..=total as u64).collect::<Vec<_>>());
    assert_eq!(resumed, events[middle as usize..]);

    // A long poll on one instance wakes for a write on the other (it would answer empty after 30 s).
    let mut client = Client::new(&instances, 9);
    let at_end = polled(&client.request(0, "GET", &format!("/events?after={total}&wait=0"), &[], None));
    assert_eq!(at_end, (vec![], total as u64));
    let poller = {
        let instances = Arc::clone(&instances);
        std::thread::spawn(move || {
            polled(&Client::new(&instances, 3).request(0, "GET", &format!("/events?after={total}&wait=30"), &[], None))
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let late = feed_guid(99, 0);
    assert_eq!(client.request(1, "POST", &format!("/guid/{late}"), &[], Some("{}")).status, 201);
    let (woken, next) = poller.join().expect("poller");
    assert_eq!(
        (woken.len(), woken[0].0, woken[0].1.as_str(), woken[0].2.as_str()),
        (1, total as u64 + 1, "create", late.as_str())
    );
    assert_eq!(next, total as u64 + 1);
}

fn a_consumer_behind_the_trimmed_log_gets_410_from_every_instance(kind: Kind) {
    let Some(db) = TestDb::new(kind) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    // Both purge often; only the second keeps a count. The first trims nothing itself, but its
    // trim task notices the other's trimming and forgets those changes too.
    let first = Instance::start_with(&db, dir.path(), "instance-0", &["--purge-interval", "100ms"]);
    let mut client = Client::new(std::slice::from_ref(&first), 5);
    for n in 0..20 {
        assert_eq!(client.request(0, "POST", "/guid", &[], Some(&format!(r#"{{"n":{n}}}"#))).status, 201);
    }
    assert_eq!(polled(&client.request(0, "GET", "/events?after=0&wait=0", &[], None)).0.len(), 20);
    // A second instance keeps the newest 5 changes: its purge task trims the shared log.
    let trimming = Instance::start_with(
        &db,
        dir.path(),
        "instance-1",
        &["--events-retention-count", "5", "--purge-interval", "100ms"],
    );
    let instances = [first, trimming];
    let mut client = Client::new(&instances, 7);
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..2).any(|i| client.request(i, "GET", "/events?after=0&wait=0", &[], None).status != 410) {
        assert!(Instant::now() < deadline, "the log was not trimmed within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    for instance in 0..2 {
        client.request(instance, "GET", "/events?after=14", &[], None).assert_error(410, "events_truncated");
        let stream = client.request(instance, "GET", "/events?after=0", &[("Accept", "text/event-stream")], None);
        stream.assert_error(410, "events_truncated");
        let (kept, next) = polled(&client.request(instance, "GET", "/events?after=15&wait=0", &[], None));
        assert_eq!((kept.iter().map(|e| e.0).collect::<Vec<_>>(), next), ((16..=20).collect(), 20));
    }
}

on_shared_backends!(
    every_acknowledged_write_reaches_a_subscriber_on_the_other_instance_once_and_in_order,
    a_consumer_behind_the_trimmed_log_gets_410_from_every_instance,
    reads_that_start_after_an_acknowledged_write_see_it_on_every_instance,
    a_delete_on_one_instance_is_a_404_on_all_and_a_re_create_elsewhere_is_seen_everywhere,
    one_guid_created_from_24_threads_across_the_instances_gets_exactly_one_201,
    max_stale_reads_are_at_most_that_far_behind,
    with_a_shared_cache_killed_restarted_and_paused_no_read_is_stale,
);
