//! `--server` mode, and `--db` on a file held by a running server (the CLI goes through it).

use serde_json::json;

use crate::helpers::{GUID, OTHER_GUID, TestDir, TestServer};

#[test]
fn every_command_works_through_the_server_with_the_same_exit_codes() {
    let dir = TestDir::new();
    let server = TestServer::start(&dir.db, None);
    let cli = |args: &[&str]| {
        let mut full = vec!["--server", server.url.as_str()];
        full.extend_from_slice(args);
        dir.run(&full, &[], b"")
    };

    let created = cli(&["create", GUID, "--user", "Jay Patel", "--set", "team=ops", "--etag"]);
    let record = created.record();
    assert_eq!(record, json!({"guid": GUID, "expire": record["expire"], "user": "Jay Patel", "team": "ops"}));
    let etag = created.stderr.trim().to_owned();
    let (status, body) = server.get(&format!("/guid/{GUID}"), None);
    assert_eq!((status, body.as_str()), (200, created.stdout.trim_end()), "the CLI prints the server's body");

    assert_eq!(cli(&["get", GUID]).stdout, created.stdout);
    let random = cli(&["create"]).record();
    assert_eq!(random["guid"].as_str().map(str::len), Some(32));

    cli(&["create", GUID]).assert_error(4, "already_exists");
    cli(&["get", OTHER_GUID]).assert_error(3, "not_found");
    cli(&["create", "--expire", "1"]).assert_error(2, "invalid_expire");
    cli(&["create", "--json", r#"{"a":1,"a":2}"#]).assert_error(2, "invalid_json");
    cli(&["create", "--user", ""]).assert_error(2, "invalid_metadata");
    cli(&["create", GUID, "--json", &format!(r#"{{"guid":"{OTHER_GUID}"}}"#)]).assert_error(2, "guid_mismatch");
    cli(&["update", GUID, "--json", &format!(r#"{{"guid":"{OTHER_GUID}"}}"#)]).assert_error(2, "guid_immutable");
    cli(&["create", "--json", &format!(r#"{{"pad":"{}"}}"#, "x".repeat(70 * 1024))])
        .assert_error(2, "payload_too_large");
    cli(&["get", "not-a-guid"]).assert_error(2, "invalid_guid");

    let updated = cli(&["update", GUID, "--unset", "team", "--set", "size=3", "--if-match", &etag]).record();
    assert_eq!(updated, json!({"guid": GUID, "expire": record["expire"], "user": "Jay Patel", "size": 3}));
    cli(&["update", GUID, "--set", "size=4", "--if-match", &etag]).assert_error(4, "precondition_failed");
    cli(&["delete", GUID, "--if-match", &etag]).assert_error(4, "precondition_failed");

    let deleted = cli(&["delete", GUID, "--if-match", "*"]);
    assert_eq!((deleted.code, deleted.stdout.as_str(), deleted.stderr.as_str()), (0, "", ""));
    cli(&["get", GUID]).assert_error(3, "not_found");
    cli(&["purge"]).assert_error(2, "usage");
}

#[test]
fn a_cli_write_to_a_running_servers_file_is_seen_by_the_servers_next_read() {
    let dir = TestDir::new();
    let server = TestServer::start(&dir.db, None);
    // Warm the server's cache with the record, so a write around the server would be missed.
    dir.run(&["--server", &server.url, "create", GUID, "--user", "Before"], &[], b"").record();
    assert_eq!(server.get(&format!("/guid/{GUID}"), None).0, 200);

    let verbose = dir.file(&["update", GUID, "--user", "After", "-v"]);
    assert_eq!(verbose.record()["user"], "After");
    assert!(verbose.stderr.contains(&server.url), "says it went through the server: {verbose:?}");
    let created = dir.file(&["create", OTHER_GUID, "--set", "via=db"]).record();

    let (status, body) = server.get(&format!("/guid/{GUID}"), None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).ok().map(|r| r["user"].clone()), Some(json!("After")));
    let (status, body) = server.get(&format!("/guid/{OTHER_GUID}"), None);
    assert_eq!((status, serde_json::from_str::<serde_json::Value>(&body).ok()), (200, Some(created)));

    let deleted = dir.file(&["delete", OTHER_GUID]);
    assert_eq!((deleted.code, deleted.stdout.as_str()), (0, ""), "{deleted:?}");
    assert_eq!(server.get(&format!("/guid/{OTHER_GUID}"), None).0, 404);
    dir.file(&["get", OTHER_GUID]).assert_error(3, "not_found");
    dir.file(&["purge"]).assert_error(1, "unavailable");

    // Once the server has stopped, the same command opens the file itself and sees the same data.
    server.stop();
    let direct = dir.file(&["get", GUID, "-v"]);
    assert_eq!(direct.record()["user"], "After");
    assert!(direct.stderr.contains("using database"), "{direct:?}");
}

#[test]
fn the_server_comes_from_guidstore_server_unless_db_is_given() {
    let dir = TestDir::new();
    let server = TestServer::start(&dir.path().join("server.db"), None);
    dir.run(&["create", GUID], &[("GUIDSTORE_SERVER", &server.url)], b"").record();
    assert_eq!(server.get(&format!("/guid/{GUID}"), None).0, 200);
    // --db on the command line beats GUIDSTORE_SERVER.
    dir.run(&["--db", "local.db", "get", GUID], &[("GUIDSTORE_SERVER", &server.url)], b"").assert_error(3, "not_found");
}

#[test]
fn the_token_is_sent_as_a_bearer_and_its_absence_exits_2_unauthorized() {
    let dir = TestDir::new();
    let server = TestServer::start(&dir.db, Some("s3cret"));
    let url = server.url.as_str();
    dir.run(&["--server", url, "create", GUID], &[], b"").assert_error(2, "unauthorized");
    dir.run(&["--server", url, "--token", "wrong", "get", GUID], &[], b"").assert_error(2, "unauthorized");
    dir.run(&["--server", url, "--token", "s3cret", "create", GUID], &[], b"").record();
    dir.run(&["--server", url, "get", GUID], &[("GUIDSTORE_TOKEN", "s3cret")], b"").record();
    // Redirected through the lock file, the token goes along.
    dir.run(&["--db", dir.db.to_str().expect("utf-8"), "get", GUID], &[("GUIDSTORE_TOKEN", "s3cret")], b"").record();
}

#[test]
fn an_unreachable_server_exits_1_unavailable() {
    let dir = TestDir::new();
    let server = TestServer::start(&dir.db, None);
    let url = server.url.clone();
    server.stop();
    let run = dir.run(&["--server", &url, "--timeout", "5", "get", GUID], &[], b"");
    run.assert_error(1, "unavailable");
    assert!(run.stderr.contains(&url), "{run:?}");
    dir.run(&["--server", "ftp://127.0.0.1:1", "get", GUID], &[], b"").assert_error(2, "usage");
    dir.run(&["--server", "https://127.0.0.1:1", "get", GUID], &[], b"").assert_error(1, "unavailable");
}
