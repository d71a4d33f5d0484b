//! `watch`: the change feed as NDJSON, from a database and through a server, once or following
//! until Ctrl-C, with the revision to resume from on stderr.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use guidstore_testkit::db::{Kind, TestDb};
use serde_json::Value;

use crate::helpers::{GUID, OTHER_GUID, Run, TestDir, TestServer};

/// The events printed: `(rev, op, guid)` of each line, which must each be one JSON object.
fn events(run: &Run) -> Vec<(u64, String, String)> {
    assert_eq!(run.code, 0, "failed: {run:?}");
    run.stdout.lines().map(event).collect()
}

fn event(line: &str) -> (u64, String, String) {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    (
        value["rev"].as_u64().unwrap(),
        value["op"].as_str().unwrap().to_owned(),
        value["guid"].as_str().unwrap().to_owned(),
    )
}

fn ops(events: &[(u64, String, String)]) -> Vec<(u64, &str)> {
    events.iter().map(|(rev, op, _)| (*rev, op.as_str())).collect()
}

#[test]
fn watch_prints_every_change_after_a_revision_and_the_revision_to_resume_from() {
    let dir = TestDir::new();
    dir.db(&["create", GUID, "--user", "a"]).record();
    dir.db(&["update", GUID, "--set", "team=ops"]).record();
    dir.db(&["create", OTHER_GUID]).record();
    assert_eq!(dir.db(&["delete", GUID]).code, 0);

    let all = dir.db(&["watch"]);
    let printed = events(&all);
    assert_eq!(ops(&printed), [(1, "create"), (2, "update"), (3, "create"), (4, "delete")]);
    assert_eq!(printed[2].2, OTHER_GUID);
    let second: Value = serde_json::from_str(all.stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(second["record"]["team"], "ops");
    assert_eq!(all.stderr, "last revision: 4\n");

    let rest = dir.db(&["watch", "--after", "2"]);
    assert_eq!(ops(&events(&rest)), [(3, "create"), (4, "delete")]);
    let none = dir.db(&["watch", "--after", "4"]);
    assert_eq!((none.stdout.as_str(), none.stderr.as_str()), ("", "last revision: 4\n"));
    let missing = TestDir::new();
    let nothing = missing.file(&["watch"]);
    assert_eq!((nothing.code, nothing.stdout.as_str(), nothing.stderr.as_str()), (0, "", "last revision: 0\n"));
}

#[test]
fn watch_below_the_retention_window_is_events_truncated_and_follow_on_a_bare_file_is_refused() {
    let dir = TestDir::new();
    for n in 0..5 {
        dir.file(&["create", "--set", &format!("n={n}")]).record();
    }
    let store = guidstore::Store::open(&dir.db).expect("open");
    store.trim_changes(None, Some(2)).expect("trim");
    store.close().expect("close");
    let truncated = dir.file(&["watch", "--after", "1"]);
    assert_eq!(truncated.code, 2, "{truncated:?}");
    assert!(truncated.stderr.contains("error: events_truncated: "), "{truncated:?}");
    assert!(truncated.stderr.starts_with("last revision: 1\n"), "{truncated:?}");
    assert_eq!(ops(&events(&dir.file(&["watch", "--after", "3"]))), [(4, "create"), (5, "create")]);

    let follow = dir.file(&["watch", "--follow"]);
    assert_eq!(follow.code, 2, "{follow:?}");
    assert!(follow.stderr.contains("error: usage: watch --follow on an SQLite file needs the server"), "{follow:?}");
}

/// A `watch --follow` running in the background, read line by line.
struct Follower {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Follower {
    fn start(dir: &TestDir, args: &[&str]) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_guidstore-cli"))
            .args(args)
            .args(["watch", "--follow"])
            .current_dir(dir.path())
            .env_remove("GUIDSTORE_DB")
            .env_remove("GUIDSTORE_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn guidstore-cli watch");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Follower { child, lines }
    }

    /// The next event printed (blocks until it comes).
    fn next(&mut self) -> (u64, String, String) {
        event(&self.lines.next().expect("an event line").expect("read stdout"))
    }

    /// Sends Ctrl-C (SIGINT) and returns the exit code and stderr.
    fn interrupt(mut self) -> (Option<i32>, String) {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait");
        let mut stderr = String::new();
        self.child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
        (status.code(), stderr)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_follow_through_a_server_prints_changes_as_they_happen_and_ctrl_c_exits_0() {
    let dir = TestDir::new();
    let server = TestServer::start(&dir.db, None);
    dir.run(&["--server", &server.url, "create", GUID], &[], b"").record();
    let mut follower = Follower::start(&dir, &["--server", &server.url]);
    assert_eq!(follower.next(), (1, "create".to_owned(), GUID.to_owned()));
    dir.run(&["--server", &server.url, "update", GUID, "--user", "b"], &[], b"").record();
    assert_eq!(follower.next(), (2, "update".to_owned(), GUID.to_owned()));
    // The file is held by the server: watch on it goes through the server too.
    let mut through_file = Follower::start(&dir, &["--db", &dir.db.to_string_lossy()]);
    assert_eq!(through_file.next().0, 1);
    assert_eq!(through_file.next().0, 2);
    assert_eq!(dir.run(&["--server", &server.url, "delete", GUID], &[], b"").code, 0);
    assert_eq!(follower.next(), (3, "delete".to_owned(), GUID.to_owned()));
    assert_eq!(through_file.next().0, 3);
    assert_eq!(follower.interrupt(), (Some(0), "last revision: 3\n".to_owned()));
    assert_eq!(through_file.interrupt(), (Some(0), "last revision: 3\n".to_owned()));
}

#[test]
fn watch_follow_on_a_shared_database_sees_other_processes_writes() {
    for kind in [Kind::Postgres, Kind::Mysql] {
        let Some(db) = TestDb::new(kind) else { continue };
        let dir = TestDir::new();
        let cli = |args: &[&str]| {
            let mut full = vec!["--db", db.url()];
            full.extend_from_slice(args);
            dir.run(&full, &[], b"")
        };
        cli(&["create", GUID]).record();
        let mut follower = Follower::start(&dir, &["--db", db.url()]);
        assert_eq!(follower.next(), (1, "create".to_owned(), GUID.to_owned()));
        cli(&["create", OTHER_GUID]).record();
        assert_eq!(follower.next(), (2, "create".to_owned(), OTHER_GUID.to_owned()));
        assert_eq!(follower.interrupt(), (Some(0), "last revision: 2\n".to_owned()), "{kind:?}");
    }
}
