//! `[daemon] listen`: `/healthz`, `/metrics` and the status page (`/`, `/connectors/NAME`,
//! `status_page.rs`) on hyper's HTTP/1.1 server. Each connection is answered once and closed.
//!
//! hyper is driven per connection rather than through a framework: the limits below are
//! connection settings, every route takes GET and HEAD only, and the status page routes its
//! own paths (`Board::route`), so a router would dispatch three arms of a `match`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::health::Health;
use super::metrics::Metrics;
use super::status_page::Board;

/// A request head larger than this is refused with 431 (scrapers send a few hundred bytes).
const MAX_HEAD: usize = 8 * 1024;
/// A connection is dropped if its exchange takes longer (a client that sends nothing).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the listener; the error says which setting to change.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for /healthz and /metrics: {e}; change [daemon] listen, or stop what holds the port"))
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    serve_with_status(listener, metrics, health, None).await
}

/// What the routes read.
struct Site {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    board: Option<Arc<Board>>,
}

/// As `serve`, with the status page when `board` is given.
pub async fn serve_with_status(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>, board: Option<Arc<Board>>) {
    let site = Arc::new(Site { metrics, health, board });
    let mut http = http1::Builder::new();
    // One request per connection, as scrapers and probes use it; no date header, so a
    // response is what the route made and nothing else. A client that closes its side once
    // it has asked (`nc -N`) is still answered: without half_close hyper would drop the
    // request on that EOF while a route is still reading the store.
    http.keep_alive(false).half_close(true).max_header_size(MAX_HEAD).auto_date_header(false);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let site = site.clone();
                let service = service_fn(move |req| {
                    let site = site.clone();
                    async move { Ok::<_, Infallible>(site.answer(req).await) }
                });
                let conn = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    // A client that hangs up or sends garbage is its own problem: hyper has
                    // already answered what could be answered (400, 431).
                    let _ = tokio::time::timeout(READ_TIMEOUT, conn).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!("metrics listener: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Site {
    /// The response to one request. A HEAD gets the GET's headers; hyper leaves out the body.
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET and HEAD\n".into());
        }
        match req.uri().path() {
            "/healthz" => {
                let (status, body) = self.health.render(&self.metrics.awaiting());
                reply(status_code(status), "text/plain; charset=utf-8", body)
            }
            "/metrics" => {
                if let Some(b) = &self.board {
                    self.metrics.set_manual(b.manual_runs().await);
                }
                reply(StatusCode::OK, super::metrics::CONTENT_TYPE, self.metrics.render())
            }
            path => match &self.board {
                Some(b) => match b.route(path).await {
                    Some((status, html)) => reply(status_code(status), "text/html; charset=utf-8", html),
                    None => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /, /healthz or /metrics\n".into()),
                },
                None => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /healthz or /metrics\n".into()),
            },
        }
    }
}

/// The status page speaks in numbers; one it could not mean is a bug of ours, not a 200.
fn status_code(n: u16) -> StatusCode {
    StatusCode::from_u16(n).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A whole-body response: its type, its length, and the connection closed after it.
fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_healthz_metrics_and_404() {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.set_connectors(3);
        let server = tokio::spawn(serve(l, metrics, Arc::new(Health::default())));

        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok\n"), "{r}");
        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.contains("content-type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("\nrostersync_connectors_scheduled 3\n"), "{r}");
        let r = get(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = get(addr, "POST /metrics HTTP/1.1\r\ncontent-length: 0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        server.abort();
    }

    /// The exact bytes of a response (no date, the connection closed), a HEAD without its
    /// body, each status with its own reason, and a head over the limit refused with 431.
    #[tokio::test]
    async fn responses_are_exact_and_limited() {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let health = Arc::new(Health::default());
        let server = tokio::spawn(serve(l, Arc::new(Metrics::default()), health.clone()));

        let r = get(addr, "GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r, "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
        let r = get(addr, "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r, "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 36\r\nconnection: close\r\n\r\n");
        let r = get(addr, "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            r,
            "HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain\r\ncontent-length: 18\r\nconnection: close\r\n\r\nonly GET and HEAD\n"
        );
        health.set(1, [("acme".to_string(), vec!["platform.token_env: not set".to_string()])].into());
        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        // A client that closes its side once it has asked (`nc -N`) still gets its answer.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        s.shutdown().await.unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        let r = get(addr, &format!("GET /healthz HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n", "a".repeat(MAX_HEAD))).await;
        assert!(r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{r}");
        server.abort();
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let err = bind(l.local_addr().unwrap()).await.unwrap_err();
        assert!(err.contains("change [daemon] listen"), "{err}");
    }
}
