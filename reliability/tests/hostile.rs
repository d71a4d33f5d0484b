//! Hostile clients against a real `guidstore-server` process: slowloris headers, a 1 GiB
//! `Content-Length`, an endless chunked body, 100,000 nested `[`, random bytes and truncated
//! requests, request smuggling (Content-Length with Transfer-Encoding, duplicate lengths, odd
//! codings), 1,000 pipelined requests, resets and half-closes mid-request. Throughout, ordinary
//! requests must keep getting prompt answers and the process must stay up. (10,000 idle
//! connections: the `idle-connections` binary, see RELIABILITY.md.)

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use guidstore_reliability::rng::Rng;
use guidstore_reliability::server::{Server, ServerConfig, server_binary_for_tests};
use guidstore_testkit::http::{Connection, request_once};

fn start(dir: &tempfile::TempDir, args: &[&str]) -> Server {
    let config = ServerConfig::in_dir(server_binary_for_tests(), dir.path()).args(args.iter().copied());
    Server::start(&config).expect("start guidstore-server")
}

/// A create and a read must be answered, each within `limit`.
fn assert_serving(addr: SocketAddr, limit: Duration) {
    let started = Instant::now();
    let created = request_once(addr, "POST", "/guid", &[], Some(br#"{"user":"still-here"}"#)).expect("create answered");
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let location = created.header("location").expect("Location").to_owned();
    let read = request_once(addr, "GET", &location, &[], None).expect("read answered");
    assert_eq!(read.status, 200);
    assert!(started.elapsed() < limit, "ordinary requests took {:?}", started.elapsed());
}

fn assert_alive(server: &mut Server) {
    assert!(server.try_wait().expect("try_wait").is_none(), "server exited: {}", server.log());
    assert_serving(server.addr(), Duration::from_secs(5));
}

/// Whether the peer has closed `stream` (EOF or reset), waiting at most `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or similar before the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn slowloris_headers_are_cut_off_after_the_header_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &["--header-timeout", "1s"]);
    let addr = server.addr();
    let slow_clients = 20;
    let results: Vec<Option<Duration>> = std::thread::scope(|scope| {
        let slow: Vec<_> = (0..slow_clients)
            .map(|i| {
                scope.spawn(move || {
                    let mut stream = TcpStream::connect(addr).expect("connect");
                    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let started = Instant::now();
                    let mut head = format!("GET /guid/{:032X} HTTP/1.1\r\nHost: 127.0.0.1\r\n", i).into_bytes();
                    // Drip a header byte every 50 ms, forever (bounded: 8 s), never ending the head.
                    head.extend(std::iter::repeat_n(b"X-Slow: a\r\n".iter().copied(), 1000).flatten());
                    for byte in head {
                        if started.elapsed() > Duration::from_secs(8) {
                            return None;
                        }
                        if stream.write_all(&[byte]).is_err() {
                            return Some(started.elapsed());
                        }
                        let mut buffer = [0u8; 1024];
                        match stream.read(&mut buffer) {
                            Ok(0) => return Some(started.elapsed()),
                            Ok(_) => {}
                            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                            Err(_) => return Some(started.elapsed()),
                        }
                    }
                    None
                })
            })
            .collect();
        // Meanwhile, ordinary clients are served promptly.
        for _ in 0..20 {
            assert_serving(addr, Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(50));
        }
        slow.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, closed_after) in results.iter().enumerate() {
        let closed_after = closed_after.unwrap_or_else(|| panic!("slowloris client {i} was never cut off"));
        assert!(
            closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(4),
            "slowloris client {i} cut off after {closed_after:?} (header timeout 1 s)"
        );
    }
    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(4)), "a silent connection was kept open");
    assert_alive(&mut server);
}

#[test]
fn a_one_gibibyte_content_length_gets_413_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &[]);
    for path in ["/guid", "/guid/9094E4C980C74043A4B586B420E69DDF"] {
        for method in ["POST", "PATCH"] {
            if method == "PATCH" && path == "/guid" {
                continue;
            }
            let mut connection = Connection::connect(server.addr(), Duration::from_secs(5)).unwrap();
            let started = Instant::now();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{{\"user\":"
            );
            connection.send_raw(head.as_bytes()).unwrap();
            let response = connection.read_response(false).expect("an answer without sending the body");
            assert_eq!(response.status, 413, "{method} {path}");
            assert_eq!(response.error_code().as_deref(), Some("payload_too_large"));
            assert!(started.elapsed() < Duration::from_secs(1), "413 took {:?}", started.elapsed());
        }
    }
    assert_alive(&mut server);
}

#[test]
fn a_chunked_body_over_the_limit_gets_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &[]);
    let mut connection = Connection::connect(server.addr(), Duration::from_secs(5)).unwrap();
    let head = "POST /guid HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    connection.send_raw(head.as_bytes()).unwrap();
    connection.send_raw(b"9\r\n{\"pad\":\"x\r\n").unwrap();
    // 72 KiB of 8 KiB chunks, past the 64 KiB limit, and the body never ends: the server must
    // answer without waiting for the rest.
    let chunk = format!("2000\r\n{}\r\n", "a".repeat(0x2000));
    for _ in 0..9 {
        if connection.send_raw(chunk.as_bytes()).is_err() {
            break; // the server answered and closed: fine
        }
    }
    let started = Instant::now();
    let response = connection.read_response(false).expect("an answer to the oversized chunked body");
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code().as_deref(), Some("payload_too_large"));
    assert!(started.elapsed() < Duration::from_secs(2), "413 took {:?}", started.elapsed());
    // Just under the limit, chunked, is accepted.
    let mut connection = Connection::connect(server.addr(), Duration::from_secs(5)).unwrap();
    let body = format!("{{\"pad\":\"{}\"}}", "b".repeat(60_000));
    let wire = format!(
        "POST /guid HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    connection.send_raw(wire.as_bytes()).unwrap();
    assert_eq!(connection.read_response(false).unwrap().status, 201);
    assert_alive(&mut server);
}

#[test]
fn deeply_nested_json_gets_400_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &["--max-body", "1048576"]);
    let addr = server.addr();
    let created = request_once(addr, "POST", "/guid", &[], Some(b"{}")).unwrap();
    let location = created.header("location").unwrap().to_owned();
    let brackets = vec![b'['; 100_000];
    let mut objects = "{\"a\":".repeat(100_000).into_bytes();
    objects.extend_from_slice(b"1");
    objects.extend(std::iter::repeat_n(b'}', 100_000));
    let mut in_object = b"{\"a\":".to_vec();
    in_object.extend(std::iter::repeat_n(b'[', 100_000));
    for body in [&brackets, &objects, &in_object] {
        for (method, path) in [("POST", "/guid"), ("PATCH", location.as_str())] {
            let response = request_once(addr, method, path, &[], Some(body)).expect("answered");
            assert_eq!(response.status, 400, "{method} {path}");
            assert_eq!(response.error_code().as_deref(), Some("invalid_json"));
        }
    }
    assert_alive(&mut server);
}

#[test]
fn random_bytes_and_truncated_requests_do_not_hurt_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &["--header-timeout", "1s"]);
    let addr = server.addr();
    let mut rng = Rng::new(0x5EED);
    let good = [
        "POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n{\"user\":\"jay\"} ".to_owned(),
        "GET /guid/9094E4C980C74043A4B586B420E69DDF HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "PATCH /guid/9094E4C980C74043A4B586B420E69DDF HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
            .to_owned(),
    ];
    let nasty: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n".to_vec(),
        b"POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n".to_vec(),
        b"POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(200_000)).into_bytes(),
        b"GET /guid/%41%41 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"\x00\x01\x02\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00garbage".to_vec(),
        b"GET /guid/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    let mut payloads: Vec<Vec<u8>> = nasty;
    for _ in 0..150 {
        let len = rng.below(2048) as usize;
        payloads.push(rng.bytes(len));
    }
    for _ in 0..150 {
        let request = good[rng.below(good.len() as u64) as usize].as_bytes();
        let cut = rng.below(request.len() as u64) as usize;
        payloads.push(request[..cut].to_vec());
    }
    let mut answered_5xx = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = stream.write_all(payload);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 5") {
            answered_5xx.push((i, String::from_utf8_lossy(&answer).into_owned()));
        }
        if answer.starts_with(b"HTTP/1.1 4") {
            // Every 4xx, hyper's own included, carries the JSON error body.
            let response =
                guidstore_testkit::http::read_response(&mut answer.as_slice(), false).expect("a whole answer");
            assert!(response.error_code().is_some(), "payload {i}: a 4xx without the JSON body: {response:?}");
        }
        if i % 50 == 0 {
            assert_alive(&mut server);
        }
    }
    assert!(answered_5xx.is_empty(), "5xx answers to garbage: {answered_5xx:?}");
    assert_alive(&mut server);
    let metrics = request_once(addr, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(metrics.status, 200);
}

#[test]
fn an_http2_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &["--header-timeout", "1s"]);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let closed_after = loop {
        assert!(started.elapsed() < Duration::from_secs(8), "an idle HTTP/2 connection was held for 8 s");
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break started.elapsed(),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break started.elapsed(),
        }
        // Behave like a live client: acknowledge SETTINGS and answer PINGs, but never send a request.
        while let Some(header) = buffer.get(..9) {
            let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let (kind, flags) = (header[3], header[4]);
            let Some(payload) = buffer.get(9..9 + length).map(<[u8]>::to_vec) else { break };
            buffer.drain(..9 + length);
            let reply = match (kind, flags & 1) {
                (4, 0) => Some(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00".to_vec()),
                (6, 0) => Some([&b"\x00\x00\x08\x06\x01\x00\x00\x00\x00"[..], &payload].concat()),
                _ => None,
            };
            if let Some(reply) = reply {
                let _ = stream.write_all(&reply);
            }
        }
    };
    assert!(closed_after < Duration::from_secs(4), "idle HTTP/2 connection closed after {closed_after:?}");
    assert_alive(&mut server);
}

/// Closes `stream` with a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the descriptor is open (owned by `stream`, dropped only after this call), and the
    // option value is a valid `linger` of the size passed.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(stream);
}

/// Sends `bytes` on a fresh connection, half-closes it and reads everything until the server closes.
fn exchange_half_closed(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status codes of every whole response in `answer`, in order; each 4xx must carry the JSON
/// error body.
fn statuses(answer: &str) -> Vec<u16> {
    let mut rest = answer.as_bytes();
    let mut found = Vec::new();
    while let Ok(response) = guidstore_testkit::http::read_response(&mut rest, false) {
        if (400..500).contains(&response.status) {
            assert!(response.error_code().is_some(), "a {} without the JSON error body: {answer:?}", response.status);
        }
        found.push(response.status);
    }
    found
}

#[test]
fn smuggling_attempts_are_refused_or_read_one_way_and_the_smuggled_request_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &[]);
    let addr = server.addr();
    let victim = "9094E4C980C74043A4B586B420E69DDF";
    assert_eq!(request_once(addr, "POST", &format!("/guid/{victim}"), &[], Some(b"{}")).unwrap().status, 201);
    // Each attack hides `DELETE /guid/{victim}` after a chunked body's end, inside what the
    // request's Content-Length covers: a reader of the length sees one request, a reader of the
    // chunks sees two. The server must refuse the request, or read it one way and never run the
    // DELETE (RFC 9112 §6.3: with both, the chunked coding wins and the connection closes after).
    let smuggled = format!("DELETE /guid/{victim} HTTP/1.1\r\nHost: x\r\n\r\n");
    let chunked_then_smuggled = format!("0\r\n\r\n{smuggled}");
    let with_length =
        |head: &str, body: &str| -> String { format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()) };
    let body = chunked_then_smuggled.as_str();
    let attacks: Vec<(&str, String)> = vec![
        (
            "CL + `Transfer-Encoding: chunked` (CL.TE)",
            with_length("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n", body),
        ),
        (
            "`Transfer-Encoding: chunked` then CL, CL = 3 (TE.CL)",
            format!("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{body}"),
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: {}\r\n\r\n{{}}{smuggled}",
                2 + smuggled.len()
            ),
        ),
        (
            "two equal Content-Lengths",
            "POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}".to_owned(),
        ),
        ("`Content-Length: 2, 2`", "POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}".to_owned()),
        ("`Content-Length: +2`", format!("POST /guid HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{{}}{smuggled}")),
        (
            "CL + `Transfer-Encoding: xchunked`",
            with_length("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n", body),
        ),
        (
            "CL + `Transfer-Encoding: chunked, identity`",
            with_length("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n", body),
        ),
        (
            "CL + `Transfer-Encoding: identity`",
            with_length("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n", body),
        ),
        (
            "CL + two TE lines (`chunked`, `identity`)",
            with_length(
                "POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                body,
            ),
        ),
        (
            "CL + `Transfer-Encoding : chunked` (space before the colon)",
            with_length("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n", body),
        ),
        (
            "CL + `Transfer-Encoding:<TAB>CHUNKED`",
            with_length("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tCHUNKED\r\n", body),
        ),
        (
            "CL + obs-fold `Transfer-Encoding:` / ` chunked`",
            with_length("POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n", body),
        ),
        ("CL + chunked in HTTP/1.0", with_length("POST /guid HTTP/1.0\r\nTransfer-Encoding: chunked\r\n", body)),
        (
            "chunk size line ending in a bare LF, with an extension",
            format!(
                "POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;x\n{{}}\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "chunk size overflowing 64 bits",
            format!(
                "POST /guid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF2\r\n{{}}\r\n0\r\n\r\n{smuggled}"
            ),
        ),
    ];
    let mut table = Vec::new();
    for (name, request) in &attacks {
        let answer = exchange_half_closed(addr, request.as_bytes());
        let statuses = statuses(&answer);
        let alive = request_once(addr, "GET", &format!("/guid/{victim}"), &[], None).unwrap();
        eprintln!("{name}: {statuses:?}, victim {}", alive.status);
        assert!(!statuses.iter().any(|status| *status >= 500), "{name}: a 5xx: {answer}");
        assert!(!statuses.contains(&204), "{name}: the smuggled DELETE ran: {answer}");
        assert_eq!(alive.status, 200, "{name}: the victim is gone: {answer}");
        if name.contains("Transfer-Encoding") && statuses.contains(&201) {
            assert!(answer.contains("\r\nconnection: close\r\n"), "{name}: read as chunked, yet kept open: {answer}");
        }
        let codes: Vec<String> = statuses.iter().map(u16::to_string).collect();
        table.push(format!("| {name} | {} |", codes.join(", ")));
    }
    eprintln!("{}", table.join("\n"));
    assert_alive(&mut server);
}

#[test]
fn a_thousand_pipelined_requests_are_all_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &[]);
    let addr = server.addr();
    let mut wire = Vec::new();
    for i in 0..500 {
        let guid = format!("{i:032X}");
        let body = format!(r#"{{"n":{i}}}"#);
        wire.extend_from_slice(
            format!("POST /guid/{guid} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        );
        wire.extend_from_slice(format!("GET /guid/{guid} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    let started = Instant::now();
    let mut connection = Connection::connect(addr, Duration::from_secs(30)).unwrap();
    let writer_stream = connection.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut stream = writer_stream;
        stream.write_all(&wire)
    });
    for i in 0..500 {
        let created = connection.read_response(false).expect("the create's answer");
        assert_eq!(created.status, 201, "request {}", 2 * i);
        let read = connection.read_response(false).expect("the read's answer");
        assert_eq!(read.status, 200, "request {}", 2 * i + 1);
        let record: serde_json::Value = serde_json::from_slice(&read.body).unwrap();
        assert_eq!((record["guid"].as_str(), record["n"].as_u64()), (Some(format!("{i:032X}").as_str()), Some(i)));
    }
    writer.join().unwrap().unwrap();
    let elapsed = started.elapsed();
    eprintln!("1,000 pipelined requests (500 creates, 500 reads) answered in order in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(30));
    assert_alive(&mut server);
}

#[test]
fn resets_mid_request_leave_the_server_serving_and_every_committed_write_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &[]);
    let addr = server.addr();
    let body = br#"{"user":"gone"}"#;
    // Reset while the head, then the body, is being sent: nothing may be created.
    for (i, cut) in [
        "POST /guid/0000000000000000000000000000AA0",
        "POST /guid/0000000000000000000000000000AA01 HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"us",
    ]
    .iter()
    .enumerate()
    {
        for _ in 0..20 {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(cut.as_bytes()).unwrap();
            reset(stream);
        }
        assert_eq!(
            request_once(addr, "GET", "/guid/0000000000000000000000000000AA01", &[], None).unwrap().status,
            404,
            "cut {i}"
        );
    }
    // A whole request, then a reset or a half-close before the answer: the write may or may not
    // have reached the store, but each one that did has its access-log line.
    let mut guids = Vec::new();
    for i in 0..60u32 {
        let guid = format!("{:032X}", 0xB000 + i);
        let request = format!("POST /guid/{guid} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(&[request.as_bytes(), body].concat()).unwrap();
        if i % 2 == 0 {
            reset(stream);
        } else {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            drop(stream);
        }
        guids.push(guid);
    }
    let mut committed = 0;
    for guid in &guids {
        if request_once(addr, "GET", &format!("/guid/{guid}"), &[], None).unwrap().status != 200 {
            continue;
        }
        committed += 1;
        let line = format!("POST /guid/{guid} 201 ");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.log().contains(&line) {
            assert!(Instant::now() < deadline, "{guid} was committed but server.log has no line for it");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("{committed} of {} writes whose client went away were committed; each is logged", guids.len());
    assert_alive(&mut server);
}

#[test]
fn half_closed_clients_get_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &[]);
    let addr = server.addr();
    for i in 0..10u32 {
        let guid = format!("{:032X}", 0xC000 + i);
        let body = r#"{"user":"nc -N"}"#;
        let answer = exchange_half_closed(
            addr,
            format!("POST /guid/{guid} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 201 "), "create {i}: {answer:?}");
        let line = format!("POST /guid/{guid} 201 ");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.log().contains(&line) {
            assert!(Instant::now() < deadline, "no server.log line for {guid}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = exchange_half_closed(addr, format!("{health}{health}").as_bytes());
    assert_eq!(statuses(&answer), [200, 200], "{answer:?}");
    assert_alive(&mut server);
}
