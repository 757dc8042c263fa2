//! `[daemon] listen`: `/healthz`, `/metrics` and the status page (`/`, `/connectors/NAME`,
//! `status_page.rs`) over a minimal HTTP/1.1 responder. A few GET routes do not need a web
//! framework; each connection is answered once and closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::health::Health;
use super::metrics::Metrics;
use super::status_page::Board;

/// A request head larger than this is refused (scrapers send a few hundred bytes).
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends nothing for this long is dropped.
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

/// As `serve`, with the status page when `board` is given.
pub async fn serve_with_status(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>, board: Option<Arc<Board>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let m = metrics.clone();
                let h = health.clone();
                let b = board.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(READ_TIMEOUT, answer(stream, &m, &h, b.as_deref())).await;
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

async fn answer(mut s: TcpStream, metrics: &Metrics, health: &Health, board: Option<&Board>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_HEAD {
            return reply(&mut s, 431, "text/plain", "request head too large\n", false).await;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return reply(&mut s, 405, "text/plain", "only GET and HEAD\n", false).await;
    }
    match path {
        "/healthz" => {
            let (status, body) = health.render();
            reply(&mut s, status, "text/plain; charset=utf-8", &body, head_only).await
        }
        "/metrics" => {
            if let Some(b) = board {
                metrics.set_manual(b.manual_runs().await);
            }
            reply(&mut s, 200, "text/plain; version=0.0.4; charset=utf-8", &metrics.render(), head_only).await
        }
        _ => match board {
            Some(b) => match b.route(path).await {
                Some((status, html)) => reply(&mut s, status, "text/html; charset=utf-8", &html, head_only).await,
                None => reply(&mut s, 404, "text/plain", "not found: try /, /healthz or /metrics\n", head_only).await,
            },
            None => reply(&mut s, 404, "text/plain", "not found: try /healthz or /metrics\n", head_only).await,
        },
    }
}

async fn reply(s: &mut TcpStream, status: u16, ctype: &str, body: &str, head_only: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Request Header Fields Too Large",
    };
    let mut out =
        format!("HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    if !head_only {
        out.push_str(body);
    }
    s.write_all(out.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let err = bind(l.local_addr().unwrap()).await.unwrap_err();
        assert!(err.contains("change [daemon] listen"), "{err}");
    }
}
