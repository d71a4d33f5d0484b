//! Async helpers for tests that run a server in their own tokio runtime: [`Client`], hyper's
//! client, for every well-formed request, and raw reads on a `tokio::net::TcpStream` for tests
//! that write bytes themselves ([`read_response`], parsed by the one parser of
//! [`crate::http::read_response`], and [`read_to_close`]).

use std::io;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::http::Response;

/// How long a raw read waits for the server before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The failure of a request sent with [`Client`].
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's HTTP/1.1 client (with its connection pool) for one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    client: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for the server at `base` (`http://HOST:PORT`).
    pub fn new(base: impl Into<String>) -> Client {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        Client { base: base.into(), client }
    }

    /// Sends `method path` with these headers and body, and reads the whole response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Response, ClientError> {
        let mut builder = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self.client.request(builder.body(Full::new(body.into()))?).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        Ok(Response { status: parts.status.as_u16(), headers, body: body.to_vec() })
    }
}

/// Reads one HTTP/1.1 response from `stream` (at most 10 s): bytes are read until the parser has a
/// whole response. Bytes after it are lost, so use it for the last response expected; a body
/// framed by neither `Content-Length` nor chunked coding needs [`read_to_close`].
pub async fn read_response(stream: &mut TcpStream) -> io::Result<Response> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match crate::http::read_response(&mut received.as_slice(), false) {
            Ok(response) => return Ok(response),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(error) => return Err(error),
        }
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buffer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no whole response within 10 s"))??;
        if n == 0 {
            let message = format!("connection closed mid-response: {:?}", String::from_utf8_lossy(&received));
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
        }
        received.extend_from_slice(buffer.get(..n).unwrap_or_default());
    }
}

/// Reads until the peer closes (or resets) the connection, at most 10 s; what arrived, as text.
/// `Err(TimedOut)` (with what arrived) if the server kept the connection open.
pub async fn read_to_close(stream: &mut TcpStream) -> io::Result<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(buffer.get(..n).unwrap_or_default()),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received).into_owned();
    match read {
        Ok(()) => Ok(text),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the server did not close the connection; got {text:?}"),
        )),
    }
}
