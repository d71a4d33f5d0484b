//! The `guidstore-server` binary end to end: the stdout line, server.log, the lock-file owner,
//! authentication from a token file, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use guidstore_testkit::http::request_once;

use crate::helpers::GUID;

#[test]
fn the_binary_prints_its_address_logs_requests_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("guids.db");
    let log = dir.path().join("server.log");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "secret-token-one\n\nsecret-token-two\n").unwrap();
    std::fs::write(&log, "earlier line\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "debug"])
        .arg("--db")
        .arg(&db)
        .arg("--log-file")
        .arg(&log)
        .env("GUIDSTORE_AUTH_TOKEN_FILE", &tokens)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.trim_end().strip_prefix("listening on ").unwrap_or_else(|| panic!("stdout: {line:?}")).to_owned();
    let address: SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();
    assert_eq!(guidstore::lock_owner(&db).as_deref(), Some(url.as_str()));
    // A second server on the held file fails at once (no --db-wait retries: the file is not
    // unreachable, another server holds it).
    let started = std::time::Instant::now();
    let second = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(&db)
        .arg("--log-file")
        .arg(dir.path().join("second.log"))
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(second.stdout.is_empty());
    assert!(String::from_utf8_lossy(&second.stderr).contains(&url), "{}", String::from_utf8_lossy(&second.stderr));

    let authorized = [("Authorization", "Bearer secret-token-two")];
    let created = request_once(address, "POST", &format!("/guid/{GUID}"), &authorized, Some(b"{}")).unwrap();
    assert_eq!(created.status, 201, "{created:?}");
    let wrong = [("Authorization", "Bearer secret-token-bad")];
    let refused = request_once(address, "GET", "/metrics", &wrong, None).unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    let health = request_once(address, "GET", "/healthz", &[], None).unwrap();
    assert_eq!(health.status, 200, "{health:?}");

    // The shell's built-in kill: no dependency on a kill binary or on libc.
    let status = Command::new("sh").arg("-c").arg(format!("kill -TERM {}", child.id())).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "", "stdout has exactly one line");
    assert_eq!(guidstore::lock_owner(&db), None);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("earlier line\n"), "the log was truncated:\n{text}");
    for expected in [
        "starting guidstore-server",
        &format!("listening on {url}"),
        "authentication on: 2 bearer tokens accepted",
        &format!("POST /guid/{GUID} 201 "),
        "GET /metrics 401 ",
        "GET /healthz 200 ",
        "unauthorized",
        "received SIGTERM",
        "closed; shutdown complete",
    ] {
        assert!(text.contains(expected), "server.log lacks {expected:?}:\n{text}");
    }
    assert!(!text.contains("secret-token"), "a token leaked into the log:\n{text}");
    let request_line = text.lines().find(|l| l.contains(&format!("POST /guid/{GUID} 201"))).unwrap();
    assert!(request_line.contains("ms 127.0.0.1:"), "{request_line}");
}

#[test]
fn the_binary_refuses_an_empty_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "\n  \n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(dir.path().join("guids.db"))
        .arg("--log-file")
        .arg(dir.path().join("server.log"))
        .arg("--auth-token-file")
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds no token"));
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_guidstore-server")).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for env in ["GUIDSTORE_LISTEN", "GUIDSTORE_DB", "GUIDSTORE_LOG_FILE", "GUIDSTORE_AUTH_TOKEN_FILE", "GUIDSTORE_SYNC"]
    {
        assert!(help.contains(env), "{env} missing:\n{help}");
    }
}
