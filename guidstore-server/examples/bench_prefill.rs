//! Benchmark helper (`bench/http.sh`): creates N records in a guidstore database through the
//! library (before the server opens it) and prints their GUIDs, one per line.
//!
//! `cargo run --release -p guidstore-server --example bench_prefill -- DB N > guids.txt`

use std::io::Write as _;

use guidstore::{NewRecord, Store, Write, WriteOutcome};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let db = args.next().ok_or("usage: bench_prefill DB N")?;
    let count: usize = args.next().ok_or("usage: bench_prefill DB N")?.parse()?;
    let store = Store::open(&db)?;
    let (sender, receiver) = std::sync::mpsc::channel();
    for n in 0..count {
        let body = format!(r#"{{"user": "bench user {n}", "team": "perf", "n": {n}}}"#);
        let record = NewRecord::parse(body.as_bytes(), None, store.now())?;
        let sender = sender.clone();
        // Submitted without waiting: the writer commits them in groups.
        store.submit(Write::Create(record), move |result| {
            let _ = sender.send(result);
        });
    }
    drop(sender);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for result in receiver {
        if let WriteOutcome::Record(record) = result? {
            writeln!(out, "{}", record.guid())?;
        }
    }
    out.flush()?;
    store.close()?;
    Ok(())
}
