//! HTTPS: round trips over HTTP/1.1 and HTTP/2 chosen by ALPN, client certificates, reloading a
//! changed certificate (on disk, and on SIGHUP, also one sent while the server is starting), the
//! handshake timeout, and clear errors for bad files. Certificates are made at test time (rcgen).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guidstore_server::config::Config;
use guidstore_server::{Tls, TlsFiles};
use guidstore_testkit::client::read_to_close;
use guidstore_testkit::pki::{TestCa, client_config};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{AppOptions, GUID, TestApp, TlsOptions, spawn_app_with};

/// An app serving HTTPS with `tls`, its configuration changed by `change`.
async fn spawn_https_app(tls: TlsOptions, change: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(AppOptions { tls: Some(tls), ..AppOptions::with(change) }).await
}

/// A TLS connection to `app` with `config`; the error as text if the handshake fails.
async fn handshake(
    app: &TestApp,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let stream = TcpStream::connect(app.address).await.unwrap();
    let name = ServerName::IpAddress(app.address.ip().into());
    tokio_rustls::TlsConnector::from(config).connect(name, stream).await.map_err(|error| error.to_string())
}

/// `GET /healthz` over HTTP/1.1 on `stream`; the answer, or the error as text.
async fn healthz_http1(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> Result<String, String> {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(|error| error.to_string())?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The server certificate a new handshake presents.
async fn presented_certificate(app: &TestApp) -> CertificateDer<'static> {
    let tls = app.tls.as_ref().unwrap();
    let stream = handshake(app, tls.client_config(&[])).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

#[tokio::test]
async fn https_serves_http2_or_http1_as_alpn_chooses() {
    let app = spawn_https_app(TlsOptions::default(), |_| {}).await;
    let tls = app.tls.as_ref().unwrap();
    let uri = app.url(&format!("/guid/{GUID}"));
    assert!(uri.starts_with("https://"));

    // A client offering both gets HTTP/2.
    let stream = handshake(&app, client_config(&tls.ca, &[b"h2", b"http/1.1"], None)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::post(&uri).body(Full::new(Bytes::from_static(b"{\"user\":\"tls\"}"))).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (201, hyper::Version::HTTP_2));

    // Offering http/1.1 only, or no ALPN at all, gives HTTP/1.1.
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let stream = handshake(&app, client_config(&tls.ca, alpn, None)).await.unwrap();
        let expected = if alpn.is_empty() { None } else { Some(&b"http/1.1"[..]) };
        assert_eq!(stream.get_ref().1.alpn_protocol(), expected);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        // HTTP/1.1 needs a Host header (RFC 9112 §3.2), which hyper's connection-level client does
        // not add.
        let host = uri.trim_start_matches("https://").split('/').next().unwrap().to_owned();
        let request = Request::get(&uri).header("host", host).body(Full::new(Bytes::new())).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!((response.status().as_u16(), response.version()), (200, hyper::Version::HTTP_11));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.ends_with(b"\"user\":\"tls\"}"), "{body:?}");
    }

    // The harness's pooled client (hyper-rustls) round-trips too.
    assert_eq!(app.get_guid(GUID).await.status, 200);

    // TLS 1.2 clients are served as well.
    let tls12 = ClientConfig::builder_with_provider(guidstore_server::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(tls.ca.roots())
        .with_no_client_auth();
    let stream = handshake(&app, Arc::new(tls12)).await.unwrap();
    assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    let answer = healthz_http1(stream).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_servers_ca_fails_the_handshake() {
    let app = spawn_https_app(TlsOptions::default(), |_| {}).await;
    let error = handshake(&app, client_config(&TestCa::new("some other CA"), &[], None)).await.err();
    assert!(error.as_deref().is_some_and(|e| e.contains("UnknownIssuer")), "{error:?}");
    assert_eq!(app.request("GET", "/healthz", &[], "").await.status, 200);
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_from_it_are_served() {
    let app = spawn_https_app(TlsOptions { client_ca: true, ..TlsOptions::default() }, |_| {}).await;
    let tls = app.tls.as_ref().unwrap();
    // TLS 1.3: the client may finish its side of the handshake before the server refuses, so the
    // refusal shows on the first read at the latest; no HTTP answer ever comes.
    let without = match handshake(&app, client_config(&tls.ca, &[], None)).await {
        Ok(stream) => healthz_http1(stream).await,
        Err(error) => Err(error),
    };
    assert!(without.as_ref().is_err_and(|e| e.contains("CertificateRequired")), "{without:?}");
    let stranger = TestCa::new("another CA").client("stranger");
    let foreign = match handshake(&app, client_config(&tls.ca, &[], Some(&stranger))).await {
        Ok(stream) => healthz_http1(stream).await,
        Err(error) => Err(error),
    };
    assert!(foreign.as_ref().is_err_and(|e| e.contains("UnknownCA")), "{foreign:?}");

    let stream = handshake(&app, tls.client_config(&[])).await.unwrap();
    let answer = healthz_http1(stream).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_presented_by_new_handshakes() {
    let tls_options = TlsOptions { reload_interval: Duration::from_millis(20), ..TlsOptions::default() };
    let app = spawn_https_app(tls_options, |_| {}).await;
    let tls = app.tls.as_ref().unwrap();
    assert_eq!(presented_certificate(&app).await, tls.server.der());
    let mut open = app.connect().await;

    let renewed = tls.ca.server("renewed server");
    // Written in place, key last: a reload may see the new certificate with the old key first
    // (refused, the old pair stays), then the matching key.
    std::fs::write(&tls.files.cert, &renewed.cert_pem).unwrap();
    std::fs::write(&tls.files.key, &renewed.key_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented_certificate(&app).await != renewed.der() {
        assert!(Instant::now() < deadline, "the renewed certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A connection made before the reload goes on.
    open.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    assert!(read_to_close(&mut open).await.unwrap().starts_with("HTTP/1.1 200 "));
}

#[tokio::test]
async fn a_broken_file_at_reload_keeps_the_previous_certificate() {
    let app = spawn_https_app(TlsOptions::default(), |_| {}).await;
    let tls = app.tls.as_ref().unwrap();
    let server_tls = app.state.settings.tls.as_ref().unwrap();
    std::fs::write(&tls.files.key, "-----BEGIN PRIVATE KEY-----\ntruncated").unwrap();
    let error = server_tls.reload_if_changed().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("key file") && error.contains("not valid PEM"), "{error}");
    assert_eq!(presented_certificate(&app).await, tls.server.der());
    // Unchanged since the failed attempt: not retried.
    assert!(!server_tls.reload_if_changed().unwrap());
    // A direct reload (SIGHUP) once the file is fixed.
    std::fs::write(&tls.files.key, &tls.server.key_pem).unwrap();
    server_tls.reload().unwrap();
    assert_eq!(presented_certificate(&app).await, tls.server.der());
}

#[tokio::test]
async fn the_tls_handshake_is_bounded_by_the_header_timeout() {
    let app = spawn_https_app(TlsOptions::default(), |config| config.header_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();
    // No ClientHello at all, and a handshake that stops after the ClientHello's first bytes.
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    let mut stalled = TcpStream::connect(app.address).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    // A completed handshake with no request after it.
    let mut idle = app.connect().await;
    let (silent, stalled, idle) =
        tokio::join!(read_to_close(&mut silent), read_to_close(&mut stalled), read_to_close(&mut idle));
    let (silent, stalled, idle) = (silent.unwrap(), stalled.unwrap(), idle.unwrap());
    assert!(silent.is_empty() && stalled.is_empty(), "{silent:?} {stalled:?}");
    assert!(!idle.starts_with("HTTP/1.1 2"), "{idle}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.request("GET", "/healthz", &[("connection", "close")], "").await.status, 200);
}

#[tokio::test]
async fn plain_http_on_the_https_port_gets_no_answer_and_the_server_goes_on() {
    let app = spawn_https_app(TlsOptions::default(), |_| {}).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut stream).await.unwrap();
    assert!(!answer.contains("HTTP/1.1"), "{answer:?}");
    assert_eq!(app.request("GET", "/healthz", &[], "").await.status, 200);
}

#[test]
fn bad_certificate_or_key_files_give_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (cert, key) = ca.server("server").write(dir.path(), "server");
    let (_, other_key) = ca.server("other").write(dir.path(), "other");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello\n").unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let load = |cert: &std::path::Path, key: &std::path::Path, client_ca: Option<&std::path::Path>| {
        let files =
            TlsFiles { cert: cert.to_owned(), key: key.to_owned(), client_ca: client_ca.map(ToOwned::to_owned) };
        Tls::load(files).err().map(|error| error.to_string())
    };
    assert_eq!(load(&cert, &key, None), None);
    assert_eq!(load(&cert, &key, Some(&ca_file)), None);
    let cases = [
        (load(&junk, &key, None), "the certificate file", "holds no PEM certificate"),
        (load(&cert, &junk, None), "the key file", "holds no private key"),
        (load(&key, &key, None), "the certificate file", "holds no PEM certificate"),
        (load(&cert, &other_key, None), "cannot be used together", "server.pem"),
        (load(&cert, &key, Some(&junk)), "the client CA file", "holds no PEM certificate"),
        (load(&dir.path().join("absent.pem"), &key, None), "cannot read the certificate file", "absent.pem"),
    ];
    for (error, first, second) in cases {
        let error = error.unwrap_or_default();
        assert!(error.contains(first) && error.contains(second), "{error:?} lacks {first:?} and {second:?}");
    }
}

/// Starts the binary with TLS and debug logging; returns it, its URL and the log path.
fn start_https_binary(
    dir: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "debug"])
        .arg("--db")
        .arg(dir.join("guids.db"))
        .arg("--log-file")
        .arg(dir.join("server.log"))
        .env("GUIDSTORE_TLS_CERT", cert)
        .env("GUIDSTORE_TLS_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim_end().strip_prefix("listening on ").unwrap_or_else(|| panic!("stdout: {line:?}")).to_owned();
    (child, url)
}

#[tokio::test]
async fn the_binary_serves_https_reloads_on_sighup_and_logs_handshakes_without_flooding() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("binary CA");
    let first = ca.server("first");
    let (cert, key) = first.write(dir.path(), "server");
    let (mut child, url) = start_https_binary(dir.path(), &cert, &key);
    let address: std::net::SocketAddr =
        url.strip_prefix("https://").unwrap_or_else(|| panic!("{url}")).parse().unwrap();
    assert_eq!(guidstore::lock_owner(dir.path().join("guids.db")).as_deref(), Some(url.as_str()));
    let presented = || async {
        let stream = TcpStream::connect(address).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[b"h2"], None));
        let stream = connector.connect(ServerName::IpAddress(address.ip().into()), stream).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
    };
    assert_eq!(presented().await, first.der());

    // Twenty failing handshakes from one address (cleartext HTTP on the TLS port).
    let started = Instant::now();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        read_to_close(&mut stream).await.unwrap();
    }
    let failing_seconds = started.elapsed().as_secs();

    let second = ca.server("second");
    second.write(dir.path(), "server");
    let status = Command::new("sh").arg("-c").arg(format!("kill -HUP {}", child.id())).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented().await != second.der() {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the certificate");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("sh").arg("-c").arg(format!("kill -TERM {}", child.id())).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());

    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    for expected in ["TLS on: cert=", &format!("listening on {url}"), "received SIGHUP", "TLS: reloaded", "ALPN h2"] {
        assert!(log.contains(expected), "server.log lacks {expected:?}:\n{log}");
    }
    let failures =
        log.lines().filter(|line| line.contains("] TLS handshake with") && line.contains(" failed: ")).count();
    let allowed = usize::try_from(failing_seconds).unwrap() + 1;
    assert!((1..=allowed).contains(&failures), "{failures} failure lines in {failing_seconds} s:\n{log}");
}

#[test]
fn the_binary_refuses_a_bad_key_with_one_error_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (cert, _) = ca.server("server").write(dir.path(), "server");
    let (_, other_key) = ca.server("other").write(dir.path(), "other");
    let output = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(dir.path().join("guids.db"))
        .arg("--log-file")
        .arg(dir.path().join("server.log"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&other_key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|line| line.contains("[ERROR]")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("TLS: the certificate") && errors[0].contains("cannot be used together"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!dir.path().join("guids.db").exists(), "nothing is opened before the TLS files are checked");
}

#[test]
fn a_sighup_while_the_database_is_awaited_does_not_end_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (cert, key) = ca.server("server").write(dir.path(), "server");
    // Nothing listens on port 1: the server retries the database for --db-wait, then exits 1.
    let mut child = Command::new(env!("CARGO_BIN_EXE_guidstore-server"))
        .args(["--listen", "127.0.0.1:0", "--db", "postgres://guidstore@127.0.0.1:1/none", "--db-wait", "2s"])
        .arg("--log-file")
        .arg(dir.path().join("server.log"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("cannot reach database") {
        assert!(stderr.read_line(&mut seen).unwrap() > 0, "stderr ended: {seen}");
    }
    let status = Command::new("sh").arg("-c").arg(format!("kill -HUP {}", child.id())).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    // Exit status 1 after the wait, not death by SIGHUP (which has no exit code).
    assert_eq!(child.wait().unwrap().code(), Some(1), "{seen}{rest}");
    assert!(rest.contains("cannot open database postgres://guidstore@127.0.0.1:1/none"), "{seen}{rest}");
}

#[tokio::test]
async fn the_harness_serves_https_exactly_under_guidstore_test_tls() {
    let app = crate::helpers::spawn_app().await;
    let tls = crate::helpers::tls_mode();
    assert_eq!(app.url("/healthz").starts_with("https://"), tls);
    assert_eq!(app.state.settings.tls.is_some(), tls);
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let cleartext_answer = read_to_close(&mut stream).await.unwrap();
    assert_eq!(cleartext_answer.starts_with("HTTP/1.1 200 "), !tls, "{cleartext_answer:?}");
    assert_eq!(app.request("GET", "/healthz", &[], "").await.status, 200);
}
