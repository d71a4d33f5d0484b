//! Library benchmark: durable creates per second from 1 and 32 threads (group commit), gets per
//! second on cache hit and cache miss, and NDJSON import and export (records per second, SQLite).
//! Prints a table a reader can rerun:
//!
//! ```text
//! cargo bench -p guidstore --bench store
//! ```
//!
//! `GUIDSTORE_BENCH_SECS` sets the duration of each timed phase (default 3);
//! `GUIDSTORE_BENCH_SYNC=normal` measures creates with `synchronous=NORMAL` instead of `FULL`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use guidstore::{Guid, NewRecord, Options, Store, Synchronous};

fn phase_duration() -> Duration {
    let secs = std::env::var("GUIDSTORE_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

fn open(dir: &tempfile::TempDir, name: &str, options: Options) -> Store {
    Store::open_with(dir.path().join(name), options).expect("open the bench database")
}

fn body(i: u64) -> Vec<u8> {
    format!(r#"{{"user":"bench user {i}","team":"ops","tags":["a","b"]}}"#).into_bytes()
}

/// Durable creates per second from `threads` threads for one phase.
fn creates_per_second(store: &Arc<Store>, threads: usize) -> (f64, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let before = store.counters();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, stop, done) = (Arc::clone(store), Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let request = NewRecord::parse(&body(i), None, store.now()).expect("valid body");
                    store.create(request).expect("durable create");
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(phase_duration());
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().expect("bench thread");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = store.counters();
    let writes = done.load(Ordering::Relaxed);
    (writes as f64 / elapsed, writes, after.commits - before.commits)
}

/// Gets per second on one thread, cycling through `guids`.
fn gets_per_second(store: &Store, guids: &[Guid]) -> f64 {
    let deadline = Instant::now() + phase_duration();
    let mut count = 0u64;
    let start = Instant::now();
    'outer: loop {
        for guid in guids.iter().step_by(7).chain(guids.iter()) {
            std::hint::black_box(store.get(guid).expect("live record"));
            count += 1;
            if count.is_multiple_of(1024) && Instant::now() >= deadline {
                break 'outer;
            }
        }
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn prefill(store: &Store, n: u64) -> Vec<Guid> {
    let store_ref = store;
    let mut guids = Vec::with_capacity(n as usize);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                scope.spawn(move || {
                    (0..n / 8)
                        .map(|i| {
                            let request = NewRecord::parse(&body(t * n + i), None, store_ref.now()).expect("valid");
                            *store_ref.create(request).expect("create").guid()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            guids.extend(handle.join().expect("prefill thread"));
        }
    });
    guids
}

/// NDJSON import then export of 100,000 records per second of phase duration, into and out of a
/// fresh SQLite file: (imported/s, exported/s, records).
fn import_export(dir: &tempfile::TempDir) -> (f64, f64, u64) {
    // Import and export: 100,000 records per second of phase duration (300,000 by default).
    let count = (phase_duration().as_secs_f64() * 100_000.0) as u64;
    let input: String = (0..count)
        .map(|i| {
            format!(
                "{{\"guid\":\"{}\",\"expire\":\"4000000000\",\"user\":\"bench user {i}\",\"team\":\"ops\",\"tags\":[\"a\",\"b\"]}}\n",
                Guid::random()
            )
        })
        .collect();
    let target = open(dir, "import.db", Options::default());
    let started = Instant::now();
    let stats = target.import(input.as_bytes(), guidstore::OnConflict::Fail, |_| {}).expect("import");
    let import = stats.created as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let exported = target.export(std::io::sink()).expect("export");
    let export = exported as f64 / started.elapsed().as_secs_f64();
    drop(target);
    (import, export, stats.created)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects a quick run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("store bench: run with `cargo bench -p guidstore --bench store`");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    println!("guidstore library benchmark ({}s per phase)", phase_duration().as_secs_f64());
    if std::env::var("GUIDSTORE_BENCH_ONLY").as_deref() == Ok("import") {
        let (import, export, count) = import_export(&dir);
        println!("import {import:.0} records/s, export {export:.0} records/s ({count} records)");
        return;
    }

    let sync = match std::env::var("GUIDSTORE_BENCH_SYNC").as_deref() {
        Ok("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    let store = Arc::new(open(&dir, "creates.db", Options::default().synchronous(sync)));
    println!("creates: synchronous={sync:?}");
    let (one, one_n, one_commits) = creates_per_second(&store, 1);
    let (many, many_n, many_commits) = creates_per_second(&store, 32);
    drop(store);

    let hot = open(&dir, "hot.db", Options::default());
    let guids = prefill(&hot, 10_000);
    for guid in &guids {
        hot.get(guid).expect("warm the cache");
    }
    let hit = gets_per_second(&hot, &guids);
    let hit_stats = hot.counters();
    drop(hot);

    let cold = open(&dir, "cold.db", Options::default().cache_capacity(0));
    let guids = prefill(&cold, 10_000);
    let miss = gets_per_second(&cold, &guids);
    drop(cold);

    let (import, export, count) = import_export(&dir);

    println!();
    println!("| measurement | figure | detail |");
    println!("|---|---:|---|");
    println!("| durable creates/s, 1 thread | {one:.0} | {one_n} creates in {one_commits} commits |");
    println!(
        "| durable creates/s, 32 threads | {many:.0} | {many_n} creates in {many_commits} commits ({:.1} per commit) |",
        many_n as f64 / many_commits.max(1) as f64
    );
    println!("| ratio 32 threads / 1 thread | {:.1}x | floor 8x |", many / one);
    println!(
        "| gets/s, cache hit, 1 thread | {hit:.0} | floor 1,000,000; {} hits, {} misses |",
        hit_stats.cache_hits, hit_stats.cache_misses
    );
    println!("| gets/s, cache miss (SQLite read), 1 thread | {miss:.0} | cache disabled |");
    println!("| ratio hit / miss | {:.1}x | |", hit / miss);
    println!(
        "| NDJSON import, records/s (SQLite, batches of {}) | {import:.0} | {count} records; floor 100,000 |",
        guidstore::SQLITE_IMPORT_BATCH
    );
    println!("| NDJSON export, records/s (SQLite) | {export:.0} | {count} records |");
}
