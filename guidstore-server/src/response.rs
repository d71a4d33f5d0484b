//! The responses the server builds: [`Body`], [`json_response`], [`record_response`] and
//! [`strip_body`] for `HEAD`. Routing and error mapping use them; this module uses neither.

use guidstore::Record;
use http_body_util::Full;
use hyper::body::{Body as _, Bytes};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue};
use hyper::{Response, StatusCode};

/// The response body type: every answer is small and complete.
pub type Body = Full<Bytes>;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response with this status and body.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// A record as the JSON body, with its `ETag`.
pub fn record_response(status: StatusCode, record: &Record) -> Response<Body> {
    let mut response = json_response(status, Bytes::copy_from_slice(record.to_json().as_bytes()));
    if let Ok(etag) = HeaderValue::try_from(record.etag()) {
        response.headers_mut().insert(ETAG, etag);
    }
    response
}

/// For `HEAD`: keeps the headers GET would send, with GET's `Content-Length`, and drops the body.
pub fn strip_body(response: &mut Response<Body>) {
    if let Some(length) = response.body().size_hint().exact() {
        response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    *response.body_mut() = Body::default();
}
