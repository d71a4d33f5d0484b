//! The one HTTP/1.1 response parser of the tests ([`read_response`]) and a minimal blocking client
//! over `std::net::TcpStream` built on it: keep-alive, `Content-Length` and chunked response bodies,
//! `HEAD`, and raw writes for hostile tests. It never follows redirects and never retries: a test
//! must know whether a request was answered.
//!
//! Every client of the testkit (this one, and hyper's in `client`) returns a [`Response`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The longest status or header line read.
const MAX_LINE: u64 = 65_536;

/// An HTTP response as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (decoded from chunked transfer coding when used).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing the body, if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// The `error` code of a JSON error body.
    pub fn error_code(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        body.get("error")?.as_str().map(str::to_owned)
    }

    /// Whether the server asked to close the connection.
    pub fn closes_connection(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// Asserts an error response of the guidstore API: this status, `Content-Type:
    /// application/json`, and a body of exactly `error` (this code) and a non-empty `message`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {:?}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
        assert_eq!(body.as_object().map(serde_json::Map::len), Some(2), "body: {body}");
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the response ends early")
}

/// A keep-alive connection to one server.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<TcpStream>,
    closed: bool,
}

impl Connection {
    /// Connects to `addr`, with `timeout` for the connect and for each read and write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Connection { reader: BufReader::new(stream), closed: false })
    }

    /// Whether the server closed (or asked to close) this connection: open a new one.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The socket, for raw writes and timeouts.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Sends one request and reads its response. `headers` are sent as given; `Host` and, with a
    /// body, `Content-Length` are added.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.send_raw(&bytes)?;
        self.read_response(method == "HEAD")
    }

    /// Writes raw bytes to the socket.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let result = self.reader.get_mut().write_all(bytes).and_then(|()| self.reader.get_mut().flush());
        if result.is_err() {
            self.closed = true;
        }
        result
    }

    /// Reads one response (of a `HEAD` request when `head` is true: no body).
    pub fn read_response(&mut self, head: bool) -> io::Result<Response> {
        let result = read_response(&mut self.reader, head);
        match &result {
            Ok(response) if response.closes_connection() => self.closed = true,
            Ok(_) => {}
            Err(_) => self.closed = true,
        }
        result
    }

    /// Reads until the server closes the connection or `limit` bytes arrived; returns what came.
    pub fn read_to_close(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buffer = [0u8; 4096];
        while out.len() < limit {
            let n = self.reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(buffer.get(..n).unwrap_or_default());
        }
        self.closed = true;
        Ok(out)
    }
}

/// One line without its `\r\n`. A line cut off by the end of the input is `UnexpectedEof` (more
/// may come); a line longer than [`MAX_LINE`] is `InvalidData`.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(if n as u64 == MAX_LINE { invalid("response line too long") } else { truncated() });
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("response head is not UTF-8"))
}

/// Reads one HTTP/1.1 response from `reader` (of a `HEAD` request when `head` is true: no body).
///
/// The body is framed by `Transfer-Encoding: chunked` or `Content-Length`, or else runs to the end
/// of the input. A response cut off by the end of the input fails with `UnexpectedEof` (so a
/// caller that buffers can read more and try again); anything that is not HTTP/1.x with
/// `InvalidData`.
pub fn read_response(reader: &mut impl BufRead, head: bool) -> io::Result<Response> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size_text = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk)?;
            response.body.extend_from_slice(&chunk);
            read_line(reader)?;
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| invalid("bad Content-Length"))?;
        response.body.resize(length, 0);
        reader.read_exact(&mut response.body)?;
    } else {
        reader.read_to_end(&mut response.body)?;
    }
    Ok(response)
}

/// One request on a fresh connection (`Connection: close`).
pub fn request_once(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let mut connection = Connection::connect(addr, Duration::from_secs(10))?;
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("Connection", "close"));
    connection.request(method, path, &all, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_length_and_chunked_bodies() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nETag: \"a\"\r\n\r\n{}HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let mut reader = &wire[..];
        let first = read_response(&mut reader, false).unwrap();
        assert_eq!((first.status, first.body.as_slice(), first.header("ETag")), (200, &b"{}"[..], Some("\"a\"")));
        let second = read_response(&mut reader, false).unwrap();
        assert_eq!((second.status, second.body.as_slice()), (201, &b"abcde"[..]));
    }

    #[test]
    fn head_and_204_have_no_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut reader = &wire[..];
        assert_eq!(read_response(&mut reader, true).unwrap().body, b"");
        assert_eq!(read_response(&mut reader, false).unwrap().status, 204);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(read_response(&mut &b"SSH-2.0\r\n\r\n"[..], false).is_err());
        assert!(read_response(&mut &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"[..], false).is_err());
        assert!(read_response(&mut &b""[..], false).is_err());
    }

    #[test]
    fn a_cut_off_response_is_unexpected_eof_and_garbage_is_invalid_data() {
        let complete = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for end in 0..complete.len() {
            let error = read_response(&mut &complete[..end], false).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "cut at {end}");
        }
        assert!(read_response(&mut &complete[..], false).is_ok());
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(70_000));
        assert_eq!(read_response(&mut long.as_bytes(), false).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(read_response(&mut &b"SSH-2.0\r\n"[..], false).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn error_bodies_of_the_api_are_checked_whole() {
        let wire = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 41\r\n\r\n{\"error\":\"not_found\",\"message\":\"no such\"}";
        let response = read_response(&mut &wire[..], false).unwrap();
        assert_eq!(response.error_code().as_deref(), Some("not_found"));
        response.assert_error(404, "not_found");
    }
}
