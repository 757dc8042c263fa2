//! A run's deadline (`[sync] max_run_time`): a platform that accepts connections and never
//! answers holds a run only until its deadline, whatever the requests' own timeouts; the run
//! fails retriable, and the next run against a healthy platform converges.

use crate::support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::project::{Project, rows};
use support::scim::ScimServer;

/// A server that accepts every connection and never sends a byte back (a hung platform:
/// a stuck load balancer, a deadlocked application server). Stops with the test process.
fn hanging_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/scim/v2", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    url
}

#[test]
fn a_hung_platform_holds_a_run_only_until_its_deadline_and_the_next_run_converges() {
    let scim = ScimServer::start();
    let hung = hanging_server();
    // Requests may wait 120 s each; the run may take 3 s.
    let p = Project::at(&hung, &scim.token, "max_run_time = \"3s\"", "");
    let cfg = p.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("kind = \"scim\"", "kind = \"scim\"\ntimeout = \"120s\"", 1);
    std::fs::write(&cfg, &text).unwrap();
    p.export("employees_2026-01-01.csv", &rows(3));

    let started = Instant::now();
    let (code, r) = p.sync_json(&[]);
    let took = started.elapsed();
    assert_eq!(code, 6, "a platform failure, retried by the daemon: {r}");
    assert_eq!(r["failure"], "deadline", "{r}");
    assert!(r["message"].as_str().unwrap_or_default().contains("went past max_run_time (3s)"), "{r}");
    assert!(took < Duration::from_secs(30), "the deadline bounds the run: it took {took:?}");
    assert!(scim.users().is_empty());

    // The platform answers again: the same file is synced whole.
    std::fs::write(&cfg, text.replace(&hung, &scim.base_url)).unwrap();
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 3, "{r}");
    assert_eq!(scim.users().len(), 3);
}
