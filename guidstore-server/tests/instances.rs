//! Several real `guidstore-server` processes on one PostgreSQL or MariaDB database act as ONE
//! server (shared/API.md "Several instances, one registry"): with concurrent clients on random
//! instances, a read that starts after a write was acknowledged sees it or a later one; a DELETE
//! acknowledged on one instance is a 404 on all at once; a create of one GUID racing on every
//! instance has exactly one winner; and `Cache-Control: max-stale=S` reads are at most S behind.

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

/// One `guidstore-server` process.
struct Instance {
    child: Child,
    address: SocketAddr,
}

impl Instance {
    fn start(db: &TestDb, dir: &Path, name: &str) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
            .args(["--listen", "127.0.0.1:0", "--db", db.url(), "--tail-interval", "100ms", "--cache-capacity", "1000"])
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
    let db = TestDb::new(kind)?;
    let dir = tempfile::tempdir().expect("temporary directory");
    let instances = (0..3).map(|i| Instance::start(&db, dir.path(), &format!("instance-{i}"))).collect();
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

fn reads_that_start_after_an_acknowledged_write_see_it_on_every_instance(kind: Kind) {
    let Some((_db, _dir, instances)) = cluster(kind) else { return };
    let instances = Arc::new(instances);
    let keys: Vec<String> = (0..3).map(|k| format!("{:032X}", 0xA000 + k)).collect();
    let acknowledged: Arc<Vec<AtomicU64>> = Arc::new(keys.iter().map(|_| AtomicU64::new(0)).collect());
    let mut setup = Client::new(&instances, 1);
    for key in &keys {
        assert_eq!(setup.request(0, "POST", &format!("/guid/{key}"), &[], Some(r#"{"n":0}"#)).status, 201);
    }
    let done = Arc::new(AtomicBool::new(false));
    let (reads, stale) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = (0..6)
        .map(|r| {
            let (instances, keys, acknowledged) = (Arc::clone(&instances), keys.clone(), Arc::clone(&acknowledged));
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
    let writers: Vec<_> = (0..keys.len())
        .map(|key| {
            let (instances, keys, acknowledged) = (Arc::clone(&instances), keys.clone(), Arc::clone(&acknowledged));
            std::thread::spawn(move || {
                let mut client = Client::new(&instances, 77 + key as u64);
                for n in 1..=150 {
                    let instance = client.random_instance();
                    let body = format!(r#"{{"n":{n}}}"#);
                    let response = client.request(instance, "PATCH", &format!("/guid/{}", keys[key]), &[], Some(&body));
                    assert_eq!(counter_of(&response), n);
                    acknowledged[key].store(n, Ordering::Release);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        reader.join().expect("reader");
    }
    let (reads, stale) = (reads.load(Ordering::Relaxed), stale.load(Ordering::Relaxed));
    eprintln!("{kind:?}: {reads} linearizable reads on 3 instances during 450 acknowledged writes, {stale} stale");
    assert!(reads > 100, "too few reads to say anything: {reads}");
    assert_eq!(stale, 0, "{stale} of {reads} reads missed an acknowledged write");
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

on_shared_backends!(
    reads_that_start_after_an_acknowledged_write_see_it_on_every_instance,
    a_delete_on_one_instance_is_a_404_on_all_and_a_re_create_elsewhere_is_seen_everywhere,
    one_guid_created_from_24_threads_across_the_instances_gets_exactly_one_201,
    max_stale_reads_are_at_most_that_far_behind,
);
