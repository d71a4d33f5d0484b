//! Async helpers for tests that run a server in their own tokio runtime: [`Client`], hyper's
//! client, for every well-formed request, and raw connections to the same server
//! ([`Client::connect`]) for tests that write bytes themselves, read back with [`read_response`]
//! (parsed by the one parser of [`crate::http::read_response`]) or [`read_to_close`].
//!
//! With feature `tls`, [`Client::with_tls`] makes the same client speak HTTPS: the pooled requests
//! through hyper-rustls, the raw connections through tokio-rustls with the ALPN protocol asked for.
//! A test then runs unchanged over TLS.

use std::io;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::http::Response;

/// How long a raw read waits for the server before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The failure of a request sent with [`Client`].
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// A raw connection: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What a raw connection is for. Over TLS it is the one ALPN protocol offered (so the server picks
/// it); in cleartext the server tells the protocols apart by their first bytes, and it changes
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (ALPN `http/1.1`).
    Http1,
    /// HTTP/2 (ALPN `h2`).
    Http2,
}

impl Protocol {
    /// Its ALPN name.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        }
    }
}

/// hyper's HTTP/1.1 client (with its connection pool) for one server, over HTTP or HTTPS. Cheap to
/// clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    transport: Transport,
}

#[derive(Debug, Clone)]
enum Transport {
    Plain(hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>),
    #[cfg(feature = "tls")]
    Tls {
        client: hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
        /// The configuration raw connections start from (their ALPN is set per connection).
        config: Arc<rustls::ClientConfig>,
    },
}

impl Client {
    /// A client for the server at `base` (`http://HOST:PORT`).
    pub fn new(base: impl Into<String>) -> Client {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        Client { base: base.into(), transport: Transport::Plain(client) }
    }

    /// A client for the HTTPS server at `base` (`https://HOST:PORT`), with `config`'s trust roots
    /// and client certificate (its ALPN list is ignored: requests offer none and get HTTP/1.1, raw
    /// connections offer the one [`Protocol`] asked for).
    #[cfg(feature = "tls")]
    pub fn with_tls(base: impl Into<String>, config: Arc<rustls::ClientConfig>) -> Client {
        let mut config = Arc::unwrap_or_clone(config);
        // hyper-rustls refuses a configuration with ALPN set; without it, the server speaks HTTP/1.1.
        config.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config.clone())
            .https_only()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Client { base: base.into(), transport: Transport::Tls { client, config: Arc::new(config) } }
    }

    /// The server's URL, `http://HOST:PORT` or `https://HOST:PORT`.
    pub fn base(&self) -> &str {
        &self.base
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
        let request = builder.body(Full::new(body.into()))?;
        let response = match &self.transport {
            Transport::Plain(client) => client.request(request).await?,
            #[cfg(feature = "tls")]
            Transport::Tls { client, .. } => client.request(request).await?,
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        Ok(Response { status: parts.status.as_u16(), headers, body: body.to_vec() })
    }

    /// A new connection to the server, outside the pool, for `protocol`: TCP, or over HTTPS a
    /// completed TLS handshake offering `protocol`'s ALPN name.
    pub async fn connect(&self, protocol: Protocol) -> io::Result<Box<dyn Stream>> {
        let (authority, host) = self.authority()?;
        let stream = TcpStream::connect(authority).await?;
        match &self.transport {
            Transport::Plain(_) => {
                // In cleartext the server sniffs the protocol, and the host name is TLS's only.
                let _ = (protocol, host);
                Ok(Box::new(stream))
            }
            #[cfg(feature = "tls")]
            Transport::Tls { config, .. } => {
                let mut config = rustls::ClientConfig::clone(config);
                config.alpn_protocols = vec![protocol.alpn().to_vec()];
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await?;
                Ok(Box::new(stream))
            }
        }
    }

    /// `HOST:PORT` and `HOST` (without an IPv6 address's brackets) of the base URL.
    fn authority(&self) -> io::Result<(&str, &str)> {
        let rest = self.base.strip_prefix("https://").or_else(|| self.base.strip_prefix("http://"));
        let authority = rest.and_then(|rest| rest.split('/').next()).filter(|authority| !authority.is_empty());
        let authority = authority.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("not an http:// or https:// URL: {:?}", self.base))
        })?;
        let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
        let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
        Ok((authority, host))
    }
}

/// Reads one HTTP/1.1 response from `stream` (at most 10 s): bytes are read until the parser has a
/// whole response. Bytes after it are lost, so use it for the last response expected; a body
/// framed by neither `Content-Length` nor chunked coding needs [`read_to_close`].
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin + ?Sized)) -> io::Result<Response> {
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
pub async fn read_to_close(stream: &mut (impl AsyncRead + Unpin + ?Sized)) -> io::Result<String> {
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
