//! A run's record (issue 30): its times are the state store's, whatever the worker's clock
//! says, and a run still in progress beside another (a dry run takes no lease) is not closed
//! as failed by it. The real binary, a real scim2-server, a real PostgreSQL or SQLite store;
//! a worker's clock moved by libfaketime; a slow platform by the fault proxy.

use crate::support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use support::fault_proxy::{Fault, FaultProxy};
use support::postgres::{PASSWORD, Postgres};
use support::project::{Project, rows};
use support::scim::ScimServer;

/// rostersync with its wall clock moved by `offset` ("+2d"): libfaketime through LD_PRELOAD
/// (the wrapper would stand between the test and the process), its monotonic clock left alone.
fn faketime(offset: &str) -> Command {
    let lib = support::require_binary(
        &[
            PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
            PathBuf::from("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
        ],
        "libfaketime.so.1",
        "apt-get install faketime",
    );
    let mut c = Command::new(support::rostersync_bin());
    c.env("LD_PRELOAD", lib).env("FAKETIME", offset).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c
}

/// Every run of `acme`, newest first (`history --json`).
fn history(p: &Project) -> Vec<serde_json::Value> {
    let out = p.run(&["--json", "history", "acme", "--limit", "100"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("history --json ({e}): {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    v.as_array().cloned().unwrap_or_default()
}

fn seconds_from_now(v: &serde_json::Value) -> i64 {
    (support::ts(v) - Utc::now()).num_seconds().abs()
}

/// A worker whose clock is two days ahead syncs against PostgreSQL: the run's start and end
/// in history, and its audit entries, are the database's time, not the worker's.
#[test]
fn a_run_on_a_worker_two_days_fast_is_recorded_at_the_databases_time() {
    let scim = ScimServer::start();
    let pg = Postgres::start();
    pg.create_db("clock");
    let p = Project::new(&scim, "");
    p.set_state(&format!("[state]\nurl = \"{}\"\npassword_env = \"ROSTERSYNC_PG_PASSWORD\"\n", pg.url("clock")));
    p.export("employees_2026-01-01.csv", &rows(20));

    let mut c = faketime("+2d");
    c.arg("--config").arg(p.path().join("connectors.toml")).args(["--json", "sync", "acme"]);
    let out = c.env("PLATFORM_SCIM_TOKEN", &p.token).env("ROSTERSYNC_PG_PASSWORD", PASSWORD).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["created"], 20, "{report:#}");

    // This test's clock is the machine's, as is the database's (same machine).
    let mut c = p.command(&["--json", "history", "acme"]);
    let out = c.env("ROSTERSYNC_PG_PASSWORD", PASSWORD).output().unwrap();
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &h[0];
    assert!(seconds_from_now(&run["started_at"]) < 120, "started at the worker's time, not the database's: {run:#}");
    assert!(seconds_from_now(&run["ended_at"]) < 120, "ended at the worker's time, not the database's: {run:#}");
    // Every audit entry too (RFC 3339 text), within two minutes of the database's now.
    let off = pg.psql("clock", "SELECT count(*) FROM audit WHERE abs(extract(epoch FROM (at::timestamptz - now()))) > 120");
    let all = pg.psql("clock", "SELECT count(*) FROM audit");
    assert_eq!((off.as_str(), all.as_str()), ("0", "20"), "audit entries at the worker's time");
}

/// A dry run (which takes no lease) in progress in another process while a real run of the
/// connector ends is left open, and records its own outcome when it ends; a dry run whose
/// process was killed is closed as failed by the next real run.
#[test]
fn a_dry_run_in_progress_is_not_closed_by_a_real_run_but_a_killed_one_is() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(20));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r:#}");
    p.export("employees_2026-01-02.csv", &rows(25));

    // The dry runs reach the platform through a proxy that holds every answer: they are in
    // progress for as long.
    let proxy = FaultProxy::start(scim.port, |_, _, _| Fault::Slow(Duration::from_secs(8)));
    let config = p.path().join("connectors.toml");
    let slow = p.path().join("slow.toml");
    std::fs::write(&slow, std::fs::read_to_string(&config).unwrap().replace(&scim.base_url, &proxy.base_url)).unwrap();
    let dry_run = || -> Child {
        Command::new(support::rostersync_bin())
            .arg("--config")
            .arg(&slow)
            .args(["--json", "sync", "acme", "--dry-run"])
            .env("PLATFORM_SCIM_TOKEN", &p.token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_for_request = |n: usize| {
        let start = Instant::now();
        while proxy.seen().len() < n {
            assert!(start.elapsed() < Duration::from_secs(30), "the dry run sent no request");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let dry = dry_run();
    wait_for_request(1);
    let (code, real) = p.sync_json(&[]);
    assert_eq!(code, 0, "{real:#}");
    assert_eq!(real["counts"]["created"], 5, "{real:#}");
    let h = history(&p);
    let open: Vec<&serde_json::Value> = h.iter().filter(|r| r["ended_at"].is_null()).collect();
    assert_eq!(open.len(), 1, "the dry run in progress was closed by the real run: {h:#?}");
    let dry_id = open[0]["run_id"].as_str().unwrap().to_string();
    // It ends on its own, and its own outcome is what history keeps.
    let out = dry.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let h = history(&p);
    let mine = h.iter().find(|r| r["run_id"] == dry_id.as_str()).unwrap();
    assert_eq!((mine["report"]["outcome"].as_str(), mine["report"]["dry_run"].as_bool()), (Some("ok"), Some(true)), "{mine:#}");

    // A dry run killed mid-way never records its end: the next real run closes it, saying why.
    p.export("employees_2026-01-03.csv", &rows(30));
    let mut killed = dry_run();
    let seen = proxy.seen().len();
    wait_for_request(seen + 1);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let (code, real) = p.sync_json(&[]);
    assert_eq!(code, 0, "{real:#}");
    let h = history(&p);
    assert!(h.iter().all(|r| !r["ended_at"].is_null()), "the killed dry run was left open: {h:#?}");
    let closed: Vec<&serde_json::Value> = h.iter().filter(|r| r["report"]["outcome"] == "failed").collect();
    assert_eq!(closed.len(), 1, "{h:#?}");
    let why = closed[0]["report"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("its end was never recorded") && why.contains(real["run_id"].as_str().unwrap()), "{why}");
}
