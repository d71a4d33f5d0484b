//! Embedding guidstore: open a store, create, read, update with If-Match, delete and purge, printing
//! what happens at each step. Runs in a temporary directory and deletes it afterwards.
//!
//! ```text
//! cargo run -p guidstore-examples --example embed
//! ```
//!
//! The store's clock is a `ManualClock` here only so the purge step can move time forward instead
//! of waiting; an application leaves `Options::clock` alone (the system clock). `main` is `pub` so
//! that `tests/examples.rs` can run it.

use std::time::{SystemTime, UNIX_EPOCH};

use guidstore::{Guid, IfMatch, ManualClock, NewRecord, Options, Patch, Store};

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("guids.db");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let clock = ManualClock::new(now);
    let store = Store::open_with(&path, Options::default().clock(clock.clone()))?;
    println!("opened {}", path.display());

    // Create: the body is parsed with the API's rules (the same call the server makes).
    let body = br#"{"user": "Jay Patel", "team": "ops"}"#;
    let record = store.create(NewRecord::parse(body, None, store.now())?)?;
    println!("created  {}  etag {}", record.to_json(), record.etag());

    // A chosen GUID, a short life: it will be purged below.
    let short_lived = Guid::parse("9094E4C980C74043A4B586B420E69DDF")?;
    let expire = format!(r#"{{"expire": {}}}"#, store.now() + 60);
    let temporary = store.create(NewRecord::parse(expire.as_bytes(), Some(&short_lived), store.now())?)?;
    println!("created  {}", temporary.to_json());

    // Creating it again is a conflict, as POST /guid/{guid} is a 409.
    match store.create(NewRecord::parse(b"{}", Some(&short_lived), store.now())?) {
        Ok(_) => println!("unexpected: created twice"),
        Err(error) => println!("create again -> {}: {error}", error.code()),
    }

    // Read.
    let guid = *record.guid();
    let read = store.get(&guid)?;
    println!("read     {}  etag {}", read.to_json(), read.etag());

    // Update with If-Match: succeeds with the current entity-tag...
    let patch = Patch::parse(br#"{"team": null, "tags": ["a", "b"]}"#, &guid, store.now())?;
    let updated = store.update(&guid, patch, Some(IfMatch::parse(&read.etag())))?;
    println!("updated  {}  etag {}", updated.to_json(), updated.etag());

    // ...and fails with the old one: someone else changed the record since we read it.
    let patch = Patch::parse(br#"{"user": "Someone Else"}"#, &guid, store.now())?;
    match store.update(&guid, patch, Some(IfMatch::parse(&read.etag()))) {
        Ok(_) => println!("unexpected: a stale entity-tag matched"),
        Err(error) => println!("update with stale etag -> {}: {error}", error.code()),
    }

    // Invalid input is refused before anything is written.
    for bad in [&br#"{"expire": 5}"#[..], br#"{"user": ""}"#, br#"{"a": 1, "a": 2}"#, b"[1]"] {
        let error = NewRecord::parse(bad, None, store.now()).err();
        let code = error.as_ref().map_or("accepted", |e| e.code().as_str());
        println!("create {} -> {code}", String::from_utf8_lossy(bad));
    }

    // Delete, then the record is gone.
    store.delete(&guid, Some(IfMatch::Any))?;
    match store.get(&guid) {
        Ok(_) => println!("unexpected: deleted record still readable"),
        Err(error) => println!("deleted; get -> {}: {error}", error.code()),
    }

    // Time passes: the short-lived record expires (invisible at once), then a purge removes it.
    clock.advance(61);
    println!(
        "61 s later, get {short_lived} -> {}",
        store.get(&short_lived).err().map_or("found", |e| e.code().as_str())
    );
    let purged = store.purge_all_expired(guidstore::DEFAULT_PURGE_BATCH)?;
    println!("purged {purged} expired record(s)");

    let counters = store.counters();
    // Refused writes and purges run in a transaction of the writer thread too, so they count as commits.
    println!("store counters: {} record changes in {} commits", counters.writes, counters.commits);
    store.close()?;
    println!("closed; {} removed with the temporary directory", path.display());
    Ok(())
}
