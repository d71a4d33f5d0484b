//! [`JsonErrorBodies`]: the byte stream of an HTTP/1 connection, with hyper's own error answers
//! given the JSON error body every other 4xx of the server has.
//!
//! hyper answers a request it cannot parse (a garbage request line, a bad header, conflicting
//! `Content-Length`s, a head larger than its buffer, a target longer than 65,534 bytes) itself,
//! before any service runs, with an empty `400`, `431` or `414` and `connection: close`; no hyper
//! or hyper-util option changes that answer. This wrapper recognises exactly that head — one of
//! those three status lines followed by `connection: close` and `content-length: 0`, which the
//! service's responses never are (they always carry `content-type`) — when a write starts with
//! it, and writes the same head with a JSON body instead (`bad_request`, `uri_too_long`,
//! `header_too_large`). Every other byte passes through untouched; reads are not looked at.
//!
//! Nothing here knows routes or the store; `server.rs` wraps HTTP/1 connections in it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;

/// hyper's automatic answer: status line, then these headers (then `date`, then the blank line).
const AUTOMATIC_HEADERS: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// An HTTP/1 connection's stream whose hyper-made error answers get JSON bodies.
#[derive(Debug)]
pub struct JsonErrorBodies<S> {
    inner: S,
    /// A rewritten answer and how much of it is written; drained before anything else is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonErrorBodies<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> JsonErrorBodies<S> {
        JsonErrorBodies { inner, pending: None }
    }
}

impl<S: AsyncWrite + Unpin> JsonErrorBodies<S> {
    /// Writes what is left of a rewritten answer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let rest = bytes.get(*written..).unwrap_or_default();
            if rest.is_empty() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written when it is hyper's automatic error answer, queueing the JSON version.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let rewritten = rewrite(buf)?;
        self.pending = Some((rewritten, 0));
        // hyper flushes next; what this write cannot send now, the flush sends.
        Some(match self.poll_drain(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(buf.len())),
        })
    }
}

/// The JSON version of hyper's automatic error answer `head`, or `None` if `head` is not one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let after_version = head.strip_prefix(b"HTTP/1.1 ")?;
    let error = match after_version.get(..4)? {
        b"400 " => ApiError::BadRequest("the request is not valid HTTP/1.1 (request line, header or framing)"),
        b"414 " => ApiError::UriTooLong,
        b"431 " => ApiError::HeaderTooLarge,
        _ => return None,
    };
    let status_line_end = head.windows(2).position(|pair| pair == b"\r\n")?;
    let (status_line, headers) = head.split_at(status_line_end);
    let rest = headers.strip_prefix(AUTOMATIC_HEADERS)?;
    let body = error.body();
    let mut rewritten = Vec::with_capacity(head.len() + body.len() + 64);
    rewritten.extend_from_slice(status_line);
    rewritten.extend_from_slice(b"\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ");
    rewritten.extend_from_slice(body.len().to_string().as_bytes());
    rewritten.extend_from_slice(b"\r\n");
    rewritten.extend_from_slice(rest);
    rewritten.extend_from_slice(body.as_bytes());
    Some(rewritten)
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrorBodies<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrorBodies<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if let Some(done) = this.poll_rewrite(cx, buf) {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        // hyper's automatic answer is a head alone: it comes as the first slice.
        if let Some(first) = bufs.iter().find(|slice| !slice.is_empty())
            && let Some(done) = this.poll_rewrite(cx, first)
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const DATE: &str = "date: Sun, 29 Nov 2026 20:16:56 GMT\r\n\r\n";

    fn automatic(status_line: &str) -> String {
        format!("{status_line}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}")
    }

    #[test]
    fn hypers_automatic_answers_get_json_bodies() {
        let cases = [
            ("HTTP/1.1 400 Bad Request", "bad_request"),
            ("HTTP/1.1 414 URI Too Long", "uri_too_long"),
            ("HTTP/1.1 431 Request Header Fields Too Large", "header_too_large"),
        ];
        for (status_line, code) in cases {
            let rewritten = String::from_utf8(rewrite(automatic(status_line).as_bytes()).unwrap()).unwrap();
            let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("{status_line}\r\ncontent-type: application/json\r\n")), "{head}");
            assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
            assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
            assert!(head.ends_with(DATE.trim_end()), "{head}");
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(value["error"], code);
            assert!(value["message"].as_str().is_some_and(|message| !message.is_empty()));
        }
    }

    #[test]
    fn other_bytes_pass_untouched() {
        let others = [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}".to_owned(),
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_owned(),
            automatic("HTTP/1.0 400 Bad Request"),
            "HTTP/1.1 400".to_owned(),
            String::new(),
            "{\"a\":1}".to_owned(),
        ];
        for other in others {
            assert_eq!(rewrite(other.as_bytes()), None, "{other:?}");
        }
    }

    #[tokio::test]
    async fn a_rewritten_answer_is_written_whole_through_a_slow_stream() {
        let (client, mut server) = tokio::io::duplex(7);
        let mut wrapped = JsonErrorBodies::new(client);
        let head = automatic("HTTP/1.1 400 Bad Request");
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut received).await.unwrap();
            received
        });
        wrapped.write_all(head.as_bytes()).await.unwrap();
        wrapped.write_all(b"").await.unwrap();
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        let received = String::from_utf8(reader.await.unwrap()).unwrap();
        assert_eq!(received.as_bytes(), rewrite(head.as_bytes()).unwrap());
        assert!(received.ends_with("}"), "{received}");
    }
}
