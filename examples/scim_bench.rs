//! Operations per second of the SCIM push: N creates, with and without /Bulk, against
//! scim2-server or against a minimal responder that answers at once (the client's own
//! ceiling).
//!
//! cargo run --release --example scim_bench -- [scim2|fast] [bulk|single] [N] [concurrency]
//!
//! `scim2` starts scim2-server from $SCIM2_SERVER, .venv/bin/scim2-server or PATH.
//!
//! cargo run --release --example scim_bench -- serve PORT
//!
//! runs only the minimal responder, for scripts/bench_pipeline.sh: it holds nobody (an empty
//! user list), answers every write at once, and counts the writes (each /Bulk operation
//! counts as one): `GET /_bench/writes` gives {"POST": n, "PATCH": n, …}; `POST
//! /_bench/reset` zeroes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rostersync::config::{self, PlatformAuth};
use rostersync::model::{User, UserFields};
use rostersync::plan::Op;
use rostersync::platform::Platform;
use rostersync::platform::scim::ScimClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "bench-token";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = args.first().map(String::as_str).unwrap_or("fast");
    if target == "serve" {
        let port: u16 = args.get(1).and_then(|s| s.parse().ok()).expect("usage: scim_bench serve PORT");
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        serve_forever(listener).await;
    }
    let bulk = args.get(1).map(String::as_str).unwrap_or("single") == "bulk";
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);

    let mut child = None;
    let base = match target {
        "scim2" => {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let bin = std::env::var("SCIM2_SERVER").unwrap_or_else(|_| {
                let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/scim2-server");
                if std::path::Path::new(venv).exists() { venv.to_string() } else { "scim2-server".to_string() }
            });
            child = Some(
                std::process::Command::new(&bin)
                    .args(["--port", &port.to_string(), "--bearer-token", TOKEN])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {bin}: {e}")),
            );
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(start.elapsed() < Duration::from_secs(30), "scim2-server did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            format!("http://127.0.0.1:{port}")
        }
        _ => format!("http://127.0.0.1:{}", fast_responder().await),
    };

    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("SCIM_BENCH_TOKEN", TOKEN) };
    let cfg = config::Platform {
        base_url: base.parse().unwrap(),
        auth: PlatformAuth::Bearer { token: "SCIM_BENCH_TOKEN".into() },
        max_concurrency: concurrency,
        timeout: Duration::from_secs(120),
        bulk,
        custom_schema: "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User".into(),
        notify_webhook: None,
    };
    let client = ScimClient::connect(&cfg).await.expect("connect");
    let ops: Vec<Op> = (0..n)
        .map(|i| Op::Create {
            user: Box::new(User::from(UserFields {
                external_id: format!("B{i:06}").into(),
                email: Some(format!("bench{i}@example.com").into()),
                employee_id: Some(format!("B{i:06}").into()),
                first_name: "Bench".into(),
                last_name: format!("User{i}").into(),
                language: "en".into(),
                active: true,
                manager: None,
                attributes: [("department".to_string(), "Load".to_string()), ("title".to_string(), "Tester".to_string())].into(),
            })),
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<rostersync::platform::OpOutcome>(1024);
    let counter = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u64, 0u64);
        while let Some(o) = rx.recv().await {
            if o.result.is_ok() { ok += 1 } else { failed += 1 }
        }
        (ok, failed)
    });
    let start = Instant::now();
    let budget = rostersync::retry::Budget::for_run(n);
    client.apply(ops, HashMap::new(), &budget, tx).await.expect("apply");
    let elapsed = start.elapsed();
    let (ok, failed) = counter.await.unwrap();
    println!(
        "target={target} bulk={bulk} (server bulk: {}) n={n} concurrency={concurrency}: {ok} ok, {failed} failed in {:.2}s = {:.0} ops/s",
        client.capabilities().bulk.is_some(),
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A SCIM responder that does no work: keep-alive HTTP/1.1, 201 with a fresh id for each
/// create, a BulkResponse answering each operation. Returns its port.
async fn fast_responder() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_forever(listener));
    port
}

/// Writes received, by method (Bulk operations counted one by one).
#[derive(Default)]
struct Writes {
    post: AtomicU64,
    put: AtomicU64,
    patch: AtomicU64,
    delete: AtomicU64,
}

impl Writes {
    fn count(&self, method: &str) {
        match method {
            "POST" => &self.post,
            "PUT" => &self.put,
            "PATCH" => &self.patch,
            "DELETE" => &self.delete,
            _ => return,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

async fn serve_forever(listener: TcpListener) {
    let next = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(Writes::default());
    loop {
        let Ok((s, _)) = listener.accept().await else { continue };
        let (next, writes) = (next.clone(), writes.clone());
        tokio::spawn(async move {
            let _ = serve(s, &next, &writes).await;
        });
    }
}

async fn serve(mut s: TcpStream, next: &AtomicU64, writes: &Writes) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let mut first = head.lines().next().unwrap_or("").split(' ');
        let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
        let path = path.split('?').next().unwrap_or("");
        if path.starts_with("/Users") {
            writes.count(method);
        }
        let (status, json) = match (method, path) {
            ("GET", "/_bench/writes") => (
                "200 OK",
                serde_json::json!({"POST": writes.post.load(Ordering::Relaxed), "PUT": writes.put.load(Ordering::Relaxed),
                    "PATCH": writes.patch.load(Ordering::Relaxed), "DELETE": writes.delete.load(Ordering::Relaxed)}),
            ),
            ("POST", "/_bench/reset") => {
                for c in [&writes.post, &writes.put, &writes.patch, &writes.delete] {
                    c.store(0, Ordering::Relaxed);
                }
                ("200 OK", serde_json::json!({}))
            }
            // Nobody on the platform yet: a first sync adopts no one.
            ("GET", "/Users") => (
                "200 OK",
                serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "Resources": []}),
            ),
            ("PUT" | "PATCH", p) if p.starts_with("/Users/") => ("200 OK", serde_json::json!({"id": &p["/Users/".len()..]})),
            ("DELETE", p) if p.starts_with("/Users/") => ("204 No Content", serde_json::json!({})),
            ("GET", "/ServiceProviderConfig") => (
                "200 OK",
                serde_json::json!({"patch": {"supported": true}, "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576}, "filter": {"supported": true, "maxResults": 1000}}),
            ),
            ("POST", "/Users") => ("201 Created", serde_json::json!({"id": next.fetch_add(1, Ordering::Relaxed).to_string()})),
            ("POST", "/Bulk") => {
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let ops: Vec<serde_json::Value> = req["Operations"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .inspect(|o| writes.count(o["method"].as_str().unwrap_or("")))
                            .map(|o| {
                                let (status, location) = match o["method"].as_str() {
                                    Some("POST") => ("201", format!("http://x/Users/{}", next.fetch_add(1, Ordering::Relaxed))),
                                    Some("DELETE") => ("204", format!("http://x{}", o["path"].as_str().unwrap_or(""))),
                                    _ => ("200", format!("http://x{}", o["path"].as_str().unwrap_or(""))),
                                };
                                serde_json::json!({"method": o["method"], "bulkId": o["bulkId"], "status": status, "location": location})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ("200 OK", serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": ops}))
            }
            _ => ("404 Not Found", serde_json::json!({"status": "404"})),
        };
        let out = json.to_string();
        s.write_all(
            format!("HTTP/1.1 {status}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{out}", out.len()).as_bytes(),
        )
        .await?;
    }
}
