//! The HTTP ceiling of the benchmark (`bench/http.sh`): the same hyper-util auto server as
//! guidstore-server, answering every request with a fixed 20-byte JSON body and nothing else
//! (no routing, no store, no logging). Prints `listening on http://ADDR` like the server.
//!
//! `cargo run --release -p guidstore-server --example hello_world -- 127.0.0.1:0`

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// Exactly 20 bytes.
const BODY: &[u8; 20] = br#"{"hello":"world!!!"}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let builder = std::sync::Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept failed: {error}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = std::sync::Arc::clone(&builder);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request: Request<hyper::body::Incoming>| async {
                let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok::<_, Infallible>(response)
            });
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
