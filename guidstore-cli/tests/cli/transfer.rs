//! `export` and `import`: NDJSON out of and into any backend, the conflict rule, a bad line, and
//! what a bad, unreachable or refusing database URL says.

use guidstore_testkit::db::{Kind, TestDb};

use crate::helpers::{GUID, OTHER_GUID, TestDir};

/// A record line as export prints it, expiring far in the future.
fn line(guid: &str, user: &str) -> String {
    format!(r#"{{"guid":"{guid}","expire":"4000000000","user":"{user}","n":12345678901234567890}}"#)
}

#[test]
fn a_registry_moves_from_sqlite_to_postgres_to_mariadb_and_back_byte_for_byte() {
    let dir = TestDir::new();
    let (Some(postgres), Some(mariadb)) = (TestDb::new(Kind::Postgres), TestDb::new(Kind::Mysql)) else { return };
    for n in 0..300 {
        let created = dir.db(&["create", "--user", &format!("user {n}"), "--set", "tags=[\"a\",{\"b\":null}]"]);
        assert_eq!(created.code, 0, "{created:?}");
    }
    let exported = dir.db(&["export"]);
    assert_eq!((exported.code, exported.stdout.lines().count()), (0, 300), "{exported:?}");
    let back = dir.path().join("back.db").to_string_lossy().into_owned();
    let mut current = exported.stdout.clone();
    for target in [postgres.url(), mariadb.url(), back.as_str()] {
        let imported = dir.run(&["--db", target, "import"], &[], current.as_bytes());
        assert_eq!(imported.code, 0, "{imported:?}");
        assert!(imported.stderr.contains("300 created"), "{imported:?}");
        let again = dir.run(&["--db", target, "export"], &[], b"");
        assert_eq!(again.stdout, exported.stdout, "export of {target} differs");
        current = again.stdout;
    }
}

#[test]
fn import_reads_a_file_is_idempotent_and_follows_the_conflict_rule() {
    let dir = TestDir::new();
    let file = dir.path().join("records.ndjson");
    std::fs::write(&file, format!("{}\n{}\n", line(GUID, "a"), line(OTHER_GUID, "b"))).unwrap();
    let first = dir.file(&[std::ffi::OsStr::new("import"), file.as_os_str()]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stderr.contains("imported 2 lines: 2 created"), "{first:?}");
    let again = dir.file(&[std::ffi::OsStr::new("import"), file.as_os_str()]);
    assert!(again.stderr.contains("0 created, 0 replaced, 2 unchanged"), "{again:?}");
    assert_eq!(dir.file(&["get", GUID]).record()["n"].to_string(), "12345678901234567890");

    let changed = line(GUID, "changed");
    let conflict =
        dir.run(&[std::ffi::OsStr::new("--db"), dir.db.as_os_str(), "import".as_ref()], &[], changed.as_bytes());
    conflict.assert_error(4, "already_exists");
    assert!(conflict.stderr.contains("line 1"), "{conflict:?}");
    let args = |rule: &str| {
        vec![
            "--db".to_owned(),
            dir.db.to_string_lossy().into_owned(),
            "import".into(),
            "--on-conflict".into(),
            rule.into(),
        ]
    };
    let skipped = dir.run(&args("skip"), &[], changed.as_bytes());
    assert!(skipped.stderr.contains("1 skipped"), "{skipped:?}");
    assert_eq!(dir.file(&["get", GUID]).record()["user"], "a");
    let replaced = dir.run(&args("replace"), &[], changed.as_bytes());
    assert!(replaced.stderr.contains("1 replaced"), "{replaced:?}");
    assert_eq!(dir.file(&["get", GUID]).record()["user"], "changed");
}

#[test]
fn a_bad_line_names_its_number_and_writes_nothing_of_its_batch() {
    let dir = TestDir::new();
    let input = format!("{}\n{{\"guid\":\"{OTHER_GUID}\",\"expire\":\"soon\"}}\n", line(GUID, "a"));
    let run = dir.run(&[std::ffi::OsStr::new("--db"), dir.db.as_os_str(), "import".as_ref()], &[], input.as_bytes());
    run.assert_error(2, "invalid_expire");
    assert!(run.stderr.starts_with("error: invalid_expire: line 2: "), "{run:?}");
    dir.db(&["get", GUID]).assert_error(3, "not_found");
}

#[test]
fn a_bad_url_an_unknown_scheme_and_an_unreachable_or_refusing_database_each_say_so_in_one_line() {
    let dir = TestDir::new();
    let cases = [
        ("redis://127.0.0.1/0", 2, "usage", "unknown scheme"),
        ("postgres://127.0.0.1:notaport/x", 2, "usage", "invalid database URL"),
        ("postgres://postgres:hunter2@127.0.0.1:1/x", 1, "unavailable", "cannot connect"),
        ("mysql://root:hunter2@127.0.0.1:1/x", 1, "unavailable", "cannot connect"),
        ("postgres://postgres@127.0.0.1:5432/guidstore_no_such_database", 1, "internal", "does not exist"),
        ("mysql://root@127.0.0.1:3306/guidstore_no_such_database", 1, "internal", "Unknown database"),
        ("mysql://guidstore_no_such_user:hunter2@127.0.0.1:3306/test", 1, "internal", "Access denied"),
    ];
    for (url, exit, code, says) in cases {
        let run = dir.run(&["--db", url, "get", GUID], &[], b"");
        run.assert_error(exit, code);
        assert!(run.stderr.contains(says), "{url}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{url}: {run:?}");
        assert!(!run.stderr.contains("hunter2"), "{url}: the password was printed: {run:?}");
    }
}
