//! [`Remote`]: a running guidstore-server reached over HTTP/1.1 with hyper's client, in cleartext
//! (`http://`) or over TLS (`https://`, set up by `tls.rs`). It sends requests and turns error
//! answers into [`CliError::Api`] with the server's code, and connection failures (TLS ones with a
//! clear sentence) into [`CliError::Unavailable`]; it does not validate bodies (the server does).

use std::time::Duration;

use guidstore::Code;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderValue, IF_MATCH};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::CliError;
use crate::tls::{TlsOptions, client_config, describe_failure};

/// The largest response body read (a record is at most about the 64 KiB request limit).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// The response body (the record, or empty for a 204).
    pub body: Bytes,
    /// The `ETag` header, if any.
    pub etag: Option<String>,
}

/// A guidstore-server at a base URL.
pub struct Remote {
    base: String,
    token: Option<HeaderValue>,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// A client for the server at `url` (`http://HOST:PORT` or `https://HOST:PORT`, optionally with
    /// a path prefix); `tls` applies to `https://` only.
    pub fn new(url: &str, token: Option<&str>, timeout: Duration, tls: &TlsOptions) -> Result<Remote, CliError> {
        let uri: Uri = url.parse().map_err(|e| CliError::Usage(format!("invalid server URL {url:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => {
                return Err(CliError::Usage(format!("server URL {url:?}: only http:// and https:// are supported")));
            }
            None => return Err(CliError::Usage(format!("server URL {url:?} must start with http:// or https://"))),
        };
        if uri.authority().is_none() || uri.query().is_some() {
            return Err(CliError::Usage(format!("server URL {url:?} must be http[s]://HOST[:PORT][/PREFIX]")));
        }
        let base = url.trim_end_matches('/').to_owned();
        let token = token
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .map_err(|_| CliError::Usage("the token contains characters not allowed in a header".to_owned()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::io("cannot start the HTTP client", e))?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.enforce_http(false);
        // ALPN offers http/1.1 only: one request per run gains nothing from HTTP/2.
        let builder = if https {
            HttpsConnectorBuilder::new().with_tls_config(client_config(tls, &base)?).https_only()
        } else {
            // Never used for TLS: no CA certificates are loaded for an http:// server.
            let unused = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|error| CliError::Unavailable(format!("cannot set up the HTTP client: {error}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(unused).https_or_http()
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Remote { base, token, timeout, client, runtime })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with an optional JSON body and `If-Match`; a 2xx answer is `Ok`.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<Answer, CliError> {
        let request = self.request(method, path, body, if_match)?;
        self.runtime.block_on(self.exchange(request, self.timeout))
    }

    /// `GET path`, answered within `--timeout` plus `extra` (a long poll's wait), inside
    /// [`Remote::block_on`].
    pub async fn get_waiting(&self, path: &str, extra: Duration) -> Result<Answer, CliError> {
        let request = self.request(Method::GET, path, None, None)?;
        self.exchange(request, self.timeout + extra).await
    }

    /// Runs `future` on this client's runtime (signal handlers made inside it keep working
    /// across calls).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        if let Some(if_match) = if_match {
            let value = HeaderValue::from_str(if_match)
                .map_err(|_| CliError::Usage(format!("--if-match {if_match:?} is not a valid header value")))?;
            request = request.header(IF_MATCH, value);
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CliError::Usage(format!("cannot build a request to {url}: {e}")))
    }

    /// Sends `request` and reads its answer within `timeout`; a 2xx answer is `Ok`.
    async fn exchange(&self, request: Request<Full<Bytes>>, timeout: Duration) -> Result<Answer, CliError> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| unreachable(&self.base, &e))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    let sentence = describe_failure(&self.base, &*e);
                    CliError::Unavailable(
                        sentence.unwrap_or_else(|| format!("reading the answer of {}: {e}", self.base)),
                    )
                })?
                .to_bytes();
            Ok::<_, CliError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            CliError::Unavailable(format!("{} did not answer within {} s", self.base, timeout.as_secs()))
        })??;
        if parts.status.is_success() {
            let etag = parts.headers.get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
            return Ok(Answer { body, etag });
        }
        Err(api_error(parts.status, &body))
    }
}

/// A connection failure: a TLS failure as one sentence, anything else with its chain of causes
/// (hyper's top-level message says little).
fn unreachable(base: &str, error: &(dyn std::error::Error + 'static)) -> CliError {
    if let Some(sentence) = describe_failure(base, error) {
        return CliError::Unavailable(sentence);
    }
    let mut message = format!("cannot reach {base}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    CliError::Unavailable(message)
}

/// The error of a non-2xx answer: the code and message of its JSON body, or a code guessed from the
/// status when the body is not the API's (a proxy answered, say).
fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_owned);
    // A code this build does not know (a newer server) counts as `internal`: a failure of the
    // server, exit code 1; its message is still shown.
    let code = field("error").map(|text| Code::parse(&text).unwrap_or(Code::Internal)).unwrap_or(match status {
        StatusCode::UNAUTHORIZED => Code::Unauthorized,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::CONFLICT => Code::AlreadyExists,
        StatusCode::GONE => Code::EventsTruncated,
        StatusCode::PRECONDITION_FAILED => Code::PreconditionFailed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    });
    let message = field("message").unwrap_or_else(|| format!("the server answered {status}"));
    CliError::Api { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_code_and_message() {
        let error = api_error(StatusCode::NOT_FOUND, br#"{"error":"not_found","message":"no record"}"#);
        assert_eq!((error.code(), error.to_string().as_str()), ("not_found", "no record"));
    }

    #[test]
    fn statuses_without_an_api_body_give_a_code() {
        let cases = [
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::CONFLICT, "already_exists"),
            (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (StatusCode::BAD_GATEWAY, "internal"),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ];
        for (status, code) in cases {
            assert_eq!(api_error(status, b"<html>").code(), code, "{status}");
        }
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        let timeout = Duration::from_secs(1);
        let tls = TlsOptions::default();
        for url in ["example.com:80", "", "http://", "https://", "http://h:1/?q=1", "ftp://h", "http://h\u{e9}"] {
            let result = Remote::new(url, None, timeout, &tls);
            assert_eq!(result.err().map(|e| e.code().to_owned()), Some("usage".to_owned()), "{url:?}");
        }
        let remote = Remote::new("http://127.0.0.1:8080/", None, timeout, &tls).map_err(|e| e.to_string());
        assert_eq!(remote.map(|r| r.base().to_owned()), Ok("http://127.0.0.1:8080".to_owned()));
        // An http:// server never needs the TLS files, even broken ones.
        let broken = TlsOptions { cacert: Some("/nonexistent/ca.pem".into()), ..TlsOptions::default() };
        assert!(Remote::new("http://127.0.0.1:8080", None, timeout, &broken).is_ok());
        let error = Remote::new("https://127.0.0.1:8443", None, timeout, &broken).err();
        assert_eq!(error.map(|e| e.code().to_owned()), Some("io".to_owned()));
    }
}
