//! Test harness shared by the integration tests: real servers on free loopback ports,
//! started by the test and stopped when the handle drops.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod project;
pub mod scim;
pub mod sshd;

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
