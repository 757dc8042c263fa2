//! Test harness shared by the integration tests: real servers on free loopback ports,
//! started by the test and stopped when the handle drops.
#![allow(dead_code)]

pub mod daemon;
pub mod fault_proxy;
pub mod postgres;
pub mod project;
pub mod scim;
pub mod scim_b;
pub mod sshd;
pub mod tenant_router;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on 127.0.0.1:{port} within {timeout:?}");
}

/// Finds a server binary or fails the test with how to install it. Never a silent skip:
/// a missing server is a broken test machine, and `.ci/run` installs them.
pub fn require_binary(candidates: &[PathBuf], name: &str, install: &str) -> PathBuf {
    for c in candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{name} is not installed (looked in {candidates:?} and PATH). Install it with: {install} — or run `bash .ci/run`, which does.");
}

/// The rostersync binary built for this test run.
pub fn rostersync_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rostersync"))
}

/// Forwards connections to `to`; the first `cuts` of them are cut both ways once `limit`
/// bytes came back from the server.
pub fn cutting_proxy(to: u16, limit: u64, cuts: usize) -> u16 {
    cutting_proxy_then(to, limit, cuts, || {})
}

/// As `cutting_proxy`, running `on_cut` as each cut happens.
pub fn cutting_proxy_then(to: u16, limit: u64, cuts: usize, on_cut: impl Fn() + Send + Sync + 'static) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let on_cut = std::sync::Arc::new(on_cut);
    std::thread::spawn(move || {
        for (i, client) in l.incoming().enumerate() {
            let limit = if i < cuts { limit } else { u64::MAX };
            let client = client.unwrap();
            let server = TcpStream::connect(("127.0.0.1", to)).unwrap();
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_r, &mut s_w);
            });
            let (mut s_r, mut c_w) = (server, client);
            let on_cut = on_cut.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0u64;
                while let Ok(n) = s_r.read(&mut buf) {
                    if n == 0 || c_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n as u64;
                    if sent >= limit {
                        on_cut();
                        break;
                    }
                }
                let _ = c_w.shutdown(Shutdown::Both);
                let _ = s_r.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// What a `TcpProxy` does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFault {
    /// Forward untouched.
    Pass,
    /// Cut both ways once this many bytes came back from the server.
    CutAfter(u64),
    /// Once this many bytes came back, forward nothing more either way and keep the
    /// connection open: a server that hangs mid-transfer.
    StallAfter(u64),
    /// Accept and never forward a byte: a server that hangs before its banner.
    Silent,
    /// Once this many bytes came back, hold the rest back for a while, then go on: a slow
    /// server, not a dead one.
    PauseAfter(u64, Duration),
}

/// A TCP proxy on loopback in front of a real server, faulting connections as the test
/// decides and counting the bytes the server sent through it.
pub struct TcpProxy {
    pub port: u16,
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TcpProxy {
    /// Forwards to `127.0.0.1:to`; `fault(n)` decides for the n-th connection (0-based).
    pub fn start(to: u16, fault: impl Fn(usize) -> TcpFault + Send + Sync + 'static) -> TcpProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let served = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (served2, connections2) = (served.clone(), connections.clone());
        std::thread::spawn(move || {
            // Stalled and silent connections are held here, open, until the test ends.
            let mut held = Vec::new();
            for (i, client) in l.incoming().enumerate() {
                let Ok(client) = client else { continue };
                connections2.fetch_add(1, Ordering::AcqRel);
                let f = fault(i);
                if f == TcpFault::Silent {
                    held.push(client);
                    continue;
                }
                let server = TcpStream::connect(("127.0.0.1", to)).unwrap();
                let stalled = Arc::new(AtomicBool::new(false));
                let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let stalled2 = stalled.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    // Once stalled, the client's bytes are read (so it never blocks) and dropped.
                    while let Ok(n) = c_r.read(&mut buf) {
                        if n == 0 || (!stalled2.load(Ordering::Acquire) && s_w.write_all(&buf[..n]).is_err()) {
                            break;
                        }
                    }
                    let _ = s_w.shutdown(Shutdown::Write);
                });
                let (mut s_r, mut c_w) = (server, client);
                let served = served2.clone();
                std::thread::spawn(move || {
                    let mut limit = match f {
                        TcpFault::CutAfter(n) | TcpFault::StallAfter(n) | TcpFault::PauseAfter(n, _) => n,
                        _ => u64::MAX,
                    };
                    let mut buf = [0u8; 16384];
                    let mut sent = 0u64;
                    while let Ok(n) = s_r.read(&mut buf) {
                        if n == 0 || c_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                        served.fetch_add(n as u64, Ordering::AcqRel);
                        if sent >= limit {
                            if let TcpFault::PauseAfter(_, pause) = f {
                                std::thread::sleep(pause);
                                limit = u64::MAX;
                                continue;
                            }
                            if let TcpFault::StallAfter(_) = f {
                                stalled.store(true, Ordering::Release);
                                // Hold both sockets open and silent for the rest of the test.
                                loop {
                                    std::thread::sleep(Duration::from_secs(3600));
                                }
                            }
                            break;
                        }
                    }
                    let _ = c_w.shutdown(Shutdown::Both);
                    let _ = s_r.shutdown(Shutdown::Both);
                });
            }
        });
        TcpProxy { port, served, connections }
    }

    /// Bytes the server sent through the proxy so far, over every connection.
    pub fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Every user of a SCIM server, page by page (`count` a page) until `totalResults`.
pub fn all_pages(count: usize, get: impl Fn(&str) -> serde_json::Value) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut start = 1;
    loop {
        let page = get(&format!("/Users?startIndex={start}&count={count}"));
        let res = page["Resources"].as_array().cloned().unwrap_or_default();
        let n = res.len();
        all.extend(res);
        let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
        if n == 0 || all.len() >= total {
            return all;
        }
        start += n;
    }
}

/// An RFC 3339 time from a run record's JSON (`history --json`).
pub fn ts(v: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

/// The most runs in progress at any instant, over finished run records (daemon and fleet
/// tests: two runs of one connector must never overlap).
pub fn max_overlap(runs: &[&serde_json::Value]) -> usize {
    let mut events: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for r in runs {
        events.push((ts(&r["started_at"]), 1));
        events.push((ts(&r["ended_at"]), -1));
    }
    // Ends before starts at the same instant: back-to-back is not overlap.
    events.sort_by_key(|e| (e.0, e.1));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// A tiny webhook receiver: answers 200 to every POST and keeps the bodies.
pub fn webhook_listener() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/T0KEN", l.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = bodies.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_ok() {
                keep.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}
