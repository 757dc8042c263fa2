//! The lease of a long run, end to end through the CLI against the real scim2-server and a
//! real SQLite file. Found by the 1M benchmark: while a push wrote its batches, the lease's
//! renewals lost every race for SQLite's write lock, the lease could lapse mid-run and another
//! process take the connector while the first still pushed. A run that cannot renew its lease
//! must stop sending before the lease lapses; the run that takes the connector after it
//! finishes the work, one account per person.

use crate::support;

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use support::fault_proxy::{Fault, FaultProxy};
use support::project::{Project, rows};
use support::scim::ScimServer;

const TTL: Duration = Duration::from_secs(3);

fn total(scim: &ScimServer) -> u64 {
    scim.get("/Users?count=1")["totalResults"].as_u64().unwrap_or(0)
}

#[test]
fn a_run_that_cannot_renew_its_lease_stops_before_it_lapses_and_the_next_run_finishes() {
    let scim = ScimServer::start();
    // Every create of the first run answered slowly, so its push lasts far longer than the lease.
    let slow = Arc::new(AtomicBool::new(true));
    let flag = slow.clone();
    let proxy = FaultProxy::start(scim.port, move |_, method, _| {
        if method == "POST" && flag.load(Ordering::Acquire) { Fault::Slow(Duration::from_millis(200)) } else { Fault::Pass }
    });
    let p = Project::at(&proxy.base_url, &scim.token, "", "");
    let cfg = p.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "url = \"sqlite://state/rostersync.db\"\n",
        &format!("url = \"sqlite://state/rostersync.db\"\nlease_ttl = \"{}s\"\n", TTL.as_secs()),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let n = 1500u64;
    p.export("employees_2026-01-01.csv", &rows(n as u32));

    let child = p.command(&["--json", "sync", "acme"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while total(&scim) < 20 {
        assert!(start.elapsed() < Duration::from_secs(60), "the push never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Another process's long write transaction (here the test's own connection) holds
    // SQLite's write lock: the run can neither renew its lease nor record its outcomes.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = format!("sqlite://{}", p.path().join("state/rostersync.db").display());
    let mut blocker = rt.block_on(sqlx::SqliteConnection::connect(&db)).unwrap();
    rt.block_on(sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut blocker)).unwrap();
    let blocked = Instant::now();

    // Held past the lease's TTL, then let go: the run may not send anything from one TTL
    // after its last renewal (before `blocked`) on, since another run could hold the
    // connector by then. Left to itself it waited for the lock and then pushed on.
    std::thread::sleep(TTL + Duration::from_millis(1500));
    rt.block_on(sqlx::raw_sql("ROLLBACK").execute(&mut blocker)).unwrap();
    drop(blocker);
    let out = child.wait_with_output().unwrap();
    let lapse = blocked + TTL;
    let seen = proxy.seen();
    let posts = seen.iter().filter(|s| s.method == "POST").count() as u64;
    let late = seen.iter().filter(|s| s.method == "POST" && s.at >= lapse).count();
    assert!(posts < n, "the push must still have had work left when it stopped ({posts} of {n}); raise n");
    assert_eq!(late, 0, "the run sent {late} creates after its lease could have lapsed (of {posts} it sent)");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not one JSON report ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.code(), Some(1), "{report}");
    let msg = report["message"].as_str().unwrap_or_default();
    assert!(msg.contains("connector \"acme\": the run stopped because it could not renew its lease"), "{msg}");
    assert!(msg.contains("database is locked") || msg.contains("did not answer"), "it says why: {msg}");

    slow.store(false, Ordering::Release);
    // The connector is free again. The next run lists the platform first (the stopped run's
    // marker), adopts what was sent and creates the rest: one account per person.
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    let users = scim.users();
    assert_eq!(users.len() as u64, n, "one account per person, none twice");
    let ids: HashSet<&str> = users.iter().filter_map(|u| u["externalId"].as_str()).collect();
    assert_eq!(ids.len() as u64, n, "distinct people");
    assert!(r["counts"]["adopted"].as_u64().unwrap_or(0) > 0, "the stopped run's unrecorded creates were adopted: {r}");
}
