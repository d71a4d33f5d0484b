//! The command line itself: help, version, completions and usage errors (exit 2, no panic).

use crate::helpers::{GUID, TestDir};

#[test]
fn help_documents_the_exit_codes_and_exits_0() {
    let dir = TestDir::new();
    let help = dir.run(&["--help"], &[], b"");
    assert_eq!(help.code, 0);
    for text in [
        "Exit codes:",
        "0  success",
        "1  store",
        "2  usage",
        "3  not found",
        "4  already exists",
        "--db",
        "--server",
        "https://",
        "--cacert",
        "GUIDSTORE_CACERT",
        "--insecure",
        "--client-cert",
        "--client-key",
    ] {
        assert!(help.stdout.contains(text), "{text:?} missing from --help");
    }
    assert_eq!(dir.run(&["update", "--help"], &[], b"").code, 0);
    let version = dir.run(&["--version"], &[], b"");
    assert_eq!((version.code, version.stdout.starts_with("guidstore-cli ")), (0, true));
}

#[test]
fn usage_errors_exit_2() {
    let dir = TestDir::new();
    let cases: &[&[&str]] = &[
        &[],
        &["--bogus", "get", GUID],
        &["get"],
        &["frobnicate"],
        &["get", GUID, "extra"],
        &["create", "--timeout", "soon"],
        &["completions", "tcsh"],
        &["--db", "a.db", "--server", "http://127.0.0.1:1", "get", GUID],
    ];
    for args in cases {
        let run = dir.run(args, &[], b"");
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("error"), "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?}");
    }
    assert!(!dir.path().join("guidstore.db").exists(), "no usage error touches the database");
}

#[test]
fn non_utf8_arguments_exit_2_without_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TestDir::new();
    let junk = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    for args in [vec![junk], vec!["get".as_ref(), junk], vec!["create".as_ref(), "--set".as_ref(), junk]] {
        let run = dir.run(&args, &[], b"");
        assert_eq!(run.code, 2, "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    let dir = TestDir::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = dir.run(&["completions", shell], &[], b"");
        assert_eq!(run.code, 0, "{shell}: {run:?}");
        assert!(run.stdout.contains("guidstore-cli") && run.stdout.contains("--if-match"), "{shell}");
    }
}
