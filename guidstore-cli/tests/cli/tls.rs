//! `--server https://...`: trusting the server's CA with `--cacert` (or `GUIDSTORE_CACERT`), a
//! certificate from an unknown CA refused, `--insecure` (works, warns every time), client
//! certificates, and `--db` on a file held by an HTTPS server. Certificates are made at test time.

use guidstore_server::TlsFiles;
use guidstore_testkit::pki::TestCa;

use crate::helpers::{GUID, OTHER_GUID, TestDir, TestServer};

/// A CA, written to `ca.pem` in `dir`, and a server over `dir`'s database with a certificate from it.
fn https_server(dir: &TestDir, client_ca: bool) -> (TestCa, TestServer) {
    let ca = TestCa::new("cli test CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let (cert, key) = ca.server("cli test server").write(dir.path(), "server");
    let server = TestServer::start_https(&dir.db, TlsFiles { cert, key, client_ca: client_ca.then_some(ca_file) });
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    (ca, server)
}

#[test]
fn every_command_works_over_https_with_the_servers_ca() {
    let dir = TestDir::new();
    let (_ca, server) = https_server(&dir, false);
    let url = server.url.as_str();
    let cli = |args: &[&str]| {
        let mut full = vec!["--server", url, "--cacert", "ca.pem"];
        full.extend_from_slice(args);
        dir.run(&full, &[], b"")
    };
    let created = cli(&["create", GUID, "--user", "Jay", "--etag"]).record();
    assert_eq!(created["user"], "Jay");
    assert_eq!(cli(&["get", GUID]).record(), created);
    assert_eq!(cli(&["update", GUID, "--set", "team=ops"]).record()["team"], "ops");
    cli(&["get", OTHER_GUID]).assert_error(3, "not_found");
    cli(&["create", GUID]).assert_error(4, "already_exists");
    let deleted = cli(&["delete", GUID]);
    assert_eq!((deleted.code, deleted.stdout.as_str(), deleted.stderr.as_str()), (0, "", ""));
    // The CA from the environment, and a server found through the database's lock file.
    dir.run(&["--server", url, "create", OTHER_GUID], &[("GUIDSTORE_CACERT", "ca.pem")], b"").record();
    let held = dir.file(&["get", OTHER_GUID, "--cacert", "ca.pem", "-v"]);
    held.record();
    assert!(held.stderr.contains(&format!("is held by {url}")), "{held:?}");
}

#[test]
fn a_certificate_not_signed_by_a_trusted_ca_exits_1_unavailable() {
    let dir = TestDir::new();
    let (_ca, server) = https_server(&dir, false);
    TestCa::new("some other CA").write(&dir.path().join("other-ca.pem"));
    for extra in [&["--cacert", "other-ca.pem"][..], &[]] {
        let mut args = vec!["--server", server.url.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["get", GUID]);
        let run = dir.run(&args, &[], b"");
        run.assert_error(1, "unavailable");
        assert!(run.stderr.contains("is not signed by a trusted CA") && run.stderr.contains("--cacert"), "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
    // Bad --cacert files are the user's to fix.
    dir.run(&["--server", &server.url, "--cacert", "server-key.pem", "get", GUID], &[], b"").assert_error(2, "usage");
    dir.run(&["--server", &server.url, "--cacert", "absent.pem", "get", GUID], &[], b"").assert_error(1, "io");
}

#[test]
fn insecure_accepts_any_certificate_and_warns_every_time() {
    let dir = TestDir::new();
    let (_ca, server) = https_server(&dir, false);
    for command in [&["create", GUID][..], &["get", GUID]] {
        let mut args = vec!["--server", server.url.as_str(), "--insecure"];
        args.extend_from_slice(command);
        let run = dir.run(&args, &[], b"");
        assert_eq!(run.record()["guid"], GUID);
        assert!(run.stderr.starts_with("WARNING: --insecure: the TLS certificate of https://"), "{run:?}");
        assert!(run.stderr.contains("NOT verified"), "{run:?}");
    }
    let both = dir.run(&["--server", &server.url, "--insecure", "--cacert", "ca.pem", "get", GUID], &[], b"");
    assert_eq!(both.code, 2, "{both:?}");
    let help = dir.run(&["--help"], &[], b"");
    assert!(help.stdout.contains("do not verify the https:// server's certificate"), "{help:?}");
}

#[test]
fn a_server_requiring_client_certificates_gets_one_from_client_cert() {
    let dir = TestDir::new();
    let (ca, server) = https_server(&dir, true);
    ca.client("cli user").write(dir.path(), "client");
    let url = server.url.as_str();
    let without = dir.run(&["--server", url, "--cacert", "ca.pem", "get", GUID], &[], b"");
    without.assert_error(1, "unavailable");
    assert!(without.stderr.contains("requires a client certificate"), "{without:?}");
    let with = ["--server", url, "--cacert", "ca.pem", "--client-cert", "client.pem", "--client-key", "client-key.pem"];
    dir.run(&[&with[..], &["create", GUID]].concat(), &[], b"").record();
    let stranger = TestCa::new("stranger CA").client("stranger");
    stranger.write(dir.path(), "stranger");
    let foreign = ["--server", url, "--cacert", "ca.pem", "--client-cert", "stranger.pem", "--client-key"];
    let run = dir.run(&[&foreign[..], &["stranger-key.pem", "get", GUID]].concat(), &[], b"");
    run.assert_error(1, "unavailable");
    let half = dir.run(&["--server", url, "--client-cert", "client.pem", "get", GUID], &[], b"");
    assert!(half.code == 2 && half.stderr.contains("--client-key"), "{half:?}");
}
