//! Benchmark helper (`bench/http.sh`, `bench/redis.sh`): creates N records in a guidstore database
//! (an SQLite file before the server opens it, or a PostgreSQL/MySQL URL) through the library and
//! prints their GUIDs, one per line.
//!
//! `cargo run --release -p guidstore-server --example bench_prefill -- DB N > guids.txt`

use std::io::Write as _;

use std::collections::VecDeque;

use guidstore::{NewRecord, Options, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let db = args.next().ok_or("usage: bench_prefill DB N")?;
    let count: usize = args.next().ok_or("usage: bench_prefill DB N")?.parse()?;
    let store = Store::open_url(&db, Options::default())?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Queued without waiting for each (the writer commits them in groups), at most WINDOW at a time.
    const WINDOW: usize = 10_000;
    let mut in_flight = VecDeque::with_capacity(WINDOW);
    for n in 0..count {
        let body = format!(r#"{{"user": "bench user {n}", "team": "perf", "n": {n}}}"#);
        let record = NewRecord::parse(body.as_bytes(), None, store.now())?;
        in_flight.push_back(store.create_async(record));
        if in_flight.len() >= WINDOW
            && let Some(oldest) = in_flight.pop_front()
        {
            writeln!(out, "{}", oldest.wait()?.guid())?;
        }
    }
    for pending in in_flight {
        writeln!(out, "{}", pending.wait()?.guid())?;
    }
    out.flush()?;
    store.close()?;
    Ok(())
}
