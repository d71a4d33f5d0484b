//! Many producer threads writing through one `Store`: what group commit does for them.
//!
//! ```text
//! cargo run -p guidstore-examples --example producers            # 1 thread, then 16 threads
//! cargo run -p guidstore-examples --example producers -- 64 200  # 64 threads x 200 writes
//! ```
//!
//! Every write goes to the store's single writer thread, which commits all writes queued at that
//! moment in one transaction and answers each producer once that commit is durable (synced to
//! disk). One producer waits for each of its commits, so it gets one commit per write; many
//! producers share commits, so `commits` grows far slower than `writes` and the fsync cost is
//! shared. The run uses a temporary directory and removes it afterwards.

use std::time::Instant;

use guidstore::{NewRecord, Stats, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads = parse_arg(args.next(), 16)?;
    let writes_per_thread = parse_arg(args.next(), 250)?;
    if threads == 0 || writes_per_thread == 0 {
        return Err("usage: producers [THREADS>0] [WRITES_PER_THREAD>0]".into());
    }
    println!(
        "{:>8} {:>8} {:>10} {:>9} {:>14} {:>12}",
        "threads", "writes", "seconds", "writes/s", "commits", "writes/commit"
    );
    run(1, writes_per_thread)?;
    if threads > 1 {
        run(threads, writes_per_thread)?;
    }
    Ok(())
}

fn parse_arg(arg: Option<String>, default: usize) -> Result<usize, String> {
    match arg {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| format!("not a number: {text:?}")),
    }
}

/// `threads` producers each create `writes_per_thread` records in a fresh store; prints one row and
/// returns the store's counters.
pub fn run(threads: usize, writes_per_thread: usize) -> Result<Stats, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("guids.db"))?;
    let started = Instant::now();
    let failures: usize = std::thread::scope(|scope| {
        let producers: Vec<_> = (0..threads)
            .map(|producer| {
                let store = &store;
                scope.spawn(move || {
                    let mut failures = 0;
                    for sequence in 0..writes_per_thread {
                        let body = format!(r#"{{"user":"producer-{producer}","sequence":{sequence}}}"#);
                        let created =
                            NewRecord::parse(body.as_bytes(), None, store.now()).and_then(|r| store.create(r));
                        if let Err(error) = created {
                            eprintln!("producer {producer}: {error}");
                            failures += 1;
                        }
                    }
                    failures
                })
            })
            .collect();
        producers.into_iter().map(|p| p.join().unwrap_or(writes_per_thread)).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let counters = store.counters();
    let per_commit = counters.writes as f64 / counters.commits.max(1) as f64;
    println!(
        "{threads:>8} {:>8} {elapsed:>10.3} {:>9.0} {:>14} {per_commit:>12.1}",
        counters.writes,
        counters.writes as f64 / elapsed.max(1e-9),
        counters.commits
    );
    store.close()?;
    if failures > 0 {
        return Err(format!("{failures} writes failed").into());
    }
    Ok(counters)
}
