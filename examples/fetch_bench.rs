//! Benchmark helper for scripts/bench_fetch.sh.
//!
//! fetch_bench fetch PORT KEY PIN REMOTE_PATH      connect, list, download to nowhere (hashing), print MiB/s
//! fetch_bench proxy LISTEN_PORT TARGET_PORT MS    TCP proxy adding MS one way in each direction
//!
//! The proxy is a delay line, not a bandwidth limit: each chunk is held until MS after it
//! arrived, so a round trip gains 2×MS while throughput is bounded only by the window.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rostersync::config::{HostKeyPolicy, Sftp, SftpAuth};
use rostersync::source::Source;
use rostersync::source::sftp::SftpSource;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: fetch_bench fetch PORT KEY PIN REMOTE_PATH | fetch_bench proxy LISTEN_PORT TARGET_PORT DELAY_MS";
    match args.get(1).map(String::as_str) {
        Some("fetch") if args.len() == 6 => fetch(args[2].parse().expect("port"), &args[3], &args[4], &args[5]),
        Some("proxy") if args.len() == 5 => {
            proxy(args[2].parse().expect("listen port"), args[3].parse().expect("target port"), args[4].parse().expect("ms"))
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

fn fetch(port: u16, key: &str, pin: &str, path: &str) {
    let cfg = Sftp {
        host: "127.0.0.1".into(),
        port,
        username: "root".into(),
        auth: SftpAuth::Key { private_key: PathBuf::from(key), passphrase: None },
        host_key: HostKeyPolicy::Pinned(pin.into()),
        timeout: Duration::from_secs(30),
    };
    let start = Instant::now();
    let mut src = SftpSource::connect(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let file = src.list(path).unwrap_or_else(|e| panic!("{e}")).pop().expect("file listed");
    let got = src.fetch(&file, &mut std::io::sink(), u64::MAX).unwrap_or_else(|e| panic!("{e}"));
    let secs = start.elapsed().as_secs_f64();
    println!("{} bytes in {secs:.3}s = {:.1} MiB/s sha256 {}", got.bytes, got.bytes as f64 / secs / 1048576.0, got.sha256);
}

fn proxy(listen: u16, target: u16, ms: u64) {
    let l = TcpListener::bind(("127.0.0.1", listen)).expect("bind proxy");
    let delay = Duration::from_millis(ms);
    for c in l.incoming() {
        let Ok(c) = c else { continue };
        let Ok(s) = TcpStream::connect(("127.0.0.1", target)) else { continue };
        let _ = (c.set_nodelay(true), s.set_nodelay(true));
        pipe(c.try_clone().unwrap(), s.try_clone().unwrap(), delay);
        pipe(s, c, delay);
    }
}

/// Copies `from` → `to`, delivering each chunk `delay` after it was read.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}
