//! [`ApiError`]: every way a request can fail, and the one place that turns a failure into an HTTP
//! status and a JSON error body (`{"error": code, "message": text}`).
//!
//! Library errors keep their stable [`guidstore::Code`]; [`status_of`] maps every code to a
//! status with an exhaustive `match`, so a new code cannot silently become a 500. A 5xx body never
//! carries the cause: the cause goes to the log (see `routes.rs`). It builds its responses with
//! `response`; it knows nothing of routing.

use guidstore::Code;
use hyper::StatusCode;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};

use crate::response::{Body, json_response};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A rule of the registry: bad input, missing record, conflict, storage fault.
    #[error(transparent)]
    Store(#[from] guidstore::Error),
    /// No resource at this path.
    #[error("no resource at {0}")]
    UnknownPath(String),
    /// The path exists but not for this method.
    #[error("method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed {
        /// The method asked for.
        method: hyper::Method,
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// The body is larger than `--max-body`.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A query parameter or header value that is not valid.
    #[error("{0}")]
    InvalidQuery(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The body could not be read (the client broke off, or bad chunked encoding).
    #[error("could not read the request body: {0}")]
    BodyRead(#[source] hyper::Error),
    /// Storage did not answer a health check.
    #[error("health check failed: {0}")]
    Unhealthy(#[source] guidstore::Error),
    /// A blocking store task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The HTTP status of an error code: the single mapping from the stable codes to statuses.
pub fn status_of(code: Code) -> StatusCode {
    match code {
        Code::InvalidGuid
        | Code::InvalidExpire
        | Code::InvalidMetadata
        | Code::InvalidJson
        | Code::InvalidQuery
        | Code::GuidMismatch
        | Code::GuidImmutable => StatusCode::BAD_REQUEST,
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::EventsTruncated => StatusCode::GONE,
        Code::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The stable machine code of the error body.
    pub fn code(&self) -> Code {
        match self {
            ApiError::Store(error) => error.code(),
            ApiError::UnknownPath(_) => Code::NotFound,
            ApiError::MethodNotAllowed { .. } => Code::MethodNotAllowed,
            ApiError::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            ApiError::Unauthorized => Code::Unauthorized,
            ApiError::InvalidQuery(_) => Code::InvalidQuery,
            ApiError::BodyRead(_) => Code::InvalidJson,
            ApiError::Unhealthy(_) => Code::Unavailable,
            ApiError::Task(_) => Code::Internal,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        status_of(self.code())
    }

    /// The message of the error body: the cause for a 4xx, a generic text for a 5xx.
    pub fn message(&self) -> String {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => "the service is temporarily unavailable; retry later".to_owned(),
            status if status.is_server_error() => "internal server error".to_owned(),
            _ => self.to_string(),
        }
    }

    /// The response: status, JSON body, and `Allow` / `WWW-Authenticate` where they apply.
    pub fn into_response(self) -> hyper::Response<Body> {
        let body = serde_json::json!({ "error": self.code().as_str(), "message": self.message() }).to_string();
        let mut response = json_response(self.status(), body.into());
        let headers = response.headers_mut();
        match &self {
            ApiError::MethodNotAllowed { allow, .. } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"guidstore\""));
            }
            _ => {}
        }
        debug_assert!(headers.contains_key(CONTENT_TYPE));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guidstore::Guid;
    use http_body_util::BodyExt;

    fn guid() -> Guid {
        Guid::parse("9094E4C980C74043A4B586B420E69DDF").unwrap()
    }

    /// A storage fault that clears by itself (answered 503).
    fn unavailable() -> guidstore::Error {
        guidstore::Error::Locked { path: "/secret/path.db".into(), owner: Some("http://x".to_owned()) }
    }

    /// Any other storage failure (answered 500), with internals in its text.
    fn internal() -> guidstore::Error {
        guidstore::Error::Open {
            path: "/secret/path.db".into(),
            source: std::io::Error::other("SELECT secret FROM records").into(),
        }
    }

    #[test]
    fn library_codes_map_to_the_documented_statuses() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (guidstore::Error::InvalidGuid(guidstore::GuidError::Length(3)).into(), 400, "invalid_guid"),
            (guidstore::Error::InvalidMetadata("user".into()).into(), 400, "invalid_metadata"),
            (guidstore::Error::InvalidJson("x".into()).into(), 400, "invalid_json"),
            (guidstore::Error::GuidMismatch { path: guid(), body: "x".into() }.into(), 400, "guid_mismatch"),
            (guidstore::Error::GuidImmutable(guid()).into(), 400, "guid_immutable"),
            (guidstore::Error::NotFound(guid()).into(), 404, "not_found"),
            (guidstore::Error::AlreadyExists(guid()).into(), 409, "already_exists"),
            (guidstore::Error::PreconditionFailed(guid()).into(), 412, "precondition_failed"),
            (guidstore::Error::Closed.into(), 503, "unavailable"),
            (unavailable().into(), 503, "unavailable"),
            (internal().into(), 500, "internal"),
            (ApiError::UnknownPath("/x".into()), 404, "not_found"),
            (ApiError::MethodNotAllowed { method: hyper::Method::PUT, allow: "POST" }, 405, "method_not_allowed"),
            (ApiError::PayloadTooLarge { limit: 10 }, 413, "payload_too_large"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::Unhealthy(guidstore::Error::Closed), 503, "unavailable"),
        ];
        for (error, status, code) in cases {
            assert_eq!((error.status().as_u16(), error.code().as_str()), (status, code), "{error:?}");
        }
    }

    #[tokio::test]
    async fn server_error_bodies_hide_the_cause() {
        let response = ApiError::from(internal()).into_response();
        assert_eq!(response.status(), 500);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text, r#"{"error":"internal","message":"internal server error"}"#);
        let response = ApiError::from(unavailable()).into_response();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!std::str::from_utf8(&body).unwrap().contains("secret"));
    }

    #[tokio::test]
    async fn client_error_bodies_carry_code_and_message_as_json() {
        let response = ApiError::MethodNotAllowed { method: hyper::Method::PUT, allow: "POST" }.into_response();
        assert_eq!(response.headers()[ALLOW], "POST");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"], "method_not_allowed");
        assert!(value["message"].as_str().unwrap().contains("PUT"));
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer realm=\"guidstore\"");
    }
}
