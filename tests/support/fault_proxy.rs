//! A fault-injecting HTTP/1.1 proxy on loopback, in front of a real server: 429 with
//! Retry-After, 503, connections dropped before forwarding or after the server applied the
//! write, slow answers. The test decides, per request, which fault (if any) it gets.
//!
//! Deliberately small: one request per connection (it answers `Connection: close`), which
//! is all a client needs to see and what scim2-server (HTTP/1.0) does anyway.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward untouched.
    Pass,
    /// Answer 429 with this Retry-After value, without forwarding.
    TooMany(String),
    /// Answer 503 without forwarding.
    Unavailable,
    /// Close the connection without forwarding (the server never sees the request).
    DropBeforeForward,
    /// Forward, let the server apply it, then close without answering: the client cannot
    /// know whether its write happened.
    DropAfterForward,
    /// Forward, then hold the answer this long before sending it.
    Slow(Duration),
    /// Answer with this status and no body, without forwarding (e.g. 401).
    Status(u16),
    /// Answer with this status and this JSON body, without forwarding (e.g. an empty 200).
    Body(u16, String),
    /// Answer with this status and a SCIM error whose detail repeats the whole request,
    /// headers (the bearer token) and body: a server that echoes what it was sent.
    Echo(u16),
    /// A DELETE as a platform with soft delete does it: the server gets a PATCH of
    /// `active: false` instead (the account stays, inactive, with its login), the client
    /// the 204 of a delete.
    SoftDelete,
}

/// One request seen by the proxy, and what it did to it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub fault: Fault,
    /// The request body, to check what the client sent.
    pub body: Vec<u8>,
    /// The request's head (request line and headers), to check its headers.
    pub head: String,
}

impl Seen {
    /// The value of header `name` (any case), if the request had it.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

type Decide = dyn Fn(usize, &str, &str) -> Fault + Send + Sync;

pub struct FaultProxy {
    pub port: u16,
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:upstream`; `decide(n, method, path)` picks the fault of
    /// the n-th request (0-based).
    pub fn start(upstream: u16, decide: impl Fn(usize, &str, &str) -> Fault + Send + Sync + 'static) -> FaultProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let decide: Arc<Decide> = Arc::new(decide);
        let (seen2, stop2) = (seen.clone(), stop.clone());
        // Its own runtime, so it serves whatever runtime (or none) the test uses.
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let counter = Arc::new(AtomicUsize::new(0));
                while !stop2.load(Ordering::Acquire) {
                    let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
                    let Ok(Ok((client, _))) = accepted else { continue };
                    let (decide, seen, counter) = (decide.clone(), seen2.clone(), counter.clone());
                    tokio::spawn(async move {
                        let _ = serve(client, upstream, &*decide, &seen, &counter).await;
                    });
                }
            });
        });
        FaultProxy { port, base_url: format!("http://127.0.0.1:{port}"), seen, stop, thread: Some(thread) }
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests got a fault other than Pass.
    pub fn faults(&self) -> usize {
        self.seen().iter().filter(|s| s.fault != Fault::Pass).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP/1.1 request (head + Content-Length body).
async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<(String, String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let (method, path) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
    Ok(Some((method, path, buf)))
}

/// The request with `Connection: close`, so the server closes after answering and the
/// answer is everything it sends.
fn close_request(raw: &[u8]) -> Vec<u8> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(&raw[head_end..]);
    v
}

async fn forward(upstream: u16, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).await?;
    up.write_all(&close_request(raw)).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    Ok(resp)
}

fn canned(status: u16, reason: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: application/scim+json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

fn echo(status: u16, raw: &[u8]) -> Vec<u8> {
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "scimType": "invalidValue",
        "detail": format!("cannot process this request: {}", String::from_utf8_lossy(raw)),
    })
    .to_string();
    let mut v = format!(
        "HTTP/1.1 {status} Echoed\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body.as_bytes());
    v
}

/// The PATCH that deactivates the user at `path`, with the credentials of the request whose
/// `head` is given (a soft delete, `Fault::SoftDelete`).
fn deactivation(head: &str, path: &str) -> Vec<u8> {
    let auth = head.split("\r\n").find(|l| l.to_ascii_lowercase().starts_with("authorization:")).unwrap_or("");
    let body =
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;
    format!(
        "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(
    mut client: TcpStream,
    upstream: u16,
    decide: &Decide,
    seen: &Mutex<Vec<Seen>>,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    let Some((method, path, raw)) = read_request(&mut client).await? else { return Ok(()) };
    let path_of_request = path.clone();
    let n = counter.fetch_add(1, Ordering::AcqRel);
    let fault = decide(n, &method, &path);
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(raw.len());
    let (head, body) = (String::from_utf8_lossy(&raw[..head_end]).to_string(), raw[head_end..].to_vec());
    seen.lock().unwrap().push(Seen { at: Instant::now(), method, path, fault: fault.clone(), body, head: head.clone() });
    let path = path_of_request;
    let answer = match fault {
        Fault::Pass => forward(upstream, &raw).await?,
        Fault::TooMany(after) => canned(429, "Too Many Requests", &format!("Retry-After: {after}\r\n")),
        Fault::Unavailable => canned(503, "Service Unavailable", ""),
        Fault::Status(s) => canned(s, "Injected", ""),
        Fault::Echo(s) => echo(s, &raw),
        Fault::Body(s, body) => format!(
            "HTTP/1.1 {s} Injected\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        Fault::SoftDelete => {
            let a = forward(upstream, &deactivation(&head, &path)).await?;
            if a.starts_with(b"HTTP/1.0 2") || a.starts_with(b"HTTP/1.1 2") { canned(204, "No Content", "") } else { a }
        }
        Fault::DropBeforeForward => return Ok(()),
        Fault::DropAfterForward => {
            forward(upstream, &raw).await?;
            return Ok(());
        }
        Fault::Slow(d) => {
            let a = forward(upstream, &raw).await?;
            tokio::time::sleep(d).await;
            a
        }
    };
    client.write_all(&answer).await?;
    client.shutdown().await
}
