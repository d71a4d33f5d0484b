//! Storage faults at the library level: the disk fills (a 1 MiB tmpfs) or the database file and
//! directory become read-only (`chattr +i`, which stops root too). Writes must fail with
//! `Error::Unavailable` (code `unavailable`, what the server turns into 503) and change nothing,
//! reads must keep working, writes must succeed once the fault clears, and the file must pass
//! `PRAGMA integrity_check`. Both need root (CI runs as root); elsewhere they say so and pass.

use std::path::Path;

use guidstore::{Guid, NewRecord, Options, Patch, Store};
use guidstore_testkit::fault::{Frozen, Tmpfs, is_root};

fn open(path: &Path) -> Store {
    Store::open_with(path, Options::default().cache_capacity(0)).expect("open the store")
}

fn create(store: &Store, padding: usize) -> guidstore::Result<Guid> {
    let body = format!(r#"{{"user":"fault","pad":"{}"}}"#, "p".repeat(padding));
    let record = store.create(NewRecord::parse(body.as_bytes(), None, store.now())?)?;
    Ok(*record.guid())
}

fn integrity_ok(path: &Path) {
    let connection = rusqlite::Connection::open(path).expect("open for integrity_check");
    let result: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(result, "ok");
}

#[test]
fn disk_full_is_unavailable_and_recovers() {
    if !is_root() {
        eprintln!("disk_full_is_unavailable_and_recovers: needs root to mount a tmpfs: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap();
    let tmpfs = Tmpfs::mount(&mount_point, "1m").expect("mount -t tmpfs");
    let path = mount_point.join("guids.db");
    let store = open(&path);
    let mut created = Vec::new();
    let error = loop {
        match create(&store, 20_000) {
            Ok(guid) => created.push(guid),
            Err(error) => break error,
        }
        assert!(created.len() < 500, "the disk never filled");
    };
    assert_eq!(error.code(), "unavailable", "{error:?}");
    assert!(!created.is_empty());
    for guid in &created {
        store.get(guid).expect("reads work while the disk is full");
    }
    let patch = Patch::parse(br#"{"more":"x"}"#, &created[0], store.now()).unwrap();
    assert_eq!(store.update(&created[0], patch, None).unwrap_err().code(), "unavailable");
    tmpfs.resize("64m").expect("grow the tmpfs");
    created.push(create(&store, 20_000).expect("a write after the disk has room again"));
    store.close().expect("close");
    integrity_ok(&path);
    let store = open(&path);
    for guid in &created {
        store.get(guid).expect("every acknowledged record survives");
    }
}

#[test]
fn read_only_file_and_directory_are_unavailable_and_recover() {
    if !is_root() {
        eprintln!("read_only_file_and_directory: needs root for chattr +i: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    std::fs::create_dir(&db_dir).unwrap();
    let path = db_dir.join("guids.db");
    let store = open(&path);
    let created: Vec<Guid> = (0..10).map(|_| create(&store, 100).unwrap()).collect();
    let frozen = Frozen::freeze_dir(&db_dir).expect("chattr +i");
    assert_eq!(create(&store, 100).unwrap_err().code(), "unavailable");
    assert_eq!(store.delete(&created[0], None).unwrap_err().code(), "unavailable");
    for guid in &created {
        store.get(guid).expect("reads work on a read-only database");
    }
    drop(frozen);
    let again = create(&store, 100).expect("a write once the file is writable again");
    store.close().expect("close");
    integrity_ok(&path);
    let store = open(&path);
    store.get(&again).unwrap();
    store.get(&created[0]).expect("the refused delete changed nothing");
}
