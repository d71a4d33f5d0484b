//! `--db` mode: the CLI opens the database file itself.

use std::time::{SystemTime, UNIX_EPOCH};

use guidstore::{Clock, ManualClock, NewRecord, Options, Store};
use serde_json::json;

use crate::helpers::{GUID, OTHER_GUID, TestDir};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[test]
fn create_prints_the_record_and_get_prints_the_same_line() {
    let dir = TestDir::new();
    let created = dir.db(&["create", "--user", "Jay Patel"]);
    let record = created.record();
    let guid = record["guid"].as_str().expect("a guid").to_owned();
    assert_eq!(guid.len(), 32);
    assert_eq!(record["user"], "Jay Patel");
    assert!(record["expire"].is_string(), "expire is a decimal string: {record}");
    let keys: Vec<_> = record.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    assert_eq!(keys, ["guid", "expire", "user"]);
    let read = dir.db(&["get", &guid]);
    assert_eq!(read.stdout, created.stdout);
    assert_eq!(read.stderr, "");
}

#[test]
fn create_merges_json_then_flags() {
    let dir = TestDir::new();
    let expire = (now() + 3600).to_string();
    let record = dir
        .db(&[
            "create",
            GUID,
            "--json",
            r#"{"user":"old","team":"a","keep":1}"#,
            "--expire",
            &expire,
            "--user",
            "Jay Patel",
            "--set",
            "team=ops",
            "--set",
            r#"tags=["a","b"]"#,
            "--set",
            "size=3",
        ])
        .record();
    assert_eq!(
        record,
        json!({"guid": GUID, "expire": expire, "user": "Jay Patel", "team": "ops", "keep": 1, "tags": ["a","b"], "size": 3})
    );
}

#[test]
fn create_reads_the_body_from_a_file_and_from_stdin() {
    let dir = TestDir::new();
    std::fs::write(dir.path().join("body.json"), r#"{"user":"From File"}"#).expect("write body");
    let from_file = dir.db(&["create", "--json", "@body.json"]).record();
    assert_eq!(from_file["user"], "From File");
    let args = ["--db", dir.db.to_str().expect("utf-8 path"), "create", GUID, "--json", "-"];
    let from_stdin = dir.run(&args, &[], br#"{"user":"From Stdin","n":[1,2]}"#).record();
    assert_eq!(from_stdin, json!({"guid": GUID, "expire": from_stdin["expire"], "user": "From Stdin", "n": [1,2]}));
    dir.db(&["create", "--json", "@missing.json"]).assert_error(1, "io");
}

#[test]
fn create_of_a_live_guid_exits_4_already_exists() {
    let dir = TestDir::new();
    dir.db(&["create", GUID, "--user", "First"]).record();
    dir.db(&["create", GUID, "--user", "Second"]).assert_error(4, "already_exists");
    assert_eq!(dir.db(&["get", GUID]).record()["user"], "First");
}

#[test]
fn invalid_input_exits_2_with_the_api_code() {
    let dir = TestDir::new();
    let past = (now() - 10).to_string();
    let mismatch = format!(r#"{{"guid":"{OTHER_GUID}"}}"#);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["create", "9094e4c980c74043a4b586b420e69ddf"], "invalid_guid"),
        (vec!["create", "9094E4C9-80C7-4043-A4B5-86B420E69DDF"], "invalid_guid"),
        (vec!["get", "É094E4C980C74043A4B586B420E69DDF"], "invalid_guid"),
        (vec!["create", "--expire", &past], "invalid_expire"),
        (vec!["create", "--expire", "1e10"], "invalid_expire"),
        (vec!["create", "--expire", "253402300800"], "invalid_expire"),
        (vec!["create", "--user", ""], "invalid_metadata"),
        (vec!["create", "--json", r#"{"user":5}"#], "invalid_metadata"),
        (vec!["create", "--json", "[1]"], "invalid_json"),
        (vec!["create", "--json", r#"{"a":1,"a":2}"#], "invalid_json"),
        (vec!["create", "--json", "{", "--user", "x"], "invalid_json"),
        (vec!["create", GUID, "--json", &mismatch], "guid_mismatch"),
        (vec!["create", "--set", "no-equals-sign"], "usage"),
    ];
    for (args, code) in cases {
        dir.db(&args).assert_error(2, code);
    }
    assert!(!dir.db.exists() || dir.db(&["get", GUID]).code == 3, "nothing was created");
}

#[test]
fn body_over_64_kib_exits_2_payload_too_large() {
    let dir = TestDir::new();
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70 * 1024));
    dir.db(&["create", "--json", &big]).assert_error(2, "payload_too_large");
}

#[test]
fn max_body_sets_the_body_limit_from_the_flag_and_the_environment() {
    let dir = TestDir::new();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200));
    dir.db(&["--max-body", "100", "create", "--json", &body]).assert_error(2, "payload_too_large");
    let db = dir.db.to_str().unwrap();
    dir.run(&["--db", db, "create", "--json", &body], &[("GUIDSTORE_MAX_BODY", "100")], b"")
        .assert_error(2, "payload_too_large");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(dir.db(&["--max-body", "100000", "create", "--json", &big]).code, 0);
}

#[test]
fn an_update_that_would_grow_the_record_past_max_body_exits_2_and_changes_nothing() {
    let dir = TestDir::new();
    let pad = "x".repeat(40 * 1024);
    let created = dir.db(&["create", GUID, "--set", &format!(r#"a="{pad}""#)]).record();
    // Each body is under the 64 KiB default, but the record would grow to about 80 KiB.
    dir.db(&["update", GUID, "--set", &format!(r#"b="{pad}""#)]).assert_error(2, "payload_too_large");
    assert_eq!(dir.db(&["get", GUID]).record(), created);
    // A smaller limit applies to the record as well as to the body.
    dir.db(&["--max-body", "1000", "update", GUID, "--set", "c=1"]).assert_error(2, "payload_too_large");
    assert_eq!(dir.db(&["get", GUID]).record(), created);
    // A larger limit allows the growth.
    let grown = dir.db(&["--max-body", "200000", "update", GUID, "--set", &format!(r#"b="{pad}""#)]).record();
    assert_eq!(grown["b"].as_str().map(str::len), Some(pad.len()));
}

#[test]
fn get_of_an_unknown_guid_exits_3_not_found() {
    let dir = TestDir::new();
    dir.db(&["create"]).record();
    dir.db(&["get", GUID]).assert_error(3, "not_found");
}

#[test]
fn reads_of_a_missing_database_exit_3_without_creating_it() {
    let dir = TestDir::new();
    dir.db(&["get", GUID]).assert_error(3, "not_found");
    dir.db(&["update", GUID, "--set", "a=1"]).assert_error(3, "not_found");
    dir.db(&["delete", GUID]).assert_error(3, "not_found");
    assert_eq!(dir.db(&["purge"]).code, 0);
    assert!(!dir.db.exists());
}

#[test]
fn update_merges_sets_and_unsets() {
    let dir = TestDir::new();
    dir.db(&["create", GUID, "--user", "Jay", "--set", "team=ops", "--set", r#"nested={"a":1,"b":2}"#]).record();
    let updated = dir
        .db(&["update", GUID, "--set", "size=3", "--json", r#"{"nested":{"b":null,"c":3}}"#, "--unset", "team"])
        .record();
    assert_eq!(
        updated,
        json!({"guid": GUID, "expire": updated["expire"], "user": "Jay", "nested": {"a":1,"c":3}, "size": 3})
    );
    assert_eq!(dir.db(&["get", GUID]).stdout, dir.db(&["update", GUID]).stdout, "an empty update changes nothing");
}

#[test]
fn update_and_delete_honour_if_match() {
    let dir = TestDir::new();
    let created = dir.db(&["create", GUID, "--etag"]);
    created.record();
    let etag = created.stderr.trim().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "etag on stderr: {created:?}");

    let updated = dir.db(&["update", GUID, "--set", "a=1", "--if-match", &etag, "--etag"]);
    assert_eq!(updated.record()["a"], 1);
    let new_etag = updated.stderr.trim().to_owned();
    assert_ne!(new_etag, etag);

    dir.db(&["update", GUID, "--set", "a=2", "--if-match", &etag]).assert_error(4, "precondition_failed");
    dir.db(&["delete", GUID, "--if-match", &etag]).assert_error(4, "precondition_failed");
    dir.db(&["delete", GUID, "--if-match", "garbage"]).assert_error(4, "precondition_failed");
    assert_eq!(dir.db(&["get", GUID]).record()["a"], 1);

    let deleted = dir.db(&["delete", GUID, "--if-match", &new_etag]);
    assert_eq!((deleted.code, deleted.stdout.as_str(), deleted.stderr.as_str()), (0, "", ""));
    dir.db(&["get", GUID]).assert_error(3, "not_found");
    dir.db(&["delete", GUID]).assert_error(3, "not_found");
    dir.db(&["update", GUID, "--if-match", "*"]).assert_error(3, "not_found");
}

#[test]
fn update_cannot_change_the_guid_or_remove_expire() {
    let dir = TestDir::new();
    dir.db(&["create", GUID]).record();
    dir.db(&["update", GUID, "--json", &format!(r#"{{"guid":"{OTHER_GUID}"}}"#)]).assert_error(2, "guid_immutable");
    dir.db(&["update", GUID, "--unset", "expire"]).assert_error(2, "invalid_expire");
    dir.db(&["update", GUID, "--json", ""]).assert_error(2, "invalid_json");
}

#[test]
fn purge_removes_expired_records_and_reports_the_count_with_verbose() {
    let dir = TestDir::new();
    // Records written with a clock an hour behind, expiring half an hour ago by the real clock.
    let clock = ManualClock::new(now() - 3600);
    let store = Store::open_with(&dir.db, Options::default().clock(clock.clone())).expect("open");
    let expire = format!(r#"{{"expire":{}}}"#, now() - 1800);
    for _ in 0..3 {
        store.create(NewRecord::parse(expire.as_bytes(), None, clock.now()).expect("body")).expect("create");
    }
    store.create(NewRecord::parse(br#"{"user":"live"}"#, None, now()).expect("body")).expect("create");
    store.close().expect("close");

    let purged = dir.file(&["purge", "-v"]);
    assert_eq!(purged.code, 0, "{purged:?}");
    assert_eq!(purged.stdout, "");
    assert!(purged.stderr.contains("purged 3 expired records"), "{purged:?}");
    let again = dir.file(&["purge"]);
    assert_eq!((again.code, again.stdout.as_str(), again.stderr.as_str()), (0, "", ""));

    let store = Store::open(&dir.db).expect("reopen");
    assert_eq!(store.stats().expect("stats").records, 1);
}

#[test]
fn pretty_prints_the_same_record_indented() {
    let dir = TestDir::new();
    let line = dir.db(&["create", GUID, "--set", "a=[1,2]"]).record();
    let pretty = dir.db(&["get", GUID, "--pretty"]);
    assert_eq!(pretty.code, 0);
    assert!(pretty.stdout.lines().count() > 3, "{pretty:?}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&pretty.stdout).ok(), Some(line));
}

#[test]
fn a_database_held_by_another_program_exits_1_unavailable() {
    let dir = TestDir::new();
    let store = Store::open_with(&dir.db, Options::default().owner("some batch job")).expect("open");
    let run = dir.file(&["get", GUID]);
    run.assert_error(1, "unavailable");
    assert!(run.stderr.contains("some batch job"), "{run:?}");
    drop(store);
    dir.file(&["get", GUID]).assert_error(3, "not_found");
}

#[test]
fn a_file_that_is_not_a_database_exits_1() {
    let dir = TestDir::new();
    std::fs::write(&dir.db, "not sqlite at all, just some text that is long enough to be a header").expect("write");
    assert_eq!(dir.file(&["get", GUID]).code, 1);
    let missing_dir = dir.path().join("no/such/dir/guids.db");
    let run = dir.run(&[std::ffi::OsStr::new("--db"), missing_dir.as_os_str(), "create".as_ref()], &[], b"");
    assert_eq!(run.code, 1, "{run:?}");
}

#[test]
fn the_database_comes_from_guidstore_db_by_default() {
    let dir = TestDir::new();
    let path = dir.db.to_str().expect("utf-8 path");
    dir.run(&["create", GUID], &[("GUIDSTORE_DB", path)], b"").record();
    assert_eq!(dir.file(&["get", GUID]).record()["guid"], GUID);
    // Without the flag or the variable: ./guidstore.db in the working directory.
    dir.run(&["create", OTHER_GUID], &[], b"").record();
    assert!(dir.path().join("guidstore.db").exists());
}
